//! Deleting the delivery history past `webhook_delivery_retention_days`. Only finished
//! deliveries go (succeeded, or failed for good): one still pending, whatever its age (a
//! redelivery of an old one), is kept until it is done, and one redelivered recently is kept
//! for the retention from its last attempt.

use chrono::Utc;
use entity::webhook_delivery::{Column, Entity};
use sea_orm::{ColumnTrait, Condition, DatabaseConnection};

use super::worker::PENDING;
use crate::error::Result;
use crate::store::batched_delete::delete_where;

/// Deletes the finished deliveries queued and last attempted more than `retention_days` ago,
/// in batches; returns how many. Delivery ids are UUIDv7s made when they were queued, so the
/// key bounds the rows looked at.
pub async fn purge(db: &DatabaseConnection, retention_days: u64) -> Result<u64> {
    let before = Utc::now() - chrono::Duration::days(retention_days as i64);
    let finished_long_ago = Condition::all()
        .add(Column::Id.lt(crate::ids::first_v7_at(before)))
        .add(Column::Status.ne(PENDING))
        .add(
            Condition::any()
                .add(Column::LastAttemptAt.is_null())
                .add(Column::LastAttemptAt.lt(before)),
        );
    Ok(delete_where::<Entity>(db, Column::Id, finished_long_ago).await?)
}
