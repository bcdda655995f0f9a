//! Consumers: the tenant application's end users.

use async_graphql::connection::Connection as RelayConnection;
use async_graphql::{Context, ID, InputObject, Object, SimpleObject};
use chrono::{DateTime, Utc};
use entity::consumer::Model;

use super::connections::Connection;
use super::context::ContextExt;
use super::memo::ConsumerPages;
use super::relay;
use crate::auth::AppScope;
use crate::ids::{self, NodeType};
use crate::service::consumers::{self, ConsumerFilter, ConsumerMetadata};
use crate::service::pagination::PageRequest;

pub struct Consumer(pub Model);

#[Object]
impl Consumer {
    pub async fn id(&self) -> ID {
        ids::encode(NodeType::Consumer, self.0.id)
    }

    /// The tenant's own identifier for this consumer.
    async fn consumer_id(&self) -> &str {
        &self.0.consumer_id
    }

    async fn application_id(&self) -> ID {
        ids::encode(NodeType::Application, self.0.application_id)
    }

    async fn metadata(&self) -> ConsumerMetadataOutput<'_> {
        ConsumerMetadataOutput {
            account_name: self.0.account_name.as_deref(),
            user_name: self.0.user_name.as_deref(),
            email: self.0.email.as_deref(),
            image: self.0.image.as_deref(),
        }
    }

    /// The consumer's live connections.
    // A page's consumers read theirs in one query (`memo::ConsumerPages`), but each brings a
    // list: still costed as a per-row query, so a page of consumers with their connections
    // stays a list inside a list.
    #[graphql(complexity = "super::ROW_QUERY_COST + 10 * child_complexity")]
    async fn connections(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Connection>> {
        Ok(self
            .live_connections(ctx)
            .await?
            .into_iter()
            .map(Connection)
            .collect())
    }

    /// Service ids the consumer has live connections to.
    #[graphql(complexity = "super::ROW_QUERY_COST")]
    async fn services(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<String>> {
        let mut services: Vec<String> = self
            .live_connections(ctx)
            .await?
            .into_iter()
            .map(|c| c.service_id)
            .collect();
        services.sort();
        services.dedup();
        Ok(services)
    }

    /// Calls made for this consumer, all time, by API style: running totals, kept when the
    /// calls' log rows pass retention.
    #[graphql(complexity = "super::ROW_QUERY_COST")]
    async fn request_counts(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<super::logs::RequestCountsOutput> {
        let state = ctx.state()?;
        let scope = ctx
            .principal()?
            .require_app(&state.db, Some(self.0.application_id))
            .await?;
        let counts =
            ConsumerPages::request_counts(ctx.data_opt(), &state.db, &scope, &self.0.consumer_id)
                .await?;
        Ok(counts.into())
    }

    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }

    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
}

impl Consumer {
    async fn live_connections(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Vec<entity::connection::Model>> {
        let state = ctx.state()?;
        let scope = ctx
            .principal()?
            .require_app(&state.db, Some(self.0.application_id))
            .await?;
        let deps = state.deps();
        Ok(ConsumerPages::connections(ctx.data_opt(), &deps, &scope, &self.0.consumer_id).await?)
    }
}

#[derive(SimpleObject)]
#[graphql(name = "ConsumerMetadata")]
pub struct ConsumerMetadataOutput<'a> {
    account_name: Option<&'a str>,
    user_name: Option<&'a str>,
    email: Option<&'a str>,
    image: Option<&'a str>,
}

/// Fields left out are unchanged; an empty string clears one.
#[derive(InputObject, Default)]
pub struct ConsumerMetadataInput {
    pub account_name: Option<String>,
    pub user_name: Option<String>,
    pub email: Option<String>,
    /// An http(s) URL of the consumer's picture or logo.
    pub image: Option<String>,
}

#[derive(InputObject)]
pub struct UpsertConsumerInput {
    /// Required for operators; a secret key may only name its own application.
    pub application_id: Option<ID>,
    pub consumer_id: String,
    pub metadata: Option<ConsumerMetadataInput>,
}

#[derive(InputObject, Default)]
#[graphql(name = "ConsumerFilter")]
pub struct ConsumerFilterInput {
    /// Case-insensitive substring of the consumer id, account name, user name or email.
    pub search: Option<String>,
}

#[derive(SimpleObject)]
pub struct DeleteConsumerPayload {
    pub id: ID,
    pub consumer_id: String,
}

pub struct ConsumerTotals {
    scope: AppScope,
    search: Option<String>,
}

#[Object]
impl ConsumerTotals {
    /// Consumers matching the filter.
    async fn total_count(&self, ctx: &Context<'_>) -> async_graphql::Result<u64> {
        let filter = ConsumerFilter {
            search: self.search.clone(),
        };
        Ok(consumers::count(&ctx.state()?.db, &self.scope, &filter).await?)
    }
}

async fn app_scope(
    ctx: &Context<'_>,
    application_id: Option<&ID>,
) -> async_graphql::Result<AppScope> {
    let app = ids::decode_optional(NodeType::Application, application_id)?;
    Ok(ctx.principal()?.require_app(&ctx.state()?.db, app).await?)
}

#[derive(Default)]
pub struct ConsumerQuery;

#[Object]
impl ConsumerQuery {
    /// Permissions: secret key (its application), operator (naming `applicationId`).
    #[graphql(complexity = "crate::graphql::relay::page_cost(first, child_complexity)")]
    async fn consumers(
        &self,
        ctx: &Context<'_>,
        application_id: Option<ID>,
        first: Option<i32>,
        after: Option<String>,
        filter: Option<ConsumerFilterInput>,
    ) -> async_graphql::Result<RelayConnection<String, Consumer, ConsumerTotals>> {
        let scope = app_scope(ctx, application_id.as_ref()).await?;
        let page = PageRequest::parse(first, after.as_deref())?;
        let filter = ConsumerFilter {
            search: filter.unwrap_or_default().search,
        };
        let rows = consumers::list(&ctx.state()?.db, &scope, &filter, &page).await?;
        if let Some(memo) = ctx.data_opt::<ConsumerPages>() {
            let listed = rows.items.iter().map(|c| c.consumer_id.clone()).collect();
            memo.offer(scope.application_id(), listed);
        }
        let totals = ConsumerTotals {
            scope,
            search: filter.search,
        };
        Ok(relay::connection(
            rows,
            |m| consumers::cursor_key(m).to_owned(),
            Consumer,
            totals,
        ))
    }

    /// Permissions: secret key (its application), operator (naming `applicationId`).
    async fn consumer(
        &self,
        ctx: &Context<'_>,
        consumer_id: String,
        application_id: Option<ID>,
    ) -> async_graphql::Result<Consumer> {
        let scope = app_scope(ctx, application_id.as_ref()).await?;
        Ok(Consumer(
            consumers::get(&ctx.state()?.db, &scope, &consumer_id).await?,
        ))
    }
}

#[derive(Default)]
pub struct ConsumerMutation;

#[Object]
impl ConsumerMutation {
    /// Permissions: secret key (its application), operator (naming `applicationId`).
    async fn upsert_consumer(
        &self,
        ctx: &Context<'_>,
        input: UpsertConsumerInput,
    ) -> async_graphql::Result<Consumer> {
        let scope = app_scope(ctx, input.application_id.as_ref()).await?;
        let m = input.metadata.unwrap_or_default();
        let metadata = ConsumerMetadata {
            account_name: m.account_name,
            user_name: m.user_name,
            email: m.email,
            image: m.image,
        };
        let consumer =
            consumers::upsert(&ctx.state()?.db, &scope, &input.consumer_id, metadata).await?;
        Ok(Consumer(consumer))
    }

    /// Permissions: secret key (its application), operator (naming `applicationId`).
    async fn delete_consumer(
        &self,
        ctx: &Context<'_>,
        consumer_id: String,
        application_id: Option<ID>,
    ) -> async_graphql::Result<DeleteConsumerPayload> {
        let scope = app_scope(ctx, application_id.as_ref()).await?;
        let deleted = consumers::delete(&ctx.state()?.deps(), &scope, &consumer_id).await?;
        Ok(DeleteConsumerPayload {
            id: ids::encode(NodeType::Consumer, deleted.id),
            consumer_id: deleted.consumer_id,
        })
    }
}
