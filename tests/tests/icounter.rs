//! Instance-aware counters through the facade, against a private Redis.

mod common;

use std::sync::Arc;
use std::time::Duration;

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
    let mut options = StrictInstanceAwareCounterOptions::new(prefix.clone(), client(redis).await);
    options.dead_instance_threshold_ms = threshold_ms;
    StrictInstanceAwareCounter::new(options)
}

async fn lax(
    redis: &TestRedis,
    prefix: &DistkitRedisKey,
    threshold_ms: u64,
) -> Arc<LaxInstanceAwareCounter> {
    let mut options = LaxInstanceAwareCounterOptions::new(prefix.clone(), client(redis).await);
    options.dead_instance_threshold_ms = threshold_ms;
    LaxInstanceAwareCounter::new(options)
}

/// A lax instance with a zero allowed lag: every call goes to Redis at once, so the shared
/// behaviour tests can assert exact values across instances.
async fn synchronous_lax(
    redis: &TestRedis,
    prefix: &DistkitRedisKey,
) -> Arc<LaxInstanceAwareCounter> {
    let mut options = LaxInstanceAwareCounterOptions::new(prefix.clone(), client(redis).await);
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

/// Makes the Redis server believe `instance` has been silent for a minute.
fn silence(redis: &TestRedis, prefix: &DistkitRedisKey, instance: &str) {
    let alive = format!("distkit:{{{prefix}}}:ic:alive");
    assert_eq!(
        redis.cli(&["ZADD", &alive, "XX", "CH", "0", instance]),
        "1",
        "the instance was not alive"
    );
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
    let (k1, k2, k3) = (key("k1"), key("k2"), key("k3"));
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

    let mut options = LaxInstanceAwareCounterOptions::new(prefix.clone(), client(&redis).await);
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
