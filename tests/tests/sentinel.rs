//! `redis-sentinel://` end to end, and the bad inputs of replication: every primitive keeps
//! working after the primary dies, and wrong Sentinel URLs or replica counts give one clear
//! error within their bound, never a hang.

#![expect(clippy::expect_used, reason = "a failed expect is a failed test")]

mod common;

use std::time::{Duration, Instant};

use common::bounded;
use distkit::counter::{CounterError, CounterOptions, CounterTrait, LaxCounter, StrictCounter};
use distkit::icounter::{
    InstanceAwareCounterTrait, LaxInstanceAwareCounter, LaxInstanceAwareCounterOptions,
    StrictInstanceAwareCounter, StrictInstanceAwareCounterOptions,
};
use distkit::lock::LockError;
use distkit::lock::{LockOptions, Mutex, RwLock};
use distkit::{ConnectOptions, DistkitError, DistkitRedisKey, ReplicaAcks};
use distkit_test_support::{ReplicatedRedis, unique_prefix};

/// How long every primitive may take to work again after the primary was killed: the
/// Sentinels' `down-after-milliseconds` (1 s), their election and fred's reconnection.
const RECOVERY_BOUND: Duration = Duration::from_secs(15);

fn key(text: &str) -> DistkitRedisKey {
    DistkitRedisKey::new_or_panic(text.to_owned())
}

async fn client_for(url: &str) -> distkit::fred::clients::Client {
    bounded(
        ConnectOptions::new(url)
            .command_timeout(Duration::from_secs(2))
            .connect(),
    )
    .await
    .expect("connect through the Sentinels")
}

