//! Group commit of strict increments: concurrent `StrictCounter::inc` calls of one object are
//! coalesced into one script call. Each test tries to break one promise: every caller gets
//! its own exact result and its own error, nothing is applied twice, an acknowledged
//! increment is never lost, and a cancelled or failed caller never stalls the others.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use common::{bounded, client, fresh_key, key};
use distkit::counter::{CounterError, CounterTrait, StrictCounter};
use distkit::fred::prelude::*;
use distkit::{DistkitError, DistkitRedisKey};
use distkit_test_support::TestRedis;

async fn strict(redis: &TestRedis, prefix: &DistkitRedisKey) -> Arc<StrictCounter> {
    StrictCounter::new(common::counter_options(prefix.clone(), client(redis).await))
}

/// Runs `tasks` tasks that each make `calls` increments by 1, of keys picked in turn; returns
/// every answer with the index of its key.
#[expect(
    clippy::arithmetic_side_effects,
    clippy::indexing_slicing,
    clippy::unwrap_used,
    reason = "a test helper: indexes modulo the length, failures fail the test"
)]
async fn hammer(
    counter: &Arc<StrictCounter>,
    keys: &[DistkitRedisKey],
    tasks: usize,
    calls: usize,
) -> Vec<(usize, Result<i64, DistkitError>)> {
    let mut handles = Vec::new();
    for task in 0..tasks {
        let counter = Arc::clone(counter);
        let keys = keys.to_vec();
        handles.push(tokio::spawn(async move {
            let mut answers = Vec::with_capacity(calls);
            for call in 0..calls {
                let index = (task.wrapping_mul(7).wrapping_add(call)) % keys.len();
                answers.push((index, counter.inc(&keys[index], 1).await));
            }
            answers
        }));
    }
    let mut answers = Vec::new();
    for handle in handles {
        answers.extend(bounded(handle).await.unwrap());
    }
    answers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_increments_each_get_their_own_exact_result() {
    let redis = TestRedis::start();
    let counter = strict(&redis, &fresh_key()).await;
    let keys: Vec<DistkitRedisKey> = (0..4).map(|index| key(&format!("k{index}"))).collect();
    // Task t adds t + 1 each time, so an answer given to the wrong caller shows.
    let mut handles = Vec::new();
    for task in 0..64_i64 {
        let (counter, keys) = (Arc::clone(&counter), keys.clone());
        handles.push(tokio::spawn(async move {
            let mut answers = Vec::new();
            for call in 0..150_usize {
                let index = (usize::try_from(task).unwrap() * 7 + call) % keys.len();
                let value = counter.inc(&keys[index], task + 1).await.unwrap();
                answers.push((index, task + 1, value));
            }
            answers
        }));
    }
    let mut seen: BTreeMap<usize, Vec<(i64, i64)>> = BTreeMap::new();
    for handle in handles {
        for (index, delta, value) in bounded(handle).await.unwrap() {
            seen.entry(index).or_default().push((value, delta));
        }
    }
    // The increments of one key were applied one at a time: sorted by the value each caller
    // got, every value is the previous one plus that caller's own delta, starting from 0.
    for (index, mut answers) in seen {
        answers.sort_unstable();
        let mut previous = 0;
        for &(value, delta) in &answers {
            assert_eq!(
                value - delta,
                previous,
                "key k{index}: {value} answered for +{delta}"
            );
            previous = value;
        }
        assert_eq!(bounded(counter.get(&keys[index])).await.unwrap(), previous);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_increment_that_fails_in_a_group_fails_alone() {
    let redis = TestRedis::start();
    let prefix = fresh_key();
    let counter = strict(&redis, &prefix).await;
    let (full, text, fine) = (key("full"), key("text"), key("fine"));
    bounded(counter.set(&full, i64::MAX - 100)).await.unwrap();
    let values = common::counter_hash(&prefix, "text");
    assert_eq!(redis.cli(&["HSET", &values, "text", "not a number"]), "1");
    let keys = vec![full.clone(), text.clone(), fine.clone()];
    let answers = hammer(&counter, &keys, 48, 120).await;
    let (mut full_values, mut fine_values) = (Vec::new(), Vec::new());
    let (mut overflows, mut not_integers) = (0, 0);
    for (index, answer) in answers {
        match (index, answer) {
            (0, Ok(value)) => full_values.push(value),
            (0, Err(DistkitError::CounterError(CounterError::Overflow { key }))) => {
                assert_eq!(key, "full");
                overflows += 1;
            }
            (1, Err(DistkitError::CounterError(CounterError::NotAnInteger { key }))) => {
                assert_eq!(key, "text");
                not_integers += 1;
            }
            (2, Ok(value)) => fine_values.push(value),
            (index, answer) => panic!("key {index}: unexpected {answer:?}"),
        }
    }
    full_values.sort_unstable();
    assert_eq!(
        full_values,
        ((i64::MAX - 99)..=i64::MAX).collect::<Vec<_>>(),
        "exactly the 100 increments that fit, each once"
    );
    assert!(overflows > 0 && not_integers > 0);
    fine_values.sort_unstable();
    let fine_count = i64::try_from(fine_values.len()).unwrap();
    assert_eq!(fine_values, (1..=fine_count).collect::<Vec<_>>());
    assert_eq!(bounded(counter.get(&full)).await.unwrap(), i64::MAX);
    assert_eq!(bounded(counter.get(&fine)).await.unwrap(), fine_count);
    assert_eq!(redis.cli(&["HGET", &values, "text"]), "not a number");
}

/// Connections are killed while groups are in flight: an acknowledged increment is applied
/// exactly once, an `OutcomeUnknown` one at most once, and no other error applied anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn groups_cut_by_connection_kills_lose_nothing_acknowledged_and_apply_nothing_twice() {
    let redis = TestRedis::start();
    let prefix = fresh_key();
    // Commands time out fast and the client reconnects at once, so kills cost little time.
    let config = Config::from_url(redis.url()).unwrap();
    let impatient = Builder::from_config(config)
        .with_performance_config(|performance| {
            performance.default_command_timeout = Duration::from_millis(500);
        })
        .set_policy(ReconnectPolicy::new_constant(0, 20))
        .build()
        .unwrap();
    bounded(impatient.init()).await.unwrap();
    let counter = StrictCounter::new(common::counter_options(prefix.clone(), impatient));
    let k = key("k");
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let killer = {
        let stop = Arc::clone(&stop);
        let url = redis.url().to_owned();
        tokio::task::spawn_blocking(move || {
            let mut kills = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(40));
                let status = distkit_test_support::cli_command()
                    .args(["-u", &url, "CLIENT", "KILL", "TYPE", "normal"])
                    .output();
                kills += usize::from(status.is_ok());
            }
            kills
        })
    };
    let mut handles = Vec::new();
    for _ in 0..32 {
        let (counter, k) = (Arc::clone(&counter), k.clone());
        handles.push(tokio::spawn(async move {
            let (mut acknowledged, mut unknown, mut failed) = (0_i64, 0_i64, 0_i64);
            let mut values = Vec::new();
            for _ in 0..400 {
                match counter.inc(&k, 1).await {
                    Ok(value) => {
                        acknowledged += 1;
                        values.push(value);
                    }
                    Err(DistkitError::CounterError(CounterError::OutcomeUnknown { .. })) => {
                        unknown += 1;
                    }
                    Err(error) => {
                        if failed == 0 {
                            println!("failed: {error:?}");
                        }
                        failed += 1;
                    }
                }
            }
            (acknowledged, unknown, failed, values)
        }));
    }
    let (mut acknowledged, mut unknown, mut failed) = (0, 0, 0);
    let mut values = Vec::new();
    for handle in handles {
        let (a, u, f, v) = bounded(handle).await.unwrap();
        acknowledged += a;
        unknown += u;
        failed += f;
        values.extend(v);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let kills = bounded(killer).await.unwrap();
    let stored = bounded(strict(&redis, &prefix).await.get(&k))
        .await
        .unwrap();
    println!(
        "{kills} kills: {acknowledged} acknowledged, {unknown} unknown, {failed} failed, {stored} stored"
    );
    assert!(
        (acknowledged..=acknowledged + unknown).contains(&stored),
        "{stored} stored, {acknowledged} acknowledged, {unknown} unknown"
    );
    // Each acknowledged +1 returned its own new value: no value twice.
    values.sort_unstable();
    let before = values.len();
    values.dedup();
    assert_eq!(values.len(), before, "two callers got the same new value");
    assert!(kills > 0);
}

/// Callers cut off while queued or in flight never stall the ones after them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancelled_callers_never_stall_the_group_commit() {
    let redis = TestRedis::start();
    let prefix = fresh_key();
    let counter = strict(&redis, &prefix).await;
    let k = key("k");
    let mut handles = Vec::new();
    for task in 0..32_u64 {
        let (counter, k) = (Arc::clone(&counter), k.clone());
        handles.push(tokio::spawn(async move {
            let (mut acknowledged, mut cut) = (0_i64, 0_i64);
            for call in 0..200_u64 {
                // Every third call gets a deadline of 0–99 µs: cut off queued, in flight or
                // not at all.
                let patience = if (task + call) % 3 == 0 {
                    Duration::from_micros((task * 31 + call * 17) % 100)
                } else {
                    Duration::from_secs(20)
                };
                match tokio::time::timeout(patience, counter.inc(&k, 1)).await {
                    Ok(answer) => {
                        answer.unwrap();
                        acknowledged += 1;
                    }
                    Err(_) => cut += 1,
                }
            }
            (acknowledged, cut)
        }));
    }
    let (mut acknowledged, mut cut) = (0, 0);
    for handle in handles {
        let (a, c) = bounded(handle).await.unwrap();
        acknowledged += a;
        cut += c;
    }
    // Still served at once, alone and in groups.
    let after = bounded(counter.inc(&k, 1)).await.unwrap();
    let stored = bounded(counter.get(&k)).await.unwrap();
    assert_eq!(after, stored);
    assert!(
        (acknowledged + 1..=acknowledged + 1 + cut).contains(&stored),
        "{stored} stored, {acknowledged} acknowledged, {cut} cut off"
    );
    assert!(cut > 0);
}
