mod flush;

use std::sync::Arc;
use std::time::Duration;

use distkit_core::{CounterComparator, CounterError, DistkitError, DistkitRedisKey};

use self::flush::FlushTarget;
use super::absolute::counter_impl;
use super::remote::{Operation, OperationKind, RemoteCounters};
use super::strict::{single, with_new, with_new_and_old};
use super::{CounterOptions, CounterTrait};
use crate::buffer::{LaxCore, Snapshot};
use crate::checked::OptionsCheck;
use crate::observe::FlushLabels;

/// The error of a local sum that left the `i64` range.
fn overflow(key: &DistkitRedisKey) -> DistkitError {
    CounterError::Overflow {
        key: key.to_string(),
    }
    .into()
}

/// A counter that buffers increments in memory and flushes them to Redis in the background.
///
/// - `inc`/`dec`/`get` of a key this object already knows touch only local memory (a shard
///   mutex; no I/O). A key seen for the first time is read from Redis once.
/// - Every `allowed_lag` a background task sends the summed deltas with the `counter_flush`
///   script, which applies each batch exactly once (it remembers the batch's sequence number),
///   and reads back the keys read since the last flush, so local values do not go stale.
/// - [`flush`](Self::flush) sends everything now; [`close`](Self::close) sends everything
///   and stops the object (later calls return [`DistkitError::Closed`]).
/// - `set`, `del`, `clear`, the conditional operations and `set_all` are immediate and
///   absolute: they run the same scripts as [`StrictCounter`](super::StrictCounter), after
///   the pending deltas were delivered, so the conditions see every local increment.
///
/// # Delivery
///
/// Every increment this object acknowledged reaches Redis exactly once while the process
/// lives:
///
/// - A flush that fails keeps its deltas and is retried with backoff. Only the batch that was
///   sent can have been applied: it is resent under its own sequence number (the script skips
///   a number it applied before), and everything behind it merges back into the per-key
///   pending deltas, so memory stays one entry per key however long Redis is unreachable.
/// - Increments made while a conditional or absolute operation runs (`inc_if`, `set`, …)
///   stay pending and count after it; the operation itself runs after every increment made
///   before it was called.
/// - With a zero `allowed_lag` every call is one write sent once, as with
///   [`StrictCounter`](super::StrictCounter): an error is either
///   [`CounterError::OutcomeUnknown`] or means nothing was applied.
/// - Dropping the last `Arc` delivers what is pending **before the drop returns** when the
///   dropping thread may block: inside a multi-thread Tokio runtime (what `#[tokio::main]`
///   builds) and outside any runtime, bounded by the client's command timeout plus a second.
///   On a current-thread runtime a drop cannot wait (the client's connection may need that
///   very thread), so the delivery goes on in the background and is lost if the process
///   exits first: there, call [`close`](Self::close) and await it before shutting down.
///   What the final delivery cannot send goes on from a detached task that retries for 10 s.
///
/// # Graceful shutdown
///
/// ```no_run
/// # use distkit_counter as distkit; // the facade crate, as users name it
/// # use distkit::counter::{CounterOptions, LaxCounter};
/// # async fn example(hits: std::sync::Arc<LaxCounter>) -> Result<(), distkit::DistkitError> {
/// // Before the runtime that connected the client ends:
/// hits.close().await?; // everything accepted is in Redis; later calls return `Closed`
/// # Ok(())
/// # }
/// ```
///
/// What is not delivered: increments not flushed when the process dies, and a batch still
/// unconfirmed 12 h after it was first sent, once Redis no longer holds its sequence record
/// (it expires a day after the object's last applied batch): that batch is dropped and
/// [`flush`](Self::flush) reports [`CounterError::FlushExpired`], so it is never counted twice.
///
/// A values key overwritten by something else (not a hash) makes flushes drop their deltas
/// with an error log instead of stalling; `clear` repairs it. Other processes see this
/// object's increments within about `allowed_lag`; this object sees theirs when a flush
/// reads back the keys it read since the previous flush.
///
/// Keys idle for 10 s with nothing pending are forgotten, so memory follows the working set.
///
/// ```no_run
/// # use distkit_counter as distkit; // the facade crate, as users name it
/// use distkit::counter::{CounterOptions, CounterTrait, LaxCounter};
/// use distkit::DistkitRedisKey;
///
/// # async fn example() -> Result<(), distkit::DistkitError> {
/// let client = distkit::connect("redis://127.0.0.1:6379").await?;
/// let hits = LaxCounter::new(CounterOptions::new(DistkitRedisKey::try_from("hits")?, client));
/// let page = DistkitRedisKey::try_from("home")?;
///
/// for _ in 0..1_000 {
///     hits.inc(&page, 1).await?; // memory only once the key is warm
/// }
/// hits.flush().await?; // or wait ~allowed_lag (20 ms)
/// println!("home page hits: {}", hits.get(&page).await?);
/// # Ok(())
/// # }
/// ```
pub struct LaxCounter {
    remote: RemoteCounters,
    core: Arc<LaxCore<FlushTarget>>,
    /// How long the drop waits for the final delivery.
    drop_bound: Duration,
}

