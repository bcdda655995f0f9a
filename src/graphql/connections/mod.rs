//! Connections, their credentials, and what a consumer can connect.

use async_graphql::connection::Connection as RelayConnection;
use async_graphql::{Context, ID, Json, Object};
use chrono::{DateTime, Utc};
use entity::connection::Model;

use super::context::ContextExt;
use super::integrations::{Integration, app_scope, scope_of};
use super::providers::Provider;
use super::relay;
use crate::auth::{AppScope, Principal};
use crate::catalog::AuthType;
use crate::crypto::Secret;
use crate::error::Error;
use crate::ids::{self, NodeType};
use crate::service::connections::{self, ConnectionState, Environment};
use crate::service::pagination::PageRequest;
use crate::service::{integrations, validate};

mod mutation;
mod types;

pub use mutation::ConnectionMutation;
pub use types::*;

pub struct Connection(pub Model);

// Fields that query the database box that query's future (`Box::pin(…).await`). async-graphql
// boxes a future for every field of every row, as large as the largest field's: with an
// unboxed SeaORM query (a future of ~1.8 KB) in one field, every field of a 50-row page
// copied that much (`memmove` 7.2% → 5.7% of the server's samples; +1.7% requests, paired
// runs, 4 of 5). (A `///` comment here would become the type's description in the schema.)
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
        match Box::pin(connections::provider_of(&state.deps(), &self.0)).await {
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
        let integration = match ctx.data_opt::<super::memo::Integrations>() {
            Some(memo) => Box::pin(memo.get_in(&state.db, tenancy, integration_id)).await?,
            None => Box::pin(integrations::get_in(&state.db, tenancy, integration_id)).await?,
        };
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
        Ok(!Box::pin(self.missing_scopes(ctx)).await?.is_empty())
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

/// The scope that may act on a connection, and the connection.
pub(super) async fn scoped(
    ctx: &Context<'_>,
    id: &ID,
) -> async_graphql::Result<(AppScope, uuid::Uuid)> {
    let id = ids::decode_as(NodeType::Connection, id)?;
    let state = ctx.state()?;
    let principal = ctx.principal()?;
    // A secret key acts in its own application: no need to look the owner up first (the
    // service's read filters by scope, so another tenant's id is still NOT_FOUND).
    if let crate::auth::Principal::SecretKey { .. } = principal {
        return Ok((principal.require_app(&state.db, None).await?, id));
    }
    let app = connections::owner(&state.db, principal.tenancy(), id).await?;
    Ok((scope_of(ctx, app).await?, id))
}

#[derive(Default)]
pub struct ConnectionQuery;

#[Object]
impl ConnectionQuery {
    /// Permissions: secret key (its application; a restricted key its one integration),
    /// operator (naming `applicationId`). Never returns credentials.
    #[graphql(complexity = "crate::graphql::relay::page_cost(first, child_complexity)")]
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
        ctx.tag_consumer(&live.consumer_id, &live.service_id);
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
