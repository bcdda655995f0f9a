//! The events outbox. Every change to a connection writes its event row in the same
//! transaction, so an event exists exactly when its change committed; the same transaction
//! queues one webhook delivery per interested endpoint and (on PostgreSQL) a `NOTIFY`, which
//! PostgreSQL sends only at commit. `relay` then fans committed events out to this replica's
//! subscribers; a rolled-back change emits nothing anywhere. Once relayed, an event row is
//! read again only by a replica catching up after losing its database connection (webhook
//! deliveries carry their own copy), so rows past `event_retention_days` are deleted.

pub mod relay;

use chrono::Utc;
use entity::connection;
use entity::event::{ActiveModel, Entity, Model};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, DatabaseBackend, DatabaseConnection,
    EntityTrait, Statement,
};
use serde_json::json;
use uuid::Uuid;

use crate::error::Result;
use crate::ids::{self, NodeType};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Created,
    Updated,
    Callable,
    Refreshed,
    RefreshFailed,
    Invalid,
    Revoked,
    Deleted,
}

impl EventType {
    pub const ALL: [EventType; 8] = [
        EventType::Created,
        EventType::Updated,
        EventType::Callable,
        EventType::Refreshed,
        EventType::RefreshFailed,
        EventType::Invalid,
        EventType::Revoked,
        EventType::Deleted,
    ];

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == text)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Created => "connection.created",
            EventType::Updated => "connection.updated",
            EventType::Callable => "connection.callable",
            EventType::Refreshed => "connection.refreshed",
            EventType::RefreshFailed => "connection.refresh_failed",
            EventType::Invalid => "connection.invalid",
            EventType::Revoked => "connection.revoked",
            EventType::Deleted => "connection.deleted",
        }
    }
}

/// Writes one event about `conn` (as it is after the change). Never includes credentials.
pub async fn record<C: ConnectionTrait>(
    db: &C,
    kind: EventType,
    conn: &connection::Model,
) -> Result<()> {
    record_all(db, &[kind], conn).await
}

/// Writes `kinds`' events about `conn` (as it is after the change), in that order. One
/// change that emits two events (created and callable, say) costs the round trips of one:
/// one insert, one read of the webhook endpoints, one `NOTIFY` statement.
///
/// Call it after the transaction's own write to the connection, as every caller does: on
/// SQLite that write already holds the database's write lock, so the UUIDv7 ids drawn here
/// follow commit order, which the SQLite relay relies on (it reads the outbox past the last
/// id it saw). An id drawn before the lock could commit behind a newer one and be skipped.
pub async fn record_all<C: ConnectionTrait>(
    db: &C,
    kinds: &[EventType],
    conn: &connection::Model,
) -> Result<()> {
    if kinds.is_empty() {
        return Ok(());
    }
    let events: Vec<Model> = kinds.iter().map(|kind| event(*kind, conn)).collect();
    Entity::insert_many(
        events
            .iter()
            .map(|e| ActiveModel::from(e.clone()).reset_all()),
    )
    .exec_without_returning(db)
    .await?;
    crate::service::webhooks::enqueue(db, &events).await?;
    if db.get_database_backend() == DatabaseBackend::Postgres {
        // One statement, one notification per event, sent at commit in this order.
        let calls: Vec<String> = (0..events.len())
            .map(|i| format!("pg_notify($1, ${})", i + 2))
            .collect();
        let mut values = vec![relay::CHANNEL.into()];
        values.extend(events.iter().map(|e| e.id.to_string().into()));
        db.execute_raw(Statement::from_sql_and_values(
            DatabaseBackend::Postgres,
            format!("SELECT {}", calls.join(", ")),
            values,
        ))
        .await?;
    }
    Ok(())
}

/// Deletes the events recorded more than `retention_days` ago, in batches; returns how many.
/// Event ids are UUIDv7s made when the event was, so the key finds them without a scan.
pub async fn purge(db: &DatabaseConnection, retention_days: u64) -> Result<u64> {
    use entity::event::Column;
    let before = Utc::now() - chrono::Duration::days(retention_days as i64);
    let old = Condition::all().add(Column::Id.lt(ids::first_v7_at(before)));
    Ok(crate::store::batched_delete::delete_where::<Entity>(db, Column::Id, old).await?)
}

fn event(kind: EventType, conn: &connection::Model) -> Model {
    let id = Uuid::now_v7();
    let occurred_at = Utc::now();
    let payload = json!({
        "event_id": id,
        "type": kind.as_str(),
        "occurred_at": occurred_at,
        "consumer_id": conn.consumer_id,
        "service_id": conn.service_id,
        "connection": {
            "id": ids::encode(NodeType::Connection, conn.id).0,
            "consumer_id": conn.consumer_id,
            "service_id": conn.service_id,
            "auth_type": conn.auth_type,
            "state": conn.state,
            "environment": conn.environment,
            "enabled": conn.enabled,
            "settings": conn.settings,
            "metadata": conn.metadata,
            "user_email": conn.user_email,
            "created_at": conn.created_at,
            "updated_at": conn.updated_at,
        },
    });
    Model {
        id,
        application_id: conn.application_id,
        event_type: kind.as_str().to_owned(),
        connection_id: Some(conn.id),
        consumer_id: Some(conn.consumer_id.clone()),
        service_id: Some(conn.service_id.clone()),
        payload,
        occurred_at,
    }
}
