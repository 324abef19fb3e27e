//! The semaphore through the facade, against a private Redis.

mod common;

use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};

use common::{bounded, client, eventually, fresh_key};
use distkit::fred::clients::Client;
use distkit::semaphore::{LockError, LockGuardState, Semaphore, SemaphoreOptions, SemaphorePermit};
use distkit::{DistkitError, DistkitRedisKey};
use distkit_test_support::TestRedis;

#[expect(clippy::panic, reason = "a test helper fails its test")]
fn lock_error(error: DistkitError) -> LockError {
    match error {
        DistkitError::LockError(error) => error,
        other => panic!("expected a lock error, got {other:?}"),
    }
}

fn semaphore(name: &DistkitRedisKey, client: Client, permits: u32) -> Arc<Semaphore> {
    Semaphore::new(
        SemaphoreOptions::builder(name.clone(), client, permits)
            .ttl(Duration::from_secs(5))
            .retry_interval(Duration::from_millis(20))
            .build(),
    )
}

/// The Redis name of one of the semaphore's keys.
fn redis_key(name: &DistkitRedisKey, part: &str) -> String {
    format!("distkit-semaphores:{{{name}}}:sem:{part}")
}

/// The keys of the semaphore `name` (asked of the node that owns its slot, in a cluster).
fn keys_of(redis: &TestRedis, name: &DistkitRedisKey) -> Vec<String> {
    let node = redis.node_of(&redis_key(name, "fence"));
    redis
        .node_cli(node, &["KEYS", &format!("*{name}*")])
        .lines()
        .filter(|key| !key.is_empty())
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn options_have_the_documented_defaults_and_builder() {
    let redis = TestRedis::start();
    let client = client(&redis).await;
    let name = fresh_key();
    let defaults = SemaphoreOptions::new(name.clone(), client.clone(), 4);
    assert_eq!(defaults.namespace.as_str(), "distkit-semaphores");
    assert_eq!(defaults.permits, 4);
    assert_eq!(defaults.ttl, Duration::from_secs(30));
    assert_eq!(defaults.retry_interval, Duration::from_millis(50));
    assert_eq!(defaults.max_wait, None);
    assert!(defaults.replica_acks.is_none());
    assert!(!defaults.loss_quarantine);
    assert!(defaults.validate().is_ok());
    let built = SemaphoreOptions::builder(name, client, 2)
        .namespace(fresh_key())
        .ttl(Duration::from_secs(2))
        .max_wait(Duration::from_secs(1))
        .retry_interval(Duration::from_millis(5))
        .loss_quarantine(true)
        .replica_acks(distkit::ReplicaAcks::new(1, Duration::from_millis(100)))
        .build();
    assert_eq!(built.ttl, Duration::from_secs(2));
    assert_eq!(built.max_wait, Some(Duration::from_secs(1)));
    assert_eq!(built.retry_interval, Duration::from_millis(5));
    assert!(built.loss_quarantine);
    assert_eq!(built.replica_acks.map(|acks| acks.replicas), Some(1));
}

#[tokio::test]
async fn invalid_requests_and_options_fail_every_call_before_any_io() {
    let redis = TestRedis::start();
    let client = client(&redis).await;
    let name = fresh_key();
    let valid = semaphore(&name, client.clone(), 3);
    for n in [0, 4, u32::MAX] {
        let expected = LockError::InvalidPermits {
            requested: n,
            permits: 3,
        };
        let calls = [
            bounded(valid.acquire_many(n)).await.unwrap_err(),
            bounded(valid.try_acquire_many(n)).await.unwrap_err(),
            bounded(valid.try_acquire_many_for(n, Duration::from_secs(1)))
                .await
                .unwrap_err(),
        ];
        for error in calls {
            assert_eq!(lock_error(error), expected);
        }
    }
    let options = |permits: u32| SemaphoreOptions::builder(name.clone(), client.clone(), permits);
    let invalid = [
        options(0).build(),
        options(3).ttl(Duration::ZERO).build(),
        options(3).ttl(Duration::from_micros(500)).build(),
        options(3).ttl(Duration::from_secs(31 * 24 * 3600)).build(),
        options(3)
            .retry_interval(Duration::from_secs(2 * 3600))
            .build(),
    ];
    for options in invalid {
        assert!(options.validate().is_err(), "{options:?} validated");
        let semaphore = Semaphore::new(options.clone());
        let errors = [
            bounded(semaphore.acquire()).await.unwrap_err(),
            bounded(semaphore.try_acquire()).await.unwrap_err(),
            bounded(semaphore.try_acquire_for(Duration::from_secs(1)))
                .await
                .unwrap_err(),
            bounded(semaphore.available_permits()).await.unwrap_err(),
        ];
        let expected = options.validate().unwrap_err().to_string();
        for error in errors {
            assert_eq!(error.to_string(), expected);
        }
    }
    assert!(matches!(
        options(0).build().validate(),
        Err(DistkitError::InvalidOption(_))
    ));
    // Nothing reached Redis: no key of this semaphore exists.
    assert_eq!(keys_of(&redis, &name), Vec::<String>::new());
}

#[tokio::test]
async fn permits_are_counted_released_and_fenced() {
    let redis = TestRedis::start();
    let client = client(&redis).await;
    let name = fresh_key();
    let semaphore = semaphore(&name, client.clone(), 3);
    assert_eq!(bounded(semaphore.available_permits()).await.unwrap(), 3);

    let two = bounded(semaphore.acquire_many(2)).await.unwrap();
    assert_eq!(two.permits(), 2);
    assert_eq!(two.get_on_attempt(), 0);
    assert_eq!(two.get_state().await, LockGuardState::Acquired);
    assert_eq!(bounded(semaphore.available_permits()).await.unwrap(), 1);
    assert!(matches!(
        lock_error(bounded(semaphore.try_acquire_many(2)).await.unwrap_err()),
        LockError::AcquireFail
    ));
    let one = bounded(semaphore.try_acquire()).await.unwrap();
    assert!(one.fencing_token() > two.fencing_token());
    assert_eq!(bounded(semaphore.available_permits()).await.unwrap(), 0);
    let waited = lock_error(
        bounded(semaphore.try_acquire_for(Duration::from_millis(150)))
            .await
            .unwrap_err(),
    );
    assert!(matches!(waited, LockError::Timeout { .. }), "{waited:?}");
    // `max_wait` bounds acquire() and acquire_many().
    let bounded_handle = Semaphore::new(
        SemaphoreOptions::builder(name.clone(), client.clone(), 3)
            .ttl(Duration::from_secs(5))
            .max_wait(Duration::from_millis(150))
            .build(),
    );
    for error in [
        bounded(bounded_handle.acquire()).await.unwrap_err(),
        bounded(bounded_handle.acquire_many(3)).await.unwrap_err(),
    ] {
        let error = lock_error(error);
        assert!(matches!(error, LockError::Timeout { .. }), "{error:?}");
    }
    // The timed-out waiters leave the line in the background.
    eventually("the timed-out waiter left", || async {
        redis.cli(&["EXISTS", &redis_key(&name, "queue")]) == "0"
    })
    .await;
    bounded(one.extend()).await.unwrap();

    assert_eq!(
        bounded(two.release()).await.unwrap(),
        LockGuardState::Released
    );
    assert_eq!(bounded(semaphore.available_permits()).await.unwrap(), 2);
    let again = bounded(semaphore.try_acquire_many(2)).await.unwrap();
    assert!(again.fencing_token() > one.fencing_token());
    assert_eq!(
        bounded(one.release()).await.unwrap(),
        LockGuardState::Released
    );
    // Dropping gives the permits back (in the background on this current-thread runtime;
    // before the drop returns on a multi-thread one: see the test below).
    drop(again);
    eventually("the dropped permits came back", || async {
        semaphore.available_permits().await.ok() == Some(3)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_permit_is_released_before_the_drop_returns() {
    let redis = TestRedis::start();
    let name = fresh_key();
    let semaphore = semaphore(&name, client(&redis).await, 2);
    let permit = bounded(semaphore.acquire_many(2)).await.unwrap();
    drop(permit);
    assert_eq!(bounded(semaphore.available_permits()).await.unwrap(), 2);
    // The holders' keys went with the last holder; only the fence is left, with an expiry.
    assert_eq!(redis.cli(&["EXISTS", &redis_key(&name, "holders")]), "0");
    assert_eq!(redis.cli(&["EXISTS", &redis_key(&name, "held")]), "0");
}

#[tokio::test]
async fn a_handle_with_another_permit_count_gets_a_clear_error_never_another_bound() {
    let redis = TestRedis::start();
    let client = client(&redis).await;
    let name = fresh_key();
    let three = semaphore(&name, client.clone(), 3);
    let five = semaphore(&name, client.clone(), 5);
    let held = bounded(three.acquire_many(3)).await.unwrap();
    let expected = LockError::PermitCountMismatch {
        key: format!("distkit-semaphores:{{{}}}", name.as_str()),
        stored: 3,
        configured: 5,
    };
    assert_eq!(
        lock_error(bounded(five.try_acquire()).await.unwrap_err()),
        expected
    );
    assert_eq!(
        lock_error(bounded(five.acquire_many(2)).await.unwrap_err()),
        expected
    );
    assert_eq!(
        lock_error(bounded(five.available_permits()).await.unwrap_err()),
        expected
    );
    let message = DistkitError::from(expected.clone()).to_string();
    assert_eq!(
        message,
        format!(
            "the semaphore \"distkit-semaphores:{{{}}}\" is in use with 3 permits, but this \
             handle was configured with 5",
            name.as_str()
        )
    );
    // The mismatched handle took nothing: the three permits are still the only ones held.
    assert_eq!(bounded(three.available_permits()).await.unwrap(), 0);
    // Waiters fix the count too.
    let waiter = {
        let three = Arc::clone(&three);
        tokio::spawn(async move { three.acquire().await })
    };
    eventually("the waiter queued", || async {
        redis.cli(&["ZCARD", &redis_key(&name, "queue")]) == "1"
    })
    .await;
    drop(held);
    let waiter_permit = bounded(waiter).await.unwrap().unwrap();
    assert_eq!(
        lock_error(bounded(five.try_acquire()).await.unwrap_err()),
        expected
    );
    bounded(waiter_permit.release()).await.unwrap();
    // Idle again: the key may be used with another count now.
    let five_permits = bounded(five.try_acquire_many(5)).await.unwrap();
    assert_eq!(five_permits.permits(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_acquire_many_is_served_before_later_smaller_requests() {
    let redis = TestRedis::start();
    let name = fresh_key();
    let semaphore = semaphore(&name, client(&redis).await, 3);
    let queue = redis_key(&name, "queue");
    let mut holders = Vec::new();
    for _ in 0..3 {
        holders.push(bounded(semaphore.acquire()).await.unwrap());
    }
    // The grant order, as the waiters saw it.
    let order = Arc::new(StdMutex::new(Vec::new()));
    let spawn_waiter = |label: &'static str, n: u32| {
        let semaphore = Arc::clone(&semaphore);
        let order = Arc::clone(&order);
        tokio::spawn(async move {
            let permit = semaphore.acquire_many(n).await?;
            order
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push((label, permit.fencing_token()));
            // Hold briefly so the next grants are decided by the line, not by luck.
            tokio::time::sleep(Duration::from_millis(100)).await;
            permit.release().await
        })
    };
    let big = spawn_waiter("big", 3);
    eventually("the big request queued", || async {
        redis.cli(&["ZCARD", &queue]) == "1"
    })
    .await;
    let mut small = Vec::new();
    for _ in 0..3 {
        small.push(spawn_waiter("small", 1));
    }
    eventually("the small requests queued", || async {
        redis.cli(&["ZCARD", &queue]) == "4"
    })
    .await;
    // One permit comes free: the small requests fit, but the big one is ahead of them.
    let first = holders.pop().unwrap();
    bounded(first.release()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        order
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_empty(),
        "a later request overtook the waiting acquire_many(3)"
    );
    // A one-shot attempt does not jump the line either.
    assert!(matches!(
        lock_error(bounded(semaphore.try_acquire()).await.unwrap_err()),
        LockError::AcquireFail
    ));
    assert_eq!(bounded(semaphore.available_permits()).await.unwrap(), 1);
    for holder in holders.drain(..) {
        bounded(holder.release()).await.unwrap();
    }
    assert_eq!(
        bounded(big).await.unwrap().unwrap(),
        LockGuardState::Released
    );
    for waiter in small {
        assert_eq!(
            bounded(waiter).await.unwrap().unwrap(),
            LockGuardState::Released
        );
    }
    let order = order
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    // Tokens rise in grant order: the big request was granted first.
    let mut order = order;
    order.sort_by_key(|(_, token)| *token);
    assert_eq!(order.len(), 4);
    assert_eq!(
        order.first().map(|(label, _)| *label),
        Some("big"),
        "{order:?}"
    );
}

/// Starts a `semaphore_holder` child that asks for `n` of `permits`.
#[expect(clippy::unwrap_used, reason = "a test helper fails its test")]
fn start_holder(
    redis: &TestRedis,
    name: &DistkitRedisKey,
    permits: u32,
    n: u32,
    ttl: Duration,
) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_semaphore_holder"))
        .args([
            redis.url(),
            name.as_str(),
            &permits.to_string(),
            &n.to_string(),
            &ttl.as_millis().to_string(),
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

/// Reads the child's `acquired <token>` line, off the runtime.
#[expect(clippy::unwrap_used, reason = "a test helper fails its test")]
async fn acquired_line(child: &mut std::process::Child) -> String {
    let stdout = child.stdout.take().unwrap();
    bounded(tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).unwrap();
        line
    }))
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_holders_permits_come_back_when_its_lease_runs_out() {
    let redis = TestRedis::start();
    let name = fresh_key();
    let ttl = Duration::from_millis(600);
    let mut child = start_holder(&redis, &name, 2, 2, ttl);
    let line = acquired_line(&mut child).await;
    assert!(line.starts_with("acquired "), "{line:?}");
    let child_token: u64 = line.trim().rsplit(' ').next().unwrap().parse().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    let killed = Instant::now();
    let semaphore = semaphore(&name, client(&redis).await, 2);
    assert!(matches!(
        lock_error(bounded(semaphore.try_acquire()).await.unwrap_err()),
        LockError::AcquireFail
    ));
    let permit = bounded(semaphore.acquire_many(2)).await.unwrap();
    let waited = killed.elapsed();
    // The child renewed every ttl/3: its lease had between 2/3 of a ttl and a ttl left.
    assert!(
        waited >= Duration::from_millis(300),
        "granted while the crashed holder's lease still ran: {waited:?}"
    );
    assert!(
        waited <= ttl + Duration::from_secs(3),
        "the crashed holder's permits came back only after {waited:?}"
    );
    assert!(permit.fencing_token() > child_token);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_waiter_leaves_the_line_within_its_heartbeat_window() {
    let redis = TestRedis::start();
    let name = fresh_key();
    let semaphore = semaphore(&name, client(&redis).await, 2);
    let holder = bounded(semaphore.acquire()).await.unwrap();
    // A child waits for both permits (its place in line lasts 250 ms after each attempt).
    let mut child = start_holder(&redis, &name, 2, 2, Duration::from_secs(5));
    let queue = redis_key(&name, "queue");
    eventually("the child queued", || async {
        redis.cli(&["ZCARD", &queue]) == "1"
    })
    .await;
    child.kill().unwrap();
    child.wait().unwrap();
    let killed = Instant::now();
    // While the dead waiter's place lasts, nobody gets the free permit past it...
    // ...and once it ran out, a one-shot attempt drops it and takes the free permit.
    let permit = loop {
        match bounded(semaphore.try_acquire()).await {
            Ok(permit) => break permit,
            Err(error) => assert!(matches!(lock_error(error), LockError::AcquireFail)),
        }
        assert!(
            killed.elapsed() < Duration::from_secs(3),
            "the crashed waiter still blocked the line"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(redis.cli(&["EXISTS", &queue]), "0");
    drop(permit);
    drop(holder);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_acquisition_leaves_the_line_and_takes_nothing() {
    let redis = TestRedis::start();
    let name = fresh_key();
    let semaphore = semaphore(&name, client(&redis).await, 2);
    let holder = bounded(semaphore.acquire_many(2)).await.unwrap();
    let queue = redis_key(&name, "queue");
    let cancelled = tokio::time::timeout(Duration::from_millis(200), semaphore.acquire()).await;
    assert!(cancelled.is_err());
    eventually("the cancelled waiter left", || async {
        redis.cli(&["EXISTS", &queue]) == "0"
    })
    .await;
    let bounded_wait = lock_error(
        bounded(semaphore.try_acquire_for(Duration::from_millis(100)))
            .await
            .unwrap_err(),
    );
    assert!(matches!(bounded_wait, LockError::Timeout { .. }));
    eventually("the timed-out waiter left", || async {
        redis.cli(&["EXISTS", &queue]) == "0"
    })
    .await;
    bounded(holder.release()).await.unwrap();
    assert_eq!(bounded(semaphore.available_permits()).await.unwrap(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_wakes_a_waiter_without_waiting_for_its_poll() {
    let redis = TestRedis::start();
    let name = fresh_key();
    // A poll gap far longer than the test: only a notification can wake the waiter in time.
    let slow = Semaphore::new(
        SemaphoreOptions::builder(name.clone(), client(&redis).await, 1)
            .retry_interval(Duration::from_secs(30))
            .build(),
    );
    let holder = bounded(slow.acquire()).await.unwrap();
    let waiter = {
        let slow = Arc::clone(&slow);
        tokio::spawn(async move { slow.acquire().await })
    };
    let queue = redis_key(&name, "queue");
    eventually("the waiter queued", || async {
        redis.cli(&["ZCARD", &queue]) == "1"
    })
    .await;
    // Let the waiter subscribe and go to sleep on its (long) poll gap.
    tokio::time::sleep(Duration::from_millis(200)).await;
    bounded(holder.release()).await.unwrap();
    let permit = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("the release notification did not wake the waiter")
        .unwrap()
        .unwrap();
    assert_eq!(permit.get_on_attempt(), 2);
}

#[tokio::test]
async fn a_paused_redis_makes_the_permit_lost_and_its_stale_release_gives_back_nothing() {
    let redis = TestRedis::start();
    let name = fresh_key();
    let ttl = Duration::from_millis(600);
    let semaphore = Semaphore::new(
        SemaphoreOptions::builder(name.clone(), client(&redis).await, 1)
            .ttl(ttl)
            .build(),
    );
    let permit = bounded(semaphore.acquire()).await.unwrap();
    redis.pause();
    tokio::time::sleep(ttl + Duration::from_millis(100)).await;
    let state = permit.get_state().await;
    redis.resume();
    assert_eq!(state, LockGuardState::Lost);
    bounded(permit.lost()).await;
    // The lease ran out in Redis too: a new holder gets the permit, and the stale release
    // does not give it back.
    let next = bounded(semaphore.acquire()).await.unwrap();
    assert!(matches!(
        lock_error(bounded(permit.extend()).await.unwrap_err()),
        LockError::NotOwner
    ));
    assert_eq!(
        bounded(permit.release()).await.unwrap(),
        LockGuardState::Lost
    );
    assert_eq!(bounded(semaphore.available_permits()).await.unwrap(), 0);
    assert_eq!(next.get_state().await, LockGuardState::Acquired);
}

#[tokio::test]
async fn every_key_of_a_semaphore_has_an_expiry() {
    let redis = TestRedis::start();
    let name = fresh_key();
    let semaphore = semaphore(&name, client(&redis).await, 1);
    let holder = bounded(semaphore.acquire()).await.unwrap();
    let waiter = {
        let semaphore = Arc::clone(&semaphore);
        tokio::spawn(async move { semaphore.acquire().await })
    };
    eventually("the waiter queued", || async {
        redis.cli(&["ZCARD", &redis_key(&name, "queue")]) == "1"
    })
    .await;
    let no_expiry = |redis: &TestRedis| {
        keys_of(redis, &name)
            .into_iter()
            .filter(|key| redis.cli(&["PTTL", key]).parse::<i64>().unwrap_or(-1) < 0)
            .collect::<Vec<_>>()
    };
    assert_eq!(no_expiry(&redis), Vec::<String>::new());
    bounded(holder.release()).await.unwrap();
    let permit = bounded(waiter).await.unwrap().unwrap();
    assert_eq!(no_expiry(&redis), Vec::<String>::new());
    bounded(permit.release()).await.unwrap();
    // Released: only the fence is left, kept for its retention.
    assert_eq!(keys_of(&redis, &name), vec![redis_key(&name, "fence")]);
    assert_eq!(no_expiry(&redis), Vec::<String>::new());
    // The loss quarantine's keys expire too (on this fresh server the first grant waits
    // until it has been up for a ttl and a second).
    let guarded = Semaphore::new(
        SemaphoreOptions::builder(name.clone(), client(&redis).await, 1)
            .ttl(Duration::from_millis(300))
            .retry_interval(Duration::from_millis(20))
            .loss_quarantine(true)
            .build(),
    );
    let permit = bounded(guarded.acquire()).await.unwrap();
    assert_eq!(no_expiry(&redis), Vec::<String>::new());
    bounded(permit.release()).await.unwrap();
    assert!(keys_of(&redis, &name).contains(&redis_key(&name, "epoch")));
    assert_eq!(no_expiry(&redis), Vec::<String>::new());
}

/// Takes `n` permits once Redis answers again (errors while the client reconnects are
/// retried).
async fn acquire_eventually(semaphore: &Semaphore, n: u32) -> SemaphorePermit {
    let started = Instant::now();
    loop {
        match semaphore
            .try_acquire_many_for(n, Duration::from_secs(1))
            .await
        {
            Ok(permit) => return permit,
            Err(error) => assert!(
                started.elapsed() < common::LIMIT,
                "no permits within {:?}: {error}",
                common::LIMIT
            ),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_restart_without_persistence_tokens_still_rise_and_with_loss_quarantine_the_old_holder_is_lost_first()
 {
    let mut redis = TestRedis::start_standalone();
    let name = fresh_key();
    let ttl = Duration::from_millis(1500);
    let build = |client, quarantine: bool| {
        Semaphore::new(
            SemaphoreOptions::builder(name.clone(), client, 2)
                .ttl(ttl)
                .retry_interval(Duration::from_millis(20))
                .loss_quarantine(quarantine)
                .build(),
        )
    };
    let holder = build(client(&redis).await, true);
    let contender = build(client(&redis).await, true);
    // On a fresh server the first grant waits until it has been up for ttl + 1 s.
    let permit = bounded(holder.acquire_many(2)).await.unwrap();
    let old_token = permit.fencing_token();
    tokio::task::block_in_place(|| redis.restart());
    let loss_at = Instant::now();
    let contending = tokio::spawn(async move {
        let permit = acquire_eventually(&contender, 2).await;
        (Instant::now(), permit)
    });
    bounded(permit.lost()).await;
    let lost = Instant::now();
    assert_eq!(permit.get_state().await, LockGuardState::Lost);
    let (granted_at, new_permit) = bounded(contending).await.unwrap();
    assert!(
        lost < granted_at,
        "the new holder was granted before the old one reported Lost"
    );
    assert!(
        granted_at.duration_since(loss_at) >= ttl,
        "granted {:?} after the loss, within one ttl",
        granted_at.duration_since(loss_at)
    );
    assert!(new_permit.fencing_token() > old_token);
    bounded(new_permit.release()).await.unwrap();

    // Without the quarantine a grant may come at once, but its token is still larger.
    let plain = build(client(&redis).await, false);
    let before = acquire_eventually(&plain, 1).await;
    let before_token = before.fencing_token();
    drop(before);
    tokio::task::block_in_place(|| redis.restart());
    let after = acquire_eventually(&plain, 1).await;
    assert!(
        after.fencing_token() > before_token,
        "{} <= {before_token}",
        after.fencing_token()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_replica_acks_a_grant_the_replicas_do_not_acknowledge_is_given_back_and_never_returned()
 {
    let topology = tokio::task::block_in_place(|| distkit_test_support::ReplicatedRedis::start(1));
    let url = topology.primary_url();
    let name = fresh_key();
    let connected = bounded(distkit::connect(&url)).await.unwrap();
    let acked = |replicas: usize| {
        Semaphore::new(
            SemaphoreOptions::builder(name.clone(), connected.clone(), 2)
                .retry_interval(Duration::from_millis(20))
                .replica_acks(distkit::ReplicaAcks::new(
                    replicas,
                    Duration::from_millis(300),
                ))
                .build(),
        )
    };
    let plain = semaphore(&name, connected.clone(), 2);
    // With the replica in sync, grants and renewals are acknowledged.
    let permit = bounded(acked(1).try_acquire()).await.unwrap();
    bounded(Box::pin(permit.extend())).await.unwrap();
    bounded(permit.release()).await.unwrap();
    // Asking for more replicas than exist: never Acquired, nothing left behind.
    let error = lock_error(bounded(acked(2).try_acquire_many(2)).await.unwrap_err());
    assert!(
        matches!(
            error,
            LockError::NotReplicated {
                acknowledged: 1,
                required: 2,
                ..
            }
        ),
        "{error:?}"
    );
    eventually("the unacknowledged grant was given back", || async {
        plain.available_permits().await.ok() == Some(2)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permit_outlives_the_runtime_that_acquired_it_and_keeps_being_renewed() {
    let redis = TestRedis::start();
    let name = fresh_key();
    let ttl = Duration::from_millis(600);
    // The client lives on this runtime; the permit is acquired on a current-thread runtime
    // (the first to use the semaphore machinery) that ends right after.
    let semaphore = Semaphore::new(
        SemaphoreOptions::builder(name.clone(), client(&redis).await, 1)
            .ttl(ttl)
            .build(),
    );
    let acquiring = Arc::clone(&semaphore);
    let permit = bounded(tokio::task::spawn_blocking(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move { acquiring.acquire().await.unwrap() })
    }))
    .await
    .unwrap();
    // Several ttls later the lease is still renewed (from distkit's background runtime).
    tokio::time::sleep(ttl * 3).await;
    assert_eq!(permit.get_state().await, LockGuardState::Acquired);
    let other = self::semaphore(&name, client(&redis).await, 1);
    assert!(matches!(
        lock_error(bounded(other.try_acquire()).await.unwrap_err()),
        LockError::AcquireFail
    ));
    assert_eq!(
        bounded(permit.release()).await.unwrap(),
        LockGuardState::Released
    );
    drop(semaphore);
    assert_eq!(bounded(other.available_permits()).await.unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_cut_off_from_redis_believes_it_holds_no_longer_than_redis_keeps_its_permits() {
    use distkit_test_support::{Direction, Proxy};
    let redis = TestRedis::start_standalone();
    let proxy = Proxy::start(redis.port());
    let name = fresh_key();
    let ttl = Duration::from_millis(900);
    let build = |client| {
        Semaphore::new(
            SemaphoreOptions::builder(name.clone(), client, 2)
                .ttl(ttl)
                .retry_interval(Duration::from_millis(10))
                .build(),
        )
    };
    let cut_off = build(bounded(distkit::connect(&proxy.url())).await.unwrap());
    let direct = build(client(&redis).await);
    let permit = bounded(cut_off.acquire_many(2)).await.unwrap();
    // Let a renewal or two go through, then cut the holder off both ways.
    tokio::time::sleep(Duration::from_millis(400)).await;
    proxy.hold(Direction::Upstream, true);
    proxy.hold(Direction::Downstream, true);
    let cut_at = Instant::now();
    let granted = bounded(direct.acquire()).await.unwrap();
    // Redis let the permits go only once the lease ran out, and the holder counts its lease
    // from when it sent its last confirmed renewal: it no longer believes it holds them.
    let state = permit.get_state().await;
    let waited = cut_at.elapsed();
    proxy.heal();
    assert_eq!(
        state,
        LockGuardState::Lost,
        "granted {waited:?} after the cut while the holder still believed it held the permits"
    );
    assert!(waited <= ttl + Duration::from_secs(3), "{waited:?}");
    assert!(granted.fencing_token() > permit.fencing_token());
}

/// The commands the semaphore runs (its scripts' commands included), for an ACL user.
const SEMAPHORE_COMMANDS: &str = "+evalsha +eval +subscribe +unsubscribe +ssubscribe \
    +sunsubscribe +publish +spublish +get +set +del +pexpire +pttl +hset +hget +hdel +hincrby \
    +time +incr +exists +zadd +zrem +zrange +zrank +zscore +zcard +zrangebyscore";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_scoped_to_the_semaphore_namespace_runs_it_with_wake_ups_by_notification() {
    let redis = TestRedis::start_standalone();
    let (namespace, name) = (fresh_key(), fresh_key());
    let user = |user: &str, rules: &[&str]| {
        let password = format!(">{user}");
        // `resetchannels` first: Redis 6.2 gives a reset user every channel and refuses a
        // pattern after that; a server without sharded pub/sub does not know its commands.
        let mut args = vec![
            "ACL",
            "SETUSER",
            user,
            "reset",
            "resetchannels",
            "on",
            password.as_str(),
        ];
        args.extend(rules);
        let sharded = redis.server_version().has_sharded_pubsub();
        args.extend(SEMAPHORE_COMMANDS.split_whitespace().filter(|rule| {
            sharded || !["+ssubscribe", "+sunsubscribe", "+spublish"].contains(rule)
        }));
        assert_eq!(redis.cli(&args), "OK");
        format!("redis://{user}:{user}@127.0.0.1:{}", redis.port())
    };
    let keys = format!("~{namespace}:*");
    let channels = format!("&{namespace}:*");
    let scoped = user("scoped", &[&keys, &channels]);
    let no_channels = user("nochannels", &[&keys]);
    // A waiter polls every 30 s: served sooner, it was woken by its notification.
    let build = |client: Client| {
        Semaphore::new(
            SemaphoreOptions::builder(name.clone(), client, 2)
                .namespace(namespace.clone())
                .retry_interval(Duration::from_secs(30))
                .build(),
        )
    };
    let connect_as = |url: String| async move { bounded(distkit::connect(&url)).await.unwrap() };
    let holder = build(connect_as(scoped.clone()).await);
    let waiter = build(connect_as(scoped).await);
    let permit = bounded(holder.acquire_many(2)).await.unwrap();
    let waiting = {
        let waiter = Arc::clone(&waiter);
        tokio::spawn(async move { waiter.acquire().await })
    };
    let queue = format!("{namespace}:{{{name}}}:sem:queue");
    eventually("the waiter queued", || async {
        redis.cli(&["ZCARD", &queue]) == "1"
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let released_at = Instant::now();
    assert_eq!(
        bounded(permit.release()).await.unwrap(),
        LockGuardState::Released
    );
    let next = bounded(waiting).await.unwrap().unwrap();
    assert!(released_at.elapsed() < Duration::from_secs(10));
    assert_eq!(bounded(waiter.available_permits()).await.unwrap(), 1);
    bounded(next.release()).await.unwrap();

    // Without the channels, a release whose announcement Redis refuses still stands.
    let muted = build(connect_as(no_channels).await);
    let permit = bounded(muted.acquire()).await.unwrap();
    let queued = {
        let muted = Arc::clone(&muted);
        tokio::spawn(async move { muted.acquire_many(2).await })
    };
    eventually("the second waiter queued", || async {
        redis.cli(&["ZCARD", &queue]) == "1"
    })
    .await;
    assert_eq!(
        bounded(permit.release()).await.unwrap(),
        LockGuardState::Released
    );
    queued.abort();
    eventually("every permit is free again", || async {
        holder.available_permits().await.ok() == Some(2)
    })
    .await;
}

#[test]
fn every_public_semaphore_type_is_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Semaphore>();
    send_sync::<SemaphorePermit>();
    send_sync::<SemaphoreOptions>();
    send_sync::<distkit::semaphore::SemaphoreOptionsBuilder>();
}
