//! GCRA: a smooth rate with a burst, one atomic script per call.

use std::time::Duration;

use distkit_core::script::{CallPolicy, LuaScript, retry_redirected};
use distkit_core::{DistkitError, DistkitRedisKey};
use fred::clients::Client;

use super::policy::{Charge, FailurePolicy, LimiterKind, decide_under};
use super::{
    Decision, KeyHead, four_integers, integer_arg, invalid, non_negative, push_time_and_peek,
    write_once,
};

/// The GCRA decision script.
static GCRA: LuaScript = LuaScript::new(
    "gcra",
    concat!(
        include_str!("scripts/gcra_common.lua"),
        include_str!("scripts/gcra.lua")
    ),
);

/// The largest `limit` of a [`GcraRate`] (2^48): the script counts in 1/limit of a microsecond.
pub const MAX_GCRA_LIMIT: u64 = 1 << 48;

/// The longest time a [`GcraRate`]'s burst may take to drain, `burst × period / limit`
/// (2^48 µs, about 8.9 years).
pub const MAX_GCRA_BURST_SPAN: Duration = Duration::from_micros(1 << 48);

/// A GCRA rate: on average `limit` units per `period`, and up to `burst` units at once.
///
/// A key that has been idle long enough admits `burst` units immediately; after that it
/// admits one unit every `period / limit` (the emission interval). The arithmetic is exact:
/// the emission interval is kept as whole microseconds plus a rest in `1/limit` µs, so 3 per
/// second admits exactly 3 calls per second, not 3 per 999 999 µs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GcraRate {
    pub(super) limit: u64,
    pub(super) period_us: u128,
    pub(super) burst: u64,
    /// `burst × period` in units of `1/limit` µs.
    pub(super) burst_scaled: u128,
}

impl GcraRate {
    /// `limit` units per `period` on average, up to `burst` at once.
    ///
    /// # Errors
    ///
    /// [`DistkitError::InvalidOption`] when `limit` is 0 or above [`MAX_GCRA_LIMIT`], `period`
    /// is shorter than 1 µs, the period per unit (`period / limit`, the emission interval)
    /// is shorter than 1 µs (more than a million units per second), `burst` is 0, or the
    /// burst takes longer than [`MAX_GCRA_BURST_SPAN`] to drain. A fraction of a microsecond
    /// in `period` is ignored (see [`period`](Self::period)).
    pub fn new(limit: u64, period: Duration, burst: u64) -> Result<Self, DistkitError> {
        if limit == 0 || limit > MAX_GCRA_LIMIT {
            return Err(invalid(format!(
                "the gcra limit must be 1 to 2^48 units per period, got {limit}"
            )));
        }
        let period_us = period.as_micros();
        if period_us == 0 {
            return Err(invalid(format!(
                "the gcra period must be at least 1 µs, got {period:?}"
            )));
        }
        // The emission interval, period / limit, is at least 1 µs: the state and every time
        // the script keeps are whole microseconds, so a faster rate could not be kept apart
        // from a slower one.
        if period.as_nanos() < u128::from(limit).saturating_mul(1_000) {
            return Err(invalid(format!(
                "a gcra rate of {limit} per {period:?} is faster than one unit per microsecond: \
                 the period per unit (period / limit) must be at least 1 µs; count in larger \
                 units or over a longer period"
            )));
        }
        if burst == 0 {
            return Err(invalid("the gcra burst must be at least 1 unit".to_owned()));
        }
        let span_limit = u128::from(MAX_GCRA_LIMIT).saturating_mul(u128::from(limit));
        let burst_scaled = u128::from(burst)
            .checked_mul(period_us)
            .filter(|scaled| *scaled <= span_limit)
            .ok_or_else(|| {
                invalid(format!(
                    "a gcra burst of {burst} at {limit} per {period:?} takes longer than \
                     {MAX_GCRA_BURST_SPAN:?} to drain"
                ))
            })?;
        Ok(Self {
            limit,
            period_us,
            burst,
            burst_scaled,
        })
    }

