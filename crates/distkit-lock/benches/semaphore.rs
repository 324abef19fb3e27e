//! Semaphore benchmarks, printed as ratios against baselines measured in the same run.
//!
//! `cargo bench -p distkit-lock --features semaphore --bench semaphore` (starts a private
//! redis-server, or uses `REDIS_URL`); `DISTKIT_BENCH=uncontended,handoff` runs only those
//! sections.
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
use distkit_core::{DistkitRedisKey, connect};
use distkit_lock::semaphore::{Semaphore, SemaphoreOptions};
use distkit_test_support::bench::{BenchError, calls_per_second, raw_evalsha};
use distkit_test_support::{TestRedis, unique_prefix};

type BenchResult<T> = Result<T, BenchError>;

const ROUND: Duration = Duration::from_millis(500);
const ROUNDS: usize = 6;
/// The least Redis work of a leased counting semaphore: a holder with a lease deadline and
/// a count of permits in use (one key each), checked against the bound.
const RAW_ACQUIRE: &str = "local used = tonumber(redis.call('GET', KEYS[1]) or '0') \
    if used + 1 > 3 then return 0 end \
    redis.call('INCR', KEYS[1]) \
    redis.call('ZADD', KEYS[1] .. ':h', ARGV[2], ARGV[1]) return 1";
const RAW_RELEASE: &str = "if redis.call('ZREM', KEYS[1] .. ':h', ARGV[1]) == 1 then \
    redis.call('DECR', KEYS[1]) return 1 end return 0";
const HANDOFFS: usize = 300;

fn key(text: &str) -> DistkitRedisKey {
    DistkitRedisKey::new_or_panic(text.to_owned())
}

/// The semaphore's own two scripts, sent raw (no lease, no renewal, no guard).
async fn same_scripts_raw(
    client: &Client,
    acquire: &str,
    release: &str,
    name: &str,
) -> BenchResult<()> {
    let keys: Vec<Value> = [
        "holders",
        "held",
        "queue",
        "alive",
        "line",
        "fence",
        "epoch",
        "quarantine",
    ]
    .iter()
    .map(|part| Value::from(format!("bench:{{{name}}}:sem:{part}")))
    .collect();
    let slot = slot_of(&format!("bench:{{{name}}}"));
    let command = CustomCommand::new_static("EVALSHA", ClusterHash::Custom(slot), false);
    let mut args: Vec<Value> = vec![acquire.into(), 8.into()];
    args.extend(keys.iter().cloned());
    args.extend([
        "token".into(),
        "1".into(),
        "3".into(),
        "30000".into(),
        "250".into(),
        "0".into(),
        "0".into(),
        "Pchannel".into(),
    ]);
    let _: Value = client.custom(command, args).await?;
    let command = CustomCommand::new_static("EVALSHA", ClusterHash::Custom(slot), false);
    let mut args: Vec<Value> = vec![release.into(), 8.into()];
    args.extend(keys);
    args.extend(["token".into(), "Pchannel".into()]);
    let _: Value = client.custom(command, args).await?;
    Ok(())
}

async fn uncontended(client: &Client) -> BenchResult<()> {
    let raw_acquire: String = client.script_load_cluster(RAW_ACQUIRE).await?;
    let raw_release: String = client.script_load_cluster(RAW_RELEASE).await?;
    let own_acquire: String = client
        .script_load_cluster(concat!(
            include_str!("../src/scripts/fence.lua"),
            include_str!("../src/scripts/loss_guard.lua"),
            include_str!("../src/scripts/semaphore_common.lua"),
            include_str!("../src/scripts/semaphore_acquire.lua")
        ))
        .await?;
    let own_release: String = client
        .script_load_cluster(concat!(
            include_str!("../src/scripts/semaphore_common.lua"),
            include_str!("../src/scripts/semaphore_release.lua")
        ))
        .await?;
    let semaphore = Semaphore::new(SemaphoreOptions::new(
        key(&unique_prefix()),
        client.clone(),
        3,
    ));
    let raw_key = format!("bench:{{{}}}", unique_prefix());
    let own_name = unique_prefix();
    let (mut raw, mut same, mut ours, mut waiting) = (0.0_f64, 0.0_f64, 0.0_f64, 0.0_f64);
    for _ in 0..ROUNDS {
        let (c, a, r, k) = (
            client.clone(),
            raw_acquire.clone(),
            raw_release.clone(),
            raw_key.clone(),
        );
        raw = raw.max(
            calls_per_second(1, ROUND, move |_| {
                let (c, a, r, k) = (c.clone(), a.clone(), r.clone(), k.clone());
                async move {
                    raw_evalsha(&c, &a, &k, &["token", "1"]).await?;
                    raw_evalsha(&c, &r, &k, &["token"]).await?;
                    Ok(())
                }
            })
            .await?,
        );
        let (c, a, r, n) = (
            client.clone(),
            own_acquire.clone(),
            own_release.clone(),
            own_name.clone(),
        );
        same = same.max(
            calls_per_second(1, ROUND, move |_| {
                let (c, a, r, n) = (c.clone(), a.clone(), r.clone(), n.clone());
                async move { same_scripts_raw(&c, &a, &r, &n).await }
            })
            .await?,
        );
        let s = Arc::clone(&semaphore);
        ours = ours.max(
            calls_per_second(1, ROUND, move |_| {
                let s = Arc::clone(&s);
                async move {
                    s.try_acquire().await?.release().await?;
                    Ok(())
                }
            })
            .await?,
        );
        let s = Arc::clone(&semaphore);
        waiting = waiting.max(
            calls_per_second(1, ROUND, move |_| {
                let s = Arc::clone(&s);
                async move {
                    s.acquire().await?.release().await?;
                    Ok(())
                }
            })
            .await?,
        );
    }
    println!(
        "Semaphore uncontended try_acquire()+release() and acquire()+release() vs two raw \
         EVALSHA round trips (count check + INCR + ZADD; ZREM + DECR)"
    );
    println!(
        "  try_acquire {ours:>8.0}/s | acquire {waiting:>8.0}/s | raw {raw:>8.0}/s -> ratios \
         {:.2} and {:.2} | raw EVALSHA of distkit's own two scripts {same:>8.0}/s -> ratio {:.2}",
        ours / raw,
        waiting / raw,
        ours / same
    );
    Ok(())
}

