//! A tour of every distkit primitive, end to end, against the Redis named by `REDIS_URL`
//! (default `redis://127.0.0.1:6379`; it only touches keys under a prefix of its own).
//!
//! `REDIS_URL=redis://127.0.0.1:6379 cargo run -p distkit --features full --example tour`;
//! in the repository, `bash scripts/tour.sh` starts a private Redis for it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use distkit::counter::{CounterOptions, CounterTrait, LaxCounter, StrictCounter};
use distkit::icounter::{
    InstanceAwareCounterTrait, StrictInstanceAwareCounter, StrictInstanceAwareCounterOptions,
};
use distkit::lock::{LockGuardState, LockOptions, Mutex, RwLock};
use distkit::trypema::local::LocalRateLimiterProvider;
use distkit::trypema::redis::{RedisKey, RedisRateLimiterProvider};
use distkit::trypema::{BucketSize, RateLimit, RateLimitDecision, RateLimiterBuilder, WindowSize};
use distkit::{CounterComparator, DistkitError, DistkitRedisKey};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn key(text: &str) -> std::result::Result<DistkitRedisKey, DistkitError> {
    DistkitRedisKey::try_from(text)
}

/// The Redis to use: `REDIS_URL`, else a server on this machine's default port.
fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// A prefix no other run uses, so the example never touches anybody's data.
fn unique_prefix() -> String {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis());
    format!("{}-{millis}", std::process::id())
}

