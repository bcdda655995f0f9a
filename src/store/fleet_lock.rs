//! A lock that one replica of a fleet holds at a time, for work that replicas sharing a store
//! should not do together (housekeeping's purges: two replicas deleting the same backlog at
//! once wait on each other's rows and do the work twice).
//!
//! On PostgreSQL it is a session advisory lock, scoped to the store's schema, held by a
//! connection of its own, made like the pool's: it never takes one of the
//! `database_max_connections` the work itself needs (with one, the work would wait for the
//! lock's connection for ever), and it is closed when the lock is let go, so nothing can keep
//! the lock past that; a replica that dies frees it with its session. (A pooler in
//! transaction mode between Keyway and PostgreSQL would defeat session locks: connect
//! replicas directly or in session mode.) SQLite stores belong to one process: the lock is
//! always granted.

use std::time::Duration;

use sea_orm::sqlx::{self, ConnectOptions, Connection, PgConnection};
use sea_orm::{DatabaseBackend, DatabaseConnection};

use crate::error::{Error, Result};

const CONNECT_WITHIN: Duration = Duration::from_secs(5);

/// Each kind of work has its own key.
#[derive(Clone, Copy, Debug)]
pub enum Work {
    Housekeeping = 1,
}

/// Held until `release` (or drop): no other replica gets the same lock meanwhile.
pub struct FleetLock {
    /// PostgreSQL: the session holding the lock.
    session: Option<PgConnection>,
}

/// Takes the lock if no replica holds it; `None` when one does. Never waits.
pub async fn try_lock(db: &DatabaseConnection, work: Work) -> Result<Option<FleetLock>> {
    if db.get_database_backend() != DatabaseBackend::Postgres {
        return Ok(Some(FleetLock { session: None }));
    }
    let options = db.get_postgres_connection_pool().connect_options();
    // As the pool's own wait: a database that does not answer fails this try, not the loop.
    let mut session = tokio::time::timeout(CONNECT_WITHIN, options.connect())
        .await
        .map_err(|_| Error::internal(anyhow::anyhow!("connecting for a fleet lock timed out")))?
        .map_err(Error::internal)?;
    let taken: bool =
        sqlx::query_scalar("SELECT pg_try_advisory_lock($1, hashtext(current_schema()))")
            .bind(work as i32)
            .fetch_one(&mut session)
            .await
            .map_err(Error::internal)?;
    if !taken {
        let _ = session.close().await;
        return Ok(None);
    }
    Ok(Some(FleetLock {
        session: Some(session),
    }))
}

impl FleetLock {
    /// Lets the lock go at once: closing its session frees it (dropping the lock instead
    /// frees it too, as PostgreSQL sees the connection go).
    pub async fn release(self) {
        if let Some(session) = self.session
            && let Err(err) = session.close().await
        {
            Error::internal(err).log();
        }
    }
}
