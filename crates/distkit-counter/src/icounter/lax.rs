use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use distkit_core::{CounterComparator, CounterError, DistkitError, DistkitRedisKey};

use super::LaxInstanceAwareCounterOptions;
use super::absolute::{instance_counter_impl, only, with_both, with_new};
use super::counter_trait::{InstanceAwareCounterTrait, Pair};
use super::remote::{Kind, Lease, Op, Outcome, RemoteInstanceCounters, start_heartbeat};
use crate::buffer::{LaxCore, Snapshot};
use crate::checked::OptionsCheck;
use crate::observe::FlushLabels;

/// An instance-aware counter that buffers this instance's increments in memory and flushes
/// them every `flush_interval`, like [`LaxCounter`](crate::counter::LaxCounter).
///
/// - `inc`/`dec`/`get` of a warm key are answered from memory: `C` and `I` as Redis last
///   returned them plus this instance's pending deltas. The flush reads back the keys read
///   since the previous flush, so warm values follow other instances within about a flush.
///   With a zero `allowed_lag` every call goes to Redis at once, reads included.
/// - Flushes run the `icounter` script with a sequence number, so a batch resent after a
///   connection failure is applied exactly once; [`flush`](Self::flush) sends everything now
///   and dropping the last `Arc` sends what is left (best effort, never panics).
/// - `set`, `set_on_instance`, `del`, `del_on_instance`, `clear`, `clear_on_instance`, the
///   conditional operations and the `set_all*` batches are immediate and absolute: they run
///   after the pending deltas were delivered.
///
/// ```no_run
/// # use distkit_counter as distkit; // the facade crate, as users name it
/// use distkit::icounter::{
///     InstanceAwareCounterTrait, LaxInstanceAwareCounter, LaxInstanceAwareCounterOptions,
/// };
/// use distkit::DistkitRedisKey;
///
/// # async fn example() -> Result<(), distkit::DistkitError> {
/// let client = distkit::connect("redis://127.0.0.1:6379").await?;
/// let prefix = DistkitRedisKey::try_from("in-flight")?;
/// let requests = LaxInstanceAwareCounter::new(LaxInstanceAwareCounterOptions::new(prefix, client));
/// let api = DistkitRedisKey::try_from("api")?;
///
/// requests.inc(&api, 1).await?; // memory only once the key is warm
/// // … handle the request …
/// let (total, mine) = requests.dec(&api, 1).await?;
/// requests.flush().await?;
/// println!("{mine} here, {total} in flight everywhere");
/// # Ok(())
/// # }
/// ```
pub struct LaxInstanceAwareCounter {
    remote: Arc<RemoteInstanceCounters>,
    core: Arc<LaxCore<RemoteInstanceCounters>>,
    heartbeat_started: AtomicBool,
    /// How long the drop waits for the final delivery.
    drop_bound: Duration,
}

/// Compact: the prefix, the instance, the lease and lag settings and how many keys have
/// deltas not yet confirmed.
impl std::fmt::Debug for LaxInstanceAwareCounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LaxInstanceAwareCounter")
            .field("prefix", &self.remote.prefix())
            .field("instance_id", &self.remote.instance_id())
            .field("dead_instance_threshold", &self.remote.threshold())
            .field("allowed_lag", &self.core.allowed_lag())
            .field("pending_keys", &self.core.pending_keys())
            .finish_non_exhaustive()
    }
}

impl Drop for LaxInstanceAwareCounter {
    /// Delivers what is pending before returning where the thread may block (a multi-thread
    /// runtime, or none), as [`LaxCounter`](crate::counter::LaxCounter)'s drop does; on a
    /// current-thread runtime, [`close`](Self::close) is the way to be sure.
    fn drop(&mut self) {
        self.core.finish_on_drop(self.drop_bound);
    }
}

/// The error of a local sum that left the `i64` range.
fn overflow(key: &DistkitRedisKey) -> DistkitError {
    CounterError::Overflow {
        key: key.to_string(),
    }
    .into()
}

fn snapshot(pair: Pair) -> Snapshot {
    Snapshot {
        total: pair.0,
        own: pair.1,
    }
}

fn pair(values: Snapshot) -> Pair {
    (values.total, values.own)
}

