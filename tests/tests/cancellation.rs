//! What the `# Cancel safety` sections promise, checked by dropping futures at their awaits
//! (with `tokio::time::timeout`): a limiter `wait` dropped while it sleeps charges nothing,
//! and a lax flush dropped with its batch in flight is applied exactly once by the next one.

mod common;

use std::time::Duration;

use common::{bounded, client, fresh_key, key};
use distkit::counter::{CounterOptions, LaxCounter};
use distkit::fred::interfaces::HashesInterface;
use distkit::ratelimit::{
    GcraLimiter, GcraOptions, GcraRate, LaxGcraLimiter, LaxGcraOptions, SlidingWindowLimiter,
    SlidingWindowOptions,
};
use distkit_test_support::{Direction, Proxy, TestRedis};

/// Every key of the limiter prefix `prefix` with its value, as `redis-cli` prints them.
fn limiter_state(redis: &TestRedis, prefix: &str) -> Vec<String> {
    let mut keys: Vec<String> = redis
        .cli(&["KEYS", &format!("distkit:rl:{prefix}:*")])
        .lines()
        .map(str::to_owned)
        .collect();
    keys.sort();
    keys.into_iter()
        .map(|key| {
            let kind = redis.cli(&["TYPE", &key]);
            let value = match kind.as_str() {
                "list" => redis.cli(&["LRANGE", &key, "0", "-1"]),
                _ => redis.cli(&["GET", &key]),
            };
            format!("{key} = {value}")
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limiter_wait_dropped_while_it_sleeps_charges_nothing() {
    let redis = TestRedis::start_standalone();
    let client = client(&redis).await;
    let k = key("user-1");
    // One unit per hour: after the first, a wait sleeps for most of an hour.
    let gcra_prefix = fresh_key();
    let gcra = GcraLimiter::new(GcraOptions::new(gcra_prefix.clone(), client.clone()));
    let hourly = GcraRate::new(1, Duration::from_secs(3_600), 1).unwrap();
    assert!(
        bounded(gcra.check(&k, &hourly, 1))
            .await
            .unwrap()
            .is_allowed()
    );
    let window_prefix = fresh_key();
    let window = SlidingWindowLimiter::new(
        SlidingWindowOptions::builder(window_prefix.clone(), client.clone())
            .window(Duration::from_secs(3_600))
            .build(),
    )
    .unwrap();
    assert!(bounded(window.check(&k, 1, 1)).await.unwrap().is_allowed());
    let before = (
        limiter_state(&redis, gcra_prefix.as_str()),
        limiter_state(&redis, window_prefix.as_str()),
    );
    assert!(!before.0.is_empty() && !before.1.is_empty(), "{before:?}");
    for _ in 0..3 {
        let max_wait = Duration::from_secs(7_200);
        let dropped = tokio::time::timeout(
            Duration::from_millis(100),
            gcra.wait(&k, &hourly, 1, max_wait),
        )
        .await;
        assert!(dropped.is_err(), "the gcra wait returned: {dropped:?}");
        let dropped =
            tokio::time::timeout(Duration::from_millis(100), window.wait(&k, 1, 1, max_wait)).await;
        assert!(dropped.is_err(), "the window wait returned: {dropped:?}");
    }
    // Nothing was charged: the state in Redis is what the first check left.
    let after = (
        limiter_state(&redis, gcra_prefix.as_str()),
        limiter_state(&redis, window_prefix.as_str()),
    );
    assert_eq!(before, after);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lax_flush_dropped_with_its_batch_in_flight_is_applied_exactly_once() {
    let redis = TestRedis::start_standalone();
    let proxy = Proxy::start(redis.port());
    let through_proxy = bounded(distkit::connect(&proxy.url())).await.unwrap();
    let prefix = fresh_key();
    let counter = LaxCounter::new(
        CounterOptions::builder(prefix.clone(), through_proxy)
            .shards(1)
            // Only the explicit flushes below deliver.
            .allowed_lag(Duration::from_secs(3_600))
            .build(),
    );
    let direct = client(&redis).await;
    let values = distkit_core::key_schema::counter_values(&prefix);
    let stored = |k: &'static str| {
        let direct = direct.clone();
        let values = values.clone();
        async move {
            let value: Option<i64> = bounded(direct.hget(values, k)).await.unwrap();
            value.unwrap_or(0)
        }
    };
    let k = key("k");
    // One flush first, so that the server has the script cached: a dropped `EVALSHA` must
    // not wait for a `NOSCRIPT` fallback that never comes.
    bounded(counter.inc(&k, 1)).await.unwrap();
    bounded(counter.flush()).await.unwrap();
    let mut accepted = 1_i64;
    for round in 1..=4_i64 {
        bounded(counter.inc(&k, round)).await.unwrap();
        accepted += round;
        // The batch reaches Redis, its reply does not: the flush is dropped in flight.
        proxy.hold(Direction::Downstream, true);
        let dropped = tokio::time::timeout(Duration::from_millis(150), counter.flush()).await;
        assert!(dropped.is_err(), "the flush returned: {dropped:?}");
        proxy.hold(Direction::Downstream, false);
        // The dropped flush was applied (its reply is what was lost)...
        assert_eq!(stored("k").await, accepted, "round {round}: dropped flush");
        // ...and the next flush sends the same batch again: Redis applies it only once.
        bounded(counter.flush()).await.unwrap();
        assert_eq!(stored("k").await, accepted, "round {round}");
    }
    bounded(counter.close()).await.unwrap();
    assert_eq!(stored("k").await, accepted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lax_limiter_flush_dropped_with_its_delivery_in_flight_charges_exactly_once() {
    let redis = TestRedis::start_standalone();
    let proxy = Proxy::start(redis.port());
    let through_proxy = bounded(distkit::connect(&proxy.url())).await.unwrap();
    let prefix = fresh_key();
    let lax = LaxGcraLimiter::new(
        LaxGcraOptions::builder(prefix.clone(), through_proxy)
            // Only the explicit flushes below deliver.
            .sync_interval(Duration::from_secs(3_600))
            .build(),
    )
    .unwrap();
    let strict = GcraLimiter::new(GcraOptions::new(prefix, client(&redis).await));
    let rate = GcraRate::new(1, Duration::from_secs(3_600), 100).unwrap();
    let k = key("user-1");
    let control = key("control");
    let charge_control = |units: u64| {
        let (strict, control, rate) = (&strict, &control, &rate);
        async move {
            for _ in 0..units {
                assert!(
                    bounded(strict.check(control, rate, 1))
                        .await
                        .unwrap()
                        .is_allowed()
                );
            }
        }
    };
    // Whether `k` reads as `control`, which the strict limiter charged as many units as the
    // lax one admitted (the rate refills one unit an hour: nothing comes back meanwhile).
    let same_as_control = || async {
        let charged = bounded(strict.peek(&k, &rate)).await.unwrap().remaining();
        let model = bounded(strict.peek(&control, &rate))
            .await
            .unwrap()
            .remaining();
        (charged, model)
    };
    // A first sync, so that the server has the sync script cached: a dropped `EVALSHA` must
    // not wait for a `NOSCRIPT` fallback that never comes.
    assert!(bounded(lax.check(&k, &rate, 1)).await.unwrap().is_allowed());
    bounded(lax.flush()).await.unwrap();
    charge_control(1).await;
    for round in 0..3 {
        for _ in 0..4 {
            assert!(bounded(lax.check(&k, &rate, 1)).await.unwrap().is_allowed());
        }
        charge_control(4).await;
        proxy.hold(Direction::Downstream, true);
        let dropped = tokio::time::timeout(Duration::from_millis(150), lax.flush()).await;
        assert!(dropped.is_err(), "the flush returned: {dropped:?}");
        proxy.hold(Direction::Downstream, false);
        // The dropped delivery was charged (its reply is what was lost)...
        let (charged, model) = same_as_control().await;
        assert_eq!(charged, model, "round {round}: dropped flush");
        // ...and the next sync sends it again: Redis charges it only once.
        bounded(lax.flush()).await.unwrap();
        let (charged, model) = same_as_control().await;
        assert_eq!(charged, model, "round {round}");
        assert!(model < 100);
    }
    bounded(lax.close()).await.unwrap();
}
