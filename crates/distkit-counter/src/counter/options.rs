use std::time::Duration;

use distkit_core::fred::clients::Client;
use distkit_core::{DistkitError, DistkitRedisKey, ReplicaAcks};

/// The default [`CounterOptions::allowed_lag`].
const DEFAULT_ALLOWED_LAG: Duration = Duration::from_millis(20);

/// How to build a [`StrictCounter`](super::StrictCounter) or a
/// [`LaxCounter`](super::LaxCounter).
///
/// Build it with [`new`](Self::new) and set fields, or with [`builder`](Self::builder). The
/// values are checked by [`validate`](Self::validate), which every operation of a counter
/// built from them runs before any I/O.
///
/// ```
/// # use distkit_counter as distkit; // the facade crate, as users name it
/// use std::time::Duration;
/// use distkit::counter::CounterOptions;
/// use distkit::fred::clients::Client;
/// use distkit::DistkitRedisKey;
///
/// # fn example(client: Client) -> Result<(), distkit::DistkitError> {
/// let options = CounterOptions::builder(DistkitRedisKey::try_from("hits")?, client)
///     .allowed_lag(Duration::from_millis(100))
///     .build();
/// options.validate()?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct CounterOptions {
    /// The namespace of the counter's keys: the values of one prefix live in one hash per
    /// shard (see [`shards`](Self::shards)).
    pub prefix: DistkitRedisKey,
    /// A connected client (see [`distkit_core::connect`]); cheap to clone.
    pub client: Client,
    /// For [`LaxCounter`](super::LaxCounter): how long an increment may stay in local memory
    /// before it is flushed to Redis. Zero flushes on every call. At most
    /// [`MAX_ALLOWED_LAG`](Self::MAX_ALLOWED_LAG) (1 hour). Ignored by
    /// [`StrictCounter`](super::StrictCounter) (but checked all the same). Default 20 ms.
    pub allowed_lag: Duration,
    /// For [`StrictCounter`](super::StrictCounter): when set, every write waits until this
    /// many replicas acknowledged it (Redis `WAIT` on the same connection, right after the
    /// script) and fails with [`CounterError::NotReplicated`](distkit_core::CounterError)
    /// when they do not within the timeout — the write was applied by the primary but may be
    /// lost in a failover. Reads do not wait. Ignored by [`LaxCounter`](super::LaxCounter)
    /// (but checked all the same, see [`ReplicaAcks::validate`]). Default `None`: a write is
    /// acknowledged as soon as the primary applied it.
    pub replica_acks: Option<ReplicaAcks>,
    /// Over how many shards (hash tags, so cluster slots) the prefix's values are spread:
    /// key `k` lives in the hash `distkit:{<prefix>:<s>}:counter` of shard
    /// `s = FNV-1a-64(k) mod shards`; `1` is the single-slot layout of earlier versions,
    /// `distkit:{<prefix>}:counter`. Every operation on one key is one script on one slot as
    /// before; a batch runs one script per shard it touches (atomic per shard, see the
    /// [module docs](super)). Fixed per prefix: it is recorded in Redis on first use, and a
    /// handle with another count gets
    /// [`CounterError::ShardCountMismatch`](distkit_core::CounterError::ShardCountMismatch)
    /// before anything is applied (the README's *Scaling out* says how to change it).
    /// 1 ..= 1024, or 0 ([`AUTO_SHARDS`](Self::AUTO_SHARDS), the default): 16 on a Redis
    /// Cluster client, 1 on a standalone or Sentinel client (one server gains nothing from
    /// shards and pays for them; see the README's *Scaling out*).
    pub shards: u16,
}

impl CounterOptions {
    /// The longest `allowed_lag`: 1 hour.
    pub const MAX_ALLOWED_LAG: Duration = Duration::from_secs(60 * 60);

    /// The [`shards`](Self::shards) value that picks by deployment: 16 on a Redis Cluster
    /// client (enough to spread a prefix over the masters of a typical cluster), 1 on a
    /// standalone or Sentinel client (the single-slot layout, at its exact cost).
    pub const AUTO_SHARDS: u16 = crate::shards::AUTO_SHARDS;

    /// The default [`shards`](Self::shards): [`AUTO_SHARDS`](Self::AUTO_SHARDS).
    pub const DEFAULT_SHARDS: u16 = crate::shards::DEFAULT_SHARDS;

    /// Options with the defaults: `allowed_lag` 20 ms, no replica acknowledgement,
    /// [`DEFAULT_SHARDS`](Self::DEFAULT_SHARDS) (automatic) shards.
    pub fn new(prefix: DistkitRedisKey, client: Client) -> Self {
        Self {
            prefix,
            client,
            allowed_lag: DEFAULT_ALLOWED_LAG,
            replica_acks: None,
            shards: Self::DEFAULT_SHARDS,
        }
    }

    /// A builder starting from the defaults of [`new`](Self::new).
    pub fn builder(prefix: DistkitRedisKey, client: Client) -> CounterOptionsBuilder {
        CounterOptionsBuilder {
            options: Self::new(prefix, client),
        }
    }

    /// Checks the options without any I/O, as every operation of a
    /// [`StrictCounter`](super::StrictCounter) or [`LaxCounter`](super::LaxCounter) built
    /// from them does before its first Redis call (the constructors cannot fail, so a counter
    /// built from invalid options answers every call with this error and starts no
    /// background work). Call it to reject bad configuration early.
    ///
    /// Every field is checked, whichever counter uses it.
    ///
    /// # Errors
    ///
    /// [`DistkitError::InvalidOption`] when `allowed_lag` is longer than
    /// [`MAX_ALLOWED_LAG`](Self::MAX_ALLOWED_LAG), `replica_acks` is out of range (see
    /// [`ReplicaAcks::validate`]), or `shards` is neither 0 (automatic) nor in 1 ..= 1024.
    pub fn validate(&self) -> Result<(), DistkitError> {
        if self.allowed_lag > Self::MAX_ALLOWED_LAG {
            return Err(DistkitError::InvalidOption(format!(
                "the counter allowed_lag must be at most {:?}, got {:?}",
                Self::MAX_ALLOWED_LAG,
                self.allowed_lag
            )));
        }
        if let Some(acks) = &self.replica_acks {
            acks.validate()?;
        }
        crate::shards::validate(self.shards)
    }
}

/// Builds [`CounterOptions`]; see the field docs there.
#[derive(Clone, Debug)]
pub struct CounterOptionsBuilder {
    options: CounterOptions,
}

impl CounterOptionsBuilder {
    /// Sets [`CounterOptions::allowed_lag`].
    pub fn allowed_lag(mut self, allowed_lag: Duration) -> Self {
        self.options.allowed_lag = allowed_lag;
        self
    }

    /// Sets [`CounterOptions::replica_acks`].
    pub fn replica_acks(mut self, replica_acks: ReplicaAcks) -> Self {
        self.options.replica_acks = Some(replica_acks);
        self
    }

    /// Sets [`CounterOptions::shards`].
    pub fn shards(mut self, shards: u16) -> Self {
        self.options.shards = shards;
        self
    }

    /// The options, unchecked: every operation of a counter built from them checks them
    /// before any I/O, and [`CounterOptions::validate`] checks them on demand.
    pub fn build(self) -> CounterOptions {
        self.options
    }
}
