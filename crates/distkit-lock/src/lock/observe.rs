//! Tracing spans and metrics of the locks.
//!
//! Spans are always on (they cost next to nothing without a subscriber). Metrics go through
//! the `metrics` crate facade with the `metrics` feature, and compile to nothing without it;
//! their names and labels are listed in the `distkit` crate docs (Observability).

use std::time::Duration;

use distkit_core::{DistkitError, LockError};

/// What kind of lock an acquisition or a lease is for: the `kind` field and label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LockKind {
    /// A [`Mutex`](super::Mutex).
    Mutex,
    /// A read lease of an [`RwLock`](super::RwLock).
    Read,
    /// The write lease of an [`RwLock`](super::RwLock).
    Write,
    /// Permits of a [`Semaphore`](crate::semaphore::Semaphore).
    #[cfg(feature = "semaphore")]
    Semaphore,
}

impl LockKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Mutex => "mutex",
            Self::Read => "read",
            Self::Write => "write",
            #[cfg(feature = "semaphore")]
            Self::Semaphore => "semaphore",
        }
    }
}

/// The `outcome` label of an acquisition.
fn outcome(result: &Result<(), &DistkitError>) -> &'static str {
    match result {
        Ok(()) => "acquired",
        Err(DistkitError::LockError(LockError::Timeout { .. })) => "timeout",
        Err(DistkitError::LockError(
            LockError::AcquireFail | LockError::RetriesExhausted { .. },
        )) => "held",
        Err(_) => "error",
    }
}

/// Records the end of an acquisition: `distkit_lock_wait_seconds` and the span's outcome.
#[cfg_attr(
    not(feature = "metrics"),
    expect(
        unused_variables,
        reason = "the metric labels are used only with `metrics`"
    )
)]
pub(crate) fn acquisition_ended(
    span: &tracing::Span,
    kind: LockKind,
    namespace: &str,
    waited: Duration,
    result: Result<(), &DistkitError>,
) {
    let outcome = outcome(&result);
    span.record("outcome", outcome);
    if let Err(error) = result {
        tracing::debug!(target: "distkit::lock", parent: span, %error, ?waited, "lock acquisition failed");
    } else {
        tracing::debug!(target: "distkit::lock", parent: span, ?waited, "lock acquired");
    }
    #[cfg(feature = "metrics")]
    metrics::histogram!(
        "distkit_lock_wait_seconds",
        "kind" => kind.as_str(),
        "namespace" => namespace.to_owned(),
        "outcome" => outcome,
    )
    .record(waited.as_secs_f64());
}

/// Counts an acquisition granted by a release's handover (`distkit_lock_handoffs_total`).
#[cfg_attr(
    not(feature = "metrics"),
    expect(
        unused_variables,
        reason = "the metric labels are used only with `metrics`"
    )
)]
pub(crate) fn handed_over(namespace: &str) {
    #[cfg(feature = "metrics")]
    metrics::counter!("distkit_lock_handoffs_total", "namespace" => namespace.to_owned())
        .increment(1);
}

/// Counts a lease found lost (`distkit_lock_leases_lost_total`), once per loss.
#[cfg_attr(
    not(feature = "metrics"),
    expect(
        unused_variables,
        reason = "the metric labels are used only with `metrics`"
    )
)]
pub(crate) fn lease_lost(kind: LockKind, reason: &'static str) {
    #[cfg(feature = "metrics")]
    metrics::counter!(
        "distkit_lock_leases_lost_total",
        "kind" => kind.as_str(),
        "reason" => reason,
    )
    .increment(1);
}

/// The span of one acquisition: `distkit.lock.acquire` with the lock's namespace, key and
/// kind; the outcome, attempt and fencing token are recorded when it ends.
pub(crate) fn acquire_span(namespace: &str, key: &str, kind: LockKind) -> tracing::Span {
    tracing::debug_span!(
        "distkit.lock.acquire",
        namespace,
        key,
        kind = kind.as_str(),
        outcome = tracing::field::Empty,
        attempt = tracing::field::Empty,
        fencing_token = tracing::field::Empty,
    )
}

/// Records the attempt and fencing token of a granted acquisition in its span.
pub(crate) fn granted(span: &tracing::Span, attempt: usize, fencing_token: u64) {
    span.record("attempt", attempt);
    span.record("fencing_token", fencing_token);
}
