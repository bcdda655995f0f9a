//! Connections: one consumer's link to one integration. Ids are server-generated; only the
//! fields of `NewConnection` / `ConnectionChanges` are writable; every change writes its
//! outbox event in the same transaction; deletion leaves a tombstone with credentials wiped.

mod credentials;
mod environment;
mod lifecycle;
mod listing;
mod resources;
mod settings;
mod state;

use std::sync::Arc;

use chrono::Utc;
use entity::connection::{ActiveModel, Column, Entity, Model};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, Set,
    TransactionTrait,
};
use serde_json::{Value, json};
use uuid::Uuid;

pub use credentials::{
    CredentialsInput, LiveCredentials, OAuthTokens, StoredCredentials, credentials,
};
pub use environment::Environment;
pub use lifecycle::{delete, delete_all_of_consumer, revoke};
pub use listing::{ConnectionFilter, count, list, of_consumers, visible};
pub use resources::{resource_settings, update_resource_settings};
pub use settings::{as_map as settings_map, merge as merge_settings};
pub use state::ConnectionState;

use super::events::{self, EventType};
use super::keys::KeyStore;
use super::{consumers, integrations, validate};
use crate::auth::AppScope;
use crate::catalog::{Catalog, Provider};
use crate::error::{Error, Result};

const METADATA_MAX_BYTES: usize = 16 * 1024;
const CONFIGURATION_MAX_BYTES: usize = 64 * 1024;

/// Which integration a new connection is for.
pub enum IntegrationRef {
    Id(Uuid),
    ServiceId(String),
}

pub struct NewConnection {
    pub consumer_id: String,
    pub integration: IntegrationRef,
    pub environment: Environment,
    pub settings: Option<Value>,
    pub metadata: Option<Value>,
    pub user_email: Option<String>,
    pub enabled: bool,
    pub credentials: Option<CredentialsInput>,
}

#[derive(Default)]
pub struct ConnectionChanges {
    pub settings: Option<Value>,
    pub metadata: Option<Value>,
    pub user_email: Option<Option<String>>,
    pub enabled: Option<bool>,
    pub credentials: Option<CredentialsInput>,
}

/// What the services need besides the database.
#[derive(Clone, Copy)]
pub struct Deps<'a> {
    pub db: &'a DatabaseConnection,
    pub keys: &'a KeyStore,
    pub catalog: &'a Catalog,
    pub config: &'a crate::config::Config,
    /// The one client for calls to providers.
    pub http: &'a reqwest::Client,
    pub refresher: &'a crate::service::refresh::Refresher,
    /// Decrypted proxy targets; every committed change to a connection drops its entry.
    pub cache: &'a crate::service::proxy::CredentialCache,
    /// Told after every commit that recorded events, so they go out at once.
    pub bus: &'a crate::service::events::relay::EventBus,
}

pub async fn create(deps: &Deps<'_>, scope: &AppScope, input: NewConnection) -> Result<Model> {
    let integration = match &input.integration {
        IntegrationRef::Id(id) => integrations::get(deps.db, scope, *id).await?,
        IntegrationRef::ServiceId(service) => {
            integrations::find_by_service(deps.db, scope, service).await?
        }
    };
    let provider = integrations::provider(deps.catalog, &integration)?;
    let consumer = consumers::upsert(
        deps.db,
        scope,
        &input.consumer_id,
        consumers::ConsumerMetadata::default(),
    )
    .await?;
    let id = Uuid::now_v7();
    let settings = settings::merge(&provider, &json!({}), input.settings.as_ref())?;
    let configured = settings::configured(&provider, &settings);
    let now = Utc::now();
    let mut row = ActiveModel {
        id: Set(id),
        application_id: Set(scope.application_id()),
        consumer_ref: Set(Some(consumer.id)),
        consumer_id: Set(consumer.consumer_id.clone()),
        integration_id: Set(Some(integration.id)),
        service_id: Set(integration.service_id.clone()),
        auth_type: Set(provider.auth_type.as_str().to_owned()),
        state: Set(String::new()),
        environment: Set(input.environment.as_str().to_owned()),
        enabled: Set(input.enabled),
        configured: Set(configured),
        settings: Set(settings),
        metadata: Set(object("metadata", input.metadata, METADATA_MAX_BYTES)?),
        configuration: Set(json!({})),
        granted_scopes: Set(json!([])),
        credentials: Set(None),
        credentials_key_id: Set(None),
        expires_at: Set(None),
        last_refreshed_at: Set(None),
        next_refresh_at: Set(None),
        refresh_failures: Set(0),
        version: Set(0),
        user_email: Set(email(input.user_email.as_deref())?),
        created_at: Set(now),
        updated_at: Set(now),
        revoked_at: Set(None),
        deleted_at: Set(None),
    };
    let has_credentials = match input.credentials {
        Some(given) => {
            set_credentials(
                &mut row,
                deps.keys,
                &provider,
                id,
                scope.application_id(),
                given,
            )?;
            true
        }
        None => false,
    };
    let state = ConnectionState::derive(has_credentials, configured, false);
    row.state = Set(state.as_str().to_owned());

    let txn = deps.db.begin().await?;
    let model = row.insert(&txn).await?;
    let kinds: &[EventType] = if state == ConnectionState::Callable {
        &[EventType::Created, EventType::Callable]
    } else {
        &[EventType::Created]
    };
    events::record_all(&txn, kinds, &model).await?;
    txn.commit().await?;
    deps.bus.committed();
    tracing::info!(connection = %model.id, service = %model.service_id, "connection created");
    Ok(model)
}

