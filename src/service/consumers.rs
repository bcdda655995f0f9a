//! Consumers: the tenant's end users, named by the tenant's own id. Listed by that id with
//! keyset pagination over the `(application_id, consumer_id)` unique index.

use chrono::Utc;
use entity::consumer::{ActiveModel, Column, Entity, Model};
use sea_orm::sea_query::{Expr, ExprTrait, Func, LikeExpr};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, DatabaseConnection, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect, Select, Set, SqlErr, TransactionTrait,
};
use uuid::Uuid;

use super::pagination::{Page, PageRequest};
use super::validate;
use crate::auth::{AppScope, Tenancy};
use crate::error::{Error, Result};

const CONSUMER_ID_MAX: usize = 255;
const NAME_MAX: usize = 255;
const EMAIL_MAX: usize = 320;
const IMAGE_MAX: usize = 2048;
const SEARCH_MAX: usize = 200;

/// Metadata the tenant tells us about a consumer; `None` leaves a field as it is.
#[derive(Default)]
pub struct ConsumerMetadata {
    pub account_name: Option<String>,
    pub user_name: Option<String>,
    pub email: Option<String>,
    pub image: Option<String>,
}

#[derive(Default)]
pub struct ConsumerFilter {
    /// Case-insensitive substring of the consumer id, names or email.
    pub search: Option<String>,
}

