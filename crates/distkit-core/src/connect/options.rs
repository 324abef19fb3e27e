use std::fmt;
use std::time::Duration;

use crate::DistkitError;

/// The default bound on a whole connection attempt.
pub(super) const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The default bound on one command, unless a primitive sets a tighter one.
pub(super) const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// How a connected client reconnects after its connection drops.
///
/// The first connection is never retried: [`ConnectOptions::connect`] reports its failure at
/// once (or when the connect timeout runs out), so a wrong URL is never hidden behind retries.
///
/// ```
/// # use distkit_core as distkit; // the facade crate, as users name it
/// use std::time::Duration;
/// use distkit::ReconnectPolicy;
///
/// // 100 ms, 200 ms, 400 ms, … up to 5 s between attempts, forever.
/// let policy = ReconnectPolicy::exponential(Duration::from_millis(100), Duration::from_secs(5));
/// // Every 250 ms, at most 20 attempts, then the client gives up.
/// let policy = ReconnectPolicy::constant(Duration::from_millis(250)).max_attempts(20);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReconnectPolicy {
    pub(super) kind: ReconnectKind,
    /// 0 means forever (fred's convention).
    pub(super) max_attempts: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ReconnectKind {
    Exponential { min: Duration, max: Duration },
    Constant { delay: Duration },
    Never,
}

impl ReconnectPolicy {
    /// Waits `min` before the first attempt and doubles the wait after every failed one, up
    /// to `max`; retries forever unless [`max_attempts`](Self::max_attempts) says otherwise.
    pub fn exponential(min: Duration, max: Duration) -> Self {
        Self {
            kind: ReconnectKind::Exponential { min, max },
            max_attempts: 0,
        }
    }

    /// Waits `delay` between attempts; retries forever unless
    /// [`max_attempts`](Self::max_attempts) says otherwise.
    pub fn constant(delay: Duration) -> Self {
        Self {
            kind: ReconnectKind::Constant { delay },
            max_attempts: 0,
        }
    }

    /// Never reconnects: once the connection drops, every later command fails.
    pub fn never() -> Self {
        Self {
            kind: ReconnectKind::Never,
            max_attempts: 0,
        }
    }

    /// Gives up after `attempts` failed reconnection attempts in a row (0 = never give up).
    #[must_use]
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts;
        self
    }

    /// fred's policy; delays are whole milliseconds, saturated at `u32::MAX`.
    pub(super) fn to_fred(self) -> Option<fred::types::config::ReconnectPolicy> {
        use fred::types::config::ReconnectPolicy as Fred;
        let ms = |d: Duration| u32::try_from(d.as_millis()).unwrap_or(u32::MAX);
        match self.kind {
            ReconnectKind::Exponential { min, max } => Some(Fred::new_exponential(
                self.max_attempts,
                ms(min),
                ms(max.max(min)),
                2,
            )),
            ReconnectKind::Constant { delay } => {
                Some(Fred::new_constant(self.max_attempts, ms(delay)))
            }
            ReconnectKind::Never => None,
        }
    }
}

impl Default for ReconnectPolicy {
    /// Exponential backoff from 100 ms up to 2 s, forever.
    fn default() -> Self {
        Self::exponential(Duration::from_millis(100), Duration::from_secs(2))
    }
}

/// How to connect to Redis: the URL plus timeouts, reconnect policy and TLS.
///
/// [`connect`](crate::connect) is `ConnectOptions::new(url).connect()` with the defaults
/// below; build one of these to change them.
///
/// | setting | default |
/// |---|---|
/// | [`connect_timeout`](Self::connect_timeout) | 5 s, for the whole first connection (TCP, TLS, handshake, cluster discovery) |
/// | [`command_timeout`](Self::command_timeout) | 10 s per command |
/// | [`reconnect_policy`](Self::reconnect_policy) | exponential backoff, 100 ms up to 2 s, forever |
///
/// Accepted URL schemes: `redis://`, `rediss://` (TLS, with distkit's `tls` feature),
/// `redis-cluster://`, `rediss-cluster://`, `redis-sentinel://` and `rediss-sentinel://`
/// (fred's `valkey…` spellings are accepted too). The URL's syntax is fred's: user and
/// password before `@`, a database number as path, `?node=host:port` for further cluster or
/// sentinel nodes and `?sentinelServiceName=name` for Sentinel.
///
/// There is no pool size: every distkit primitive takes one `fred` `Client`, which
/// pipelines all commands over one connection per Redis node and is cheap to clone. Connect
/// several clients and hand them to different primitives to spread load over connections.
///
/// The `Debug` output never shows a secret of the URL (its password, or a token as user
/// information; `sentinelPassword`); neither do distkit's errors. fred's own configuration
/// does: never log `client.client_config()` (its `Debug` output prints the password).
///
/// ```no_run
/// # use distkit_core as distkit; // the facade crate, as users name it
/// use std::time::Duration;
/// use distkit::{ConnectOptions, ReconnectPolicy};
///
/// # async fn example() -> Result<(), distkit::DistkitError> {
/// let client = ConnectOptions::new("redis://127.0.0.1:6379")
///     .connect_timeout(Duration::from_secs(2))
///     .command_timeout(Duration::from_secs(1))
///     .reconnect_policy(ReconnectPolicy::constant(Duration::from_millis(200)))
///     .connect()
///     .await?;
/// # let _ = client;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct ConnectOptions {
    pub(super) url: String,
    pub(super) connect_timeout: Duration,
    pub(super) command_timeout: Duration,
    pub(super) reconnect_policy: ReconnectPolicy,
    #[cfg(feature = "tls")]
    pub(super) tls_connector: Option<fred::types::config::TlsConnector>,
}

