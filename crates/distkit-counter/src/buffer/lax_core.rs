//! The engine of the lax counters: local deltas, the flush task, `flush()`, `close()`,
//! warm-path changes and the final flush on drop. [`LaxCounter`](crate::counter::LaxCounter)
//! and the lax instance-aware counter differ only in their [`DeltaSink`] and their absolute
//! operations.
//!
//! # Lifecycle
//!
//! The owner (the public counter object) holds the core in an `Arc`; the flush task, on the
//! library's background runtime ([`distkit_core::task`]), holds a `Weak` one. The last handle
//! of the owner going away runs the owner's drop, which delivers what is pending through
//! [`LaxCore::finish_on_drop`] (waiting for it where the thread may block), so a counter
//! dropped as `main` returns has delivered before the runtime ends. The flush task upgrading
//! its `Weak` for a cycle can at most make the *core* outlive the owner a moment; the final
//! delivery never depends on who drops last.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use distkit_core::task::Backoff;
use distkit_core::{CounterError, DistkitError, DistkitRedisKey};
use tokio::sync::{Mutex as AsyncMutex, MutexGuard as AsyncMutexGuard};
use tracing::Instrument;

use super::{BatchChange, DeltaSink, LocalChange, LocalState, Outbox, Snapshot};
use crate::observe::{self, FlushLabels};

/// How long a key with nothing pending stays in memory after its last use.
const IDLE_KEY_LIFETIME: Duration = Duration::from_secs(10);
/// The longest pause between flush attempts while Redis fails.
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// The flush task's cadence when every call flushes by itself (a zero lag): it then only
/// forgets idle keys.
const IDLE_CADENCE: Duration = Duration::from_millis(20);

/// Local state, outbox and flush task of one lax counter object.
#[derive(Debug)]
pub(crate) struct LaxCore<S: DeltaSink> {
    sink: S,
    local: LocalState,
    outbox: AsyncMutex<Outbox>,
    tick: AtomicU64,
    allowed_lag: Duration,
    cadence: Duration,
    task_started: AtomicBool,
    /// Set by `close()` or the owner's drop: no operation is accepted any more.
    closed: AtomicBool,
    /// The prefix and kind of counter, for spans and metrics.
    labels: FlushLabels,
    /// When the oldest delta not yet taken for a flush was added, in nanoseconds since
    /// `epoch` plus one (0: none), for the flush lag. Set by the first delta after a take.
    pending_since: AtomicU64,
    epoch: Instant,
}

