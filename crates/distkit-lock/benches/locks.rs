//! Lock benchmarks, printed as ratios against baselines measured in the same run.
//!
//! `cargo bench -p distkit-lock` (starts a private redis-server, or uses `REDIS_URL`);
//! `DISTKIT_BENCH=uncontended,handoff` runs only those sections (see `runs`).
#![expect(
    clippy::arithmetic_side_effects,
    clippy::indexing_slicing,
    reason = "a measurement program: counts, percentiles and float ratios"
)]

use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};

use distkit_core::fred::clients::{Client, SubscriberClient};
use distkit_core::fred::interfaces::{ClientLike, EventInterface, LuaInterface, PubsubInterface};
use distkit_core::fred::types::{ClusterHash, CustomCommand, Value};
use distkit_core::key_schema::slot_of;
use distkit_core::{DistkitRedisKey, ReplicaAcks, connect};
use distkit_lock::lock::{LockOptions, Mutex, RwLock};
use distkit_test_support::bench::{BenchError, calls_per_second, raw_evalsha};
use distkit_test_support::{ReplicatedRedis, TestRedis, unique_prefix};

type BenchResult<T> = Result<T, BenchError>;

const ROUND: Duration = Duration::from_millis(500);
const ROUNDS: usize = 8;
const RAW_ACQUIRE: &str = "return redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2])";
const RAW_RELEASE: &str =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";

fn key(text: &str) -> DistkitRedisKey {
    DistkitRedisKey::new_or_panic(text.to_owned())
}

async fn same_scripts_raw(
    client: &Client,
    acquire: &str,
    release: &str,
    key: &str,
) -> BenchResult<()> {
    let keys: Vec<Value> = ["", ":fence", ":waitlist", ":waiters", ":handover"]
        .iter()
        .map(|part| Value::from(format!("{key}{part}")))
        .collect();
    let command = CustomCommand::new_static("EVALSHA", ClusterHash::Custom(slot_of(key)), false);
    let mut args: Vec<Value> = vec![acquire.into(), 5.into()];
    args.extend(keys.iter().cloned());
    // As `Mutex::attempt` sends them (no loss guard): token, lease, retention, heartbeat
    // window, flags (queued, not an owner id), inbox.
    args.extend([
        "token".into(),
        30_000.into(),
        630_000.into(),
        250.into(),
        "10".into(),
        "".into(),
    ]);
    let _: Value = client.custom(command, args).await?;
    let command = CustomCommand::new_static("EVALSHA", ClusterHash::Custom(slot_of(key)), false);
    let mut args: Vec<Value> = vec![release.into(), 5.into()];
    args.extend(keys);
    // As `LeaseTarget::release_once` sends them: token, retention.
    args.extend(["token".into(), 630_000.into()]);
    let _: Value = client.custom(command, args).await?;
    Ok(())
}

