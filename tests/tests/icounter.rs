//! Instance-aware counters through the facade, against a private Redis.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{bounded, client, eventually, fresh_key, key};
use distkit::icounter::{
    CounterError, InstanceAwareCounterTrait, LaxInstanceAwareCounter,
    LaxInstanceAwareCounterOptions, StrictInstanceAwareCounter, StrictInstanceAwareCounterOptions,
};
use distkit::{CounterComparator, DistkitError, DistkitRedisKey};
use distkit_test_support::TestRedis;

type DynCounter = Arc<dyn InstanceAwareCounterTrait + Send + Sync>;

async fn strict(
    redis: &TestRedis,
    prefix: &DistkitRedisKey,
    threshold_ms: u64,
) -> Arc<StrictInstanceAwareCounter> {
    let mut options = common::strict_ic_options(prefix.clone(), client(redis).await);
    options.dead_instance_threshold = Duration::from_millis(threshold_ms);
    StrictInstanceAwareCounter::new(options)
}

async fn lax(
    redis: &TestRedis,
    prefix: &DistkitRedisKey,
    threshold_ms: u64,
) -> Arc<LaxInstanceAwareCounter> {
    let mut options = common::lax_ic_options(prefix.clone(), client(redis).await);
    options.dead_instance_threshold = Duration::from_millis(threshold_ms);
    LaxInstanceAwareCounter::new(options)
}

/// A lax instance with a zero allowed lag: every call goes to Redis at once, so the shared
/// behaviour tests can assert exact values across instances.
async fn synchronous_lax(
    redis: &TestRedis,
    prefix: &DistkitRedisKey,
) -> Arc<LaxInstanceAwareCounter> {
    let mut options = common::lax_ic_options(prefix.clone(), client(redis).await);
    options.allowed_lag = Duration::ZERO;
    LaxInstanceAwareCounter::new(options)
}

/// Two instances of one flavour on separate clients.
async fn pair_of(redis: &TestRedis, lax_flavour: bool) -> (DynCounter, DynCounter) {
    let prefix = fresh_key();
    if lax_flavour {
        (
            synchronous_lax(redis, &prefix).await,
            synchronous_lax(redis, &prefix).await,
        )
    } else {
        (
            strict(redis, &prefix, 30_000).await,
            strict(redis, &prefix, 30_000).await,
        )
    }
}

/// Makes the Redis server believe `instance` has been silent for a minute (in every shard
/// it joined).
fn silence(redis: &TestRedis, prefix: &DistkitRedisKey, instance: &str) {
    let silenced = raw_keys(prefix, "alive")
        .iter()
        .zip(raw_keys(prefix, "due"))
        .filter(|(alive, due)| {
            let was_alive = redis.cli(&["ZADD", alive, "XX", "CH", "0", instance]) == "1";
            // As the script's header asks of whoever edits `alive` by hand: the next call
            // scans.
            redis.cli(&["DEL", due]);
            was_alive
        })
        .count();
    assert!(silenced > 0, "the instance was not alive");
}

#[tokio::test]
async fn every_operation_behaves_as_documented_on_both_flavours() {
    let redis = TestRedis::start();
    for lax_flavour in [false, true] {
        let (a, b) = pair_of(&redis, lax_flavour).await;
        let k = key("k");
        let name = if lax_flavour { "lax" } else { "strict" };
        assert_ne!(a.instance_id(), b.instance_id());
        assert_eq!(a.instance_id().len(), 26, "{name}: a ULID");
        assert_eq!(bounded(a.get(&k)).await.unwrap(), (0, 0), "{name}");
        assert_eq!(bounded(a.inc(&k, 5)).await.unwrap(), (5, 5), "{name}");
        assert_eq!(bounded(b.inc(&k, 3)).await.unwrap(), (8, 3), "{name}");
        assert_eq!(bounded(a.dec(&k, 1)).await.unwrap(), (7, 4), "{name}");
        assert_eq!(
            bounded(a.set_on_instance(&k, 10)).await.unwrap(),
            (13, 10),
            "{name}"
        );
        assert_eq!(bounded(b.get(&k)).await.unwrap(), (13, 3), "{name}");
        assert_eq!(
            bounded(b.del_on_instance(&k)).await.unwrap(),
            (10, 3),
            "{name}: (new C, removed I)"
        );
        assert_eq!(bounded(b.inc(&k, 2)).await.unwrap(), (12, 2), "{name}");
        assert_eq!(
            bounded(a.set(&k, 100)).await.unwrap(),
            (100, 100),
            "{name}: global set"
        );
        assert_eq!(
            bounded(b.get(&k)).await.unwrap(),
            (100, 0),
            "{name}: b's slice was reset"
        );
        assert_eq!(bounded(b.inc(&k, 1)).await.unwrap(), (101, 1), "{name}");
        assert_eq!(
            bounded(b.del(&k)).await.unwrap(),
            (101, 1),
            "{name}: del returns the old pair"
        );
        assert_eq!(bounded(a.get(&k)).await.unwrap(), (0, 0), "{name}");
        let (x, y) = (key("x"), key("y"));
        bounded(a.inc(&x, 1)).await.unwrap();
        bounded(a.inc(&y, 2)).await.unwrap();
        bounded(b.inc(&y, 3)).await.unwrap();
        bounded(a.clear_on_instance()).await.unwrap();
        assert_eq!(bounded(b.get(&x)).await.unwrap(), (0, 0), "{name}");
        assert_eq!(
            bounded(b.get(&y)).await.unwrap(),
            (3, 3),
            "{name}: only a's slices left"
        );
        bounded(a.clear()).await.unwrap();
        assert_eq!(
            bounded(b.get(&y)).await.unwrap(),
            (0, 0),
            "{name}: clear removes everything"
        );
        assert_eq!(
            bounded(b.inc(&y, 1)).await.unwrap(),
            (1, 1),
            "{name}: usable after clear"
        );
    }
}

#[tokio::test]
async fn conditional_operations_compare_the_total_or_the_slice() {
    let redis = TestRedis::start();
    for lax_flavour in [false, true] {
        let (a, b) = pair_of(&redis, lax_flavour).await;
        let k = key("k");
        bounded(a.inc(&k, 5)).await.unwrap();
        bounded(b.inc(&k, 5)).await.unwrap();
        // inc_if compares C (10).
        assert_eq!(
            bounded(a.inc_if(&k, CounterComparator::Eq(10), 1))
                .await
                .unwrap(),
            ((11, 6), (10, 5))
        );
        assert_eq!(
            bounded(a.inc_if(&k, CounterComparator::Lt(5), 1))
                .await
                .unwrap(),
            ((11, 6), (11, 6))
        );
        // set_if compares C and sets globally.
        assert_eq!(
            bounded(b.set_if(&k, CounterComparator::Gt(100), 0))
                .await
                .unwrap(),
            ((11, 5), (11, 5))
        );
        assert_eq!(
            bounded(b.set_if(&k, CounterComparator::Gt(10), 20))
                .await
                .unwrap(),
            ((20, 20), (11, 5))
        );
        // set_on_instance_if compares I.
        assert_eq!(
            bounded(a.set_on_instance_if(&k, CounterComparator::Eq(0), 7))
                .await
                .unwrap(),
            ((27, 7), (20, 0))
        );
        assert_eq!(
            bounded(a.set_on_instance_if(&k, CounterComparator::Ne(7), 1))
                .await
                .unwrap(),
            ((27, 7), (27, 7))
        );
        assert_eq!(
            bounded(a.set_on_instance_if(&k, CounterComparator::Nil, -3))
                .await
                .unwrap(),
            ((17, -3), (27, 7))
        );
    }
}

