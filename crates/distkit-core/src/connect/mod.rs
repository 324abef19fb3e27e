//! Connecting to Redis: [`connect`] and [`ConnectOptions`].

mod options;
#[cfg(feature = "tls")]
mod tls;

use fred::clients::Client;
use fred::error::{Error as FredError, ErrorKind};
use fred::interfaces::ClientLike;
use fred::types::Builder;
use fred::types::config::Config;

pub use options::{ConnectOptions, ReconnectPolicy};

use crate::DistkitError;

/// Schemes of plain TCP connections (fred's, without unix sockets).
const PLAIN_SCHEMES: [&str; 6] = [
    "redis",
    "redis-cluster",
    "redis-sentinel",
    "valkey",
    "valkey-cluster",
    "valkey-sentinel",
];
/// Schemes of TLS connections.
const TLS_SCHEMES: [&str; 6] = [
    "rediss",
    "rediss-cluster",
    "rediss-sentinel",
    "valkeys",
    "valkeys-cluster",
    "valkeys-sentinel",
];

/// Builds, configures and connects a Redis client for `url`, with the default
/// [`ConnectOptions`].
///
/// Accepted URLs: `redis://host:port`, `rediss://` (TLS, only with distkit's `tls` feature),
/// `redis-cluster://` and `redis-sentinel://` (see [`ConnectOptions`] for the details).
/// The returned client is what every distkit primitive takes; clone it freely.
///
/// The client reconnects forever with exponential backoff (100 ms up to 2 s), gives up the
/// first connection after 5 s, and bounds every command by 10 s. Commands in flight when a
/// connection drops are retried by the client; distkit's own non-idempotent scripts opt out
/// of that per command, so they are never applied twice.
///
/// The client keeps the credentials of the URL for every reconnection. When the server
/// refuses them (a rotated or revoked password), calls fail with routing errors or
/// timeouts while the client keeps retrying, and distkit logs it at WARN (target
/// `distkit::connect`, at most once a minute). To rotate a password without an outage, give
/// the ACL user both passwords (`ACL SETUSER name >new`), connect new clients with the new
/// one, then remove the old one (`ACL SETUSER name <old`).
///
/// In a cluster the client follows no `MOVED`/`ASK` redirection itself: fred 10.1 mishandles
/// `ASK` (a slot being migrated) so badly that the client stops working for good. A
/// redirected command fails instead, and distkit sends its own calls again until the slot
/// has moved (see [`retry_redirected`](crate::script::retry_redirected)); commands you send
/// yourself through the client get the redirection error (`Too many redirections`). If you
/// build a cluster client yourself for distkit, set
/// `ConnectionConfig::max_redirections` to 0 for the same reason.
///
/// ```no_run
/// # use distkit_core as distkit; // the facade crate, as users name it
/// # async fn example() -> Result<(), distkit::DistkitError> {
/// let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
/// let client = distkit::connect(&url).await?;
/// # let _ = client;
/// # Ok(())
/// # }
/// ```
///
/// # Errors
///
/// [`DistkitError::RedisError`], with a message naming the host (never the credentials),
/// when the URL is malformed, its scheme is not one of the Redis ones, it names `rediss://`
/// without TLS compiled in, the host cannot be reached, or no connection was made within 5 s.
///
/// # Cancel safety
///
/// As [`ConnectOptions::connect`]: dropping the future leaves no connection behind.
pub async fn connect(url: &str) -> Result<Client, DistkitError> {
    ConnectOptions::new(url).connect().await
}

