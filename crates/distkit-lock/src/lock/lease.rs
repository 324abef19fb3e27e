//! The lease behind every guard: background renewal, the guard state, `extend`, `release`
//! and the release on drop.

use std::sync::{Arc, Mutex as StdMutex, PoisonError};
use std::time::{Duration, Instant};

use distkit_core::fred::bytes_utils::Str;
use distkit_core::fred::clients::Client;
use distkit_core::fred::types::Value;
use distkit_core::script::{CallPolicy, LuaScript};
use distkit_core::{DistkitError, LockError, ReplicaAcks};
use tokio::sync::Notify;
use tracing::Instrument;

use super::acquire::Attempt;
use super::notify::ReleaseNotifier;
use super::observe::{self, LockKind};
use super::renewal::{QueueSlot, RenewalScheduler};
use super::{LockGuardState, Reply, decode_grant};
use crate::scripts::{
    MUTEX_RELEASE, OWNER_EXTEND, RW_EXTEND_READ, RW_RELEASE_READ, RW_RELEASE_WRITE,
};

/// What kind of entry a lease is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LeaseKind {
    /// The writer of a rwlock: an owner key holding the token (`keys[0]`), then the
    /// rwlock's fence and epoch keys.
    Owner,
    /// A mutex: its owner key (`keys[0]`) and its line of waiters (the seven mutex keys); a
    /// release hands the lock to the first waiter.
    Mutex,
    /// A reader entry of a rwlock (`keys` are the eight rwlock keys).
    Reader,
    /// The permits of a semaphore holder (`keys` are the eight semaphore keys).
    #[cfg(feature = "semaphore")]
    Permit,
}

/// Where a lease lives in Redis.
#[derive(Debug)]
pub(crate) struct LeaseTarget {
    /// The lock's name, `<namespace>:{<key>}`, for error messages.
    pub(crate) lock: std::sync::Arc<str>,
    pub(crate) client: Client,
    pub(crate) kind: LeaseKind,
    /// Shared with the lock object (made once, at its construction, by `key_values`: a
    /// call shares their bytes rather than copying them).
    pub(crate) keys: Arc<[Value]>,
    /// The release script's `ARGV[2]`: for a mutex, its release channel (which names the
    /// lock in handover announcements); for a rwlock, where to announce a release (see
    /// `ReleaseNotifier::announce_target`).
    pub(crate) channel: String,
    /// The token, made once for the attempts, renewals and the release of one acquisition.
    pub(crate) token: Str,
    pub(crate) ttl: Duration,
    /// The loss-guard argument of the release script (`'1'` with
    /// [`LockOptions::loss_quarantine`](super::LockOptions::loss_quarantine)).
    pub(crate) loss_guard: &'static str,
    /// [`LockOptions::replica_acks`](super::LockOptions::replica_acks).
    pub(crate) replica_acks: Option<ReplicaAcks>,
    /// The retention of the fence and epoch keys after a grant or renewal, in ms (see
    /// [`LockOptions::key_retention`](super::LockOptions::key_retention)).
    pub(crate) keep_ms: i64,
}

/// The text of a key made by `key_values` (`""` for a value that is not a string).
pub(crate) fn key_text(key: &Value) -> &str {
    match key {
        Value::String(text) => text,
        _ => "",
    }
}

/// Runs `script`, then, with `acks`, waits for the replicas (`LuaScript::run_acknowledged`);
/// returns the reply and, when fewer replicas acknowledged than asked for, the
/// [`LockError::NotReplicated`] to report if the reply granted something.
async fn run_script(
    lock: &str,
    client: &Client,
    acks: Option<ReplicaAcks>,
    script: &LuaScript,
    keys: &[Value],
    args: Vec<Value>,
    policy: CallPolicy,
) -> Result<(Value, Option<LockError>), DistkitError> {
    let Some(acks) = acks else {
        return Ok((
            script.run_with_keys(client, keys, args, policy).await?,
            None,
        ));
    };
    // Boxed: the paired EVALSHA + WAIT future is large, and every lease operation's future
    // would otherwise carry it inline.
    let (reply, acknowledged) =
        Box::pin(script.run_acknowledged_with_keys(client, keys, args, policy, acks)).await?;
    let shortfall = (acknowledged < acks.replicas).then(|| LockError::NotReplicated {
        key: lock.to_owned(),
        acknowledged,
        required: acks.replicas,
    });
    Ok((reply, shortfall))
}

