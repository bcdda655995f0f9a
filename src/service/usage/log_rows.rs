//! Inserting request-log rows. Under proxy load this runs thousands of times a second, so it
//! skips the ORM (sea-orm would copy every value once more on the way to sqlx).
//! - SQLite: the values are bound straight into one multi-row `INSERT` per chunk, and chunks
//!   only come in a few sizes (512, then powers of two), so each connection prepares each
//!   statement once and reuses it.
//! - PostgreSQL: one `INSERT … SELECT FROM UNNEST(…)` per flush, one array per column: a
//!   statement of 20 parameters whatever the row count, planned once, where a multi-row
//!   `VALUES` of 10,240 parameters took ~3 times as long per row (`bench/log_insert.rs`).

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use sea_orm::sqlx::{self, Row as _};
use sea_orm::{DatabaseBackend, DatabaseConnection};
use uuid::{ContextV7, Timestamp, Uuid};

use super::count_rows::Tally;
use super::logs::LogEntry;
use crate::error::{Error, Result};

/// Longest stored text of these columns, in bytes (cut at a character boundary).
const OPERATION_MAX: usize = 200;
const PATH_MAX: usize = 2000;
const ERROR_MESSAGE_MAX: usize = 500;
/// The `proxy` mutation logs the method it was given before checking it.
const METHOD_MAX: usize = 32;
/// SQLite's statements: 512 rows × 20 values stays well inside its 32,766 bound parameters;
/// each statement is one round trip to the database's thread.
const CHUNK: usize = 512;

/// The columns of `request_logs` in the order both inserts bind them, each with its
/// PostgreSQL type (for its array parameter).
const COLUMNS: &[(&str, &str)] = &[
    ("id", "uuid"),
    ("application_id", "uuid"),
    ("request_id", "text"),
    ("api_style", "text"),
    ("operation", "text"),
    ("http_method", "text"),
    ("path", "text"),
    ("base_url", "text"),
    ("status_code", "int4"),
    ("success", "bool"),
    ("duration_ms", "float8"),
    ("latency_ms", "float8"),
    ("service_id", "text"),
    ("unified_api", "text"),
    ("consumer_id", "text"),
    ("connection_id", "uuid"),
    ("source_ip", "text"),
    ("error_message", "text"),
    ("sandbox", "bool"),
    ("created_at", "timestamptz"),
];

pub type Row = (Uuid, DateTime<Utc>, LogEntry);

/// Inserts the rows all or none, and adds their calls to the consumers' totals
/// (`count_rows`) in the same transaction: on SQLite `CHUNK` rows at a time, then the rest in
/// power-of-two chunks (one commit, so one sync of the WAL); on PostgreSQL in one statement.
pub async fn insert(db: &DatabaseConnection, rows: &[Row], attempt: Attempt) -> Result<()> {
    // `store::connect` opens every connection from a sqlx pool of its backend.
    match db.get_database_backend() {
        DatabaseBackend::Postgres => {
            insert_postgres(db.get_postgres_connection_pool(), rows, attempt).await
        }
        DatabaseBackend::Sqlite => {
            insert_sqlite(db.get_sqlite_connection_pool(), rows, attempt).await
        }
        _ => Err(Error::internal(anyhow::anyhow!(
            "request logs are stored in SQLite or PostgreSQL only"
        ))),
    }
}

async fn insert_sqlite(pool: &sqlx::SqlitePool, rows: &[Row], attempt: Attempt) -> Result<()> {
    let mut tx = pool.begin().await.map_err(Error::internal)?;
    let all = rows;
    let mut inserted = HashSet::new();
    let mut left = rows.len();
    let mut rows = rows.iter();
    while left > 0 {
        let size = if left >= CHUNK {
            CHUNK
        } else {
            1 << left.ilog2()
        };
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sqlite_insert(size, attempt)));
        for (id, at, entry) in rows.by_ref().take(size) {
            // In `COLUMNS` order.
            query = query
                .bind(*id)
                .bind(entry.application_id)
                .bind(text(entry.request_id.as_deref()))
                .bind(entry.api_style.as_str())
                .bind(stored(&entry.operation, OPERATION_MAX))
                .bind(stored(&entry.http_method, METHOD_MAX))
                .bind(stored(&entry.path, PATH_MAX))
                .bind(shared(&entry.base_url))
                .bind(i32::from(entry.status_code))
                .bind(success(entry.status_code))
                .bind(ms(entry.duration))
                .bind(entry.latency.map(ms))
                .bind(shared(&entry.service_id))
                .bind(shared(&entry.unified_api))
                .bind(shared(&entry.consumer_id))
                .bind(entry.connection_id)
                .bind(text(entry.source_ip.as_deref()))
                .bind(error_message(entry))
                .bind(entry.sandbox)
                .bind(*at);
        }
        run(query, &mut *tx, attempt, &mut inserted).await?;
        left -= size;
    }
    counted(all, attempt, &inserted).add_sqlite(&mut tx).await?;
    tx.commit().await.map_err(Error::internal)?;
    Ok(())
}

