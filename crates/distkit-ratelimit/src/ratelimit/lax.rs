//! The machinery shared by the lax limiters: a per-key view decided in memory, cold keys
//! warmed by one strict call the key's other calls wait for, a background task delivering
//! the units admitted locally exactly once (a sequence number per delivery, a record per
//! object and key), `flush`, `reset`, and a final delivery when the limiter is dropped.
//!
//! What differs between algorithms (the view, the local decision, the strict call, the
//! delivery script) is an [`Algorithm`].

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

use distkit_core::task::Backoff;
use distkit_core::{DistkitError, DistkitRedisKey};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tracing::Instrument;

use super::{Decision, invalid};

/// The shortest `sync_interval` of a lax limiter: 1 ms.
pub const MIN_SYNC_INTERVAL: Duration = Duration::from_millis(1);

/// The longest `sync_interval` of a lax limiter: 1 hour.
pub const MAX_SYNC_INTERVAL: Duration = Duration::from_secs(3_600);

/// The default `sync_interval` of a lax limiter.
pub(super) const DEFAULT_SYNC_INTERVAL: Duration = Duration::from_millis(20);
/// A key unused for this many sync cycles, with nothing left to deliver, is forgotten.
const IDLE_SYNCS: u64 = 50;
/// The longest pause between sync attempts while Redis fails.
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// How long the final sync of a dropped limiter keeps trying.
const FINAL_SYNC_PATIENCE: Duration = Duration::from_secs(10);
/// The most deliveries sent at once.
const MAX_CONCURRENT_DELIVERIES: usize = 1_000;
/// How long a delivery record outlives twice the give-up time of its delivery.
const RECORD_MARGIN_MS: u64 = 60_000;

/// Checks the `sync_interval` of a lax limiter's options.
pub(super) fn check_sync_interval(kind: &str, sync_interval: Duration) -> Result<(), DistkitError> {
    if sync_interval < MIN_SYNC_INTERVAL || sync_interval > MAX_SYNC_INTERVAL {
        return Err(invalid(format!(
            "the sync interval of a {kind} must be {MIN_SYNC_INTERVAL:?} to \
             {MAX_SYNC_INTERVAL:?}, got {sync_interval:?}"
        )));
    }
    Ok(())
}

/// How long a delivery record lives after its delivery, when deliveries are given up
/// `give_up` after their first send: a record (written when its delivery was applied, after
/// that first send) outlives every resend by `give_up` plus a minute.
pub(super) fn record_ttl_ms(give_up: Duration) -> u64 {
    u64::try_from(give_up.as_millis())
        .unwrap_or(u64::MAX)
        .saturating_mul(2)
        .saturating_add(RECORD_MARGIN_MS)
}

/// The algorithm-specific part of a lax limiter.
pub(super) trait Algorithm: Send + Sync + 'static {
    /// What one object knows of one key's server state, plus its own units since.
    type View: Clone + Default + std::fmt::Debug + Send;
    /// What a call names besides its key and cost (a limit, a rate).
    type Params: ?Sized + Sync;
    /// What a delivery carries besides its units (the rate to charge them at), kept for
    /// its resends.
    type Info: Clone + std::fmt::Debug + Send + Sync + 'static;
    /// What a delivery reads back.
    type Synced: Copy + std::fmt::Debug + Send + 'static;

    /// The limiter's name in logs.
    const NAME: &'static str;

    /// Checks a call's parameters and cost, before any I/O.
    fn check_call(&self, params: &Self::Params, cost: u64) -> Result<(), DistkitError>;

    /// Decides a call on a warm key in memory; `unsent` is the units this object admitted
    /// and did not see confirmed yet. When allowed, the caller adds `cost` to them.
    fn decide(
        &self,
        view: &mut Self::View,
        unsent: u64,
        params: &Self::Params,
        cost: u64,
    ) -> Decision;

    /// The one strict call that warms a cold key: its decision, and the view it starts.
    fn warm(
        &self,
        key: &DistkitRedisKey,
        params: &Self::Params,
        cost: u64,
    ) -> impl Future<Output = Result<(Decision, Self::View), DistkitError>> + Send;

    /// The decision a cost-1 call on a cold key would get from the strict limiter, nothing
    /// charged.
    fn peek_strict(
        &self,
        key: &DistkitRedisKey,
        params: &Self::Params,
    ) -> impl Future<Output = Result<Decision, DistkitError>> + Send;

    /// What a delivery taken from `view` carries besides its units.
    fn info(&self, view: &Self::View) -> Self::Info;

    /// How long after its first send an unconfirmed delivery is dropped: by then its units
    /// no longer limit anything.
    fn give_up_after(&self, info: &Self::Info) -> Duration;

    /// Runs the delivery script once: adds `units` (unless `sequence` was applied before)
    /// and reads the key's state back. Atomic and idempotent by its sequence number.
    fn send(
        &self,
        delivery: &Delivery<Self::Info>,
    ) -> impl Future<Output = Result<Self::Synced, DistkitError>> + Send;

    /// Records a confirmed delivery's reply in the view; `pending` units were admitted
    /// after the delivery was taken.
    fn confirm(&self, view: &mut Self::View, synced: Self::Synced, pending: u64);

    /// Forgets the server state of a key (the strict limiter's reset).
    fn reset(&self, key: &DistkitRedisKey)
    -> impl Future<Output = Result<(), DistkitError>> + Send;
}

