//! Integrations: an application's OAuth client (or plain enablement) for one provider. The
//! client secret is sealed and never returned.

use std::sync::Arc;

use chrono::Utc;
use entity::integration::{ActiveModel, Column, Entity, Model};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect, Set, SqlErr, TransactionTrait,
};
use uuid::Uuid;

use super::connections::Deps;
use super::events::relay;
use super::keys::{KeyStore, integration_binding};
use super::pagination::{Page, PageRequest};
use super::validate;
use crate::auth::{AppScope, Tenancy};
use crate::catalog::{self, Catalog, Provider};
use crate::config::Config;
use crate::crypto::Secret;
use crate::error::{Error, Result};

const CLIENT_ID_MAX: usize = 512;
const CLIENT_SECRET_MAX: usize = 4096;
const MAX_SCOPES: usize = 100;

pub struct NewIntegration {
    pub service_id: String,
    pub client_id: Option<String>,
    pub client_secret: Option<Secret>,
    /// `None`: the provider's default scopes.
    pub scopes: Option<Vec<String>>,
    pub enabled: bool,
    pub custom_provider: Option<Provider>,
}

#[derive(Default)]
pub struct IntegrationChanges {
    pub client_id: Option<Option<String>>,
    pub client_secret: Option<Option<Secret>>,
    pub scopes: Option<Vec<String>>,
    pub enabled: Option<bool>,
    pub custom_provider: Option<Provider>,
}

#[derive(Default)]
pub struct IntegrationFilter {
    pub service_id: Option<String>,
    pub enabled: Option<bool>,
}

