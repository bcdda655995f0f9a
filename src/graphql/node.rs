//! The Relay `Node` interface and `node(id)`.

use async_graphql::{Context, ID, Interface, Object};

use super::api_keys::ApiKey;
use super::applications::Application;
use super::connections::Connection;
use super::consumers::Consumer;
use super::context::ContextExt;
use super::integrations::Integration;
use super::webhooks::Webhook;
use crate::auth::AppScope;
use crate::ids::{self, NodeType};
use crate::service::{api_keys, applications, connections, consumers, integrations, webhooks};

// One value per `node(id)` call: its size does not matter, boxing would only add noise.
#[allow(clippy::large_enum_variant)]
#[derive(Interface)]
#[graphql(field(name = "id", ty = "ID"))]
pub enum Node {
    Application(Application),
    ApiKey(ApiKey),
    Consumer(Consumer),
    Integration(Integration),
    Connection(Connection),
    Webhook(Webhook),
}

#[derive(Default)]
pub struct NodeQuery;

#[Object]
impl NodeQuery {
    /// Permissions: any authenticated caller; objects outside its tenancy are `NOT_FOUND`.
    async fn node(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Node> {
        let (kind, id) = ids::decode(&id)?;
        let db = &ctx.state()?.db;
        let tenancy = ctx.principal()?.tenancy();
        Ok(match kind {
            NodeType::Application => {
                Node::Application(Application(applications::get(db, tenancy, id).await?))
            }
            NodeType::ApiKey => Node::ApiKey(ApiKey(api_keys::get(db, tenancy, id).await?)),
            NodeType::Consumer => {
                Node::Consumer(Consumer(consumers::get_by_id(db, tenancy, id).await?))
            }
            NodeType::Integration => {
                let found = integrations::get_in(db, tenancy, id).await?;
                let scope = scope_for(ctx, found.application_id).await?;
                Node::Integration(Integration(integrations::get(db, &scope, id).await?))
            }
            NodeType::Connection => {
                let app = connections::owner(db, tenancy, id).await?;
                let scope = scope_for(ctx, app).await?;
                Node::Connection(Connection(connections::get(db, &scope, id).await?))
            }
            NodeType::Webhook => {
                let app = webhooks::owner(db, tenancy, id).await?;
                let scope = scope_for(ctx, app).await?;
                Node::Webhook(Webhook(webhooks::get(db, &scope, id).await?))
            }
            // Deliveries are listed under their endpoint (`webhookDeliveries`).
            NodeType::WebhookDelivery => return Err(crate::error::Error::NotFound.into()),
        })
    }
}

async fn scope_for(
    ctx: &Context<'_>,
    application_id: uuid::Uuid,
) -> crate::error::Result<AppScope> {
    ctx.principal()?
        .require_app(&ctx.state()?.db, Some(application_id))
        .await
}
