//! The sliding-window limiter: trypema's absolute semantics, one atomic script per call.

use std::time::Duration;

use distkit_core::script::{CallPolicy, LuaScript, retry_redirected};
use distkit_core::{DistkitError, DistkitRedisKey};
use fred::clients::Client;

use super::policy::{Charge, FailurePolicy, LimiterKind, decide_under};
use super::{
    Decision, KeyHead, four_integers, integer_arg, invalid, non_negative, push_time_and_peek,
    write_once,
};

/// The sliding-window decision script.
static SLIDING_WINDOW: LuaScript = LuaScript::new(
    "sliding_window",
    concat!(
        include_str!("scripts/sliding_window_common.lua"),
        include_str!("scripts/sliding_window.lua")
    ),
);

/// The longest window of a [`SlidingWindowLimiter`]: 2^40 ms, about 34 years.
pub const MAX_WINDOW: Duration = Duration::from_millis(1 << 40);

/// The largest limit of one window (2^52): counts stay exact in the script's arithmetic.
pub const MAX_WINDOW_LIMIT: u64 = 1 << 52;

/// The options of a [`SlidingWindowLimiter`].
///
/// Build them with [`new`](Self::new) and set fields, or with [`builder`](Self::builder).
/// [`SlidingWindowLimiter::new`] checks them with [`validate`](Self::validate).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct SlidingWindowOptions {
    /// The namespace of the limiter's keys: two limiters with the same prefix share state
    /// (and must then use the same `window` and `bucket`).
    pub prefix: DistkitRedisKey,
    /// The Redis client.
    pub client: Client,
    /// How far back the window reaches: 10 s by default (trypema's default). Whole
    /// milliseconds; a fraction of a millisecond is ignored.
    pub window: Duration,
    /// How close together calls are counted as one bucket: 100 ms by default (trypema's
    /// default). A call joins the newest bucket when that bucket started at most `bucket`
    /// ago. Whole milliseconds, from 1 ms to `window`. A bucket counts until its newest call
    /// is `window` old, so its first calls may count up to `bucket` longer than `window`.
    pub bucket: Duration,
    /// What a call does when Redis fails it or does not answer in time: fail closed (return
    /// the error) by default; see [`FailurePolicy`].
    pub failure_policy: FailurePolicy,
}

impl SlidingWindowOptions {
    /// Options for a limiter of `prefix` on `client`, with a 10 s window of 100 ms buckets,
    /// failing closed.
    pub fn new(prefix: DistkitRedisKey, client: Client) -> Self {
        Self {
            prefix,
            client,
            window: Duration::from_secs(10),
            bucket: Duration::from_millis(100),
            failure_policy: FailurePolicy::default(),
        }
    }

    /// A builder starting from the defaults of [`new`](Self::new).
    pub fn builder(prefix: DistkitRedisKey, client: Client) -> SlidingWindowOptionsBuilder {
        SlidingWindowOptionsBuilder {
            options: Self::new(prefix, client),
        }
    }

    /// Checks `window` and `bucket` without any I/O; what [`SlidingWindowLimiter::new`]
    /// checks.
    ///
    /// # Errors
    ///
    /// [`DistkitError::InvalidOption`] when `window` is shorter than 1 ms or longer than
    /// [`MAX_WINDOW`], or `bucket` is shorter than 1 ms or longer than `window`.
    pub fn validate(&self) -> Result<(), DistkitError> {
        self.window_and_bucket_ms().map(|_| ())
    }

    pub(super) fn window_and_bucket_ms(&self) -> Result<(u64, u64), DistkitError> {
        let window = self.window.as_millis();
        let bucket = self.bucket.as_millis();
        if window == 0 || self.window > MAX_WINDOW {
            return Err(invalid(format!(
                "the sliding window must be 1 ms to {MAX_WINDOW:?}, got {:?}",
                self.window
            )));
        }
        if bucket == 0 || bucket > window {
            return Err(invalid(format!(
                "the sliding window bucket must be 1 ms to the window ({:?}), got {:?}",
                self.window, self.bucket
            )));
        }
        let window = u64::try_from(window).map_err(|_| invalid("window too long".to_owned()))?;
        let bucket = u64::try_from(bucket).map_err(|_| invalid("bucket too long".to_owned()))?;
        Ok((window, bucket))
    }
}

