//! distkit on a real three-master Redis Cluster: every primitive on prefixes spread over all
//! masters, each script's keys on the node that owns their hash tag. (The counter,
//! instance-aware and lock test files also run whole against a cluster with
//! `DISTKIT_TEST_DEPLOYMENT=cluster`; `scripts/test.sh` does both.)

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{bounded, client, eventually, key};
use distkit::DistkitRedisKey;
use distkit::counter::{CounterTrait, LaxCounter, StrictCounter};
use distkit::icounter::{InstanceAwareCounterTrait, StrictInstanceAwareCounter};
use distkit::lock::{LockGuardState, LockOptions, Mutex, RwLock};
use distkit_test_support::{TestRedis, unique_prefix};

/// One prefix per master: unique prefixes until every master serves one.
fn prefix_per_master(cluster: &TestRedis) -> BTreeMap<u16, DistkitRedisKey> {
    let mut prefixes = BTreeMap::new();
    for _ in 0..200 {
        let prefix = unique_prefix();
        let node = cluster.node_of(&common::counter_hash(&key(&prefix), "k"));
        prefixes.entry(node).or_insert_with(|| key(&prefix));
        if prefixes.len() == cluster.ports().len() {
            break;
        }
    }
    assert_eq!(prefixes.len(), 3, "could not find a prefix on every master");
    prefixes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_primitive_works_on_every_master_of_a_cluster() {
    let cluster = TestRedis::start_cluster();
    assert!(cluster.is_cluster());
    let client = client(&cluster).await;
    for (node, prefix) in prefix_per_master(&cluster) {
        let k = key("k");
        let strict = StrictCounter::new(common::counter_options(prefix.clone(), client.clone()));
        let lax = LaxCounter::new(common::counter_options(prefix.clone(), client.clone()));
        assert_eq!(bounded(strict.inc(&k, 5)).await.unwrap(), 5);
        assert_eq!(
            bounded(strict.inc_all(&[(&k, 1), (&key("j"), 2)]))
                .await
                .unwrap()
                .len(),
            2
        );
        assert_eq!(bounded(lax.inc(&k, 4)).await.unwrap(), 10);
        bounded(lax.flush()).await.unwrap();
        assert_eq!(bounded(strict.get(&k)).await.unwrap(), 10);
        // The values live on the master that owns the prefix's hash tag.
        let hash = common::counter_hash(&prefix, "k");
        assert_eq!(
            cluster.node_cli(node, &["HGET", &hash, "k"]),
            "10",
            "not on node {node}"
        );

        let instances = StrictInstanceAwareCounter::new(common::strict_ic_options(
            prefix.clone(),
            client.clone(),
        ));
        assert_eq!(bounded(instances.inc(&k, 3)).await.unwrap(), (3, 3));
        assert_eq!(bounded(instances.set(&k, 7)).await.unwrap(), (7, 7));

        let lock_options = LockOptions::builder(prefix.clone(), client.clone())
            .ttl(Duration::from_secs(5))
            .build();
        let mutex = Mutex::new(lock_options.clone());
        let guard = bounded(mutex.lock()).await.unwrap();
        assert_eq!(
            cluster.node_cli(node, &["EXISTS", &format!("distkit-locks:{{{prefix}}}")]),
            "1"
        );
        let contender = Mutex::new(lock_options.clone());
        let waiter =
            tokio::spawn(async move { contender.lock().await.map(|guard| guard.fencing_token()) });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let first_token = guard.fencing_token();
        assert_eq!(
            bounded(guard.release()).await.unwrap(),
            LockGuardState::Released
        );
        assert!(
            bounded(waiter).await.unwrap().unwrap() > first_token,
            "handover on a cluster"
        );

        let rwlock = RwLock::new(lock_options);
        let reader = bounded(rwlock.read()).await.unwrap();
        assert!(bounded(rwlock.try_write()).await.is_err());
        bounded(reader.release()).await.unwrap();
        bounded(rwlock.try_write()).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutex_handovers_use_a_sharded_inbox_on_the_locks_own_node() {
    let cluster = TestRedis::start_cluster();
    for (node, name) in prefix_per_master(&cluster) {
        let holder = Mutex::new(LockOptions::new(name.clone(), client(&cluster).await));
        let guard = bounded(holder.lock()).await.unwrap();
        // Polls 30 s or more apart, every await bounded by 20 s: only the handover's
        // announcement can serve the waiter.
        let waiter = Mutex::new(
            LockOptions::builder(name.clone(), client(&cluster).await)
                .retry_interval(Duration::from_secs(60))
                .build(),
        );
        let waiting = tokio::spawn({
            let waiter = std::sync::Arc::clone(&waiter);
            async move { waiter.lock().await }
        });
        let inbox_prefix = format!("distkit-locks:{{{name}}}:released:inbox:");
        let (cluster_ref, inbox_prefix) = (&cluster, inbox_prefix.as_str());
        eventually("a sharded inbox on the lock's node", || async move {
            cluster_ref
                .node_cli(node, &["PUBSUB", "SHARDCHANNELS"])
                .lines()
                .any(|line| line.starts_with(inbox_prefix))
        })
        .await;
        assert_eq!(
            bounded(guard.release()).await.unwrap(),
            LockGuardState::Released
        );
        let handed = bounded(waiting).await.unwrap().unwrap();
        assert_eq!(handed.get_state().await, LockGuardState::Acquired);
        assert_eq!(
            bounded(handed.release()).await.unwrap(),
            LockGuardState::Released
        );
    }
}
