//! Ending a connection: revocation (at the provider too) and deletion (a tombstone), each
//! wiping the credentials and writing its event in the same transaction.

use chrono::Utc;
use entity::connection::{ActiveModel, Column, Entity, Model};
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, Set};
use uuid::Uuid;

use super::{
    ConnectionState, Deps, Environment, StoredCredentials, get_live, provider_of, wipe, write,
};
use crate::auth::AppScope;
use crate::error::Result;
use crate::service::events::{self, EventType};
use crate::service::integrations;

/// Withdraws access: calls the provider's RFC 7009 endpoint when it has one (a failure there
/// is logged, not fatal: the credentials are wiped here regardless), marks the connection
/// `revoked`, and emits `connection.revoked`.
pub async fn revoke(deps: &Deps<'_>, scope: &AppScope, id: Uuid) -> Result<Model> {
    let current = get_live(deps.db, scope, id).await?;
    if let Some(sealed) = &current.credentials
        && let Ok(StoredCredentials::Oauth2(tokens)) =
            StoredCredentials::open(deps.keys, sealed, current.id, current.application_id)
        && let Ok(provider) = provider_of(deps, &current).await
        && let Some(integration_id) = current.integration_id
    {
        let integration = integrations::get_in(
            deps.db,
            crate::auth::Tenancy::Application(current.application_id),
            integration_id,
        )
        .await?;
        let environment = Environment::parse_stored(&current.environment);
        let endpoint = crate::service::oauth::client::TokenEndpoint::new(
            deps,
            &integration,
            &provider,
            environment,
            &current.settings,
        )?;
        // Revoking the refresh token ends the whole grant at most providers.
        let (token, hint) = match &tokens.refresh_token {
            Some(refresh) => (refresh.as_str(), "refresh_token"),
            None => (tokens.access_token.as_str(), "access_token"),
        };
        if let Err(err) = endpoint.revoke(deps.http, token, hint).await {
            tracing::warn!(connection = %id, error = %err, "provider revocation failed");
        }
    }
    let mut row: ActiveModel = current.clone().into();
    wipe(&mut row);
    row.state = Set(ConnectionState::Revoked.as_str().to_owned());
    row.revoked_at = Set(Some(Utc::now()));
    let model = write(deps, current, row, |txn, model| async move {
        events::record(&txn, EventType::Revoked, &model).await?;
        Ok((txn, model))
    })
    .await?;
    tracing::info!(connection = %model.id, "connection revoked");
    Ok(model)
}

/// Leaves a tombstone: state `deleted`, credentials wiped, kept for audit.
pub async fn delete(deps: &Deps<'_>, scope: &AppScope, id: Uuid) -> Result<Model> {
    let current = get_live(deps.db, scope, id).await?;
    let mut row: ActiveModel = current.clone().into();
    wipe(&mut row);
    row.state = Set(ConnectionState::Deleted.as_str().to_owned());
    row.deleted_at = Set(Some(Utc::now()));
    let model = write(deps, current, row, |txn, model| async move {
        events::record(&txn, EventType::Deleted, &model).await?;
        Ok((txn, model))
    })
    .await?;
    tracing::info!(connection = %model.id, "connection deleted");
    Ok(model)
}

/// Deletes every live connection of a consumer, in one transaction (consumer deletion).
pub async fn delete_all_of_consumer<C: sea_orm::ConnectionTrait>(
    txn: &C,
    consumer_ref: Uuid,
) -> Result<Vec<Uuid>> {
    let live = Entity::find()
        .filter(Column::ConsumerRef.eq(consumer_ref))
        .filter(Column::DeletedAt.is_null())
        .all(txn)
        .await?;
    let mut ids = Vec::with_capacity(live.len());
    for current in live {
        ids.push(current.id);
        let mut row: ActiveModel = current.clone().into();
        wipe(&mut row);
        row.state = Set(ConnectionState::Deleted.as_str().to_owned());
        row.deleted_at = Set(Some(Utc::now()));
        row.version = Set(current.version + 1);
        row.updated_at = Set(Utc::now());
        let model = row.update(txn).await?;
        events::record(txn, EventType::Deleted, &model).await?;
    }
    Ok(ids)
}
