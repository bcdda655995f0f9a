//! What every request's document must pass before it executes, on every transport (HTTP and
//! graphql-transport-ws): the document limits, then the per-key rate limit. A document
//! refused for its shape costs nothing against the limit; it does no work past parsing.
//!
//! These checks run in front of the schema rather than as async-graphql extensions: with any
//! extension installed, async-graphql routes every field of every answer through the
//! extension chain (a registry lookup and a boxed future per field, list items included).
//! Without them a 50-row `connections` page serves 19% more requests on SQLite and 17% more
//! on PostgreSQL (paired runs, 5 pairs each).

use async_graphql::{Request, ServerError};

use super::{limits, rate_limit};
use crate::auth::Principal;
use crate::state::AppState;

/// Checks the request's parsed document: the transports have parsed it already
/// (`documents::DocumentCache::prepare`), and execution reuses it. A document that does not
/// parse passes: it is answered with its syntax error, as it would be without these checks.
pub async fn admit(
    state: &AppState,
    principal: &Principal,
    request: &mut Request,
) -> Result<(), ServerError> {
    let Ok(document) = request.parsed_query() else {
        return Ok(());
    };
    limits::check(document, state.config.introspection_enabled())?;
    rate_limit::count(state, principal, document).await
}
