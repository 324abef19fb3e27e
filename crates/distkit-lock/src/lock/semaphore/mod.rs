//! The semaphore, built on the machinery of the locks: leases and their background renewal
//! ([`Lease`]), the acquisition loop with notifications and polling ([`acquire`]), the
//! shared release subscriber, fencing tokens (`fence.lua`) and the loss guard
//! (`loss_guard.lua`). The public docs are in [`crate::semaphore`].

mod options;

use std::sync::Arc;
use std::time::{Duration, Instant};

use distkit_core::fred::types::Value;
use distkit_core::script::{CallPolicy, key_values};
use distkit_core::{DistkitError, LockError, key_schema};
use tracing::Instrument;

pub use options::{SemaphoreOptions, SemaphoreOptionsBuilder};

use super::acquire::{Attempt, Patience, QueuePlace, Waiting, acquire, settle_place};
use super::lease::{AttemptGuard, Lease, LeaseKind, LeaseTarget, Won};
use super::notify::WakeOn;
use super::observe::{self, LockKind};
use super::{LockGuardState, LockServices};
use crate::scripts::{SEMAPHORE_ACQUIRE, SEMAPHORE_AVAILABLE, SEMAPHORE_LEAVE_QUEUE};

/// The parts of a semaphore's keys, in the scripts' order (see `semaphore_common.lua`).
const KEY_PARTS: [&str; 8] = [
    "sem:holders",
    "sem:held",
    "sem:queue",
    "sem:alive",
    "sem:line",
    "sem:fence",
    "sem:epoch",
    "sem:quarantine",
];

/// A distributed counting semaphore: at most [`permits`](SemaphoreOptions::permits) units
/// held at once across processes, each acquisition under a lease, served in arrival order,
/// with fencing tokens. See the [module docs](crate::semaphore) for the design.
///
/// ```no_run
/// # use distkit_lock as distkit; // the facade crate, as users name it
/// use distkit::DistkitRedisKey;
/// use distkit::semaphore::{Semaphore, SemaphoreOptions};
///
/// # async fn call_provider(_fencing_token: u64) {}
/// # async fn example() -> Result<(), distkit::DistkitError> {
/// let client = distkit::connect("redis://127.0.0.1:6379").await?;
/// // At most 4 calls to the payment provider at once, over every process.
/// let provider = Semaphore::new(SemaphoreOptions::new(
///     DistkitRedisKey::try_from("payment-provider")?,
///     client,
///     4,
/// ));
/// let permit = provider.acquire().await?;
/// call_provider(permit.fencing_token()).await;
/// permit.release().await?;
/// # Ok(())
/// # }
/// ```
pub struct Semaphore {
    options: SemaphoreOptions,
    services: LockServices,
    /// The eight keys, in the scripts' order.
    keys: Arc<[Value]>,
    /// The release channel.
    channel: String,
    /// `<namespace>:{<key>}`, for the `Debug` output of its permits.
    name: Arc<str>,
}

/// Compact: the semaphore's name and the options that shape its behaviour (not the client).
impl std::fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Semaphore")
            .field("namespace", &self.options.namespace.as_str())
            .field("key", &self.options.key.as_str())
            .field("permits", &self.options.permits)
            .field("ttl", &self.options.ttl)
            .field("max_wait", &self.options.max_wait)
            .finish_non_exhaustive()
    }
}

impl Semaphore {
    /// A semaphore named by `options.key` in `options.namespace`. Does no I/O; options are
    /// checked by every acquisition (and by [`SemaphoreOptions::validate`]).
    pub fn new(options: SemaphoreOptions) -> Arc<Self> {
        let part = |name: &str| key_schema::lock_part(&options.namespace, &options.key, name);
        let keys = key_values(&KEY_PARTS.map(part)).into();
        let channel = part("sem:released");
        let name = Arc::from(key_schema::lock_owner(&options.namespace, &options.key));
        Arc::new(Self {
            services: LockServices::of(&options.client),
            options,
            keys,
            channel,
            name,
        })
    }

