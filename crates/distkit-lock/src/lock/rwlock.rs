use std::future::Future;
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
use crate::scripts::{RW_ACQUIRE_READ, RW_ACQUIRE_WRITE, RW_LEAVE_QUEUE};

/// A distributed reader-writer lock, shaped like `tokio::sync::RwLock`: many readers or one
/// writer, writer-preferring.
///
/// Keys, all under the lock's hash tag: `<namespace>:{<key>}:rw:writer` (the writer's token
/// with a `PX` lease), `…:rw:readers` (a sorted set: one entry per read guard, scored by
/// its lease expiry on the server clock), `…:rw:queue` and `…:rw:alive` (waiting writers in
/// arrival order, and their heartbeats), `…:rw:tickets`, `…:rw:fence` (the last fencing
/// token) and, with [`loss_quarantine`](LockOptions::loss_quarantine), `…:rw:epoch` and
/// `…:rw:quarantine` (see *After data loss* in the [module docs](super)). Every one of them
/// expires (see [`key_retention`](LockOptions::key_retention)).
///
/// - A waiting writer holds a place in the queue; while anyone is queued no new reader gets
///   in, and queued writers are served in arrival order.
/// - A waiting writer renews its place with every attempt (at least every
///   `1.5 × retry_interval`); one that crashes stops blocking readers once its heartbeat
///   window (`max(4 × retry_interval, 250 ms)`) runs out, and one that is cancelled or gives
///   up leaves the queue at once.
/// - Each read guard is its own reader entry with its own lease, renewed in the background.
/// - Waiters are woken through the lock's release channel: by a writer's release, by a
///   waiting writer leaving, and by the last reader leaving while a writer waits (a reader
///   leaving can unblock nobody else, so other reader releases publish nothing).
///
/// An acquisition whose outcome is unknown — cancelled mid-flight, cut off by its time bound
/// or by a connection failure — releases whatever it may have taken in the background (a
/// reader entry, the write lock), so a cancelled acquisition leaves nothing behind, with one
/// exception, as for a [`Mutex`](super::Mutex): a write acquisition with an explicit
/// `owner_id` cannot tell its leftover from a hold of another guard with the same id, so the
/// write lock may stay held by that id for up to a whole ttl, for the next acquisition with
/// the id to re-attach to (see [`LockOptions::owner_id`]). Reader entries always get their
/// own token, so a cancelled read acquisition never leaves one behind.
///
/// ```no_run
/// # use distkit_lock as distkit; // the facade crate, as users name it
/// use distkit::lock::{LockOptions, RwLock};
/// use distkit::DistkitRedisKey;
///
/// # async fn example() -> Result<(), distkit::DistkitError> {
/// let client = distkit::connect("redis://127.0.0.1:6379").await?;
/// let config = RwLock::new(LockOptions::new(DistkitRedisKey::try_from("config")?, client));
///
/// // Many readers at once…
/// let reader = config.read().await?;
/// let other_reader = config.try_read().await?;
/// reader.release().await?;
/// other_reader.release().await?;
///
/// // …or one writer; a waiting writer blocks new readers.
/// let writer = config.write().await?;
/// println!("writing with fencing token {}", writer.fencing_token());
/// writer.release().await?;
/// # Ok(())
/// # }
/// ```
pub struct RwLock {
    options: LockOptions,
    services: LockServices,
    keys: Arc<[Value]>,
    channel: String,
    /// `<namespace>:{<key>}`, for the `Debug` output of its guards.
    name: Arc<str>,
}

/// Compact: the lock's name and the options that shape its behaviour (not the client).
impl std::fmt::Debug for RwLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RwLock")
            .field("namespace", &self.options.namespace.as_str())
            .field("key", &self.options.key.as_str())
            .field("ttl", &self.options.ttl)
            .field("owner_id", &self.options.owner_id)
            .field("max_wait", &self.options.max_wait)
            .finish_non_exhaustive()
    }
}

impl RwLock {
    /// A rwlock named by `options.key` in `options.namespace`. Does no I/O.
    pub fn new(options: LockOptions) -> Arc<Self> {
        let part = |name: &str| key_schema::lock_part(&options.namespace, &options.key, name);
        let keys = [
            "rw:writer",
            "rw:readers",
            "rw:queue",
            "rw:alive",
            "rw:tickets",
            "rw:fence",
            "rw:epoch",
            "rw:quarantine",
        ]
        .map(part);
        let channel = part("rw:released");
        let name = Arc::from(key_schema::lock_owner(&options.namespace, &options.key));
        Arc::new(Self {
            services: LockServices::of(&options.client),
            options,
            keys: key_values(&keys).into(),
            channel,
            name,
        })
    }

    acquisition_methods!(
        RwLockReadGuard,
        acquire_read,
        "a read lease",
        read,
        try_read,
        try_read_for,
        try_read_with_retries
    );
    acquisition_methods!(
        RwLockWriteGuard,
        acquire_write,
        "the write lease (a one-shot attempt does not join the writers' queue)",
        write,
        try_write,
        try_write_for,
        try_write_with_retries
    );

