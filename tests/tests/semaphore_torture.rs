//! The semaphore torture test: a seeded, bounded search for more permits believed held than
//! the semaphore has.
//!
//! Workers take random numbers of permits of two semaphores with every acquisition style
//! (`acquire_many`, `acquire_many` bounded by `max_wait`, `try_acquire_many`,
//! `try_acquire_many_for`), over several clients — some straight to Redis, some through an
//! in-process TCP proxy — and on a current-thread runtime that is stalled on purpose (its
//! socket reads and lease renewals stall with it, like a GC pause). Acquisitions are
//! cancelled at random; a fault task stops Redis (SIGSTOP), pauses its clients (`CLIENT
//! PAUSE`), kills client connections, and delays, holds or cuts the proxied connections; a
//! crash task starts child processes (`semaphore_holder`) that wait for or hold permits and
//! SIGKILLs them.
//!
//! # What is checked
//!
//! As in the lock torture test (see `lock_torture.rs` for why this is the promise), every
//! permit records the interval in which its holder *believed* it held its permits — from its
//! first to its last observation of `Acquired`, each timestamped before `get_state` is called
//! — with its permit count and fencing token, and when its acquisition was called and
//! returned. The checker asserts, per semaphore, on the `Instant` clock shared by all
//! threads:
//!
//! - at every instant, the permits of the intervals covering it add up to at most the
//!   semaphore's count (intervals are closed: touching counts as overlapping);
//! - no fencing token is issued twice;
//! - tokens rise in real-time order: an acquisition called after another one returned has
//!   the larger token.
//!
//! After the run, with every task stopped and every child killed, all permits of each
//! semaphore are free again within a ttl plus slack. The crashed children's holds are not
//! in the checker (their belief cannot be observed from here); they add contention, crashed
//! waiters in line and leases that must run out.
//!
//! `DISTKIT_TORTURE_SECS` runs it longer than [`DEFAULT_SECONDS`], `DISTKIT_TORTURE_SEED`
//! replays a seed's schedule of decisions (not its thread timing).

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::bounded;
use distkit::fred::clients::Client;
use distkit::semaphore::{LockGuardState, Semaphore, SemaphoreOptions, SemaphorePermit};
use distkit::{DistkitError, DistkitRedisKey, connect};
use distkit_test_support::{Direction, Proxy, TestRedis, unique_prefix};

/// How long CI runs the torture.
const DEFAULT_SECONDS: u64 = 15;
/// The lease of every permit: short, so Redis stalls make leases lapse.
const TTL: Duration = Duration::from_millis(900);
/// The bound of any single call: a wait longer than this is counted and abandoned.
const CALL_LIMIT: Duration = Duration::from_secs(15);
/// Tasks on the shared multi-thread runtime.
const WORKERS: usize = 8;
/// Tasks on the current-thread runtime that is stalled on purpose.
const STALLED_WORKERS: usize = 2;
/// The permit counts of the semaphores.
const PERMITS: [u32; 2] = [3, 5];

/// splitmix64: small, seedable, good enough to pick faults and styles.
#[derive(Clone, Debug)]
struct Rng(u64);

impl Rng {
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

    fn below(&mut self, n: u64) -> u64 {
        self.next().checked_rem(n).unwrap_or(0)
    }

    fn index(&mut self, n: usize) -> usize {
        usize::try_from(self.below(u64::try_from(n).unwrap_or(u64::MAX))).unwrap_or(0)
    }