impl ConnectOptions {
    /// Builds, configures and connects a Redis client with these options.
    ///
    /// Returns within the connect timeout (plus scheduling noise) whatever the server does:
    /// refuses, never answers, or answers slowly.
    ///
    /// # Errors
    ///
    /// [`DistkitError::RedisError`], with a message naming the host (never the
    /// credentials): of kind `Config` or `Url` for the errors [`validate`](Self::validate)
    /// reports, `Timeout` when no connection was made within the connect timeout, and the
    /// client's own kind (e.g. `IO`, `Auth`) when the connection failed earlier.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future while it connects leaves nothing behind: the client it was
    /// building is quit from a task of its own (on the caller's runtime), so a connection
    /// that completes after the drop is closed instead of staying open with no handle.
    pub async fn connect(self) -> Result<Client, DistkitError> {
        let (config, hosts) = parse(&self)?;
        let clustered = config.server.is_clustered();
        let mut builder = Builder::from_config(config);
        builder
            .with_connection_config(|connection| {
                connection.connection_timeout = self.connect_timeout;
                connection.internal_command_timeout = self.connect_timeout;
                if clustered {
                    // See `CLUSTER_REDIRECTIONS`.
                    connection.max_redirections = CLUSTER_REDIRECTIONS;
                }
            })
            .with_performance_config(|performance| {
                performance.default_command_timeout = self.command_timeout;
            });
        if let Some(policy) = self.reconnect_policy.to_fred() {
            builder.set_policy(policy);
        }
        let client = builder.build().map_err(|error| {
            with_context(&error, &format!("cannot connect to redis at {hosts}"))
        })?;
        // Should this future be dropped while the client connects, the connection made
        // afterwards would live on with no handle to use or close it: the guard quits it.
        let connecting = StopUnlessConnected(Some(client.clone()));
        let initialized = tokio::time::timeout(self.connect_timeout, client.init()).await;
        connecting.disarm();
        match initialized {
            Ok(Ok(_connection_task)) => {
                warn_about_eviction_in_background(&client);
                warn_about_refused_authentication(&client, &hosts);
                Ok(client)
            }
            Ok(Err(error)) => Err(with_context(
                &error,
                &format!("cannot connect to redis at {hosts}"),
            )),
            Err(_elapsed) => {
                stop_in_background(client);
                Err(FredError::new(
                    ErrorKind::Timeout,
                    format!(
                        "cannot connect to redis at {hosts}: no connection within {:?}",
                        self.connect_timeout
                    ),
                )
                .into())
            }
        }
    }
}

/// How many `MOVED`/`ASK` redirections the client follows per command in a cluster: none.
///
/// fred 10.1 answers an `ASK` redirection (a slot being migrated between masters) by sending
/// `ASKING` to the new master and the command again to the *old* one, which redirects it
/// again; when the command's attempts run out the client's routing task ends for good, and
/// every later command of the client times out. With no redirection allowed fred fails the
/// command instead (after refreshing its slot map on `MOVED`), and distkit sends it again
/// itself: a redirected command was not run by the node that redirected it, so sending it
/// again applies it at most once (see [`crate::script::retry_redirected`]).
const CLUSTER_REDIRECTIONS: u32 = 0;

/// The eviction policy distkit needs: with any other, Redis under `maxmemory` may evict a
/// counter's values, a lax counter's delivery record or a lock's lease.
pub const REQUIRED_EVICTION_POLICY: &str = "noeviction";

/// The server's `maxmemory-policy` (`CONFIG GET`; in a cluster, of the node the client picks).
///
/// distkit needs [`REQUIRED_EVICTION_POLICY`]: [`ConnectOptions::connect`] checks it in the
/// background after connecting and logs a `WARN` (target `distkit::connect`) otherwise.
///
/// # Errors
///
/// [`DistkitError::RedisError`] when the command fails, e.g. on a managed Redis that does
/// not allow `CONFIG`.
///
/// # Cancel safety
///
/// A read (`CONFIG GET`): dropping the future changes nothing.
pub async fn eviction_policy(client: &Client) -> Result<String, DistkitError> {
    use fred::types::{ClusterHash, CustomCommand};
    let config = CustomCommand::new_static("CONFIG", ClusterHash::Random, false);
    let reply: Vec<String> = client
        .custom(config, vec!["GET", "maxmemory-policy"])
        .await?;
    Ok(reply.into_iter().nth(1).unwrap_or_default())
}

/// Checks the eviction policy without delaying the caller; a server that refuses `CONFIG`
/// is not warned about.
fn warn_about_eviction_in_background(client: &Client) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let client = client.clone();
    drop(runtime.spawn(async move {
        match eviction_policy(&client).await {
            Ok(policy) if !policy.is_empty() && policy != REQUIRED_EVICTION_POLICY => {
                tracing::warn!(
                    target: "distkit::connect",
                    %policy,
                    "maxmemory-policy is not noeviction: under memory pressure Redis may evict \
                     counter values, lax delivery records or lock leases; set \
                     maxmemory-policy noeviction"
                );
            }
            Ok(_) => {}
            Err(error) => {
                tracing::debug!(target: "distkit::core", %error, "cannot read maxmemory-policy");
            }
        }
    }));
}

/// How often a client that keeps failing to authenticate logs it at WARN (every failure is
/// logged at DEBUG).
const AUTH_WARNING_PERIOD: std::time::Duration = std::time::Duration::from_secs(60);

