//! Inserting request-log rows. Under proxy load this runs thousands of times a second, so it
//! skips the query builder: the values go straight into one multi-row `INSERT` per chunk, and
//! chunks only come in a few sizes (512, then powers of two), so each connection prepares each
//! statement once and reuses it.

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DatabaseBackend, Statement, Value};
use uuid::{ContextV7, Timestamp, Uuid};

use super::logs::LogEntry;
use crate::error::Result;

const ERROR_MESSAGE_MAX: usize = 500;
/// 512 rows × 20 values stays well inside SQLite's 32,766 and PostgreSQL's 65,535 bound
/// parameters; each statement is one round trip to the database's thread.
const CHUNK: usize = 512;

/// Column order of `request_logs` as `values` fills it.
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

/// Inserts the rows, `CHUNK` at a time, then the rest in power-of-two chunks.
pub async fn insert(
    db: &impl ConnectionTrait,
    rows: Vec<(Uuid, DateTime<Utc>, LogEntry)>,
) -> Result<()> {
    let backend = db.get_database_backend();
    let mut rows = rows.into_iter().peekable();
    let mut left = rows.len();
    while left > 0 {
        let size = if left >= CHUNK {
            CHUNK
        } else {
            1 << left.ilog2()
        };
        let mut values = Vec::with_capacity(size * COLUMNS.len());
        for (id, at, entry) in rows.by_ref().take(size) {
            push_values(&mut values, id, at, entry);
        }
        db.execute_raw(Statement::from_sql_and_values(
            backend,
            sql(backend, size),
            values,
        ))
        .await?;
        left -= size;
    }
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

fn push_values(values: &mut Vec<Value>, id: Uuid, at: DateTime<Utc>, entry: LogEntry) {
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
    values.extend([
        Value::from(id),
        Value::from(entry.application_id),
        Value::from(entry.request_id),
        Value::from(entry.api_style.as_str()),
        Value::from(truncate(entry.operation, 200)),
        Value::from(entry.http_method),
        Value::from(truncate(entry.path, 2000)),
        Value::from(entry.base_url),
        Value::from(i32::from(entry.status_code)),
        Value::from((200..400).contains(&entry.status_code)),
        Value::from(ms(entry.duration)),
        Value::from(entry.latency.map(ms)),
        Value::from(entry.service_id),
        Value::from(entry.unified_api),
        Value::from(entry.consumer_id),
        Value::from(entry.connection_id),
        Value::from(entry.source_ip),
        Value::from(entry.error_message.map(|m| truncate(m, ERROR_MESSAGE_MAX))),
        Value::from(entry.sandbox),
        Value::from(at),
    ]);
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
        let mut values = Vec::new();
        push_values(
            &mut values,
            Uuid::nil(),
            Utc::now(),
            LogEntry::new(Uuid::nil(), super::super::logs::ApiStyle::Proxy, "x"),
        );
        assert_eq!(values.len(), COLUMNS.len());
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
