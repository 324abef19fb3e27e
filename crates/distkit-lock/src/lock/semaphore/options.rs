//! The options of a semaphore.

use std::time::Duration;

use distkit_core::fred::clients::Client;
use distkit_core::{DistkitError, DistkitRedisKey, LockError, ReplicaAcks};

use crate::lock::LockOptions;

/// The default semaphore namespace.
const DEFAULT_NAMESPACE: &str = "distkit-semaphores";
/// The default lease.
const DEFAULT_TTL: Duration = Duration::from_secs(30);
/// The default fallback poll gap while waiting.
const DEFAULT_RETRY_INTERVAL: Duration = Duration::from_millis(50);
/// The shortest heartbeat window of a waiter's place in line.
const MIN_QUEUE_WINDOW: Duration = Duration::from_millis(250);

/// How to build a [`Semaphore`](super::Semaphore).
///
/// Build it with [`new`](Self::new) and set fields, or with [`builder`](Self::builder). The
/// values are checked by [`validate`](Self::validate), which every acquisition runs before
/// any I/O.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct SemaphoreOptions {
    /// The name of the semaphore. Handles with the same namespace and key share its permits
    /// across processes.
    pub key: DistkitRedisKey,
    /// A connected client (see [`distkit_core::connect`]).
    pub client: Client,
    /// The prefix of the semaphore's Redis keys: `<namespace>:{<key>}:sem:…`. Default
    /// `distkit-semaphores`.
    pub namespace: DistkitRedisKey,
    /// The most permits held at once, at least 1. Every handle of one key must use the same
    /// count: while any permit of the key is held or waited for, an acquisition (or
    /// [`available_permits`](super::Semaphore::available_permits)) through a handle with
    /// another count fails with [`LockError::PermitCountMismatch`] and takes nothing.
    pub permits: u32,
    /// The lease of each acquisition: how long its permits stay taken after the holder stops
    /// renewing them (a crash, a partition). Renewed every `ttl / 3` while the permit lives.
    /// From [`LockOptions::MIN_TTL`] (1 ms) to [`LockOptions::MAX_TTL`] (30 days), whole
    /// milliseconds. Default 30 s.
    pub ttl: Duration,
    /// The bound of [`acquire`](super::Semaphore::acquire) and
    /// [`acquire_many`](super::Semaphore::acquire_many); `None` waits forever. Default `None`.
    pub max_wait: Option<Duration>,
    /// The fallback poll gap while waiting (jittered ±50 %); release notifications usually
    /// wake a waiter sooner. Zero spins with a yield between attempts. At most
    /// [`LockOptions::MAX_RETRY_INTERVAL`] (1 hour). Default 50 ms. A waiter's place in line
    /// lasts `max(4 × retry_interval, 250 ms)` after its last attempt (its heartbeat).
    pub retry_interval: Duration,
    /// Count a grant or a renewal only once this many replicas acknowledged it (`WAIT`), as
    /// [`LockOptions::replica_acks`] describes: an acquisition whose grant is not
    /// acknowledged in time gives its permits back and fails with
    /// [`LockError::NotReplicated`]. Default `None`.
    pub replica_acks: Option<ReplicaAcks>,
    /// Refuse grants after Redis may have lost the semaphore's state, until every earlier
    /// lease has surely run out, as [`LockOptions::loss_quarantine`] describes (keys
    /// `…:sem:epoch` and `…:sem:quarantine`; waiters keep their place meanwhile). Give every
    /// handle of one key the same `ttl`. Default `false`.
    pub loss_quarantine: bool,
}

impl SemaphoreOptions {
    /// Options with the defaults: namespace `distkit-semaphores`, ttl 30 s, no `max_wait`,
    /// retry interval 50 ms, no replica acknowledgement, no loss quarantine.
    pub fn new(key: DistkitRedisKey, client: Client, permits: u32) -> Self {
        Self {
            key,
            client,
            namespace: DistkitRedisKey::new_or_panic(DEFAULT_NAMESPACE.to_owned()),
            permits,
            ttl: DEFAULT_TTL,
            max_wait: None,
            retry_interval: DEFAULT_RETRY_INTERVAL,
            replica_acks: None,
            loss_quarantine: false,
        }
    }

