//! StrictCounter and LaxCounter through the facade, against a private Redis.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{bounded, client, fresh_key, key};
use distkit::counter::{CounterError, CounterOptions, CounterTrait, LaxCounter, StrictCounter};
use distkit::{CounterComparator, DistkitError, DistkitRedisKey};
use distkit_test_support::TestRedis;

type DynCounter = Arc<dyn CounterTrait + Send + Sync>;

async fn both_counters(redis: &TestRedis) -> Vec<(&'static str, DynCounter)> {
    let strict: DynCounter =
        StrictCounter::new(CounterOptions::new(fresh_key(), client(redis).await));
    let lax: DynCounter = LaxCounter::new(CounterOptions::new(fresh_key(), client(redis).await));
    vec![("strict", strict), ("lax", lax)]
}

fn is_overflow(result: &Result<i64, DistkitError>) -> bool {
    matches!(
        result,
        Err(DistkitError::CounterError(CounterError::Overflow { .. }))
    )
}

#[tokio::test]
async fn every_basic_operation_behaves_as_documented_on_both_counters() {
    let redis = TestRedis::start();
    for (name, counter) in both_counters(&redis).await {
        let a = key("a");
        let b = key("b");
        assert_eq!(
            bounded(counter.get(&a)).await.unwrap(),
            0,
            "{name}: absent is 0"
        );
        assert_eq!(bounded(counter.inc(&a, 5)).await.unwrap(), 5, "{name}");
        assert_eq!(bounded(counter.inc(&a, -2)).await.unwrap(), 3, "{name}");
        assert_eq!(bounded(counter.dec(&a, 10)).await.unwrap(), -7, "{name}");
        assert_eq!(bounded(counter.get(&a)).await.unwrap(), -7, "{name}");
        assert_eq!(bounded(counter.set(&b, 42)).await.unwrap(), 42, "{name}");
        assert_eq!(bounded(counter.get(&b)).await.unwrap(), 42, "{name}");
        assert_eq!(
            bounded(counter.del(&b)).await.unwrap(),
            42,
            "{name}: del returns the old value"
        );
        assert_eq!(
            bounded(counter.del(&b)).await.unwrap(),
            0,
            "{name}: del of an absent key is 0"
        );
        assert_eq!(bounded(counter.get(&b)).await.unwrap(), 0, "{name}");
        bounded(counter.clear()).await.unwrap();
        assert_eq!(
            bounded(counter.get(&a)).await.unwrap(),
            0,
            "{name}: clear removes every key"
        );
        assert_eq!(
            bounded(counter.inc(&a, 1)).await.unwrap(),
            1,
            "{name}: usable after clear"
        );
    }
}

#[tokio::test]
async fn conditional_operations_write_only_when_the_comparison_holds() {
    let redis = TestRedis::start();
    for (name, counter) in both_counters(&redis).await {
        let k = key("quota");
        bounded(counter.set(&k, 10)).await.unwrap();
        assert_eq!(
            bounded(counter.inc_if(&k, CounterComparator::Lt(100), 5))
                .await
                .unwrap(),
            (15, 10),
            "{name}"
        );
        assert_eq!(
            bounded(counter.inc_if(&k, CounterComparator::Gt(100), 5))
                .await
                .unwrap(),
            (15, 15),
            "{name}"
        );
        assert_eq!(
            bounded(counter.inc_if(&k, CounterComparator::Eq(15), 1))
                .await
                .unwrap(),
            (16, 15),
            "{name}"
        );
        assert_eq!(
            bounded(counter.inc_if(&k, CounterComparator::Ne(16), 1))
                .await
                .unwrap(),
            (16, 16),
            "{name}"
        );
        assert_eq!(
            bounded(counter.inc_if(&k, CounterComparator::Nil, 4))
                .await
                .unwrap(),
            (20, 16),
            "{name}"
        );
        assert_eq!(
            bounded(counter.set_if(&k, CounterComparator::Eq(20), 0))
                .await
                .unwrap(),
            (0, 20),
            "{name}"
        );
        assert_eq!(
            bounded(counter.set_if(&k, CounterComparator::Gt(0), 9))
                .await
                .unwrap(),
            (0, 0),
            "{name}"
        );
        assert_eq!(
            bounded(counter.set_if(&k, CounterComparator::Ne(1), 9))
                .await
                .unwrap(),
            (9, 0),
            "{name}"
        );
        assert_eq!(
            bounded(counter.set_if(&k, CounterComparator::Lt(10), -3))
                .await
                .unwrap(),
            (-3, 9),
            "{name}"
        );
        assert_eq!(
            bounded(counter.set_if(&k, CounterComparator::Nil, 7))
                .await
                .unwrap(),
            (7, -3),
            "{name}"
        );
        assert_eq!(bounded(counter.get(&k)).await.unwrap(), 7, "{name}");
        // On an absent key the current value is 0.
        let absent = key("absent");
        assert_eq!(
            bounded(counter.inc_if(&absent, CounterComparator::Eq(0), 2))
                .await
                .unwrap(),
            (2, 0),
            "{name}"
        );
    }
}

