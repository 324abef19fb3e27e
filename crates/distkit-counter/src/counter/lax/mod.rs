mod flush;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use distkit_core::task::{Backoff, spawn_if_in_runtime};
use distkit_core::{CounterComparator, CounterError, DistkitError, DistkitRedisKey, key_schema};
use tokio::sync::Mutex as AsyncMutex;

use self::flush::FlushTarget;
use super::remote::{Operation, OperationKind, RemoteCounters};
use super::strict::{single, with_new, with_new_and_old};
use super::{CounterOptions, CounterTrait};
use crate::buffer::{LocalChange, LocalState, Outbox, Snapshot};

/// The flush cadence when `allowed_lag` is zero (every call flushes; the task only forgets
/// idle keys).
const IDLE_CADENCE: Duration = Duration::from_millis(20);
/// How long a key with nothing pending stays in memory after its last use.
const IDLE_KEY_LIFETIME: Duration = Duration::from_secs(10);
/// The longest pause between flush attempts while Redis fails.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// A counter that buffers increments in memory and flushes them to Redis in the background.
///
/// - `inc`/`dec`/`get` of a key this object already knows touch only local memory (a shard
///   mutex; no I/O). A key seen for the first time is read from Redis once.
/// - Every `allowed_lag` a background task sends the summed deltas with the `counter_flush`
///   script, which applies each batch exactly once (it remembers the batch's sequence number),
///   and reads back the keys read since the last flush, so local values do not go stale.
/// - [`flush`](Self::flush) sends everything now; dropping the last `Arc` sends what is
///   left in a spawned task (best effort, never panics).
/// - `set`, `del`, `clear`, the conditional operations and `set_all` are immediate and
///   absolute: they run the same scripts as [`StrictCounter`](super::StrictCounter) (after a
///   flush, for the conditional ones, so they compare against every local increment).
///
/// A flush that fails keeps its deltas and is retried with backoff; a batch is resent under
/// its own sequence number, so nothing is lost or counted twice when the connection recovers.
/// Keys idle for 10 s with nothing pending are forgotten, so memory follows the working set.
#[derive(Debug)]
pub struct LaxCounter {
    remote: RemoteCounters,
    target: FlushTarget,
    allowed_lag: Duration,
    local: LocalState,
    outbox: AsyncMutex<Outbox>,
    tick: AtomicU64,
    task_started: AtomicBool,
    this: Weak<LaxCounter>,
}

impl LaxCounter {
    /// A lax counter over the values of `options.prefix`.
    ///
    /// The flush task starts on the current Tokio runtime; called outside a runtime, it
    /// starts with the first operation instead (this never panics).
    pub fn new(options: CounterOptions) -> Arc<Self> {
        let CounterOptions {
            prefix,
            client,
            allowed_lag,
        } = options;
        let counter_id = ulid::Ulid::new().to_string();
        let target = FlushTarget {
            client: client.clone(),
            values_key: key_schema::counter_values(&prefix),
            sequence_key: key_schema::counter_flush_sequence(&prefix, &counter_id),
        };
        let counter = Arc::new_cyclic(|this| Self {
            remote: RemoteCounters::new(client, &prefix),
            target,
            allowed_lag,
            local: LocalState::new(),
            outbox: AsyncMutex::new(Outbox::default()),
            tick: AtomicU64::new(0),
            task_started: AtomicBool::new(false),
            this: this.clone(),
        });
        counter.start_flush_task();
        counter
    }

    /// Sends every pending delta to Redis now and waits for the confirmation.
    ///
    /// Runs the `counter_flush` script once per batch of up to 1 000 keys; each batch is
    /// atomic and applied exactly once, even when resent after a connection failure.
    ///
    /// # Errors
    ///
    /// [`DistkitError::RedisError`] when Redis could not be reached; the deltas stay pending
    /// and are delivered by a later flush.
    pub async fn flush(&self) -> Result<(), DistkitError> {
        self.start_flush_task();
        let mut outbox = self.outbox.lock().await;
        outbox.enqueue(self.local.take());
        outbox.deliver(&self.target, &self.local).await
    }

