use std::time::Duration;

use distkit_core::DistkitRedisKey;
use distkit_core::fred::clients::Client;

/// The default [`StrictInstanceAwareCounterOptions::dead_instance_threshold_ms`].
pub(crate) const DEFAULT_DEAD_INSTANCE_THRESHOLD_MS: u64 = 30_000;
/// The smallest threshold honoured; smaller values are raised to it.
pub(crate) const MIN_DEAD_INSTANCE_THRESHOLD_MS: u64 = 1_000;
/// The longest threshold or revival window honoured (10^12 ms, about 31 years: in effect
/// forever); longer values are lowered to it, so server-clock arithmetic stays exact.
pub(crate) const MAX_DURATION_MS: u64 = 1_000_000_000_000;
/// The default revival window: one hour.
const DEFAULT_REVIVAL_WINDOW: Duration = Duration::from_secs(3_600);
const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_millis(20);
const DEFAULT_ALLOWED_LAG: Duration = Duration::from_millis(20);

/// How to build a [`StrictInstanceAwareCounter`](super::StrictInstanceAwareCounter).
#[derive(Clone, Debug)]
pub struct StrictInstanceAwareCounterOptions {
    /// The namespace of the counter's keys (`distkit:{<prefix>}:ic:…`, one cluster slot).
    pub prefix: DistkitRedisKey,
    /// A connected client.
    pub client: Client,
    /// How long this instance may go without a call or heartbeat (judged by the Redis
    /// server's clock) before its slices leave the totals. Each instance is judged by its own
    /// threshold, whatever the thresholds of the others. Values below 1 000 ms are raised to
    /// 1 000 ms, values above 10^12 ms (about 31 years) lowered to it. Default 30 000.
    pub dead_instance_threshold_ms: u64,
    /// How long the slices of this instance are kept, after it was found dead, for its
    /// revival: if it comes back within the window it restores them, after it they (and its
    /// other records in Redis) are removed by later operations of any instance, a bounded
    /// amount per call. A window below the dead-instance threshold is raised to the
    /// threshold, one above 10^12 ms (about 31 years) lowered to it. Default 1 hour.
    ///
    /// A lax instance that comes back after its window and resends a flush whose outcome it
    /// never learnt gets [`CounterError::FlushExpired`](distkit_core::CounterError::FlushExpired)
    /// instead of counting it twice.
    pub revival_window: Duration,
}

impl StrictInstanceAwareCounterOptions {
    /// Options with the defaults: threshold 30 s, revival window 1 hour.
    pub fn new(prefix: DistkitRedisKey, client: Client) -> Self {
        Self {
            prefix,
            client,
            dead_instance_threshold_ms: DEFAULT_DEAD_INSTANCE_THRESHOLD_MS,
            revival_window: DEFAULT_REVIVAL_WINDOW,
        }
    }
}

/// How to build a [`LaxInstanceAwareCounter`](super::LaxInstanceAwareCounter).
#[derive(Clone, Debug)]
pub struct LaxInstanceAwareCounterOptions {
    /// The namespace of the counter's keys (`distkit:{<prefix>}:ic:…`, one cluster slot).
    pub prefix: DistkitRedisKey,
    /// A connected client.
    pub client: Client,
    /// As [`StrictInstanceAwareCounterOptions::dead_instance_threshold_ms`]. Default 30 000.
    pub dead_instance_threshold_ms: u64,
    /// As [`StrictInstanceAwareCounterOptions::revival_window`]: at least the threshold, at
    /// most 10^12 ms. Default 1 hour.
    pub revival_window: Duration,
    /// How often pending increments are sent to Redis. Default 20 ms.
    pub flush_interval: Duration,
    /// How long an increment may stay in local memory; zero sends every increment at once.
    /// Default 20 ms.
    pub allowed_lag: Duration,
}

impl LaxInstanceAwareCounterOptions {
    /// Options with the defaults: threshold 30 s, revival window 1 hour, flush interval and
    /// allowed lag 20 ms.
    pub fn new(prefix: DistkitRedisKey, client: Client) -> Self {
        Self {
            prefix,
            client,
            dead_instance_threshold_ms: DEFAULT_DEAD_INSTANCE_THRESHOLD_MS,
            revival_window: DEFAULT_REVIVAL_WINDOW,
            flush_interval: DEFAULT_FLUSH_INTERVAL,
            allowed_lag: DEFAULT_ALLOWED_LAG,
        }
    }
}