/// One call of the delivery script.
#[derive(Clone, Debug)]
pub(super) struct Delivery<I> {
    pub(super) key: DistkitRedisKey,
    pub(super) sequence: u64,
    pub(super) units: u64,
    pub(super) info: I,
}

/// The local state of one limiter object.
#[derive(Debug)]
struct State<A: Algorithm> {
    keys: HashMap<DistkitRedisKey, Entry<A>>,
    /// Sync cycles so far: the clock of last uses.
    tick: u64,
    /// The last sequence number given to a delivery.
    sequence: u64,
}

impl<A: Algorithm> Default for State<A> {
    fn default() -> Self {
        Self {
            keys: HashMap::new(),
            tick: 0,
            sequence: 0,
        }
    }
}

/// What one limiter object knows of one key.
#[derive(Debug)]
struct Entry<A: Algorithm> {
    /// Whether `view` came from Redis (a strict call or a sync); until then, calls are
    /// strict.
    warm: bool,
    view: A::View,
    /// Units admitted locally and not yet taken for a delivery.
    pending: u64,
    /// The delivery sent and not yet confirmed.
    in_flight: Option<InFlight<A::Info>>,
    /// Set while the one strict call that warms the key is under way: other calls on the
    /// key wait for it (a second strict call would be decided without the units the first
    /// one's caller then admits locally), and no sync runs for the key.
    warming: Option<Arc<Notify>>,
    /// The sync cycle of the last call.
    last_used: u64,
}

impl<A: Algorithm> Default for Entry<A> {
    fn default() -> Self {
        Self {
            warm: false,
            view: A::View::default(),
            pending: 0,
            in_flight: None,
            warming: None,
            last_used: 0,
        }
    }
}

impl<A: Algorithm> Entry<A> {
    /// The units admitted by this object and not confirmed yet.
    fn unsent(&self) -> u64 {
        let in_flight = self.in_flight.as_ref().map_or(0, |flight| flight.units);
        in_flight.saturating_add(self.pending)
    }

    /// Whether nothing is left to deliver.
    fn is_settled(&self) -> bool {
        self.pending == 0
            && self
                .in_flight
                .as_ref()
                .is_none_or(|flight| flight.units == 0)
    }
}

/// A delivery sent and not yet confirmed.
#[derive(Clone, Debug)]
struct InFlight<I> {
    sequence: u64,
    units: u64,
    info: I,
    first_sent: Instant,
}

/// The shared core of a lax limiter object: owned by the public limiter (its only strong
/// reference outside a sync cycle); the sync task holds a weak one.
pub(super) struct Core<A: Algorithm> {
    pub(super) algorithm: Arc<A>,
    sync_interval: Duration,
    state: Mutex<State<A>>,
    /// Held by every sync, so that a key has at most one delivery in flight.
    sync_lock: tokio::sync::Mutex<()>,
    task_started: AtomicBool,
    /// Set by `close()` or the limiter's drop: no call is accepted any more.
    closed: AtomicBool,
    /// How long the limiter's drop waits for the final delivery.
    drop_bound: Duration,
    /// Alive while the background task runs (the task owns the only strong reference).
    task_alive: Mutex<Weak<()>>,
    this: Weak<Core<A>>,
}

/// Ends the warming of a key when its strict call ends (or is cancelled): forgets the key
/// unless the call warmed it, and wakes the calls waiting for it.
struct Warming<'a, A: Algorithm> {
    core: &'a Core<A>,
    key: &'a DistkitRedisKey,
    notify: Arc<Notify>,
}

