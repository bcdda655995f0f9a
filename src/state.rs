//! What every handler and resolver shares: the database, the configuration, and the
//! background bookkeepers.

use std::sync::Arc;

use sea_orm::DatabaseConnection;

use crate::catalog::Catalog;
use crate::config::Config;
use crate::service::connections::Deps;
use crate::service::keys::KeyStore;
use crate::service::last_used::LastUsedRecorder;

#[derive(Clone)]
pub struct AppState {
    pub db: DatabaseConnection,
    pub config: Arc<Config>,
    pub last_used: Arc<LastUsedRecorder>,
    pub keys: Arc<KeyStore>,
    pub catalog: Arc<Catalog>,
    /// The one client for calls to providers (`upstream::client`).
    pub http: reqwest::Client,
    pub refresher: Arc<crate::service::refresh::Refresher>,
    /// The built-in sandbox provider, when `demo_provider` is on.
    pub demo: Option<Arc<crate::demo::DemoProvider>>,
    /// Decrypted proxy targets (`service::proxy::cache`).
    pub cache: Arc<crate::service::proxy::CredentialCache>,
    /// Plan limits and the per-key GraphQL rate limit.
    pub limits: Arc<crate::service::usage::Limits>,
    /// Request logs, written in batches off the request path.
    pub logs: Arc<crate::service::usage::RequestLogWriter>,
    /// Proven keys and tokens (`auth::cache`).
    pub principals: Arc<crate::auth::cache::PrincipalCache>,
    /// Committed events, for this replica's subscribers.
    pub bus: Arc<crate::service::events::relay::EventBus>,
    /// Wakes this replica's webhook worker for deliveries queued without an event.
    pub webhook_wake: Arc<crate::service::webhooks::worker::WebhookWake>,
    /// GraphQL documents parsed before, by their text.
    pub documents: Arc<crate::graphql::documents::DocumentCache>,
    /// Where a caller's address comes from (`trusted_proxies`).
    pub client_ip: Arc<crate::web::client_ip::ClientIp>,
    /// This replica's Prometheus metrics (`/metrics`).
    pub metrics: Arc<crate::metrics::Metrics>,
}

impl AppState {
    pub fn deps(&self) -> Deps<'_> {
        Deps {
            db: &self.db,
            keys: &self.keys,
            catalog: &self.catalog,
            config: &self.config,
            http: &self.http,
            refresher: &self.refresher,
            cache: &self.cache,
            bus: &self.bus,
        }
    }
}
