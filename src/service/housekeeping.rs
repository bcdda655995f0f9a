//! Deletes what has outlived its use, every 10 minutes: request logs past `log_retention_days`,
//! OAuth flows past their expiry, events past `event_retention_days`, finished webhook
//! deliveries past `webhook_delivery_retention_days`. Apart from the request log's writer, so
//! that a long purge never holds up its flushes. Every replica runs the schedule, but a round
//! runs only while no other replica's is running (`FleetLock`): two replicas purging the same
//! backlog at once would wait on each other's rows and delete them twice.

use std::sync::Arc;
use std::time::Duration;

use sea_orm::DatabaseConnection;

use crate::config::Config;
use crate::error::Result;
use crate::store::fleet_lock::{self, Work};

const EVERY: Duration = Duration::from_secs(600);
/// The first round waits this long: a replica starting has its caches to fill first (and a
/// test's rows are its own to delete).
const FIRST_AFTER: Duration = Duration::from_secs(60);

/// Forever; a failed delete is logged and tried again at the next round.
pub async fn run(db: DatabaseConnection, config: Arc<Config>) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + FIRST_AFTER, EVERY);
    loop {
        tick.tick().await;
        match exclusive_round(&db, &config).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::debug!("housekeeping skipped: another replica's round is running")
            }
            Err(err) => err.log(),
        }
    }
}

/// A `round`, unless another replica's is running: then nothing (false). The next tick
/// tries again.
pub async fn exclusive_round(db: &DatabaseConnection, config: &Config) -> Result<bool> {
    let Some(lock) = fleet_lock::try_lock(db, Work::Housekeeping).await? else {
        return Ok(false);
    };
    round(db, config).await;
    lock.release().await;
    Ok(true)
}

/// One of `run`'s rounds: each purge in turn, whether or not the one before it failed.
pub async fn round(db: &DatabaseConnection, config: &Config) {
    logged(super::usage::logs::purge(db, config.log_retention_days).await);
    logged(super::oauth::purge_expired_flows(db).await);
    logged(super::events::purge(db, config.event_retention_days).await);
    logged(super::webhooks::retention::purge(db, config.webhook_delivery_retention_days).await);
}

/// A failed purge is logged; the others still run.
fn logged<T>(outcome: crate::error::Result<T>) {
    if let Err(err) = outcome {
        err.log();
    }
}
