use std::time::Duration;

use distkit_core::fred::clients::Client;
use distkit_core::{DistkitError, DistkitRedisKey, LockError, ReplicaAcks};

/// The default lock namespace.
const DEFAULT_NAMESPACE: &str = "distkit-locks";
/// The default lease.
const DEFAULT_TTL: Duration = Duration::from_secs(30);
/// The shortest heartbeat window of a waiter's place in a queue.
const MIN_QUEUE_WINDOW: Duration = Duration::from_millis(250);
/// The default fallback poll gap while waiting.
const DEFAULT_RETRY_INTERVAL: Duration = Duration::from_millis(50);

/// How to build a [`Mutex`](super::Mutex) or an [`RwLock`](super::RwLock).
///
/// Build it with [`new`](Self::new) and set fields, or with [`builder`](Self::builder). The
/// values are checked by [`validate`](Self::validate), which every acquisition runs before
/// any I/O.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct LockOptions {
    /// The name of the lock. Locks with the same namespace and key exclude each other across
    /// processes.
    pub key: DistkitRedisKey,
    /// A connected client (see [`distkit_core::connect`]).
    pub client: Client,
    /// The prefix of the lock's Redis keys: `<namespace>:{<key>}…`. Default `distkit-locks`.
    pub namespace: DistkitRedisKey,
    /// The lease: how long the lock stays held after its holder stops renewing it (a crash,
    /// a partition). Renewed every `ttl / 3` while the guard lives. From
    /// [`MIN_TTL`](Self::MIN_TTL) (1 ms) to [`MAX_TTL`](Self::MAX_TTL) (30 days), whole
    /// milliseconds (finer parts are dropped). Default 30 s.
    pub ttl: Duration,
    /// `None`: a fresh token (a ULID) per acquisition. `Some(id)`: `id` is the token of every
    /// acquisition by this lock object, and an acquisition that finds the lock held by the
    /// same id re-attaches to it (e.g. after a restart). Must not be empty.
    ///
    /// With an explicit id, an acquisition that is cancelled (or cut off by its time bound)
    /// after its attempt reached Redis may leave the lock held by `id` for up to a whole
    /// `ttl`: it cannot tell its own leftover from a hold of another guard with the same id,
    /// so it leaves it for the next acquisition with that id to re-attach to (or for the
    /// lease to run out). Without an id, such leftovers are released at once, in the
    /// background. This holds for [`Mutex`](super::Mutex) and [`RwLock`](super::RwLock)
    /// alike. Guards sharing an id share the hold: releasing (or dropping) one releases it
    /// for all of them, and each renews it with its own object's `ttl` (give lock objects
    /// that share an id the same options).
    ///
    /// An id is non-empty, at most [`MAX_OWNER_ID_BYTES`](Self::MAX_OWNER_ID_BYTES) long
    /// (like a key: it is stored, and sent with every renewal) and has no whitespace or
    /// control characters: the scripts store it next to numbers separated by spaces, and an
    /// id with a space could be read as a prefix of another (`"job"` of `"job 1"`).
    pub owner_id: Option<String>,
    /// The bound of `lock()`, `read()` and `write()`; `None` waits forever. Default `None`.
    pub max_wait: Option<Duration>,
    /// The fallback poll gap while waiting (jittered ±50 %); release notifications usually
    /// wake a waiter sooner. Zero spins with a yield between attempts. At most
    /// [`MAX_RETRY_INTERVAL`](Self::MAX_RETRY_INTERVAL) (1 hour). Default 50 ms.
    pub retry_interval: Duration,
    /// Refuse grants after Redis may have lost the lock's state, until every earlier
    /// holder's lease has surely run out. Default `false`.
    ///
    /// On: the grant scripts keep two more keys under the lock's hash tag, `…:epoch` (no
    /// TTL: the run id of the Redis process that last checked the lock) and
    /// `…:quarantine`, and call `INFO server` (a few µs). Nothing is granted (attempts are
    /// refused as if the lock were held, and a release deletes the lock instead of handing
    /// it over) for one `ttl` after a grant finds the lock's state written by another Redis
    /// process (a restart that kept its data, a failover), and until the server has been up
    /// for `ttl` + 1 s when the lock has no state at all and the server started less than
    /// that ago (a restart without persistence — or a fresh server: Redis cannot tell them
    /// apart, so the first use of a lock on a server younger than a ttl waits too). Give
    /// every lock object of one key the same `ttl`. See the module docs, *After data loss*,
    /// for what it cannot catch.
    pub loss_quarantine: bool,
    /// Count a grant or a renewal only once this many replicas acknowledged it (`WAIT`,
    /// sent right after the script on the same connection). `None` (the default): no
    /// waiting.
    ///
    /// - An acquisition whose grant is not acknowledged in time releases what it took (its
    ///   own token only) and fails with [`LockError::NotReplicated`]; it never returns a
    ///   guard. A mutex waiter does not take a handover from its announcement: its next
    ///   attempt confirms the handover and waits for the replicas.
    /// - A renewal that is not acknowledged in time does not confirm the lease (as if the
    ///   renewal had failed): the guard stays `Acquired` while an earlier confirmation still
    ///   covers it and turns `Lost` once none did for a ttl; [`extend`](super::MutexGuard::extend)
    ///   reports [`LockError::NotReplicated`].
    /// - Releases are not acknowledged.
    ///
    /// Checked by [`validate`](Self::validate) ([`ReplicaAcks::validate`]).
    pub replica_acks: Option<ReplicaAcks>,
}