#[tokio::test]
async fn batches_apply_in_order_with_repeated_keys() {
    let redis = TestRedis::start();
    for lax_flavour in [false, true] {
        let (a, b) = pair_of(&redis, lax_flavour).await;
        let (x, y) = (key("x"), key("y"));
        assert!(bounded(a.inc_all(&[])).await.unwrap().is_empty());
        assert!(bounded(a.get_all(&[])).await.unwrap().is_empty());
        assert!(
            bounded(a.set_all_on_instance_if(&[]))
                .await
                .unwrap()
                .is_empty()
        );
        let incs = bounded(a.inc_all(&[(&x, 1), (&y, 2), (&x, 3)]))
            .await
            .unwrap();
        assert_eq!(incs, vec![(&x, 1, 1), (&y, 2, 2), (&x, 4, 4)]);
        bounded(b.inc(&x, 10)).await.unwrap();
        let all = bounded(a.get_all(&[&x, &y, &x])).await.unwrap();
        assert_eq!(all, vec![(&x, 14, 4), (&y, 2, 2), (&x, 14, 4)]);
        let mine = bounded(b.get_all_on_instance(&[&x, &y])).await.unwrap();
        assert_eq!(mine, vec![(&x, 10), (&y, 0)]);
        let sets = bounded(b.set_all_on_instance(&[(&x, 1), (&y, 5), (&x, 2)]))
            .await
            .unwrap();
        assert_eq!(sets, vec![(&x, 5, 1), (&y, 7, 5), (&x, 6, 2)]);
        let global = bounded(a.set_all(&[(&y, 50), (&y, 60)])).await.unwrap();
        assert_eq!(global, vec![(&y, 50, 50), (&y, 60, 60)]);
        let conditional = bounded(a.inc_all_if(&[
            (&y, CounterComparator::Eq(60), 1),
            (&y, CounterComparator::Eq(60), 1),
        ]))
        .await
        .unwrap();
        assert_eq!(
            conditional,
            vec![(&y, (61, 61), (60, 60)), (&y, (61, 61), (61, 61))]
        );
        let conditional = bounded(b.set_all_if(&[(&x, CounterComparator::Gt(0), 9)]))
            .await
            .unwrap();
        assert_eq!(conditional, vec![(&x, (9, 9), (6, 2))]);
        let conditional = bounded(a.set_all_on_instance_if(&[
            (&x, CounterComparator::Eq(0), 4),
            (&x, CounterComparator::Eq(0), 5),
        ]))
        .await
        .unwrap();
        assert_eq!(
            conditional,
            vec![(&x, (13, 4), (9, 0)), (&x, (13, 4), (13, 4))]
        );
    }
}

#[tokio::test]
async fn totals_are_exact_at_the_extremes_and_overflow_changes_nothing() {
    let redis = TestRedis::start();
    for lax_flavour in [false, true] {
        let (a, b) = pair_of(&redis, lax_flavour).await;
        let k = key("k");
        assert_eq!(
            bounded(a.set_on_instance(&k, i64::MAX)).await.unwrap(),
            (i64::MAX, i64::MAX)
        );
        let overflow = bounded(b.inc(&k, 1)).await;
        assert!(
            matches!(
                overflow,
                Err(DistkitError::CounterError(CounterError::Overflow { .. }))
            ),
            "{overflow:?}"
        );
        assert_eq!(
            bounded(b.get(&k)).await.unwrap(),
            (i64::MAX, 0),
            "unchanged"
        );
        assert_eq!(bounded(b.inc(&k, -1)).await.unwrap(), (i64::MAX - 1, -1));
        let failed_batch = bounded(b.inc_all(&[(&k, 1), (&k, 1)])).await;
        assert!(failed_batch.is_err());
        assert_eq!(
            bounded(b.get(&k)).await.unwrap(),
            (i64::MAX - 1, -1),
            "a failed batch changes nothing"
        );
        assert_eq!(
            bounded(a.set(&k, i64::MIN)).await.unwrap(),
            (i64::MIN, i64::MIN)
        );
        assert_eq!(
            bounded(a.dec(&k, i64::MIN)).await.unwrap(),
            (0, 0),
            "MIN - MIN, exactly"
        );
    }
}

#[tokio::test]
async fn three_instances_on_separate_clients_sum_their_slices() {
    let redis = TestRedis::start();
    let prefix = fresh_key();
    let counters = [
        strict(&redis, &prefix, 30_000).await as DynCounter,
        lax(&redis, &prefix, 30_000).await as DynCounter,
        strict(&redis, &prefix, 30_000).await as DynCounter,
    ];
    let k = key("k");
    let mut tasks = Vec::new();
    for (index, counter) in counters.iter().enumerate() {
        let counter = Arc::clone(counter);
        let k = k.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..100 {
                bounded(counter.inc(&k, i64::try_from(index).unwrap() + 1))
                    .await
                    .unwrap();
            }
        }));
    }
    for task in tasks {
        bounded(task).await.unwrap();
    }
    let reader = strict(&redis, &prefix, 30_000).await;
    eventually("the lax instance's flush", || async {
        reader.get(&k).await.unwrap().0 == 600
    })
    .await;
    assert_eq!(bounded(counters[0].get(&k)).await.unwrap().1, 100);
    assert_eq!(bounded(counters[2].get(&k)).await.unwrap().1, 300);
}

#[tokio::test]
async fn a_dropped_instance_leaves_the_total_after_the_threshold() {
    let redis = TestRedis::start();
    let prefix = fresh_key();
    let survivor = strict(&redis, &prefix, 1_000).await;
    let doomed = strict(&redis, &prefix, 1_000).await;
    let k = key("k");
    bounded(survivor.inc(&k, 3)).await.unwrap();
    bounded(doomed.inc(&k, 5)).await.unwrap();
    assert_eq!(bounded(survivor.get(&k)).await.unwrap(), (8, 3));
    // Dropped without any cleanup: its heartbeat stops.
    drop(doomed);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        bounded(survivor.get(&k)).await.unwrap(),
        (8, 3),
        "still within the threshold"
    );
    eventually("the dead slice to leave C", || async {
        survivor.get(&k).await.unwrap() == (3, 3)
    })
    .await;
}

#[tokio::test]
async fn an_idle_instance_stays_alive_through_its_heartbeats() {
    let redis = TestRedis::start();
    let prefix = fresh_key();
    let idle = strict(&redis, &prefix, 1_000).await;
    let busy = strict(&redis, &prefix, 1_000).await;
    let k = key("k");
    bounded(idle.inc(&k, 7)).await.unwrap();
    for _ in 0..12 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(
            bounded(busy.get(&k)).await.unwrap().0,
            7,
            "the idle instance was reaped"
        );
    }
}