impl<A: Algorithm> Warming<'_, A> {
    /// The key's entry, if this warming is still its warming (a `reset` meanwhile forgets
    /// the entry; a later call may then warm a new one).
    fn entry<'s>(&self, state: &'s mut State<A>) -> Option<&'s mut Entry<A>> {
        state.keys.get_mut(self.key).filter(|entry| {
            entry
                .warming
                .as_ref()
                .is_some_and(|warming| Arc::ptr_eq(warming, &self.notify))
        })
    }
}

impl<A: Algorithm> Drop for Warming<'_, A> {
    fn drop(&mut self) {
        let mut state = self.core.state();
        if let Some(entry) = self.entry(&mut state) {
            entry.warming = None;
            if !entry.warm {
                state.keys.remove(self.key);
            }
        }
        drop(state);
        self.notify.notify_waiters();
    }
}

impl<A: Algorithm> Core<A> {
    /// A core for `algorithm`, its sync task started on the library's background runtime;
    /// the limiter's drop waits up to `drop_bound` for the final delivery.
    pub(super) fn new(algorithm: A, sync_interval: Duration, drop_bound: Duration) -> Arc<Self> {
        let core = Arc::new_cyclic(|this| Self {
            algorithm: Arc::new(algorithm),
            sync_interval,
            state: Mutex::new(State::default()),
            sync_lock: tokio::sync::Mutex::new(()),
            task_started: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            drop_bound,
            task_alive: Mutex::new(Weak::new()),
            this: this.clone(),
        });
        core.start();
        core
    }

    pub(super) fn sync_interval(&self) -> Duration {
        self.sync_interval
    }

    pub(super) fn tracked_keys(&self) -> usize {
        self.state().keys.len()
    }

    /// `Err(Closed)` once the limiter was closed.
    fn ensure_open(&self) -> Result<(), DistkitError> {
        if self.closed.load(Ordering::Acquire) {
            Err(DistkitError::Closed)
        } else {
            Ok(())
        }
    }

    /// A call: in memory on a warm key, the algorithm's strict call on a cold one. Refused
    /// with `Closed` after `close()`; a cost admitted in memory while `close()` ran is
    /// delivered before the decision is returned.
    pub(super) async fn check(
        &self,
        key: &DistkitRedisKey,
        params: &A::Params,
        cost: u64,
    ) -> Result<Decision, DistkitError> {
        self.ensure_open()?;
        let decision = self.decide(key, params, cost).await?;
        if decision.is_allowed() && self.closed.load(Ordering::Acquire) {
            Box::pin(self.flush()).await?;
        }
        Ok(decision)
    }

    /// The decision a cost-1 call would get now, nothing charged: from the view of a warm
    /// key (in memory), from the strict limiter's peek on a cold one (which stays cold).
    pub(super) async fn peek(
        &self,
        key: &DistkitRedisKey,
        params: &A::Params,
    ) -> Result<Decision, DistkitError> {
        self.ensure_open()?;
        self.algorithm.check_call(params, 1)?;
        let in_memory = {
            let state = self.state();
            state.keys.get(key).filter(|entry| entry.warm).map(|entry| {
                let mut view = entry.view.clone();
                self.algorithm.decide(&mut view, entry.unsent(), params, 1)
            })
        };
        match in_memory {
            Some(decision) => Ok(decision),
            None => self.algorithm.peek_strict(key, params).await,
        }
    }

    /// Stops accepting calls, delivers every admitted unit, and stops the sync task.
    pub(super) async fn close(&self) -> Result<(), DistkitError> {
        self.closed.store(true, Ordering::Release);
        let (_confirmed, error) = self.sync_cycle().await;
        error.map_or(Ok(()), Err)
    }

    /// The limiter's drop: stops accepting calls and delivers what is pending before
    /// returning where the thread may block (bounded), else in the background; what it
    /// cannot deliver is left to the core's own drop (a detached delivery that retries).
    pub(super) fn finish_on_drop(self: &Arc<Self>) {
        self.closed.store(true, Ordering::Release);
        let settled = self
            .state()
            .keys
            .values()
            .all(|entry| !entry.warm || entry.is_settled());
        if settled {
            return;
        }
        let core = Arc::clone(self);
        let outcome = distkit_core::task::finish_before_returning(
            async move {
                let (_confirmed, error) = core.sync_cycle().await;
                if let Some(error) = error {
                    tracing::warn!(target: "distkit::ratelimit", %error, limiter = A::NAME, "the final sync of a dropped lax limiter failed; it is retried in the background");
                }
            },
            self.drop_bound,
        );
        if outcome == distkit_core::task::DropWork::TimedOut {
            tracing::warn!(target: "distkit::ratelimit",
                limiter = A::NAME,
                "the final sync of a dropped lax limiter did not finish in time; it goes on in the background"
            );
        }
    }

