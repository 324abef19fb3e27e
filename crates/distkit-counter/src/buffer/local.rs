//! The in-memory side of the lax counters: per key, the last values read from Redis, the
//! deltas on their way there and the deltas not yet sent.
//!
//! Keys are spread over shards, each behind its own mutex, so tasks on different cores
//! rarely wait for each other; no lock is ever held across an `.await`.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use distkit_core::DistkitRedisKey;

/// The number of shards: a power of two well above the core counts this runs on.
const SHARDS: usize = 32;

/// Values Redis returned for a key: the total and this instance's slice (for a plain counter
/// both are the stored value).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Snapshot {
    pub(crate) total: i64,
    pub(crate) own: i64,
}

impl Snapshot {
    /// The snapshot of a plain counter's stored value.
    pub(crate) fn single(value: i64) -> Self {
        Self {
            total: value,
            own: value,
        }
    }

    /// Both values moved by `delta`; `None` on overflow.
    pub(crate) fn plus(self, delta: i64) -> Option<Self> {
        Some(Self {
            total: self.total.checked_add(delta)?,
            own: self.own.checked_add(delta)?,
        })
    }
}

/// What the process knows about one counter key.
#[derive(Clone, Copy, Debug, Default)]
struct Entry {
    /// The values Redis returned last.
    remote: Snapshot,
    /// Deltas sent to Redis in a batch that is not confirmed yet.
    in_flight: i64,
    /// Deltas not sent yet.
    pending: i64,
    /// Listed in its shard's `dirty` list (has pending deltas).
    dirty: bool,
    /// Listed in its shard's `watched` list (read since the last flush).
    watched: bool,
    /// The flush tick of the last use, for forgetting idle keys.
    last_used: u64,
}

impl Entry {
    fn value(&self) -> Option<Snapshot> {
        self.remote.plus(self.in_flight)?.plus(self.pending)
    }
}

#[derive(Debug, Default)]
struct Shard {
    entries: HashMap<DistkitRedisKey, Entry, ahash::RandomState>,
    dirty: Vec<DistkitRedisKey>,
    watched: Vec<DistkitRedisKey>,
}

/// The outcome of a local change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LocalChange {
    /// Applied; the new values.
    Applied(Snapshot),
    /// The key is not known locally: its value must be read from Redis first.
    Cold,
    /// The value or the pending delta would overflow locally; nothing was changed.
    Overflow,
}

/// Deltas taken for a flush, and keys whose value should be read back.
#[derive(Debug, Default)]
pub(crate) struct Taken {
    pub(crate) deltas: Vec<(DistkitRedisKey, i64)>,
    pub(crate) reads: Vec<DistkitRedisKey>,
}

/// The sharded local state.
#[derive(Debug)]
pub(crate) struct LocalState {
    shards: [Mutex<Shard>; SHARDS],
    /// Picks the shard of a key (aHash: fast and seeded per process, so keys chosen by an
    /// adversary cannot pile up in one shard or one bucket).
    shard_hasher: ahash::RandomState,
}

impl LocalState {
    pub(crate) fn new() -> Self {
        Self {
            shards: std::array::from_fn(|_| Mutex::new(Shard::default())),
            shard_hasher: ahash::RandomState::new(),
        }
    }