    /// Waits for one permit (bounded by `max_wait`, if set). See
    /// [`acquire_many`](Self::acquire_many).
    ///
    /// # Errors
    ///
    /// As [`acquire_many`](Self::acquire_many).
    ///
    /// # Cancel safety
    ///
    /// As [`acquire_many`](Self::acquire_many): dropping the future leaves no permit taken
    /// and no place in line.
    pub async fn acquire(&self) -> Result<SemaphorePermit, DistkitError> {
        self.acquire_many(1).await
    }

    /// Waits until `n` permits are granted together (bounded by `max_wait`, if set).
    ///
    /// Waiters are served in arrival order: this request holds a place in line (renewed with
    /// every attempt) and no later request is granted permits this one is waiting for. Woken
    /// by release notifications, polling every `retry_interval` as the fallback. Each attempt
    /// runs the `semaphore_acquire` script (atomic, sent once). With `max_wait` set it
    /// returns within `max_wait` (at least 100 ms) plus scheduling delays whatever Redis
    /// does. Cancelling it (dropping the future) leaves the line at once, and gives back in
    /// the background permits an attempt in flight may have taken.
    ///
    /// # Errors
    ///
    /// Before any I/O: [`LockError::InvalidPermits`] when `n` is 0 or more than
    /// [`permits`](SemaphoreOptions::permits); the errors of [`SemaphoreOptions::validate`].
    /// [`LockError::PermitCountMismatch`] when the key is in use with another permit count;
    /// [`LockError::Timeout`] when `max_wait` ran out; [`LockError::NotReplicated`] with
    /// [`replica_acks`](SemaphoreOptions::replica_acks); [`DistkitError::RedisError`] when
    /// Redis fails (an attempt cut off by a connection failure gives back what it may have
    /// taken, in the background).
    ///
    /// # Cancel safety
    ///
    /// Dropping the future before it returns leaves no permit taken and no place in line:
    /// a drop guard removes the request from the line (the leave-queue script, from
    /// distkit's background runtime; should that fail, the place expires one queue window
    /// after the last attempt renewed it), so later requests are no longer held back by it.
    /// An attempt dropped after its `semaphore_acquire` call was handed to the client, whose
    /// reply was not read, may have taken permits: a drop guard gives them back from
    /// distkit's background runtime (should that fail, they return when the lease expires
    /// after its `ttl`). No permit exists until the future returns.
    pub async fn acquire_many(&self, n: u32) -> Result<SemaphorePermit, DistkitError> {
        Box::pin(self.acquire_traced(n, Patience::Wait(self.options.max_wait))).await
    }

    /// One attempt to take one permit. See [`try_acquire_many`](Self::try_acquire_many).
    ///
    /// # Errors
    ///
    /// As [`try_acquire_many`](Self::try_acquire_many).
    ///
    /// # Cancel safety
    ///
    /// As [`try_acquire_many`](Self::try_acquire_many).
    pub async fn try_acquire(&self) -> Result<SemaphorePermit, DistkitError> {
        self.try_acquire_many(1).await
    }

    /// One attempt to take `n` permits: granted only when they are free beside what every
    /// waiter in line asked for (a one-shot attempt never jumps the line). One round trip
    /// (`semaphore_acquire`, atomic, sent once).
    ///
    /// # Errors
    ///
    /// [`LockError::AcquireFail`] when the permits are not free; otherwise as
    /// [`acquire_many`](Self::acquire_many).
    ///
    /// # Cancel safety
    ///
    /// One attempt, no place in line. Dropped before it was sent, nothing happens.
    /// An attempt dropped after its `semaphore_acquire` call was handed to the client, whose
    /// reply was not read, may have taken permits: a drop guard gives them back from
    /// distkit's background runtime (should that fail, they return when the lease expires
    /// after its `ttl`). No permit exists until the future returns.
    pub async fn try_acquire_many(&self, n: u32) -> Result<SemaphorePermit, DistkitError> {
        Box::pin(self.acquire_traced(n, Patience::Once)).await
    }

    /// Tries to take one permit until `timeout` runs out. See
    /// [`try_acquire_many_for`](Self::try_acquire_many_for).
    ///
    /// # Errors
    ///
    /// As [`try_acquire_many_for`](Self::try_acquire_many_for).
    ///
    /// # Cancel safety
    ///
    /// As [`acquire_many`](Self::acquire_many).
    pub async fn try_acquire_for(
        &self,
        timeout: Duration,
    ) -> Result<SemaphorePermit, DistkitError> {
        self.try_acquire_many_for(1, timeout).await
    }

