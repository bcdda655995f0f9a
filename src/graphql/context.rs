//! What a resolver asks of its context: the shared state and the proven principal.

use async_graphql::Context;

use crate::auth::Principal;
use crate::error::{Error, Result};
use crate::state::AppState;

pub trait ContextExt {
    fn state(&self) -> Result<&AppState>;
    fn principal(&self) -> Result<&Principal>;
}

impl ContextExt for Context<'_> {
    fn state(&self) -> Result<&AppState> {
        self.data::<AppState>()
            .map_err(|_| Error::internal(anyhow::anyhow!("schema built without state")))
    }

    /// Every executed request carries one; its absence means the transport skipped auth.
    fn principal(&self) -> Result<&Principal> {
        self.data::<Principal>().map_err(|_| Error::Unauthenticated)
    }
}
