use std::time::Duration;

use fred::clients::Client;
use fred::error::{Error as FredError, ErrorKind};
use fred::interfaces::ClientLike;
use fred::types::Builder;
use fred::types::config::{Config, ReconnectPolicy};

use crate::DistkitError;

/// How long [`connect`] waits for the first connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The default bound on one command, unless a primitive sets a tighter one.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// Builds, configures and connects a [`fred`] client for `url`.
///
/// Accepted URLs are those of [`fred::types::config::Config::from_url`]: `redis://`,
/// `rediss://` (only when distkit is built with its `tls` feature), `redis-cluster://` and
/// `redis-sentinel://`.
///
/// The client reconnects forever with exponential backoff (100 ms up to 2 s), gives up a
/// connection attempt after 5 s, and bounds every command by 10 s. Commands in flight when a
/// connection drops are retried by fred; distkit's own non-idempotent scripts opt out of that
/// per command, so they are never applied twice.
///
/// # Errors
///
/// [`DistkitError::RedisError`] when the URL is malformed, names `rediss://` without TLS
/// compiled in, or when no connection could be made within 5 s.
pub async fn connect(url: &str) -> Result<Client, DistkitError> {
    if url.starts_with("rediss") && !cfg!(feature = "tls") {
        return Err(FredError::new(
            ErrorKind::Config,
            "rediss:// needs TLS, which this build of distkit does not include (enable the `tls` feature)",
        )
        .into());
    }
    let config = Config::from_url(url)?;
    let client = Builder::from_config(config)
        .with_connection_config(|connection| {
            connection.connection_timeout = CONNECT_TIMEOUT;
            connection.internal_command_timeout = CONNECT_TIMEOUT;
        })
        .with_performance_config(|performance| {
            performance.default_command_timeout = COMMAND_TIMEOUT;
        })
        .set_policy(ReconnectPolicy::new_exponential(0, 100, 2_000, 2))
        .build()?;
    match tokio::time::timeout(CONNECT_TIMEOUT, client.init()).await {
        Ok(Ok(_connection_task)) => Ok(client),
        Ok(Err(error)) => Err(error.into()),
        Err(_elapsed) => {
            // Stop the reconnect loop of the half-made client before reporting.
            let _ = client.quit().await;
            Err(FredError::new(
                ErrorKind::Timeout,
                format!("no connection to redis within {CONNECT_TIMEOUT:?}"),
            )
            .into())
        }
    }
}