#[tokio::test]
async fn comparisons_are_exact_at_the_i64_extremes() {
    let redis = TestRedis::start();
    for (name, counter) in both_counters(&redis).await {
        let k = key("edge");
        bounded(counter.set(&k, i64::MAX)).await.unwrap();
        let failed = bounded(counter.set_if(&k, CounterComparator::Eq(i64::MAX - 1), 0))
            .await
            .unwrap();
        assert_eq!(
            failed,
            (i64::MAX, i64::MAX),
            "{name}: MAX-1 must not equal MAX"
        );
        let failed = bounded(counter.set_if(&k, CounterComparator::Lt(i64::MAX), 0))
            .await
            .unwrap();
        assert_eq!(failed, (i64::MAX, i64::MAX), "{name}");
        let matched = bounded(counter.set_if(&k, CounterComparator::Gt(i64::MAX - 1), i64::MIN))
            .await
            .unwrap();
        assert_eq!(matched, (i64::MIN, i64::MAX), "{name}");
        let failed = bounded(counter.set_if(&k, CounterComparator::Gt(i64::MIN), 0))
            .await
            .unwrap();
        assert_eq!(failed, (i64::MIN, i64::MIN), "{name}");
        let matched = bounded(counter.set_if(&k, CounterComparator::Lt(i64::MIN + 1), 1))
            .await
            .unwrap();
        assert_eq!(matched, (1, i64::MIN), "{name}");
        bounded(counter.set(&k, -10)).await.unwrap();
        let failed = bounded(counter.set_if(&k, CounterComparator::Gt(-9), 0))
            .await
            .unwrap();
        assert_eq!(failed, (-10, -10), "{name}: -10 is not greater than -9");
        let matched = bounded(counter.set_if(&k, CounterComparator::Lt(-9), 0))
            .await
            .unwrap();
        assert_eq!(matched, (0, -10), "{name}");
    }
}

#[tokio::test]
async fn values_are_exact_over_the_whole_i64_range_and_overflow_changes_nothing() {
    let redis = TestRedis::start();
    for (name, counter) in both_counters(&redis).await {
        let k = key("max");
        assert_eq!(
            bounded(counter.set(&k, i64::MAX)).await.unwrap(),
            i64::MAX,
            "{name}"
        );
        assert_eq!(bounded(counter.get(&k)).await.unwrap(), i64::MAX, "{name}");
        assert!(
            is_overflow(&bounded(counter.inc(&k, 1)).await),
            "{name}: inc past MAX"
        );
        assert_eq!(
            bounded(counter.get(&k)).await.unwrap(),
            i64::MAX,
            "{name}: unchanged"
        );
        assert_eq!(
            bounded(counter.dec(&k, 1)).await.unwrap(),
            i64::MAX - 1,
            "{name}: exact just below MAX"
        );
        assert_eq!(
            bounded(counter.inc(&k, 1)).await.unwrap(),
            i64::MAX,
            "{name}"
        );

        let k = key("min");
        assert_eq!(
            bounded(counter.set(&k, i64::MIN)).await.unwrap(),
            i64::MIN,
            "{name}"
        );
        assert!(
            is_overflow(&bounded(counter.dec(&k, 1)).await),
            "{name}: dec past MIN"
        );
        assert_eq!(
            bounded(counter.get(&k)).await.unwrap(),
            i64::MIN,
            "{name}: unchanged"
        );
        let (new, old) = bounded(counter.inc_if(&k, CounterComparator::Nil, -1))
            .await
            .unwrap_or((0, 0));
        assert_eq!((new, old), (0, 0), "{name}: inc_if overflow is an error");

        let k = key("dec-min");
        bounded(counter.set(&k, -1)).await.unwrap();
        assert_eq!(
            bounded(counter.dec(&k, i64::MIN)).await.unwrap(),
            i64::MAX,
            "{name}: -1 - MIN = MAX"
        );
        bounded(counter.set(&k, 0)).await.unwrap();
        assert!(
            is_overflow(&bounded(counter.dec(&k, i64::MIN)).await),
            "{name}: 0 - MIN overflows"
        );
        assert_eq!(
            bounded(counter.get(&k)).await.unwrap(),
            0,
            "{name}: unchanged"
        );

        // Values beyond 2^53, where doubles lose precision.
        let k = key("big");
        let big = (1_i64 << 60) + 1;
        assert_eq!(bounded(counter.set(&k, big)).await.unwrap(), big, "{name}");
        assert_eq!(
            bounded(counter.inc(&k, 2)).await.unwrap(),
            big + 2,
            "{name}"
        );
        assert_eq!(bounded(counter.get(&k)).await.unwrap(), big + 2, "{name}");
    }
}

