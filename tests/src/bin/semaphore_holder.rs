//! A process that takes permits of a semaphore and holds them until it is killed: the
//! crashed holder (or, while it still waits, the crashed waiter) of the semaphore tests.
//! Usage: `semaphore_holder <redis url> <key> <permits> <n> <ttl ms>`; prints `acquired
//! <fencing token>` once it holds `n` permits.

use std::io::Write;
use std::time::Duration;

use distkit::DistkitRedisKey;
use distkit::semaphore::{Semaphore, SemaphoreOptions};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, key, permits, n, ttl] = args.as_slice() else {
        return Err("usage: semaphore_holder <redis url> <key> <permits> <n> <ttl ms>".into());
    };
    let client = distkit::connect(url).await?;
    let options = SemaphoreOptions::builder(
        DistkitRedisKey::try_from(key.as_str())?,
        client,
        permits.parse()?,
    )
    .ttl(Duration::from_millis(ttl.parse()?))
    .build();
    let semaphore = Semaphore::new(options);
    let permit = semaphore.acquire_many(n.parse()?).await?;
    let mut stdout = std::io::stdout();
    writeln!(stdout, "acquired {}", permit.fencing_token())?;
    stdout.flush()?;
    // Hold the permits (the lease renews in the background) until the process is killed.
    loop {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
}