/// Builds [`SlidingWindowOptions`]; see the field docs there.
#[derive(Clone, Debug)]
pub struct SlidingWindowOptionsBuilder {
    options: SlidingWindowOptions,
}

impl SlidingWindowOptionsBuilder {
    /// Sets [`SlidingWindowOptions::window`].
    pub fn window(mut self, window: Duration) -> Self {
        self.options.window = window;
        self
    }

    /// Sets [`SlidingWindowOptions::bucket`].
    pub fn bucket(mut self, bucket: Duration) -> Self {
        self.options.bucket = bucket;
        self
    }

    /// Sets [`SlidingWindowOptions::failure_policy`].
    pub fn failure_policy(mut self, failure_policy: FailurePolicy) -> Self {
        self.options.failure_policy = failure_policy;
        self
    }

    /// The options, unchecked: [`SlidingWindowLimiter::new`] checks them, and
    /// [`SlidingWindowOptions::validate`] checks them on demand.
    pub fn build(self) -> SlidingWindowOptions {
        self.options
    }
}

/// A strict sliding-window limiter: at most `limit` units of cost per key within any
/// `window`, decided by one atomic script on Redis per call, on the server clock.
///
/// The semantics are close to those of trypema's absolute limiter (`distkit::trypema`), so
/// users can switch: calls close together (within `bucket` of the newest bucket's start) are
/// counted in one bucket; a call is admitted when the count in the window plus its cost is
/// at most `limit` (trypema's Redis provider's rule; with a cost of 1 it is the local
/// provider's rule too). The differences:
///
/// - A bucket counts until its **newest** call is `window` old (trypema: until its start
///   is), so every call counts for a whole window and the bound holds for every
///   `bucket <= window`: within any `window` (both ends included, to the millisecond of the
///   server clock), at most `limit` units are admitted. trypema's rule lets the calls that
///   joined a bucket late leave the window early (with `window = bucket = 1 s` and a limit
///   of 10: 1 call at 0 ms, 9 at 800 ms and 10 more at 1030 ms, 19 units within one
///   second). The price: a bucket's first calls may count up to `bucket` longer than a
///   window, so a small `bucket` (the default is a hundredth of the window) keeps the
///   limiter close to exact.
/// - `retry_after` is the time until a call of the same cost would be admitted — for a cost
///   of 1 and buckets of calls close together, trypema's hint plus 1 ms, since trypema names
///   the last millisecond in which the oldest bucket still counts.
///
/// A key's state is a list of buckets (start, count and time of the newest call) and their
/// total, `distkit:rl:<prefix>:{<key>}:sw` and `…:sw:total`, in one slot; both expire when
/// the newest bucket leaves the window. Buckets written by earlier versions (start and count
/// only) are read as if their newest call came `bucket` after their start, the latest it
/// could have. Cheap to clone; starts no background work.
///
/// ```no_run
/// # use distkit_ratelimit as distkit; // the facade crate, as users name it
/// use std::time::Duration;
/// use distkit::ratelimit::{Decision, SlidingWindowLimiter, SlidingWindowOptions};
/// use distkit::DistkitRedisKey;
///
/// # async fn example() -> Result<(), distkit::DistkitError> {
/// let client = distkit::connect("redis://127.0.0.1:6379").await?;
/// let mut options = SlidingWindowOptions::new(DistkitRedisKey::try_from("api")?, client);
/// options.window = Duration::from_secs(60);
/// let limiter = SlidingWindowLimiter::new(options)?;
/// // 600 calls per minute: trypema's RateLimit::per_second(10.0) with a 60 s window.
/// if let Decision::Rejected { retry_after, .. } =
///     limiter.check(&DistkitRedisKey::try_from("tenant-42")?, 600, 1).await?
/// {
///     println!("retry in {retry_after:?}");
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct SlidingWindowLimiter {
    prefix: DistkitRedisKey,
    key_head: KeyHead,
    client: Client,
    window_ms: u64,
    bucket_ms: u64,
    failure_policy: FailurePolicy,
}

impl SlidingWindowLimiter {
    /// A limiter over the keys of `options.prefix`.
    ///
    /// # Errors
    ///
    /// [`DistkitError::InvalidOption`] when the window or bucket is out of range (see
    /// [`SlidingWindowOptions::validate`]).
    pub fn new(options: SlidingWindowOptions) -> Result<Self, DistkitError> {
        let (window_ms, bucket_ms) = options.window_and_bucket_ms()?;
        Ok(Self {
            key_head: KeyHead::new(&options.prefix),
            prefix: options.prefix,
            client: options.client,
            window_ms,
            bucket_ms,
            failure_policy: options.failure_policy,
        })
    }

