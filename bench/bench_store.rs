//! The store a database benchmark writes to: the URL given as its first argument (a
//! PostgreSQL one must name an empty database), or a fresh SQLite file in a temporary
//! directory; migrated. Shared by the examples that include it (`#[path]`).

use keyway::config::Config;
use keyway::crypto::Secret;
use sea_orm::DatabaseConnection;

/// The store, and the temporary directory to keep while it is used (none for a URL given).
pub async fn open() -> anyhow::Result<(DatabaseConnection, Option<tempfile::TempDir>)> {
    let (url, dir) = match std::env::args().nth(1) {
        Some(url) => (url, None),
        None => {
            let dir = tempfile::tempdir()?;
            let url = format!("sqlite://{}/keyway.db?mode=rwc", dir.path().display());
            (url, Some(dir))
        }
    };
    let config = Config {
        database_url: Some(Secret::new(url)),
        ..Config::default()
    };
    let db = keyway::store::connect(&config).await?;
    keyway::store::migrate(&db).await?;
    Ok((db, dir))
}
