use std::sync::Arc;
use std::time::{Duration, Instant};

use distkit_core::fred::types::Value;
use distkit_core::{DistkitError, key_schema};
use tracing::Instrument;

use super::acquire::{
    Acquired, Attempt, Patience, QueuePlace, Waiting, acquire, acquisition_methods,
};
use super::lease::{AttemptGuard, Granted, Lease, LeaseKind, LeaseTarget};
use super::notify::WakeOn;
use super::observe::{self, LockKind};
use super::{LockGuardState, LockOptions, LockServices};
use crate::scripts::{MUTEX_ACQUIRE, MUTEX_LEAVE_QUEUE};

/// A distributed mutual-exclusion lock, shaped like `tokio::sync::Mutex`.
///
/// The lock is the key `<namespace>:{<key>}` holding the holder's token with a `PX` lease;
/// beside it, under the same hash tag: `…:fence` (the last fencing token), `…:waitlist` and
/// `…:waiters` (waiters in arrival order; their heartbeats, leases and inboxes),
/// `…:handover` (the last handover) and, with
/// [`loss_quarantine`](LockOptions::loss_quarantine), `…:epoch` and `…:quarantine` (see
/// *After data loss* in the [module docs](super)). Every one of them expires (see
/// [`key_retention`](LockOptions::key_retention)).
///
/// - Acquisition runs the `mutex_acquire` script (atomic: take the lock if it is free and no
///   earlier waiter is in line, bump the fencing token; otherwise join the line).
/// - Waiters are served first come, first served: `mutex_release` hands the lock straight to
///   the first live waiter and announces it in the inbox channel of that waiter's client, so
///   only that waiter wakes, however many wait, and it holds the lock without another round
///   trip. A waiter that misses the announcement finds the handover on its next attempt.
/// - The guard renews the lease every ttl/3 in the background and releases on drop. A
///   handover grants only a provisional lease (the waiter's heartbeat window, when shorter
///   than the ttl), which the new guard renews to a full ttl a third into it, like any lease.
/// - A handover is a hint to the waiter, never authority: the `granted` message counts only
///   when it provably is the latest state of the lock (its fencing token follows the fencing
///   counter that a refused attempt of the waiter saw, and at least half of the provisional
///   lease is left); otherwise the waiter's next attempt asks Redis, which confirms a handover
///   that still stands. A waiter stalled across its handover (a blocked runtime, a GC-like
///   pause) so never takes an old message for a grant.
/// - Trade-off of the provisional lease: until its first renewal (a third into it), a
///   handed-over holder tolerates a stall of only about two thirds of its heartbeat window
///   (some 170 ms with the default `retry_interval`) before its guard turns `Lost`, where an
///   established holder tolerates most of a ttl. It is deliberate: the lock is handed over
///   without the waiter taking part, and the waiter may have died just before its turn; a
///   full-ttl handover would let such a dead waiter block everybody for a whole ttl. Safety
///   does not suffer (the guard reports `Lost`, never two holders); callers that expect long
///   stalls right after acquiring raise `retry_interval` (the window is four of them).
/// - A waiter renews its place in line with every attempt (at least every
///   `1.5 × retry_interval`); a cancelled or timed-out waiter leaves at once. A crashed one
///   blocks the others no longer than its heartbeat window (`max(4 × retry_interval,
///   250 ms)`): it is skipped once that has passed, and a handover that reached it just
///   before expires after that window.
///
/// An acquisition whose outcome is unknown — cancelled mid-flight, cut off by its time bound
/// or by a connection failure — releases whatever it may have taken in the background, so a
/// cancelled `lock()` leaves no lock behind. With an explicit `owner_id` it cannot tell its
/// leftover from a hold of another guard with the same id, so the lock may stay held by that
/// id for up to a whole ttl, for the next acquisition with the id to re-attach to (see
/// [`LockOptions::owner_id`]); a handover to such a waiter that nobody takes up is not passed
/// on either, and runs out with its provisional lease.
///
/// ```no_run
/// # use distkit_lock as distkit; // the facade crate, as users name it
/// use std::time::Duration;
/// use distkit::lock::{LockError, LockOptions, Mutex};
/// use distkit::{DistkitError, DistkitRedisKey};
///
/// # async fn example() -> Result<(), DistkitError> {
/// let client = distkit::connect("redis://127.0.0.1:6379").await?;
/// let mutex = Mutex::new(LockOptions::new(DistkitRedisKey::try_from("invoice-run")?, client));
///
/// match mutex.try_lock_for(Duration::from_secs(2)).await {
///     Ok(guard) => {
///         // Exclusive work here; pass guard.fencing_token() to what it writes to.
///         guard.release().await?;
///     }
///     Err(DistkitError::LockError(LockError::Timeout { waited })) => {
///         println!("someone else runs it (waited {waited:?})");
///     }
///     Err(error) => return Err(error),
/// }
/// # Ok(())
/// # }
/// ```
pub struct Mutex {
    options: LockOptions,
    services: LockServices,
    /// owner, fence, waitlist, waiters, handover, epoch, quarantine (see `mutex_common.lua`).
    keys: Vec<String>,
    channel: String,
    /// `<namespace>:{<key>}`, for the `Debug` output of its guards.
    name: Arc<str>,
}

