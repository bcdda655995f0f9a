//! Layered configuration: built-in defaults → optional TOML file → environment.
//!
//! Environment variables are `KEYWAY_<KEY>` (upper-case key), plus the conventional
//! `DATABASE_URL` and `PUBLIC_URL`. An unknown key, in the file or as a `KEYWAY_*` variable,
//! is an error naming it: a typo must never silently fall back to a default.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, bail};
use serde::Deserialize;
use url::Url;

use crate::crypto::Secret;

mod load;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    #[default]
    Development,
    Production,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Human,
    Json,
}

/// Which header trusted proxies record the caller in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2` (the de facto one: AWS, GCP, nginx, Envoy…).
    #[default]
    #[serde(rename = "x-forwarded-for")]
    XForwardedFor,
    /// RFC 7239: `Forwarded: for=client, for="[2001:db8::1]:4711"`.
    #[serde(rename = "forwarded")]
    Forwarded,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `development` (default) or `production`.
    pub env: Environment,
    /// Address the HTTP server binds.
    pub listen: SocketAddr,
    /// Where the SQLite database (and, later, the dev key file) live.
    pub data_dir: PathBuf,
    /// `postgres://…` or `sqlite://…`; unset means SQLite at `<data_dir>/keyway.db`.
    pub database_url: Option<Secret>,
    /// Largest connection pool the server opens.
    pub database_max_connections: u32,
    /// External base URL (redirect URIs, session links). Required in production.
    pub public_url: Option<Url>,
    /// 32 bytes, hex or base64. Required in production.
    pub master_key: Option<Secret>,
    /// Apply pending migrations when `serve` starts.
    pub auto_migrate: bool,
    /// HTTP worker threads; defaults to the number of CPUs.
    pub http_workers: Option<usize>,
    /// Hosts (`host` or `host:port`) an operator allows even though they are loopback or
    /// private, and over plain http: local test providers and upstreams. Empty by default.
    pub allowed_private_hosts: Vec<String>,
    /// Peers (addresses or CIDR ranges) whose `client_ip_header` names the caller: the load
    /// balancers in front of Keyway. Empty by default: the peer is the caller.
    pub trusted_proxies: Vec<String>,
    /// The header trusted proxies record the caller in.
    pub client_ip_header: ForwardedHeader,
    /// A PEM file of certificate authorities trusted for calls out (proxy, token, revocation,
    /// webhooks) besides the platform's own: providers or endpoints behind a private CA.
    pub upstream_ca_file: Option<PathBuf>,
    /// Timeout of each call to a provider (token, revocation), in seconds.
    pub upstream_timeout_secs: u64,
    /// How long a replica may hold a connection's refresh lease before another may take over.
    pub refresh_lease_secs: u64,
    /// The built-in demo OAuth provider at `/demo-provider/`; defaults to on outside production.
    pub demo_provider: Option<bool>,
    /// Largest request or response body the proxy passes, in bytes.
    pub proxy_max_body_bytes: u64,
    /// How long decrypted credentials stay in the proxy's memory, in seconds (0: not cached).
    pub credential_cache_secs: u64,
    /// The longest a proxied call may wait out a provider's 429 when its caller asks to
    /// (`Retry-After` within the caller's bound and this one), in seconds (0: never waits).
    pub proxy_rate_limit_wait_max_secs: u64,
    /// GraphQL root fields (aliases and batch entries each count) one key may run per minute
    /// (0: unlimited).
    pub graphql_rate_limit_per_minute: u64,
    /// Request logs older than this many days are deleted.
    pub log_retention_days: u64,
    /// Events (the outbox) older than this many days are deleted.
    pub event_retention_days: u64,
    /// Finished webhook deliveries older than this many days are deleted.
    pub webhook_delivery_retention_days: u64,
    /// Seconds to wait before each webhook delivery attempt, comma-separated: the first is
    /// the first attempt, each further one a retry (about SPEC §6's schedule, ±10% jitter).
    pub webhook_retry_schedule: String,
    /// Timeout of one webhook delivery, in seconds (at most 15).
    pub webhook_timeout_secs: u64,
    /// SQLite: how often the events outbox is read, in milliseconds, behind the wake-up that
    /// every commit in this process gives the relay (PostgreSQL uses LISTEN/NOTIFY instead).
    pub outbox_poll_ms: u64,
    /// After a data key rotation, the server moves values sealed under older keys to the new
    /// one by itself; off, they stay until `keyway keys reencrypt` moves them.
    pub reencrypt_in_background: bool,
    pub log_format: LogFormat,
    /// A `tracing` filter (`info`, `keyway=debug,sea_orm=warn`, …); `RUST_LOG` overrides it.
    pub log_level: String,
    /// GraphiQL on `GET /graphql`; defaults to on outside production.
    pub graphiql: Option<bool>,
    /// Schema introspection and field suggestions; default on outside production.
    pub introspection: Option<bool>,
    /// When set, `GET /metrics` answers only `Authorization: Bearer <this>`; unset, it is
    /// open (it names no tenant: see `metrics`).
    pub metrics_token: Option<Secret>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            env: Environment::Development,
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("./keyway-data"),
            database_url: None,
            database_max_connections: 10,
            public_url: None,
            master_key: None,
            auto_migrate: true,
            http_workers: None,
            allowed_private_hosts: Vec::new(),
            trusted_proxies: Vec::new(),
            client_ip_header: ForwardedHeader::default(),
            upstream_ca_file: None,
            upstream_timeout_secs: 15,
            refresh_lease_secs: 30,
            demo_provider: None,
            proxy_max_body_bytes: 10 * 1024 * 1024,
            credential_cache_secs: 30,
            proxy_rate_limit_wait_max_secs: 30,
            graphql_rate_limit_per_minute: 3000,
            log_retention_days: 30,
            event_retention_days: 7,
            webhook_delivery_retention_days: 30,
            webhook_retry_schedule: "0,5,300,1800,7200,18000,36000,36000".to_owned(),
            webhook_timeout_secs: 15,
            outbox_poll_ms: 250,
            reencrypt_in_background: true,
            log_format: LogFormat::Human,
            log_level: "info".to_owned(),
            graphiql: None,
            introspection: None,
            metrics_token: None,
        }
    }
}

