//! `distkit::ratelimit` on the server clock, the additions of issue 33: the sliding
//! window's bound in every window (strict and lax, real time, seeded schedules), what a
//! decision reports for the IETF headers, `peek` and `wait` on every limiter, the tower layer
//! over HTTP requests, and failing open.
//!
//! `DISTKIT_RATELIMIT_SEED` replays a seed of the randomized tests (default: from the
//! clock); `DISTKIT_RATELIMIT_CASES` (default 3) sets how many seeds each runs.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{bounded, client, fresh_key, key};
use distkit::fred::clients::Client;
use distkit::ratelimit::{
    Decision, GcraLimiter, GcraOptions, GcraRate, LaxGcraLimiter, LaxGcraOptions,
    LaxSlidingWindowLimiter, LaxSlidingWindowOptions, SlidingWindowLimiter, SlidingWindowOptions,
};
use distkit::{DistkitError, DistkitRedisKey};
use distkit_test_support::TestRedis;

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

#[expect(clippy::unwrap_used, reason = "a test helper fails its test")]
fn sliding(
    prefix: &DistkitRedisKey,
    client: Client,
    window_ms: u64,
    bucket_ms: u64,
) -> SlidingWindowLimiter {
    let options = SlidingWindowOptions::builder(prefix.clone(), client)
        .window(Duration::from_millis(window_ms))
        .bucket(Duration::from_millis(bucket_ms))
        .build();
    SlidingWindowLimiter::new(options).unwrap()
}

#[expect(clippy::unwrap_used, reason = "a test helper fails its test")]
fn lax_sliding(
    prefix: &DistkitRedisKey,
    client: Client,
    window_ms: u64,
    bucket_ms: u64,
) -> Arc<LaxSlidingWindowLimiter> {
    let options = LaxSlidingWindowOptions::builder(prefix.clone(), client)
        .window(Duration::from_millis(window_ms))
        .bucket(Duration::from_millis(bucket_ms))
        .sync_interval(Duration::from_millis(5))
        .build();
    LaxSlidingWindowLimiter::new(options).unwrap()
}

/// Sleeps until `at`.
async fn sleep_until(at: Instant) {
    tokio::time::sleep(at.saturating_duration_since(Instant::now())).await;
}

/// Issue 33's case on the real clock (`window = bucket = 1 s`, limit 10): one call at 0 ms,
/// nine at 800 ms, ten at 1100 ms. The nine of 800 ms count until 1800 ms, so none of the
/// last ten is admitted, by a strict limiter or by one lax object (which sees its own units
/// through its syncs). Before the fix both admitted the last ten: 19 units within one
/// second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_window_of_one_second_admits_19_units_of_a_limit_of_10_strict_or_lax() {
    let redis = TestRedis::start();
    let client = client(&redis).await;
    let strict = sliding(&fresh_key(), client.clone(), 1_000, 1_000);
    let lax = lax_sliding(&fresh_key(), client, 1_000, 1_000);
    let k = key("k");
    let start = Instant::now();
    assert!(bounded(strict.check(&k, 10, 1)).await.unwrap().is_allowed());
    assert!(bounded(lax.check(&k, 10, 1)).await.unwrap().is_allowed());
    sleep_until(start + Duration::from_millis(800)).await;
    for _ in 0..9 {
        assert!(bounded(strict.check(&k, 10, 1)).await.unwrap().is_allowed());
        assert!(bounded(lax.check(&k, 10, 1)).await.unwrap().is_allowed());
    }
    sleep_until(start + Duration::from_millis(1_100)).await;
    let (mut strict_admitted, mut lax_admitted) = (0, 0);
    for _ in 0..10 {
        if bounded(strict.check(&k, 10, 1)).await.unwrap().is_allowed() {
            strict_admitted += 1;
        }
        if bounded(lax.check(&k, 10, 1)).await.unwrap().is_allowed() {
            lax_admitted += 1;
        }
    }
    assert!(
        start.elapsed() < Duration::from_millis(1_700),
        "the machine was too slow for the schedule: {:?}",
        start.elapsed()
    );
    assert_eq!(
        (strict_admitted, lax_admitted),
        (0, 0),
        "calls admitted at 1100 ms while the 10 units of 0 and 800 ms count"
    );
}

/// One admitted call: when it started and ended (local clock), and its cost.
#[derive(Clone, Copy, Debug)]
struct Admitted {
    before: Instant,
    after: Instant,
    cost: u64,
}

/// The most units admitted among calls that certainly fall within one window, whatever the
/// exact moment of each decision within its call: from call `i` to call `j`,
/// `after_j - before_i <= window - 1 ms` (the 1 ms covers the ms rounding of the server
/// clock the strict script and the deliveries run on).
#[expect(clippy::indexing_slicing, reason = "i is an index of the slice")]
fn most_within_one_window(admitted: &[Admitted], window: Duration) -> u64 {
    let span = window.saturating_sub(Duration::from_millis(1));
    let mut most = 0;
    for (i, first) in admitted.iter().enumerate() {
        let units: u64 = admitted[i..]
            .iter()
            .take_while(|call| call.after.duration_since(first.before) <= span)
            .map(|call| call.cost)
            .sum();
        most = most.max(units);
    }
    most
}