/// Runs one insert of log rows; a second attempt's (`RETURNING id`) adds the ids of the rows
/// it did insert to `inserted`.
async fn run<'q, 'c, DB, E>(
    query: sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments>,
    executor: E,
    attempt: Attempt,
    inserted: &mut HashSet<Uuid>,
) -> Result<()>
where
    DB: sqlx::Database,
    E: sqlx::Executor<'c, Database = DB>,
    'q: 'c,
    <DB as sqlx::Database>::Arguments: sqlx::IntoArguments<DB>,
    Uuid: for<'r> sqlx::Decode<'r, DB> + sqlx::Type<DB>,
    for<'s> &'s str: sqlx::ColumnIndex<DB::Row>,
{
    match attempt {
        Attempt::First => {
            query.execute(executor).await.map_err(Error::internal)?;
        }
        Attempt::Again => {
            for row in query.fetch_all(executor).await.map_err(Error::internal)? {
                inserted.insert(row.try_get("id").map_err(Error::internal)?);
            }
        }
    }
    Ok(())
}

/// The calls a flush adds to the consumers' totals: all its rows, or on a second attempt
/// those the database did not have yet (`inserted`; up to a whole queue of held rows, hence
/// a set).
fn counted<'a>(rows: &'a [Row], attempt: Attempt, inserted: &HashSet<Uuid>) -> Tally<'a> {
    let entries = rows.iter().filter(move |(id, ..)| match attempt {
        Attempt::First => true,
        Attempt::Again => inserted.contains(id),
    });
    Tally::of(entries.map(|(_, _, entry)| entry))
}

fn sqlite_insert(rows: usize, attempt: Attempt) -> String {
    let mut sql = format!("INSERT INTO request_logs ({}) VALUES ", column_names());
    let row = format!("({})", vec!["?"; COLUMNS.len()].join(", "));
    sql.push_str(&vec![row; rows].join(", "));
    sql.push_str(attempt.conflicts());
    sql
}

/// Whether rows were offered to the database before.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attempt {
    First,
    /// Their insert seemed to fail (`logs::RequestLogWriter::flush` holds them). If it had in
    /// fact been committed (the answer to the commit was lost), the rows are already there
    /// under the same ids: they are skipped rather than failing the batch again.
    Again,
}

impl Attempt {
    /// A first attempt cannot meet its own (new) ids, and skips the conflict check: on
    /// PostgreSQL it made every fastest flush ~20% dearer per row (`bench/log_insert.rs`).
    fn conflicts(self) -> &'static str {
        match self {
            Attempt::First => "",
            // The ids of the rows it did insert: only those count as new calls.
            Attempt::Again => " ON CONFLICT DO NOTHING RETURNING id",
        }
    }
}

