//! Sharded layout of a counter prefix: which shard a key lives in, and the check that a
//! handle uses the shard count its prefix's data was written with.
//!
//! # Layout
//!
//! A prefix's counters are spread over `n` shards (the options' `shards`; the default
//! [`AUTO_SHARDS`] is [`CLUSTER_SHARDS`] on a Redis Cluster and 1 elsewhere). Key `k` lives in shard `FNV-1a-64(k) mod n`, whose keys all carry the
//! hash tag `{<prefix>:<shard>}` (see [`key_schema`]): every operation on one key is one
//! script on one slot, and a batch runs one script per shard it touches. With `n = 1` the
//! names are those of the single-slot layout (`distkit:{<prefix>}:counter`, …), unchanged.
//!
//! # The recorded shard count
//!
//! Reading or writing with the wrong shard count would look in the wrong hash. So the count is
//! recorded per prefix in `distkit:{<prefix>}:counter:shards` (instance-aware counters:
//! `distkit:{<prefix>}:ic:shards`), in the prefix's unsharded tag, by the first handle that
//! uses the prefix (the `shard_count` script; a prefix that already holds single-slot data
//! from before the record existed is recorded as 1). Every handle runs that script once,
//! before its first Redis operation, and caches a match: later calls cost one atomic load.
//! A mismatch is [`CounterError::ShardCountMismatch`], before anything is read or written,
//! and is not cached (the next call asks again). `clear` never removes the record, so a
//! prefix whose data was cleared and written again keeps its count and every cached check
//! stays true. To change the count: stop every handle of the prefix, move or drop its data
//! (`clear` with the old count), `DEL` the record, and start handles with the new count.

use std::sync::atomic::{AtomicBool, Ordering};

use distkit_core::fred::clients::Client;
use distkit_core::fred::types::Value;
use distkit_core::key_schema::{self, MAX_SHARDS, Shard};
use distkit_core::script::{Attempts, CallPolicy};
use distkit_core::{CounterError, DistkitError, DistkitRedisKey};

use crate::scripts::SHARD_COUNT;
use crate::wire::script_error;

/// The shard count that picks by deployment, the default of every counter options type:
/// [`CLUSTER_SHARDS`] on a Redis Cluster client, 1 (the single-slot layout) on a standalone
/// or Sentinel client.
///
/// Shards buy capacity only where there are several masters to spread them over. On one
/// server they cost: concurrent increments of one object are group committed per shard, and
/// the small hashes of a prefix spread 16 ways are listpack-encoded, which costs Redis more
/// per increment (measured with 64 tasks on a standalone server: 16 shards at 0.68–0.87× one
/// shard's throughput, an A/A run of the same bench 0.89–1.16×; 1 task 0.95–1.01×). So a
/// single server keeps the single-slot layout, at exactly its cost, and a cluster gets 16.
/// A deployment that moves a prefix's data from one server to a cluster keeps its recorded
/// count (set `shards` to it explicitly, or migrate as the README's *Scaling out* says).
pub(crate) const AUTO_SHARDS: u16 = 0;

/// The shard count [`AUTO_SHARDS`] picks on a Redis Cluster.
///
/// 16 spreads a prefix over 16 slots: over 3 masters no master holds more than 70% of a
/// prefix's shards except for about 1 prefix in 400 (a binomial tail; 8 shards: about 1 in
/// 17), and a cluster of up to a dozen masters gets work on most of them.
pub(crate) const CLUSTER_SHARDS: u16 = 16;

/// The default shard count of every counter options type: [`AUTO_SHARDS`].
pub(crate) const DEFAULT_SHARDS: u16 = AUTO_SHARDS;

/// The shard count a handle on `client` uses for the configured `shards`.
pub(crate) fn resolve(shards: u16, client: &Client) -> u16 {
    use distkit_core::fred::interfaces::ClientLike;
    match shards {
        AUTO_SHARDS if client.is_clustered() => CLUSTER_SHARDS,
        AUTO_SHARDS => 1,
        shards => shards,
    }
}

/// `Ok` when `shards` is a valid shard count: [`AUTO_SHARDS`] or 1 ..= [`MAX_SHARDS`].
pub(crate) fn validate(shards: u16) -> Result<(), DistkitError> {
    if shards == AUTO_SHARDS || (1..=MAX_SHARDS).contains(&shards) {
        Ok(())
    } else {
        Err(DistkitError::InvalidOption(format!(
            "the shard count must be 0 (automatic) or between 1 and {MAX_SHARDS}, got {shards}"
        )))
    }
}

