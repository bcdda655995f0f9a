//! How a SQLite connection waits for another's write lock.
//!
//! SQLite's own handler (what `busy_timeout` installs) sleeps 1, 2, 5, 10, 15, 20, 25, 25,
//! 25, 50, 50 and then 100 ms between tries. A writer that has waited a while is asleep for
//! up to 100 ms after the lock comes free, while newcomers take it at their first try: with
//! the pool's ten connections, `createConnection` at eight clients had a p99 of 536 ms
//! against 16.5 ms on one connection (`bench/connect.sh`). This handler tries again every
//! 100 µs for the first millisecond, then every millisecond, and gives up after `TIMEOUT`,
//! as `busy_timeout` did. The sleep blocks the connection's own worker thread (sqlx gives
//! every SQLite connection one), never a runtime thread.

use std::ffi::{c_int, c_void};
use std::time::Duration;

use sea_orm::sqlx::SqliteConnection;

/// How long a statement waits for the lock before failing with "database is locked".
pub const TIMEOUT: Duration = Duration::from_secs(5);
const FIRST_TRIES: u32 = 10;
const FIRST_STEP: Duration = Duration::from_micros(100);
const STEP: Duration = Duration::from_millis(1);

/// Replaces the connection's busy handler with `wait`.
pub async fn install(conn: &mut SqliteConnection) -> Result<(), sea_orm::sqlx::Error> {
    let mut handle = conn.lock_handle().await?;
    let raw = handle.as_raw_handle();
    // SAFETY: the handle is locked, so no other thread uses the connection while the handler
    // is set; `wait` is a plain function that never unwinds and reads no user data (null).
    let code = unsafe {
        libsqlite3_sys::sqlite3_busy_handler(raw.as_ptr(), Some(wait), std::ptr::null_mut())
    };
    if code == libsqlite3_sys::SQLITE_OK {
        Ok(())
    } else {
        Err(sea_orm::sqlx::Error::Protocol(format!(
            "setting the SQLite busy handler failed ({code})"
        )))
    }
}

/// Called by SQLite with the number of times it was already called for this lock: nonzero
/// to try again (after sleeping here), zero to give up.
extern "C" fn wait(_: *mut c_void, tries: c_int) -> c_int {
    match pause(tries.unsigned_abs()) {
        Some(pause) => {
            std::thread::sleep(pause);
            1
        }
        None => 0,
    }
}

/// The sleep before try `tries + 1`, or none once `TIMEOUT` has been waited.
fn pause(tries: u32) -> Option<Duration> {
    let waited = if tries <= FIRST_TRIES {
        FIRST_STEP * tries
    } else {
        FIRST_STEP * FIRST_TRIES + STEP * (tries - FIRST_TRIES)
    };
    if waited >= TIMEOUT {
        return None;
    }
    Some(if tries < FIRST_TRIES {
        FIRST_STEP
    } else {
        STEP
    })
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use sea_orm::sqlx::{self, sqlite::SqliteConnectOptions};

    use super::*;

    /// A writer waiting for the lock takes it within milliseconds of its release, whenever
    /// that falls. With SQLite's own handler it wakes 38 to 98 ms late at these holds (median
    /// 68); the median of five keeps one slow wake-up on a loaded machine from failing it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_waiting_writer_takes_the_lock_soon_after_its_release() {
        let dir = tempfile::tempdir().unwrap();
        let options = SqliteConnectOptions::new().filename(dir.path().join("busy.db"));
        let db = super::super::connect_sqlite(options, 2).await.unwrap();
        let pool = db.get_sqlite_connection_pool();
        let mut lateness = Vec::new();
        for hold_ms in [230, 260, 290, 330, 370] {
            let mut holder = pool.acquire().await.unwrap();
            let mut waiter = pool.acquire().await.unwrap();
            sqlx::query("BEGIN IMMEDIATE")
                .execute(&mut *holder)
                .await
                .unwrap();
            let waiting = tokio::spawn(async move {
                sqlx::query("BEGIN IMMEDIATE")
                    .execute(&mut *waiter)
                    .await
                    .unwrap();
                let took = Instant::now();
                sqlx::query("ROLLBACK").execute(&mut *waiter).await.unwrap();
                took
            });
            tokio::time::sleep(Duration::from_millis(hold_ms)).await;
            sqlx::query("ROLLBACK").execute(&mut *holder).await.unwrap();
            let released = Instant::now();
            let took = waiting.await.unwrap();
            lateness.push(took.saturating_duration_since(released));
        }
        lateness.sort();
        assert!(lateness[2] < Duration::from_millis(30), "{lateness:?} late");
    }

    #[test]
    fn tries_often_at_first_then_every_millisecond_until_the_timeout() {
        assert_eq!(pause(0), Some(FIRST_STEP));
        assert_eq!(pause(FIRST_TRIES - 1), Some(FIRST_STEP));
        assert_eq!(pause(FIRST_TRIES), Some(STEP));
        let mut waited = Duration::ZERO;
        let mut tries = 0;
        while let Some(pause) = pause(tries) {
            waited += pause;
            tries += 1;
        }
        assert!(
            waited >= TIMEOUT - STEP && waited <= TIMEOUT + STEP,
            "{waited:?}"
        );
    }
}