/// Calls `call` on a seeded random schedule (bursts of calls, pauses from 0 to a window and
/// a half, random costs) for `run_for`; returns the calls admitted.
#[expect(
    clippy::unwrap_used,
    clippy::arithmetic_side_effects,
    reason = "a test helper fails its test; small test durations"
)]
async fn run_schedule<F, Fut>(
    rng: &mut Rng,
    window_ms: u64,
    limit: u64,
    run_for: Duration,
    mut call: F,
) -> Vec<Admitted>
where
    F: FnMut(u64) -> Fut,
    Fut: std::future::Future<Output = Result<Decision, DistkitError>>,
{
    let started = Instant::now();
    let mut admitted = Vec::new();
    while started.elapsed() < run_for {
        for _ in 0..rng.between(1, limit.min(8)) {
            let cost = rng.between(1, limit.min(4));
            let before = Instant::now();
            let decision = bounded(call(cost)).await.unwrap();
            if decision.is_allowed() {
                admitted.push(Admitted {
                    before,
                    after: Instant::now(),
                    cost,
                });
            }
        }
        let pause = match rng.between(0, 3) {
            0 => 0,
            1 => rng.between(0, window_ms / 4),
            2 => rng.between(window_ms / 2, window_ms),
            _ => rng.between(0, window_ms + window_ms / 2),
        };
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
    admitted
}

/// The bound in real time, on seeded schedules with `bucket <= window` (often
/// `bucket == window`): a strict limiter, and one lax object alone on its key, never admit
/// more than the limit within one window. Each seed runs both for about a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn within_every_window_strict_and_lax_sliding_windows_admit_at_most_the_limit() {
    let redis = TestRedis::start();
    let client = client(&redis).await;
    for seed in seeds() {
        eprintln!("seed {seed}");
        let mut rng = Rng(seed);
        let window_ms = rng.between(100, 200);
        let bucket_ms = match rng.between(0, 2) {
            0 => window_ms,
            1 => rng.between(1, window_ms),
            _ => rng.between(window_ms / 2, window_ms),
        };
        let limit = rng.between(2, 12);
        let window = Duration::from_millis(window_ms);
        let k = key("k");
        let strict = sliding(&fresh_key(), client.clone(), window_ms, bucket_ms);
        let lax = lax_sliding(&fresh_key(), client.clone(), window_ms, bucket_ms);
        let mut strict_rng = Rng(rng.next());
        let mut lax_rng = Rng(rng.next());
        let run_for = Duration::from_millis(900);
        let (strict_admitted, lax_admitted) = tokio::join!(
            run_schedule(&mut strict_rng, window_ms, limit, run_for, |cost| strict
                .check(&k, limit, cost)),
            run_schedule(&mut lax_rng, window_ms, limit, run_for, |cost| lax
                .check(&k, limit, cost)),
        );
        for (which, admitted) in [("strict", &strict_admitted), ("lax", &lax_admitted)] {
            let most = most_within_one_window(admitted, window);
            assert!(
                most <= limit,
                "seed {seed}: the {which} limiter admitted {most} units within {window_ms} ms \
                 (bucket {bucket_ms} ms, limit {limit}); replay: DISTKIT_RATELIMIT_SEED={seed} \
                 DISTKIT_RATELIMIT_CASES=1 cargo test -p distkit-tests --all-features --test \
                 ratelimit_api within_every_window"
            );
            assert!(
                admitted.len() > 2,
                "seed {seed}: {which} admitted {} calls",
                admitted.len()
            );
        }
    }
}

