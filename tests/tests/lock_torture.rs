//! The lock torture test: a seeded, bounded search for two believing holders.
//!
//! Many tasks acquire a few locks (two mutexes, one rwlock) with every acquisition style
//! (`lock()`, `lock()` bounded by `max_wait`, `try_*`, `try_*_for`, `try_*_with_retries`;
//! reads and writes), over several clients — some straight to Redis, some through an
//! in-process TCP proxy — and some on current-thread runtimes that are stalled on purpose
//! (their socket reads and lease renewals stall with them, like a GC pause or a starved
//! process). Acquisitions are cancelled at random; a fault task stops Redis (SIGSTOP),
//! pauses its clients (`CLIENT PAUSE`), kills client connections, and delays, holds or cuts
//! the proxied connections, each direction on its own; a crash task starts child processes
//! (`lock_holder`) that queue for a mutex and SIGKILLs them, holding or still waiting.
//!
//! # What is checked
//!
//! Every guard records the interval in which its holder *believed* it held the lock, and its
//! fencing token. The promise of the locks is about that belief: a guard reports `Acquired`
//! only while its lease is valid in Redis, because it counts a ttl (less 1 %) from when the
//! request that granted or last renewed the lease was *sent*, and Redis counts a ttl from
//! when it *processed* that request, which is later; and a new holder is only ever admitted
//! once the old lease was released or expired in Redis. So at every instant at which a
//! holder observed `Acquired`, its lease was valid in Redis, and no two leases of a lock
//! (except readers with readers) are ever valid at once.
//!
//! Hence the interval recorded per guard runs from its first to its **last observation of
//! `Acquired`** — each observation timestamped *before* `get_state` is called, so the
//! timestamp is no later than the moment the state was evaluated and the lease was valid at
//! it (it was granted before the acquire returned, which is before the first timestamp). The
//! first observation of `Lost`/`Released` ends the hold: the holder's belief may lag the
//! lease (a holder stalled past its local expiry still "believes" until it looks), but what
//! it acts on are its observations, and those are what must never overlap. The checker
//! asserts, per lock, on the `Instant` clock shared by all threads:
//!
//! - no two intervals overlap unless both are readers;
//! - write fencing tokens strictly increase in the order the intervals start;
//! - a reader's token is at least that of every writer whose interval ended before the
//!   reader's began, and below that of every writer whose interval began after the
//!   reader's ended.
//!
//! After the run, with every task stopped and every child killed, each lock must be free
//! again within its ttl (plus slack for the machine): no crash, cancellation or fault leaves
//! a lock unavailable longer than its documented bound.
//!
//! Explicit owner ids are left out: guards sharing an id share their hold by design. The
//! crashed children's holds are not in the checker (a child's belief cannot be observed from
//! here); they add contention, handovers to dead waiters and leases that must run out.
//!
//! # Running it
//!
//! CI runs it for [`DEFAULT_SECONDS`]. `DISTKIT_TORTURE_SECS` runs it longer,
//! `DISTKIT_TORTURE_SEED` replays a seed (the schedule of decisions is the seed's; thread
//! timing is not reproducible, so a replay explores the same faults and styles, not the
//! same interleaving). A failure prints its seed and the command that replays it.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::bounded;
use distkit::DistkitRedisKey;
use distkit::fred::clients::Client;
use distkit::lock::{LockError, LockGuardState, LockOptions, Mutex, RwLock};
use distkit::{DistkitError, connect};
use distkit_test_support::{Direction, Proxy, TestRedis, unique_prefix};

/// How long CI runs the torture (the whole test stays well under two minutes).
const DEFAULT_SECONDS: u64 = 20;
/// The lease of every lock: short, so Redis stalls make leases lapse.
const TTL: Duration = Duration::from_millis(900);
/// The bound of any single lock call: a wait longer than this is counted and abandoned.
const CALL_LIMIT: Duration = Duration::from_secs(15);
/// Tasks on the shared multi-thread runtime.
const WORKERS: usize = 10;
/// Current-thread runtimes stalled on purpose, and the tasks on each.
const STALLED_RUNTIMES: usize = 2;
const WORKERS_PER_STALLED_RUNTIME: usize = 2;
/// The locks: two mutexes and a rwlock.
const LOCKS: usize = 3;
const RWLOCK: usize = 2;

