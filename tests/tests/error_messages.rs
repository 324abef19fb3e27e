//! Errors about one key name it, against a real Redis: a counter's wrong-typed hash and its
//! unknown outcome, every contention error of a lock and a lost lease, a lock key of the
//! wrong type, and a limiter's transport failure, which also says whether the cost may have
//! been charged.

mod common;

use std::time::Duration;

use common::{bounded, client, fresh_key, key};
use distkit::counter::{CounterOptions, CounterTrait, StrictCounter};
use distkit::lock::{LockError, LockOptions, Mutex};
use distkit::ratelimit::{GcraLimiter, GcraOptions, GcraRate};
use distkit::{ConnectOptions, DistkitError, DistkitRedisKey};
use distkit_test_support::{Direction, Proxy, TestRedis};

/// A client through `proxy` whose commands time out after 300 ms.
#[expect(clippy::expect_used, reason = "a test helper fails its test")]
async fn impatient_client(proxy: &Proxy) -> distkit::fred::clients::Client {
    bounded(
        ConnectOptions::new(proxy.url())
            .command_timeout(Duration::from_millis(300))
            .connect(),
    )
    .await
    .expect("connect through the proxy")
}

fn quoted(key: &DistkitRedisKey) -> String {
    format!("{:?}", key.as_str())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_counter_error_about_one_key_names_it() {
    let redis = TestRedis::start_standalone();
    let prefix = fresh_key();
    let counter = StrictCounter::new(
        CounterOptions::builder(prefix.clone(), client(&redis).await)
            .shards(1)
            .build(),
    );
    let k = key("tenant-42");
    bounded(counter.inc(&k, 1)).await.unwrap();
    // Something else overwrites the prefix's hash with a string.
    let values = distkit_core::key_schema::counter_values(&prefix);
    assert_eq!(redis.cli(&["SET", &values, "foreign"]), "OK");
    for error in [
        bounded(counter.inc(&k, 1)).await.unwrap_err(),
        bounded(counter.get(&k)).await.unwrap_err(),
        bounded(counter.set(&k, 5)).await.unwrap_err(),
    ] {
        let text = error.to_string();
        assert!(text.contains("WRONGTYPE"), "{text}");
        assert!(
            text.ends_with(&format!("(counter key {})", quoted(&k))),
            "{text}"
        );
        assert!(!error.is_transport() && !error.is_outcome_unknown());
    }
    // A batch over several keys names none of them.
    let other = key("tenant-43");
    let batch = bounded(counter.set_all(&[(&k, 1), (&other, 2)]))
        .await
        .unwrap_err()
        .to_string();
    assert!(!batch.contains("counter key"), "{batch}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_increment_with_an_unknown_outcome_names_its_key() {
    let redis = TestRedis::start_standalone();
    let proxy = Proxy::start(redis.port());
    let counter = StrictCounter::new(
        CounterOptions::builder(fresh_key(), impatient_client(&proxy).await)
            .shards(1)
            .build(),
    );
    let k = key("tenant-42");
    bounded(counter.inc(&k, 1)).await.unwrap();
    // Replies held: the increment is written, its reply never comes.
    proxy.hold(Direction::Downstream, true);
    let error = bounded(counter.inc(&k, 1)).await.unwrap_err();
    proxy.hold(Direction::Downstream, false);
    assert!(
        error.is_outcome_unknown() && error.is_timeout(),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        format!(
            "the connection failed after the command on key {} was sent; whether it was applied \
             is unknown",
            quoted(&k)
        )
    );
}

/// The contention errors and a lost lease keep the shapes the API contract gives them
/// (`AcquireFail`, `Timeout { waited }`, `RetriesExhausted { retries }`, `NotOwner`: no key
/// field, the caller holds the lock object); an error Redis reports about the lock's keys
/// names the lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_error_about_a_lock_names_it_and_contention_errors_keep_their_contract_shape() {
    let redis = TestRedis::start_standalone();
    let name = fresh_key();
    let client = client(&redis).await;
    let options = || {
        LockOptions::builder(name.clone(), client.clone())
            .ttl(Duration::from_secs(5))
            .build()
    };
    let lock = format!("\"distkit-locks:{{{}}}\"", name.as_str());
    let holder = Mutex::new(options());
    let contender = Mutex::new(options());
    let guard = bounded(holder.lock()).await.unwrap();
    let held = bounded(contender.try_lock()).await.unwrap_err();
    assert!(matches!(
        held,
        DistkitError::LockError(LockError::AcquireFail)
    ));
    assert_eq!(held.to_string(), "the lock is held by someone else");
    let retried = bounded(contender.try_lock_with_retries(1))
        .await
        .unwrap_err();
    assert!(matches!(
        retried,
        DistkitError::LockError(LockError::RetriesExhausted { retries: 1 })
    ));
    let timed_out = bounded(contender.try_lock_for(Duration::from_millis(150)))
        .await
        .unwrap_err();
    assert!(
        matches!(timed_out, DistkitError::LockError(LockError::Timeout { waited }) if waited >= Duration::from_millis(150)),
        "{timed_out:?}"
    );
    // The lease is taken over behind the guard's back.
    let owner = distkit_core::key_schema::lock_owner(&key("distkit-locks"), &name);
    assert_eq!(redis.cli(&["SET", &owner, "intruder"]), "OK");
    let lost = bounded(guard.extend()).await.unwrap_err();
    assert!(matches!(lost, DistkitError::LockError(LockError::NotOwner)));
    drop(guard);
    // A lock key of the wrong type: the script's error names the lock.
    assert_eq!(redis.cli(&["DEL", &owner]), "1");
    assert_eq!(redis.cli(&["HSET", &owner, "a", "b"]), "1");
    let wrong = bounded(contender.try_lock()).await.unwrap_err().to_string();
    assert!(wrong.contains("WRONGTYPE"), "{wrong}");
    assert!(wrong.ends_with(&format!("(lock {lock})")), "{wrong}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limiter_transport_error_names_the_key_and_says_the_cost_may_have_been_charged() {
    let redis = TestRedis::start_standalone();
    let proxy = Proxy::start(redis.port());
    let prefix = fresh_key();
    let limiter = GcraLimiter::new(GcraOptions::new(
        prefix.clone(),
        impatient_client(&proxy).await,
    ));
    let rate = GcraRate::per_second(100, 100).unwrap();
    let k = key("user-1");
    assert!(
        bounded(limiter.check(&k, &rate, 1))
            .await
            .unwrap()
            .is_allowed()
    );
    proxy.hold(Direction::Downstream, true);
    let charged: DistkitError = bounded(limiter.check(&k, &rate, 1)).await.unwrap_err();
    let peeked: DistkitError = bounded(limiter.peek(&k, &rate)).await.unwrap_err();
    proxy.hold(Direction::Downstream, false);
    let named = format!("(rate limiter {:?}, key \"user-1\")", prefix.as_str());
    let text = charged.to_string();
    assert!(
        text.ends_with(&format!(
            "{named}: outcome unknown, the cost may have been charged"
        )),
        "{text}"
    );
    assert!(charged.is_outcome_unknown() && charged.is_timeout());
    let text = peeked.to_string();
    assert!(
        text.ends_with(&format!("{named}: nothing charged, a peek charges nothing")),
        "{text}"
    );
}
