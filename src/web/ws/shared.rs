//! One GraphQL execution per distinct subscription, shared by every socket that runs it.
//!
//! A subscription's answers depend only on who asks (the principal) and what is asked (query,
//! variables, operation name). Ten thousand sockets of one application's backend listening
//! for the same events would otherwise run the same selection ten thousand times per event
//! and hold ten thousand copies of its state; here it runs once, is serialized once, and each
//! socket only wraps the shared payload in its own `next` message.
//!
//! Sharing is per HTTP worker thread (an execution and its sockets' tasks run on one thread).
//! An execution lives while a subscriber holds it: the last one to leave stops it. One that
//! ends (an error, the stream's end) leaves the table before telling its subscribers, so a
//! later subscriber starts a fresh one rather than joining a finished one.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use futures_util::StreamExt;
use futures_util::future::AbortHandle;
use tokio::sync::broadcast;

use crate::auth::Principal;
use crate::graphql::KeywaySchema;
use crate::graphql::context::RequestInfo;

/// Results an execution may run ahead of its slowest subscriber before that one is ended.
const BACKLOG: usize = 1024;

/// What an execution tells its subscribers; payloads are serialized JSON.
#[derive(Clone)]
pub enum Frame {
    Next(Arc<str>),
    /// Failed before executing (parse, validation, permission): the errors.
    Error(Arc<str>),
    Complete,
}

#[derive(PartialEq, Eq, Hash)]
struct Key {
    /// Each HTTP worker thread runs its own executions: waking a task on another worker's
    /// runtime costs a system call and a context switch, waking one on this thread neither.
    worker: std::thread::ThreadId,
    principal: Principal,
    query: String,
    /// Serialized: equal variables (as sent) share.
    variables: String,
    operation_name: Option<String>,
}

/// Live executions by key, each with its serial number (which one an entry is).
type Table = Mutex<HashMap<Arc<Key>, (u64, Weak<Execution>)>>;

#[derive(Default)]
pub struct SharedSubscriptions {
    live: Arc<Table>,
    serial: AtomicU64,
}

struct Execution {
    serial: u64,
    frames: broadcast::Sender<Frame>,
    task: AbortHandle,
    key: Arc<Key>,
    table: Weak<Table>,
}

impl Drop for Execution {
    fn drop(&mut self) {
        self.task.abort();
        if let Some(table) = self.table.upgrade() {
            forget(&table, &self.key, self.serial);
        }
    }
}

/// Drops the table's entry for one execution (and only that one: a new execution under the
/// same key may already have replaced it).
fn forget(table: &Table, key: &Arc<Key>, serial: u64) {
    let mut live = lock(table);
    if live.get(key).is_some_and(|(s, _)| *s == serial) {
        live.remove(key);
    }
}

/// A poisoned table is still sound (entries are only inserted and removed whole).
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One socket's place in an execution. Dropping it leaves.
pub struct Subscription {
    _execution: Arc<Execution>,
    pub frames: broadcast::Receiver<Frame>,
}

impl SharedSubscriptions {
    pub fn subscribe(
        &self,
        schema: &Arc<KeywaySchema>,
        principal: Principal,
        info: RequestInfo,
        request: async_graphql::Request,
    ) -> Subscription {
        let key = Arc::new(Key {
            worker: std::thread::current().id(),
            principal: principal.clone(),
            query: request.query.clone(),
            variables: serde_json::to_string(&request.variables).unwrap_or_default(),
            operation_name: request.operation_name.clone(),
        });
        let mut live = lock(&self.live);
        if let Some(execution) = live.get(&key).and_then(|(_, e)| e.upgrade()) {
            let frames = execution.frames.subscribe();
            return Subscription {
                _execution: execution,
                frames,
            };
        }
        // Subscribed before the execution starts, so no frame can be missed.
        let (sender, frames) = broadcast::channel(BACKLOG);
        let serial = self.serial.fetch_add(1, Ordering::Relaxed);
        let request = request.data(principal).data(info);
        let (run, task) = futures_util::future::abortable(execute(
            schema.clone(),
            request,
            sender.clone(),
            (key.clone(), serial),
            Arc::downgrade(&self.live),
        ));
        let execution = Arc::new(Execution {
            serial,
            frames: sender,
            task,
            key: key.clone(),
            table: Arc::downgrade(&self.live),
        });
        live.insert(key, (serial, Arc::downgrade(&execution)));
        drop(live);
        actix_web::rt::spawn(run);
        Subscription {
            _execution: execution,
            frames,
        }
    }
}

async fn execute(
    schema: Arc<KeywaySchema>,
    request: async_graphql::Request,
    frames: broadcast::Sender<Frame>,
    (key, serial): (Arc<Key>, u64),
    table: Weak<Table>,
) {
    let mut results = schema.execute_stream(request);
    let mut first = true;
    let last = loop {
        let Some(response) = results.next().await else {
            break Frame::Complete;
        };
        if first && response.data == async_graphql::Value::Null && response.is_err() {
            let errors = crate::web::graphql::coded_errors(response.errors);
            break Frame::Error(serialize(&errors));
        }
        first = false;
        let response = crate::web::graphql::with_codes(response);
        // No receiver left is not an error: the execution is about to be stopped.
        let _ = frames.send(Frame::Next(serialize(&response)));
    };
    // Out of the table first: whoever subscribes from now on starts afresh.
    if let Some(table) = table.upgrade() {
        forget(&table, &key, serial);
    }
    let _ = frames.send(last);
}

fn serialize(value: &impl serde::Serialize) -> Arc<str> {
    serde_json::to_string(value)
        .unwrap_or_else(|_| r#"{"errors":[{"message":"the result could not be serialized","extensions":{"code":"INTERNAL"}}]}"#.to_owned())
        .into()
}