    /// [`CounterTrait::inc`] without the boxed future of the trait method: a warm key costs
    /// a shard lock and no allocation or I/O. A cold key is read from Redis once.
    ///
    /// # Errors
    ///
    /// As [`CounterTrait::inc`]; a local overflow falls back to the strict script.
    pub async fn inc(&self, key: &DistkitRedisKey, count: i64) -> Result<i64, DistkitError> {
        self.add(key, count).await
    }

    /// [`CounterTrait::dec`] without the boxed future of the trait method.
    ///
    /// # Errors
    ///
    /// As [`CounterTrait::dec`].
    pub async fn dec(&self, key: &DistkitRedisKey, count: i64) -> Result<i64, DistkitError> {
        match count.checked_neg() {
            Some(delta) => self.add(key, delta).await,
            None => {
                let mut outbox = self.outbox.lock().await;
                outbox.enqueue(self.local.take());
                outbox.deliver(&self.target, &self.local).await?;
                let value = self.remote.dec(key, count).await?;
                self.local.refresh(key, Snapshot::single(value), self.now());
                Ok(value)
            }
        }
    }

    /// [`CounterTrait::get`] without the boxed future of the trait method: a warm key is
    /// answered from memory (the last value Redis returned plus local deltas).
    ///
    /// # Errors
    ///
    /// As [`CounterTrait::get`].
    pub async fn get(&self, key: &DistkitRedisKey) -> Result<i64, DistkitError> {
        self.start_flush_task();
        match self.local.read(key, self.now()) {
            Some(Some(value)) => Ok(value.total),
            Some(None) => Err(CounterError::Overflow {
                key: key.to_string(),
            }
            .into()),
            None => {
                let remote = self.remote.get(key).await?;
                self.local.learn(key, Snapshot::single(remote), self.now());
                Ok(remote)
            }
        }
    }

    /// How many keys this object keeps in memory.
    pub fn tracked_keys(&self) -> usize {
        self.local.tracked_keys()
    }

    fn now(&self) -> u64 {
        self.tick.load(Ordering::Relaxed)
    }

    fn start_flush_task(&self) {
        if self.task_started.load(Ordering::Acquire) {
            return;
        }
        let cadence = if self.allowed_lag.is_zero() {
            IDLE_CADENCE
        } else {
            self.allowed_lag
        };
        if spawn_if_in_runtime(run_flush_task(self.this.clone(), cadence)).is_some() {
            self.task_started.store(true, Ordering::Release);
        }
    }

    /// Adds a delta locally, reading the key from Redis first when it is cold.
    async fn add(&self, key: &DistkitRedisKey, delta: i64) -> Result<i64, DistkitError> {
        self.start_flush_task();
        let mut change = self.local.add(key, delta, self.now());
        if change == LocalChange::Cold {
            let remote = self.remote.get(key).await?;
            self.local.learn(key, Snapshot::single(remote), self.now());
            change = self.local.add(key, delta, self.now());
        }
        match change {
            LocalChange::Applied(value) => {
                if self.allowed_lag.is_zero() {
                    self.flush().await?;
                }
                Ok(value.total)
            }
            // The local sum cannot hold it: apply it directly, after the pending deltas.
            LocalChange::Overflow | LocalChange::Cold => {
                let mut outbox = self.outbox.lock().await;
                outbox.enqueue(self.local.take());
                outbox.deliver(&self.target, &self.local).await?;
                let value = self.remote.inc(key, delta).await?;
                self.local.refresh(key, Snapshot::single(value), self.now());
                Ok(value)
            }
        }
    }

