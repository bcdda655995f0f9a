//! The GraphQL API: schema assembly and one module per noun. Resolvers prove the caller,
//! call a service and shape the answer; GraphQL types are their own structs, never entities.

pub mod admission;
mod api_keys;
mod applications;
mod connect;
mod connections;
mod consumers;
pub mod context;
pub mod documents;
mod events;
mod integrations;
pub mod limits;
mod logs;
pub mod memo;
mod node;
mod providers;
mod proxy;
mod rate_limit;
mod relay;
pub mod root_fields;
mod viewer;
mod webhooks;

use async_graphql::{MergedObject, Schema};

use crate::config::Config;
use crate::state::AppState;

pub use limits::{MAX_ALIASES, MAX_FIELDS};

/// Deeper than any sane query, yet deep enough for GraphiQL's introspection query.
pub const MAX_DEPTH: usize = 15;
/// What a document may cost. A field costs 1 and a page `first` times its selection, so a full
/// page (200 rows of every field of a connection or a log row) fits; a field that runs a
/// query for each row it is selected on costs `ROW_QUERY_COST` besides, so a page of those
/// (or a list inside a list) does not.
pub const MAX_COMPLEXITY: usize = 20_000;
/// The complexity of a field that runs a database query each time it resolves.
pub const ROW_QUERY_COST: usize = 100;
/// Requests in one batched POST.
pub const MAX_BATCH: usize = 10;

#[derive(MergedObject, Default)]
pub struct QueryRoot(
    viewer::ViewerQuery,
    node::NodeQuery,
    applications::ApplicationQuery,
    api_keys::ApiKeyQuery,
    consumers::ConsumerQuery,
    providers::ProviderQuery,
    integrations::IntegrationQuery,
    connections::ConnectionQuery,
    logs::LogQuery,
    webhooks::WebhookQuery,
);

#[derive(MergedObject, Default)]
pub struct MutationRoot(
    applications::ApplicationMutation,
    api_keys::ApiKeyMutation,
    consumers::ConsumerMutation,
    integrations::IntegrationMutation,
    connections::ConnectionMutation,
    connect::ConnectMutation,
    proxy::ProxyMutation,
    webhooks::WebhookMutation,
);

pub type KeywaySchema = Schema<QueryRoot, MutationRoot, events::SubscriptionRoot>;

pub fn build_schema(state: AppState) -> KeywaySchema {
    let config = state.config.clone();
    let schema = builder(&config).data(state).finish();
    root_fields::learn(&schema);
    schema
}

/// The SDL, as `keyway schema` prints it and `schema.graphql` stores it.
pub fn sdl() -> String {
    builder(&Config::default()).finish().sdl()
}

fn builder(
    config: &Config,
) -> async_graphql::SchemaBuilder<QueryRoot, MutationRoot, events::SubscriptionRoot> {
    let mut builder = Schema::build(
        QueryRoot::default(),
        MutationRoot::default(),
        events::SubscriptionRoot,
    )
    .limit_depth(MAX_DEPTH)
    .limit_complexity(MAX_COMPLEXITY)
    .limit_directives(20)
    .register_output_type::<node::Node>();
    if !config.introspection_enabled() {
        builder = builder.disable_introspection().disable_suggestions();
    }
    builder
}
