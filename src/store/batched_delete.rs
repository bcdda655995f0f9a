//! Deleting many rows a batch at a time. A purge that finds a large backlog (the first one
//! after an upgrade, or after the server was down for a while) would otherwise be one
//! statement holding SQLite's only write lock for seconds, making every other writer wait
//! past its busy timeout, or one long PostgreSQL transaction.

use sea_orm::sea_query::{Order, Query};
use sea_orm::{ColumnTrait, Condition, DatabaseConnection, DbErr, EntityTrait, QueryFilter};

/// Rows per statement: a few milliseconds of writing each.
const BATCH: u64 = 2_000;

/// Deletes the rows of `E` matching `condition`, `BATCH` at a time in the order of `key` (a
/// unique column: the primary key), each batch its own statement; returns how many.
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
        let batch = Query::select()
            .column(key)
            .from(E::default())
            .cond_where(condition.clone())
            .order_by(key, Order::Asc)
            .limit(BATCH)
            .to_owned();
        let deleted = E::delete_many()
            .filter(key.in_subquery(batch))
            .exec(db)
            .await?
            .rows_affected;
        total += deleted;
        if deleted < BATCH {
            return Ok(total);
        }
    }
}