/// `limit()`, `remaining()`, `reset_after()` and `retry_after()`: what the IETF headers
/// need, from every limiter (strict exact, lax from its view).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decisions_report_the_limit_the_quota_left_when_it_is_full_again_and_when_to_retry() {
    let redis = TestRedis::start();
    let client = client(&redis).await;
    let k = key("k");
    // GCRA, 10 per second up to 5 at once: 3 units put the TAT 300 ms ahead.
    let rate = GcraRate::per_second(10, 5).unwrap();
    let gcra = GcraLimiter::new(GcraOptions::new(fresh_key(), client.clone()));
    let decision = bounded(gcra.check(&k, &rate, 3)).await.unwrap();
    assert!(decision.is_allowed(), "{decision:?}");
    assert_eq!(
        (
            decision.limit(),
            decision.remaining(),
            decision.retry_after()
        ),
        (5, 2, None)
    );
    assert_eq!(decision.reset_after(), Duration::from_millis(300));
    let decision = bounded(gcra.check(&k, &rate, 3)).await.unwrap();
    assert_eq!((decision.limit(), decision.remaining()), (5, 2));
    let retry = decision.retry_after().unwrap();
    assert!(
        retry > Duration::ZERO && retry <= Duration::from_millis(100),
        "{decision:?}"
    );
    assert!(decision.reset_after() <= Duration::from_millis(300) && decision.reset_after() > retry);
    // The lax GCRA: the same from its strict first call, then from its view.
    let lax_gcra = LaxGcraLimiter::new(LaxGcraOptions::new(fresh_key(), client.clone())).unwrap();
    let decision = bounded(lax_gcra.check(&k, &rate, 3)).await.unwrap();
    assert_eq!((decision.limit(), decision.remaining()), (5, 2));
    assert_eq!(decision.reset_after(), Duration::from_millis(300));
    let decision = bounded(lax_gcra.check(&k, &rate, 1)).await.unwrap();
    assert!(decision.is_allowed());
    assert_eq!(decision.limit(), 5);
    assert!(
        decision.reset_after() > Duration::from_millis(200)
            && decision.reset_after() <= Duration::from_millis(400),
        "{decision:?}"
    );
    // The sliding window, 60 s: the units of now count for 60 s and 1 ms.
    let window = sliding(&fresh_key(), client.clone(), 60_000, 100);
    let decision = bounded(window.check(&k, 5, 3)).await.unwrap();
    assert_eq!(
        (
            decision.limit(),
            decision.remaining(),
            decision.retry_after()
        ),
        (5, 2, None)
    );
    assert_eq!(decision.reset_after(), Duration::from_millis(60_001));
    let decision = bounded(window.check(&k, 5, 3)).await.unwrap();
    assert_eq!((decision.limit(), decision.remaining()), (5, 2));
    let retry = decision.retry_after().unwrap();
    assert!(retry > Duration::from_secs(59) && retry <= Duration::from_millis(60_001));
    assert!(
        decision.reset_after() >= retry && decision.reset_after() <= Duration::from_millis(60_001)
    );
    // The lax sliding window: from its strict first call, then from its view (its own
    // units count for a window from their delivery, up to a sync interval later).
    let lax_window = lax_sliding(&fresh_key(), client, 60_000, 100);
    let decision = bounded(lax_window.check(&k, 5, 3)).await.unwrap();
    assert_eq!((decision.limit(), decision.remaining()), (5, 2));
    assert_eq!(decision.reset_after(), Duration::from_millis(60_001));
    let decision = bounded(lax_window.check(&k, 5, 3)).await.unwrap();
    assert_eq!((decision.limit(), decision.remaining()), (5, 2));
    assert!(decision.retry_after().is_some());
    assert!(
        decision.reset_after() > Duration::from_secs(59),
        "{decision:?}"
    );
}

