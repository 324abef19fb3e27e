//! Lax counters under concurrency and faults: the regression tests of the defects found by
//! review (issue 12). Each asserts the promise, not an example: every acknowledged increment
//! reaches Redis exactly once, and a call that failed (other than `OutcomeUnknown`) changed
//! nothing.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{bounded, client, fresh_key, key};
use distkit::counter::{CounterError, CounterOptions, CounterTrait, LaxCounter, StrictCounter};
use distkit::fred::prelude::*;
use distkit::icounter::{
    InstanceAwareCounterTrait, LaxInstanceAwareCounter, LaxInstanceAwareCounterOptions,
    StrictInstanceAwareCounter, StrictInstanceAwareCounterOptions,
};
use distkit::{CounterComparator, DistkitError};
use distkit_test_support::TestRedis;

const TASKS: i64 = 4;
const INCREMENTS_PER_TASK: i64 = 5_000;

fn is_outcome_unknown(error: &DistkitError) -> bool {
    matches!(
        error,
        DistkitError::CounterError(CounterError::OutcomeUnknown { .. })
    )
}

/// A client whose commands time out after 300 ms, so a stalled Redis makes calls fail fast.
#[expect(clippy::unwrap_used, reason = "a test helper fails its test")]
async fn impatient_client(redis: &TestRedis) -> Client {
    let config = Config::from_url(redis.url()).unwrap();
    let client = Builder::from_config(config)
        .with_performance_config(|performance| {
            performance.default_command_timeout = Duration::from_millis(300);
        })
        .with_connection_config(|connection| {
            connection.connection_timeout = Duration::from_secs(2);
        })
        .set_policy(ReconnectPolicy::new_constant(0, 50))
        .build()
        .unwrap();
    bounded(client.init()).await.unwrap();
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lax_increments_made_while_a_conditional_operation_runs_are_all_delivered() {
    let redis = TestRedis::start();
    let prefix = fresh_key();
    let lax = LaxCounter::new(CounterOptions::new(prefix.clone(), client(&redis).await));
    let strict = StrictCounter::new(CounterOptions::new(prefix, client(&redis).await));
    let k = key("hits");
    bounded(lax.inc(&k, 0)).await.unwrap();

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let conditional = {
        let lax = Arc::clone(&lax);
        let stop = Arc::clone(&stop);
        let k = k.clone();
        tokio::spawn(async move {
            let mut runs = 0_u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                // Adds nothing: only its interleaving with the increments matters.
                bounded(lax.inc_if(&k, CounterComparator::Nil, 0))
                    .await
                    .unwrap();
                bounded(lax.set_if(&k, CounterComparator::Lt(i64::MIN + 1), 0))
                    .await
                    .unwrap();
                runs += 1;
            }
            runs
        })
    };
    let mut incrementers = Vec::new();
    for _ in 0..TASKS {
        let lax = Arc::clone(&lax);
        let k = k.clone();
        incrementers.push(tokio::spawn(async move {
            for n in 0..INCREMENTS_PER_TASK {
                bounded(lax.inc(&k, 1)).await.unwrap();
                if n % 64 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        }));
    }
    for task in incrementers {
        bounded(task).await.unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let runs = bounded(conditional).await.unwrap();
    bounded(lax.flush()).await.unwrap();
    assert!(runs > 0, "the conditional operations ran");
    assert_eq!(
        bounded(strict.get(&k)).await.unwrap(),
        TASKS * INCREMENTS_PER_TASK,
        "every acknowledged increment reached Redis ({runs} conditional rounds interleaved)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lax_instance_increments_made_while_a_conditional_operation_runs_are_all_delivered() {
    let redis = TestRedis::start();
    let prefix = fresh_key();
    let lax = LaxInstanceAwareCounter::new(LaxInstanceAwareCounterOptions::new(
        prefix.clone(),
        client(&redis).await,
    ));
    let strict = StrictInstanceAwareCounter::new(StrictInstanceAwareCounterOptions::new(
        prefix,
        client(&redis).await,
    ));
    let k = key("hits");
    bounded(lax.inc(&k, 0)).await.unwrap();

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let conditional = {
        let lax = Arc::clone(&lax);
        let stop = Arc::clone(&stop);
        let k = k.clone();
        tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                bounded(lax.inc_if(&k, CounterComparator::Nil, 0))
                    .await
                    .unwrap();
                bounded(lax.set_on_instance_if(&k, CounterComparator::Lt(i64::MIN + 1), 0))
                    .await
                    .unwrap();
            }
        })
    };
    let mut incrementers = Vec::new();
    for _ in 0..TASKS {
        let lax = Arc::clone(&lax);
        let k = k.clone();
        incrementers.push(tokio::spawn(async move {
            for n in 0..INCREMENTS_PER_TASK {
                bounded(lax.inc(&k, 1)).await.unwrap();
                if n % 64 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        }));
    }
    for task in incrementers {
        bounded(task).await.unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    bounded(conditional).await.unwrap();
    bounded(lax.flush()).await.unwrap();
    let (total, _) = bounded(strict.get(&k)).await.unwrap();
    assert_eq!(total, TASKS * INCREMENTS_PER_TASK);
}

#[tokio::test]
async fn a_failed_lax_batch_with_i64_min_changes_nothing() {
    let redis = TestRedis::start();
    let prefix = fresh_key();
    let lax = LaxCounter::new(CounterOptions::new(prefix.clone(), client(&redis).await));
    let strict = StrictCounter::new(CounterOptions::new(prefix, client(&redis).await));
    let (a, b) = (key("a"), key("b"));
    bounded(strict.set(&b, i64::MAX)).await.unwrap();
    let result = bounded(lax.inc_all(&[(&a, i64::MIN), (&b, 1)])).await;
    assert!(
        matches!(
            result,
            Err(DistkitError::CounterError(CounterError::Overflow { .. }))
        ),
        "{result:?}"
    );
    bounded(lax.flush()).await.unwrap();
    assert_eq!(bounded(lax.get(&a)).await.unwrap(), 0, "local value of a");
    assert_eq!(
        bounded(strict.get(&a)).await.unwrap(),
        0,
        "stored value of a"
    );
    assert_eq!(bounded(strict.get(&b)).await.unwrap(), i64::MAX);
}

#[tokio::test]
async fn a_lax_batch_whose_pending_sum_alone_would_overflow_is_applied() {
    let redis = TestRedis::start();
    let prefix = fresh_key();
    let lax = LaxCounter::new(CounterOptions::new(prefix.clone(), client(&redis).await));
    let strict = StrictCounter::new(CounterOptions::new(prefix, client(&redis).await));
    let a = key("a");
    bounded(strict.set(&a, i64::MAX)).await.unwrap();
    // Pending: -MAX (value 0), then -2: the value -2 fits, the pending sum -MAX-2 does not.
    assert_eq!(bounded(lax.inc(&a, -i64::MAX)).await.unwrap(), 0);
    let result = bounded(lax.inc_all(&[(&a, -2)])).await.unwrap();
    assert_eq!(result, vec![(&a, -2)]);
    bounded(lax.flush()).await.unwrap();
    assert_eq!(bounded(strict.get(&a)).await.unwrap(), -2);
}

#[tokio::test]
async fn a_synchronous_lax_increment_that_fails_is_either_not_applied_or_says_outcome_unknown() {
    let redis = TestRedis::start_standalone();
    let prefix = fresh_key();
    let mut options = CounterOptions::new(prefix.clone(), impatient_client(&redis).await);
    options.allowed_lag = Duration::ZERO;
    let lax = LaxCounter::new(options);
    let strict = StrictCounter::new(CounterOptions::new(prefix, client(&redis).await));
    let k = key("k");
    assert_eq!(bounded(lax.inc(&k, 1)).await.unwrap(), 1);

    redis.pause();
    let failed = bounded(lax.inc(&k, 10)).await;
    redis.resume();
    let error = failed.expect_err("Redis was stopped for longer than the command timeout");
    // Give a retried or buffered delta every chance to arrive.
    bounded(lax.flush()).await.ok();
    tokio::time::sleep(Duration::from_millis(200)).await;
    bounded(lax.flush()).await.ok();
    let stored = bounded(strict.get(&k)).await.unwrap();
    if is_outcome_unknown(&error) {
        assert!(stored == 1 || stored == 11, "stored {stored}");
    } else {
        assert_eq!(
            stored, 1,
            "a call that failed with {error:?} must change nothing"
        );
    }
}

#[tokio::test]
async fn a_lax_counter_recovers_after_its_hash_was_overwritten_with_a_string() {
    let redis = TestRedis::start();
    let prefix = fresh_key();
    let lax = LaxCounter::new(CounterOptions::new(prefix.clone(), client(&redis).await));
    let k = key("k");
    bounded(lax.inc(&k, 1)).await.unwrap();
    bounded(lax.flush()).await.unwrap();
    let hash = common::counter_hash_with(&prefix, "k", CounterOptions::DEFAULT_SHARDS);
    assert_eq!(redis.cli(&["TYPE", &hash]), "hash");
    redis.cli(&["SET", &hash, "not a hash"]);
    bounded(lax.inc(&k, 1)).await.unwrap();
    // The flush cannot apply the delta, but it does not stall the counter: clear repairs it.
    let _ = bounded(lax.flush()).await;
    bounded(lax.clear()).await.unwrap();
    assert_eq!(bounded(lax.inc(&k, 5)).await.unwrap(), 5);
    bounded(lax.flush()).await.unwrap();
    assert_eq!(redis.cli(&["HGET", &hash, "k"]), "5");
}

/// Counts panics raised inside the distkit crates (background tasks included, whose panics
/// a runtime would otherwise swallow).
fn count_library_panics() -> Arc<std::sync::atomic::AtomicUsize> {
    let panics = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = Arc::clone(&panics);
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if info
            .location()
            .is_some_and(|location| location.file().contains("crates/distkit-"))
        {
            counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        previous(info);
    }));
    panics
}

