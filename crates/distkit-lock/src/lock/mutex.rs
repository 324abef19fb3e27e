use std::sync::Arc;
use std::time::{Duration, Instant};

use distkit_core::fred::bytes_utils::Str;
use distkit_core::fred::types::Value;
use distkit_core::script::key_values;
use distkit_core::{DistkitError, key_schema};
use tracing::Instrument;

use super::acquire::{
    Attempt, Patience, QueuePlace, Waiting, acquire, acquisition_methods, settle_place,
};
use super::lease::{AttemptGuard, Lease, LeaseKind, LeaseTarget, Won};
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
///   the first live waiter (the lock holds the waiter's token under a provisional lease, its
///   heartbeat window) and announces it in the inbox channel of that waiter's client, so
///   only that waiter wakes, however many wait. The waiter's next attempt confirms the
///   handover (`mutex_acquire` finds the lock handed to its token, renews it to a full ttl
///   and returns the fencing token of the handover): one round trip after the announcement.
///   A waiter that misses the announcement finds the handover on its next poll. A waiter in
///   the releasing process is also woken by the release itself (Redis's reply names the
///   waiter and its inbox), without waiting for the announcement's round through pub/sub;
///   that too is only a wake. While such a woken waiter confirms its handover, a new
///   `lock()` of the same lock in this process (typically the releasing task, locking again)
///   waits for that confirmation, at most 5 ms, before its first attempt: the attempt would
///   be refused anyway, and sent at once it only delays the confirmation. A forged message
///   can hold such a newcomer back for those 5 ms at most.
/// - The guard renews the lease every ttl/3 in the background and releases on drop.
/// - A notification is never authority: pub/sub messages cannot be authenticated (a
///   neighbour allowed to `PUBLISH` on the inbox channel could forge one), so a `granted`
///   message only wakes the waiter, and only Redis's reply to its attempt makes it the
///   holder, with the fencing token Redis issued. A forged message costs one refused attempt.
/// - A waiter that died just before its turn blocks the lock only for the provisional lease
///   of the handover to it (its heartbeat window), not for a whole ttl.
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
///     Err(DistkitError::LockError(LockError::Timeout { waited, .. })) => {
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
    /// owner, fence, waitlist, waiters, handover, and with the loss guard on, epoch and
    /// quarantine (see `mutex_common.lua`: without the guard no script reads the last two, so
    /// they are not sent: every argument costs an encoding on the client and a string in
    /// Redis).
    keys: Arc<[Value]>,
    channel: String,
    /// Where handovers to this client are announced on a standalone server (see
    /// [`key_schema::lock_inbox_prefix`]).
    inbox_prefix: String,
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
        if !options.loss_quarantine {
            keys.truncate(5);
        }
        let channel = key_schema::lock_release_channel(&options.namespace, &options.key);
        let name = Arc::from(key_schema::lock_owner(&options.namespace, &options.key));
        let inbox_prefix = key_schema::lock_inbox_prefix(&options.namespace);
        Arc::new(Self {
            services: LockServices::of(&options.client),
            options,
            keys: key_values(&keys).into(),
            channel,
            inbox_prefix,
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
        acquired.map_err(|error| error.about_key("lock", &self.name))
    }

    async fn acquire_untraced(&self, patience: Patience) -> Result<MutexGuard, DistkitError> {
        self.options.validate()?;
        let explicit_owner = self.options.owner_id.is_some();
        // Made once: every attempt, the renewals and the release share its bytes.
        let token = Str::from(
            self.options
                .owner_id
                .clone()
                .unwrap_or_else(|| ulid::Ulid::new().to_string()),
        );
        let waiting = Waiting {
            notifier: &self.services.notifier,
            wake_on: WakeOn::Handover {
                lock: &self.channel,
                token: &token,
                inbox_prefix: &self.inbox_prefix,
            },
            retry_interval: self.options.retry_interval,
        };
        let queued = patience.waits();
        // A queued acquisition leaves the queue (passing on a handover not yet confirmed)
        // when it ends without the lock.
        let place = queued.then(|| QueuePlace {
            client: self.options.client.clone(),
            keys: Arc::clone(&self.keys),
            script: &MUTEX_LEAVE_QUEUE,
            args: with_loss_guard(
                vec![
                    Value::String(token.clone()),
                    Value::from(self.options.keep_ms()),
                    Value::from_static_str(if explicit_owner { "1" } else { "0" }),
                ],
                &self.options,
            ),
            armed: true,
        });
        let (won, attempt) = settle_place(
            place,
            Box::pin(acquire(waiting, patience, |_| {
                let token = token.clone();
                async move { self.attempt(token, queued, explicit_owner).await }
            }))
            .await,
        )
        .await?;
        if won.handed_over {
            observe::handed_over(&self.options.namespace);
        }
        Ok(MutexGuard {
            lock: Arc::clone(&self.name),
            lease: Lease::start(
                &self.services.renewals,
                won.target,
                won.sent_at,
                won.fencing_token,
                attempt,
            ),
        })
    }

    fn target(&self, token: Str) -> LeaseTarget {
        LeaseTarget {
            lock: Arc::clone(&self.name),
            client: self.options.client.clone(),
            kind: LeaseKind::Mutex,
            keys: Arc::clone(&self.keys),
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
        token: Str,
        queued: bool,
        explicit_owner: bool,
    ) -> Result<Attempt<Won>, DistkitError> {
        let target = self.target(token);
        let mut args = vec![
            Value::String(target.token.clone()),
            Value::from(self.options.ttl_ms()),
            Value::from(self.options.keep_ms()),
            Value::from(self.options.queue_window_ms()),
            Value::from_static_str(match (queued, explicit_owner) {
                (true, true) => "11",
                (true, false) => "10",
                (false, true) => "01",
                (false, false) => "00",
            }),
            Value::from(
                self.services
                    .notifier
                    .inbox_argument(&self.channel, &self.inbox_prefix),
            ),
        ];
        if self.options.loss_quarantine {
            args.push(Value::from_static_str("1"));
        }
        AttemptGuard::new(target, !explicit_owner)
            .run(&MUTEX_ACQUIRE, &self.keys, args)
            .await
    }
}

/// `args`, then, with [`LockOptions::loss_quarantine`], the loss guard's two arguments of
/// `mutex_release` and `mutex_leave_queue` (`'1'` and the lease in ms); without it they are
/// left out (the scripts read a missing guard argument as off).
fn with_loss_guard(mut args: Vec<Value>, options: &LockOptions) -> Vec<Value> {
    if options.loss_quarantine {
        args.extend([Value::from_static_str("1"), Value::from(options.ttl_ms())]);
    }
    args
}

/// Holds a [`Mutex`] until released or dropped.
///
/// Dropping the guard releases the lock, never panics, and never depends on the runtime that
/// drops it (the release runs on distkit's background runtime). Inside a multi-thread runtime
/// or outside any runtime the drop **waits for the release** (bounded by the client's command
/// timeout plus a second), so the lock is free when the drop returns; on a current-thread
/// runtime it cannot wait and the release completes in the background (lost if the process
/// exits first). [`release`](Self::release) is the way to be sure everywhere, and reports the
/// outcome.
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
    ///
    /// # Cancel safety
    ///
    /// Reads local state only, without an await: cancel safe.
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
    ///
    /// # Cancel safety
    ///
    /// Waits for a local notification only: dropping it (e.g. the other branch of a
    /// `tokio::select!` won) leaves nothing behind; call it again to wait again.
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
    ///
    /// # Cancel safety
    ///
    /// Dropped before its extend script was handed to the client, nothing
    /// happens; after, the lease may be renewed in Redis without the guard recording it
    /// (its view of the lease only stays more cautious). The background renewals go on
    /// either way.
    pub async fn extend(&self) -> Result<(), DistkitError> {
        let lock = &self.lock;
        self.lease
            .extend()
            .await
            .map_err(|error| error.about_key("lock", lock))
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
    ///
    /// # Cancel safety
    ///
    /// The guard is consumed: dropping the future drops it, and the drop releases the
    /// lease as a dropped guard does (in the background, waited for where the thread may
    /// block). A release that had already reached Redis is harmless to repeat: a release
    /// acts only on its own token.
    pub async fn release(self) -> Result<LockGuardState, DistkitError> {
        let Self { lock, lease } = self;
        lease
            .release()
            .await
            .map_err(|error| error.about_key("lock", &lock))
    }
}
