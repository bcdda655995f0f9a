//! Keyway: a self-hosted vault for the third-party connections of a SaaS application's users.
//!
//! Layers: transport (`graphql`, `web`) → rules (`service`) → storage (`store`, `entity`),
//! with `auth` proving principals and `crypto` holding everything secret.
#![deny(clippy::unwrap_used, clippy::expect_used)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod auth;
pub mod catalog;
pub mod cli;
pub mod config;
pub mod crypto;
pub mod demo;
pub mod error;
pub mod graphql;
pub mod ids;
pub mod metrics;
pub mod service;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod thread_front;
pub mod upstream;
pub mod web;

/// The hasher of the in-memory maps every proxied call reads (principals, credentials, plans,
/// last-used times): seeded per process, several times cheaper than the standard SipHash on
/// their short keys. Entries are only made for the digests of valid keys and for rows that
/// exist, so a caller cannot fill these maps with keys of its choosing.
pub type FastHasher = foldhash::fast::RandomState;

use std::net::SocketAddr;
use std::sync::Arc;

use actix_web::dev::ServerHandle;
use actix_web::middleware::from_fn;
use actix_web::{App, HttpServer};
use anyhow::Context;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::service::last_used::LastUsedRecorder;
use crate::state::AppState;

/// Connects to the database and, unless told not to, brings its schema up to date; loads the
/// catalog and opens the keyring. Any failure stops the start with a message saying why.
pub async fn build_state(config: Config) -> anyhow::Result<AppState> {
    let mut catalog = catalog::Catalog::builtin().map_err(anyhow::Error::msg)?;
    if config.demo_provider_enabled() {
        let entry = demo::catalog_entry(&config.public_base_url());
        catalog
            .add_local(entry, &|url| {
                url.host_str()
                    .is_some_and(|h| config.allows_private_host(h, url.port()))
            })
            .map_err(anyhow::Error::msg)?;
    }
    let master = crypto::master::load(&config)?;
    // One TLS provider for the process (ring, as sqlx uses); a second call is harmless.
    let _ = rustls::crypto::ring::default_provider().install_default();
    // Before the database: a setting it refuses (`upstream_ca_file`) stops the start untouched.
    let http = upstream::client(&config).map_err(error::Error::into_anyhow)?;
    let db = store::connect(&config).await?;
    if config.auto_migrate {
        store::migrate(&db).await?;
    } else if let Err(reason) = store::readiness(&db).await {
        anyhow::bail!("the database is not ready ({reason}); run `keyway migrate`");
    }
    let keys = service::keys::KeyStore::open(&db, master).await?;
    let metrics = Arc::new(metrics::Metrics::new().map_err(error::Error::into_anyhow)?);
    Ok(AppState {
        http,
        refresher: Arc::new(service::refresh::Refresher::new(
            config.refresh_lease_secs,
            metrics.clone(),
        )),
        cache: Arc::new(service::proxy::CredentialCache::new(
            std::time::Duration::from_secs(config.credential_cache_secs),
        )),
        limits: Arc::new(service::usage::Limits::new(
            config.graphql_rate_limit_per_minute,
        )),
        logs: Arc::new(service::usage::RequestLogWriter::new(metrics.clone())),
        metrics,
        bus: Arc::new(service::events::relay::EventBus::default()),
        webhook_wake: Arc::default(),
        principals: Arc::new(auth::cache::PrincipalCache::default()),
        documents: Arc::new(graphql::documents::DocumentCache::default()),
        client_ip: Arc::new(web::client_ip::ClientIp::new(
            config.trusted_proxy_nets()?,
            config.client_ip_header,
        )),
        demo: config
            .demo_provider_enabled()
            .then(|| Arc::new(demo::DemoProvider::default())),
        db,
        config: Arc::new(config),
        last_used: Arc::new(LastUsedRecorder::default()),
        keys: Arc::new(keys),
        catalog: Arc::new(catalog),
    })
}

/// A running server.
pub struct Server {
    addr: SocketAddr,
    handle: ServerHandle,
    http: JoinHandle<std::io::Result<()>>,
    background: Vec<JoinHandle<()>>,
    state: AppState,
}

/// Whether the server stops itself on SIGINT/SIGTERM (the CLI) or only when told (tests).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Signals {
    Handle,
    Ignore,
}