/// How many scripts the server ran so far (`EVAL` and `EVALSHA` calls).
#[expect(clippy::unwrap_used, reason = "a test helper fails its test")]
fn scripts_run(redis: &TestRedis) -> u64 {
    redis
        .cli(&["INFO", "commandstats"])
        .lines()
        .filter(|line| line.starts_with("cmdstat_evalsha:") || line.starts_with("cmdstat_eval:"))
        .map(|line| {
            let calls = line.split("calls=").nth(1).unwrap();
            calls.split(',').next().unwrap().parse::<u64>().unwrap()
        })
        .sum()
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

/// Asserts `result` is `RateLimited` with a `retry_after` above `more_than`, and its message.
#[expect(clippy::panic, reason = "a test helper fails its test")]
fn rate_limited(result: Result<Decision, DistkitError>, more_than: Duration) {
    match result {
        Err(error @ DistkitError::RateLimited { .. }) => {
            let text = error.to_string();
            let DistkitError::RateLimited { retry_after } = error else {
                unreachable!()
            };
            assert!(retry_after > more_than, "retry after {retry_after:?}");
            assert_eq!(
                text,
                format!(
                    "rate limited: the call would be admitted in {retry_after:?}, later than \
                     its max_wait allows; nothing was charged"
                )
            );
        }
        other => panic!("expected RateLimited, got {other:?}"),
    }
}

/// A peek answers what a call of cost 1 would get and charges nothing, on every limiter;
/// a lax limiter's peek on a cold key leaves it cold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peek_answers_like_a_call_of_cost_one_and_charges_nothing_on_every_limiter() {
    let redis = TestRedis::start();
    let client = client(&redis).await;
    let k = key("k");
    let hour = Duration::from_secs(3_600);
    let rate = GcraRate::new(1, hour, 3).unwrap();

    let gcra_prefix = fresh_key();
    let gcra = GcraLimiter::new(GcraOptions::new(gcra_prefix.clone(), client.clone()));
    for _ in 0..5 {
        let decision = bounded(gcra.peek(&k, &rate)).await.unwrap();
        assert_eq!((decision.is_allowed(), decision.remaining()), (true, 2));
        assert_eq!(decision.reset_after(), hour);
    }
    assert_eq!(
        bounded(gcra.check(&k, &rate, 3)).await.unwrap().remaining(),
        0
    );
    let decision = bounded(gcra.peek(&k, &rate)).await.unwrap();
    assert!(!decision.is_allowed());
    assert!(decision.retry_after().unwrap() > hour - Duration::from_secs(60));

    let window = sliding(&fresh_key(), client.clone(), 60_000, 100);
    for _ in 0..5 {
        let decision = bounded(window.peek(&k, 3)).await.unwrap();
        assert_eq!((decision.is_allowed(), decision.remaining()), (true, 2));
    }
    assert!(bounded(window.check(&k, 3, 3)).await.unwrap().is_allowed());
    assert!(!bounded(window.peek(&k, 3)).await.unwrap().is_allowed());

    let lax_gcra = LaxGcraLimiter::new(LaxGcraOptions::new(gcra_prefix, client.clone())).unwrap();
    let other = key("other");
    for _ in 0..3 {
        let decision = bounded(lax_gcra.peek(&other, &rate)).await.unwrap();
        assert_eq!((decision.is_allowed(), decision.remaining()), (true, 2));
    }
    assert_eq!(
        lax_gcra.tracked_keys(),
        0,
        "a peek on a cold key leaves it cold"
    );
    assert_eq!(
        bounded(lax_gcra.check(&other, &rate, 2))
            .await
            .unwrap()
            .remaining(),
        1
    );
    // Warm: in memory, on the view.
    for _ in 0..3 {
        let decision = bounded(lax_gcra.peek(&other, &rate)).await.unwrap();
        assert_eq!((decision.is_allowed(), decision.remaining()), (true, 0));
    }
    assert_eq!(
        bounded(lax_gcra.check(&other, &rate, 1))
            .await
            .unwrap()
            .remaining(),
        0
    );
    assert!(
        !bounded(lax_gcra.peek(&other, &rate))
            .await
            .unwrap()
            .is_allowed()
    );
    bounded(lax_gcra.flush()).await.unwrap();
    // Redis holds the 3 units the lax object admitted, no more: a strict call of cost 1 is
    // refused, and the refusal's wait is that of 3 units (about 3 hours), not 4.
    let decision = bounded(gcra.check(&other, &rate, 1)).await.unwrap();
    let retry = decision.retry_after().unwrap();
    assert!(
        retry > hour - Duration::from_secs(60) && retry <= hour,
        "{decision:?}"
    );

    let lax_prefix = fresh_key();
    let lax_window = lax_sliding(&lax_prefix, client, 60_000, 100);
    for _ in 0..3 {
        assert_eq!(
            bounded(lax_window.peek(&k, 3)).await.unwrap().remaining(),
            2
        );
    }
    assert_eq!(lax_window.tracked_keys(), 0);
    assert!(
        bounded(lax_window.check(&k, 3, 2))
            .await
            .unwrap()
            .is_allowed()
    );
    for _ in 0..3 {
        let decision = bounded(lax_window.peek(&k, 3)).await.unwrap();
        assert_eq!((decision.is_allowed(), decision.remaining()), (true, 0));
    }
    bounded(lax_window.flush()).await.unwrap();
    assert_eq!(window_total(&redis, &lax_prefix, &k), 2);
}

