//! Integrations: an application's OAuth client (or enablement) for one provider.

use async_graphql::connection::Connection;
use async_graphql::{Context, ID, InputObject, Json, MaybeUndefined, Object};
use chrono::{DateTime, Utc};
use entity::integration::Model;

use super::context::ContextExt;
use super::providers::Provider;
use super::relay;
use crate::auth::AppScope;
use crate::catalog;
use crate::crypto::Secret;
use crate::error::Error;
use crate::ids::{self, NodeType};
use crate::service::integrations::{self, IntegrationChanges, IntegrationFilter, NewIntegration};
use crate::service::pagination::PageRequest;

pub struct Integration(pub Model);

#[Object]
impl Integration {
    pub async fn id(&self) -> ID {
        ids::encode(NodeType::Integration, self.0.id)
    }

    async fn service_id(&self) -> &str {
        &self.0.service_id
    }

    async fn provider(&self, ctx: &Context<'_>) -> async_graphql::Result<Provider> {
        Ok(Provider(integrations::provider(
            &ctx.state()?.catalog,
            &self.0,
        )?))
    }

    async fn client_id(&self) -> Option<&str> {
        self.0.client_id.as_deref()
    }

    /// Whether a client secret is stored. The secret itself is never returned.
    async fn has_client_secret(&self) -> bool {
        self.0.client_secret.is_some()
    }

    async fn scopes(&self) -> Vec<String> {
        integrations::scopes(&self.0)
    }

    /// A disabled integration starts no connect flow and is proxied through by none of its
    /// connections (`CONFLICT`); its connections and their credentials are kept.
    async fn enabled(&self) -> bool {
        self.0.enabled
    }

    /// Whether the provider definition is the integration's own rather than the catalog's.
    async fn custom(&self) -> bool {
        self.0.custom_provider.is_some()
    }

    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }

    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
}

#[derive(InputObject)]
pub struct CreateIntegrationInput {
    /// Required for operators; a secret key may only name its own application.
    pub application_id: Option<ID>,
    pub service_id: String,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    /// Defaults to the provider's default scopes.
    pub scopes: Option<Vec<String>>,
    #[graphql(default = true)]
    pub enabled: bool,
    /// A provider definition for an API outside the catalog, in the catalog's own format.
    pub custom_provider: Option<Json<serde_json::Value>>,
}

/// Fields left out are unchanged; `null` clears `clientId` / `clientSecret`.
#[derive(InputObject)]
pub struct UpdateIntegrationInput {
    pub client_id: MaybeUndefined<String>,
    pub client_secret: MaybeUndefined<String>,
    pub scopes: Option<Vec<String>>,
    pub enabled: Option<bool>,
    pub custom_provider: Option<Json<serde_json::Value>>,
}

#[derive(InputObject, Default)]
#[graphql(name = "IntegrationFilter")]
pub struct IntegrationFilterInput {
    pub service_id: Option<String>,
    pub enabled: Option<bool>,
}

fn custom_provider(
    value: Option<Json<serde_json::Value>>,
) -> Result<Option<catalog::Provider>, Error> {
    value
        .map(|Json(v)| {
            serde_json::from_value(v).map_err(|e| Error::bad_input(format!("customProvider: {e}")))
        })
        .transpose()
}

pub async fn app_scope(
    ctx: &Context<'_>,
    application_id: Option<&ID>,
) -> async_graphql::Result<AppScope> {
    let app = ids::decode_optional(NodeType::Application, application_id)?;
    Ok(ctx.principal()?.require_app(&ctx.state()?.db, app).await?)
}

/// An input's integration, named by exactly one of its id and its provider's service id.
pub fn integration_ref(
    id: Option<ID>,
    service_id: Option<String>,
) -> Result<crate::service::connections::IntegrationRef, Error> {
    use crate::service::connections::IntegrationRef;
    match (id, service_id) {
        (Some(id), None) => Ok(IntegrationRef::Id(ids::decode_as(
            NodeType::Integration,
            &id,
        )?)),
        (None, Some(service)) => Ok(IntegrationRef::ServiceId(service)),
        _ => Err(Error::bad_input(
            "give exactly one of integrationId and serviceId",
        )),
    }
}

