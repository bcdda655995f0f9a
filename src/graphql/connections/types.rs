//! Inputs and payloads of the connection operations.

use std::collections::BTreeMap;

use async_graphql::{Context, ID, InputObject, Json, Object, SimpleObject};
use chrono::{DateTime, Utc};

use super::super::context::ContextExt;
use super::super::integrations::Integration;
use super::Connection;
use crate::auth::AppScope;
use crate::catalog::AuthType;
use crate::crypto::Secret;
use crate::error::Error;
use crate::service::connections::{
    self, ConnectionFilter, ConnectionState, CredentialsInput, Environment,
};

/// A consumer's credentials as given: form fields for API-key and basic providers, or
/// existing OAuth tokens to import (migrating from another vault).
#[derive(InputObject)]
pub struct ConnectionCredentialsInput {
    /// Credential field values by field id (`api_key`, `account_sid`, …).
    pub fields: Option<Json<BTreeMap<String, String>>>,
    pub access_token: Option<String>,
    pub refresh_token: Option<String>,
    pub expires_at: Option<DateTime<Utc>>,
    pub token_type: Option<String>,
    pub scopes: Option<Vec<String>>,
}

impl From<ConnectionCredentialsInput> for CredentialsInput {
    fn from(c: ConnectionCredentialsInput) -> Self {
        CredentialsInput {
            fields: c.fields.map(|Json(f)| f),
            access_token: c.access_token.map(Secret::new),
            refresh_token: c.refresh_token.map(Secret::new),
            expires_at: c.expires_at,
            token_type: c.token_type,
            scopes: c.scopes,
        }
    }
}

#[derive(InputObject)]
pub struct CreateConnectionInput {
    /// Required for operators; a secret key may only name its own application.
    pub application_id: Option<ID>,
    /// Created when it does not exist yet.
    pub consumer_id: String,
    /// The integration, by id or by its provider's service id.
    pub integration_id: Option<ID>,
    pub service_id: Option<String>,
    #[graphql(default_with = "Environment::Production")]
    pub environment: Environment,
    pub settings: Option<Json<serde_json::Value>>,
    pub metadata: Option<Json<serde_json::Value>>,
    pub user_email: Option<String>,
    #[graphql(default = true)]
    pub enabled: bool,
    pub credentials: Option<ConnectionCredentialsInput>,
}

/// Fields left out are unchanged. In `settings`, `null` removes a key.
#[derive(InputObject)]
pub struct UpdateConnectionInput {
    pub settings: Option<Json<serde_json::Value>>,
    pub metadata: Option<Json<serde_json::Value>>,
    pub user_email: Option<String>,
    pub enabled: Option<bool>,
    pub credentials: Option<ConnectionCredentialsInput>,
}

#[derive(InputObject, Default)]
#[graphql(name = "ConnectionFilter")]
pub struct ConnectionFilterInput {
    /// A state (`added`, `authorized`, `callable`, `invalid`, `revoked`, `deleted`) or
    /// Appnigma's `connected` / `expired`. Without it, deleted connections are left out.
    pub status: Option<String>,
    pub environment: Option<Environment>,
    pub service_id: Option<String>,
    pub unified_api: Option<String>,
    pub consumer_id: Option<String>,
    /// Case-insensitive substring.
    pub user_email: Option<String>,
    pub configured: Option<bool>,
}

impl ConnectionFilterInput {
    pub(super) fn into_filter(self) -> Result<ConnectionFilter, Error> {
        Ok(ConnectionFilter {
            status: self
                .status
                .as_deref()
                .map(ConnectionState::parse_filter)
                .transpose()?,
            environment: self.environment,
            service_id: self.service_id,
            unified_api: self.unified_api,
            consumer_id: self.consumer_id,
            user_email: self.user_email,
            configured: self.configured,
        })
    }
}

/// What `connectionCredentials` returns. The refresh token only when asked for.
#[derive(SimpleObject)]
pub struct ConnectionCredentials {
    pub connection_id: ID,
    pub auth_type: AuthType,
    pub access_token: Option<String>,
    pub refresh_token: Option<String>,
    pub token_type: Option<String>,
    pub expires_at: Option<DateTime<Utc>>,
    pub scopes: Vec<String>,
    pub instance_url: Option<String>,
    pub api_key: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    /// Every credential field by id, for API-key and basic providers.
    pub fields: Json<BTreeMap<String, String>>,
}

#[derive(SimpleObject)]
pub struct ConsumerIntegration {
    pub integration: Integration,
    pub service_id: String,
    /// `AVAILABLE` when the consumer has no connection to it yet.
    pub state: ConnectionState,
    /// The consumer's most recent live connection to it.
    pub connection: Option<Connection>,
}

pub struct ConnectionTotals {
    pub(super) scope: AppScope,
    pub(super) filter: ConnectionFilter,
}

#[Object]
impl ConnectionTotals {
    async fn total_count(&self, ctx: &Context<'_>) -> async_graphql::Result<u64> {
        let state = ctx.state()?;
        Ok(connections::count(&state.db, &state.catalog, &self.scope, &self.filter).await?)
    }
}