impl Config {
    fn validate(&self) -> anyhow::Result<()> {
        if let Some(key) = &self.master_key {
            crate::crypto::tokens::parse_master_key(key.expose())
                .map_err(anyhow::Error::msg)
                .context("master_key is not 32 bytes of hex or base64")?;
        }
        if let Some(url) = &self.public_url
            && !matches!(url.scheme(), "http" | "https")
        {
            bail!("public_url must be an http(s) URL");
        }
        if self.env == Environment::Production {
            if self.master_key.is_none() {
                bail!("production mode needs an explicit master key (KEYWAY_MASTER_KEY)");
            }
            if self.public_url.is_none() {
                bail!("production mode needs an explicit public URL (PUBLIC_URL)");
            }
        }
        if !(1..=120).contains(&self.upstream_timeout_secs) {
            bail!("upstream_timeout_secs must be between 1 and 120");
        }
        if !(1..=1024 * 1024 * 1024).contains(&self.proxy_max_body_bytes) {
            bail!("proxy_max_body_bytes must be between 1 and 1073741824");
        }
        if self.credential_cache_secs > 3600 {
            bail!("credential_cache_secs must be at most 3600");
        }
        if self.proxy_rate_limit_wait_max_secs > 300 {
            bail!("proxy_rate_limit_wait_max_secs must be at most 300");
        }
        if self.webhook_retry_delays().is_none() {
            bail!("webhook_retry_schedule must be 1 to 20 comma-separated whole seconds");
        }
        if !(1..=15).contains(&self.webhook_timeout_secs) {
            bail!("webhook_timeout_secs must be between 1 and 15");
        }
        if !(1..=3_600_000).contains(&self.outbox_poll_ms) {
            bail!("outbox_poll_ms must be between 1 and 3600000");
        }
        if !(1..=3650).contains(&self.log_retention_days) {
            bail!("log_retention_days must be between 1 and 3650");
        }
        if !(1..=3650).contains(&self.event_retention_days) {
            bail!("event_retention_days must be between 1 and 3650");
        }
        if !(1..=3650).contains(&self.webhook_delivery_retention_days) {
            bail!("webhook_delivery_retention_days must be between 1 and 3650");
        }
        if !(1..=300).contains(&self.refresh_lease_secs) {
            bail!("refresh_lease_secs must be between 1 and 300");
        }
        if self.http_workers == Some(0) {
            bail!("http_workers must be at least 1");
        }
        if self
            .metrics_token
            .as_ref()
            .is_some_and(|t| t.expose().trim().len() < 16)
        {
            bail!("metrics_token must be at least 16 characters");
        }
        self.trusted_proxy_nets()?;
        if self.database_max_connections == 0 {
            bail!("database_max_connections must be at least 1");
        }
        Ok(())
    }

    /// `trusted_proxies` parsed: each an address (a range of one) or a CIDR range.
    pub fn trusted_proxy_nets(&self) -> anyhow::Result<Vec<ipnet::IpNet>> {
        self.trusted_proxies
            .iter()
            .map(|entry| {
                let text = entry.trim();
                text.parse::<ipnet::IpNet>()
                    .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| {
                        anyhow::anyhow!(
                            "trusted_proxies: {entry:?} is not an IP address or CIDR range"
                        )
                    })
            })
            .collect()
    }

    pub fn is_production(&self) -> bool {
        self.env == Environment::Production
    }

    pub fn graphiql_enabled(&self) -> bool {
        self.graphiql.unwrap_or(!self.is_production())
    }

    pub fn introspection_enabled(&self) -> bool {
        self.introspection.unwrap_or(!self.is_production())
    }

    pub fn demo_provider_enabled(&self) -> bool {
        self.demo_provider.unwrap_or(!self.is_production())
    }

    /// Whether an operator allowed this (private or loopback) host, with or without port —
    /// or it is this server itself while the demo provider is on.
    pub fn allows_private_host(&self, host: &str, port: Option<u16>) -> bool {
        if self.demo_provider_enabled()
            && let Ok(own) = Url::parse(&self.public_base_url())
            && own.host_str() == Some(host)
            && own.port() == port
        {
            return true;
        }
        self.allowed_private_hosts.iter().any(|allowed| {
            allowed.eq_ignore_ascii_case(host)
                || port.is_some_and(|p| allowed.eq_ignore_ascii_case(&format!("{host}:{p}")))
        })
    }

    /// The parsed `webhook_retry_schedule`.
    pub fn webhook_retry_delays(&self) -> Option<Vec<std::time::Duration>> {
        let delays: Option<Vec<_>> = self
            .webhook_retry_schedule
            .split(',')
            .map(|s| {
                s.trim()
                    .parse::<u64>()
                    .ok()
                    .map(std::time::Duration::from_secs)
            })
            .collect();
        delays.filter(|d| (1..=20).contains(&d.len()))
    }

    /// The redirect URI registered at every provider.
    pub fn oauth_callback_url(&self) -> String {
        format!("{}/oauth/callback", self.public_base_url())
    }

    /// The base URL others reach this server at.
    pub fn public_base_url(&self) -> String {
        match &self.public_url {
            Some(url) => url.as_str().trim_end_matches('/').to_owned(),
            None => format!("http://{}", self.listen),
        }
    }
}