    /// The decision of a call (see [`check`](Self::check)).
    async fn decide(
        &self,
        key: &DistkitRedisKey,
        params: &A::Params,
        cost: u64,
    ) -> Result<Decision, DistkitError> {
        self.algorithm.check_call(params, cost)?;
        self.start();
        let notify = loop {
            let waiting_for = {
                let mut state = self.state();
                let tick = state.tick;
                let entry = state.keys.entry(key.clone()).or_default();
                entry.last_used = tick;
                if entry.warm {
                    let unsent = entry.unsent();
                    let decision = self.algorithm.decide(&mut entry.view, unsent, params, cost);
                    if decision.is_allowed() {
                        entry.pending = entry.pending.saturating_add(cost);
                    }
                    return Ok(decision);
                }
                match &entry.warming {
                    Some(notify) => Arc::clone(notify),
                    None => {
                        let notify = Arc::new(Notify::new());
                        entry.warming = Some(Arc::clone(&notify));
                        break notify;
                    }
                }
            };
            // Another call warms the key: wait for it, then decide again. Registered before
            // checking that the warming still runs, so its end cannot be missed.
            let mut notified = std::pin::pin!(waiting_for.notified());
            notified.as_mut().enable();
            let still_warming = self
                .state()
                .keys
                .get(key)
                .and_then(|entry| entry.warming.as_ref())
                .is_some_and(|warming| Arc::ptr_eq(warming, &waiting_for));
            if still_warming {
                notified.await;
            }
        };
        // This call warms the key: nothing of this object is pending for it, so the strict
        // decision sees every unit this object admitted.
        let warming = Warming {
            core: self,
            key,
            notify,
        };
        let (decision, view) = self.algorithm.warm(key, params, cost).await?;
        if let Some(entry) = warming.entry(&mut self.state()) {
            entry.view = view;
            entry.warm = true;
        }
        drop(warming);
        Ok(decision)
    }

    /// Syncs every tracked key now.
    pub(super) async fn flush(&self) -> Result<(), DistkitError> {
        if !self.closed.load(Ordering::Acquire) {
            self.start();
        }
        let (_confirmed, error) = self.sync_cycle().await;
        error.map_or(Ok(()), Err)
    }

    /// Forgets `key` locally (waking the calls waiting for its warming) and on the server.
    pub(super) async fn reset(&self, key: &DistkitRedisKey) -> Result<(), DistkitError> {
        self.ensure_open()?;
        let _serial = self.sync_lock.lock().await;
        let forgotten = self.state().keys.remove(key);
        // Calls waiting for a warming of the key decide again (the warming ends unnoticed).
        if let Some(notify) = forgotten.and_then(|entry| entry.warming) {
            notify.notify_waiters();
        }
        self.algorithm.reset(key).await
    }