    fn percent(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn millis(&mut self, low: u64, high: u64) -> Duration {
        let span = high.saturating_sub(low).saturating_add(1);
        Duration::from_millis(low.saturating_add(self.below(span)))
    }

    /// A permit count for a semaphore of `permits`: mostly 1, sometimes up to all of them.
    fn permits(&mut self, permits: u32) -> u32 {
        if self.percent(60) {
            1
        } else {
            u32::try_from(self.below(u64::from(permits)))
                .unwrap_or(0)
                .saturating_add(1)
        }
    }
}

/// One permit's belief: from its first to its last observation of `Acquired`.
#[derive(Clone, Debug)]
struct Held {
    semaphore: usize,
    n: u32,
    token: u64,
    called: Instant,
    returned: Instant,
    start: Instant,
    end: Instant,
    #[expect(dead_code, reason = "read through Debug, in violation reports")]
    worker: String,
}

#[derive(Debug, Default)]
struct Figures {
    acquisitions: AtomicU64,
    permits_taken: AtomicU64,
    refused: AtomicU64,
    cancelled: AtomicU64,
    long_waits: AtomicU64,
    redis_errors: AtomicU64,
    lost_while_held: AtomicU64,
    stalls: AtomicU64,
    faults: AtomicU64,
    crashed_holders: AtomicU64,
    crashed_waiters: AtomicU64,
}

fn add(counter: &AtomicU64, amount: u64) {
    counter.fetch_add(amount, Ordering::Relaxed);
}

struct Shared {
    names: Vec<DistkitRedisKey>,
    deadline: Instant,
    held: StdMutex<Vec<Held>>,
    figures: Figures,
}

#[derive(Clone, Copy, Debug)]
enum Style {
    Wait,
    WaitBounded,
    Once,
    Within(Duration),
}

/// A worker: acquires, holds while watching its permit, releases or drops, until the
/// deadline.
async fn worker(shared: Arc<Shared>, client: Client, mut rng: Rng, name: String) {
    let retry_interval = rng.millis(5, 80);
    let max_wait = rng.millis(50, 800);
    // Each semaphore twice: without and with a `max_wait`.
    let semaphores: Vec<(Arc<Semaphore>, Arc<Semaphore>)> = shared
        .names
        .iter()
        .zip(PERMITS)
        .map(|(key, permits)| {
            let builder = SemaphoreOptions::builder(key.clone(), client.clone(), permits)
                .ttl(TTL)
                .retry_interval(retry_interval);
            (
                Semaphore::new(builder.clone().build()),
                Semaphore::new(builder.max_wait(max_wait).build()),
            )
        })
        .collect();
    let figures = &shared.figures;
    while Instant::now() < shared.deadline {
        let index = rng.index(semaphores.len());
        let Some((plain, bounded_wait)) = semaphores.get(index) else {
            continue;
        };
        let n = rng.permits(PERMITS.get(index).copied().unwrap_or(1));
        let style = match rng.below(4) {
            0 => Style::Wait,
            1 => Style::WaitBounded,
            2 => Style::Once,
            _ => Style::Within(rng.millis(0, 600)),
        };
        let cancel_after = rng.percent(15).then(|| rng.millis(1, 80));
        let limit = cancel_after.unwrap_or(CALL_LIMIT);
        let called = Instant::now();
        let acquisition = async {
            match style {
                Style::Wait => plain.acquire_many(n).await,
                Style::WaitBounded => bounded_wait.acquire_many(n).await,
                Style::Once => plain.try_acquire_many(n).await,
                Style::Within(timeout) => plain.try_acquire_many_for(n, timeout).await,
            }
        };
        let permit: SemaphorePermit = match tokio::time::timeout(limit, acquisition).await {
            Ok(Ok(permit)) => permit,
            Ok(Err(DistkitError::LockError(_))) => {
                add(&figures.refused, 1);
                continue;
            }
            Ok(Err(_)) => {
                add(&figures.redis_errors, 1);
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
            Err(_) if cancel_after.is_some() => {
                add(&figures.cancelled, 1);
                continue;
            }
            Err(_) => {
                add(&figures.long_waits, 1);
                continue;
            }
        };
        let returned = Instant::now();
        add(&figures.acquisitions, 1);
        add(&figures.permits_taken, u64::from(n));
        // Mostly short holds; some span a ttl or more, so faults catch holders mid-hold.
        let hold = if rng.percent(15) {
            rng.millis(300, 1_500)
        } else {
            rng.millis(0, 150)
        };
        let hold_until = Instant::now()
            .checked_add(hold)
            .unwrap_or_else(Instant::now);
        let (mut first, mut last) = (None, None);
        loop {
            // Timestamped before the state is evaluated: see the module docs.
            let observed = Instant::now();
            if permit.get_state().await != LockGuardState::Acquired {
                if first.is_some() {
                    add(&figures.lost_while_held, 1);
                }
                break;
            }
            first.get_or_insert(observed);
            last = Some(observed);
            if Instant::now() >= hold_until {
                break;
            }
            if rng.percent(5) {
                let _ = tokio::time::timeout(Duration::from_secs(2), permit.extend()).await;
                continue;
            }
            tokio::select! {
                () = permit.lost() => {}
                () = tokio::time::sleep(rng.millis(1, 25)) => {}
            }
        }
        if let (Some(start), Some(end)) = (first, last) {
            shared
                .held
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(Held {
                    semaphore: index,
                    n,
                    token: permit.fencing_token(),
                    called,
                    returned,
                    start,
                    end,
                    worker: name.clone(),
                });
        }
        if rng.percent(70) {
            let _ = tokio::time::timeout(CALL_LIMIT, permit.release()).await;
        } else {
            drop(permit);
        }
    }
}

/// A thread with a current-thread runtime that blocks itself now and then, running workers
/// on clients of its own.
fn stalled_runtime(
    shared: Arc<Shared>,
    urls: Vec<String>,
    mut rng: Rng,
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
                workers.push(tokio::spawn(worker(
                    Arc::clone(&shared),
                    client,
                    worker_rng,
                    format!("stalled-{slot}"),
                )));
            }
            while Instant::now() < shared.deadline {
                tokio::time::sleep(rng.millis(100, 1_500)).await;
                // Blocks every task of this runtime, on purpose.
                std::thread::sleep(rng.millis(50, 900));
                add(&shared.figures.stalls, 1);
            }
            for worker in workers {
                worker.await.map_err(|error| error.to_string())?;
            }
            Ok(())
        })
    })
}

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
    while Instant::now() < shared.deadline {
        tokio::time::sleep(rng.millis(100, 700)).await;
        let length = rng.millis(50, 1_300);
        let proxy = proxies.get(rng.index(proxies.len()));
        add(&shared.figures.faults, 1);
        match rng.below(7) {
            0 => {
                let redis = Arc::clone(&redis);
                off_runtime(move || {
                    redis.pause();
                    std::thread::sleep(length);
                    redis.resume();
                })
                .await;
            }
            1 => {
                let redis = Arc::clone(&redis);
                let millis = length.as_millis().to_string();
                off_runtime(move || {
                    let _ = redis.cli(&["CLIENT", "PAUSE", &millis, "ALL"]);
                })
                .await;
                tokio::time::sleep(length).await;
            }
            2 => {
                let redis = Arc::clone(&redis);
                off_runtime(move || {
                    let _ = redis.kill_clients();
                })
                .await;
            }
            3 | 6 => {
                if let Some(proxy) = proxy {
                    proxy.hold(Direction::Downstream, true);
                    if rng.percent(50) {
                        proxy.hold(Direction::Upstream, true);
                    }
                    tokio::time::sleep(length).await;
                    proxy.heal();
                }
            }
            4 => {
                if let Some(proxy) = proxy {
                    proxy.delay(Direction::Upstream, rng.millis(1, 60));
                    proxy.delay(Direction::Downstream, rng.millis(1, 120));
                    tokio::time::sleep(length.saturating_mul(2)).await;
                    proxy.heal();
                }
            }
            _ => {
                if let Some(proxy) = proxy {
                    proxy.cut();
                }
            }
        }
    }
    for proxy in proxies.iter() {
        proxy.heal();
    }
}