/// Compact: the prefix, the allowed lag and how many keys have deltas not yet confirmed.
impl std::fmt::Debug for LaxCounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LaxCounter")
            .field("prefix", &self.core.labels().prefix)
            .field("allowed_lag", &self.core.allowed_lag())
            .field("pending_keys", &self.core.pending_keys())
            .finish_non_exhaustive()
    }
}

impl Drop for LaxCounter {
    /// Delivers what is pending (see the type's docs on delivery).
    fn drop(&mut self) {
        self.core.finish_on_drop(self.drop_bound);
    }
}

impl LaxCounter {
    /// A lax counter over the values of `options.prefix`.
    ///
    /// The flush task runs on distkit's background runtime (see
    /// [`distkit_core::task`]), so it keeps going whichever runtime built this object, and
    /// this works outside a runtime too (it never panics).
    ///
    /// The options are checked here, without any I/O, but this cannot fail: when
    /// [`CounterOptions::validate`] refuses them, no flush task starts and every operation
    /// returns its [`DistkitError::InvalidOption`] before any I/O.
    pub fn new(options: CounterOptions) -> Arc<Self> {
        let check = OptionsCheck::of(options.validate());
        let CounterOptions {
            prefix,
            client,
            allowed_lag,
            // A lax counter's writes are flushes; replica acknowledgement is a strict option.
            replica_acks: _,
            shards,
        } = options;
        let counter_id = ulid::Ulid::new().to_string();
        let drop_bound = distkit_core::task::drop_bound(&client);
        let remote = RemoteCounters::new(client.clone(), &prefix, shards).with_check(check);
        let target = FlushTarget::new(client, &prefix, &counter_id, Arc::clone(remote.gate()));
        let counter = Arc::new(Self {
            remote,
            core: Arc::new(LaxCore::new(
                target,
                FlushLabels {
                    prefix: prefix.to_string(),
                    counter: "lax",
                },
                allowed_lag,
                allowed_lag,
            )),
            drop_bound,
        });
        if counter.remote.check().is_ok() {
            counter.core.start();
        }
        counter
    }

    /// Checks that the object is open and the options valid (before any I/O), and starts
    /// the flush task if it is not running.
    ///
    /// # Errors
    ///
    /// [`DistkitError::Closed`] after [`close`](Self::close);
    /// [`DistkitError::InvalidOption`] when the options were invalid.
    #[inline]
    fn ready(&self) -> Result<(), DistkitError> {
        self.core.ensure_open()?;
        self.remote.check()?;
        self.core.start();
        Ok(())
    }

    /// Delivers every increment accepted so far, stops the flush task and closes the
    /// object: every later call returns [`DistkitError::Closed`] and applies nothing.
    ///
    /// Runs the `counter_flush` script once per batch of up to 1 000 keys, as
    /// [`flush`](Self::flush) (each batch atomic, applied exactly once). Await it before the
    /// runtime that connected the client ends to be sure nothing accepted is lost, whatever
    /// kind of runtime this is. Calling it again retries the delivery of whatever is left.
    ///
    /// # Errors
    ///
    /// [`DistkitError::RedisError`] when Redis could not be reached: the deltas stay pending
    /// (a later `close()` or the drop tries again); the object is closed all the same.
    ///
    /// # Cancel safety
    ///
    /// Cancelling it leaves the object closed (later calls return [`DistkitError::Closed`])
    /// and the deltas not yet confirmed pending, each batch with its number: a later
    /// `close()` or the drop delivers them, exactly once.
    pub async fn close(&self) -> Result<(), DistkitError> {
        self.core.close().await
    }

