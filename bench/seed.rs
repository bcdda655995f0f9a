//! Benchmark fixture: bulk-inserts consumers into one application, straight into the store
//! (the API would take minutes for 100,000 rows, and the benchmark measures reads).
//!
//! `seed <database-url> <application-uuid> <count>`

use chrono::Utc;
use entity::consumer::ActiveModel;
use keyway::config::Config;
use keyway::crypto::Secret;
use sea_orm::{EntityTrait, Set, TransactionTrait};
use uuid::Uuid;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    anyhow::ensure!(
        args.len() == 4,
        "usage: seed <database-url> <application-uuid> <count>"
    );
    let application_id = Uuid::parse_str(&args[2])?;
    let count: usize = args[3].parse()?;
    let config = Config {
        database_url: Some(Secret::new(args[1].clone())),
        ..Config::default()
    };
    let db = keyway::store::connect(&config).await?;
    let started = std::time::Instant::now();
    for chunk in (0..count).collect::<Vec<_>>().chunks(2000) {
        let now = Utc::now();
        let rows = chunk.iter().map(|i| ActiveModel {
            id: Set(Uuid::now_v7()),
            application_id: Set(application_id),
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
    eprintln!("seeded {count} consumers in {:.1?}", started.elapsed());
    Ok(())
}