/// One array per column, in `COLUMNS` order, with the column's type.
async fn insert_postgres(pool: &sqlx::PgPool, rows: &[Row], attempt: Attempt) -> Result<()> {
    let entries = || rows.iter().map(|(_, _, entry)| entry);
    let column = |pick: &dyn Fn(&LogEntry) -> Option<&str>| {
        entries().map(|e| text(pick(e))).collect::<Vec<_>>()
    };
    let clipped = |pick: &dyn Fn(&LogEntry) -> &str, max| {
        entries().map(|e| stored(pick(e), max)).collect::<Vec<_>>()
    };
    let sql = format!("{}{}", *POSTGRES_INSERT, attempt.conflicts());
    let query = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(rows.iter().map(|(id, ..)| *id).collect::<Vec<_>>())
        .bind(entries().map(|e| e.application_id).collect::<Vec<_>>())
        .bind(column(&|e| e.request_id.as_deref()))
        .bind(entries().map(|e| e.api_style.as_str()).collect::<Vec<_>>())
        .bind(clipped(&|e| &e.operation, OPERATION_MAX))
        .bind(clipped(&|e| &e.http_method, METHOD_MAX))
        .bind(clipped(&|e| &e.path, PATH_MAX))
        .bind(column(&|e| e.base_url.as_deref()))
        .bind(
            entries()
                .map(|e| i32::from(e.status_code))
                .collect::<Vec<_>>(),
        )
        .bind(
            entries()
                .map(|e| success(e.status_code))
                .collect::<Vec<_>>(),
        )
        .bind(entries().map(|e| ms(e.duration)).collect::<Vec<_>>())
        .bind(entries().map(|e| e.latency.map(ms)).collect::<Vec<_>>())
        .bind(column(&|e| e.service_id.as_deref()))
        .bind(column(&|e| e.unified_api.as_deref()))
        .bind(column(&|e| e.consumer_id.as_deref()))
        .bind(entries().map(|e| e.connection_id).collect::<Vec<_>>())
        .bind(column(&|e| e.source_ip.as_deref()))
        .bind(entries().map(error_message).collect::<Vec<_>>())
        .bind(entries().map(|e| e.sandbox).collect::<Vec<_>>())
        .bind(rows.iter().map(|(_, at, _)| *at).collect::<Vec<_>>());
    let mut tx = pool.begin().await.map_err(Error::internal)?;
    let mut inserted = HashSet::new();
    run(query, &mut *tx, attempt, &mut inserted).await?;
    counted(rows, attempt, &inserted)
        .add_postgres(&mut tx)
        .await?;
    tx.commit().await.map_err(Error::internal)?;
    Ok(())
}

static POSTGRES_INSERT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let arrays: Vec<String> = COLUMNS
        .iter()
        .enumerate()
        .map(|(i, (_, ty))| format!("${}::{ty}[]", i + 1))
        .collect();
    format!(
        "INSERT INTO request_logs ({}) SELECT * FROM UNNEST({})",
        column_names(),
        arrays.join(", ")
    )
});

fn column_names() -> String {
    let names: Vec<&str> = COLUMNS.iter().map(|(name, _)| *name).collect();
    names.join(", ")
}

fn ms(duration: std::time::Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

fn success(status: u16) -> bool {
    (200..400).contains(&status)
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

fn error_message(entry: &LogEntry) -> Option<Cow<'_, str>> {
    Some(stored(entry.error_message.as_deref()?, ERROR_MESSAGE_MAX))
}

/// An optional text column's value, stored whole.
fn text(value: Option<&str>) -> Option<Cow<'_, str>> {
    value.map(|v| stored(v, usize::MAX))
}

/// A shared label as stored (`stored`), still shared when it needs no change: SQLite binds
/// an `Arc<str>` without copying it.
fn shared(value: &Option<Arc<str>>) -> Option<Arc<str>> {
    let value = value.as_ref()?;
    Some(match stored(value, usize::MAX) {
        Cow::Borrowed(_) => value.clone(),
        Cow::Owned(changed) => changed.into(),
    })
}

/// Text as stored: at most `max` bytes, and NUL replaced by U+FFFD. PostgreSQL's text refuses
/// NUL, and one refused row fails its whole batch; callers' own words reach these columns (a
/// `proxy` mutation's path and method, GraphQL arguments, a provider's error text).
pub(super) fn stored(text: &str, max: usize) -> Cow<'_, str> {
    let text = clip(text, max);
    if text.contains('\0') {
        Cow::Owned(text.replace('\0', "\u{FFFD}"))
    } else {
        Cow::Borrowed(text)
    }
}

/// At most `max` bytes of `text`, cut at a character boundary.
fn clip(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_have_one_placeholder_per_value() {
        let sql = sqlite_insert(3, Attempt::First);
        assert_eq!(sql.matches('?').count(), 3 * COLUMNS.len());
        assert!(
            sqlite_insert(3, Attempt::Again).ends_with(") ON CONFLICT DO NOTHING RETURNING id")
        );
        assert!(POSTGRES_INSERT.ends_with(&format!("${}::timestamptz[])", COLUMNS.len())));
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
    fn clipping_keeps_whole_characters() {
        assert_eq!(clip("ééé", 3), "é");
        assert_eq!(clip("abc", 5), "abc");
    }

    #[test]
    fn stored_text_has_no_nul() {
        assert_eq!(stored("a\0b\0", 10), "a\u{FFFD}b\u{FFFD}");
        assert!(matches!(stored("plain", 10), Cow::Borrowed("plain")));
        assert_eq!(stored("ab\0", 2), "ab", "clipped first");
    }
}
