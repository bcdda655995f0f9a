//! Request logs: one row per call through Keyway, in Apideck's log model. Calls hand their
//! entry to `RequestLogWriter::record`, which never waits: rows are inserted in batches by a
//! background task (and what is queued is flushed at shutdown). When the queue is full, entries
//! are dropped and counted rather than slowing the request path. Rows whose insert fails are
//! kept for the next flush, up to the queue's size (see `flush`).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use entity::request_log::{Column, Entity, Model};
use sea_orm::{
    ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Select,
};
use tokio::sync::{Mutex, mpsc};
use uuid::Uuid;

use super::log_rows::{self, Attempt, Row};
use crate::auth::AppScope;
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::service::pagination::{Page, PageRequest};

const QUEUE: usize = 50_000;
/// Each flush is a commit (a WAL sync on SQLite) and a hand-off to the database's thread per
/// statement; at proxy rates 250 ms keeps both rare. A log row is readable at most this late.
const FLUSH_EVERY: Duration = Duration::from_millis(250);

/// Apideck's `api_style`: which surface a call came through.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, async_graphql::Enum)]
pub enum ApiStyle {
    /// Keyway's own API (GraphQL).
    Unify,
    /// Calls to a provider through Keyway (the `proxy` mutation and `/proxy/…`).
    Proxy,
    /// The hosted vault pages.
    Vault,
}

impl ApiStyle {
    pub fn as_str(self) -> &'static str {
        match self {
            ApiStyle::Unify => "unify",
            ApiStyle::Proxy => "proxy",
            ApiStyle::Vault => "vault",
        }
    }
}

/// What a call reports about itself. Never a credential, a query string or a body.
#[derive(Clone, Debug)]
pub struct LogEntry {
    pub application_id: Uuid,
    pub request_id: Option<String>,
    pub api_style: ApiStyle,
    pub operation: String,
    pub http_method: String,
    pub path: String,
    pub base_url: Option<Arc<str>>,
    pub status_code: u16,
    pub error_message: Option<String>,
    pub duration: Duration,
    pub latency: Option<Duration>,
    pub service_id: Option<Arc<str>>,
    pub unified_api: Option<Arc<str>>,
    pub consumer_id: Option<Arc<str>>,
    pub connection_id: Option<Uuid>,
    pub source_ip: Option<String>,
    pub sandbox: bool,
}

impl LogEntry {
    pub fn new(application_id: Uuid, api_style: ApiStyle, operation: impl Into<String>) -> Self {
        Self {
            application_id,
            request_id: None,
            api_style,
            operation: operation.into(),
            http_method: String::new(),
            path: String::new(),
            base_url: None,
            status_code: 0,
            error_message: None,
            duration: Duration::ZERO,
            latency: None,
            service_id: None,
            unified_api: None,
            consumer_id: None,
            connection_id: None,
            source_ip: None,
            sandbox: false,
        }
    }
}

pub struct RequestLogWriter {
    queue: mpsc::Sender<(DateTime<Utc>, LogEntry)>,
    pending: Mutex<Pending>,
    /// Counts the calls as their entries leave the queue, and the rows written and dropped.
    metrics: Arc<Metrics>,
}

/// The writer's side: the queued entries, and the clock of their ids (which keeps ids
/// increasing across flushes even when two entries share a millisecond).
struct Pending {
    entries: mpsc::Receiver<(DateTime<Utc>, LogEntry)>,
    ids: uuid::ContextV7,
    /// Rows whose insert failed, oldest first: written again before anything newer, at most
    /// `QUEUE` of them.
    held: Vec<Row>,
    /// Flushes in a row in which the held rows failed while newer ones went in.
    held_refused: u32,
}

