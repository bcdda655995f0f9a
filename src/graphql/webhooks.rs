//! Webhook endpoints and their deliveries.

use async_graphql::connection::{Connection as RelayConnection, EmptyFields};
use async_graphql::{Context, ID, InputObject, Json, Object, SimpleObject};
use chrono::{DateTime, Utc};
use entity::webhook_delivery::Model as DeliveryModel;
use entity::webhook_endpoint::Model;

use super::context::ContextExt;
use super::relay;
use crate::auth::AppScope;
use crate::ids::{self, NodeType};
use crate::service::pagination::PageRequest;
use crate::service::webhooks::{self, NewWebhook, WebhookChanges};

pub struct Webhook(pub Model);

#[Object]
impl Webhook {
    pub async fn id(&self) -> ID {
        ids::encode(NodeType::Webhook, self.0.id)
    }

    async fn application_id(&self) -> ID {
        ids::encode(NodeType::Application, self.0.application_id)
    }

    async fn url(&self) -> &str {
        &self.0.url
    }

    async fn description(&self) -> Option<&str> {
        self.0.description.as_deref()
    }

    /// The event types sent; empty means all.
    async fn event_types(&self) -> Vec<String> {
        webhooks::event_types(&self.0)
    }

    async fn enabled(&self) -> bool {
        self.0.enabled
    }

    /// Why Keyway disabled the endpoint (a 410 answer), if it did.
    async fn disabled_reason(&self) -> Option<&str> {
        self.0.disabled_reason.as_deref()
    }

    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }

    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
}

pub struct WebhookDelivery(DeliveryModel);

#[Object]
impl WebhookDelivery {
    async fn id(&self) -> ID {
        ids::encode(NodeType::WebhookDelivery, self.0.id)
    }

    /// Also the `webhook-id` header of every attempt.
    async fn event_id(&self) -> String {
        self.0.event_id.to_string()
    }

    async fn event_type(&self) -> &str {
        &self.0.event_type
    }

    /// `pending`, `succeeded` or `failed`.
    async fn status(&self) -> &str {
        &self.0.status
    }

    async fn attempts(&self) -> i32 {
        self.0.attempts
    }

    async fn next_attempt_at(&self) -> Option<DateTime<Utc>> {
        self.0.next_attempt_at
    }

    async fn last_attempt_at(&self) -> Option<DateTime<Utc>> {
        self.0.last_attempt_at
    }

    async fn last_status_code(&self) -> Option<i32> {
        self.0.last_status_code
    }

    async fn last_error(&self) -> Option<&str> {
        self.0.last_error.as_deref()
    }

    /// The event as sent in the body's `data`.
    async fn payload(&self) -> Json<serde_json::Value> {
        Json(self.0.payload.clone())
    }

    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
}

#[derive(InputObject)]
pub struct CreateWebhookInput {
    /// Required for operators; a secret key may only name its own application.
    pub application_id: Option<ID>,
    /// https (or a host in `allowed_private_hosts`); names that resolve to private addresses
    /// are refused.
    pub url: String,
    pub description: Option<String>,
    /// Event types to send (`connection.created`, …); empty or absent: all.
    pub event_types: Option<Vec<String>>,
    #[graphql(default = true)]
    pub enabled: bool,
}

#[derive(InputObject)]
pub struct UpdateWebhookInput {
    pub url: Option<String>,
    pub description: Option<String>,
    pub event_types: Option<Vec<String>>,
    /// Re-enabling clears `disabledReason`.
    pub enabled: Option<bool>,
    /// A new secret, returned this once; the old one keeps signing (beside it) for 24 hours.
    #[graphql(default = false)]
    pub rotate_secret: bool,
}

#[derive(SimpleObject)]
pub struct WebhookPayload {
    pub webhook: Webhook,
    /// The `whsec_…` signing secret: on creation and rotation only.
    pub secret: Option<String>,
}

#[derive(SimpleObject)]
pub struct DeleteWebhookPayload {
    pub id: ID,
}

async fn app_scope(
    ctx: &Context<'_>,
    application_id: Option<&ID>,
) -> async_graphql::Result<AppScope> {
    let app = ids::decode_optional(NodeType::Application, application_id)?;
    Ok(ctx
        .principal()?
        .require_app_admin(&ctx.state()?.db, app)
        .await?)
}

