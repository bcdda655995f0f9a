//! The per-key GraphQL rate limit: each request of a batch costs its root fields, aliases
//! included (`a: viewer b: viewer` costs two), counted before it executes.

use std::sync::Arc;

use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextParseQuery};
use async_graphql::parser::types::{
    DocumentOperations, ExecutableDocument, Selection, SelectionSet,
};
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
        let cost = root_fields(&document);
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

/// Root fields of the costliest operation in the document (only one runs; the caller's
/// `operationName` is not known here, so the largest is counted).
pub fn root_fields(document: &ExecutableDocument) -> usize {
    let count = |set: &SelectionSet| count_set(document, set, 0);
    match &document.operations {
        DocumentOperations::Single(op) => count(&op.node.selection_set.node),
        DocumentOperations::Multiple(ops) => ops
            .values()
            .map(|op| count(&op.node.selection_set.node))
            .max()
            .unwrap_or(0),
    }
}

fn count_set(document: &ExecutableDocument, set: &SelectionSet, depth: usize) -> usize {
    if depth > 10 {
        return 0;
    }
    set.items
        .iter()
        .map(|selection| match &selection.node {
            Selection::Field(_) => 1,
            Selection::InlineFragment(f) => {
                count_set(document, &f.node.selection_set.node, depth + 1)
            }
            Selection::FragmentSpread(spread) => document
                .fragments
                .get(&spread.node.fragment_name.node)
                .map_or(0, |f| {
                    count_set(document, &f.node.selection_set.node, depth + 1)
                }),
        })
        .sum()
}