impl LaxInstanceAwareCounter {
    /// A lax counter over the keys of `options.prefix`, with a fresh instance id.
    ///
    /// The flush and heartbeat tasks run on distkit's background runtime (see
    /// [`distkit_core::task`]), whichever runtime built this object; this never panics.
    ///
    /// The options are checked here, without any I/O, but this cannot fail: when
    /// [`LaxInstanceAwareCounterOptions::validate`] refuses them, no task starts and every
    /// operation returns its [`DistkitError::InvalidOption`] before any I/O.
    pub fn new(options: LaxInstanceAwareCounterOptions) -> Arc<Self> {
        let check = OptionsCheck::of(options.validate());
        let lease = Lease {
            threshold: options.dead_instance_threshold,
            revival_window: options.revival_window,
        };
        let drop_bound = distkit_core::task::drop_bound(&options.client);
        let remote = Arc::new(RemoteInstanceCounters::new(
            options.client,
            &options.prefix,
            options.shards,
            lease,
            true,
            check,
        ));
        let core = Arc::new(LaxCore::new(
            RemoteInstanceCounters::clone(&remote),
            FlushLabels {
                prefix: options.prefix.to_string(),
                counter: "lax_instance_aware",
            },
            options.allowed_lag,
            options.flush_interval,
        ));
        let counter = Arc::new(Self {
            remote,
            core,
            heartbeat_started: AtomicBool::new(false),
            drop_bound,
        });
        if counter.remote.check().is_ok() {
            counter.start_tasks_once();
        }
        counter
    }

    /// Sends every pending delta to Redis now and waits for the confirmation.
    ///
    /// # Errors
    ///
    /// [`DistkitError::RedisError`] when Redis could not be reached; the deltas stay pending
    /// and are delivered, exactly once, by a later flush.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future loses nothing and applies nothing twice: the deltas it took are
    /// queued as numbered batches, and a batch stays queued until its confirmation is
    /// recorded; a batch dropped after it was sent is resent by the next flush with the
    /// same number, and Redis applies it only if it had not already.
    pub async fn flush(&self) -> Result<(), DistkitError> {
        self.start_tasks()?;
        self.core.flush().await
    }

    /// Delivers every increment accepted so far, stops the flush and heartbeat tasks and
    /// closes the object: every later call returns [`DistkitError::Closed`] and applies
    /// nothing. With the heartbeat stopped, this instance's slices leave the totals once
    /// `dead_instance_threshold` has passed, as when a process ends.
    ///
    /// Runs the flush script once per batch (each atomic, applied exactly once). Await it
    /// before the runtime that connected the client ends to be sure nothing accepted is lost,
    /// whatever kind of runtime this is. Calling it again retries what is left.
    ///
    /// # Errors
    ///
    /// [`DistkitError::RedisError`] when Redis could not be reached: the deltas stay pending
    /// (a later `close()` or the drop tries again); the object is closed all the same.
    ///
    /// # Cancel safety
    ///
    /// Cancelling it leaves the object closed (later calls return [`DistkitError::Closed`]; the
    /// heartbeat stops) and the deltas not yet confirmed pending, each batch with its
    /// number: a later `close()` or the drop delivers them, exactly once.
    pub async fn close(&self) -> Result<(), DistkitError> {
        self.core.close().await
    }

    /// [`InstanceAwareCounterTrait::inc`] without the boxed future of the trait method: a
    /// warm key costs a shard lock and no allocation or I/O.
    ///
    /// # Errors
    ///
    /// As [`InstanceAwareCounterTrait::inc`].
    ///
    /// # Cancel safety
    ///
    /// A warm key's increment is accepted in memory on the first poll, without an await,
    /// and delivered by the flush whatever happens to the future afterwards (also when the
    /// future is dropped while it delivers because `close()` ran meanwhile). Dropped while a
    /// cold key is read, nothing is accepted. An increment that cannot be held locally
    /// (overflow) is one write sent to Redis after the pending deltas: dropped before it was
    /// handed to the client, nothing is applied; after, it is applied or not, its result lost.
    pub async fn inc(&self, key: &DistkitRedisKey, count: i64) -> Result<Pair, DistkitError> {
        self.start_tasks()?;
        if let Some(values) = self.core.add_warm(key, count) {
            if self.core.is_closed() {
                // `close()` ran meanwhile: this increment is delivered before it is confirmed.
                Box::pin(self.core.flush()).await?;
            }
            return Ok(pair(values));
        }
        // Boxed: the cold path's futures would otherwise make every warm call build a future
        // of their size.
        Box::pin(self.inc_cold(key, count)).await
    }

