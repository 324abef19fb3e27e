//! The acquisition loop shared by every acquisition style of every lock.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use distkit_core::fred::clients::Client;
use distkit_core::fred::types::Value;
use distkit_core::script::{CallPolicy, LuaScript};
use distkit_core::task::{jittered, spawn_background};
use distkit_core::{DistkitError, LockError};

use super::notify::{Interest, ReleaseNotifier, WakeOn, settling};

/// How long an acquisition may keep trying.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Patience {
    /// One attempt; held → [`LockError::AcquireFail`].
    Once,
    /// `1 + n` attempts; held → [`LockError::RetriesExhausted`].
    Retries(usize),
    /// Until the duration ran out; held → [`LockError::Timeout`].
    Within(Duration),
    /// Until acquired, or until the optional bound ran out → [`LockError::Timeout`].
    Wait(Option<Duration>),
}

impl Patience {
    fn bound(self) -> Option<Duration> {
        match self {
            Self::Within(bound) => Some(bound),
            Self::Wait(bound) => bound,
            Self::Once | Self::Retries(_) => None,
        }
    }

    /// Whether a waiting writer should hold a place in the queue.
    pub(crate) fn waits(self) -> bool {
        self != Self::Once
    }
}

/// Where and how to wait between attempts.
#[derive(Debug)]
pub(crate) struct Waiting<'a> {
    pub(crate) notifier: &'a Arc<ReleaseNotifier>,
    pub(crate) wake_on: WakeOn<'a>,
    pub(crate) retry_interval: Duration,
}

/// What one acquisition attempt found.
#[derive(Debug)]
pub(crate) enum Attempt<T> {
    /// It took the lock (or confirmed a handover to it); what it returned.
    Won(T),
    /// Redis refused it.
    Refused,
}

/// The least time a bounded acquisition gives its first attempt before it is cut off: a
/// zero (or very short) bound still makes one attempt against a healthy server.
const FIRST_ATTEMPT_GRACE: Duration = Duration::from_millis(100);

/// Calls `attempt(index)` until it wins, waiting between attempts for a release
/// notification or the jittered `retry_interval`, whichever comes first. Returns what the
/// winning attempt returned and its 0-based index.
///
/// A bounded acquisition (`patience` with a bound) returns [`LockError::Timeout`] once the
/// bound has passed (at least [`FIRST_ATTEMPT_GRACE`] when the first attempt gets no answer),
/// whatever Redis does: the subscription and every attempt, the first included, count
/// against it. An attempt cut off by the bound cleans up after itself (its `AttemptGuard`
/// releases in the background whatever it may have taken; the caller's `QueuePlace` leaves
/// the queue).
///
/// # Notifications only wake
///
/// A notification (a `granted` message in the client's inbox, a release broadcast) only
/// ends the wait before the next attempt: it never counts as the grant. Pub/sub messages
/// cannot be authenticated (anyone who may `PUBLISH` on the channel can forge one, and
/// everything a message could carry is readable in Redis by such a neighbour), so only a
/// script reply from Redis makes a waiter a holder: after a handover, the waiter's next
/// attempt finds the lock handed to its token and confirms it (`mutex_acquire`), with the
/// fencing token Redis issued and a full lease. A forged message costs the waiter one
/// refused attempt.
///
/// # Errors
///
/// The error of an attempt, or the [`LockError`] of `patience` running out.
pub(crate) async fn acquire<T, F, Fut>(
    waiting: Waiting<'_>,
    patience: Patience,
    attempt: F,
) -> Result<(T, usize), DistkitError>
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = Result<Attempt<T>, DistkitError>>,
{
    let started = Instant::now();
    let Some(bound) = patience.bound() else {
        return acquire_loop(waiting, patience, started, attempt).await;
    };
    let cut_off = bound.max(FIRST_ATTEMPT_GRACE);
    match tokio::time::timeout(cut_off, acquire_loop(waiting, patience, started, attempt)).await {
        Ok(outcome) => outcome,
        Err(_) => Err(LockError::Timeout {
            waited: started.elapsed(),
        }
        .into()),
    }
}