#[tokio::main]
async fn main() -> Result<()> {
    let url = redis_url();
    println!("distkit tour against {url}\n");
    let client = distkit::connect(&url).await?;
    // A prefix of its own, so the tour never touches anybody's data.
    let prefix = DistkitRedisKey::try_from(format!("tour-{}", unique_prefix()))?;

    println!("== StrictCounter: every call one atomic script");
    let strict = StrictCounter::new(CounterOptions::new(prefix.clone(), client.clone()));
    let credits = key("credits")?;
    println!(
        "  inc(credits, 100)            -> {}",
        strict.inc(&credits, 100).await?
    );
    println!(
        "  dec(credits, 30)             -> {}",
        strict.dec(&credits, 30).await?
    );
    let (new, old) = strict
        .inc_if(&credits, CounterComparator::Gt(50), -50)
        .await?;
    println!("  inc_if(credits > 50, -50)    -> new {new}, old {old}");
    let (new, old) = strict
        .inc_if(&credits, CounterComparator::Gt(50), -50)
        .await?;
    println!(
        "  inc_if(credits > 50, -50)    -> new {new}, old {old} (condition failed, nothing written)"
    );
    let big = key("big")?;
    strict.set(&big, i64::MAX).await?;
    match strict.inc(&big, 1).await {
        Err(error) => println!("  inc(i64::MAX, 1)             -> error: {error}"),
        Ok(value) => println!("  inc(i64::MAX, 1)             -> unexpectedly {value}"),
    }
    let a = key("a")?;
    let b = key("b")?;
    let batch = strict.inc_all(&[(&a, 1), (&b, 2), (&a, 3)]).await?;
    let shown: Vec<String> = batch.iter().map(|(k, v)| format!("{k}={v}")).collect();
    println!("  inc_all([a+1, b+2, a+3])     -> [{}]", shown.join(", "));

    println!("\n== LaxCounter: increments buffered in memory, flushed every 20 ms");
    let lax = LaxCounter::new(CounterOptions::new(prefix.clone(), client.clone()));
    let views = key("page-views")?;
    let started = Instant::now();
    for _ in 0..100_000 {
        lax.inc(&views, 1).await?;
    }
    let elapsed = started.elapsed();
    println!(
        "  100 000 lax inc calls took {elapsed:?} ({:?} per call)",
        elapsed.checked_div(100_000).unwrap_or_default()
    );
    println!(
        "  lax.get                      -> {}",
        lax.get(&views).await?
    );
    println!(
        "  strict.get right away        -> {} (the last deltas may still be in memory)",
        strict.get(&views).await?
    );
    lax.flush().await?;
    println!(
        "  strict.get after flush()     -> {}",
        strict.get(&views).await?
    );

    println!("\n== Instance-aware counters: each process owns a slice of the total");
    let instance = |client| {
        let mut options = StrictInstanceAwareCounterOptions::new(prefix.clone(), client);
        options.dead_instance_threshold = Duration::from_secs(1);
        StrictInstanceAwareCounter::new(options)
    };
    let worker_one = instance(client.clone());
    let worker_two = instance(distkit::connect(&url).await?);
    let jobs = key("jobs-in-flight")?;
    let (total, mine) = worker_one.inc(&jobs, 4).await?;
    println!("  worker one inc(4)            -> total {total}, its slice {mine}");
    let (total, mine) = worker_two.inc(&jobs, 6).await?;
    println!("  worker two inc(6)            -> total {total}, its slice {mine}");
    drop(worker_two);
    let died = Instant::now();
    while worker_one.get(&jobs).await?.0 != 4 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "  worker two stopped heartbeating; {:.1} s later the total is back to 4",
        died.elapsed().as_secs_f64()
    );
    worker_one.clear().await?;

    println!("\n== Mutex: leases renewed in the background, fencing tokens, guard state");
    let lock_key = key(&format!("report-{}", unique_prefix()))?;
    let mutex = Mutex::new(LockOptions::new(lock_key.clone(), client.clone()));
    let guard = mutex.lock().await?;
    println!(
        "  lock()                       -> state {:?}, fencing token {}",
        guard.get_state().await,
        guard.fencing_token()
    );
    let contender = Mutex::new(LockOptions::new(
        lock_key.clone(),
        distkit::connect(&url).await?,
    ));
    match contender.try_lock().await {
        Err(error) => println!("  contender.try_lock()         -> error: {error}"),
        Ok(_) => println!("  contender.try_lock()         -> unexpectedly acquired"),
    }
    let waiter = tokio::spawn(async move {
        let started = Instant::now();
        let guard = contender.lock().await?;
        Ok::<_, DistkitError>((
            started.elapsed(),
            guard.fencing_token(),
            guard.get_on_attempt(),
        ))
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let state = guard.release().await?;
    println!("  release()                    -> {state:?}");
    let (waited, token, attempt) = waiter.await??;
    println!(
        "  waiting contender got it after {waited:?} (attempt {attempt}), fencing token {token}"
    );
    assert_eq!(state, LockGuardState::Released);

    println!("\n== RwLock: many readers or one writer, writer-preferring");
    let rw_options = LockOptions::new(lock_key.clone(), client.clone());
    let rwlock = RwLock::new(rw_options);
    let reader_one = rwlock.read().await?;
    let reader_two = rwlock.read().await?;
    println!(
        "  two readers at once          -> {:?}, {:?}",
        reader_one.get_state().await,
        reader_two.get_state().await
    );
    let writer_lock = Arc::clone(&rwlock);
    let writer =
        tokio::spawn(async move { writer_lock.write().await.map(|guard| guard.fencing_token()) });
    tokio::time::sleep(Duration::from_millis(100)).await;
    match rwlock.try_read().await {
        Err(error) => println!("  new reader while a writer waits -> error: {error}"),
        Ok(_) => println!("  new reader while a writer waits -> unexpectedly admitted"),
    }
    reader_one.release().await?;
    reader_two.release().await?;
    println!(
        "  writer acquired after the readers left, fencing token {}",
        writer.await??
    );

    println!("\n== Rate limiting (trypema)");
    let local = LocalRateLimiterProvider::builder()
        .window_size(WindowSize::seconds_or_panic(1))
        .bucket_size(BucketSize::milliseconds_or_panic(100))
        .build()?;
    let rate = RateLimit::per_second_or_panic(3.0);
    let decisions: Vec<&str> = (0..5)
        .map(|_| match local.absolute().inc("user-1", &rate, 1) {
            RateLimitDecision::Allowed => "allowed",
            RateLimitDecision::Rejected { .. } => "rejected",
            RateLimitDecision::Suppressed { .. } => "suppressed",
        })
        .collect();
    println!("  local, 3/s, five calls       -> {}", decisions.join(", "));
    let connection = distkit::redis::Client::open(url.as_str())?
        .get_connection_manager()
        .await?;
    let shared = RedisRateLimiterProvider::builder(connection)
        .prefix(RedisKey::try_from(prefix.as_str())?)
        .window_size(WindowSize::seconds_or_panic(1))
        .bucket_size(BucketSize::milliseconds_or_panic(100))
        .build()?;
    let tenant = RedisKey::try_from("tenant-1")?;
    let mut allowed = 0_u32;
    for _ in 0..5 {
        if matches!(
            shared.absolute().inc(&tenant, &rate, 1).await?,
            RateLimitDecision::Allowed
        ) {
            allowed = allowed.saturating_add(1);
        }
    }
    println!(
        "  redis, 3/s, five calls       -> {allowed} allowed (shared by every process on this Redis)"
    );

    strict.clear().await?;
    println!("\ntour finished");
    Ok(())
}
