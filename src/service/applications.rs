//! Applications (tenants). Creating and changing them is for operators only.

use chrono::Utc;
use entity::application::{ActiveModel, Column, Entity, Model};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect, Set,
};
use uuid::Uuid;

use super::pagination::{Page, PageRequest};
use super::redirect_uri::{MAX_PER_APPLICATION, RedirectUri};
use super::validate;
use crate::auth::{OperatorScope, Tenancy};
use crate::error::{Error, Result};

const NAME_MAX: usize = 200;

pub struct NewApplication {
    pub name: String,
    pub redirect_uris: Vec<String>,
    pub default_redirect_uri: Option<String>,
    pub requests_per_month: Option<i64>,
    pub requests_per_minute: Option<i64>,
}

/// Each field: `None` leaves it; for nullable fields `Some(None)` clears it.
#[derive(Default)]
pub struct ApplicationChanges {
    pub name: Option<String>,
    pub redirect_uris: Option<Vec<String>>,
    pub default_redirect_uri: Option<Option<String>>,
    pub requests_per_month: Option<Option<i64>>,
    pub requests_per_minute: Option<Option<i64>>,
}

pub async fn create(
    db: &DatabaseConnection,
    _: &OperatorScope,
    input: NewApplication,
) -> Result<Model> {
    let name = validate::required_text("name", &input.name, NAME_MAX)?;
    let uris = parse_uris(&input.redirect_uris)?;
    let default = default_uri(input.default_redirect_uri.as_deref(), &uris)?;
    let now = Utc::now();
    let row = ActiveModel {
        id: Set(Uuid::now_v7()),
        name: Set(name),
        redirect_uris: Set(uris_json(&uris)),
        default_redirect_uri: Set(default),
        requests_per_month: Set(validate::optional_limit(
            "requestsPerMonth",
            input.requests_per_month,
        )?),
        requests_per_minute: Set(validate::optional_limit(
            "requestsPerMinute",
            input.requests_per_minute,
        )?),
        created_at: Set(now),
        updated_at: Set(now),
    };
    Ok(row.insert(db).await?)
}

pub async fn update(
    db: &DatabaseConnection,
    _: &OperatorScope,
    id: Uuid,
    changes: ApplicationChanges,
) -> Result<Model> {
    let current = Entity::find_by_id(id)
        .one(db)
        .await?
        .ok_or(Error::NotFound)?;
    let uris = match &changes.redirect_uris {
        Some(list) => parse_uris(list)?,
        None => redirect_uris(&current),
    };
    let default = match changes.default_redirect_uri {
        Some(value) => default_uri(value.as_deref(), &uris)?,
        // A kept default must still be allowed after the list changed.
        None => current
            .default_redirect_uri
            .clone()
            .filter(|d| uris.iter().any(|u| u == d)),
    };
    let mut row: ActiveModel = current.into();
    if let Some(name) = changes.name {
        row.name = Set(validate::required_text("name", &name, NAME_MAX)?);
    }
    if let Some(month) = changes.requests_per_month {
        row.requests_per_month = Set(validate::optional_limit("requestsPerMonth", month)?);
    }
    if let Some(minute) = changes.requests_per_minute {
        row.requests_per_minute = Set(validate::optional_limit("requestsPerMinute", minute)?);
    }
    row.redirect_uris = Set(uris_json(&uris));
    row.default_redirect_uri = Set(default);
    row.updated_at = Set(Utc::now());
    Ok(row.update(db).await?)
}

pub async fn get(db: &DatabaseConnection, tenancy: Tenancy, id: Uuid) -> Result<Model> {
    if !tenancy.allows(id) {
        return Err(Error::NotFound);
    }
    Entity::find_by_id(id).one(db).await?.ok_or(Error::NotFound)
}

pub async fn exists(db: &DatabaseConnection, id: Uuid) -> Result<bool> {
    Ok(Entity::find_by_id(id).count(db).await? > 0)
}

/// Operators list every application, newest last, by id (UUIDv7 ids sort by creation).
pub async fn list(
    db: &DatabaseConnection,
    _: &OperatorScope,
    page: &PageRequest,
) -> Result<Page<Model>> {
    let mut query = Entity::find().order_by_asc(Column::Id);
    if let Some(after) = &page.after {
        let after = Uuid::parse_str(after).map_err(|_| Error::bad_input("invalid cursor"))?;
        query = query.filter(Column::Id.gt(after));
    }
    let rows = query.limit(page.fetch_limit()).all(db).await?;
    Ok(Page::from_lookahead(rows, page))
}

pub async fn count(db: &DatabaseConnection, _: &OperatorScope) -> Result<u64> {
    Ok(Entity::find().count(db).await?)
}

/// The allowed redirect URIs of a stored application.
pub fn redirect_uris(app: &Model) -> Vec<String> {
    serde_json::from_value(app.redirect_uris.clone()).unwrap_or_default()
}

fn parse_uris(list: &[String]) -> Result<Vec<String>> {
    if list.len() > MAX_PER_APPLICATION {
        return Err(Error::bad_input(format!(
            "at most {MAX_PER_APPLICATION} redirect URIs are allowed"
        )));
    }
    let mut uris: Vec<String> = Vec::with_capacity(list.len());
    for raw in list {
        let uri = RedirectUri::parse(raw)?;
        if !uris.iter().any(|u| u == uri.as_str()) {
            uris.push(uri.as_str().to_owned());
        }
    }
    Ok(uris)
}

fn default_uri(value: Option<&str>, allowed: &[String]) -> Result<Option<String>> {
    match value {
        None | Some("") => Ok(None),
        Some(v) if allowed.iter().any(|u| u == v) => Ok(Some(v.to_owned())),
        Some(_) => Err(Error::bad_input(
            "defaultRedirectUri must be one of redirectUris",
        )),
    }
}

fn uris_json(uris: &[String]) -> serde_json::Value {
    serde_json::Value::from(uris.to_vec())
}