/// `wait` on every limiter: after one refusal it sleeps the refusal's `retry_after` and is
/// admitted, charged once; when the wait would exceed `max_wait` it returns `RateLimited` at
/// once and charges nothing. The strict limiters run one script per attempt (no polling).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_sleeps_until_admitted_charges_once_and_gives_up_at_once_charging_nothing() {
    let redis = TestRedis::start();
    let client = client(&redis).await;
    let k = key("k");
    let generous = Duration::from_secs(5);
    let hour = Duration::from_secs(3_600);

    // Strict GCRA: 10 per second, 1 at once: the second call waits about 100 ms.
    let rate = GcraRate::per_second(10, 1).unwrap();
    let gcra = GcraLimiter::new(GcraOptions::new(fresh_key(), client.clone()));
    assert!(
        bounded(gcra.check(&k, &rate, 1))
            .await
            .unwrap()
            .is_allowed()
    );
    let (scripts, started) = (scripts_run(&redis), Instant::now());
    let decision = bounded(gcra.wait(&k, &rate, 1, generous)).await.unwrap();
    let waited = started.elapsed();
    assert!(decision.is_allowed());
    assert!(
        waited >= Duration::from_millis(50) && waited < generous,
        "{waited:?}"
    );
    assert!(
        scripts_run(&redis) - scripts <= 3,
        "wait polled the limiter"
    );
    // Charged once: the TAT is one interval ahead, not two.
    let retry = bounded(gcra.peek(&k, &rate))
        .await
        .unwrap()
        .retry_after()
        .unwrap();
    assert!(retry <= Duration::from_millis(100), "{retry:?}");
    // 1 per hour, 2 at once, 1 used: a cost of 2 would wait an hour.
    let slow = GcraRate::new(1, hour, 2).unwrap();
    let k2 = key("k2");
    assert!(
        bounded(gcra.check(&k2, &slow, 1))
            .await
            .unwrap()
            .is_allowed()
    );
    let started = Instant::now();
    rate_limited(
        bounded(gcra.wait(&k2, &slow, 2, Duration::from_secs(60))).await,
        Duration::from_secs(60),
    );
    assert!(
        started.elapsed() < generous,
        "RateLimited came after {:?}",
        started.elapsed()
    );
    assert_eq!(
        bounded(gcra.check(&k2, &slow, 1))
            .await
            .unwrap()
            .remaining(),
        0,
        "nothing charged"
    );

    // Strict sliding window: 300 ms, 2 units: the third waits until the first two leave.
    let window_prefix = fresh_key();
    let window = sliding(&window_prefix, client.clone(), 300, 10);
    assert!(bounded(window.check(&k, 2, 2)).await.unwrap().is_allowed());
    let (scripts, started) = (scripts_run(&redis), Instant::now());
    let decision = bounded(window.wait(&k, 2, 1, generous)).await.unwrap();
    let waited = started.elapsed();
    assert!(decision.is_allowed());
    assert!(
        waited >= Duration::from_millis(250) && waited < generous,
        "{waited:?}"
    );
    assert!(
        scripts_run(&redis) - scripts <= 3,
        "wait polled the limiter"
    );
    assert_eq!(window_total(&redis, &window_prefix, &k), 1, "charged once");
    let long = sliding(&window_prefix, client.clone(), 60_000, 100);
    assert!(bounded(long.check(&k2, 2, 2)).await.unwrap().is_allowed());
    let started = Instant::now();
    rate_limited(
        bounded(long.wait(&k2, 2, 1, Duration::from_secs(10))).await,
        Duration::from_secs(10),
    );
    assert!(started.elapsed() < generous);
    assert_eq!(
        window_total(&redis, &window_prefix, &k2),
        2,
        "nothing charged"
    );

    // Lax GCRA: the same, decided on its view.
    let lax_gcra_prefix = fresh_key();
    let lax_gcra =
        LaxGcraLimiter::new(LaxGcraOptions::new(lax_gcra_prefix.clone(), client.clone())).unwrap();
    assert!(
        bounded(lax_gcra.check(&k, &rate, 1))
            .await
            .unwrap()
            .is_allowed()
    );
    let started = Instant::now();
    assert!(
        bounded(lax_gcra.wait(&k, &rate, 1, generous))
            .await
            .unwrap()
            .is_allowed()
    );
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(50) && waited < generous,
        "{waited:?}"
    );
    assert!(
        bounded(lax_gcra.check(&k2, &slow, 1))
            .await
            .unwrap()
            .is_allowed()
    );
    let started = Instant::now();
    rate_limited(
        bounded(lax_gcra.wait(&k2, &slow, 2, Duration::from_secs(60))).await,
        Duration::from_secs(60),
    );
    assert!(started.elapsed() < generous);
    assert_eq!(
        bounded(lax_gcra.check(&k2, &slow, 1))
            .await
            .unwrap()
            .remaining(),
        0,
        "nothing charged"
    );
    bounded(lax_gcra.flush()).await.unwrap();
    // Redis holds 2 units of `k` (the call and the wait, each once) at 10 per second.
    let strict_view = GcraLimiter::new(GcraOptions::new(lax_gcra_prefix, client.clone()));
    let retry = bounded(strict_view.peek(&k, &rate))
        .await
        .unwrap()
        .retry_after()
        .unwrap();
    assert!(retry <= Duration::from_millis(100), "{retry:?}");

    // Lax sliding window.
    let lax_prefix = fresh_key();
    let lax_window = lax_sliding(&lax_prefix, client.clone(), 300, 10);
    assert!(
        bounded(lax_window.check(&k, 2, 2))
            .await
            .unwrap()
            .is_allowed()
    );
    let started = Instant::now();
    assert!(
        bounded(lax_window.wait(&k, 2, 1, generous))
            .await
            .unwrap()
            .is_allowed()
    );
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(250) && waited < generous,
        "{waited:?}"
    );
    bounded(lax_window.flush()).await.unwrap();
    assert_eq!(window_total(&redis, &lax_prefix, &k), 1, "charged once");
    let lax_long = lax_sliding(&lax_prefix, client, 60_000, 100);
    assert!(
        bounded(lax_long.check(&k2, 2, 2))
            .await
            .unwrap()
            .is_allowed()
    );
    bounded(lax_long.flush()).await.unwrap();
    let started = Instant::now();
    rate_limited(
        bounded(lax_long.wait(&k2, 2, 1, Duration::from_secs(10))).await,
        Duration::from_secs(10),
    );
    assert!(started.elapsed() < generous);
    bounded(lax_long.flush()).await.unwrap();
    assert_eq!(window_total(&redis, &lax_prefix, &k2), 2, "nothing charged");
}

