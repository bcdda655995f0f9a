//! Sends queued webhook deliveries, on every replica: a worker claims due deliveries with a
//! lease (a conditional update, so two replicas never send the same attempt at once), signs
//! each per Standard Webhooks, and records the outcome. 2xx is success; anything else
//! (redirects included: never followed) is retried on the configured schedule with ±10%
//! jitter; 410 Gone disables the endpoint (`outcome`). `webhook-id` is the event id on every
//! attempt.
//!
//! The worker does not poll on a short clock: it sleeps until the earliest pending delivery
//! is due (or its claim lapses), and wakes early when deliveries may have been queued: every
//! committed event reaches every replica's event bus, and a redelivery rings `WebhookWake`.
//! `RECHECK` bounds every sleep, for what nobody announced (a notification lost with the
//! listener's connection); `MIN_GAP` keeps a stream of events (most of which queue nothing)
//! from making it look more often than it used to poll, every 100 ms.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use entity::webhook_delivery::{Column, Entity, Model};
use entity::webhook_endpoint;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, Condition, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    TransactionTrait,
};
use serde_json::json;
use tokio::sync::broadcast;
use tokio::time::Instant;
use uuid::Uuid;

use super::outcome::{Outcome, record};
use super::signing::signature_header;
use crate::config::Config;
use crate::error::Result;
use crate::metrics::{Metrics, WebhookOutcome};
use crate::service::events::relay::Published;
use crate::service::keys::KeyStore;

pub const PENDING: &str = "pending";
pub const SUCCEEDED: &str = "succeeded";
pub const FAILED: &str = "failed";
const CLAIM: chrono::Duration = chrono::Duration::seconds(60);
const BATCH: u64 = 64;
/// The longest the worker sleeps without looking, whatever it expects.
const RECHECK: Duration = Duration::from_secs(10);
/// The wait after the database failed the worker, before it tries again.
const BACKOFF: Duration = Duration::from_secs(1);
/// The shortest time between two looks, however many events arrive.
const MIN_GAP: Duration = Duration::from_millis(100);

pub struct WebhookWorker {
    pub db: DatabaseConnection,
    pub keys: Arc<KeyStore>,
    pub http: reqwest::Client,
    pub config: Arc<Config>,
    pub metrics: Arc<Metrics>,
    /// Committed events, from any replica: each may have queued deliveries.
    pub events: broadcast::Receiver<Arc<Published>>,
    pub wake: Arc<WebhookWake>,
}

/// Rung where deliveries are queued without an event (a redelivery), so that this replica's
/// worker sends them now rather than at its next look.
#[derive(Default)]
pub struct WebhookWake(tokio::sync::Notify);

impl WebhookWake {
    pub fn queued(&self) {
        // Holds one wake-up while the worker is busy, so none is lost.
        self.0.notify_one();
    }
}

impl WebhookWorker {
    /// Forever: send what is due, a batch at a time (at once again after a full batch), then
    /// sleep until the next delivery is due or one may have been queued. Claims and outcomes
    /// are written one transaction per batch.
    pub async fn run(mut self) {
        // When the next delivery is due, as last worked out (at most `RECHECK` ahead).
        let mut next_look = Instant::now();
        loop {
            let looked = Instant::now();
            let claimed = match self.send_due().await {
                Ok(claimed) => claimed,
                Err(err) => {
                    err.log();
                    self.sleep(looked + BACKOFF, looked + BACKOFF).await;
                    continue;
                }
            };
            if claimed as u64 == BATCH {
                continue;
            }
            // Only sending something, or reaching the due time, moves the next due time: a
            // look woken by an event that queued nothing for this worker keeps the one it had.
            if claimed > 0 || next_look <= Instant::now() {
                next_look = match self.next_due().await {
                    Ok(next) => Instant::now() + pause_until(next, Utc::now()),
                    Err(err) => {
                        err.log();
                        Instant::now() + BACKOFF
                    }
                };
            }
            self.sleep(next_look, looked + MIN_GAP).await;
        }
    }

