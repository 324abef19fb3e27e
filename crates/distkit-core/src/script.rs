//! The Lua script runner.
//!
//! A [`LuaScript`] is sent as `EVALSHA` with its SHA-1 computed locally; when the server
//! answers `NOSCRIPT` (after a restart, a failover or `SCRIPT FLUSH`) the same call is sent
//! once as `EVAL`, which also caches the script on that server. A `NOSCRIPT` reply means the
//! script did not run, so the fallback never applies anything twice.
//!
//! Each call states its [`Attempts`]: a script that must never be applied twice runs with
//! [`Attempts::Once`], so fred does not replay it after a reconnect; if the connection fails
//! after it was written the caller gets the transport error and reports the outcome as
//! unknown. fred's `with_options(..).evalsha(..)` ignores the options, so the runner sends
//! `EVALSHA` as a custom command through [`WithOptions`](fred::clients::WithOptions), which
//! honours them, routes it to the slot of the first key and lets it share the connection's
//! pipeline with other commands.
//!
//! In a cluster, a node that answers `MOVED` or `ASK` did not run the call; clients made by
//! [`connect`](crate::connect) hand such an answer back instead of following it, and the
//! runner sends the call again ([`retry_redirected`]) until the slot has settled, within the
//! call's timeout.

mod acknowledgement;

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use fred::clients::Client;
use fred::interfaces::ClientLike;
use fred::types::config::Options;
use fred::types::{ClusterHash, CustomCommand, Value};

pub use acknowledgement::AcknowledgementGroup;

use crate::ReplicaAcks;
use crate::key_schema::slot_of;

/// How often fred may write one script call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attempts {
    /// Exactly one write: for scripts whose second application would change the result.
    Once,
    /// fred's default: replayed after a reconnect. Only for idempotent scripts and reads.
    Retry,
}

/// The per-call settings of a script run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CallPolicy {
    /// How often the call may be written.
    pub attempts: Attempts,
    /// A bound on the call tighter than the client's default, if any.
    pub timeout: Option<Duration>,
}

impl CallPolicy {
    /// One attempt and the client's default timeout.
    pub const ONCE: Self = Self {
        attempts: Attempts::Once,
        timeout: None,
    };
    /// Replays allowed and the client's default timeout.
    pub const RETRY: Self = Self {
        attempts: Attempts::Retry,
        timeout: None,
    };

    /// The same policy with a timeout.
    pub const fn with_timeout(self, timeout: Duration) -> Self {
        Self {
            attempts: self.attempts,
            timeout: Some(timeout),
        }
    }
}

/// A Lua script of distkit, included from its `.lua` file.
#[derive(Debug)]
pub struct LuaScript {
    name: &'static str,
    source: &'static str,
    sha: OnceLock<Value>,
}

impl LuaScript {
    /// A script called `name` (for logs and errors) with the given source.
    pub const fn new(name: &'static str, source: &'static str) -> Self {
        Self {
            name,
            source,
            sha: OnceLock::new(),
        }
    }

    /// The name given at construction.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The SHA-1 of the source, as hex, as `EVALSHA` expects it.
    pub fn sha1(&self) -> &Value {
        self.sha
            .get_or_init(|| Value::from(fred::util::sha1_hash(self.source)))
    }

    /// Runs the script with `keys` and `args` under `policy`.
    ///
    /// The call is routed to the cluster slot of the first key; distkit's key schema puts all
    /// keys of one call in that slot.
    ///
    /// # Errors
    ///
    /// The fred error of the call: a server or script error reply (its details start with
    /// the error code, e.g. `DISTKIT_OVERFLOW`, see [`error_code`]), or a transport error
    /// (see [`is_transport_failure`](crate::error_is_transport_failure)).
    ///
    /// # Cancel safety
    ///
    /// Dropping the future before its first poll sends nothing. Once polled, the `EVALSHA`
    /// is queued in the client: dropping the future does not take it back, so the script
    /// may run (or may already have run) while its reply is discarded; treat it as an
    /// unknown outcome. Dropped between a `NOSCRIPT` reply (nothing ran) and the `EVAL`
    /// fallback, or during a pause between cluster redirections, it sends nothing more.
    pub async fn run(
        &self,
        client: &Client,
        keys: &[&str],
        args: Vec<Value>,
        policy: CallPolicy,
    ) -> Result<Value, fred::error::Error> {
        self.run_reporting_fallback(client, Keys::Text(keys), args, policy)
            .await
            .0
    }

