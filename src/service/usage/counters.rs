//! Request counters in fixed windows (a minute, a calendar month), shared across replicas.
//!
//! Counting happens in memory, so a request never waits on the database. Every second each
//! replica adds what it counted to `usage_counters` (one upsert per key) and reads back the
//! total, which all replicas' counts are in. A replica therefore sees the others' requests
//! within about a second: limits are exact on one replica and may be overshot across several
//! by what the others counted in that second.

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, Datelike, TimeZone, Utc};
use sea_orm::{ConnectionTrait, DatabaseBackend, DatabaseConnection, Statement};

use crate::error::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Window {
    Minute,
    Month,
}

impl Window {
    /// Start and end (Unix seconds) of the window holding `now`.
    pub fn bounds(self, now: DateTime<Utc>) -> (i64, i64) {
        match self {
            Window::Minute => {
                let start = now.timestamp() - now.timestamp().rem_euclid(60);
                (start, start + 60)
            }
            Window::Month => {
                let start = month_start(now.year(), now.month());
                let (y, m) = if now.month() == 12 {
                    (now.year() + 1, 1)
                } else {
                    (now.year(), now.month() + 1)
                };
                (start, month_start(y, m))
            }
        }
    }
}

fn month_start(year: i32, month: u32) -> i64 {
    Utc.with_ymd_and_hms(year, month, 1, 0, 0, 0)
        .single()
        .map_or(0, |t| t.timestamp())
}

#[derive(Default)]
struct Counter {
    /// The shared total as last read back (every replica's counts, ours included).
    synced: i64,
    /// Counted here and not yet added to the shared row.
    pending: i64,
    window_end: i64,
}

#[derive(Default)]
pub struct UsageCounters {
    counters: Mutex<HashMap<(String, i64), Counter>>,
}

impl UsageCounters {
    /// Counts `cost` against `limit` for `key` in the current `window`, or refuses with the
    /// seconds until the window ends. Nothing is counted when refused.
    pub fn take(&self, key: &str, window: Window, limit: i64, cost: i64) -> Result<()> {
        let now = Utc::now();
        let (start, end) = window.bounds(now);
        let mut counters = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        let counter = counters
            .entry((key.to_owned(), start))
            .or_insert_with(|| Counter {
                window_end: end,
                ..Counter::default()
            });
        if counter.synced + counter.pending + cost > limit {
            return Err(Error::RateLimited {
                retry_after_secs: (end - now.timestamp()).max(1) as u64,
            });
        }
        counter.pending += cost;
        Ok(())
    }

    /// As `take`, but a key this replica has not counted in this window yet starts from the
    /// shared total (one read per key and window), so a fresh replica does not start at zero.
    pub async fn take_shared(
        &self,
        db: &DatabaseConnection,
        key: &str,
        window: Window,
        limit: i64,
        cost: i64,
    ) -> Result<()> {
        let (start, end) = window.bounds(Utc::now());
        let known = {
            let counters = self.counters.lock().unwrap_or_else(|p| p.into_inner());
            counters.contains_key(&(key.to_owned(), start))
        };
        if !known {
            // Boxed, once per window: inline, the database future would make every counted
            // call's future as large.
            let total = Box::pin(add(db, key, start, 0)).await?;
            let mut counters = self.counters.lock().unwrap_or_else(|p| p.into_inner());
            let counter = counters
                .entry((key.to_owned(), start))
                .or_insert_with(|| Counter {
                    window_end: end,
                    ..Counter::default()
                });
            counter.synced = counter.synced.max(total);
        }
        self.take(key, window, limit, cost)
    }

    /// What `key` has counted in the current `window`, as `take` judges it (the shared total
    /// as last synced, and what this replica counted since), and when the window ends. A
    /// replica that has not counted `key` in this window reads the shared total. Other
    /// replicas' counts are in it within about a second, as they are for the limits.
    pub async fn used(
        &self,
        db: &DatabaseConnection,
        key: &str,
        window: Window,
    ) -> Result<(i64, DateTime<Utc>)> {
        let (start, end) = window.bounds(Utc::now());
        let local = {
            let counters = self.counters.lock().unwrap_or_else(|p| p.into_inner());
            counters
                .get(&(key.to_owned(), start))
                .map(|c| c.synced + c.pending)
        };
        let used = match local {
            Some(used) => used,
            None => read(db, key, start).await?,
        };
        let end = DateTime::from_timestamp(end, 0).unwrap_or_default();
        Ok((used, end))
    }

