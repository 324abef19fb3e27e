//! What a hostile neighbour on the same Redis can and cannot do, and least-privilege ACLs.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{bounded, client, eventually, fresh_key};
use distkit::fred::clients::Client;
use distkit::fred::interfaces::{EventInterface, HashesInterface, KeysInterface, PubsubInterface};
use distkit::lock::{LockGuardState, LockOptions, Mutex};
use distkit_test_support::TestRedis;

/// The lock's release channel, as the hostile client computes it from the lock's name (plain
/// names are their own hash tag).
fn lock_channel(namespace: &str, key: &str) -> String {
    format!("{namespace}:{{{key}}}:released")
}

/// Every `granted` message a neighbour able to read the lock's keys could forge for each
/// waiter: the fencing token right after the current one (what a real handover would carry)
/// and `u64::MAX` (a forger choosing the fencing token), both naming the current fence as
/// the previous one.
fn forgeries(lock: &str, tokens: &[String], fence: u64) -> Vec<String> {
    let mut messages = Vec::new();
    for token in tokens {
        for forged in [fence.saturating_add(1), u64::MAX] {
            messages.push(format!(
                "granted {forged} {fence} {} {lock}{token}",
                lock.len()
            ));
        }
    }
    messages
}

/// Publishes `message` on `channel` (`S…` sharded, `P…` plain, or a bare plain channel).
async fn publish(hostile: &Client, channel: &str, message: &str) {
    let published = match (channel.get(..1), channel.get(1..)) {
        (Some("S"), Some(channel)) => hostile.spublish::<i64, _, _>(channel, message).await,
        (Some("P"), Some(channel)) => hostile.publish::<i64, _, _>(channel, message).await,
        _ => hostile.publish::<i64, _, _>(channel, message).await,
    };
    // A refused SPUBLISH (a server without sharded pub/sub) is no reason to stop forging.
    drop(published);
}