pub async fn update(
    deps: &Deps<'_>,
    scope: &AppScope,
    id: Uuid,
    changes: ConnectionChanges,
) -> Result<Model> {
    let current = get_live(deps.db, scope, id).await?;
    let provider = provider_of(deps, &current).await?;
    let before = ConnectionState::parse_stored(&current.state);
    let mut row: ActiveModel = current.clone().into();
    let settings = settings::merge(&provider, &current.settings, changes.settings.as_ref())?;
    let configured = settings::configured(&provider, &settings);
    row.settings = Set(settings);
    row.configured = Set(configured);
    if let Some(metadata) = changes.metadata {
        row.metadata = Set(object("metadata", Some(metadata), METADATA_MAX_BYTES)?);
    }
    if let Some(user_email) = changes.user_email {
        row.user_email = Set(email(user_email.as_deref())?);
    }
    if let Some(enabled) = changes.enabled {
        row.enabled = Set(enabled);
    }
    let mut has_credentials = current.credentials.is_some();
    let mut invalid = before == ConnectionState::Invalid;
    if let Some(given) = changes.credentials {
        set_credentials(
            &mut row,
            deps.keys,
            &provider,
            id,
            current.application_id,
            given,
        )?;
        has_credentials = true;
        // New credentials clear an earlier failure.
        invalid = false;
        row.refresh_failures = Set(0);
    }
    let state = ConnectionState::derive(has_credentials, configured, invalid);
    row.state = Set(state.as_str().to_owned());
    write(deps, current, row, |txn, model| async move {
        let kinds: &[EventType] =
            if state == ConnectionState::Callable && before != ConnectionState::Callable {
                &[EventType::Updated, EventType::Callable]
            } else {
                &[EventType::Updated]
            };
        events::record_all(&txn, kinds, &model).await?;
        Ok((txn, model))
    })
    .await
}

/// A connection the scope may see, tombstones included.
pub async fn get(db: &DatabaseConnection, scope: &AppScope, id: Uuid) -> Result<Model> {
    Entity::find_by_id(id)
        .one(db)
        .await?
        .filter(|c| listing::visible(scope, c))
        .ok_or(Error::NotFound)
}

/// A connection that is not deleted.
pub async fn get_live(db: &DatabaseConnection, scope: &AppScope, id: Uuid) -> Result<Model> {
    let conn = get(db, scope, id).await?;
    if conn.deleted_at.is_some() {
        return Err(Error::NotFound);
    }
    Ok(conn)
}

pub async fn provider_of(deps: &Deps<'_>, conn: &Model) -> Result<Arc<Provider>> {
    integrations::provider(deps.catalog, &integration_of(deps.db, conn).await?)
}

pub async fn integration_of(
    db: &DatabaseConnection,
    conn: &Model,
) -> Result<entity::integration::Model> {
    let integration_id = conn.integration_id.ok_or(Error::NotFound)?;
    integrations::get_in(
        db,
        crate::auth::Tenancy::Application(conn.application_id),
        integration_id,
    )
    .await
}

