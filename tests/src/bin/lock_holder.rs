//! A process that takes a lock and holds it until it is killed: the crashed holder of the
//! fault tests. Usage: `lock_holder <redis url> <lock key> <ttl ms>`; prints `acquired` once
//! it holds the lock.

use std::io::Write;
use std::time::Duration;

use distkit::DistkitRedisKey;
use distkit::lock::{LockOptions, Mutex};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(url), Some(key), Some(ttl)) = (args.next(), args.next(), args.next()) else {
        return Err("usage: lock_holder <redis url> <lock key> <ttl ms>".into());
    };
    let client = distkit::connect(&url).await?;
    let options = LockOptions::builder(DistkitRedisKey::try_from(key)?, client)
        .ttl(Duration::from_millis(ttl.parse()?))
        .build();
    let mutex = Mutex::new(options);
    let guard = mutex.lock().await?;
    let mut stdout = std::io::stdout();
    writeln!(stdout, "acquired {}", guard.fencing_token())?;
    stdout.flush()?;
    // Hold the lock (the lease renews in the background) until the process is killed.
    loop {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
}