    /// Sends every pending delta to Redis now and waits for the confirmation.
    ///
    /// Runs the `counter_flush` script once per shard of each batch of up to 1 000 keys (the
    /// shards of a batch concurrently); each shard's part is atomic and applied exactly once,
    /// even when resent after a connection failure (each shard keeps its own record).
    ///
    /// # Errors
    ///
    /// [`DistkitError::RedisError`] when Redis could not be reached; the deltas stay pending
    /// and are delivered by a later flush.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future loses nothing and applies nothing twice: the deltas it took are
    /// queued as numbered batches, and a batch stays queued until its confirmation is
    /// recorded; a batch dropped after it was sent is resent by the next flush with the
    /// same number, and Redis applies it only if it had not already.
    pub async fn flush(&self) -> Result<(), DistkitError> {
        self.ready()?;
        self.core.flush().await
    }

    /// [`CounterTrait::inc`] without the boxed future of the trait method: a warm key costs
    /// a shard lock and no allocation or I/O. A cold key is read from Redis once.
    ///
    /// # Errors
    ///
    /// As [`CounterTrait::inc`]; a local overflow falls back to the strict script.
    ///
    /// # Cancel safety
    ///
    /// A warm key's increment is accepted in memory on the first poll, without an await,
    /// and delivered by the flush whatever happens to the future afterwards (also when the
    /// future is dropped while it delivers because `close()` ran meanwhile). Dropped while a
    /// cold key is read, nothing is accepted. An increment that cannot be held locally
    /// (overflow) is one write sent to Redis after the pending deltas: dropped before it was
    /// handed to the client, nothing is applied; after, it is applied or not, its result lost.
    pub async fn inc(&self, key: &DistkitRedisKey, count: i64) -> Result<i64, DistkitError> {
        self.ready()?;
        if let Some(values) = self.core.add_warm(key, count) {
            if self.core.is_closed() {
                // `close()` ran meanwhile: this increment is delivered before it is confirmed.
                Box::pin(self.core.flush()).await?;
            }
            return Ok(values.total);
        }
        // Boxed: the cold path's futures (a read, a script call) would otherwise make every
        // warm call build a future of their size.
        Box::pin(self.inc_cold(key, count)).await
    }

    /// [`inc`](Self::inc) for a key that is cold, would overflow locally, or on a
    /// synchronous counter.
    async fn inc_cold(&self, key: &DistkitRedisKey, count: i64) -> Result<i64, DistkitError> {
        let values = self
            .core
            .add(
                key,
                count,
                || async { Ok(Snapshot::single(self.remote.get(key).await?)) },
                || async { Ok(Snapshot::single(self.remote.inc(key, count).await?)) },
            )
            .await?;
        Ok(values.total)
    }

    /// [`CounterTrait::dec`] without the boxed future of the trait method.
    ///
    /// # Errors
    ///
    /// As [`CounterTrait::dec`].
    ///
    /// # Cancel safety
    ///
    /// As [`inc`](Self::inc); `dec(i64::MIN)` is one write sent to Redis after the pending
    /// deltas were delivered: applied or not once handed to the client.
    pub async fn dec(&self, key: &DistkitRedisKey, count: i64) -> Result<i64, DistkitError> {
        match count.checked_neg() {
            Some(delta) => self.inc(key, delta).await,
            None => {
                // -i64::MIN does not fit in a local delta: apply it directly.
                self.ready()?;
                let outbox = self.core.flushed().await?;
                let value = self.remote.dec(key, count).await?;
                self.core
                    .local()
                    .refresh(key, Snapshot::single(value), self.core.now());
                drop(outbox);
                Ok(value)
            }
        }
    }

    /// [`CounterTrait::get`] without the boxed future of the trait method: a warm key is
    /// answered from memory (the last value Redis returned plus local deltas). With a zero
    /// `allowed_lag` it reads Redis.
    ///
    /// # Errors
    ///
    /// As [`CounterTrait::get`].
    ///
    /// # Cancel safety
    ///
    /// A read: dropping the future leaves nothing behind (a warm key is answered from
    /// memory without an await; a synchronous counter first delivers its pending deltas,
    /// which stay queued until confirmed).
    pub async fn get(&self, key: &DistkitRedisKey) -> Result<i64, DistkitError> {
        self.ready()?;
        let fetch = || async { Ok(Snapshot::single(self.remote.get(key).await?)) };
        Ok(self.core.read_one(key, fetch, overflow).await?.total)
    }