    /// `limit` units per second on average, up to `burst` at once.
    ///
    /// # Errors
    ///
    /// As [`new`](Self::new).
    pub fn per_second(limit: u64, burst: u64) -> Result<Self, DistkitError> {
        Self::new(limit, Duration::from_secs(1), burst)
    }

    /// The units per period.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// The period, to the microsecond.
    pub fn period(&self) -> Duration {
        Duration::from_micros(u64::try_from(self.period_us).unwrap_or(u64::MAX))
    }

    /// The most units admitted at once.
    pub fn burst(&self) -> u64 {
        self.burst
    }

    /// `units × period / limit` as whole microseconds and a rest in `1/limit` µs.
    pub(super) fn span_of(&self, units: u64) -> (u128, u128) {
        let scaled = u128::from(units).saturating_mul(self.period_us);
        let limit = u128::from(self.limit);
        (
            scaled.checked_div(limit).unwrap_or(0),
            scaled.checked_rem(limit).unwrap_or(0),
        )
    }

    /// The units still admissible when the TAT lies `ahead_scaled` (in `1/limit` µs) ahead.
    pub(super) fn remaining_at(&self, ahead_scaled: u128) -> u64 {
        let room = self.burst_scaled.saturating_sub(ahead_scaled);
        let units = room.checked_div(self.period_us).unwrap_or(0);
        u64::try_from(units).unwrap_or(u64::MAX).min(self.burst)
    }
}

/// The options of a [`GcraLimiter`].
///
/// Build them with [`new`](Self::new) and set fields, or with [`builder`](Self::builder).
/// The rate is given per call
/// ([`GcraRate`], checked by [`GcraRate::new`]).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct GcraOptions {
    /// The namespace of the limiter's keys: two limiters with the same prefix share state.
    pub prefix: DistkitRedisKey,
    /// The Redis client.
    pub client: Client,
    /// What a call does when Redis fails it or does not answer in time: fail closed (return
    /// the error) by default; see [`FailurePolicy`].
    pub failure_policy: FailurePolicy,
}

impl GcraOptions {
    /// Options for a limiter of `prefix` on `client`, failing closed.
    pub fn new(prefix: DistkitRedisKey, client: Client) -> Self {
        Self {
            prefix,
            client,
            failure_policy: FailurePolicy::default(),
        }
    }

    /// A builder starting from [`new`](Self::new).
    pub fn builder(prefix: DistkitRedisKey, client: Client) -> GcraOptionsBuilder {
        GcraOptionsBuilder {
            options: Self::new(prefix, client),
        }
    }

    /// Checks the options without any I/O, like the `validate` of every other option struct.
    ///
    /// # Errors
    ///
    /// None today (no field can be out of range); [`DistkitError::InvalidOption`] for any
    /// option added later that is out of its documented range.
    pub fn validate(&self) -> Result<(), DistkitError> {
        Ok(())
    }
}

/// Builds [`GcraOptions`]; see the field docs there.
#[derive(Clone, Debug)]
pub struct GcraOptionsBuilder {
    options: GcraOptions,
}

impl GcraOptionsBuilder {
    /// Sets [`GcraOptions::failure_policy`].
    pub fn failure_policy(mut self, failure_policy: FailurePolicy) -> Self {
        self.options.failure_policy = failure_policy;
        self
    }

    /// The options.
    pub fn build(self) -> GcraOptions {
        self.options
    }
}

/// A strict GCRA limiter: every [`check`](Self::check) is one atomic script on Redis, on the
/// server clock, so all processes sharing the Redis (or Redis Cluster) share each key's rate.
///
/// A key's state is one string, `distkit:rl:<prefix>:{<key>}:gcra`, that expires as soon as
/// the key is back to its full burst. Cheap to clone; starts no background work.
///
/// ```no_run
/// # use distkit_ratelimit as distkit; // the facade crate, as users name it
/// use std::time::Duration;
/// use distkit::ratelimit::{GcraLimiter, GcraOptions, GcraRate};
/// use distkit::DistkitRedisKey;
///
/// # async fn example() -> Result<(), distkit::DistkitError> {
/// let client = distkit::connect("redis://127.0.0.1:6379").await?;
/// let limiter = GcraLimiter::new(GcraOptions::new(DistkitRedisKey::try_from("uploads")?, client));
/// // 1 GB per minute, 100 MB at once, charged in MB.
/// let rate = GcraRate::new(1_000, Duration::from_secs(60), 100)?;
/// let decision = limiter.check(&DistkitRedisKey::try_from("user-7")?, &rate, 25).await?;
/// if !decision.is_allowed() {
///     // refuse the upload
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct GcraLimiter {
    prefix: DistkitRedisKey,
    key_head: KeyHead,
    client: Client,
    failure_policy: FailurePolicy,
}

