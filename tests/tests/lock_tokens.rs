//! Fencing tokens that never repeat or go backwards (re-attaches during a pending handover,
//! readers after data loss), and lock keys that never outlive their retention.
//!
//! `DISTKIT_RESIDUE_SEED` replays one schedule of the residue test; `DISTKIT_RESIDUE_NAMES`
//! (default 48) sets how many distinct lock names it uses. `DISTKIT_BOUND_SEED` replays one
//! schedule of the bounded-acquisition test; `DISTKIT_BOUND_FAULTS` (default 6) sets how many
//! faults it injects. `DISTKIT_TOKENS_SEED` replays one schedule of the token torture;
//! `DISTKIT_TOKENS_SECS` (default 6) sets how long it runs.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{LIMIT, bounded, client, fresh_key};
use distkit::DistkitRedisKey;
use distkit::fred::clients::Client;
use distkit::fred::prelude::*;
use distkit::lock::{LockGuardState, LockOptions, Mutex, RwLock, RwLockReadGuard};
use distkit_test_support::TestRedis;

/// Options of a lock object acting for `owner` (a worker's explicit id).
fn owned(name: &DistkitRedisKey, client: Client, owner: &str) -> LockOptions {
    LockOptions::builder(name.clone(), client)
        .owner_id(owner)
        .ttl(Duration::from_secs(5))
        // Waiters are served by announcements: their polls come seconds apart (and a
        // handover's provisional lease is then the whole ttl).
        .retry_interval(Duration::from_secs(2))
        .build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_re_attach_while_a_handover_is_pending_gets_a_token_above_the_handed_over_one() {
    let redis = TestRedis::start();
    for round in 0..5 {
        let name = fresh_key();
        let holder = Mutex::new(
            LockOptions::builder(name.clone(), client(&redis).await)
                .ttl(Duration::from_secs(5))
                .build(),
        );
        let held = bounded(holder.lock()).await.unwrap();
        // A worker waits; a release hands it the lock, announced in its client's inbox.
        let worker = Mutex::new(owned(&name, client(&redis).await, "worker-7"));
        let waiting = tokio::spawn(async move {
            let guard = worker.lock().await;
            (worker, guard)
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            !waiting.is_finished(),
            "round {round}: the lock is still held"
        );
        assert_eq!(
            bounded(held.release()).await.unwrap(),
            LockGuardState::Released
        );
        let (_worker, handed) = bounded(waiting).await.unwrap();
        let handed = handed.unwrap();
        // The worker restarts (the old guard is neither released nor renewed before this)
        // and re-attaches with the same id while the handover record is still pending.
        let restarted = Mutex::new(owned(&name, client(&redis).await, "worker-7"));
        let reattached = bounded(restarted.try_lock()).await.unwrap();
        assert!(
            reattached.fencing_token() > handed.fencing_token(),
            "round {round}: the re-attach got {} after the handover's {}",
            reattached.fencing_token(),
            handed.fencing_token()
        );
        std::mem::forget(handed);
        assert_eq!(
            bounded(reattached.release()).await.unwrap(),
            LockGuardState::Released
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_waiters_with_one_owner_id_on_one_client_never_share_a_handed_over_token() {
    let redis = TestRedis::start();
    for round in 0..5 {
        let name = fresh_key();
        let holder = Mutex::new(
            LockOptions::builder(name.clone(), client(&redis).await)
                .ttl(Duration::from_secs(5))
                .build(),
        );
        let held = bounded(holder.lock()).await.unwrap();
        // Two lock objects of one worker id on one client (one inbox) wait for the lock.
        let shared = client(&redis).await;
        let waiting: Vec<_> = (0..2)
            .map(|_| {
                let waiter = Mutex::new(owned(&name, shared.clone(), "worker-7"));
                tokio::spawn(async move {
                    let guard = waiter.lock().await;
                    (waiter, guard)
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(300)).await;
        bounded(held.release()).await.unwrap();
        let mut tokens = Vec::new();
        let mut guards = Vec::new();
        for task in waiting {
            let (waiter, guard) = bounded(task).await.unwrap();
            let guard = guard.unwrap();
            tokens.push(guard.fencing_token());
            guards.push((waiter, guard));
        }
        assert_ne!(
            tokens.first(),
            tokens.get(1),
            "round {round}: both guards of the id got one token"
        );
        for (_, guard) in guards {
            bounded(guard.release()).await.unwrap();
        }
    }
}

/// Restarts the server empty (SIGKILL, then a new process on the same port) from a blocking
/// section, so the runtime's other tasks go on.
fn restart_empty(redis: &mut TestRedis) {
    tokio::task::block_in_place(|| redis.restart());
}

/// A read lease on `rwlock` once its Redis answers again (errors while the client
/// reconnects are retried).
async fn read_eventually(rwlock: &RwLock) -> RwLockReadGuard {
    let started = Instant::now();
    loop {
        match rwlock.try_read_for(Duration::from_secs(1)).await {
            Ok(guard) => return guard,
            Err(error) => assert!(
                started.elapsed() < LIMIT,
                "no read lease within {LIMIT:?}: {error}"
            ),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_readers_token_after_a_restart_without_persistence_is_at_least_every_earlier_token() {
    let mut redis = TestRedis::start_standalone();
    let name = fresh_key();
    let rwlock = RwLock::new(
        LockOptions::builder(name, client(&redis).await)
            .ttl(Duration::from_secs(2))
            .retry_interval(Duration::from_millis(20))
            .build(),
    );
    let mut issued = Vec::new();
    for _ in 0..5 {
        let writer = bounded(rwlock.write()).await.unwrap();
        issued.push(writer.fencing_token());
        bounded(writer.release()).await.unwrap();
        let reader = bounded(rwlock.read()).await.unwrap();
        issued.push(reader.fencing_token());
        bounded(reader.release()).await.unwrap();
    }
    assert!(
        issued.windows(2).all(|pair| pair[0] <= pair[1]),
        "tokens fell while the state was kept: {issued:?}"
    );
    let newest = issued.iter().max().copied().unwrap_or(0);
    restart_empty(&mut redis);
    let reader = read_eventually(&rwlock).await;
    let read_token = reader.fencing_token();
    assert!(
        read_token >= newest,
        "the reader's token after the loss ({read_token}) is below the newest before it ({newest})"
    );
    bounded(reader.release()).await.unwrap();
    // A writer after the reader is fenced above it.
    let writer = bounded(rwlock.write()).await.unwrap();
    assert!(
        writer.fencing_token() > read_token,
        "the writer's token ({}) is not above the reader's before it ({read_token})",
        writer.fencing_token()
    );
    bounded(writer.release()).await.unwrap();
}

/// The retention of the tests below: short, so that a lock's keys expire within a second.
const RETENTION: Duration = Duration::from_millis(300);
const TTL: Duration = Duration::from_millis(400);
/// How long after its last use a key of the tests below may still be there: its
/// retention (a lease plus `key_retention`) and a generous margin for a loaded machine.
const GONE_WITHIN: Duration = Duration::from_millis(400 + 300 + 5_000);

fn retained(name: &DistkitRedisKey, client: Client) -> LockOptions {
    LockOptions::builder(name.clone(), client)
        .ttl(TTL)
        .key_retention(RETENTION)
        .retry_interval(Duration::from_millis(20))
        .build()
}

/// Whether `key` exists.
#[expect(clippy::unwrap_used, reason = "a test helper fails its test")]
async fn exists(client: &Client, key: &str) -> bool {
    bounded(client.exists::<i64, _>(key)).await.unwrap() == 1
}

/// Waits until `key` has expired, failing the test when it is still there after its
/// retention and a generous margin.
async fn expired(client: &Client, key: &str) {
    let started = Instant::now();
    while exists(client, key).await {
        assert!(
            started.elapsed() < GONE_WITHIN,
            "{key} did not expire within its retention"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fencing_tokens_rise_across_the_expiry_of_the_fence_key() {
    let redis = TestRedis::start();
    let name = fresh_key();
    let raw = client(&redis).await;
    let mutex = Mutex::new(retained(&name, client(&redis).await));
    let rwlock = RwLock::new(retained(&name, client(&redis).await));
    let mutex_fence = format!("distkit-locks:{{{name}}}:fence");
    let rw_fence = format!("distkit-locks:{{{name}}}:rw:fence");
    let mut mutex_tokens = Vec::new();
    let mut rw_tokens = Vec::new();
    for _ in 0..3 {
        let guard = bounded(mutex.lock()).await.unwrap();
        mutex_tokens.push(guard.fencing_token());
        bounded(guard.release()).await.unwrap();
        let writer = bounded(rwlock.write()).await.unwrap();
        rw_tokens.push(writer.fencing_token());
        bounded(writer.release()).await.unwrap();
        let reader = bounded(rwlock.read()).await.unwrap();
        rw_tokens.push(reader.fencing_token());
        bounded(reader.release()).await.unwrap();
        // Both fences expire before the next round's grants.
        expired(&raw, &mutex_fence).await;
        expired(&raw, &rw_fence).await;
    }
    assert!(
        mutex_tokens.windows(2).all(|pair| pair[0] < pair[1]),
        "mutex tokens did not rise across the fence's expiry: {mutex_tokens:?}"
    );
    // Writer, then reader, of each round: a reader's token is at least the writer's before
    // it, and the next writer's is above it.
    let rose = rw_tokens
        .windows(2)
        .enumerate()
        .all(|(index, pair)| pair[0] < pair[1] || (index % 2 == 0 && pair[0] == pair[1]));
    assert!(
        rose,
        "rwlock tokens did not rise across the fence's expiry: {rw_tokens:?}"
    );
}

#[tokio::test]
async fn a_fence_ahead_of_the_clock_is_kept_until_the_clock_has_passed_it() {
    let redis = TestRedis::start();
    let name = fresh_key();
    let raw = client(&redis).await;
    let mutex = Mutex::new(retained(&name, client(&redis).await));
    let fence = format!("distkit-locks:{{{name}}}:fence");
    let first = bounded(mutex.lock()).await.unwrap();
    let clock = first.fencing_token();
    bounded(first.release()).await.unwrap();
    // A fence a minute ahead of the clock (as after a failover to a server whose clock is
    // behind), written without an expiry (as by an older version).
    let ahead = clock + 60_000_000;
    let _: () = bounded(raw.set(&fence, ahead.to_string(), None, None, false))
        .await
        .unwrap();
    let guard = bounded(mutex.lock()).await.unwrap();
    assert_eq!(guard.fencing_token(), ahead + 1);
    let left = bounded(raw.pttl::<i64, _>(&fence)).await.unwrap();
    // Kept until the clock passed the token, plus the retention (a lease plus
    // `key_retention`), less the time this test took since the first grant (a few ms; up to
    // ten seconds on a stalled machine).
    let least = i64::try_from((Duration::from_secs(50) + TTL + RETENTION).as_millis()).unwrap();
    let most = i64::try_from((Duration::from_secs(61) + TTL + RETENTION).as_millis()).unwrap();
    assert!(
        (least..=most).contains(&left),
        "the fence expires in {left} ms, not about a minute and its retention"
    );
    bounded(guard.release()).await.unwrap();
}

/// The server clock in microseconds, read with `TIME`.
#[expect(
    clippy::unwrap_used,
    clippy::panic,
    clippy::arithmetic_side_effects,
    reason = "a test helper fails its test; the clock fits a u64 in microseconds"
)]
async fn server_micros(client: &Client) -> u64 {
    let time: Vec<String> = bounded(client.eval(
        "return redis.call('TIME')",
        Vec::<String>::new(),
        Vec::<String>::new(),
    ))
    .await
    .unwrap();
    let [seconds, micros] = time.as_slice() else {
        panic!("TIME replied {time:?}");
    };
    seconds.parse::<u64>().unwrap() * 1_000_000 + micros.parse::<u64>().unwrap()
}

#[tokio::test]
async fn tokens_and_reader_leases_are_read_from_the_server_clock_whatever_its_microseconds() {
    // The scripts turn TIME's microseconds (given without leading zeros) into digits with
    // string operations. Readings in the first tenth of a second have fewer than six
    // digits: grants are timed to fall there (a mistake is then off by up to a second), and
    // the test goes on until three of them did, on a loaded machine too.
    let redis = TestRedis::start();
    let raw = client(&redis).await;
    let lock_client = client(&redis).await;
    let ttl_ms = u64::try_from(TTL.as_millis()).unwrap();
    let started = Instant::now();
    let mut short_readings = 0;
    while short_readings < 3 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no grant fell in the first tenth of a second of the server clock"
        );
        let before = server_micros(&raw).await;
        if before % 1_000_000 > 20_000 {
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        }
        let name = fresh_key();
        let mutex = Mutex::new(retained(&name, lock_client.clone()));
        let rwlock = RwLock::new(retained(&name, lock_client.clone()));
        let guard = bounded(mutex.lock()).await.unwrap();
        let mutex_token = guard.fencing_token();
        bounded(guard.release()).await.unwrap();
        let reader = bounded(rwlock.read()).await.unwrap();
        let reader_token = reader.fencing_token();
        let readers: Vec<String> = bounded(raw.eval(
            "return redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')",
            vec![format!("distkit-locks:{{{name}}}:rw:readers")],
            Vec::<String>::new(),
        ))
        .await
        .unwrap();
        bounded(reader.release()).await.unwrap();
        let after = server_micros(&raw).await;
        // A fresh lock's first token is the clock when it was granted.
        for token in [mutex_token, reader_token] {
            assert!(
                (before..=after).contains(&token),
                "token {token} is not the clock between {before} and {after}"
            );
        }
        let [_, expiry] = readers.as_slice() else {
            panic!("one reader expected, found {readers:?}");
        };
        let expiry: u64 = expiry.parse().unwrap();
        assert!(
            (before / 1000 + ttl_ms..=after / 1000 + ttl_ms).contains(&expiry),
            "the reader's lease ends at {expiry} ms, not {ttl_ms} ms after a clock reading \
             between {before} and {after} us"
        );
        if reader_token % 1_000_000 < 100_000 {
            short_readings += 1;
        }
    }
}

/// How many keys match `pattern`, and those of them without an expiry (one atomic look).
#[expect(clippy::unwrap_used, reason = "a test helper fails its test")]
async fn keys_without_expiry(client: &Client, pattern: &str) -> (usize, Vec<String>) {
    let script = "local keys = redis.call('KEYS', ARGV[1]) \
        local found = { tostring(#keys) } \
        for _, key in ipairs(keys) do \
          if redis.call('PTTL', key) == -1 then table.insert(found, key) end \
        end \
        return found";
    let mut found: Vec<String> = bounded(client.eval(script, Vec::<String>::new(), pattern))
        .await
        .unwrap();
    let count = found.first().and_then(|count| count.parse().ok()).unwrap();
    found.remove(0);
    (count, found)
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

/// One name of the residue test: a seeded scenario that creates the lock's keys (leases,
/// queues, handovers, re-attaches, fences, epochs) and releases everything.
#[expect(clippy::unwrap_used, reason = "a test helper fails its test")]
async fn use_one_name(redis_url: &str, namespace: &DistkitRedisKey, name: usize, rng: &mut Rng) {
    let name = DistkitRedisKey::new_or_panic(format!("residue-{name}"));
    let quarantine = rng.below(2) == 1;
    let options = |client: Client, owner: Option<&str>| {
        let mut builder = LockOptions::builder(name.clone(), client)
            .namespace(namespace.clone())
            .ttl(TTL)
            .key_retention(RETENTION)
            .retry_interval(Duration::from_millis(20))
            .loss_quarantine(quarantine);
        if let Some(owner) = owner {
            builder = builder.owner_id(owner);
        }
        builder.build()
    };
    let connect = || async { bounded(distkit::connect(redis_url)).await.unwrap() };
    match rng.below(4) {
        0 => {
            // A mutex handed over to a waiter.
            let first = Mutex::new(options(connect().await, None));
            let second = Mutex::new(options(connect().await, None));
            let held = bounded(first.lock()).await.unwrap();
            let waiting = tokio::spawn(async move { bounded(second.lock()).await.unwrap() });
            tokio::time::sleep(Duration::from_millis(rng.below(60))).await;
            bounded(held.release()).await.unwrap();
            let handed = bounded(waiting).await.unwrap();
            bounded(handed.release()).await.unwrap();
        }
        1 => {
            // A worker re-attaches with its id.
            let owner = format!("worker-{}", rng.below(3));
            let first = Mutex::new(options(connect().await, Some(&owner)));
            let again = Mutex::new(options(connect().await, Some(&owner)));
            let held = bounded(first.lock()).await.unwrap();
            let reattached = bounded(again.lock()).await.unwrap();
            assert!(reattached.fencing_token() > held.fencing_token());
            std::mem::forget(held);
            bounded(reattached.release()).await.unwrap();
        }
        2 => {
            // Readers, then a writer that queues behind them.
            let readers = RwLock::new(options(connect().await, None));
            let writers = RwLock::new(options(connect().await, None));
            let first = bounded(readers.read()).await.unwrap();
            let second = bounded(readers.read()).await.unwrap();
            let waiting = tokio::spawn(async move { bounded(writers.write()).await.unwrap() });
            tokio::time::sleep(Duration::from_millis(rng.below(60))).await;
            bounded(first.release()).await.unwrap();
            bounded(second.release()).await.unwrap();
            let writer = bounded(waiting).await.unwrap();
            bounded(writer.release()).await.unwrap();
        }
        _ => {
            // A writer with an explicit id, refused readers, then a reader.
            let rwlock = RwLock::new(options(connect().await, Some("writer-1")));
            let writer = bounded(rwlock.write()).await.unwrap();
            assert!(bounded(rwlock.try_read()).await.is_err());
            bounded(writer.release()).await.unwrap();
            let reader = bounded(rwlock.read()).await.unwrap();
            bounded(reader.release()).await.unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mix_of_locks_on_many_names_never_leaves_a_key_without_expiry_and_nothing_after_the_retention()
 {
    let redis = TestRedis::start_standalone();
    let seed = env_u64("DISTKIT_RESIDUE_SEED").unwrap_or_else(|| {
        u64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
                & 0xffff_ffff,
        )
        .unwrap()
            | 1
    });
    let names = env_u64("DISTKIT_RESIDUE_NAMES").unwrap_or(48);
    println!("DISTKIT_RESIDUE_SEED={seed} DISTKIT_RESIDUE_NAMES={names}");
    let namespace = fresh_key();
    let pattern = format!("{namespace}:*");
    let raw = client(&redis).await;

    // Looks at every key of the namespace all along.
    let done = Arc::new(AtomicBool::new(false));
    let most_keys = Arc::new(AtomicU64::new(0)); // the most keys seen at once
    let watcher = tokio::spawn({
        let (raw, pattern, done, most_keys) = (
            raw.clone(),
            pattern.clone(),
            done.clone(),
            most_keys.clone(),
        );
        async move {
            let mut offenders = Vec::new();
            while !done.load(Ordering::SeqCst) {
                let (count, without) = keys_without_expiry(&raw, &pattern).await;
                offenders.extend(without);
                most_keys.fetch_max(u64::try_from(count).unwrap(), Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(15)).await;
            }
            offenders
        }
    });
    let next = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..4_u64)
        .map(|worker| {
            let (url, namespace, next) = (redis.url().to_owned(), namespace.clone(), next.clone());
            let mut rng = Rng(seed.wrapping_add(worker.wrapping_mul(0x9e37_79b9)) | 1);
            tokio::spawn(async move {
                loop {
                    let name = next.fetch_add(1, Ordering::SeqCst);
                    if name >= names {
                        break;
                    }
                    use_one_name(&url, &namespace, usize::try_from(name).unwrap(), &mut rng).await;
                }
            })
        })
        .collect();
    for worker in workers {
        bounded(worker).await.unwrap();
    }
    let released = Instant::now();
    let (left, offenders) = keys_without_expiry(&raw, &pattern).await;
    done.store(true, Ordering::SeqCst);
    let mut offenders_all = bounded(watcher).await.unwrap();
    offenders_all.extend(offenders);
    offenders_all.sort();
    offenders_all.dedup();
    assert!(
        offenders_all.is_empty(),
        "keys without an expiry (seed {seed}): {offenders_all:?}"
    );
    let most = most_keys.load(Ordering::SeqCst);
    assert!(most > 0, "the watcher never saw a key of the locks");
    // Once the retention (a lease plus `key_retention`) has passed, nothing is left.
    let mut remaining = left;
    while remaining > 0 {
        assert!(
            released.elapsed() < GONE_WITHIN,
            "{remaining} keys still there {:?} after the last release (seed {seed})",
            released.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        remaining = keys_without_expiry(&raw, &pattern).await.0;
    }
    println!(
        "{names} names: up to {most} keys at once, {left} right after the last release, none after {:?}",
        released.elapsed()
    );
}

/// Runs a blocking fault on `redis` off the runtime's threads.
#[expect(clippy::unwrap_used, reason = "a test helper fails its test")]
async fn fault<F: FnOnce(&mut TestRedis) + Send + 'static>(
    redis: &Arc<std::sync::Mutex<TestRedis>>,
    tool: F,
) {
    let redis = Arc::clone(redis);
    bounded(tokio::task::spawn_blocking(move || {
        tool(&mut redis.lock().unwrap());
    }))
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bounded_acquisitions_with_loss_quarantine_return_within_their_bound_through_restarts_pauses_and_kills()
 {
    let seed = env_u64("DISTKIT_BOUND_SEED").unwrap_or_else(|| {
        u64::from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_nanos(),
        ) | 1
    });
    let faults = env_u64("DISTKIT_BOUND_FAULTS").unwrap_or(6);
    println!("DISTKIT_BOUND_SEED={seed} DISTKIT_BOUND_FAULTS={faults}");
    let mut rng = Rng(seed);
    let redis = TestRedis::start_standalone();
    let url = redis.url().to_owned();
    let redis = Arc::new(std::sync::Mutex::new(redis));
    let name = fresh_key();
    let stop = Arc::new(AtomicBool::new(false));
    // (bound, took, what) of every bounded acquisition.
    let taken = Arc::new(std::sync::Mutex::new(
        Vec::<(Duration, Duration, &str)>::new(),
    ));
    // How late the runtime's timers fire meanwhile (a loaded machine, a stalled runtime):
    // the scheduling delay the promise allows for.
    let canary = tokio::spawn({
        let stop = Arc::clone(&stop);
        async move {
            let mut latest = Duration::ZERO;
            while !stop.load(Ordering::SeqCst) {
                let slept = Instant::now();
                tokio::time::sleep(Duration::from_millis(10)).await;
                latest = latest.max(slept.elapsed().saturating_sub(Duration::from_millis(10)));
            }
            latest
        }
    });
    let mut workers = Vec::new();
    for _ in 0..6 {
        let rwlock = RwLock::new(
            LockOptions::builder(name.clone(), bounded(distkit::connect(&url)).await.unwrap())
                .ttl(Duration::from_millis(800))
                .retry_interval(Duration::from_millis(20))
                .loss_quarantine(true)
                .build(),
        );
        let (stop, taken) = (Arc::clone(&stop), Arc::clone(&taken));
        let mut rng = Rng(rng.next() | 1);
        workers.push(tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let bound = Duration::from_millis(rng.below(400).saturating_add(20));
                let started = Instant::now();
                // Held guards renew, and are dropped (released in the background) while
                // faults go on.
                let hold = Duration::from_millis(rng.below(300));
                if rng.below(3) == 0 {
                    let writer = rwlock.try_write_for(bound).await;
                    taken
                        .lock()
                        .unwrap()
                        .push((bound, started.elapsed(), "write"));
                    if let Ok(guard) = writer {
                        let _ = tokio::time::timeout(hold, guard.lost()).await;
                    }
                } else {
                    let reader = rwlock.try_read_for(bound).await;
                    taken
                        .lock()
                        .unwrap()
                        .push((bound, started.elapsed(), "read"));
                    if let Ok(guard) = reader {
                        let _ = tokio::time::timeout(hold, guard.lost()).await;
                    }
                }
                tokio::time::sleep(Duration::from_millis(rng.below(20))).await;
            }
        }));
    }
    for _ in 0..faults {
        tokio::time::sleep(Duration::from_millis(rng.below(700).saturating_add(200))).await;
        let length = Duration::from_millis(rng.below(900).saturating_add(50));
        match rng.below(5) {
            0 => fault(&redis, TestRedis::restart).await,
            4 => {
                // Down for a while (connections refused), then back empty.
                fault(&redis, move |redis| {
                    if let Some(pid) = redis.pid() {
                        let _ = std::process::Command::new("kill")
                            .args(["-KILL", &pid.to_string()])
                            .status();
                    }
                    std::thread::sleep(length);
                    redis.restart();
                })
                .await;
            }
            1 => {
                let millis = length.as_millis().to_string();
                fault(&redis, move |redis| {
                    let _ = redis.cli(&["CLIENT", "PAUSE", &millis, "ALL"]);
                })
                .await;
                tokio::time::sleep(length).await;
            }
            2 => {
                fault(&redis, move |redis| {
                    redis.pause();
                    std::thread::sleep(length);
                    redis.resume();
                })
                .await;
            }
            _ => {
                fault(&redis, |redis| {
                    let _ = redis.kill_clients();
                })
                .await;
            }
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::SeqCst);
    for worker in workers {
        bounded(worker).await.unwrap();
    }
    let late = bounded(canary).await.unwrap();
    let taken = taken.lock().unwrap().clone();
    // The promise: the bound (at least 100 ms for an unanswered first attempt) plus
    // scheduling delays: those the canary saw, and 150 ms.
    let margin = late + Duration::from_millis(150);
    let overrun = |(bound, took, _): &(Duration, Duration, &str)| {
        took.saturating_sub((*bound).max(Duration::from_millis(100)))
    };
    let over: Vec<_> = taken
        .iter()
        .filter(|taken| overrun(taken) > margin)
        .collect();
    let worst = taken.iter().map(overrun).max().unwrap_or_default();
    println!(
        "seed {seed}: {} bounded acquisitions, worst overrun of max(bound, 100 ms) {worst:?}, timers up to {late:?} late",
        taken.len()
    );
    assert!(
        over.is_empty(),
        "seed {seed}: acquisitions overran their bound by more than {margin:?}: {over:?}"
    );
}

/// One grant of the token torture: which lock, what kind, its token, the owner id of its
/// lock object, and when its acquisition was called and returned.
#[derive(Clone, Debug)]
struct Grant {
    lock: usize,
    kind: &'static str,
    token: u64,
    owner: Option<String>,
    called: Instant,
    returned: Instant,
    released: Instant,
}

/// The objects of one torture worker: a mutex and a rwlock on each name.
struct Objects {
    mutexes: Vec<Arc<Mutex>>,
    rwlocks: Vec<Arc<RwLock>>,
    owner: Option<String>,
}

/// Every violation of the token promises among `grants`: exclusive tokens (mutex, writer)
/// issued twice or out of grant order, readers below an earlier exclusive token or not below
/// a later one.
fn token_violations(grants: &[Grant]) -> Vec<String> {
    let mut found = Vec::new();
    let locks: std::collections::BTreeSet<usize> = grants.iter().map(|grant| grant.lock).collect();
    for lock in locks {
        for family in ["mutex", "rw"] {
            let of_family: Vec<&Grant> = grants
                .iter()
                .filter(|grant| grant.lock == lock && grant.kind.starts_with(family))
                .collect();
            let mut exclusive: Vec<&Grant> = of_family
                .iter()
                .copied()
                .filter(|grant| grant.kind != "rw-read")
                .collect();
            let mut tokens: Vec<u64> = exclusive.iter().map(|grant| grant.token).collect();
            tokens.sort_unstable();
            let before = tokens.len();
            tokens.dedup();
            if tokens.len() != before {
                found.push(format!(
                    "lock {lock} {family}: {} tokens issued twice",
                    before.saturating_sub(tokens.len())
                ));
            }
            // A grant that returned before another was called came first in Redis.
            exclusive.sort_by_key(|grant| grant.returned);
            for (index, earlier) in exclusive.iter().enumerate() {
                for later in exclusive.iter().skip(index.saturating_add(1)) {
                    if later.called > earlier.returned && later.token <= earlier.token {
                        found.push(format!(
                            "lock {lock} {family}: {earlier:?} then {later:?}: token not above"
                        ));
                    }
                }
            }
            for reader in of_family.iter().filter(|grant| grant.kind == "rw-read") {
                for writer in &exclusive {
                    let stale = writer.returned < reader.called && reader.token < writer.token;
                    let early = writer.called > reader.returned && writer.token <= reader.token;
                    if stale || early {
                        found.push(format!("lock {lock}: reader {reader:?} against {writer:?}"));
                    }
                }
            }
        }
    }
    found
}

/// One acquisition of a torture worker (a mutex, a write or a read lease on one of the names),
/// held for a moment and released; its grant, if any.
#[expect(clippy::unwrap_used, reason = "a test helper fails its test")]
async fn torture_once(objects: &Objects, rng: &mut Rng) -> Option<Grant> {
    let lock = usize::try_from(rng.below(objects.mutexes.len() as u64)).unwrap();
    let bound = Duration::from_millis(rng.below(300).saturating_add(50));
    let hold = Duration::from_millis(rng.below(60));
    let called = Instant::now();
    let (kind, token, release): (
        _,
        _,
        std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
    ) = match rng.below(3) {
        0 => {
            let guard = objects.mutexes.get(lock)?.try_lock_for(bound).await.ok()?;
            let token = guard.fencing_token();
            (
                "mutex",
                token,
                Box::pin(async move {
                    tokio::time::sleep(hold).await;
                    let _ = tokio::time::timeout(Duration::from_secs(2), guard.release()).await;
                }),
            )
        }
        1 => {
            let guard = objects.rwlocks.get(lock)?.try_write_for(bound).await.ok()?;
            let token = guard.fencing_token();
            (
                "rw-write",
                token,
                Box::pin(async move {
                    tokio::time::sleep(hold).await;
                    let _ = tokio::time::timeout(Duration::from_secs(2), guard.release()).await;
                }),
            )
        }
        _ => {
            let guard = objects.rwlocks.get(lock)?.try_read_for(bound).await.ok()?;
            let token = guard.fencing_token();
            (
                "rw-read",
                token,
                Box::pin(async move {
                    tokio::time::sleep(hold).await;
                    let _ = tokio::time::timeout(Duration::from_secs(2), guard.release()).await;
                }),
            )
        }
    };
    let returned = Instant::now();
    release.await;
    Some(Grant {
        lock,
        kind,
        token,
        owner: objects.owner.clone(),
        called,
        returned,
        released: Instant::now(),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_never_issued_twice_and_rise_in_grant_order_through_re_attaches_restarts_and_fence_expiry()
 {
    let seed = env_u64("DISTKIT_TOKENS_SEED").unwrap_or_else(|| {
        u64::from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_nanos(),
        ) | 1
    });
    let seconds = env_u64("DISTKIT_TOKENS_SECS").unwrap_or(6);
    println!("DISTKIT_TOKENS_SEED={seed} DISTKIT_TOKENS_SECS={seconds}");
    let mut rng = Rng(seed);
    let redis = TestRedis::start_standalone();
    let url = redis.url().to_owned();
    let redis = Arc::new(std::sync::Mutex::new(redis));
    let names: Vec<DistkitRedisKey> = (0..3).map(|_| fresh_key()).collect();
    let deadline = Instant::now() + Duration::from_secs(seconds);
    // While set, nobody acquires: the fences expire between acquisitions.
    let quiet = Arc::new(AtomicBool::new(false));
    let grants = Arc::new(std::sync::Mutex::new(Vec::<Grant>::new()));
    // Two clients; the explicit ids are shared by lock objects on each client and across
    // them, so acquisitions re-attach, and handovers go to ids other objects also wait as.
    let clients = [
        bounded(distkit::connect(&url)).await.unwrap(),
        bounded(distkit::connect(&url)).await.unwrap(),
    ];
    let mut workers = Vec::new();
    for worker in 0..8_usize {
        // Ids on both clients, and twice on each client.
        let owner = match worker % 4 {
            0 => None,
            1 | 2 => Some("worker-a".to_owned()),
            _ => Some("worker-b".to_owned()),
        };
        let client = clients[worker % 2].clone();
        // The first name refuses grants after a data loss (every object of a name has the
        // same options).
        let options = |name: &DistkitRedisKey| {
            let builder = LockOptions::builder(name.clone(), client.clone())
                .ttl(TTL)
                .key_retention(RETENTION)
                .retry_interval(Duration::from_millis(20))
                .loss_quarantine(names.first() == Some(name));
            match &owner {
                Some(owner) => builder.owner_id(owner.clone()).build(),
                None => builder.build(),
            }
        };
        let objects = Objects {
            mutexes: names.iter().map(|name| Mutex::new(options(name))).collect(),
            rwlocks: names
                .iter()
                .map(|name| RwLock::new(options(name)))
                .collect(),
            owner: owner.clone(),
        };
        let (quiet, grants) = (Arc::clone(&quiet), Arc::clone(&grants));
        let mut rng = Rng(rng.next() | 1);
        workers.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                if quiet.load(Ordering::SeqCst) {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
                if let Some(grant) = torture_once(&objects, &mut rng).await {
                    grants.lock().unwrap().push(grant);
                }
            }
        }));
    }
    let raw = bounded(distkit::connect(&url)).await.unwrap();
    let fences: Vec<String> = names
        .iter()
        .flat_map(|name| {
            [
                format!("distkit-locks:{{{name}}}:fence"),
                format!("distkit-locks:{{{name}}}:rw:fence"),
            ]
        })
        .collect();
    let (mut restarts, mut expiries) = (0_u32, 0_u32);
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(rng.below(600).saturating_add(300))).await;
        if rng.below(2) == 0 {
            fault(&redis, TestRedis::restart).await;
            restarts = restarts.saturating_add(1);
        } else {
            quiet.store(true, Ordering::SeqCst);
            // Guards are released within their hold (60 ms) or their lease (a ttl); the
            // fences expire a ttl and the retention after the last grant or renewal.
            tokio::time::sleep(TTL + TTL + RETENTION + TTL).await;
            for fence in &fences {
                if !matches!(
                    tokio::time::timeout(LIMIT, raw.exists::<i64, _>(fence)).await,
                    Ok(Ok(1))
                ) {
                    expiries = expiries.saturating_add(1);
                }
            }
            quiet.store(false, Ordering::SeqCst);
        }
    }
    for worker in workers {
        bounded(worker).await.unwrap();
    }
    let grants = grants.lock().unwrap().clone();
    let reattached = grants
        .iter()
        .filter(|grant| grant.kind != "rw-read" && grant.owner.is_some())
        .filter(|grant| {
            grants.iter().any(|other| {
                other.lock == grant.lock
                    && other.kind == grant.kind
                    && other.owner == grant.owner
                    && other.returned < grant.returned
                    && other.released > grant.returned
            })
        })
        .count();
    let violations = token_violations(&grants);
    println!(
        "seed {seed}: {} grants ({} exclusive), {reattached} re-attaches, {restarts} restarts, {expiries} fence keys expired between acquisitions, {} violations",
        grants.len(),
        grants
            .iter()
            .filter(|grant| grant.kind != "rw-read")
            .count(),
        violations.len()
    );
    assert!(
        violations.is_empty(),
        "seed {seed}: {}",
        violations
            .iter()
            .take(10)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}
