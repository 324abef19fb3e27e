//! The scripts against reference models, with explicit times, on a real Redis; the sliding
//! window model against trypema's local provider.
//!
//! `DISTKIT_RATELIMIT_SEED` replays a seed of the randomized tests (default: from the clock);
//! `DISTKIT_RATELIMIT_CASES` (default 3) sets how many seeds each runs.

use std::future::Future;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use distkit_core::{DistkitError, DistkitRedisKey};
use distkit_test_support::{TestRedis, unique_prefix};
use fred::clients::Client;

use super::model::{LeakyBucket, Outcome, Window};
use super::*;

const LIMIT: Duration = Duration::from_secs(20);

async fn bounded<F: Future>(future: F) -> F::Output {
    tokio::time::timeout(LIMIT, future)
        .await
        .expect("an operation took longer than 20 s")
}

async fn client(redis: &TestRedis) -> Client {
    bounded(distkit_core::connect(redis.url())).await.unwrap()
}

fn key(text: &str) -> DistkitRedisKey {
    DistkitRedisKey::new_or_panic(text.to_owned())
}

/// SplitMix64: a small seedable generator, so a seed replays the same calls.
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
    fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.next() % (high - low + 1)
    }
}

fn seeds() -> Vec<u64> {
    let first = std::env::var("DISTKIT_RATELIMIT_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or_else(|| {
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_nanos();
            u64::try_from(nanos % u128::from(u64::MAX)).unwrap()
        });
    let cases = std::env::var("DISTKIT_RATELIMIT_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(3_u64);
    (0..cases).map(|case| first.wrapping_add(case)).collect()
}