    /// Takes back one count `take` made in the current window.
    pub fn give_back(&self, key: &str, window: Window) {
        let (start, _) = window.bounds(Utc::now());
        let mut counters = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(counter) = counters.get_mut(&(key.to_owned(), start)) {
            counter.pending -= 1;
        }
    }

    /// Adds what this replica counted to the shared rows and reads the totals back; drops
    /// counters of windows that have ended. Counts that fail to be written stay pending.
    pub async fn sync(&self, db: &DatabaseConnection) -> Result<()> {
        let now = Utc::now().timestamp();
        let work: Vec<((String, i64), i64)> = {
            let mut counters = self.counters.lock().unwrap_or_else(|p| p.into_inner());
            counters.retain(|_, c| c.window_end > now || c.pending > 0);
            counters
                .iter()
                .map(|(k, c)| (k.clone(), c.pending))
                .collect()
        };
        for ((key, start), delta) in work {
            let total = add(db, &key, start, delta).await?;
            let mut counters = self.counters.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(counter) = counters.get_mut(&(key, start)) {
                counter.pending -= delta;
                counter.synced = total;
            }
        }
        Ok(())
    }

    /// Forever: sync every second, and delete ended windows from the table now and then.
    pub async fn run(&self, db: DatabaseConnection) {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut rounds: u64 = 0;
        loop {
            tick.tick().await;
            if let Err(err) = self.sync(&db).await {
                err.log();
            }
            rounds += 1;
            if rounds.is_multiple_of(600)
                && let Err(err) = purge(&db).await
            {
                err.log();
            }
        }
    }
}

/// Adds `delta` to the shared counter and returns its new total.
async fn add(db: &DatabaseConnection, key: &str, start: i64, delta: i64) -> Result<i64> {
    let backend = db.get_database_backend();
    let sql = match backend {
        DatabaseBackend::Postgres => {
            "INSERT INTO usage_counters (key, window_start, count) VALUES ($1, $2, $3) \
             ON CONFLICT (key, window_start) \
             DO UPDATE SET count = usage_counters.count + excluded.count RETURNING count"
        }
        _ => {
            "INSERT INTO usage_counters (key, window_start, count) VALUES (?, ?, ?) \
             ON CONFLICT (key, window_start) \
             DO UPDATE SET count = usage_counters.count + excluded.count RETURNING count"
        }
    };
    let row = db
        .query_one_raw(Statement::from_sql_and_values(
            backend,
            sql,
            [key.into(), start.into(), delta.into()],
        ))
        .await?
        .ok_or_else(|| Error::internal(anyhow::anyhow!("the counter upsert returned no row")))?;
    Ok(row.try_get_by_index::<i64>(0)?)
}

/// The shared total of one window (0 before its first count).
async fn read(db: &DatabaseConnection, key: &str, start: i64) -> Result<i64> {
    use entity::usage_counter::{Column, Entity};
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    Ok(Entity::find()
        .filter(Column::Key.eq(key))
        .filter(Column::WindowStart.eq(start))
        .one(db)
        .await?
        .map_or(0, |row| row.count))
}

/// Minute windows older than an hour and month windows older than a year are of no use.
async fn purge(db: &DatabaseConnection) -> Result<()> {
    use entity::usage_counter::{Column, Entity};
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    let now = Utc::now().timestamp();
    Entity::delete_many()
        .filter(Column::Key.like("%:minute"))
        .filter(Column::WindowStart.lt(now - 3600))
        .exec(db)
        .await?;
    Entity::delete_many()
        .filter(Column::WindowStart.lt(now - 400 * 86400))
        .exec(db)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_aligned() {
        let t = Utc.with_ymd_and_hms(2026, 12, 31, 23, 59, 30).unwrap();
        let (s, e) = Window::Minute.bounds(t);
        assert_eq!((e - s, t.timestamp() - s), (60, 30));
        let (s, e) = Window::Month.bounds(t);
        assert_eq!(
            s,
            Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0)
                .unwrap()
                .timestamp()
        );
        assert_eq!(
            e,
            Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0)
                .unwrap()
                .timestamp()
        );
    }

    #[test]
    fn refuses_past_the_limit_without_counting() {
        let counters = UsageCounters::default();
        for _ in 0..3 {
            counters.take("k", Window::Minute, 3, 1).unwrap();
        }
        let Err(Error::RateLimited { retry_after_secs }) = counters.take("k", Window::Minute, 3, 1)
        else {
            panic!("expected a refusal");
        };
        assert!((1..=60).contains(&retry_after_secs));
        // A cost that does not fit is refused whole.
        assert!(counters.take("j", Window::Minute, 3, 4).is_err());
        counters.take("j", Window::Minute, 3, 3).unwrap();
    }
}
