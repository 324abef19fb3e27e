//! Native rate limiting on the same fred [`Client`](fred::clients::Client),
//! [`DistkitRedisKey`] and [`DistkitError`] as every other distkit primitive, on a standalone
//! Redis or a Redis Cluster.
//!
//! Two algorithms, **strict**: every call is one atomic Lua script on the Redis node that
//! owns the limiter key, deciding on the server's clock (`TIME`), so every process sharing the
//! Redis shares the limit exactly.
//!
//! - [`GcraLimiter`]: the generic cell rate algorithm — a smooth rate (`limit` units per
//!   `period`) with a `burst`, kept in one small string per key. Admitted calls are spread
//!   evenly: after a burst, one unit comes back every `period / limit`.
//! - [`SlidingWindowLimiter`]: at most `limit` units within any sliding `window`, counted in
//!   buckets of `bucket` width — the semantics of trypema's absolute limiter (users of
//!   [`distkit::trypema`](https://docs.rs/trypema) can switch), except that a bucket counts
//!   until its newest call leaves the window, so the bound holds in every window.
//!
//! And a **lax** (hybrid) mode of each, mirroring the strict and lax counters: decided from
//! local memory (no I/O on a warm key) and synced with Redis in the background every
//! `sync_interval` (20 ms by default), exactly once, on the same keys as the strict
//! limiter. They may admit more than the limit, by a documented bound (see each type's
//! docs for the exact statement):
//!
//! - [`LaxGcraLimiter`]: GCRA on a local view of the key's TAT; `N` objects sharing a key
//!   admit at most `N × (burst + limit × elapsed / period)`.
//! - [`LaxSlidingWindowLimiter`]: the sliding window on a local view of its count; `N`
//!   objects sharing a key admit at most `N × limit` within one window.
//!
//! In steady use an object over-admits about what the other objects admitted during one
//! sync interval.
//!
//! Each call returns a [`Decision`]: [`Allowed`](Decision::Allowed) with the quota left, or
//! [`Rejected`](Decision::Rejected) with when to retry and the quota available now. A call
//! has a `cost` (weighted calls) and names its limit (different keys may have different
//! limits; the limit of a key may change from one call to the next).
//!
//! # Which limiter
//!
//! | you need | use |
//! |---|---|
//! | one shared limit across processes, on a standalone Redis **or a Redis Cluster**, decided exactly on every call | [`GcraLimiter`] (smooth) or [`SlidingWindowLimiter`] (window counts) |
//! | no network round trip per call, on a standalone Redis **or a Redis Cluster**, and a bounded over-admission is fine | [`LaxGcraLimiter`] (smooth) or [`LaxSlidingWindowLimiter`] (window counts) |
//! | the same with trypema's API | trypema's hybrid provider (`distkit::trypema::hybrid`, standalone Redis only) |
//! | trypema's suppressed (probabilistic) strategy | trypema's Redis or hybrid provider (standalone Redis only) |
//! | a limit within one process | trypema's local provider (no I/O) |
//!
//! Each call of a strict limiter costs one round trip to Redis (pipelined with the other
//! commands of the client); a lax limiter makes one on the first call of a key and then
//! syncs each key it tracks once per `sync_interval`, in the background.
//!
//! # Cluster
//!
//! All keys of one limiter key share one hash tag — the limiter key itself — so each script
//! touches one slot, and different limiter keys spread over the cluster's masters:
//! `distkit:rl:<prefix>:{<key>}:gcra` for GCRA, `distkit:rl:<prefix>:{<key>}:sw` and
//! `…:sw:total` for the sliding window, plus `…:gcra:sync:<object id>` or
//! `…:sw:sync:<object id>` per lax object (the record of its last delivery) (braces and `%` in the prefix and key are escaped, see
//! [`key_schema::hash_tag`](distkit_core::key_schema::hash_tag)). Every key expires on its
//! own once it no longer limits anything, so idle keys leave nothing behind.
//!
//! # Failures
//!
//! The strict scripts are sent once and never replayed by the client (a replay would charge the
//! cost twice). When the connection fails after a call was written, the call returns
//! [`DistkitError::RedisError`] with a transport error
//! ([`error_is_transport_failure`](distkit_core::error_is_transport_failure) is true): the
//! cost may or may not have been charged. That is failing closed, the default; each
//! limiter's options take a [`FailurePolicy`] to fail open instead: a call Redis fails, or
//! does not answer within a deadline, is then admitted (logged, and counted in
//! `distkit_ratelimit_failed_open_total` with the `metrics` feature). The lax limiters' deliveries are the
//! exception: each carries a sequence number, so they are resent until confirmed and applied
//! once (see [`LaxGcraLimiter`] and [`LaxSlidingWindowLimiter`]).
//!
//! ```no_run
//! # use distkit_ratelimit as distkit; // the facade crate, as users name it
//! use std::time::Duration;
//! use distkit::ratelimit::{Decision, GcraLimiter, GcraOptions, GcraRate};
//! use distkit::DistkitRedisKey;
//!
//! # async fn example() -> Result<(), distkit::DistkitError> {
//! let client = distkit::connect("redis://127.0.0.1:6379").await?;
//! let limiter = GcraLimiter::new(GcraOptions::new(DistkitRedisKey::try_from("api")?, client));
//! // 100 requests per second on average, up to 20 at once.
//! let rate = GcraRate::new(100, Duration::from_secs(1), 20)?;
//! match limiter.check(&DistkitRedisKey::try_from("tenant-42")?, &rate, 1).await? {
//!     Decision::Allowed { remaining, .. } => println!("go on, {remaining} left"),
//!     Decision::Rejected { retry_after, .. } => println!("slow down, retry in {retry_after:?}"),
//! }
//! # Ok(())
//! # }
//! ```