#[tokio::test]
async fn extreme_option_values_never_panic_and_keep_every_increment() {
    let panics = count_library_panics();
    let redis = TestRedis::start();
    let prefix = fresh_key();
    let strict = StrictCounter::new(CounterOptions::new(prefix.clone(), client(&redis).await));
    let k = key("k");
    // The ends of each documented range; values beyond them are refused before any I/O
    // (tests/tests/options.rs).
    for lag in [
        Duration::ZERO,
        Duration::from_nanos(1),
        CounterOptions::MAX_ALLOWED_LAG,
    ] {
        let mut options = CounterOptions::new(prefix.clone(), client(&redis).await);
        options.allowed_lag = lag;
        let lax = LaxCounter::new(options);
        bounded(lax.inc(&k, 1)).await.unwrap();
        bounded(lax.inc_all(&[(&k, 1), (&k, 1)])).await.unwrap();
        bounded(lax.flush()).await.unwrap();
    }
    assert_eq!(bounded(strict.get(&k)).await.unwrap(), 9);

    let icounter_prefix = fresh_key();
    let reader = StrictInstanceAwareCounter::new(StrictInstanceAwareCounterOptions::new(
        icounter_prefix.clone(),
        client(&redis).await,
    ));
    let mut live = Vec::new();
    // The threshold and the revival window are clamped, never refused: any value works.
    let shortest = LaxInstanceAwareCounterOptions::MIN_FLUSH_INTERVAL;
    for (threshold, window, interval, lag) in [
        (Duration::ZERO, Duration::ZERO, shortest, Duration::ZERO),
        (
            Duration::MAX,
            Duration::MAX,
            LaxInstanceAwareCounterOptions::MAX_FLUSH_INTERVAL,
            LaxInstanceAwareCounterOptions::MAX_ALLOWED_LAG,
        ),
        (
            Duration::from_nanos(1),
            Duration::from_nanos(1),
            shortest,
            Duration::from_nanos(1),
        ),
    ] {
        let mut options =
            LaxInstanceAwareCounterOptions::new(icounter_prefix.clone(), client(&redis).await);
        options.dead_instance_threshold = threshold;
        options.revival_window = window;
        options.flush_interval = interval;
        options.allowed_lag = lag;
        let lax = LaxInstanceAwareCounter::new(options);
        bounded(lax.inc(&k, 1)).await.unwrap();
        bounded(lax.flush()).await.unwrap();
        let mut options =
            StrictInstanceAwareCounterOptions::new(icounter_prefix.clone(), client(&redis).await);
        options.dead_instance_threshold = threshold;
        options.revival_window = window;
        let strict = StrictInstanceAwareCounter::new(options);
        bounded(strict.inc(&k, 1)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        // Kept alive until the end: their slices count.
        live.push((lax, strict));
    }
    let (total, _) = bounded(reader.get(&k)).await.unwrap();
    assert_eq!(total, 6, "{} instances alive", live.len() * 2);
    assert_eq!(
        panics.load(std::sync::atomic::Ordering::Relaxed),
        0,
        "a distkit crate panicked"
    );
}
