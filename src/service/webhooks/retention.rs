//! Deleting the delivery history past `webhook_delivery_retention_days`. Only finished
//! deliveries go (succeeded, or failed for good): one still pending, whatever its age (a
//! redelivery of an old one), is kept until it is done, and one redelivered recently is kept
//! for the retention from its last attempt.

use chrono::Utc;
use entity::webhook_delivery::{Column, Entity};
use sea_orm::{ColumnTrait, Condition, DatabaseConnection, EntityTrait, QueryFilter};

use super::worker::PENDING;
use crate::error::Result;

/// Deletes the finished deliveries queued and last attempted more than `retention_days` ago;
/// returns how many. Delivery ids are UUIDv7s made when they were queued, so the key bounds
/// the rows looked at.
pub async fn purge(db: &DatabaseConnection, retention_days: u64) -> Result<u64> {
    let before = Utc::now() - chrono::Duration::days(retention_days as i64);
    let deleted = Entity::delete_many()
        .filter(Column::Id.lt(crate::ids::first_v7_at(before)))
        .filter(Column::Status.ne(PENDING))
        .filter(
            Condition::any()
                .add(Column::LastAttemptAt.is_null())
                .add(Column::LastAttemptAt.lt(before)),
        )
        .exec(db)
        .await?;
    Ok(deleted.rows_affected)
}
