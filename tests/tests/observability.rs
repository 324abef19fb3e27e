//! Observability: compact `Debug` output of the primitives, and the metrics they record
//! through the `metrics` facade (feature `metrics`).

mod common;

use std::sync::OnceLock;
use std::time::Duration;

use common::{bounded, client, fresh_key, key};
use distkit::counter::{CounterOptions, LaxCounter, StrictCounter};
use distkit::icounter::{
    LaxInstanceAwareCounter, LaxInstanceAwareCounterOptions, StrictInstanceAwareCounter,
    StrictInstanceAwareCounterOptions,
};
use distkit::lock::{LockOptions, Mutex, RwLock};
use distkit::ratelimit::{FailurePolicy, GcraLimiter, GcraOptions, GcraRate};
use distkit_test_support::TestRedis;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use metrics_util::{CompositeKey, MetricKind};

/// The longest `Debug` output a primitive may print.
const SHORT: usize = 300;

fn assert_short(what: &str, debug: &str, names: &str) {
    assert!(
        debug.len() < SHORT,
        "{what}'s Debug is {} chars: {debug}",
        debug.len()
    );
    assert!(
        debug.contains(names),
        "{what}'s Debug names no {names:?}: {debug}"
    );
}

#[tokio::test]
async fn every_primitive_prints_a_short_debug_that_names_its_prefix_or_lock() {
    let redis = TestRedis::start();
    let client = client(&redis).await;
    let prefix = fresh_key();
    let name = prefix.as_str();

    let strict = StrictCounter::new(CounterOptions::new(prefix.clone(), client.clone()));
    assert_short("StrictCounter", &format!("{strict:?}"), name);

    let lax = LaxCounter::new(CounterOptions::new(prefix.clone(), client.clone()));
    let warm = key("warm");
    bounded(lax.inc(&warm, 1)).await.unwrap();
    bounded(lax.inc(&warm, 1)).await.unwrap();
    let debug = format!("{lax:?}");
    assert_short("LaxCounter", &debug, name);
    assert!(debug.contains("pending_keys"), "{debug}");
    bounded(lax.flush()).await.unwrap();
    assert!(format!("{lax:?}").contains("pending_keys: 0"), "{lax:?}");

    let icounter = StrictInstanceAwareCounter::new(StrictInstanceAwareCounterOptions::new(
        prefix.clone(),
        client.clone(),
    ));
    assert_short("StrictInstanceAwareCounter", &format!("{icounter:?}"), name);
    let lax_icounter = LaxInstanceAwareCounter::new(LaxInstanceAwareCounterOptions::new(
        prefix.clone(),
        client.clone(),
    ));
    assert_short(
        "LaxInstanceAwareCounter",
        &format!("{lax_icounter:?}"),
        name,
    );

    let mutex = Mutex::new(LockOptions::new(prefix.clone(), client.clone()));
    assert_short("Mutex", &format!("{mutex:?}"), name);
    let guard = bounded(mutex.lock()).await.unwrap();
    let debug = format!("{guard:?}");
    assert_short("MutexGuard", &debug, name);
    assert!(debug.contains("Acquired"), "{debug}");
    bounded(guard.release()).await.unwrap();

    let rwlock = RwLock::new(LockOptions::new(prefix.clone(), client));
    assert_short("RwLock", &format!("{rwlock:?}"), name);
    let reader = bounded(rwlock.read()).await.unwrap();
    assert_short("RwLockReadGuard", &format!("{reader:?}"), name);
    bounded(reader.release()).await.unwrap();
    let writer = bounded(rwlock.write()).await.unwrap();
    assert_short("RwLockWriteGuard", &format!("{writer:?}"), name);
    bounded(writer.release()).await.unwrap();
}

/// The process-wide debugging recorder (one per test binary; only the test below reads it).
#[expect(clippy::unwrap_used, reason = "a test helper fails its test")]
fn snapshotter() -> &'static Snapshotter {
    static SNAPSHOTTER: OnceLock<Snapshotter> = OnceLock::new();
    SNAPSHOTTER.get_or_init(|| {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        // Only this binary installs a recorder, once.
        recorder.install().unwrap();
        snapshotter
    })
}

/// The metrics recorded so far whose `label` is `value`: (kind, name, other labels, value).
type Recorded = Vec<(MetricKind, String, Vec<(String, String)>, DebugValue)>;

fn labelled(snapshot: Vec<(CompositeKey, DebugValue)>, label: &str, value: &str) -> Recorded {
    snapshot
        .into_iter()
        .filter(|(key, _)| {
            key.key()
                .labels()
                .any(|l| l.key() == label && l.value() == value)
        })
        .map(|(key, recorded)| {
            let labels = key
                .key()
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            (key.kind(), key.key().name().to_owned(), labels, recorded)
        })
        .collect()
}

fn take(label: &str, value: &str) -> Recorded {
    let snapshot = snapshotter()
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| (key, value))
        .collect();
    labelled(snapshot, label, value)
}

fn find<'r>(recorded: &'r Recorded, name: &str, label: (&str, &str)) -> Option<&'r DebugValue> {
    recorded
        .iter()
        .find(|(_, metric, labels, _)| {
            metric == name
                && labels
                    .iter()
                    .any(|(key, value)| key == label.0 && value == label.1)
        })
        .map(|(_, _, _, value)| value)
}

