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

/// Whether a limiter call charges its cost when admitted (`check`) or never (`peek`): what
/// its transport errors say about the charge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Charge {
    /// A `check` (or an attempt of a `wait`).
    Cost,
    /// A `peek`.
    Nothing,
    /// A `reset`: charges nothing, but may forget the key's state.
    Reset,
}

/// Runs one limiter call under `policy`, and records its metrics: the decision of `call`,
/// or an admission when it fails open. `limit` is what a failed-open decision reports. A
/// [`DistkitError::RedisError`] returned names the limiter's prefix and key and, for a
/// transport failure, whether the cost may have been charged (see [`named`]).
pub(super) async fn decide_under<F>(
    policy: FailurePolicy,
    kind: LimiterKind,
    prefix: &DistkitRedisKey,
    key: &DistkitRedisKey,
    limit: u64,
    charge: Charge,
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
    result.map_err(|error| match error {
        DistkitError::RedisError(error) => named(&error, prefix, key, charge),
        other => other,
    })
}

/// A limiter call's Redis error, naming the limiter's prefix and key (each at most 255
/// bytes) and, for a transport failure, what was charged: nothing when the command was not
/// sent (back-pressure) or is a peek; else the script may have run, so the cost may have
/// been charged (a reset may have run). The kind stays, so [`DistkitError::is_transport`] and the other questions
/// answer as before. Built on the error path only.
pub(super) fn named(
    error: &fred::error::Error,
    prefix: &DistkitRedisKey,
    key: &DistkitRedisKey,
    charge: Charge,
) -> DistkitError {
    let charged = if !distkit_core::error_is_transport_failure(error) {
        ""
    } else if *error.kind() == fred::error::ErrorKind::Backpressure {
        ": not sent, nothing charged"
    } else {
        match charge {
            Charge::Cost => ": outcome unknown, the cost may have been charged",
            Charge::Nothing => ": nothing charged, a peek charges nothing",
            Charge::Reset => ": outcome unknown, the state may or may not have been reset",
        }
    };
    DistkitError::RedisError(fred::error::Error::new(
        error.kind().clone(),
        format!(
            "{} (rate limiter {:?}, key {:?}){charged}",
            error.details(),
            prefix.as_str(),
            key.as_str()
        ),
    ))
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

#[cfg(test)]
mod tests {
    use fred::error::{Error as FredError, ErrorKind};

    use super::*;

    fn key(text: &str) -> DistkitRedisKey {
        DistkitRedisKey::try_from(text).unwrap()
    }

    #[test]
    fn a_limiter_error_names_its_key_and_says_what_may_have_been_charged() {
        let (prefix, user) = (key("api"), key("user-1"));
        let text = |kind: ErrorKind, details: &'static str, charge: Charge| {
            named(&FredError::new(kind, details), &prefix, &user, charge).to_string()
        };
        assert_eq!(
            text(ErrorKind::IO, "connection reset", Charge::Cost),
            "IO Error: connection reset (rate limiter \"api\", key \"user-1\"): outcome unknown, the \
             cost may have been charged"
        );
        assert_eq!(
            text(ErrorKind::Timeout, "timed out", Charge::Nothing),
            "Timeout Error: timed out (rate limiter \"api\", key \"user-1\"): nothing charged, a peek \
             charges nothing"
        );
        assert_eq!(
            text(
                ErrorKind::Backpressure,
                "Max in-flight commands reached.",
                Charge::Cost
            ),
            "Backpressure: Max in-flight commands reached. (rate limiter \"api\", key \"user-1\"): not \
             sent, nothing charged"
        );
        assert_eq!(
            text(ErrorKind::IO, "broken pipe", Charge::Reset),
            "IO Error: broken pipe (rate limiter \"api\", key \"user-1\"): outcome unknown, the state \
             may or may not have been reset"
        );
        // A reply of the server: the key, and no claim about a charge.
        assert_eq!(
            text(
                ErrorKind::Unknown,
                "DISTKIT_BAD_STATE the gcra state of the key is not distkit's",
                Charge::Cost
            ),
            "Unknown Error: DISTKIT_BAD_STATE the gcra state of the key is not distkit's (rate limiter \"api\", \
             key \"user-1\")"
        );
        // The questions a caller asks answer as before the naming.
        let unknown = named(
            &FredError::new(ErrorKind::IO, "reset"),
            &prefix,
            &user,
            Charge::Cost,
        );
        assert!(unknown.is_transport() && unknown.is_outcome_unknown());
        let unsent = named(
            &FredError::new(ErrorKind::Backpressure, "full"),
            &prefix,
            &user,
            Charge::Cost,
        );
        assert!(unsent.is_transport() && !unsent.is_outcome_unknown());
    }
}