async fn uncontended(client: &Client) -> BenchResult<()> {
    let acquire_sha: String = client.script_load_cluster(RAW_ACQUIRE).await?;
    let release_sha: String = client.script_load_cluster(RAW_RELEASE).await?;
    let own_acquire: String = client
        .script_load_cluster(concat!(
            include_str!("../src/scripts/fence.lua"),
            include_str!("../src/scripts/loss_guard.lua"),
            include_str!("../src/scripts/mutex_acquire.lua"),
            include_str!("../src/scripts/mutex_common.lua"),
            include_str!("../src/scripts/mutex_acquire_queue.lua")
        ))
        .await?;
    let own_release: String = client
        .script_load_cluster(concat!(
            include_str!("../src/scripts/fence.lua"),
            include_str!("../src/scripts/loss_guard.lua"),
            include_str!("../src/scripts/mutex_release.lua"),
            include_str!("../src/scripts/mutex_common.lua"),
            include_str!("../src/scripts/mutex_release_handover.lua")
        ))
        .await?;
    let mutex = Mutex::new(LockOptions::new(key(&unique_prefix()), client.clone()));
    let raw_key = format!("bench:{{{}}}", unique_prefix());
    let (mut raw, mut same, mut ours, mut waiting) = (0.0_f64, 0.0_f64, 0.0_f64, 0.0_f64);
    let mut dropped = 0.0_f64;
    for _ in 0..ROUNDS {
        let (c, a, r, k) = (
            client.clone(),
            own_acquire.clone(),
            own_release.clone(),
            raw_key.clone(),
        );
        same = same.max(
            calls_per_second(1, ROUND, move |_| {
                let (c, a, r, k) = (c.clone(), a.clone(), r.clone(), k.clone());
                async move { same_scripts_raw(&c, &a, &r, &k).await }
            })
            .await?,
        );
        let (c, a, r, k) = (
            client.clone(),
            acquire_sha.clone(),
            release_sha.clone(),
            raw_key.clone(),
        );
        raw = raw.max(
            calls_per_second(1, ROUND, move |_| {
                let (c, a, r, k) = (c.clone(), a.clone(), r.clone(), k.clone());
                async move {
                    raw_evalsha(&c, &a, &k, &["token", "30000"]).await?;
                    raw_evalsha(&c, &r, &k, &["token"]).await?;
                    Ok(())
                }
            })
            .await?,
        );
        let m = Arc::clone(&mutex);
        ours = ours.max(
            calls_per_second(1, ROUND, move |_| {
                let m = Arc::clone(&m);
                async move {
                    m.try_lock().await?.release().await?;
                    Ok(())
                }
            })
            .await?,
        );
        let m = Arc::clone(&mutex);
        waiting = waiting.max(
            calls_per_second(1, ROUND, move |_| {
                let m = Arc::clone(&m);
                async move {
                    m.lock().await?.release().await?;
                    Ok(())
                }
            })
            .await?,
        );
        let m = Arc::clone(&mutex);
        dropped = dropped.max(
            calls_per_second(1, ROUND, move |_| {
                let m = Arc::clone(&m);
                async move {
                    // The drop waits for the release (a multi-thread runtime).
                    drop(m.try_lock().await?);
                    Ok(())
                }
            })
            .await?,
        );
    }
    println!(
        "Mutex uncontended try_lock()+drop(guard) (the drop releases before it returns) vs \
         try_lock()+release()"
    );
    println!(
        "  drop {dropped:>8.0}/s | release {ours:>8.0}/s -> ratio {:.2}",
        dropped / ours
    );
    println!(
        "Mutex uncontended try_lock()+release() and lock()+release() vs two raw EVALSHA round trips \
         (SET NX PX; compare-and-delete)"
    );
    println!(
        "  try_lock {ours:>8.0}/s | lock {waiting:>8.0}/s | raw {raw:>8.0}/s -> ratios {:.2} and {:.2} \
         | raw EVALSHA of distkit's own two scripts {same:>8.0}/s -> ratio {:.2}",
        ours / raw,
        waiting / raw,
        ours / same
    );
    Ok(())
}

/// What a holder does inside the critical section of the handoff benchmark.
#[derive(Clone, Copy, Debug)]
enum CriticalSection {
    /// Sleeps 1 ms: every process (and Redis) goes idle, and the handoff starts cold.
    Sleep,
    /// One Redis round trip (`PING`): the holder's process stays busy.
    RoundTrip,
}

impl CriticalSection {
    async fn run(self, client: &Client) -> BenchResult<()> {
        match self {
            Self::Sleep => tokio::time::sleep(Duration::from_millis(1)).await,
            Self::RoundTrip => {
                let _: String = client.ping(None).await?;
            }
        }
        Ok(())
    }
}

fn percentile(sorted: &[Duration], percent: usize) -> Duration {
    sorted[(sorted.len() * percent / 100).min(sorted.len() - 1)]
}

/// The p50 of a `PING` round trip: back to back, or each after a 1 ms sleep (the idle
/// critical section).
async fn rtt(client: &Client, section: CriticalSection) -> BenchResult<Duration> {
    let mut samples = Vec::new();
    for _ in 0..1_000 {
        if let CriticalSection::Sleep = section {
            section.run(client).await?;
        }
        let started = Instant::now();
        let _: String = client.ping(None).await?;
        samples.push(started.elapsed());
    }
    samples.sort();
    Ok(percentile(&samples, 50))
}