/// Logs at WARN (target `distkit::connect`) when the server refuses the client's
/// credentials on a reconnection (a rotated or revoked password: fred then retries for
/// ever, and calls fail with routing errors or timeouts), at most once per
/// [`AUTH_WARNING_PERIOD`]. The listener holds only the client's error events: it ends with
/// the client.
fn warn_about_refused_authentication(client: &Client, hosts: &str) {
    use fred::interfaces::EventInterface;
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let mut errors = client.error_rx();
    let hosts = hosts.to_owned();
    drop(runtime.spawn(async move {
        use tokio::sync::broadcast::error::RecvError;
        let mut last_warning: Option<std::time::Instant> = None;
        loop {
            let (error, server) = match errors.recv().await {
                Ok(event) => event,
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => return,
            };
            if !is_refused_authentication(&error) {
                continue;
            }
            // fred names the server only sometimes: else the URL's hosts.
            let server = server.map_or_else(
                || hosts.clone(),
                |server| shorten(&server.to_string(), MAX_HOST_SHOWN).into_owned(),
            );
            let details = shorten(error.details(), MAX_DETAILS_SHOWN);
            if last_warning.is_some_and(|at| at.elapsed() < AUTH_WARNING_PERIOD) {
                tracing::debug!(target: "distkit::connect", %server, error = %details, "redis refused the credentials again");
                continue;
            }
            last_warning = Some(std::time::Instant::now());
            tracing::warn!(
                target: "distkit::connect",
                %server,
                error = %details,
                "redis refused the client's credentials on reconnecting (a rotated or revoked \
                 password?): calls fail until the credentials are accepted; connect a new client \
                 with the new password (logged at most once a minute)"
            );
        }
    }));
}

/// Whether `error` says the server refused the credentials.
fn is_refused_authentication(error: &FredError) -> bool {
    if *error.kind() == ErrorKind::Auth {
        return true;
    }
    let details = error.details();
    [
        "WRONGPASS",
        "NOAUTH",
        "invalid username-password",
        "invalid password",
    ]
    .iter()
    .any(|marker| details.contains(marker))
}

/// Quits a client whose first connection timed out, without waiting for it: its connection
/// task ends by itself when the attempt fails, and a connection made just after the deadline
/// is closed instead of living on unused.
fn stop_in_background(client: Client) {
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        drop(runtime.spawn(async move {
            let _ = client.quit().await;
        }));
    }
}

/// Quits its client on drop, unless disarmed: [`ConnectOptions::connect`] dropped while the
/// client connects (fred's connection task, spawned by `init`, does not end with the
/// client's handles, so a connection made after the drop would stay open for ever).
struct StopUnlessConnected(Option<Client>);

impl StopUnlessConnected {
    /// The connection attempt has an outcome: the caller owns the client.
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for StopUnlessConnected {
    fn drop(&mut self) {
        if let Some(client) = self.0.take() {
            stop_in_background(client);
        }
    }
}

/// `error` with `context` in front of its details, keeping its kind.
fn with_context(error: &FredError, context: &str) -> DistkitError {
    FredError::new(
        error.kind().clone(),
        format!("{context}: {}", shorten(error.details(), MAX_DETAILS_SHOWN)),
    )
    .into()
}

/// The most characters of one host name an error message shows.
const MAX_HOST_SHOWN: usize = 128;
/// The most characters of the client's own error details an error message shows (they may
/// repeat a host name).
const MAX_DETAILS_SHOWN: usize = 512;

/// `text`, cut after `max` characters (the cut marked with how long it was), so that a
/// huge input never makes a huge error message.
fn shorten(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!(
            "{}… ({} bytes)",
            text.get(..cut).unwrap_or_default(),
            text.len()
        )
        .into(),
        None => text.into(),
    }
}