pub async fn create(deps: &Deps<'_>, scope: &AppScope, input: NewIntegration) -> Result<Model> {
    require_unrestricted(scope)?;
    let Deps {
        db,
        keys,
        catalog,
        config,
        ..
    } = *deps;
    let provider = provider_for_new(
        catalog,
        config,
        &input.service_id,
        input.custom_provider.as_ref(),
    )?;
    let id = Uuid::now_v7();
    let scopes = match input.scopes {
        Some(scopes) => validate_scopes(scopes)?,
        None => provider
            .oauth
            .as_ref()
            .map(|o| o.default_scopes.clone())
            .unwrap_or_default(),
    };
    let now = Utc::now();
    let mut row = ActiveModel {
        id: Set(id),
        application_id: Set(scope.application_id()),
        service_id: Set(input.service_id.clone()),
        client_id: Set(validate::optional_text(
            "clientId",
            input.client_id.as_deref(),
            CLIENT_ID_MAX,
        )?),
        client_secret: Set(None),
        client_secret_key_id: Set(None),
        scopes: Set(serde_json::Value::from(scopes)),
        enabled: Set(input.enabled),
        custom_provider: Set(input.custom_provider.as_ref().map(to_json).transpose()?),
        created_at: Set(now),
        updated_at: Set(now),
    };
    set_secret(
        &mut row,
        keys,
        id,
        scope.application_id(),
        input.client_secret,
    )?;
    match row.insert(db).await {
        Ok(model) => Ok(model),
        Err(err) if matches!(err.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {
            Err(Error::Conflict(format!(
                "an integration for {} exists already",
                input.service_id
            )))
        }
        Err(err) => Err(err.into()),
    }
}

pub async fn update(
    deps: &Deps<'_>,
    scope: &AppScope,
    id: Uuid,
    changes: IntegrationChanges,
) -> Result<Model> {
    require_unrestricted(scope)?;
    let Deps {
        db, keys, config, ..
    } = *deps;
    let current = get(db, scope, id).await?;
    let mut row: ActiveModel = current.clone().into();
    if let Some(client_id) = changes.client_id {
        row.client_id = Set(validate::optional_text(
            "clientId",
            client_id.as_deref(),
            CLIENT_ID_MAX,
        )?);
    }
    if let Some(secret) = changes.client_secret {
        set_secret(&mut row, keys, current.id, current.application_id, secret)?;
    }
    if let Some(scopes) = changes.scopes {
        row.scopes = Set(serde_json::Value::from(validate_scopes(scopes)?));
    }
    if let Some(enabled) = changes.enabled {
        row.enabled = Set(enabled);
    }
    if let Some(custom) = changes.custom_provider {
        if current.custom_provider.is_none() {
            return Err(Error::bad_input(
                "customProvider can only change on an integration created with one",
            ));
        }
        if custom.service_id != current.service_id {
            return Err(Error::bad_input("customProvider.service_id cannot change"));
        }
        catalog::validate_provider(&custom, &insecure_allowed(config)).map_err(Error::BadInput)?;
        row.custom_provider = Set(Some(to_json(&custom)?));
    }
    row.updated_at = Set(Utc::now());
    // Proxy targets hold the provider's definition and are called through only while the
    // integration is enabled: every replica's are dropped once the change commits.
    let txn = db.begin().await?;
    let updated = row.update(&txn).await?;
    relay::notify(&txn, relay::Notice::IntegrationChanged).await?;
    txn.commit().await?;
    deps.cache.forget_all();
    Ok(updated)
}

/// Refused while live connections use it: they would lose their client and provider.
pub async fn delete(db: &DatabaseConnection, scope: &AppScope, id: Uuid) -> Result<Model> {
    require_unrestricted(scope)?;
    let integration = get(db, scope, id).await?;
    let live = entity::connection::Entity::find()
        .filter(entity::connection::Column::IntegrationId.eq(id))
        .filter(entity::connection::Column::DeletedAt.is_null())
        .count(db)
        .await?;
    if live > 0 {
        return Err(Error::Conflict(format!(
            "{live} connection(s) use this integration; delete them first"
        )));
    }
    Entity::delete_by_id(id).exec(db).await?;
    Ok(integration)
}

/// Visible to the scope: its application, and for a restricted key its one integration.
pub async fn get(db: &DatabaseConnection, scope: &AppScope, id: Uuid) -> Result<Model> {
    if hidden_from(scope, id) {
        return Err(Error::NotFound);
    }
    get_in(db, Tenancy::Application(scope.application_id()), id).await
}

pub async fn get_in(db: &DatabaseConnection, tenancy: Tenancy, id: Uuid) -> Result<Model> {
    Entity::find_by_id(id)
        .one(db)
        .await?
        .filter(|i| tenancy.allows(i.application_id))
        .ok_or(Error::NotFound)
}

pub async fn find_by_service(
    db: &DatabaseConnection,
    scope: &AppScope,
    service_id: &str,
) -> Result<Model> {
    let found = Entity::find()
        .filter(Column::ApplicationId.eq(scope.application_id()))
        .filter(Column::ServiceId.eq(service_id))
        .one(db)
        .await?
        .ok_or(Error::NotFound)?;
    if hidden_from(scope, found.id) {
        return Err(Error::NotFound);
    }
    Ok(found)
}

/// A key restricted to one integration sees no other.
fn hidden_from(scope: &AppScope, integration_id: Uuid) -> bool {
    scope
        .integration_id()
        .is_some_and(|only| only != integration_id)
}

pub async fn list(
    db: &DatabaseConnection,
    scope: &AppScope,
    filter: &IntegrationFilter,
    page: &PageRequest,
) -> Result<Page<Model>> {
    let mut query = Entity::find()
        .filter(Column::ApplicationId.eq(scope.application_id()))
        .order_by_asc(Column::ServiceId);
    if let Some(only) = scope.integration_id() {
        query = query.filter(Column::Id.eq(only));
    }
    if let Some(service) = &filter.service_id {
        query = query.filter(Column::ServiceId.eq(service.as_str()));
    }
    if let Some(enabled) = filter.enabled {
        query = query.filter(Column::Enabled.eq(enabled));
    }
    if let Some(after) = &page.after {
        query = query.filter(Column::ServiceId.gt(after.as_str()));
    }
    let rows = query.limit(page.fetch_limit()).all(db).await?;
    Ok(Page::from_lookahead(rows, page))
}

/// Every enabled integration the scope may see, by service id.
pub async fn enabled(db: &DatabaseConnection, scope: &AppScope) -> Result<Vec<Model>> {
    let mut query = Entity::find()
        .filter(Column::ApplicationId.eq(scope.application_id()))
        .filter(Column::Enabled.eq(true))
        .order_by_asc(Column::ServiceId);
    if let Some(only) = scope.integration_id() {
        query = query.filter(Column::Id.eq(only));
    }
    Ok(query.all(db).await?)
}

/// The integration's provider: its own definition, or the catalog's.
pub fn provider(catalog: &Catalog, integration: &Model) -> Result<Arc<Provider>> {
    match &integration.custom_provider {
        Some(json) => serde_json::from_value::<Provider>(json.clone())
            .map(Arc::new)
            .map_err(|e| Error::internal(anyhow::anyhow!("stored custom provider: {e}"))),
        None => catalog
            .get(&integration.service_id)
            .cloned()
            .ok_or_else(|| {
                Error::internal(anyhow::anyhow!(
                    "integration {} names {}, which the catalog no longer has",
                    integration.id,
                    integration.service_id
                ))
            }),
    }
}

pub fn scopes(integration: &Model) -> Vec<String> {
    serde_json::from_value(integration.scopes.clone()).unwrap_or_default()
}

/// For the OAuth flow: the decrypted client secret.
pub fn client_secret(keys: &KeyStore, integration: &Model) -> Result<Option<Secret>> {
    let Some(sealed) = &integration.client_secret else {
        return Ok(None);
    };
    let plain = keys.open_sealed(
        sealed,
        integration_binding(integration.id, integration.application_id),
    )?;
    let text = String::from_utf8(plain.to_vec())
        .map_err(|_| Error::internal(anyhow::anyhow!("client secret is not UTF-8")))?;
    Ok(Some(Secret::new(text)))
}

/// Plain-http provider URLs are accepted only for hosts an operator allowed.
fn insecure_allowed(config: &Config) -> impl Fn(&url::Url) -> bool + '_ {
    |url| {
        url.host_str()
            .is_some_and(|h| config.allows_private_host(h.trim_matches(['[', ']']), url.port()))
    }
}

