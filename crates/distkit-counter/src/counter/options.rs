use std::time::Duration;

use distkit_core::DistkitRedisKey;
use distkit_core::fred::clients::Client;

/// The default [`CounterOptions::allowed_lag`].
const DEFAULT_ALLOWED_LAG: Duration = Duration::from_millis(20);

/// How to build a [`StrictCounter`](super::StrictCounter) or a
/// [`LaxCounter`](super::LaxCounter).
#[derive(Clone, Debug)]
pub struct CounterOptions {
    /// The namespace of the counter's keys: all values of one prefix live in the hash
    /// `distkit:{<prefix>}:counter` (one cluster slot).
    pub prefix: DistkitRedisKey,
    /// A connected client (see [`distkit_core::connect`]); cheap to clone.
    pub client: Client,
    /// For [`LaxCounter`](super::LaxCounter): how long an increment may stay in local memory
    /// before it is flushed to Redis. Zero flushes on every call. Ignored by
    /// [`StrictCounter`](super::StrictCounter). Default 20 ms.
    pub allowed_lag: Duration,
}

impl CounterOptions {
    /// Options with the default `allowed_lag` of 20 ms.
    pub fn new(prefix: DistkitRedisKey, client: Client) -> Self {
        Self {
            prefix,
            client,
            allowed_lag: DEFAULT_ALLOWED_LAG,
        }
    }
}