    /// The window, in whole milliseconds.
    pub fn window(&self) -> Duration {
        Duration::from_millis(self.window_ms)
    }

    /// The bucket width, in whole milliseconds.
    pub fn bucket(&self) -> Duration {
        Duration::from_millis(self.bucket_ms)
    }

    /// Charges `cost` units to `key` if the window's count plus `cost` stays within `limit`,
    /// atomically. To carry over a trypema rate, `limit` is
    /// `floor(rate per second × window in seconds)`.
    ///
    /// Runs the `sliding_window` script (one `EVALSHA`, atomic, on the server clock), sent
    /// once: after a connection failure the client does not replay it.
    ///
    /// # Errors
    ///
    /// - [`DistkitError::InvalidOption`] when `limit` is 0 or above [`MAX_WINDOW_LIMIT`], or
    ///   `cost` is 0 or above `limit`, before any I/O.
    /// - [`DistkitError::RedisError`] for a transport failure (when the connection failed
    ///   after the call was written, the cost may or may not have been charged), a server
    ///   error, or keys holding data distkit did not write (`DISTKIT_BAD_STATE`); never when
    ///   the limiter fails open (see [`FailurePolicy`]): the call is admitted then.
    ///
    /// # Cancel safety
    ///
    /// Dropped before its script was handed to the client (the checks of the arguments run
    /// first, without I/O), nothing is charged. Once handed over, dropping the future does not
    /// take it back: the script runs and may charge `cost` although its decision is lost
    /// (the same holds for a call cut off by a fail-open deadline). Treat such a call as
    /// possibly charged.
    pub async fn check(
        &self,
        key: &DistkitRedisKey,
        limit: u64,
        cost: u64,
    ) -> Result<Decision, DistkitError> {
        let call = self.check_at(key, limit, cost, None);
        let kind = LimiterKind::SlidingWindow;
        decide_under(
            self.failure_policy,
            kind,
            &self.prefix,
            key,
            limit,
            Charge::Cost,
            call,
        )
        .await
    }

    /// The decision a call of cost 1 on `key` within `limit` would get now, without
    /// charging anything.
    ///
    /// Runs the `sliding_window` script in its peek mode (one `EVALSHA`, atomic, on the
    /// server clock; it only evicts buckets that left the window), sent once. Another call
    /// may change the answer right after it.
    ///
    /// # Errors
    ///
    /// - [`DistkitError::InvalidOption`] when `limit` is 0 or above [`MAX_WINDOW_LIMIT`],
    ///   before any I/O.
    /// - [`DistkitError::RedisError`] for a transport failure, a server error, or keys
    ///   holding data distkit did not write (`DISTKIT_BAD_STATE`); never when the limiter
    ///   fails open (see [`FailurePolicy`]).
    ///
    /// # Cancel safety
    ///
    /// Charges nothing, whenever it is dropped.
    pub async fn peek(&self, key: &DistkitRedisKey, limit: u64) -> Result<Decision, DistkitError> {
        let call = async { Ok(self.decide(key, limit, 1, None, true).await?.0) };
        let kind = LimiterKind::SlidingWindow;
        decide_under(
            self.failure_policy,
            kind,
            &self.prefix,
            key,
            limit,
            Charge::Nothing,
            call,
        )
        .await
    }

    /// Charges `cost` units to `key` within `limit` as soon as they fit, sleeping until
    /// then, unless that is later than `max_wait` from now.
    ///
    /// Each attempt is a [`check`](Self::check); after a refusal it sleeps the refusal's
    /// `retry_after` (computed on the server clock), once, and tries again, so it does not
    /// poll. Other callers may take the quota meanwhile: then it waits again, within
    /// `max_wait` in total. Cancelling it charges nothing unless an attempt was admitted.
    ///
    /// # Errors
    ///
    /// - [`DistkitError::RateLimited`] at once, charging nothing, when the next admission
    ///   lies more than `max_wait` after the first attempt (its `retry_after` says when).
    /// - The errors of [`check`](Self::check).
    ///
    /// # Cancel safety
    ///
    /// Dropped while it sleeps between attempts, nothing is charged and nothing is left
    /// behind. Dropped during an attempt, as [`check`](Self::check): once that attempt's
    /// script was handed to the client it may charge `cost` with its decision lost.
    pub async fn wait(
        &self,
        key: &DistkitRedisKey,
        limit: u64,
        cost: u64,
        max_wait: Duration,
    ) -> Result<Decision, DistkitError> {
        super::wait_until_admitted(max_wait, || self.check(key, limit, cost)).await
    }