mod gcra;
mod lax;
mod lax_gcra;
mod lax_sliding_window;
mod policy;
mod sliding_window;
#[cfg(feature = "tower")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
pub mod tower;

#[cfg(test)]
#[expect(
    clippy::arithmetic_side_effects,
    reason = "a test model: an overflow there is a failing test"
)]
mod model;
#[cfg(test)]
#[expect(
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation,
    reason = "test arithmetic on small generated numbers"
)]
mod tests;

use std::time::Duration;

use distkit_core::key_schema::hash_tag;
use distkit_core::{DistkitError, DistkitRedisKey};
use fred::types::Value;

pub use gcra::{
    GcraLimiter, GcraOptions, GcraOptionsBuilder, GcraRate, MAX_GCRA_BURST_SPAN, MAX_GCRA_LIMIT,
};
pub use lax::{MAX_SYNC_INTERVAL, MIN_SYNC_INTERVAL};
pub use lax_gcra::{LaxGcraLimiter, LaxGcraOptions, LaxGcraOptionsBuilder};
pub use lax_sliding_window::{
    LaxSlidingWindowLimiter, LaxSlidingWindowOptions, LaxSlidingWindowOptionsBuilder,
};
pub use policy::{FailurePolicy, MAX_FAIL_OPEN_DEADLINE};
pub use sliding_window::{
    MAX_WINDOW, MAX_WINDOW_LIMIT, SlidingWindowLimiter, SlidingWindowOptions,
    SlidingWindowOptionsBuilder,
};

/// The answer of a rate limiter to one call.
///
/// Everything an HTTP service needs for the IETF `RateLimit-Limit`, `RateLimit-Remaining`,
/// `RateLimit-Reset` and `Retry-After` headers: [`limit`](Self::limit),
/// [`remaining`](Self::remaining), [`reset_after`](Self::reset_after) and
/// [`retry_after`](Self::retry_after) (the `tower` feature's layer fills them in).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Decision {
    /// The call was admitted and its cost charged.
    Allowed {
        /// How many more units would be admitted right now (the rest of the burst, or of the
        /// window's limit).
        remaining: u64,
        /// The most units admitted at once: the burst of a GCRA rate, the limit of a
        /// sliding window.
        limit: u64,
        /// How long until the full `limit` is available again, if nothing else is admitted.
        reset_after: Duration,
    },
    /// The call was refused; nothing was charged.
    Rejected {
        /// How long until a call of the same cost would be admitted, if no other call is
        /// admitted in between. Computed on the server clock at the time of the decision (by
        /// a strict limiter; a lax limiter deciding in memory computes it on its view: a
        /// hint, see [`LaxGcraLimiter`] and [`LaxSlidingWindowLimiter`]).
        retry_after: Duration,
        /// How many units would be admitted right now (less than the cost of this call).
        remaining: u64,
        /// The most units admitted at once: the burst of a GCRA rate, the limit of a
        /// sliding window.
        limit: u64,
        /// How long until the full `limit` is available again, if nothing else is admitted.
        reset_after: Duration,
    },
}

impl Decision {
    /// Whether the call was admitted.
    pub fn is_allowed(&self) -> bool {
        matches!(self, Self::Allowed { .. })
    }