#[tokio::test]
async fn a_forged_handover_never_makes_a_waiter_acquire_while_the_holder_holds() {
    let redis = TestRedis::start();
    let (namespace, key) = (fresh_key(), fresh_key());
    let options = |client: Client| {
        LockOptions::builder(key.clone(), client)
            .namespace(namespace.clone())
            .ttl(Duration::from_secs(10))
            .build()
    };
    let holder = Mutex::new(options(client(&redis).await));
    let guard = bounded(holder.lock()).await.expect("the holder acquires");
    let waiter = Mutex::new(options(client(&redis).await));
    let waiting = tokio::spawn(async move { waiter.lock().await });

    // The neighbour: a plain client that may read the lock's keys and publish.
    let hostile = client(&redis).await;
    let lock = lock_channel(namespace.as_str(), key.as_str());
    let part = |name: &str| format!("{}:{{{}}}:{name}", namespace.as_str(), key.as_str());
    // Wait until the waiter stands in line with its inbox (it subscribed after its first
    // refused attempt and then tried again).
    eventually("the waiter queued with an inbox", || async {
        let waiters: HashMap<String, String> =
            hostile.hgetall(part("waiters")).await.unwrap_or_default();
        waiters.values().any(|entry| {
            entry
                .split(' ')
                .nth(3)
                .is_some_and(|inbox| !inbox.is_empty())
        })
    })
    .await;

    // For about a second, forge every handover on every channel the waiter listens on.
    for _ in 0..30 {
        let waiters: HashMap<String, String> = bounded(hostile.hgetall(part("waiters")))
            .await
            .expect("the waiters hash is readable");
        let fence: u64 = bounded(hostile.get::<Option<u64>, _>(part("fence")))
            .await
            .expect("the fence is readable")
            .expect("the holder's acquisition set the fence");
        let tokens: Vec<String> = waiters.keys().cloned().collect();
        let mut channels: Vec<String> = waiters
            .values()
            .filter_map(|entry| entry.splitn(4, ' ').nth(3).map(str::to_owned))
            .filter(|inbox| !inbox.is_empty())
            .collect();
        // And every plain channel subscribed on the server (release channels, inboxes).
        let subscribed: Vec<String> = bounded(hostile.pubsub_channels("*"))
            .await
            .unwrap_or_default();
        channels.extend(subscribed);
        for channel in &channels {
            for message in forgeries(&lock, &tokens, fence) {
                bounded(publish(&hostile, channel, &message)).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert!(
            !waiting.is_finished(),
            "the waiter returned while the holder still holds the lock: {:?}",
            waiting.await
        );
    }
    assert_eq!(guard.get_state().await, LockGuardState::Acquired);
    let held_with = guard.fencing_token();
    assert_eq!(
        bounded(guard.release()).await.expect("the holder releases"),
        LockGuardState::Released
    );

    // The legitimate handover: the waiter holds the lock with the fencing token Redis keeps.
    let next = bounded(waiting)
        .await
        .expect("the waiter's task ran")
        .expect("the waiter acquires after the release");
    assert_eq!(next.get_state().await, LockGuardState::Acquired);
    let fence: u64 = bounded(hostile.get::<Option<u64>, _>(part("fence")))
        .await
        .expect("the fence is readable")
        .expect("the fence is set");
    assert!(next.fencing_token() > held_with, "tokens go up");
    assert_eq!(
        next.fencing_token(),
        fence,
        "the token is the one Redis issued"
    );
    assert!(
        next.fencing_token() < 1 << 62,
        "the token is no forger's choice"
    );
    bounded(next.release()).await.expect("the waiter releases");
}

/// The commands the locks run (their scripts' commands included), for an ACL user.
const LOCK_COMMANDS: &str = "+evalsha +eval +subscribe +unsubscribe \
    +ssubscribe +sunsubscribe +publish +spublish +get +set +del +pexpire +pttl +llen +lindex \
    +lpop +lrem +rpush +hset +hget +hdel +time +incr +exists +zadd +zrem +zrange +zrank \
    +zscore +zcard +zremrangebyscore +zrangebyscore";

/// Creates the ACL user `name` (password `name`) with `rules` and `LOCK_COMMANDS`; returns
/// its URL.
///
/// `resetchannels` comes first: Redis 6.2 gives a reset user every channel (its
/// `acl-pubsub-default`), and refuses a channel pattern after that. A server without sharded
/// pub/sub (before 7.0) does not know its commands: they are left out, and the test says so.
fn acl_user(redis: &TestRedis, name: &str, rules: &[&str]) -> String {
    let mut args = vec!["ACL", "SETUSER", name, "reset", "resetchannels", "on"];
    let password = format!(">{name}");
    args.push(&password);
    args.extend(rules);
    args.extend(acl_commands(redis, LOCK_COMMANDS));
    assert_eq!(redis.cli(&args), "OK", "ACL SETUSER {name}");
    format!("redis://{name}:{name}@127.0.0.1:{}", redis.port())
}

/// The ACL command rules of `commands` the server knows: without sharded pub/sub (Redis
/// before 7.0) the `ssubscribe`, `sunsubscribe` and `spublish` rules are left out.
fn acl_commands<'a>(redis: &TestRedis, commands: &'a str) -> Vec<&'a str> {
    let version = redis.server_version();
    let sharded = version.has_sharded_pubsub();
    if !sharded {
        eprintln!("server {version} has no sharded pub/sub (Redis 7.0+): ACL without its commands");
    }
    commands
        .split_whitespace()
        .filter(|rule| sharded || !["+ssubscribe", "+sunsubscribe", "+spublish"].contains(rule))
        .collect()
}

#[expect(clippy::expect_used, reason = "a test helper fails its test")]
async fn connect_as(url: &str) -> Client {
    bounded(distkit::connect(url))
        .await
        .expect("the ACL user connects")
}

/// Waits until a waiter of the mutex `<namespace>:{<key>}` stands in line with an inbox:
/// its subscription for handover notifications was accepted.
async fn queued_with_inbox(admin: &Client, namespace: &str, key: &str) {
    let waiters = format!("{namespace}:{{{key}}}:waiters");
    eventually("a waiter queued with an inbox", || async {
        let entries: HashMap<String, String> =
            admin.hgetall(waiters.as_str()).await.unwrap_or_default();
        entries.values().any(|entry| {
            entry
                .split(' ')
                .nth(3)
                .is_some_and(|inbox| !inbox.is_empty())
        })
    })
    .await;
}

