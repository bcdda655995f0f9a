//! Layered configuration: built-in defaults → optional TOML file → environment.
//!
//! Environment variables are `KEYWAY_<KEY>` (upper-case key), plus the conventional
//! `DATABASE_URL` and `PUBLIC_URL`. An unknown key, in the file or as a `KEYWAY_*` variable,
//! is an error naming it: a typo must never silently fall back to a default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::Deserialize;
use url::Url;

use crate::crypto::Secret;

/// `KEYWAY_*` variables that belong to the CLI client or the test suite, not to the server.
const NON_SERVER_VARS: &[&str] = &[
    "KEYWAY_CONFIG",
    "KEYWAY_URL",
    "KEYWAY_API_KEY",
    "KEYWAY_TEST_DATABASE_URL",
];

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
    /// Seconds to wait before each webhook delivery attempt, comma-separated: the first is
    /// the first attempt, each further one a retry (about SPEC §6's schedule, ±10% jitter).
    pub webhook_retry_schedule: String,
    /// Timeout of one webhook delivery, in seconds (at most 15).
    pub webhook_timeout_secs: u64,
    /// SQLite: how often the events outbox is read, in milliseconds, behind the wake-up that
    /// every commit in this process gives the relay (PostgreSQL uses LISTEN/NOTIFY instead).
    pub outbox_poll_ms: u64,
    pub log_format: LogFormat,
    /// A `tracing` filter (`info`, `keyway=debug,sea_orm=warn`, …); `RUST_LOG` overrides it.
    pub log_level: String,
    /// GraphiQL on `GET /graphql`; defaults to on outside production.
    pub graphiql: Option<bool>,
    /// Schema introspection and field suggestions; default on outside production.
    pub introspection: Option<bool>,
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
            upstream_timeout_secs: 15,
            refresh_lease_secs: 30,
            demo_provider: None,
            proxy_max_body_bytes: 10 * 1024 * 1024,
            credential_cache_secs: 30,
            proxy_rate_limit_wait_max_secs: 30,
            graphql_rate_limit_per_minute: 3000,
            log_retention_days: 30,
            webhook_retry_schedule: "0,5,300,1800,7200,18000,36000,36000".to_owned(),
            webhook_timeout_secs: 15,
            outbox_poll_ms: 250,
            log_format: LogFormat::Human,
            log_level: "info".to_owned(),
            graphiql: None,
            introspection: None,
        }
    }
}

/// The keys a `KEYWAY_*` variable may set, with how its text is typed.
#[derive(Clone, Copy)]
enum Kind {
    Text,
    Integer,
    Boolean,
    /// Comma-separated.
    List,
}

const KEYS: &[(&str, Kind)] = &[
    ("env", Kind::Text),
    ("listen", Kind::Text),
    ("data_dir", Kind::Text),
    ("database_url", Kind::Text),
    ("database_max_connections", Kind::Integer),
    ("public_url", Kind::Text),
    ("master_key", Kind::Text),
    ("auto_migrate", Kind::Boolean),
    ("http_workers", Kind::Integer),
    ("allowed_private_hosts", Kind::List),
    ("upstream_timeout_secs", Kind::Integer),
    ("refresh_lease_secs", Kind::Integer),
    ("demo_provider", Kind::Boolean),
    ("proxy_max_body_bytes", Kind::Integer),
    ("credential_cache_secs", Kind::Integer),
    ("proxy_rate_limit_wait_max_secs", Kind::Integer),
    ("graphql_rate_limit_per_minute", Kind::Integer),
    ("log_retention_days", Kind::Integer),
    ("webhook_retry_schedule", Kind::Text),
    ("webhook_timeout_secs", Kind::Integer),
    ("outbox_poll_ms", Kind::Integer),
    ("log_format", Kind::Text),
    ("log_level", Kind::Text),
    ("graphiql", Kind::Boolean),
    ("introspection", Kind::Boolean),
];

impl Config {
    /// Loads from the process environment and an optional TOML file.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Self> {
        Self::load_from(file, std::env::vars())
    }

    /// Loads from the given variables (tests pass their own).
    pub fn load_from(
        file: Option<&Path>,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> anyhow::Result<Self> {
        let mut table = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading config file {}", path.display()))?;
                toml::from_str::<toml::Table>(&text)
                    .with_context(|| format!("parsing config file {}", path.display()))?
            }
            None => toml::Table::new(),
        };
        // Catch unknown keys in the file before merging the environment, to name the source.
        Self::from_table(table.clone())
            .with_context(|| format!("in config file {}", display(file)))?;

        let mut vars: Vec<(String, String)> = vars.into_iter().collect();
        // Conventional names first, so that the KEYWAY_-prefixed ones win.
        vars.sort_by_key(|(name, _)| name.starts_with("KEYWAY_"));
        for (name, value) in vars {
            let key = match name.as_str() {
                "DATABASE_URL" => "database_url".to_owned(),
                "PUBLIC_URL" => "public_url".to_owned(),
                _ => match name.strip_prefix("KEYWAY_") {
                    Some(_) if NON_SERVER_VARS.contains(&name.as_str()) => continue,
                    Some(rest) => rest.to_ascii_lowercase(),
                    None => continue,
                },
            };
            let Some((_, kind)) = KEYS.iter().find(|(k, _)| *k == key) else {
                bail!("unknown configuration variable {name}: no key `{key}` exists");
            };
            table.insert(key, typed(&name, &value, *kind)?);
        }
        let config = Self::from_table(table).context("in the environment")?;
        config.validate()?;
        Ok(config)
    }

    fn from_table(table: toml::Table) -> anyhow::Result<Self> {
        Ok(Config::deserialize(toml::Value::Table(table))?)
    }

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
        if !(1..=300).contains(&self.refresh_lease_secs) {
            bail!("refresh_lease_secs must be between 1 and 300");
        }
        if self.http_workers == Some(0) {
            bail!("http_workers must be at least 1");
        }
        if self.database_max_connections == 0 {
            bail!("database_max_connections must be at least 1");
        }
        Ok(())
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