/// splitmix64: small, seedable, good enough to pick faults and styles.
#[derive(Clone, Debug)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed)
    }

    fn fork(&mut self, stream: u64) -> Self {
        Self(self.next() ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`0` when `n` is 0).
    fn below(&mut self, n: u64) -> u64 {
        self.next().checked_rem(n).unwrap_or(0)
    }

    fn index(&mut self, n: usize) -> usize {
        usize::try_from(self.below(u64::try_from(n).unwrap_or(u64::MAX))).unwrap_or(0)
    }

    /// True with probability `percent` / 100.
    fn percent(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn millis(&mut self, low: u64, high: u64) -> Duration {
        let span = high.saturating_sub(low).saturating_add(1);
        Duration::from_millis(low.saturating_add(self.below(span)))
    }
}

/// One guard's belief: from its first to its last observation of `Acquired`.
#[derive(Clone, Debug)]
struct Held {
    lock: usize,
    write: bool,
    token: u64,
    start: Instant,
    end: Instant,
    #[expect(dead_code, reason = "read through Debug, in violation reports")]
    worker: String,
}

/// The figures of a run.
#[derive(Debug, Default)]
struct Figures {
    acquisitions: AtomicU64,
    refused: AtomicU64,
    cancelled: AtomicU64,
    long_waits: AtomicU64,
    redis_errors: AtomicU64,
    lost_while_held: AtomicU64,
    stalls: AtomicU64,
    faults: AtomicU64,
    sigstops: AtomicU64,
    client_pauses: AtomicU64,
    connection_kills: AtomicU64,
    proxy_holds: AtomicU64,
    proxy_delays: AtomicU64,
    proxy_cuts: AtomicU64,
    crashed_holders: AtomicU64,
    crashed_waiters: AtomicU64,
}

impl Figures {
    fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// What every worker shares.
struct Shared {
    names: Vec<DistkitRedisKey>,
    deadline: Instant,
    held: StdMutex<Vec<Held>>,
    figures: Figures,
}

/// The lock objects of one worker.
struct Locks {
    mutexes: Vec<(Arc<Mutex>, Arc<Mutex>)>,
    rwlock: (Arc<RwLock>, Arc<RwLock>),
}

impl Locks {
    /// Each lock twice: without and with a `max_wait`; a retry interval of the worker's own.
    fn new(shared: &Shared, client: &Client, rng: &mut Rng) -> Self {
        let retry_interval = [5, 15, 40, 80]
            .get(rng.index(4))
            .copied()
            .map_or(Duration::from_millis(50), Duration::from_millis);
        let max_wait = rng.millis(50, 800);
        let options = |name: &DistkitRedisKey, bounded: bool| {
            let builder = LockOptions::builder(name.clone(), client.clone())
                .ttl(TTL)
                .retry_interval(retry_interval);
            if bounded {
                builder.max_wait(max_wait).build()
            } else {
                builder.build()
            }
        };
        let mut mutexes = Vec::new();
        let mut rwlock = None;
        for (index, name) in shared.names.iter().enumerate() {
            if index == RWLOCK {
                rwlock = Some((
                    RwLock::new(options(name, false)),
                    RwLock::new(options(name, true)),
                ));
            } else {
                mutexes.push((
                    Mutex::new(options(name, false)),
                    Mutex::new(options(name, true)),
                ));
            }
        }
        let rwlock = rwlock.unwrap_or_else(|| {
            let name = shared.names.first().cloned().unwrap_or_else(|| key("x"));
            (
                RwLock::new(options(&name, false)),
                RwLock::new(options(&name, true)),
            )
        });
        Self { mutexes, rwlock }
    }
}

fn key(text: &str) -> DistkitRedisKey {
    DistkitRedisKey::new_or_panic(text.to_owned())
}

/// The acquisition styles.
#[derive(Clone, Copy, Debug)]
enum Style {
    Wait,
    WaitBounded,
    Once,
    Within(Duration),
    Retries(usize),
}

impl Style {
    fn pick(rng: &mut Rng) -> Self {
        match rng.below(5) {
            0 => Self::Wait,
            1 => Self::WaitBounded,
            2 => Self::Once,
            3 => Self::Within(rng.millis(0, 600)),
            _ => Self::Retries(rng.index(6)),
        }
    }
}

/// A guard of any kind.
enum Guard {
    Mutex(distkit::lock::MutexGuard),
    Read(distkit::lock::RwLockReadGuard),
    Write(distkit::lock::RwLockWriteGuard),
}

impl Guard {
    async fn state(&self) -> LockGuardState {
        match self {
            Self::Mutex(guard) => guard.get_state().await,
            Self::Read(guard) => guard.get_state().await,
            Self::Write(guard) => guard.get_state().await,
        }
    }

    async fn lost(&self) {
        match self {
            Self::Mutex(guard) => guard.lost().await,
            Self::Read(guard) => guard.lost().await,
            Self::Write(guard) => guard.lost().await,
        }
    }

    async fn extend(&self) -> Result<(), DistkitError> {
        match self {
            Self::Mutex(guard) => guard.extend().await,
            Self::Read(guard) => guard.extend().await,
            Self::Write(guard) => guard.extend().await,
        }
    }

    async fn release(self) -> Result<LockGuardState, DistkitError> {
        match self {
            Self::Mutex(guard) => guard.release().await,
            Self::Read(guard) => guard.release().await,
            Self::Write(guard) => guard.release().await,
        }
    }

    fn token(&self) -> u64 {
        match self {
            Self::Mutex(guard) => guard.fencing_token(),
            Self::Read(guard) => guard.fencing_token(),
            Self::Write(guard) => guard.fencing_token(),
        }
    }
}

/// One acquisition of `lock` in `style`.
async fn acquire(
    locks: &Locks,
    lock: usize,
    write: bool,
    style: Style,
) -> Result<Guard, DistkitError> {
    if lock == RWLOCK {
        let (plain, bounded) = &locks.rwlock;
        if write {
            let guard = match style {
                Style::Wait => plain.write().await,
                Style::WaitBounded => bounded.write().await,
                Style::Once => plain.try_write().await,
                Style::Within(timeout) => plain.try_write_for(timeout).await,
                Style::Retries(retries) => plain.try_write_with_retries(retries).await,
            };
            return guard.map(Guard::Write);
        }
        let guard = match style {
            Style::Wait => plain.read().await,
            Style::WaitBounded => bounded.read().await,
            Style::Once => plain.try_read().await,
            Style::Within(timeout) => plain.try_read_for(timeout).await,
            Style::Retries(retries) => plain.try_read_with_retries(retries).await,
        };
        return guard.map(Guard::Read);
    }
    let Some((plain, bounded)) = locks.mutexes.get(lock) else {
        return Err(LockError::AcquireFail.into());
    };
    let guard = match style {
        Style::Wait => plain.lock().await,
        Style::WaitBounded => bounded.lock().await,
        Style::Once => plain.try_lock().await,
        Style::Within(timeout) => plain.try_lock_for(timeout).await,
        Style::Retries(retries) => plain.try_lock_with_retries(retries).await,
    };
    guard.map(Guard::Mutex)
}

/// A worker: acquires, holds while watching its guard, releases or drops, until the deadline.
async fn worker(shared: Arc<Shared>, client: Client, mut rng: Rng, name: String) {
    let locks = Locks::new(&shared, &client, &mut rng);
    let figures = &shared.figures;
    while Instant::now() < shared.deadline {
        let lock = rng.index(LOCKS);
        let write = lock != RWLOCK || rng.percent(50);
        let style = Style::pick(&mut rng);
        // Some acquisitions are cancelled part-way (dropped by a short timeout).
        let cancel_after = rng.percent(15).then(|| rng.millis(1, 80));
        let limit = cancel_after.unwrap_or(CALL_LIMIT);
        let guard = match tokio::time::timeout(limit, acquire(&locks, lock, write, style)).await {
            Ok(Ok(guard)) => guard,
            Ok(Err(DistkitError::LockError(_))) => {
                Figures::add(&figures.refused);
                continue;
            }
            Ok(Err(_)) => {
                Figures::add(&figures.redis_errors);
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
            Err(_) if cancel_after.is_some() => {
                Figures::add(&figures.cancelled);
                continue;
            }
            Err(_) => {
                Figures::add(&figures.long_waits);
                continue;
            }
        };
        Figures::add(&figures.acquisitions);
        let hold_until = Instant::now()
            .checked_add(rng.millis(0, 150))
            .unwrap_or_else(Instant::now);
        let mut first = None;
        let mut last = None;
        loop {
            // Timestamped before the state is evaluated: see the module docs.
            let observed = Instant::now();
            if guard.state().await != LockGuardState::Acquired {
                if first.is_some() {
                    Figures::add(&figures.lost_while_held);
                }
                break;
            }
            first.get_or_insert(observed);
            last = Some(observed);
            if Instant::now() >= hold_until {
                break;
            }
            if rng.percent(5) {
                let _ = tokio::time::timeout(Duration::from_secs(2), guard.extend()).await;
                continue;
            }
            let step = rng.millis(1, 25);
            tokio::select! {
                () = guard.lost() => {}
                () = tokio::time::sleep(step) => {}
            }
        }
        if let (Some(start), Some(end)) = (first, last) {
            let held = Held {
                lock,
                write,
                token: guard.token(),
                start,
                end,
                worker: name.clone(),
            };
            shared
                .held
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(held);
        }
        if rng.percent(70) {
            let _ = tokio::time::timeout(CALL_LIMIT, guard.release()).await;
        } else {
            drop(guard);
        }
    }
}

/// A thread with a current-thread runtime that blocks itself now and then, running workers
/// on clients of its own (their socket reads and renewals run on the stalled runtime too).
fn stalled_runtime(
    shared: Arc<Shared>,
    urls: Vec<String>,
    mut rng: Rng,
    index: usize,
) -> std::thread::JoinHandle<Result<(), String>> {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|error| error.to_string())?;
        runtime.block_on(async move {
            let mut workers = Vec::new();
            for (slot, url) in urls.iter().enumerate() {
                let client = bounded(connect(url))
                    .await
                    .map_err(|error| error.to_string())?;
                let worker_rng = rng.fork(u64::try_from(slot).unwrap_or(0));
                let name = format!("stalled-{index}-{slot}");
                workers.push(tokio::spawn(worker(
                    Arc::clone(&shared),
                    client,
                    worker_rng,
                    name,
                )));
            }
            let staller = {
                let shared = Arc::clone(&shared);
                let mut rng = rng.fork(1_000);
                async move {
                    while Instant::now() < shared.deadline {
                        tokio::time::sleep(rng.millis(100, 1_500)).await;
                        // Blocks every task of this runtime, on purpose.
                        std::thread::sleep(rng.millis(50, 900));
                        Figures::add(&shared.figures.stalls);
                    }
                }
            };
            staller.await;
            // The workers stop at the deadline; the test bounds the whole run.
            for worker in workers {
                worker.await.map_err(|error| error.to_string())?;
            }
            Ok(())
        })
    })
}