    /// Waits in line for `n` permits until `timeout` runs out (a zero timeout makes exactly
    /// one attempt).
    ///
    /// Returns within `timeout` plus scheduling delays whatever Redis does (stalled,
    /// unreachable): subscribing for release notifications and every attempt, the first
    /// included, count against it; only an unanswered first attempt gets at least 100 ms.
    ///
    /// # Errors
    ///
    /// [`LockError::Timeout`] with the time waited; otherwise as
    /// [`acquire_many`](Self::acquire_many).
    ///
    /// # Cancel safety
    ///
    /// As [`acquire_many`](Self::acquire_many): dropping the future, or the bound cutting it
    /// off, leaves no permit taken and no place in line (drop guards clean up in the
    /// background).
    pub async fn try_acquire_many_for(
        &self,
        n: u32,
        timeout: Duration,
    ) -> Result<SemaphorePermit, DistkitError> {
        Box::pin(self.acquire_traced(n, Patience::Within(timeout))).await
    }

    /// How many permits no live lease holds, as one snapshot (`semaphore_available`, a
    /// read-only script, one round trip). Waiters in line may be about to take them, and a
    /// [`try_acquire_many`](Self::try_acquire_many) gets only what is free beside their
    /// requests.
    ///
    /// # Errors
    ///
    /// The errors of [`SemaphoreOptions::validate`] (before any I/O);
    /// [`LockError::PermitCountMismatch`] when the key is in use with another permit count;
    /// [`DistkitError::RedisError`] when Redis fails.
    ///
    /// # Cancel safety
    ///
    /// A read-only script: dropping the future leaves nothing behind.
    pub async fn available_permits(&self) -> Result<u32, DistkitError> {
        self.options.validate()?;
        let reply = SEMAPHORE_AVAILABLE
            .run_with_keys(
                &self.options.client,
                &self.keys,
                vec![Value::from(self.options.permits)],
                CallPolicy::RETRY,
            )
            .await
            .map_err(|error| DistkitError::from(error).about_key("semaphore", &self.name))?;
        // `{ 1, free permits }`, or `{ 0, the stored count }` (see `semaphore_available.lua`).
        let number = |value: &Value| {
            value
                .as_i64()
                .or_else(|| value.as_str().and_then(|text| text.parse::<i64>().ok()))
        };
        match reply {
            Value::Array(parts) => match parts.as_slice() {
                [ok, free] if ok.as_i64() == Some(1) => Ok(number(free)
                    .and_then(|free| u32::try_from(free).ok())
                    .unwrap_or(0)),
                [_, stored] => Err(self.mismatch(
                    number(stored)
                        .and_then(|stored| u64::try_from(stored).ok())
                        .unwrap_or(0),
                )),
                _ => Err(unexpected_reply()),
            },
            _ => Err(unexpected_reply()),
        }
    }

    fn mismatch(&self, stored: u64) -> DistkitError {
        LockError::PermitCountMismatch {
            key: self.name.to_string(),
            stored: u32::try_from(stored).unwrap_or(u32::MAX),
            configured: self.options.permits,
        }
        .into()
    }

    /// An acquisition in its `distkit.lock.acquire` span (kind `semaphore`), with its metrics.
    async fn acquire_traced(
        &self,
        n: u32,
        patience: Patience,
    ) -> Result<SemaphorePermit, DistkitError> {
        let span = observe::acquire_span(
            &self.options.namespace,
            &self.options.key,
            LockKind::Semaphore,
        );
        let started = Instant::now();
        let acquired = self
            .acquire_untraced(n, patience)
            .instrument(span.clone())
            .await;
        if let Ok(permit) = &acquired {
            observe::granted(&span, permit.get_on_attempt(), permit.fencing_token());
        }
        observe::acquisition_ended(
            &span,
            LockKind::Semaphore,
            &self.options.namespace,
            started.elapsed(),
            acquired.as_ref().map(drop),
        );
        acquired.map_err(|error| error.about_key("semaphore", &self.name))
    }