impl Server {
    pub async fn start(mut config: Config, signals: Signals) -> anyhow::Result<Self> {
        let listen = config.listen;
        // Bind first: with port 0 the real address is known only now, and redirect URIs
        // (and the demo provider) need it when no public_url is configured.
        let listener =
            std::net::TcpListener::bind(listen).with_context(|| format!("binding {listen}"))?;
        let bound = listener.local_addr()?;
        if config.public_url.is_none() {
            config.public_url = Some(format!("http://{bound}").parse()?);
        }
        let state = build_state(config).await?;
        let schema = graphql::build_schema(state.clone());

        let recorder = state.last_used.clone();
        let db = state.db.clone();
        let keys = state.keys.clone();
        let keys_db = state.db.clone();
        let reencrypt = state.config.reencrypt_in_background;
        let refresher = state.refresher.clone();
        let refresh_state = state.clone();
        let (limits, limits_db) = (state.limits.clone(), state.db.clone());
        let (logs, logs_db) = (state.logs.clone(), state.db.clone());
        let relay = service::events::relay::Relay {
            bus: state.bus.clone(),
            principals: state.principals.clone(),
            cache: state.cache.clone(),
            db: state.db.clone(),
            poll_every: std::time::Duration::from_millis(state.config.outbox_poll_ms),
        };
        let webhooks = service::webhooks::worker::WebhookWorker {
            db: state.db.clone(),
            keys: state.keys.clone(),
            http: state.http.clone(),
            config: state.config.clone(),
            metrics: state.metrics.clone(),
            events: state.bus.subscribe(),
            wake: state.webhook_wake.clone(),
        };
        let background = vec![
            tokio::spawn(relay.run()),
            tokio::spawn(webhooks.run()),
            tokio::spawn(async move { limits.counters.run(limits_db).await }),
            tokio::spawn(async move { logs.run(logs_db).await }),
            tokio::spawn(service::housekeeping::run(
                state.db.clone(),
                state.config.clone(),
            )),
            tokio::spawn(async move { recorder.run(db).await }),
            tokio::spawn(async move { keys.run(keys_db, reencrypt).await }),
            tokio::spawn(async move {
                let every = std::time::Duration::from_secs(30);
                refresher.run(refresh_state, every).await
            }),
        ];

        let app_state = state.clone();
        // One table for all workers: sockets on any worker share an execution.
        let subscriptions = actix_web::web::Data::new(web::SharedSubscriptions::default());
        let mut server = HttpServer::new(move || {
            App::new()
                .app_data(actix_web::web::Data::new(app_state.clone()))
                .app_data(actix_web::web::Data::new(schema.clone()))
                .app_data(subscriptions.clone())
                .wrap(from_fn(web::request_id::middleware))
                .configure(web::routes)
        })
        .shutdown_timeout(10)
        .listen(listener)
        .with_context(|| format!("listening on {bound}"))?;
        if let Some(workers) = state.config.http_workers {
            server = server.workers(workers);
        }
        if signals == Signals::Ignore {
            server = server.disable_signals();
        }
        let addr = *server
            .addrs()
            .first()
            .context("the server bound no address")?;
        let server = server.run();
        let handle = server.handle();
        let http = tokio::spawn(server);
        tracing::info!(%addr, "keyway is listening");
        Ok(Self {
            addr,
            handle,
            http,
            background,
            state,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Waits until the server stops (a signal, or `stop`), then finishes bookkeeping.
    pub async fn wait(self) -> anyhow::Result<()> {
        let Server {
            http,
            background,
            state,
            ..
        } = self;
        let result = http.await;
        finish(background, &state).await;
        result.context("the HTTP server task failed")??;
        Ok(())
    }

    /// Stops accepting, lets in-flight requests finish, then finishes bookkeeping.
    pub async fn stop(self) {
        let Server {
            handle,
            http,
            background,
            state,
            ..
        } = self;
        handle.stop(true).await;
        let _ = http.await;
        finish(background, &state).await;
    }
}

async fn finish(background: Vec<JoinHandle<()>>, state: &AppState) {
    // Waits for a batch being written, then writes what is still queued.
    if let Err(err) = state.logs.flush(&state.db).await {
        err.log();
    }
    if let Err(err) = state.limits.counters.sync(&state.db).await {
        err.log();
    }
    for task in background {
        task.abort();
    }
    if let Err(err) = state.last_used.flush(&state.db).await {
        tracing::warn!(error = %err, "could not record last-used times at shutdown");
    }
    if let Err(err) = state.db.clone().close().await {
        tracing::warn!(error = %err, "closing the database failed");
    }
    tracing::info!("keyway stopped");
}