/// Runs a blocking fault tool off the runtime's threads.
async fn off_runtime<F: FnOnce() + Send + 'static>(tool: F) {
    let _ = bounded(tokio::task::spawn_blocking(tool)).await;
}

/// Injects faults until the deadline.
async fn faults(
    shared: Arc<Shared>,
    redis: Arc<TestRedis>,
    proxies: Arc<Vec<Proxy>>,
    mut rng: Rng,
) {
    let figures = &shared.figures;
    while Instant::now() < shared.deadline {
        tokio::time::sleep(rng.millis(100, 700)).await;
        let length = rng.millis(50, 1_300);
        let proxy = rng.index(proxies.len());
        Figures::add(&figures.faults);
        match rng.below(7) {
            0 => {
                Figures::add(&figures.sigstops);
                let redis = Arc::clone(&redis);
                off_runtime(move || {
                    redis.pause();
                    std::thread::sleep(length);
                    redis.resume();
                })
                .await;
            }
            1 => {
                Figures::add(&figures.client_pauses);
                let redis = Arc::clone(&redis);
                let millis = length.as_millis().to_string();
                off_runtime(move || {
                    let _ = redis.cli(&["CLIENT", "PAUSE", &millis, "ALL"]);
                })
                .await;
                tokio::time::sleep(length).await;
            }
            2 => {
                Figures::add(&figures.connection_kills);
                let redis = Arc::clone(&redis);
                off_runtime(move || {
                    let _ = redis.kill_clients();
                })
                .await;
            }
            kind @ 3..=4 => {
                // Both directions, or only the replies (pub/sub messages arrive late).
                Figures::add(&figures.proxy_holds);
                let directions: &[Direction] = if kind == 3 {
                    &[Direction::Upstream, Direction::Downstream]
                } else {
                    &[Direction::Downstream]
                };
                if let Some(proxy) = proxies.get(proxy) {
                    for &direction in directions {
                        proxy.hold(direction, true);
                    }
                    tokio::time::sleep(length).await;
                    proxy.heal();
                }
            }
            5 => {
                Figures::add(&figures.proxy_delays);
                if let Some(proxy) = proxies.get(proxy) {
                    proxy.delay(Direction::Upstream, rng.millis(1, 60));
                    proxy.delay(Direction::Downstream, rng.millis(1, 120));
                    tokio::time::sleep(length.saturating_mul(2)).await;
                    proxy.heal();
                }
            }
            _ => {
                Figures::add(&figures.proxy_cuts);
                if let Some(proxy) = proxies.get(proxy) {
                    proxy.cut();
                }
            }
        }
    }
    for proxy in proxies.iter() {
        proxy.heal();
    }
}

