//! The keyring at rest: data keys wrapped under the master key in `data_keys`, the highest id
//! being current. Rotation adds a key (every replica picks it up within `RELOAD_INTERVAL`);
//! re-encryption moves sealed columns to the current key in small transactions, so it can be
//! killed at any point and resumed. Every server also sweeps in the background (`Sweep` says
//! when).

use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::Utc;
use entity::data_key;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect, Set, SqlErr,
};
use uuid::Uuid;

use crate::crypto::envelope::{self, Binding, KeyBytes, Keyring};
use crate::error::{Error, Result};

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
        *self.ring.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(ring);
        Ok(())
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

    /// Runs forever: reloads the keyring and, when values under older keys may exist (see
    /// `Sweep`), moves them a batch at a time.
    pub async fn run(&self, db: DatabaseConnection) {
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
            if !sweep.due(self.ring().current_key_id(), now) {
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

/// When the background sweep for values under older keys runs. Each sweep is a query per
/// sealed column, so an idle server should not run one every `RELOAD_INTERVAL` for nothing;
/// but every value sealed under an older key must move in the end.
#[derive(Default)]
struct Sweep {
    /// The current key at the last look, and when this replica first saw it.
    current: Option<(u32, std::time::Instant)>,
    last: Option<std::time::Instant>,
    /// The last sweep moved something (or failed): more may follow.
    unsettled: bool,
}

/// After this replica sees a new current key (or starts), it sweeps at every reload for this
/// long: other replicas go on sealing under the previous key until their own next reload.
const SETTLING: Duration = Duration::from_secs(30);
/// Otherwise a sweep runs this often, for a value sealed under an older key by a write that
/// was in flight for longer than that.
const SWEEP_EVERY: Duration = Duration::from_secs(300);

impl Sweep {
    fn due(&mut self, current: u32, now: std::time::Instant) -> bool {
        if self.current.is_none_or(|(key, _)| key != current) {
            self.current = Some((current, now));
        }
        let since = self.current.map_or(now, |(_, since)| since);
        self.unsettled
            || now.duration_since(since) < SETTLING
            || self
                .last
                .is_none_or(|last| now.duration_since(last) >= SWEEP_EVERY)
    }

    fn done(&mut self, unsettled: bool, now: std::time::Instant) {
        self.unsettled = unsettled;
        self.last = Some(now);
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

/// A sealed column and the columns that say where it lives.
#[derive(Clone, Copy)]
enum SealedColumn {
    IntegrationClientSecret,
    ConnectionCredentials,
    WebhookSecret,
}

const SEALED_COLUMNS: [SealedColumn; 3] = [
    SealedColumn::IntegrationClientSecret,
    SealedColumn::ConnectionCredentials,
    SealedColumn::WebhookSecret,
];

impl SealedColumn {
    /// Also the `table` of the values' binding.
    fn name(self) -> &'static str {
        match self {
            SealedColumn::IntegrationClientSecret => "integrations.client_secret",
            SealedColumn::ConnectionCredentials => "connections.credentials",
            SealedColumn::WebhookSecret => "webhook_endpoints.secret",
        }
    }

    async fn count_by_key(self, db: &DatabaseConnection) -> Result<Vec<(Option<i32>, u64)>> {
        use entity::{connection as c, integration as i, webhook_endpoint as w};
        match self {
            SealedColumn::IntegrationClientSecret => {
                count_by_key::<i::Entity>(db, i::Column::ClientSecret, i::Column::ClientSecretKeyId)
                    .await
            }
            SealedColumn::ConnectionCredentials => {
                count_by_key::<c::Entity>(db, c::Column::Credentials, c::Column::CredentialsKeyId)
                    .await
            }
            SealedColumn::WebhookSecret => {
                count_by_key::<w::Entity>(db, w::Column::Secret, w::Column::SecretKeyId).await
            }
        }
    }

    async fn reencrypt(
        self,
        db: &DatabaseConnection,
        ring: &Keyring,
        current: i32,
        limit: u64,
    ) -> Result<usize> {
        use entity::{connection as c, integration as i, webhook_endpoint as w};
        let job = Job {
            ring,
            current,
            limit,
            table: self.name(),
        };
        match self {
            SealedColumn::IntegrationClientSecret => {
                let place = (i::Column::Id, i::Column::ApplicationId);
                let sealed = (i::Column::ClientSecret, i::Column::ClientSecretKeyId);
                reencrypt::<i::Entity>(db, place, sealed, job).await
            }
            SealedColumn::ConnectionCredentials => {
                let place = (c::Column::Id, c::Column::ApplicationId);
                let sealed = (c::Column::Credentials, c::Column::CredentialsKeyId);
                reencrypt::<c::Entity>(db, place, sealed, job).await
            }
            SealedColumn::WebhookSecret => {
                let place = (w::Column::Id, w::Column::ApplicationId);
                let sealed = (w::Column::Secret, w::Column::SecretKeyId);
                reencrypt::<w::Entity>(db, place, sealed, job).await
            }
        }
    }
}

/// One pass of re-encryption: move up to `limit` values to the `current` key.
struct Job<'a> {
    ring: &'a Keyring,
    current: i32,
    limit: u64,
    table: &'static str,
}

async fn count_by_key<E: EntityTrait>(
    db: &DatabaseConnection,
    sealed: E::Column,
    key_id: E::Column,
) -> Result<Vec<(Option<i32>, u64)>> {
    let rows: Vec<(Option<i32>, i64)> = E::find()
        .select_only()
        .column(key_id)
        .column_as(sealed.count(), "n")
        .filter(sealed.is_not_null())
        .group_by(key_id)
        .into_tuple()
        .all(db)
        .await?;
    Ok(rows.into_iter().map(|(k, n)| (k, n as u64)).collect())
}

/// Each value moves in its own conditional UPDATE (the same ciphertext still there), so a
/// racing writer wins and nothing is lost; a crash leaves every value old or new, both valid.
async fn reencrypt<E: EntityTrait>(
    db: &DatabaseConnection,
    (id_col, app_col): (E::Column, E::Column),
    (sealed_col, key_col): (E::Column, E::Column),
    job: Job<'_>,
) -> Result<usize> {
    let Job {
        ring,
        current,
        limit,
        table,
    } = job;
    let rows: Vec<(Uuid, Uuid, Vec<u8>)> = E::find()
        .select_only()
        .column(id_col)
        .column(app_col)
        .column(sealed_col)
        .filter(sealed_col.is_not_null())
        .filter(key_col.ne(current))
        .limit(limit)
        .into_tuple()
        .all(db)
        .await?;
    let mut moved = 0;
    for (id, application_id, old) in rows {
        let binding = Binding {
            table,
            row_id: id,
            application_id,
        };
        let Some(new) = reseal(ring, &old, binding)? else {
            continue;
        };
        let result = E::update_many()
            .col_expr(sealed_col, Expr::value(new))
            .col_expr(key_col, Expr::value(current))
            .filter(id_col.eq(id))
            .filter(sealed_col.eq(old))
            .exec(db)
            .await?;
        moved += result.rows_affected as usize;
    }
    Ok(moved)
}

/// `None` when the value does not open (it is logged; such a row needs an operator).
fn reseal(ring: &Keyring, old: &[u8], binding: Binding<'_>) -> Result<Option<Vec<u8>>> {
    match ring.open(old, binding) {
        Ok(plain) => Ok(Some(ring.seal(&plain, binding).map_err(Error::internal)?)),
        Err(err) => {
            tracing::error!(table = binding.table, row = %binding.row_id, error = %err,
                "a sealed value does not open; left as it is");
            Ok(None)
        }
    }
}

pub fn integration_binding(id: Uuid, application_id: Uuid) -> Binding<'static> {
    Binding {
        table: SealedColumn::IntegrationClientSecret.name(),
        row_id: id,
        application_id,
    }
}

pub fn webhook_binding(id: Uuid, application_id: Uuid) -> Binding<'static> {
    Binding {
        table: SealedColumn::WebhookSecret.name(),
        row_id: id,
        application_id,
    }
}

