//! `createConnectLink`: start an OAuth flow for a consumer.

use async_graphql::{Context, ID, InputObject, Json, Object, SimpleObject};
use chrono::{DateTime, Utc};

use super::context::ContextExt;
use super::integrations::{app_scope, integration_ref};
use crate::ids::{self, NodeType};
use crate::service::connections::Environment;
use crate::service::oauth::{self, StartFlow};

#[derive(InputObject)]
pub struct CreateConnectLinkInput {
    /// Required for operators; a secret key may only name its own application.
    pub application_id: Option<ID>,
    pub consumer_id: String,
    /// The integration, by id or by its provider's service id.
    pub integration_id: Option<ID>,
    pub service_id: Option<String>,
    /// Must equal one of the application's redirect URIs; defaults to its default one.
    pub redirect_uri: Option<String>,
    /// Defaults to the integration's scopes.
    pub scopes: Option<Vec<String>>,
    #[graphql(default_with = "Environment::Production")]
    pub environment: Environment,
    /// Settings needed before authorization (e.g. `{subdomain: "acme"}` for Zendesk).
    pub settings: Option<Json<serde_json::Value>>,
    /// Re-authorize this connection instead of creating a new one.
    pub connection_id: Option<ID>,
}

#[derive(SimpleObject)]
pub struct ConnectLink {
    /// Send the consumer's browser here. Single use.
    pub url: String,
    pub expires_at: DateTime<Utc>,
}

#[derive(Default)]
pub struct ConnectMutation;

#[Object]
impl ConnectMutation {
    /// Permissions: secret key (its application), operator (naming `applicationId`).
    async fn create_connect_link(
        &self,
        ctx: &Context<'_>,
        input: CreateConnectLinkInput,
    ) -> async_graphql::Result<ConnectLink> {
        let scope = app_scope(ctx, input.application_id.as_ref()).await?;
        let integration = integration_ref(input.integration_id, input.service_id)?;
        let start = StartFlow {
            consumer_id: input.consumer_id,
            integration,
            redirect_uri: input.redirect_uri,
            scopes: input.scopes,
            environment: input.environment,
            settings: input.settings.map(|Json(v)| v),
            connection_id: ids::decode_optional(
                NodeType::Connection,
                input.connection_id.as_ref(),
            )?,
        };
        let started = oauth::start(&ctx.state()?.deps(), &scope, start).await?;
        Ok(ConnectLink {
            url: started.authorize_url,
            expires_at: started.expires_at,
        })
    }
}
