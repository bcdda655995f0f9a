//! The events outbox. Every change to a connection writes its event row in the same
//! transaction, so an event exists exactly when its change committed; the same transaction
//! queues one webhook delivery per interested endpoint and (on PostgreSQL) a `NOTIFY`, which
//! PostgreSQL sends only at commit. `relay` then fans committed events out to this replica's
//! subscribers; a rolled-back change emits nothing anywhere.

pub mod relay;

use chrono::Utc;
use entity::connection;
use entity::event::ActiveModel;
use sea_orm::{ActiveModelTrait, ConnectionTrait, DatabaseBackend, Set, Statement};
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
///
/// Call it after the transaction's own write to the connection, as every caller does: on
/// SQLite that write already holds the database's write lock, so the UUIDv7 id drawn here
/// follows commit order, which the SQLite relay relies on (it reads the outbox past the last
/// id it saw). An id drawn before the lock could commit behind a newer one and be skipped.
pub async fn record<C: ConnectionTrait>(
    db: &C,
    kind: EventType,
    conn: &connection::Model,
) -> Result<()> {
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
    let event = ActiveModel {
        id: Set(id),
        application_id: Set(conn.application_id),
        event_type: Set(kind.as_str().to_owned()),
        connection_id: Set(Some(conn.id)),
        consumer_id: Set(Some(conn.consumer_id.clone())),
        service_id: Set(Some(conn.service_id.clone())),
        payload: Set(payload),
        occurred_at: Set(occurred_at),
    }
    .insert(db)
    .await?;
    crate::service::webhooks::enqueue(db, &event).await?;
    if db.get_database_backend() == DatabaseBackend::Postgres {
        db.execute_raw(Statement::from_sql_and_values(
            DatabaseBackend::Postgres,
            "SELECT pg_notify($1, $2)",
            [relay::CHANNEL.into(), id.to_string().into()],
        ))
        .await?;
    }
    Ok(())
}
