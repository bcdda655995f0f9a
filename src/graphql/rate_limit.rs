//! The per-key GraphQL rate limit: each request of a batch costs its root fields, aliases
//! included (`a: viewer b: viewer` costs two), counted before it executes.

use std::sync::Arc;

use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextParseQuery};
use async_graphql::parser::types::ExecutableDocument;
use async_graphql::{ServerError, ServerResult, Variables};

use crate::auth::Principal;
use crate::state::AppState;

pub struct KeyRateLimit;

impl ExtensionFactory for KeyRateLimit {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(KeyRateLimit)
    }
}

#[async_trait::async_trait]
impl Extension for KeyRateLimit {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let document = next.run(ctx, query, variables).await?;
        let key = match ctx.data_opt::<Principal>() {
            Some(Principal::SecretKey { key_id, .. }) => *key_id,
            Some(Principal::Operator { token_id }) => *token_id,
            None => return Ok(document),
        };
        let Some(state) = ctx.data_opt::<AppState>() else {
            return Ok(document);
        };
        let cost = super::root_fields::count(&document);
        if let Err(err) = state.limits.count_graphql(&state.db, key, cost).await {
            let err: async_graphql::Error = err.into();
            return Err(ServerError {
                message: err.message,
                source: None,
                locations: Vec::new(),
                path: Vec::new(),
                extensions: err.extensions,
            });
        }
        Ok(document)
    }
}
