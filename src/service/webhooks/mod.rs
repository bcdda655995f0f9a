//! Webhook endpoints and deliveries (SPEC §6). An endpoint's `whsec_` secret is sealed at
//! rest and shown only when created or rotated; a rotation keeps the old secret signing for
//! `ROTATION_OVERLAP` too. Deliveries are queued in the transaction of their event
//! (`enqueue`) and sent by `worker`, on any replica; `retention` deletes finished ones.

mod outcome;
pub mod retention;
pub mod signing;
pub mod worker;

use chrono::Utc;
use entity::webhook_delivery as delivery;
use entity::webhook_endpoint::{ActiveModel, Column, Entity, Model};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait,
    PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, Set,
};
use serde_json::Value;
use uuid::Uuid;

use self::signing::EndpointSecrets;
use super::events::EventType;
use super::keys::{KeyStore, webhook_binding};
use super::pagination::{Page, PageRequest};
use crate::auth::AppScope;
use crate::config::Config;
use crate::error::{Error, Result};

/// How long a rotated-out secret keeps signing.
pub const ROTATION_OVERLAP: chrono::Duration = chrono::Duration::hours(24);
const MAX_ENDPOINTS: u64 = 50;

pub struct NewWebhook {
    pub url: String,
    pub description: Option<String>,
    /// Empty: every event type.
    pub event_types: Vec<String>,
    pub enabled: bool,
}

#[derive(Default)]
pub struct WebhookChanges {
    pub url: Option<String>,
    pub description: Option<Option<String>>,
    pub event_types: Option<Vec<String>>,
    pub enabled: Option<bool>,
    pub rotate_secret: bool,
}

/// An endpoint, and its secret when it was just created or rotated (shown this once).
pub struct WithSecret {
    pub endpoint: Model,
    pub secret: Option<String>,
}

