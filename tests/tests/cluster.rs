//! distkit on a real three-master Redis Cluster: every primitive on prefixes spread over all
//! masters, each script's keys on the node that owns their hash tag. (The counter,
//! instance-aware and lock test files also run whole against a cluster with
//! `DISTKIT_TEST_DEPLOYMENT=cluster`; `scripts/test.sh` does both.)

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use common::{bounded, client, eventually, key};
use distkit::counter::{CounterError, CounterOptions, CounterTrait, LaxCounter, StrictCounter};
use distkit::icounter::{
    InstanceAwareCounterTrait, LaxInstanceAwareCounter, LaxInstanceAwareCounterOptions,
    StrictInstanceAwareCounter, StrictInstanceAwareCounterOptions,
};
use distkit::lock::{LockGuardState, LockOptions, Mutex, RwLock};
use distkit::{DistkitError, DistkitRedisKey};
use distkit_test_support::{TestRedis, unique_prefix};

/// One prefix per master: unique prefixes until every master serves one.
fn prefix_per_master(cluster: &TestRedis) -> BTreeMap<u16, DistkitRedisKey> {
    let mut prefixes = BTreeMap::new();
    for _ in 0..200 {
        let prefix = unique_prefix();
        // The prefix's locks (its own tag) and its counter value of "k" (in k's shard) on
        // the same master.
        let node = cluster.node_of(&format!("{{{prefix}}}"));
        if cluster.node_of(&common::counter_hash(&key(&prefix), "k")) != node {
            continue;
        }
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

/// On a server without sharded pub/sub (Redis before 7.0) the inbox is a plain channel: the
/// test then says so and checks that one instead (on any node), and that the handover is still
/// announced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutex_handovers_use_a_sharded_inbox_on_the_locks_own_node() {
    let cluster = TestRedis::start_cluster();
    let version = cluster.server_version();
    let sharded = version.has_sharded_pubsub();
    if !sharded {
        eprintln!(
            "server {version} has no sharded pub/sub (Redis 7.0+): checking the plain-channel \
             inbox it falls back to instead"
        );
    }
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
        if sharded {
            eventually("a sharded inbox on the lock's node", || async move {
                cluster_ref
                    .node_cli(node, &["PUBSUB", "SHARDCHANNELS"])
                    .lines()
                    .any(|line| line.starts_with(inbox_prefix))
            })
            .await;
        } else {
            eventually("a plain-channel inbox", || async move {
                cluster_ref.ports().iter().any(|&port| {
                    cluster_ref
                        .node_cli(port, &["PUBSUB", "CHANNELS"])
                        .lines()
                        .any(|line| line.starts_with(inbox_prefix))
                })
            })
            .await;
        }
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

/// The data commands (scripts and hash reads) each master has run so far, from
/// `INFO commandstats`, by port.
fn data_commands(cluster: &TestRedis) -> BTreeMap<u16, u64> {
    const DATA: [&str; 5] = ["evalsha", "eval", "hget", "hmget", "unlink"];
    cluster
        .ports()
        .iter()
        .map(|&port| {
            let stats = cluster.node_cli(port, &["INFO", "commandstats"]);
            let calls = stats
                .lines()
                .filter_map(|line| {
                    let (name, rest) = line.strip_prefix("cmdstat_")?.split_once(':')?;
                    if !DATA.contains(&name) {
                        return None;
                    }
                    let calls = rest.split(',').next()?.strip_prefix("calls=")?;
                    calls.parse::<u64>().ok()
                })
                .sum();
            (port, calls)
        })
        .collect()
}

/// Asserts that the data commands run since `before` are spread: no master ran more than
/// 70%, at least two ran 10% or more.
#[expect(
    clippy::cast_precision_loss,
    reason = "command counts as shares of their total"
)]
fn assert_spread(cluster: &TestRedis, before: &BTreeMap<u16, u64>, what: &str) {
    let after = data_commands(cluster);
    let runs: Vec<(u16, u64)> = after
        .iter()
        .map(|(port, calls)| {
            (
                *port,
                calls.saturating_sub(before.get(port).copied().unwrap_or(0)),
            )
        })
        .collect();
    let total: u64 = runs.iter().map(|(_, calls)| calls).sum();
    assert!(total > 0, "{what}: no data command ran");
    let shares: Vec<f64> = runs
        .iter()
        .map(|&(_, calls)| calls as f64 / total as f64)
        .collect();
    assert!(
        shares.iter().all(|&share| share <= 0.70),
        "{what}: one master ran more than 70% of the prefix's data commands: {runs:?}"
    );
    assert!(
        shares.iter().filter(|&&share| share >= 0.10).count() >= 2,
        "{what}: fewer than two masters ran 10% or more: {runs:?}"
    );
    println!("{what}: data commands per master {runs:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_prefix_with_uniform_keys_spreads_its_commands_over_the_masters() {
    const KEYS: usize = 1_200;
    const TASKS: usize = 24;
    let cluster = TestRedis::start_cluster();
    // A fixed prefix: the cluster's slot ranges are fixed too, so the spread is the same on
    // every run (the shards of this prefix are not all on one master by chance).
    let prefix = key("tenants");
    let client = client(&cluster).await;
    let keys: Arc<Vec<DistkitRedisKey>> =
        Arc::new((0..KEYS).map(|n| key(&format!("tenant-{n}"))).collect());
    let refs: Vec<&DistkitRedisKey> = keys.iter().collect();

    // Strict increments from concurrent tasks (group commits split per shard).
    let strict = StrictCounter::new(CounterOptions::new(prefix.clone(), client.clone()));
    let before = data_commands(&cluster);
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let (strict, keys) = (Arc::clone(&strict), Arc::clone(&keys));
        tasks.push(tokio::spawn(async move {
            for k in keys.iter().skip(task).step_by(TASKS) {
                strict.inc(k, 1).await.unwrap();
            }
        }));
    }
    for task in tasks {
        bounded(task).await.unwrap();
    }
    assert_spread(&cluster, &before, "strict increments");
    for (k, value) in bounded(strict.get_all(&refs)).await.unwrap() {
        assert_eq!(value, 1, "{k}");
    }

    // Lax increments: the cold reads and the flushes (one script per shard of a batch).
    let lax = LaxCounter::new(CounterOptions::new(prefix.clone(), client.clone()));
    let before = data_commands(&cluster);
    for k in keys.iter() {
        bounded(lax.inc(k, 2)).await.unwrap();
    }
    for k in keys.iter() {
        bounded(lax.inc(k, 2)).await.unwrap();
    }
    bounded(lax.flush()).await.unwrap();
    assert_spread(&cluster, &before, "lax increments and flushes");
    for (k, value) in bounded(strict.get_all(&refs)).await.unwrap() {
        assert_eq!(value, 5, "{k}");
    }

    // Instance-aware counters, strict and lax.
    let instances = StrictInstanceAwareCounter::new(StrictInstanceAwareCounterOptions::new(
        prefix.clone(),
        client.clone(),
    ));
    let lax_instances = LaxInstanceAwareCounter::new(LaxInstanceAwareCounterOptions::new(
        prefix.clone(),
        client.clone(),
    ));
    let before = data_commands(&cluster);
    for k in keys.iter() {
        bounded(instances.inc(k, 3)).await.unwrap();
        bounded(lax_instances.inc(k, 4)).await.unwrap();
    }
    bounded(lax_instances.flush()).await.unwrap();
    assert_spread(&cluster, &before, "instance-aware increments");
    for (k, total, own) in bounded(instances.get_all(&refs)).await.unwrap() {
        assert_eq!((total, own), (7, 3), "{k}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handle_with_another_shard_count_is_refused_before_anything_is_applied() {
    let cluster = TestRedis::start_cluster();
    let client = client(&cluster).await;
    let prefix = key(&distkit_test_support::unique_prefix());
    let k = key("k");
    let strict = StrictCounter::new(CounterOptions::new(prefix.clone(), client.clone()));
    assert_eq!(bounded(strict.inc(&k, 5)).await.unwrap(), 5);
    let mut one = CounterOptions::new(prefix.clone(), client.clone());
    one.shards = 1;
    let mut eight = CounterOptions::new(prefix.clone(), client.clone());
    eight.shards = 8;
    for options in [one, eight] {
        let configured = options.shards;
        let other_strict = StrictCounter::new(options.clone());
        let other_lax = LaxCounter::new(options);
        let counters: [Arc<dyn CounterTrait + Send + Sync>; 2] = [other_strict, other_lax];
        for counter in counters {
            for result in [
                bounded(counter.inc(&k, 1)).await,
                bounded(counter.get(&k)).await,
                bounded(counter.set(&k, 9)).await,
                bounded(counter.inc_all(&[(&k, 1), (&key("j"), 1)]))
                    .await
                    .map(|values| i64::try_from(values.len()).unwrap()),
                bounded(counter.clear()).await.map(|()| 0),
            ] {
                assert!(
                    matches!(
                        result,
                        Err(DistkitError::CounterError(CounterError::ShardCountMismatch {
                            configured: c,
                            stored: 16,
                            ..
                        })) if c == configured
                    ),
                    "{configured} shards: {result:?}"
                );
            }
        }
    }
    // Nothing was applied, and the recorded count still serves the right handles.
    assert_eq!(bounded(strict.get(&k)).await.unwrap(), 5);
    assert_eq!(bounded(strict.get(&key("j"))).await.unwrap(), 0);

    // Instance-aware counters record their own count; data from before the record (the
    // single-slot layout) is recorded as one shard.
    let legacy = key(&distkit_test_support::unique_prefix());
    let totals = format!("distkit:{{{legacy}}}:ic:totals");
    assert_eq!(cluster.cli(&["HSET", &totals, "k", "4"]), "1");
    let sharded = StrictInstanceAwareCounter::new(StrictInstanceAwareCounterOptions::new(
        legacy.clone(),
        client.clone(),
    ));
    let result = bounded(sharded.inc(&k, 1)).await;
    assert!(
        matches!(
            result,
            Err(DistkitError::CounterError(
                CounterError::ShardCountMismatch {
                    configured: 16,
                    stored: 1,
                    ..
                }
            ))
        ),
        "{result:?}"
    );
    let mut single = StrictInstanceAwareCounterOptions::new(legacy, client);
    single.shards = 1;
    let single = StrictInstanceAwareCounter::new(single);
    assert_eq!(bounded(single.get(&k)).await.unwrap(), (4, 0));
    assert_eq!(cluster.cli(&["HGET", &totals, "k"]), "4");
}