impl ConnectOptions {
    /// Options for `url` with the default timeouts and reconnect policy.
    ///
    /// Nothing is checked here: [`validate`](Self::validate) and
    /// [`connect`](Self::connect) report a bad URL.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            command_timeout: DEFAULT_COMMAND_TIMEOUT,
            reconnect_policy: ReconnectPolicy::default(),
            #[cfg(feature = "tls")]
            tls_connector: None,
        }
    }

    /// Bounds the whole first connection: TCP connect, TLS, the handshake and (for a
    /// cluster) discovery. It also bounds the client's internal commands on later
    /// reconnections. Must be more than zero.
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Bounds every command, unless a primitive sets a tighter bound for its own. Must be more
    /// than zero.
    #[must_use]
    pub fn command_timeout(mut self, timeout: Duration) -> Self {
        self.command_timeout = timeout;
        self
    }

    /// How the client reconnects after a connection drops.
    #[must_use]
    pub fn reconnect_policy(mut self, policy: ReconnectPolicy) -> Self {
        self.reconnect_policy = policy;
        self
    }

    /// Connects with TLS through `connector` (for instance one built from a
    /// `rustls::ClientConfig` with your own root certificates), whatever the URL's scheme.
    ///
    /// Without it, `rediss://` URLs use the system's root certificates (`SSL_CERT_FILE` or
    /// `SSL_CERT_DIR` point elsewhere, e.g. at a private CA's certificate) with rustls' `ring`
    /// provider, named explicitly: a process that also links rustls' `aws-lc-rs` provider
    /// (through reqwest, tonic or the AWS SDK) needs no process-level default provider.
    ///
    /// To trust a private CA in code, build the configuration with `distkit::fred::rustls`
    /// (name a provider explicitly, as here, for the same reason):
    ///
    /// ```no_run
    /// # use distkit_core as distkit; // the facade crate, as users name it
    /// use std::sync::Arc;
    /// use distkit::fred::rustls::pki_types::CertificateDer;
    /// use distkit::fred::rustls::pki_types::pem::PemObject;
    /// use distkit::fred::rustls::{ClientConfig, RootCertStore, crypto};
    ///
    /// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
    /// let mut roots = RootCertStore::empty();
    /// for certificate in CertificateDer::pem_file_iter("/etc/redis/ca.pem")? {
    ///     roots.add(certificate?)?;
    /// }
    /// let config = ClientConfig::builder_with_provider(Arc::new(crypto::ring::default_provider()))
    ///     .with_safe_default_protocol_versions()?
    ///     .with_root_certificates(roots)
    ///     .with_no_client_auth();
    /// let client = distkit::ConnectOptions::new("rediss://redis.internal:6380")
    ///     .tls_connector(config.into())
    ///     .connect()
    ///     .await?;
    /// # let _ = client;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// Never log fred's `client.client_config()`: its `Debug` output shows the password.
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    #[must_use]
    pub fn tls_connector(mut self, connector: fred::types::config::TlsConnector) -> Self {
        self.tls_connector = Some(connector);
        self
    }

    /// The URL these options connect to.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Checks the options without any I/O: the URL's syntax and scheme, and that both
    /// timeouts are more than zero. [`connect`](Self::connect) runs the same checks first.
    ///
    /// # Errors
    ///
    /// [`DistkitError::RedisError`] of kind `Config` or `Url` saying what is wrong: a
    /// malformed URL, a scheme other than the Redis ones, `rediss://` without distkit's `tls`
    /// feature, or a zero timeout. The message never contains the URL's credentials.
    pub fn validate(&self) -> Result<(), DistkitError> {
        super::parse(self).map(|_| ())
    }
}

impl fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("ConnectOptions");
        debug
            .field("url", &redact(&self.url))
            .field("connect_timeout", &self.connect_timeout)
            .field("command_timeout", &self.command_timeout)
            .field("reconnect_policy", &self.reconnect_policy);
        #[cfg(feature = "tls")]
        debug.field("tls_connector", &self.tls_connector.is_some());
        debug.finish()
    }
}