/// Starts `lock_holder` children that queue for a mutex, and SIGKILLs each after a while,
/// holding the lock or still waiting, until the deadline.
async fn crashes(shared: Arc<Shared>, url: String, mut rng: Rng) {
    let figures = &shared.figures;
    while Instant::now() < shared.deadline {
        tokio::time::sleep(rng.millis(300, 2_000)).await;
        let Some(name) = shared.names.get(rng.index(RWLOCK)) else {
            continue;
        };
        let spawned = std::process::Command::new(env!("CARGO_BIN_EXE_lock_holder"))
            .args([url.as_str(), name.as_str(), &TTL.as_millis().to_string()])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn();
        let Ok(mut child) = spawned else {
            continue;
        };
        // Whether it printed `acquired` before it was killed.
        let acquired = Arc::new(AtomicBool::new(false));
        if let Some(stdout) = child.stdout.take() {
            let acquired = Arc::clone(&acquired);
            std::thread::spawn(move || {
                let mut line = String::new();
                if std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)
                    .is_ok()
                    && line.starts_with("acquired")
                {
                    acquired.store(true, Ordering::SeqCst);
                }
            });
        }
        tokio::time::sleep(rng.millis(100, 1_500)).await;
        off_runtime(move || {
            let _ = child.kill();
            let _ = child.wait();
        })
        .await;
        if acquired.load(Ordering::SeqCst) {
            Figures::add(&figures.crashed_holders);
        } else {
            Figures::add(&figures.crashed_waiters);
        }
    }
}