    /// Sends what is due; returns how many deliveries it claimed.
    async fn send_due(&self) -> Result<usize> {
        let claimed = self.claim_due().await?;
        let count = claimed.len();
        let outcomes =
            futures_util::future::join_all(claimed.into_iter().map(|d| self.deliver(d))).await;
        if let Err(err) = self.record_all(outcomes).await {
            // The claims lapse and the attempts are made again: at least once.
            err.log();
        }
        Ok(count)
    }

    /// Sleeps until `until`, or until deliveries may have been queued, whichever comes first;
    /// but never wakes before `not_before`, so that under a stream of events the worker looks
    /// at most once per `MIN_GAP`.
    async fn sleep(&mut self, until: Instant, not_before: Instant) {
        tokio::select! {
            _ = tokio::time::sleep_until(until) => {}
            _ = self.wake.0.notified() => {}
            // An event, or word that some were missed: either may have queued deliveries.
            // (A closed bus, at shutdown, would answer at once, forever: it is not heard.)
            _ = self.events.recv(), if !self.events.is_closed() => {}
        }
        tokio::time::sleep_until(not_before).await;
        // One look serves every event that has arrived; those that arrive after this point
        // wake the next sleep.
        while !matches!(
            self.events.try_recv(),
            Err(broadcast::error::TryRecvError::Empty | broadcast::error::TryRecvError::Closed)
        ) {}
    }

    /// When the earliest pending delivery can be claimed: its next attempt's time, or, if
    /// another worker holds it, when that claim lapses. `None` when nothing is pending.
    async fn next_due(&self) -> Result<Option<DateTime<Utc>>> {
        let now = Utc::now();
        let free: Option<Option<DateTime<Utc>>> = Entity::find()
            .select_only()
            .column(Column::NextAttemptAt)
            .filter(Column::Status.eq(PENDING))
            .filter(unclaimed(now))
            .order_by_asc(Column::NextAttemptAt)
            .limit(1)
            .into_tuple()
            .one(&self.db)
            .await?;
        let held: Option<Option<DateTime<Utc>>> = Entity::find()
            .select_only()
            .column(Column::LockedUntil)
            .filter(Column::Status.eq(PENDING))
            .filter(Column::LockedUntil.gte(now))
            .order_by_asc(Column::LockedUntil)
            .limit(1)
            .into_tuple()
            .one(&self.db)
            .await?;
        Ok(free.flatten().into_iter().chain(held.flatten()).min())
    }

    async fn record_all(&self, outcomes: Vec<(Model, i32, Outcome)>) -> Result<()> {
        if outcomes.is_empty() {
            return Ok(());
        }
        let txn = self.db.begin().await?;
        let mut seen = Vec::with_capacity(outcomes.len());
        for (delivery, attempt, outcome) in outcomes {
            seen.push(match outcome {
                Outcome::Delivered(_) => WebhookOutcome::Delivered,
                Outcome::Gone => WebhookOutcome::Gone,
                Outcome::Failed(..) => WebhookOutcome::Failed,
            });
            record(&txn, &self.config, delivery, attempt, outcome).await?;
        }
        txn.commit().await?;
        // Counted once recorded: attempts whose outcome is lost are made again.
        for outcome in seen {
            self.metrics.webhook_attempted(outcome);
        }
        Ok(())
    }

    async fn claim_due(&self) -> Result<Vec<Model>> {
        let now = Utc::now();
        let due: Vec<Uuid> = Entity::find()
            .select_only()
            .column(Column::Id)
            .filter(Column::Status.eq(PENDING))
            .filter(Column::NextAttemptAt.lte(now))
            .filter(unclaimed(now))
            .order_by_asc(Column::NextAttemptAt)
            .limit(BATCH)
            .into_tuple()
            .all(&self.db)
            .await?;
        if due.is_empty() {
            return Ok(Vec::new());
        }
        // One conditional update per row (another replica may claim some first), in one
        // transaction.
        let txn = self.db.begin().await?;
        let mut taken = Vec::with_capacity(due.len());
        for id in due {
            let claimed = Entity::update_many()
                .col_expr(Column::LockedUntil, Expr::value(now + CLAIM))
                .filter(Column::Id.eq(id))
                .filter(Column::Status.eq(PENDING))
                .filter(unclaimed(now))
                .exec(&txn)
                .await?;
            if claimed.rows_affected == 1 {
                taken.push(id);
            }
        }
        let claimed = Entity::find()
            .filter(Column::Id.is_in(taken))
            .all(&txn)
            .await?;
        txn.commit().await?;
        Ok(claimed)
    }