#[tokio::test]
async fn conditional_overflow_is_an_error_and_changes_nothing() {
    let redis = TestRedis::start();
    for (name, counter) in both_counters(&redis).await {
        let k = key("k");
        bounded(counter.set(&k, i64::MAX)).await.unwrap();
        let result = bounded(counter.inc_if(&k, CounterComparator::Nil, 1)).await;
        assert!(
            matches!(result, Err(DistkitError::CounterError(CounterError::Overflow { ref key })) if key == "k"),
            "{name}: {result:?}"
        );
        assert_eq!(bounded(counter.get(&k)).await.unwrap(), i64::MAX, "{name}");
    }
}

#[tokio::test]
async fn batches_keep_input_order_and_apply_repeated_keys_in_sequence() {
    let redis = TestRedis::start();
    for (name, counter) in both_counters(&redis).await {
        let a = key("a");
        let b = key("b");
        let empty: Vec<(&DistkitRedisKey, i64)> = Vec::new();
        assert!(
            bounded(counter.inc_all(&empty)).await.unwrap().is_empty(),
            "{name}"
        );
        assert!(
            bounded(counter.set_all(&empty)).await.unwrap().is_empty(),
            "{name}"
        );
        assert!(
            bounded(counter.get_all(&[])).await.unwrap().is_empty(),
            "{name}"
        );
        assert!(
            bounded(counter.inc_all_if(&[])).await.unwrap().is_empty(),
            "{name}"
        );
        assert!(
            bounded(counter.set_all_if(&[])).await.unwrap().is_empty(),
            "{name}"
        );

        let incs = bounded(counter.inc_all(&[(&a, 1), (&b, 10), (&a, 2), (&a, -5)]))
            .await
            .unwrap();
        assert_eq!(incs, vec![(&a, 1), (&b, 10), (&a, 3), (&a, -2)], "{name}");
        let sets = bounded(counter.set_all(&[(&b, 7), (&a, 8), (&b, 9)]))
            .await
            .unwrap();
        assert_eq!(sets, vec![(&b, 7), (&a, 8), (&b, 9)], "{name}");
        let none = key("none");
        let gets = bounded(counter.get_all(&[&b, &a, &none, &b]))
            .await
            .unwrap();
        assert_eq!(
            gets.iter().map(|&(_, v)| v).collect::<Vec<_>>(),
            vec![9, 8, 0, 9],
            "{name}"
        );

        let conditional = bounded(counter.inc_all_if(&[
            (&a, CounterComparator::Eq(8), 1),
            (&a, CounterComparator::Eq(8), 1),
            (&b, CounterComparator::Gt(0), -9),
        ]))
        .await
        .unwrap();
        assert_eq!(
            conditional,
            vec![(&a, 9, 8), (&a, 9, 9), (&b, 0, 9)],
            "{name}"
        );

        let conditional = bounded(counter.set_all_if(&[
            (&a, CounterComparator::Lt(100), 100),
            (&a, CounterComparator::Lt(100), 5),
            (&b, CounterComparator::Ne(0), 1),
            (&b, CounterComparator::Nil, 2),
        ]))
        .await
        .unwrap();
        assert_eq!(
            conditional,
            vec![(&a, 100, 9), (&a, 100, 100), (&b, 0, 0), (&b, 2, 0)],
            "{name}"
        );
    }
}