#[tokio::test]
async fn a_reaped_instance_restores_its_current_slices_but_never_stale_ones() {
    let redis = TestRedis::start();
    let prefix = fresh_key();
    // The sleeper's own threshold is long, so its heartbeats do not race the test; the
    // watcher judges it with a 1 s threshold.
    let sleeper = strict(&redis, &prefix, 60_000).await;
    let watcher = strict(&redis, &prefix, 1_000).await;
    let [k1, k2, k3]: [DistkitRedisKey; 3] = one_shard_keys(3).try_into().unwrap();
    bounded(sleeper.inc(&k1, 5)).await.unwrap();
    bounded(sleeper.inc(&k2, -4)).await.unwrap();
    bounded(sleeper.inc(&k3, 7)).await.unwrap();
    bounded(watcher.inc(&k1, 1)).await.unwrap();
    bounded(watcher.inc(&k3, 1)).await.unwrap();

    silence(&redis, &prefix, sleeper.instance_id());
    assert_eq!(
        bounded(watcher.get(&k1)).await.unwrap(),
        (1, 1),
        "reaped: k1"
    );
    assert_eq!(
        bounded(watcher.get(&k2)).await.unwrap(),
        (0, 0),
        "reaped: the negative slice too"
    );
    assert_eq!(
        bounded(watcher.get(&k3)).await.unwrap(),
        (1, 1),
        "reaped: k3"
    );

    // While the sleeper is dead, a global set makes its k3 slice stale.
    assert_eq!(bounded(watcher.set(&k3, 50)).await.unwrap(), (50, 50));

    // The sleeper's next call revives it: k1 and k2 come back, k3 does not.
    assert_eq!(bounded(sleeper.get(&k1)).await.unwrap(), (6, 5));
    assert_eq!(bounded(watcher.get(&k2)).await.unwrap(), (-4, 0));
    assert_eq!(
        bounded(watcher.get(&k3)).await.unwrap(),
        (50, 50),
        "a stale slice is never restored"
    );
    assert_eq!(bounded(sleeper.get(&k3)).await.unwrap(), (50, 0));
    // A second death and revival changes nothing twice.
    silence(&redis, &prefix, sleeper.instance_id());
    assert_eq!(bounded(watcher.get(&k1)).await.unwrap(), (1, 1));
    assert_eq!(bounded(sleeper.get(&k2)).await.unwrap(), (-4, -4));
    assert_eq!(bounded(watcher.get(&k1)).await.unwrap(), (6, 1));
}

#[tokio::test]
async fn global_resets_then_a_stale_peer_keep_the_total_equal_to_the_live_slices() {
    let redis = TestRedis::start();
    let prefix = fresh_key();
    let peer = strict(&redis, &prefix, 60_000).await;
    let owner = strict(&redis, &prefix, 1_000).await;
    let k = key("k");
    bounded(peer.inc(&k, 10)).await.unwrap();
    bounded(owner.inc(&k, 1)).await.unwrap();
    // Global set: the peer's slice becomes stale.
    assert_eq!(bounded(owner.set(&k, 4)).await.unwrap(), (4, 4));
    // The stale peer increments: it starts a fresh slice, its old 10 is gone for good.
    assert_eq!(bounded(peer.inc(&k, 2)).await.unwrap(), (6, 2));
    // The peer dies: only its current slice (2) leaves C.
    silence(&redis, &prefix, peer.instance_id());
    assert_eq!(bounded(owner.get(&k)).await.unwrap(), (4, 4));
    // The owner clears its own slices while the peer is dead.
    bounded(owner.clear_on_instance()).await.unwrap();
    assert_eq!(bounded(owner.get(&k)).await.unwrap(), (0, 0));
    // The peer revives with its current slice.
    assert_eq!(bounded(peer.get(&k)).await.unwrap(), (2, 2));
    // Global delete, then the peer dies and revives: nothing of the old slice returns.
    assert_eq!(bounded(owner.del(&k)).await.unwrap(), (2, 0));
    silence(&redis, &prefix, peer.instance_id());
    assert_eq!(bounded(owner.get(&k)).await.unwrap(), (0, 0));
    assert_eq!(bounded(peer.get(&k)).await.unwrap(), (0, 0));
    // Clear, then a stale increment from before the clear cannot come back.
    bounded(peer.inc(&k, 3)).await.unwrap();
    bounded(owner.clear()).await.unwrap();
    silence(&redis, &prefix, peer.instance_id());
    assert_eq!(bounded(owner.get(&k)).await.unwrap(), (0, 0));
    assert_eq!(bounded(peer.get(&k)).await.unwrap(), (0, 0));
    assert_eq!(bounded(peer.inc(&k, 1)).await.unwrap(), (1, 1));
}

#[tokio::test]
async fn lax_instances_deliver_after_load_stops_and_on_drop() {
    let redis = TestRedis::start();
    let prefix = fresh_key();
    let reader = strict(&redis, &prefix, 30_000).await;
    let busy = lax(&redis, &prefix, 30_000).await;
    let k = key("k");
    for _ in 0..10_000 {
        bounded(busy.inc(&k, 1)).await.unwrap();
    }
    assert_eq!(
        bounded(busy.get(&k)).await.unwrap(),
        (10_000, 10_000),
        "answered from memory"
    );
    eventually("the flush after load stops", || async {
        reader.get(&k).await.unwrap().0 == 10_000
    })
    .await;

    let mut options = common::lax_ic_options(prefix.clone(), client(&redis).await);
    options.flush_interval = Duration::from_secs(3600);
    options.allowed_lag = Duration::from_secs(3600);
    let dropped = LaxInstanceAwareCounter::new(options);
    for _ in 0..10 {
        bounded(dropped.inc(&k, 2)).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        bounded(reader.get(&k)).await.unwrap().0,
        10_000,
        "nothing flushed yet"
    );
    drop(dropped);
    eventually("the flush on drop", || async {
        reader.get(&k).await.unwrap().0 == 10_020
    })
    .await;
    bounded(busy.flush()).await.unwrap();
}

#[tokio::test]
async fn a_threshold_below_one_second_is_raised_to_one_second() {
    let redis = TestRedis::start();
    let prefix = fresh_key();
    let quick = strict(&redis, &prefix, 10).await;
    let other = strict(&redis, &prefix, 10).await;
    let k = key("k");
    bounded(quick.inc(&k, 1)).await.unwrap();
    // With a literal 10 ms threshold, a 300 ms pause would reap `quick`.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(bounded(other.get(&k)).await.unwrap().0, 1);
}

