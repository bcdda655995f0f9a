//! Fans committed events out to this replica's subscribers (GraphQL subscriptions) and drops
//! the proxy's cached credentials of connections that changed anywhere; on PostgreSQL it also
//! heeds `Notice`s, which drop every proven key (a revocation) or proxy target (an integration
//! changed) a replica holds.
//!
//! PostgreSQL: `LISTEN` on the channel `record` notifies (PostgreSQL delivers notifications
//! at commit, in commit order, and never for a rolled-back transaction); after the listener
//! reconnects, the events of the gap are read back from the outbox. SQLite: one process writes
//! and its writers are serialised, so reading the outbox past the last id seen sees events in
//! commit order; it is read as soon as a transaction that recorded events commits here
//! (`EventBus::committed`), and every `outbox_poll_ms` (250 ms) in case anything else wrote.
//!
//! Delivery to subscribers is at least once while they are connected: a subscriber that falls
//! more than `CAPACITY` events behind is told so and closed (it resubscribes).

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use entity::event::{Column, Entity, Model};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseBackend, DatabaseConnection, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect,
};
use tokio::sync::broadcast;
use uuid::Uuid;

use crate::service::proxy::CredentialCache;

pub const CHANNEL: &str = "keyway_events";
const CAPACITY: usize = 16_384;
const BATCH: u64 = 500;
/// How far before the last event heard a catch-up reads back: an event carries its writer's
/// clock from before its commit, so one that committed late (or on a replica whose clock is
/// behind) is stamped earlier than it was notified.
const CATCH_UP_MARGIN: chrono::Duration = chrono::Duration::seconds(30);

/// One committed event, shared by every subscriber.
#[derive(Debug)]
pub struct Published {
    pub id: Uuid,
    pub application_id: Uuid,
    pub event_type: String,
    pub connection_id: Option<Uuid>,
    pub consumer_id: Option<String>,
    pub service_id: Option<String>,
    pub payload: serde_json::Value,
    pub occurred_at: DateTime<Utc>,
}

impl From<Model> for Published {
    fn from(m: Model) -> Self {
        Self {
            id: m.id,
            application_id: m.application_id,
            event_type: m.event_type,
            connection_id: m.connection_id,
            consumer_id: m.consumer_id,
            service_id: m.service_id,
            payload: m.payload,
            occurred_at: m.occurred_at,
        }
    }
}

pub struct EventBus {
    sender: broadcast::Sender<Arc<Published>>,
    /// Rung after a commit that recorded events; holds one wake-up if the relay is busy.
    committed: tokio::sync::Notify,
}

impl Default for EventBus {
    fn default() -> Self {
        Self {
            sender: broadcast::channel(CAPACITY).0,
            committed: tokio::sync::Notify::new(),
        }
    }
}

impl EventBus {
    /// A transaction that recorded events has committed in this process: the SQLite relay
    /// reads the outbox now instead of at its next poll. (On PostgreSQL the commit's own
    /// NOTIFY does this.) Called only after the commit, so the read sees the rows.
    pub fn committed(&self) {
        self.committed.notify_one();
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Published>> {
        self.sender.subscribe()
    }

    fn publish(&self, event: Published) {
        // No subscriber is not an error.
        let _ = self.sender.send(Arc::new(event));
    }
}

/// Remembers recently published ids, so an event read twice (a catch-up after a reconnect)
/// is published once.
#[derive(Default)]
struct Recent {
    ids: HashSet<Uuid>,
    order: VecDeque<Uuid>,
}

impl Recent {
    fn first_time(&mut self, id: Uuid) -> bool {
        if !self.ids.insert(id) {
            return false;
        }
        self.order.push_back(id);
        if self.order.len() > 50_000
            && let Some(old) = self.order.pop_front()
        {
            self.ids.remove(&old);
        }
        true
    }
}

/// A notification on `CHANNEL` that is not an event: something every replica caches changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Notice {
    /// A key or token was revoked: proven principals are forgotten.
    Revoked,
    /// An integration changed (its provider definition, or enabled): proxy targets, which
    /// hold what it said, are forgotten.
    IntegrationChanged,
}

impl Notice {
    const ALL: [Notice; 2] = [Notice::Revoked, Notice::IntegrationChanged];

    /// The notification's payload (event ids are UUIDs, so neither is mistaken for one).
    fn payload(self) -> &'static str {
        match self {
            Notice::Revoked => "revoked",
            Notice::IntegrationChanged => "integration-changed",
        }
    }

    fn parse(payload: &str) -> Option<Notice> {
        Notice::ALL.into_iter().find(|n| n.payload() == payload)
    }
}

pub struct Relay {
    pub bus: Arc<EventBus>,
    pub principals: Arc<crate::auth::cache::PrincipalCache>,
    pub cache: Arc<CredentialCache>,
    pub db: DatabaseConnection,
    /// SQLite's poll interval behind the commit wake-up.
    pub poll_every: Duration,
}

