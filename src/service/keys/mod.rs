//! The keyring at rest: data keys wrapped under the master key in `data_keys`, the highest id
//! being current. Rotation adds a key (every replica picks it up within `RELOAD_INTERVAL`);
//! re-encryption moves sealed columns to the current key in small transactions, so it can be
//! killed at any point and resumed. Every server also sweeps in the background (`Sweep` says
//! when) unless `reencrypt_in_background` is off: an operator who wants that I/O at an hour
//! of their choosing, or on one replica of a fleet, runs `keyway keys reencrypt` there.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::Utc;
use entity::data_key;
use sea_orm::{
    ActiveModelTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryOrder, Set, SqlErr,
};

use crate::crypto::envelope::{self, Binding, KeyBytes, Keyring};
use crate::error::{Error, Result};

mod sealed;
mod sweep;

use sealed::SEALED_COLUMNS;
pub use sealed::{connection_binding, integration_binding, webhook_binding};
use sweep::Sweep;

pub const RELOAD_INTERVAL: Duration = Duration::from_secs(5);
pub const REENCRYPT_BATCH: u64 = 200;

/// The master key and the current keyring, swapped atomically on reload.
pub struct KeyStore {
    master: KeyBytes,
    ring: RwLock<Arc<Keyring>>,
}

impl KeyStore {
    /// Opens every data key with the master key (creating the first on a new database).
    /// A master key that opens none of them is refused: no plaintext fallback, ever.
    pub async fn open(db: &DatabaseConnection, master: KeyBytes) -> anyhow::Result<Self> {
        if data_key::Entity::find().count(db).await? == 0 {
            insert_next_key(db, &master, 1).await?;
        }
        let ring = load_ring(db, &master).await?;
        Ok(Self {
            master,
            ring: RwLock::new(Arc::new(ring)),
        })
    }

    /// A key for signing links, derived from the master key (never the master key itself).
    pub fn link_signing_key(&self) -> Vec<u8> {
        let derived = crate::crypto::tokens::sign(self.master.expose(), b"keyway/link-signing/v1");
        derived.into_bytes()
    }