    /// Runs absolute operations in Redis once every earlier local delta was delivered, and
    /// records their results locally.
    async fn apply_absolute(
        &self,
        operations: &[Operation<'_>],
    ) -> Result<Vec<(i64, i64)>, DistkitError> {
        self.start_flush_task();
        let mut outbox = self.outbox.lock().await;
        outbox.enqueue(self.local.take());
        outbox.deliver(&self.target, &self.local).await?;
        let results = self.remote.apply(operations).await?;
        drop(outbox);
        let tick = self.now();
        for (operation, &(new, _old)) in operations.iter().zip(&results) {
            self.local
                .overwrite(operation.key, Snapshot::single(new), tick);
        }
        Ok(results)
    }

    /// The final, detached flush of a dropped counter.
    fn flush_on_drop(&mut self) {
        let mut outbox = std::mem::take(self.outbox.get_mut());
        outbox.enqueue(self.local.take());
        if outbox.is_empty() {
            return;
        }
        let target = self.target.clone();
        if spawn_if_in_runtime(outbox.deliver_detached(target)).is_none() {
            tracing::error!(
                "a lax counter with pending deltas was dropped outside a Tokio runtime; they are lost"
            );
        }
    }
}

impl Drop for LaxCounter {
    fn drop(&mut self) {
        self.flush_on_drop();
    }
}

async fn run_flush_task(this: Weak<LaxCounter>, cadence: Duration) {
    let mut backoff = Backoff::new(cadence, MAX_BACKOFF.max(cadence));
    let idle_ticks = IDLE_KEY_LIFETIME
        .as_micros()
        .checked_div(cadence.as_micros())
        .and_then(|ticks| u64::try_from(ticks).ok())
        .unwrap_or(2)
        .max(2);
    let mut delay = cadence;
    loop {
        tokio::time::sleep(delay).await;
        let Some(counter) = this.upgrade() else {
            return;
        };
        let tick = counter
            .tick
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1);
        let flushed = if counter.allowed_lag.is_zero() {
            Ok(())
        } else {
            counter.flush().await
        };
        delay = match flushed {
            Ok(()) => {
                backoff.reset();
                cadence
            }
            Err(error) => {
                let delay = backoff.next_delay();
                tracing::warn!(%error, retry_in = ?delay, "lax counter flush failed; its deltas are kept");
                delay
            }
        };
        if tick.checked_rem(idle_ticks) == Some(0) {
            counter.local.forget_idle(tick.saturating_sub(idle_ticks));
        }
    }
}

#[async_trait::async_trait]
impl CounterTrait for LaxCounter {
    async fn inc(&self, key: &DistkitRedisKey, count: i64) -> Result<i64, DistkitError> {
        LaxCounter::inc(self, key, count).await
    }

    async fn dec(&self, key: &DistkitRedisKey, count: i64) -> Result<i64, DistkitError> {
        LaxCounter::dec(self, key, count).await
    }

    async fn get(&self, key: &DistkitRedisKey) -> Result<i64, DistkitError> {
        LaxCounter::get(self, key).await
    }

    async fn set(&self, key: &DistkitRedisKey, count: i64) -> Result<i64, DistkitError> {
        let operation = Operation::new(OperationKind::Set, key, CounterComparator::Nil, count);
        Ok(single(&self.apply_absolute(&[operation]).await?).0)
    }

    async fn del(&self, key: &DistkitRedisKey) -> Result<i64, DistkitError> {
        let operation = Operation::new(OperationKind::Del, key, CounterComparator::Nil, 0);
        Ok(single(&self.apply_absolute(&[operation]).await?).1)
    }

    async fn clear(&self) -> Result<(), DistkitError> {
        self.start_flush_task();
        let mut outbox = self.outbox.lock().await;
        outbox.enqueue(self.local.take());
        outbox.deliver(&self.target, &self.local).await?;
        self.remote.clear().await?;
        self.local.forget_all();
        Ok(())
    }

    async fn inc_if(
        &self,
        key: &DistkitRedisKey,
        comparator: CounterComparator,
        count: i64,
    ) -> Result<(i64, i64), DistkitError> {
        let operation = Operation::new(OperationKind::Inc, key, comparator, count);
        Ok(single(&self.apply_absolute(&[operation]).await?))
    }

    async fn set_if(
        &self,
        key: &DistkitRedisKey,
        comparator: CounterComparator,
        count: i64,
    ) -> Result<(i64, i64), DistkitError> {
        let operation = Operation::new(OperationKind::Set, key, comparator, count);
        Ok(single(&self.apply_absolute(&[operation]).await?))
    }

