//! This replica's Prometheus metrics, served at `/metrics` in the text exposition format.
//!
//! Nothing here runs on a call's request path: calls are counted from their request-log
//! entries when the log writer takes them off its queue (`RequestLogWriter::flush`, every
//! 250 ms), and the pool and process figures are read when scraped. A shared counter bumped
//! by every proxied call would move its cache line between the HTTP workers' cores on every
//! call, which the proxy's hot path has been kept free of (`thread_front`).
//!
//! Labels never name an application, consumer or connection: the endpoint says how the
//! replica is doing, not who uses it, and its size does not grow with the tenants.

use std::collections::HashMap;

use prometheus::core::Collector;
use prometheus::local::LocalHistogram;
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use sea_orm::{DatabaseBackend, DatabaseConnection};

use crate::error::{Error, Result};
use crate::service::usage::{ApiStyle, LogEntry};

/// Seconds; from a local provider's sub-millisecond answer to the upstream timeout's range.
const SECONDS_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

pub struct Metrics {
    registry: Registry,
    /// `keyway_requests_total{api, code}`: calls through Keyway, by API style and HTTP status.
    requests: IntCounterVec,
    /// `keyway_request_duration_seconds{api}`.
    durations: HistogramVec,
    /// `keyway_proxy_upstream_duration_seconds`: the provider's share of proxied calls.
    upstream: Histogram,
    pub request_logs_written: IntCounter,
    pub request_logs_dropped: IntCounter,
    /// Read from the log writer (`telemetry`) when scraped.
    log_lines_dropped: IntCounter,
    token_refreshes: IntCounterVec,
    webhook_attempts: IntCounterVec,
    websockets: IntGauge,
    db_connections: IntGaugeVec,
    db_max_connections: IntGauge,
}

/// How one refresh of a token at its provider ended.
#[derive(Clone, Copy)]
pub enum RefreshOutcome {
    Refreshed,
    /// The provider said the grant is dead (revoked, expired): its user must connect again.
    InvalidGrant,
    /// The network or the provider's other errors: retried later.
    Failed,
}

/// How one webhook delivery attempt ended.
#[derive(Clone, Copy)]
pub enum WebhookOutcome {
    Delivered,
    Failed,
    /// 410 Gone: the endpoint is disabled.
    Gone,
}

impl Metrics {
    pub fn new() -> Result<Self> {
        Self::build().map_err(|err| Error::Internal(anyhow::anyhow!("metrics: {err}")))
    }

    fn build() -> prometheus::Result<Self> {
        let registry = Registry::new_custom(Some("keyway".into()), None)?;
        let requests = IntCounterVec::new(
            Opts::new(
                "requests_total",
                "Calls through Keyway (GraphQL, proxy, vault), by API style and HTTP status.",
            ),
            &["api", "code"],
        )?;
        let durations = HistogramVec::new(
            HistogramOpts::new(
                "request_duration_seconds",
                "Time from a call's arrival to its answer, by API style.",
            )
            .buckets(SECONDS_BUCKETS.to_vec()),
            &["api"],
        )?;
        let upstream = Histogram::with_opts(
            HistogramOpts::new(
                "proxy_upstream_duration_seconds",
                "The provider's share of proxied calls: from sending the request to its answer's head.",
            )
            .buckets(SECONDS_BUCKETS.to_vec()),
        )?;
        let request_logs_written = IntCounter::new(
            "request_logs_written_total",
            "Request log rows written to the database.",
        )?;
        let request_logs_dropped = IntCounter::new(
            "request_logs_dropped_total",
            "Request log entries lost: the queue was full, or the database kept refusing them.",
        )?;
        let log_lines_dropped = IntCounter::new(
            "log_lines_dropped_total",
            "Log lines dropped because stderr could not keep up (requests are never held up for them).",
        )?;
        let token_refreshes = IntCounterVec::new(
            Opts::new(
                "token_refreshes_total",
                "Token requests to providers' refresh endpoints, by outcome.",
            ),
            &["outcome"],
        )?;
        let webhook_attempts = IntCounterVec::new(
            Opts::new(
                "webhook_attempts_total",
                "Webhook delivery attempts, by outcome (gone: the endpoint answered 410 and was disabled).",
            ),
            &["outcome"],
        )?;
        let websockets = IntGauge::new(
            "graphql_websockets_open",
            "GraphQL subscription sockets (graphql-transport-ws) open on this replica.",
        )?;
        let db_connections = IntGaugeVec::new(
            Opts::new(
                "db_pool_connections",
                "Database connections this replica holds, by state.",
            ),
            &["state"],
        )?;
        let db_max_connections = IntGauge::new(
            "db_pool_max_connections",
            "The most database connections this replica opens.",
        )?;
        let build_info = IntGaugeVec::new(
            Opts::new("build_info", "The running build; always 1."),
            &["version"],
        )?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);

