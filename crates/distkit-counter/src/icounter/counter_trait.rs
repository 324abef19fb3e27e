use distkit_core::{CounterComparator, DistkitError, DistkitRedisKey};

/// `(C, I)`: the total over the live instances, and this instance's slice.
pub type Pair = (i64, i64);

/// The operations every instance-aware counter offers. Object safe:
/// `Arc<dyn InstanceAwareCounterTrait + Send + Sync>` works.
///
/// `C` is the total of a key over the live instances, `I` this instance's slice of it.
///
/// # Errors
///
/// Every async method returns a [`DistkitError`]:
/// [`CounterError::Overflow`](distkit_core::CounterError::Overflow) when `C` or `I` would
/// leave the `i64` range (nothing is written),
/// [`CounterError::OutcomeUnknown`](distkit_core::CounterError::OutcomeUnknown) when the
/// connection failed after a write was sent,
/// [`CounterError::BatchPartiallyApplied`](distkit_core::CounterError::BatchPartiallyApplied)
/// when a batch over 1 000 operations of one shard failed after its first chunks,
/// [`CounterError::ShardedBatchPartiallyApplied`](distkit_core::CounterError::ShardedBatchPartiallyApplied)
/// when a batch over several shards failed in one after others applied their part,
/// [`CounterError::ShardCountMismatch`](distkit_core::CounterError::ShardCountMismatch) when
/// the prefix's data was written with another shard count (nothing was applied), and
/// [`DistkitError::RedisError`] for other transport and server errors.
///
/// # Cancel safety
///
/// What dropping a call's future leaves behind depends on the counter and on the await it
/// is dropped at; each method's section says which case it falls in:
///
/// - **A call sent to Redis** (every call of
///   [`StrictInstanceAwareCounter`](crate::icounter::StrictInstanceAwareCounter), reads
///   included, since each also refreshes this instance's heartbeat; and the absolute,
///   conditional and per-instance writes of
///   [`LaxInstanceAwareCounter`](crate::icounter::LaxInstanceAwareCounter)): dropped before
///   its script is handed to the client, nothing is applied; once handed over, dropping the
///   future does not take it back: it is applied (or not, if the connection fails) and its
///   result is lost, as for an unknown outcome. A write is sent once, never replayed.
/// - **A lax increment accepted in memory** is delivered by the flush whatever happens to
///   the future afterwards (a warm key's is accepted on the first poll, without an await;
///   a cold key's after its values were read: dropped during that read, nothing is
///   accepted). Delivery is exactly once even across dropped flushes: an undelivered batch
///   stays queued until its confirmation is recorded and is resent with its number.
/// - **A lax write sent to Redis** first delivers the pending deltas (cancel safe, as
///   above); a local value left stale by a write dropped after it was sent is read back
///   from Redis by the next flush.
#[async_trait::async_trait]
pub trait InstanceAwareCounterTrait {
    /// This counter object's instance id: a ULID, unique per object.
    fn instance_id(&self) -> &str;

    /// Adds `count` to this instance's slice (and so to `C`); returns `(C, I)`.
    ///
    /// # Cancel safety
    ///
    /// Strict: one script call; dropped before it was handed to the client nothing is
    /// applied, after it is applied or not, with its result lost. Lax: an increment
    /// accepted in memory is delivered by the flush even if the future is dropped; dropped
    /// while a cold key is read, nothing is accepted. See the [trait docs](Self#cancel-safety).
    async fn inc(&self, key: &DistkitRedisKey, count: i64) -> Result<Pair, DistkitError>;

    /// Subtracts `count` from this instance's slice; returns `(C, I)`.
    ///
    /// # Cancel safety
    ///
    /// As [`inc`](Self::inc) (`dec(i64::MIN)` is one atomic write sent to Redis: applied or
    /// not once handed to the client).
    async fn dec(&self, key: &DistkitRedisKey, count: i64) -> Result<Pair, DistkitError>;

    /// `(C, I)`, `(0, 0)` when absent.
    ///
    /// # Cancel safety
    ///
    /// Changes no value of its own: dropping the future leaves nothing behind but, on a
    /// strict counter, what every call's script does on the side (this instance's
    /// heartbeat, the reaping of dead instances' slices), which may still run.
    async fn get(&self, key: &DistkitRedisKey) -> Result<Pair, DistkitError>;