/// Starts `semaphore_holder` children that wait for or hold permits, and SIGKILLs each
/// after a while, until the deadline.
async fn crashes(shared: Arc<Shared>, url: String, mut rng: Rng) {
    while Instant::now() < shared.deadline {
        tokio::time::sleep(rng.millis(300, 2_000)).await;
        let index = rng.index(shared.names.len());
        let (Some(name), Some(&permits)) = (shared.names.get(index), PERMITS.get(index)) else {
            continue;
        };
        // Half ask for every permit, so that many wait (and die waiting).
        let n = if rng.percent(50) {
            permits
        } else {
            rng.permits(permits)
        };
        let spawned = std::process::Command::new(env!("CARGO_BIN_EXE_semaphore_holder"))
            .args([
                url.as_str(),
                name.as_str(),
                &permits.to_string(),
                &n.to_string(),
                &TTL.as_millis().to_string(),
            ])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn();
        let Ok(mut child) = spawned else {
            continue;
        };
        let acquired = Arc::new(std::sync::atomic::AtomicBool::new(false));
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
            add(&shared.figures.crashed_holders, 1);
        } else {
            add(&shared.figures.crashed_waiters, 1);
        }
    }
}

/// How long until every permit of every semaphore is free; `None` past `limit`.
async fn free_again(shared: &Shared, client: &Client, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    for (name, permits) in shared.names.iter().zip(PERMITS) {
        let semaphore = Semaphore::new(
            SemaphoreOptions::builder(name.clone(), client.clone(), permits)
                .ttl(TTL)
                .build(),
        );
        loop {
            if let Ok(Ok(permit)) =
                tokio::time::timeout(CALL_LIMIT, semaphore.try_acquire_many(permits)).await
            {
                let _ = tokio::time::timeout(CALL_LIMIT, permit.release()).await;
                break;
            }
            if started.elapsed() > limit {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    Some(started.elapsed())
}

/// Every violation of the promises among `held` (see the module docs), and the most permits
/// believed held at once per semaphore.
fn violations(held: &[Held]) -> (Vec<String>, Vec<u32>) {
    let mut found = Vec::new();
    let mut peaks = Vec::new();
    for (semaphore, permits) in PERMITS.iter().copied().enumerate() {
        let intervals: Vec<&Held> = held
            .iter()
            .filter(|held| held.semaphore == semaphore)
            .collect();
        // Closed intervals: at one instant, starts count before ends.
        let mut events: Vec<(Instant, u8, u32, usize)> = Vec::new();
        for (index, held) in intervals.iter().enumerate() {
            events.push((held.start, 0, held.n, index));
            events.push((held.end, 1, held.n, index));
        }
        events.sort_by_key(|&(at, kind, _, _)| (at, kind));
        let (mut in_use, mut peak) = (0_u32, 0_u32);
        let mut open: HashSet<usize> = HashSet::new();
        for (_, kind, n, index) in events {
            if kind == 0 {
                in_use = in_use.saturating_add(n);
                open.insert(index);
                peak = peak.max(in_use);
                if in_use > permits {
                    let holders: Vec<&&Held> = open
                        .iter()
                        .filter_map(|&open| intervals.get(open))
                        .collect();
                    found.push(format!(
                        "semaphore {semaphore}: {in_use} of {permits} permits believed held \
                         at once: {holders:?}"
                    ));
                }
            } else {
                in_use = in_use.saturating_sub(n);
                open.remove(&index);
            }
        }
        peaks.push(peak);
        let mut tokens = HashSet::new();
        for held in &intervals {
            if !tokens.insert(held.token) {
                found.push(format!(
                    "semaphore {semaphore}: fencing token issued twice: {held:?}"
                ));
            }
        }
        let mut by_call: Vec<&&Held> = intervals.iter().collect();
        by_call.sort_by_key(|held| held.called);
        for (index, later) in by_call.iter().enumerate() {
            for earlier in by_call.iter().take(index) {
                if earlier.returned < later.called && earlier.token >= later.token {
                    found.push(format!(
                        "semaphore {semaphore}: token not rising: {earlier:?} then {later:?}"
                    ));
                }
            }
        }
    }
    (found, peaks)
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
async fn permits_believed_held_never_exceed_the_count_under_stalls_cancellations_and_faults() {
    let (seed, seconds) = settings();
    let repro = format!(
        "DISTKIT_TORTURE_SEED={seed} DISTKIT_TORTURE_SECS={seconds} cargo test -p distkit-tests \
         --all-features --test semaphore_torture -- --nocapture"
    );
    println!("semaphore torture: seed {seed}, {seconds} s; replay with: {repro}");
    let mut rng = Rng(seed);
    // SIGSTOP and the proxies need a private standalone server.
    let redis = Arc::new(TestRedis::start_standalone());
    let proxies = Arc::new(vec![Proxy::start(redis.port()), Proxy::start(redis.port())]);
    let prefix = unique_prefix();
    let shared = Arc::new(Shared {
        names: (0..PERMITS.len())
            .map(|index| DistkitRedisKey::new_or_panic(format!("{prefix}-{index}")))
            .collect(),
        deadline: Instant::now()
            .checked_add(Duration::from_secs(seconds))
            .unwrap_or_else(Instant::now),
        held: StdMutex::new(Vec::new()),
        figures: Figures::default(),
    });
    let direct_url = redis.url().to_owned();
    let urls = vec![
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
        tasks.push(tokio::spawn(worker(
            Arc::clone(&shared),
            clients[index % clients.len()].clone(),
            rng.fork(index as u64),
            format!("worker-{index}"),
        )));
    }
    let stalled = stalled_runtime(
        Arc::clone(&shared),
        (0..STALLED_WORKERS)
            .map(|slot| urls[(slot * 2 + 1) % urls.len()].clone())
            .collect(),
        rng.fork(100),
    );
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
        tokio::task::spawn_blocking(move || stalled.join())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    })
    .await;
    redis.resume();
    assert!(
        finished.is_ok(),
        "the torture did not finish in {run_limit:?}; replay with: {repro}"
    );

    // Everything stopped: all permits are free again within a ttl (a killed holder's lease
    // runs out; a killed waiter's heartbeat window is shorter), plus slack for the machine.
    let free_limit = TTL.saturating_add(Duration::from_secs(3));
    let free_after = free_again(&shared, &clients[0], free_limit).await;
    assert!(
        free_after.is_some(),
        "permits stayed taken longer than {free_limit:?} after the run; replay with: {repro}"
    );

    let held = shared
        .held
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let (found, peaks) = violations(&held);
    let figures = &shared.figures;
    let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
    println!(
        "semaphore torture figures: seed {seed}, {seconds} s: {} acquisitions ({} permits; {} \
         held intervals checked; most permits believed held at once {peaks:?} of {PERMITS:?}), \
         {} refused or timed out, {} cancelled, {} redis errors, {} lost while held, {} waits \
         past {CALL_LIMIT:?}; {} runtime stalls; {} faults; {} crashed holders and {} crashed \
         waiters (SIGKILL); all permits free again {:?} after the run; violations found: {}",
        load(&figures.acquisitions),
        load(&figures.permits_taken),
        held.len(),
        load(&figures.refused),
        load(&figures.cancelled),
        load(&figures.redis_errors),
        load(&figures.lost_while_held),
        load(&figures.long_waits),
        load(&figures.stalls),
        load(&figures.faults),
        load(&figures.crashed_holders),
        load(&figures.crashed_waiters),
        free_after,
        found.len(),
    );
    assert!(
        found.is_empty(),
        "{} violations, first: {:?}; replay with: {repro}",
        found.len(),
        found.first()
    );
    // The run must have exercised the semaphores: grants, and overlapping holds.
    assert!(held.len() >= 20, "too few holds to check: {}", held.len());
    assert!(
        peaks.iter().any(|&peak| peak >= 2),
        "no two holds ever overlapped: {peaks:?}"
    );
}

#[test]
fn the_checker_finds_more_permits_than_the_count_and_tokens_out_of_order() {
    let now = Instant::now();
    let at = |millis: u64| now + Duration::from_millis(millis);
    let hold = |n: u32, token: u64, start: u64, end: u64| Held {
        semaphore: 0,
        n,
        token,
        called: at(start),
        returned: at(start),
        start: at(start),
        end: at(end),
        worker: String::new(),
    };
    // Three permits: 2 + 1 at once is fine, and so are holds that follow each other.
    let fine = [hold(2, 1, 0, 10), hold(1, 2, 5, 20), hold(3, 3, 21, 30)];
    assert!(violations(&fine).0.is_empty());
    // 2 + 2 at once is one too many.
    let too_many = [hold(2, 1, 0, 10), hold(2, 2, 10, 20)];
    assert_eq!(violations(&too_many).0.len(), 1);
    // A later acquisition with a smaller token, and a token issued twice.
    assert_eq!(violations(&[hold(1, 5, 0, 1), hold(1, 4, 2, 3)]).0.len(), 1);
    assert_eq!(violations(&[hold(1, 5, 0, 1), hold(1, 5, 0, 3)]).0.len(), 1);
}
