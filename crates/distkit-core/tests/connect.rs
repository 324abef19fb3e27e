//! `connect` and `ConnectOptions` against real sockets: a private Redis, a port that accepts
//! and never answers, a closed port, and URLs that must be refused.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a failure is a failing test

use std::net::{Ipv4Addr, TcpListener};
use std::time::{Duration, Instant};

use distkit_core::fred::interfaces::{ClientLike, KeysInterface};
use distkit_core::{ConnectOptions, DistkitError, ReconnectPolicy, connect};
use distkit_test_support::TestRedis;

/// Outer bound of every await: a hang fails the test instead of blocking the run.
const LIMIT: Duration = Duration::from_secs(20);
/// Allowed lateness of a bounded connect: scheduling noise on a loaded two-core machine.
const MARGIN: Duration = Duration::from_millis(1_500);

async fn bounded<F: std::future::Future>(future: F) -> F::Output {
    tokio::time::timeout(LIMIT, future)
        .await
        .expect("the call did not return within the test's bound")
}

/// A port that accepts TCP connections and never says a word.
fn silent_port() -> (TcpListener, std::thread::JoinHandle<()>, u16) {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepting = listener.try_clone().unwrap();
    let thread = std::thread::spawn(move || {
        let mut held = Vec::new();
        // Keep every accepted socket open until the listener is dropped (accept then fails).
        while let Ok((stream, _)) = accepting.accept() {
            held.push(stream);
            if held.len() > 64 {
                break;
            }
        }
    });
    (listener, thread, port)
}

/// A port nothing listens on: bound, then released.
fn closed_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    listener.local_addr().unwrap().port()
}

#[tokio::test]
async fn options_connect_to_a_running_server_and_the_client_works() {
    let redis = TestRedis::start_standalone();
    let client = bounded(
        ConnectOptions::new(redis.url())
            .connect_timeout(Duration::from_secs(2))
            .command_timeout(Duration::from_secs(2))
            .reconnect_policy(ReconnectPolicy::constant(Duration::from_millis(50)))
            .connect(),
    )
    .await
    .unwrap();
    let key = format!("{}:connect", distkit_test_support::unique_prefix());
    let value: i64 = bounded(client.incr(&key)).await.unwrap();
    assert_eq!(value, 1);
    let _: i64 = bounded(client.del(&key)).await.unwrap();
    bounded(client.quit()).await.unwrap();
}

#[tokio::test]
async fn a_silent_port_fails_within_the_connect_timeout_naming_the_host() {
    let (_listener, _thread, port) = silent_port();
    let timeout = Duration::from_millis(400);
    let started = Instant::now();
    let result = bounded(
        ConnectOptions::new(format!("redis://user:hunter2@127.0.0.1:{port}"))
            .connect_timeout(timeout)
            .connect(),
    )
    .await;
    let elapsed = started.elapsed();
    let error = result.unwrap_err();
    assert!(elapsed < timeout + MARGIN, "took {elapsed:?}: {error}");
    let text = error.to_string();
    assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
    assert!(text.contains("400ms"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
    assert!(matches!(error, DistkitError::RedisError(_)), "{error:?}");
}

#[tokio::test]
async fn the_default_connect_gives_up_on_a_silent_port_after_five_seconds_not_fifteen() {
    let (_listener, _thread, port) = silent_port();
    let started = Instant::now();
    let error = bounded(connect(&format!("redis://127.0.0.1:{port}")))
        .await
        .unwrap_err();
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(4_900) && elapsed < Duration::from_secs(5) + MARGIN,
        "took {elapsed:?}: {error}"
    );
    assert!(error.to_string().contains("5s"), "{error}");
}

#[tokio::test]
async fn a_closed_port_fails_at_once_naming_the_host() {
    let port = closed_port();
    let started = Instant::now();
    let error = bounded(
        ConnectOptions::new(format!("redis://127.0.0.1:{port}"))
            .connect_timeout(Duration::from_secs(3))
            .connect(),
    )
    .await
    .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(3), "{error}");
    let text = error.to_string();
    assert!(
        text.contains(&format!("cannot connect to redis at 127.0.0.1:{port}")),
        "{text}"
    );
}

#[tokio::test]
async fn an_unresolvable_host_fails_within_the_bound_naming_the_host() {
    let timeout = Duration::from_secs(2);
    let started = Instant::now();
    let error = bounded(
        ConnectOptions::new("redis://distkit-no-such-host.invalid:6379")
            .connect_timeout(timeout)
            .connect(),
    )
    .await
    .unwrap_err();
    assert!(started.elapsed() < timeout + MARGIN, "{error}");
    assert!(
        error
            .to_string()
            .contains("distkit-no-such-host.invalid:6379"),
        "{error}"
    );
}

#[tokio::test]
async fn an_http_url_is_refused_even_when_a_redis_server_listens_there() {
    let redis = TestRedis::start_standalone();
    let url = format!("http://127.0.0.1:{}", redis.port());
    let error = bounded(connect(&url)).await.unwrap_err();
    assert!(
        error
            .to_string()
            .contains("unsupported url scheme \"http\""),
        "{error}"
    );
    let error = ConnectOptions::new(url).validate().unwrap_err();
    assert!(error.to_string().contains("redis://"), "{error}");
}

#[tokio::test]
async fn malformed_urls_are_refused_with_one_clear_error_each() {
    for url in [
        "",
        "127.0.0.1:6379",
        "redis://127.0.0.1:notaport",
        "redis://",
    ] {
        let error = bounded(connect(url)).await.unwrap_err();
        assert!(
            error.to_string().contains("invalid redis url"),
            "{url}: {error}"
        );
    }
}

