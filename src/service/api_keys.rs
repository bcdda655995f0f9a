//! An application's API keys. The secret is returned once at creation; only its SHA-256 hash
//! is stored. Revocation takes effect on the very next request (keys are not cached).

use chrono::Utc;
use entity::api_key::{ActiveModel, Column, Entity, Model};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, Set,
};
use uuid::Uuid;

use super::events::relay;
use super::validate;
use crate::auth::{AppScope, Tenancy};
use crate::crypto::Secret;
use crate::crypto::tokens::{
    PUBLIC_KEY_PREFIX, SECRET_KEY_PREFIX, hash_secret, hashes_match, issue_secret,
    random_identifier,
};
use crate::error::{Error, Result};

const LABEL_MAX: usize = 200;
/// Keys one application may hold; listing them needs no pagination below this.
const MAX_KEYS_PER_APPLICATION: usize = 200;

pub struct CreatedKey {
    pub key: Model,
    pub secret: Secret,
}

pub async fn create(
    db: &DatabaseConnection,
    scope: &AppScope,
    label: &str,
    integration_id: Option<Uuid>,
) -> Result<CreatedKey> {
    let label = validate::required_text("label", label, LABEL_MAX)?;
    if let Some(integration) = integration_id {
        super::integrations::get(db, scope, integration).await?;
    }
    let existing = list(db, scope).await?;
    if existing.iter().filter(|k| k.revoked_at.is_none()).count() >= MAX_KEYS_PER_APPLICATION {
        return Err(Error::Conflict(format!(
            "an application may hold at most {MAX_KEYS_PER_APPLICATION} active keys"
        )));
    }
    let issued = issue_secret(SECRET_KEY_PREFIX);
    let row = ActiveModel {
        id: Set(Uuid::now_v7()),
        application_id: Set(scope.application_id()),
        integration_id: Set(integration_id),
        label: Set(label),
        secret_hash: Set(issued.hash),
        secret_prefix: Set(issued.display_prefix),
        public_key: Set(random_identifier(PUBLIC_KEY_PREFIX)),
        created_at: Set(Utc::now()),
        last_used_at: Set(None),
        revoked_at: Set(None),
    };
    let key = row.insert(db).await?;
    tracing::info!(key_id = %key.id, application_id = %key.application_id, "API key created");
    Ok(CreatedKey {
        key,
        secret: issued.secret,
    })
}

/// Revoking twice is harmless and keeps the first revocation time.
pub async fn revoke(db: &DatabaseConnection, scope: &AppScope, id: Uuid) -> Result<Model> {
    let key = get(db, Tenancy::Application(scope.application_id()), id).await?;
    if key.revoked_at.is_some() {
        return Ok(key);
    }
    let mut row: ActiveModel = key.into();
    row.revoked_at = Set(Some(Utc::now()));
    let key = row.update(db).await?;
    relay::notify(db, relay::Notice::Revoked).await?;
    tracing::info!(key_id = %key.id, application_id = %key.application_id, "API key revoked");
    Ok(key)
}

pub async fn list(db: &DatabaseConnection, scope: &AppScope) -> Result<Vec<Model>> {
    Ok(Entity::find()
        .filter(Column::ApplicationId.eq(scope.application_id()))
        .order_by_asc(Column::Id)
        .all(db)
        .await?)
}

pub async fn get(db: &DatabaseConnection, tenancy: Tenancy, id: Uuid) -> Result<Model> {
    Entity::find_by_id(id)
        .one(db)
        .await?
        .filter(|k| tenancy.allows(k.application_id))
        .ok_or(Error::NotFound)
}

/// The active key whose secret this is, if any.
pub async fn find_active_by_secret(db: &DatabaseConnection, secret: &str) -> Result<Option<Model>> {
    let hash = hash_secret(secret);
    let key = Entity::find()
        .filter(Column::SecretHash.eq(hash.clone()))
        .one(db)
        .await?;
    Ok(key.filter(|k| hashes_match(&k.secret_hash, &hash) && k.revoked_at.is_none()))
}

/// The application (and integration) a public key may start connect flows for.
pub async fn scope_of_public_key(db: &DatabaseConnection, public_key: &str) -> Result<AppScope> {
    if !public_key.starts_with(PUBLIC_KEY_PREFIX) || public_key.len() > 64 {
        return Err(Error::Unauthenticated);
    }
    let key = Entity::find()
        .filter(Column::PublicKey.eq(public_key))
        .one(db)
        .await?
        .filter(|k| k.revoked_at.is_none())
        .ok_or(Error::Unauthenticated)?;
    Ok(AppScope::for_key(key.application_id, key.integration_id))
}