    /// Runs the script like [`run`](Self::run) with keys made once by [`key_values`]: a
    /// primitive that calls scripts with the same keys again and again (a lock) keeps them,
    /// and each call then shares their bytes rather than copying them.
    ///
    /// # Errors
    ///
    /// As [`run`](Self::run).
    ///
    /// # Cancel safety
    ///
    /// As [`run`](Self::run).
    pub async fn run_with_keys(
        &self,
        client: &Client,
        keys: &[Value],
        args: Vec<Value>,
        policy: CallPolicy,
    ) -> Result<Value, fred::error::Error> {
        self.run_reporting_fallback(client, Keys::Made(keys), args, policy)
            .await
            .0
    }

    /// Runs the script like [`run`](Self::run), then waits until `acks.replicas` replicas
    /// acknowledged every write made so far on the connection (`WAIT`), for at most
    /// `acks.timeout`; returns the script's reply and how many replicas acknowledged.
    ///
    /// `EVALSHA` and `WAIT` are queued together before either reply is read, so fred writes
    /// them one after the other on the connection to the node of the first key; `WAIT` is
    /// written at most once, so it is never replayed on a new connection. A `WAIT` on another
    /// connection than the write's would count replicas that never saw the write, so when
    /// the client reconnected (to any node) between queueing the write and the `WAIT`'s
    /// reply, the count is zero: see [`ReconnectWatch`]. When the script had to be sent
    /// again as `EVAL` (`NOSCRIPT`), a second `WAIT` follows the `EVAL`.
    ///
    /// `WAIT` holds the connection it runs on: commands of other tasks that share the client
    /// wait behind it for up to `acks.timeout` when replicas are slow or missing.
    ///
    /// # Errors
    ///
    /// The fred error of the script, as [`run`](Self::run). A failed `WAIT` after a
    /// successful script is not an error: it counts as zero acknowledgements.
    ///
    /// # Cancel safety
    ///
    /// As [`run`](Self::run) for the script: once polled, it may run whatever happens to the
    /// future. The `WAIT` queued with it runs too (holding the connection up to
    /// `acks.timeout`); its count is discarded, so a dropped call tells nothing about the
    /// replicas.
    pub async fn run_acknowledged(
        &self,
        client: &Client,
        keys: &[&str],
        args: Vec<Value>,
        policy: CallPolicy,
        acks: ReplicaAcks,
    ) -> Result<(Value, usize), fred::error::Error> {
        self.run_acknowledged_keys(client, Keys::Text(keys), args, policy, acks)
            .await
    }

    /// [`run_acknowledged`](Self::run_acknowledged) with keys made once by [`key_values`]
    /// (see [`run_with_keys`](Self::run_with_keys)).
    ///
    /// # Errors
    ///
    /// As [`run_acknowledged`](Self::run_acknowledged).
    ///
    /// # Cancel safety
    ///
    /// As [`run_acknowledged`](Self::run_acknowledged).
    pub async fn run_acknowledged_with_keys(
        &self,
        client: &Client,
        keys: &[Value],
        args: Vec<Value>,
        policy: CallPolicy,
        acks: ReplicaAcks,
    ) -> Result<(Value, usize), fred::error::Error> {
        self.run_acknowledged_keys(client, Keys::Made(keys), args, policy, acks)
            .await
    }