    /// The quota left at the time of the decision, for both outcomes (`RateLimit-Remaining`).
    pub fn remaining(&self) -> u64 {
        match *self {
            Self::Allowed { remaining, .. } | Self::Rejected { remaining, .. } => remaining,
        }
    }

    /// The most units admitted at once (`RateLimit-Limit`): the burst of a GCRA rate, the
    /// limit of a sliding-window call.
    pub fn limit(&self) -> u64 {
        match *self {
            Self::Allowed { limit, .. } | Self::Rejected { limit, .. } => limit,
        }
    }

    /// How long until the full [`limit`](Self::limit) is available again if nothing else is
    /// admitted (`RateLimit-Reset`): for GCRA, until the key's theoretical arrival time; for
    /// a sliding window, until every unit counted now has left the window. Zero when the
    /// full limit is available now. A lax limiter deciding in memory gives its view's
    /// figure: a hint.
    pub fn reset_after(&self) -> Duration {
        match *self {
            Self::Allowed { reset_after, .. } | Self::Rejected { reset_after, .. } => reset_after,
        }
    }

    /// How long until a call of the same cost would be admitted (`Retry-After`): `None` when
    /// this one was.
    pub fn retry_after(&self) -> Option<Duration> {
        match *self {
            Self::Allowed { .. } => None,
            Self::Rejected { retry_after, .. } => Some(retry_after),
        }
    }
}

/// What a limiter's check returns, boxed: see [`Limiter`].
pub type CheckFuture<'a> = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<Decision, DistkitError>> + Send + 'a>,
>;

/// A rate limiter that generic code can drive (the `tower` feature's
/// `RateLimitLayer` takes any): every limiter of this module implements it, with the
/// semantics of its own `check`.
pub trait Limiter: Send + Sync + 'static {
    /// What a call names besides its key and cost: a [`GcraRate`] for the GCRA limiters,
    /// the window's limit (`u64`) for the sliding-window limiters.
    type Params: Send + Sync + 'static;

    /// The limiter's `check`: charges `cost` units to `key` if they are admitted.
    ///
    /// # Errors
    ///
    /// Those of the limiter's own `check`.
    fn check<'a>(
        &'a self,
        key: &'a DistkitRedisKey,
        params: &'a Self::Params,
        cost: u64,
    ) -> CheckFuture<'a>;
}

impl Limiter for GcraLimiter {
    type Params = GcraRate;

    fn check<'a>(
        &'a self,
        key: &'a DistkitRedisKey,
        rate: &'a GcraRate,
        cost: u64,
    ) -> CheckFuture<'a> {
        Box::pin(GcraLimiter::check(self, key, rate, cost))
    }
}

impl Limiter for LaxGcraLimiter {
    type Params = GcraRate;

    fn check<'a>(
        &'a self,
        key: &'a DistkitRedisKey,
        rate: &'a GcraRate,
        cost: u64,
    ) -> CheckFuture<'a> {
        Box::pin(LaxGcraLimiter::check(self, key, rate, cost))
    }
}

impl Limiter for SlidingWindowLimiter {
    type Params = u64;

    fn check<'a>(&'a self, key: &'a DistkitRedisKey, limit: &'a u64, cost: u64) -> CheckFuture<'a> {
        Box::pin(SlidingWindowLimiter::check(self, key, *limit, cost))
    }
}

impl Limiter for LaxSlidingWindowLimiter {
    type Params = u64;

    fn check<'a>(&'a self, key: &'a DistkitRedisKey, limit: &'a u64, cost: u64) -> CheckFuture<'a> {
        Box::pin(LaxSlidingWindowLimiter::check(self, key, *limit, cost))
    }
}

/// The loop of every limiter's `wait`: calls `check` until it admits, sleeping each
/// refusal's `retry_after` once; gives up at once with [`DistkitError::RateLimited`] when the
/// next admission lies beyond `max_wait` (counted from the first call). A refused call
/// charges nothing, so giving up (or being cancelled) charges nothing.
async fn wait_until_admitted<F, Fut>(
    max_wait: Duration,
    mut check: F,
) -> Result<Decision, DistkitError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Decision, DistkitError>>,
{
    let started = tokio::time::Instant::now();
    loop {
        let decision = check().await?;
        let Some(retry_after) = decision.retry_after() else {
            return Ok(decision);
        };
        let waited = started.elapsed();
        if waited.saturating_add(retry_after) > max_wait {
            return Err(DistkitError::RateLimited { retry_after });
        }
        // A refusal always names a positive wait; at least 1 µs keeps a zero from spinning.
        tokio::time::sleep(retry_after.max(Duration::from_micros(1))).await;
    }
}