    async fn acquire_untraced(
        &self,
        n: u32,
        patience: Patience,
    ) -> Result<SemaphorePermit, DistkitError> {
        self.options.validate_request(n)?;
        // One token per acquisition: its place in line and, once granted, its hold.
        let token = ulid::Ulid::new().to_string();
        let member = format!("{n} {token}");
        let announce = self.services.notifier.announce_target(&self.channel);
        let queued = patience.waits();
        // A queued acquisition leaves the line when it ends without the permits (cancelled,
        // timed out, failed).
        let place = queued.then(|| QueuePlace {
            client: self.options.client.clone(),
            keys: Arc::clone(&self.keys),
            script: &SEMAPHORE_LEAVE_QUEUE,
            args: vec![Value::from(member.as_str()), Value::from(announce.as_str())],
            armed: true,
        });
        let waiting = Waiting {
            notifier: &self.services.notifier,
            wake_on: WakeOn::Release {
                channel: &self.channel,
            },
            retry_interval: self.options.retry_interval,
        };
        let (won, attempt) = settle_place(
            place,
            acquire(waiting, patience, |_| {
                self.attempt(token.clone(), n, queued, announce.clone())
            })
            .await,
        )
        .await?;
        Ok(SemaphorePermit {
            semaphore: Arc::clone(&self.name),
            permits: n,
            lease: Lease::start(
                &self.services.renewals,
                won.target,
                won.sent_at,
                won.fencing_token,
                attempt,
            ),
        })
    }

    async fn attempt(
        &self,
        token: String,
        n: u32,
        queued: bool,
        announce: String,
    ) -> Result<Attempt<Won>, DistkitError> {
        let args = vec![
            Value::from(token.as_str()),
            Value::from(n),
            Value::from(self.options.permits),
            Value::from(self.options.ttl_ms()),
            Value::from(self.options.queue_window_ms()),
            Value::from(if queued { "1" } else { "0" }),
            Value::from(self.options.loss_guard_argument()),
            Value::from(announce.as_str()),
        ];
        let target = LeaseTarget {
            lock: Arc::clone(&self.name),
            client: self.options.client.clone(),
            kind: LeaseKind::Permit,
            keys: Arc::clone(&self.keys),
            channel: announce,
            token: token.into(),
            ttl: self.options.ttl,
            loss_guard: self.options.loss_guard_argument(),
            replica_acks: self.options.replica_acks,
            // The lease plus the ten minutes `semaphore_common.lua` keeps the fence and epoch
            // (its `SEM_RETENTION_MS`).
            keep_ms: self.options.ttl_ms().saturating_add(600_000),
        };
        // Per-acquisition tokens: an attempt whose outcome is unknown is always cleaned up.
        match AttemptGuard::new(target, true)
            .run(&SEMAPHORE_ACQUIRE, &self.keys, args)
            .await
        {
            // The script refuses a handle with another permit count with an error reply
            // naming the stored count, before it writes anything (`semaphore_acquire.lua`).
            Err(DistkitError::RedisError(error)) => match stored_count(&error) {
                Some(stored) => Err(self.mismatch(stored)),
                None => Err(error.into()),
            },
            outcome => outcome,
        }
    }
}

/// The prefix of the acquire script's error reply for a permit count mismatch.
const MISMATCH_ERROR: &str = "DISTKIT_PERMIT_COUNT";

/// The stored permit count named by the acquire script's mismatch error, if `error` is one.
fn stored_count(error: &distkit_core::fred::error::Error) -> Option<u64> {
    let (_, rest) = error.details().split_once(MISMATCH_ERROR)?;
    rest.split_whitespace().next()?.parse().ok()
}

fn unexpected_reply() -> DistkitError {
    distkit_core::fred::error::Error::new(
        distkit_core::fred::error::ErrorKind::Parse,
        "unexpected reply from a semaphore script",
    )
    .into()
}