/// The application behind the layer in the tower tests: counts its calls.
fn counting_service(
    calls: Arc<std::sync::atomic::AtomicUsize>,
) -> impl tower::Service<
    http::Request<String>,
    Response = http::Response<String>,
    Error = std::convert::Infallible,
    Future = impl Send,
> + Clone {
    tower::service_fn(move |_request: http::Request<String>| {
        calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        async { Ok::<_, std::convert::Infallible>(http::Response::new("ok".to_owned())) }
    })
}

/// A request from `tenant` (none: no `x-tenant` header).
#[expect(clippy::unwrap_used, reason = "a test helper fails its test")]
fn request(tenant: Option<&str>) -> http::Request<String> {
    let mut builder = http::Request::builder().uri("/things");
    if let Some(tenant) = tenant {
        builder = builder.header("x-tenant", tenant);
    }
    builder.body(String::new()).unwrap()
}

/// The tenant of a request, as a limiter key.
fn tenant_key(request: &http::Request<String>) -> Option<DistkitRedisKey> {
    let tenant = request.headers().get("x-tenant")?.to_str().ok()?;
    DistkitRedisKey::try_from(tenant).ok()
}

/// A response header as text (`""` when absent).
fn header(response: &http::Response<String>, name: &str) -> String {
    response
        .headers()
        .get(name)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// The tower layer over HTTP requests, with a strict GCRA and a lax sliding window: admitted
/// requests reach the service and carry the `RateLimit-*` headers; refused ones get a 429
/// with `Retry-After` and never reach it; tenants are limited apart; requests without a key
/// are not limited; a failing limiter gives 503, or lets requests through when told to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tower_layer_answers_429_with_retry_after_and_ratelimit_headers_over_http() {
    use distkit::ratelimit::tower::{OnLimiterError, RateLimitLayer};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tower::{Layer, ServiceExt};

    let redis = TestRedis::start();
    let client = client(&redis).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let gcra_prefix = fresh_key();
    let gcra = Arc::new(GcraLimiter::new(GcraOptions::new(
        gcra_prefix.clone(),
        client.clone(),
    )));
    // 1 per minute, bursts of 2.
    let rate = GcraRate::new(1, Duration::from_secs(60), 2).unwrap();
    let service =
        RateLimitLayer::new(gcra, rate, tenant_key).layer(counting_service(Arc::clone(&calls)));
    let first = bounded(service.clone().oneshot(request(Some("acme"))))
        .await
        .unwrap();
    assert_eq!(first.status(), http::StatusCode::OK);
    assert_eq!(first.body(), "ok");
    assert_eq!(
        (
            header(&first, "ratelimit-limit"),
            header(&first, "ratelimit-remaining"),
            header(&first, "ratelimit-reset")
        ),
        ("2".to_owned(), "1".to_owned(), "60".to_owned())
    );
    assert_eq!(header(&first, "retry-after"), "");
    let second = bounded(service.clone().oneshot(request(Some("acme"))))
        .await
        .unwrap();
    assert_eq!(second.status(), http::StatusCode::OK);
    assert_eq!(header(&second, "ratelimit-remaining"), "0");
    assert_eq!(header(&second, "ratelimit-reset"), "120");
    let refused = bounded(service.clone().oneshot(request(Some("acme"))))
        .await
        .unwrap();
    assert_eq!(refused.status(), http::StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.body(), "");
    let retry: u64 = header(&refused, "retry-after").parse().unwrap();
    assert!((59..=60).contains(&retry), "Retry-After {retry}");
    assert_eq!(header(&refused, "ratelimit-limit"), "2");
    assert_eq!(header(&refused, "ratelimit-remaining"), "0");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "a refused request reached the service"
    );
    // Another tenant has its own quota; a request without a key is not limited.
    let other = bounded(service.clone().oneshot(request(Some("globex"))))
        .await
        .unwrap();
    assert_eq!(other.status(), http::StatusCode::OK);
    for _ in 0..3 {
        let anonymous = bounded(service.clone().oneshot(request(None)))
            .await
            .unwrap();
        assert_eq!(anonymous.status(), http::StatusCode::OK);
        assert_eq!(header(&anonymous, "ratelimit-limit"), "");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 6);

    // A lax sliding window (60 s, 2 per window) through the same layer.
    let lax = lax_sliding(&fresh_key(), client.clone(), 60_000, 100);
    let service =
        RateLimitLayer::new(lax, 2, tenant_key).layer(counting_service(Arc::clone(&calls)));
    let statuses = [
        bounded(service.clone().oneshot(request(Some("acme"))))
            .await
            .unwrap(),
        bounded(service.clone().oneshot(request(Some("acme"))))
            .await
            .unwrap(),
        bounded(service.clone().oneshot(request(Some("acme"))))
            .await
            .unwrap(),
    ];
    assert_eq!(
        statuses
            .iter()
            .map(http::Response::status)
            .collect::<Vec<_>>(),
        [
            http::StatusCode::OK,
            http::StatusCode::OK,
            http::StatusCode::TOO_MANY_REQUESTS
        ]
    );
    let retry: u64 = header(&statuses[2], "retry-after").parse().unwrap();
    assert!((1..=61).contains(&retry), "Retry-After {retry}");
    assert_eq!(calls.load(Ordering::SeqCst), 8);

    // A limiter that fails (the key holds data distkit did not write): 503 by default, or
    // through with OnLimiterError::Admit.
    let _: String = redis.cli(&[
        "SET",
        &format!("distkit:rl:{gcra_prefix}:{{broken}}:gcra"),
        "hello",
    ]);
    let gcra = Arc::new(GcraLimiter::new(GcraOptions::new(gcra_prefix, client)));
    let closed = RateLimitLayer::new(Arc::clone(&gcra), rate, tenant_key)
        .layer(counting_service(Arc::clone(&calls)));
    let response = bounded(closed.oneshot(request(Some("broken"))))
        .await
        .unwrap();
    assert_eq!(response.status(), http::StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(calls.load(Ordering::SeqCst), 8);
    let open = RateLimitLayer::new(gcra, rate, tenant_key)
        .on_limiter_error(OnLimiterError::Admit)
        .layer(counting_service(Arc::clone(&calls)));
    let response = bounded(open.oneshot(request(Some("broken"))))
        .await
        .unwrap();
    assert_eq!(response.status(), http::StatusCode::OK);
    assert_eq!(calls.load(Ordering::SeqCst), 9);
}