/// The options of a command written once: fred does not replay it after a reconnect, so a
/// `DEL` whose reply was lost cannot run again after later calls were charged.
fn write_once() -> fred::types::config::Options {
    fred::types::config::Options {
        max_attempts: Some(1),
        ..fred::types::config::Options::default()
    }
}

/// The Redis key of a limiter key: `distkit:rl:<prefix>:{<key>}:<part>`, tagged by the key.
fn redis_key(prefix: &DistkitRedisKey, key: &DistkitRedisKey, part: &str) -> String {
    format!(
        "distkit:rl:{}:{{{}}}:{part}",
        hash_tag(prefix),
        hash_tag(key)
    )
}

/// A non-negative integer argument of a limiter script, sent as its decimal digits: as an
/// integer value when it fits an `i64` (fred writes it as the same bulk string without a
/// `String` being formatted and allocated first), else as text.
fn integer_arg(value: impl Into<u128>) -> Value {
    let value: u128 = value.into();
    i64::try_from(value).map_or_else(|_| Value::from(value.to_string()), Value::Integer)
}

/// Appends the optional arguments of a limiter script: the time (tests only; `''` for the
/// server clock), then the peek flag (`'1'` to peek). A call on the server clock that charges
/// sends neither (the script reads absent arguments as those defaults), a peek on the server
/// clock sends both.
fn push_time_and_peek(args: &mut Vec<Value>, now: Option<u64>, peek: bool) {
    if now.is_some() || peek {
        args.push(now.map_or_else(|| Value::from_static_str(""), integer_arg));
    }
    if peek {
        args.push(Value::from_static_str("1"));
    }
}

/// The start of a limiter's Redis keys, `distkit:rl:<prefix>:{`, built once per limiter so a
/// call only appends its key's tag and the part (the same text as [`redis_key`]).
#[derive(Clone, Debug)]
struct KeyHead(std::sync::Arc<str>);

impl KeyHead {
    fn new(prefix: &DistkitRedisKey) -> Self {
        Self(format!("distkit:rl:{}:{{", hash_tag(prefix)).into())
    }

    /// `distkit:rl:<prefix>:{<key>}:<part>`.
    fn key(&self, key: &DistkitRedisKey, part: &str) -> String {
        let tag = hash_tag(key);
        let length = self
            .0
            .len()
            .saturating_add(tag.len())
            .saturating_add(2)
            .saturating_add(part.len());
        let mut text = String::with_capacity(length);
        text.push_str(&self.0);
        text.push_str(&tag);
        text.push_str("}:");
        text.push_str(part);
        text
    }
}

/// An error for an option or argument outside its range.
fn invalid(message: String) -> DistkitError {
    DistkitError::InvalidOption(message)
}

/// The three integers a limiter script returns.
fn three_integers(script: &str, reply: Value) -> Result<(i64, i64, i64), DistkitError> {
    let unexpected = || {
        DistkitError::RedisError(fred::error::Error::new(
            fred::error::ErrorKind::Parse,
            format!("unexpected reply of the {script} script"),
        ))
    };
    let Value::Array(values) = reply else {
        return Err(unexpected());
    };
    match values.as_slice() {
        [Value::Integer(a), Value::Integer(b), Value::Integer(c)] => Ok((*a, *b, *c)),
        _ => Err(unexpected()),
    }
}

/// The four integers a limiter script returns.
fn four_integers(script: &str, reply: Value) -> Result<[i64; 4], DistkitError> {
    let unexpected = || {
        DistkitError::RedisError(fred::error::Error::new(
            fred::error::ErrorKind::Parse,
            format!("unexpected reply of the {script} script"),
        ))
    };
    let Value::Array(values) = reply else {
        return Err(unexpected());
    };
    match values.as_slice() {
        [
            Value::Integer(a),
            Value::Integer(b),
            Value::Integer(c),
            Value::Integer(d),
        ] => Ok([*a, *b, *c, *d]),
        _ => Err(unexpected()),
    }
}

/// A non-negative integer of a script reply.
fn non_negative(script: &str, value: i64) -> Result<u64, DistkitError> {
    u64::try_from(value).map_err(|_| {
        DistkitError::RedisError(fred::error::Error::new(
            fred::error::ErrorKind::Parse,
            format!("negative number in the reply of the {script} script"),
        ))
    })
}