    /// [`inc`](Self::inc) for a key that is cold, would overflow locally, or on a
    /// synchronous counter.
    async fn inc_cold(&self, key: &DistkitRedisKey, count: i64) -> Result<Pair, DistkitError> {
        let values = self
            .core
            .add(
                key,
                count,
                || self.fetch(key),
                || async {
                    let op = Op::on(Kind::Inc, key, CounterComparator::Nil, count);
                    Ok(snapshot(only(&self.remote.run(&[op]).await?).new))
                },
            )
            .await?;
        Ok(pair(values))
    }

    /// [`InstanceAwareCounterTrait::dec`] without the boxed future of the trait method.
    ///
    /// # Errors
    ///
    /// As [`InstanceAwareCounterTrait::dec`].
    ///
    /// # Cancel safety
    ///
    /// As [`inc`](Self::inc); `dec(i64::MIN)` is one write sent to Redis after the pending
    /// deltas were delivered: applied or not once handed to the client.
    pub async fn dec(&self, key: &DistkitRedisKey, count: i64) -> Result<Pair, DistkitError> {
        match count.checked_neg() {
            Some(delta) => LaxInstanceAwareCounter::inc(self, key, delta).await,
            None => {
                let outcomes = self
                    .apply_ops(&[
                        Op::on(Kind::Inc, key, CounterComparator::Nil, i64::MAX),
                        Op::on(Kind::Inc, key, CounterComparator::Nil, 1),
                    ])
                    .await?;
                Ok(outcomes.last().copied().unwrap_or_default().new)
            }
        }
    }

    /// [`InstanceAwareCounterTrait::get`] without the boxed future of the trait method: a warm
    /// key is answered from memory.
    ///
    /// # Errors
    ///
    /// As [`InstanceAwareCounterTrait::get`].
    ///
    /// # Cancel safety
    ///
    /// A read: dropping the future leaves nothing behind (a warm key is answered from
    /// memory without an await; a synchronous counter first delivers its pending deltas,
    /// which stay queued until confirmed).
    pub async fn get(&self, key: &DistkitRedisKey) -> Result<Pair, DistkitError> {
        self.start_tasks()?;
        Ok(pair(
            self.core
                .read_one(key, || self.fetch(key), overflow)
                .await?,
        ))
    }

    /// Checks the options (before any I/O) and starts the flush and heartbeat tasks if they
    /// are not running.
    ///
    /// # Errors
    ///
    /// [`DistkitError::Closed`] after [`close`](Self::close);
    /// [`DistkitError::InvalidOption`] when the options were invalid.
    fn start_tasks(&self) -> Result<(), DistkitError> {
        self.core.ensure_open()?;
        self.remote.check()?;
        self.start_tasks_once();
        Ok(())
    }

    /// Starts the flush and heartbeat tasks if they are not running.
    fn start_tasks_once(&self) {
        self.core.start();
        let core = Arc::downgrade(&self.core);
        let open = move || core.upgrade().is_some_and(|core| !core.is_closed());
        if !self.heartbeat_started.load(Ordering::Acquire) && start_heartbeat(&self.remote, open) {
            self.heartbeat_started.store(true, Ordering::Release);
        }
    }

    async fn fetch(&self, key: &DistkitRedisKey) -> Result<Snapshot, DistkitError> {
        Ok(snapshot(
            only(
                &self
                    .remote
                    .run(&[Op::on(Kind::Get, key, CounterComparator::Nil, 0)])
                    .await?,
            )
            .new,
        ))
    }

