//! Lock benchmarks, printed as ratios against baselines measured in the same run.
//!
//! `cargo bench -p distkit-lock` (starts a private redis-server, or uses `REDIS_URL`).
#![expect(
    clippy::arithmetic_side_effects,
    clippy::indexing_slicing,
    reason = "a measurement program: counts, percentiles and float ratios"
)]

use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};

use distkit_core::fred::clients::Client;
use distkit_core::fred::interfaces::{ClientLike, LuaInterface};
use distkit_core::fred::types::{ClusterHash, CustomCommand, Value};
use distkit_core::key_schema::slot_of;
use distkit_core::{DistkitRedisKey, connect};
use distkit_lock::lock::{LockOptions, Mutex, RwLock};
use distkit_test_support::bench::calls_per_second;
use distkit_test_support::{TestRedis, unique_prefix};

type BenchResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

const ROUND: Duration = Duration::from_millis(500);
const ROUNDS: usize = 8;
const RAW_ACQUIRE: &str = "return redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2])";
const RAW_RELEASE: &str =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";

fn key(text: &str) -> DistkitRedisKey {
    DistkitRedisKey::new_or_panic(text.to_owned())
}

async fn evalsha(client: &Client, sha: &str, key: &str, args: &[&str]) -> BenchResult<Value> {
    // The slot must be given as `Custom`: fred ignores other hash policies of custom commands.
    let command = CustomCommand::new_static("EVALSHA", ClusterHash::Custom(slot_of(key)), false);
    let mut all: Vec<Value> = vec![sha.into(), 1.into(), key.into()];
    all.extend(args.iter().map(|arg| Value::from(*arg)));
    Ok(client.custom(command, all).await?)
}

async fn same_scripts_raw(
    client: &Client,
    acquire: &str,
    release: &str,
    key: &str,
) -> BenchResult<()> {
    let keys: Vec<Value> = [
        "",
        ":fence",
        ":queue",
        ":alive",
        ":tickets",
        ":handover",
        ":ttls",
    ]
    .iter()
    .map(|part| Value::from(format!("{key}{part}")))
    .collect();
    let command = CustomCommand::new_static("EVALSHA", ClusterHash::Custom(slot_of(key)), false);
    let mut args: Vec<Value> = vec![acquire.into(), 7.into()];
    args.extend(keys.iter().cloned());
    args.extend([
        "token".into(),
        30_000.into(),
        250.into(),
        "1".into(),
        "0".into(),
    ]);
    let _: Value = client.custom(command, args).await?;
    let command = CustomCommand::new_static("EVALSHA", ClusterHash::Custom(slot_of(key)), false);
    let mut args: Vec<Value> = vec![release.into(), 7.into()];
    args.extend(keys);
    args.extend(["token".into(), "channel".into()]);
    let _: Value = client.custom(command, args).await?;
    Ok(())
}

async fn uncontended(client: &Client) -> BenchResult<()> {
    let acquire_sha: String = client.script_load_cluster(RAW_ACQUIRE).await?;
    let release_sha: String = client.script_load_cluster(RAW_RELEASE).await?;
    let own_acquire: String = client
        .script_load_cluster(concat!(
            include_str!("../src/scripts/mutex_acquire.lua"),
            include_str!("../src/scripts/mutex_common.lua"),
            include_str!("../src/scripts/mutex_acquire_queue.lua")
        ))
        .await?;
    let own_release: String = client
        .script_load_cluster(concat!(
            include_str!("../src/scripts/mutex_release.lua"),
            include_str!("../src/scripts/mutex_common.lua"),
            include_str!("../src/scripts/mutex_release_handover.lua")
        ))
        .await?;
    let mutex = Mutex::new(LockOptions::new(key(&unique_prefix()), client.clone()));
    let raw_key = format!("bench:{{{}}}", unique_prefix());
    let (mut raw, mut same, mut ours) = (0.0_f64, 0.0_f64, 0.0_f64);
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
                    evalsha(&c, &a, &k, &["token", "30000"]).await?;
                    evalsha(&c, &r, &k, &["token"]).await?;
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
    }
    println!(
        "Mutex uncontended lock()+release() vs two raw EVALSHA round trips (SET NX PX; compare-and-delete)"
    );
    println!(
        "  mutex {ours:>8.0}/s | raw {raw:>8.0}/s -> ratio {:.2} \
         | raw EVALSHA of distkit's own two scripts {same:>8.0}/s -> ratio {:.2}",
        ours / raw,
        ours / same
    );
    Ok(())
}

async fn rtt(client: &Client) -> BenchResult<Duration> {
    let mut samples = Vec::new();
    for _ in 0..2_000 {
        let started = Instant::now();
        let _: String = client.ping(None).await?;
        samples.push(started.elapsed());
    }
    samples.sort();
    Ok(samples[samples.len() / 2])
}

async fn handoff(redis: &TestRedis, waiters: usize, rtt: Duration) -> BenchResult<()> {
    const HANDOFFS: usize = 400;
    let name = key(&unique_prefix());
    let released_at: Arc<StdMutex<Option<Instant>>> = Arc::new(StdMutex::new(None));
    let latencies: Arc<StdMutex<Vec<Duration>>> = Arc::new(StdMutex::new(Vec::new()));
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut handles = Vec::new();
    for _ in 0..waiters {
        let client = connect(redis.url()).await?;
        let mutex = Mutex::new(LockOptions::new(name.clone(), client));
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
                tokio::time::sleep(Duration::from_millis(1)).await;
                *released_at.lock().map_err(|_| "poisoned")? = Some(Instant::now());
                guard.release().await?;
            }
            Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
        }));
    }
    for handle in handles {
        handle.await??;
    }
    let mut latencies = latencies.lock().map_err(|_| "poisoned")?.clone();
    latencies.sort();
    let p50 = latencies[latencies.len() / 2];
    let p99 = latencies[latencies.len() * 99 / 100];
    println!(
        "  {waiters:>2} waiters: handoff p50 {p50:>9.1?} = {:.1} RTT | p99 {p99:>9.1?} = {:.1} RTT",
        p50.as_secs_f64() / rtt.as_secs_f64(),
        p99.as_secs_f64() / rtt.as_secs_f64()
    );
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
                    evalsha(&c, &a, &k, &["token", "30000"]).await?;
                    evalsha(&c, &r, &k, &["token"]).await?;
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

fn main() -> BenchResult<()> {
    let redis = TestRedis::start();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let client = connect(redis.url()).await?;
        uncontended(&client).await?;
        let rtt = rtt(&client).await?;
        println!("Mutex contended handoff (release call -> next holder's lock() returns), RTT (PING p50) {rtt:?}");
        for waiters in [4, 16] {
            handoff(&redis, waiters, rtt).await?;
        }
        readers(&client).await?;
        Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
    })?;
    Ok(())
}
