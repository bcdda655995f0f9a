//! A lock that one replica of a fleet holds at a time, for work that replicas sharing a store
//! should not do together (housekeeping's purges: two replicas deleting the same backlog at
//! once wait on each other's rows and do the work twice).
//!
//! On PostgreSQL it is a session advisory lock, scoped to the store's schema, on a connection
//! taken from the pool for as long as it is held. That connection is closed rather than
//! pooled when it is let go: a lock that somehow outlived its `release` would otherwise stay
//! with an idle pooled connection, and a replica that dies frees it with its session.
//! (A pooler in transaction mode between Keyway and PostgreSQL would defeat session locks:
//! connect replicas directly or in session mode.) SQLite stores belong to one process: the
//! lock is always granted.

use sea_orm::sqlx::{self, Postgres, pool::PoolConnection};
use sea_orm::{DatabaseBackend, DatabaseConnection};

use crate::error::{Error, Result};

/// Each kind of work has its own key.
#[derive(Clone, Copy, Debug)]
pub enum Work {
    Housekeeping = 1,
}

/// Held until `release` (or drop): no other replica gets the same lock meanwhile.
pub struct FleetLock {
    /// PostgreSQL: the session holding the lock.
    session: Option<(PoolConnection<Postgres>, Work)>,
}

/// Takes the lock if no replica holds it; `None` when one does. Never waits.
pub async fn try_lock(db: &DatabaseConnection, work: Work) -> Result<Option<FleetLock>> {
    if db.get_database_backend() != DatabaseBackend::Postgres {
        return Ok(Some(FleetLock { session: None }));
    }
    let mut session = db
        .get_postgres_connection_pool()
        .acquire()
        .await
        .map_err(Error::internal)?;
    // Closed, not pooled, once let go: see the module's note.
    session.close_on_drop();
    let taken: bool =
        sqlx::query_scalar("SELECT pg_try_advisory_lock($1, hashtext(current_schema()))")
            .bind(work as i32)
            .fetch_one(&mut *session)
            .await
            .map_err(Error::internal)?;
    Ok(taken.then_some(FleetLock {
        session: Some((session, work)),
    }))
}

impl FleetLock {
    /// Lets the lock go at once (dropping it lets it go too, when its session closes).
    pub async fn release(self) {
        if let Some((mut session, work)) = self.session {
            let released = sqlx::query("SELECT pg_advisory_unlock($1, hashtext(current_schema()))")
                .bind(work as i32)
                .execute(&mut *session)
                .await;
            if let Err(err) = released {
                // The session's close frees it anyway.
                Error::internal(err).log();
            }
        }
    }
}
