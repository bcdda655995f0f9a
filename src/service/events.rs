//! The events outbox. Every change to a connection writes its event row in the same
//! transaction, so an event exists exactly when its change committed. Delivery (subscriptions,
//! webhooks) reads this table.

use chrono::Utc;
use entity::connection;
use entity::event::ActiveModel;
use sea_orm::{ActiveModelTrait, ConnectionTrait, Set};
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
    ActiveModel {
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
    Ok(())
}
