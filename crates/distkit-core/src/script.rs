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

use std::sync::OnceLock;
use std::time::Duration;

use fred::clients::Client;
use fred::interfaces::ClientLike;
use fred::types::config::Options;
use fred::types::{ClusterHash, CustomCommand, Value};

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
    pub async fn run(
        &self,
        client: &Client,
        keys: &[&str],
        args: Vec<Value>,
        policy: CallPolicy,
    ) -> Result<Value, fred::error::Error> {
        let slot = keys.first().map(|key| slot_of(key));
        let options = Options {
            max_attempts: match policy.attempts {
                Attempts::Once => Some(1),
                Attempts::Retry => None,
            },
            timeout: policy.timeout,
            cluster_hash: Some(slot.map_or(ClusterHash::Random, ClusterHash::Custom)),
            ..Options::default()
        };
        let client = client.with_options(&options);
        let mut command_args =
            Vec::with_capacity(keys.len().saturating_add(args.len()).saturating_add(2));
        command_args.push(self.sha1().clone());
        command_args.push(Value::from(i64::try_from(keys.len()).unwrap_or(i64::MAX)));
        command_args.extend(keys.iter().map(|key| Value::from(*key)));
        command_args.extend(args);
        let evalsha = CustomCommand::new_static("EVALSHA", ClusterHash::FirstKey, false);
        match client
            .custom::<Value, Value>(evalsha, command_args.clone())
            .await
        {
            Err(error) if error_code(&error) == Some("NOSCRIPT") => {
                tracing::debug!(
                    script = self.name,
                    "script not cached on the server, sending it"
                );
                if let Some(first) = command_args.first_mut() {
                    *first = Value::from(self.source);
                }
                let eval = CustomCommand::new_static("EVAL", ClusterHash::FirstKey, false);
                client.custom::<Value, Value>(eval, command_args).await
            }
            other => other,
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