    /// A builder starting from the defaults of [`new`](Self::new).
    pub fn builder(key: DistkitRedisKey, client: Client, permits: u32) -> SemaphoreOptionsBuilder {
        SemaphoreOptionsBuilder {
            options: Self::new(key, client, permits),
        }
    }

    /// Checks the options without any I/O, as every acquisition does before its first Redis
    /// call; call it to reject bad configuration early.
    ///
    /// # Errors
    ///
    /// [`DistkitError::InvalidOption`] when `permits` is 0; [`LockError::InvalidTtl`] when
    /// `ttl` is outside 1 ms to 30 days; [`LockError::InvalidRetryInterval`] when
    /// `retry_interval` is longer than an hour; [`LockError::InvalidReplicaAcks`] when
    /// `replica_acks` is out of range (see [`ReplicaAcks::validate`]).
    pub fn validate(&self) -> Result<(), DistkitError> {
        if self.permits == 0 {
            return Err(DistkitError::InvalidOption(
                "semaphore permits must be at least 1, got 0".to_owned(),
            ));
        }
        if self.ttl < LockOptions::MIN_TTL || self.ttl > LockOptions::MAX_TTL {
            return Err(LockError::InvalidTtl(millis(self.ttl)).into());
        }
        if self.retry_interval > LockOptions::MAX_RETRY_INTERVAL {
            return Err(LockError::InvalidRetryInterval(millis(self.retry_interval)).into());
        }
        if let Some(acks) = &self.replica_acks
            && let Err(error) = acks.validate()
        {
            return Err(LockError::InvalidReplicaAcks(error.to_string()).into());
        }
        Ok(())
    }

    /// Checks the options and a request for `n` permits, without any I/O.
    pub(crate) fn validate_request(&self, n: u32) -> Result<(), DistkitError> {
        self.validate()?;
        if n == 0 || n > self.permits {
            return Err(LockError::InvalidPermits {
                requested: n,
                permits: self.permits,
            }
            .into());
        }
        Ok(())
    }

    /// The heartbeat window of a waiter's place in line, in ms: `max(4 × retry_interval,
    /// 250 ms)`. A waiter tries again at least every `1.5 × retry_interval`.
    pub(crate) fn queue_window_ms(&self) -> i64 {
        millis(self.retry_interval.saturating_mul(4).max(MIN_QUEUE_WINDOW))
    }

    /// `'1'` when grants refuse after a data loss (the scripts' loss-guard argument).
    pub(crate) fn loss_guard_argument(&self) -> &'static str {
        if self.loss_quarantine { "1" } else { "0" }
    }

    /// The lease in whole milliseconds.
    pub(crate) fn ttl_ms(&self) -> i64 {
        millis(self.ttl)
    }
}

/// A duration in whole milliseconds, `i64::MAX` when it does not fit.
fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// Builds [`SemaphoreOptions`]; see the field docs there.
#[derive(Clone, Debug)]
pub struct SemaphoreOptionsBuilder {
    options: SemaphoreOptions,
}

impl SemaphoreOptionsBuilder {
    /// Sets [`SemaphoreOptions::namespace`].
    pub fn namespace(mut self, namespace: DistkitRedisKey) -> Self {
        self.options.namespace = namespace;
        self
    }

    /// Sets [`SemaphoreOptions::ttl`].
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.options.ttl = ttl;
        self
    }

    /// Sets [`SemaphoreOptions::max_wait`].
    pub fn max_wait(mut self, max_wait: Duration) -> Self {
        self.options.max_wait = Some(max_wait);
        self
    }

    /// Sets [`SemaphoreOptions::retry_interval`].
    pub fn retry_interval(mut self, retry_interval: Duration) -> Self {
        self.options.retry_interval = retry_interval;
        self
    }

    /// Sets [`SemaphoreOptions::replica_acks`].
    pub fn replica_acks(mut self, replica_acks: ReplicaAcks) -> Self {
        self.options.replica_acks = Some(replica_acks);
        self
    }

    /// Sets [`SemaphoreOptions::loss_quarantine`].
    pub fn loss_quarantine(mut self, loss_quarantine: bool) -> Self {
        self.options.loss_quarantine = loss_quarantine;
        self
    }

    /// The options, unchecked: every acquisition checks them before any I/O, and
    /// [`SemaphoreOptions::validate`] checks them on demand.
    pub fn build(self) -> SemaphoreOptions {
        self.options
    }
}