async fn acquire_loop<T, F, Fut>(
    waiting: Waiting<'_>,
    patience: Patience,
    started: Instant,
    mut attempt: F,
) -> Result<(T, usize), DistkitError>
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = Result<Attempt<T>, DistkitError>>,
{
    let bound = patience.bound();
    let remaining = |started: Instant| bound.map(|bound| bound.saturating_sub(started.elapsed()));
    // A waiter on a channel that is already subscribed registers before its first attempt,
    // at no cost: it then needs no extra attempt after subscribing.
    let mut interest: Option<Interest> = if patience.waits() {
        waiting.notifier.watch_subscribed(waiting.wake_on)
    } else {
        None
    };
    // A plain `lock()` lets a handover this process is confirming go first: its first
    // attempt would be refused anyway, and would only slow that confirmation down.
    if let (Patience::Wait(None), WakeOn::Handover { lock, .. }) = (patience, waiting.wake_on) {
        settling::wait(lock).await;
    }
    let mut index = 0_usize;
    loop {
        let outcome = match remaining(started) {
            // An attempt must not outlive the caller's bound (its cleanup guard covers a
            // cut-off attempt that did acquire); a cut-off attempt tells nothing.
            Some(left) if index > 0 => tokio::time::timeout(left, attempt(index)).await.ok(),
            _ => Some(attempt(index).await),
        };
        if let Some(interest) = &interest {
            interest.attempted();
        }
        match outcome.transpose()? {
            Some(Attempt::Won(acquired)) => return Ok((acquired, index)),
            Some(Attempt::Refused) | None => {}
        }
        match patience {
            Patience::Once => {
                return Err(LockError::AcquireFail.into());
            }
            Patience::Retries(retries) if index >= retries => {
                return Err(LockError::RetriesExhausted { retries }.into());
            }
            _ => {}
        }
        let left = remaining(started);
        if left == Some(Duration::ZERO) {
            return Err(LockError::Timeout {
                waited: started.elapsed(),
            }
            .into());
        }
        index = index.saturating_add(1);
        if interest.is_none() {
            // Subscribe, then try again at once: a release between the first attempt and the
            // subscription must not be missed.
            interest = Some(waiting.notifier.watch(waiting.wake_on).await);
            continue;
        }
        let pause = if waiting.retry_interval.is_zero() {
            Duration::ZERO
        } else {
            let pause = jittered(waiting.retry_interval, 0.5);
            left.map_or(pause, |left| pause.min(left))
        };
        match &interest {
            _ if pause.is_zero() => tokio::task::yield_now().await,
            Some(interest) => drop(tokio::time::timeout(pause, interest.notified()).await),
            None => tokio::time::sleep(pause).await,
        }
    }
}

/// A waiter's place in a lock's queue, given up on drop unless the waiter got the lock
/// (the acquisition was cancelled, timed out or ran out of retries).
#[derive(Debug)]
pub(crate) struct QueuePlace {
    pub(crate) client: Client,
    pub(crate) keys: Arc<[Value]>,
    /// The lock's leave-queue script, and its arguments.
    pub(crate) script: &'static LuaScript,
    pub(crate) args: Vec<Value>,
    pub(crate) armed: bool,
}

impl QueuePlace {
    /// The waiter got the lock: its place was already given up by the acquire script.
    pub(crate) fn disarm(mut self) {
        self.armed = false;
    }

    /// Gives the place up and waits for Redis to confirm it, so that an attempt made after
    /// the caller's call returned never finds this waiter still in line (a writer's place
    /// would refuse new readers). When Redis fails (or this future is dropped), the drop
    /// leaves from the background as for a cancelled acquisition.
    async fn leave(mut self) {
        let left = self
            .script
            .run_with_keys(
                &self.client,
                &self.keys,
                self.args.clone(),
                CallPolicy::RETRY,
            )
            .await;
        if left.is_ok() {
            self.armed = false;
        }
    }
}

/// Ends an acquisition that may hold a place in line: a won acquisition's place is already
/// given up by its acquire script; one that ran out of retries (no time bound) gives its
/// place up before returning; one that ran out of time (or failed) drops its place, which
/// leaves from the background, so that the bound holds whatever Redis does.
pub(crate) async fn settle_place<T>(
    place: Option<QueuePlace>,
    outcome: Result<T, DistkitError>,
) -> Result<T, DistkitError> {
    match (place, &outcome) {
        (Some(place), Ok(_)) => place.disarm(),
        (Some(place), Err(DistkitError::LockError(LockError::RetriesExhausted { .. }))) => {
            place.leave().await;
        }
        (Some(place), Err(_)) => drop(place),
        (None, _) => {}
    }
    outcome
}

impl Drop for QueuePlace {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let (client, keys, script) = (self.client.clone(), Arc::clone(&self.keys), self.script);
        let args = std::mem::take(&mut self.args);
        let _leave = spawn_background(async move {
            if let Err(error) = script
                .run_with_keys(&client, &keys, args, CallPolicy::RETRY)
                .await
            {
                tracing::warn!(target: "distkit::lock", %error, "leaving a lock's queue failed; the place expires with its heartbeat");
            }
        });
    }
}

