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
/// Refused tokens remembered at once (about 100 bytes each).
const REFUSED_CAPACITY: u64 = 10_000;

pub struct PrincipalCache {
    entries: moka::sync::Cache<Vec<u8>, Principal, crate::FastHasher>,
    front: ThreadFront<Vec<u8>, Principal>,
    /// Hashes of well-formed tokens that matched no active key or token, so that a client
    /// still sending a revoked key costs no database lookup per call. Safe to keep: a secret is
    /// random and shown once, so one that matched nothing never will, and a revoked one never
    /// comes back. Bounded: a flood of made-up keys only evicts other made-up keys.
    refused: moka::sync::Cache<Vec<u8>, (), crate::FastHasher>,
}

impl Default for PrincipalCache {
    fn default() -> Self {
        Self {
            entries: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(TTL)
                .build_with_hasher(crate::FastHasher::default()),
            front: ThreadFront::default(),
            refused: moka::sync::Cache::builder()
                .max_capacity(REFUSED_CAPACITY)
                .time_to_live(TTL)
                .build_with_hasher(crate::FastHasher::default()),
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

    /// Whether the token was refused within `TTL`.
    pub fn refused(&self, token_hash: &[u8]) -> bool {
        self.refused.contains_key(token_hash)
    }

    /// Notes a token that matched nothing active.
    pub fn refuse(&self, token_hash: Vec<u8>) {
        self.refused.insert(token_hash, ());
    }

    /// A key or token was revoked somewhere: forget everything (revocations are rare).
    pub fn forget_all(&self) {
        self.front.changed(|| self.entries.invalidate_all());
    }
}
