use std::sync::Arc;

use distkit_core::{CounterComparator, DistkitError, DistkitRedisKey};

use super::absolute::counter_impl;
use super::remote::{Operation, OperationKind, RemoteCounters};
use super::{CounterOptions, CounterTrait};
use crate::checked::OptionsCheck;

/// A counter whose every call is one atomic Lua script on Redis: immediately consistent
/// across processes.
///
/// - `inc`/`dec`: the `counter_inc` script (`HINCRBY`, then the exact stored value). Under
///   load, concurrent `inc`/`dec` calls of one counter object are **group-committed**: while
///   two calls of the object are in flight, further ones queue, and each time a call ends
///   everything queued (up to 1 000 increments) goes out as one `counter_inc_group` script,
///   which applies each increment on its own, in order. Every caller still gets its own new
///   value or its own error (one overflowing increment fails alone), and each increment is
///   atomic and applied at most once, as before; a lone caller is sent at once. Without
///   replica acknowledgement only (with [`CounterOptions::replica_acks`] every call is sent
///   alone).
/// - `get`/`get_all`: `HGET`/`HMGET` (reads, retried after a reconnect).
/// - `set`, `del`, conditional operations and batches: the `counter_apply` script, all or
///   nothing per call of up to 1 000 operations of one shard (one call per shard a batch
///   touches, see the [module docs](super)).
/// - `clear`: `UNLINK` of the prefix's hash in each shard, one after the other.
/// - Before its first Redis operation a counter object checks, once, that the prefix's
///   recorded shard count is its own (the `shard_count` script).
///
/// Writes are sent once and never replayed: after a connection failure mid-call the result
/// is [`CounterError::OutcomeUnknown`](distkit_core::CounterError::OutcomeUnknown) (for
/// every caller of a group in flight). A caller cancelled while queued is not sent.
///
/// ```no_run
/// # use distkit_counter as distkit; // the facade crate, as users name it
/// use distkit::counter::{CounterOptions, CounterTrait, StrictCounter};
/// use distkit::{CounterComparator, DistkitRedisKey};
///
/// # async fn example() -> Result<(), distkit::DistkitError> {
/// let client = distkit::connect("redis://127.0.0.1:6379").await?;
/// let quota = StrictCounter::new(CounterOptions::new(DistkitRedisKey::try_from("quota")?, client));
/// let tenant = DistkitRedisKey::try_from("tenant-42")?;
///
/// let used = quota.inc(&tenant, 1).await?;
/// // Take 5 more only while under 100; a failed condition writes nothing.
/// let (new, old) = quota.inc_if(&tenant, CounterComparator::Lt(100), 5).await?;
/// println!("used {used}, then {old} -> {new}");
/// # Ok(())
/// # }
/// ```
pub struct StrictCounter {
    remote: RemoteCounters,
    prefix: DistkitRedisKey,
}

/// Compact: the prefix (not the client).
impl std::fmt::Debug for StrictCounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StrictCounter")
            .field("prefix", &self.prefix.as_str())
            .finish_non_exhaustive()
    }
}

impl StrictCounter {
    async fn apply_ops(
        &self,
        operations: &[Operation<'_>],
    ) -> Result<Vec<(i64, i64)>, DistkitError> {
        self.remote.apply(operations).await
    }

    /// A strict counter over the values of `options.prefix`. Starts no background work.
    ///
    /// The options are checked here, without any I/O, but this cannot fail: when
    /// [`CounterOptions::validate`] refuses them, every operation returns its
    /// [`DistkitError::InvalidOption`] before any I/O.
    pub fn new(options: CounterOptions) -> Arc<Self> {
        let check = OptionsCheck::of(options.validate());
        Arc::new(Self {
            remote: RemoteCounters::new(options.client, &options.prefix, options.shards)
                .with_replica_acks(options.replica_acks)
                .with_check(check),
            prefix: options.prefix,
        })
    }
}

/// `(key, new)` pairs from the `(new, old)` results of a batch.
pub(crate) fn with_new<'k>(
    keys: impl Iterator<Item = &'k DistkitRedisKey>,
    results: Vec<(i64, i64)>,
) -> Vec<(&'k DistkitRedisKey, i64)> {
    keys.zip(results)
        .map(|(key, (new, _old))| (key, new))
        .collect()
}

/// `(key, new, old)` triples from the results of a batch.
pub(crate) fn with_new_and_old<'k>(
    keys: impl Iterator<Item = &'k DistkitRedisKey>,
    results: Vec<(i64, i64)>,
) -> Vec<(&'k DistkitRedisKey, i64, i64)> {
    keys.zip(results)
        .map(|(key, (new, old))| (key, new, old))
        .collect()
}

/// The `(new, old)` of a single-operation call.
pub(crate) fn single(results: &[(i64, i64)]) -> (i64, i64) {
    results.first().copied().unwrap_or((0, 0))
}

counter_impl!(StrictCounter {
    async fn inc(&self, key: &DistkitRedisKey, count: i64) -> Result<i64, DistkitError> {
        self.remote.inc(key, count).await
    }

    async fn dec(&self, key: &DistkitRedisKey, count: i64) -> Result<i64, DistkitError> {
        self.remote.dec(key, count).await
    }

    async fn get(&self, key: &DistkitRedisKey) -> Result<i64, DistkitError> {
        self.remote.get(key).await
    }

    async fn clear(&self) -> Result<(), DistkitError> {
        self.remote.clear().await
    }

    async fn get_all<'k>(
        &self,
        keys: &[&'k DistkitRedisKey],
    ) -> Result<Vec<(&'k DistkitRedisKey, i64)>, DistkitError> {
        let values = self.remote.get_many(keys).await?;
        Ok(keys.iter().copied().zip(values).collect())
    }

    async fn inc_all<'k>(
        &self,
        updates: &[(&'k DistkitRedisKey, i64)],
    ) -> Result<Vec<(&'k DistkitRedisKey, i64)>, DistkitError> {
        let operations = Operation::each(OperationKind::Inc, updates);
        let results = self.remote.apply(&operations).await?;
        Ok(with_new(updates.iter().map(|&(key, _)| key), results))
    }

});