/// Calls `operation` until it succeeds; returns how long that took, failing the test after
/// [`RECOVERY_BOUND`].
async fn until_it_works<F, Fut, T>(what: &str, mut operation: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, DistkitError>>,
{
    let started = Instant::now();
    loop {
        match tokio::time::timeout(Duration::from_secs(5), operation()).await {
            Ok(Ok(_)) => return started.elapsed(),
            Ok(Err(error)) => assert!(
                started.elapsed() < RECOVERY_BOUND,
                "{what} still failed after {RECOVERY_BOUND:?}: {error}"
            ),
            Err(_) => assert!(
                started.elapsed() < RECOVERY_BOUND,
                "{what} still hung after {RECOVERY_BOUND:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_primitive_works_through_sentinel_before_and_after_the_primary_dies() {
    let topology = tokio::task::spawn_blocking(|| ReplicatedRedis::start_with_sentinels(2, 3))
        .await
        .unwrap();
    let url = topology.sentinel_url();
    let client = client_for(&url).await;
    let prefix = key(&unique_prefix());
    let strict = StrictCounter::new(CounterOptions::new(prefix.clone(), client.clone()));
    let lax = LaxCounter::new(CounterOptions::new(prefix.clone(), client.clone()));
    let strict_instances = StrictInstanceAwareCounter::new(StrictInstanceAwareCounterOptions::new(
        key(&format!("{}-si", prefix.as_str())),
        client.clone(),
    ));
    let lax_instances = LaxInstanceAwareCounter::new(LaxInstanceAwareCounterOptions::new(
        key(&format!("{}-li", prefix.as_str())),
        client.clone(),
    ));
    let mutex = Mutex::new(LockOptions::new(
        key(&format!("{}-mutex", prefix.as_str())),
        client.clone(),
    ));
    let rwlock = RwLock::new(LockOptions::new(
        key(&format!("{}-rw", prefix.as_str())),
        client.clone(),
    ));
    let counted = key("counted");

    // Before the failover, every primitive works through the Sentinels.
    assert_eq!(bounded(strict.inc(&counted, 1)).await.unwrap(), 1);
    bounded(lax.inc(&counted, 1)).await.unwrap();
    bounded(lax.flush()).await.unwrap();
    bounded(strict_instances.inc(&counted, 1)).await.unwrap();
    bounded(lax_instances.inc(&counted, 1)).await.unwrap();
    bounded(mutex.try_lock())
        .await
        .unwrap()
        .release()
        .await
        .unwrap();
    bounded(rwlock.try_write())
        .await
        .unwrap()
        .release()
        .await
        .unwrap();
    let primary = topology.primary_port();

    // SIGKILL of the primary; the clock starts at its death.
    let killed_at = Instant::now();
    let topology = tokio::task::spawn_blocking(move || {
        let mut topology = topology;
        topology.kill_node(primary);
        topology
    })
    .await
    .unwrap();
    let first_call = until_it_works("a strict increment", || strict.inc(&counted, 1)).await;
    let since_death = killed_at.elapsed();
    println!(
        "the first strict call succeeded {:?} after the primary's death (the call started {:?} after it)",
        since_death,
        since_death.saturating_sub(first_call)
    );
    assert!(since_death < RECOVERY_BOUND, "took {since_death:?}");
    let topology = tokio::task::spawn_blocking(move || {
        let mut topology = topology;
        assert_ne!(topology.primary_port(), primary);
        topology.restart_node(primary);
        topology
    })
    .await
    .unwrap();

    // After it, each works again within the bound, on the new primary.
    let mut recoveries = [
        until_it_works("a lax flush", || async {
            lax.inc(&counted, 1).await?;
            lax.flush().await
        })
        .await,
        until_it_works("a strict instance-aware increment", || {
            strict_instances.inc(&counted, 1)
        })
        .await,
        until_it_works("a lax instance-aware increment", || async {
            lax_instances.inc(&counted, 1).await?;
            lax_instances.flush().await
        })
        .await,
        until_it_works("a mutex", || async {
            mutex
                .try_lock_for(Duration::from_secs(3))
                .await?
                .release()
                .await
        })
        .await,
        until_it_works("a rwlock", || async {
            rwlock
                .try_write_for(Duration::from_secs(3))
                .await?
                .release()
                .await
        })
        .await,
    ];
    recoveries.sort();
    println!(
        "then the other primitives took (ms, sorted): {:?}",
        recoveries
            .iter()
            .map(Duration::as_millis)
            .collect::<Vec<_>>()
    );
    // The strict value kept its acknowledged increment (or lost it, without replica
    // acknowledgement, only if the primary died before replicating it).
    let value = bounded(strict.get(&counted)).await.unwrap();
    assert!(value >= 1, "the strict counter went back to {value}");
    drop(topology);
}

#[tokio::test]
async fn a_sentinel_url_naming_an_unknown_primary_fails_within_the_connect_timeout() {
    let topology = tokio::task::spawn_blocking(|| ReplicatedRedis::start_with_sentinels(1, 1))
        .await
        .unwrap();
    let url = topology
        .sentinel_url()
        .replace(ReplicatedRedis::MASTER_NAME, "no-such-primary");
    let started = Instant::now();
    let result = bounded(
        ConnectOptions::new(url)
            .connect_timeout(Duration::from_secs(1))
            .connect(),
    )
    .await;
    let error = result.expect_err("no Sentinel knows that primary");
    println!("unknown primary: {error} after {:?}", started.elapsed());
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        error.to_string().contains("127.0.0.1"),
        "the error names the host: {error}"
    );
    drop(topology);
}

#[tokio::test]
async fn a_sentinel_url_whose_sentinels_are_all_down_fails_within_the_connect_timeout() {
    // Ports that were free a moment ago: nothing listens there.
    let ports: Vec<u16> = (0..3)
        .map(|_| {
            std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|listener| listener.local_addr())
                .map(|address| address.port())
                .unwrap()
        })
        .collect();
    let url = format!(
        "redis-sentinel://127.0.0.1:{}?node=127.0.0.1:{}&node=127.0.0.1:{}&sentinelServiceName=distkit",
        ports[0], ports[1], ports[2]
    );
    let started = Instant::now();
    let result = bounded(
        ConnectOptions::new(url)
            .connect_timeout(Duration::from_secs(1))
            .connect(),
    )
    .await;
    let error = result.expect_err("no Sentinel answers");
    println!("all Sentinels down: {error} after {:?}", started.elapsed());
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn asking_more_replicas_than_exist_reports_the_write_not_durable_within_the_timeout() {
    let topology = tokio::task::spawn_blocking(|| ReplicatedRedis::start(1))
        .await
        .unwrap();
    let client = client_for(&topology.primary_url()).await;
    let prefix = key(&unique_prefix());
    let acks = ReplicaAcks::new(3, Duration::from_millis(300));
    let mut options = CounterOptions::new(prefix.clone(), client.clone());
    options.replica_acks = Some(acks);
    let counter = StrictCounter::new(options);
    let counted = key("counted");

    let started = Instant::now();
    let error = bounded(counter.inc(&counted, 1))
        .await
        .expect_err("only one replica exists");
    let waited = started.elapsed();
    assert!(
        matches!(
            error,
            DistkitError::CounterError(CounterError::NotReplicated {
                acknowledged: 1,
                required: 3,
                ..
            })
        ),
        "{error}"
    );
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(2),
        "waited {waited:?}"
    );
    // The primary applied it: the error says so, and the value shows it.
    assert_eq!(bounded(counter.get(&counted)).await.unwrap(), 1);

    // With as many replicas as exist, the same write is acknowledged.
    let mut options = CounterOptions::new(prefix, client.clone());
    options.replica_acks = Some(ReplicaAcks::new(1, Duration::from_secs(1)));
    let durable = StrictCounter::new(options);
    assert_eq!(bounded(durable.inc(&counted, 1)).await.unwrap(), 2);

    // A lock that asks for more replicas than exist grants nothing, and leaves it free.
    let lock_key = key(&format!("{}-lock", unique_prefix()));
    let demanding = Mutex::new(
        LockOptions::builder(lock_key.clone(), client.clone())
            .replica_acks(acks)
            .build(),
    );
    let started = Instant::now();
    let refused = bounded(demanding.try_lock())
        .await
        .expect_err("not enough replicas");
    assert!(
        matches!(
            refused,
            DistkitError::LockError(LockError::NotReplicated { .. })
        ),
        "{refused}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    let plain = Mutex::new(LockOptions::new(lock_key, client));
    bounded(plain.try_lock())
        .await
        .expect("the refused grant was released")
        .release()
        .await
        .unwrap();
    drop(topology);
}
