//! Inserting request-log rows. Under proxy load this runs thousands of times a second, so it
//! skips the ORM: the values are bound straight into one multi-row `INSERT` per chunk (sea-orm
//! would copy every value once more on the way to sqlx), and chunks only come in a few sizes
//! (512, then powers of two), so each connection prepares each statement once and reuses it.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use sea_orm::sqlx::{self, Database, Encode, Executor, Type};
use sea_orm::{DatabaseBackend, DatabaseConnection};
use uuid::{ContextV7, Timestamp, Uuid};

use super::logs::LogEntry;
use crate::error::{Error, Result};

const ERROR_MESSAGE_MAX: usize = 500;
/// 512 rows × 20 values stays well inside SQLite's 32,766 and PostgreSQL's 65,535 bound
/// parameters; each statement is one round trip to the database's thread.
const CHUNK: usize = 512;

/// Column order of `request_logs` as `insert_into` binds it.
const COLUMNS: &[&str] = &[
    "id",
    "application_id",
    "request_id",
    "api_style",
    "operation",
    "http_method",
    "path",
    "base_url",
    "status_code",
    "success",
    "duration_ms",
    "latency_ms",
    "service_id",
    "unified_api",
    "consumer_id",
    "connection_id",
    "source_ip",
    "error_message",
    "sandbox",
    "created_at",
];

pub type Row = (Uuid, DateTime<Utc>, LogEntry);

/// Inserts the rows in one transaction (one commit, so one sync of the SQLite WAL), `CHUNK`
/// at a time, then the rest in power-of-two chunks.
pub async fn insert(db: &DatabaseConnection, rows: Vec<Row>) -> Result<()> {
    // `store::connect` opens every connection from a sqlx pool of its backend.
    match db.get_database_backend() {
        DatabaseBackend::Postgres => {
            insert_into(
                db.get_postgres_connection_pool(),
                DatabaseBackend::Postgres,
                rows,
            )
            .await
        }
        DatabaseBackend::Sqlite => {
            insert_into(
                db.get_sqlite_connection_pool(),
                DatabaseBackend::Sqlite,
                rows,
            )
            .await
        }
        _ => Err(Error::internal(anyhow::anyhow!(
            "request logs are stored in SQLite or PostgreSQL only"
        ))),
    }
}

async fn insert_into<DB>(
    pool: &sqlx::Pool<DB>,
    backend: DatabaseBackend,
    rows: Vec<Row>,
) -> Result<()>
where
    DB: Database,
    DB::Arguments: sqlx::IntoArguments<DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    Uuid: for<'t> Encode<'t, DB> + Type<DB>,
    Option<Uuid>: for<'t> Encode<'t, DB> + Type<DB>,
    String: for<'t> Encode<'t, DB> + Type<DB>,
    Option<String>: for<'t> Encode<'t, DB> + Type<DB>,
    Option<Arc<str>>: for<'t> Encode<'t, DB> + Type<DB>,
    &'static str: for<'t> Encode<'t, DB> + Type<DB>,
    i32: for<'t> Encode<'t, DB> + Type<DB>,
    bool: for<'t> Encode<'t, DB> + Type<DB>,
    f64: for<'t> Encode<'t, DB> + Type<DB>,
    Option<f64>: for<'t> Encode<'t, DB> + Type<DB>,
    DateTime<Utc>: for<'t> Encode<'t, DB> + Type<DB>,
{
    let mut tx = pool.begin().await.map_err(Error::internal)?;
    let mut rows = rows.into_iter().peekable();
    let mut left = rows.len();
    while left > 0 {
        let size = if left >= CHUNK {
            CHUNK
        } else {
            1 << left.ilog2()
        };
        let mut query = sqlx::query::<DB>(sqlx::AssertSqlSafe(sql(backend, size)));
        let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
        for (id, at, entry) in rows.by_ref().take(size) {
            // In `COLUMNS` order.
            query = query
                .bind(id)
                .bind(entry.application_id)
                .bind(entry.request_id)
                .bind(entry.api_style.as_str())
                .bind(truncate(entry.operation, 200))
                .bind(entry.http_method)
                .bind(truncate(entry.path, 2000))
                .bind(entry.base_url)
                .bind(i32::from(entry.status_code))
                .bind((200..400).contains(&entry.status_code))
                .bind(ms(entry.duration))
                .bind(entry.latency.map(ms))
                .bind(entry.service_id)
                .bind(entry.unified_api)
                .bind(entry.consumer_id)
                .bind(entry.connection_id)
                .bind(entry.source_ip)
                .bind(entry.error_message.map(|m| truncate(m, ERROR_MESSAGE_MAX)))
                .bind(entry.sandbox)
                .bind(at);
        }
        query.execute(&mut *tx).await.map_err(Error::internal)?;
        left -= size;
    }
    tx.commit().await.map_err(Error::internal)?;
    Ok(())
}

fn sql(backend: DatabaseBackend, rows: usize) -> String {
    let mut sql = format!("INSERT INTO request_logs ({}) VALUES ", COLUMNS.join(", "));
    let mut n = 0;
    for row in 0..rows {
        sql.push_str(if row == 0 { "(" } else { ", (" });
        for column in 0..COLUMNS.len() {
            n += 1;
            if column > 0 {
                sql.push_str(", ");
            }
            match backend {
                DatabaseBackend::Postgres => sql.push_str(&format!("${n}")),
                _ => sql.push('?'),
            }
        }
        sql.push(')');
    }
    sql
}

/// A UUIDv7 of the entry's own time (not the flush's), so that the retention purge, which
/// cuts by id, agrees with `created_at`.
pub fn id_at(ids: &ContextV7, at: DateTime<Utc>) -> Uuid {
    let seconds = u64::try_from(at.timestamp()).unwrap_or(0);
    Uuid::new_v7(Timestamp::from_unix(
        ids,
        seconds,
        at.timestamp_subsec_nanos(),
    ))
}

fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_have_one_placeholder_per_value() {
        let pg = sql(DatabaseBackend::Postgres, 2);
        assert!(pg.ends_with(&format!("${})", 2 * COLUMNS.len())));
        assert_eq!(
            sql(DatabaseBackend::Sqlite, 3).matches('?').count(),
            3 * COLUMNS.len()
        );
    }

    #[test]
    fn ids_carry_the_entry_time_and_keep_increasing_within_a_millisecond() {
        let ids = ContextV7::new();
        let at = DateTime::parse_from_rfc3339("2026-01-02T03:04:05.678Z")
            .unwrap()
            .with_timezone(&Utc);
        let first = id_at(&ids, at);
        let second = id_at(&ids, at);
        assert!(second > first);
        let (seconds, nanos) = first.get_timestamp().unwrap().to_unix();
        assert_eq!((seconds, nanos / 1_000_000), (at.timestamp() as u64, 678));
        // An earlier time after a later one still sorts after it: ids follow queue order.
        assert!(id_at(&ids, at - chrono::Duration::seconds(1)) > second);
    }

    #[test]
    fn truncation_keeps_whole_characters() {
        assert_eq!(truncate("ééé".into(), 3), "é");
        assert_eq!(truncate("abc".into(), 5), "abc");
    }
}
