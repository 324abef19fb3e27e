//! Two instances share a total; one dies, and the total follows.
//! `cargo run -p distkit --features instance-aware-counter --example instance_aware`.
//! Connects to the Redis named by `REDIS_URL` (default `redis://127.0.0.1:6379`).

use std::time::{Duration, Instant};

use distkit::DistkitRedisKey;
use distkit::icounter::{
    InstanceAwareCounterTrait, StrictInstanceAwareCounter, StrictInstanceAwareCounterOptions,
};

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
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = redis_url();
    let prefix = DistkitRedisKey::try_from(format!("instances-{}", unique_prefix()))?;
    let connections = DistkitRedisKey::try_from("open-connections")?;

    let instance = |client| {
        let mut options = StrictInstanceAwareCounterOptions::new(prefix.clone(), client);
        // Declared dead after one second without a heartbeat.
        options.dead_instance_threshold = Duration::from_secs(1);
        StrictInstanceAwareCounter::new(options)
    };
    let api_one = instance(distkit::connect(&url).await?);
    let api_two = instance(distkit::connect(&url).await?);

    let (total, mine) = api_one.inc(&connections, 12).await?;
    println!("instance {} holds {mine} of {total}", api_one.instance_id());
    let (total, mine) = api_two.inc(&connections, 30).await?;
    println!("instance {} holds {mine} of {total}", api_two.instance_id());

    println!(
        "instance {} dies without cleaning up…",
        api_two.instance_id()
    );
    drop(api_two);
    let died = Instant::now();
    loop {
        let (total, mine) = api_one.get(&connections).await?;
        if total == mine {
            println!(
                "after {:.1} s the total is {total}: only the live instance's slice",
                died.elapsed().as_secs_f64()
            );
            break;
        }
        if died.elapsed() > Duration::from_secs(10) {
            return Err("the dead instance's slice never left the total".into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    api_one.clear().await?;
    Ok(())
}
