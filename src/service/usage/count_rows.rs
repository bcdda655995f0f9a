//! Adding a flush's calls to each consumer's running totals (`request_counts`), inside the
//! transaction that inserts the flush's log rows, so a total and the rows it counts land
//! together or not at all. A flush of thousands of calls adds to one total per consumer,
//! service and API style it saw.

use std::borrow::Cow;
use std::collections::BTreeMap;

use sea_orm::sqlx;
use uuid::Uuid;

use super::logs::LogEntry;
use crate::error::{Error, Result};

/// `(application, consumer, service or "", api style)`, as stored. Sorted, so concurrent
/// flushes of two replicas lock the same rows in the same order (no deadlock).
type Key<'a> = (Uuid, Cow<'a, str>, Cow<'a, str>, &'static str);

/// Calls per key of the entries that name a consumer (the others count for no one).
pub struct Tally<'a>(BTreeMap<Key<'a>, i64>);

impl<'a> Tally<'a> {
    pub fn of(entries: impl Iterator<Item = &'a LogEntry>) -> Self {
        let mut calls = BTreeMap::new();
        for entry in entries {
            let Some(consumer) = entry.consumer_id.as_deref() else {
                continue;
            };
            // The text the log row holds, so the total and the rows name the same consumer.
            let key = (
                entry.application_id,
                super::log_rows::stored(consumer, usize::MAX),
                super::log_rows::stored(entry.service_id.as_deref().unwrap_or(""), usize::MAX),
                entry.api_style.as_str(),
            );
            *calls.entry(key).or_insert(0) += 1;
        }
        Self(calls)
    }

    /// Multi-row upserts, `CHUNK` keys at a time, then the rest in power-of-two chunks, so
    /// each connection prepares each size once. Each statement is a hand-off to the
    /// database's thread: one per key made a flush of 4,000 consumers' calls 3.6 times dearer
    /// per row than this (`bench/log_insert.rs`).
    pub async fn add_sqlite(&self, tx: &mut sqlx::SqliteConnection) -> Result<()> {
        let mut left = self.0.len();
        let mut keys = self.0.iter();
        while left > 0 {
            let size = if left >= CHUNK {
                CHUNK
            } else {
                1 << left.ilog2()
            };
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sqlite_add(size)));
            for ((application, consumer, service, style), calls) in keys.by_ref().take(size) {
                query = query
                    .bind(*application)
                    .bind(consumer.as_ref())
                    .bind(service.as_ref())
                    .bind(*style)
                    .bind(*calls);
            }
            query.execute(&mut *tx).await.map_err(Error::internal)?;
            left -= size;
        }
        Ok(())
    }

    pub async fn add_postgres(&self, tx: &mut sqlx::PgConnection) -> Result<()> {
        if self.0.is_empty() {
            return Ok(());
        }
        let keys = || self.0.keys();
        sqlx::query(POSTGRES_ADD)
            .bind(keys().map(|k| k.0).collect::<Vec<_>>())
            .bind(keys().map(|k| k.1.as_ref()).collect::<Vec<_>>())
            .bind(keys().map(|k| k.2.as_ref()).collect::<Vec<_>>())
            .bind(keys().map(|k| k.3).collect::<Vec<_>>())
            .bind(self.0.values().copied().collect::<Vec<_>>())
            .execute(&mut *tx)
            .await
            .map_err(Error::internal)?;
        Ok(())
    }
}

/// Keys per SQLite statement (5 values each).
const CHUNK: usize = 512;

fn sqlite_add(keys: usize) -> String {
    let mut sql = String::from(
        "INSERT INTO request_counts \
         (application_id, consumer_id, service_id, api_style, calls) VALUES ",
    );
    sql.push_str(&vec!["(?, ?, ?, ?, ?)"; keys].join(", "));
    sql.push_str(
        " ON CONFLICT (application_id, consumer_id, service_id, api_style) \
         DO UPDATE SET calls = request_counts.calls + excluded.calls",
    );
    sql
}

/// Keys arrive sorted and unique (PostgreSQL refuses to update one row twice in a statement).
const POSTGRES_ADD: &str = "INSERT INTO request_counts \
     (application_id, consumer_id, service_id, api_style, calls) \
     SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::int8[]) \
     ON CONFLICT (application_id, consumer_id, service_id, api_style) \
     DO UPDATE SET calls = request_counts.calls + EXCLUDED.calls";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::usage::ApiStyle;
    use std::sync::Arc;

    fn entry(consumer: Option<&str>, service: Option<&str>, style: ApiStyle) -> LogEntry {
        let mut entry = LogEntry::new(Uuid::nil(), style, "op");
        entry.consumer_id = consumer.map(Arc::from);
        entry.service_id = service.map(Arc::from);
        entry
    }

    #[test]
    fn statements_have_one_placeholder_per_value() {
        assert_eq!(sqlite_add(3).matches('?').count(), 15);
    }

    #[test]
    fn calls_are_summed_per_consumer_service_and_style() {
        let entries = [
            entry(Some("alice"), Some("crm"), ApiStyle::Proxy),
            entry(Some("alice"), Some("crm"), ApiStyle::Proxy),
            entry(Some("alice"), None, ApiStyle::Unify),
            entry(Some("bob\0"), Some("crm"), ApiStyle::Proxy),
            entry(None, Some("crm"), ApiStyle::Proxy),
        ];
        let tally = Tally::of(entries.iter());
        let totals: Vec<(&str, &str, &str, i64)> = tally
            .0
            .iter()
            .map(|((_, c, s, style), n)| (c.as_ref(), s.as_ref(), *style, *n))
            .collect();
        assert_eq!(
            totals,
            [
                ("alice", "", "unify", 1),
                ("alice", "crm", "proxy", 2),
                ("bob\u{FFFD}", "crm", "proxy", 1),
            ]
        );
    }
}
