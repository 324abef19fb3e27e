//! The Lua script runner and `connect` against a private Redis.

use std::time::Duration;

use distkit_core::DistkitError;
use distkit_core::connect;
use distkit_core::fred::types::Value;
use distkit_core::script::{CallPolicy, LuaScript, error_code, error_message};
use distkit_test_support::{TestRedis, unique_prefix};

const LIMIT: Duration = Duration::from_secs(10);

static ECHO_SUM: LuaScript = LuaScript::new(
    "test_echo_sum",
    "return redis.call('INCRBY', KEYS[1], ARGV[1])",
);
static FAILING: LuaScript = LuaScript::new(
    "test_failing",
    "return redis.error_reply('DISTKIT_TEST something went wrong')",
);

#[tokio::test]
async fn script_runs_and_reloads_after_the_server_forgets_it() {
    let redis = TestRedis::start();
    let client = tokio::time::timeout(LIMIT, connect(redis.url()))
        .await
        .unwrap()
        .unwrap();
    let key = format!("{{{}}}:sum", unique_prefix());

    let first = tokio::time::timeout(
        LIMIT,
        ECHO_SUM.run(&client, &[&key], vec![Value::from(5)], CallPolicy::ONCE),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(first, Value::Integer(5));

    assert_eq!(redis.cli(&["SCRIPT", "FLUSH"]), "OK");
    let second = tokio::time::timeout(
        LIMIT,
        ECHO_SUM.run(&client, &[&key], vec![Value::from(2)], CallPolicy::RETRY),
    )
    .await
    .unwrap()
    .unwrap();
    // Applied exactly once: the NOSCRIPT reply ran nothing, the EVAL fallback ran it once.
    assert_eq!(second, Value::Integer(7));
    assert_eq!(redis.cli(&["GET", &key]), "7");
    // The fallback cached the script again.
    assert_eq!(
        redis.cli(&["SCRIPT", "EXISTS", &ECHO_SUM.sha1().as_str().unwrap()]),
        "1"
    );
}

#[tokio::test]
async fn script_error_reply_surfaces_with_its_code_and_message() {
    let redis = TestRedis::start();
    let client = tokio::time::timeout(LIMIT, connect(redis.url()))
        .await
        .unwrap()
        .unwrap();
    let key = format!("{{{}}}:x", unique_prefix());
    let error = tokio::time::timeout(
        LIMIT,
        FAILING.run(&client, &[&key], vec![], CallPolicy::ONCE),
    )
    .await
    .unwrap()
    .unwrap_err();
    assert_eq!(error_code(&error), Some("DISTKIT_TEST"));
    assert_eq!(error_message(&error), "something went wrong");
    let wrapped: DistkitError = error.into();
    assert!(matches!(wrapped, DistkitError::RedisError(_)));
}

#[tokio::test]
async fn connect_to_an_unreachable_redis_fails_within_its_timeout() {
    // Port 1 on loopback: nothing listens there. The outer timeout fails the test if
    // connect's own timeout does not end the attempt.
    let result = tokio::time::timeout(Duration::from_secs(15), connect("redis://127.0.0.1:1"))
        .await
        .unwrap();
    assert!(
        matches!(result, Err(DistkitError::RedisError(_))),
        "{result:?}"
    );
}

#[tokio::test]
async fn malformed_urls_are_clear_errors() {
    for url in [
        "",
        "not a url",
        "http://127.0.0.1:6379",
        "redis://127.0.0.1:notaport",
    ] {
        let result = tokio::time::timeout(LIMIT, connect(url)).await.unwrap();
        assert!(
            matches!(result, Err(DistkitError::RedisError(_))),
            "{url}: {result:?}"
        );
    }
}

#[cfg(not(feature = "tls"))]
#[tokio::test]
async fn rediss_without_tls_compiled_in_is_refused_not_downgraded() {
    let error = connect("rediss://127.0.0.1:6379").await.unwrap_err();
    assert!(error.to_string().contains("TLS"), "{error}");
}
