//! Where the settings come from: a TOML file, then `KEYWAY_*` variables (and the conventional
//! `DATABASE_URL` and `PUBLIC_URL`), each typed and checked against the known keys.

use std::path::Path;

use anyhow::{Context, bail};
use serde::Deserialize;

use super::Config;

/// `KEYWAY_*` variables that belong to the CLI client or the test suite, not to the server.
const NON_SERVER_VARS: &[&str] = &[
    "KEYWAY_CONFIG",
    "KEYWAY_URL",
    "KEYWAY_API_KEY",
    "KEYWAY_TEST_DATABASE_URL",
];

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
    ("trusted_proxies", Kind::List),
    ("client_ip_header", Kind::Text),
    ("upstream_ca_file", Kind::Text),
    ("upstream_timeout_secs", Kind::Integer),
    ("refresh_lease_secs", Kind::Integer),
    ("demo_provider", Kind::Boolean),
    ("proxy_max_body_bytes", Kind::Integer),
    ("credential_cache_secs", Kind::Integer),
    ("proxy_rate_limit_wait_max_secs", Kind::Integer),
    ("graphql_rate_limit_per_minute", Kind::Integer),
    ("log_retention_days", Kind::Integer),
    ("event_retention_days", Kind::Integer),
    ("webhook_delivery_retention_days", Kind::Integer),
    ("webhook_retry_schedule", Kind::Text),
    ("webhook_timeout_secs", Kind::Integer),
    ("outbox_poll_ms", Kind::Integer),
    ("reencrypt_in_background", Kind::Boolean),
    ("log_format", Kind::Text),
    ("log_level", Kind::Text),
    ("graphiql", Kind::Boolean),
    ("introspection", Kind::Boolean),
    ("metrics_token", Kind::Text),
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
    use std::path::PathBuf;

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

    #[test]
    fn a_short_metrics_token_is_refused_and_never_printed() {
        let err =
            Config::load_from(None, vars(&[("KEYWAY_METRICS_TOKEN", "guessable")])).unwrap_err();
        let message = format!("{err:#}");
        assert!(message.contains("metrics_token"), "{message}");
        assert!(!message.contains("guessable"));
        let token = "scrape-0123456789abcdef";
        let config = Config::load_from(None, vars(&[("KEYWAY_METRICS_TOKEN", token)])).unwrap();
        assert_eq!(
            config.metrics_token.as_ref().map(|t| t.expose()),
            Some(token)
        );
        assert!(!format!("{config:?}").contains(token));
    }

    #[test]
    fn the_proxy_and_retention_bounds_are_checked_and_name_their_key() {
        for (var, over, edge) in [
            ("KEYWAY_UPSTREAM_TIMEOUT_SECS", "121", "120"),
            ("KEYWAY_CREDENTIAL_CACHE_SECS", "3601", "3600"),
            ("KEYWAY_PROXY_RATE_LIMIT_WAIT_MAX_SECS", "301", "300"),
            ("KEYWAY_LOG_RETENTION_DAYS", "3651", "3650"),
            ("KEYWAY_EVENT_RETENTION_DAYS", "0", "1"),
            ("KEYWAY_EVENT_RETENTION_DAYS", "3651", "3650"),
            ("KEYWAY_WEBHOOK_DELIVERY_RETENTION_DAYS", "0", "1"),
        ] {
            let err = Config::load_from(None, vars(&[(var, over)])).unwrap_err();
            let key = var.trim_start_matches("KEYWAY_").to_ascii_lowercase();
            assert!(err.to_string().starts_with(&key), "{var}: {err}");
            Config::load_from(None, vars(&[(var, edge)])).unwrap();
        }
    }

    #[test]
    fn trusted_proxies_are_addresses_or_ranges_and_the_header_one_of_two() {
        let config = Config::load_from(
            None,
            vars(&[
                ("KEYWAY_TRUSTED_PROXIES", "10.0.0.0/8, 192.0.2.7,fd00::/8"),
                ("KEYWAY_CLIENT_IP_HEADER", "forwarded"),
            ]),
        )
        .unwrap();
        assert_eq!(
            config.trusted_proxies,
            ["10.0.0.0/8", "192.0.2.7", "fd00::/8"]
        );
        assert_eq!(
            config.client_ip_header,
            super::super::ForwardedHeader::Forwarded
        );
        let nets = config.trusted_proxy_nets().unwrap();
        assert_eq!(nets.len(), 3);
        assert!(nets[1].contains(&"192.0.2.7".parse::<std::net::IpAddr>().unwrap()));
        for bad in ["lb.internal", "10.0.0.0/33", "fd00::/129", "10.0.0.1:80"] {
            let err = Config::load_from(
                None,
                vars(&[("KEYWAY_TRUSTED_PROXIES", &format!("10.0.0.0/8,{bad}"))]),
            )
            .unwrap_err();
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
        let err =
            Config::load_from(None, vars(&[("KEYWAY_CLIENT_IP_HEADER", "x-real-ip")])).unwrap_err();
        assert!(format!("{err:#}").contains("client_ip_header"), "{err:#}");
    }
}