    /// `rw_acquire_read`'s keys: without the loss guard, not its two keys (the last two),
    /// which the script then never reads.
    fn read_keys(&self) -> &[Value] {
        let count = if self.options.loss_quarantine { 8 } else { 6 };
        self.keys.get(..count).unwrap_or(&self.keys)
    }

    fn waiting(&self) -> Waiting<'_> {
        Waiting {
            notifier: &self.services.notifier,
            wake_on: WakeOn::Release {
                channel: &self.channel,
            },
            retry_interval: self.options.retry_interval,
        }
    }

    fn target(&self, kind: LeaseKind, token: Str) -> LeaseTarget {
        LeaseTarget {
            lock: Arc::clone(&self.name),
            client: self.options.client.clone(),
            kind,
            keys: Arc::clone(&self.keys),
            channel: self.services.notifier.announce_target(&self.channel),
            token,
            ttl: self.options.ttl,
            loss_guard: self.options.loss_guard_argument(),
            keep_ms: self.options.keep_ms(),
            replica_acks: self.options.replica_acks,
        }
    }

    /// Runs `acquisition` in its `distkit.lock.acquire` span, with its metrics.
    async fn traced<G: Guard>(
        &self,
        kind: LockKind,
        acquisition: impl Future<Output = Result<G, DistkitError>>,
    ) -> Result<G, DistkitError> {
        let span = observe::acquire_span(&self.options.namespace, &self.options.key, kind);
        let started = Instant::now();
        let acquired = acquisition.instrument(span.clone()).await;
        if let Ok(guard) = &acquired {
            let lease = guard.lease();
            observe::granted(&span, lease.attempt(), lease.fencing_token());
        }
        observe::acquisition_ended(
            &span,
            kind,
            &self.options.namespace,
            started.elapsed(),
            acquired.as_ref().map(drop),
        );
        acquired.map_err(|error| error.about_key("lock", &self.name))
    }

    async fn acquire_read(&self, patience: Patience) -> Result<RwLockReadGuard, DistkitError> {
        self.traced(
            LockKind::Read,
            Box::pin(self.acquire_read_untraced(patience)),
        )
        .await
    }

    async fn acquire_write(&self, patience: Patience) -> Result<RwLockWriteGuard, DistkitError> {
        self.traced(
            LockKind::Write,
            Box::pin(self.acquire_write_untraced(patience)),
        )
        .await
    }

    async fn acquire_read_untraced(
        &self,
        patience: Patience,
    ) -> Result<RwLockReadGuard, DistkitError> {
        self.options.validate()?;
        let (won, attempt) = acquire(self.waiting(), patience, |_| {
            // Each read guard is its own reader entry.
            let reader = ulid::Ulid::new().to_string();
            let token = Str::from(match &self.options.owner_id {
                Some(owner) => format!("{owner}/{reader}"),
                None => reader,
            });
            self.attempt_read(token)
        })
        .await?;
        Ok(RwLockReadGuard {
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

    async fn attempt_read(&self, token: Str) -> Result<Attempt<Won>, DistkitError> {
        let args = vec![
            Value::String(token.clone()),
            Value::from(self.options.ttl_ms()),
            Value::from_static_str(self.options.loss_guard_argument()),
            Value::from(self.options.keep_ms()),
        ];
        AttemptGuard::new(self.target(LeaseKind::Reader, token), true)
            .run(&RW_ACQUIRE_READ, self.read_keys(), args)
            .await
    }

    async fn acquire_write_untraced(
        &self,
        patience: Patience,
    ) -> Result<RwLockWriteGuard, DistkitError> {
        self.options.validate()?;
        let explicit_owner = self.options.owner_id.is_some();
        let token = Str::from(
            self.options
                .owner_id
                .clone()
                .unwrap_or_else(|| ulid::Ulid::new().to_string()),
        );
        let queued = patience.waits();
        // A queued acquisition leaves the queue when it ends without the lock (cancelled,
        // timed out).
        let place = queued.then(|| QueuePlace {
            client: self.options.client.clone(),
            keys: Arc::clone(&self.keys),
            script: &RW_LEAVE_QUEUE,
            args: vec![
                Value::String(token.clone()),
                Value::from(self.services.notifier.announce_target(&self.channel)),
            ],
            armed: true,
        });
        let acquired = Box::pin(acquire(self.waiting(), patience, |_| {
            self.attempt_write(token.clone(), queued, explicit_owner)
        }))
        .await;
        let (won, attempt) = settle_place(place, acquired).await?;
        Ok(RwLockWriteGuard {
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

    async fn attempt_write(
        &self,
        token: Str,
        queued: bool,
        explicit_owner: bool,
    ) -> Result<Attempt<Won>, DistkitError> {
        let args = vec![
            Value::String(token.clone()),
            Value::from(self.options.ttl_ms()),
            Value::from(self.options.queue_window_ms()),
            Value::from_static_str(if queued { "1" } else { "0" }),
            Value::from_static_str(if explicit_owner { "1" } else { "0" }),
            Value::from_static_str(self.options.loss_guard_argument()),
            Value::from(self.options.keep_ms()),
        ];
        let mut target = self.target(LeaseKind::Owner, token);
        // An owner lease releases keys[0] (the writer key) and renews it, keeping the fence
        // and the epoch (keys[1] and keys[2]) for their retention.
        target.keys = [0, 5, 6]
            .into_iter()
            .filter_map(|index| self.keys.get(index).cloned())
            .collect();
        AttemptGuard::new(target, !explicit_owner)
            .run(&RW_ACQUIRE_WRITE, &self.keys, args)
            .await
    }
}

macro_rules! guard_methods {
    ($release_doc:literal) => {
        /// The state of the lease, without a Redis round trip: `Lost` once a renewal was
        /// refused or none was confirmed for a ttl.
        ///
        /// # Cancel safety
        ///
        /// Reads local state only, without an await: cancel safe.
        pub async fn get_state(&self) -> LockGuardState {
            self.lease.state()
        }

        /// Completes once the state is no longer `Acquired`: a renewal was refused, none was
        /// confirmed for a ttl on the local monotonic clock, or the guard was released. No
        /// Redis round trip of its own; for `tokio::select!` around the protected work (see
        /// [`MutexGuard::lost`](super::MutexGuard::lost)). The state may return to `Acquired`
        /// later (a renewal confirmed the same token); this future has completed by then.
        ///
        /// # Cancel safety
        ///
        /// Waits for a local notification only: dropping it (e.g. the other branch of a
        /// `tokio::select!` won) leaves nothing behind; call it again to wait again.
        pub async fn lost(&self) {
            self.lease.lost().await;
        }

        /// The 0-based attempt that acquired the lock (a one-shot `try_*` is 0).
        pub fn get_on_attempt(&self) -> usize {
            self.lease.attempt()
        }

        /// Confirms the lease in Redis and renews it to a full ttl.
        ///
        /// # Errors
        ///
        /// [`LockError::NotOwner`](distkit_core::LockError::NotOwner) when the lease is gone;
        /// [`DistkitError::RedisError`] when Redis fails.
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

        #[doc = $release_doc]
        ///
        /// Returns `Released` when it removed its own entry, `Lost` when the lease had
        /// already gone (nothing was removed).
        ///
        /// # Errors
        ///
        /// [`DistkitError::RedisError`] for transport failures; the lease then expires after
        /// its ttl.
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
    };
}

/// A guard's lease, for [`RwLock::traced`].
trait Guard {
    fn lease(&self) -> &Lease;
}

/// A read lease on an [`RwLock`]; released on drop, as [`MutexGuard`](super::MutexGuard)
/// describes (waited for inside a multi-thread runtime or outside any runtime).
pub struct RwLockReadGuard {
    /// `<namespace>:{<key>}`.
    lock: Arc<str>,
    lease: Lease,
}

impl Guard for RwLockReadGuard {
    fn lease(&self) -> &Lease {
        &self.lease
    }
}

/// Compact: the lock, the state, the fencing token and the winning attempt.
impl std::fmt::Debug for RwLockReadGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.lease.debug_guard(f, "RwLockReadGuard", &self.lock)
    }
}

impl RwLockReadGuard {
    guard_methods!(
        "Removes this reader (`rw_release_read`, atomic); the last reader to leave wakes the waiting writers."
    );

    /// The fencing token of this read lease: `max(the last token issued on this lock, the
    /// Redis server clock in microseconds)`, computed by `rw_acquire_read`. It is at least
    /// every token issued before this lease was granted (writers' and readers'), after a
    /// data loss too (the clock part, as for writers: see *After data loss* in the
    /// [module docs](super)), and below every write token issued after it. Readers may
    /// share a token: one reader does not fence off another.
    pub fn fencing_token(&self) -> u64 {
        self.lease.fencing_token()
    }
}

/// The write lease on an [`RwLock`]; released on drop, as [`MutexGuard`](super::MutexGuard)
/// describes (waited for inside a multi-thread runtime or outside any runtime).
pub struct RwLockWriteGuard {
    /// `<namespace>:{<key>}`.
    lock: Arc<str>,
    lease: Lease,
}

impl Guard for RwLockWriteGuard {
    fn lease(&self) -> &Lease {
        &self.lease
    }
}

/// Compact: the lock, the state, the fencing token and the winning attempt.
impl std::fmt::Debug for RwLockWriteGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.lease.debug_guard(f, "RwLockWriteGuard", &self.lock)
    }
}

impl RwLockWriteGuard {
    guard_methods!("Releases the write lock (`rw_release_write`, atomic) and wakes waiters.");

    /// The fencing token of this write acquisition; strictly increases with every write
    /// acquisition of this lock key.
    pub fn fencing_token(&self) -> u64 {
        self.lease.fencing_token()
    }
}