    async fn get_all<'k>(
        &self,
        keys: &[&'k DistkitRedisKey],
    ) -> Result<Vec<(&'k DistkitRedisKey, i64)>, DistkitError> {
        self.start_flush_task();
        let tick = self.now();
        let mut values = Vec::with_capacity(keys.len());
        let mut cold = Vec::new();
        for (index, &key) in keys.iter().enumerate() {
            match self.local.read(key, tick) {
                Some(Some(value)) => values.push((key, value.total)),
                Some(None) => {
                    return Err(CounterError::Overflow {
                        key: key.to_string(),
                    }
                    .into());
                }
                None => {
                    cold.push((index, key));
                    values.push((key, 0));
                }
            }
        }
        if !cold.is_empty() {
            let cold_keys: Vec<&DistkitRedisKey> = cold.iter().map(|&(_, key)| key).collect();
            let remote = self.remote.get_many(&cold_keys).await?;
            for (&(index, key), value) in cold.iter().zip(remote) {
                self.local.learn(key, Snapshot::single(value), tick);
                if let Some(slot) = values.get_mut(index) {
                    *slot = (key, value);
                }
            }
        }
        Ok(values)
    }

    async fn inc_all<'k>(
        &self,
        updates: &[(&'k DistkitRedisKey, i64)],
    ) -> Result<Vec<(&'k DistkitRedisKey, i64)>, DistkitError> {
        // Warm every key first, so that the local changes below cannot stop half-way on I/O.
        let keys: Vec<&DistkitRedisKey> = updates.iter().map(|&(key, _)| key).collect();
        self.get_all(&keys).await?;
        let tick = self.now();
        let mut results = Vec::with_capacity(updates.len());
        for (position, &(key, count)) in updates.iter().enumerate() {
            match self.local.add(key, count, tick) {
                LocalChange::Applied(value) => results.push((key, value.total)),
                LocalChange::Overflow | LocalChange::Cold => {
                    // Undo this batch's local changes: a failed batch changes nothing.
                    for &(done_key, done_count) in updates.iter().take(position).rev() {
                        if let Some(undo) = done_count.checked_neg() {
                            let _ = self.local.add(done_key, undo, tick);
                        }
                    }
                    return Err(CounterError::Overflow {
                        key: key.to_string(),
                    }
                    .into());
                }
            }
        }
        if self.allowed_lag.is_zero() {
            self.flush().await?;
        }
        Ok(results)
    }

    async fn set_all<'k>(
        &self,
        updates: &[(&'k DistkitRedisKey, i64)],
    ) -> Result<Vec<(&'k DistkitRedisKey, i64)>, DistkitError> {
        let operations: Vec<_> = updates
            .iter()
            .map(|&(key, count)| {
                Operation::new(OperationKind::Set, key, CounterComparator::Nil, count)
            })
            .collect();
        let results = self.apply_absolute(&operations).await?;
        Ok(with_new(updates.iter().map(|&(key, _)| key), results))
    }

    async fn inc_all_if<'k>(
        &self,
        updates: &[(&'k DistkitRedisKey, CounterComparator, i64)],
    ) -> Result<Vec<(&'k DistkitRedisKey, i64, i64)>, DistkitError> {
        let operations: Vec<_> = updates
            .iter()
            .map(|&(key, comparator, count)| {
                Operation::new(OperationKind::Inc, key, comparator, count)
            })
            .collect();
        let results = self.apply_absolute(&operations).await?;
        Ok(with_new_and_old(
            updates.iter().map(|&(key, _, _)| key),
            results,
        ))
    }

    async fn set_all_if<'k>(
        &self,
        updates: &[(&'k DistkitRedisKey, CounterComparator, i64)],
    ) -> Result<Vec<(&'k DistkitRedisKey, i64, i64)>, DistkitError> {
        let operations: Vec<_> = updates
            .iter()
            .map(|&(key, comparator, count)| {
                Operation::new(OperationKind::Set, key, comparator, count)
            })
            .collect();
        let results = self.apply_absolute(&operations).await?;
        Ok(with_new_and_old(
            updates.iter().map(|&(key, _, _)| key),
            results,
        ))
    }
}
