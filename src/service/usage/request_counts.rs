//! A consumer's request counts by API style: all time from the running totals the log writer
//! keeps (`count_rows`), or in a time range from the log rows themselves.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use entity::request_log::Column;
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QuerySelect};
use uuid::Uuid;

use super::logs::scoped;
use crate::auth::AppScope;
use crate::error::Result;

/// Calls of one consumer by API style.
#[derive(Default, Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestCounts {
    pub unify: u64,
    pub proxy: u64,
    pub vault: u64,
}

impl RequestCounts {
    pub fn total(&self) -> u64 {
        self.unify + self.proxy + self.vault
    }

    /// Summed from `(api_style, calls)` pairs, a style possibly more than once.
    fn from_rows(rows: impl IntoIterator<Item = (String, i64)>) -> Self {
        let mut counts = Self::default();
        for (style, calls) in rows {
            let calls = u64::try_from(calls).unwrap_or_default();
            match style.as_str() {
                "unify" => counts.unify += calls,
                "proxy" => counts.proxy += calls,
                "vault" => counts.vault += calls,
                _ => {}
            }
        }
        counts
    }
}

/// A consumer's calls in `[from, to)`, counted from the log rows (so within retention); all
/// time without bounds, read from the running totals (`count_rows`), which keep calls whose
/// rows have been purged.
pub async fn consumer_counts(
    db: &DatabaseConnection,
    scope: &AppScope,
    consumer_id: &str,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
) -> Result<RequestCounts> {
    if from.is_none() && to.is_none() {
        return consumer_totals(db, scope, consumer_id).await;
    }
    let mut query = scoped(db, scope)
        .await?
        .select_only()
        .column(Column::ApiStyle)
        .column_as(Column::Id.count(), "calls")
        .filter(Column::ConsumerId.eq(consumer_id));
    if let Some(from) = from {
        query = query.filter(Column::CreatedAt.gte(from));
    }
    if let Some(to) = to {
        query = query.filter(Column::CreatedAt.lt(to));
    }
    let rows: Vec<(String, i64)> = query
        .group_by(Column::ApiStyle)
        .into_tuple()
        .all(db)
        .await?;
    Ok(RequestCounts::from_rows(rows))
}

/// Forgets a consumer's totals, with the consumer (its log rows stay, until retention). Calls
/// still queued when it goes start a new total under its id.
pub async fn forget_consumer_totals(
    db: &impl sea_orm::ConnectionTrait,
    application_id: Uuid,
    consumer_id: &str,
) -> Result<()> {
    use entity::request_count::{Column, Entity};
    Entity::delete_many()
        .filter(Column::ApplicationId.eq(application_id))
        .filter(Column::ConsumerId.eq(consumer_id))
        .exec(db)
        .await?;
    Ok(())
}

/// A consumer's calls, all time (see `consumers_totals`).
async fn consumer_totals(
    db: &DatabaseConnection,
    scope: &AppScope,
    consumer_id: &str,
) -> Result<RequestCounts> {
    let mut totals = consumers_totals(db, scope, &[consumer_id.to_owned()]).await?;
    Ok(totals.remove(consumer_id).unwrap_or_default())
}

/// Several consumers' calls, all time, in one query (a page of consumers, each asked for its
/// counts): each one's totals by service (one service's, for a key restricted to one
/// integration), summed by API style. A consumer with no calls is absent.
pub async fn consumers_totals(
    db: &DatabaseConnection,
    scope: &AppScope,
    consumer_ids: &[String],
) -> Result<HashMap<String, RequestCounts>> {
    use entity::request_count::{Column, Entity};
    let mut query = Entity::find()
        .filter(Column::ApplicationId.eq(scope.application_id()))
        .filter(Column::ConsumerId.is_in(consumer_ids.iter().map(String::as_str)));
    if let Some(only) = scope.integration_id() {
        let integration = crate::service::integrations::get(db, scope, only).await?;
        query = query.filter(Column::ServiceId.eq(integration.service_id));
    }
    let mut by_consumer: HashMap<String, Vec<(String, i64)>> = HashMap::new();
    for row in query.all(db).await? {
        by_consumer
            .entry(row.consumer_id)
            .or_default()
            .push((row.api_style, row.calls));
    }
    Ok(by_consumer
        .into_iter()
        .map(|(consumer, rows)| (consumer, RequestCounts::from_rows(rows)))
        .collect())
}
