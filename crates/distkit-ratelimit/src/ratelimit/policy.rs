//! What a limiter call does when Redis does not answer in time or fails (its
//! [`FailurePolicy`]), and the limiters' metrics (feature `metrics`).

use std::future::Future;
use std::time::Duration;

use distkit_core::{DistkitError, DistkitRedisKey};

use super::{Decision, invalid};

/// The longest deadline of [`FailurePolicy::fail_open`]: 1 hour.
pub const MAX_FAIL_OPEN_DEADLINE: Duration = Duration::from_secs(3_600);

/// What a limiter call does when Redis fails it: return the error (**fail closed**, the
/// default) or admit the call (**fail open**).
///
/// With [`fail_open(deadline)`](Self::fail_open), a `check` or `peek` (and each attempt of a
/// `wait`) that Redis has not answered within `deadline`, or that fails with a
/// [`DistkitError::RedisError`] (a transport failure, a timeout of the client, a server
/// error, keys holding data distkit did not write), returns
/// [`Decision::Allowed`] instead, with `remaining` 0, the call's `limit` and a
/// `reset_after` of 0: the caller serves the request unlimited rather than failing it.
/// Such a call is logged (`tracing`, warn) and counted in
/// `distkit_ratelimit_failed_open_total` (feature `metrics`). Its cost may or may not have
/// been charged (a script cut short by the deadline may still run on the server). Errors
/// about the call itself ([`DistkitError::InvalidOption`], [`DistkitError::Closed`]) are
/// returned all the same.
///
/// A lax limiter decides warm keys in memory, without Redis, so the policy only matters for
/// its cold keys (the strict call that warms a key); a cold key failed open stays cold, and
/// the unit it admitted is charged nowhere.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FailurePolicy {
    deadline: Option<Duration>,
}

impl FailurePolicy {
    /// Fail closed: a call Redis fails returns the error (the default).
    pub fn fail_closed() -> Self {
        Self { deadline: None }
    }

    /// Fail open: a call Redis has not answered within `deadline`, or fails, is admitted.
    ///
    /// # Errors
    ///
    /// [`DistkitError::InvalidOption`] when `deadline` is shorter than 1 ms or longer than
    /// [`MAX_FAIL_OPEN_DEADLINE`].
    pub fn fail_open(deadline: Duration) -> Result<Self, DistkitError> {
        if deadline < Duration::from_millis(1) || deadline > MAX_FAIL_OPEN_DEADLINE {
            return Err(invalid(format!(
                "the fail-open deadline of a limiter must be 1 ms to \
                 {MAX_FAIL_OPEN_DEADLINE:?}, got {deadline:?}"
            )));
        }
        Ok(Self {
            deadline: Some(deadline),
        })
    }

    /// The deadline after which a call is admitted, `None` when failing closed.
    pub fn deadline(&self) -> Option<Duration> {
        self.deadline
    }

    /// Whether calls fail open.
    pub fn is_fail_open(&self) -> bool {
        self.deadline.is_some()
    }
}

/// Which limiter a metric or log line is about: the `limiter` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum LimiterKind {
    Gcra,
    SlidingWindow,
    LaxGcra,
    LaxSlidingWindow,
}

impl LimiterKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Gcra => "gcra",
            Self::SlidingWindow => "sliding_window",
            Self::LaxGcra => "lax_gcra",
            Self::LaxSlidingWindow => "lax_sliding_window",
        }
    }
}

/// Runs one limiter call under `policy`, and records its metrics: the decision of `call`,
/// or an admission when it fails open. `limit` is what a failed-open decision reports.
pub(super) async fn decide_under<F>(
    policy: FailurePolicy,
    kind: LimiterKind,
    prefix: &DistkitRedisKey,
    key: &DistkitRedisKey,
    limit: u64,
    call: F,
) -> Result<Decision, DistkitError>
where
    F: Future<Output = Result<Decision, DistkitError>>,
{
    #[cfg(feature = "metrics")]
    let started = std::time::Instant::now();
    let result = match policy.deadline {
        None => call.await,
        Some(deadline) => match tokio::time::timeout(deadline, call).await {
            Ok(Err(DistkitError::RedisError(error))) => {
                tracing::warn!(target: "distkit::ratelimit", %error, limiter = kind.as_str(), %prefix, %key, "a rate limiter call failed; it is admitted (fail open)");
                failed_open(kind, prefix, "error");
                return Ok(open_decision(limit));
            }
            Ok(result) => result,
            Err(_elapsed) => {
                tracing::warn!(target: "distkit::ratelimit", ?deadline, limiter = kind.as_str(), %prefix, %key, "a rate limiter call was not answered in time; it is admitted (fail open)");
                failed_open(kind, prefix, "deadline");
                return Ok(open_decision(limit));
            }
        },
    };
    #[cfg(feature = "metrics")]
    decided(kind, prefix, &result, started.elapsed());
    result
}

/// The decision of a call admitted by failing open.
fn open_decision(limit: u64) -> Decision {
    Decision::Allowed {
        remaining: 0,
        limit,
        reset_after: Duration::ZERO,
    }
}

/// Counts a failed-open call: `distkit_ratelimit_failed_open_total`.
#[cfg_attr(
    not(feature = "metrics"),
    expect(
        unused_variables,
        reason = "the metric labels are used only with `metrics`"
    )
)]
fn failed_open(kind: LimiterKind, prefix: &DistkitRedisKey, reason: &'static str) {
    #[cfg(feature = "metrics")]
    metrics::counter!(
        "distkit_ratelimit_failed_open_total",
        "limiter" => kind.as_str(),
        "prefix" => prefix.to_string(),
        "reason" => reason,
    )
    .increment(1);
}

/// Counts a decision (`distkit_ratelimit_calls_total`, outcome `admitted`, `rejected` or
/// `error`) and records how long it took (`distkit_ratelimit_call_seconds`).
#[cfg(feature = "metrics")]
fn decided(
    kind: LimiterKind,
    prefix: &DistkitRedisKey,
    result: &Result<Decision, DistkitError>,
    took: Duration,
) {
    {
        let outcome = match result {
            Ok(decision) if decision.is_allowed() => "admitted",
            Ok(_) => "rejected",
            Err(_) => "error",
        };
        metrics::counter!(
            "distkit_ratelimit_calls_total",
            "limiter" => kind.as_str(),
            "prefix" => prefix.to_string(),
            "outcome" => outcome,
        )
        .increment(1);
        metrics::histogram!(
            "distkit_ratelimit_call_seconds",
            "limiter" => kind.as_str(),
            "prefix" => prefix.to_string(),
        )
        .record(took.as_secs_f64());
    }
}
