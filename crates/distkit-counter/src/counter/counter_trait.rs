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
///
/// # Cancel safety
///
/// What dropping a call's future leaves behind depends on the counter and on the await it
/// is dropped at; each method's section says which case it falls in:
///
/// - **A write sent to Redis** (every write of [`StrictCounter`](crate::counter::StrictCounter),
///   and every absolute or conditional write of [`LaxCounter`](crate::counter::LaxCounter)):
///   dropped before its script is handed to the client, nothing is applied; once handed
///   over (at the future's first poll past the checks), dropping the future does not take it
///   back: it is applied (or not, if the connection fails) and its result is lost, as for
///   an unknown outcome. A write is sent once and never replayed, so it is never applied
///   twice.
/// - **A strict increment in a group commit**: dropped while queued for a group, it is
///   taken out of the queue and never sent; once its group left (in a task of its own), it
///   is applied with the group, its answer discarded. The slot and queue are handed on by
///   drop guards, so a dropped caller never stalls the others.
/// - **A lax increment accepted in memory** is delivered by the flush whatever happens to
///   the future afterwards: a warm key's increment is accepted on the first poll, without an
///   await; a cold key's, after its value was read (dropped during that read, nothing is
///   accepted). Delivery is exactly once, even across dropped flushes: an undelivered batch
///   stays queued until its confirmation is recorded, and is resent with its number.
/// - **A read** leaves nothing behind.
/// - **A lax absolute write** first delivers the pending deltas (cancel safe, as above); a
///   local value left stale by a write dropped after it was sent is read back from Redis by
///   the next flush.
#[async_trait::async_trait]
pub trait CounterTrait {
    /// Adds `count` to `key`; returns the new value.
    ///
    /// # Cancel safety
    ///
    /// Strict: dropped while queued for a group commit, nothing is sent; once its script
    /// (alone or in a group) was handed to the client, it is applied or not, with its
    /// result lost. Lax: an increment accepted in memory is delivered by the flush even if
    /// the future is dropped; dropped while a cold key is read, nothing is accepted. See the
    /// [trait docs](Self#cancel-safety).
    async fn inc(&self, key: &DistkitRedisKey, count: i64) -> Result<i64, DistkitError>;

    /// Subtracts `count` from `key`; returns the new value.
    ///
    /// # Cancel safety
    ///
    /// As [`inc`](Self::inc) (`dec(i64::MIN)` is one atomic write sent to Redis: applied or
    /// not once handed to the client).
    async fn dec(&self, key: &DistkitRedisKey, count: i64) -> Result<i64, DistkitError>;

    /// The current value of `key`, 0 when absent.
    ///
    /// # Cancel safety
    ///
    /// A read: dropping the future leaves nothing behind (on a lax counter, a synchronous
    /// one first delivers its pending deltas, which stay queued until confirmed).
    async fn get(&self, key: &DistkitRedisKey) -> Result<i64, DistkitError>;

    /// Stores `count` as the value of `key`; returns it.
    ///
    /// # Cancel safety
    ///
    /// One write sent to Redis (on a lax counter, after the pending deltas were delivered):
    /// dropped before it was handed to the client, nothing is applied; after, it is applied
    /// or not, with its result lost. See the [trait docs](Self#cancel-safety).
    async fn set(&self, key: &DistkitRedisKey, count: i64) -> Result<i64, DistkitError>;

    /// Removes `key`; returns its old value (0 when absent).
    ///
    /// # Cancel safety
    ///
    /// One write sent to Redis (on a lax counter, after the pending deltas were delivered):
    /// dropped before it was handed to the client, nothing is applied; after, it is applied
    /// or not, with its result lost. See the [trait docs](Self#cancel-safety).
    async fn del(&self, key: &DistkitRedisKey) -> Result<i64, DistkitError>;

    /// Removes every key of this counter's prefix: every shard, one after the other, each
    /// atomically (a write racing it may land in a shard already cleared). The recorded shard
    /// count stays.
    ///
    /// # Cancel safety
    ///
    /// One `UNLINK` per shard, shard after shard, each written once: dropped part-way, the
    /// shards before are cleared, the one whose `UNLINK` was handed to the client is cleared
    /// or not, and the rest are untouched. A lax counter forgets its local values only once
    /// every shard was cleared.
    async fn clear(&self) -> Result<(), DistkitError>;