#[tokio::test]
async fn the_command_timeout_bounds_each_command() {
    let redis = TestRedis::start_standalone();
    let client = bounded(
        ConnectOptions::new(redis.url())
            .command_timeout(Duration::from_millis(300))
            .connect(),
    )
    .await
    .unwrap();
    redis.cli(&["CLIENT", "PAUSE", "3000", "ALL"]);
    let started = Instant::now();
    let result: Result<Option<String>, _> = bounded(client.get("distkit-connect-test")).await;
    let elapsed = started.elapsed();
    redis.cli(&["CLIENT", "UNPAUSE"]);
    assert!(result.is_err(), "{result:?}");
    assert!(elapsed < Duration::from_millis(300) + MARGIN, "{elapsed:?}");
}

#[tokio::test]
async fn the_eviction_policy_is_read_so_that_anything_but_noeviction_can_be_warned_about() {
    let redis = TestRedis::start_standalone();
    let client = bounded(connect(redis.url())).await.unwrap();
    let policy = bounded(distkit_core::eviction_policy(&client))
        .await
        .unwrap();
    assert_eq!(policy, distkit_core::REQUIRED_EVICTION_POLICY);
    if redis.pid().is_some() {
        // Only on a private server: never reconfigure somebody's Redis.
        redis.cli(&["CONFIG", "SET", "maxmemory-policy", "allkeys-lru"]);
        let policy = bounded(distkit_core::eviction_policy(&client))
            .await
            .unwrap();
        assert_eq!(policy, "allkeys-lru");
    }
}

/// The WARN events of distkit's connect target, as text (message and fields).
#[derive(Clone, Default)]
struct ConnectWarnings(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

struct EventText<'a>(&'a mut String);

impl tracing::field::Visit for EventText<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!("{}={value:?} ", field.name()));
    }
}

impl tracing::Subscriber for ConnectWarnings {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let metadata = event.metadata();
        if *metadata.level() == tracing::Level::WARN && metadata.target() == "distkit::connect" {
            let mut text = String::new();
            event.record(&mut EventText(&mut text));
            self.0.lock().unwrap().push(text);
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

#[test]
fn a_rotated_password_is_logged_at_warn_when_the_client_reconnects() {
    let redis = TestRedis::start_standalone();
    let warnings = ConnectWarnings::default();
    // Everything on this thread, so the scoped subscriber sees the client's tasks too.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    tracing::subscriber::with_default(warnings.clone(), || {
        runtime.block_on(async {
            let user = distkit_test_support::unique_prefix();
            assert_eq!(
                redis.cli(&[
                    "ACL",
                    "SETUSER",
                    &user,
                    "on",
                    ">first-s3cret",
                    "+@all",
                    "~*",
                    "&*"
                ]),
                "OK"
            );
            let url = format!("redis://{user}:first-s3cret@127.0.0.1:{}", redis.port());
            let client = bounded(
                ConnectOptions::new(url)
                    .reconnect_policy(ReconnectPolicy::constant(Duration::from_millis(100)))
                    .connect(),
            )
            .await
            .unwrap();
            let _: Option<String> = bounded(client.get("distkit-connect-test")).await.unwrap();
            // The password is rotated and the connection dropped: every reconnection is refused.
            redis.cli(&["ACL", "SETUSER", &user, "resetpass", ">second-s3cret"]);
            redis.cli(&["CLIENT", "KILL", "USER", &user]);
            let started = Instant::now();
            while warnings.0.lock().unwrap().is_empty() {
                assert!(
                    started.elapsed() < Duration::from_secs(10),
                    "no warning about the refused password"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let _ = tokio::time::timeout(Duration::from_secs(1), client.quit()).await;
        });
    });
    let warnings = warnings.0.lock().unwrap();
    // Rate-limited: not one per reconnection attempt (every 100 ms).
    assert!(warnings.len() <= 2, "{warnings:?}");
    for warning in warnings.iter() {
        assert!(!warning.contains("s3cret"), "{warning}");
        assert!(warning.contains("127.0.0.1"), "names the server: {warning}");
    }
}

/// The number of client connections `redis` has, not counting the `redis-cli` asking.
fn connected_clients(redis: &TestRedis) -> usize {
    redis
        .cli(&["CLIENT", "LIST"])
        .lines()
        .filter(|line| line.contains("addr=") && !line.contains("cmd=client|list"))
        .count()
}

#[tokio::test]
async fn a_connect_dropped_before_the_server_answered_leaves_no_connection_open() {
    let redis = TestRedis::start_standalone();
    // Replies arrive 400 ms late: the connect is dropped first, and its connection completes
    // after the drop.
    let proxy = distkit_test_support::Proxy::start(redis.port());
    proxy.delay(
        distkit_test_support::Direction::Downstream,
        Duration::from_millis(400),
    );
    let before = connected_clients(&redis);
    let dropped = tokio::time::timeout(
        Duration::from_millis(50),
        ConnectOptions::new(proxy.url())
            .connect_timeout(Duration::from_secs(5))
            .connect(),
    )
    .await;
    assert!(dropped.is_err(), "the connect answered within 50 ms");
    // Connected through the proxy at some point (the handshake completes after the drop) and
    // closed again: the count goes back to what it was.
    let started = Instant::now();
    let mut settled_since = None;
    loop {
        let now = connected_clients(&redis);
        if now == before {
            let since = *settled_since.get_or_insert_with(Instant::now);
            // Stable well past the handshake's completion: no connection lives on.
            if since.elapsed() > Duration::from_secs(2)
                && started.elapsed() > Duration::from_secs(3)
            {
                break;
            }
        } else {
            settled_since = None;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "{now} client connections, {before} before the dropped connect: it left one open"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