#[tokio::test]
async fn a_lock_acquisition_records_its_wait_a_lax_flush_its_lag_and_pending_keys_and_a_limiter_its_calls()
 {
    let snapshotter = snapshotter();
    drop(snapshotter.snapshot());
    let redis = TestRedis::start();
    let client = client(&redis).await;

    // A lock in a namespace of its own: the wait of a granted and of a refused attempt.
    let namespace = fresh_key();
    let options = LockOptions::builder(fresh_key(), client.clone())
        .namespace(namespace.clone())
        .build();
    let mutex = Mutex::new(options);
    let guard = bounded(mutex.lock()).await.unwrap();
    assert!(bounded(mutex.try_lock()).await.is_err());
    bounded(guard.release()).await.unwrap();
    let recorded = take("namespace", namespace.as_str());
    for outcome in ["acquired", "held"] {
        match find(&recorded, "distkit_lock_wait_seconds", ("outcome", outcome)) {
            Some(DebugValue::Histogram(waits)) => {
                assert_eq!(waits.len(), 1, "{outcome}: {recorded:?}");
                assert!(waits.iter().all(|wait| wait.0 >= 0.0), "{waits:?}");
            }
            other => panic!("no {outcome} wait recorded: {other:?} in {recorded:?}"),
        }
    }
    assert!(
        recorded
            .iter()
            .all(|(_, _, labels, _)| labels.contains(&("kind".to_owned(), "mutex".to_owned()))),
        "{recorded:?}"
    );

    // A lax counter with a long lag, flushed by hand: the lag of its oldest delta, and no
    // key left pending. Its client gives up on a command after 1 s.
    let prefix = fresh_key();
    let quick = bounded(
        distkit::ConnectOptions::new(redis.url())
            .command_timeout(Duration::from_secs(1))
            .connect(),
    )
    .await
    .unwrap();
    let mut options = CounterOptions::new(prefix.clone(), quick);
    options.allowed_lag = Duration::from_secs(3_600);
    let lax = LaxCounter::new(options);
    let (a, b) = (key("a"), key("b"));
    bounded(lax.inc(&a, 1)).await.unwrap();
    bounded(lax.inc(&b, 1)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(30)).await;
    bounded(lax.inc(&a, 1)).await.unwrap();
    bounded(lax.flush()).await.unwrap();
    let recorded = take("prefix", prefix.as_str());
    let label = ("counter", "lax");
    match find(&recorded, "distkit_lax_flush_lag_seconds", label) {
        Some(DebugValue::Histogram(lags)) => {
            assert_eq!(lags.len(), 1, "{recorded:?}");
            assert!(
                lags.iter().all(|lag| lag.0 >= 0.03),
                "the lag counts from the oldest delta: {lags:?}"
            );
        }
        other => panic!("no flush lag recorded: {other:?} in {recorded:?}"),
    }
    assert_eq!(
        find(&recorded, "distkit_lax_pending_keys", label),
        Some(&DebugValue::Gauge(0.0.into())),
        "{recorded:?}"
    );
    assert_eq!(
        find(&recorded, "distkit_lax_flush_failures_total", label),
        None,
        "{recorded:?}"
    );

    // Redis stalled: the flush fails, is counted, and the key stays pending.
    bounded(lax.inc(&a, 1)).await.unwrap();
    redis.pause();
    let flushed = bounded(lax.flush()).await;
    redis.resume();
    assert!(flushed.is_err(), "{flushed:?}");
    let recorded = take("prefix", prefix.as_str());
    assert_eq!(
        find(&recorded, "distkit_lax_flush_failures_total", label),
        Some(&DebugValue::Counter(1)),
        "{recorded:?}"
    );
    assert_eq!(
        find(&recorded, "distkit_lax_pending_keys", label),
        Some(&DebugValue::Gauge(1.0.into())),
        "{recorded:?}"
    );
    // Once Redis is back, the next flush delivers the kept delta.
    bounded(lax.flush()).await.unwrap();
    let recorded = take("prefix", prefix.as_str());
    assert_eq!(
        find(&recorded, "distkit_lax_pending_keys", label),
        Some(&DebugValue::Gauge(0.0.into())),
        "{recorded:?}"
    );

    // A rate limiter failing open: its calls by outcome, and one call Redis did not answer
    // within the deadline, counted as failed open.
    let prefix = fresh_key();
    let open = FailurePolicy::fail_open(Duration::from_millis(50)).unwrap();
    let limiter = GcraLimiter::new(
        GcraOptions::builder(prefix.clone(), client.clone())
            .failure_policy(open)
            .build(),
    );
    let rate = GcraRate::per_second(1, 1).unwrap();
    assert!(
        bounded(limiter.check(&a, &rate, 1))
            .await
            .unwrap()
            .is_allowed()
    );
    assert!(
        !bounded(limiter.check(&a, &rate, 1))
            .await
            .unwrap()
            .is_allowed()
    );
    redis.pause();
    let failed_open = bounded(limiter.check(&b, &rate, 1)).await;
    redis.resume();
    assert!(failed_open.unwrap().is_allowed());
    let recorded = take("prefix", prefix.as_str());
    for outcome in ["admitted", "rejected"] {
        assert_eq!(
            find(
                &recorded,
                "distkit_ratelimit_calls_total",
                ("outcome", outcome)
            ),
            Some(&DebugValue::Counter(1)),
            "{outcome}: {recorded:?}"
        );
    }
    assert_eq!(
        find(
            &recorded,
            "distkit_ratelimit_failed_open_total",
            ("reason", "deadline")
        ),
        Some(&DebugValue::Counter(1)),
        "{recorded:?}"
    );
    assert!(
        recorded
            .iter()
            .all(|(_, _, labels, _)| labels.contains(&("limiter".to_owned(), "gcra".to_owned()))),
        "{recorded:?}"
    );
}