    /// [`run_acknowledged`](Self::run_acknowledged) with keys of either form.
    async fn run_acknowledged_keys(
        &self,
        client: &Client,
        keys: Keys<'_>,
        args: Vec<Value>,
        policy: CallPolicy,
        acks: ReplicaAcks,
    ) -> Result<(Value, usize), fred::error::Error> {
        let reconnects = ReconnectWatch::start(client);
        let route = keys.route();
        let wait = || wait_routed(client, route.clone(), acks);
        let ((reply, fell_back), first_wait) = tokio::join!(
            self.run_reporting_fallback(client, keys, args, policy),
            wait()
        );
        let reply = reply?;
        let acknowledged = if fell_back { wait().await } else { first_wait };
        Ok((reply, reconnects.unless_reconnected(acknowledged)))
    }

    /// Runs the script; also says whether it was sent more than once: as `EVAL` after
    /// `NOSCRIPT`, or again after a cluster redirection (see [`retry_redirected`]).
    async fn run_reporting_fallback(
        &self,
        client: &Client,
        keys: Keys<'_>,
        args: Vec<Value>,
        policy: CallPolicy,
    ) -> (Result<Value, fred::error::Error>, bool) {
        let fell_back = AtomicBool::new(false);
        // Boxed: callers embed script calls in their own futures (lock acquisitions,
        // releases), which would otherwise grow by the retry loop's state.
        let (result, sends) = Box::pin(retry_redirected(client, policy.timeout, || async {
            let (result, fallback) = self.run_on_one_node(client, keys, &args, policy).await;
            if fallback {
                fell_back.store(true, Ordering::Relaxed);
            }
            result
        }))
        .await;
        (result, fell_back.into_inner() || sends > 1)
    }

    /// Sends the script once (and once more as `EVAL` after `NOSCRIPT`); also says whether
    /// it fell back to `EVAL`.
    async fn run_on_one_node(
        &self,
        client: &Client,
        keys: Keys<'_>,
        args: &[Value],
        policy: CallPolicy,
    ) -> (Result<Value, fred::error::Error>, bool) {
        let options = Options {
            max_attempts: match policy.attempts {
                Attempts::Once => Some(1),
                Attempts::Retry => None,
            },
            timeout: policy.timeout,
            // A standalone or Sentinel client routes nothing: the slot is computed only for
            // a cluster.
            cluster_hash: client.is_clustered().then(|| keys.route()),
            ..Options::default()
        };
        let client = client.with_options(&options);
        let command = |first: Value| {
            let count = keys.count();
            let mut command_args =
                Vec::with_capacity(count.saturating_add(args.len()).saturating_add(2));
            command_args.push(first);
            command_args.push(Value::from(i64::try_from(count).unwrap_or(i64::MAX)));
            keys.append_to(&mut command_args);
            command_args.extend(args.iter().cloned());
            command_args
        };
        let evalsha = CustomCommand::new_static("EVALSHA", ClusterHash::FirstKey, false);
        // The arguments are built again for the rare `EVAL` fallback rather than copied ahead
        // of every call.
        match client
            .custom::<Value, Value>(evalsha, command(self.sha1().clone()))
            .await
        {
            Err(error) if error_code(&error) == Some("NOSCRIPT") => {
                tracing::debug!(target: "distkit::core",
                    script = self.name,
                    "script not cached on the server, sending it"
                );
                let eval = CustomCommand::new_static("EVAL", ClusterHash::FirstKey, false);
                (
                    client
                        .custom::<Value, Value>(eval, command(Value::from(self.source)))
                        .await,
                    true,
                )
            }
            other => (other, false),
        }
    }
}

