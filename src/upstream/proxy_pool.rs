//! The proxy client's idle HTTP/1.1 connections, one pool per thread.
//!
//! hyper-util's pooled client (the one reqwest wraps) spawns a task on every HTTP/1 call to
//! put its connection back once the answer's body is read, and locks its pool and hashes the
//! origin with SipHash on the way out and in. Without those, Keyway's raw proxy served
//! 3.9–5.3% more calls a second at 6.9–7.3% less CPU per call (`bench/proxy_ab.sh`, two runs
//! of 10 pairs), and its request path ran 8% fewer instructions
//! (`bench/proxy_instructions.sh`). Here the connection goes back when the body's last frame
//! is read, by whoever reads it, into that thread's pool. An HTTP worker drives the
//! connections it opened on its own runtime, so each worker keeping its own idle list also
//! keeps every call's I/O on one thread.
//!
//! A sweeper task per thread closes connections idle past the timeout even when no call
//! comes to take them, and forgets origins left with none: a provider with one origin per
//! customer (Salesforce's `instance_url`) would otherwise leave a worker holding sockets and
//! map entries for every customer it ever called.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::uri::{Authority, Scheme};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
// tokio's clock is std's outside tests; tests pause and advance it to see the sweeper work.
use tokio::time::Instant;

use super::proxy_client::OutboundBody;

/// An idle connection older than this is closed rather than reused (servers commonly close
/// theirs after 60–120 s, and a request on a connection the server is closing fails).
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Idle connections kept per origin and thread; past it, the oldest is closed.
const MAX_IDLE_PER_ORIGIN: usize = 256;
/// How often a thread's sweeper looks for expired idle connections while it has any.
const SWEEP_EVERY: Duration = Duration::from_secs(30);

pub type Sender = SendRequest<OutboundBody>;

/// Where a connection leads: scheme, host and port (as the URI spells them; `Authority`
/// compares and hashes the host without regard to case).
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct Origin {
    pub scheme: Scheme,
    pub authority: Authority,
}

struct Idle {
    sender: Sender,
    since: Instant,
}

type Pool = HashMap<Origin, Vec<Idle>, foldhash::fast::RandomState>;

thread_local! {
    static IDLE: RefCell<Pool> = RefCell::new(Pool::default());
    /// Whether this thread's sweeper task is running.
    static SWEEPING: Cell<bool> = const { Cell::new(false) };
}

/// The most recently used open connection to `origin` idle on this thread, if any, and how
/// long it has been idle. It may still be finishing its last answer: `SendRequest::ready`
/// says when it can take the next.
pub fn take(origin: &Origin) -> Option<(Sender, Duration)> {
    IDLE.with(|pool| {
        let mut pool = pool.borrow_mut();
        let idle = pool.get_mut(origin)?;
        while let Some(Idle { sender, since }) = idle.pop() {
            let idle_for = since.elapsed();
            if !sender.is_closed() && idle_for < IDLE_TIMEOUT {
                return Some((sender, idle_for));
            }
        }
        None
    })
}

/// Keeps a connection whose last answer has been read in full, for the next call.
pub fn give(origin: Origin, sender: Sender) {
    if sender.is_closed() {
        return;
    }
    let now = Instant::now();
    IDLE.with(|pool| {
        let mut pool = pool.borrow_mut();
        let idle = pool.entry(origin).or_default();
        let close = oldest_to_close(idle.len(), idle.iter().map(|i| i.since), now);
        idle.drain(..close);
        idle.push(Idle { sender, since: now });
    });
    if !SWEEPING.get() {
        start_sweeper();
    }
}

/// Starts this thread's sweeper, which runs while the thread has idle connections. Only on a
/// single-threaded runtime (each HTTP worker's), where the task runs on the thread whose pool
/// it sweeps; elsewhere expired connections are only dropped when `take` meets them.
fn start_sweeper() {
    use tokio::runtime::{Handle, RuntimeFlavor};
    let Ok(runtime) = Handle::try_current() else {
        return;
    };
    if runtime.runtime_flavor() != RuntimeFlavor::CurrentThread {
        return;
    }
    SWEEPING.set(true);
    runtime.spawn(async {
        // Cleared however the task ends (its runtime shutting down drops it).
        let _running = Sweeping;
        loop {
            tokio::time::sleep(SWEEP_EVERY).await;
            if sweep(Instant::now()) == 0 {
                return;
            }
        }
    });
}

struct Sweeping;

impl Drop for Sweeping {
    fn drop(&mut self) {
        SWEEPING.set(false);
    }
}

/// Closes this thread's idle connections that are past the timeout or closed by their
/// provider (dropping the sender ends its connection), and forgets origins left with none.
/// Returns how many stay idle.
fn sweep(now: Instant) -> usize {
    IDLE.with(|pool| {
        let mut pool = pool.borrow_mut();
        pool.retain(|_, idle| {
            idle.retain(|i| !i.sender.is_closed() && now.duration_since(i.since) < IDLE_TIMEOUT);
            !idle.is_empty()
        });
        pool.values().map(Vec::len).sum()
    })
}

/// How many of the idle connections (`since`: when each became idle, oldest first) to close
/// before one more is kept: those past the timeout, then the oldest beyond the bound.
fn oldest_to_close(len: usize, since: impl Iterator<Item = Instant>, now: Instant) -> usize {
    let stale = since
        .take_while(|&since| now.duration_since(since) >= IDLE_TIMEOUT)
        .count();
    stale + (len - stale + 1).saturating_sub(MAX_IDLE_PER_ORIGIN)
}

/// Connections idle on this thread (tests).
#[cfg(test)]
fn idle_count(origin: &Origin) -> usize {
    IDLE.with(|pool| pool.borrow().get(origin).map_or(0, Vec::len))
}

/// Origins this thread's pool has entries for (tests).
#[cfg(test)]
fn origins_held() -> usize {
    IDLE.with(|pool| pool.borrow().len())
}

/// An answer's body; its connection goes back to the pool once the body has been read to
/// its end. A body dropped before then (an error, a caller gone, an answer too large) takes
/// its connection with it: whatever it had left unread is never mistaken for the next
/// answer.
pub struct PooledBody {
    body: Incoming,
    home: Option<(Origin, Sender)>,
    /// Kept open until the body is done, never pooled.
    _alone: Option<Sender>,
}

impl PooledBody {
    /// `reuse` false: the connection serves this answer only (its request body was streamed:
    /// a provider may answer before reading all of it, and the connection stays busy until
    /// the caller has sent the rest, which the next call must not wait for).
    pub fn new(body: Incoming, origin: Origin, sender: Sender, reuse: bool) -> Self {
        if !reuse {
            return Self {
                body,
                home: None,
                _alone: Some(sender),
            };
        }
        let mut pooled = Self {
            body,
            home: Some((origin, sender)),
            _alone: None,
        };
        // No body at all (HEAD, 204, 304, a zero length): the connection is free already.
        if pooled.body.is_end_stream() {
            pooled.release();
        }
        pooled
    }

    fn release(&mut self) {
        if let Some((origin, sender)) = self.home.take() {
            give(origin, sender);
        }
    }
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.body).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => this.release(),
            Poll::Ready(Some(Ok(_))) if this.body.is_end_stream() => this.release(),
            Poll::Ready(Some(Err(_))) => this.home = None,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
#[path = "proxy_pool_tests.rs"]
mod tests;
