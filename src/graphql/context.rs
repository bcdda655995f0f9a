//! What a resolver asks of its context: the shared state and the proven principal.

use async_graphql::Context;

use crate::auth::Principal;
use crate::error::{Error, Result};
use crate::state::AppState;

/// Where a request came from, for request logs.
#[derive(Clone, Default)]
pub struct RequestInfo {
    pub request_id: Option<String>,
    pub source_ip: Option<String>,
}

/// What resolvers learn about a GraphQL call that its request log should show (the consumer
/// and service it acted for). Shared by the requests of one batch; the first tag wins.
#[derive(Clone, Default)]
pub struct LogTags(std::sync::Arc<std::sync::Mutex<Option<(String, String)>>>);

impl LogTags {
    pub fn tag(&self, consumer_id: &str, service_id: &str) {
        let mut slot = self.0.lock().unwrap_or_else(|p| p.into_inner());
        slot.get_or_insert_with(|| (consumer_id.to_owned(), service_id.to_owned()));
    }

    pub fn apply(&self, entry: &mut crate::service::usage::LogEntry) {
        let slot = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((consumer, service)) = slot.as_ref() {
            entry.consumer_id = Some(consumer.as_str().into());
            entry.service_id = Some(service.as_str().into());
        }
    }
}

pub trait ContextExt {
    fn state(&self) -> Result<&AppState>;
    fn principal(&self) -> Result<&Principal>;
    fn request_info(&self) -> RequestInfo;
    /// Notes the consumer and service a call acted for, for its request log.
    fn tag_consumer(&self, consumer_id: &str, service_id: &str);
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

    fn request_info(&self) -> RequestInfo {
        self.data_opt::<RequestInfo>().cloned().unwrap_or_default()
    }

    fn tag_consumer(&self, consumer_id: &str, service_id: &str) {
        if let Some(tags) = self.data_opt::<LogTags>() {
            tags.tag(consumer_id, service_id);
        }
    }
}
