//! "Last used" bookkeeping for keys and operator tokens, kept off the request path: a request
//! only notes the time in memory; a background task writes the newest time per credential in
//! one batch every few seconds (and once more at shutdown).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, TransactionTrait};
use uuid::Uuid;

pub const FLUSH_INTERVAL: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Credential {
    ApiKey,
    AdminToken,
}

#[derive(Default)]
pub struct LastUsedRecorder {
    pending: Mutex<HashMap<(Credential, Uuid), DateTime<Utc>, crate::FastHasher>>,
}

impl LastUsedRecorder {
    pub fn touch(&self, kind: Credential, id: Uuid) {
        // A poisoned lock only means another request panicked mid-insert; the map is still
        // a valid map, and losing a last-used time is harmless.
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        pending.insert((kind, id), Utc::now());
    }

    /// Writes what has been noted since the last flush.
    pub async fn flush(&self, db: &DatabaseConnection) -> Result<usize, sea_orm::DbErr> {
        let batch: Vec<_> = {
            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            pending.drain().collect()
        };
        if batch.is_empty() {
            return Ok(0);
        }
        let count = batch.len();
        if let Err(err) = write_batch(db, &batch).await {
            // Keep the times for the next flush, unless a newer one arrived meanwhile.
            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            for (key, at) in batch {
                pending.entry(key).or_insert(at);
            }
            return Err(err);
        }
        Ok(count)
    }

    /// Runs until the process ends; the caller spawns it.
    pub async fn run(&self, db: DatabaseConnection) {
        let mut tick = tokio::time::interval(FLUSH_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(err) = self.flush(&db).await {
                tracing::warn!(error = %err, "recording last-used times failed; will retry");
            }
        }
    }
}

async fn write_batch(
    db: &DatabaseConnection,
    batch: &[((Credential, Uuid), DateTime<Utc>)],
) -> Result<(), sea_orm::DbErr> {
    let txn = db.begin().await?;
    for ((kind, id), at) in batch {
        match kind {
            Credential::ApiKey => {
                use entity::api_key::{Column, Entity};
                Entity::update_many()
                    .col_expr(Column::LastUsedAt, Expr::value(*at))
                    .filter(Column::Id.eq(*id))
                    .exec(&txn)
                    .await?;
            }
            Credential::AdminToken => {
                use entity::admin_token::{Column, Entity};
                Entity::update_many()
                    .col_expr(Column::LastUsedAt, Expr::value(*at))
                    .filter(Column::Id.eq(*id))
                    .exec(&txn)
                    .await?;
            }
        }
    }
    txn.commit().await
}
