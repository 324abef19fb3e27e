//! Option structs: one shape (`new` plus a builder), and values checked before any I/O.
//!
//! The counters are built on a client that never connected: an operation that reached the
//! network would fail with a connection error (or hang, which `bounded` turns into a
//! failure), so an `InvalidOption` error proves the check came first.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{bounded, key};
use distkit::counter::{CounterOptions, CounterTrait, LaxCounter, StrictCounter};
use distkit::fred::clients::Client;
use distkit::icounter::{
    InstanceAwareCounterTrait, LaxInstanceAwareCounter, LaxInstanceAwareCounterOptions,
    StrictInstanceAwareCounterOptions,
};
use distkit::lock::LockOptions;
use distkit::ratelimit::{GcraOptions, SlidingWindowOptions};
use distkit::{CounterComparator, DistkitError, DistkitRedisKey, ReplicaAcks};

type DynCounter = Arc<dyn CounterTrait + Send + Sync>;
type DynInstanceCounter = Arc<dyn InstanceAwareCounterTrait + Send + Sync>;

/// A client that was never connected: any I/O through it fails.
fn offline() -> Client {
    Client::default()
}

fn prefix() -> DistkitRedisKey {
    key("options-test")
}

/// Whether `result` is an `InvalidOption` error whose message names `option`.
fn refused<T: std::fmt::Debug>(result: &Result<T, DistkitError>, option: &str) -> bool {
    matches!(result, Err(DistkitError::InvalidOption(message)) if message.contains(option))
}

/// Runs every `CounterTrait` operation and returns how many were refused for `option`.
async fn refused_counter_calls(counter: &DynCounter, option: &str) -> usize {
    let k = key("k");
    let results = [
        refused(&bounded(counter.inc(&k, 1)).await, option),
        refused(&bounded(counter.dec(&k, 1)).await, option),
        refused(&bounded(counter.dec(&k, i64::MIN)).await, option),
        refused(&bounded(counter.get(&k)).await, option),
        refused(&bounded(counter.set(&k, 1)).await, option),
        refused(&bounded(counter.del(&k)).await, option),
        refused(&bounded(counter.clear()).await, option),
        refused(
            &bounded(counter.inc_if(&k, CounterComparator::Nil, 1)).await,
            option,
        ),
        refused(
            &bounded(counter.set_if(&k, CounterComparator::Nil, 1)).await,
            option,
        ),
        refused(&bounded(counter.get_all(&[&k])).await, option),
        refused(&bounded(counter.inc_all(&[(&k, 1)])).await, option),
        refused(&bounded(counter.set_all(&[(&k, 1)])).await, option),
        refused(
            &bounded(counter.inc_all_if(&[(&k, CounterComparator::Nil, 1)])).await,
            option,
        ),
        refused(
            &bounded(counter.set_all_if(&[(&k, CounterComparator::Nil, 1)])).await,
            option,
        ),
    ];
    results.into_iter().filter(|&refused| refused).count()
}

/// Runs a representative set of `InstanceAwareCounterTrait` operations and returns how many
/// were refused for `option`, out of 10.
async fn refused_instance_calls(counter: &DynInstanceCounter, option: &str) -> usize {
    let k = key("k");
    let results = [
        refused(&bounded(counter.inc(&k, 1)).await, option),
        refused(&bounded(counter.dec(&k, i64::MIN)).await, option),
        refused(&bounded(counter.get(&k)).await, option),
        refused(&bounded(counter.set(&k, 1)).await, option),
        refused(&bounded(counter.set_on_instance(&k, 1)).await, option),
        refused(&bounded(counter.del_on_instance(&k)).await, option),
        refused(&bounded(counter.clear_on_instance()).await, option),
        refused(
            &bounded(counter.inc_if(&k, CounterComparator::Nil, 1)).await,
            option,
        ),
        refused(&bounded(counter.get_all(&[&k])).await, option),
        refused(&bounded(counter.inc_all(&[(&k, 1)])).await, option),
    ];
    results.into_iter().filter(|&refused| refused).count()
}

#[tokio::test]
async fn counters_built_from_invalid_options_refuse_every_call_before_any_io() {
    let mut long_lag = CounterOptions::new(prefix(), offline());
    long_lag.allowed_lag = Duration::from_millis(3_600_001);
    let no_replicas = CounterOptions::builder(prefix(), offline())
        .replica_acks(ReplicaAcks::new(0, Duration::from_secs(1)))
        .build();
    let too_many_shards = CounterOptions::builder(prefix(), offline())
        .shards(1_025)
        .build();
    for (options, option) in [
        (long_lag, "allowed_lag"),
        (no_replicas, "replica"),
        (too_many_shards, "shard count"),
    ] {
        assert!(refused(&options.validate(), option), "{option}");
        let strict: DynCounter = StrictCounter::new(options.clone());
        assert_eq!(refused_counter_calls(&strict, option).await, 14, "strict");
        let lax = LaxCounter::new(options);
        assert!(refused(&bounded(lax.flush()).await, option), "lax flush");
        let lax: DynCounter = lax;
        assert_eq!(refused_counter_calls(&lax, option).await, 14, "lax");
    }
}