        let collectors: [Box<dyn Collector>; 12] = [
            Box::new(requests.clone()),
            Box::new(durations.clone()),
            Box::new(upstream.clone()),
            Box::new(request_logs_written.clone()),
            Box::new(request_logs_dropped.clone()),
            Box::new(log_lines_dropped.clone()),
            Box::new(token_refreshes.clone()),
            Box::new(webhook_attempts.clone()),
            Box::new(websockets.clone()),
            Box::new(db_connections.clone()),
            Box::new(db_max_connections.clone()),
            Box::new(build_info),
        ];
        for collector in collectors {
            registry.register(collector)?;
        }
        // The conventional `process_*` series (CPU, resident memory, open files), unprefixed
        // as every exporter names them.
        #[cfg(target_os = "linux")]
        prometheus::default_registry()
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .or_else(|err| match err {
                // Another `Metrics` in this process (tests start several servers) registered it.
                prometheus::Error::AlreadyReg => Ok(()),
                err => Err(err),
            })?;
        Ok(Self {
            registry,
            requests,
            durations,
            upstream,
            request_logs_written,
            request_logs_dropped,
            log_lines_dropped,
            token_refreshes,
            webhook_attempts,
            websockets,
            db_connections,
            db_max_connections,
        })
    }

    /// Counts calls from their log entries (a batch: tens of thousands a second at proxy rates).
    pub fn observe_calls<'a>(&self, entries: impl IntoIterator<Item = &'a LogEntry>) {
        // Summed here and added once per batch: one label lookup per (style, status) seen,
        // and the histograms' atomics touched once per bucket rather than once per call.
        let mut counts: HashMap<(ApiStyle, u16), u64, crate::FastHasher> = HashMap::default();
        let mut durations: HashMap<ApiStyle, LocalHistogram, crate::FastHasher> =
            HashMap::default();
        let upstream = self.upstream.local();
        for entry in entries {
            *counts
                .entry((entry.api_style, entry.status_code))
                .or_default() += 1;
            durations
                .entry(entry.api_style)
                .or_insert_with(|| {
                    let api = entry.api_style.as_str();
                    self.durations.with_label_values(&[api]).local()
                })
                .observe(entry.duration.as_secs_f64());
            if let Some(latency) = entry.latency {
                upstream.observe(latency.as_secs_f64());
            }
        }
        for local in durations.values().chain([&upstream]) {
            local.flush();
        }
        for ((api, status), calls) in counts {
            self.requests
                .with_label_values(&[api.as_str(), &status.to_string()])
                .inc_by(calls);
        }
    }

    pub fn token_refreshed(&self, outcome: RefreshOutcome) {
        let label = match outcome {
            RefreshOutcome::Refreshed => "refreshed",
            RefreshOutcome::InvalidGrant => "invalid_grant",
            RefreshOutcome::Failed => "failed",
        };
        self.token_refreshes.with_label_values(&[label]).inc();
    }

    pub fn webhook_attempted(&self, outcome: WebhookOutcome) {
        let label = match outcome {
            WebhookOutcome::Delivered => "delivered",
            WebhookOutcome::Failed => "failed",
            WebhookOutcome::Gone => "gone",
        };
        self.webhook_attempts.with_label_values(&[label]).inc();
    }

    /// Counts a socket as open until the guard is dropped.
    pub fn websocket_opened(&self) -> OpenSocket {
        self.websockets.inc();
        OpenSocket(self.websockets.clone())
    }

    /// Everything, in the text exposition format, with the pool read now.
    pub fn render(&self, db: &DatabaseConnection) -> Result<String> {
        let (size, idle, max) = match db.get_database_backend() {
            DatabaseBackend::Postgres => {
                let pool = db.get_postgres_connection_pool();
                (
                    pool.size(),
                    pool.num_idle(),
                    pool.options().get_max_connections(),
                )
            }
            DatabaseBackend::Sqlite => {
                let pool = db.get_sqlite_connection_pool();
                (
                    pool.size(),
                    pool.num_idle(),
                    pool.options().get_max_connections(),
                )
            }
            _ => (0, 0, 0),
        };
        let idle = i64::try_from(idle).unwrap_or(i64::MAX);
        self.db_connections.with_label_values(&["idle"]).set(idle);
        self.db_connections
            .with_label_values(&["in_use"])
            .set((i64::from(size) - idle).max(0));
        self.db_max_connections.set(i64::from(max));
        let dropped = crate::telemetry::log_lines_dropped();
        self.log_lines_dropped
            .inc_by(dropped.saturating_sub(self.log_lines_dropped.get()));

        let mut families = self.registry.gather();
        families.extend(prometheus::default_registry().gather());
        TextEncoder::new()
            .encode_to_string(&families)
            .map_err(|err| Error::Internal(anyhow::anyhow!("encoding metrics: {err}")))
    }
}

