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
            // One call in four peeks: the same decision, nothing charged.
            let peek = rng.between(0, 3) == 0;
            let (decision, _, _) = bounded(limiter.decide(
                &key(&format!("k{which}")),
                &rate,
                cost,
                Some(now_us),
                peek,
            ))
            .await
            .unwrap();
            let expected = if peek {
                models[which].peek(now_us, limit, period_us, burst, cost)
            } else {
                models[which].check(now_us, limit, period_us, burst, cost)
            };
            assert_eq!(
                outcome(decision, Duration::from_micros(1)),
                expected,
                "seed {seed}, step {step}, key {which} ({limit} per {period_us} µs, burst \
                 {burst}), cost {cost}, peek {peek}, at {now_us} µs; replay: \
                 DISTKIT_RATELIMIT_SEED={seed} DISTKIT_RATELIMIT_CASES=1 cargo test -p \
                 distkit-ratelimit gcra_script_agrees"
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
            // A key's limit may change from one call to the next.
            let limit = if rng.between(0, 4) == 0 {
                rng.between(1, 30)
            } else {
                limits[which]
            };
            now_ms += match rng.between(0, 3) {
                0 => 0,
                1 => rng.between(0, bucket_ms * 2),
                2 => rng.between(0, window_ms / 4 + 1),
                _ => rng.between(0, window_ms * 2),
            };
            let cost = rng.between(1, limit.min(4));
            // One call in four peeks: the same decision, nothing charged.
            let peek = rng.between(0, 3) == 0;
            let (decision, _) = bounded(limiter.decide(
                &key(&format!("k{which}")),
                limit,
                cost,
                Some(now_ms),
                peek,
            ))
            .await
            .unwrap();
            let expected = if peek {
                models[which].peek(now_ms, limit, window_ms, bucket_ms, cost)
            } else {
                models[which].check(now_ms, limit, window_ms, bucket_ms, cost)
            };
            assert_eq!(
                outcome(decision, Duration::from_millis(1)),
                expected,
                "seed {seed}, step {step}, key {which} (limit {limit}, window {window_ms} ms, \
                 bucket {bucket_ms} ms), cost {cost}, peek {peek}, at {now_ms} ms; replay: \
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

/// A list command, sent to the node of its first key.
fn list_command(name: &'static str) -> fred::types::CustomCommand {
    fred::types::CustomCommand::new_static(name, fred::types::ClusterHash::FirstKey, false)
}

/// The entries of a list, first to last.
async fn list(client: &Client, name: &str) -> Vec<String> {
    use fred::interfaces::ClientLike;
    bounded(client.custom(list_command("LRANGE"), vec![name, "0", "-1"]))
        .await
        .unwrap()
}

/// Writes a sliding window's state by hand: its bucket entries (oldest first) and total.
async fn write_window(
    client: &Client,
    prefix: &DistkitRedisKey,
    k: &DistkitRedisKey,
    entries: &[String],
    total: &str,
) {
    use fred::interfaces::{ClientLike, KeysInterface};
    let buckets = redis_key(prefix, k, "sw");
    let _: i64 = bounded(client.del(vec![buckets.clone(), redis_key(prefix, k, "sw:total")]))
        .await
        .unwrap();
    if !entries.is_empty() {
        let mut args = vec![buckets];
        args.extend(entries.iter().cloned());
        let _: i64 = bounded(client.custom(list_command("RPUSH"), args))
            .await
            .unwrap();
    }
    let _: () = bounded(client.set(redis_key(prefix, k, "sw:total"), total, None, None, false))
        .await
        .unwrap();
}

/// Buckets written before the last time was kept (`'<start> <count>'`), alone or mixed with
/// current ones, are read as if their newest call came `bucket` after their start: over
/// seeded random states and calls (checks and peeks, costs above 1, changing limits), the
/// script decides like the model holding `(start, count, start + bucket)` for them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buckets_without_a_last_time_count_until_their_start_plus_bucket_like_the_model() {
    let redis = TestRedis::start();
    let client = client(&redis).await;
    for seed in seeds() {
        let mut rng = Rng(seed);
        let prefix = key(&unique_prefix());
        let mut options = SlidingWindowOptions::new(prefix.clone(), client.clone());
        let window_ms = [10, 100, 1_000, 10_000][rng.between(0, 3) as usize];
        let bucket_ms = rng.between(1, window_ms.min(250));
        options.window = Duration::from_millis(window_ms);
        options.bucket = Duration::from_millis(bucket_ms);
        let limiter = SlidingWindowLimiter::new(options).unwrap();
        let k = key("k");
        let mut now_ms = 1_700_000_000_000_u64 + rng.between(0, 1_000);
        // Buckets one after the other, each starting after the previous one's last time,
        // some of them already out of the window.
        let mut start = now_ms - window_ms - 2 * bucket_ms - rng.between(0, window_ms);
        let mut entries = Vec::new();
        let mut buckets = Vec::new();
        while start <= now_ms && entries.len() < 6 {
            let count = rng.between(1, 5);
            if rng.between(0, 1) == 0 {
                entries.push(format!("{start} {count}"));
                buckets.push((start, count, start + bucket_ms));
            } else {
                let last = start + rng.between(0, bucket_ms);
                entries.push(format!("{start} {count} {last}"));
                buckets.push((start, count, last));
            }
            start += bucket_ms + 1 + rng.between(0, window_ms / 2);
        }
        let total: u64 = buckets.iter().map(|(_, count, _)| count).sum();
        write_window(&client, &prefix, &k, &entries, &total.to_string()).await;
        let mut model = Window::with_buckets(buckets);
        for step in 0..60 {
            now_ms += match rng.between(0, 2) {
                0 => 0,
                1 => rng.between(0, bucket_ms * 2),
                _ => rng.between(0, window_ms / 3 + 1),
            };
            let limit = rng.between(1, 30);
            let cost = rng.between(1, limit.min(6));
            let peek = rng.between(0, 3) == 0;
            let (decision, _) = bounded(limiter.decide(&k, limit, cost, Some(now_ms), peek))
                .await
                .unwrap();
            let expected = if peek {
                model.peek(now_ms, limit, window_ms, bucket_ms, cost)
            } else {
                model.check(now_ms, limit, window_ms, bucket_ms, cost)
            };
            assert_eq!(
                outcome(decision, Duration::from_millis(1)),
                expected,
                "seed {seed}, step {step}, state {entries:?} (window {window_ms} ms, bucket \
                 {bucket_ms} ms), limit {limit}, cost {cost}, peek {peek}, at {now_ms} ms; \
                 replay: DISTKIT_RATELIMIT_SEED={seed} DISTKIT_RATELIMIT_CASES=1 cargo test -p \
                 distkit-ratelimit buckets_without_a_last_time"
            );
        }
    }
}

/// Keys holding what the sliding-window scripts did not write are refused with
/// `DISTKIT_BAD_STATE` on every path of the strict script that reads them (admission,
/// refusal, peek), whichever entry is foreign: the total, the oldest bucket, the newest one,
/// or one the refusal's walk reaches. Nothing is charged or rewritten.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_sliding_window_state_is_refused_on_every_path_that_reads_it() {
    let redis = TestRedis::start();
    let client = client(&redis).await;
    let prefix = key(&unique_prefix());
    let mut options = SlidingWindowOptions::new(prefix.clone(), client.clone());
    options.window = Duration::from_millis(1_000);
    options.bucket = Duration::from_millis(100);
    let limiter = SlidingWindowLimiter::new(options).unwrap();
    let k = key("k");
    let t = 1_700_000_000_000_u64;
    let good = |start: u64, count: u64| format!("{start} {count} {start}");
    let foreign_entries = ["hello", "1 2 3 4", "1 x 3", "", "-5 1 2", "1.5 2", " 1 2"];
    // (entries, total, limit, cost, peek): each reaches the foreign part.
    let mut cases: Vec<(Vec<String>, String, u64, u64, bool)> = Vec::new();
    for total in [
        "x",
        "-1",
        "1e3",
        "",
        "12345678901234567",
        "1.5",
        " 5",
        "0x10",
    ] {
        for peek in [false, true] {
            cases.push((vec![good(t, 1)], total.to_owned(), 10, 1, peek));
        }
    }
    for entry in foreign_entries {
        for (limit, peek) in [(10, false), (10, true), (1, false)] {
            // The oldest bucket (read by the eviction on every path).
            cases.push((
                vec![entry.to_owned(), good(t, 1)],
                "2".to_owned(),
                limit,
                1,
                peek,
            ));
            // The newest bucket, behind a valid oldest one (admission, peek and refusal
            // all read it).
            cases.push((
                vec![good(t, 1), entry.to_owned()],
                "2".to_owned(),
                limit,
                1,
                peek,
            ));
        }
        // A middle bucket the refusal's walk reaches: the oldest frees 1 of the 2 needed.
        cases.push((
            vec![good(t, 1), entry.to_owned(), good(t + 50, 1)],
            "3".to_owned(),
            3,
            2,
            false,
        ));
    }
    for (entries, total, limit, cost, peek) in cases {
        write_window(&client, &prefix, &k, &entries, &total).await;
        let result = bounded(limiter.decide(&k, limit, cost, Some(t + 60), peek)).await;
        let context = format!(
            "entries {entries:?}, total {total:?}, limit {limit}, cost {cost}, peek {peek}"
        );
        let error = result.expect_err(&context);
        assert!(
            error.to_string().contains("not distkit's"),
            "{context}: {error}"
        );
        let stored = list(&client, &redis_key(&prefix, &k, "sw")).await;
        assert_eq!(stored, entries, "{context}: the buckets were rewritten");
    }
}