#[tokio::test]
async fn a_failing_batch_changes_nothing() {
    let redis = TestRedis::start();
    for (name, counter) in both_counters(&redis).await {
        let a = key("a");
        let b = key("b");
        bounded(counter.set_all(&[(&a, 1), (&b, i64::MAX)]))
            .await
            .unwrap();
        let result = bounded(counter.inc_all(&[(&a, 1), (&b, 1)])).await;
        assert!(
            matches!(result, Err(DistkitError::CounterError(CounterError::Overflow { ref key })) if key == "b"),
            "{name}: {result:?}"
        );
        assert_eq!(
            bounded(counter.get(&a)).await.unwrap(),
            1,
            "{name}: the first update was undone"
        );
        let result = bounded(counter.inc_all_if(&[
            (&a, CounterComparator::Nil, 1),
            (&b, CounterComparator::Nil, 1),
        ]))
        .await;
        assert!(result.is_err(), "{name}");
        assert_eq!(
            bounded(counter.get(&a)).await.unwrap(),
            1,
            "{name}: the conditional batch was undone"
        );
    }
}

#[tokio::test]
async fn ten_thousand_key_batches_work_and_stay_in_order() {
    let redis = TestRedis::start();
    for (name, counter) in both_counters(&redis).await {
        let keys: Vec<DistkitRedisKey> = (0..10_000).map(|i| key(&format!("k{i}"))).collect();
        let updates: Vec<(&DistkitRedisKey, i64)> = keys.iter().zip(0_i64..).collect();
        let results = bounded(counter.inc_all(&updates)).await.unwrap();
        assert_eq!(results.len(), 10_000, "{name}");
        assert!(
            results.iter().zip(0_i64..).all(|(&(_, v), i)| v == i),
            "{name}"
        );
        let sets: Vec<(&DistkitRedisKey, i64)> = keys.iter().map(|k| (k, 3)).collect();
        let results = bounded(counter.set_all(&sets)).await.unwrap();
        assert!(results.iter().all(|&(_, v)| v == 3), "{name}");
        let refs: Vec<&DistkitRedisKey> = keys.iter().collect();
        let values = bounded(counter.get_all(&refs)).await.unwrap();
        assert!(
            values
                .iter()
                .zip(&keys)
                .all(|(&(k, v), expected)| k == expected && v == 3),
            "{name}"
        );
    }
}

#[tokio::test]
async fn a_foreign_non_integer_value_is_reported_not_misread() {
    let redis = TestRedis::start();
    let prefix = fresh_key();
    let redis_client = client(&redis).await;
    let strict = StrictCounter::new(CounterOptions::new(prefix.clone(), redis_client.clone()));
    let lax = LaxCounter::new(CounterOptions::new(prefix.clone(), redis_client));
    let hash = format!("distkit:{{{prefix}}}:counter");
    assert_eq!(redis.cli(&["HSET", &hash, "text", "hello"]), "1");
    let k = key("text");
    let counters: [(&str, DynCounter); 2] = [("strict", strict), ("lax", lax)];
    for (name, counter) in counters {
        for result in [
            bounded(counter.get(&k)).await,
            bounded(counter.inc(&k, 1)).await,
            bounded(counter.inc_if(&k, CounterComparator::Eq(0), 1))
                .await
                .map(|(n, _)| n),
            bounded(counter.set_if(&k, CounterComparator::Eq(0), 1))
                .await
                .map(|(n, _)| n),
        ] {
            assert!(
                matches!(result, Err(DistkitError::CounterError(CounterError::NotAnInteger { ref key })) if key == "text"),
                "{name}: {result:?}"
            );
        }
    }
    assert_eq!(
        redis.cli(&["HGET", &hash, "text"]),
        "hello",
        "nothing overwrote it"
    );
}

#[tokio::test]
async fn strict_and_lax_counters_with_one_prefix_share_their_values() {
    let redis = TestRedis::start();
    let prefix = fresh_key();
    let strict = StrictCounter::new(CounterOptions::new(prefix.clone(), client(&redis).await));
    let lax = LaxCounter::new(CounterOptions::new(prefix, client(&redis).await));
    let k = key("shared");
    bounded(strict.set(&k, 100)).await.unwrap();
    assert_eq!(bounded(lax.get(&k)).await.unwrap(), 100);
    assert_eq!(bounded(lax.inc(&k, 5)).await.unwrap(), 105);
    bounded(lax.flush()).await.unwrap();
    assert_eq!(bounded(strict.get(&k)).await.unwrap(), 105);
    assert_eq!(bounded(lax.del(&k)).await.unwrap(), 105);
    assert_eq!(bounded(strict.get(&k)).await.unwrap(), 0);
}

