//! Decrypted proxy targets, kept in memory for `credential_cache_secs` so a proxied call opens
//! no ciphertext and reads no connection row. Every change to a connection on this replica
//! (update, refresh, revoke, delete) drops its entry as soon as it commits; every other
//! replica drops it when the change's event reaches it (`events::relay`), and every entry of
//! every replica goes when an integration changes. The time to live bounds what a lost
//! notification leaves behind (and an upstream 401 refreshes and reloads at once).
//!
//! A load that raced with a change must not put the old value back: loads note the
//! invalidation epoch before reading and discard their result if it moved.
//!
//! Each HTTP worker reads through a front of its own (`ThreadFront`) holding its own copy of
//! each target (`Target::for_this_thread`), so the calls of two workers share no counter.

use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;

use super::Target;
use crate::thread_front::ThreadFront;

pub struct CredentialCache {
    entries: Option<moka::sync::Cache<Uuid, Arc<Target>, crate::FastHasher>>,
    front: ThreadFront<Uuid, Arc<Target>>,
}

impl CredentialCache {
    /// `ttl` zero: nothing is cached.
    pub fn new(ttl: Duration) -> Self {
        let entries = (!ttl.is_zero()).then(|| {
            moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(ttl)
                .build_with_hasher(crate::FastHasher::default())
        });
        Self {
            entries,
            front: ThreadFront::default(),
        }
    }

    pub fn get(&self, id: Uuid) -> Option<Arc<Target>> {
        let entries = self.entries.as_ref()?;
        self.front.get_or(&id, self.epoch(), || {
            entries
                .get(&id)
                .map(|shared| Arc::new(shared.for_this_thread()))
        })
    }

    /// Taken before reading what `insert` will store.
    pub fn epoch(&self) -> u64 {
        self.front.epoch()
    }

    /// Stores `target` unless something was invalidated since `epoch`.
    pub fn insert(&self, target: Arc<Target>, epoch: u64) {
        let Some(entries) = &self.entries else {
            return;
        };
        let id = target.connection.id;
        self.front.keep_unless_changed(
            epoch,
            || entries.insert(id, target),
            || entries.invalidate(&id),
        );
    }

    /// The connection changed: its cached credentials are gone from now on.
    pub fn forget(&self, id: Uuid) {
        self.front.changed(|| {
            if let Some(entries) = &self.entries {
                entries.invalidate(&id);
            }
        });
    }

    pub fn forget_all(&self) {
        self.front.changed(|| {
            if let Some(entries) = &self.entries {
                entries.invalidate_all();
            }
        });
    }
}