/// The first pause before a redirected command is sent again.
const FIRST_REDIRECTION_PAUSE: Duration = Duration::from_millis(2);
/// The longest pause between two sends of a redirected command.
const LONGEST_REDIRECTION_PAUSE: Duration = Duration::from_millis(100);
/// How long a redirected command is sent again when neither the call nor the client bounds
/// commands.
const REDIRECTIONS_WITHOUT_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether `error` says a cluster node did not run the command because of a slot on the
/// move: it redirected it (`MOVED` or `ASK`), or the command's keys are split between the
/// two nodes of an unfinished migration (`TRYAGAIN`).
///
/// Clients made by [`connect`](crate::connect) follow no redirection themselves (see its
/// docs), so fred fails such a command with a `Too many redirections` error after it
/// refreshed its slot map.
pub fn error_is_redirection(error: &fred::error::Error) -> bool {
    (*error.kind() == fred::error::ErrorKind::Routing
        && error.details().starts_with("Too many redirections"))
        || error_code(error) == Some("TRYAGAIN")
}

/// Calls `call` until it returns something other than a cluster redirection
/// ([`error_is_redirection`]), pausing 2 ms, then twice as long each time up to 100 ms, for
/// at most `timeout` (else the client's default command timeout, else 10 s); returns the
/// last result and how many times `call` ran.
///
/// A node that answers `MOVED`, `ASK` or `TRYAGAIN` did not run the command, so sending it
/// again (to the slot's new master, which fred learned on `MOVED`, or once the migration
/// that caused the `ASK` or `TRYAGAIN` finished) can apply it at most once: even a command
/// that may be written only once ([`Attempts::Once`]) is sent again here.
///
/// # Cancel safety
///
/// Dropping the future drops the call in progress (with what that means for `call`: a
/// command already queued in the client still runs) and sends nothing more; dropped during
/// a pause between sends, nothing is in flight.
pub async fn retry_redirected<T, F, Fut>(
    client: &Client,
    timeout: Option<Duration>,
    mut call: F,
) -> (Result<T, fred::error::Error>, u32)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, fred::error::Error>>,
{
    let mut sends = 0_u32;
    let mut pause = FIRST_REDIRECTION_PAUSE;
    let mut deadline = None;
    loop {
        let result = call().await;
        sends = sends.saturating_add(1);
        match result {
            Err(error) if error_is_redirection(&error) => {
                let now = tokio::time::Instant::now();
                let deadline = *deadline.get_or_insert_with(|| {
                    let bound = timeout
                        .or_else(|| {
                            Some(client.perf_config().default_command_timeout)
                                .filter(|timeout| !timeout.is_zero())
                        })
                        .unwrap_or(REDIRECTIONS_WITHOUT_TIMEOUT);
                    now.checked_add(bound).unwrap_or(now)
                });
                if now
                    .checked_add(pause)
                    .is_none_or(|resume| resume >= deadline)
                {
                    return (Err(error), sends);
                }
                tracing::debug!(target: "distkit::core", %error, ?pause, sends, "cluster redirection: sending the command again");
                tokio::time::sleep(pause).await;
                pause = pause.saturating_mul(2).min(LONGEST_REDIRECTION_PAUSE);
            }
            other => return (other, sends),
        }
    }
}

/// The cluster route of a call: the slot of its first key.
fn route_of(keys: &[&str]) -> ClusterHash {
    keys.first()
        .map_or(ClusterHash::Random, |key| ClusterHash::Custom(slot_of(key)))
}

/// [`route_of`] for keys made by [`key_values`].
fn route_of_values(keys: &[Value]) -> ClusterHash {
    keys.first()
        .and_then(Value::as_bytes)
        .map_or(ClusterHash::Random, |key| {
            ClusterHash::Custom(fred::util::redis_keyslot(key))
        })
}

/// The keys of one script call: as text (copied into the command at each send) or made once
/// by [`key_values`] (shared).
#[derive(Clone, Copy)]
enum Keys<'a> {
    Text(&'a [&'a str]),
    Made(&'a [Value]),
}

impl Keys<'_> {
    fn count(self) -> usize {
        match self {
            Self::Text(keys) => keys.len(),
            Self::Made(keys) => keys.len(),
        }
    }

    fn route(self) -> ClusterHash {
        match self {
            Self::Text(keys) => route_of(keys),
            Self::Made(keys) => route_of_values(keys),
        }
    }

    /// Appends the keys to a command's arguments: a key made once is shared (a reference
    /// count), a text key is copied.
    fn append_to(self, command: &mut Vec<Value>) {
        match self {
            Self::Text(keys) => command.extend(keys.iter().map(|key| Value::from(*key))),
            Self::Made(keys) => command.extend(keys.iter().cloned()),
        }
    }
}