/// The lax limiter's delivery script on hand-written state, on the server clock: joining
/// the only bucket moves the oldest bucket's leave time too; a resent delivery adds nothing;
/// buckets without a last time are read as lasting `bucket` after their start and are
/// evicted by it; foreign totals and entries are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_delivery_script_joins_evicts_reads_old_buckets_and_refuses_foreign_state() {
    use fred::interfaces::KeysInterface;
    use fred::types::Value;
    let redis = TestRedis::start();
    let client = client(&redis).await;
    let prefix = key(&unique_prefix());
    let k = key("k");
    let [buckets, total] = [
        redis_key(&prefix, &k, "sw"),
        redis_key(&prefix, &k, "sw:total"),
    ];
    let record = redis_key(&prefix, &k, "sw:sync:test");
    let server_ms = || {
        let time = redis.cli(&["TIME"]);
        let mut parts = time
            .split_whitespace()
            .map(|part| part.parse::<u64>().unwrap());
        let (seconds, micros) = (parts.next().unwrap(), parts.next().unwrap());
        seconds * 1_000 + micros / 1_000
    };
    // (units, window, bucket, sequence): a reply { total, oldest_leaves, applied, newest_leaves }.
    let sync = |units: u64, window: u64, bucket: u64, sequence: u64| {
        let keys = [buckets.clone(), total.clone(), record.clone()];
        let client = client.clone();
        async move {
            let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
            let args = [units, window, bucket, sequence, 60_000]
                .iter()
                .map(|n| Value::from(n.to_string()))
                .collect();
            let reply = bounded(super::lax_sliding_window::SLIDING_WINDOW_SYNC.run(
                &client,
                &keys,
                args,
                distkit_core::script::CallPolicy::ONCE,
            ))
            .await?;
            four_integers("sliding_window_sync", reply).map_err(|error| match error {
                DistkitError::RedisError(error) => error,
                other => panic!("{other:?}"),
            })
        }
    };
    // One bucket, 1 000 ms old, whose last call came 900 ms ago; window = bucket = 10 s, so
    // the delivery joins it whenever it runs within 9 s.
    let before = server_ms();
    write_window(
        &client,
        &prefix,
        &k,
        &[format!("{} 2 {}", before - 1_000, before - 900)],
        "2",
    )
    .await;
    let [sum, oldest_leaves, applied, newest_leaves] = sync(3, 10_000, 10_000, 1).await.unwrap();
    let after = server_ms();
    assert_eq!((sum, applied), (5, 1));
    // The joined bucket is the oldest and the newest: both leave a whole window from now.
    assert_eq!((oldest_leaves, newest_leaves), (10_001, 10_001));
    let stored = list(&client, &buckets).await;
    assert_eq!(stored.len(), 1);
    let fields: Vec<u64> = stored[0].split(' ').map(|f| f.parse().unwrap()).collect();
    assert_eq!(&fields[..2], &[before - 1_000, 5]);
    assert!((before..=after).contains(&fields[2]), "{stored:?}");
    for name in [&buckets, &total] {
        let ttl: i64 = redis.cli(&["PTTL", name]).parse().unwrap();
        assert!(ttl > 0 && ttl <= 10_001, "{name}: pttl {ttl}");
    }
    // Resent: nothing added. Zero units: only read.
    let [sum, _, applied, _] = sync(3, 10_000, 10_000, 1).await.unwrap();
    assert_eq!((sum, applied), (5, 0));
    let [sum, _, applied, _] = sync(0, 10_000, 10_000, 2).await.unwrap();
    assert_eq!((sum, applied), (5, 0));

    // Buckets without a last time, with a 100 ms bucket: the first (20 s old) left the
    // window, the second (5 s old) counts until 5 100 ms after its start + 10 s... that is
    // its start + bucket + window.
    let _: i64 = bounded(client.del(&record)).await.unwrap();
    let before = server_ms();
    let second = before - 5_000;
    write_window(
        &client,
        &prefix,
        &k,
        &[format!("{} 1", before - 20_000), format!("{second} 2")],
        "3",
    )
    .await;
    let [sum, oldest_leaves, applied, newest_leaves] = sync(0, 10_000, 100, 1).await.unwrap();
    let after = server_ms();
    assert_eq!((sum, applied), (2, 0));
    let leaves = |now: u64| i64::try_from(second + 100 + 10_001 - now).unwrap();
    assert!(
        (leaves(after)..=leaves(before)).contains(&oldest_leaves),
        "{oldest_leaves}"
    );
    assert_eq!(oldest_leaves, newest_leaves);
    let stored: String = bounded(client.get(&total)).await.unwrap();
    assert_eq!(stored, "2", "the eviction rewrote the total");
    // A delivery starts a new bucket after the old one.
    let [sum, _, applied, newest_leaves] = sync(4, 10_000, 100, 2).await.unwrap();
    assert_eq!((sum, applied, newest_leaves), (6, 1, 10_001));
    let stored = list(&client, &buckets).await;
    assert_eq!(stored.len(), 2, "{stored:?}");
    assert_eq!(stored[0], format!("{second} 2"));

    // Foreign state: the total, the oldest entry, the newest entry.
    let now = server_ms();
    let good = format!("{now} 1 {now}");
    for (entries, sum) in [
        (vec![good.clone()], "x"),
        (vec![good.clone()], "-1"),
        (vec!["hello".to_owned(), good.clone()], "2"),
        (vec![good.clone(), "1 x 3".to_owned()], "2"),
    ] {
        write_window(&client, &prefix, &k, &entries, sum).await;
        let error = sync(1, 10_000, 100, 3).await.unwrap_err();
        assert!(
            error.to_string().contains("not distkit's"),
            "{entries:?} {sum}: {error}"
        );
    }
}