impl GcraLimiter {
    /// A limiter over the keys of `options.prefix`.
    pub fn new(options: GcraOptions) -> Self {
        Self {
            key_head: KeyHead::new(&options.prefix),
            prefix: options.prefix,
            client: options.client,
            failure_policy: options.failure_policy,
        }
    }

    /// Charges `cost` units to `key` at `rate` if they conform, atomically.
    ///
    /// Runs the `gcra` script (one `EVALSHA`, atomic, on the server clock), sent once: after
    /// a connection failure the client does not replay it.
    ///
    /// # Errors
    ///
    /// - [`DistkitError::InvalidOption`] when `cost` is 0 or above `rate.burst()` (such a call
    ///   could never be admitted), before any I/O.
    /// - [`DistkitError::RedisError`] for a transport failure (when the connection failed
    ///   after the call was written, the cost may or may not have been charged), a server
    ///   error, or a key holding data distkit did not write (`DISTKIT_BAD_STATE`); never
    ///   when the limiter fails open (see [`FailurePolicy`]): the call is admitted then.
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
        rate: &GcraRate,
        cost: u64,
    ) -> Result<Decision, DistkitError> {
        let call = async { Ok(self.decide(key, rate, cost, None, false).await?.0) };
        decide_under(
            self.failure_policy,
            LimiterKind::Gcra,
            &self.prefix,
            key,
            rate.burst,
            Charge::Cost,
            call,
        )
        .await
    }

    /// The decision a call of cost 1 on `key` at `rate` would get now, without charging
    /// anything.
    ///
    /// Runs the `gcra` script in its peek mode (one `EVALSHA`, atomic, on the server clock,
    /// writing nothing), sent once. Another call may change the answer right after it.
    ///
    /// # Errors
    ///
    /// [`DistkitError::RedisError`] for a transport failure, a server error, or a key
    /// holding data distkit did not write (`DISTKIT_BAD_STATE`); never when the limiter
    /// fails open (see [`FailurePolicy`]).
    ///
    /// # Cancel safety
    ///
    /// Charges nothing, whenever it is dropped.
    pub async fn peek(
        &self,
        key: &DistkitRedisKey,
        rate: &GcraRate,
    ) -> Result<Decision, DistkitError> {
        let call = async { Ok(self.decide(key, rate, 1, None, true).await?.0) };
        decide_under(
            self.failure_policy,
            LimiterKind::Gcra,
            &self.prefix,
            key,
            rate.burst,
            Charge::Nothing,
            call,
        )
        .await
    }

    /// Charges `cost` units to `key` at `rate` as soon as they conform, sleeping until then,
    /// unless that is later than `max_wait` from now.
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
        rate: &GcraRate,
        cost: u64,
        max_wait: Duration,
    ) -> Result<Decision, DistkitError> {
        super::wait_until_admitted(max_wait, || self.check(key, rate, cost)).await
    }

    /// Forgets the state of `key`: it is back to its full burst. One `DEL`, atomic, written
    /// once: after a connection failure the client does not send it again (a replay after
    /// the reconnect would also erase the charges admitted in between).
    ///
    /// # Errors
    ///
    /// [`DistkitError::RedisError`] for a transport or server failure (when the connection
    /// failed after the `DEL` was written, the state may or may not have been forgotten).
    ///
    /// # Cancel safety
    ///
    /// Dropped before the `DEL` was handed to the client, nothing happens; after, it runs
    /// (or not, if the connection fails) and the caller does not learn which.
    pub async fn reset(&self, key: &DistkitRedisKey) -> Result<(), DistkitError> {
        use fred::interfaces::{ClientLike, KeysInterface};
        let state = self.key_head.key(key, "gcra");
        let once = self.client.with_options(&write_once());
        let (deleted, _sends) =
            retry_redirected(&self.client, None, || once.del::<i64, _>(state.clone())).await;
        let _deleted = deleted
            .map_err(|error| super::policy::named(&error, &self.prefix, key, Charge::Reset))?;
        Ok(())
    }

    /// [`check`](Self::check) at the server's time, or at `now_us` (tests only).
    #[cfg(test)]
    pub(crate) async fn check_at(
        &self,
        key: &DistkitRedisKey,
        rate: &GcraRate,
        cost: u64,
        now_us: Option<u64>,
    ) -> Result<Decision, DistkitError> {
        Ok(self.decide(key, rate, cost, now_us, false).await?.0)
    }

    /// [`check`](Self::check) at the server's time, or at `now_us` (tests only), also
    /// returning the time of the decision (µs) and how far the TAT lies ahead of it after
    /// the decision (in `1/limit` µs). With `peek`, nothing is charged.
    pub(super) async fn decide(
        &self,
        key: &DistkitRedisKey,
        rate: &GcraRate,
        cost: u64,
        now_us: Option<u64>,
        peek: bool,
    ) -> Result<(Decision, u64, u128), DistkitError> {
        check_cost(rate, cost)?;
        let (cost_us, cost_frac) = rate.span_of(cost);
        let (burst_us, burst_frac) = rate.span_of(rate.burst);
        let state = self.key_head.key(key, "gcra");
        let mut args = Vec::with_capacity(7);
        args.extend([
            integer_arg(rate.limit),
            integer_arg(cost_us),
            integer_arg(cost_frac),
            integer_arg(burst_us),
            integer_arg(burst_frac),
        ]);
        push_time_and_peek(&mut args, now_us, peek);
        let reply = GCRA
            .run(&self.client, &[state.as_str()], args, CallPolicy::ONCE)
            .await?;
        let [allowed, ahead_us, ahead_frac, now] = four_integers("gcra", reply)?;
        let ahead_scaled = u128::from(non_negative("gcra", ahead_us)?)
            .saturating_mul(u128::from(rate.limit))
            .saturating_add(u128::from(non_negative("gcra", ahead_frac)?));
        let now = non_negative("gcra", now)?;
        Ok((
            rate.decision(allowed == 1, ahead_scaled, cost),
            now,
            ahead_scaled,
        ))
    }
}

