use std::time::Duration;

use distkit_core::fred::clients::Client;
use distkit_core::{DistkitError, DistkitRedisKey};

/// The default dead-instance threshold: 30 s.
const DEFAULT_DEAD_INSTANCE_THRESHOLD: Duration = Duration::from_secs(30);
/// The smallest threshold honoured, in ms; smaller values are raised to it.
pub(crate) const MIN_DEAD_INSTANCE_THRESHOLD_MS: u64 = 1_000;
/// The longest threshold or revival window honoured, in ms (10^12 ms, about 31 years: in
/// effect forever); longer values are lowered to it, so server-clock arithmetic stays exact.
pub(crate) const MAX_DURATION_MS: u64 = 1_000_000_000_000;
/// The default revival window: one hour.
const DEFAULT_REVIVAL_WINDOW: Duration = Duration::from_secs(3_600);
const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_millis(20);
const DEFAULT_ALLOWED_LAG: Duration = Duration::from_millis(20);

/// The smallest dead-instance threshold honoured (1 s), as a `Duration`.
const MIN_DEAD_INSTANCE_THRESHOLD: Duration = Duration::from_millis(MIN_DEAD_INSTANCE_THRESHOLD_MS);
/// The longest threshold or revival window honoured (10^12 ms), as a `Duration`.
const MAX_DURATION: Duration = Duration::from_millis(MAX_DURATION_MS);

/// How to build a [`StrictInstanceAwareCounter`](super::StrictInstanceAwareCounter).
///
/// Build it with [`new`](Self::new) and set fields, or with [`builder`](Self::builder).
/// Nothing here can be out of range today (durations are clamped as documented on each
/// field), but [`validate`](Self::validate) exists, and runs before any I/O, like that of
/// every other option struct.
///
/// ```
/// # use distkit_counter as distkit; // the facade crate, as users name it
/// use std::time::Duration;
/// use distkit::icounter::StrictInstanceAwareCounterOptions;
/// use distkit::fred::clients::Client;
/// use distkit::DistkitRedisKey;
///
/// # fn example(client: Client) -> Result<(), distkit::DistkitError> {
/// let prefix = DistkitRedisKey::try_from("connections")?;
/// let options = StrictInstanceAwareCounterOptions::builder(prefix, client)
///     .dead_instance_threshold(Duration::from_secs(10))
///     .revival_window(Duration::from_secs(600))
///     .build();
/// options.validate()?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct StrictInstanceAwareCounterOptions {
    /// The namespace of the counter's keys (`distkit:{<prefix>:<s>}:ic:…` per shard, see
    /// `shards`).
    pub prefix: DistkitRedisKey,
    /// A connected client.
    pub client: Client,
    /// How long this instance may go without a call or heartbeat (judged by the Redis
    /// server's clock) before its slices leave the totals. Each instance is judged by its own
    /// threshold, whatever the thresholds of the others. Whole milliseconds (finer parts are
    /// dropped); values below [`MIN_DEAD_INSTANCE_THRESHOLD`](Self::MIN_DEAD_INSTANCE_THRESHOLD)
    /// (1 s) are raised to it, values above [`MAX_DURATION`](Self::MAX_DURATION) (10^12 ms,
    /// about 31 years) lowered to it, so no value is refused. Default 30 s.
    pub dead_instance_threshold: Duration,
    /// How long the slices of this instance are kept, after it was found dead, for its
    /// revival: if it comes back within the window it restores them, after it they (and its
    /// other records in Redis) are removed by later operations of any instance, a bounded
    /// amount per call. A window below the dead-instance threshold is raised to the
    /// threshold, one above [`MAX_DURATION`](Self::MAX_DURATION) (10^12 ms, about 31 years)
    /// lowered to it, so no value is refused. Default 1 hour.
    ///
    /// A lax instance that comes back after its window and resends a flush whose outcome it
    /// never learnt gets [`CounterError::FlushExpired`](distkit_core::CounterError::FlushExpired)
    /// instead of counting it twice.
    pub revival_window: Duration,
    /// Over how many shards (hash tags, so cluster slots) the prefix's keys are spread: key
    /// `k` lives in shard `FNV-1a-64(k) mod shards`, whose twelve keys are
    /// `distkit:{<prefix>:<s>}:ic:…`; `1` is the single-slot layout of earlier versions,
    /// `distkit:{<prefix>}:ic:…`. Each shard is a complete instance-aware counter space: an
    /// instance joins a shard's membership with its first call there and is kept alive there
    /// by its calls and heartbeats (see the [module docs](super)). Fixed per prefix: recorded
    /// in Redis on first use, and a handle with another count gets
    /// [`CounterError::ShardCountMismatch`](distkit_core::CounterError::ShardCountMismatch)
    /// before anything is applied. 1 ..= 1024, or 0
    /// ([`AUTO_SHARDS`](crate::counter::CounterOptions::AUTO_SHARDS), the default): 16 on a
    /// Redis Cluster client, 1 on a standalone or Sentinel client.
    pub shards: u16,
}

