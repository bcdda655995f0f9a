//! Connections, their credentials, and what a consumer can connect.

use std::collections::BTreeMap;

use async_graphql::connection::Connection as RelayConnection;
use async_graphql::{Context, ID, InputObject, Json, Object, SimpleObject};
use chrono::{DateTime, Utc};
use entity::connection::Model;

use super::context::ContextExt;
use super::integrations::{Integration, app_scope, integration_ref, scope_of};
use super::providers::Provider;
use super::relay;
use crate::auth::{AppScope, Principal};
use crate::catalog::AuthType;
use crate::crypto::Secret;
use crate::error::Error;
use crate::ids::{self, NodeType};
use crate::service::connections::{
    self, ConnectionChanges, ConnectionFilter, ConnectionState, CredentialsInput, Environment,
    NewConnection,
};
use crate::service::pagination::PageRequest;
use crate::service::{integrations, validate};

pub struct Connection(pub Model);

#[Object]
impl Connection {
    pub async fn id(&self) -> ID {
        ids::encode(NodeType::Connection, self.0.id)
    }

    async fn consumer_id(&self) -> &str {
        &self.0.consumer_id
    }

    async fn service_id(&self) -> &str {
        &self.0.service_id
    }

    async fn integration_id(&self) -> Option<ID> {
        self.0
            .integration_id
            .map(|id| ids::encode(NodeType::Integration, id))
    }

    /// The provider: name, assets, form fields. Null once the integration is gone.
    async fn provider(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Provider>> {
        let state = ctx.state()?;
        match connections::provider_of(&state.deps(), &self.0).await {
            Ok(provider) => Ok(Some(Provider(provider))),
            Err(Error::NotFound) => Ok(None),
            Err(err) => Err(err.into()),
        }
    }

    async fn auth_type(&self) -> Option<AuthType> {
        AuthType::parse(&self.0.auth_type)
    }

    async fn state(&self) -> ConnectionState {
        ConnectionState::parse_stored(&self.0.state)
    }

    async fn environment(&self) -> Environment {
        Environment::parse_stored(&self.0.environment)
    }

    async fn enabled(&self) -> bool {
        self.0.enabled
    }

    /// Every required setting is present.
    async fn configured(&self) -> bool {
        self.0.configured
    }

    /// Form-field values (e.g. `instance_url`, `subdomain`); never credentials.
    async fn settings(&self) -> Json<serde_json::Value> {
        Json(self.0.settings.clone())
    }

    /// The tenant's own data about this connection.
    async fn metadata(&self) -> Json<serde_json::Value> {
        Json(self.0.metadata.clone())
    }

    /// Per-resource defaults, by resource name.
    async fn configuration(&self) -> Json<serde_json::Value> {
        Json(self.0.configuration.clone())
    }

    async fn granted_scopes(&self) -> Vec<String> {
        serde_json::from_value(self.0.granted_scopes.clone()).unwrap_or_default()
    }

    /// A link that (re-)authorizes this OAuth2 connection when the consumer opens it; valid
    /// for an hour, returns to the application's default redirect URI. Null for other kinds
    /// and for revoked or deleted connections.
    async fn authorize_url(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<String>> {
        Ok(crate::service::oauth::authorize_link(
            &ctx.state()?.deps(),
            &self.0,
        ))
    }

    /// Scopes the integration asks for that this connection was not granted (OAuth2).
    async fn missing_scopes(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<String>> {
        if self.0.auth_type != "oauth2" || self.0.credentials.is_none() {
            return Ok(Vec::new());
        }
        let Some(integration_id) = self.0.integration_id else {
            return Ok(Vec::new());
        };
        let state = ctx.state()?;
        let tenancy = crate::auth::Tenancy::Application(self.0.application_id);
        let integration = integrations::get_in(&state.db, tenancy, integration_id).await?;
        let granted: Vec<String> =
            serde_json::from_value(self.0.granted_scopes.clone()).unwrap_or_default();
        Ok(integrations::scopes(&integration)
            .into_iter()
            .filter(|s| !granted.contains(s))
            .collect())
    }

    /// True when the integration now asks for scopes this connection lacks: the consumer
    /// should authorize again (`createConnectLink` with `connectionId`).
    async fn needs_reauthorization(&self, ctx: &Context<'_>) -> async_graphql::Result<bool> {
        Ok(!self.missing_scopes(ctx).await?.is_empty())
    }

    async fn user_email(&self) -> Option<&str> {
        self.0.user_email.as_deref()
    }

    async fn has_credentials(&self) -> bool {
        self.0.credentials.is_some()
    }

    /// When the access token expires, for OAuth2 connections.
    async fn expires_at(&self) -> Option<DateTime<Utc>> {
        self.0.expires_at
    }

    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }

    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }

    async fn revoked_at(&self) -> Option<DateTime<Utc>> {
        self.0.revoked_at
    }

    async fn deleted_at(&self) -> Option<DateTime<Utc>> {
        self.0.deleted_at
    }
}

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
    fn into_filter(self) -> Result<ConnectionFilter, Error> {
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
    scope: AppScope,
    filter: ConnectionFilter,
}

#[Object]
impl ConnectionTotals {
    async fn total_count(&self, ctx: &Context<'_>) -> async_graphql::Result<u64> {
        let state = ctx.state()?;
        Ok(connections::count(&state.db, &state.catalog, &self.scope, &self.filter).await?)
    }
}

/// The scope that may act on a connection, and the connection.
async fn scoped(ctx: &Context<'_>, id: &ID) -> async_graphql::Result<(AppScope, uuid::Uuid)> {
    let id = ids::decode_as(NodeType::Connection, id)?;
    let app = connections::owner(&ctx.state()?.db, ctx.principal()?.tenancy(), id).await?;
    Ok((scope_of(ctx, app).await?, id))
}

#[derive(Default)]
pub struct ConnectionQuery;

#[Object]
impl ConnectionQuery {
    /// Permissions: secret key (its application; a restricted key its one integration),
    /// operator (naming `applicationId`). Never returns credentials.
    #[graphql(complexity = "first.unwrap_or(20).max(1) as usize * child_complexity")]
    async fn connections(
        &self,
        ctx: &Context<'_>,
        application_id: Option<ID>,
        first: Option<i32>,
        after: Option<String>,
        filter: Option<ConnectionFilterInput>,
    ) -> async_graphql::Result<RelayConnection<String, Connection, ConnectionTotals>> {
        let scope = app_scope(ctx, application_id.as_ref()).await?;
        let page = PageRequest::parse(first, after.as_deref())?;
        let filter = filter.unwrap_or_default().into_filter()?;
        let state = ctx.state()?;
        let rows = connections::list(&state.db, &state.catalog, &scope, &filter, &page).await?;
        Ok(relay::connection(
            rows,
            |m| m.id.to_string(),
            Connection,
            ConnectionTotals { scope, filter },
        ))
    }