/// The scope of the application owning an endpoint (or delivery's endpoint).
async fn scope_of(ctx: &Context<'_>, endpoint: uuid::Uuid) -> async_graphql::Result<AppScope> {
    let state = ctx.state()?;
    let principal = ctx.principal()?;
    let app = webhooks::owner(&state.db, principal.tenancy(), endpoint).await?;
    Ok(principal.require_app_admin(&state.db, Some(app)).await?)
}

#[derive(Default)]
pub struct WebhookQuery;

#[Object]
impl WebhookQuery {
    /// Permissions: unrestricted secret keys (their application), operators (naming
    /// `applicationId`).
    async fn webhooks(
        &self,
        ctx: &Context<'_>,
        application_id: Option<ID>,
    ) -> async_graphql::Result<Vec<Webhook>> {
        let scope = app_scope(ctx, application_id.as_ref()).await?;
        let rows = webhooks::list(&ctx.state()?.db, &scope).await?;
        Ok(rows.into_iter().map(Webhook).collect())
    }

    /// Newest first. Permissions: as `webhooks`.
    #[graphql(complexity = "crate::graphql::relay::page_cost(first, child_complexity)")]
    async fn webhook_deliveries(
        &self,
        ctx: &Context<'_>,
        endpoint_id: ID,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<RelayConnection<String, WebhookDelivery, EmptyFields>> {
        let id = ids::decode_as(NodeType::Webhook, &endpoint_id)?;
        let scope = scope_of(ctx, id).await?;
        let page = PageRequest::parse(first, after.as_deref())?;
        let rows = webhooks::deliveries(&ctx.state()?.db, &scope, id, &page).await?;
        Ok(relay::connection(
            rows,
            |d| d.id.to_string(),
            WebhookDelivery,
            EmptyFields,
        ))
    }
}

#[derive(Default)]
pub struct WebhookMutation;

#[Object]
impl WebhookMutation {
    /// Permissions: as `webhooks`. The secret is in the answer, this once.
    async fn create_webhook(
        &self,
        ctx: &Context<'_>,
        input: CreateWebhookInput,
    ) -> async_graphql::Result<WebhookPayload> {
        let scope = app_scope(ctx, input.application_id.as_ref()).await?;
        let state = ctx.state()?;
        let created = webhooks::create(
            &state.db,
            &state.keys,
            &state.config,
            &scope,
            NewWebhook {
                url: input.url,
                description: input.description,
                event_types: input.event_types.unwrap_or_default(),
                enabled: input.enabled,
            },
        )
        .await?;
        Ok(WebhookPayload {
            webhook: Webhook(created.endpoint),
            secret: created.secret,
        })
    }

    /// Permissions: as `webhooks`.
    async fn update_webhook(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: UpdateWebhookInput,
    ) -> async_graphql::Result<WebhookPayload> {
        let id = ids::decode_as(NodeType::Webhook, &id)?;
        let scope = scope_of(ctx, id).await?;
        let state = ctx.state()?;
        let changes = WebhookChanges {
            url: input.url,
            description: input.description.map(|d| Some(d).filter(|d| !d.is_empty())),
            event_types: input.event_types,
            enabled: input.enabled,
            rotate_secret: input.rotate_secret,
        };
        let updated =
            webhooks::update(&state.db, &state.keys, &state.config, &scope, id, changes).await?;
        Ok(WebhookPayload {
            webhook: Webhook(updated.endpoint),
            secret: updated.secret,
        })
    }

    /// Permissions: as `webhooks`. Its deliveries go with it.
    async fn delete_webhook(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<DeleteWebhookPayload> {
        let uuid = ids::decode_as(NodeType::Webhook, &id)?;
        let scope = scope_of(ctx, uuid).await?;
        webhooks::delete(&ctx.state()?.db, &scope, uuid).await?;
        Ok(DeleteWebhookPayload { id })
    }

    /// Sends a delivery again now, with the same `webhook-id`. Permissions: as `webhooks`.
    async fn redeliver_webhook(
        &self,
        ctx: &Context<'_>,
        delivery_id: ID,
    ) -> async_graphql::Result<WebhookDelivery> {
        let id = ids::decode_as(NodeType::WebhookDelivery, &delivery_id)?;
        let state = ctx.state()?;
        let principal = ctx.principal()?;
        let app = webhooks::delivery_owner(&state.db, principal.tenancy(), id).await?;
        let scope = principal.require_app_admin(&state.db, Some(app)).await?;
        let delivery = webhooks::redeliver(&state.db, &scope, id).await?;
        state.webhook_wake.queued();
        Ok(WebhookDelivery(delivery))
    }
}