fn outcome(decision: Decision, unit: Duration) -> Outcome {
    let in_units = |time: Duration| u64::try_from(time.as_nanos() / unit.as_nanos()).unwrap();
    Outcome {
        allowed: decision.is_allowed(),
        remaining: decision.remaining(),
        retry_after: decision.retry_after().map_or(0, in_units),
        limit: decision.limit(),
        reset_after: in_units(decision.reset_after()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcra_script_agrees_with_a_leaky_bucket_model_on_seeded_random_calls() {
    let redis = TestRedis::start();
    let client = client(&redis).await;
    for seed in seeds() {
        let mut rng = Rng(seed);
        let limiter = GcraLimiter::new(GcraOptions::new(key(&unique_prefix()), client.clone()));
        // A few keys, each with its own rate: awkward ratios included (7 per 1 s, 3 per
        // 10 ms, 1 000 000 per 1 s).
        let rates: Vec<(u64, u64, u64)> = (0..4)
            .map(|_| {
                let period_us = [10_000, 1_000_000, 3_600_000_000][rng.between(0, 2) as usize];
                // At most one unit per µs (faster rates are refused).
                let limit =
                    [1, 3, 7, 10, 1_000, 1_000_000][rng.between(0, 5) as usize].min(period_us);
                (limit, period_us, rng.between(1, 20))
            })
            .collect();
        let mut models: Vec<LeakyBucket> = rates.iter().map(|_| LeakyBucket::default()).collect();
        let mut now_us = 1_700_000_000_000_000_u64 + rng.between(0, 1_000_000);
        for step in 0..400 {
            let which = rng.between(0, 3) as usize;
            let (limit, period_us, burst) = rates[which];
            let emission = (period_us / limit).max(1);
            now_us += match rng.between(0, 3) {
                0 => 0,
                1 => rng.between(0, emission),
                2 => rng.between(0, emission * 3),
                _ => rng.between(0, emission * burst * 2),
            };
            let cost = rng.between(1, burst.min(5));
            let rate = GcraRate::new(limit, Duration::from_micros(period_us), burst).unwrap();
            let decision =
                bounded(limiter.check_at(&key(&format!("k{which}")), &rate, cost, Some(now_us)))
                    .await
                    .unwrap();
            let expected = models[which].check(now_us, limit, period_us, burst, cost);
            assert_eq!(
                outcome(decision, Duration::from_micros(1)),
                expected,
                "seed {seed}, step {step}, key {which} ({limit} per {period_us} µs, burst \
                 {burst}), cost {cost}, at {now_us} µs; replay: DISTKIT_RATELIMIT_SEED={seed} \
                 DISTKIT_RATELIMIT_CASES=1 cargo test -p distkit-ratelimit gcra_script_agrees"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sliding_window_script_agrees_with_the_bucket_model_on_seeded_random_calls() {
    let redis = TestRedis::start();
    let client = client(&redis).await;
    for seed in seeds() {
        let mut rng = Rng(seed);
        let mut options = SlidingWindowOptions::new(key(&unique_prefix()), client.clone());
        let window_ms = [1, 100, 1_000, 10_000][rng.between(0, 3) as usize];
        let bucket_ms = rng.between(1, window_ms.min(250));
        options.window = Duration::from_millis(window_ms);
        options.bucket = Duration::from_millis(bucket_ms);
        let limiter = SlidingWindowLimiter::new(options).unwrap();
        let limits: Vec<u64> = (0..3).map(|_| rng.between(1, 30)).collect();
        let mut models: Vec<Window> = limits.iter().map(|_| Window::default()).collect();
        let mut now_ms = 1_700_000_000_000_u64 + rng.between(0, 1_000);
        for step in 0..400 {
            let which = rng.between(0, 2) as usize;
            let limit = limits[which];
            now_ms += match rng.between(0, 3) {
                0 => 0,
                1 => rng.between(0, bucket_ms * 2),
                2 => rng.between(0, window_ms / 4 + 1),
                _ => rng.between(0, window_ms * 2),
            };
            let cost = rng.between(1, limit.min(4));
            let decision =
                bounded(limiter.check_at(&key(&format!("k{which}")), limit, cost, Some(now_ms)))
                    .await
                    .unwrap();
            let expected = models[which].check(now_ms, limit, window_ms, bucket_ms, cost);
            assert_eq!(
                outcome(decision, Duration::from_millis(1)),
                expected,
                "seed {seed}, step {step}, key {which} (limit {limit}, window {window_ms} ms, \
                 bucket {bucket_ms} ms), cost {cost}, at {now_ms} ms; replay: \
                 DISTKIT_RATELIMIT_SEED={seed} DISTKIT_RATELIMIT_CASES=1 cargo test -p \
                 distkit-ratelimit sliding_window_script_agrees"
            );
        }
    }
}

/// The sliding-window model (which the script matches, above) decides like trypema's local
/// provider for the same calls at the same times, as long as no bucket holds calls far
/// apart (trypema evicts a bucket by its start, the model by its newest call: see
/// `a_bucket_counts_until_its_newest_call_leaves_the_window_so_no_window_holds_19_of_10`).
/// trypema reads `Instant::now()` itself, so the calls run on the real clock, on a 130 ms
/// grid: the calls of one grid slot share a bucket and the next slot starts a new one, and
/// every bucket age and window age lies at least 30 ms away from the 100 ms bucket and
/// 1 000 ms window boundaries; the model gets the real time of each call.
#[test]
fn sliding_window_decides_like_trypemas_local_provider_for_the_same_calls_and_times() {
    use trypema::local::LocalRateLimiterProvider;
    use trypema::{BucketSize, RateLimit, RateLimitDecision, RateLimiterBuilder, WindowSize};

    for seed in seeds().into_iter().take(1) {
        let mut rng = Rng(seed);
        let provider = LocalRateLimiterProvider::builder()
            .window_size(WindowSize::seconds(1).unwrap())
            .bucket_size(BucketSize::milliseconds(100).unwrap())
            .build()
            .unwrap();
        // 7.5 per second over a 1 s window: trypema's window limit is floor(7.5) = 7.
        let rate = RateLimit::per_second(7.5).unwrap();
        let limit = 7;
        let mut model = Window::default();
        let base = Instant::now();
        let (mut allowed, mut rejected) = (0, 0);
        for slot in 0..30_u32 {
            let due = base + Duration::from_millis(130) * slot;
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
            for call in 0..rng.between(0, 3) {
                let now_ms = u64::try_from(base.elapsed().as_millis()).unwrap();
                let theirs = provider.absolute().inc("k", &rate, 1);
                let ours = model.check(now_ms, limit, 1_000, 100, 1);
                let context = format!(
                    "seed {seed}, slot {slot}, call {call}, at {now_ms} ms: trypema {theirs:?}, \
                     model {ours:?}; replay: DISTKIT_RATELIMIT_SEED={seed} cargo test -p \
                     distkit-ratelimit decides_like_trypemas"
                );
                match theirs {
                    RateLimitDecision::Allowed => {
                        assert!(ours.allowed, "{context}");
                        allowed += 1;
                    }
                    RateLimitDecision::Rejected { retry_after, .. } => {
                        assert!(!ours.allowed, "{context}");
                        // One ms later than trypema's hint (the last ms the bucket counts),
                        // give or take the ms rounding of two clocks read microseconds apart
                        // and the ms between the first and the newest call of the bucket.
                        let theirs_ms = u64::try_from(retry_after.as_millis()).unwrap();
                        assert!(
                            ours.retry_after.abs_diff(theirs_ms + 1) <= 2,
                            "retry_after {context}"
                        );
                        rejected += 1;
                    }
                    other => panic!("unexpected {other:?}: {context}"),
                }
            }
        }
        assert!(
            allowed > 10 && rejected > 5,
            "{allowed} allowed, {rejected} rejected"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcra_admits_exactly_three_per_second_without_rounding_drift() {
    let redis = TestRedis::start();
    let limiter = GcraLimiter::new(GcraOptions::new(
        key(&unique_prefix()),
        client(&redis).await,
    ));
    // 3 per second, up to 3 at once: T = 333 333 1/3 µs, kept exactly (a T rounded to
    // 333 333 µs would admit the call at +999 999 µs and refuse the one at +1 000 000).
    let rate = GcraRate::per_second(3, 3).unwrap();
    let k = key("k");
    let start = 1_700_000_000_000_000_u64;
    for (offset, allowed) in [
        (0, true),
        (0, true),
        (0, true),
        (0, false),
        (333_333, false),
        (333_334, true),
        (666_666, false),
        (666_667, true),
        (999_999, false),
        (1_000_000, true),
    ] {
        let decision = bounded(limiter.check_at(&k, &rate, 1, Some(start + offset)))
            .await
            .unwrap();
        assert_eq!(
            decision.is_allowed(),
            allowed,
            "at +{offset} µs: {decision:?}"
        );
    }
    let decision = bounded(limiter.check_at(&k, &rate, 1, Some(start + 1_000_000)))
        .await
        .unwrap();
    assert_eq!(
        decision,
        Decision::Rejected {
            retry_after: Duration::from_micros(333_334),
            remaining: 0,
            limit: 3,
            reset_after: Duration::from_micros(1_000_000),
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcra_rounds_the_state_up_when_the_rate_of_a_key_changes() {
    let redis = TestRedis::start();
    let limiter = GcraLimiter::new(GcraOptions::new(
        key(&unique_prefix()),
        client(&redis).await,
    ));
    let k = key("k");
    let now = 1_700_000_000_000_000_u64;
    let three = GcraRate::per_second(3, 1).unwrap();
    assert!(
        bounded(limiter.check_at(&k, &three, 1, Some(now)))
            .await
            .unwrap()
            .is_allowed()
    );
    // TAT = now + 333 333 1/3 µs, rounded up to now + 333 334 under 7 per 7/3 s.
    let seven = GcraRate::new(7, Duration::from_micros(2_333_331), 1).unwrap();
    assert!(
        !bounded(limiter.check_at(&k, &seven, 1, Some(now + 333_333)))
            .await
            .unwrap()
            .is_allowed()
    );
    assert!(
        bounded(limiter.check_at(&k, &seven, 1, Some(now + 333_334)))
            .await
            .unwrap()
            .is_allowed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_data_under_a_limiter_key_is_a_clear_error_not_a_wrong_decision() {
    use fred::interfaces::KeysInterface;
    let redis = TestRedis::start();
    let client = client(&redis).await;
    let prefix = key(&unique_prefix());
    let gcra = GcraLimiter::new(GcraOptions::new(prefix.clone(), client.clone()));
    let window =
        SlidingWindowLimiter::new(SlidingWindowOptions::new(prefix.clone(), client.clone()))
            .unwrap();
    let k = key("k");
    let _: () = bounded(client.set(redis_key(&prefix, &k, "gcra"), "hello", None, None, false))
        .await
        .unwrap();
    let _: () = bounded(client.set(redis_key(&prefix, &k, "sw:total"), "x", None, None, false))
        .await
        .unwrap();
    let rate = GcraRate::per_second(1, 1).unwrap();
    for error in [
        bounded(gcra.check(&k, &rate, 1)).await.unwrap_err(),
        bounded(window.check(&k, 5, 1)).await.unwrap_err(),
    ] {
        assert!(matches!(error, DistkitError::RedisError(_)), "{error:?}");
        let text = error.to_string();
        assert!(text.contains("not distkit's"), "{text}");
        // The message names the limiter's prefix and key; a reply is not a transport failure,
        // so it claims nothing about a charge.
        assert!(
            text.ends_with(&format!("(rate limiter {:?}, key \"k\")", prefix.as_str())),
            "{text}"
        );
        assert!(!error.is_outcome_unknown());
    }
}

/// Issue 33: with `window = bucket = 1000 ms` and a limit of 10, one call at 0 ms, nine at
/// 800 ms (joining the bucket of 0 ms) and ten at 1030 ms admitted 19 units within one
/// window: the bucket left the window 1000 ms after its start, taking the nine calls of
/// 800 ms with it 200 ms early. A bucket now counts until its newest call is a window old.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bucket_counts_until_its_newest_call_leaves_the_window_so_no_window_holds_19_of_10() {
    let redis = TestRedis::start();
    let client = client(&redis).await;
    let mut options = SlidingWindowOptions::new(key(&unique_prefix()), client);
    options.window = Duration::from_millis(1_000);
    options.bucket = Duration::from_millis(1_000);
    let limiter = SlidingWindowLimiter::new(options).unwrap();
    let k = key("k");
    let t0 = 1_700_000_000_000_u64;
    let at = |ms: u64| limiter.check_at(&k, 10, 1, Some(t0 + ms));
    assert!(bounded(at(0)).await.unwrap().is_allowed());
    for _ in 0..9 {
        assert!(bounded(at(800)).await.unwrap().is_allowed());
    }
    // The nine calls of 800 ms still count at 1030 ms (and up to 1800 ms): all ten refused,
    // each told to come back when they leave, 771 ms later.
    for call in 0..10 {
        assert_eq!(
            bounded(at(1_030)).await.unwrap(),
            Decision::Rejected {
                retry_after: Duration::from_millis(771),
                remaining: 0,
                limit: 10,
                reset_after: Duration::from_millis(771),
            },
            "call {call} at 1030 ms"
        );
    }
    // At 1800 ms they still count; at 1801 ms all ten units are back.
    assert!(!bounded(at(1_800)).await.unwrap().is_allowed());
    assert_eq!(
        bounded(limiter.check_at(&k, 10, 10, Some(t0 + 1_801)))
            .await
            .unwrap(),
        Decision::Allowed {
            remaining: 0,
            limit: 10,
            reset_after: Duration::from_millis(1_001),
        }
    );
}

/// The documented bound, checked on the calls the script admitted (not against a model of
/// it): over seeded random schedules, costs and `bucket <= window` (including
/// `bucket == window`), the units admitted within every closed stretch of `window` ms are
/// at most the limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sliding_window_never_admits_more_than_the_limit_within_any_window_on_seeded_schedules() {
    let redis = TestRedis::start();
    let client = client(&redis).await;
    for seed in seeds() {
        eprintln!("seed {seed}");
        let mut rng = Rng(seed);
        let window_ms = [1, 7, 100, 1_000][rng.between(0, 3) as usize];
        let bucket_ms = match rng.between(0, 2) {
            0 => window_ms,
            1 => rng.between(1, window_ms),
            _ => rng.between(window_ms / 2 + 1, window_ms),
        };
        let mut options = SlidingWindowOptions::new(key(&unique_prefix()), client.clone());
        options.window = Duration::from_millis(window_ms);
        options.bucket = Duration::from_millis(bucket_ms);
        let limiter = SlidingWindowLimiter::new(options).unwrap();
        let limit = rng.between(1, 20);
        let k = key("k");
        let mut now_ms = 1_700_000_000_000_u64 + rng.between(0, 1_000);
        let mut admitted: Vec<(u64, u64)> = Vec::new();
        for step in 0..600 {
            now_ms += match rng.between(0, 4) {
                0 => 0,
                1 => rng.between(0, bucket_ms),
                2 => rng.between(0, window_ms / 3 + 1),
                3 => rng.between(window_ms / 2, window_ms + bucket_ms + 1),
                _ => rng.between(0, window_ms * 2),
            };
            let cost = rng.between(1, limit.min(5));
            let decision = bounded(limiter.check_at(&k, limit, cost, Some(now_ms)))
                .await
                .unwrap();
            if decision.is_allowed() {
                admitted.push((now_ms, cost));
            }
            // Every window ending now (the script counts a call at `t` through `t + window`).
            let in_window: u64 = admitted
                .iter()
                .filter(|(at, _)| now_ms - at <= window_ms)
                .map(|(_, cost)| cost)
                .sum();
            assert!(
                in_window <= limit,
                "seed {seed}, step {step}: {in_window} units admitted within {window_ms} ms \
                 (bucket {bucket_ms} ms), limit {limit}; replay: DISTKIT_RATELIMIT_SEED={seed} \
                 DISTKIT_RATELIMIT_CASES=1 cargo test -p distkit-ratelimit \
                 never_admits_more_than_the_limit"
            );
        }
        assert!(
            admitted.len() > 10,
            "seed {seed}: only {} calls admitted",
            admitted.len()
        );
    }
}