impl Relay {
    /// Forever.
    pub async fn run(self) {
        let mut recent = Recent::default();
        match self.db.get_database_backend() {
            DatabaseBackend::Postgres => {
                // Nobody subscribed before the start; a few seconds back is plenty.
                let mut heard = Utc::now() - chrono::Duration::seconds(5);
                loop {
                    if let Err(err) = self.listen(&mut recent, &mut heard).await {
                        tracing::warn!(error = %err, "event listener failed; reconnecting");
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
            _ => self.poll(&mut recent).await,
        }
    }

    fn publish(&self, recent: &mut Recent, event: Model) {
        if !recent.first_time(event.id) {
            return;
        }
        if let Some(connection) = event.connection_id {
            // Changed on any replica: this replica's cached credentials are stale.
            self.cache.forget(connection);
        }
        self.bus.publish(event.into());
    }

    fn heed(&self, notice: Notice) {
        match notice {
            Notice::Revoked => self.principals.forget_all(),
            Notice::IntegrationChanged => self.cache.forget_all(),
        }
    }

    async fn poll(&self, recent: &mut Recent) {
        let mut cursor = latest_id(&self.db).await.unwrap_or_default();
        let mut tick = tokio::time::interval(self.poll_every.max(Duration::from_millis(1)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = self.bus.committed.notified() => {}
            }
            let rows = Entity::find()
                .filter(Column::Id.gt(cursor))
                .order_by_asc(Column::Id)
                .limit(BATCH)
                .all(&self.db)
                .await;
            match rows {
                Ok(rows) => {
                    for event in rows {
                        cursor = event.id;
                        self.publish(recent, event);
                    }
                }
                Err(err) => tracing::warn!(error = %err, "reading the outbox failed"),
            }
        }
    }

    /// Listens until the connection fails. `heard` is the time up to which every committed
    /// event has been heard: it moves only while the listener is known to be connected, so
    /// after an outage of any length the catch-up starts where the last connection left off.
    async fn listen(&self, recent: &mut Recent, heard: &mut DateTime<Utc>) -> anyhow::Result<()> {
        // A listener keeps its connection for as long as it listens: it gets one of its own,
        // made like the pool's, so that it never holds one of the `database_max_connections`
        // every other query shares (with one, it would hold the only one).
        let options = (*self.db.get_postgres_connection_pool().connect_options()).clone();
        let own = sea_orm::sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect_lazy_with(options);
        let mut listener = sea_orm::sqlx::postgres::PgListener::connect_with(&own).await?;
        listener.listen(CHANNEL).await?;
        loop {
            // Whatever commits from here on is notified.
            let listening = Utc::now();
            // Notices sent while nobody listened are not read back, as events are: whatever
            // they would have dropped is dropped now.
            self.heed(Notice::Revoked);
            self.heed(Notice::IntegrationChanged);
            // What committed while nobody listened (start, or a lost connection).
            self.catch_up(recent, *heard - CATCH_UP_MARGIN).await?;
            *heard = (*heard).max(listening);
            loop {
                let Some(first) = listener.try_recv().await? else {
                    // The connection was lost (and is re-established on the next call).
                    break;
                };
                if let Some(notice) = Notice::parse(first.payload()) {
                    self.heed(notice);
                    continue;
                }
                let mut ids = vec![first.payload().to_owned()];
                // Whatever arrived with it is read in the same query.
                while ids.len() < BATCH as usize {
                    let Some(more) = listener.next_buffered() else {
                        break;
                    };
                    if let Some(notice) = Notice::parse(more.payload()) {
                        self.heed(notice);
                        continue;
                    }
                    ids.push(more.payload().to_owned());
                }
                let ids: Vec<Uuid> = ids.iter().filter_map(|i| Uuid::parse_str(i).ok()).collect();
                let mut events = Entity::find()
                    .filter(Column::Id.is_in(ids.clone()))
                    .all(&self.db)
                    .await?;
                // Commit order, as notified.
                events.sort_by_key(|e| ids.iter().position(|i| *i == e.id));
                for event in events {
                    // Notified in commit order: everything committed before it has been heard.
                    // (Never past this replica's own clock, however far ahead the writer's.)
                    *heard = (*heard).max(event.occurred_at.min(Utc::now()));
                    self.publish(recent, event);
                }
            }
        }
    }

    /// Publishes the events recorded since `since` (by the writers' clocks), in id order and a
    /// batch at a time; those already published are skipped by `recent`.
    async fn catch_up(&self, recent: &mut Recent, since: DateTime<Utc>) -> anyhow::Result<()> {
        // Event ids are UUIDv7s, so the key's own order finds them, whatever their number.
        let mut from = Column::Id.gte(crate::ids::first_v7_at(since));
        loop {
            let events = Entity::find()
                .filter(from.clone())
                .order_by_asc(Column::Id)
                .limit(BATCH)
                .all(&self.db)
                .await?;
            let full = events.len() as u64 == BATCH;
            for event in events {
                from = Column::Id.gt(event.id);
                self.publish(recent, event);
            }
            if !full {
                return Ok(());
            }
        }
    }
}

/// Tells the other replicas (PostgreSQL; SQLite has one process). Sent in a transaction, it
/// is delivered when that commits, and never if it rolls back.
pub async fn notify(db: &impl ConnectionTrait, notice: Notice) -> crate::error::Result<()> {
    if db.get_database_backend() == DatabaseBackend::Postgres {
        db.execute_raw(sea_orm::Statement::from_sql_and_values(
            DatabaseBackend::Postgres,
            "SELECT pg_notify($1, $2)",
            [CHANNEL.into(), notice.payload().into()],
        ))
        .await?;
    }
    Ok(())
}

async fn latest_id(db: &DatabaseConnection) -> Option<Uuid> {
    Entity::find()
        .select_only()
        .column(Column::Id)
        .order_by_desc(Column::Id)
        .limit(1)
        .into_tuple()
        .one(db)
        .await
        .ok()
        .flatten()
}