pub fn connection_binding(id: Uuid, application_id: Uuid) -> Binding<'static> {
    Binding {
        table: SealedColumn::ConnectionCredentials.name(),
        row_id: id,
        application_id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn sweeps_while_a_rotation_settles_or_values_move_then_rarely() {
        let start = Instant::now();
        let at = |secs| start + Duration::from_secs(secs);
        let mut sweep = Sweep::default();
        // A start is a change: every reload sweeps while it settles.
        assert!(sweep.due(1, at(0)));
        sweep.done(false, at(0));
        assert!(sweep.due(1, at(25)));
        sweep.done(false, at(25));
        // Settled, nothing found: not again until SWEEP_EVERY after the last.
        assert!(!sweep.due(1, at(35)));
        assert!(!sweep.due(1, at(320)));
        assert!(sweep.due(1, at(325)));
        sweep.done(false, at(325));
        assert!(!sweep.due(1, at(330)));
        // A new current key settles again.
        assert!(sweep.due(2, at(335)));
        sweep.done(false, at(335));
        assert!(sweep.due(2, at(360)));
        sweep.done(false, at(360));
        assert!(!sweep.due(2, at(370)));
        // Something moved (or the sweep failed): the next reload sweeps too.
        sweep.done(true, at(600));
        assert!(sweep.due(2, at(605)));
        sweep.done(false, at(605));
        assert!(!sweep.due(2, at(610)));
    }
}