    /// The sync task's liveness: alive while the task runs (tests only).
    #[cfg(test)]
    pub(super) fn task_alive(&self) -> Weak<()> {
        self.task_alive
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn state(&self) -> MutexGuard<'_, State<A>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts the sync task on the library's background runtime, once.
    fn start(&self) {
        if self.task_started.load(Ordering::Acquire)
            || self
                .task_started
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
        {
            return;
        }
        let alive = Arc::new(());
        let watch = Arc::downgrade(&alive);
        let task = run_sync_task(self.this.clone(), self.sync_interval, alive);
        if distkit_core::task::spawn_background(task).is_some() {
            *self
                .task_alive
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = watch;
        } else {
            // No runtime at all: the next call tries again.
            self.task_started.store(false, Ordering::Release);
        }
    }

    /// One sync cycle: takes the deliveries, sends them, records the replies; returns how
    /// many were confirmed and the first error.
    async fn sync_cycle(&self) -> (usize, Option<DistkitError>) {
        let _serial = self.sync_lock.lock().await;
        let deliveries = self.take_deliveries();
        if deliveries.is_empty() {
            return (0, None);
        }
        let span = tracing::debug_span!(
            "distkit.ratelimit.sync",
            limiter = A::NAME,
            keys = deliveries.len()
        );
        let results = send_all(&self.algorithm, deliveries).instrument(span).await;
        let mut first_error = None;
        let mut confirmed = 0_usize;
        let mut state = self.state();
        for (delivery, result) in results {
            match result {
                Ok(synced) => {
                    self.confirm(&mut state, &delivery, synced);
                    confirmed = confirmed.saturating_add(1);
                }
                Err(error) => {
                    self.keep_or_drop(&mut state, &delivery);
                    if first_error.is_none() {
                        first_error = Some(error.about_key("rate limiter key", &delivery.key));
                    }
                }
            }
        }
        drop(state);
        (confirmed, first_error)
    }

    /// Advances the clock, forgets idle keys, and takes one delivery per warm key: the one
    /// in flight again, else the pending units (possibly none: a read-back).
    fn take_deliveries(&self) -> Vec<Delivery<A::Info>> {
        let mut state = self.state();
        state.tick = state.tick.saturating_add(1);
        let tick = state.tick;
        state.keys.retain(|_, entry| {
            entry.warming.is_some()
                || (entry.warm
                    && !(entry.is_settled() && tick.saturating_sub(entry.last_used) > IDLE_SYNCS))
        });
        let mut sequence = state.sequence;
        let mut deliveries = Vec::new();
        let now = Instant::now();
        for (key, entry) in &mut state.keys {
            if !entry.warm {
                continue;
            }
            let flight = match &entry.in_flight {
                Some(flight) if flight.units > 0 => flight.clone(),
                _ => {
                    sequence = sequence.saturating_add(1);
                    let flight = InFlight {
                        sequence,
                        units: entry.pending,
                        info: self.algorithm.info(&entry.view),
                        first_sent: now,
                    };
                    entry.pending = 0;
                    entry.in_flight = Some(flight.clone());
                    flight
                }
            };
            deliveries.push(Delivery {
                key: key.clone(),
                sequence: flight.sequence,
                units: flight.units,
                info: flight.info,
            });
        }
        state.sequence = sequence;
        deliveries
    }

    /// Records a confirmed delivery in the key's view.
    fn confirm(&self, state: &mut State<A>, delivery: &Delivery<A::Info>, synced: A::Synced) {
        let Some(entry) = state.keys.get_mut(&delivery.key) else {
            return;
        };
        if entry
            .in_flight
            .as_ref()
            .is_none_or(|flight| flight.sequence != delivery.sequence)
        {
            return;
        }
        entry.in_flight = None;
        self.algorithm
            .confirm(&mut entry.view, synced, entry.pending);
    }

    /// After a failed delivery: a read-back is forgotten, units are resent by the next sync
    /// unless their first send is older than the algorithm's give-up time (then they no
    /// longer limit anything: dropped).
    fn keep_or_drop(&self, state: &mut State<A>, delivery: &Delivery<A::Info>) {
        let Some(entry) = state.keys.get_mut(&delivery.key) else {
            return;
        };
        let Some(flight) = &entry.in_flight else {
            return;
        };
        if flight.sequence != delivery.sequence {
            return;
        }
        if flight.units == 0 {
            entry.in_flight = None;
        } else if flight.first_sent.elapsed() > self.algorithm.give_up_after(&flight.info) {
            tracing::warn!(target: "distkit::ratelimit",
                limiter = A::NAME,
                key = %delivery.key,
                units = flight.units,
                "a lax limiter delivery was not confirmed in time; its units no longer limit \
                 anything and are dropped"
            );
            entry.in_flight = None;
        }
    }
}

/// Sends `deliveries` concurrently (in chunks), on the current runtime when there is one;
/// returns each with its result.
async fn send_all<A: Algorithm>(
    algorithm: &Arc<A>,
    deliveries: Vec<Delivery<A::Info>>,
) -> Vec<(Delivery<A::Info>, Result<A::Synced, DistkitError>)> {
    let mut results = Vec::with_capacity(deliveries.len());
    if tokio::runtime::Handle::try_current().is_err() {
        for delivery in deliveries {
            let result = algorithm.send(&delivery).await;
            results.push((delivery, result));
        }
        return results;
    }
    let mut rest = deliveries.into_iter().peekable();
    while rest.peek().is_some() {
        let mut set = JoinSet::new();
        for delivery in rest.by_ref().take(MAX_CONCURRENT_DELIVERIES) {
            let algorithm = Arc::clone(algorithm);
            set.spawn(async move {
                let result = algorithm.send(&delivery).await;
                (delivery, result)
            });
        }
        while let Some(joined) = set.join_next().await {
            match joined {
                Ok(result) => results.push(result),
                // Its delivery stays in flight and is resent by the next sync.
                Err(error) => {
                    tracing::error!(target: "distkit::ratelimit", %error, limiter = A::NAME, "a lax limiter delivery task failed");
                }
            }
        }
    }
    results
}

impl<A: Algorithm> Drop for Core<A> {
    /// The final, detached delivery of a dropped limiter (best effort, never panics).
    fn drop(&mut self) {
        let state = std::mem::take(self.state.get_mut().unwrap_or_else(PoisonError::into_inner));
        let mut sequence = state.sequence;
        let mut per_key = Vec::new();
        for (key, entry) in state.keys {
            let mut deliveries = Vec::new();
            if let Some(flight) = entry.in_flight.filter(|flight| flight.units > 0) {
                deliveries.push(Delivery {
                    key: key.clone(),
                    sequence: flight.sequence,
                    units: flight.units,
                    info: flight.info,
                });
            }
            if entry.pending > 0 {
                sequence = sequence.saturating_add(1);
                deliveries.push(Delivery {
                    key,
                    sequence,
                    units: entry.pending,
                    info: self.algorithm.info(&entry.view),
                });
            }
            if !deliveries.is_empty() {
                per_key.push(deliveries);
            }
        }
        if per_key.is_empty() {
            return;
        }
        let task = deliver_finally(Arc::clone(&self.algorithm), per_key);
        if distkit_core::task::spawn_background(task).is_none() {
            tracing::error!(target: "distkit::ratelimit",
                limiter = A::NAME,
                "a lax limiter with undelivered units was dropped with no runtime to deliver \
                 them; they are lost"
            );
        }
    }
}

/// Delivers what a dropped limiter left, each key's deliveries in order, retrying for
/// [`FINAL_SYNC_PATIENCE`].
async fn deliver_finally<A: Algorithm>(algorithm: Arc<A>, per_key: Vec<Vec<Delivery<A::Info>>>) {
    let deadline = Instant::now().checked_add(FINAL_SYNC_PATIENCE);
    let mut set = JoinSet::new();
    for deliveries in per_key {
        let algorithm = Arc::clone(&algorithm);
        set.spawn(async move {
            let mut backoff = Backoff::new(Duration::from_millis(20), MAX_BACKOFF);
            for delivery in deliveries {
                loop {
                    match algorithm.send(&delivery).await {
                        Ok(_) => break,
                        Err(error) => {
                            let delay = backoff.next_delay();
                            let resume = Instant::now().checked_add(delay);
                            if deadline.is_none_or(|deadline| resume.is_none_or(|at| at > deadline))
                            {
                                tracing::error!(target: "distkit::ratelimit",
                                    %error,
                                    limiter = A::NAME,
                                    key = %delivery.key,
                                    units = delivery.units,
                                    "the final delivery of a dropped lax limiter failed; its \
                                     units are lost"
                                );
                                return;
                            }
                            tokio::time::sleep(delay).await;
                        }
                    }
                }
            }
        });
    }
    while set.join_next().await.is_some() {}
}

async fn run_sync_task<A: Algorithm>(owner: Weak<Core<A>>, interval: Duration, alive: Arc<()>) {
    let mut backoff = Backoff::new(interval, MAX_BACKOFF.max(interval));
    let mut delay = interval;
    loop {
        tokio::time::sleep(delay).await;
        let Some(owner) = owner.upgrade() else { break };
        if owner.closed.load(Ordering::Acquire) {
            break;
        }
        delay = match owner.sync_cycle().await {
            (_, None) => {
                backoff.reset();
                interval
            }
            // Some keys synced (the others hold data distkit did not write, say): the
            // cadence stays, so that their views stay fresh.
            (confirmed, Some(error)) if confirmed > 0 => {
                backoff.reset();
                tracing::warn!(target: "distkit::ratelimit", %error, limiter = A::NAME, "lax limiter sync failed for some keys; their units are kept");
                interval
            }
            (_, Some(error)) => {
                let delay = backoff.next_delay();
                tracing::warn!(target: "distkit::ratelimit", %error, limiter = A::NAME, retry_in = ?delay, "lax limiter sync failed; its units are kept");
                delay
            }
        };
        drop(owner);
    }
    drop(alive);
}