/// Compact: the lock's name and the options that shape its behaviour (not the client).
impl std::fmt::Debug for Mutex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mutex")
            .field("namespace", &self.options.namespace.as_str())
            .field("key", &self.options.key.as_str())
            .field("ttl", &self.options.ttl)
            .field("owner_id", &self.options.owner_id)
            .field("max_wait", &self.options.max_wait)
            .finish_non_exhaustive()
    }
}

impl Mutex {
    /// A mutex named by `options.key` in `options.namespace`. Does no I/O; options are
    /// checked by every acquisition.
    pub fn new(options: LockOptions) -> Arc<Self> {
        let mut keys = vec![key_schema::lock_owner(&options.namespace, &options.key)];
        keys.extend(
            [
                "fence",
                "waitlist",
                "waiters",
                "handover",
                "epoch",
                "quarantine",
            ]
            .into_iter()
            .map(|part| key_schema::lock_part(&options.namespace, &options.key, part)),
        );
        let channel = key_schema::lock_release_channel(&options.namespace, &options.key);
        let name = Arc::from(key_schema::lock_owner(&options.namespace, &options.key));
        Arc::new(Self {
            services: LockServices::of(&options.client),
            options,
            keys,
            channel,
            name,
        })
    }

    acquisition_methods!(
        MutexGuard,
        acquire,
        "the lock",
        lock,
        try_lock,
        try_lock_for,
        try_lock_with_retries
    );

    /// [`Self::acquire_untraced`] in its `distkit.lock.acquire` span, with its metrics.
    async fn acquire(&self, patience: Patience) -> Result<MutexGuard, DistkitError> {
        let span =
            observe::acquire_span(&self.options.namespace, &self.options.key, LockKind::Mutex);
        let started = Instant::now();
        let acquired = self
            .acquire_untraced(patience)
            .instrument(span.clone())
            .await;
        if let Ok(guard) = &acquired {
            observe::granted(&span, guard.get_on_attempt(), guard.fencing_token());
        }
        observe::acquisition_ended(
            &span,
            LockKind::Mutex,
            &self.options.namespace,
            started.elapsed(),
            acquired.as_ref().map(drop),
        );
        acquired
    }

    async fn acquire_untraced(&self, patience: Patience) -> Result<MutexGuard, DistkitError> {
        self.options.validate()?;
        let explicit_owner = self.options.owner_id.is_some();
        let token = self
            .options
            .owner_id
            .clone()
            .unwrap_or_else(|| ulid::Ulid::new().to_string());
        let waiting = Waiting {
            notifier: &self.services.notifier,
            wake_on: WakeOn::Handover {
                lock: &self.channel,
                token: &token,
            },
            retry_interval: self.options.retry_interval,
            handover_lease: Some(self.options.handover_lease()),
            trust_handovers: self.options.replica_acks.is_none(),
        };
        let queued = patience.waits();
        // A queued acquisition leaves the queue (passing on a handover not yet confirmed)
        // when it ends without the lock.
        let place = queued.then(|| QueuePlace {
            client: self.options.client.clone(),
            keys: self.keys.clone(),
            script: &MUTEX_LEAVE_QUEUE,
            args: vec![
                Value::from(token.as_str()),
                Value::from(self.channel.as_str()),
                Value::from(if explicit_owner { "1" } else { "0" }),
                Value::from(self.options.loss_guard_argument()),
                Value::from(self.options.ttl_ms()),
                Value::from(self.options.keep_ms()),
            ],
            armed: true,
        });
        let (acquired, attempt) = Box::pin(acquire(waiting, patience, |_| {
            let token = token.clone();
            async move { self.attempt(token, queued, explicit_owner).await }
        }))
        .await?;
        if let Some(place) = place {
            place.disarm();
        }
        let (lease_target, sent_at, granted, fencing_token) = match acquired {
            Acquired::ByAttempt((target, sent_at, fencing_token)) => {
                (target, sent_at, Granted::FullTtl, fencing_token)
            }
            // The release gave it the lease `mutex_hand_over` computes from our arguments.
            Acquired::ByHandover {
                fencing_token,
                since,
            } => (
                {
                    observe::handed_over(&self.options.namespace);
                    self.target(token)
                },
                since,
                Granted::Provisional(self.options.handover_lease()),
                fencing_token,
            ),
        };
        Ok(MutexGuard {
            lock: Arc::clone(&self.name),
            lease: Lease::start(
                &self.services.renewals,
                lease_target,
                sent_at,
                granted,
                fencing_token,
                attempt,
            ),
        })
    }

    fn target(&self, token: String) -> LeaseTarget {
        LeaseTarget {
            client: self.options.client.clone(),
            kind: LeaseKind::Mutex,
            keys: self.keys.clone(),
            channel: self.channel.clone(),
            token,
            ttl: self.options.ttl,
            loss_guard: self.options.loss_guard_argument(),
            keep_ms: self.options.keep_ms(),
            replica_acks: self.options.replica_acks,
        }
    }