/// A failure policy per limiter: failing open, every limiter admits a call Redis does not
/// answer within the deadline (Redis stopped) or answers with an error (data distkit did
/// not write), promptly and with the call's limit; failing closed (the default) returns the
/// error. Bad calls and bad deadlines are errors either way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limiter_failing_open_admits_calls_redis_fails_or_does_not_answer_in_time() {
    use distkit::ratelimit::{FailurePolicy, MAX_FAIL_OPEN_DEADLINE};

    for bad in [
        Duration::ZERO,
        Duration::from_micros(999),
        MAX_FAIL_OPEN_DEADLINE + Duration::from_millis(1),
    ] {
        assert!(
            matches!(
                FailurePolicy::fail_open(bad),
                Err(DistkitError::InvalidOption(_))
            ),
            "{bad:?}"
        );
    }
    let open = FailurePolicy::fail_open(Duration::from_millis(100)).unwrap();
    assert_eq!(open.deadline(), Some(Duration::from_millis(100)));
    assert!(!FailurePolicy::default().is_fail_open());

    let redis = TestRedis::start();
    // The client gives up on a command after 1 s.
    let client = bounded(
        distkit::ConnectOptions::new(redis.url())
            .command_timeout(Duration::from_secs(1))
            .connect(),
    )
    .await
    .unwrap();
    let rate = GcraRate::per_second(10, 5).unwrap();
    let gcra = GcraLimiter::new(
        GcraOptions::builder(fresh_key(), client.clone())
            .failure_policy(open)
            .build(),
    );
    let closed = GcraLimiter::new(GcraOptions::new(fresh_key(), client.clone()));
    let window = SlidingWindowLimiter::new(
        SlidingWindowOptions::builder(fresh_key(), client.clone())
            .failure_policy(open)
            .build(),
    )
    .unwrap();
    let lax_gcra = LaxGcraLimiter::new(
        LaxGcraOptions::builder(fresh_key(), client.clone())
            .failure_policy(open)
            .build(),
    )
    .unwrap();
    let lax_window = LaxSlidingWindowLimiter::new(
        LaxSlidingWindowOptions::builder(fresh_key(), client.clone())
            .failure_policy(open)
            .build(),
    )
    .unwrap();
    let k = key("k");
    // Warm the connection (and the scripts) first.
    assert!(
        bounded(closed.check(&key("warm-up"), &rate, 1))
            .await
            .unwrap()
            .is_allowed()
    );

    redis.pause();
    let timed = |started: Instant| started.elapsed();
    let started = Instant::now();
    let gcra_decision = bounded(gcra.check(&k, &rate, 2)).await;
    let gcra_took = timed(started);
    let started = Instant::now();
    let window_decision = bounded(window.check(&k, 7, 2)).await;
    let window_took = timed(started);
    let started = Instant::now();
    let lax_gcra_decision = bounded(lax_gcra.check(&k, &rate, 1)).await;
    let lax_window_decision = bounded(lax_window.check(&k, 7, 1)).await;
    let lax_took = timed(started);
    let peeked = bounded(gcra.peek(&k, &rate)).await;
    let waited = bounded(window.wait(&k, 7, 1, Duration::from_secs(1))).await;
    let invalid = bounded(gcra.check(&k, &rate, 6)).await;
    let started = Instant::now();
    let closed_result = bounded(closed.check(&k, &rate, 1)).await;
    let closed_took = timed(started);
    redis.resume();

    let generous = Duration::from_secs(3);
    for (which, decision, took) in [
        ("gcra", gcra_decision, gcra_took),
        ("sliding window", window_decision, window_took),
    ] {
        let decision = decision.unwrap();
        assert!(decision.is_allowed(), "{which}: {decision:?}");
        assert_eq!(
            (decision.remaining(), decision.reset_after()),
            (0, Duration::ZERO),
            "{which}"
        );
        assert!(
            took >= Duration::from_millis(90) && took < generous,
            "{which} took {took:?}"
        );
    }
    assert_eq!(lax_gcra_decision.unwrap().limit(), 5);
    assert_eq!(lax_window_decision.unwrap().limit(), 7);
    assert!(lax_took < generous * 2, "the lax calls took {lax_took:?}");
    assert!(peeked.unwrap().is_allowed());
    assert!(waited.unwrap().is_allowed());
    assert!(
        matches!(invalid, Err(DistkitError::InvalidOption(_))),
        "{invalid:?}"
    );
    assert!(
        matches!(closed_result, Err(DistkitError::RedisError(_))),
        "{closed_result:?}"
    );
    assert!(closed_took < Duration::from_secs(5), "{closed_took:?}");

    // An error reply (the key holds data distkit did not write): admitted when failing open,
    // the error when failing closed.
    let broken = key("broken");
    let shared = fresh_key();
    let _: String = redis.cli(&[
        "SET",
        &format!("distkit:rl:{shared}:{{broken}}:gcra"),
        "hello",
    ]);
    let open_gcra = GcraLimiter::new(
        GcraOptions::builder(shared.clone(), client.clone())
            .failure_policy(open)
            .build(),
    );
    assert!(
        bounded(open_gcra.check(&broken, &rate, 1))
            .await
            .unwrap()
            .is_allowed()
    );
    let closed_gcra = GcraLimiter::new(GcraOptions::new(shared, client));
    assert!(matches!(
        bounded(closed_gcra.check(&broken, &rate, 1)).await,
        Err(DistkitError::RedisError(_))
    ));
}

