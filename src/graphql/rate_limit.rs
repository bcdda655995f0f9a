//! The per-key GraphQL rate limit: each request of a batch costs its root fields, aliases
//! included (`a: viewer b: viewer` costs two), counted before it executes.

use async_graphql::ServerError;
use async_graphql::parser::types::ExecutableDocument;

use crate::auth::Principal;
use crate::state::AppState;

/// Counts the document's root fields against the calling key's (or operator token's) limit.
pub async fn count(
    state: &AppState,
    principal: &Principal,
    document: &ExecutableDocument,
) -> Result<(), ServerError> {
    let key = match principal {
        Principal::SecretKey { key_id, .. } => *key_id,
        Principal::Operator { token_id } => *token_id,
    };
    let cost = super::root_fields::count(document);
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
    Ok(())
}
