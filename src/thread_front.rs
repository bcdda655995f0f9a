//! A per-thread front for a shared in-memory cache: a hit reads and writes only the calling
//! thread's memory.
//!
//! Why: a shared cache's read is a write somewhere shared (moka records every read in its
//! read log and the entry's access time; an `Arc` clone bumps a shared count). Two HTTP workers
//! reading the same hot entry on every proxied call move those cache lines between cores on
//! every call. Each worker keeps its own copy of the entries it used in the last second instead
//! (2–3% less CPU per proxied call: six paired runs of `bench/proxy_ab.sh`, B/A 0.96–0.99).
//!
//! What it must never do: hand out a copy made before a change. Every change to the shared
//! cache goes through `changed`, which empties every front; a load that raced with the change
//! cannot put an old value back (the epoch). Without changes a front is emptied once a second,
//! so an entry outlives its shared copy (its time to live) by at most `LIFETIME`.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use thread_local::ThreadLocal;

/// How long a front keeps what it copied.
pub const LIFETIME: Duration = Duration::from_secs(1);

pub struct ThreadFront<K: Send, V: Send> {
    /// One per thread; each lock is only ever contended by `changed`.
    fronts: ThreadLocal<Mutex<Front<K, V>>>,
    /// Moves on every change: a reader notes it before reading the shared cache, and keeps
    /// nothing it read if it moved since.
    epoch: AtomicU64,
}

struct Front<K, V> {
    epoch: u64,
    since: Instant,
    entries: HashMap<K, V, crate::FastHasher>,
}

impl<K: Eq + Hash + Send, V: Clone + Send> Default for ThreadFront<K, V> {
    fn default() -> Self {
        Self {
            fronts: ThreadLocal::new(),
            epoch: AtomicU64::new(0),
        }
    }
}

impl<K: Eq + Hash + Send, V: Clone + Send> ThreadFront<K, V> {
    /// Taken before reading the shared cache or what will be stored in it.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// This thread's copy of `key`, or `fill`'s answer (from the shared cache), kept when
    /// there is one. `epoch` is `self.epoch()`, read before `fill` runs.
    pub fn get_or<Q>(&self, key: &Q, epoch: u64, fill: impl FnOnce() -> Option<V>) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        let cell = self.fronts.get_or(|| {
            Mutex::new(Front {
                epoch,
                since: Instant::now(),
                entries: HashMap::default(),
            })
        });
        {
            let mut front = lock(cell);
            if front.epoch != epoch || front.since.elapsed() > LIFETIME {
                front.empty(epoch);
            } else if let Some(value) = front.entries.get(key) {
                return Some(value.clone());
            }
        }
        let value = fill()?;
        let mut front = lock(cell);
        if front.epoch == epoch {
            front.entries.insert(key.to_owned(), value.clone());
        }
        Some(value)
    }

    /// Stores a freshly loaded value in the shared cache (`store`), unless a change happened
    /// since `epoch` (read before the load): then the value may be stale, and `drop_shared`
    /// removes it again, through `changed`, since another thread may have copied it already.
    pub fn keep_unless_changed(
        &self,
        epoch: u64,
        store: impl FnOnce(),
        drop_shared: impl FnOnce(),
    ) {
        store();
        if self.epoch() != epoch {
            self.changed(drop_shared);
        }
    }

    /// Changes the shared cache (`drop_shared` removes entries from it) and empties every
    /// front. The epoch moves before the change, so that a load that raced with it stores
    /// nothing, and after it, so that no front keeps a copy made before it.
    pub fn changed(&self, drop_shared: impl FnOnce()) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        drop_shared();
        let epoch = self.epoch.fetch_add(1, Ordering::SeqCst) + 1;
        for front in self.fronts.iter() {
            lock(front).empty(epoch);
        }
    }
}

impl<K, V> Front<K, V> {
    fn empty(&mut self, epoch: u64) {
        self.entries.clear();
        self.epoch = epoch;
        self.since = Instant::now();
    }
}

/// A poisoned front only means a thread panicked while holding it; its map is still whole.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hit_does_not_ask_the_shared_cache_again() {
        let front: ThreadFront<String, u32> = ThreadFront::default();
        let mut asked = 0;
        for _ in 0..3 {
            let got = front.get_or("a", front.epoch(), || {
                asked += 1;
                Some(7)
            });
            assert_eq!(got, Some(7));
        }
        assert_eq!(asked, 1);
    }

    #[test]
    fn a_change_empties_every_threads_front() {
        let front: ThreadFront<String, u32> = ThreadFront::default();
        assert_eq!(front.get_or("a", front.epoch(), || Some(1)), Some(1));
        std::thread::scope(|s| {
            s.spawn(|| assert_eq!(front.get_or("a", front.epoch(), || Some(1)), Some(1)));
        });
        front.changed(|| {});
        assert!(front.fronts.iter().all(|f| lock(f).entries.is_empty()));
        assert_eq!(front.get_or("a", front.epoch(), || Some(2)), Some(2));
        assert_eq!(front.get_or("a", front.epoch(), || None), Some(2));
    }

    #[test]
    fn a_load_that_raced_with_a_change_is_not_kept() {
        let front: ThreadFront<String, u32> = ThreadFront::default();
        let before = front.epoch();
        // The change lands while the shared cache is being read.
        let got = front.get_or("a", before, || {
            front.changed(|| {});
            Some(1)
        });
        assert_eq!(got, Some(1), "the caller still gets what it read");
        assert_eq!(front.get_or("a", front.epoch(), || Some(2)), Some(2));
    }

    #[test]
    fn a_value_loaded_across_a_change_is_dropped_again() {
        let front: ThreadFront<String, u32> = ThreadFront::default();
        let shared = Mutex::new(None);
        let before = front.epoch();
        front.keep_unless_changed(before, || *lock(&shared) = Some(1), || {});
        assert_eq!(*lock(&shared), Some(1), "no change: kept");
        front.changed(|| {});
        front.keep_unless_changed(
            before,
            || *lock(&shared) = Some(2),
            || *lock(&shared) = None,
        );
        assert_eq!(*lock(&shared), None, "loaded before the change: dropped");
    }

    #[test]
    fn a_miss_in_the_shared_cache_is_not_remembered() {
        let front: ThreadFront<String, u32> = ThreadFront::default();
        assert_eq!(front.get_or("a", 0, || None), None);
        assert_eq!(front.get_or("a", 0, || Some(3)), Some(3));
    }

    #[test]
    fn each_thread_has_its_own_front() {
        let front: ThreadFront<String, u32> = ThreadFront::default();
        assert_eq!(front.get_or("a", 0, || Some(1)), Some(1));
        std::thread::scope(|s| {
            s.spawn(|| assert_eq!(front.get_or("a", 0, || Some(2)), Some(2)));
        });
        assert_eq!(front.get_or("a", 0, || None), Some(1));
    }
}