impl<S: DeltaSink> LaxCore<S> {
    /// An engine flushing to `sink` every `cadence`; a zero `allowed_lag` flushes on every call.
    pub(crate) fn new(
        sink: S,
        labels: FlushLabels,
        allowed_lag: Duration,
        cadence: Duration,
    ) -> Self {
        let cadence = if allowed_lag.is_zero() || cadence.is_zero() {
            IDLE_CADENCE
        } else {
            cadence
        };
        Self {
            sink,
            local: LocalState::new(),
            outbox: AsyncMutex::new(Outbox::default()),
            tick: AtomicU64::new(0),
            allowed_lag,
            cadence,
            task_started: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            labels,
            pending_since: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    /// The prefix and kind of counter.
    pub(crate) fn labels(&self) -> &FlushLabels {
        &self.labels
    }

    /// The configured lag (zero: every call goes to Redis).
    pub(crate) fn allowed_lag(&self) -> Duration {
        self.allowed_lag
    }

    /// About how many keys have deltas not yet confirmed by Redis: those waiting in memory
    /// plus those in undelivered batches (a key in both counts twice). Does not wait for a
    /// running flush (its batches are then not counted).
    pub(crate) fn pending_keys(&self) -> usize {
        let queued = self
            .outbox
            .try_lock()
            .map_or(0, |outbox| outbox.pending_deltas());
        self.local.pending_keys().saturating_add(queued)
    }

    /// Notes that a delta was added locally: the first since the last take starts the lag.
    fn note_pending(&self) {
        if self.pending_since.load(Ordering::Relaxed) == 0 {
            let since = u64::try_from(self.epoch.elapsed().as_nanos())
                .unwrap_or(u64::MAX)
                .saturating_add(1);
            let _ =
                self.pending_since
                    .compare_exchange(0, since, Ordering::Relaxed, Ordering::Relaxed);
        }
    }

    /// When the oldest delta not yet taken was added (if any); forgets it.
    fn take_pending_since(&self) -> Option<Instant> {
        match self.pending_since.swap(0, Ordering::Relaxed) {
            0 => None,
            since => self
                .epoch
                .checked_add(Duration::from_nanos(since.saturating_sub(1))),
        }
    }

    /// Whether every call goes to Redis at once (a zero `allowed_lag`): then reads do not
    /// answer from memory either.
    pub(crate) fn is_synchronous(&self) -> bool {
        self.allowed_lag.is_zero()
    }

    pub(crate) fn local(&self) -> &LocalState {
        &self.local
    }

    /// The coarse clock of last uses: one tick per flush cycle.
    pub(crate) fn now(&self) -> u64 {
        self.tick.load(Ordering::Relaxed)
    }

    /// Starts the flush task on the library's background runtime, once. Inlined: every
    /// warm call runs it, and once started it is one load.
    #[inline]
    pub(crate) fn start(self: &Arc<Self>) {
        if !self.task_started.load(Ordering::Acquire) {
            self.start_task();
        }
    }

    /// [`start`](Self::start) before the task runs.
    #[cold]
    fn start_task(self: &Arc<Self>) {
        if self
            .task_started
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return;
        }
        let task = run_flush_task(Arc::downgrade(self), self.cadence);
        if distkit_core::task::spawn_background(task).is_none() {
            // No runtime at all: the next operation tries again.
            self.task_started.store(false, Ordering::Release);
        }
    }

    /// `Err(Closed)` once the object was closed (checked by every operation first).
    #[inline]
    pub(crate) fn ensure_open(&self) -> Result<(), DistkitError> {
        if self.closed.load(Ordering::Acquire) {
            Err(DistkitError::Closed)
        } else {
            Ok(())
        }
    }

    /// Whether `close()` ran (or the owner was dropped). Checked again after a change was
    /// accepted in memory: when `close()` ran meanwhile, it may have taken the pending deltas
    /// just before this change joined them, so the caller delivers it before confirming it.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Stops accepting operations, delivers everything accepted so far, and stops the flush
    /// task (it ends at its next turn). A second call delivers whatever is still pending.
    pub(crate) async fn close(&self) -> Result<(), DistkitError> {
        self.closed.store(true, Ordering::Release);
        self.flush().await
    }

    /// The owner's drop: stops accepting operations and delivers what is pending before
    /// returning where the thread may block (bounded by `bound`), else in the background.
    /// What this delivery cannot send is left to the core's own drop (a detached delivery
    /// that retries).
    pub(crate) fn finish_on_drop(self: &Arc<Self>, bound: Duration) {
        self.closed.store(true, Ordering::Release);
        if self.local.pending_keys() == 0
            && self.outbox.try_lock().is_ok_and(|outbox| outbox.is_empty())
        {
            return;
        }
        let core = Arc::clone(self);
        let outcome = distkit_core::task::finish_before_returning(
            async move {
                if let Err(error) = core.flush().await {
                    tracing::warn!(target: "distkit::counter", %error, "the final flush of a dropped lax counter failed; it is retried in the background");
                }
            },
            bound,
        );
        if outcome == distkit_core::task::DropWork::TimedOut {
            tracing::warn!(target: "distkit::counter",
                ?bound,
                "the final flush of a dropped lax counter did not finish in time; it goes on in the background"
            );
        }
    }

    /// Sends every pending delta and waits for the confirmation.
    pub(crate) async fn flush(&self) -> Result<(), DistkitError> {
        drop(self.flushed().await?);
        Ok(())
    }

    /// Sends every pending delta and keeps the outbox locked, so that an absolute operation
    /// runs after every earlier local change and before any later flush.
    ///
    /// A flush with deltas to deliver runs in a `distkit.counter.flush` span and records the
    /// flush metrics (see [`observe::flush_ended`]).
    pub(crate) async fn flushed(&self) -> Result<AsyncMutexGuard<'_, Outbox>, DistkitError> {
        let mut outbox = self.outbox.lock().await;
        let since = self.take_pending_since();
        outbox.enqueue(self.local.take(), since);
        if outbox.is_empty() {
            return Ok(outbox);
        }
        let span = observe::flush_span(&self.labels, outbox.pending_deltas());
        // Boxed: the delivery future is large, and it would otherwise grow every operation
        // that flushes first.
        let delivered = Box::pin(
            outbox
                .deliver(&self.sink, &self.local)
                .instrument(span.clone()),
        )
        .await;
        let pending = self
            .local
            .pending_keys()
            .saturating_add(outbox.pending_deltas());
        observe::flush_ended(&span, &self.labels, delivered.as_ref().copied(), pending);
        delivered?;
        Ok(outbox)
    }

