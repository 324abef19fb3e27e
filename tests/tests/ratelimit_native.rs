//! `distkit::ratelimit` through the facade, on the server clock: decisions, weighted calls,
//! bad input, expiry, exact admission under concurrency, and a three-master Redis Cluster.
//! (The scripts are checked against reference models with explicit times, and the sliding
//! window against trypema's local provider, in the distkit-ratelimit crate's own tests.)
//! The lax sliding window: local decisions on the shared window, delivery on drop, bad
//! input, a delivery resent after its reply was lost, and seeded random contention from several objects on separate clients checked
//! against its documented bound and exactly-once delivery. The lax GCRA the same way: its
//! bound (`burst + rate × elapsed` per object) checked with exact integers on seeded random
//! contention, the TAT in Redis after a flush exact to the unit, a resent delivery applied
//! once, bad input, every cluster master.
//!
//! `DISTKIT_RATELIMIT_SEED` replays a seed of the randomized test (default: from the clock);
//! `DISTKIT_RATELIMIT_CASES` (default 3) sets how many seeds it runs.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use common::{bounded, client, eventually, fresh_key, key};
use distkit::fred::clients::Client;
use distkit::ratelimit::{
    Decision, GcraLimiter, GcraOptions, GcraRate, LaxGcraLimiter, LaxGcraOptions,
    LaxSlidingWindowLimiter, LaxSlidingWindowOptions, MAX_GCRA_LIMIT, MAX_SYNC_INTERVAL,
    MAX_WINDOW_LIMIT, SlidingWindowLimiter, SlidingWindowOptions,
};
use distkit::{DistkitError, DistkitRedisKey};
use distkit_test_support::TestRedis;

#[expect(clippy::unwrap_used, reason = "a test helper fails its test")]
fn sliding(
    prefix: DistkitRedisKey,
    client: Client,
    window_ms: u64,
    bucket_ms: u64,
) -> SlidingWindowLimiter {
    let mut options = SlidingWindowOptions::new(prefix, client);
    options.window = Duration::from_millis(window_ms);
    options.bucket = Duration::from_millis(bucket_ms);
    SlidingWindowLimiter::new(options).unwrap()
}

#[expect(clippy::panic, reason = "a test helper fails its test")]
fn is_invalid_option<T: std::fmt::Debug>(result: Result<T, DistkitError>, words: &str) {
    match result {
        Err(DistkitError::InvalidOption(message)) => {
            assert!(
                message.contains(words),
                "{message:?} should mention {words:?}"
            );
        }
        other => panic!("expected an invalid option error about {words:?}, got {other:?}"),
    }
}

/// The quota left after an admitted call, `None` after a refusal.
fn allowed(decision: Decision) -> Option<u64> {
    decision.is_allowed().then(|| decision.remaining())
}

