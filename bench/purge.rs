//! What a large request-log purge does to every other writer. Fills `ROWS` log rows past
//! retention (default 300,000: a shorter `log_retention_days`, or a long downtime), then
//! deletes them two ways, each from the same fill, while another task writes one small row
//! every 10 ms and times each write:
//! - `one statement`: the purge as it was, one `DELETE` of every old row;
//! - `batched`: `usage::logs::purge` (`store::batched_delete`, 2,000 rows a statement).
//!
//! Prints, for each, the purge's wall time and the other writer's p50, p99 and worst wait. On
//! SQLite (one write lock) that wait is what a connection update or an OAuth callback would
//! see; past the 5 s busy timeout it fails.
//!
//!   cargo run --release --example purge [DATABASE_URL]   # default: a fresh SQLite file
//!
//! A PostgreSQL URL must name an empty database (the migrations run first).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, EntityTrait, IntoActiveModel, QueryFilter,
    Set,
};
use uuid::Uuid;

#[path = "bench_store.rs"]
mod bench_store;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (db, _dir) = bench_store::open().await?;
    let rows: i64 = std::env::var("ROWS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(300_000);
    let now = Utc::now();
    let application = entity::application::Model {
        id: Uuid::now_v7(),
        name: "bench".into(),
        redirect_uris: serde_json::json!([]),
        default_redirect_uri: None,
        requests_per_month: None,
        requests_per_minute: None,
        created_at: now,
        updated_at: now,
    }
    .into_active_model()
    .insert(&db)
    .await?;

    println!("request-log purge of {rows} rows past retention, beside a writer every 10 ms:");
    for way in ["one statement", "batched"] {
        fill(&db, application.id, rows).await?;
        let stop = Arc::new(AtomicBool::new(false));
        let other = tokio::spawn(other_writer(db.clone(), application.id, stop.clone()));
        tokio::time::sleep(Duration::from_millis(100)).await;
        let started = Instant::now();
        match way {
            "one statement" => {
                entity::request_log::Entity::delete_many()
                    .filter(entity::request_log::Column::ApplicationId.eq(application.id))
                    .filter(entity::request_log::Column::Id.lt(keyway::ids::first_v7_at(
                        Utc::now() - chrono::Duration::days(30),
                    )))
                    .exec(&db)
                    .await?;
            }
            _ => keyway::service::usage::logs::purge(&db, 30)
                .await
                .map_err(keyway::error::Error::into_anyhow)?,
        }
        let took = started.elapsed();
        tokio::time::sleep(Duration::from_millis(100)).await;
        stop.store(true, Ordering::SeqCst);
        let mut waits = other.await??;
        waits.sort();
        let at = |q: f64| waits[((waits.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e3;
        println!(
            "  {way:>13}: purge {:.2} s; other writer ({} writes) p50 {:.1} ms, p99 {:.1} ms, worst {:.1} ms",
            took.as_secs_f64(),
            waits.len(),
            at(0.5),
            at(0.99),
            at(1.0),
        );
        let left = entity::request_log::Entity::find()
            .filter(entity::request_log::Column::ApplicationId.eq(application.id))
            .all(&db)
            .await?
            .len();
        anyhow::ensure!(left == 0, "{way}: {left} rows left");
    }
    Ok(())
}

/// `rows` log rows from 31 days ago and before, keyed as the writer keyed them then.
async fn fill(db: &DatabaseConnection, application: Uuid, rows: i64) -> anyhow::Result<()> {
    let oldest = Utc::now() - chrono::Duration::days(31);
    let mut batch = Vec::with_capacity(500);
    for n in 0..rows {
        let at = oldest - chrono::Duration::milliseconds(n);
        let millis = u64::try_from(at.timestamp_millis())?;
        let id = uuid::Builder::from_unix_timestamp_millis(millis, &unique_bytes(n)).into_uuid();
        batch.push(
            entity::request_log::Model {
                id,
                application_id: application,
                request_id: Some(format!("{n:032x}")),
                api_style: "proxy".into(),
                operation: "proxy".into(),
                http_method: "GET".into(),
                path: format!("/crm/contacts/{n}"),
                base_url: Some("https://api.example.com".into()),
                status_code: 200,
                success: true,
                duration_ms: 1.5,
                latency_ms: Some(1.2),
                service_id: Some("hubspot".into()),
                unified_api: Some("crm".into()),
                consumer_id: Some(format!("consumer-{}", n % 1000)),
                connection_id: Some(Uuid::now_v7()),
                source_ip: Some("127.0.0.1".into()),
                error_message: None,
                sandbox: false,
                created_at: at,
            }
            .into_active_model(),
        );
        if batch.len() == 500 {
            entity::request_log::Entity::insert_many(std::mem::take(&mut batch))
                .exec(db)
                .await?;
        }
    }
    if !batch.is_empty() {
        entity::request_log::Entity::insert_many(batch)
            .exec(db)
            .await?;
    }
    Ok(())
}

/// The id's "random" part: the row's number, so that rows of one millisecond stay distinct.
fn unique_bytes(n: i64) -> [u8; 10] {
    let mut bytes = [0; 10];
    bytes[..8].copy_from_slice(&n.to_le_bytes());
    bytes
}

/// Writes one small row every 10 ms until `stop`, returning how long each write took.
async fn other_writer(
    db: DatabaseConnection,
    application: Uuid,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<Vec<Duration>> {
    let mut waits = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        let started = Instant::now();
        let row = entity::application::ActiveModel {
            id: Set(application),
            updated_at: Set(Utc::now()),
            ..Default::default()
        };
        match row.update(&db).await {
            Ok(_) => waits.push(started.elapsed()),
            // A wait past the busy timeout fails: counted as what it waited.
            Err(err) => {
                eprintln!(
                    "the other writer failed after {:?}: {err}",
                    started.elapsed()
                );
                waits.push(started.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(waits)
}