fn typed(name: &str, value: &str, kind: Kind) -> anyhow::Result<toml::Value> {
    Ok(match kind {
        Kind::Text => toml::Value::String(value.to_owned()),
        Kind::Integer => toml::Value::Integer(
            value
                .trim()
                .parse()
                .with_context(|| format!("{name} must be a whole number"))?,
        ),
        Kind::List => toml::Value::Array(
            value
                .split(',')
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(|v| toml::Value::String(v.to_owned()))
                .collect(),
        ),
        Kind::Boolean => toml::Value::Boolean(match value.trim() {
            "1" | "true" | "yes" | "on" => true,
            "0" | "false" | "no" | "off" => false,
            _ => bail!("{name} must be true or false"),
        }),
    })
}

fn display(file: Option<&Path>) -> String {
    file.map(|p| p.display().to_string()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_then_file_then_environment() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("keyway.toml");
        std::fs::write(&file, "listen = \"0.0.0.0:9000\"\nlog_level = \"debug\"\n").unwrap();
        let config = Config::load_from(
            Some(&file),
            vars(&[
                ("KEYWAY_LOG_LEVEL", "warn"),
                ("KEYWAY_AUTO_MIGRATE", "false"),
            ]),
        )
        .unwrap();
        assert_eq!(config.listen.port(), 9000);
        assert_eq!(config.log_level, "warn");
        assert!(!config.auto_migrate);
        assert_eq!(config.data_dir, PathBuf::from("./keyway-data"));
    }

    #[test]
    fn unknown_keys_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("keyway.toml");
        std::fs::write(&file, "lisen = \"0.0.0.0:9000\"\n").unwrap();
        let err = format!(
            "{:#}",
            Config::load_from(Some(&file), vars(&[])).unwrap_err()
        );
        assert!(err.contains("lisen"), "{err}");

        let err = format!(
            "{:#}",
            Config::load_from(None, vars(&[("KEYWAY_MASTERKEY", "x")])).unwrap_err()
        );
        assert!(err.contains("KEYWAY_MASTERKEY"), "{err}");
        // Client variables are not server configuration, and are not errors.
        Config::load_from(None, vars(&[("KEYWAY_API_KEY", "kw_sk_x")])).unwrap();
    }

    #[test]
    fn database_url_wins_when_prefixed() {
        let config = Config::load_from(
            None,
            vars(&[
                ("KEYWAY_DATABASE_URL", "postgres://b"),
                ("DATABASE_URL", "postgres://a"),
            ]),
        )
        .unwrap();
        assert_eq!(config.database_url.unwrap().expose(), "postgres://b");
    }

    #[test]
    fn production_needs_master_key_and_public_url() {
        let key = "00".repeat(32);
        let err = Config::load_from(None, vars(&[("KEYWAY_ENV", "production")])).unwrap_err();
        assert!(err.to_string().contains("master key"), "{err}");
        let err = Config::load_from(
            None,
            vars(&[("KEYWAY_ENV", "production"), ("KEYWAY_MASTER_KEY", &key)]),
        )
        .unwrap_err();
        assert!(err.to_string().contains("public URL"), "{err}");
        let config = Config::load_from(
            None,
            vars(&[
                ("KEYWAY_ENV", "production"),
                ("KEYWAY_MASTER_KEY", &key),
                ("PUBLIC_URL", "https://vault.example.com"),
            ]),
        )
        .unwrap();
        assert!(!config.graphiql_enabled() && !config.introspection_enabled());
    }

    #[test]
    fn bad_master_key_is_refused_and_never_printed() {
        let err =
            Config::load_from(None, vars(&[("KEYWAY_MASTER_KEY", "tooshort-secret")])).unwrap_err();
        assert!(!format!("{err:#}").contains("tooshort-secret"));
        let config =
            Config::load_from(None, vars(&[("KEYWAY_MASTER_KEY", &"ab".repeat(32))])).unwrap();
        assert!(!format!("{config:?}").contains(&"ab".repeat(32)));
    }
}