/// `url` with every secret it can carry replaced by `***`: the values of query parameters
/// whose name ends in `password` (any case: fred's `sentinelPassword`), then the password
/// of the user information (or, without a `:`, the whole user information, which may be a
/// token).
///
/// Conservative where the URL is malformed: the user information runs up to the *last* `@`
/// (after the query's passwords were hidden), so a password with an unencoded `/`, `?`, `#`
/// or `@` is hidden too; the price is that an `@` elsewhere in the query hides the host.
pub(super) fn redact(url: &str) -> String {
    let url = redact_query_passwords(url);
    let Some((scheme, rest)) = url.split_once("://") else {
        return url;
    };
    match rest.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = match userinfo.split_once(':') {
                Some((user, _)) => format!("{user}:***"),
                None => "***".to_owned(),
            };
            format!("{scheme}://{user}@{host}")
        }
        None => url,
    }
}

/// `url` with the value of every `?…password=` or `&…password=` parameter (the name's case
/// ignored) replaced by `***`, up to the next `&` or `#`.
fn redact_query_passwords(url: &str) -> String {
    const NAME: &str = "password=";
    let lower = url.to_ascii_lowercase();
    let mut redacted = String::with_capacity(url.len());
    let mut copied = 0;
    let mut from = 0;
    while let Some(found) = lower.get(from..).and_then(|tail| tail.find(NAME)) {
        let name_end = from.saturating_add(found).saturating_add(NAME.len());
        // The parameter's name starts after the last `?` or `&` before it.
        let parameter = lower
            .get(..from.saturating_add(found))
            .and_then(|head| head.rfind(['?', '&', '=']));
        let is_parameter = parameter
            .and_then(|at| lower.get(at..=at))
            .is_some_and(|separator| separator != "=");
        let value_end = lower
            .get(name_end..)
            .and_then(|tail| tail.find(['&', '#']))
            .map_or(lower.len(), |end| name_end.saturating_add(end));
        if is_parameter {
            redacted.push_str(url.get(copied..name_end).unwrap_or_default());
            redacted.push_str("***");
            copied = value_end;
        }
        from = name_end.max(value_end);
    }
    redacted.push_str(url.get(copied..).unwrap_or_default());
    redacted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_shows_the_password() {
        let options = ConnectOptions::new("redis://alice:s3cret@example.com:6380/2");
        let text = format!("{options:?}");
        assert!(!text.contains("s3cret"), "{text}");
        assert!(text.contains("alice:***@example.com:6380/2"), "{text}");
        let token_only = format!("{:?}", ConnectOptions::new("redis://t0ken@example.com"));
        assert!(!token_only.contains("t0ken"), "{token_only}");
    }

    #[test]
    fn debug_output_hides_every_secret_the_url_can_carry() {
        for (url, shown) in [
            (
                "redis-sentinel://alice:s3cret@h:26379?sentinelServiceName=m&sentinelPassword=s3cret",
                "redis-sentinel://alice:***@h:26379?sentinelServiceName=m&sentinelPassword=***",
            ),
            (
                "redis-sentinel://h:26379?sentinelPassword=s3cret&sentinelServiceName=m",
                "redis-sentinel://h:26379?sentinelPassword=***&sentinelServiceName=m",
            ),
            (
                "redis-sentinel://h:26379?SENTINELPASSWORD=s3cret#x",
                "redis-sentinel://h:26379?SENTINELPASSWORD=***#x",
            ),
            // Unencoded `/`, `?`, `#` and `@` in a password.
            (
                "redis://alice:s3/cret@h:6379/0",
                "redis://alice:***@h:6379/0",
            ),
            ("redis://alice:s3?cret@h:6379", "redis://alice:***@h:6379"),
            ("redis://alice:s3#cret@h:6379", "redis://alice:***@h:6379"),
            ("redis://alice:s3@cret@h:6379", "redis://alice:***@h:6379"),
            ("redis://:s3cret@h", "redis://:***@h"),
            // A secret in the password parameter with an `@` of its own.
            (
                "redis-sentinel://alice:s3cret@h?sentinelPassword=s3@cret",
                "redis-sentinel://alice:***@h?sentinelPassword=***",
            ),
            ("redis://h:6379/0", "redis://h:6379/0"),
        ] {
            let text = format!("{:?}", ConnectOptions::new(url));
            assert!(!text.contains("s3"), "{url}: {text}");
            assert!(!text.contains("cret"), "{url}: {text}");
            assert!(text.contains(shown), "{url}: {text}");
        }
    }

    #[test]
    fn the_default_policy_is_exponential_forever() {
        let policy = ReconnectPolicy::default();
        assert_eq!(policy.max_attempts, 0);
        assert!(policy.to_fred().is_some());
        assert!(ReconnectPolicy::never().to_fred().is_none());
    }

    #[test]
    fn huge_delays_saturate_instead_of_wrapping() {
        let policy = ReconnectPolicy::constant(Duration::MAX).max_attempts(3);
        match policy.to_fred() {
            Some(fred::types::config::ReconnectPolicy::Constant {
                delay,
                max_attempts,
                ..
            }) => assert_eq!((delay, max_attempts), (u32::MAX, 3)),
            other => panic!("{other:?}"),
        }
    }
}