impl StrictInstanceAwareCounterOptions {
    /// The smallest dead-instance threshold honoured: 1 s (smaller values are raised to it).
    pub const MIN_DEAD_INSTANCE_THRESHOLD: Duration = MIN_DEAD_INSTANCE_THRESHOLD;
    /// The longest dead-instance threshold or revival window honoured: 10^12 ms, about 31
    /// years (longer values are lowered to it).
    pub const MAX_DURATION: Duration = MAX_DURATION;

    /// Options with the defaults: threshold 30 s, revival window 1 hour.
    pub fn new(prefix: DistkitRedisKey, client: Client) -> Self {
        Self {
            prefix,
            client,
            dead_instance_threshold: DEFAULT_DEAD_INSTANCE_THRESHOLD,
            revival_window: DEFAULT_REVIVAL_WINDOW,
            shards: crate::shards::DEFAULT_SHARDS,
        }
    }

    /// A builder starting from the defaults of [`new`](Self::new).
    pub fn builder(
        prefix: DistkitRedisKey,
        client: Client,
    ) -> StrictInstanceAwareCounterOptionsBuilder {
        StrictInstanceAwareCounterOptionsBuilder {
            options: Self::new(prefix, client),
        }
    }

    /// Checks the options without any I/O, as every operation (and the heartbeat) of a
    /// counter built from them does first.
    ///
    /// `dead_instance_threshold` and `revival_window` are never refused: they are clamped as
    /// their docs say.
    ///
    /// # Errors
    ///
    /// [`DistkitError::InvalidOption`] when `shards` is neither 0 (automatic) nor in 1 ..= 1024.
    pub fn validate(&self) -> Result<(), DistkitError> {
        crate::shards::validate(self.shards)
    }
}

/// Builds [`StrictInstanceAwareCounterOptions`]; see the field docs there.
#[derive(Clone, Debug)]
pub struct StrictInstanceAwareCounterOptionsBuilder {
    options: StrictInstanceAwareCounterOptions,
}

impl StrictInstanceAwareCounterOptionsBuilder {
    /// Sets [`StrictInstanceAwareCounterOptions::dead_instance_threshold`].
    pub fn dead_instance_threshold(mut self, threshold: Duration) -> Self {
        self.options.dead_instance_threshold = threshold;
        self
    }

    /// Sets [`StrictInstanceAwareCounterOptions::revival_window`].
    pub fn revival_window(mut self, revival_window: Duration) -> Self {
        self.options.revival_window = revival_window;
        self
    }

    /// Sets [`StrictInstanceAwareCounterOptions::shards`].
    pub fn shards(mut self, shards: u16) -> Self {
        self.options.shards = shards;
        self
    }

    /// The options, unchecked: every operation of a counter built from them checks them
    /// before any I/O, and [`StrictInstanceAwareCounterOptions::validate`] checks them on
    /// demand.
    pub fn build(self) -> StrictInstanceAwareCounterOptions {
        self.options
    }
}