#[tokio::test]
async fn lax_del_removes_a_value_this_process_never_touched() {
    let redis = TestRedis::start();
    let prefix = fresh_key();
    let strict = StrictCounter::new(CounterOptions::new(prefix.clone(), client(&redis).await));
    let lax = LaxCounter::new(CounterOptions::new(prefix, client(&redis).await));
    let k = key("elsewhere");
    bounded(strict.set(&k, 33)).await.unwrap();
    assert_eq!(bounded(lax.del(&k)).await.unwrap(), 33);
    assert_eq!(bounded(strict.get(&k)).await.unwrap(), 0);
}

#[tokio::test]
async fn lax_set_supersedes_pending_increments() {
    let redis = TestRedis::start();
    let prefix = fresh_key();
    let strict = StrictCounter::new(CounterOptions::new(prefix.clone(), client(&redis).await));
    let mut options = CounterOptions::new(prefix, client(&redis).await);
    options.allowed_lag = Duration::from_secs(3600);
    let lax = LaxCounter::new(options);
    let k = key("k");
    assert_eq!(bounded(lax.inc(&k, 5)).await.unwrap(), 5);
    assert_eq!(bounded(lax.set(&k, 1)).await.unwrap(), 1);
    assert_eq!(bounded(lax.inc(&k, 2)).await.unwrap(), 3);
    bounded(lax.flush()).await.unwrap();
    assert_eq!(bounded(strict.get(&k)).await.unwrap(), 3);
}

#[tokio::test]
async fn lax_increments_stay_local_until_flushed() {
    let redis = TestRedis::start();
    let prefix = fresh_key();
    let strict = StrictCounter::new(CounterOptions::new(prefix.clone(), client(&redis).await));
    let mut options = CounterOptions::new(prefix, client(&redis).await);
    options.allowed_lag = Duration::from_secs(3600);
    let lax = LaxCounter::new(options);
    let k = key("k");
    for expected in 1..=100 {
        assert_eq!(bounded(lax.inc(&k, 1)).await.unwrap(), expected);
    }
    assert_eq!(
        bounded(lax.get(&k)).await.unwrap(),
        100,
        "reads include local deltas"
    );
    assert_eq!(
        bounded(strict.get(&k)).await.unwrap(),
        0,
        "nothing was sent yet"
    );
    bounded(lax.flush()).await.unwrap();
    assert_eq!(bounded(strict.get(&k)).await.unwrap(), 100);
    bounded(lax.flush()).await.unwrap();
    assert_eq!(
        bounded(strict.get(&k)).await.unwrap(),
        100,
        "a second flush sends nothing twice"
    );
}