/// Creates the consumer or updates its metadata. Safe under concurrent calls for one id.
pub async fn upsert(
    db: &DatabaseConnection,
    scope: &AppScope,
    consumer_id: &str,
    metadata: ConsumerMetadata,
) -> Result<Model> {
    let consumer_id = validate::required_text("consumerId", consumer_id, CONSUMER_ID_MAX)?;
    let metadata = validated(metadata)?;
    for _ in 0..2 {
        if let Some(existing) = find(db, scope, &consumer_id).await? {
            return update(db, existing, metadata).await;
        }
        let now = Utc::now();
        let row = ActiveModel {
            id: Set(Uuid::now_v7()),
            application_id: Set(scope.application_id()),
            consumer_id: Set(consumer_id.clone()),
            account_name: Set(metadata.account_name.clone()),
            user_name: Set(metadata.user_name.clone()),
            email: Set(metadata.email.clone()),
            image: Set(metadata.image.clone()),
            created_at: Set(now),
            updated_at: Set(now),
        };
        match row.insert(db).await {
            Ok(model) => return Ok(model),
            // Someone created it between our read and our insert: update theirs instead.
            Err(err) if matches!(err.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {
                continue;
            }
            Err(err) => return Err(err.into()),
        }
    }
    Err(Error::Conflict(
        "the consumer changed concurrently; retry".into(),
    ))
}

async fn update(
    db: &DatabaseConnection,
    existing: Model,
    metadata: ConsumerMetadata,
) -> Result<Model> {
    let mut row: ActiveModel = existing.into();
    let mut changed = false;
    for (field, value) in [
        (&mut row.account_name, metadata.account_name),
        (&mut row.user_name, metadata.user_name),
        (&mut row.email, metadata.email),
        (&mut row.image, metadata.image),
    ] {
        if let Some(value) = value {
            *field = Set(Some(value).filter(|v| !v.is_empty()));
            changed = true;
        }
    }
    if changed {
        row.updated_at = Set(Utc::now());
    }
    Ok(row.update(db).await?)
}

pub async fn find(
    db: &DatabaseConnection,
    scope: &AppScope,
    consumer_id: &str,
) -> Result<Option<Model>> {
    Ok(Entity::find()
        .filter(Column::ApplicationId.eq(scope.application_id()))
        .filter(Column::ConsumerId.eq(consumer_id))
        .one(db)
        .await?)
}

pub async fn get(db: &DatabaseConnection, scope: &AppScope, consumer_id: &str) -> Result<Model> {
    find(db, scope, consumer_id).await?.ok_or(Error::NotFound)
}

/// By internal id (global ids), visible only inside the caller's tenancy.
pub async fn get_by_id(db: &DatabaseConnection, tenancy: Tenancy, id: Uuid) -> Result<Model> {
    Entity::find_by_id(id)
        .one(db)
        .await?
        .filter(|c| tenancy.allows(c.application_id))
        .ok_or(Error::NotFound)
}

/// Deletes the consumer. Its connections become tombstones with their credentials wiped, and
/// each emits `connection.deleted`, in the same transaction; its request totals go with it.
pub async fn delete(
    deps: &super::connections::Deps<'_>,
    scope: &AppScope,
    consumer_id: &str,
) -> Result<Model> {
    let consumer = get(deps.db, scope, consumer_id).await?;
    let txn = deps.db.begin().await?;
    let deleted = super::connections::delete_all_of_consumer(&txn, consumer.id).await?;
    Entity::delete_by_id(consumer.id).exec(&txn).await?;
    super::usage::request_counts::forget_consumer_totals(
        &txn,
        consumer.application_id,
        &consumer.consumer_id,
    )
    .await?;
    txn.commit().await?;
    for id in deleted {
        deps.cache.forget(id);
    }
    deps.bus.committed();
    tracing::info!(consumer = %consumer.id, "consumer deleted");
    Ok(consumer)
}

pub async fn list(
    db: &DatabaseConnection,
    scope: &AppScope,
    filter: &ConsumerFilter,
    page: &PageRequest,
) -> Result<Page<Model>> {
    let mut query = filtered(scope, filter)?.order_by_asc(Column::ConsumerId);
    if let Some(after) = &page.after {
        query = query.filter(Column::ConsumerId.gt(after.as_str()));
    }
    let rows = query.limit(page.fetch_limit()).all(db).await?;
    Ok(Page::from_lookahead(rows, page))
}

pub async fn count(
    db: &DatabaseConnection,
    scope: &AppScope,
    filter: &ConsumerFilter,
) -> Result<u64> {
    Ok(filtered(scope, filter)?.count(db).await?)
}

/// The sort key a cursor encodes.
pub fn cursor_key(consumer: &Model) -> &str {
    &consumer.consumer_id
}

fn filtered(scope: &AppScope, filter: &ConsumerFilter) -> Result<Select<Entity>> {
    let mut query = Entity::find().filter(Column::ApplicationId.eq(scope.application_id()));
    if let Some(search) = validate::optional_text("search", filter.search.as_deref(), SEARCH_MAX)? {
        let pattern = format!("%{}%", validate::escape_like(&search.to_lowercase()));
        let mut any = Condition::any();
        for column in [
            Column::ConsumerId,
            Column::AccountName,
            Column::UserName,
            Column::Email,
        ] {
            any = any.add(
                Expr::expr(Func::lower(Expr::col(column)))
                    .like(LikeExpr::new(pattern.clone()).escape('\\')),
            );
        }
        query = query.filter(any);
    }
    Ok(query)
}

fn validated(m: ConsumerMetadata) -> Result<ConsumerMetadata> {
    let text = |field, value: Option<String>, max| -> Result<Option<String>> {
        // Present-but-empty means "clear it"; absent means "leave it".
        match value {
            None => Ok(None),
            Some(v) => Ok(Some(
                validate::optional_text(field, Some(&v), max)?.unwrap_or_default(),
            )),
        }
    };
    let image = text("image", m.image, IMAGE_MAX)?;
    if let Some(image) = image.as_deref().filter(|i| !i.is_empty()) {
        let ok = url::Url::parse(image).is_ok_and(|u| matches!(u.scheme(), "https" | "http"));
        if !ok {
            return Err(Error::bad_input("image must be an http(s) URL"));
        }
    }
    let email = text("email", m.email, EMAIL_MAX)?;
    if email
        .as_deref()
        .is_some_and(|e| !e.is_empty() && !e.contains('@'))
    {
        return Err(Error::bad_input("email is not an email address"));
    }
    Ok(ConsumerMetadata {
        account_name: text("accountName", m.account_name, NAME_MAX)?,
        user_name: text("userName", m.user_name, NAME_MAX)?,
        email,
        image,
    })
}