/// Commits `row` (version bumped, `updated_at` set) only if nobody changed the connection
/// since it was read, with the events `after` writes, in one transaction.
async fn write<F, Fut>(deps: &Deps<'_>, read: Model, row: ActiveModel, after: F) -> Result<Model>
where
    F: FnOnce(sea_orm::DatabaseTransaction, Model) -> Fut,
    Fut: std::future::Future<Output = Result<(sea_orm::DatabaseTransaction, Model)>>,
{
    let txn = deps.db.begin().await?;
    let Some(model) = write_fenced(&txn, &read, row).await? else {
        return Err(Error::Conflict(
            "the connection changed meanwhile; read it again and retry".into(),
        ));
    };
    let (txn, model) = after(txn, model).await?;
    txn.commit().await?;
    deps.cache.forget(model.id);
    deps.bus.committed();
    Ok(model)
}

/// Writes `row` in `txn` (version bumped, `updated_at` set) only if nobody changed the
/// connection since `read` was read: the row as written, or `None` when someone had.
pub(crate) async fn write_fenced(
    txn: &sea_orm::DatabaseTransaction,
    read: &Model,
    mut row: ActiveModel,
) -> Result<Option<Model>> {
    row.version = Set(read.version + 1);
    row.updated_at = Set(Utc::now());
    let written = Entity::update_many()
        .set(row)
        .filter(Column::Id.eq(read.id))
        .filter(Column::Version.eq(read.version))
        .exec(txn)
        .await?;
    if written.rows_affected != 1 {
        return Ok(None);
    }
    Ok(Some(
        Entity::find_by_id(read.id)
            .one(txn)
            .await?
            .ok_or(Error::NotFound)?,
    ))
}

fn set_credentials(
    row: &mut ActiveModel,
    keys: &KeyStore,
    provider: &Provider,
    id: Uuid,
    application_id: Uuid,
    given: CredentialsInput,
) -> Result<()> {
    let stored = StoredCredentials::from_input(provider, given)?;
    let (sealed, key_id) = stored.seal(keys, id, application_id)?;
    row.expires_at = Set(stored.expires_at());
    if let StoredCredentials::Oauth2(tokens) = &stored {
        row.granted_scopes = Set(Value::from(tokens.scopes.clone()));
    }
    row.credentials = Set(Some(sealed));
    row.credentials_key_id = Set(Some(key_id));
    Ok(())
}

fn wipe(row: &mut ActiveModel) {
    row.credentials = Set(None);
    row.credentials_key_id = Set(None);
    row.expires_at = Set(None);
    row.next_refresh_at = Set(None);
}

fn object(field: &str, value: Option<Value>, max_bytes: usize) -> Result<Value> {
    let value = value.unwrap_or_else(|| json!({}));
    if !value.is_object() {
        return Err(Error::bad_input(format!("{field} must be a JSON object")));
    }
    if serde_json::to_vec(&value).map_or(true, |v| v.len() > max_bytes) {
        return Err(Error::bad_input(format!(
            "{field} is larger than {max_bytes} bytes"
        )));
    }
    Ok(value)
}

fn email(value: Option<&str>) -> Result<Option<String>> {
    let email = validate::optional_text("userEmail", value, 320)?;
    if email.as_deref().is_some_and(|e| !e.contains('@')) {
        return Err(Error::bad_input("userEmail is not an email address"));
    }
    Ok(email)
}

/// The application owning a connection the tenancy may see (operators reach any).
pub async fn owner(
    db: &DatabaseConnection,
    tenancy: crate::auth::Tenancy,
    id: Uuid,
) -> Result<Uuid> {
    Entity::find_by_id(id)
        .one(db)
        .await?
        .filter(|c| tenancy.allows(c.application_id))
        .map(|c| c.application_id)
        .ok_or(Error::NotFound)
}

/// The consumer's live connections, oldest first.
pub async fn of_consumer(
    deps: &Deps<'_>,
    scope: &AppScope,
    consumer_id: &str,
) -> Result<Vec<Model>> {
    let filter = ConnectionFilter {
        consumer_id: Some(consumer_id.to_owned()),
        ..ConnectionFilter::default()
    };
    let mut all = Vec::new();
    let mut page = crate::service::pagination::PageRequest::parse(Some(200), None)?;
    loop {
        let rows = list(deps.db, deps.catalog, scope, &filter, &page).await?;
        let next = rows.items.last().map(|c| c.id.to_string());
        all.extend(rows.items);
        match (rows.has_next_page, next) {
            (true, Some(after)) => page.after = Some(after),
            _ => return Ok(all),
        }
    }
}
