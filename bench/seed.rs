//! Benchmark fixture: bulk-inserts rows straight into the store (the API would take minutes
//! for 100,000 rows, and the benchmarks measure reads).
//!
//! `seed consumers <database-url> <application-uuid> <count>`
//! `seed connections <database-url> <application-uuid> <count> <data-dir> [first-index]`
//!   connections get real sealed credentials (the key file of <data-dir>, or
//!   KEYWAY_MASTER_KEY), a spread of states, services and user emails; prints the cursor of
//!   the callable connection 90% of the way down the list.

use base64::Engine;
use chrono::Utc;
use keyway::config::Config;
use keyway::crypto::Secret;
use keyway::service::connections::{OAuthTokens, StoredCredentials};
use keyway::service::keys::KeyStore;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set, TransactionTrait};
use serde_json::json;
use uuid::Uuid;

const SERVICES: [&str; 5] = ["stripe", "hubspot", "salesforce", "zendesk", "slack"];
const STATES: [&str; 10] = [
    "callable",
    "callable",
    "callable",
    "callable",
    "callable",
    "callable",
    "added",
    "authorized",
    "invalid",
    "revoked",
];

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    anyhow::ensure!(
        args.len() >= 5,
        "usage: seed consumers|connections <database-url> <application-uuid> <count> [data-dir] [first-index]"
    );
    let application_id = Uuid::parse_str(&args[3])?;
    let count: usize = args[4].parse()?;
    let mut config = Config {
        database_url: Some(Secret::new(args[2].clone())),
        ..Config::default()
    };
    if let Some(dir) = args.get(5) {
        config.data_dir = dir.into();
    }
    config.master_key = std::env::var("KEYWAY_MASTER_KEY").ok().map(Secret::new);
    let first: usize = args.get(6).map(|s| s.parse()).transpose()?.unwrap_or(0);
    let db = keyway::store::connect(&config).await?;
    let started = std::time::Instant::now();
    match args[1].as_str() {
        "consumers" => consumers(&db, application_id, count).await?,
        "connections" => {
            let keys = KeyStore::open(&db, keyway::crypto::master::load(&config)?).await?;
            connections(&db, &keys, application_id, first, count).await?
        }
        other => anyhow::bail!("unknown table {other}"),
    }
    // A live database's statistics are kept by autovacuum / the planner; a bulk load has none.
    db.execute_unprepared("ANALYZE").await?;
    eprintln!("seeded {count} {} in {:.1?}", args[1], started.elapsed());
    Ok(())
}

async fn consumers(
    db: &sea_orm::DatabaseConnection,
    app: Uuid,
    count: usize,
) -> anyhow::Result<()> {
    use entity::consumer::ActiveModel;
    for chunk in (0..count).collect::<Vec<_>>().chunks(2000) {
        let now = Utc::now();
        let rows = chunk.iter().map(|i| ActiveModel {
            id: Set(Uuid::now_v7()),
            application_id: Set(app),
            consumer_id: Set(format!("consumer-{i:06}")),
            account_name: Set(Some(format!("Account {i}"))),
            user_name: Set(Some(format!("User {i}"))),
            email: Set(Some(format!("user{i}@example.com"))),
            image: Set(None),
            created_at: Set(now),
            updated_at: Set(now),
        });
        let txn = db.begin().await?;
        entity::consumer::Entity::insert_many(rows)
            .exec(&txn)
            .await?;
        txn.commit().await?;
    }
    Ok(())
}

async fn connections(
    db: &sea_orm::DatabaseConnection,
    keys: &KeyStore,
    app: Uuid,
    first: usize,
    count: usize,
) -> anyhow::Result<()> {
    use entity::connection::ActiveModel;
    let integrations = entity::integration::Entity::find()
        .filter(entity::integration::Column::ApplicationId.eq(app))
        .all(db)
        .await?;
    let integration_of = |service: &str| {
        integrations
            .iter()
            .find(|i| i.service_id == service)
            .map(|i| i.id)
    };
    let total = first + count;
    let deep_index = total * 9 / 10;
    let mut deep_cursor = None;
    for chunk in (first..total).collect::<Vec<_>>().chunks(1000) {
        let now = Utc::now();
        let mut rows = Vec::with_capacity(chunk.len());
        for &i in chunk {
            let id = Uuid::now_v7();
            let state = STATES[i % STATES.len()];
            let service = SERVICES[i % SERVICES.len()];
            let credentials = StoredCredentials::Oauth2(OAuthTokens {
                access_token: format!("access-{i}-{}", Uuid::new_v4()),
                refresh_token: Some(format!("refresh-{i}")),
                token_type: Some("Bearer".into()),
                expires_at: Some(now + chrono::Duration::hours(1)),
                scopes: vec![],
                raw: None,
            });
            let (sealed, key_id) = credentials
                .seal(keys, id, app)
                .map_err(|e| e.into_anyhow())?;
            if i >= deep_index && state == "callable" && deep_cursor.is_none() {
                deep_cursor = Some(id);
            }
            rows.push(ActiveModel {
                id: Set(id),
                application_id: Set(app),
                consumer_ref: Set(None),
                consumer_id: Set(format!("consumer-{:06}", i / 2)),
                integration_id: Set(integration_of(service)),
                service_id: Set(service.to_owned()),
                auth_type: Set("oauth2".into()),
                state: Set(state.into()),
                environment: Set(if i % 7 == 0 { "sandbox" } else { "production" }.into()),
                enabled: Set(true),
                configured: Set(state != "authorized"),
                settings: Set(json!({})),
                metadata: Set(json!({ "index": i })),
                configuration: Set(json!({})),
                granted_scopes: Set(json!([])),
                credentials: Set(Some(sealed)),
                credentials_key_id: Set(Some(key_id)),
                expires_at: Set(Some(now + chrono::Duration::hours(1))),
                last_refreshed_at: Set(None),
                next_refresh_at: Set(None),
                refresh_failures: Set(0),
                version: Set(0),
                user_email: Set(Some(format!("user{i}@company{}.example", i % 1000))),
                created_at: Set(now),
                updated_at: Set(now),
                revoked_at: Set(None),
                deleted_at: Set(None),
            });
        }
        let txn = db.begin().await?;
        entity::connection::Entity::insert_many(rows)
            .exec(&txn)
            .await?;
        txn.commit().await?;
    }
    if let Some(id) = deep_cursor {
        println!(
            "{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(id.to_string())
        );
    }
    Ok(())
}
