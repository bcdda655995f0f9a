//! What an attempt's outcome does to its delivery: done, retried on the configured schedule
//! (with ±10% jitter), or failed for good; a 410 Gone also disables the endpoint.

use chrono::Utc;
use entity::webhook_delivery::{ActiveModel, Model};
use entity::webhook_endpoint;
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set};

use super::worker::{FAILED, PENDING, SUCCEEDED};
use crate::config::Config;
use crate::error::Result;

/// How one attempt went.
pub(super) enum Outcome {
    Delivered(u16),
    Gone,
    Failed(Option<u16>, String),
}

/// Writes the attempt's outcome into its delivery (and endpoint), in the caller's transaction.
pub(super) async fn record<C: ConnectionTrait>(
    db: &C,
    config: &Config,
    delivery: Model,
    attempt: i32,
    outcome: Outcome,
) -> Result<()> {
    let endpoint_id = delivery.endpoint_id;
    let mut row: ActiveModel = delivery.into();
    let now = Utc::now();
    row.attempts = Set(attempt);
    row.last_attempt_at = Set(Some(now));
    row.locked_until = Set(None);
    match outcome {
        Outcome::Delivered(status) => {
            row.status = Set(SUCCEEDED.to_owned());
            row.last_status_code = Set(Some(i32::from(status)));
            row.last_error = Set(None);
            row.next_attempt_at = Set(None);
        }
        Outcome::Gone => {
            row.status = Set(FAILED.to_owned());
            row.last_status_code = Set(Some(410));
            row.last_error = Set(Some("410 Gone: the endpoint was disabled".into()));
            row.next_attempt_at = Set(None);
            webhook_endpoint::Entity::update_many()
                .col_expr(webhook_endpoint::Column::Enabled, Expr::value(false))
                .col_expr(
                    webhook_endpoint::Column::DisabledReason,
                    Expr::value("the endpoint answered 410 Gone"),
                )
                .col_expr(webhook_endpoint::Column::UpdatedAt, Expr::value(now))
                .filter(webhook_endpoint::Column::Id.eq(endpoint_id))
                .exec(db)
                .await?;
            tracing::warn!(webhook = %endpoint_id, "endpoint answered 410: disabled");
        }
        Outcome::Failed(status, why) => {
            row.last_status_code = Set(status.map(i32::from));
            row.last_error = Set(Some(why));
            match next_delay(config, attempt) {
                Some(delay) => {
                    row.status = Set(PENDING.to_owned());
                    row.next_attempt_at = Set(Some(now + delay));
                }
                None => {
                    row.status = Set(FAILED.to_owned());
                    row.next_attempt_at = Set(None);
                }
            }
        }
    }
    row.update(db).await?;
    Ok(())
}

/// The wait after attempt `attempt` failed, with ±10% jitter; `None` when it was the last.
fn next_delay(config: &Config, attempt: i32) -> Option<chrono::Duration> {
    let delays = config.webhook_retry_delays()?;
    let base = *delays.get(usize::try_from(attempt).ok()?)?;
    let jitter = 0.9 + (rand::random::<u32>() % 2001) as f64 / 10_000.0;
    chrono::Duration::from_std(base.mul_f64(jitter)).ok()
}