/// Asserts that `decision` is a rejection leaving `remaining`, with
/// `after < retry_after <= at_most`; returns its `retry_after`.
#[expect(clippy::panic, reason = "a test helper fails its test")]
fn rejected(decision: Decision, remaining: u64, after: Duration, at_most: Duration) -> Duration {
    let Decision::Rejected {
        retry_after,
        remaining: left,
        ..
    } = decision
    else {
        panic!("expected a rejection leaving {remaining}, got {decision:?}");
    };
    assert_eq!(left, remaining, "{decision:?}");
    assert!(
        retry_after > after && retry_after <= at_most,
        "retry after {retry_after:?}, expected more than {after:?} and at most {at_most:?}"
    );
    retry_after
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcra_admits_the_burst_then_rejects_with_a_retry_after_that_is_enough() {
    let redis = TestRedis::start();
    let limiter = GcraLimiter::new(GcraOptions::new(fresh_key(), client(&redis).await));
    let k = key("tenant");
    // 10 per second, 5 at once.
    let rate = GcraRate::per_second(10, 5).unwrap();
    for expected in (0..5).rev() {
        let decision = bounded(limiter.check(&k, &rate, 1)).await.unwrap();
        // Time passes between calls, so a unit may already have come back.
        assert!(decision.is_allowed(), "{decision:?}");
        assert!(decision.remaining() >= expected, "{decision:?}");
    }
    let mut rejected_call = bounded(limiter.check(&k, &rate, 1)).await.unwrap();
    while rejected_call.is_allowed() {
        rejected_call = bounded(limiter.check(&k, &rate, 1)).await.unwrap();
    }
    let retry_after = rejected(rejected_call, 0, Duration::ZERO, Duration::from_millis(100));
    tokio::time::sleep(retry_after).await;
    assert!(
        bounded(limiter.check(&k, &rate, 1))
            .await
            .unwrap()
            .is_allowed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_calls_charge_their_cost_and_report_what_is_left() {
    let redis = TestRedis::start();
    let client = client(&redis).await;
    let prefix = fresh_key();
    let k = key("k");
    // One unit per hour: nothing comes back during the test.
    let gcra = GcraLimiter::new(GcraOptions::new(prefix.clone(), client.clone()));
    let rate = GcraRate::new(1, Duration::from_secs(3_600), 5).unwrap();
    assert_eq!(
        allowed(bounded(gcra.check(&k, &rate, 3)).await.unwrap()),
        Some(2)
    );
    // A cost of 3 with 2 left: one more unit must come back, about an hour.
    rejected(
        bounded(gcra.check(&k, &rate, 3)).await.unwrap(),
        2,
        Duration::from_secs(3_590),
        Duration::from_secs(3_600),
    );
    assert_eq!(
        allowed(bounded(gcra.check(&k, &rate, 2)).await.unwrap()),
        Some(0)
    );

    let window = sliding(prefix, client, 60_000, 100);
    assert_eq!(
        allowed(bounded(window.check(&k, 5, 3)).await.unwrap()),
        Some(2)
    );
    // A cost of 3 with 2 left.
    rejected(
        bounded(window.check(&k, 5, 3)).await.unwrap(),
        2,
        Duration::from_secs(59),
        Duration::from_millis(60_001),
    );
    assert_eq!(
        allowed(bounded(window.check(&k, 5, 2)).await.unwrap()),
        Some(0)
    );
    // The limit is given per call: a larger one admits more on the same window.
    assert_eq!(
        allowed(bounded(window.check(&k, 8, 3)).await.unwrap()),
        Some(0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sliding_window_rejects_until_the_oldest_bucket_leaves_the_window() {
    let redis = TestRedis::start();
    let limiter = sliding(fresh_key(), client(&redis).await, 400, 100);
    let k = key("k");
    for _ in 0..3 {
        assert!(bounded(limiter.check(&k, 3, 1)).await.unwrap().is_allowed());
    }
    // The fourth call within the window.
    let retry_after = rejected(
        bounded(limiter.check(&k, 3, 1)).await.unwrap(),
        0,
        Duration::ZERO,
        Duration::from_millis(401),
    );
    tokio::time::sleep(retry_after).await;
    assert!(bounded(limiter.check(&k, 3, 1)).await.unwrap().is_allowed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_rates_windows_costs_and_keys_are_clear_errors_never_panics() {
    let redis = TestRedis::start();
    let client = client(&redis).await;
    let second = Duration::from_secs(1);
    is_invalid_option(GcraRate::new(0, second, 1), "limit");
    is_invalid_option(GcraRate::new(MAX_GCRA_LIMIT + 1, second, 1), "limit");
    is_invalid_option(GcraRate::new(10, Duration::ZERO, 1), "period");
    is_invalid_option(GcraRate::new(10, Duration::from_nanos(999), 1), "period");
    // Faster than one unit per µs: refused, not truncated (issue 33).
    is_invalid_option(GcraRate::new(10, Duration::from_micros(9), 1), "per unit");
    is_invalid_option(
        GcraRate::new(10, Duration::from_nanos(9_999), 1),
        "per unit",
    );
    is_invalid_option(GcraRate::per_second(1_000_001, 1), "per unit");
    is_invalid_option(
        GcraRate::new(MAX_GCRA_LIMIT, Duration::from_micros(1), 1),
        "per unit",
    );
    // One unit per µs exactly is the fastest rate.
    assert!(GcraRate::per_second(1_000_000, 1).is_ok());
    assert!(GcraRate::new(10, Duration::from_micros(10), 1).is_ok());
    is_invalid_option(GcraRate::new(10, second, 0), "burst");
    is_invalid_option(GcraRate::new(1, Duration::MAX, 1), "drain");
    is_invalid_option(GcraRate::new(1, second, u64::MAX), "drain");

    let gcra = GcraLimiter::new(GcraOptions::new(fresh_key(), client.clone()));
    let rate = GcraRate::per_second(10, 5).unwrap();
    let k = key("k");
    is_invalid_option(bounded(gcra.check(&k, &rate, 0)).await, "cost");
    is_invalid_option(bounded(gcra.check(&k, &rate, 6)).await, "cost");
    is_invalid_option(bounded(gcra.check(&k, &rate, u64::MAX)).await, "cost");

    let options = |window: Duration, bucket: Duration| {
        let mut options = SlidingWindowOptions::new(fresh_key(), client.clone());
        options.window = window;
        options.bucket = bucket;
        options
    };
    let ms = Duration::from_millis;
    for (window, bucket, words) in [
        (Duration::ZERO, ms(1), "window"),
        (Duration::from_micros(999), ms(1), "window"),
        (Duration::MAX, ms(100), "window"),
        (second, Duration::ZERO, "bucket"),
        (second, ms(1_001), "bucket"),
    ] {
        is_invalid_option(options(window, bucket).validate(), words);
        is_invalid_option(SlidingWindowLimiter::new(options(window, bucket)), words);
    }
    let window = SlidingWindowLimiter::new(options(second, ms(100))).unwrap();
    is_invalid_option(bounded(window.check(&k, 0, 1)).await, "limit");
    is_invalid_option(bounded(window.check(&k, u64::MAX, 1)).await, "limit");
    is_invalid_option(bounded(window.check(&k, 5, 0)).await, "cost");
    is_invalid_option(bounded(window.check(&k, 5, 6)).await, "cost");

    // Keys follow the rules of every distkit key.
    for bad in ["", "tenant:42", &"x".repeat(256)] {
        assert!(matches!(
            DistkitRedisKey::try_from(bad),
            Err(DistkitError::InvalidRedisKey(_))
        ));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limiter_state_expires_once_it_no_longer_limits_and_reset_forgets_it() {
    let redis = TestRedis::start();
    let client = client(&redis).await;
    let prefix = fresh_key();
    let k = key("k");
    let gcra = GcraLimiter::new(GcraOptions::new(prefix.clone(), client.clone()));
    let window = sliding(prefix.clone(), client, 200, 50);
    let rate = GcraRate::new(1, Duration::from_millis(200), 2).unwrap();
    assert!(
        bounded(gcra.check(&k, &rate, 2))
            .await
            .unwrap()
            .is_allowed()
    );
    assert!(bounded(window.check(&k, 2, 2)).await.unwrap().is_allowed());
    let names = [
        format!("distkit:rl:{prefix}:{{k}}:gcra"),
        format!("distkit:rl:{prefix}:{{k}}:sw"),
        format!("distkit:rl:{prefix}:{{k}}:sw:total"),
    ];
    for name in &names {
        let ttl: i64 = redis.cli(&["PTTL", name]).parse().unwrap();
        assert!(ttl > 0 && ttl <= 401, "{name}: pttl {ttl}");
    }
    tokio::time::sleep(Duration::from_millis(450)).await;
    for name in &names {
        assert_eq!(redis.cli(&["EXISTS", name]), "0", "{name} outlived its use");
    }
    // A burst of 2 at one unit a minute: the refusal cannot turn into an admission however
    // long the machine stalls between the two calls.
    let slow = GcraRate::new(1, Duration::from_secs(60), 2).unwrap();
    assert!(
        bounded(gcra.check(&k, &slow, 2))
            .await
            .unwrap()
            .is_allowed()
    );
    assert!(
        !bounded(gcra.check(&k, &slow, 1))
            .await
            .unwrap()
            .is_allowed()
    );
    bounded(gcra.reset(&k)).await.unwrap();
    assert!(
        bounded(gcra.check(&k, &slow, 2))
            .await
            .unwrap()
            .is_allowed()
    );
    assert!(bounded(window.check(&k, 2, 2)).await.unwrap().is_allowed());
    bounded(window.reset(&k)).await.unwrap();
    assert!(bounded(window.check(&k, 2, 2)).await.unwrap().is_allowed());
}

/// Tasks on several clients race for one key: exactly the limit is admitted, never more.
#[expect(
    clippy::unwrap_used,
    clippy::arithmetic_side_effects,
    clippy::indexing_slicing,
    reason = "a test helper fails its test; small counts"
)]
async fn exact_admission_under_contention(redis: &TestRedis, k: &DistkitRedisKey) {
    let prefix = fresh_key();
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(client(redis).await);
    }
    let gcra = Arc::new(
        clients
            .iter()
            .map(|client| GcraLimiter::new(GcraOptions::new(prefix.clone(), client.clone())))
            .collect::<Vec<_>>(),
    );
    let windows = Arc::new(
        clients
            .iter()
            .map(|client| sliding(prefix.clone(), client.clone(), 600_000, 100))
            .collect::<Vec<_>>(),
    );
    // 40 units at once, then one per hour; 40 per 10 minutes.
    let rate = GcraRate::new(1, Duration::from_secs(3_600), 40).unwrap();
    let mut tasks = Vec::new();
    for task in 0..12_usize {
        let (gcra, windows, k) = (Arc::clone(&gcra), Arc::clone(&windows), k.clone());
        tasks.push(tokio::spawn(async move {
            let (mut gcra_allowed, mut window_allowed) = (0_u64, 0_u64);
            for call in 0..10_usize {
                let cost = 1 + u64::try_from((task + call) % 2).unwrap();
                let limiter = &gcra[(task + call) % 3];
                if bounded(limiter.check(&k, &rate, cost))
                    .await
                    .unwrap()
                    .is_allowed()
                {
                    gcra_allowed += cost;
                }
                let window = &windows[(task + call) % 3];
                if bounded(window.check(&k, 40, cost))
                    .await
                    .unwrap()
                    .is_allowed()
                {
                    window_allowed += cost;
                }
            }
            (gcra_allowed, window_allowed)
        }));
    }
    let (mut gcra_total, mut window_total) = (0, 0);
    for task in tasks {
        let (gcra_allowed, window_allowed) = bounded(task).await.unwrap();
        gcra_total += gcra_allowed;
        window_total += window_allowed;
    }
    // 12 × 10 calls of cost 1 or 2 (180 units) ask for far more than 40: at most 40 each,
    // and at least 39 (a cost of 2 may be refused with one unit left).
    assert!(
        (39..=40).contains(&gcra_total),
        "gcra admitted {gcra_total}"
    );
    assert!(
        (39..=40).contains(&window_total),
        "sliding window admitted {window_total}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_callers_on_several_clients_never_exceed_the_limit() {
    let redis = TestRedis::start();
    exact_admission_under_contention(&redis, &key("shared")).await;
}

/// One limiter key per master: generated names until every master serves one.
fn key_per_master(cluster: &TestRedis, prefix: &DistkitRedisKey) -> BTreeMap<u16, DistkitRedisKey> {
    let mut keys = BTreeMap::new();
    for index in 0..500 {
        let k = key(&format!("key-{index}"));
        let node = cluster.node_of(&format!("distkit:rl:{prefix}:{{{k}}}:gcra"));
        keys.entry(node).or_insert(k);
        if keys.len() == cluster.ports().len() {
            break;
        }
    }
    assert_eq!(keys.len(), 3, "could not find a key on every master");
    keys
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_limiters_work_on_every_master_of_a_cluster_with_each_keys_state_on_its_node() {
    let cluster = TestRedis::start_cluster();
    assert!(cluster.is_cluster());
    let client = client(&cluster).await;
    let prefix = fresh_key();
    let gcra = GcraLimiter::new(GcraOptions::new(prefix.clone(), client.clone()));
    let window = sliding(prefix.clone(), client, 60_000, 100);
    let rate = GcraRate::new(1, Duration::from_secs(3_600), 2).unwrap();
    for (node, k) in key_per_master(&cluster, &prefix) {
        assert_eq!(
            allowed(bounded(gcra.check(&k, &rate, 1)).await.unwrap()),
            Some(1)
        );
        assert_eq!(
            allowed(bounded(gcra.check(&k, &rate, 1)).await.unwrap()),
            Some(0)
        );
        assert!(
            !bounded(gcra.check(&k, &rate, 1))
                .await
                .unwrap()
                .is_allowed()
        );
        assert_eq!(
            allowed(bounded(window.check(&k, 2, 2)).await.unwrap()),
            Some(0)
        );
        assert!(!bounded(window.check(&k, 2, 1)).await.unwrap().is_allowed());
        // Every key of the limiter key lives on the master that owns its hash tag.
        for part in ["gcra", "sw", "sw:total"] {
            let name = format!("distkit:rl:{prefix}:{{{k}}}:{part}");
            assert_eq!(
                cluster.node_cli(node, &["EXISTS", &name]),
                "1",
                "{name} not on node {node}"
            );
        }
        bounded(gcra.reset(&k)).await.unwrap();
        bounded(window.reset(&k)).await.unwrap();
        assert!(
            bounded(gcra.check(&k, &rate, 2))
                .await
                .unwrap()
                .is_allowed()
        );
        assert!(bounded(window.check(&k, 2, 2)).await.unwrap().is_allowed());
    }
    // Braces in the prefix and key stay inside one slot.
    let braces = GcraLimiter::new(GcraOptions::new(
        key("a{b}c"),
        common::client(&cluster).await,
    ));
    for name in ["}", "{", "{}", "x{y}z"] {
        assert!(
            bounded(braces.check(&key(name), &rate, 1))
                .await
                .unwrap()
                .is_allowed()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_callers_on_a_cluster_never_exceed_the_limit() {
    let cluster = TestRedis::start_cluster();
    exact_admission_under_contention(&cluster, &key("shared-on-cluster")).await;
}

#[expect(clippy::unwrap_used, reason = "a test helper fails its test")]
fn lax(
    prefix: DistkitRedisKey,
    client: Client,
    window: Duration,
    sync_interval: Duration,
) -> Arc<LaxSlidingWindowLimiter> {
    let options = LaxSlidingWindowOptions::builder(prefix, client)
        .window(window)
        .bucket(Duration::from_millis(50))
        .sync_interval(sync_interval)
        .build();
    LaxSlidingWindowLimiter::new(options).unwrap()
}

/// The count Redis holds for a sliding-window key (0 when it has none).
#[expect(clippy::unwrap_used, reason = "a test helper fails its test")]
fn window_total(redis: &TestRedis, prefix: &DistkitRedisKey, k: &DistkitRedisKey) -> u64 {
    let text = redis.cli(&["GET", &format!("distkit:rl:{prefix}:{{{k}}}:sw:total")]);
    if text.is_empty() {
        0
    } else {
        text.parse().unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lax_limiter_decides_warm_keys_in_memory_on_the_window_it_shares_with_the_strict_one() {
    let redis = TestRedis::start();
    let client = client(&redis).await;
    let prefix = fresh_key();
    let k = key("k");
    let minute = Duration::from_secs(60);
    // Synced only by flush() during the test.
    let limiter = lax(prefix.clone(), client.clone(), minute, MAX_SYNC_INTERVAL);
    let mut options = SlidingWindowOptions::new(prefix.clone(), client);
    options.window = minute;
    options.bucket = Duration::from_millis(50);
    let strict = SlidingWindowLimiter::new(options).unwrap();
    // Cold: one strict call.
    assert_eq!(
        allowed(bounded(limiter.check(&k, 10, 3)).await.unwrap()),
        Some(7)
    );
    assert_eq!(
        allowed(bounded(strict.check(&k, 10, 2)).await.unwrap()),
        Some(5)
    );
    // Warm: decided in memory, on the count of the last sync (3) plus its own units; the
    // strict limiter's 2 units are not seen yet, and nothing reaches Redis.
    assert_eq!(
        allowed(bounded(limiter.check(&k, 10, 4)).await.unwrap()),
        Some(3)
    );
    assert_eq!(window_total(&redis, &prefix, &k), 5);
    bounded(limiter.flush()).await.unwrap();
    assert_eq!(window_total(&redis, &prefix, &k), 9);
    // The view is the shared count now: 9 of 10.
    // A cost of 2 with 1 left.
    rejected(
        bounded(limiter.check(&k, 10, 2)).await.unwrap(),
        1,
        Duration::from_secs(59),
        Duration::from_millis(60_001),
    );
    assert_eq!(
        allowed(bounded(limiter.check(&k, 10, 1)).await.unwrap()),
        Some(0)
    );
    assert_eq!(limiter.tracked_keys(), 1);
    // Flushing twice delivers once.
    bounded(limiter.flush()).await.unwrap();
    bounded(limiter.flush()).await.unwrap();
    assert_eq!(window_total(&redis, &prefix, &k), 10);
    assert!(!bounded(strict.check(&k, 10, 1)).await.unwrap().is_allowed());
    // reset forgets the key in Redis and in the object.
    bounded(limiter.reset(&k)).await.unwrap();
    assert_eq!(limiter.tracked_keys(), 0);
    assert_eq!(window_total(&redis, &prefix, &k), 0);
    assert_eq!(
        allowed(bounded(limiter.check(&k, 10, 10)).await.unwrap()),
        Some(0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lax_limiter_admits_again_once_its_units_leave_the_window() {
    let redis = TestRedis::start();
    let limiter = lax(
        fresh_key(),
        client(&redis).await,
        Duration::from_millis(300),
        Duration::from_millis(10),
    );
    let k = key("k");
    for _ in 0..3 {
        assert!(bounded(limiter.check(&k, 3, 1)).await.unwrap().is_allowed());
    }
    let Decision::Rejected { retry_after, .. } = bounded(limiter.check(&k, 3, 1)).await.unwrap()
    else {
        panic!("the fourth call within the window must be rejected");
    };
    assert!(retry_after <= Duration::from_millis(301), "{retry_after:?}");
    // Once the units left the window, the next sync shows it.
    tokio::time::sleep(Duration::from_millis(350)).await;
    eventually("the lax limiter admits again", || async {
        bounded(limiter.check(&k, 3, 1)).await.unwrap().is_allowed()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_lax_limiter_delivers_the_units_it_admitted_locally() {
    let redis = TestRedis::start();
    let client = client(&redis).await;
    let prefix = fresh_key();
    let k = key("k");
    let limiter = lax(
        prefix.clone(),
        client,
        Duration::from_secs(60),
        MAX_SYNC_INTERVAL,
    );
    assert!(
        bounded(limiter.check(&k, 100, 2))
            .await
            .unwrap()
            .is_allowed()
    );
    for _ in 0..5 {
        assert!(
            bounded(limiter.check(&k, 100, 3))
                .await
                .unwrap()
                .is_allowed()
        );
    }
    // Only the cold call reached Redis; the background task syncs once an hour.
    assert_eq!(window_total(&redis, &prefix, &k), 2);
    drop(limiter);
    eventually("the dropped limiter's units arrive", || async {
        window_total(&redis, &prefix, &k) == 17
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(window_total(&redis, &prefix, &k), 17, "delivered twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_lax_options_limits_and_costs_are_clear_errors_never_panics() {
    let redis = TestRedis::start();
    let client = client(&redis).await;
    let ms = Duration::from_millis;
    let second = Duration::from_secs(1);
    for (window, bucket, sync, words) in [
        (Duration::ZERO, ms(1), ms(20), "window"),
        (Duration::MAX, ms(100), ms(20), "window"),
        (second, Duration::ZERO, ms(20), "bucket"),
        (second, ms(1_001), ms(20), "bucket"),
        (second, ms(100), Duration::ZERO, "sync interval"),
        (second, ms(100), Duration::from_micros(999), "sync interval"),
        (second, ms(100), MAX_SYNC_INTERVAL + ms(1), "sync interval"),
        (second, ms(100), Duration::MAX, "sync interval"),
    ] {
        let options = LaxSlidingWindowOptions::builder(fresh_key(), client.clone())
            .window(window)
            .bucket(bucket)
            .sync_interval(sync)
            .build();
        is_invalid_option(options.validate(), words);
        is_invalid_option(LaxSlidingWindowLimiter::new(options), words);
    }
    let limiter = lax(fresh_key(), client, second, ms(20));
    let k = key("k");
    is_invalid_option(bounded(limiter.check(&k, 0, 1)).await, "limit");
    is_invalid_option(
        bounded(limiter.check(&k, MAX_WINDOW_LIMIT + 1, 1)).await,
        "limit",
    );
    is_invalid_option(bounded(limiter.check(&k, u64::MAX, 1)).await, "limit");
    is_invalid_option(bounded(limiter.check(&k, 5, 0)).await, "cost");
    is_invalid_option(bounded(limiter.check(&k, 5, 6)).await, "cost");
    // Nothing was charged or tracked by the refused calls; the same on a warm key.
    assert_eq!(limiter.tracked_keys(), 0);
    assert!(bounded(limiter.check(&k, 5, 5)).await.unwrap().is_allowed());
    is_invalid_option(bounded(limiter.check(&k, 5, 6)).await, "cost");
    is_invalid_option(bounded(limiter.check(&k, 0, 1)).await, "limit");
}

/// SplitMix64: a small seedable generator, so a seed replays the same schedule.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `low..=high`.
    #[expect(clippy::arithmetic_side_effects, reason = "small test ranges")]
    fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.next() % (high - low + 1)
    }
}

fn seeds() -> Vec<u64> {
    let first = std::env::var("DISTKIT_RATELIMIT_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or_else(|| {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |elapsed| elapsed.as_nanos());
            u64::try_from(nanos & u128::from(u64::MAX)).unwrap_or(0)
        });
    let cases = std::env::var("DISTKIT_RATELIMIT_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(3_u64);
    (0..cases).map(|case| first.wrapping_add(case)).collect()
}

/// How a contending caller ends.
#[derive(Clone, Copy, Debug)]
enum Until {
    /// At its first refusal.
    Refused,
    /// Once the run is this old (refusals go on).
    Elapsed(tokio::time::Instant, Duration),
}

/// A contending caller: calls with random costs (1 to `max_cost`) until `until`; returns
/// `object`, the units admitted and the smallest cost refused (`u64::MAX` when none was).
fn spawn_caller<F, Fut>(
    object: usize,
    mut rng: Rng,
    max_cost: u64,
    until: Until,
    mut call: F,
) -> tokio::task::JoinHandle<(usize, u64, u64)>
where
    F: FnMut(u64) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<Decision, DistkitError>> + Send,
{
    tokio::spawn(async move {
        let (mut admitted, mut refused) = (0_u64, u64::MAX);
        loop {
            let cost = rng.between(1, max_cost);
            match bounded(call(cost)).await {
                Ok(decision) if decision.is_allowed() => admitted = admitted.saturating_add(cost),
                Ok(_) => {
                    refused = refused.min(cost);
                    if matches!(until, Until::Refused) {
                        break;
                    }
                }
                Err(error) => panic_on(&error),
            }
            if let Until::Elapsed(started, run_for) = until
                && started.elapsed() > run_for
            {
                break;
            }
            // Warm lax calls never wait: let the sync tasks and the other callers run.
            tokio::task::yield_now().await;
        }
        (object, admitted, refused)
    })
}

#[expect(clippy::panic, reason = "a test helper fails its test")]
fn panic_on(error: &DistkitError) -> ! {
    panic!("a contending call failed: {error}")
}

/// Lax objects, each on its own client, and a strict limiter on one more client race for
/// one key with random costs until each of their tasks is refused once. The window
/// (10 minutes) outlasts the run, so the documented bound applies as stated: each object
/// (the strict limiter counting as one) admits at most `limit` (a lax view counts all the
/// object's own units), together at most `(objects + 1) × limit`; a refusal of cost `c`
/// means more than `limit - c` units were admitted (a view never counts a unit that was not
/// admitted); and once every object flushed, Redis holds exactly the units admitted (each
/// delivered once).
#[expect(
    clippy::unwrap_used,
    clippy::arithmetic_side_effects,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation,
    reason = "a test helper fails its test; small counts"
)]
async fn lax_contention_within_the_bound(redis: &TestRedis, seed: u64) {
    let mut rng = Rng(seed);
    let objects = rng.between(2, 4) as usize;
    let tasks_per_object = rng.between(1, 3) as usize;
    let limit = rng.between(10, 300);
    let sync_interval = Duration::from_millis([1, 5, 20][rng.between(0, 2) as usize]);
    let prefix = fresh_key();
    let k = key("shared");
    let mut limiters = Vec::new();
    for _ in 0..objects {
        limiters.push(lax(
            prefix.clone(),
            client(redis).await,
            Duration::from_secs(600),
            sync_interval,
        ));
    }
    let mut tasks = Vec::new();
    let strict = {
        let mut options = SlidingWindowOptions::new(prefix.clone(), client(redis).await);
        options.window = Duration::from_secs(600);
        options.bucket = Duration::from_millis(50);
        Arc::new(SlidingWindowLimiter::new(options).unwrap())
    };
    {
        let (strict, k) = (Arc::clone(&strict), k.clone());
        tasks.push(spawn_caller(
            objects,
            Rng(rng.next()),
            3.min(limit),
            Until::Refused,
            move |cost| {
                let (strict, k) = (Arc::clone(&strict), k.clone());
                async move { strict.check(&k, limit, cost).await }
            },
        ));
    }
    for (object, limiter) in limiters.iter().enumerate() {
        for _ in 0..tasks_per_object {
            let (limiter, k) = (Arc::clone(limiter), k.clone());
            tasks.push(spawn_caller(
                object,
                Rng(rng.next()),
                3.min(limit),
                Until::Refused,
                move |cost| {
                    let (limiter, k) = (Arc::clone(&limiter), k.clone());
                    async move { limiter.check(&k, limit, cost).await }
                },
            ));
        }
    }
    // The strict limiter last.
    let mut per_object = vec![0_u64; objects + 1];
    let mut smallest_refused = u64::MAX;
    for task in tasks {
        let (object, admitted, refused) = bounded(task).await.unwrap();
        per_object[object] += admitted;
        smallest_refused = smallest_refused.min(refused);
    }
    for limiter in &limiters {
        bounded(limiter.flush()).await.unwrap();
    }
    let admitted: u64 = per_object.iter().sum();
    let context = format!(
        "seed {seed}: {objects} lax objects × {tasks_per_object} tasks and a strict limiter, \
         limit {limit}, sync every {sync_interval:?}, admitted per object (strict last) \
         {per_object:?}; replay: \
         DISTKIT_RATELIMIT_SEED={seed} DISTKIT_RATELIMIT_CASES=1 cargo test -p distkit-tests \
         --all-features --test ratelimit_native lax_limiters_on_separate_clients"
    );
    for &own in &per_object {
        assert!(
            own <= limit,
            "an object admitted more than the limit: {context}"
        );
    }
    assert!(
        admitted <= (objects as u64 + 1) * limit,
        "above the documented bound: {context}"
    );
    assert!(
        admitted + smallest_refused > limit,
        "a refusal of {smallest_refused} with quota free: {context}"
    );
    assert_eq!(
        window_total(redis, &prefix, &k),
        admitted,
        "Redis does not hold exactly the admitted units: {context}"
    );
    println!(
        "seed {seed}: limit {limit}, {objects} lax objects and a strict one, sync \
         {sync_interval:?}: admitted {admitted} ({per_object:?})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lax_limiters_on_separate_clients_stay_within_the_bound_and_deliver_every_unit_once() {
    let redis = TestRedis::start();
    for seed in seeds() {
        lax_contention_within_the_bound(&redis, seed).await;
    }
}

/// Asserts that the `parts` of the limiter key `k` and one delivery record (`record:*`) are
/// on the master `node`.
fn assert_lax_state_on_node(
    cluster: &TestRedis,
    node: u16,
    prefix: &DistkitRedisKey,
    k: &DistkitRedisKey,
    parts: &[&str],
    record: &str,
) {
    for part in parts {
        let name = format!("distkit:rl:{prefix}:{{{k}}}:{part}");
        assert_eq!(
            cluster.node_cli(node, &["EXISTS", &name]),
            "1",
            "{name} not on node {node}"
        );
    }
    let records = cluster.node_cli(
        node,
        &["KEYS", &format!("distkit:rl:{prefix}:{{{k}}}:{record}:*")],
    );
    assert_eq!(
        records.lines().count(),
        1,
        "records on node {node}: {records:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lax_limiter_works_on_every_master_of_a_cluster_with_each_keys_state_on_its_node() {
    let cluster = TestRedis::start_cluster();
    let prefix = fresh_key();
    let limiter = lax(
        prefix.clone(),
        client(&cluster).await,
        Duration::from_secs(60),
        MAX_SYNC_INTERVAL,
    );
    for (node, k) in key_per_master(&cluster, &prefix) {
        assert_eq!(
            allowed(bounded(limiter.check(&k, 5, 2)).await.unwrap()),
            Some(3)
        );
        assert_eq!(
            allowed(bounded(limiter.check(&k, 5, 3)).await.unwrap()),
            Some(0)
        );
        assert!(!bounded(limiter.check(&k, 5, 1)).await.unwrap().is_allowed());
        bounded(limiter.flush()).await.unwrap();
        assert_eq!(window_total(&cluster, &prefix, &k), 5);
        assert_lax_state_on_node(&cluster, node, &prefix, &k, &["sw", "sw:total"], "sw:sync");
    }
}

/// A proxy in front of `redis` and a client through it whose commands time out after
/// 300 ms (so a held reply fails its call).
#[expect(clippy::unwrap_used, reason = "a test helper fails its test")]
async fn proxied_client(redis: &TestRedis) -> (distkit_test_support::Proxy, Client) {
    let proxy = distkit_test_support::Proxy::start(redis.port());
    let client = bounded(
        distkit::ConnectOptions::new(proxy.url())
            .command_timeout(Duration::from_millis(300))
            .connect(),
    )
    .await
    .unwrap();
    (proxy, client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_whose_reply_was_lost_is_resent_and_counted_once() {
    use distkit_test_support::Direction;
    let redis = TestRedis::start_standalone();
    let (proxy, client) = proxied_client(&redis).await;
    let prefix = fresh_key();
    let k = key("k");
    let limiter = lax(
        prefix.clone(),
        client,
        Duration::from_secs(60),
        MAX_SYNC_INTERVAL,
    );
    assert!(
        bounded(limiter.check(&k, 1_000, 1))
            .await
            .unwrap()
            .is_allowed()
    );
    // A first sync (a read-back) caches the script on the server.
    bounded(limiter.flush()).await.unwrap();
    for _ in 0..10 {
        assert!(
            bounded(limiter.check(&k, 1_000, 2))
                .await
                .unwrap()
                .is_allowed()
        );
    }
    // The delivery reaches Redis, its reply does not: the flush fails.
    proxy.hold(Direction::Downstream, true);
    assert!(bounded(limiter.flush()).await.is_err());
    assert_eq!(
        window_total(&redis, &prefix, &k),
        21,
        "the delivery was applied"
    );
    proxy.cut();
    proxy.heal();
    // Units admitted meanwhile wait behind the unconfirmed delivery.
    for _ in 0..3 {
        assert!(
            bounded(limiter.check(&k, 1_000, 1))
                .await
                .unwrap()
                .is_allowed()
        );
    }
    eventually("the resent delivery is confirmed", || async {
        bounded(limiter.flush()).await.is_ok()
    })
    .await;
    bounded(limiter.flush()).await.unwrap();
    assert_eq!(
        window_total(&redis, &prefix, &k),
        24,
        "the resent delivery counted twice, or a unit was lost"
    );
    // The view is the shared count: 24, not more.
    assert!(
        !bounded(limiter.check(&k, 24, 1))
            .await
            .unwrap()
            .is_allowed()
    );
    assert_eq!(
        allowed(bounded(limiter.check(&k, 25, 1)).await.unwrap()),
        Some(0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_waiting_for_a_cold_key_finish_when_the_key_is_reset_meanwhile() {
    use distkit_test_support::{Direction, Proxy};
    let redis = TestRedis::start_standalone();
    let proxy = Proxy::start(redis.port());
    let client = bounded(distkit::connect(&proxy.url())).await.unwrap();
    let prefix = fresh_key();
    let limiter = lax(
        prefix.clone(),
        client,
        Duration::from_secs(60),
        MAX_SYNC_INTERVAL,
    );
    let k = key("k");
    // Every command takes 200 ms to reach Redis: the warming call is slow.
    proxy.delay(Direction::Upstream, Duration::from_millis(200));
    let calls: Vec<_> = (0..4)
        .map(|_| {
            let (limiter, k) = (Arc::clone(&limiter), k.clone());
            tokio::spawn(async move { limiter.check(&k, 10, 1).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    bounded(limiter.reset(&k)).await.unwrap();
    let mut admitted = 0;
    for call in calls {
        if bounded(call).await.unwrap().unwrap().is_allowed() {
            admitted += 1;
        }
    }
    assert_eq!(admitted, 4);
    proxy.heal();
    bounded(limiter.flush()).await.unwrap();
    let total = window_total(&redis, &prefix, &k);
    // The first warming call may have run before or after the reset's DEL.
    assert!((3..=4).contains(&total), "total {total}");
}

#[expect(clippy::unwrap_used, reason = "a test helper fails its test")]
fn lax_gcra(
    prefix: DistkitRedisKey,
    client: Client,
    sync_interval: Duration,
) -> Arc<LaxGcraLimiter> {
    let options = LaxGcraOptions::builder(prefix, client)
        .sync_interval(sync_interval)
        .build();
    LaxGcraLimiter::new(options).unwrap()
}

/// The server clock, in microseconds.
#[expect(
    clippy::unwrap_used,
    clippy::arithmetic_side_effects,
    reason = "a test helper fails its test"
)]
fn server_time_us(redis: &TestRedis) -> u128 {
    let time = redis.cli(&["TIME"]);
    let mut parts = time
        .lines()
        .map(|part| part.trim().parse::<u128>().unwrap());
    parts.next().unwrap() * 1_000_000 + parts.next().unwrap()
}

/// The TAT Redis holds for a GCRA key, in `1/limit` µs of the given `limit` (None when the
/// key is idle).
#[expect(
    clippy::unwrap_used,
    clippy::arithmetic_side_effects,
    clippy::panic,
    reason = "a test helper fails its test"
)]
fn gcra_tat_scaled(
    redis: &TestRedis,
    prefix: &DistkitRedisKey,
    k: &DistkitRedisKey,
    limit: u64,
) -> Option<u128> {
    let text = redis.cli(&["GET", &format!("distkit:rl:{prefix}:{{{k}}}:gcra")]);
    if text.is_empty() {
        return None;
    }
    let parts: Vec<u128> = text.split(' ').map(|part| part.parse().unwrap()).collect();
    let [tat_us, frac, stored_limit] = parts[..] else {
        panic!("not a gcra state: {text:?}");
    };
    assert_eq!(
        stored_limit,
        u128::from(limit),
        "the state is counted in another limit: {text:?}"
    );
    Some(tat_us * u128::from(limit) + frac)
}

/// Lax GCRA objects, each on its own client, and a strict GcraLimiter on one more client
/// race for one key with random costs and a random rate, checked against the documented
/// bound with exact integers: over the run (`elapsed` of server time, measured around it),
/// each object admits at most `burst + limit × elapsed / period`, together at most
/// `(objects + 1)` times that; a refusal of cost `c` means more than `burst - c` units were
/// admitted. Either the rate refills slowly (1 hour period, emission interval >= 12 s) and
/// every task calls until refused once — then, after every object flushed, the TAT Redis
/// holds is exactly the first admission's time plus `admitted × T` (the time known to lie
/// in the run, and one unit more or less moves it by 12 s or more) — or it refills fast
/// (a 1 s period) and the tasks call for 300 ms, refused many times.
#[expect(
    clippy::unwrap_used,
    clippy::arithmetic_side_effects,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation,
    clippy::panic,
    reason = "a test helper fails its test; small counts"
)]
async fn lax_gcra_contention_within_the_bound(redis: &TestRedis, seed: u64) {
    let mut rng = Rng(seed);
    let objects = rng.between(2, 4) as usize;
    let tasks_per_object = rng.between(1, 3) as usize;
    let slow = rng.between(0, 1) == 0;
    let (limit, period) = if slow {
        (rng.between(10, 300), Duration::from_secs(3_600))
    } else {
        (rng.between(20, 400), Duration::from_secs(1))
    };
    let burst = rng.between(5, 200);
    let rate = GcraRate::new(limit, period, burst).unwrap();
    let run_for = Duration::from_millis(300);
    let sync_interval = Duration::from_millis([1, 5, 20][rng.between(0, 2) as usize]);
    let prefix = fresh_key();
    let k = key("shared");
    let mut limiters = Vec::new();
    for _ in 0..objects {
        limiters.push(lax_gcra(prefix.clone(), client(redis).await, sync_interval));
    }
    let strict = Arc::new(GcraLimiter::new(GcraOptions::new(
        prefix.clone(),
        client(redis).await,
    )));
    let start_us = server_time_us(redis);
    let started = tokio::time::Instant::now();
    let until = if slow {
        Until::Refused
    } else {
        Until::Elapsed(started, run_for)
    };
    let mut tasks = Vec::new();
    {
        let (strict, k) = (Arc::clone(&strict), k.clone());
        tasks.push(spawn_caller(
            objects,
            Rng(rng.next()),
            3.min(burst),
            until,
            move |cost| {
                let (strict, k) = (Arc::clone(&strict), k.clone());
                async move { strict.check(&k, &rate, cost).await }
            },
        ));
    }
    for (object, limiter) in limiters.iter().enumerate() {
        for _ in 0..tasks_per_object {
            let (limiter, k) = (Arc::clone(limiter), k.clone());
            tasks.push(spawn_caller(
                object,
                Rng(rng.next()),
                3.min(burst),
                until,
                move |cost| {
                    let (limiter, k) = (Arc::clone(&limiter), k.clone());
                    async move { limiter.check(&k, &rate, cost).await }
                },
            ));
        }
    }
    let mut per_object = vec![0_u64; objects + 1];
    let mut smallest_refused = u64::MAX;
    for task in tasks {
        let (object, admitted, refused) = bounded(task).await.unwrap();
        per_object[object] += admitted;
        smallest_refused = smallest_refused.min(refused);
    }
    let end_us = server_time_us(redis);
    for limiter in &limiters {
        bounded(limiter.flush()).await.unwrap();
    }
    let admitted: u64 = per_object.iter().sum();
    let elapsed_us = end_us - start_us;
    let period_us = period.as_micros();
    // burst + limit × elapsed / period, times period (exact).
    let allowed_scaled = u128::from(burst) * period_us + u128::from(limit) * elapsed_us;
    let context = format!(
        "seed {seed}: {objects} lax objects × {tasks_per_object} tasks and a strict limiter, \
         {limit} per {period:?}, burst {burst}, sync every {sync_interval:?}, {elapsed_us} µs, \
         admitted per object (strict last) {per_object:?}; replay: \
         DISTKIT_RATELIMIT_SEED={seed} DISTKIT_RATELIMIT_CASES=1 cargo test -p distkit-tests \
         --all-features --test ratelimit_native lax_gcra_limiters_on_separate_clients"
    );
    for &own in &per_object {
        assert!(
            u128::from(own) * period_us <= allowed_scaled,
            "an object admitted more than burst + rate × elapsed: {context}"
        );
    }
    assert!(
        u128::from(admitted) * period_us <= (objects as u128 + 1) * allowed_scaled,
        "above the documented bound: {context}"
    );
    assert_ne!(smallest_refused, u64::MAX, "nothing was refused: {context}");
    assert!(
        admitted + smallest_refused > burst,
        "a refusal of {smallest_refused} with the burst free: {context}"
    );
    if slow {
        // TAT = first admission + admitted × T, in 1/limit µs: the first admission lies in
        // the run, and T >= 12 s is far longer than the run.
        let tat = gcra_tat_scaled(redis, &prefix, &k, limit).unwrap();
        let charged = u128::from(admitted) * period_us;
        assert!(
            tat >= charged,
            "Redis holds less than the admitted units: {context}"
        );
        let first = (tat - charged) / u128::from(limit);
        assert!(
            first >= start_us && first <= end_us,
            "Redis does not hold exactly the admitted units (the first admission would be at \
             {first} µs, the run was {start_us}..={end_us}): {context}"
        );
        // A strict call sees the same state: what it leaves, or when it admits again, is
        // exact to the unit (T >= 12 s, the run took less).
        let decision = bounded(strict.check(&k, &rate, 1)).await.unwrap();
        let now_us = server_time_us(redis);
        if admitted < burst {
            assert_eq!(allowed(decision), Some(burst - admitted - 1), "{context}");
        } else {
            let Decision::Rejected { retry_after, .. } = decision else {
                panic!("a strict call admitted above the burst: {context}");
            };
            let due = (u128::from(admitted + 1 - burst) * period_us).div_ceil(u128::from(limit));
            let retry = retry_after.as_micros();
            assert!(
                retry <= due && retry + (now_us - start_us) + 1 >= due,
                "retry after {retry} µs, due {due} µs: Redis does not hold exactly the admitted \
                 units: {context}"
            );
        }
    }
    println!(
        "seed {seed}: {limit} per {period:?}, burst {burst}, {objects} lax objects and a strict \
         one, sync {sync_interval:?}: admitted {admitted} ({per_object:?})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lax_gcra_limiters_on_separate_clients_stay_within_the_bound_and_deliver_every_unit_once() {
    let redis = TestRedis::start();
    for seed in seeds() {
        lax_gcra_contention_within_the_bound(&redis, seed).await;
    }
    // Both refill speeds, whatever the seeds.
    for seed in [1, 2] {
        lax_gcra_contention_within_the_bound(&redis, seed).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lax_gcra_delivery_whose_reply_was_lost_is_resent_and_counted_once() {
    use distkit_test_support::Direction;
    let redis = TestRedis::start_standalone();
    let (proxy, client) = proxied_client(&redis).await;
    let prefix = fresh_key();
    let k = key("k");
    let limiter = lax_gcra(prefix.clone(), client, MAX_SYNC_INTERVAL);
    // 1 000 per 10 hours (T = 36 s, far longer than the test), a burst of 1 000.
    let period = Duration::from_secs(36_000);
    let rate = GcraRate::new(1_000, period, 1_000).unwrap();
    // How many units of T the state's TAT lies ahead of the server clock, rounded up.
    let units_held = || {
        let tat = gcra_tat_scaled(&redis, &prefix, &k, 1_000).unwrap_or(0);
        let now = server_time_us(&redis) * 1_000;
        tat.saturating_sub(now).div_ceil(36_000_000_000)
    };
    assert!(
        bounded(limiter.check(&k, &rate, 1))
            .await
            .unwrap()
            .is_allowed()
    );
    // A first sync (a read-back) caches the script on the server.
    bounded(limiter.flush()).await.unwrap();
    for _ in 0..10 {
        assert!(
            bounded(limiter.check(&k, &rate, 2))
                .await
                .unwrap()
                .is_allowed()
        );
    }
    // The delivery reaches Redis, its reply does not: the flush fails.
    proxy.hold(Direction::Downstream, true);
    assert!(bounded(limiter.flush()).await.is_err());
    assert_eq!(units_held(), 21, "the delivery was applied");
    proxy.cut();
    proxy.heal();
    // Units admitted meanwhile wait behind the unconfirmed delivery.
    for _ in 0..3 {
        assert!(
            bounded(limiter.check(&k, &rate, 1))
                .await
                .unwrap()
                .is_allowed()
        );
    }
    eventually("the resent delivery is confirmed", || async {
        bounded(limiter.flush()).await.is_ok()
    })
    .await;
    bounded(limiter.flush()).await.unwrap();
    assert_eq!(
        units_held(),
        24,
        "the resent delivery counted twice, or a unit was lost"
    );
    // The view is the shared state: 24 units, not more.
    let burst = |burst| GcraRate::new(1_000, period, burst).unwrap();
    assert!(
        !bounded(limiter.check(&k, &burst(24), 1))
            .await
            .unwrap()
            .is_allowed()
    );
    assert_eq!(
        allowed(bounded(limiter.check(&k, &burst(25), 1)).await.unwrap()),
        Some(0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_lax_gcra_options_and_costs_are_clear_errors_never_panics() {
    let redis = TestRedis::start();
    let client = client(&redis).await;
    for sync_interval in [
        Duration::ZERO,
        Duration::from_micros(999),
        MAX_SYNC_INTERVAL + Duration::from_millis(1),
        Duration::MAX,
    ] {
        let options = LaxGcraOptions::builder(fresh_key(), client.clone())
            .sync_interval(sync_interval)
            .build();
        is_invalid_option(options.validate(), "sync interval");
        is_invalid_option(LaxGcraLimiter::new(options), "sync interval");
    }
    let limiter = lax_gcra(fresh_key(), client, Duration::from_millis(20));
    let k = key("k");
    let rate = GcraRate::per_second(10, 5).unwrap();
    is_invalid_option(bounded(limiter.check(&k, &rate, 0)).await, "cost");
    is_invalid_option(bounded(limiter.check(&k, &rate, 6)).await, "cost");
    is_invalid_option(bounded(limiter.check(&k, &rate, u64::MAX)).await, "cost");
    // Nothing was charged or tracked by the refused calls; the same on a warm key, and at
    // the extremes of the rate.
    assert_eq!(limiter.tracked_keys(), 0);
    assert!(
        bounded(limiter.check(&k, &rate, 5))
            .await
            .unwrap()
            .is_allowed()
    );
    is_invalid_option(bounded(limiter.check(&k, &rate, 6)).await, "cost");
    // The fastest rate (one unit per µs) with the largest limit and burst.
    let huge = GcraRate::new(
        MAX_GCRA_LIMIT,
        Duration::from_micros(MAX_GCRA_LIMIT),
        MAX_GCRA_LIMIT,
    )
    .unwrap();
    let other = key("other");
    assert!(
        bounded(limiter.check(&other, &huge, MAX_GCRA_LIMIT))
            .await
            .unwrap()
            .is_allowed()
    );
    assert!(bounded(limiter.check(&other, &huge, 1)).await.is_ok());
    bounded(limiter.flush()).await.unwrap();
    assert!(bounded(limiter.check(&other, &huge, 1)).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lax_gcra_limiter_works_on_every_master_of_a_cluster_with_each_keys_state_on_its_node()
{
    let cluster = TestRedis::start_cluster();
    let prefix = fresh_key();
    let limiter = lax_gcra(prefix.clone(), client(&cluster).await, MAX_SYNC_INTERVAL);
    // One per hour, 5 at once.
    let rate = GcraRate::new(1, Duration::from_secs(3_600), 5).unwrap();
    for (node, k) in key_per_master(&cluster, &prefix) {
        assert_eq!(
            allowed(bounded(limiter.check(&k, &rate, 2)).await.unwrap()),
            Some(3)
        );
        assert_eq!(
            allowed(bounded(limiter.check(&k, &rate, 3)).await.unwrap()),
            Some(0)
        );
        assert!(
            !bounded(limiter.check(&k, &rate, 1))
                .await
                .unwrap()
                .is_allowed()
        );
        bounded(limiter.flush()).await.unwrap();
        assert_lax_state_on_node(&cluster, node, &prefix, &k, &["gcra"], "gcra:sync");
        // The strict limiter of the prefix sees the 5 units: the key is full.
        let strict = GcraLimiter::new(GcraOptions::new(prefix.clone(), client(&cluster).await));
        assert!(
            !bounded(strict.check(&k, &rate, 1))
                .await
                .unwrap()
                .is_allowed()
        );
    }
}