    /// Forgets the state of `key`: its window is empty. One `DEL` of both keys, atomic,
    /// written once: after a connection failure the client does not send it again (a replay
    /// after the reconnect would also erase the charges admitted in between).
    ///
    /// # Errors
    ///
    /// [`DistkitError::RedisError`] for a transport or server failure (when the connection
    /// failed after the `DEL` was written, the window may or may not have been emptied).
    ///
    /// # Cancel safety
    ///
    /// Dropped before the `DEL` was handed to the client, nothing happens; after, it runs
    /// (or not, if the connection fails) and the caller does not learn which.
    pub async fn reset(&self, key: &DistkitRedisKey) -> Result<(), DistkitError> {
        use fred::interfaces::{ClientLike, KeysInterface};
        let [buckets, total] = self.keys(key);
        let once = self.client.with_options(&write_once());
        let (deleted, _sends) = retry_redirected(&self.client, None, || {
            once.del::<i64, _>(vec![buckets.clone(), total.clone()])
        })
        .await;
        let _deleted = deleted
            .map_err(|error| super::policy::named(&error, &self.prefix, key, Charge::Reset))?;
        Ok(())
    }

    pub(super) fn keys(&self, key: &DistkitRedisKey) -> [String; 2] {
        [
            self.key_head.key(key, "sw"),
            self.key_head.key(key, "sw:total"),
        ]
    }

    /// [`check`](Self::check) at the server's time, or at `now_ms` (tests only).
    pub(crate) async fn check_at(
        &self,
        key: &DistkitRedisKey,
        limit: u64,
        cost: u64,
        now_ms: Option<u64>,
    ) -> Result<Decision, DistkitError> {
        Ok(self.decide(key, limit, cost, now_ms, false).await?.0)
    }

    /// [`check_at`](Self::check_at), also returning the window's count after the decision;
    /// with `peek`, nothing is charged.
    pub(super) async fn decide(
        &self,
        key: &DistkitRedisKey,
        limit: u64,
        cost: u64,
        now_ms: Option<u64>,
        peek: bool,
    ) -> Result<(Decision, u64), DistkitError> {
        check_limit_and_cost(limit, cost)?;
        let [buckets, total] = self.keys(key);
        let mut args = Vec::with_capacity(6);
        args.extend([
            integer_arg(limit),
            integer_arg(self.window_ms),
            integer_arg(self.bucket_ms),
            integer_arg(cost),
        ]);
        push_time_and_peek(&mut args, now_ms, peek);
        let reply = SLIDING_WINDOW
            .run(
                &self.client,
                &[buckets.as_str(), total.as_str()],
                args,
                CallPolicy::ONCE,
            )
            .await?;
        let [allowed, total, retry_ms, reset_ms] = four_integers("sliding_window", reply)?;
        let total = non_negative("sliding_window", total)?;
        let remaining = limit.saturating_sub(total);
        let reset_after = Duration::from_millis(non_negative("sliding_window", reset_ms)?);
        if allowed == 1 {
            let decision = Decision::Allowed {
                remaining,
                limit,
                reset_after,
            };
            return Ok((decision, total));
        }
        let decision = Decision::Rejected {
            retry_after: Duration::from_millis(non_negative("sliding_window", retry_ms)?),
            remaining,
            limit,
            reset_after,
        };
        Ok((decision, total))
    }
}

/// Checks the `limit` and `cost` of a sliding-window call, before any I/O.
pub(super) fn check_limit_and_cost(limit: u64, cost: u64) -> Result<(), DistkitError> {
    if limit == 0 || limit > MAX_WINDOW_LIMIT {
        return Err(invalid(format!(
            "a sliding window limit must be 1 to 2^52 units, got {limit}"
        )));
    }
    if cost == 0 || cost > limit {
        return Err(invalid(format!(
            "a sliding window cost must be 1 to the limit ({limit}), got {cost}"
        )));
    }
    Ok(())
}
