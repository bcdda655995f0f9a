//! Opening the database and keeping its schema current. SQLite (the embedded default) is tuned
//! for durability: WAL, `synchronous=FULL`, foreign keys on; a writer that finds the write
//! lock taken waits for it in short steps (`busy`).

pub mod batched_delete;
mod busy;
pub mod fleet_lock;

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use migration::{Migrator, MigratorTrait};
use sea_orm::sqlx::Connection;
use sea_orm::sqlx::pool::PoolConnectionMetadata;
use sea_orm::sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sea_orm::sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
};
use sea_orm::{DatabaseConnection, SqlxPostgresConnector, SqlxSqliteConnector};

use crate::config::Config;

pub async fn connect(config: &Config) -> anyhow::Result<DatabaseConnection> {
    let max = config.database_max_connections;
    match config.database_url.as_ref().map(|u| u.expose()) {
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            // The URL may hold a password: never echo it in an error.
            let options = PgConnectOptions::from_str(url)
                .map_err(|_| anyhow::anyhow!("DATABASE_URL is not a valid PostgreSQL URL"))?
                // sqlx prepares every statement, and after five runs PostgreSQL may switch to
                // a generic plan that cannot see a LIKE pattern: the userEmail and search
                // filters then scan by id instead of using the trigram index (130 ms against
                // 7 ms at 100,000 rows). Planning every query has a price: on a
                // `connections(first: 50)` page it is about as much as executing it, yet
                // scoping the setting to the LIKE reads alone gained nothing measurable
                // (tried in cd06680, reverted: paired runs gave list pages 1.03x, searches
                // 0.96x).
                .options([("plan_cache_mode", "force_custom_plan")]);
            let pool = PgPoolOptions::new()
                .max_connections(max)
                .min_connections(1)
                .acquire_timeout(Duration::from_secs(5))
                .test_before_acquire(false)
                .before_acquire(|conn, meta| Box::pin(ping_if_idle(conn, meta)))
                .connect_with(options)
                .await
                .context("connecting to PostgreSQL (check DATABASE_URL)")?;
            Ok(SqlxPostgresConnector::from_sqlx_postgres_pool(pool))
        }
        Some(url) if url.starts_with("sqlite:") => {
            let options =
                SqliteConnectOptions::from_str(url).context("parsing the sqlite: DATABASE_URL")?;
            connect_sqlite(options, max).await
        }
        Some(_) => anyhow::bail!("DATABASE_URL must start with postgres:// or sqlite:"),
        None => {
            std::fs::create_dir_all(&config.data_dir).with_context(|| {
                format!("creating the data directory {}", config.data_dir.display())
            })?;
            let path = config.data_dir.join("keyway.db");
            connect_sqlite(SqliteConnectOptions::new().filename(path), max).await
        }
    }
}

/// sqlx pings a connection when it goes back to the pool. A connection idle for less than this
/// since then is handed out as it is; one idle for longer is pinged first, and replaced if the
/// server has hung up on it meanwhile (a restart, a failover, a proxy's idle cut). sqlx's own
/// default pings on every acquire as well: an extra round trip per query, 8% of the server's
/// CPU samples on a `connections(first: 50)` page. (HikariCP skips its check within 500 ms
/// of last use the same way.)
const PING_WHEN_IDLE_FOR: Duration = Duration::from_secs(1);

async fn ping_if_idle(
    conn: &mut sea_orm::sqlx::PgConnection,
    meta: PoolConnectionMetadata,
) -> Result<bool, sea_orm::sqlx::Error> {
    if meta.idle_for >= PING_WHEN_IDLE_FOR {
        conn.ping().await?;
    }
    Ok(true)
}

async fn connect_sqlite(
    options: SqliteConnectOptions,
    max: u32,
) -> anyhow::Result<DatabaseConnection> {
    let options = options
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .foreign_keys(true)
        // SQLite's own handler, until `busy::install` replaces it on every new connection.
        .busy_timeout(busy::TIMEOUT);
    // A SQLite connection is a file this process holds open: nothing can hang up on it, so it
    // is not pinged (a round trip to its worker thread) before every use.
    let pool = SqlitePoolOptions::new()
        .max_connections(max)
        .min_connections(1)
        .test_before_acquire(false)
        .after_connect(|conn, _| Box::pin(busy::install(conn)))
        .connect_with(options)
        .await
        .context("opening the SQLite database")?;
    Ok(SqlxSqliteConnector::from_sqlx_sqlite_pool(pool))
}

pub async fn migrate(db: &DatabaseConnection) -> anyhow::Result<()> {
    Migrator::up(db, None)
        .await
        .context("applying database migrations")
}

/// Ready means: the database answers and no migration is pending.
pub async fn readiness(db: &DatabaseConnection) -> Result<(), &'static str> {
    db.ping().await.map_err(|_| "database unreachable")?;
    match Migrator::get_pending_migrations_read_only(db).await {
        Ok(pending) if pending.is_empty() => Ok(()),
        Ok(_) => Err("migrations pending"),
        Err(_) => Err("migration status unknown"),
    }
}
