use std::time::Duration;

use distkit_core::DistkitRedisKey;
use distkit_core::fred::clients::Client;

/// The default [`StrictInstanceAwareCounterOptions::dead_instance_threshold_ms`].
pub(crate) const DEFAULT_DEAD_INSTANCE_THRESHOLD_MS: u64 = 30_000;
/// The smallest threshold honoured; smaller values are raised to it.
pub(crate) const MIN_DEAD_INSTANCE_THRESHOLD_MS: u64 = 1_000;
const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_millis(20);
const DEFAULT_ALLOWED_LAG: Duration = Duration::from_millis(20);

/// How to build a [`StrictInstanceAwareCounter`](super::StrictInstanceAwareCounter).
#[derive(Clone, Debug)]
pub struct StrictInstanceAwareCounterOptions {
    /// The namespace of the counter's keys (`distkit:{<prefix>}:ic:…`, one cluster slot).
    pub prefix: DistkitRedisKey,
    /// A connected client.
    pub client: Client,
    /// How long an instance may go without a heartbeat (judged by the Redis server's clock)
    /// before its slices leave the totals. Values below 1 000 ms are raised to 1 000 ms.
    /// Default 30 000.
    pub dead_instance_threshold_ms: u64,
}

impl StrictInstanceAwareCounterOptions {
    /// Options with the default threshold of 30 s.
    pub fn new(prefix: DistkitRedisKey, client: Client) -> Self {
        Self {
            prefix,
            client,
            dead_instance_threshold_ms: DEFAULT_DEAD_INSTANCE_THRESHOLD_MS,
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
    /// How often pending increments are sent to Redis. Default 20 ms.
    pub flush_interval: Duration,
    /// How long an increment may stay in local memory; zero sends every increment at once.
    /// Default 20 ms.
    pub allowed_lag: Duration,
}

impl LaxInstanceAwareCounterOptions {
    /// Options with the defaults: threshold 30 s, flush interval and allowed lag 20 ms.
    pub fn new(prefix: DistkitRedisKey, client: Client) -> Self {
        Self {
            prefix,
            client,
            dead_instance_threshold_ms: DEFAULT_DEAD_INSTANCE_THRESHOLD_MS,
            flush_interval: DEFAULT_FLUSH_INTERVAL,
            allowed_lag: DEFAULT_ALLOWED_LAG,
        }
    }
}