    /// How many keys this object keeps in memory.
    pub fn tracked_keys(&self) -> usize {
        self.core.local().tracked_keys()
    }

    /// Runs absolute operations in Redis once every earlier local delta was delivered, and
    /// records their results locally.
    async fn apply_ops(
        &self,
        operations: &[Operation<'_>],
    ) -> Result<Vec<(i64, i64)>, DistkitError> {
        self.ready()?;
        let outbox = self.core.flushed().await?;
        let results = match self.remote.apply(operations).await {
            Ok(results) => results,
            Err(error) => {
                self.relearn_applied(operations, &error).await;
                drop(outbox);
                return Err(error);
            }
        };
        // Recorded before any later flush can run; increments made meanwhile stay pending.
        let tick = self.core.now();
        for (operation, &(new, _old)) in operations.iter().zip(&results) {
            self.core
                .local()
                .refresh(operation.key, Snapshot::single(new), tick);
        }
        drop(outbox);
        Ok(results)
    }

    /// After a batch over several shards failed part-way, reads back the keys of the shards
    /// that applied it (the outbox is still held), so local values do not stay stale. Best
    /// effort: when the read fails, those keys are refreshed by the next flush's read-back.
    async fn relearn_applied(&self, operations: &[Operation<'_>], error: &DistkitError) {
        let DistkitError::CounterError(CounterError::ShardedBatchPartiallyApplied {
            applied, ..
        }) = error
        else {
            return;
        };
        let keys: Vec<&DistkitRedisKey> = applied
            .iter()
            .filter_map(|&position| operations.get(position))
            .map(|operation| operation.key)
            .collect();
        if let Ok(values) = self.remote.get_many(&keys).await {
            let tick = self.core.now();
            for (key, value) in keys.into_iter().zip(values) {
                self.core
                    .local()
                    .refresh(key, Snapshot::single(value), tick);
            }
        }
    }
}

counter_impl!(LaxCounter {
    async fn inc(&self, key: &DistkitRedisKey, count: i64) -> Result<i64, DistkitError> {
        LaxCounter::inc(self, key, count).await
    }

    async fn dec(&self, key: &DistkitRedisKey, count: i64) -> Result<i64, DistkitError> {
        LaxCounter::dec(self, key, count).await
    }

    async fn get(&self, key: &DistkitRedisKey) -> Result<i64, DistkitError> {
        LaxCounter::get(self, key).await
    }

    async fn clear(&self) -> Result<(), DistkitError> {
        self.ready()?;
        let outbox = self.core.flushed().await?;
        self.remote.clear().await?;
        self.core.local().forget_all(|_| Snapshot::default());
        drop(outbox);
        Ok(())
    }

    async fn get_all<'k>(
        &self,
        keys: &[&'k DistkitRedisKey],
    ) -> Result<Vec<(&'k DistkitRedisKey, i64)>, DistkitError> {
        self.ready()?;
        let fetch = |cold: Vec<&'k DistkitRedisKey>| async move {
            Ok(self
                .remote
                .get_many(&cold)
                .await?
                .into_iter()
                .map(Snapshot::single)
                .collect())
        };
        let values = self.core.read_many(keys, fetch, overflow).await?;
        Ok(keys
            .iter()
            .copied()
            .zip(values)
            .map(|(key, values)| (key, values.total))
            .collect())
    }

    async fn inc_all<'k>(
        &self,
        updates: &[(&'k DistkitRedisKey, i64)],
    ) -> Result<Vec<(&'k DistkitRedisKey, i64)>, DistkitError> {
        if self.core.is_synchronous() {
            let operations = Operation::each(OperationKind::Inc, updates);
            let results = self.apply_ops(&operations).await?;
            return Ok(with_new(updates.iter().map(|&(key, _)| key), results));
        }
        // Warm every key first, so that the local changes cannot stop half-way on I/O.
        let keys: Vec<&DistkitRedisKey> = updates.iter().map(|&(key, _)| key).collect();
        let warm = || async { self.get_all(&keys).await.map(drop) };
        let direct = || async {
            let operations = Operation::each(OperationKind::Inc, updates);
            let results = self.apply_ops(&operations).await?;
            Ok(results.into_iter().map(|(new, _old)| Snapshot::single(new)).collect())
        };
        warm().await?;
        let results = self.core.add_all(updates, warm, direct, overflow).await?;
        Ok(results
            .into_iter()
            .map(|(key, values)| (key, values.total))
            .collect())
    }

});