impl LeaseKind {
    /// The lock kind this lease is for, for spans and metrics.
    fn lock_kind(self) -> LockKind {
        match self {
            Self::Owner => LockKind::Write,
            Self::Mutex => LockKind::Mutex,
            Self::Reader => LockKind::Read,
            #[cfg(feature = "semaphore")]
            Self::Permit => LockKind::Semaphore,
        }
    }
}

impl LeaseTarget {
    /// The Redis key that names the lease's lock (the owner key; for a reader, the writer
    /// key of its rwlock).
    fn lock_key(&self) -> &str {
        self.keys.first().map_or("", key_text)
    }

    fn ttl_ms(&self) -> i64 {
        i64::try_from(self.ttl.as_millis()).unwrap_or(i64::MAX)
    }

    fn all_keys(&self) -> &[Value] {
        &self.keys
    }

    fn owner_key(&self) -> &[Value] {
        self.leading_keys(1)
    }

    /// The first `count` keys (all of them when there are fewer).
    fn leading_keys(&self, count: usize) -> &[Value] {
        self.keys.get(..count).unwrap_or(&self.keys)
    }

    /// `owner_extend`'s keys: the owner key, then the fence and the epoch it keeps for
    /// their retention.
    fn owner_extend_keys(&self) -> Vec<Value> {
        let picked: &[usize] = match self.kind {
            // owner, fence, waitlist, waiters, handover, epoch, quarantine (the last two only
            // with the loss guard on)
            LeaseKind::Mutex => &[0, 1, 5],
            // writer, fence, epoch (see `RwLock::attempt_write`)
            LeaseKind::Owner => &[0, 1, 2],
            // (A reader renews with `rw_extend_read`, which takes every rwlock key.)
            LeaseKind::Reader => &[],
            // (A permit renews with `semaphore_extend`, which takes every semaphore key.)
            #[cfg(feature = "semaphore")]
            LeaseKind::Permit => &[],
        };
        picked
            .iter()
            .filter_map(|&index| self.keys.get(index).cloned())
            .collect()
    }

    /// Renews the lease to a full ttl if it still holds the token (`owner_extend` or
    /// `rw_extend_read`, atomic). Idempotent, so it may be replayed after a reconnect.
    ///
    /// With replica acknowledgement, a renewal that too few replicas acknowledged is an
    /// error ([`LockError::NotReplicated`]): it confirms nothing.
    pub(crate) async fn extend_once(&self, timeout: Duration) -> Result<bool, DistkitError> {
        let (script, keys): (&LuaScript, _) = match self.kind {
            LeaseKind::Owner | LeaseKind::Mutex => (&OWNER_EXTEND, self.owner_extend_keys()),
            LeaseKind::Reader => (&RW_EXTEND_READ, self.all_keys().to_vec()),
            #[cfg(feature = "semaphore")]
            LeaseKind::Permit => (&crate::scripts::SEMAPHORE_EXTEND, self.all_keys().to_vec()),
        };
        let args = vec![
            Value::String(self.token.clone()),
            Value::from(self.ttl_ms()),
            Value::from(self.keep_ms),
        ];
        let (reply, shortfall) = run_script(
            &self.lock,
            &self.client,
            self.replica_acks,
            script,
            &keys,
            args,
            CallPolicy::RETRY.with_timeout(timeout),
        )
        .await?;
        let renewed = reply.as_i64() == Some(1);
        match shortfall {
            Some(error) if renewed => Err(error.into()),
            _ => Ok(renewed),
        }
    }