/// How long each lock stays unavailable once everything stopped; `None` when one is still
/// unavailable after `limit`.
async fn free_again(shared: &Shared, client: &Client, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut longest = Duration::ZERO;
    for (index, name) in shared.names.iter().enumerate() {
        let options = LockOptions::builder(name.clone(), client.clone())
            .ttl(TTL)
            .build();
        loop {
            let free = if index == RWLOCK {
                RwLock::new(options.clone()).try_write().await.map(drop)
            } else {
                Mutex::new(options.clone()).try_lock().await.map(drop)
            };
            if free.is_ok() {
                break;
            }
            if started.elapsed() > limit {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        longest = longest.max(started.elapsed());
    }
    Some(longest)
}

/// Every violation of the promises among `held` (see the module docs).
fn violations(held: &[Held]) -> Vec<String> {
    let mut found = Vec::new();
    for lock in 0..LOCKS {
        let mut intervals: Vec<&Held> = held.iter().filter(|held| held.lock == lock).collect();
        intervals.sort_by_key(|held| held.start);
        for (index, first) in intervals.iter().enumerate() {
            for second in intervals.iter().skip(index.saturating_add(1)) {
                if second.start > first.end {
                    break;
                }
                if first.write || second.write {
                    found.push(format!(
                        "lock {lock}: overlapping holders {first:?} and {second:?}"
                    ));
                }
            }
        }
        let writers: Vec<&&Held> = intervals.iter().filter(|held| held.write).collect();
        for pair in writers.windows(2) {
            if let [earlier, later] = pair
                && later.token <= earlier.token
            {
                found.push(format!(
                    "lock {lock}: fencing tokens out of grant order: {earlier:?} then {later:?}"
                ));
            }
        }
        for reader in intervals.iter().filter(|held| !held.write) {
            for writer in &writers {
                let stale = writer.end < reader.start && writer.token > reader.token;
                let early = writer.start > reader.end && writer.token <= reader.token;
                if stale || early {
                    found.push(format!(
                        "lock {lock}: reader token {} against writer {writer:?}",
                        reader.token
                    ));
                }
            }
        }
    }
    found
}

fn settings() -> (u64, u64) {
    let seed = std::env::var("DISTKIT_TORTURE_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |since| {
                    u64::try_from(
                        since
                            .as_nanos()
                            .checked_rem(u128::from(u64::MAX))
                            .unwrap_or(0),
                    )
                    .unwrap_or(0)
                })
        });
    let seconds = std::env::var("DISTKIT_TORTURE_SECS")
        .ok()
        .and_then(|seconds| seconds.parse().ok())
        .unwrap_or(DEFAULT_SECONDS);
    (seed, seconds)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_two_guards_believe_they_hold_a_lock_under_stalls_cancellations_and_faults() {
    let (seed, seconds) = settings();
    let repro = format!(
        "DISTKIT_TORTURE_SEED={seed} DISTKIT_TORTURE_SECS={seconds} cargo test -p distkit-tests \
         --all-features --test lock_torture -- --nocapture"
    );
    println!("lock torture: seed {seed}, {seconds} s; replay with: {repro}");
    let mut rng = Rng::new(seed);
    // SIGSTOP and the proxies need a private standalone server.
    let redis = Arc::new(TestRedis::start_standalone());
    let proxies = Arc::new(vec![Proxy::start(redis.port()), Proxy::start(redis.port())]);
    let prefix = unique_prefix();
    let shared = Arc::new(Shared {
        names: (0..LOCKS)
            .map(|lock| key(&format!("{prefix}-{lock}")))
            .collect(),
        deadline: Instant::now()
            .checked_add(Duration::from_secs(seconds))
            .unwrap_or_else(Instant::now),
        held: StdMutex::new(Vec::new()),
        figures: Figures::default(),
    });
    let direct_url = redis.url().to_owned();
    let urls: Vec<String> = vec![
        direct_url.clone(),
        direct_url.clone(),
        proxies[0].url(),
        proxies[1].url(),
    ];
    let mut clients = Vec::new();
    for url in &urls {
        clients.push(bounded(connect(url)).await.unwrap());
    }
    let mut tasks = Vec::new();
    for index in 0..WORKERS {
        let client = clients[index % clients.len()].clone();
        let worker_rng = rng.fork(index as u64);
        tasks.push(tokio::spawn(worker(
            Arc::clone(&shared),
            client,
            worker_rng,
            format!("worker-{index}"),
        )));
    }
    let mut stalled = Vec::new();
    for index in 0..STALLED_RUNTIMES {
        let urls = (0..WORKERS_PER_STALLED_RUNTIME)
            .map(|slot| urls[(index + slot * 2) % urls.len()].clone())
            .collect();
        stalled.push(stalled_runtime(
            Arc::clone(&shared),
            urls,
            rng.fork(100 + index as u64),
            index,
        ));
    }
    let crash_task = tokio::spawn(crashes(
        Arc::clone(&shared),
        direct_url.clone(),
        rng.fork(20_000),
    ));
    let fault_task = tokio::spawn(faults(
        Arc::clone(&shared),
        Arc::clone(&redis),
        Arc::clone(&proxies),
        rng.fork(10_000),
    ));

    let run_limit = Duration::from_secs(seconds).saturating_add(CALL_LIMIT.saturating_mul(3));
    let finished = tokio::time::timeout(run_limit, async {
        fault_task.await.unwrap();
        crash_task.await.unwrap();
        for task in tasks {
            task.await.unwrap();
        }
        for thread in stalled {
            tokio::task::spawn_blocking(move || thread.join())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
        }
    })
    .await;
    redis.resume();
    assert!(
        finished.is_ok(),
        "the torture did not finish in {run_limit:?}; replay with: {repro}"
    );

    // Everything stopped: every lock is free again within its ttl (a killed holder's lease
    // runs out; a killed waiter's heartbeat window is shorter), plus slack for the machine.
    let free_limit = TTL.saturating_add(Duration::from_secs(2));
    let unavailable = free_again(&shared, &clients[0], free_limit).await;
    assert!(
        unavailable.is_some(),
        "a lock stayed unavailable longer than {free_limit:?} after the run; replay with: {repro}"
    );

    let held = shared
        .held
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let found = violations(&held);
    let figures = &shared.figures;
    let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
    println!(
        "lock torture figures: seed {seed}, {seconds} s: {} acquisitions ({} held intervals \
         checked), {} refused or timed out, {} cancelled, {} redis errors, {} lost while held, \
         {} waits past {CALL_LIMIT:?}; {} runtime stalls; {} faults ({} SIGSTOP, {} CLIENT PAUSE, \
         {} connection kills, {} proxy holds, {} proxy delays, {} proxy cuts); {} crashed \
         holders and {} crashed waiters (SIGKILL); every lock free again {:?} after the run; \
         overlaps and order violations found: {}",
        load(&figures.acquisitions),
        held.len(),
        load(&figures.refused),
        load(&figures.cancelled),
        load(&figures.redis_errors),
        load(&figures.lost_while_held),
        load(&figures.long_waits),
        load(&figures.stalls),
        load(&figures.faults),
        load(&figures.sigstops),
        load(&figures.client_pauses),
        load(&figures.connection_kills),
        load(&figures.proxy_holds),
        load(&figures.proxy_delays),
        load(&figures.proxy_cuts),
        load(&figures.crashed_holders),
        load(&figures.crashed_waiters),
        unavailable.unwrap_or_default(),
        found.len(),
    );
    assert!(
        held.len() > 10,
        "too few acquisitions to mean anything; replay with: {repro}"
    );
    assert!(
        found.is_empty(),
        "{} violations (the first ones: {:#?}); replay with: {repro}",
        found.len(),
        found.iter().take(5).collect::<Vec<_>>()
    );
}