    /// Adds `count` when the current value satisfies `comparator`; returns `(new, old)`, or
    /// `(old, old)` when it does not.
    ///
    /// The condition held (and the write happened) exactly when `comparator.matches(old)`:
    /// `old` is the value it was checked against, in the same atomic step. `new == old` does
    /// not tell, since a write can leave the value unchanged (an increment of 0, a set to the
    /// current value).
    ///
    /// # Cancel safety
    ///
    /// One write sent to Redis (on a lax counter, after the pending deltas were delivered):
    /// dropped before it was handed to the client, nothing is applied; after, it is applied
    /// or not, with its result lost. See the [trait docs](Self#cancel-safety).
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
    ///
    /// # Cancel safety
    ///
    /// One write sent to Redis (on a lax counter, after the pending deltas were delivered):
    /// dropped before it was handed to the client, nothing is applied; after, it is applied
    /// or not, with its result lost. See the [trait docs](Self#cancel-safety).
    async fn set_if(
        &self,
        key: &DistkitRedisKey,
        comparator: CounterComparator,
        count: i64,
    ) -> Result<(i64, i64), DistkitError>;

    /// The values of `keys`, in input order; each shard (and each 1 000 keys of it) is read
    /// at its own instant, not as one snapshot.
    ///
    /// # Cancel safety
    ///
    /// Reads only: dropping the future leaves nothing behind.
    async fn get_all<'k>(
        &self,
        keys: &[&'k DistkitRedisKey],
    ) -> Result<Vec<(&'k DistkitRedisKey, i64)>, DistkitError>;

    /// Adds each amount to its key, in order; returns `(key, new)` per update.
    ///
    /// # Cancel safety
    ///
    /// Strict: as the other batches, one script call per chunk of one shard, each sent once:
    /// dropped part-way, the chunks that answered are applied, the one handed to the client
    /// is applied or not, the rest are never sent. Lax: the increments are accepted in
    /// memory all or nothing and then delivered by the flush whatever happens to the future;
    /// dropped while cold keys are read, nothing is accepted.
    async fn inc_all<'k>(
        &self,
        updates: &[(&'k DistkitRedisKey, i64)],
    ) -> Result<Vec<(&'k DistkitRedisKey, i64)>, DistkitError>;

    /// Stores each amount as its key's value, in order; returns `(key, new)` per update.
    ///
    /// # Cancel safety
    ///
    /// One script call per chunk of up to 1 000 operations of one shard, chunk after chunk
    /// and shard after shard, each sent once: dropped part-way, the chunks that answered
    /// are applied, the one handed to the client is applied or not, and the rest are never
    /// sent. A lax counter delivers its pending deltas first (cancel safe); see the
    /// [trait docs](Self#cancel-safety).
    async fn set_all<'k>(
        &self,
        updates: &[(&'k DistkitRedisKey, i64)],
    ) -> Result<Vec<(&'k DistkitRedisKey, i64)>, DistkitError>;

    /// [`inc_if`](Self::inc_if) for each update, in order; returns `(key, new, old)` each.
    ///
    /// # Cancel safety
    ///
    /// One script call per chunk of up to 1 000 operations of one shard, chunk after chunk
    /// and shard after shard, each sent once: dropped part-way, the chunks that answered
    /// are applied, the one handed to the client is applied or not, and the rest are never
    /// sent. A lax counter delivers its pending deltas first (cancel safe); see the
    /// [trait docs](Self#cancel-safety).
    async fn inc_all_if<'k>(
        &self,
        updates: &[(&'k DistkitRedisKey, CounterComparator, i64)],
    ) -> Result<Vec<(&'k DistkitRedisKey, i64, i64)>, DistkitError>;

    /// [`set_if`](Self::set_if) for each update, in order; returns `(key, new, old)` each.
    ///
    /// # Cancel safety
    ///
    /// One script call per chunk of up to 1 000 operations of one shard, chunk after chunk
    /// and shard after shard, each sent once: dropped part-way, the chunks that answered
    /// are applied, the one handed to the client is applied or not, and the rest are never
    /// sent. A lax counter delivers its pending deltas first (cancel safe); see the
    /// [trait docs](Self#cancel-safety).
    async fn set_all_if<'k>(
        &self,
        updates: &[(&'k DistkitRedisKey, CounterComparator, i64)],
    ) -> Result<Vec<(&'k DistkitRedisKey, i64, i64)>, DistkitError>;
}