    /// Deletes the lease if it still holds the token and announces the release
    /// (`mutex_release`, `rw_release_write` or `rw_release_read`, atomic, sent once).
    pub(crate) async fn release_once(&self) -> Result<bool, DistkitError> {
        let (script, keys): (&LuaScript, _) = match self.kind {
            LeaseKind::Owner => (&RW_RELEASE_WRITE, self.owner_key()),
            LeaseKind::Mutex => (&MUTEX_RELEASE, self.all_keys()),
            // `rw_release_read` reads the writer, readers and queue keys only.
            LeaseKind::Reader => (&RW_RELEASE_READ, self.leading_keys(3)),
            #[cfg(feature = "semaphore")]
            LeaseKind::Permit => (&crate::scripts::SEMAPHORE_RELEASE, self.all_keys()),
        };
        let args = if self.kind == LeaseKind::Mutex {
            // The token, the retention of the fence of a handover to the next waiter, and
            // only with the loss guard on, the guard of that handover (see
            // `mutex_release.lua`): the lock's name comes from its key, in the script.
            let mut args = vec![Value::String(self.token.clone()), Value::from(self.keep_ms)];
            if self.loss_guard == "1" {
                args.extend([
                    Value::from_static_str(self.loss_guard),
                    Value::from(self.ttl_ms()),
                ]);
            }
            args
        } else {
            vec![
                Value::String(self.token.clone()),
                Value::from(self.channel.as_str()),
            ]
        };
        let reply = script
            .run_with_keys(&self.client, keys, args, CallPolicy::ONCE)
            .await?;
        // `mutex_release` replies `{ code, token, inbox }` when waiters were in line: `token`
        // got the lock, and its announcement went to `inbox`; when that inbox is a client's
        // in this process, its waiters of the token are woken at once.
        let code = match &reply {
            Value::Array(parts) => {
                if let (Some(token), Some(inbox)) = (
                    parts.get(1).and_then(Value::as_str),
                    parts.get(2).and_then(Value::as_str),
                ) {
                    ReleaseNotifier::wake_handover_in_process(&self.channel, &token, &inbox);
                }
                parts.first().and_then(Value::as_i64)
            }
            other => other.as_i64(),
        };
        match code {
            Some(1) => Ok(true),
            // Released, but the announcement was refused (the release scripts publish last,
            // so their writes stand): waiters find the lock by polling.
            Some(2) => {
                announcement_refused(&self.channel);
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

/// Logs that Redis refused a release's announcement to the waiters (an ACL without the
/// lock's channels): at WARN the first time in the process, at DEBUG afterwards.
fn announcement_refused(channel: &str) {
    static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
        tracing::debug!(target: "distkit::lock",
            channel,
            "a lock release was announced to nobody: PUBLISH refused"
        );
    } else {
        tracing::warn!(target: "distkit::lock",
            channel,
            "a lock release was applied, but Redis refused to announce it to the waiters (an \
             ACL without the namespace's channels?): waiters fall back to polling; grant \
             `&<namespace>:*` (logged once)"
        );
    }
}

/// What the holder knows about its lease.
#[derive(Debug)]
struct Health {
    released: bool,
    refused: bool,
    /// A loss of the lease (a refused renewal, or a lapse) was logged since the last
    /// confirmation: it is logged once, not at every renewal.
    loss_logged: bool,
    /// When the last confirmed renewal (or the acquisition) was *sent*: the lease in Redis
    /// runs at least `valid_for` from then, so a holder that counts from here learns of a
    /// lapse no later than Redis expires the key.
    confirmed_at: Instant,
    /// The lease the last confirmation guarantees (the ttl).
    valid_for: Duration,
}

/// A lease as the guard and the renewal scheduler share it.
#[derive(Debug)]
pub(crate) struct LeaseShared {
    target: LeaseTarget,
    health: StdMutex<Health>,
    /// Its place in the renewal queue, while it has one.
    slot: StdMutex<Option<QueueSlot>>,
    /// Notified whenever `health` changes, for [`Lease::lost`].
    changed: Notify,
}

impl LeaseShared {
    /// Records the outcome of a renewal sent at `sent_at`; returns whether it is the first
    /// refusal since the last confirmation (to be logged).
    fn record_renewal(&self, sent_at: Instant, renewed: bool) -> bool {
        let first_refusal = {
            let mut health = self.health.lock().unwrap_or_else(PoisonError::into_inner);
            if renewed {
                health.refused = false;
                if sent_at > health.confirmed_at {
                    health.confirmed_at = sent_at;
                    health.valid_for = self.target.ttl;
                    health.loss_logged = false;
                }
                false
            } else {
                health.refused = true;
                !std::mem::replace(&mut health.loss_logged, true)
            }
        };
        self.changed.notify_waiters();
        first_refusal
    }

    /// Whether the lease has lapsed (no renewal confirmed for its safe lifetime) and that was
    /// not logged yet; marks it logged.
    fn first_lapse(&self) -> bool {
        let mut health = self.health.lock().unwrap_or_else(PoisonError::into_inner);
        let lapsed = health.confirmed_at.elapsed() >= safe_lifetime(health.valid_for);
        lapsed && !std::mem::replace(&mut health.loss_logged, true)
    }

    fn mark_released(&self) {
        self.health
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .released = true;
        self.changed.notify_waiters();
    }
}

/// The lease of one guard.
#[derive(Debug)]
pub(crate) struct Lease {
    shared: Arc<LeaseShared>,
    scheduler: Arc<RenewalScheduler>,
    fencing_token: u64,
    attempt: usize,
    finished: bool,
}

/// How long a lease may go unconfirmed before it is `Lost`: the ttl less a 1 % allowance for
/// the local clock running slower than the server's.
fn safe_lifetime(ttl: Duration) -> Duration {
    ttl.saturating_sub(ttl.checked_div(100).unwrap_or_default())
}

/// The renewal period: a third of the ttl, at least 1 ms.
fn renewal_period(ttl: Duration) -> Duration {
    ttl.checked_div(3)
        .unwrap_or_default()
        .max(Duration::from_millis(1))
}

impl Lease {
    /// Queues the renewal of a lease of a full ttl granted by Redis after a request sent at
    /// `sent_at` (an attempt took the lock, or confirmed a handover to it, which renews the
    /// handover's provisional lease to a full ttl). Must be called within a Tokio runtime
    /// (acquisition is async, so it always is).
    pub(crate) fn start(
        scheduler: &Arc<RenewalScheduler>,
        target: LeaseTarget,
        sent_at: Instant,
        fencing_token: u64,
        attempt: usize,
    ) -> Self {
        let scheduler = Arc::clone(scheduler);
        let valid_for = target.ttl;
        let shared = Arc::new(LeaseShared {
            target,
            health: StdMutex::new(Health {
                released: false,
                refused: false,
                loss_logged: false,
                confirmed_at: sent_at,
                valid_for,
            }),
            slot: StdMutex::new(None),
            changed: Notify::new(),
        });
        // The first renewal comes a third into the lease, like every later one.
        queue(
            &scheduler,
            &shared,
            sent_at
                .checked_add(renewal_period(valid_for))
                .unwrap_or(sent_at),
        );
        Self {
            shared,
            scheduler,
            fencing_token,
            attempt,
            finished: false,
        }
    }

    pub(crate) fn state(&self) -> LockGuardState {
        let health = self
            .shared
            .health
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if health.released {
            LockGuardState::Released
        } else if health.refused || health.confirmed_at.elapsed() >= safe_lifetime(health.valid_for)
        {
            LockGuardState::Lost
        } else {
            LockGuardState::Acquired
        }
    }

    /// Completes once the state is no longer `Acquired`: a renewal was refused, none was
    /// confirmed for the safe lifetime of the lease, or the lease was released.
    pub(crate) async fn lost(&self) {
        loop {
            let changed = self.shared.changed.notified();
            let mut changed = std::pin::pin!(changed);
            // Registered before the state is read: no change between the two is missed.
            changed.as_mut().enable();
            let lapses_at = {
                let health = self
                    .shared
                    .health
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                if health.released || health.refused {
                    return;
                }
                let lapses_at = health
                    .confirmed_at
                    .checked_add(safe_lifetime(health.valid_for));
                if lapses_at.is_some_and(|lapses_at| lapses_at <= Instant::now()) {
                    return;
                }
                lapses_at
            };
            match lapses_at {
                Some(lapses_at) => {
                    let _ = tokio::time::timeout_at(lapses_at.into(), changed).await;
                }
                None => changed.await,
            }
        }
    }

    pub(crate) fn fencing_token(&self) -> u64 {
        self.fencing_token
    }

    pub(crate) fn attempt(&self) -> usize {
        self.attempt
    }

    /// The compact `Debug` output of a guard named `name` on the lock `lock`.
    pub(crate) fn debug_guard(
        &self,
        f: &mut std::fmt::Formatter<'_>,
        name: &str,
        lock: &str,
    ) -> std::fmt::Result {
        f.debug_struct(name)
            .field("lock", &lock)
            .field("state", &self.state())
            .field("fencing_token", &self.fencing_token)
            .field("attempt", &self.attempt)
            .finish_non_exhaustive()
    }

    pub(crate) async fn extend(&self) -> Result<(), DistkitError> {
        let sent_at = Instant::now();
        let renewed = self
            .shared
            .target
            .extend_once(self.shared.target.ttl)
            .await?;
        if self.shared.record_renewal(sent_at, renewed) {
            observe::lease_lost(self.shared.target.kind.lock_kind(), "refused");
            tracing::warn!(target: "distkit::lock",
                lock = self.shared.target.lock_key(),
                kind = self.shared.target.kind.lock_kind().as_str(),
                token = &*self.shared.target.token,
                "lock lease extension refused: the lease is lost"
            );
        }
        if renewed {
            Ok(())
        } else {
            Err(LockError::NotOwner.into())
        }
    }

    pub(crate) async fn release(mut self) -> Result<LockGuardState, DistkitError> {
        // Only once the release has an outcome: a release cancelled before (e.g. between a
        // `NOSCRIPT` reply and the `EVAL` that follows it) is done by the drop, in the
        // background. Releasing twice is harmless: a release acts only on its own token.
        let released = self.shared.target.release_once().await;
        self.finished = true;
        self.shared.mark_released();
        Ok(if released? {
            LockGuardState::Released
        } else {
            LockGuardState::Lost
        })
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        {
            // Same lock order as `queue`: the slot, then the health.
            let mut slot = self
                .shared
                .slot
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            self.shared.mark_released();
            if let Some(slot) = slot.take() {
                self.scheduler.withdraw(slot);
            }
        }
        if self.finished {
            return;
        }
        let shared = Arc::clone(&self.shared);
        // Released from the library's background runtime, never from the caller's (which may
        // be ending); waited for where the thread may block (a multi-thread runtime, or
        // none), so the lock is free when the drop returns. See `distkit_core::task`.
        let bound = distkit_core::task::drop_bound(&self.shared.target.client);
        let outcome = distkit_core::task::finish_before_returning(
            async move {
                if let Err(error) = shared.target.release_once().await {
                    tracing::warn!(target: "distkit::lock", %error, "releasing a dropped lock guard failed; the lease expires after its ttl");
                }
            },
            bound,
        );
        if outcome == distkit_core::task::DropWork::NotStarted {
            tracing::warn!(target: "distkit::lock",
                "a dropped lock guard could not be released (no runtime); the lease expires after its ttl"
            );
        }
    }
}

/// One renewal of a due lease, then its next turn in the queue.
pub(crate) async fn renew_once(shared: Arc<LeaseShared>, scheduler: Arc<RenewalScheduler>) {
    if shared
        .health
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .released
    {
        return;
    }
    let period = renewal_period(shared.target.ttl);
    let sent_at = Instant::now();
    let kind = shared.target.kind.lock_kind();
    let span = tracing::debug_span!(
        "distkit.lock.renew",
        lock = shared.target.lock_key(),
        kind = kind.as_str(),
    );
    // One WARN per loss (refused, or lapsed while renewals fail), not one per renewal: a
    // guard kept after its loss would otherwise log every ttl/3 for as long as it lives.
    match shared
        .target
        .extend_once(period)
        .instrument(span.clone())
        .await
    {
        Ok(renewed) => {
            if shared.record_renewal(sent_at, renewed) {
                observe::lease_lost(kind, "refused");
                tracing::warn!(target: "distkit::lock",
                    parent: &span,
                    token = &*shared.target.token,
                    "lock lease renewal refused: the lease is lost"
                );
            }
        }
        Err(error) if shared.first_lapse() => {
            observe::lease_lost(kind, "lapsed");
            tracing::warn!(target: "distkit::lock",
                parent: &span,
                %error,
                token = &*shared.target.token,
                "lock lease renewals failed for a whole ttl: the lease is presumed lost; retrying"
            );
        }
        Err(error) => {
            tracing::debug!(target: "distkit::lock", parent: &span, %error, "lock lease renewal failed; retrying");
        }
    }
    let next = sent_at
        .checked_add(period)
        .unwrap_or(sent_at)
        .max(Instant::now());
    queue(&scheduler, &shared, next);
}

/// Queues `shared` for its next renewal, unless its guard is gone.
fn queue(scheduler: &Arc<RenewalScheduler>, shared: &Arc<LeaseShared>, at: Instant) {
    let mut slot = shared.slot.lock().unwrap_or_else(PoisonError::into_inner);
    if shared
        .health
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .released
    {
        return;
    }
    *slot = Some(scheduler.schedule(shared, at));
}

/// Releases what an acquisition attempt may have taken when the attempt is abandoned
/// before its outcome is known (cancelled, or cut off by a transport error).
///
/// Only for per-acquisition tokens: with an explicit owner id the next acquisition re-attaches
/// to whatever an abandoned attempt took, and a background release could delete it under the
/// new guard.
#[derive(Debug)]
pub(crate) struct AttemptGuard {
    target: Option<LeaseTarget>,
    armed: bool,
}

/// What a winning attempt got from Redis.
#[derive(Debug)]
pub(crate) struct Won {
    /// What the lease renews and releases.
    pub(crate) target: LeaseTarget,
    /// When the attempt was sent: the lease runs at least from then.
    pub(crate) sent_at: Instant,
    /// The fencing token Redis issued.
    pub(crate) fencing_token: u64,
    /// Whether the attempt confirmed a handover to its token (rather than taking the lock).
    pub(crate) handed_over: bool,
}

impl AttemptGuard {
    /// Watches an attempt for `target`; `armed` says whether an abandoned attempt is cleaned up.
    pub(crate) fn new(target: LeaseTarget, armed: bool) -> Self {
        Self {
            target: Some(target),
            armed,
        }
    }

    /// The outcome is known: nothing to clean up; returns the target for the lease.
    fn disarm(mut self) -> Option<LeaseTarget> {
        self.target.take()
    }

    /// Runs the attempt: `script` (an acquire script replying as [`decode_grant`] reads)
    /// with `keys` and `args`, sent once. A reply, granted or refused, settles the outcome;
    /// a transport error, or the caller dropping this future (cancelled, or cut off by its
    /// time bound), leaves the guard armed, and its drop releases whatever the attempt may
    /// have taken. Returns, when granted, what it [`Won`].
    ///
    /// # Errors
    ///
    /// [`DistkitError::RedisError`] when Redis fails or replies unexpectedly.
    pub(crate) async fn run(
        self,
        script: &LuaScript,
        keys: &[Value],
        args: Vec<Value>,
    ) -> Result<Attempt<Won>, DistkitError> {
        let (lock, client, acks) = match &self.target {
            Some(target) => (
                std::sync::Arc::clone(&target.lock),
                target.client.clone(),
                target.replica_acks,
            ),
            None => return Ok(Attempt::Refused),
        };
        let sent_at = Instant::now();
        let (reply, shortfall) =
            run_script(&lock, &client, acks, script, keys, args, CallPolicy::ONCE).await?;
        let reply = decode_grant(reply)?;
        let target = self.disarm();
        Ok(match (reply, target, shortfall) {
            (Reply::Granted(..), Some(target), Some(shortfall)) => {
                // Not acknowledged by enough replicas: give back what was taken (its own
                // token only), in a task of its own so that a cancelled caller still does.
                let released =
                    distkit_core::task::spawn_background(
                        async move { target.release_once().await },
                    );
                let released = match released {
                    Some(task) => task.await,
                    None => Ok(Ok(false)),
                };
                if let Ok(Err(error)) = released {
                    tracing::warn!(target: "distkit::lock", %error, "releasing a lock grant the replicas did not acknowledge failed; its lease expires after its ttl");
                }
                return Err(shortfall.into());
            }
            (Reply::Granted(fencing_token, handed_over), Some(target), None) => Attempt::Won(Won {
                target,
                sent_at,
                fencing_token,
                handed_over,
            }),
            (Reply::Refused, _, _) | (Reply::Granted(..), None, _) => Attempt::Refused,
        })
    }
}

impl Drop for AttemptGuard {
    fn drop(&mut self) {
        let Some(target) = self.target.take().filter(|_| self.armed) else {
            return;
        };
        // Detached (a bounded acquisition must return at its bound), on the library's
        // background runtime so that it runs even when the caller's runtime is ending.
        let _cleanup = distkit_core::task::spawn_background(async move {
            if let Err(error) = target.release_once().await {
                tracing::warn!(target: "distkit::lock", %error, "cleaning up an abandoned lock attempt failed; its lease expires after its ttl");
            }
        });
    }
}