/// Script keys made once, for [`LuaScript::run_with_keys`]: each call that passes them
/// shares their bytes (a reference count) instead of copying every key into a new buffer.
pub fn key_values<S: AsRef<str>>(keys: &[S]) -> Vec<Value> {
    keys.iter()
        .map(|key| Value::from(key.as_ref().to_owned()))
        .collect()
}

/// Notices whether a client reconnected (to any node) since it was started.
///
/// `WAIT` counts the replicas that acknowledged the writes of *its own* connection. fred
/// sends a command queued while a connection is replaced on the new connection, where a
/// `WAIT` returns at once with every replica (the new connection wrote nothing). fred
/// announces each new connection before it writes anything on it, so a watch started before
/// a write and checked after its `WAIT`'s reply has seen every connection that `WAIT` may
/// have run on: when it saw one, the count proves nothing.
#[derive(Debug)]
pub struct ReconnectWatch {
    receiver: tokio::sync::broadcast::Receiver<fred::types::config::Server>,
}

impl ReconnectWatch {
    /// Starts watching `client`'s reconnections.
    pub fn start(client: &Client) -> Self {
        Self {
            receiver: fred::interfaces::EventInterface::reconnect_rx(client),
        }
    }

    /// Whether the client reconnected since [`start`](Self::start).
    pub fn reconnected(&mut self) -> bool {
        use tokio::sync::broadcast::error::TryRecvError;
        match self.receiver.try_recv() {
            Err(TryRecvError::Empty) => false,
            Ok(_) | Err(TryRecvError::Lagged(_) | TryRecvError::Closed) => true,
        }
    }

    /// `acknowledged`, or zero when the client reconnected since [`start`](Self::start).
    pub fn unless_reconnected(mut self, acknowledged: usize) -> usize {
        if self.reconnected() {
            tracing::debug!(target: "distkit::core",
                acknowledged,
                "the client reconnected between a write and its WAIT: counting no acknowledgement"
            );
            0
        } else {
            acknowledged
        }
    }
}

/// How much longer than its own timeout a `WAIT` may take before the client gives up on it.
const WAIT_REPLY_MARGIN: Duration = Duration::from_secs(1);

/// `WAIT acks.replicas acks.timeout` on the connection to the node of `keys`' slot, written
/// once; the number of replicas that acknowledged, 0 when the command failed.
///
/// It covers every write sent before it on that connection: queue it together with the write
/// it confirms (e.g. with `tokio::join!`, the write first), as
/// [`LuaScript::run_acknowledged`] does.
///
/// # Cancel safety
///
/// Once polled, the `WAIT` is queued in the client and runs (holding the connection up to
/// `acks.timeout`) even if the future is dropped; it changes no data, and its count is
/// discarded.
pub async fn wait_for_replicas(client: &Client, keys: &[&str], acks: ReplicaAcks) -> usize {
    wait_routed(client, route_of(keys), acks).await
}

/// [`wait_for_replicas`] on the connection of `route`.
async fn wait_routed(client: &Client, route: ClusterHash, acks: ReplicaAcks) -> usize {
    let options = Options {
        max_attempts: Some(1),
        timeout: Some(acks.timeout.saturating_add(WAIT_REPLY_MARGIN)),
        cluster_hash: Some(route),
        ..Options::default()
    };
    // Not marked blocking: fred then keeps pipelining other commands behind it (Redis itself
    // answers them after the WAIT) instead of holding them back in the client.
    let wait = CustomCommand::new_static("WAIT", ClusterHash::FirstKey, false);
    let reply = client
        .with_options(&options)
        .custom::<i64, Value>(
            wait,
            vec![
                Value::from(acks.replicas_i64()),
                Value::from(acks.timeout_ms()),
            ],
        )
        .await;
    match reply {
        Ok(count) => usize::try_from(count).unwrap_or(0),
        Err(error) => {
            tracing::debug!(target: "distkit::core", %error, "WAIT for replica acknowledgements failed");
            0
        }
    }
}

