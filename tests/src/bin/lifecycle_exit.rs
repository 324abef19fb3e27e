//! A service that does a little work and returns from `main`: the graceful exits of the
//! lifecycle tests. Usage: `lifecycle_exit <redis url> <mode> <prefix>`, where mode is one of
//! `lax-counter`, `lax-icounter`, `lax-gcra`, `mutex-guard`, `read-guard`; it prints `done`
//! just before `main` returns.
//!
//! Every object is dropped (not closed) at the end of `main`, on the multi-thread runtime
//! `#[tokio::main]` builds: what it acknowledged must be in Redis when the process is gone.
//! The lax objects are built with a 10 s lag, so nothing is delivered before the drop.

use std::io::Write;
use std::time::Duration;

use distkit::DistkitRedisKey;
use distkit::counter::{CounterOptions, LaxCounter};
use distkit::icounter::{LaxInstanceAwareCounter, LaxInstanceAwareCounterOptions};
use distkit::lock::{LockOptions, Mutex, RwLock};
use distkit::ratelimit::{GcraRate, LaxGcraLimiter, LaxGcraOptions};

const LAG: Duration = Duration::from_secs(10);

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(url), Some(mode), Some(prefix)) = (args.next(), args.next(), args.next()) else {
        return Err("usage: lifecycle_exit <redis url> <mode> <prefix>".into());
    };
    let client = distkit::connect(&url).await?;
    let prefix = DistkitRedisKey::try_from(prefix)?;
    let key = DistkitRedisKey::try_from("k")?;
    match mode.as_str() {
        "lax-counter" => {
            let mut options = CounterOptions::new(prefix, client);
            options.allowed_lag = LAG;
            let counter = LaxCounter::new(options);
            counter.inc(&key, 1).await?;
            counter.inc(&key, 2).await?;
            drop(counter);
        }
        "lax-icounter" => {
            let options = LaxInstanceAwareCounterOptions::builder(prefix, client)
                .allowed_lag(LAG)
                .flush_interval(LAG)
                .build();
            let counter = LaxInstanceAwareCounter::new(options);
            counter.inc(&key, 1).await?;
            counter.inc(&key, 2).await?;
            drop(counter);
        }
        "lax-gcra" => {
            let options = LaxGcraOptions::builder(prefix, client)
                .sync_interval(LAG)
                .build();
            let limiter = LaxGcraLimiter::new(options)?;
            let rate = GcraRate::new(100, Duration::from_secs(3600), 100)?;
            // The first call warms the key (charged in Redis at once), the second is
            // admitted in memory only.
            limiter.check(&key, &rate, 1).await?;
            limiter.check(&key, &rate, 4).await?;
            drop(limiter);
        }
        "mutex-guard" => {
            let options = LockOptions::builder(prefix, client)
                .ttl(Duration::from_secs(30))
                .build();
            let mutex = Mutex::new(options);
            let guard = mutex.lock().await?;
            drop(guard);
        }
        "read-guard" => {
            let options = LockOptions::builder(prefix, client)
                .ttl(Duration::from_secs(30))
                .build();
            let rwlock = RwLock::new(options);
            let guard = rwlock.read().await?;
            drop(guard);
        }
        other => return Err(format!("unknown mode {other}").into()),
    }
    let mut stdout = std::io::stdout();
    writeln!(stdout, "done")?;
    stdout.flush()?;
    Ok(())
}