/// The scope that owns an object of `application_id`, proven for the caller.
pub async fn scope_of(
    ctx: &Context<'_>,
    application_id: uuid::Uuid,
) -> async_graphql::Result<AppScope> {
    Ok(ctx
        .principal()?
        .require_app(&ctx.state()?.db, Some(application_id))
        .await?)
}

#[derive(Default)]
pub struct IntegrationQuery;

#[Object]
impl IntegrationQuery {
    /// Permissions: secret key (its application; a restricted key sees its one integration),
    /// operator (naming `applicationId`).
    #[graphql(complexity = "crate::graphql::relay::page_cost(first, child_complexity)")]
    async fn integrations(
        &self,
        ctx: &Context<'_>,
        application_id: Option<ID>,
        first: Option<i32>,
        after: Option<String>,
        filter: Option<IntegrationFilterInput>,
    ) -> async_graphql::Result<Connection<String, Integration>> {
        let scope = app_scope(ctx, application_id.as_ref()).await?;
        let page = PageRequest::parse(first, after.as_deref())?;
        let f = filter.unwrap_or_default();
        let filter = IntegrationFilter {
            service_id: f.service_id,
            enabled: f.enabled,
        };
        let rows = integrations::list(&ctx.state()?.db, &scope, &filter, &page).await?;
        Ok(relay::connection(
            rows,
            |m| m.service_id.clone(),
            Integration,
            async_graphql::connection::EmptyFields,
        ))
    }

    /// Permissions: as `integrations`.
    async fn integration(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Integration> {
        let id = ids::decode_as(NodeType::Integration, &id)?;
        let state = ctx.state()?;
        let found = integrations::get_in(&state.db, ctx.principal()?.tenancy(), id).await?;
        let scope = scope_of(ctx, found.application_id).await?;
        Ok(Integration(integrations::get(&state.db, &scope, id).await?))
    }
}

#[derive(Default)]
pub struct IntegrationMutation;

#[Object]
impl IntegrationMutation {
    /// Permissions: operator, or an unrestricted secret key of the application.
    async fn create_integration(
        &self,
        ctx: &Context<'_>,
        input: CreateIntegrationInput,
    ) -> async_graphql::Result<Integration> {
        let scope = app_scope(ctx, input.application_id.as_ref()).await?;
        let state = ctx.state()?;
        let new = NewIntegration {
            service_id: input.service_id,
            client_id: input.client_id,
            client_secret: input.client_secret.map(Secret::new),
            scopes: input.scopes,
            enabled: input.enabled,
            custom_provider: custom_provider(input.custom_provider)?,
        };
        Ok(Integration(
            integrations::create(&state.deps(), &scope, new).await?,
        ))
    }

    /// Permissions: operator, or an unrestricted secret key of the application.
    /// Takes effect on the next proxied call, on every replica.
    async fn update_integration(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: UpdateIntegrationInput,
    ) -> async_graphql::Result<Integration> {
        let id = ids::decode_as(NodeType::Integration, &id)?;
        let state = ctx.state()?;
        let found = integrations::get_in(&state.db, ctx.principal()?.tenancy(), id).await?;
        let scope = scope_of(ctx, found.application_id).await?;
        let changes = IntegrationChanges {
            client_id: input.client_id.as_opt_ref().map(|v| v.cloned()),
            client_secret: input
                .client_secret
                .as_opt_ref()
                .map(|v| v.map(|s| Secret::new(s.clone()))),
            scopes: input.scopes,
            enabled: input.enabled,
            custom_provider: custom_provider(input.custom_provider)?,
        };
        Ok(Integration(
            integrations::update(&state.deps(), &scope, id, changes).await?,
        ))
    }

    /// Permissions: operator, or an unrestricted secret key. Refused (`CONFLICT`) while
    /// connections use the integration.
    async fn delete_integration(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<Integration> {
        let id = ids::decode_as(NodeType::Integration, &id)?;
        let state = ctx.state()?;
        let found = integrations::get_in(&state.db, ctx.principal()?.tenancy(), id).await?;
        let scope = scope_of(ctx, found.application_id).await?;
        Ok(Integration(
            integrations::delete(&state.db, &scope, id).await?,
        ))
    }
}