/// How to build a [`LaxInstanceAwareCounter`](super::LaxInstanceAwareCounter).
///
/// Build it with [`new`](Self::new) and set fields, or with [`builder`](Self::builder). The
/// values are checked by [`validate`](Self::validate), which every operation of a counter
/// built from them runs before any I/O.
///
/// ```
/// # use distkit_counter as distkit; // the facade crate, as users name it
/// use std::time::Duration;
/// use distkit::icounter::LaxInstanceAwareCounterOptions;
/// use distkit::fred::clients::Client;
/// use distkit::DistkitRedisKey;
///
/// # fn example(client: Client) -> Result<(), distkit::DistkitError> {
/// let prefix = DistkitRedisKey::try_from("in-flight")?;
/// let options = LaxInstanceAwareCounterOptions::builder(prefix, client)
///     .dead_instance_threshold(Duration::from_secs(10))
///     .flush_interval(Duration::from_millis(50))
///     .build();
/// options.validate()?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct LaxInstanceAwareCounterOptions {
    /// The namespace of the counter's keys (`distkit:{<prefix>:<s>}:ic:…` per shard, see
    /// `shards`).
    pub prefix: DistkitRedisKey,
    /// A connected client.
    pub client: Client,
    /// As [`StrictInstanceAwareCounterOptions::dead_instance_threshold`]: clamped to 1 s ..=
    /// 10^12 ms, never refused. Default 30 s.
    pub dead_instance_threshold: Duration,
    /// As [`StrictInstanceAwareCounterOptions::revival_window`]: clamped to the threshold ..=
    /// 10^12 ms, never refused. Default 1 hour.
    pub revival_window: Duration,
    /// How often pending increments are sent to Redis: from
    /// [`MIN_FLUSH_INTERVAL`](Self::MIN_FLUSH_INTERVAL) (1 ms) to
    /// [`MAX_FLUSH_INTERVAL`](Self::MAX_FLUSH_INTERVAL) (1 hour). Checked even with a zero
    /// `allowed_lag`, which does not use it. Default 20 ms.
    pub flush_interval: Duration,
    /// How long an increment may stay in local memory; zero sends every increment at once.
    /// At most [`MAX_ALLOWED_LAG`](Self::MAX_ALLOWED_LAG) (1 hour). Default 20 ms.
    pub allowed_lag: Duration,
    /// As [`StrictInstanceAwareCounterOptions::shards`]. Default 0: automatic (16 on a
    /// Redis Cluster, 1 elsewhere).
    pub shards: u16,
}

impl LaxInstanceAwareCounterOptions {
    /// The smallest dead-instance threshold honoured: 1 s (smaller values are raised to it).
    pub const MIN_DEAD_INSTANCE_THRESHOLD: Duration = MIN_DEAD_INSTANCE_THRESHOLD;
    /// The longest dead-instance threshold or revival window honoured: 10^12 ms, about 31
    /// years (longer values are lowered to it).
    pub const MAX_DURATION: Duration = MAX_DURATION;
    /// The shortest `flush_interval`: 1 ms.
    pub const MIN_FLUSH_INTERVAL: Duration = Duration::from_millis(1);
    /// The longest `flush_interval`: 1 hour.
    pub const MAX_FLUSH_INTERVAL: Duration = Duration::from_secs(60 * 60);
    /// The longest `allowed_lag`: 1 hour.
    pub const MAX_ALLOWED_LAG: Duration = Duration::from_secs(60 * 60);

    /// Options with the defaults: threshold 30 s, revival window 1 hour, flush interval and
    /// allowed lag 20 ms.
    pub fn new(prefix: DistkitRedisKey, client: Client) -> Self {
        Self {
            prefix,
            client,
            dead_instance_threshold: DEFAULT_DEAD_INSTANCE_THRESHOLD,
            revival_window: DEFAULT_REVIVAL_WINDOW,
            flush_interval: DEFAULT_FLUSH_INTERVAL,
            allowed_lag: DEFAULT_ALLOWED_LAG,
            shards: crate::shards::DEFAULT_SHARDS,
        }
    }