impl RequestLogWriter {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        let (queue, pending) = mpsc::channel(QUEUE);
        Self {
            queue,
            pending: Mutex::new(Pending {
                entries: pending,
                ids: uuid::ContextV7::new(),
                held: Vec::new(),
                held_refused: 0,
            }),
            metrics,
        }
    }

    /// Queues an entry; never waits.
    pub fn record(&self, entry: LogEntry) {
        if self.queue.try_send((Utc::now(), entry)).is_err() {
            self.count_dropped(1, "request log queue full; entries dropped");
        }
    }

    fn count_dropped(&self, rows: u64, why: &'static str) {
        let counter = &self.metrics.request_logs_dropped;
        let before = counter.get();
        counter.inc_by(rows);
        let dropped = before + rows;
        // Said once per doubling, not once per entry (two threads dropping at once may both
        // say it: harmless).
        if before == 0 || dropped.ilog2() > before.ilog2() {
            tracing::warn!(dropped, "{why}");
        }
    }

    /// Entries lost since start: queue full, or held rows given up on.
    pub fn dropped(&self) -> u64 {
        self.metrics.request_logs_dropped.get()
    }

    /// Forever: every `FLUSH_EVERY`, insert what is queued, in batches. The queue is drained
    /// on a timer, never awaited: a call that queues an entry wakes no task (no cross-thread
    /// wake-up on the request path). Rows past retention are deleted by `purge`, from
    /// `service::housekeeping`: never from here, where a long purge would hold up the flushes.
    pub async fn run(&self, db: DatabaseConnection) {
        let mut tick = tokio::time::interval(FLUSH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            tick.tick().await;
            // A database that is down fails every tick: say so when it starts and ends.
            match self.flush(&db).await {
                Err(err) if !failing => {
                    failing = true;
                    err.log();
                }
                Err(_) => {}
                Ok(()) if failing => {
                    failing = false;
                    tracing::info!("request logs are being written again");
                }
                Ok(()) => {}
            }
        }
    }

    /// Writes everything queued now (also at shutdown, and in tests). Rows whose insert fails
    /// are held and written first by the next flush, so a database that is briefly away
    /// loses nothing. Held rows go in their own statement: when they keep failing while newer
    /// rows go in (`HELD_REFUSALS` flushes in a row), one of them is refused whatever the
    /// database's state, and they are dropped so that logging goes on.
    pub async fn flush(&self, db: &DatabaseConnection) -> Result<()> {
        let mut pending = self.pending.lock().await;
        let pending = &mut *pending;
        let mut fresh = Vec::with_capacity(pending.entries.len());
        while let Ok((at, entry)) = pending.entries.try_recv() {
            fresh.push((log_rows::id_at(&pending.ids, at), at, entry));
        }
        self.metrics
            .observe_calls(fresh.iter().map(|(_, _, entry)| entry));
        let held = std::mem::take(&mut pending.held);
        let held_result = write(db, &held, Attempt::Again).await;
        let fresh_result = write(db, &fresh, Attempt::First).await;
        let written = |rows: &[Row], result: &Result<()>| match result {
            Ok(()) => rows.len() as u64,
            Err(_) => 0,
        };
        self.metrics
            .request_logs_written
            .inc_by(written(&held, &held_result) + written(&fresh, &fresh_result));
        match (&held_result, &fresh_result) {
            // The held rows went in: the count of their refusals starts again with the next.
            (Ok(()), fresh_result) => {
                pending.held_refused = 0;
                if fresh_result.is_err() {
                    pending.held = fresh;
                }
            }
            (Err(_), Ok(())) if !fresh.is_empty() => {
                pending.held_refused += 1;
                if pending.held_refused >= HELD_REFUSALS {
                    pending.held_refused = 0;
                    self.count_dropped(
                        held.len() as u64,
                        "request log rows refused by the database; entries dropped",
                    );
                } else {
                    pending.held = held;
                }
            }
            (Err(_), _) => {
                pending.held = held;
                pending.held.extend(fresh);
            }
        }
        let over = pending.held.len().saturating_sub(QUEUE);
        if over > 0 {
            pending.held.drain(..over);
            self.count_dropped(
                over as u64,
                "request log rows held past the queue's size; oldest dropped",
            );
        }
        held_result.and(fresh_result)
    }
}