impl GcraRate {
    /// The decision of a call of `cost` that was `allowed` (or not), the TAT lying
    /// `ahead_scaled` (in `1/limit` µs) ahead of the time of the decision after it.
    pub(super) fn decision(&self, allowed: bool, ahead_scaled: u128, cost: u64) -> Decision {
        let remaining = self.remaining_at(ahead_scaled);
        // The full burst is back once the TAT is reached: ceil(ahead / limit) µs.
        let reset_us = ahead_scaled.div_ceil(u128::from(self.limit));
        let reset_after = Duration::from_micros(u64::try_from(reset_us).unwrap_or(u64::MAX));
        if allowed {
            return Decision::Allowed {
                remaining,
                limit: self.burst,
                reset_after,
            };
        }
        // Admitted once the TAT plus this cost is within the burst: ceil(excess / limit) µs.
        let excess = ahead_scaled
            .saturating_add(u128::from(cost).saturating_mul(self.period_us))
            .saturating_sub(self.burst_scaled);
        let retry_us = excess.div_ceil(u128::from(self.limit));
        Decision::Rejected {
            retry_after: Duration::from_micros(u64::try_from(retry_us).unwrap_or(u64::MAX)),
            remaining,
            limit: self.burst,
            reset_after,
        }
    }
}

/// Checks the cost of a GCRA call, before any I/O.
pub(super) fn check_cost(rate: &GcraRate, cost: u64) -> Result<(), DistkitError> {
    if cost == 0 || cost > rate.burst {
        return Err(invalid(format!(
            "a gcra cost must be 1 to the burst ({}), got {cost}",
            rate.burst
        )));
    }
    Ok(())
}
