//! The Relay `Node` interface and `node(id)`.

use async_graphql::{Context, ID, Interface, Object};

use super::api_keys::ApiKey;
use super::applications::Application;
use super::consumers::Consumer;
use super::context::ContextExt;
use super::ids::{self, NodeType};
use crate::service::{api_keys, applications, consumers};

#[derive(Interface)]
#[graphql(field(name = "id", ty = "ID"))]
pub enum Node {
    Application(Application),
    ApiKey(ApiKey),
    Consumer(Consumer),
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
        })
    }
}