    async fn attempt(
        &self,
        token: String,
        queued: bool,
        explicit_owner: bool,
    ) -> Result<Attempt<(LeaseTarget, Instant, u64)>, DistkitError> {
        let target = self.target(token);
        let args = vec![
            Value::from(target.token.as_str()),
            Value::from(self.options.ttl_ms()),
            Value::from(self.options.queue_window_ms()),
            Value::from(if queued { "1" } else { "0" }),
            Value::from(if explicit_owner { "1" } else { "0" }),
            Value::from(self.services.notifier.inbox_argument(&self.channel)),
            Value::from(self.channel.as_str()),
            Value::from(self.options.loss_guard_argument()),
            Value::from(self.options.keep_ms()),
        ];
        let keys: Vec<&str> = self.keys.iter().map(String::as_str).collect();
        AttemptGuard::new(target, !explicit_owner)
            .run(&MUTEX_ACQUIRE, &keys, args)
            .await
    }
}

/// Holds a [`Mutex`] until released or dropped.
///
/// Dropping the guard releases the lock in the background (best effort, never panics, also
/// outside a runtime); [`release`](Self::release) releases it and reports the outcome.
///
/// ```no_run
/// # use distkit_lock as distkit; // the facade crate, as users name it
/// use distkit::lock::{LockGuardState, LockOptions, Mutex};
/// use distkit::DistkitRedisKey;
///
/// # async fn do_work(_fencing_token: u64) {}
/// # async fn example() -> Result<(), distkit::DistkitError> {
/// let client = distkit::connect("redis://127.0.0.1:6379").await?;
/// let mutex = Mutex::new(LockOptions::new(DistkitRedisKey::try_from("migration")?, client));
/// let guard = mutex.lock().await?;
///
/// tokio::select! {
///     // The lease could not be confirmed for a whole ttl: stop, someone else may hold it.
///     () = guard.lost() => println!("lost the lock, state {:?}", guard.get_state().await),
///     () = do_work(guard.fencing_token()) => {}
/// }
/// if guard.release().await? == LockGuardState::Released {
///     println!("released");
/// }
/// # Ok(())
/// # }
/// ```
pub struct MutexGuard {
    /// `<namespace>:{<key>}`.
    lock: Arc<str>,
    lease: Lease,
}

/// Compact: the lock, the state, the fencing token and the winning attempt.
impl std::fmt::Debug for MutexGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.lease.debug_guard(f, "MutexGuard", &self.lock)
    }
}

impl MutexGuard {
    /// The state of the lease, without a Redis round trip: `Lost` once a renewal was refused
    /// or none was confirmed for a ttl.
    pub async fn get_state(&self) -> LockGuardState {
        self.lease.state()
    }

    /// Completes once the state is no longer `Acquired`: a renewal was refused, none was
    /// confirmed for a ttl on the local monotonic clock, or the guard was released. No Redis
    /// round trip of its own; for `tokio::select!` around the protected work:
    ///
    /// ```no_run
    /// # async fn example(guard: &distkit_lock::lock::MutexGuard, work: impl std::future::Future<Output = ()>) {
    /// tokio::select! {
    ///     () = guard.lost() => { /* stop: the lock may no longer be exclusively yours */ }
    ///     () = work => {}
    /// }
    /// # }
    /// ```
    ///
    /// The state may return to `Acquired` later (a renewal confirmed the same token); this
    /// future has completed by then.
    pub async fn lost(&self) {
        self.lease.lost().await;
    }

    /// The 0-based attempt that acquired the lock (a one-shot `try_lock` is 0).
    pub fn get_on_attempt(&self) -> usize {
        self.lease.attempt()
    }

    /// The fencing token of this acquisition: it strictly increases with every acquisition of
    /// this lock key, so a resource can refuse writes from a holder older than the last one
    /// it saw.
    pub fn fencing_token(&self) -> u64 {
        self.lease.fencing_token()
    }

    /// Confirms the lease in Redis and renews it to a full ttl (`owner_extend`, atomic).
    ///
    /// # Errors
    ///
    /// [`LockError::NotOwner`](distkit_core::LockError::NotOwner) when the lease is gone or
    /// someone else's; [`DistkitError::RedisError`] when Redis fails.
    pub async fn extend(&self) -> Result<(), DistkitError> {
        self.lease.extend().await
    }

    /// Releases the lock (`mutex_release`, atomic: acts only if the lock still holds this
    /// guard's token, and hands it to the first live waiter, or deletes it when none waits).
    ///
    /// Returns `Released` when it deleted its token, `Lost` when the lease had already gone
    /// (nothing was deleted).
    ///
    /// # Errors
    ///
    /// [`DistkitError::RedisError`] for transport failures; the lease then expires after its
    /// ttl.
    pub async fn release(self) -> Result<LockGuardState, DistkitError> {
        self.lease.release().await
    }
}