#[tokio::test]
async fn lax_instance_aware_counters_refuse_out_of_range_intervals_before_any_io() {
    let builder = || LaxInstanceAwareCounterOptions::builder(prefix(), offline());
    let cases = [
        (
            builder().flush_interval(Duration::ZERO).build(),
            "flush_interval",
        ),
        (
            builder().flush_interval(Duration::from_secs(7_200)).build(),
            "flush_interval",
        ),
        (builder().allowed_lag(Duration::MAX).build(), "allowed_lag"),
        (builder().shards(1_025).build(), "shard count"),
    ];
    for (options, option) in cases {
        assert!(refused(&options.validate(), option), "{option}");
        let counter = LaxInstanceAwareCounter::new(options);
        assert!(refused(&bounded(counter.flush()).await, option), "flush");
        let counter: DynInstanceCounter = counter;
        assert_eq!(refused_instance_calls(&counter, option).await, 10);
    }
}

#[tokio::test]
async fn thresholds_and_revival_windows_are_clamped_and_never_refused() {
    for duration in [Duration::ZERO, Duration::from_nanos(1), Duration::MAX] {
        let strict = StrictInstanceAwareCounterOptions::builder(prefix(), offline())
            .dead_instance_threshold(duration)
            .revival_window(duration)
            .build();
        assert!(strict.validate().is_ok(), "{duration:?}");
        let lax = LaxInstanceAwareCounterOptions::builder(prefix(), offline())
            .dead_instance_threshold(duration)
            .revival_window(duration)
            .build();
        assert!(lax.validate().is_ok(), "{duration:?}");
    }
}

#[tokio::test]
async fn the_ends_of_every_documented_range_are_accepted() {
    for lag in [Duration::ZERO, CounterOptions::MAX_ALLOWED_LAG] {
        let options = CounterOptions::builder(prefix(), offline())
            .allowed_lag(lag)
            .replica_acks(ReplicaAcks::new(1, Duration::from_millis(1)))
            .build();
        assert!(options.validate().is_ok(), "{lag:?}");
    }
    for (interval, lag) in [
        (
            LaxInstanceAwareCounterOptions::MIN_FLUSH_INTERVAL,
            Duration::ZERO,
        ),
        (
            LaxInstanceAwareCounterOptions::MAX_FLUSH_INTERVAL,
            LaxInstanceAwareCounterOptions::MAX_ALLOWED_LAG,
        ),
    ] {
        let options = LaxInstanceAwareCounterOptions::builder(prefix(), offline())
            .flush_interval(interval)
            .allowed_lag(lag)
            .build();
        assert!(options.validate().is_ok(), "{interval:?} {lag:?}");
    }
}

#[tokio::test]
async fn builders_set_the_same_fields_as_new_and_assignment() {
    let acks = ReplicaAcks::new(2, Duration::from_millis(300));
    let built = CounterOptions::builder(prefix(), offline())
        .allowed_lag(Duration::from_millis(7))
        .replica_acks(acks)
        .build();
    let mut assigned = CounterOptions::new(prefix(), offline());
    assigned.allowed_lag = Duration::from_millis(7);
    assigned.replica_acks = Some(acks);
    assert_eq!(
        (built.prefix, built.allowed_lag, built.replica_acks),
        (assigned.prefix, assigned.allowed_lag, assigned.replica_acks)
    );

    let built = LaxInstanceAwareCounterOptions::builder(prefix(), offline())
        .dead_instance_threshold(Duration::from_secs(5))
        .revival_window(Duration::from_secs(50))
        .flush_interval(Duration::from_millis(30))
        .allowed_lag(Duration::from_millis(40))
        .build();
    let mut assigned = LaxInstanceAwareCounterOptions::new(prefix(), offline());
    assigned.dead_instance_threshold = Duration::from_secs(5);
    assigned.revival_window = Duration::from_secs(50);
    assigned.flush_interval = Duration::from_millis(30);
    assigned.allowed_lag = Duration::from_millis(40);
    assert_eq!(
        (
            built.dead_instance_threshold,
            built.revival_window,
            built.flush_interval,
            built.allowed_lag
        ),
        (
            assigned.dead_instance_threshold,
            assigned.revival_window,
            assigned.flush_interval,
            assigned.allowed_lag
        )
    );

    let defaults = StrictInstanceAwareCounterOptions::new(prefix(), offline());
    assert_eq!(
        (defaults.dead_instance_threshold, defaults.revival_window),
        (Duration::from_secs(30), Duration::from_secs(3_600))
    );
    let built = StrictInstanceAwareCounterOptions::builder(prefix(), offline())
        .dead_instance_threshold(Duration::from_secs(2))
        .build();
    assert_eq!(built.dead_instance_threshold, Duration::from_secs(2));

    let window = SlidingWindowOptions::builder(prefix(), offline())
        .window(Duration::from_secs(60))
        .bucket(Duration::from_secs(1))
        .build();
    assert_eq!(
        (window.window, window.bucket),
        (Duration::from_secs(60), Duration::from_secs(1))
    );
    assert!(window.validate().is_ok());
    let too_wide = SlidingWindowOptions::builder(prefix(), offline())
        .bucket(Duration::from_secs(3_600))
        .build();
    assert!(matches!(
        too_wide.validate(),
        Err(DistkitError::InvalidOption(_))
    ));
    assert!(
        GcraOptions::builder(prefix(), offline())
            .build()
            .validate()
            .is_ok()
    );
    assert!(
        LockOptions::builder(prefix(), offline())
            .ttl(Duration::ZERO)
            .build()
            .validate()
            .is_err()
    );
}