    pub fn ring(&self) -> Arc<Keyring> {
        self.ring.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Picks up keys added by `keyway keys rotate` (here or on another replica).
    pub async fn reload(&self, db: &DatabaseConnection) -> anyhow::Result<()> {
        let ring = load_ring(db, &self.master).await?;
        self.install(ring);
        Ok(())
    }

    /// Keys are only ever added, so a ring whose current key is older than the one held was
    /// read before a concurrent reload's (the background one racing a rotation): installing it
    /// would seal under the previous key until the next reload.
    fn install(&self, ring: Keyring) {
        let mut held = self.ring.write().unwrap_or_else(|p| p.into_inner());
        if ring.current_key_id() >= held.current_key_id() {
            *held = Arc::new(ring);
        }
    }

    /// Adds a new current key; returns its id.
    pub async fn rotate(&self, db: &DatabaseConnection) -> anyhow::Result<i32> {
        for _ in 0..5 {
            let next = self.ring().key_ids().max().unwrap_or(0) as i32 + 1;
            match insert_next_key(db, &self.master, next).await {
                Ok(()) => {
                    self.reload(db).await?;
                    return Ok(next);
                }
                // Another rotation took that id: reload and try the next.
                Err(err) if is_conflict(&err) => self.reload(db).await?,
                Err(err) => return Err(err),
            }
        }
        anyhow::bail!("could not add a data key: concurrent rotations kept winning")
    }

    pub fn seal(&self, plaintext: &[u8], binding: Binding<'_>) -> Result<(Vec<u8>, i32)> {
        let ring = self.ring();
        let sealed = ring.seal(plaintext, binding).map_err(Error::internal)?;
        Ok((sealed, ring.current_key_id() as i32))
    }

    pub fn open_sealed(
        &self,
        sealed: &[u8],
        binding: Binding<'_>,
    ) -> Result<zeroize::Zeroizing<Vec<u8>>> {
        self.ring()
            .open(sealed, binding)
            .map_err(|e| Error::internal(anyhow::anyhow!("opening a sealed value: {e}")))
    }

    /// Re-seals up to `limit` values per sealed column under the current key; returns how
    /// many moved. Zero means everything is current.
    pub async fn reencrypt_batch(&self, db: &DatabaseConnection, limit: u64) -> Result<usize> {
        let ring = self.ring();
        let current = ring.current_key_id() as i32;
        let mut moved = 0;
        for column in SEALED_COLUMNS {
            moved += column.reencrypt(db, &ring, current, limit).await?;
        }
        Ok(moved)
    }

    /// How many sealed values each key protects, per column.
    pub async fn status(&self, db: &DatabaseConnection) -> Result<Vec<KeyUsage>> {
        let mut usage = Vec::new();
        for column in SEALED_COLUMNS {
            for (key_id, count) in column.count_by_key(db).await? {
                usage.push(KeyUsage {
                    column: column.name(),
                    key_id,
                    count,
                });
            }
        }
        Ok(usage)
    }

    /// Runs forever: reloads the keyring and, when `sweep_too` and values under older keys
    /// may exist (see `Sweep`), moves them a batch at a time.
    pub async fn run(&self, db: DatabaseConnection, sweep_too: bool) {
        let mut tick = tokio::time::interval(RELOAD_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut sweep = Sweep::default();
        loop {
            tick.tick().await;
            if let Err(err) = self.reload(&db).await {
                tracing::error!(error = %format!("{err:#}"), "reloading the keyring failed");
                continue;
            }
            let now = std::time::Instant::now();
            if !sweep_too || !sweep.due(self.ring().current_key_id(), now) {
                continue;
            }
            let mut moved = 0;
            let finished = loop {
                match self.reencrypt_batch(&db, REENCRYPT_BATCH).await {
                    Ok(0) => break true,
                    Ok(n) => {
                        moved += n;
                        tracing::info!(moved = n, "re-encrypted sealed values");
                    }
                    Err(err) => {
                        err.log();
                        break false;
                    }
                }
            };
            sweep.done(moved > 0 || !finished, now);
        }
    }
}

pub struct KeyUsage {
    pub column: &'static str,
    pub key_id: Option<i32>,
    pub count: u64,
}

async fn insert_next_key(
    db: &DatabaseConnection,
    master: &KeyBytes,
    id: i32,
) -> anyhow::Result<()> {
    let key = KeyBytes::generate();
    let wrapped = envelope::wrap_key(master, id as u32, &key)?;
    data_key::ActiveModel {
        id: Set(id),
        wrapped: Set(wrapped),
        created_at: Set(Utc::now()),
    }
    .insert(db)
    .await?;
    tracing::info!(key_id = id, "data key added");
    Ok(())
}

fn is_conflict(err: &anyhow::Error) -> bool {
    err.downcast_ref::<sea_orm::DbErr>()
        .and_then(|e| e.sql_err())
        .is_some_and(|e| matches!(e, SqlErr::UniqueConstraintViolation(_)))
}

async fn load_ring(db: &DatabaseConnection, master: &KeyBytes) -> anyhow::Result<Keyring> {
    let rows = data_key::Entity::find()
        .order_by_asc(data_key::Column::Id)
        .all(db)
        .await?;
    let mut keys = Vec::with_capacity(rows.len());
    for row in &rows {
        let key = envelope::unwrap_key(master, row.id as u32, &row.wrapped).map_err(|_| {
            anyhow::anyhow!(
                "the master key does not open data key {} of this database: it is the wrong \
                 key (check KEYWAY_MASTER_KEY or the key file); refusing to start",
                row.id
            )
        })?;
        keys.push((row.id as u32, key));
    }
    let current = rows.last().map(|r| r.id as u32).unwrap_or(0);
    Keyring::new(current, keys).ok_or_else(|| anyhow::anyhow!("the database holds no data key"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring_up_to(current: u32) -> Keyring {
        Keyring::new(current, (1..=current).map(|id| (id, KeyBytes::generate()))).unwrap()
    }

    #[test]
    fn a_reload_read_before_a_newer_one_does_not_replace_it() {
        let store = KeyStore {
            master: KeyBytes::generate(),
            ring: RwLock::new(Arc::new(ring_up_to(2))),
        };
        store.install(ring_up_to(1));
        assert_eq!(store.ring().current_key_id(), 2);
        store.install(ring_up_to(3));
        assert_eq!(store.ring().current_key_id(), 3);
    }
}