/// The floor of any pub/sub handoff here: after the critical section, one client runs a
/// script that writes a key and publishes; the time until another client's subscriber
/// delivers the message to a waiting task.
async fn raw_handoff(redis: &TestRedis, section: CriticalSection) -> BenchResult<Vec<Duration>> {
    let publisher = connect(redis.url()).await?;
    let subscriber = SubscriberClient::new(publisher.client_config(), None, None, None);
    subscriber.init().await?;
    let channel = format!("bench:{{{}}}:released", unique_prefix());
    subscriber.subscribe(channel.as_str()).await?;
    let sha: String = publisher
        .script_load_cluster(
            "redis.call('SET', KEYS[1], ARGV[1]) return redis.call('PUBLISH', ARGV[1], 'granted')",
        )
        .await?;
    let mut messages = subscriber.message_rx();
    let (delivered, mut deliveries) = tokio::sync::mpsc::unbounded_channel::<Instant>();
    let receiver = tokio::spawn(async move {
        while messages.recv().await.is_ok() {
            if delivered.send(Instant::now()).is_err() {
                break;
            }
        }
    });
    let key = format!("bench:{{{}}}:owner", unique_prefix());
    let mut latencies = Vec::new();
    for _ in 0..HANDOFFS {
        section.run(&publisher).await?;
        let released = Instant::now();
        raw_evalsha(&publisher, &sha, &key, &[channel.as_str()]).await?;
        let delivered = deliveries.recv().await.ok_or("subscriber closed")?;
        latencies.push(delivered.duration_since(released));
    }
    receiver.abort();
    subscriber.quit().await?;
    latencies.sort();
    Ok(latencies)
}

const HANDOFFS: usize = 400;

/// `waiters` tasks on separate clients loop over lock → critical section → release; the
/// latency is from the release call to the next holder's `lock()` returning.
async fn handoff(
    redis: &TestRedis,
    waiters: usize,
    section: CriticalSection,
) -> BenchResult<Vec<Duration>> {
    let name = key(&unique_prefix());
    let released_at: Arc<StdMutex<Option<Instant>>> = Arc::new(StdMutex::new(None));
    let latencies: Arc<StdMutex<Vec<Duration>>> = Arc::new(StdMutex::new(Vec::new()));
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut handles = Vec::new();
    for _ in 0..waiters {
        let client = connect(redis.url()).await?;
        let mutex = Mutex::new(LockOptions::new(name.clone(), client.clone()));
        let (released_at, latencies, done) = (
            Arc::clone(&released_at),
            Arc::clone(&latencies),
            Arc::clone(&done),
        );
        handles.push(tokio::spawn(async move {
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                let guard = mutex.lock().await?;
                let acquired = Instant::now();
                if let Some(released) = released_at.lock().map_err(|_| "poisoned")?.take() {
                    let mut latencies = latencies.lock().map_err(|_| "poisoned")?;
                    latencies.push(acquired.duration_since(released));
                    if latencies.len() >= HANDOFFS {
                        done.store(true, std::sync::atomic::Ordering::SeqCst);
                    }
                }
                section.run(&client).await?;
                *released_at.lock().map_err(|_| "poisoned")? = Some(Instant::now());
                guard.release().await?;
            }
            Ok::<(), BenchError>(())
        }));
    }
    for handle in handles {
        handle.await??;
    }
    let mut latencies = latencies.lock().map_err(|_| "poisoned")?.clone();
    latencies.sort();
    Ok(latencies)
}

async fn handoffs(redis: &TestRedis, client: &Client) -> BenchResult<()> {
    let hot_rtt = rtt(client, CriticalSection::RoundTrip).await?;
    println!(
        "Mutex contended handoff: release call -> the next holder's lock() returns. \
         RTT = PING p50 back to back: {hot_rtt:.1?}"
    );
    for section in [CriticalSection::Sleep, CriticalSection::RoundTrip] {
        let idle_rtt = rtt(client, section).await?;
        let raw = raw_handoff(redis, section).await?;
        let raw_p50 = percentile(&raw, 50);
        let in_rtt = |latency: Duration| latency.as_secs_f64() / hot_rtt.as_secs_f64();
        println!(
            "  critical section {section:?}: PING p50 after it {idle_rtt:.1?} = {:.1} RTT; \
             raw pub/sub handoff p50 {raw_p50:.1?} = {:.1} RTT, p99 {:.1?}",
            in_rtt(idle_rtt),
            in_rtt(raw_p50),
            percentile(&raw, 99)
        );
        for waiters in [4, 16] {
            let latencies = handoff(redis, waiters, section).await?;
            let (p50, p99) = (percentile(&latencies, 50), percentile(&latencies, 99));
            println!(
                "    {waiters:>2} waiters: handoff p50 {p50:>8.1?} = {:.1} RTT = {:.2}x raw \
                 | p99 {p99:>8.1?} = {:.1} RTT",
                in_rtt(p50),
                p50.as_secs_f64() / raw_p50.as_secs_f64(),
                in_rtt(p99)
            );
        }
    }
    Ok(())
}

