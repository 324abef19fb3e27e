//! The in-memory side of the lax counters: per key, the last values read from Redis, the
//! deltas on their way there and the deltas not yet sent.
//!
//! Keys are spread over shards, each behind its own mutex, so tasks on different cores
//! rarely wait for each other; no lock is ever held across an `.await`.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Mutex, MutexGuard, PoisonError};

use hashbrown::hash_map::RawEntryMut;

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
    /// The flush tick of the last use, for forgetting idle keys: its low 32 bits (see
    /// [`stamp`]), which keeps the entry at 40 bytes.
    last_used: u32,
}

impl Entry {
    fn value(&self) -> Option<Snapshot> {
        self.remote.plus(self.in_flight)?.plus(self.pending)
    }
}

#[derive(Debug)]
struct Shard {
    /// Hashed with the state's one hasher, so the hash that picks the shard also finds the
    /// entry (the warm path hashes a key once).
    entries: hashbrown::HashMap<DistkitRedisKey, Entry, ahash::RandomState>,
    dirty: Vec<DistkitRedisKey>,
    watched: Vec<DistkitRedisKey>,
}

/// The low 32 bits of a flush tick, as entries keep it.
fn stamp(tick: u64) -> u32 {
    u32::try_from(tick & u64::from(u32::MAX)).unwrap_or(u32::MAX)
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

/// The outcome of a local batch of changes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum BatchChange {
    /// Applied; the new values, per update.
    Applied(Vec<Snapshot>),
    /// A key is not known locally; nothing was changed.
    Cold,
    /// The value of the update at this position would overflow; nothing was changed.
    Overflow(usize),
    /// Only a pending sum would overflow (the values fit); nothing was changed. Delivering
    /// the pending deltas first makes room.
    PendingOverflow,
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
    /// Hashes keys, for picking the shard and inside every shard's map (aHash: fast and
    /// seeded per process, so keys chosen by an adversary cannot pile up in one shard or one
    /// bucket).
    hasher: ahash::RandomState,
}

/// The hash bits that pick a shard: above those a shard's map uses for its buckets (the low
/// bits, one per doubling of the table) and below its tag bits (the top seven), so the keys of
/// one shard still spread over their map.
const SHARD_SHIFT: u32 = 40;

impl LocalState {
    pub(crate) fn new() -> Self {
        let hasher = ahash::RandomState::new();
        Self {
            shards: std::array::from_fn(|_| {
                Mutex::new(Shard {
                    entries: hashbrown::HashMap::with_hasher(hasher.clone()),
                    dirty: Vec::new(),
                    watched: Vec::new(),
                })
            }),
            hasher,
        }
    }

    /// The hash of `key`, as every shard's map computes it (the trait method, which is what
    /// the map calls; aHash's inherent `hash_one` may differ from it).
    fn hash(&self, key: &DistkitRedisKey) -> u64 {
        BuildHasher::hash_one(&self.hasher, key)
    }

    /// The index of the shard that holds the key of `hash`.
    fn shard_of(hash: u64) -> usize {
        let bits = hash.checked_shr(SHARD_SHIFT).unwrap_or(0);
        usize::try_from(bits.checked_rem(SHARDS as u64).unwrap_or(0)).unwrap_or(0)
    }

    /// The index of the shard that holds `key`.
    fn shard_index(&self, key: &DistkitRedisKey) -> usize {
        Self::shard_of(self.hash(key))
    }