    /// Global set: `C = count`, `I = count`, every other instance's slice reset.
    ///
    /// # Cancel safety
    ///
    /// One write sent to Redis (on a lax counter, after the pending deltas were delivered):
    /// dropped before it was handed to the client, nothing is applied; after, it is applied
    /// or not, with its result lost. See the [trait docs](Self#cancel-safety).
    async fn set(&self, key: &DistkitRedisKey, count: i64) -> Result<Pair, DistkitError>;

    /// `I = count`; `C` moves by the difference.
    ///
    /// # Cancel safety
    ///
    /// One write sent to Redis (on a lax counter, after the pending deltas were delivered):
    /// dropped before it was handed to the client, nothing is applied; after, it is applied
    /// or not, with its result lost. See the [trait docs](Self#cancel-safety).
    async fn set_on_instance(
        &self,
        key: &DistkitRedisKey,
        count: i64,
    ) -> Result<Pair, DistkitError>;

    /// Global delete: every slice of `key` goes; returns the old `(C, I)`.
    ///
    /// # Cancel safety
    ///
    /// One write sent to Redis (on a lax counter, after the pending deltas were delivered):
    /// dropped before it was handed to the client, nothing is applied; after, it is applied
    /// or not, with its result lost. See the [trait docs](Self#cancel-safety).
    async fn del(&self, key: &DistkitRedisKey) -> Result<Pair, DistkitError>;

    /// Removes this instance's slice; returns `(new C, removed I)`.
    ///
    /// # Cancel safety
    ///
    /// One write sent to Redis (on a lax counter, after the pending deltas were delivered):
    /// dropped before it was handed to the client, nothing is applied; after, it is applied
    /// or not, with its result lost. See the [trait docs](Self#cancel-safety).
    async fn del_on_instance(&self, key: &DistkitRedisKey) -> Result<Pair, DistkitError>;

    /// Removes everything under the prefix, for every instance: every shard, one after the
    /// other, each atomically (not the prefix as a whole). The recorded shard count stays.
    ///
    /// # Cancel safety
    ///
    /// One script call per shard, shard after shard, each sent once: dropped part-way, the
    /// shards before are cleared, the one handed to the client is cleared or not, and the
    /// rest are untouched. A lax counter forgets its local values only once every shard
    /// answered.
    async fn clear(&self) -> Result<(), DistkitError>;

    /// Removes this instance's slices of every key (each `C` drops by them): in every shard
    /// this instance joined, one after the other, each all or nothing.
    ///
    /// # Cancel safety
    ///
    /// One script call per shard, shard after shard, each sent once: dropped part-way, the
    /// shards before are cleared, the one handed to the client is cleared or not, and the
    /// rest are untouched. A lax counter forgets its local values only once every shard
    /// answered.
    async fn clear_on_instance(&self) -> Result<(), DistkitError>;

