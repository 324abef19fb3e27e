//! Locks when Redis loses data: restarts without persistence (the lock's keys vanish while a
//! holder holds), checked against what the docs promise — fencing tokens never go backwards,
//! and with `loss_quarantine` no two guards believe they hold the lock at once — and replica
//! acknowledgement (`replica_acks`) against a primary with a replica.
//!
//! `DISTKIT_DATA_LOSS_SEED` replays one schedule of the randomized test;
//! `DISTKIT_DATA_LOSS_ROUNDS` (default 3) sets how many restarts it makes.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{LIMIT, bounded, fresh_key};
use distkit::fred::clients::Client;
use distkit::lock::{LockError, LockGuardState, LockOptions, Mutex, RwLock};
use distkit::{DistkitError, ReplicaAcks, connect};
use distkit_test_support::{ReplicatedRedis, TestRedis};

/// A client of `url` that reconnects quickly after a restart.
#[expect(clippy::unwrap_used, reason = "a test helper fails its test")]
async fn client_of(url: &str) -> Client {
    bounded(connect(url)).await.unwrap()
}

fn options(name: &distkit::DistkitRedisKey, client: Client, ttl: Duration) -> LockOptions {
    LockOptions::builder(name.clone(), client)
        .ttl(ttl)
        .retry_interval(Duration::from_millis(20))
        .build()
}

/// Restarts the server (SIGKILL, then a new empty process on the same port) from a blocking
/// section, so the runtime's other tasks go on.
fn restart(redis: &mut TestRedis) -> Instant {
    tokio::task::block_in_place(|| redis.restart());
    Instant::now()
}