    /// Runs operations in Redis once every pending delta was delivered, and records the
    /// values they leave.
    async fn apply_ops(&self, ops: &[Op<'_>]) -> Result<Vec<Outcome>, DistkitError> {
        self.start_tasks()?;
        let outbox = self.core.flushed().await?;
        let outcomes = match self.remote.run(ops).await {
            Ok(outcomes) => outcomes,
            Err(error) => {
                self.relearn_applied(ops, &error).await;
                drop(outbox);
                return Err(error);
            }
        };
        // Recorded before any later flush can run; increments made meanwhile stay pending.
        let local = self.core.local();
        let tick = self.core.now();
        for (op, outcome) in ops.iter().zip(&outcomes) {
            match (op.kind, op.key) {
                (Kind::Clear, _) => local.forget_all(|_| Snapshot::default()),
                (Kind::ClearOnInstance, _) => local.forget_all(|known| Snapshot {
                    total: known.total.saturating_sub(known.own),
                    own: 0,
                }),
                (_, Some(key)) => local.refresh(key, snapshot(outcome.new), tick),
                (_, None) => {}
            }
        }
        drop(outbox);
        Ok(outcomes)
    }
}

impl LaxInstanceAwareCounter {
    /// After a batch over several shards failed part-way, reads back the keys of the shards
    /// that applied it (the outbox is still held), so local values do not stay stale. Best
    /// effort: when the read fails, those keys are refreshed by the next flush's read-back.
    async fn relearn_applied(&self, ops: &[Op<'_>], error: &DistkitError) {
        let DistkitError::CounterError(distkit_core::CounterError::ShardedBatchPartiallyApplied {
            applied,
            ..
        }) = error
        else {
            return;
        };
        let keys: Vec<&DistkitRedisKey> = applied
            .iter()
            .filter_map(|&position| ops.get(position).and_then(|op| op.key))
            .collect();
        if let Ok(outcomes) = self.remote.run(&Op::reads(&keys)).await {
            let tick = self.core.now();
            for (key, outcome) in keys.into_iter().zip(outcomes) {
                self.core.local().refresh(key, snapshot(outcome.new), tick);
            }
        }
    }
}

instance_counter_impl!(LaxInstanceAwareCounter {
    fn instance_id(&self) -> &str {
        self.remote.instance_id()
    }

    async fn inc(&self, key: &DistkitRedisKey, count: i64) -> Result<Pair, DistkitError> {
        LaxInstanceAwareCounter::inc(self, key, count).await
    }

    async fn dec(&self, key: &DistkitRedisKey, count: i64) -> Result<Pair, DistkitError> {
        LaxInstanceAwareCounter::dec(self, key, count).await
    }

    async fn get(&self, key: &DistkitRedisKey) -> Result<Pair, DistkitError> {
        LaxInstanceAwareCounter::get(self, key).await
    }

    async fn get_all<'k>(
        &self,
        keys: &[&'k DistkitRedisKey],
    ) -> Result<Vec<(&'k DistkitRedisKey, i64, i64)>, DistkitError> {
        self.start_tasks()?;
        let fetch = |cold: Vec<&'k DistkitRedisKey>| async move {
            let outcomes = self.remote.run(&Op::reads(&cold)).await?;
            Ok(outcomes.into_iter().map(|outcome| snapshot(outcome.new)).collect())
        };
        let values = self.core.read_many(keys, fetch, overflow).await?;
        Ok(keys.iter().copied().zip(values).map(|(key, values)| (key, values.total, values.own)).collect())
    }

    async fn inc_all<'k>(
        &self,
        updates: &[(&'k DistkitRedisKey, i64)],
    ) -> Result<Vec<(&'k DistkitRedisKey, i64, i64)>, DistkitError> {
        if self.core.is_synchronous() {
            let ops = Op::each(Kind::Inc, updates);
            return Ok(with_new(updates.iter().map(|&(key, _)| key), self.apply_ops(&ops).await?));
        }
        let keys: Vec<&DistkitRedisKey> = updates.iter().map(|&(key, _)| key).collect();
        let warm = || async { self.get_all(&keys).await.map(drop) };
        let direct = || async {
            let outcomes = self.apply_ops(&Op::each(Kind::Inc, updates)).await?;
            Ok(outcomes.into_iter().map(|outcome| snapshot(outcome.new)).collect())
        };
        warm().await?;
        let results = self.core.add_all(updates, warm, direct, overflow).await?;
        Ok(results
            .into_iter()
            .map(|(key, values)| (key, values.total, values.own))
            .collect())
    }

});