/// After this many flushes in a row in which held rows fail and newer ones do not, the held
/// rows are dropped.
const HELD_REFUSALS: u32 = 3;

async fn write(db: &DatabaseConnection, rows: &[Row], attempt: Attempt) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    log_rows::insert(db, rows, attempt).await
}

/// Deletes rows older than the retention, an application at a time and in batches
/// (`store::batched_delete`). Ids are UUIDv7, so the smallest id of the cut-off millisecond
/// bounds every older row; rows are keyed by `(application_id, id)`, so naming the
/// application lets the key find its old rows without a scan. Rows of an application that is
/// no longer in `applications` are out of its reach: whatever deletes an application (none
/// does yet) must delete its logs with it.
pub async fn purge(db: &DatabaseConnection, retention_days: u64) -> Result<()> {
    let before = Utc::now() - chrono::Duration::days(retention_days as i64);
    let first_kept = crate::ids::first_v7_at(before);
    let applications: Vec<Uuid> = entity::application::Entity::find()
        .select_only()
        .column(entity::application::Column::Id)
        .into_tuple()
        .all(db)
        .await?;
    for application in applications {
        let old = sea_orm::Condition::all()
            .add(Column::ApplicationId.eq(application))
            .add(Column::Id.lt(first_kept));
        crate::store::batched_delete::delete_where::<Entity>(db, Column::Id, old).await?;
    }
    Ok(())
}

#[derive(Default, Clone)]
pub struct LogFilter {
    pub consumer_id: Option<String>,
    pub service_id: Option<String>,
    pub connection_id: Option<Uuid>,
    pub api_style: Option<ApiStyle>,
    pub status_code: Option<u16>,
    pub success: Option<bool>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

/// The application's rows; for a key restricted to one integration, that service's only.
pub(super) async fn scoped(db: &DatabaseConnection, scope: &AppScope) -> Result<Select<Entity>> {
    let mut query = Entity::find().filter(Column::ApplicationId.eq(scope.application_id()));
    if let Some(only) = scope.integration_id() {
        let integration = crate::service::integrations::get(db, scope, only).await?;
        query = query.filter(Column::ServiceId.eq(integration.service_id));
    }
    Ok(query)
}

/// Newest first.
pub async fn list(
    db: &DatabaseConnection,
    scope: &AppScope,
    filter: &LogFilter,
    page: &PageRequest,
) -> Result<Page<Model>> {
    let mut query = scoped(db, scope).await?;
    if let Some(consumer) = &filter.consumer_id {
        query = query.filter(Column::ConsumerId.eq(consumer.as_str()));
    }
    if let Some(service) = &filter.service_id {
        query = query.filter(Column::ServiceId.eq(service.as_str()));
    }
    if let Some(connection) = filter.connection_id {
        query = query.filter(Column::ConnectionId.eq(connection));
    }
    if let Some(style) = filter.api_style {
        query = query.filter(Column::ApiStyle.eq(style.as_str()));
    }
    if let Some(code) = filter.status_code {
        query = query.filter(Column::StatusCode.eq(i32::from(code)));
    }
    if let Some(success) = filter.success {
        query = query.filter(Column::Success.eq(success));
    }
    if let Some(from) = filter.from {
        query = query.filter(Column::CreatedAt.gte(from));
    }
    if let Some(to) = filter.to {
        query = query.filter(Column::CreatedAt.lt(to));
    }
    if let Some(after) = &page.after {
        let after =
            Uuid::parse_str(after).map_err(|_| Error::bad_input("after is not a valid cursor"))?;
        query = query.filter(Column::Id.lt(after));
    }
    let rows = query
        .order_by_desc(Column::Id)
        .limit(page.fetch_limit())
        .all(db)
        .await?;
    Ok(Page::from_lookahead(rows, page))
}