/// Takes `lock` once its Redis answers again (errors while the client reconnects are retried).
async fn mutex_lock_eventually(mutex: &Mutex) -> distkit::lock::MutexGuard {
    let started = Instant::now();
    loop {
        match mutex.try_lock_for(Duration::from_secs(1)).await {
            Ok(guard) => return guard,
            Err(error) => assert!(
                started.elapsed() < LIMIT,
                "the lock was not granted within {LIMIT:?}: {error}"
            ),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fencing_token_issued_after_a_restart_without_persistence_exceeds_every_earlier_one() {
    let mut redis = TestRedis::start_standalone();
    let name = fresh_key();
    let ttl = Duration::from_millis(600);
    let mutex = Mutex::new(options(&name, client_of(redis.url()).await, ttl));
    let rwlock = RwLock::new(options(&name, client_of(redis.url()).await, ttl));
    let mut mutex_tokens = Vec::new();
    let mut write_tokens = Vec::new();
    for _ in 0..20 {
        let guard = bounded(mutex.lock()).await.unwrap();
        mutex_tokens.push(guard.fencing_token());
        bounded(guard.release()).await.unwrap();
        let guard = bounded(rwlock.write()).await.unwrap();
        write_tokens.push(guard.fencing_token());
        bounded(guard.release()).await.unwrap();
    }
    // A holder keeps the mutex while its keys are lost.
    let held = bounded(mutex.lock()).await.unwrap();
    mutex_tokens.push(held.fencing_token());
    restart(&mut redis);
    let after = mutex_lock_eventually(&mutex).await;
    let write_after = bounded(rwlock.write()).await.unwrap();
    let reader = bounded(rwlock.try_read_for(Duration::from_millis(200)))
        .await
        .err();
    assert!(
        mutex_tokens.windows(2).all(|pair| pair[0] < pair[1]),
        "mutex tokens rose while the state was kept: {mutex_tokens:?}"
    );
    assert!(
        write_tokens.windows(2).all(|pair| pair[0] < pair[1]),
        "write tokens rose while the state was kept: {write_tokens:?}"
    );
    let newest = mutex_tokens.iter().max().copied().unwrap_or(0);
    assert!(
        after.fencing_token() > newest,
        "the mutex token after the loss ({}) is not above the newest before it ({newest})",
        after.fencing_token()
    );
    let newest_write = write_tokens.iter().max().copied().unwrap_or(0);
    assert!(
        write_after.fencing_token() > newest_write,
        "the write token after the loss ({}) is not above the newest before it ({newest_write})",
        write_after.fencing_token()
    );
    assert!(reader.is_some(), "a reader got in beside a writer");
    drop(held);
}

/// What one guard of the randomized test believed: from the moment its acquisition returned
/// until it saw its lease lost or started releasing.
#[derive(Clone, Copy, Debug)]
struct Belief {
    #[expect(dead_code, reason = "shown in failure messages")]
    worker: usize,
    token: u64,
    from: Instant,
    until: Instant,
}

/// A tiny deterministic generator (xorshift64*), so a schedule replays from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next().checked_rem(bound.max(1)).unwrap_or(0)
    }
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_loss_quarantine_restarts_without_persistence_never_yield_two_believing_holders_or_an_older_token()
 {
    let seed = env_u64("DISTKIT_DATA_LOSS_SEED").unwrap_or_else(|| {
        u64::from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .subsec_nanos(),
        ) | 1
    });
    let rounds = env_u64("DISTKIT_DATA_LOSS_ROUNDS").unwrap_or(3);
    println!(
        "replay: DISTKIT_DATA_LOSS_SEED={seed} DISTKIT_DATA_LOSS_ROUNDS={rounds} cargo test -p distkit-tests --test lock_data_loss with_loss_quarantine -- --nocapture"
    );
    let mut rng = Rng(seed);
    let mut redis = TestRedis::start_standalone();
    let name = fresh_key();
    let ttl = Duration::from_millis(1000);
    let stop = Arc::new(AtomicBool::new(false));
    let beliefs = Arc::new(std::sync::Mutex::new(Vec::<Belief>::new()));
    let mut workers = Vec::new();
    for worker in 0..4 {
        let mutex = Mutex::new(
            LockOptions::builder(name.clone(), client_of(redis.url()).await)
                .ttl(ttl)
                .retry_interval(Duration::from_millis(20))
                .loss_quarantine(true)
                .build(),
        );
        let (stop, beliefs) = (Arc::clone(&stop), Arc::clone(&beliefs));
        let mut worker_rng = Rng(rng.next() | 1);
        workers.push(tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let Ok(guard) = mutex.try_lock_for(Duration::from_millis(500)).await else {
                    tokio::time::sleep(Duration::from_millis(worker_rng.below(20))).await;
                    continue;
                };
                let from = Instant::now();
                // Hold for up to two ttls: long enough for restarts to land mid-hold.
                let hold = Duration::from_millis(worker_rng.below(2000));
                tokio::select! {
                    () = guard.lost() => {}
                    () = tokio::time::sleep(hold) => {}
                }
                let until = Instant::now();
                beliefs.lock().unwrap().push(Belief {
                    worker,
                    token: guard.fencing_token(),
                    from,
                    until,
                });
                let _ = tokio::time::timeout(Duration::from_secs(2), guard.release()).await;
            }
        }));
    }
    let mut restarts = Vec::new();
    for _ in 0..rounds {
        tokio::time::sleep(Duration::from_millis(rng.below(3000).saturating_add(1500))).await;
        restarts.push(restart(&mut redis));
    }
    tokio::time::sleep(Duration::from_millis(3000)).await;
    stop.store(true, Ordering::SeqCst);
    for worker in workers {
        tokio::time::timeout(LIMIT, worker).await.unwrap().unwrap();
    }
    let mut beliefs = beliefs.lock().unwrap().clone();
    beliefs.sort_by_key(|belief| belief.from);
    let grants_after_restart = restarts
        .iter()
        .filter(|&&restart| beliefs.iter().any(|belief| belief.from > restart))
        .count();
    println!(
        "seed {seed}: {} grants, {} restarts, {grants_after_restart} restarts followed by a grant",
        beliefs.len(),
        restarts.len()
    );
    for pair in beliefs.windows(2) {
        let (earlier, later) = (pair[0], pair[1]);
        assert!(
            later.from >= earlier.until,
            "seed {seed}: two believing holders: {earlier:?} and {later:?}"
        );
        assert!(
            later.token > earlier.token,
            "seed {seed}: fencing token went backwards: {earlier:?} then {later:?}"
        );
    }
    for &restart in &restarts {
        // Nothing is granted within one ttl of a loss.
        if let Some(first) = beliefs.iter().find(|belief| belief.from > restart) {
            assert!(
                first.from.duration_since(restart) >= ttl,
                "seed {seed}: granted {:?} after a restart, within one ttl ({ttl:?})",
                first.from.duration_since(restart)
            );
        }
    }
    assert!(
        grants_after_restart > 0,
        "seed {seed}: the lock was never granted again after a restart"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_loss_quarantine_the_old_holder_reports_lost_before_a_new_holder_is_granted_after_a_restart()
 {
    let mut redis = TestRedis::start_standalone();
    let name = fresh_key();
    let ttl = Duration::from_millis(1500);
    let build = |client| {
        LockOptions::builder(name.clone(), client)
            .ttl(ttl)
            .retry_interval(Duration::from_millis(20))
            .loss_quarantine(true)
            .build()
    };
    let holder = Mutex::new(build(client_of(redis.url()).await));
    let contender = Mutex::new(build(client_of(redis.url()).await));
    let rwlock = RwLock::new(build(client_of(redis.url()).await));
    // On a fresh server the first grant waits until it has been up for ttl + 1 s.
    let guard = bounded(holder.lock()).await.unwrap();
    let old_token = guard.fencing_token();
    let loss_at = restart(&mut redis);
    let contending = tokio::spawn(async move {
        let guard = mutex_lock_eventually(&contender).await;
        (Instant::now(), guard.fencing_token(), guard)
    });
    let reading = tokio::spawn(async move {
        let started = Instant::now();
        loop {
            if let Ok(reader) = rwlock.try_read_for(Duration::from_secs(1)).await {
                return (Instant::now(), reader);
            }
            assert!(started.elapsed() < LIMIT, "no reader within {LIMIT:?}");
        }
    });
    bounded(guard.lost()).await;
    let lost = Instant::now();
    assert_eq!(guard.get_state().await, LockGuardState::Lost);
    let (granted_at, new_token, new_guard) = bounded(contending).await.unwrap();
    let (read_at, _reader) = bounded(reading).await.unwrap();
    assert!(
        lost < granted_at,
        "the new holder was granted before the old one reported Lost"
    );
    assert!(
        granted_at.duration_since(loss_at) >= ttl,
        "granted {:?} after the loss, within one ttl",
        granted_at.duration_since(loss_at)
    );
    assert!(
        read_at.duration_since(loss_at) >= ttl,
        "a reader got in {:?} after the loss, within one ttl",
        read_at.duration_since(loss_at)
    );
    assert!(new_token > old_token, "{new_token} <= {old_token}");
    assert_eq!(new_guard.get_state().await, LockGuardState::Acquired);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_loss_quarantine_a_lock_on_a_server_up_longer_than_a_ttl_is_granted_at_once() {
    let redis = TestRedis::start_standalone();
    let ttl = Duration::from_millis(200);
    // The server has been up for more than ttl + 1 s by the time the lock is first used.
    tokio::time::sleep(Duration::from_millis(2300)).await;
    let mutex = Mutex::new(
        LockOptions::builder(fresh_key(), client_of(redis.url()).await)
            .ttl(ttl)
            .loss_quarantine(true)
            .build(),
    );
    let guard = bounded(mutex.try_lock()).await.unwrap();
    assert_eq!(guard.get_state().await, LockGuardState::Acquired);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_range_replica_acks_are_refused_before_any_io() {
    let redis = TestRedis::start();
    let client = client_of(redis.url()).await;
    for acks in [
        ReplicaAcks::new(0, Duration::from_millis(100)),
        ReplicaAcks::new(1, Duration::ZERO),
        ReplicaAcks::new(1, Duration::from_secs(3600)),
    ] {
        let options = LockOptions::builder(fresh_key(), client.clone())
            .replica_acks(acks)
            .build();
        assert!(matches!(
            options.validate(),
            Err(DistkitError::LockError(LockError::InvalidReplicaAcks(_)))
        ));
        let error = bounded(Mutex::new(options.clone()).try_lock())
            .await
            .unwrap_err();
        assert!(
            matches!(
                error,
                DistkitError::LockError(LockError::InvalidReplicaAcks(_))
            ),
            "{error:?}"
        );
        let error = bounded(RwLock::new(options).try_write()).await.unwrap_err();
        assert!(
            matches!(
                error,
                DistkitError::LockError(LockError::InvalidReplicaAcks(_))
            ),
            "{error:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_replica_acks_a_grant_the_replicas_do_not_acknowledge_is_released_and_never_returned()
{
    let topology = tokio::task::block_in_place(|| ReplicatedRedis::start(1));
    let url = topology.primary_url();
    let name = fresh_key();
    let acked = |client| {
        LockOptions::builder(name.clone(), client)
            .ttl(Duration::from_secs(2))
            .retry_interval(Duration::from_millis(20))
            .replica_acks(ReplicaAcks::new(1, Duration::from_secs(1)))
            .build()
    };
    let mutex = Mutex::new(acked(client_of(&url).await));
    let rwlock = RwLock::new(acked(client_of(&url).await));
    let plain = Mutex::new(options(
        &name,
        client_of(&url).await,
        Duration::from_secs(2),
    ));

    // With the replica in sync, grants and renewals are acknowledged.
    let guard = bounded(mutex.try_lock()).await.unwrap();
    bounded(Box::pin(guard.extend())).await.unwrap();
    bounded(guard.release()).await.unwrap();
    let writer = bounded(rwlock.try_write()).await.unwrap();
    bounded(writer.release()).await.unwrap();

    // Asking for more replicas than exist: never Acquired, nothing left behind.
    let too_many = Mutex::new(
        LockOptions::builder(name.clone(), client_of(&url).await)
            .replica_acks(ReplicaAcks::new(2, Duration::from_millis(100)))
            .build(),
    );
    let error = bounded(too_many.try_lock()).await.unwrap_err();
    assert!(
        matches!(
            error,
            DistkitError::LockError(LockError::NotReplicated {
                acknowledged: 1,
                required: 2,
                ..
            })
        ),
        "{error:?}"
    );
    let free = bounded(plain.try_lock()).await.unwrap();
    bounded(free.release()).await.unwrap();

    // A paused replica acknowledges nothing.
    let replica = topology.replica_ports()[0];
    topology.pause_node(replica);
    let mutex_error = bounded(mutex.try_lock()).await.unwrap_err();
    let write_error = bounded(rwlock.try_write()).await.unwrap_err();
    let read_error = bounded(rwlock.try_read()).await.unwrap_err();
    let free = bounded(plain.try_lock()).await;
    topology.resume_node(replica);
    for error in [mutex_error, write_error, read_error] {
        assert!(
            matches!(
                error,
                DistkitError::LockError(LockError::NotReplicated {
                    acknowledged: 0,
                    required: 1,
                    ..
                })
            ),
            "{error:?}"
        );
    }
    assert!(
        free.is_ok(),
        "an unacknowledged grant was not released: {free:?}"
    );
    drop(free);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_replica_acks_an_unacknowledged_renewal_confirms_nothing_and_the_guard_turns_lost() {
    let topology = tokio::task::block_in_place(|| ReplicatedRedis::start(1));
    let url = topology.primary_url();
    let ttl = Duration::from_millis(900);
    let mutex = Mutex::new(
        LockOptions::builder(fresh_key(), client_of(&url).await)
            .ttl(ttl)
            .replica_acks(ReplicaAcks::new(1, Duration::from_millis(100)))
            .build(),
    );
    let guard = bounded(mutex.try_lock()).await.unwrap();
    let replica = topology.replica_ports()[0];
    topology.pause_node(replica);
    let paused = Instant::now();
    let extended = bounded(Box::pin(guard.extend())).await;
    bounded(guard.lost()).await;
    let lost_after = paused.elapsed();
    topology.resume_node(replica);
    assert!(
        matches!(
            extended,
            Err(DistkitError::LockError(LockError::NotReplicated { .. }))
        ),
        "{extended:?}"
    );
    assert!(
        lost_after <= ttl + Duration::from_millis(500),
        "Lost only {lost_after:?} after renewals stopped being acknowledged"
    );
    assert_eq!(guard.get_state().await, LockGuardState::Lost);
}