    #[expect(
        clippy::indexing_slicing,
        reason = "the index is reduced modulo the array length"
    )]
    fn shard(&self, key: &DistkitRedisKey) -> MutexGuard<'_, Shard> {
        let hash = self.shard_hasher.hash_one(key.as_str());
        let index =
            usize::try_from(hash.checked_rem(SHARDS as u64).unwrap_or(0)).unwrap_or(0) % SHARDS;
        // A panic while a shard was locked cannot leave it inconsistent (every update is a
        // few plain assignments), so a poisoned lock is used as is.
        self.shards[index]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn all_shards(&self) -> impl Iterator<Item = MutexGuard<'_, Shard>> {
        self.shards
            .iter()
            .map(|shard| shard.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Adds `delta` to the pending deltas of a known key.
    pub(crate) fn add(&self, key: &DistkitRedisKey, delta: i64, tick: u64) -> LocalChange {
        let mut guard = self.shard(key);
        let shard = &mut *guard;
        let Some(entry) = shard.entries.get_mut(key) else {
            return LocalChange::Cold;
        };
        let (Some(pending), Some(value)) = (
            entry.pending.checked_add(delta),
            entry.value().and_then(|value| value.plus(delta)),
        ) else {
            return LocalChange::Overflow;
        };
        entry.pending = pending;
        entry.last_used = tick;
        if !entry.dirty {
            entry.dirty = true;
            shard.dirty.push(key.clone());
        }
        LocalChange::Applied(value)
    }

    /// The local value of a known key (`None` when cold), marking it to be read back at the
    /// next flush so it does not go stale.
    pub(crate) fn read(&self, key: &DistkitRedisKey, tick: u64) -> Option<Option<Snapshot>> {
        let mut guard = self.shard(key);
        let shard = &mut *guard;
        let entry = shard.entries.get_mut(key)?;
        entry.last_used = tick;
        if !entry.watched {
            entry.watched = true;
            shard.watched.push(key.clone());
        }
        Some(entry.value())
    }

    /// Records a value read from Redis for a key that was cold; keeps a newer entry made
    /// meanwhile.
    pub(crate) fn learn(&self, key: &DistkitRedisKey, remote: Snapshot, tick: u64) {
        let mut shard = self.shard(key);
        shard.entries.entry(key.clone()).or_insert(Entry {
            remote,
            last_used: tick,
            ..Entry::default()
        });
    }

    /// Records the value Redis holds after an absolute operation (`set`, `del`, conditional
    /// writes), dropping the deltas not yet sent: the absolute operation supersedes them.
    pub(crate) fn overwrite(&self, key: &DistkitRedisKey, remote: Snapshot, tick: u64) {
        let mut shard = self.shard(key);
        let entry = shard.entries.entry(key.clone()).or_default();
        entry.remote = remote;
        entry.pending = 0;
        entry.last_used = tick;
    }

    /// Records the value Redis holds after a relative operation applied directly in Redis,
    /// keeping the deltas not yet sent.
    pub(crate) fn refresh(&self, key: &DistkitRedisKey, remote: Snapshot, tick: u64) {
        let mut shard = self.shard(key);
        let entry = shard.entries.entry(key.clone()).or_default();
        entry.remote = remote;
        entry.last_used = tick;
    }

    /// Forgets every key (after `clear`).
    pub(crate) fn forget_all(&self) {
        for mut shard in self.all_shards() {
            shard.entries.clear();
            shard.dirty.clear();
            shard.watched.clear();
        }
    }

    /// Moves every pending delta to in-flight and lists the keys to read back.
    pub(crate) fn take(&self) -> Taken {
        let mut taken = Taken::default();
        for mut guard in self.all_shards() {
            let shard = &mut *guard;
            for key in std::mem::take(&mut shard.dirty) {
                let Some(entry) = shard.entries.get_mut(&key) else {
                    continue;
                };
                entry.dirty = false;
                let Some(in_flight) = entry.in_flight.checked_add(entry.pending) else {
                    // Cannot happen while one batch at a time is in flight; keep the delta.
                    entry.dirty = true;
                    shard.dirty.push(key);
                    continue;
                };
                if entry.pending != 0 {
                    taken.deltas.push((key, entry.pending));
                    entry.in_flight = in_flight;
                    entry.pending = 0;
                }
            }
            for key in std::mem::take(&mut shard.watched) {
                if let Some(entry) = shard.entries.get_mut(&key) {
                    entry.watched = false;
                    if !entry.dirty && entry.in_flight == 0 {
                        taken.reads.push(key);
                    }
                }
            }
        }
        taken
    }

    /// Records a delivered delta: it left in-flight, and Redis now holds `remote`.
    pub(crate) fn delivered(&self, key: &DistkitRedisKey, delta: i64, remote: Option<Snapshot>) {
        let mut shard = self.shard(key);
        if let Some(entry) = shard.entries.get_mut(key) {
            entry.in_flight = entry.in_flight.checked_sub(delta).unwrap_or(0);
            if let Some(remote) = remote {
                entry.remote = remote;
            }
        }
    }

    /// Records a value read back during a flush.
    pub(crate) fn read_back(&self, key: &DistkitRedisKey, remote: Snapshot) {
        let mut shard = self.shard(key);
        if let Some(entry) = shard.entries.get_mut(key) {
            entry.remote = remote;
        }
    }

    /// Forgets keys unused since `tick` that have nothing pending or in flight.
    pub(crate) fn forget_idle(&self, before_tick: u64) {
        for mut shard in self.all_shards() {
            shard.entries.retain(|_, entry| {
                entry.dirty
                    || entry.watched
                    || entry.in_flight != 0
                    || entry.pending != 0
                    || entry.last_used >= before_tick
            });
        }
    }

    /// How many keys are tracked.
    pub(crate) fn tracked_keys(&self) -> usize {
        self.all_shards().map(|shard| shard.entries.len()).sum()
    }
}