impl LockOptions {
    /// The shortest `ttl`: 1 ms.
    pub const MIN_TTL: Duration = Duration::from_millis(1);
    /// The longest `ttl`: 30 days.
    pub const MAX_TTL: Duration = Duration::from_secs(30 * 24 * 60 * 60);
    /// The longest `owner_id`, in bytes (the longest key's length).
    pub const MAX_OWNER_ID_BYTES: usize = 255;
    /// The longest `retry_interval`: 1 hour.
    pub const MAX_RETRY_INTERVAL: Duration = Duration::from_secs(60 * 60);

    /// Options with the defaults: namespace `distkit-locks`, ttl 30 s, no owner id, no
    /// `max_wait`, retry interval 50 ms, no loss quarantine, no replica acknowledgement.
    pub fn new(key: DistkitRedisKey, client: Client) -> Self {
        Self {
            key,
            client,
            namespace: DistkitRedisKey::new_or_panic(DEFAULT_NAMESPACE.to_owned()),
            ttl: DEFAULT_TTL,
            owner_id: None,
            max_wait: None,
            retry_interval: DEFAULT_RETRY_INTERVAL,
            loss_quarantine: false,
            replica_acks: None,
        }
    }

    /// A builder starting from the defaults of [`new`](Self::new).
    pub fn builder(key: DistkitRedisKey, client: Client) -> LockOptionsBuilder {
        LockOptionsBuilder {
            options: Self::new(key, client),
        }
    }

    /// Checks the options without any I/O, as every acquisition does before its first
    /// Redis call (identical for [`Mutex`](super::Mutex) and [`RwLock`](super::RwLock)); call
    /// it to reject bad configuration early.
    ///
    /// # Errors
    ///
    /// [`LockError::InvalidTtl`] when `ttl` is outside [`MIN_TTL`](Self::MIN_TTL) to
    /// [`MAX_TTL`](Self::MAX_TTL); [`LockError::InvalidRetryInterval`] when `retry_interval`
    /// is longer than [`MAX_RETRY_INTERVAL`](Self::MAX_RETRY_INTERVAL);
    /// [`LockError::InvalidOwner`] when `owner_id` is empty, longer than
    /// [`MAX_OWNER_ID_BYTES`](Self::MAX_OWNER_ID_BYTES) or contains whitespace or a control
    /// character;
    /// [`LockError::InvalidReplicaAcks`] when `replica_acks` is out of range (see
    /// [`ReplicaAcks::validate`]).
    pub fn validate(&self) -> Result<(), DistkitError> {
        if self.ttl < Self::MIN_TTL || self.ttl > Self::MAX_TTL {
            return Err(LockError::InvalidTtl(millis(self.ttl)).into());
        }
        if self.retry_interval > Self::MAX_RETRY_INTERVAL {
            return Err(LockError::InvalidRetryInterval(millis(self.retry_interval)).into());
        }
        if self.owner_id.as_deref().is_some_and(|id| {
            id.is_empty()
                || id.len() > Self::MAX_OWNER_ID_BYTES
                || id.chars().any(|c| c.is_whitespace() || c.is_control())
        }) {
            return Err(LockError::InvalidOwner.into());
        }
        if let Some(acks) = &self.replica_acks
            && let Err(error) = acks.validate()
        {
            return Err(LockError::InvalidReplicaAcks(error.to_string()).into());
        }
        Ok(())
    }

    /// The heartbeat window of a waiter's place in a queue, in ms: `max(4 × retry_interval,
    /// 250 ms)`. A waiter tries again at least every `1.5 × retry_interval`.
    pub(crate) fn queue_window_ms(&self) -> i64 {
        let window = self.retry_interval.saturating_mul(4).max(MIN_QUEUE_WINDOW);
        i64::try_from(window.as_millis()).unwrap_or(i64::MAX)
    }

    /// `'1'` when grants refuse after a data loss (the scripts' loss-guard argument).
    pub(crate) fn loss_guard_argument(&self) -> &'static str {
        if self.loss_quarantine { "1" } else { "0" }
    }

    /// The lease in whole milliseconds.
    pub(crate) fn ttl_ms(&self) -> i64 {
        i64::try_from(self.ttl.as_millis()).unwrap_or(i64::MAX)
    }
}

/// A duration in whole milliseconds, `i64::MAX` when it does not fit.
fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// Builds [`LockOptions`]; see the field docs there.
#[derive(Clone, Debug)]
pub struct LockOptionsBuilder {
    options: LockOptions,
}

impl LockOptionsBuilder {
    /// Sets [`LockOptions::namespace`].
    pub fn namespace(mut self, namespace: DistkitRedisKey) -> Self {
        self.options.namespace = namespace;
        self
    }

    /// Sets [`LockOptions::ttl`].
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.options.ttl = ttl;
        self
    }

    /// Sets [`LockOptions::owner_id`].
    pub fn owner_id(mut self, owner_id: impl Into<String>) -> Self {
        self.options.owner_id = Some(owner_id.into());
        self
    }

    /// Sets [`LockOptions::max_wait`].
    pub fn max_wait(mut self, max_wait: Duration) -> Self {
        self.options.max_wait = Some(max_wait);
        self
    }

    /// Sets [`LockOptions::retry_interval`].
    pub fn retry_interval(mut self, retry_interval: Duration) -> Self {
        self.options.retry_interval = retry_interval;
        self
    }

    /// Sets [`LockOptions::loss_quarantine`].
    pub fn loss_quarantine(mut self, loss_quarantine: bool) -> Self {
        self.options.loss_quarantine = loss_quarantine;
        self
    }

    /// Sets [`LockOptions::replica_acks`].
    pub fn replica_acks(mut self, replica_acks: ReplicaAcks) -> Self {
        self.options.replica_acks = Some(replica_acks);
        self
    }

    /// The options, unchecked: every acquisition checks them before any I/O, and
    /// [`LockOptions::validate`] checks them on demand.
    pub fn build(self) -> LockOptions {
        self.options
    }
}
