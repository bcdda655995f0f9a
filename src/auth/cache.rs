//! Proven principals, remembered by the SHA-256 of their token so that a busy key is not
//! looked up in the database on every call (the proxy's hot path).
//!
//! Revocation must still bite on the very next call: revoking a key drops every entry on the
//! replica that revoked it at once, and (with PostgreSQL) notifies the other replicas, whose
//! relays drop theirs (`service::events::relay`). An entry also lapses after `TTL`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::Principal;

const TTL: Duration = Duration::from_secs(60);

pub struct PrincipalCache {
    entries: moka::sync::Cache<Vec<u8>, Principal, crate::FastHasher>,
    epoch: AtomicU64,
}

impl Default for PrincipalCache {
    fn default() -> Self {
        Self {
            entries: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(TTL)
                .build_with_hasher(crate::FastHasher::default()),
            epoch: AtomicU64::new(0),
        }
    }
}

impl PrincipalCache {
    pub fn get(&self, token_hash: &[u8]) -> Option<Principal> {
        self.entries.get(token_hash)
    }

    /// Taken before the database lookup whose result `insert` stores.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// Stores a principal unless a revocation happened since `epoch`.
    pub fn insert(&self, token_hash: Vec<u8>, principal: Principal, epoch: u64) {
        self.entries.insert(token_hash.clone(), principal);
        if self.epoch() != epoch {
            self.entries.invalidate(&token_hash);
        }
    }

    /// A key or token was revoked somewhere: forget everything (revocations are rare).
    pub fn forget_all(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.entries.invalidate_all();
    }
}