    async fn deliver(&self, delivery: Model) -> (Model, i32, Outcome) {
        let attempt = delivery.attempts + 1;
        let outcome = match self.attempt(&delivery, attempt).await {
            Ok(outcome) => outcome,
            Err(err) => {
                err.log();
                Outcome::Failed(None, "the delivery could not be prepared".into())
            }
        };
        (delivery, attempt, outcome)
    }

    async fn attempt(&self, delivery: &Model, attempt: i32) -> Result<Outcome> {
        let Some(endpoint) = webhook_endpoint::Entity::find_by_id(delivery.endpoint_id)
            .one(&self.db)
            .await?
        else {
            return Ok(Outcome::Failed(None, "the endpoint was deleted".into()));
        };
        if !endpoint.enabled {
            return Ok(Outcome::Failed(None, "the endpoint is disabled".into()));
        }
        let url = url::Url::parse(&endpoint.url)
            .map_err(|_| crate::error::Error::bad_input("invalid endpoint URL"))?;
        if crate::upstream::check_url(&self.config, &url).is_err() {
            return Ok(Outcome::Failed(
                None,
                "the endpoint URL is not allowed".into(),
            ));
        }
        let secrets = super::secrets(&self.keys, &endpoint)?;
        let body = serde_json::to_vec(&json!({
            "type": delivery.event_type,
            "timestamp": delivery.payload.get("occurred_at"),
            "execution_attempt": attempt,
            "data": delivery.payload,
        }))
        .map_err(crate::error::Error::internal)?;
        let id = delivery.event_id.to_string();
        let now = Utc::now();
        let timestamp = now.timestamp();
        let signature = signature_header(&secrets.signing(now), &id, timestamp, &body)?;
        let sent = self
            .http
            .post(url)
            .timeout(Duration::from_secs(self.config.webhook_timeout_secs))
            .header("content-type", "application/json")
            .header("webhook-id", &id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body)
            .send()
            .await;
        Ok(match sent {
            Ok(response) => {
                let status = response.status().as_u16();
                match status {
                    200..=299 => Outcome::Delivered(status),
                    410 => Outcome::Gone,
                    _ => Outcome::Failed(Some(status), format!("the endpoint answered {status}")),
                }
            }
            Err(err) => {
                let err = err.without_url();
                let why = if err.is_timeout() {
                    "the endpoint did not answer in time"
                } else if crate::upstream::refused_address(&err) {
                    "the endpoint's host resolves to a private address"
                } else {
                    "could not reach the endpoint"
                };
                Outcome::Failed(None, why.into())
            }
        })
    }
}

/// Whether a worker may claim a delivery at `now`: nobody holds it, or its claim lapsed.
fn unclaimed(now: DateTime<Utc>) -> Condition {
    Condition::any()
        .add(Column::LockedUntil.is_null())
        .add(Column::LockedUntil.lt(now))
}

/// How long to sleep when the next delivery is due at `next` (never longer than `RECHECK`).
fn pause_until(next: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Duration {
    next.map_or(RECHECK, |at| {
        (at - now).to_std().unwrap_or(Duration::ZERO).min(RECHECK)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sleeps_until_the_next_delivery_is_due_and_never_past_recheck() {
        let now = Utc::now();
        let secs = chrono::Duration::seconds;
        assert_eq!(pause_until(None, now), RECHECK);
        assert_eq!(pause_until(Some(now - secs(5)), now), Duration::ZERO);
        assert_eq!(pause_until(Some(now), now), Duration::ZERO);
        assert_eq!(
            pause_until(Some(now + secs(2)), now),
            Duration::from_secs(2)
        );
        assert_eq!(pause_until(Some(now + secs(3600)), now), RECHECK);
    }
}