/// The error code of a server reply error: its first word (`NOSCRIPT`, `ERR`,
/// `DISTKIT_OVERFLOW`, …), or `None` for errors that did not come from a reply.
pub fn error_code(error: &fred::error::Error) -> Option<&str> {
    if crate::error_is_transport_failure(error) {
        return None;
    }
    let first = error.details().split_whitespace().next()?;
    let is_code = !first.is_empty()
        && first.chars().all(|character| {
            character.is_ascii_uppercase() || character == '_' || character.is_ascii_digit()
        });
    is_code.then_some(first)
}

/// The message of a server reply error without its code.
pub fn error_message(error: &fred::error::Error) -> &str {
    let details = error.details();
    match error_code(error) {
        Some(code) => details.get(code.len()..).unwrap_or("").trim_start(),
        None => details,
    }
}

#[cfg(test)]
mod tests {
    use fred::error::{Error as FredError, ErrorKind};

    use super::*;

    #[test]
    fn only_an_unfollowed_redirection_counts_as_a_redirection() {
        assert!(error_is_redirection(&FredError::new(
            ErrorKind::Routing,
            "Too many redirections."
        )));
        // Failures to route before anything was written, and replies, are not.
        assert!(!error_is_redirection(&FredError::new(
            ErrorKind::Routing,
            "Failed to route command."
        )));
        assert!(!error_is_redirection(&FredError::new(
            ErrorKind::Unknown,
            "Too many redirections."
        )));
        // A multi-key call whose keys an unfinished migration split was not run either.
        assert!(error_is_redirection(&FredError::new(
            ErrorKind::Unknown,
            "TRYAGAIN Multiple keys request during rehashing of slot"
        )));
        assert!(!error_is_redirection(&FredError::new(
            ErrorKind::Unknown,
            "ERR Error running script"
        )));
    }

    #[test]
    fn keys_made_once_are_routed_and_sent_as_their_text() {
        let keys = ["lock:{a}", "lock:{a}:fence", "other"];
        let values = key_values(&keys);
        assert_eq!(route_of_values(&values), route_of(&keys));
        assert_eq!(route_of_values(&[]), ClusterHash::Random);
        let texts: Vec<_> = values.iter().filter_map(Value::as_str).collect();
        assert_eq!(texts, keys);
        // A clone shares the bytes of the key made once.
        let (Some(Value::String(made)), Some(Value::String(cloned))) =
            (values.first(), values.first().cloned())
        else {
            panic!("keys are strings");
        };
        assert_eq!(made.as_bytes().as_ptr(), cloned.as_bytes().as_ptr());
    }

    #[tokio::test]
    async fn a_call_that_is_not_redirected_runs_once() {
        let client = Client::default();
        let (result, sends) = retry_redirected(&client, None, || async {
            Err::<(), _>(FredError::new(ErrorKind::IO, "connection reset"))
        })
        .await;
        assert!(result.is_err());
        assert_eq!(sends, 1);
    }

    #[tokio::test]
    async fn a_redirected_call_is_sent_again_until_its_timeout() {
        let client = Client::default();
        let started = tokio::time::Instant::now();
        let (result, sends) =
            retry_redirected(&client, Some(Duration::from_millis(300)), || async {
                Err::<(), _>(FredError::new(ErrorKind::Routing, "Too many redirections."))
            })
            .await;
        assert!(result.is_err_and(|error| error_is_redirection(&error)));
        // Pauses of 2, 4, …, 64 ms, then 100 ms, stopping before the 300 ms bound.
        assert!(sends > 5, "sent {sends} times");
        assert!(started.elapsed() <= Duration::from_millis(300));
    }
}