fn provider_for_new(
    catalog: &Catalog,
    config: &Config,
    service_id: &str,
    custom: Option<&Provider>,
) -> Result<Arc<Provider>> {
    match custom {
        Some(custom) => {
            if custom.service_id != service_id {
                return Err(Error::bad_input(
                    "customProvider.service_id must equal serviceId",
                ));
            }
            if catalog.get(service_id).is_some() {
                return Err(Error::bad_input(format!(
                    "{service_id} is a catalog provider; pick another service id for a custom one"
                )));
            }
            catalog::validate_provider(custom, &insecure_allowed(config))
                .map_err(Error::BadInput)?;
            Ok(Arc::new(custom.clone()))
        }
        None => catalog
            .get(service_id)
            .cloned()
            .ok_or_else(|| Error::bad_input(format!("unknown serviceId {service_id:?}"))),
    }
}

fn set_secret(
    row: &mut ActiveModel,
    keys: &KeyStore,
    id: Uuid,
    application_id: Uuid,
    secret: Option<Secret>,
) -> Result<()> {
    match secret {
        Some(secret) if !secret.expose().is_empty() => {
            if secret.expose().len() > CLIENT_SECRET_MAX {
                return Err(Error::bad_input("clientSecret is too long"));
            }
            let (sealed, key_id) = keys.seal(
                secret.expose().as_bytes(),
                integration_binding(id, application_id),
            )?;
            row.client_secret = Set(Some(sealed));
            row.client_secret_key_id = Set(Some(key_id));
        }
        _ => {
            row.client_secret = Set(None);
            row.client_secret_key_id = Set(None);
        }
    }
    Ok(())
}

fn validate_scopes(scopes: Vec<String>) -> Result<Vec<String>> {
    if scopes.len() > MAX_SCOPES {
        return Err(Error::bad_input(format!("at most {MAX_SCOPES} scopes")));
    }
    let mut out: Vec<String> = Vec::new();
    for scope in scopes {
        let scope = validate::required_text("scopes[]", &scope, 256)?;
        if scope.contains(char::is_whitespace) {
            return Err(Error::bad_input("a scope must not contain spaces"));
        }
        if !out.contains(&scope) {
            out.push(scope);
        }
    }
    Ok(out)
}

fn to_json(provider: &Provider) -> Result<serde_json::Value> {
    serde_json::to_value(provider).map_err(Error::internal)
}

fn require_unrestricted(scope: &AppScope) -> Result<()> {
    if scope.integration_id().is_some() {
        return Err(Error::Forbidden(
            "a key restricted to one integration cannot manage integrations",
        ));
    }
    Ok(())
}