    /// [`inc`](Self::inc) when `C` satisfies `comparator`; returns `(new, old)` pairs, or the
    /// current pair twice when it does not.
    ///
    /// The condition held (and the write happened) exactly when `comparator.matches(old.0)`:
    /// `old.0` is the `C` it was checked against, in the same atomic step (`new == old` does
    /// not tell: a write can leave the pair unchanged).
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
    ) -> Result<(Pair, Pair), DistkitError>;

    /// [`set`](Self::set) when `C` satisfies `comparator`; returns `(new, old)` pairs, or the
    /// current pair twice when it does not.
    ///
    /// The condition held (and the write happened) exactly when `comparator.matches(old.0)`:
    /// `old.0` is the `C` it was checked against, in the same atomic step (`new == old` does
    /// not tell: a write can leave the pair unchanged).
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
    ) -> Result<(Pair, Pair), DistkitError>;

    /// [`set_on_instance`](Self::set_on_instance) when `I` satisfies `comparator`; returns
    /// `(new, old)` pairs, or the current pair twice when it does not.
    ///
    /// The condition held (and the write happened) exactly when `comparator.matches(old.1)`:
    /// `old.1` is the `I` it was checked against, in the same atomic step.
    ///
    /// # Cancel safety
    ///
    /// One write sent to Redis (on a lax counter, after the pending deltas were delivered):
    /// dropped before it was handed to the client, nothing is applied; after, it is applied
    /// or not, with its result lost. See the [trait docs](Self#cancel-safety).
    async fn set_on_instance_if(
        &self,
        key: &DistkitRedisKey,
        comparator: CounterComparator,
        count: i64,
    ) -> Result<(Pair, Pair), DistkitError>;

    /// `(key, C, I)` for each key, in input order.
    ///
    /// # Cancel safety
    ///
    /// Changes no value of its own: dropping the future leaves nothing behind but, on a
    /// strict counter, what every call's script does on the side (this instance's
    /// heartbeat, the reaping of dead instances' slices), which may still run.
    async fn get_all<'k>(
        &self,
        keys: &[&'k DistkitRedisKey],
    ) -> Result<Vec<(&'k DistkitRedisKey, i64, i64)>, DistkitError>;

    /// `(key, I)` for each key, in input order.
    ///
    /// # Cancel safety
    ///
    /// Changes no value of its own: dropping the future leaves nothing behind but, on a
    /// strict counter, what every call's script does on the side (this instance's
    /// heartbeat, the reaping of dead instances' slices), which may still run.
    async fn get_all_on_instance<'k>(
        &self,
        keys: &[&'k DistkitRedisKey],
    ) -> Result<Vec<(&'k DistkitRedisKey, i64)>, DistkitError>
    where
        Self: Sync,
    {
        let all = self.get_all(keys).await?;
        Ok(all
            .into_iter()
            .map(|(key, _total, own)| (key, own))
            .collect())
    }

    /// [`inc`](Self::inc) for each update, in order; returns `(key, C, I)` each.
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
    ) -> Result<Vec<(&'k DistkitRedisKey, i64, i64)>, DistkitError>;

    /// [`set`](Self::set) for each update, in order; returns `(key, C, I)` each.
    ///
    /// # Cancel safety
    ///
    /// One script call per chunk of up to 1 000 operations of one shard, chunk after chunk
    /// and shard after shard, each sent once: dropped part-way, the chunks that answered are
    /// applied, the one handed to the client is applied or not, and the rest are never sent.
    /// A lax counter delivers its pending deltas first (cancel safe).
    async fn set_all<'k>(
        &self,
        updates: &[(&'k DistkitRedisKey, i64)],
    ) -> Result<Vec<(&'k DistkitRedisKey, i64, i64)>, DistkitError>;

    /// [`set_on_instance`](Self::set_on_instance) for each update, in order; returns
    /// `(key, C, I)` each.
    ///
    /// # Cancel safety
    ///
    /// One script call per chunk of up to 1 000 operations of one shard, chunk after chunk
    /// and shard after shard, each sent once: dropped part-way, the chunks that answered are
    /// applied, the one handed to the client is applied or not, and the rest are never sent.
    /// A lax counter delivers its pending deltas first (cancel safe).
    async fn set_all_on_instance<'k>(
        &self,
        updates: &[(&'k DistkitRedisKey, i64)],
    ) -> Result<Vec<(&'k DistkitRedisKey, i64, i64)>, DistkitError>;

    /// [`inc_if`](Self::inc_if) for each update, in order.
    ///
    /// # Cancel safety
    ///
    /// One script call per chunk of up to 1 000 operations of one shard, chunk after chunk
    /// and shard after shard, each sent once: dropped part-way, the chunks that answered are
    /// applied, the one handed to the client is applied or not, and the rest are never sent.
    /// A lax counter delivers its pending deltas first (cancel safe).
    async fn inc_all_if<'k>(
        &self,
        updates: &[(&'k DistkitRedisKey, CounterComparator, i64)],
    ) -> Result<Vec<(&'k DistkitRedisKey, Pair, Pair)>, DistkitError>;

    /// [`set_if`](Self::set_if) for each update, in order.
    ///
    /// # Cancel safety
    ///
    /// One script call per chunk of up to 1 000 operations of one shard, chunk after chunk
    /// and shard after shard, each sent once: dropped part-way, the chunks that answered are
    /// applied, the one handed to the client is applied or not, and the rest are never sent.
    /// A lax counter delivers its pending deltas first (cancel safe).
    async fn set_all_if<'k>(
        &self,
        updates: &[(&'k DistkitRedisKey, CounterComparator, i64)],
    ) -> Result<Vec<(&'k DistkitRedisKey, Pair, Pair)>, DistkitError>;

    /// [`set_on_instance_if`](Self::set_on_instance_if) for each update, in order.
    ///
    /// # Cancel safety
    ///
    /// One script call per chunk of up to 1 000 operations of one shard, chunk after chunk
    /// and shard after shard, each sent once: dropped part-way, the chunks that answered are
    /// applied, the one handed to the client is applied or not, and the rest are never sent.
    /// A lax counter delivers its pending deltas first (cancel safe).
    async fn set_all_on_instance_if<'k>(
        &self,
        updates: &[(&'k DistkitRedisKey, CounterComparator, i64)],
    ) -> Result<Vec<(&'k DistkitRedisKey, Pair, Pair)>, DistkitError>;
}