/// The shards of one prefix, in shard order.
pub(crate) fn all(count: u16) -> impl Iterator<Item = Shard> {
    let count = count.max(1);
    (0..count).map(move |index| Shard { index, count })
}

/// The positions of `keys` grouped by shard: one `(shard index, positions)` per shard that
/// holds any of them, in the order of each shard's first key; positions ascend within a
/// group, so a repeated key keeps its order.
pub(crate) fn group<'a>(
    count: u16,
    keys: impl Iterator<Item = &'a str>,
) -> Vec<(usize, Vec<usize>)> {
    let mut groups: Vec<(usize, Vec<usize>)> = Vec::new();
    for (position, key) in keys.enumerate() {
        let shard = usize::from(key_schema::shard_of(key, count));
        match groups.iter_mut().find(|(index, _)| *index == shard) {
            Some((_, positions)) => positions.push(position),
            None => groups.push((shard, vec![position])),
        }
    }
    groups
}

/// Checks, once per handle, that the prefix's recorded shard count is the handle's.
#[derive(Debug)]
pub(crate) struct ShardGate {
    client: Client,
    prefix: String,
    count: u16,
    /// The record, then the single-slot keys whose presence means data written with 1 shard.
    keys: Vec<String>,
    verified: AtomicBool,
}

impl ShardGate {
    /// The gate of a counter handle of `prefix` with `count` shards: `record` is the key of
    /// the recorded count, `legacy` the single-slot keys that reveal older data.
    pub(crate) fn new(
        client: Client,
        prefix: &DistkitRedisKey,
        count: u16,
        record: String,
        legacy: impl IntoIterator<Item = String>,
    ) -> Self {
        let mut keys = vec![record];
        keys.extend(legacy);
        Self {
            client,
            prefix: prefix.to_string(),
            count,
            keys,
            verified: AtomicBool::new(false),
        }
    }

    /// The configured shard count.
    pub(crate) fn count(&self) -> u16 {
        self.count
    }

    /// `Ok` once the recorded shard count is known to equal this handle's (recording it on
    /// first use): one `shard_count` script the first time, then an atomic load.
    ///
    /// # Errors
    ///
    /// [`CounterError::ShardCountMismatch`] when the prefix's data was written with another
    /// count; [`DistkitError::RedisError`] when Redis could not be asked.
    pub(crate) async fn ensure(&self) -> Result<(), DistkitError> {
        if self.verified.load(Ordering::Acquire) {
            return Ok(());
        }
        let keys: Vec<&str> = self.keys.iter().map(String::as_str).collect();
        let reply = SHARD_COUNT
            .run(
                &self.client,
                &keys,
                vec![Value::from(i64::from(self.count))],
                CallPolicy::RETRY,
            )
            .await
            .map_err(|error| script_error(error, Attempts::Retry, |_| String::new()))?;
        let stored = reply
            .as_str()
            .and_then(|text| text.parse::<u16>().ok())
            .ok_or_else(|| {
                DistkitError::RedisError(distkit_core::fred::error::Error::new(
                    distkit_core::fred::error::ErrorKind::Parse,
                    format!(
                        "the shard-count record {:?} holds no count",
                        self.keys.first()
                    ),
                ))
            })?;
        if stored == self.count {
            self.verified.store(true, Ordering::Release);
            Ok(())
        } else {
            Err(CounterError::ShardCountMismatch {
                prefix: self.prefix.clone(),
                configured: self.count,
                stored,
            }
            .into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_keep_input_order_within_a_shard() {
        let keys = ["a", "b", "a", "c", "b", "a"];
        let groups = group(16, keys.iter().copied());
        let mut seen: Vec<usize> = groups.iter().flat_map(|(_, p)| p.clone()).collect();
        for (shard, positions) in &groups {
            assert!(positions.windows(2).all(|pair| pair[0] < pair[1]));
            for &position in positions {
                assert_eq!(
                    usize::from(key_schema::shard_of(keys[position], 16)),
                    *shard
                );
            }
        }
        seen.sort_unstable();
        assert_eq!(seen, (0..keys.len()).collect::<Vec<_>>());
        assert_eq!(group(1, keys.iter().copied()), vec![(0, (0..6).collect())]);
    }

    #[test]
    fn shard_counts_outside_one_to_the_maximum_are_refused() {
        assert!(validate(AUTO_SHARDS).is_ok());
        assert!(validate(1).is_ok());
        assert!(validate(MAX_SHARDS).is_ok());
        assert!(validate(MAX_SHARDS + 1).is_err());
    }
}