    /// Permissions: as `connections`. Tombstones are visible (state `DELETED`).
    async fn connection(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Connection> {
        let (scope, id) = scoped(ctx, &id).await?;
        Ok(Connection(
            connections::get(&ctx.state()?.db, &scope, id).await?,
        ))
    }

    /// Every enabled integration for the consumer, with its connection or `AVAILABLE`.
    /// Permissions: as `connections`.
    async fn consumer_integrations(
        &self,
        ctx: &Context<'_>,
        consumer_id: String,
        application_id: Option<ID>,
    ) -> async_graphql::Result<Vec<ConsumerIntegration>> {
        let scope = app_scope(ctx, application_id.as_ref()).await?;
        let state = ctx.state()?;
        let consumer_id = validate::required_text("consumerId", &consumer_id, 255)?;
        let mut mine = connections::of_consumer(&state.deps(), &scope, &consumer_id).await?;
        let enabled = integrations::enabled(&state.db, &scope).await?;
        Ok(enabled
            .into_iter()
            .map(|integration| {
                // Newest live connection to this integration wins.
                let position = mine
                    .iter()
                    .rposition(|c| c.integration_id == Some(integration.id));
                let connection = position.map(|i| mine.remove(i));
                ConsumerIntegration {
                    service_id: integration.service_id.clone(),
                    state: connection.as_ref().map_or(ConnectionState::Available, |c| {
                        ConnectionState::parse_stored(&c.state)
                    }),
                    integration: Integration(integration),
                    connection: connection.map(Connection),
                }
            })
            .collect())
    }

    /// Permissions: secret keys only — operators and hosted sessions never read raw
    /// credentials. The refresh token is included only with `includeRefreshToken: true`.
    async fn connection_credentials(
        &self,
        ctx: &Context<'_>,
        id: ID,
        force_refresh: Option<bool>,
        include_refresh_token: Option<bool>,
    ) -> async_graphql::Result<ConnectionCredentials> {
        if !matches!(ctx.principal()?, Principal::SecretKey { .. }) {
            return Err(Error::Forbidden("only a secret key may read credentials").into());
        }
        let (scope, uuid) = scoped(ctx, &id).await?;
        let force = force_refresh == Some(true);
        let live = connections::credentials(&ctx.state()?.deps(), &scope, uuid, force).await?;
        let text = |s: Option<Secret>| s.map(|s| s.expose().to_owned());
        Ok(ConnectionCredentials {
            connection_id: id,
            auth_type: live.auth_type,
            access_token: text(live.access_token),
            refresh_token: if include_refresh_token == Some(true) {
                text(live.refresh_token)
            } else {
                None
            },
            token_type: live.token_type,
            expires_at: live.expires_at,
            scopes: live.scopes,
            instance_url: live.instance_url,
            api_key: text(live.api_key),
            username: text(live.username),
            password: text(live.password),
            fields: Json(
                live.fields
                    .into_iter()
                    .map(|(k, v)| (k, v.expose().to_owned()))
                    .collect(),
            ),
        })
    }

    /// Permissions: as `connections`.
    async fn resource_settings(
        &self,
        ctx: &Context<'_>,
        connection_id: ID,
        resource: String,
    ) -> async_graphql::Result<Json<serde_json::Value>> {
        let (scope, id) = scoped(ctx, &connection_id).await?;
        Ok(Json(
            connections::resource_settings(&ctx.state()?.db, &scope, id, &resource).await?,
        ))
    }
}

#[derive(Default)]
pub struct ConnectionMutation;

#[Object]
impl ConnectionMutation {
    /// Permissions: secret key (its application), operator (naming `applicationId`).
    /// The id is generated by the server.
    async fn create_connection(
        &self,
        ctx: &Context<'_>,
        input: CreateConnectionInput,
    ) -> async_graphql::Result<Connection> {
        let scope = app_scope(ctx, input.application_id.as_ref()).await?;
        let integration = integration_ref(input.integration_id, input.service_id)?;
        let new = NewConnection {
            consumer_id: input.consumer_id,
            integration,
            environment: input.environment,
            settings: input.settings.map(|Json(v)| v),
            metadata: input.metadata.map(|Json(v)| v),
            user_email: input.user_email,
            enabled: input.enabled,
            credentials: input.credentials.map(Into::into),
        };
        Ok(Connection(
            connections::create(&ctx.state()?.deps(), &scope, new).await?,
        ))
    }