async fn readers(client: &Client) -> BenchResult<()> {
    let acquire_sha: String = client.script_load_cluster(RAW_ACQUIRE).await?;
    let release_sha: String = client.script_load_cluster(RAW_RELEASE).await?;
    let rwlock = RwLock::new(LockOptions::new(key(&unique_prefix()), client.clone()));
    let raw_prefix = unique_prefix();
    let (mut raw, mut ours) = (0.0_f64, 0.0_f64);
    for _ in 0..ROUNDS {
        let (c, a, r, p) = (
            client.clone(),
            acquire_sha.clone(),
            release_sha.clone(),
            raw_prefix.clone(),
        );
        raw = raw.max(
            calls_per_second(8, ROUND, move |task| {
                let (c, a, r) = (c.clone(), a.clone(), r.clone());
                let k = format!("bench:{{{p}}}:{task}");
                async move {
                    raw_evalsha(&c, &a, &k, &["token", "30000"]).await?;
                    raw_evalsha(&c, &r, &k, &["token"]).await?;
                    Ok(())
                }
            })
            .await?,
        );
        let l = Arc::clone(&rwlock);
        ours = ours.max(
            calls_per_second(8, ROUND, move |_| {
                let l = Arc::clone(&l);
                async move {
                    l.read().await?.release().await?;
                    Ok(())
                }
            })
            .await?,
        );
    }
    println!("RwLock read()+release() from 8 readers vs two raw EVALSHA round trips from 8 tasks");
    println!(
        "  rwlock {ours:>8.0}/s | raw {raw:>8.0}/s -> ratio {:.2}",
        ours / raw
    );
    Ok(())
}

/// The cost of the data-loss options, against the same mutex without them, in the same run:
/// uncontended `try_lock()` + `release()` on a primary with one replica (in sync), with
/// `replica_acks(1 replica)` and with `loss_quarantine`.
async fn data_loss_options() -> BenchResult<()> {
    let topology = ReplicatedRedis::start(1);
    let client = connect(&topology.primary_url()).await?;
    let build = |acks: bool, quarantine: bool| {
        let mut options = LockOptions::builder(key(&unique_prefix()), client.clone())
            .ttl(Duration::from_secs(1))
            .loss_quarantine(quarantine)
            .build();
        if acks {
            options.replica_acks = Some(ReplicaAcks::new(1, Duration::from_secs(1)));
        }
        Mutex::new(options)
    };
    let (plain, acked, guarded) = (build(false, false), build(true, false), build(false, true));
    let (mut base, mut with_acks, mut with_guard) = (0.0_f64, 0.0_f64, 0.0_f64);
    let run = |mutex: Arc<Mutex>| {
        calls_per_second(1, ROUND, move |_| {
            let m = Arc::clone(&mutex);
            async move {
                m.try_lock().await?.release().await?;
                Ok(())
            }
        })
    };
    let guard_ready = Instant::now();
    for round in 0..ROUNDS {
        base = base.max(run(Arc::clone(&plain)).await?);
        with_acks = with_acks.max(run(Arc::clone(&acked)).await?);
        if round == 0 {
            // A fresh server: the guarded lock waits until the server is up for ttl + 1 s.
            while guarded.try_lock().await.is_err() {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            println!(
                "  (loss_quarantine on a fresh server: first grant after {:?})",
                guard_ready.elapsed()
            );
        }
        with_guard = with_guard.max(run(Arc::clone(&guarded)).await?);
    }
    println!("Mutex uncontended try_lock()+release() on a primary with one replica");
    println!(
        "  plain {base:>8.0}/s | replica_acks(1) {with_acks:>8.0}/s -> ratio {:.2} \
         | loss_quarantine {with_guard:>8.0}/s -> ratio {:.2}",
        with_acks / base,
        with_guard / base
    );
    Ok(())
}

/// Whether the section `name` runs: all do, unless `DISTKIT_BENCH` lists some
/// (`uncontended`, `handoff`, `readers`, `data_loss`, comma-separated).
fn runs(name: &str) -> bool {
    std::env::var("DISTKIT_BENCH").map_or(true, |sections| {
        sections.split(',').any(|section| section.trim() == name)
    })
}

fn main() -> BenchResult<()> {
    let redis = TestRedis::start();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let client = connect(redis.url()).await?;
        if runs("uncontended") {
            uncontended(&client).await?;
        }
        if runs("handoff") {
            handoffs(&redis, &client).await?;
        }
        if runs("readers") {
            readers(&client).await?;
        }
        if runs("data_loss") && std::env::var("REDIS_URL").is_err() {
            data_loss_options().await?;
        }
        Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
    })?;
    Ok(())
}