/// An open socket, counted in `keyway_graphql_websockets_open` while it lives.
pub struct OpenSocket(IntGauge);

impl Drop for OpenSocket {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn entry(api: ApiStyle, status: u16, millis: u64, upstream: Option<u64>) -> LogEntry {
        let mut entry = LogEntry::new(uuid::Uuid::nil(), api, "op");
        entry.status_code = status;
        entry.duration = Duration::from_millis(millis);
        entry.latency = upstream.map(Duration::from_millis);
        entry
    }

    fn line<'a>(text: &'a str, series: &str) -> Option<&'a str> {
        text.lines()
            .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
            .map(|l| &l[series.len() + 1..])
    }

    #[test]
    fn calls_are_counted_by_style_and_status_with_their_durations() {
        let metrics = Metrics::new().unwrap();
        let entries = [
            entry(ApiStyle::Proxy, 200, 3, Some(2)),
            entry(ApiStyle::Proxy, 200, 30, Some(28)),
            entry(ApiStyle::Proxy, 429, 1, None),
            entry(ApiStyle::Unify, 200, 2, None),
        ];
        metrics.observe_calls(&entries);
        metrics.observe_calls(&entries[..1]);
        let text = metrics.registry.gather();
        let text = TextEncoder::new().encode_to_string(&text).unwrap();
        let count = |series| line(&text, series);
        assert_eq!(
            count(r#"keyway_requests_total{api="proxy",code="200"}"#),
            Some("3")
        );
        assert_eq!(
            count(r#"keyway_requests_total{api="proxy",code="429"}"#),
            Some("1")
        );
        assert_eq!(
            count(r#"keyway_requests_total{api="unify",code="200"}"#),
            Some("1")
        );
        assert_eq!(
            count(r#"keyway_request_duration_seconds_bucket{api="proxy",le="0.005"}"#),
            Some("3"),
            "3 ms, 1 ms and 3 ms again are under 5 ms; 30 ms is not"
        );
        assert_eq!(
            count(r#"keyway_request_duration_seconds_count{api="proxy"}"#),
            Some("4")
        );
        assert_eq!(
            count("keyway_proxy_upstream_duration_seconds_count"),
            Some("3")
        );
        assert_eq!(
            count(r#"keyway_proxy_upstream_duration_seconds_bucket{le="0.025"}"#),
            Some("2")
        );
    }

    #[test]
    fn an_open_socket_is_counted_until_dropped() {
        let metrics = Metrics::new().unwrap();
        let first = metrics.websocket_opened();
        let second = metrics.websocket_opened();
        assert_eq!(metrics.websockets.get(), 2);
        drop(first);
        assert_eq!(metrics.websockets.get(), 1);
        drop(second);
        assert_eq!(metrics.websockets.get(), 0);
    }
}