    /// A builder starting from the defaults of [`new`](Self::new).
    pub fn builder(
        prefix: DistkitRedisKey,
        client: Client,
    ) -> LaxInstanceAwareCounterOptionsBuilder {
        LaxInstanceAwareCounterOptionsBuilder {
            options: Self::new(prefix, client),
        }
    }

    /// Checks the options without any I/O, as every operation (and the flush and heartbeat
    /// tasks) of a counter built from them does first (the constructor cannot fail, so a
    /// counter built from invalid options answers every call with this error and starts no
    /// background work). Call it to reject bad configuration early.
    ///
    /// `dead_instance_threshold` and `revival_window` are never refused: they are clamped as
    /// their docs say.
    ///
    /// # Errors
    ///
    /// [`DistkitError::InvalidOption`] when `flush_interval` is outside
    /// [`MIN_FLUSH_INTERVAL`](Self::MIN_FLUSH_INTERVAL) to
    /// [`MAX_FLUSH_INTERVAL`](Self::MAX_FLUSH_INTERVAL), `allowed_lag` is longer than
    /// [`MAX_ALLOWED_LAG`](Self::MAX_ALLOWED_LAG), or `shards` is neither 0 (automatic) nor in 1 ..= 1024.
    pub fn validate(&self) -> Result<(), DistkitError> {
        if self.flush_interval < Self::MIN_FLUSH_INTERVAL
            || self.flush_interval > Self::MAX_FLUSH_INTERVAL
        {
            return Err(DistkitError::InvalidOption(format!(
                "the instance-aware counter flush_interval must be between {:?} and {:?}, got {:?}",
                Self::MIN_FLUSH_INTERVAL,
                Self::MAX_FLUSH_INTERVAL,
                self.flush_interval
            )));
        }
        if self.allowed_lag > Self::MAX_ALLOWED_LAG {
            return Err(DistkitError::InvalidOption(format!(
                "the instance-aware counter allowed_lag must be at most {:?}, got {:?}",
                Self::MAX_ALLOWED_LAG,
                self.allowed_lag
            )));
        }
        crate::shards::validate(self.shards)
    }
}

/// Builds [`LaxInstanceAwareCounterOptions`]; see the field docs there.
#[derive(Clone, Debug)]
pub struct LaxInstanceAwareCounterOptionsBuilder {
    options: LaxInstanceAwareCounterOptions,
}

impl LaxInstanceAwareCounterOptionsBuilder {
    /// Sets [`LaxInstanceAwareCounterOptions::dead_instance_threshold`].
    pub fn dead_instance_threshold(mut self, threshold: Duration) -> Self {
        self.options.dead_instance_threshold = threshold;
        self
    }

    /// Sets [`LaxInstanceAwareCounterOptions::revival_window`].
    pub fn revival_window(mut self, revival_window: Duration) -> Self {
        self.options.revival_window = revival_window;
        self
    }

    /// Sets [`LaxInstanceAwareCounterOptions::flush_interval`].
    pub fn flush_interval(mut self, flush_interval: Duration) -> Self {
        self.options.flush_interval = flush_interval;
        self
    }

    /// Sets [`LaxInstanceAwareCounterOptions::allowed_lag`].
    pub fn allowed_lag(mut self, allowed_lag: Duration) -> Self {
        self.options.allowed_lag = allowed_lag;
        self
    }

    /// Sets [`LaxInstanceAwareCounterOptions::shards`].
    pub fn shards(mut self, shards: u16) -> Self {
        self.options.shards = shards;
        self
    }

    /// The options, unchecked: every operation of a counter built from them checks them
    /// before any I/O, and [`LaxInstanceAwareCounterOptions::validate`] checks them on
    /// demand.
    pub fn build(self) -> LaxInstanceAwareCounterOptions {
        self.options
    }
}