fn percentile(sorted: &[Duration], percent: usize) -> Duration {
    sorted[(sorted.len() * percent / 100).min(sorted.len() - 1)]
}

/// The p50 of a `PING` round trip, back to back.
async fn rtt(client: &Client) -> BenchResult<Duration> {
    let mut samples = Vec::new();
    for _ in 0..1_000 {
        let started = Instant::now();
        let _: String = client.ping(None).await?;
        samples.push(started.elapsed());
    }
    samples.sort();
    Ok(percentile(&samples, 50))
}

/// The floor of any pub/sub handoff: after a 1 ms critical section, one client runs a
/// script that writes a key and publishes; the time until another client's subscriber
/// delivers the message to a waiting task.
async fn raw_handoff(redis: &TestRedis) -> BenchResult<Vec<Duration>> {
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
        tokio::time::sleep(Duration::from_millis(1)).await;
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

/// `waiters` tasks on separate clients loop over acquire → 1 ms → release on a semaphore of
/// one permit; the latency is from the release call to the next holder's `acquire()`
/// returning.
async fn handoff(redis: &TestRedis, waiters: usize) -> BenchResult<Vec<Duration>> {
    let name = key(&unique_prefix());
    let released_at: Arc<StdMutex<Option<Instant>>> = Arc::new(StdMutex::new(None));
    let latencies: Arc<StdMutex<Vec<Duration>>> = Arc::new(StdMutex::new(Vec::new()));
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut handles = Vec::new();
    for _ in 0..waiters {
        let client = connect(redis.url()).await?;
        let semaphore = Semaphore::new(SemaphoreOptions::new(name.clone(), client, 1));
        let (released_at, latencies, done) = (
            Arc::clone(&released_at),
            Arc::clone(&latencies),
            Arc::clone(&done),
        );
        handles.push(tokio::spawn(async move {
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                let permit = semaphore.acquire().await?;
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
                permit.release().await?;
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
    let hot_rtt = rtt(client).await?;
    let raw = raw_handoff(redis).await?;
    let raw_p50 = percentile(&raw, 50);
    let in_rtt = |latency: Duration| latency.as_secs_f64() / hot_rtt.as_secs_f64();
    println!(
        "Semaphore (1 permit) contended handoff, 1 ms critical section: release call -> the next \
         holder's acquire() returns. RTT = PING p50 {hot_rtt:.1?}; raw pub/sub handoff p50 \
         {raw_p50:.1?} = {:.1} RTT",
        in_rtt(raw_p50)
    );
    for waiters in [4, 16] {
        let latencies = handoff(redis, waiters).await?;
        let (p50, p99) = (percentile(&latencies, 50), percentile(&latencies, 99));
        println!(
            "  {waiters:>2} waiters: handoff p50 {p50:>8.1?} = {:.1} RTT = {:.2}x raw | p99 \
             {p99:>8.1?} = {:.1} RTT",
            in_rtt(p50),
            p50.as_secs_f64() / raw_p50.as_secs_f64(),
            in_rtt(p99)
        );
    }
    Ok(())
}

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
        Ok::<(), BenchError>(())
    })?;
    Ok(())
}