    /// Adds `delta` to a warm key in memory, without I/O: `Some` with the new values, or
    /// `None` when the key is cold, the change would overflow locally or the counter is
    /// synchronous — then nothing was changed, and [`add`](Self::add) does the rest. Callers
    /// try this first and box the slow path, so the future of a warm call stays small.
    pub(crate) fn add_warm(&self, key: &DistkitRedisKey, delta: i64) -> Option<Snapshot> {
        if self.is_synchronous() {
            return None;
        }
        match self.add_in_memory(key, delta) {
            LocalChange::Applied(values) => Some(values),
            LocalChange::Cold | LocalChange::Overflow => None,
        }
    }

    /// Adds `delta` to the pending deltas of `key` and, when it was applied, notes that a
    /// delta is waiting (for the flush lag).
    fn add_in_memory(&self, key: &DistkitRedisKey, delta: i64) -> LocalChange {
        let change = self.local.add(key, delta, self.now());
        if let LocalChange::Applied(_) = change {
            self.note_pending();
        }
        change
    }

    /// Adds `delta` to `key` locally, reading its values with `fetch` first when it is cold;
    /// when the local sums cannot hold it, flushes and applies it with `direct` instead.
    pub(crate) async fn add<Fetch, FetchFuture, Direct, DirectFuture>(
        &self,
        key: &DistkitRedisKey,
        delta: i64,
        fetch: Fetch,
        direct: Direct,
    ) -> Result<Snapshot, DistkitError>
    where
        Fetch: FnOnce() -> FetchFuture,
        FetchFuture: Future<Output = Result<Snapshot, DistkitError>>,
        Direct: FnOnce() -> DirectFuture,
        DirectFuture: Future<Output = Result<Snapshot, DistkitError>>,
    {
        if self.is_synchronous() {
            // Every call goes to Redis at once, as one write sent once: a failure says
            // `OutcomeUnknown` or changed nothing, and nothing is left to be applied later.
            return self.direct(key, direct).await;
        }
        let mut change = self.add_in_memory(key, delta);
        if change == LocalChange::Cold {
            let remote = fetch().await?;
            self.local.learn(key, remote, self.now());
            change = self.add_in_memory(key, delta);
        }
        match change {
            LocalChange::Applied(values) => {
                if self.is_closed() {
                    self.flush().await?;
                }
                Ok(values)
            }
            LocalChange::Overflow | LocalChange::Cold => self.direct(key, direct).await,
        }
    }

    /// Runs `operation` in Redis once every pending delta was delivered, and records the
    /// values it leaves for `key` before any later flush can run.
    async fn direct<Direct, DirectFuture>(
        &self,
        key: &DistkitRedisKey,
        operation: Direct,
    ) -> Result<Snapshot, DistkitError>
    where
        Direct: FnOnce() -> DirectFuture,
        DirectFuture: Future<Output = Result<Snapshot, DistkitError>>,
    {
        let outbox = self.flushed().await?;
        let values = operation().await?;
        self.local.refresh(key, values, self.now());
        drop(outbox);
        Ok(values)
    }

    /// The values of `key`: from memory when warm, else read with `fetch` and remembered. A
    /// synchronous counter always reads Redis, after delivering its pending deltas.
    pub(crate) async fn read_one<Fetch, FetchFuture>(
        &self,
        key: &DistkitRedisKey,
        fetch: Fetch,
        overflow: impl Fn(&DistkitRedisKey) -> DistkitError,
    ) -> Result<Snapshot, DistkitError>
    where
        Fetch: FnOnce() -> FetchFuture,
        FetchFuture: Future<Output = Result<Snapshot, DistkitError>>,
    {
        if self.is_synchronous() {
            let outbox = self.flushed().await?;
            let values = fetch().await?;
            self.local.refresh(key, values, self.now());
            drop(outbox);
            return Ok(values);
        }
        match self.local.read(key, self.now()) {
            Some(Some(values)) => Ok(values),
            Some(None) => Err(overflow(key)),
            None => {
                let values = fetch().await?;
                self.local.learn(key, values, self.now());
                Ok(values)
            }
        }
    }