#[tokio::test]
async fn an_idle_instance_stays_alive_in_every_shard_it_joined_and_only_there() {
    let shards = common::test_shards();
    let redis = TestRedis::start();
    let prefix = fresh_key();
    // The 1 s threshold: heartbeats every 250 ms keep the idle instance alive.
    let idle = strict(&redis, &prefix, 1_000).await;
    let watcher = strict(&redis, &prefix, 1_000).await;
    let a = key("a");
    let others: Vec<DistkitRedisKey> = (0..)
        .map(|n| key(&format!("b{n}")))
        .filter(|b| {
            shards < 2
                || distkit_core::key_schema::shard_of(b.as_str(), shards)
                    != distkit_core::key_schema::shard_of("a", shards)
        })
        .take(3)
        .collect();
    bounded(idle.inc(&a, 2)).await.unwrap();
    for b in &others {
        bounded(idle.inc(b, 3)).await.unwrap();
    }
    // Idle for four thresholds: only the heartbeat renews its leases.
    tokio::time::sleep(Duration::from_millis(4_000)).await;
    assert_eq!(bounded(watcher.get(&a)).await.unwrap(), (2, 0));
    for b in &others {
        assert_eq!(bounded(watcher.get(b)).await.unwrap(), (3, 0), "{b}");
    }
    // It holds a lease only in the shards it called.
    let joined: Vec<String> = common::ic_keys(&prefix, "alive", shards)
        .into_iter()
        .filter(|alive| !redis.cli(&["ZSCORE", alive, idle.instance_id()]).is_empty())
        .collect();
    let mut called: Vec<String> = std::iter::once(&a)
        .chain(&others)
        .map(|k| common::ic_key_of(&prefix, k.as_str(), "alive", shards))
        .collect();
    called.sort();
    called.dedup();
    let mut joined = joined;
    joined.sort();
    assert_eq!(joined, called);
}

#[tokio::test]
async fn counters_are_trait_objects_and_send_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<StrictInstanceAwareCounter>();
    assert_send_sync::<LaxInstanceAwareCounter>();
    assert_send_sync::<StrictInstanceAwareCounterOptions>();
    assert_send_sync::<LaxInstanceAwareCounterOptions>();
    let redis = TestRedis::start();
    let counter: DynCounter = strict(&redis, &fresh_key(), 30_000).await;
    let handle = tokio::spawn(async move { counter.inc(&key("k"), 2).await });
    assert_eq!(bounded(handle).await.unwrap().unwrap(), (2, 2));
}

/// `count` keys `k<n>` that share one shard: a dead instance is found dead, and a revived
/// one restores its slices, per shard (its heartbeat revives it in every shard it joined
/// within a quarter threshold); these tests follow one membership.
fn one_shard_keys(count: usize) -> Vec<DistkitRedisKey> {
    common::keys_in_one_shard("k", count, common::test_shards())
        .iter()
        .map(|name| key(name))
        .collect()
}

/// The Redis names of one of the instance-aware keys of `prefix`, one per shard.
fn raw_keys(prefix: &DistkitRedisKey, kind: &str) -> Vec<String> {
    common::ic_keys(prefix, kind, common::test_shards())
}