/// The four acquisition styles of a lock, each boxing the large acquisition future:
/// `acquisition_methods!(Guard, inner_fn, "what is acquired", wait, try, try_for, try_retries)`.
macro_rules! acquisition_methods {
    ($guard:ty, $inner:ident, $what:literal, $wait:ident, $once:ident, $within:ident, $retries:ident) => {
        #[doc = concat!("Waits until ", $what, " is granted (bounded by `max_wait`, if set).")]
        ///
        /// With `max_wait` set, it returns within `max_wait` (at least 100 ms) plus
        /// scheduling delays whatever Redis does, like the bounded `try_*_for` form.
        ///
        /// # Errors
        ///
        /// [`LockError::Timeout`](distkit_core::LockError::Timeout) when `max_wait` ran out;
        /// [`LockError::InvalidTtl`](distkit_core::LockError::InvalidTtl),
        /// [`LockError::InvalidRetryInterval`](distkit_core::LockError::InvalidRetryInterval) or
        /// [`LockError::InvalidOwner`](distkit_core::LockError::InvalidOwner) for invalid
        /// options (before any I/O, see [`LockOptions::validate`](super::LockOptions::validate));
        /// [`DistkitError::RedisError`] when Redis fails.
        ///
        /// # Cancel safety
        ///
        /// Dropping the future (e.g. in `tokio::select!` or `tokio::time::timeout`) before it
        /// returns leaves no lock held and no waiter behind; no guard exists until it returns.
        /// A writer or mutex waiter holds a place in the lock's queue while it waits: when the
        /// future is dropped without the lock, a drop guard removes it (the leave-queue
        /// script, from distkit's background runtime; should that fail, the place expires
        /// with its heartbeat, one queue window after the last attempt renewed it); a mutex
        /// waiter also passes on a handover made to it and not yet confirmed. Readers hold no
        /// place.
        /// An attempt dropped after its script was handed to the client, whose reply was not
        /// read, may have taken the lock: without an explicit
        /// [`owner_id`](super::LockOptions::owner_id) a drop guard releases whatever it took,
        /// from distkit's background runtime (should that release fail, the lease expires
        /// after its `ttl`); with an explicit id it is left for the next acquisition with that
        /// id to re-attach to, or to expire after its `ttl`.
        pub async fn $wait(&self) -> Result<$guard, DistkitError> {
            Box::pin(self.$inner(Patience::Wait(self.options.max_wait))).await
        }

        #[doc = concat!("One attempt to acquire ", $what, ".")]
        ///
        /// # Errors
        ///
        /// [`LockError::AcquireFail`](distkit_core::LockError::AcquireFail) when it is held;
        /// otherwise as the waiting form.
        ///
        /// # Cancel safety
        ///
        /// Dropping the future before it returns leaves no lock held; one attempt takes no
        /// place in the queue. Dropped before the attempt was sent, nothing happens.
        /// An attempt dropped after its script was handed to the client, whose reply was not
        /// read, may have taken the lock: without an explicit
        /// [`owner_id`](super::LockOptions::owner_id) a drop guard releases whatever it took,
        /// from distkit's background runtime (should that release fail, the lease expires
        /// after its `ttl`); with an explicit id it is left for the next acquisition with that
        /// id to re-attach to, or to expire after its `ttl`.
        pub async fn $once(&self) -> Result<$guard, DistkitError> {
            Box::pin(self.$inner(Patience::Once)).await
        }

        #[doc = concat!("Tries to acquire ", $what, " until `timeout` runs out (a zero timeout makes exactly one attempt).")]
        ///
        /// Returns within `timeout` plus scheduling delays, whatever Redis does (stalled,
        /// unreachable): subscribing for release notifications and every attempt, the first
        /// included, count against it; only an unanswered first attempt gets at least 100 ms.
        /// An attempt cut off by the bound releases in the background whatever it may have
        /// taken (for an explicit `owner_id`, see [`LockOptions::owner_id`](super::LockOptions::owner_id)).
        ///
        /// # Errors
        ///
        /// [`LockError::Timeout`](distkit_core::LockError::Timeout) with the time waited;
        /// otherwise as the waiting form.
        ///
        /// # Cancel safety
        ///
        /// As the waiting form: dropping the future, or the bound cutting it off, leaves no
        /// lock held and no waiter behind (the queue place and an attempt in flight are
        /// cleaned up by drop guards, in the background).
        pub async fn $within(&self, timeout: Duration) -> Result<$guard, DistkitError> {
            Box::pin(self.$inner(Patience::Within(timeout))).await
        }

        #[doc = concat!("Makes `1 + max_retries` attempts to acquire ", $what, ".")]
        ///
        /// A waiter that gives up leaves the lock's line before the call returns (one more
        /// round trip, the leave-queue script), so a later attempt never finds it still in
        /// line; should that round trip fail, the place is given up in the background.
        ///
        /// # Errors
        ///
        /// [`LockError::RetriesExhausted`](distkit_core::LockError::RetriesExhausted);
        /// otherwise as the waiting form.
        ///
        /// # Cancel safety
        ///
        /// As the waiting form: dropping the future leaves no lock held and no waiter behind
        /// (the queue place and an attempt in flight are cleaned up by drop guards, in the
        /// background).
        pub async fn $retries(&self, max_retries: usize) -> Result<$guard, DistkitError> {
            Box::pin(self.$inner(Patience::Retries(max_retries))).await
        }
    };
}

pub(crate) use acquisition_methods;
