//! Tracing spans and metrics of the counters.
//!
//! Spans are always on (they cost next to nothing without a subscriber). Metrics go through
//! the `metrics` crate facade with the `metrics` feature, and compile to nothing without it;
//! their names and labels are listed in the `distkit` crate docs (Observability).

use std::time::Duration;

use distkit_core::DistkitError;

/// Who a lax counter's flushes belong to: the `prefix` and `counter` fields and labels.
#[derive(Clone, Debug)]
pub(crate) struct FlushLabels {
    /// The counter's prefix.
    pub(crate) prefix: String,
    /// `"lax"` or `"lax_instance_aware"`.
    pub(crate) counter: &'static str,
}

/// The span of one flush that has deltas to deliver: `distkit.counter.flush`.
pub(crate) fn flush_span(labels: &FlushLabels, keys: usize) -> tracing::Span {
    tracing::debug_span!(
        "distkit.counter.flush",
        prefix = labels.prefix.as_str(),
        counter = labels.counter,
        keys,
        outcome = tracing::field::Empty,
    )
}

/// Records the end of a flush: its outcome in `span`, and the metrics
/// `distkit_lax_flush_lag_seconds` (on success: the age of the oldest delivered delta),
/// `distkit_lax_flush_failures_total` (on failure) and `distkit_lax_pending_keys`.
#[cfg_attr(
    not(feature = "metrics"),
    expect(
        unused_variables,
        reason = "the metric values are used only with `metrics`"
    )
)]
pub(crate) fn flush_ended(
    span: &tracing::Span,
    labels: &FlushLabels,
    result: Result<Option<Duration>, &DistkitError>,
    pending_keys: usize,
) {
    match &result {
        Ok(lag) => {
            span.record("outcome", "delivered");
            tracing::debug!(target: "distkit::counter", parent: span, ?lag, pending_keys, "lax counter flush delivered");
        }
        Err(error) => {
            span.record("outcome", "failed");
            tracing::debug!(target: "distkit::counter", parent: span, %error, pending_keys, "lax counter flush failed");
        }
    }
    #[cfg(feature = "metrics")]
    {
        let prefix = labels.prefix.clone();
        match result {
            Ok(Some(lag)) => metrics::histogram!(
                "distkit_lax_flush_lag_seconds",
                "prefix" => prefix.clone(),
                "counter" => labels.counter,
            )
            .record(lag.as_secs_f64()),
            Ok(None) => {}
            Err(_) => metrics::counter!(
                "distkit_lax_flush_failures_total",
                "prefix" => prefix.clone(),
                "counter" => labels.counter,
            )
            .increment(1),
        }
        let pending = u32::try_from(pending_keys).map_or(f64::from(u32::MAX), f64::from);
        metrics::gauge!(
            "distkit_lax_pending_keys",
            "prefix" => prefix,
            "counter" => labels.counter,
        )
        .set(pending);
    }
}

/// Records that a call of the instance `instance` under `prefix` found `count` instances
/// dead (their slices left the totals): an INFO event and `distkit_icounter_instances_reaped_total`.
#[cfg(feature = "instance-aware")]
pub(crate) fn instances_reaped(prefix: &str, instance: &str, count: u64) {
    if count == 0 {
        return;
    }
    tracing::info!(target: "distkit::counter",
        prefix,
        instance,
        reaped = count,
        "instance-aware counter: dead instances found, their slices left the totals"
    );
    #[cfg(feature = "metrics")]
    metrics::counter!(
        "distkit_icounter_instances_reaped_total",
        "prefix" => prefix.to_owned(),
    )
    .increment(count);
}
