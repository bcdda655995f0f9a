//! Listing connections: keyset pages by id (UUIDv7, so creation order) under any mix of
//! filters, each backed by an `(application_id, …, id)` index.

use std::collections::HashMap;

use entity::connection::{Column, Entity, Model};
use sea_orm::sea_query::{Expr, ExprTrait, Func, LikeExpr};
use sea_orm::{
    ColumnTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, Select,
};
use uuid::Uuid;

use super::{ConnectionState, Environment};
use crate::auth::AppScope;
use crate::catalog::Catalog;
use crate::error::{Error, Result};
use crate::service::pagination::{Page, PageRequest};
use crate::service::validate;

#[derive(Default, Clone)]
pub struct ConnectionFilter {
    /// Without a status, tombstones are left out.
    pub status: Option<ConnectionState>,
    pub environment: Option<Environment>,
    pub service_id: Option<String>,
    pub unified_api: Option<String>,
    pub consumer_id: Option<String>,
    /// Case-insensitive substring.
    pub user_email: Option<String>,
    /// Every required setting present.
    pub configured: Option<bool>,
}

pub fn visible(scope: &AppScope, conn: &Model) -> bool {
    conn.application_id == scope.application_id()
        && scope
            .integration_id()
            .is_none_or(|only| conn.integration_id == Some(only))
}

pub async fn list(
    db: &DatabaseConnection,
    catalog: &Catalog,
    scope: &AppScope,
    filter: &ConnectionFilter,
    page: &PageRequest,
) -> Result<Page<Model>> {
    let mut query = filtered(catalog, scope, filter)?.order_by_asc(Column::Id);
    if let Some(after) = &page.after {
        let after =
            Uuid::parse_str(after).map_err(|_| Error::bad_input("after is not a valid cursor"))?;
        query = query.filter(Column::Id.gt(after));
    }
    let rows = query.limit(page.fetch_limit()).all(db).await?;
    Ok(Page::from_lookahead(rows, page))
}

/// The live connections of several consumers in one query (a page of consumers, each asked
/// for its connections), by consumer id, each consumer's in id order; a consumer with none
/// is absent.
pub async fn of_consumers(
    db: &DatabaseConnection,
    catalog: &Catalog,
    scope: &AppScope,
    consumer_ids: &[String],
) -> Result<HashMap<String, Vec<Model>>> {
    let rows = filtered(catalog, scope, &ConnectionFilter::default())?
        .filter(Column::ConsumerId.is_in(consumer_ids.iter().map(String::as_str)))
        .order_by_asc(Column::Id)
        .all(db)
        .await?;
    let mut by_consumer: HashMap<String, Vec<Model>> = HashMap::new();
    for row in rows {
        by_consumer
            .entry(row.consumer_id.clone())
            .or_default()
            .push(row);
    }
    Ok(by_consumer)
}

pub async fn count(
    db: &DatabaseConnection,
    catalog: &Catalog,
    scope: &AppScope,
    filter: &ConnectionFilter,
) -> Result<u64> {
    Ok(filtered(catalog, scope, filter)?.count(db).await?)
}

fn filtered(
    catalog: &Catalog,
    scope: &AppScope,
    filter: &ConnectionFilter,
) -> Result<Select<Entity>> {
    let mut query = Entity::find().filter(Column::ApplicationId.eq(scope.application_id()));
    if let Some(only) = scope.integration_id() {
        query = query.filter(Column::IntegrationId.eq(only));
    }
    query = match filter.status {
        Some(state) => query.filter(Column::State.eq(state.as_str())),
        None => query.filter(Column::State.ne(ConnectionState::Deleted.as_str())),
    };
    if let Some(environment) = filter.environment {
        query = query.filter(Column::Environment.eq(environment.as_str()));
    }
    if let Some(service) = &filter.service_id {
        query = query.filter(Column::ServiceId.eq(service.as_str()));
    }
    if let Some(unified) = &filter.unified_api {
        query = query.filter(Column::ServiceId.is_in(catalog.service_ids_of_unified_api(unified)));
    }
    if let Some(consumer) = &filter.consumer_id {
        query = query.filter(Column::ConsumerId.eq(consumer.as_str()));
    }
    if let Some(email) = validate::optional_text("userEmail", filter.user_email.as_deref(), 320)? {
        let pattern = format!("%{}%", validate::escape_like(&email.to_lowercase()));
        query = query.filter(
            Expr::expr(Func::lower(Expr::col(Column::UserEmail)))
                .like(LikeExpr::new(pattern).escape('\\')),
        );
    }
    if let Some(configured) = filter.configured {
        query = query.filter(Column::Configured.eq(configured));
    }
    Ok(query)
}