#[tokio::test]
async fn a_user_scoped_to_the_lock_namespace_runs_locks_with_handovers_by_notification() {
    let redis = TestRedis::start_standalone();
    let admin = client(&redis).await;
    let (namespace, key) = (fresh_key(), fresh_key());
    let scope = (
        format!("~{}:*", namespace.as_str()),
        format!("&{}:*", namespace.as_str()),
    );
    let url = acl_user(&redis, "scoped", &[&scope.0, &scope.1]);
    // A waiter polls at least 15 s after its last attempt: served sooner, it was woken by
    // its notification.
    let options = |client: Client| {
        LockOptions::builder(key.clone(), client)
            .namespace(namespace.clone())
            .ttl(Duration::from_secs(60))
            .retry_interval(Duration::from_secs(30))
            .build()
    };
    let holder = Mutex::new(options(connect_as(&url).await));
    let waiter = Mutex::new(options(connect_as(&url).await));
    let guard = bounded(holder.lock()).await.expect("the holder acquires");
    let waiting = tokio::spawn(async move { waiter.lock().await });
    queued_with_inbox(&admin, namespace.as_str(), key.as_str()).await;
    // The waiter is in this process, so the release also wakes it directly: the
    // announcement to a waiter elsewhere is watched on the inbox channels themselves.
    let watcher = client(&redis).await;
    let mut announcements = watcher.message_rx();
    bounded(watcher.psubscribe(format!("{}:inbox:*", namespace.as_str())))
        .await
        .expect("the watcher subscribes");
    let release_started = std::time::Instant::now();
    let released = bounded(guard.release()).await;
    assert!(
        matches!(released, Ok(LockGuardState::Released)),
        "a release with a waiter under the scoped user: {released:?}"
    );
    let announcement = bounded(announcements.recv())
        .await
        .expect("the handover was announced in the waiter's inbox");
    assert!(
        announcement
            .value
            .as_str()
            .is_some_and(|text| text.starts_with("granted ")),
        "announced: {:?}",
        announcement.value
    );
    let next = bounded(waiting)
        .await
        .expect("the waiter's task ran")
        .expect("the waiter is handed the lock");
    assert!(
        release_started.elapsed() < Duration::from_secs(10),
        "the waiter was woken by its notification, not by its 15 s poll"
    );
    assert_eq!(next.get_state().await, LockGuardState::Acquired);
    assert_eq!(
        bounded(next.release()).await.expect("released"),
        LockGuardState::Released
    );

    // The rwlock too: readers, a waiting writer woken by the last reader's release.
    let rwlock = |client: Client| {
        distkit::lock::RwLock::new(
            LockOptions::builder(fresh_key(), client)
                .namespace(namespace.clone())
                .retry_interval(Duration::from_millis(20))
                .build(),
        )
    };
    let rw = rwlock(connect_as(&url).await);
    let read = bounded(rw.read()).await.expect("a reader acquires");
    let writer = {
        let rw = std::sync::Arc::clone(&rw);
        tokio::spawn(async move { rw.write().await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!writer.is_finished(), "the writer waits for the reader");
    assert!(matches!(
        bounded(read.release()).await,
        Ok(LockGuardState::Released)
    ));
    let write = bounded(writer)
        .await
        .expect("the writer's task ran")
        .expect("the writer acquires");
    assert!(matches!(
        bounded(write.release()).await,
        Ok(LockGuardState::Released)
    ));
}

#[tokio::test]
async fn a_release_whose_handover_announcement_is_refused_still_reports_released() {
    let redis = TestRedis::start_standalone();
    let (namespace, key) = (fresh_key(), fresh_key());
    // The releaser may use the lock's keys but publish on no channel at all.
    let keys_only = format!("~{}:*", namespace.as_str());
    let url = acl_user(&redis, "mute", &[&keys_only, "resetchannels"]);
    let options = |client: Client| {
        LockOptions::builder(key.clone(), client)
            .namespace(namespace.clone())
            .retry_interval(Duration::from_millis(20))
            .build()
    };
    let admin = client(&redis).await;
    let holder = Mutex::new(options(connect_as(&url).await));
    let waiter = Mutex::new(options(admin.clone()));
    let guard = bounded(holder.lock()).await.expect("the holder acquires");
    let waiting = tokio::spawn(async move { waiter.lock().await });
    queued_with_inbox(&admin, namespace.as_str(), key.as_str()).await;
    let released = bounded(guard.release()).await;
    assert!(
        matches!(released, Ok(LockGuardState::Released)),
        "the release was applied, whatever became of its announcement: {released:?}"
    );
    // The waiter was handed the lock and confirms it on its next poll.
    let next = bounded(waiting)
        .await
        .expect("the waiter's task ran")
        .expect("the waiter is handed the lock");
    assert_eq!(next.get_state().await, LockGuardState::Acquired);
    bounded(next.release()).await.expect("released");
}

#[tokio::test]
async fn a_waiter_in_the_releasing_process_is_woken_by_the_release_when_its_announcement_is_refused()
 {
    let redis = TestRedis::start_standalone();
    let (namespace, key) = (fresh_key(), fresh_key());
    // The releaser may publish on no channel: the announcement to the waiter is refused.
    let keys_only = format!("~{}:*", namespace.as_str());
    let url = acl_user(&redis, "mute-holder", &[&keys_only, "resetchannels"]);
    // A waiter polls at least 30 min after its last attempt: served within the test's
    // bound, it was woken by the release of the holder in its process, which learned from
    // Redis's reply whom it handed the lock to and that waiter's inbox.
    let options = |client: Client| {
        LockOptions::builder(key.clone(), client)
            .namespace(namespace.clone())
            .ttl(Duration::from_secs(60))
            .retry_interval(Duration::from_secs(60 * 60))
            .build()
    };
    let admin = client(&redis).await;
    let holder = Mutex::new(options(connect_as(&url).await));
    let waiter = Mutex::new(options(client(&redis).await));
    let guard = bounded(holder.lock()).await.expect("the holder acquires");
    let holder_token = guard.fencing_token();
    let waiting = tokio::spawn(async move { waiter.lock().await });
    queued_with_inbox(&admin, namespace.as_str(), key.as_str()).await;
    assert_eq!(
        bounded(guard.release()).await.expect("released"),
        LockGuardState::Released
    );
    let next = bounded(waiting)
        .await
        .expect("the waiter's task ran")
        .expect("the waiter is handed the lock");
    assert_eq!(next.get_state().await, LockGuardState::Acquired);
    assert!(next.fencing_token() > holder_token);
    bounded(next.release()).await.expect("released");
}

#[tokio::test]
async fn an_owner_id_longer_than_a_key_is_refused_before_any_io() {
    let redis = TestRedis::start();
    let client = client(&redis).await;
    let with_owner = |owner: String| {
        LockOptions::builder(fresh_key(), client.clone())
            .owner_id(owner)
            .build()
    };
    let too_long = with_owner("o".repeat(LockOptions::MAX_OWNER_ID_BYTES + 1));
    assert!(matches!(
        too_long.validate(),
        Err(distkit::DistkitError::LockError(
            distkit::lock::LockError::InvalidOwner
        ))
    ));
    for refused in [
        bounded(Mutex::new(too_long.clone()).try_lock())
            .await
            .map(drop),
        bounded(distkit::lock::RwLock::new(too_long.clone()).try_write())
            .await
            .map(drop),
        bounded(distkit::lock::RwLock::new(too_long).try_read())
            .await
            .map(drop),
    ] {
        assert!(
            matches!(
                refused,
                Err(distkit::DistkitError::LockError(
                    distkit::lock::LockError::InvalidOwner
                ))
            ),
            "{refused:?}"
        );
    }
    // The longest id is accepted.
    let longest = Mutex::new(with_owner("o".repeat(LockOptions::MAX_OWNER_ID_BYTES)));
    let guard = bounded(longest.try_lock()).await.expect("the longest id");
    bounded(guard.release()).await.expect("released");
}

#[tokio::test]
async fn a_huge_host_name_makes_a_short_error_message() {
    let url = format!("redis://{}:6379", "h".repeat(1 << 20));
    for error in [
        distkit::ConnectOptions::new(url.as_str()).validate().err(),
        bounded(distkit::connect(&url)).await.err(),
    ]
    .into_iter()
    .flatten()
    {
        let message = error.to_string();
        assert!(message.len() < 2_048, "{} bytes", message.len());
    }
    let error = bounded(distkit::connect(&url))
        .await
        .expect_err("no such host");
    assert!(
        error.to_string().contains("hhhh"),
        "names the host: {error}"
    );
}

#[tokio::test]
async fn a_wrong_typed_rwlock_writer_key_fails_read_like_write() {
    let redis = TestRedis::start();
    let admin = client(&redis).await;
    let (namespace, key) = (fresh_key(), fresh_key());
    let writer = format!("{}:{{{}}}:rw:writer", namespace.as_str(), key.as_str());
    let _: i64 = bounded(admin.hset(writer.as_str(), ("field", "junk")))
        .await
        .expect("junk written");
    // Waiting would last a minute: the bound of `bounded` (20 s) fails a read that waits.
    let rwlock = distkit::lock::RwLock::new(
        LockOptions::builder(key, admin.clone())
            .namespace(namespace)
            .max_wait(Duration::from_secs(60))
            .build(),
    );
    for outcome in [
        bounded(rwlock.read()).await.map(drop),
        bounded(rwlock.write()).await.map(drop),
    ] {
        let error = outcome.expect_err("a hash is no writer token");
        assert!(error.to_string().contains("WRONGTYPE"), "{error}");
    }
}

#[tokio::test]
async fn a_negative_sliding_window_total_is_refused_as_foreign_state() {
    use distkit::ratelimit::{SlidingWindowLimiter, SlidingWindowOptions};
    let redis = TestRedis::start();
    let admin = client(&redis).await;
    let (prefix, key) = (fresh_key(), fresh_key());
    let limiter =
        SlidingWindowLimiter::new(SlidingWindowOptions::new(prefix.clone(), admin.clone()))
            .expect("valid options");
    bounded(limiter.check(&key, 10, 1))
        .await
        .expect("a first call");
    let total = format!(
        "distkit:rl:{}:{{{}}}:sw:total",
        prefix.as_str(),
        key.as_str()
    );
    let _: () = bounded(admin.set(total.as_str(), "-1000000", None, None, false))
        .await
        .expect("junk written");
    let refused = bounded(limiter.check(&key, 10, 1)).await;
    assert!(
        refused
            .as_ref()
            .is_err_and(|error| error.to_string().contains("DISTKIT_BAD_STATE")),
        "a negative total is foreign state, not a count to carry on from: {refused:?}"
    );
}

/// The commands of the counters and the native rate limiters (their scripts' included).
const DISTKIT_COMMANDS: &str = "+evalsha +eval +exists +get +set +del +unlink +type \
    +time +hdel +hexists +hget +hincrby +hmget +hset +hsetnx +zadd +zlexcount +zrange \
    +zrangebylex +zrangebyscore +zrem +zscore +lindex +lpop +lrange +lset +rpush +pexpire";

#[tokio::test]
async fn a_user_scoped_to_one_prefix_runs_counters_and_rate_limiters() {
    use distkit::counter::{CounterOptions, CounterTrait, LaxCounter, StrictCounter};
    use distkit::icounter::{
        InstanceAwareCounterTrait, StrictInstanceAwareCounter, StrictInstanceAwareCounterOptions,
    };
    use distkit::ratelimit::{
        Decision, GcraLimiter, GcraOptions, GcraRate, SlidingWindowLimiter, SlidingWindowOptions,
    };
    let redis = TestRedis::start_standalone();
    // Scoped to one prefix: its counters and instance-aware counters
    // (`distkit:{<prefix>}:…` and `distkit:{<prefix>:<shard>}:…`) and its rate limiters (`distkit:rl:<prefix>:…`).
    let (prefix, key) = (fresh_key(), fresh_key());
    // The prefix's unsharded tag (values with one shard, the recorded shard count) and its
    // shard tags (`{<prefix>:<shard>}`, with more than one shard, as on a cluster).
    let counters = format!("~distkit:{{{}}}:*", prefix.as_str());
    let counter_shards = format!("~distkit:{{{}:*", prefix.as_str());
    let limiters = format!("~distkit:rl:{}:*", prefix.as_str());
    let mut args = vec![
        "ACL",
        "SETUSER",
        "counting",
        "reset",
        "on",
        ">counting",
        &counters,
        &counter_shards,
        &limiters,
        "resetchannels",
    ];
    args.extend(DISTKIT_COMMANDS.split_whitespace());
    assert_eq!(redis.cli(&args), "OK");
    let url = format!("redis://counting:counting@127.0.0.1:{}", redis.port());
    let scoped = connect_as(&url).await;

    let strict = StrictCounter::new(CounterOptions::new(prefix.clone(), scoped.clone()));
    assert_eq!(bounded(strict.inc(&key, 5)).await.expect("inc"), 5);
    assert_eq!(bounded(strict.set(&key, 7)).await.expect("set"), 7);
    assert_eq!(bounded(strict.get(&key)).await.expect("get"), 7);
    assert_eq!(
        bounded(strict.inc_all(&[(&key, 1)]))
            .await
            .expect("inc_all"),
        vec![(&key, 8)]
    );
    bounded(strict.del(&key)).await.expect("del");
    bounded(strict.clear()).await.expect("clear");

    let lax = LaxCounter::new(CounterOptions::new(prefix.clone(), scoped.clone()));
    bounded(lax.inc(&key, 3)).await.expect("lax inc");
    eventually("the lax increment reached Redis", || async {
        strict.get(&key).await.is_ok_and(|value| value == 3)
    })
    .await;

    let instance_aware = StrictInstanceAwareCounter::new(StrictInstanceAwareCounterOptions::new(
        prefix.clone(),
        scoped.clone(),
    ));
    assert_eq!(
        bounded(instance_aware.inc(&key, 2))
            .await
            .expect("icounter inc"),
        (2, 2)
    );
    bounded(instance_aware.del(&key))
        .await
        .expect("icounter del");

    let window =
        SlidingWindowLimiter::new(SlidingWindowOptions::new(prefix.clone(), scoped.clone()))
            .expect("valid options");
    assert!(matches!(
        bounded(window.check(&key, 1, 1)).await,
        Ok(Decision::Allowed { .. })
    ));
    assert!(matches!(
        bounded(window.check(&key, 1, 1)).await,
        Ok(Decision::Rejected { .. })
    ));
    bounded(window.reset(&key)).await.expect("window reset");
    let gcra = GcraLimiter::new(GcraOptions::new(prefix.clone(), scoped.clone()));
    let rate = GcraRate::new(1, Duration::from_secs(60), 1).expect("valid rate");
    assert!(matches!(
        bounded(gcra.check(&key, &rate, 1)).await,
        Ok(Decision::Allowed { .. })
    ));
    bounded(gcra.reset(&key)).await.expect("gcra reset");
}

#[tokio::test]
async fn a_counter_batch_that_overflows_changes_nothing_for_a_user_without_hdel() {
    use distkit::counter::{CounterError, CounterOptions, CounterTrait, StrictCounter};
    let redis = TestRedis::start_standalone();
    let prefix = fresh_key();
    // The prefix's unsharded tag (values with one shard, the recorded shard count) and its
    // shard tags (`{<prefix>:<shard>}`, with more than one shard, as on a cluster).
    let counters = format!("~distkit:{{{}}}:*", prefix.as_str());
    let counter_shards = format!("~distkit:{{{}:*", prefix.as_str());
    let mut args = vec![
        "ACL",
        "SETUSER",
        "no-hdel",
        "reset",
        "on",
        ">no-hdel",
        &counters,
        &counter_shards,
        "resetchannels",
    ];
    args.extend(
        DISTKIT_COMMANDS
            .split_whitespace()
            .filter(|command| *command != "+hdel"),
    );
    assert_eq!(redis.cli(&args), "OK");
    let url = format!("redis://no-hdel:no-hdel@127.0.0.1:{}", redis.port());
    let counter = StrictCounter::new(CounterOptions::new(prefix, connect_as(&url).await));
    let (fresh, full) = (fresh_key(), fresh_key());
    bounded(counter.set(&full, i64::MAX)).await.expect("set");
    // The first operation creates a counter; the second overflows: nothing may stay applied.
    let result = bounded(counter.inc_all(&[(&fresh, 1), (&full, 1)])).await;
    assert!(
        matches!(
            result,
            Err(distkit::DistkitError::CounterError(CounterError::Overflow { ref key })) if key == full.as_str()
        ),
        "{result:?}"
    );
    assert_eq!(bounded(counter.get(&fresh)).await.expect("get"), 0);
    assert_eq!(bounded(counter.get(&full)).await.expect("get"), i64::MAX);
}