    /// The values of `keys`, in order: warm keys from memory, cold ones read with one `fetch`
    /// call and remembered. A synchronous counter reads every key from Redis, after
    /// delivering its pending deltas.
    pub(crate) async fn read_many<'k, Fetch, FetchFuture>(
        &self,
        keys: &[&'k DistkitRedisKey],
        fetch: Fetch,
        overflow: impl Fn(&DistkitRedisKey) -> DistkitError,
    ) -> Result<Vec<Snapshot>, DistkitError>
    where
        Fetch: FnOnce(Vec<&'k DistkitRedisKey>) -> FetchFuture,
        FetchFuture: Future<Output = Result<Vec<Snapshot>, DistkitError>>,
    {
        let tick = self.now();
        if self.is_synchronous() {
            let outbox = self.flushed().await?;
            let values = fetch(keys.to_vec()).await?;
            for (&key, &value) in keys.iter().zip(&values) {
                self.local.refresh(key, value, tick);
            }
            drop(outbox);
            return Ok(values);
        }
        let mut values = Vec::with_capacity(keys.len());
        let mut cold = Vec::new();
        for (index, &key) in keys.iter().enumerate() {
            match self.local.read(key, tick) {
                Some(Some(known)) => values.push(known),
                Some(None) => return Err(overflow(key)),
                None => {
                    cold.push((index, key));
                    values.push(Snapshot::default());
                }
            }
        }
        if !cold.is_empty() {
            let fetched = fetch(cold.iter().map(|&(_, key)| key).collect()).await?;
            for (&(index, key), value) in cold.iter().zip(fetched) {
                self.local.learn(key, value, tick);
                if let Some(slot) = values.get_mut(index) {
                    *slot = value;
                }
            }
        }
        Ok(values)
    }

    /// Adds a batch of deltas locally, all or nothing, warming its cold keys with `warm`
    /// first. When only the pending sums cannot hold the batch, the pending deltas are
    /// delivered first; should the local changes still not go through, the batch runs in
    /// Redis with `direct` (after every pending delta, as one atomic call).
    ///
    /// # Errors
    ///
    /// `overflow` of the first key whose value would leave the `i64` range (nothing is
    /// changed), or the error of `warm`, a flush or `direct`.
    pub(crate) async fn add_all<'k, Warm, WarmFuture, Direct, DirectFuture>(
        &self,
        updates: &[(&'k DistkitRedisKey, i64)],
        warm: Warm,
        direct: Direct,
        overflow: impl Fn(&DistkitRedisKey) -> DistkitError,
    ) -> Result<Vec<(&'k DistkitRedisKey, Snapshot)>, DistkitError>
    where
        Warm: Fn() -> WarmFuture,
        WarmFuture: Future<Output = Result<(), DistkitError>>,
        Direct: FnOnce() -> DirectFuture,
        DirectFuture: Future<Output = Result<Vec<Snapshot>, DistkitError>>,
    {
        if !self.is_synchronous() {
            for _ in 0..3 {
                match self.local.add_all(updates, self.now()) {
                    BatchChange::Applied(values) => {
                        self.note_pending();
                        if self.is_closed() {
                            self.flush().await?;
                        }
                        return Ok(updates.iter().map(|&(key, _)| key).zip(values).collect());
                    }
                    BatchChange::Overflow(position) => {
                        let key = updates.get(position).map(|&(key, _)| key);
                        return Err(key.map_or_else(
                            || CounterError::Overflow { key: String::new() }.into(),
                            &overflow,
                        ));
                    }
                    BatchChange::PendingOverflow => self.flush().await?,
                    BatchChange::Cold => warm().await?,
                }
            }
        }
        // Synchronous, or keys that keep going cold or pending sums that keep filling up
        // under concurrent use: one atomic call in Redis.
        let values = direct().await?;
        Ok(updates.iter().map(|&(key, _)| key).zip(values).collect())
    }
}

impl<S: DeltaSink> Drop for LaxCore<S> {
    /// The final, detached flush of a dropped counter object (best effort, never panics).
    fn drop(&mut self) {
        let mut outbox = std::mem::take(self.outbox.get_mut());
        outbox.enqueue(self.local.take(), None);
        if outbox.is_empty() {
            return;
        }
        if distkit_core::task::spawn_background(outbox.deliver_detached(self.sink.clone()))
            .is_none()
        {
            tracing::error!(target: "distkit::counter",
                "a lax counter with pending deltas was dropped with no runtime to deliver them; they are lost"
            );
        }
    }
}

async fn run_flush_task<S: DeltaSink>(core: Weak<LaxCore<S>>, cadence: Duration) {
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
        let Some(core) = core.upgrade() else { return };
        if core.closed.load(Ordering::Acquire) {
            return;
        }
        let tick = core.tick.fetch_add(1, Ordering::Relaxed).saturating_add(1);
        let flushed = if core.allowed_lag.is_zero() {
            Ok(())
        } else {
            core.flush().await
        };
        delay = match flushed {
            Ok(()) => {
                backoff.reset();
                cadence
            }
            Err(error) => {
                let delay = backoff.next_delay();
                tracing::warn!(target: "distkit::counter", %error, retry_in = ?delay, "lax counter flush failed; its deltas are kept");
                delay
            }
        };
        if tick.checked_rem(idle_ticks) == Some(0) {
            core.local.forget_idle(tick, idle_ticks);
        }
    }
}
