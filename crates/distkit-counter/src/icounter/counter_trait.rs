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
#[async_trait::async_trait]
pub trait InstanceAwareCounterTrait {
    /// This counter object's instance id: a ULID, unique per object.
    fn instance_id(&self) -> &str;

    /// Adds `count` to this instance's slice (and so to `C`); returns `(C, I)`.
    async fn inc(&self, key: &DistkitRedisKey, count: i64) -> Result<Pair, DistkitError>;

    /// Subtracts `count` from this instance's slice; returns `(C, I)`.
    async fn dec(&self, key: &DistkitRedisKey, count: i64) -> Result<Pair, DistkitError>;

    /// `(C, I)`, `(0, 0)` when absent.
    async fn get(&self, key: &DistkitRedisKey) -> Result<Pair, DistkitError>;

    /// Global set: `C = count`, `I = count`, every other instance's slice reset.
    async fn set(&self, key: &DistkitRedisKey, count: i64) -> Result<Pair, DistkitError>;

    /// `I = count`; `C` moves by the difference.
    async fn set_on_instance(
        &self,
        key: &DistkitRedisKey,
        count: i64,
    ) -> Result<Pair, DistkitError>;

    /// Global delete: every slice of `key` goes; returns the old `(C, I)`.
    async fn del(&self, key: &DistkitRedisKey) -> Result<Pair, DistkitError>;

    /// Removes this instance's slice; returns `(new C, removed I)`.
    async fn del_on_instance(&self, key: &DistkitRedisKey) -> Result<Pair, DistkitError>;

    /// Removes everything under the prefix, for every instance: every shard, one after the
    /// other, each atomically (not the prefix as a whole). The recorded shard count stays.
    async fn clear(&self) -> Result<(), DistkitError>;

    /// Removes this instance's slices of every key (each `C` drops by them): in every shard
    /// this instance joined, one after the other, each all or nothing.
    async fn clear_on_instance(&self) -> Result<(), DistkitError>;

    /// [`inc`](Self::inc) when `C` satisfies `comparator`; returns `(new, old)` pairs, or the
    /// current pair twice when it does not.
    ///
    /// The condition held (and the write happened) exactly when `comparator.matches(old.0)`:
    /// `old.0` is the `C` it was checked against, in the same atomic step (`new == old` does
    /// not tell: a write can leave the pair unchanged).
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
    async fn set_on_instance_if(
        &self,
        key: &DistkitRedisKey,
        comparator: CounterComparator,
        count: i64,
    ) -> Result<(Pair, Pair), DistkitError>;

    /// `(key, C, I)` for each key, in input order.
    async fn get_all<'k>(
        &self,
        keys: &[&'k DistkitRedisKey],
    ) -> Result<Vec<(&'k DistkitRedisKey, i64, i64)>, DistkitError>;

    /// `(key, I)` for each key, in input order.
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
    async fn inc_all<'k>(
        &self,
        updates: &[(&'k DistkitRedisKey, i64)],
    ) -> Result<Vec<(&'k DistkitRedisKey, i64, i64)>, DistkitError>;

    /// [`set`](Self::set) for each update, in order; returns `(key, C, I)` each.
    async fn set_all<'k>(
        &self,
        updates: &[(&'k DistkitRedisKey, i64)],
    ) -> Result<Vec<(&'k DistkitRedisKey, i64, i64)>, DistkitError>;

    /// [`set_on_instance`](Self::set_on_instance) for each update, in order; returns
    /// `(key, C, I)` each.
    async fn set_all_on_instance<'k>(
        &self,
        updates: &[(&'k DistkitRedisKey, i64)],
    ) -> Result<Vec<(&'k DistkitRedisKey, i64, i64)>, DistkitError>;

    /// [`inc_if`](Self::inc_if) for each update, in order.
    async fn inc_all_if<'k>(
        &self,
        updates: &[(&'k DistkitRedisKey, CounterComparator, i64)],
    ) -> Result<Vec<(&'k DistkitRedisKey, Pair, Pair)>, DistkitError>;

    /// [`set_if`](Self::set_if) for each update, in order.
    async fn set_all_if<'k>(
        &self,
        updates: &[(&'k DistkitRedisKey, CounterComparator, i64)],
    ) -> Result<Vec<(&'k DistkitRedisKey, Pair, Pair)>, DistkitError>;

    /// [`set_on_instance_if`](Self::set_on_instance_if) for each update, in order.
    async fn set_all_on_instance_if<'k>(
        &self,
        updates: &[(&'k DistkitRedisKey, CounterComparator, i64)],
    ) -> Result<Vec<(&'k DistkitRedisKey, Pair, Pair)>, DistkitError>;
}