/// A GCRA key holding a string the GCRA scripts did not write is refused with
/// `DISTKIT_BAD_STATE` by a check, a peek and a delivery of the lax limiter, and left as it
/// was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_gcra_state_is_refused_by_checks_peeks_and_deliveries() {
    use fred::interfaces::KeysInterface;
    use fred::types::Value;
    let redis = TestRedis::start();
    let client = client(&redis).await;
    let prefix = key(&unique_prefix());
    let limiter = GcraLimiter::new(GcraOptions::new(prefix.clone(), client.clone()));
    let k = key("k");
    let state = redis_key(&prefix, &k, "gcra");
    let rate = GcraRate::per_second(10, 5).unwrap();
    let now = 1_700_000_000_000_000_u64;
    for foreign in [
        "hello", "1 2", "1 2 3 4", "-1 0 3", "1.5 0 3", "1 0 x", "", " 1 0 3",
    ] {
        let _: () = bounded(client.set(&state, foreign, None, None, false))
            .await
            .unwrap();
        for peek in [false, true] {
            let error = bounded(limiter.decide(&k, &rate, 1, Some(now), peek))
                .await
                .expect_err(foreign);
            assert!(
                error.to_string().contains("not distkit's"),
                "{foreign:?}: {error}"
            );
        }
        let record = redis_key(&prefix, &k, "gcra:sync:test");
        let keys = [state.as_str(), record.as_str()];
        let args = ["10", "100000", "0", "1", "60000"]
            .map(Value::from)
            .to_vec();
        let error = bounded(super::lax_gcra::GCRA_SYNC.run(
            &client,
            &keys,
            args,
            distkit_core::script::CallPolicy::ONCE,
        ))
        .await
        .expect_err(foreign);
        assert!(
            error.to_string().contains("not distkit's"),
            "{foreign:?}: {error}"
        );
        let kept: String = bounded(client.get(&state)).await.unwrap();
        assert_eq!(kept, foreign);
    }
}

/// The keys a limiter builds from its precomputed head are those of `redis_key`, escapes
/// included.
#[test]
fn keys_built_from_the_limiters_head_are_the_documented_keys() {
    for prefix in ["api", "a{b}", "50%", "}{%"] {
        let head = KeyHead::new(&key(prefix));
        for k in ["k", "tenant-42", "{x}", "%7B", ""] {
            let Ok(k) = DistkitRedisKey::new(k.to_owned()) else {
                continue;
            };
            for part in ["gcra", "sw", "sw:total"] {
                assert_eq!(head.key(&k, part), redis_key(&key(prefix), &k, part));
            }
        }
    }
}
