use distkit_core::{CounterComparator, DistkitError, DistkitRedisKey};

/// The operations every counter offers. Object safe: `Arc<dyn CounterTrait + Send + Sync>`
/// works.
///
/// # Errors
///
/// Every method returns a [`DistkitError`]:
/// - [`CounterError::Overflow`](distkit_core::CounterError::Overflow) when a result would not
///   fit in an `i64` (nothing was written);
/// - [`CounterError::NotAnInteger`](distkit_core::CounterError::NotAnInteger) when the stored
///   value was written by something else and is not an integer;
/// - [`CounterError::OutcomeUnknown`](distkit_core::CounterError::OutcomeUnknown) when the
///   connection failed after a write was sent;
/// - [`CounterError::BatchPartiallyApplied`](distkit_core::CounterError::BatchPartiallyApplied)
///   when a batch of more than 1 000 operations of one shard failed after its first chunks;
/// - [`CounterError::ShardedBatchPartiallyApplied`](distkit_core::CounterError::ShardedBatchPartiallyApplied)
///   when a batch over several shards failed in one after others applied their part (the
///   error lists the applied operations);
/// - [`CounterError::ShardCountMismatch`](distkit_core::CounterError::ShardCountMismatch)
///   when the prefix's data was written with another shard count (nothing was applied);
/// - [`DistkitError::RedisError`] for other transport and server errors.
#[async_trait::async_trait]
pub trait CounterTrait {
    /// Adds `count` to `key`; returns the new value.
    async fn inc(&self, key: &DistkitRedisKey, count: i64) -> Result<i64, DistkitError>;

    /// Subtracts `count` from `key`; returns the new value.
    async fn dec(&self, key: &DistkitRedisKey, count: i64) -> Result<i64, DistkitError>;

    /// The current value of `key`, 0 when absent.
    async fn get(&self, key: &DistkitRedisKey) -> Result<i64, DistkitError>;

    /// Stores `count` as the value of `key`; returns it.
    async fn set(&self, key: &DistkitRedisKey, count: i64) -> Result<i64, DistkitError>;

    /// Removes `key`; returns its old value (0 when absent).
    async fn del(&self, key: &DistkitRedisKey) -> Result<i64, DistkitError>;

    /// Removes every key of this counter's prefix: every shard, one after the other, each
    /// atomically (a write racing it may land in a shard already cleared). The recorded shard
    /// count stays.
    async fn clear(&self) -> Result<(), DistkitError>;

    /// Adds `count` when the current value satisfies `comparator`; returns `(new, old)`, or
    /// `(old, old)` when it does not.
    ///
    /// The condition held (and the write happened) exactly when `comparator.matches(old)`:
    /// `old` is the value it was checked against, in the same atomic step. `new == old` does
    /// not tell, since a write can leave the value unchanged (an increment of 0, a set to the
    /// current value).
    async fn inc_if(
        &self,
        key: &DistkitRedisKey,
        comparator: CounterComparator,
        count: i64,
    ) -> Result<(i64, i64), DistkitError>;

    /// Stores `count` when the current value satisfies `comparator`; returns `(new, old)`, or
    /// `(old, old)` when it does not.
    ///
    /// The condition held (and the write happened) exactly when `comparator.matches(old)`:
    /// `old` is the value it was checked against, in the same atomic step. `new == old` does
    /// not tell, since a write can leave the value unchanged (an increment of 0, a set to the
    /// current value).
    async fn set_if(
        &self,
        key: &DistkitRedisKey,
        comparator: CounterComparator,
        count: i64,
    ) -> Result<(i64, i64), DistkitError>;

    /// The values of `keys`, in input order; each shard (and each 1 000 keys of it) is read
    /// at its own instant, not as one snapshot.
    async fn get_all<'k>(
        &self,
        keys: &[&'k DistkitRedisKey],
    ) -> Result<Vec<(&'k DistkitRedisKey, i64)>, DistkitError>;

    /// Adds each amount to its key, in order; returns `(key, new)` per update.
    async fn inc_all<'k>(
        &self,
        updates: &[(&'k DistkitRedisKey, i64)],
    ) -> Result<Vec<(&'k DistkitRedisKey, i64)>, DistkitError>;

    /// Stores each amount as its key's value, in order; returns `(key, new)` per update.
    async fn set_all<'k>(
        &self,
        updates: &[(&'k DistkitRedisKey, i64)],
    ) -> Result<Vec<(&'k DistkitRedisKey, i64)>, DistkitError>;

    /// [`inc_if`](Self::inc_if) for each update, in order; returns `(key, new, old)` each.
    async fn inc_all_if<'k>(
        &self,
        updates: &[(&'k DistkitRedisKey, CounterComparator, i64)],
    ) -> Result<Vec<(&'k DistkitRedisKey, i64, i64)>, DistkitError>;

    /// [`set_if`](Self::set_if) for each update, in order; returns `(key, new, old)` each.
    async fn set_all_if<'k>(
        &self,
        updates: &[(&'k DistkitRedisKey, CounterComparator, i64)],
    ) -> Result<Vec<(&'k DistkitRedisKey, i64, i64)>, DistkitError>;
}