#[tokio::test]
async fn lax_delivers_within_about_the_allowed_lag_after_load_stops() {
    let redis = TestRedis::start();
    let prefix = fresh_key();
    let strict = StrictCounter::new(CounterOptions::new(prefix.clone(), client(&redis).await));
    let lax = LaxCounter::new(CounterOptions::new(prefix, client(&redis).await));
    let k = key("k");
    // Several seconds of load, then silence: the flush task must keep delivering.
    let started = Instant::now();
    let mut sent = 0_i64;
    while started.elapsed() < Duration::from_secs(2) {
        for _ in 0..1_000 {
            bounded(lax.inc(&k, 1)).await.unwrap();
            sent += 1;
        }
        tokio::task::yield_now().await;
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let stored = bounded(strict.get(&k)).await.unwrap();
        if stored == sent {
            break;
        }
        assert!(
            stored < sent,
            "more was stored ({stored}) than sent ({sent})"
        );
        assert!(
            Instant::now() < deadline,
            "only {stored} of {sent} delivered after 5 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The lax counter sees remote changes made elsewhere after its next flush.
    bounded(strict.inc(&k, 1)).await.unwrap();
    bounded(lax.get(&k)).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while bounded(lax.get(&k)).await.unwrap() != sent + 1 {
        assert!(Instant::now() < deadline, "the lax read never caught up");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn dropping_the_last_lax_handle_flushes_what_is_pending() {
    let redis = TestRedis::start();
    let prefix = fresh_key();
    let strict = StrictCounter::new(CounterOptions::new(prefix.clone(), client(&redis).await));
    let mut options = CounterOptions::new(prefix, client(&redis).await);
    options.allowed_lag = Duration::from_secs(3600);
    let lax = LaxCounter::new(options);
    let k = key("k");
    for _ in 0..10 {
        bounded(lax.inc(&k, 3)).await.unwrap();
    }
    drop(lax);
    let deadline = Instant::now() + Duration::from_secs(5);
    while bounded(strict.get(&k)).await.unwrap() != 30 {
        assert!(Instant::now() < deadline, "the drop flush never arrived");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[test]
fn lax_counter_built_outside_a_runtime_flushes_when_used_in_one() {
    let redis = TestRedis::start();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = runtime.block_on(async { client(&redis).await });
    let prefix = fresh_key();
    // Built on a plain thread: no runtime context.
    let lax = std::thread::spawn({
        let prefix = prefix.clone();
        let client = client.clone();
        move || LaxCounter::new(CounterOptions::new(prefix, client))
    })
    .join()
    .unwrap();
    runtime.block_on(async {
        let strict = StrictCounter::new(CounterOptions::new(prefix, client));
        let k = key("k");
        bounded(lax.inc(&k, 4)).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while bounded(strict.get(&k)).await.unwrap() != 4 {
            assert!(Instant::now() < deadline, "the flush task never ran");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
}

#[tokio::test]
async fn zero_allowed_lag_flushes_on_every_call() {
    let redis = TestRedis::start();
    let prefix = fresh_key();
    let strict = StrictCounter::new(CounterOptions::new(prefix.clone(), client(&redis).await));
    let mut options = CounterOptions::new(prefix, client(&redis).await);
    options.allowed_lag = Duration::ZERO;
    let lax = LaxCounter::new(options);
    let k = key("k");
    for expected in 1..=20 {
        assert_eq!(bounded(lax.inc(&k, 1)).await.unwrap(), expected);
        assert_eq!(
            bounded(strict.get(&k)).await.unwrap(),
            expected,
            "visible at once"
        );
    }
    // The background task is alive too: an idle period changes nothing and breaks nothing.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(bounded(lax.inc(&k, 1)).await.unwrap(), 21);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_tasks_on_three_clients_give_exact_totals() {
    let redis = TestRedis::start();
    for lax in [false, true] {
        let prefix = fresh_key();
        let mut counters: Vec<DynCounter> = Vec::new();
        for _ in 0..3 {
            let options = CounterOptions::new(prefix.clone(), client(&redis).await);
            counters.push(if lax {
                LaxCounter::new(options)
            } else {
                StrictCounter::new(options)
            });
        }
        let k = key("total");
        let mut tasks = Vec::new();
        for task in 0..64_usize {
            let counter = Arc::clone(&counters[task % 3]);
            let k = k.clone();
            tasks.push(tokio::spawn(async move {
                for _ in 0..200 {
                    bounded(counter.inc(&k, 1)).await.unwrap();
                }
                bounded(counter.dec(&k, 1)).await.unwrap();
            }));
        }
        for task in tasks {
            bounded(task).await.unwrap();
        }
        let reader = StrictCounter::new(CounterOptions::new(prefix.clone(), client(&redis).await));
        let expected = 64 * 199;
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let total = bounded(reader.get(&k)).await.unwrap();
            if total == expected {
                break;
            }
            assert!(total < expected, "lax={lax}: {total} exceeds {expected}");
            assert!(
                Instant::now() < deadline,
                "lax={lax}: total {total}, expected {expected}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clear_and_del_racing_increments_and_reads_never_panic() {
    let redis = TestRedis::start();
    let lax = LaxCounter::new(CounterOptions::new(fresh_key(), client(&redis).await));
    let keys: Vec<DistkitRedisKey> = (0..8).map(|i| key(&format!("k{i}"))).collect();
    let mut tasks = Vec::new();
    for worker in 0..4_usize {
        let lax = Arc::clone(&lax);
        let keys = keys.clone();
        tasks.push(tokio::spawn(async move {
            for round in 0..300_usize {
                let k = &keys[(worker + round) % keys.len()];
                match (worker + round) % 5 {
                    0 => bounded(lax.clear()).await.unwrap(),
                    1 => assert!(bounded(lax.del(k)).await.unwrap() >= 0),
                    2 => assert!(bounded(lax.get(k)).await.unwrap() >= 0),
                    _ => assert!(bounded(lax.inc(k, 1)).await.unwrap() >= 1),
                }
            }
        }));
    }
    for task in tasks {
        bounded(task).await.unwrap();
    }
    bounded(lax.flush()).await.unwrap();
}

#[tokio::test]
async fn counters_are_usable_as_trait_objects_and_send_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<StrictCounter>();
    assert_send_sync::<LaxCounter>();
    assert_send_sync::<CounterOptions>();
    let redis = TestRedis::start();
    let counter: Arc<dyn CounterTrait + Send + Sync> =
        StrictCounter::new(CounterOptions::new(fresh_key(), client(&redis).await));
    let handle = tokio::spawn(async move { counter.inc(&key("k"), 1).await });
    assert_eq!(bounded(handle).await.unwrap().unwrap(), 1);
}

#[tokio::test]
async fn lax_counter_forgets_idle_keys() {
    let redis = TestRedis::start();
    let lax = LaxCounter::new(CounterOptions::new(fresh_key(), client(&redis).await));
    let keys: Vec<DistkitRedisKey> = (0..1_000).map(|i| key(&format!("k{i}"))).collect();
    for k in &keys {
        bounded(lax.inc(k, 1)).await.unwrap();
    }
    assert_eq!(lax.tracked_keys(), 1_000);
    bounded(lax.flush()).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while lax.tracked_keys() > 0 {
        assert!(
            Instant::now() < deadline,
            "{} keys still tracked after 30 s idle",
            lax.tracked_keys()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Forgotten keys still read their stored value.
    assert_eq!(bounded(lax.get(&keys[0])).await.unwrap(), 1);
}

#[tokio::test]
async fn lax_deltas_pending_across_a_redis_restart_are_delivered_once() {
    let mut redis = TestRedis::start_standalone();
    let prefix = fresh_key();
    let mut options = CounterOptions::new(prefix.clone(), client(&redis).await);
    options.allowed_lag = Duration::from_secs(3600);
    let lax = LaxCounter::new(options);
    let k = key("k");
    for _ in 0..10 {
        bounded(lax.inc(&k, 1)).await.unwrap();
    }
    redis.restart();
    for _ in 0..5 {
        bounded(lax.inc(&k, 1)).await.unwrap();
    }
    // The client reconnects by itself; flush until it goes through.
    let deadline = Instant::now() + Duration::from_secs(15);
    while bounded(lax.flush()).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "flush never succeeded after the restart"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let strict = StrictCounter::new(CounterOptions::new(prefix, client(&redis).await));
    assert_eq!(bounded(strict.get(&k)).await.unwrap(), 15);
    bounded(lax.flush()).await.unwrap();
    assert_eq!(
        bounded(strict.get(&k)).await.unwrap(),
        15,
        "nothing is delivered twice"
    );
    // The strict counter works again after the restart as well.
    assert_eq!(bounded(strict.inc(&k, 1)).await.unwrap(), 16);
}

#[tokio::test]
async fn whether_a_condition_held_is_told_by_matching_the_old_value_not_by_new_against_old() {
    let redis = TestRedis::start();
    for (name, counter) in both_counters(&redis).await {
        let k = key("k");
        bounded(counter.set(&k, 5)).await.unwrap();
        // Held, but the value does not change: new == old all the same.
        let comparator = CounterComparator::Eq(5);
        let (new, old) = bounded(counter.inc_if(&k, comparator, 0)).await.unwrap();
        assert_eq!((new, old), (5, 5), "{name}");
        assert!(comparator.matches(old), "{name}: held");
        let (new, old) = bounded(counter.set_if(&k, comparator, 5)).await.unwrap();
        assert_eq!((new, old), (5, 5), "{name}");
        assert!(comparator.matches(old), "{name}: held");
        // Failed: nothing written, and the comparator says so.
        for comparator in [
            CounterComparator::Lt(5),
            CounterComparator::Gt(5),
            CounterComparator::Ne(5),
            CounterComparator::Eq(4),
        ] {
            let (new, old) = bounded(counter.inc_if(&k, comparator, 1)).await.unwrap();
            assert_eq!((new, old), (5, 5), "{name} {comparator:?}");
            assert!(!comparator.matches(old), "{name} {comparator:?}: failed");
            let (_, old) = bounded(counter.set_if(&k, comparator, 9)).await.unwrap();
            assert!(!comparator.matches(old), "{name} {comparator:?}: failed");
        }
        assert_eq!(bounded(counter.get(&k)).await.unwrap(), 5, "{name}");
    }
}