pub async fn create(
    db: &DatabaseConnection,
    keys: &KeyStore,
    config: &Config,
    scope: &AppScope,
    input: NewWebhook,
) -> Result<WithSecret> {
    let count = Entity::find()
        .filter(Column::ApplicationId.eq(scope.application_id()))
        .count(db)
        .await?;
    if count >= MAX_ENDPOINTS {
        return Err(Error::Conflict(format!(
            "an application may have at most {MAX_ENDPOINTS} webhook endpoints"
        )));
    }
    let url = check_url(config, &input.url).await?;
    let event_types = check_types(input.event_types)?;
    let id = Uuid::now_v7();
    let secret = signing::new_secret();
    let (sealed, key_id) = seal(
        keys,
        id,
        scope.application_id(),
        &EndpointSecrets {
            current: secret.clone(),
            previous: None,
            previous_until: None,
        },
    )?;
    let now = Utc::now();
    let endpoint = ActiveModel {
        id: Set(id),
        application_id: Set(scope.application_id()),
        url: Set(url),
        description: Set(description(input.description)?),
        event_types: Set(Value::from(event_types)),
        enabled: Set(input.enabled),
        disabled_reason: Set(None),
        secret: Set(sealed),
        secret_key_id: Set(key_id),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(db)
    .await?;
    tracing::info!(webhook = %endpoint.id, "webhook endpoint created");
    Ok(WithSecret {
        endpoint,
        secret: Some(secret),
    })
}

pub async fn update(
    db: &DatabaseConnection,
    keys: &KeyStore,
    config: &Config,
    scope: &AppScope,
    id: Uuid,
    changes: WebhookChanges,
) -> Result<WithSecret> {
    let current = get(db, scope, id).await?;
    let mut row: ActiveModel = current.clone().into();
    if let Some(url) = changes.url {
        row.url = Set(check_url(config, &url).await?);
    }
    if let Some(text) = changes.description {
        row.description = Set(description(text)?);
    }
    if let Some(types) = changes.event_types {
        row.event_types = Set(Value::from(check_types(types)?));
    }
    if let Some(enabled) = changes.enabled {
        row.enabled = Set(enabled);
        if enabled {
            row.disabled_reason = Set(None);
        }
    }
    let mut shown = None;
    if changes.rotate_secret {
        let old = secrets(keys, &current)?;
        let fresh = signing::new_secret();
        let (sealed, key_id) = seal(
            keys,
            id,
            current.application_id,
            &EndpointSecrets {
                current: fresh.clone(),
                previous: Some(old.current),
                previous_until: Some(Utc::now() + ROTATION_OVERLAP),
            },
        )?;
        row.secret = Set(sealed);
        row.secret_key_id = Set(key_id);
        shown = Some(fresh);
    }
    row.updated_at = Set(Utc::now());
    let endpoint = row.update(db).await?;
    Ok(WithSecret {
        endpoint,
        secret: shown,
    })
}

/// Deletes the endpoint and its deliveries.
pub async fn delete(db: &DatabaseConnection, scope: &AppScope, id: Uuid) -> Result<Model> {
    let endpoint = get(db, scope, id).await?;
    Entity::delete_by_id(id).exec(db).await?;
    Ok(endpoint)
}

pub async fn get(db: &DatabaseConnection, scope: &AppScope, id: Uuid) -> Result<Model> {
    Entity::find_by_id(id)
        .one(db)
        .await?
        .filter(|e| e.application_id == scope.application_id())
        .ok_or(Error::NotFound)
}

/// The application owning an endpoint the tenancy may see.
pub async fn owner(
    db: &DatabaseConnection,
    tenancy: crate::auth::Tenancy,
    id: Uuid,
) -> Result<Uuid> {
    Entity::find_by_id(id)
        .one(db)
        .await?
        .filter(|e| tenancy.allows(e.application_id))
        .map(|e| e.application_id)
        .ok_or(Error::NotFound)
}

/// The application owning a delivery the tenancy may see.
pub async fn delivery_owner(
    db: &DatabaseConnection,
    tenancy: crate::auth::Tenancy,
    id: Uuid,
) -> Result<Uuid> {
    delivery::Entity::find_by_id(id)
        .one(db)
        .await?
        .filter(|d| tenancy.allows(d.application_id))
        .map(|d| d.application_id)
        .ok_or(Error::NotFound)
}

pub async fn list(db: &DatabaseConnection, scope: &AppScope) -> Result<Vec<Model>> {
    Ok(Entity::find()
        .filter(Column::ApplicationId.eq(scope.application_id()))
        .order_by_asc(Column::Id)
        .all(db)
        .await?)
}

/// An endpoint's deliveries, newest first.
pub async fn deliveries(
    db: &DatabaseConnection,
    scope: &AppScope,
    endpoint_id: Uuid,
    page: &PageRequest,
) -> Result<Page<delivery::Model>> {
    get(db, scope, endpoint_id).await?;
    let mut query = delivery::Entity::find()
        .filter(delivery::Column::EndpointId.eq(endpoint_id))
        .order_by_desc(delivery::Column::Id);
    if let Some(after) = &page.after {
        let after =
            Uuid::parse_str(after).map_err(|_| Error::bad_input("after is not a valid cursor"))?;
        query = query.filter(delivery::Column::Id.lt(after));
    }
    let rows = query.limit(page.fetch_limit()).all(db).await?;
    Ok(Page::from_lookahead(rows, page))
}

/// Sends a delivery again, now (same `webhook-id`); its attempts go on counting.
pub async fn redeliver(
    db: &DatabaseConnection,
    scope: &AppScope,
    delivery_id: Uuid,
) -> Result<delivery::Model> {
    let found = delivery::Entity::find_by_id(delivery_id)
        .one(db)
        .await?
        .filter(|d| d.application_id == scope.application_id())
        .ok_or(Error::NotFound)?;
    let mut row: delivery::ActiveModel = found.into();
    row.status = Set(worker::PENDING.to_owned());
    row.next_attempt_at = Set(Some(Utc::now()));
    row.locked_until = Set(None);
    Ok(row.update(db).await?)
}

/// Queues one delivery of each of `events` per enabled endpoint of its application that
/// wants its type: one read of the endpoints, one insert. Runs inside the events'
/// transaction; the events are one application's.
pub async fn enqueue<C: ConnectionTrait>(db: &C, events: &[entity::event::Model]) -> Result<()> {
    let Some(first) = events.first() else {
        return Ok(());
    };
    debug_assert!(
        events
            .iter()
            .all(|e| e.application_id == first.application_id)
    );
    let endpoints = Entity::find()
        .filter(Column::ApplicationId.eq(first.application_id))
        .filter(Column::Enabled.eq(true))
        .all(db)
        .await?;
    let now = Utc::now();
    let rows: Vec<delivery::ActiveModel> = events
        .iter()
        .flat_map(|event| {
            endpoints
                .iter()
                .filter(|e| wants(e, &event.event_type))
                .map(move |e| delivery::ActiveModel {
                    id: Set(Uuid::now_v7()),
                    endpoint_id: Set(e.id),
                    application_id: Set(event.application_id),
                    event_id: Set(event.id),
                    event_type: Set(event.event_type.clone()),
                    payload: Set(event.payload.clone()),
                    status: Set(worker::PENDING.to_owned()),
                    attempts: Set(0),
                    next_attempt_at: Set(Some(now)),
                    locked_until: Set(None),
                    last_status_code: Set(None),
                    last_error: Set(None),
                    last_attempt_at: Set(None),
                    created_at: Set(now),
                })
        })
        .collect();
    if !rows.is_empty() {
        delivery::Entity::insert_many(rows)
            .exec_without_returning(db)
            .await?;
    }
    Ok(())
}

fn wants(endpoint: &Model, event_type: &str) -> bool {
    match endpoint.event_types.as_array() {
        Some(types) if !types.is_empty() => types.iter().any(|t| t.as_str() == Some(event_type)),
        _ => true,
    }
}

pub fn event_types(endpoint: &Model) -> Vec<String> {
    endpoint
        .event_types
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|t| t.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

pub fn secrets(keys: &KeyStore, endpoint: &Model) -> Result<EndpointSecrets> {
    let plain = keys.open_sealed(
        &endpoint.secret,
        webhook_binding(endpoint.id, endpoint.application_id),
    )?;
    serde_json::from_slice(&plain)
        .map_err(|_| Error::internal(anyhow::anyhow!("sealed webhook secrets are not valid JSON")))
}

fn seal(
    keys: &KeyStore,
    id: Uuid,
    application_id: Uuid,
    secrets: &EndpointSecrets,
) -> Result<(Vec<u8>, i32)> {
    let plain = zeroize::Zeroizing::new(serde_json::to_vec(secrets).map_err(Error::internal)?);
    keys.seal(&plain, webhook_binding(id, application_id))
}

fn check_types(types: Vec<String>) -> Result<Vec<String>> {
    let mut checked = Vec::with_capacity(types.len());
    for t in types {
        if EventType::parse(&t).is_none() {
            return Err(Error::bad_input(format!("{t} is not an event type")));
        }
        if !checked.contains(&t) {
            checked.push(t);
        }
    }
    Ok(checked)
}

fn description(text: Option<String>) -> Result<Option<String>> {
    super::validate::optional_text("description", text.as_deref(), 500)
}

/// An endpoint URL: absolute, https (or an operator-allowed local host), no credentials in it,
/// and not a name that resolves to a private address.
async fn check_url(config: &Config, text: &str) -> Result<String> {
    let refuse = |why: &str| Error::bad_input(format!("url refused: {why}"));
    if text.len() > 2048 {
        return Err(refuse("too long"));
    }
    let url = url::Url::parse(text.trim()).map_err(|_| refuse("not an absolute URL"))?;
    if !url.username().is_empty() || url.password().is_some() || url.fragment().is_some() {
        return Err(refuse("no credentials or fragment allowed"));
    }
    crate::upstream::check_url(config, &url).map_err(|_| {
        refuse("it must be https and public (or a host listed in allowed_private_hosts)")
    })?;
    let host = url.host_str().unwrap_or_default().trim_matches(['[', ']']);
    if !config.allows_private_host(host, url.port())
        && let Some(url::Host::Domain(name)) = url.host()
        && let Ok(addrs) =
            tokio::net::lookup_host((name, url.port_or_known_default().unwrap_or(443))).await
    {
        // A name that does not resolve now is accepted; every send checks again.
        if addrs
            .into_iter()
            .any(|a| !crate::upstream::address::is_public(a.ip()))
        {
            return Err(refuse("the host resolves to a private address"));
        }
    }
    Ok(url.to_string())
}