    #[expect(
        clippy::indexing_slicing,
        reason = "shard_index reduces the index modulo the array length"
    )]
    fn lock_shard(&self, index: usize) -> MutexGuard<'_, Shard> {
        // A panic while a shard was locked cannot leave it inconsistent (every update is a
        // few plain assignments), so a poisoned lock is used as is.
        self.shards[index % SHARDS]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn shard(&self, key: &DistkitRedisKey) -> MutexGuard<'_, Shard> {
        self.lock_shard(self.shard_index(key))
    }

    fn all_shards(&self) -> impl Iterator<Item = MutexGuard<'_, Shard>> {
        self.shards
            .iter()
            .map(|shard| shard.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Adds `delta` to the pending deltas of a known key.
    pub(crate) fn add(&self, key: &DistkitRedisKey, delta: i64, tick: u64) -> LocalChange {
        let hash = self.hash(key);
        let mut guard = self.lock_shard(Self::shard_of(hash));
        let shard = &mut *guard;
        let RawEntryMut::Occupied(occupied) = shard
            .entries
            .raw_entry_mut()
            .from_key_hashed_nocheck(hash, key)
        else {
            return LocalChange::Cold;
        };
        let entry = occupied.into_mut();
        let (Some(pending), Some(value)) = (
            entry.pending.checked_add(delta),
            entry.value().and_then(|value| value.plus(delta)),
        ) else {
            return LocalChange::Overflow;
        };
        entry.pending = pending;
        entry.last_used = stamp(tick);
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
        entry.last_used = stamp(tick);
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
            last_used: stamp(tick),
            ..Entry::default()
        });
    }

    /// Records the value Redis holds after an operation applied directly in Redis, once every
    /// delta taken before it was delivered. Deltas added meanwhile stay pending: they were made
    /// concurrently with the operation and count after it, whatever it was (an absolute `set`
    /// or `del` included), so no acknowledged increment is ever dropped.
    pub(crate) fn refresh(&self, key: &DistkitRedisKey, remote: Snapshot, tick: u64) {
        let mut shard = self.shard(key);
        let entry = shard.entries.entry(key.clone()).or_default();
        entry.remote = remote;
        entry.last_used = stamp(tick);
    }

    /// After a `clear` (or an instance's clear) that ran once every earlier delta was
    /// delivered: forgets every key, except those with deltas added meanwhile, which stay
    /// pending over the value `cleared` makes of their last known one.
    pub(crate) fn forget_all(&self, cleared: impl Fn(Snapshot) -> Snapshot) {
        for mut guard in self.all_shards() {
            let shard = &mut *guard;
            shard.entries.retain(|_, entry| {
                entry.remote = cleared(entry.remote);
                entry.watched = false;
                entry.pending != 0 || entry.in_flight != 0
            });
            shard.watched.clear();
            let entries = &shard.entries;
            shard.dirty.retain(|key| entries.contains_key(key));
        }
    }

    /// Adds every delta of `updates` to its known key, in order, all or nothing: the shards of
    /// the keys stay locked together (in index order, so two batches never wait for each
    /// other) while the batch is checked and applied.
    pub(crate) fn add_all(&self, updates: &[(&DistkitRedisKey, i64)], tick: u64) -> BatchChange {
        let mut indexes: Vec<usize> = updates
            .iter()
            .map(|&(key, _)| self.shard_index(key))
            .collect();
        indexes.sort_unstable();
        indexes.dedup();
        let mut guards: Vec<(usize, MutexGuard<'_, Shard>)> = indexes
            .into_iter()
            .map(|index| (index, self.lock_shard(index)))
            .collect();
        // First pass: the pending sums and values after each update, without writing.
        let mut staged: HashMap<&DistkitRedisKey, (i64, Snapshot), ahash::RandomState> =
            HashMap::default();
        let mut results = Vec::with_capacity(updates.len());
        let mut pending_overflow = false;
        for (position, &(key, delta)) in updates.iter().enumerate() {
            let index = self.shard_index(key);
            let (pending, value) = match staged.get(key) {
                Some(&known) => known,
                None => {
                    let Some(entry) = guards
                        .iter()
                        .find(|(candidate, _)| *candidate == index)
                        .and_then(|(_, shard)| shard.entries.get(key))
                    else {
                        return BatchChange::Cold;
                    };
                    let Some(value) = entry.value() else {
                        return BatchChange::Overflow(position);
                    };
                    (entry.pending, value)
                }
            };
            let Some(value) = value.plus(delta) else {
                return BatchChange::Overflow(position);
            };
            let pending = pending.checked_add(delta).unwrap_or_else(|| {
                pending_overflow = true;
                0
            });
            staged.insert(key, (pending, value));
            results.push(value);
        }
        if pending_overflow {
            return BatchChange::PendingOverflow;
        }
        // Second pass: write the final pending sums.
        for (key, (pending, _)) in staged {
            let index = self.shard_index(key);
            let Some((_, shard)) = guards.iter_mut().find(|(candidate, _)| *candidate == index)
            else {
                continue;
            };
            let shard = &mut **shard;
            if let Some(entry) = shard.entries.get_mut(key) {
                entry.pending = pending;
                entry.last_used = stamp(tick);
                if !entry.dirty {
                    entry.dirty = true;
                    shard.dirty.push(key.clone());
                }
            }
        }
        BatchChange::Applied(results)
    }

    /// Gives deltas taken for a batch that was never sent back to the pending deltas of their
    /// keys (after a failed delivery), so that undelivered deltas merge per key and memory
    /// stays bounded by the number of keys however long Redis fails. Returns the deltas that
    /// could not merge (their sum would leave the `i64` range); they stay in their batch.
    pub(crate) fn untake(
        &self,
        deltas: Vec<(DistkitRedisKey, i64)>,
    ) -> Vec<(DistkitRedisKey, i64)> {
        let mut kept = Vec::new();
        for (key, delta) in deltas {
            let mut guard = self.shard(&key);
            let shard = &mut *guard;
            let Some(entry) = shard.entries.get_mut(&key) else {
                kept.push((key, delta));
                continue;
            };
            match (
                entry.pending.checked_add(delta),
                entry.in_flight.checked_sub(delta),
            ) {
                (Some(pending), Some(in_flight)) => {
                    entry.pending = pending;
                    entry.in_flight = in_flight;
                    if !entry.dirty {
                        entry.dirty = true;
                        shard.dirty.push(key);
                    }
                }
                _ => kept.push((key, delta)),
            }
        }
        kept
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

    /// Records a delta dropped unconfirmed (it may or may not have been applied): it leaves
    /// in-flight, and the key's value is read from Redis again before it is next used.
    pub(crate) fn dropped(&self, key: &DistkitRedisKey, delta: i64) {
        let mut guard = self.shard(key);
        let shard = &mut *guard;
        let Some(entry) = shard.entries.get_mut(key) else {
            return;
        };
        entry.in_flight = entry.in_flight.checked_sub(delta).unwrap_or(0);
        if entry.in_flight == 0 && entry.pending == 0 && !entry.dirty && !entry.watched {
            shard.entries.remove(key);
        } else if !entry.watched {
            entry.watched = true;
            shard.watched.push(key.clone());
        }
    }

    /// Records a value read back during a flush.
    pub(crate) fn read_back(&self, key: &DistkitRedisKey, remote: Snapshot) {
        let mut shard = self.shard(key);
        if let Some(entry) = shard.entries.get_mut(key) {
            entry.remote = remote;
        }
    }

    /// Forgets keys unused for more than `idle_ticks` before `now` that have nothing pending
    /// or in flight. Stamps wrap after 2^32 ticks; as this runs every `idle_ticks`, an idle
    /// entry is forgotten long before its stamp could look recent again.
    pub(crate) fn forget_idle(&self, now: u64, idle_ticks: u64) {
        let now = stamp(now);
        for mut shard in self.all_shards() {
            shard.entries.retain(|_, entry| {
                entry.dirty
                    || entry.watched
                    || entry.in_flight != 0
                    || entry.pending != 0
                    || u64::from(now.wrapping_sub(entry.last_used)) <= idle_ticks
            });
        }
    }

    /// How many keys have deltas not yet taken for a flush.
    pub(crate) fn pending_keys(&self) -> usize {
        self.all_shards()
            .map(|shard| shard.dirty.len())
            .fold(0, usize::saturating_add)
    }

    /// How many keys are tracked.
    pub(crate) fn tracked_keys(&self) -> usize {
        self.all_shards().map(|shard| shard.entries.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(text: &str) -> DistkitRedisKey {
        DistkitRedisKey::new_or_panic(text.to_owned())
    }

    #[test]
    fn every_learned_key_is_warm_for_the_fast_path_and_its_deltas_are_taken_once() {
        let state = LocalState::new();
        let keys: Vec<DistkitRedisKey> = (0..5_000).map(|i| key(&format!("k{i}"))).collect();
        for (value, k) in (0_i64..).zip(&keys) {
            assert_eq!(state.add(k, 1, 0), LocalChange::Cold);
            state.learn(k, Snapshot::single(value), 0);
        }
        for (value, k) in (0_i64..).zip(&keys) {
            assert_eq!(
                state.add(k, 2, 0),
                LocalChange::Applied(Snapshot::single(value + 2)),
                "{k}"
            );
        }
        assert_eq!(state.add(&key("never-learned"), 1, 0), LocalChange::Cold);
        let taken = state.take();
        assert_eq!(taken.deltas.len(), keys.len());
        assert!(taken.deltas.iter().all(|&(_, delta)| delta == 2));
    }

    #[test]
    fn idle_keys_are_forgotten_across_the_wrap_of_their_stamps_and_busy_ones_are_kept() {
        let state = LocalState::new();
        let before_wrap = u64::from(u32::MAX) - 4;
        let (idle, busy) = (key("idle"), key("busy"));
        state.learn(&idle, Snapshot::single(1), before_wrap);
        state.learn(&busy, Snapshot::single(1), before_wrap);
        assert_eq!(
            state.add(&busy, 1, before_wrap),
            LocalChange::Applied(Snapshot::single(2))
        );
        // Eight ticks later the stamps have wrapped: both were used within the idle time.
        state.forget_idle(before_wrap + 8, 10);
        assert_eq!(state.tracked_keys(), 2);
        // Twenty ticks later the idle key goes; the one with a pending delta stays.
        state.forget_idle(before_wrap + 20, 10);
        assert_eq!(state.tracked_keys(), 1);
        assert_eq!(state.add(&idle, 1, before_wrap + 20), LocalChange::Cold);
        assert_eq!(
            state.add(&busy, 1, before_wrap + 20),
            LocalChange::Applied(Snapshot::single(3))
        );
    }

    #[test]
    fn an_entry_takes_forty_bytes() {
        assert_eq!(std::mem::size_of::<Entry>(), 40);
    }
}
