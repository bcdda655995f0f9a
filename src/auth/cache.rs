//! Proven principals, remembered by the SHA-256 of their token so that a busy key is not
//! looked up in the database on every call (the proxy's hot path).
//!
//! Revocation must still bite on the very next call: revoking a key drops every entry on the
//! replica that revoked it at once, and (with PostgreSQL) notifies the other replicas, whose
//! relays drop theirs (`service::events::relay`). An entry also lapses after `TTL`.
//! Each HTTP worker reads through a front of its own (`ThreadFront`).

use std::time::Duration;

use super::Principal;
use crate::thread_front::ThreadFront;

const TTL: Duration = Duration::from_secs(60);

pub struct PrincipalCache {
    entries: moka::sync::Cache<Vec<u8>, Principal, crate::FastHasher>,
    front: ThreadFront<Vec<u8>, Principal>,
}

impl Default for PrincipalCache {
    fn default() -> Self {
        Self {
            entries: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(TTL)
                .build_with_hasher(crate::FastHasher::default()),
            front: ThreadFront::default(),
        }
    }
}

impl PrincipalCache {
    pub fn get(&self, token_hash: &[u8]) -> Option<Principal> {
        self.front
            .get_or(token_hash, self.epoch(), || self.entries.get(token_hash))
    }

    /// Taken before the database lookup whose result `insert` stores.
    pub fn epoch(&self) -> u64 {
        self.front.epoch()
    }

    /// Stores a principal unless a revocation happened since `epoch`.
    pub fn insert(&self, token_hash: Vec<u8>, principal: Principal, epoch: u64) {
        self.front.keep_unless_changed(
            epoch,
            || self.entries.insert(token_hash.clone(), principal),
            || self.entries.invalidate(&token_hash),
        );
    }

    /// A key or token was revoked somewhere: forget everything (revocations are rare).
    pub fn forget_all(&self) {
        self.front.changed(|| self.entries.invalidate_all());
    }
}