    /// Permissions: as `createConnection`.
    async fn update_connection(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: UpdateConnectionInput,
    ) -> async_graphql::Result<Connection> {
        let (scope, id) = scoped(ctx, &id).await?;
        let changes = ConnectionChanges {
            settings: input.settings.map(|Json(v)| v),
            metadata: input.metadata.map(|Json(v)| v),
            user_email: input.user_email.map(|e| Some(e).filter(|e| !e.is_empty())),
            enabled: input.enabled,
            credentials: input.credentials.map(Into::into),
        };
        Ok(Connection(
            connections::update(&ctx.state()?.deps(), &scope, id, changes).await?,
        ))
    }

    /// Permissions: as `createConnection`. Calls the provider's revocation endpoint when it
    /// has one, wipes the credentials, marks the connection `REVOKED`.
    async fn revoke_connection(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<Connection> {
        let (scope, id) = scoped(ctx, &id).await?;
        Ok(Connection(
            connections::revoke(&ctx.state()?.deps(), &scope, id).await?,
        ))
    }

    /// Permissions: as `createConnection`. Refreshes the OAuth token now (exactly once even
    /// when called concurrently, across replicas).
    async fn refresh_connection(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<Connection> {
        let (scope, id) = scoped(ctx, &id).await?;
        let state = ctx.state()?;
        connections::get_live(&state.db, &scope, id).await?;
        state
            .refresher
            .ensure_fresh(&state.deps(), id, true)
            .await?;
        Ok(Connection(connections::get(&state.db, &scope, id).await?))
    }

    /// Permissions: as `createConnection`. Leaves a tombstone with its credentials wiped.
    async fn delete_connection(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<Connection> {
        let (scope, id) = scoped(ctx, &id).await?;
        Ok(Connection(
            connections::delete(&ctx.state()?.deps(), &scope, id).await?,
        ))
    }

    /// Permissions: as `createConnection`.
    async fn update_resource_settings(
        &self,
        ctx: &Context<'_>,
        connection_id: ID,
        resource: String,
        configuration: Json<serde_json::Value>,
    ) -> async_graphql::Result<Json<serde_json::Value>> {
        let (scope, id) = scoped(ctx, &connection_id).await?;
        Ok(Json(
            connections::update_resource_settings(
                &ctx.state()?.db,
                &scope,
                id,
                &resource,
                configuration.0,
            )
            .await?,
        ))
    }
}