/// The output of `command` on the key `kind` of every shard, one line per entry.
#[expect(clippy::expect_used, reason = "a test helper fails its test")]
fn read_all(redis: &TestRedis, prefix: &DistkitRedisKey, kind: &str, command: &[&str]) -> String {
    raw_keys(prefix, kind)
        .iter()
        .map(|name| {
            let (verb, rest) = command.split_first().expect("a command");
            let mut args = vec![*verb, name.as_str()];
            args.extend_from_slice(rest);
            redis.cli(&args)
        })
        .filter(|output| !output.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

/// How many fields or members the key `kind` of `prefix` holds (0 when absent).
#[expect(clippy::panic, reason = "a test helper fails its test")]
fn size_of(redis: &TestRedis, prefix: &DistkitRedisKey, kind: &str) -> usize {
    raw_keys(prefix, kind)
        .iter()
        .map(|name| {
            let command = match redis.cli(&["TYPE", name]).as_str() {
                "hash" => "HLEN",
                "zset" => "ZCARD",
                "none" => return 0,
                other => panic!("{name} is a {other}"),
            };
            redis
                .cli(&[command, name])
                .parse::<usize>()
                .unwrap_or_else(|_| panic!("{command} {name}"))
        })
        .sum()
}

/// The fields and members that exist because keys were used: totals, slices, their
/// indexes, parked slices, stamps and epochs (the last three of the layout before issue 12).
fn key_specific_state(redis: &TestRedis, prefix: &DistkitRedisKey) -> usize {
    [
        "totals",
        "slices",
        "owned",
        "parked",
        "parked_owned",
        "by_key",
        "stamps",
        "parked_stamps",
        "epochs",
    ]
    .iter()
    .map(|kind| size_of(redis, prefix, kind))
    .sum()
}

async fn strict_with_window(
    redis: &TestRedis,
    prefix: &DistkitRedisKey,
    threshold_ms: u64,
    revival_window: Duration,
) -> Arc<StrictInstanceAwareCounter> {
    let mut options = common::strict_ic_options(prefix.clone(), client(redis).await);
    options.dead_instance_threshold = Duration::from_millis(threshold_ms);
    options.revival_window = revival_window;
    StrictInstanceAwareCounter::new(options)
}

/// Polls `condition` every 50 ms until it holds, failing the test after `limit`.
async fn within<F, Fut>(limit: Duration, what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = std::time::Instant::now();
    while !bounded(condition()).await {
        assert!(
            started.elapsed() < limit,
            "{what} did not happen within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn each_instance_is_judged_dead_by_its_own_threshold_not_by_its_peers() {
    let redis = TestRedis::start();
    let prefix = fresh_key();
    // A declares 30 s: its next heartbeat is 7.5 s away. B declares 1 s and keeps calling.
    let patient = strict(&redis, &prefix, 30_000).await;
    let hasty = strict(&redis, &prefix, 1_000).await;
    let k = key("k");
    bounded(patient.inc(&k, 5)).await.unwrap();
    bounded(hasty.inc(&k, 1)).await.unwrap();
    for _ in 0..25 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(
            bounded(hasty.get(&k)).await.unwrap(),
            (6, 1),
            "the patient instance was judged by its peer's threshold"
        );
    }
    assert_eq!(bounded(patient.get(&k)).await.unwrap(), (6, 5));
    // Its own lease still ends it: silenced, it leaves C at the next call.
    silence(&redis, &prefix, patient.instance_id());
    assert_eq!(bounded(hasty.get(&k)).await.unwrap(), (1, 1));
}

/// The script skips its scan for dead instances until the earliest lease deadline it knows
/// of: a short-lived instance that joins after long-lived ones lowers that bound, so its
/// slice still leaves C at the first call after its own lease ends, never later.
#[tokio::test]
async fn a_short_lease_joining_long_ones_leaves_c_at_the_first_call_after_it_ends() {
    let redis = TestRedis::start();
    let prefix = fresh_key();
    let k = key("k");
    // The patient instance's call stores a bound 30 s away.
    let patient = strict(&redis, &prefix, 30_000).await;
    bounded(patient.inc(&k, 5)).await.unwrap();
    for round in 0..3 {
        let hasty = strict(&redis, &prefix, 1_000).await;
        bounded(hasty.inc(&k, 7)).await.unwrap();
        let last_call = Instant::now();
        // Dropped: no call and no heartbeat renews its 1 s lease any more.
        drop(hasty);
        loop {
            let asked_after = last_call.elapsed();
            let (total, own) = bounded(patient.get(&k)).await.unwrap();
            assert_eq!(own, 5);
            let silent_for = last_call.elapsed();
            if total == 5 {
                assert!(
                    silent_for >= Duration::from_millis(900),
                    "round {round}: the slice left C after {silent_for:?}, before its lease ended"
                );
                break;
            }
            assert_eq!(total, 12, "round {round}");
            // Its lease ended at most 1 s after its last call returned (plus the server
            // clock's millisecond rounding): a call sent later finds it dead.
            assert!(
                asked_after < Duration::from_millis(1_005),
                "round {round}: a call sent {asked_after:?} after its last call still counts it"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[tokio::test]
async fn dead_slices_of_many_instances_dying_together_leave_every_answer_at_once() {
    let redis = TestRedis::start();
    let prefix = fresh_key();
    let keys = one_shard_keys(40);
    let survivor = strict(&redis, &prefix, 60_000).await;
    // 24 instances x 40 keys = 960 slices, more than one call's reaping budget of 500.
    let mut doomed = Vec::new();
    for index in 0..24_i64 {
        let instance = strict(&redis, &prefix, 60_000).await;
        let updates: Vec<(&DistkitRedisKey, i64)> = keys.iter().map(|k| (k, index + 1)).collect();
        bounded(instance.inc_all(&updates)).await.unwrap();
        doomed.push(instance);
    }
    for k in &keys {
        bounded(survivor.inc(k, 1)).await.unwrap();
    }
    assert_eq!(bounded(survivor.get(&keys[0])).await.unwrap(), (301, 1));
    // A key only the two instances reaped last hold (reaping goes in instance id order).
    let rare = key("rare");
    let mut by_id: Vec<&Arc<StrictInstanceAwareCounter>> = doomed.iter().collect();
    by_id.sort_by(|a, b| a.instance_id().cmp(b.instance_id()));
    for instance in by_id.iter().rev().take(2) {
        bounded(instance.inc(&rare, 1_000)).await.unwrap();
    }
    bounded(survivor.inc(&rare, 1)).await.unwrap();
    for instance in &doomed {
        silence(&redis, &prefix, instance.instance_id());
    }
    assert_eq!(
        bounded(survivor.get(&rare)).await.unwrap(),
        (1, 1),
        "the first call after the deaths counts a dead slice"
    );
    // Every answer from the first call on counts none of the dead slices, whichever key.
    for k in keys.iter().rev() {
        assert_eq!(
            bounded(survivor.get(k)).await.unwrap(),
            (1, 1),
            "{k} still counts dead slices"
        );
    }
    let refs: Vec<&DistkitRedisKey> = keys.iter().collect();
    for (k, total, own) in bounded(survivor.get_all(&refs)).await.unwrap() {
        assert_eq!((total, own), (1, 1), "{k}");
    }
    // One dead instance comes back: exactly its slices count again.
    assert_eq!(bounded(doomed[23].get(&keys[39])).await.unwrap(), (25, 24));
    for (k, total, own) in bounded(survivor.get_all(&refs)).await.unwrap() {
        assert_eq!((total, own), (25, 1), "{k}");
    }
    // Reaping finished: only the live instances' slices are counted.
    let owned = read_all(&redis, &prefix, "owned", &["ZRANGE", "0", "-1"]);
    let live = [survivor.instance_id(), doomed[23].instance_id()];
    assert!(owned.lines().count() >= 81, "{owned}");
    for field in owned.lines() {
        assert!(
            live.iter().any(|id| field.starts_with(id)),
            "a dead instance's slice is still counted: {field}"
        );
    }
}

#[tokio::test]
async fn parked_state_of_instances_that_never_return_is_collected_after_their_revival_window() {
    let redis = TestRedis::start();
    let prefix = fresh_key();
    let keys = one_shard_keys(10);
    let survivor = strict(&redis, &prefix, 1_000).await;
    // Five lax instances (each with a flush record) with the shortest window: the threshold.
    for _ in 0..5 {
        let mut options = common::lax_ic_options(prefix.clone(), client(&redis).await);
        options.dead_instance_threshold = Duration::from_secs(1);
        options.revival_window = Duration::from_millis(1);
        let doomed = LaxInstanceAwareCounter::new(options);
        for k in &keys {
            bounded(doomed.inc(k, 2)).await.unwrap();
        }
        bounded(doomed.flush()).await.unwrap();
    }
    // A sixth instance dies too, with a long window: it must still come back whole.
    let keeper = strict_with_window(&redis, &prefix, 60_000, Duration::from_secs(120)).await;
    bounded(keeper.inc(&keys[0], 100)).await.unwrap();
    assert_eq!(bounded(survivor.get(&keys[0])).await.unwrap(), (110, 0));
    assert_eq!(size_of(&redis, &prefix, "flushes"), 5);
    silence(&redis, &prefix, keeper.instance_id());

    within(
        Duration::from_secs(15),
        "the dead instances' collection",
        || async {
            survivor.get(&keys[1]).await.unwrap();
            size_of(&redis, &prefix, "parked") == 1
                && size_of(&redis, &prefix, "parked_owned") == 1
                && size_of(&redis, &prefix, "by_key") == 1
                && size_of(&redis, &prefix, "flushes") == 0
                && size_of(&redis, &prefix, "windows") == 2
        },
    )
    .await;
    assert_eq!(
        size_of(&redis, &prefix, "totals"),
        1,
        "only the keeper's parked slice still makes a total"
    );
    for k in &keys {
        assert_eq!(bounded(survivor.get(k)).await.unwrap(), (0, 0), "{k}");
    }
    // The keeper is inside its window: its slice comes back.
    assert_eq!(bounded(keeper.get(&keys[0])).await.unwrap(), (100, 100));
    assert_eq!(bounded(survivor.get(&keys[0])).await.unwrap(), (100, 0));
    assert_eq!(size_of(&redis, &prefix, "parked"), 0);
}

#[tokio::test]
async fn an_instance_back_after_its_revival_window_restores_nothing() {
    let redis = TestRedis::start();
    let prefix = fresh_key();
    let survivor = strict(&redis, &prefix, 60_000).await;
    let late = strict(&redis, &prefix, 60_000).await;
    let [k1, k2]: [DistkitRedisKey; 2] = one_shard_keys(2).try_into().unwrap();
    bounded(late.inc(&k1, 5)).await.unwrap();
    bounded(late.inc(&k2, -3)).await.unwrap();
    bounded(survivor.inc(&k1, 1)).await.unwrap();
    silence(&redis, &prefix, late.instance_id());
    assert_eq!(bounded(survivor.get(&k1)).await.unwrap(), (1, 1), "reaped");
    // Its window ends before any call collects its parked slices.
    let buried: usize = raw_keys(&prefix, "buried")
        .iter()
        .filter(|buried| redis.cli(&["ZADD", buried, "XX", "CH", "0", late.instance_id()]) == "1")
        .count();
    assert!(
        buried > 0,
        "the reaped instance was not waiting for its revival"
    );
    assert_eq!(
        bounded(late.get(&k1)).await.unwrap(),
        (1, 0),
        "nothing restored"
    );
    assert_eq!(bounded(late.get(&k2)).await.unwrap(), (0, 0));
    assert_eq!(size_of(&redis, &prefix, "parked"), 0);
    assert_eq!(
        bounded(late.inc(&k2, 2)).await.unwrap(),
        (2, 2),
        "starts afresh"
    );
}

/// A lone `inc` is two HINCRBYs (slice, then C); when C's overflows, the slice's is undone:
/// a slice that did not exist is gone again, one of 0 stays, indexes and all.
#[tokio::test]
async fn a_lone_increment_whose_total_overflows_leaves_every_record_as_it_was() {
    let redis = TestRedis::start();
    let prefix = fresh_key();
    let full = strict(&redis, &prefix, 30_000).await;
    let other = strict(&redis, &prefix, 30_000).await;
    let (fresh, zero) = (key("fresh"), key("zero"));
    for k in [&fresh, &zero] {
        bounded(full.set_on_instance(k, i64::MAX)).await.unwrap();
    }
    bounded(other.set_on_instance(&zero, 0)).await.unwrap();
    // Every field and value (or member) of the records a lone inc writes, sorted.
    let records = || {
        [
            ("slices", "HGETALL"),
            ("owned", "ZRANGE"),
            ("by_key", "ZRANGE"),
            ("totals", "HGETALL"),
        ]
        .map(|(kind, read)| {
            let output = if read == "ZRANGE" {
                read_all(&redis, &prefix, kind, &[read, "0", "-1"])
            } else {
                read_all(&redis, &prefix, kind, &[read])
            };
            let mut lines: Vec<&str> = output.lines().collect();
            lines.sort_unstable();
            format!("{kind}: {}", lines.join(" "))
        })
    };
    let state = records();
    for (k, amount) in [
        (&fresh, 1),
        (&zero, 1),
        (&fresh, i64::MAX),
        (&zero, i64::MAX),
    ] {
        let failed = bounded(other.inc(k, amount)).await;
        assert!(
            matches!(
                failed,
                Err(DistkitError::CounterError(CounterError::Overflow { .. }))
            ),
            "inc({k}, {amount}): {failed:?}"
        );
        assert_eq!(records(), state, "inc({k}, {amount}) left a trace");
    }
    assert_eq!(bounded(other.get(&fresh)).await.unwrap(), (i64::MAX, 0));
    assert_eq!(
        bounded(other.inc(&zero, -1)).await.unwrap(),
        (i64::MAX - 1, -1)
    );
}

/// A lone `inc` takes a fast path whose Lua arithmetic is exact only below 10^15: values
/// around that bound, around 2^53 and at the ends of i64 must come out exact (the fast path
/// hands them to the full script, undoing what it wrote), and overflow must change nothing.
#[tokio::test]
async fn lone_increments_around_the_fast_paths_limits_are_exact() {
    let redis = TestRedis::start();
    let prefix = fresh_key();
    let instances = [
        strict(&redis, &prefix, 30_000).await,
        strict(&redis, &prefix, 30_000).await,
    ];
    let keys = [key("a"), key("b")];
    const E15: i64 = 1_000_000_000_000_000;
    const E53: i64 = 1 << 53;
    let amounts = [
        1,
        -1,
        2,
        -2,
        7,
        E15 - 1,
        -(E15 - 1),
        E15,
        -E15,
        E15 + 1,
        E53 - 1,
        E53,
        E53 + 1,
        -E53,
        i64::MAX,
        i64::MIN,
        i64::MAX - 1,
        i64::MIN + 1,
    ];
    let seed = std::env::var("DISTKIT_ICOUNTER_MODEL_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or(7_u64);
    let mut rng = Rng::new(seed);
    // slices[instance][key], in i128 so the model itself never overflows.
    let mut slices = [[0_i128; 2]; 2];
    for step in 0..600 {
        let (i, k) = (rng.below(2), rng.below(2));
        let amount = if rng.below(3) == 0 {
            amounts[rng.below(amounts.len())]
        } else {
            // Small steps walk a value across a bound that large ones brought it near.
            i64::try_from(rng.below(5)).unwrap() - 2
        };
        let total: i128 = slices.iter().map(|own| own[k]).sum();
        let (new_slice, new_total) = (
            slices[i][k] + i128::from(amount),
            total + i128::from(amount),
        );
        let fits = |value: i128| i64::try_from(value).is_ok();
        let got = bounded(instances[i].inc(&keys[k], amount)).await;
        let context = format!(
            "seed {seed}, step {step}: instance {i} inc({}, {amount})",
            keys[k]
        );
        if fits(new_slice) && fits(new_total) {
            let expected = (
                i64::try_from(new_total).unwrap(),
                i64::try_from(new_slice).unwrap(),
            );
            assert_eq!(got.unwrap(), expected, "{context}");
            slices[i][k] = new_slice;
        } else {
            assert!(
                matches!(
                    got,
                    Err(DistkitError::CounterError(CounterError::Overflow { .. }))
                ),
                "{context}: {got:?}"
            );
            let unchanged = (
                i64::try_from(total).unwrap(),
                i64::try_from(slices[i][k]).unwrap(),
            );
            assert_eq!(
                bounded(instances[i].get(&keys[k])).await.unwrap(),
                unchanged,
                "{context}: a failed inc changed something"
            );
        }
    }
}

#[tokio::test]
async fn deleting_every_used_key_or_clearing_leaves_nothing_key_specific_in_redis() {
    let redis = TestRedis::start();
    let prefix = fresh_key();
    let first = strict(&redis, &prefix, 30_000).await;
    let second = strict(&redis, &prefix, 30_000).await;
    let sleeper = strict(&redis, &prefix, 60_000).await;
    for index in 0..200 {
        let k = key(&format!("d{index}"));
        bounded(first.inc(&k, 1)).await.unwrap();
        bounded(second.inc(&k, 2)).await.unwrap();
        if index % 2 == 0 {
            bounded(first.set(&k, 7)).await.unwrap();
        }
        assert_eq!(
            bounded(first.del(&k)).await.unwrap().1,
            i64::from(index % 2 == 0) * 6 + 1
        );
    }
    assert_eq!(key_specific_state(&redis, &prefix), 0, "after 200 inc+del");

    // A dead instance's parked slice goes with the key as well, and never comes back.
    let k = key("parked");
    bounded(sleeper.inc(&k, 4)).await.unwrap();
    bounded(first.inc(&k, 1)).await.unwrap();
    silence(&redis, &prefix, sleeper.instance_id());
    assert_eq!(bounded(first.get(&k)).await.unwrap(), (1, 1));
    assert_eq!(bounded(first.del(&k)).await.unwrap(), (1, 1));
    assert_eq!(
        key_specific_state(&redis, &prefix),
        0,
        "after del of a parked key"
    );
    assert_eq!(bounded(sleeper.get(&k)).await.unwrap(), (0, 0));

    // Clear, with counted, parked and lax slices under many keys.
    let lax_instance = synchronous_lax(&redis, &prefix).await;
    for index in 0..50 {
        let k = key(&format!("c{index}"));
        bounded(first.inc(&k, 1)).await.unwrap();
        bounded(sleeper.inc(&k, 2)).await.unwrap();
        bounded(lax_instance.inc(&k, 3)).await.unwrap();
    }
    silence(&redis, &prefix, sleeper.instance_id());
    assert_eq!(bounded(first.get(&key("c0"))).await.unwrap(), (4, 1));
    bounded(second.clear()).await.unwrap();
    assert_eq!(key_specific_state(&redis, &prefix), 0, "after clear");
    assert_eq!(bounded(sleeper.get(&key("c0"))).await.unwrap(), (0, 0));
    assert_eq!(
        bounded(lax_instance.inc(&key("c1"), 1)).await.unwrap(),
        (1, 1)
    );
}

#[tokio::test]
async fn clear_on_instance_is_all_or_nothing_when_one_key_would_overflow() {
    let redis = TestRedis::start();
    let prefix = fresh_key();
    let (a, b, c) = (
        strict(&redis, &prefix, 30_000).await,
        strict(&redis, &prefix, 30_000).await,
        strict(&redis, &prefix, 30_000).await,
    );
    // a's slice of "a-first" is taken first, then "z-last" cannot leave: the other slices of
    // "z-last" sum to 2 * i64::MAX.
    let (first, last) = (key("a-first"), key("z-last"));
    bounded(a.inc(&first, 5)).await.unwrap();
    bounded(b.inc(&first, 1)).await.unwrap();
    bounded(b.set_on_instance(&last, i64::MAX)).await.unwrap();
    bounded(a.inc(&last, -i64::MAX)).await.unwrap();
    assert_eq!(
        bounded(c.inc(&last, i64::MAX)).await.unwrap(),
        (i64::MAX, i64::MAX)
    );
    let failed = bounded(a.clear_on_instance()).await;
    assert!(
        matches!(
            failed,
            Err(DistkitError::CounterError(CounterError::Overflow { .. }))
        ),
        "{failed:?}"
    );
    assert_eq!(
        bounded(a.get(&first)).await.unwrap(),
        (6, 5),
        "nothing changed"
    );
    assert_eq!(bounded(a.get(&last)).await.unwrap(), (i64::MAX, -i64::MAX));
    // Once it fits, it clears everything.
    bounded(c.del_on_instance(&last)).await.unwrap();
    bounded(a.clear_on_instance()).await.unwrap();
    assert_eq!(bounded(b.get(&first)).await.unwrap(), (1, 1));
    assert_eq!(bounded(b.get(&last)).await.unwrap(), (i64::MAX, i64::MAX));
}

/// A small deterministic generator (xorshift64*), so a failing case replays from its seed.
struct Rng(u64);

#[expect(
    clippy::unwrap_used,
    clippy::arithmetic_side_effects,
    reason = "a test generator over small constant bounds"
)]
impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, bound: usize) -> usize {
        usize::try_from(self.next() % u64::try_from(bound).unwrap()).unwrap()
    }

    fn amount(&mut self) -> i64 {
        i64::try_from(self.below(21)).unwrap() - 10
    }
}

/// The sequential model of one instance: its counted slices, the slices parked while it is
/// dead, and whether Redis was told it is silent (dead at the next call of another).
#[derive(Default)]
struct ModelInstance {
    slices: std::collections::HashMap<usize, i64>,
    parked: std::collections::HashMap<usize, i64>,
    silenced: bool,
    dead: bool,
}

struct Model(Vec<ModelInstance>);

#[expect(
    clippy::indexing_slicing,
    reason = "instance numbers come from the test's own range"
)]
impl Model {
    /// C of `key`: the sum of the slices of the instances that are not dead.
    fn total(&self, key: usize) -> i64 {
        self.0
            .iter()
            .filter(|instance| !instance.dead)
            .map(|instance| instance.slices.get(&key).copied().unwrap_or(0))
            .sum()
    }

    fn slice(&self, instance: usize, key: usize) -> i64 {
        self.0[instance].slices.get(&key).copied().unwrap_or(0)
    }

    fn pair(&self, instance: usize, key: usize) -> (i64, i64) {
        (self.total(key), self.slice(instance, key))
    }

    /// What every call of `caller` does first: renew (or revive) the caller, then reap every
    /// other silenced instance.
    fn call_by(&mut self, caller: usize) {
        let me = &mut self.0[caller];
        me.silenced = false;
        if me.dead {
            me.dead = false;
            let parked = std::mem::take(&mut me.parked);
            me.slices.extend(parked);
        }
        for instance in &mut self.0 {
            if instance.silenced {
                instance.silenced = false;
                instance.dead = true;
                let slices = std::mem::take(&mut instance.slices);
                instance.parked.extend(slices);
            }
        }
    }

    /// A global set or delete: every slice of `key`, counted or parked, is gone.
    fn reset(&mut self, key: usize) {
        for instance in &mut self.0 {
            instance.slices.remove(&key);
            instance.parked.remove(&key);
        }
    }
}

/// Runs one random schedule of strict operations, dying and reviving instances, and checks
/// every answer against the sequential model.
#[expect(
    clippy::too_many_lines,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::unwrap_used,
    reason = "a test: one match arm per operation, indexes from its own ranges, failures fail it"
)]
async fn run_model_case(redis: &TestRedis, seed: u64, steps: usize) {
    const INSTANCES: usize = 4;
    const KEYS: usize = 5;
    let mut rng = Rng::new(seed);
    let prefix = fresh_key();
    let mut counters = Vec::new();
    for _ in 0..INSTANCES {
        // A 10-minute threshold: no heartbeat runs during a case, deaths come from `silence`.
        counters.push(strict(redis, &prefix, 600_000).await);
    }
    // The keys share one shard: liveness is judged per shard (an instance's call revives it
    // in the shard it calls, its heartbeat in every shard it joined), and this model, like
    // the script, has one membership. Sharding is covered by the tests that name it.
    let keys: Vec<DistkitRedisKey> = common::keys_in_one_shard("m", KEYS, common::test_shards())
        .iter()
        .map(|name| key(name))
        .collect();
    let mut model = Model((0..INSTANCES).map(|_| ModelInstance::default()).collect());
    let mut trace = Vec::new();
    for step in 0..steps {
        let i = rng.below(INSTANCES);
        let k = rng.below(KEYS);
        let counter = &counters[i];
        let choice = rng.below(20);
        trace.push(format!(
            "step {step}: instance {i}, key {k}, choice {choice}"
        ));
        let context = format!(
            "seed {seed}, step {step}; replay: DISTKIT_ICOUNTER_MODEL_SEED={seed} cargo test \
             -p distkit-tests --all-features --test icounter -- randomized\n{}",
            trace.join("\n")
        );
        if choice >= 17 {
            // Another instance (or this one) goes silent; a dead one stays dead.
            let victim = rng.below(INSTANCES);
            for (alive, due) in raw_keys(&prefix, "alive")
                .iter()
                .zip(raw_keys(&prefix, "due"))
            {
                redis.cli(&["ZADD", alive, "XX", "0", counters[victim].instance_id()]);
                // The script's header asks whoever edits `alive` by hand to delete `due`.
                redis.cli(&["DEL", &due]);
            }
            if !model.0[victim].dead {
                model.0[victim].silenced = true;
            }
            continue;
        }
        model.call_by(i);
        match choice {
            0..=3 => {
                let amount = rng.amount();
                let got = bounded(counter.inc(&keys[k], amount)).await.unwrap();
                *model.0[i].slices.entry(k).or_insert(0) += amount;
                assert_eq!(got, model.pair(i, k), "inc: {context}");
            }
            4 => {
                let got = bounded(counter.get(&keys[k])).await.unwrap();
                assert_eq!(got, model.pair(i, k), "get: {context}");
            }
            5 | 6 => {
                let amount = rng.amount();
                let got = bounded(counter.set(&keys[k], amount)).await.unwrap();
                model.reset(k);
                model.0[i].slices.insert(k, amount);
                assert_eq!(got, model.pair(i, k), "set: {context}");
            }
            7 | 8 => {
                let amount = rng.amount();
                let got = bounded(counter.set_on_instance(&keys[k], amount))
                    .await
                    .unwrap();
                model.0[i].slices.insert(k, amount);
                assert_eq!(got, model.pair(i, k), "set_on_instance: {context}");
            }
            9 => {
                let expected = model.pair(i, k);
                let got = bounded(counter.del(&keys[k])).await.unwrap();
                model.reset(k);
                assert_eq!(got, expected, "del: {context}");
            }
            10 => {
                let removed = model.slice(i, k);
                model.0[i].slices.remove(&k);
                let got = bounded(counter.del_on_instance(&keys[k])).await.unwrap();
                assert_eq!(got, (model.total(k), removed), "del_on_instance: {context}");
            }
            11 | 12 => {
                let updates: Vec<(usize, i64)> = (0..1 + rng.below(3))
                    .map(|_| (rng.below(KEYS), rng.amount()))
                    .collect();
                let global = choice == 12;
                let refs: Vec<(&DistkitRedisKey, i64)> = updates
                    .iter()
                    .map(|&(key_index, amount)| (&keys[key_index], amount))
                    .collect();
                if !global && rng.below(3) == 0 {
                    // Two i64::MAX deltas at the end: the batch must fail and change nothing
                    // (the slices its first operations created included).
                    let mut failing = refs.clone();
                    let last = &keys[rng.below(KEYS)];
                    failing.extend([(last, i64::MAX), (last, i64::MAX)]);
                    let failed = bounded(counter.inc_all(&failing)).await;
                    assert!(
                        matches!(
                            failed,
                            Err(DistkitError::CounterError(CounterError::Overflow { .. }))
                        ),
                        "failing batch: {failed:?}, {context}"
                    );
                    continue;
                }
                let got = if global {
                    bounded(counter.set_all(&refs)).await.unwrap()
                } else {
                    bounded(counter.inc_all(&refs)).await.unwrap()
                };
                for (&(key_index, amount), (_, total, own)) in updates.iter().zip(got) {
                    if global {
                        model.reset(key_index);
                        model.0[i].slices.insert(key_index, amount);
                    } else {
                        *model.0[i].slices.entry(key_index).or_insert(0) += amount;
                    }
                    assert_eq!((total, own), model.pair(i, key_index), "batch: {context}");
                }
            }
            13 | 14 => {
                let operand = rng.amount();
                let amount = rng.amount();
                let old = model.pair(i, k);
                let got = bounded(counter.inc_if(&keys[k], CounterComparator::Gt(operand), amount))
                    .await
                    .unwrap();
                if old.0 > operand {
                    *model.0[i].slices.entry(k).or_insert(0) += amount;
                }
                assert_eq!(got, (model.pair(i, k), old), "inc_if: {context}");
            }
            15 => {
                bounded(counter.clear_on_instance()).await.unwrap();
                model.0[i].slices.clear();
            }
            _ if rng.below(4) == 0 => {
                bounded(counter.clear()).await.unwrap();
                for instance in &mut model.0 {
                    instance.slices.clear();
                    instance.parked.clear();
                }
            }
            _ => {
                let got = bounded(counter.get_all_on_instance(&[&keys[k]]))
                    .await
                    .unwrap();
                assert_eq!(
                    got,
                    vec![(&keys[k], model.slice(i, k))],
                    "get_all_on_instance: {context}"
                );
            }
        }
    }
    // Every instance makes a last call (reviving if it was reaped), then every pair.
    let refs: Vec<&DistkitRedisKey> = keys.iter().collect();
    for (i, counter) in counters.iter().enumerate() {
        bounded(counter.get(&keys[0])).await.unwrap();
        model.call_by(i);
    }
    for (i, counter) in counters.iter().enumerate() {
        for (k, (_, total, own)) in bounded(counter.get_all(&refs))
            .await
            .unwrap()
            .into_iter()
            .enumerate()
        {
            assert_eq!(
                (total, own),
                model.pair(i, k),
                "final state, seed {seed}, key {k}"
            );
        }
    }
    // Deleting every key leaves nothing behind: no orphan slice, index entry or total.
    for k in &keys {
        bounded(counters[0].del(k)).await.unwrap();
    }
    assert_eq!(
        key_specific_state(redis, &prefix),
        0,
        "seed {seed}: state after del"
    );
}