/// The lax bound with several objects on one key, in real time: three lax objects (each on
/// its own client) and a strict limiter share a key, each on its own seeded schedule; each
/// admits at most the limit within any window (a lax object sees its own units through its
/// syncs; the strict limiter sees everything delivered), so together at most four limits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lax_objects_sharing_a_key_each_admit_at_most_the_limit_within_every_window() {
    let redis = TestRedis::start();
    for seed in seeds() {
        eprintln!("seed {seed}");
        let mut rng = Rng(seed);
        let window_ms = rng.between(100, 200);
        let bucket_ms = match rng.between(0, 1) {
            0 => window_ms,
            _ => rng.between(1, window_ms),
        };
        let limit = rng.between(2, 10);
        let prefix = fresh_key();
        let k = key("k");
        let mut laxes = Vec::new();
        for _ in 0..3 {
            laxes.push(lax_sliding(
                &prefix,
                client(&redis).await,
                window_ms,
                bucket_ms,
            ));
        }
        let strict = sliding(&prefix, client(&redis).await, window_ms, bucket_ms);
        let run_for = Duration::from_millis(700);
        let mut rngs: Vec<Rng> = (0..4).map(|_| Rng(rng.next())).collect();
        let [r0, r1, r2, r3] = &mut rngs[..] else {
            unreachable!("four generators")
        };
        let (a, b, c, d) = tokio::join!(
            run_schedule(r0, window_ms, limit, run_for, |cost| laxes[0]
                .check(&k, limit, cost)),
            run_schedule(r1, window_ms, limit, run_for, |cost| laxes[1]
                .check(&k, limit, cost)),
            run_schedule(r2, window_ms, limit, run_for, |cost| laxes[2]
                .check(&k, limit, cost)),
            run_schedule(r3, window_ms, limit, run_for, |cost| strict
                .check(&k, limit, cost)),
        );
        let window = Duration::from_millis(window_ms);
        let mut all = Vec::new();
        for (which, admitted) in [("lax 0", a), ("lax 1", b), ("lax 2", c), ("strict", d)] {
            let most = most_within_one_window(&admitted, window);
            assert!(
                most <= limit,
                "seed {seed}: {which} admitted {most} units within {window_ms} ms (bucket \
                 {bucket_ms} ms, limit {limit}); replay: DISTKIT_RATELIMIT_SEED={seed} \
                 DISTKIT_RATELIMIT_CASES=1 cargo test -p distkit-tests --all-features --test \
                 ratelimit_api lax_objects_sharing"
            );
            all.extend(admitted);
        }
        all.sort_by_key(|call| call.before);
        let most = most_within_one_window(&all, window);
        assert!(
            most <= limit.saturating_mul(4),
            "seed {seed}: {most} units within {window_ms} ms, limit {limit}"
        );
    }
}