/// Permits of a [`Semaphore`], held until released or dropped.
///
/// Its lease is renewed every `ttl / 3` in the background (on distkit's background runtime,
/// whichever runtime acquired it) and its state follows the lease exactly like a lock
/// guard's ([`LockGuardState`]). Dropping it gives the permits back, never panics, and never
/// depends on the runtime that drops it: inside a multi-thread runtime or outside any
/// runtime the drop **waits for the release** (bounded by the client's command timeout plus
/// a second); on a current-thread runtime it cannot wait and the release completes in the
/// background (lost if the process exits first; the lease then runs out after its ttl).
/// [`release`](Self::release) is the way to be sure everywhere, and reports the outcome.
pub struct SemaphorePermit {
    /// `<namespace>:{<key>}`.
    semaphore: Arc<str>,
    permits: u32,
    lease: Lease,
}

/// Compact: the semaphore, the state, the fencing token and the winning attempt.
impl std::fmt::Debug for SemaphorePermit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.lease
            .debug_guard(f, "SemaphorePermit", &self.semaphore)
    }
}

impl SemaphorePermit {
    /// The state of the lease, without a Redis round trip: `Lost` once a renewal was refused
    /// or none was confirmed for a ttl (less 1 %) on the local monotonic clock; `Released`
    /// after a release.
    ///
    /// # Cancel safety
    ///
    /// Reads local state only, without an await: cancel safe.
    pub async fn get_state(&self) -> LockGuardState {
        self.lease.state()
    }

    /// Completes once the state is no longer `Acquired`, for `tokio::select!` around the
    /// protected work (see [`MutexGuard::lost`](crate::lock::MutexGuard::lost)).
    ///
    /// # Cancel safety
    ///
    /// Waits for a local notification only: dropping it (e.g. the other branch of a
    /// `tokio::select!` won) leaves nothing behind; call it again to wait again.
    pub async fn lost(&self) {
        self.lease.lost().await;
    }

    /// The 0-based attempt that acquired the permits (a one-shot `try_*` is 0).
    pub fn get_on_attempt(&self) -> usize {
        self.lease.attempt()
    }

    /// How many permits this acquisition holds.
    pub fn permits(&self) -> u32 {
        self.permits
    }

    /// The fencing token of this acquisition: it strictly increases with every acquisition
    /// on the semaphore's key, so a resource can refuse a holder older than the newest it
    /// saw.
    pub fn fencing_token(&self) -> u64 {
        self.lease.fencing_token()
    }

    /// Confirms the lease in Redis and renews it to a full ttl (`semaphore_extend`, atomic,
    /// idempotent).
    ///
    /// # Errors
    ///
    /// [`LockError::NotOwner`] when the lease is gone; [`LockError::NotReplicated`] with
    /// [`replica_acks`](SemaphoreOptions::replica_acks) when too few replicas acknowledged;
    /// [`DistkitError::RedisError`] when Redis fails.
    ///
    /// # Cancel safety
    ///
    /// Dropped before its extend script was handed to the client, nothing
    /// happens; after, the lease may be renewed in Redis without the guard recording it
    /// (its view of the lease only stays more cautious). The background renewals go on
    /// either way.
    pub async fn extend(&self) -> Result<(), DistkitError> {
        let semaphore = &self.semaphore;
        self.lease
            .extend()
            .await
            .map_err(|error| error.about_key("semaphore", semaphore))
    }

    /// Gives the permits back (`semaphore_release`, atomic, sent once: removes only this
    /// acquisition's entry) and wakes the waiters.
    ///
    /// Returns `Released` when it removed its own entry within its lease, `Lost` when the
    /// lease had already gone.
    ///
    /// # Errors
    ///
    /// [`DistkitError::RedisError`] for transport failures; the lease then runs out after
    /// its ttl.
    ///
    /// # Cancel safety
    ///
    /// The guard is consumed: dropping the future drops it, and the drop releases the
    /// lease as a dropped guard does (in the background, waited for where the thread may
    /// block). A release that had already reached Redis is harmless to repeat: a release
    /// acts only on its own token.
    pub async fn release(self) -> Result<LockGuardState, DistkitError> {
        let Self {
            semaphore, lease, ..
        } = self;
        lease
            .release()
            .await
            .map_err(|error| error.about_key("semaphore", &semaphore))
    }
}