#[tokio::test]
async fn randomized_schedules_with_deaths_and_revivals_match_the_sequential_model() {
    let redis = TestRedis::start();
    // DISTKIT_ICOUNTER_MODEL_SEED replays one case; DISTKIT_ICOUNTER_MODEL_CASES runs more.
    let seeds: Vec<u64> = match std::env::var("DISTKIT_ICOUNTER_MODEL_SEED") {
        Ok(seed) => vec![seed.parse().unwrap()],
        Err(_) => {
            let cases = std::env::var("DISTKIT_ICOUNTER_MODEL_CASES")
                .ok()
                .and_then(|cases| cases.parse().ok())
                .unwrap_or(20_u64);
            (1..=cases).collect()
        }
    };
    for seed in seeds {
        run_model_case(&redis, seed, 150).await;
    }
}

#[tokio::test]
async fn whether_a_condition_held_is_told_by_matching_the_old_total_or_slice() {
    let redis = TestRedis::start();
    for lax_flavour in [false, true] {
        let (a, b) = pair_of(&redis, lax_flavour).await;
        let k = key("k");
        bounded(a.set_on_instance(&k, 2)).await.unwrap();
        bounded(b.set_on_instance(&k, 3)).await.unwrap();
        // C = 5, I of b = 3. Held without a change: new == old all the same.
        let held = CounterComparator::Eq(5);
        let (new, old) = bounded(b.inc_if(&k, held, 0)).await.unwrap();
        assert_eq!((new, old), ((5, 3), (5, 3)), "lax: {lax_flavour}");
        assert!(held.matches(old.0));
        let on_instance = CounterComparator::Eq(3);
        let (new, old) = bounded(b.set_on_instance_if(&k, on_instance, 3))
            .await
            .unwrap();
        assert_eq!((new, old), ((5, 3), (5, 3)), "lax: {lax_flavour}");
        assert!(on_instance.matches(old.1));
        // Failed: nothing written, and the comparator says so.
        let failed = CounterComparator::Lt(5);
        let (new, old) = bounded(b.set_if(&k, failed, 1)).await.unwrap();
        assert_eq!((new, old), ((5, 3), (5, 3)), "lax: {lax_flavour}");
        assert!(!failed.matches(old.0));
        let (_, old) = bounded(b.set_on_instance_if(&k, failed, 1)).await.unwrap();
        assert!(failed.matches(old.1), "I = 3 < 5: this one held");
        assert_eq!(bounded(a.get(&k)).await.unwrap().0, 3, "lax: {lax_flavour}");
    }
}
