//! Deleting many rows a batch at a time. A purge that finds a large backlog (the first one
//! after an upgrade or a shorter retention, or after the server was down for a while) would
//! otherwise be one statement holding SQLite's only write lock for seconds, making every other
//! writer wait past its busy timeout, or one long PostgreSQL transaction.

use sea_orm::{
    ColumnTrait, Condition, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};
use uuid::Uuid;

/// Rows per statement: on SQLite a batch of log rows holds the write lock for tens of
/// milliseconds (`bench/purge.rs`), which bounds another writer's wait behind a purge.
const BATCH: u64 = 2_000;

/// Deletes the rows of `E` matching `condition`, `BATCH` at a time in the order of `key` (a
/// UUID column the table's key ends with, so that both the look for where a batch ends and
/// the delete up to it are ranges of the key); returns how many.
pub async fn delete_where<E>(
    db: &DatabaseConnection,
    key: E::Column,
    condition: Condition,
) -> Result<u64, DbErr>
where
    E: EntityTrait,
{
    let mut total = 0;
    loop {
        // The last row of a full batch, if there are that many left.
        let last: Option<Uuid> = E::find()
            .select_only()
            .column(key)
            .filter(condition.clone())
            .order_by_asc(key)
            .offset(BATCH - 1)
            .limit(1)
            .into_tuple()
            .one(db)
            .await?;
        let mut batch = Condition::all().add(condition.clone());
        if let Some(last) = last {
            batch = batch.add(key.lte(last));
        }
        total += E::delete_many().filter(batch).exec(db).await?.rows_affected;
        if last.is_none() {
            return Ok(total);
        }
    }
}