/// Checks `options` and builds fred's config; also returns the hosts, for error messages.
fn parse(options: &ConnectOptions) -> Result<(Config, String), DistkitError> {
    let config_error =
        |message: String| -> DistkitError { FredError::new(ErrorKind::Config, message).into() };
    if options.connect_timeout.is_zero() {
        return Err(config_error(
            "the connect timeout must be more than zero".into(),
        ));
    }
    if options.command_timeout.is_zero() {
        return Err(config_error(
            "the command timeout must be more than zero".into(),
        ));
    }
    let url = options.url.trim();
    let Some((scheme, _rest)) = url.split_once("://") else {
        return Err(FredError::new(
            ErrorKind::Url,
            "invalid redis url: expected scheme://host[:port], e.g. redis://127.0.0.1:6379",
        )
        .into());
    };
    let scheme = scheme.to_ascii_lowercase();
    let tls = TLS_SCHEMES.contains(&scheme.as_str());
    if !tls && !PLAIN_SCHEMES.contains(&scheme.as_str()) {
        // Show at most a scheme-sized prefix: whatever precedes `://` is not a secret in a
        // well-formed URL, but a mangled one could hold anything.
        let shown: String = scheme.chars().take(24).collect();
        return Err(config_error(format!(
            "unsupported url scheme {shown:?}: use redis://, rediss://, redis-cluster:// or \
             redis-sentinel://"
        )));
    }
    if tls && !cfg!(feature = "tls") {
        return Err(config_error(format!(
            "{scheme}:// needs TLS, which this build of distkit does not include (enable the \
             `tls` feature)"
        )));
    }
    // fred builds its default TLS connector for a TLS scheme with rustls' process-level
    // crypto provider, which panics when the process has both of rustls' providers (ring,
    // ours, and aws-lc-rs, which many other crates bring) and installed neither. So fred
    // parses the plain spelling of the URL, and the connector is set here: the caller's, or
    // one with an explicit provider.
    let plain_url;
    let parsed_url = if tls {
        let (_, rest) = url.split_once("://").unwrap_or((url, ""));
        let plain_scheme = scheme
            .replacen("rediss", "redis", 1)
            .replacen("valkeys", "valkey", 1);
        plain_url = format!("{plain_scheme}://{rest}");
        plain_url.as_str()
    } else {
        url
    };
    #[allow(unused_mut)]
    let mut config = Config::from_url(parsed_url).map_err(|error| {
        FredError::new(
            error.kind().clone(),
            format!("invalid redis url: {}", error.details()),
        )
    })?;
    #[cfg(feature = "tls")]
    if let Some(connector) = &options.tls_connector {
        config.tls = Some(connector.clone().into());
    } else if tls {
        config.tls = Some(tls::default_connector()?.into());
    }
    let hosts = config
        .server
        .hosts()
        .iter()
        .map(|host| shorten(&host.to_string(), MAX_HOST_SHOWN).into_owned())
        .collect::<Vec<_>>()
        .join(", ");
    Ok((config, hosts))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn message(options: &ConnectOptions) -> String {
        match parse(options) {
            Ok(_) => String::from("accepted"),
            Err(error) => error.to_string(),
        }
    }

    #[test]
    fn every_redis_scheme_is_accepted_without_io() {
        for url in [
            "redis://127.0.0.1:6379",
            "redis://user:pass@example.com/3",
            "REDIS://example.com",
            "redis-cluster://127.0.0.1:7000?node=127.0.0.1:7001",
            "redis-sentinel://127.0.0.1:26379?sentinelServiceName=mymaster",
            "valkey://example.com:6379",
        ] {
            assert_eq!(message(&ConnectOptions::new(url)), "accepted", "{url}");
        }
    }

    #[test]
    fn other_schemes_are_refused_with_the_accepted_ones_named() {
        for url in [
            "http://127.0.0.1:6379",
            "tcp://x:1",
            "redis+unix:///tmp/r.sock",
        ] {
            let text = message(&ConnectOptions::new(url));
            assert!(text.contains("unsupported url scheme"), "{url}: {text}");
            assert!(text.contains("redis://"), "{url}: {text}");
        }
    }

    #[test]
    fn malformed_urls_are_refused_without_echoing_credentials() {
        for url in [
            "",
            "not a url",
            "redis://:hunter2@127.0.0.1:notaport",
            "redis://",
            "redis://hunter2@/0",
            "redis-sentinel://h:notaport?sentinelServiceName=m&sentinelPassword=hunter2",
            "redis://alice:hunter2/x@h:6379",
        ] {
            let text = message(&ConnectOptions::new(url));
            assert!(text.contains("invalid redis url"), "{url}: {text}");
            assert!(!text.contains("hunter2"), "{url}: {text}");
        }
    }

    #[test]
    fn zero_timeouts_are_refused() {
        let options = ConnectOptions::new("redis://127.0.0.1").connect_timeout(Duration::ZERO);
        assert!(message(&options).contains("connect timeout"));
        let options = ConnectOptions::new("redis://127.0.0.1").command_timeout(Duration::ZERO);
        assert!(message(&options).contains("command timeout"));
    }

    #[cfg(not(feature = "tls"))]
    #[test]
    fn tls_schemes_are_refused_without_the_tls_feature() {
        for url in ["rediss://127.0.0.1", "rediss-cluster://127.0.0.1:7000"] {
            let text = message(&ConnectOptions::new(url));
            assert!(text.contains("TLS"), "{url}: {text}");
        }
    }

    #[test]
    fn huge_host_names_are_cut_in_messages() {
        let url = format!("redis://{}:6379", "h".repeat(10_000));
        let (_, hosts) = parse(&ConnectOptions::new(url)).unwrap_or_else(|error| panic!("{error}"));
        assert!(hosts.len() < 200, "{hosts}");
        assert!(
            hosts.starts_with("hhhh") && hosts.contains("bytes"),
            "{hosts}"
        );
        assert_eq!(shorten("short", 10), "short");
        assert_eq!(shorten("ééé", 2), "éé… (6 bytes)");
    }

    #[test]
    fn hosts_are_named_without_credentials() {
        let options = ConnectOptions::new("redis://alice:secret@example.com:6380");
        let (_, hosts) = parse(&options).unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(hosts, "example.com:6380");
    }
}
