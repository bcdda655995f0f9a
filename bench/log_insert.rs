//! The request-log write path on its own: what one proxied call's log row costs the database
//! writer, the largest share of a proxied call that Keyway itself owns (`bench/proxy.sh`
//! profiles). Queues `BATCH` proxy entries as the raw route fills them in, then times one
//! `RequestLogWriter::flush` (one transaction of multi-row inserts, as the background writer
//! runs every 250 ms), `ROUNDS` times; prints the median and fastest microseconds per row.
//!
//! Each flush also adds its calls to the consumers' running totals, one per consumer it saw:
//! `CONSUMERS=N` spreads the calls over N consumers (default 1) to time that part's worst case.
//!
//!   log_insert [DATABASE_URL]     # default: a fresh SQLite file in a temporary directory
//!
//! A PostgreSQL URL must name an empty database (the migrations run first).

use std::sync::Arc;
use std::time::{Duration, Instant};

use keyway::service::usage::{ApiStyle, LogEntry, RequestLogWriter};

#[path = "bench_store.rs"]
mod bench_store;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Rows per flush: 250 ms of calls at 16,000 a second.
const BATCH: u32 = 4_000;
const ROUNDS: usize = 30;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (db, _dir) = bench_store::open().await?;

    let writer = RequestLogWriter::new(Arc::new(
        keyway::metrics::Metrics::new().map_err(keyway::error::Error::into_anyhow)?,
    ));
    let application = uuid::Uuid::new_v4();
    let connection = uuid::Uuid::new_v4();
    let labels: [Arc<str>; 4] = [
        "http://127.0.0.1:18191/api".into(),
        "benchapi".into(),
        "crm".into(),
        "bench".into(),
    ];
    let consumers: Vec<Arc<str>> = (0..std::env::var("CONSUMERS")
        .ok()
        .and_then(|n| n.parse::<u32>().ok())
        .unwrap_or(1)
        .max(1))
        .map(|n| Arc::from(format!("{}-{n}", labels[3])))
        .collect();
    let mut per_row = Vec::with_capacity(ROUNDS);
    for round in 0..ROUNDS {
        for call in 0..BATCH {
            let mut entry = LogEntry::new(application, ApiStyle::Proxy, "proxy");
            entry.http_method = "GET".into();
            entry.path = "/items".into();
            entry.request_id = Some(format!("{round:016x}{call:016x}"));
            entry.connection_id = Some(connection);
            entry.source_ip = Some("127.0.0.1".into());
            entry.base_url = Some(labels[0].clone());
            entry.service_id = Some(labels[1].clone());
            entry.unified_api = Some(labels[2].clone());
            entry.consumer_id = Some(consumers[call as usize % consumers.len()].clone());
            entry.status_code = 200;
            entry.duration = Duration::from_micros(800);
            entry.latency = Some(Duration::from_micros(500));
            writer.record(entry);
        }
        let started = Instant::now();
        writer
            .flush(&db)
            .await
            .map_err(|err| anyhow::anyhow!(err.message()))?;
        per_row.push(started.elapsed().as_secs_f64() * 1e6 / f64::from(BATCH));
    }
    per_row.sort_by(f64::total_cmp);
    println!(
        "request-log insert, {ROUNDS} flushes of {BATCH} rows of {} consumers: median {:.2} us/row, fastest {:.2} us/row",
        consumers.len(),
        per_row[ROUNDS / 2],
        per_row[0]
    );
    Ok(())
}
