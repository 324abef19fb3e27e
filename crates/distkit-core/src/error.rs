use std::time::Duration;

/// The one error type of distkit.
///
/// Wrapper variants are transparent: their message and source are those of the inner error,
/// so an error chain never says the same thing twice.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DistkitError {
    /// A key, prefix or namespace broke a rule of [`DistkitRedisKey`](crate::DistkitRedisKey);
    /// the message names the rule.
    #[error("invalid redis key: {0}")]
    InvalidRedisKey(String),
    /// An option value is outside its documented range; the message names the option and the
    /// range. Reported before any I/O.
    #[error("invalid option: {0}")]
    InvalidOption(String),
    /// The object was closed with its `close()` method: nothing was applied. A closed object
    /// stays closed; build a new one to go on.
    #[error("the object was closed; nothing was applied")]
    Closed,
    /// A rate limiter's `wait` gave up at once: the call would have had to wait longer than
    /// its `max_wait` to be admitted. Nothing was charged.
    ///
    /// Its shape is fixed by the API contract (`RateLimited { retry_after }`), so it carries
    /// no key: the caller passed the key to `wait`.
    #[error(
        "rate limited: the call would be admitted in {retry_after:?}, later than its max_wait allows; nothing was charged"
    )]
    RateLimited {
        /// How long until the call would have been admitted (the limiter's `retry_after`,
        /// if nothing else is admitted in between).
        retry_after: Duration,
    },
    /// A counter or instance-aware counter operation failed.
    #[cfg(feature = "counter")]
    #[cfg_attr(docsrs, doc(cfg(feature = "counter")))]
    #[error(transparent)]
    CounterError(#[from] CounterError),
    /// A lock operation failed.
    #[cfg(feature = "lock")]
    #[cfg_attr(docsrs, doc(cfg(feature = "lock")))]
    #[error(transparent)]
    LockError(#[from] LockError),
    /// A transport, server or script error reported by Redis or the client.
    #[error(transparent)]
    RedisError(#[from] fred::error::Error),
    /// A rate limiter failed.
    #[cfg(feature = "trypema")]
    #[cfg_attr(docsrs, doc(cfg(feature = "trypema")))]
    #[error(transparent)]
    TrypemaError(#[from] trypema::TrypemaError),
}

/// Why a counter operation failed.
#[cfg(feature = "counter")]
#[cfg_attr(docsrs, doc(cfg(feature = "counter")))]
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CounterError {
    /// The result would not fit in an `i64`; nothing was written.
    #[error("the operation on {key:?} would overflow an i64; the stored value is unchanged")]
    Overflow {
        /// The counter key whose value would have overflowed.
        key: String,
    },
    /// The stored value is not a decimal `i64`: something other than distkit wrote it.
    #[error("the value stored for {key:?} is not an integer")]
    NotAnInteger {
        /// The counter key holding the foreign value.
        key: String,
    },
    /// The connection failed after the command was sent, so it may or may not have been
    /// applied. distkit never re-sends such a command by itself.
    #[error(
        "the connection failed after the command{} was sent; whether it was applied is unknown",
        on_key(.key.as_deref())
    )]
    OutcomeUnknown {
        /// The counter key of a call about one key (`None` for a batch over several keys or
        /// a whole prefix).
        key: Option<String>,
        /// The transport error.
        #[source]
        source: fred::error::Error,
    },
    /// A lax counter's flush batch, sent before with an unknown outcome, could not be sent
    /// again safely: Redis no longer holds the record of the batches this counter object
    /// applied (it expired after a day of failed attempts, an instance-aware counter's record
    /// was collected after its revival window, or Redis lost its data). The batch was dropped
    /// so that none of its deltas is ever applied twice; they may have been applied once, or
    /// not at all.
    #[error("a lax flush was dropped unconfirmed: {deltas} deltas may not have been applied")]
    FlushExpired {
        /// How many keys' deltas the dropped batch carried.
        deltas: usize,
    },
    /// The write was applied by the primary, but fewer replicas than
    /// [`ReplicaAcks::replicas`](crate::ReplicaAcks) acknowledged it within the timeout: it
    /// is not durable, and a failover before the replicas catch up may lose it. Retrying
    /// would apply it a second time.
    #[error(
        "the write{} was applied but only {acknowledged} of {required} replicas acknowledged it; a failover may lose it",
        on_key(.key.as_deref())
    )]
    NotReplicated {
        /// The counter key of a call about one key (`None` for a batch over several keys or
        /// a whole prefix).
        key: Option<String>,
        /// How many replicas acknowledged the write in time.
        acknowledged: usize,
        /// How many were asked for.
        required: usize,
    },
    /// A batch larger than one script call failed part-way: its first `applied` operations
    /// took effect (each chunk is all or nothing), the rest did not.
    #[error("the batch failed after its first {applied} operations were applied")]
    BatchPartiallyApplied {
        /// How many operations, from the start of the batch, were applied.
        applied: usize,
        /// Why the next chunk failed.
        #[source]
        source: Box<DistkitError>,
    },
    /// A batch spread over several shards of a prefix (see the counter options' `shards`)
    /// failed in one shard: the operations whose indexes (in the batch, ascending) are in
    /// `applied` took effect, the others did not. Shards are applied one after the other,
    /// each chunk of a shard all or nothing.
    #[error("the sharded batch failed after {} of its operations were applied", applied.len())]
    ShardedBatchPartiallyApplied {
        /// The indexes of the operations that were applied, ascending.
        applied: Vec<usize>,
        /// Why the next shard's chunk failed.
        #[source]
        source: Box<DistkitError>,
    },
    /// The counter handle is configured with another shard count than the one the prefix's
    /// stored data was written with (recorded in Redis on first use). Nothing was read or
    /// written. Use the stored count, or move the data (see the README's *Scaling out*).
    #[error(
        "the counters of prefix {prefix:?} are stored in {stored} shard(s), but this handle is configured with {configured}; nothing was applied"
    )]
    ShardCountMismatch {
        /// The prefix.
        prefix: String,
        /// The shard count of the handle.
        configured: u16,
        /// The shard count recorded for the prefix.
        stored: u16,
    },
}

/// Why a lock operation failed.
#[cfg(feature = "lock")]
#[cfg_attr(docsrs, doc(cfg(feature = "lock")))]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LockError {
    /// A one-shot `try_*` call found the lock held.
    #[error("the lock is held by someone else")]
    AcquireFail,
    /// A bounded wait (`try_*_for`, or `lock()` with `max_wait`) ran out of time.
    #[error("gave up waiting for the lock after {waited:?}")]
    Timeout {
        /// How long the call waited.
        waited: Duration,
    },
    /// A `try_*_with_retries` call made all its attempts and the lock was still held.
    #[error("the lock was still held after {retries} retries")]
    RetriesExhausted {
        /// The number of retries made after the first attempt.
        retries: usize,
    },
    /// The lease is owned by someone else or has expired.
    #[error("the lease is no longer owned by this guard")]
    NotOwner,
    /// The ttl is outside its range, 1 ms to 30 days; the value is the ttl in whole
    /// milliseconds (`i64::MAX` when it does not fit).
    #[error("the lock ttl must be at least 1 ms and at most 30 days, got {0} ms")]
    InvalidTtl(i64),
    /// The retry interval is longer than its maximum, 1 hour; the value is the interval in
    /// whole milliseconds (`i64::MAX` when it does not fit).
    #[error("the lock retry interval must be at most 1 hour, got {0} ms")]
    InvalidRetryInterval(i64),
    /// The explicit owner id is empty, longer than 255 bytes, or contains whitespace or a
    /// control character.
    #[error(
        "the lock owner id must not be empty, be longer than 255 bytes, nor contain whitespace or control characters"
    )]
    InvalidOwner,
    /// The replica acknowledgement option is out of range (see
    /// [`ReplicaAcks::validate`](crate::ReplicaAcks::validate)); the value says why.
    #[error("invalid lock replica acknowledgement: {0}")]
    InvalidReplicaAcks(String),
    /// The lock was granted (or its lease renewed) by the primary, but fewer replicas than
    /// asked for acknowledged it within the timeout: a failover could lose it. An
    /// acquisition failing with it has already released what it took.
    #[error(
        "the grant of the lock {} was acknowledged by only {acknowledged} of {required} replicas; it was not kept",
        shown(.key)
    )]
    NotReplicated {
        /// The name of the lock (or semaphore), `<namespace>:{<key>}`.
        key: String,
        /// How many replicas acknowledged in time.
        acknowledged: usize,
        /// How many were asked for.
        required: usize,
    },
    /// A semaphore acquisition asked for no permit, or for more than the semaphore has: it
    /// could never be granted. Reported before any I/O.
    #[cfg(feature = "semaphore")]
    #[cfg_attr(docsrs, doc(cfg(feature = "semaphore")))]
    #[error(
        "a semaphore of {permits} permits grants 1 to {permits} at once, asked for {requested}"
    )]
    InvalidPermits {
        /// How many permits the call asked for.
        requested: u32,
        /// How many permits the semaphore handle was configured with.
        permits: u32,
    },
    /// The semaphore key is in use (permits held or waited for) with another permit count
    /// than this handle was configured with: nothing was taken. Every handle of a key must
    /// use the same count; it can change once the key is idle.
    #[cfg(feature = "semaphore")]
    #[cfg_attr(docsrs, doc(cfg(feature = "semaphore")))]
    #[error(
        "the semaphore {} is in use with {stored} permits, but this handle was configured with {configured}",
        shown(.key)
    )]
    PermitCountMismatch {
        /// The semaphore's name, `<namespace>:{<key>}`.
        key: String,
        /// The count the key is in use with.
        stored: u32,
        /// The count of this handle.
        configured: u32,
    },
}

impl DistkitError {
    /// Whether the call gave up because time ran out: a bounded lock acquisition
    /// ([`LockError::Timeout`]) or a command that hit the client's command timeout (alone, or
    /// as the cause of an unknown outcome or a partly applied batch).
    pub fn is_timeout(&self) -> bool {
        match self {
            #[cfg(feature = "lock")]
            Self::LockError(LockError::Timeout { .. }) => true,
            Self::RedisError(error) => *error.kind() == fred::error::ErrorKind::Timeout,
            #[cfg(feature = "counter")]
            Self::CounterError(CounterError::OutcomeUnknown { source, .. }) => {
                *source.kind() == fred::error::ErrorKind::Timeout
            }
            #[cfg(feature = "counter")]
            Self::CounterError(CounterError::BatchPartiallyApplied { source, .. }) => {
                source.is_timeout()
            }
            _ => false,
        }
    }

    /// Whether the call failed only because someone else holds what it asked for, not
    /// because anything broke: a one-shot lock attempt that found the lock held
    /// ([`LockError::AcquireFail`]) or ran out of retries ([`LockError::RetriesExhausted`]),
    /// or a rate limiter's `wait` that would have waited too long
    /// ([`DistkitError::RateLimited`]). Back off and try again later.
    pub fn is_contention(&self) -> bool {
        match self {
            #[cfg(feature = "lock")]
            Self::LockError(LockError::AcquireFail | LockError::RetriesExhausted { .. }) => true,
            Self::RateLimited { .. } => true,
            _ => false,
        }
    }

    /// Whether the operation may or may not have been applied: the connection failed after
    /// the command was sent. distkit never resends such a command; retrying it yourself may
    /// apply it twice. True for [`CounterError::OutcomeUnknown`], for a transport failure
    /// reported as [`DistkitError::RedisError`], and for a partly applied batch whose failing
    /// chunk has an unknown outcome. False for a command the client refused before sending
    /// it (fred's `Backpressure` error, when its command queue is full): nothing was sent.
    pub fn is_outcome_unknown(&self) -> bool {
        match self {
            Self::RedisError(error) => {
                is_transport_failure(error) && *error.kind() != fred::error::ErrorKind::Backpressure
            }
            #[cfg(feature = "counter")]
            Self::CounterError(CounterError::OutcomeUnknown { .. }) => true,
            #[cfg(feature = "counter")]
            Self::CounterError(CounterError::BatchPartiallyApplied { source, .. }) => {
                source.is_outcome_unknown()
            }
            _ => false,
        }
    }

    /// Whether the failure came from the connection (I/O, timeout, cancelled, back-pressure)
    /// rather than from a reply of the server or from the arguments: worth retrying once
    /// Redis is reachable, if [`is_outcome_unknown`](Self::is_outcome_unknown) allows.
    pub fn is_transport(&self) -> bool {
        match self {
            Self::RedisError(error) => is_transport_failure(error),
            #[cfg(feature = "counter")]
            Self::CounterError(CounterError::OutcomeUnknown { .. }) => true,
            #[cfg(feature = "counter")]
            Self::CounterError(CounterError::BatchPartiallyApplied { source, .. }) => {
                source.is_transport()
            }
            _ => false,
        }
    }
}

impl DistkitError {
    /// This error, naming `key` where its message does not name a key yet: a
    /// [`RedisError`](Self::RedisError) (a script error, a wrong type, a transport failure)
    /// gets `(<what> "<key>")` after its details, keeping its kind (so
    /// [`is_transport`](Self::is_transport) and the other questions answer as before); a
    /// [`CounterError::OutcomeUnknown`] or [`CounterError::NotReplicated`] without a key gets
    /// `key`. Other errors are returned
    /// as they are. The key is cut after 128 characters.
    ///
    /// distkit calls it on the error path only, at the boundary of a call about one key.
    #[must_use]
    pub fn about_key(self, what: &str, key: &str) -> Self {
        match self {
            Self::RedisError(error) => Self::RedisError(fred::error::Error::new(
                error.kind().clone(),
                format!("{} ({what} {})", error.details(), shown(key)),
            )),
            #[cfg(feature = "counter")]
            Self::CounterError(CounterError::OutcomeUnknown { key: None, source }) => {
                Self::CounterError(CounterError::OutcomeUnknown {
                    key: Some(key.to_owned()),
                    source,
                })
            }
            #[cfg(feature = "counter")]
            Self::CounterError(CounterError::NotReplicated {
                key: None,
                acknowledged,
                required,
            }) => Self::CounterError(CounterError::NotReplicated {
                key: Some(key.to_owned()),
                acknowledged,
                required,
            }),
            other => other,
        }
    }
}

/// The most characters of a key an error message shows (keys are at most 255 bytes, lock
/// and semaphore names twice that).
const MAX_KEY_SHOWN: usize = 128;

/// `key` quoted for an error message, cut after [`MAX_KEY_SHOWN`] characters (the cut
/// marked with how long it was).
fn shown(key: &str) -> String {
    match key.char_indices().nth(MAX_KEY_SHOWN) {
        Some((cut, _)) => format!(
            "{:?}… ({} bytes)",
            key.get(..cut).unwrap_or_default(),
            key.len()
        ),
        None => format!("{key:?}"),
    }
}

/// ` on key "<key>"` for a message about one key, else nothing.
#[cfg(feature = "counter")]
fn on_key(key: Option<&str>) -> String {
    key.map(|key| format!(" on key {}", shown(key)))
        .unwrap_or_default()
}

/// Whether `error` came from the connection rather than from a reply of the server.
///
/// Besides I/O errors, timeouts, cancellations and back-pressure this covers fred's
/// "Too many failed write attempts." and "Failed to route command." (no connection to the node
/// that serves the command's slot, e.g. while a cluster reconfigures or a node restarts; kind
/// `Unknown`, or `Routing` when fred is built with its `replicas` feature): fred gives up after
/// its retries, and an earlier attempt may have been written before its connection dropped.
///
/// For a command that is not idempotent such an error means its outcome is unknown: it may
/// have been applied before the connection failed.
pub fn is_transport_failure(error: &fred::error::Error) -> bool {
    use fred::error::ErrorKind;
    /// What fred says when no connection serves the command (`router::commands`).
    const NOT_ROUTED: &str = "Failed to route command.";
    match error.kind() {
        ErrorKind::IO | ErrorKind::Canceled | ErrorKind::Timeout | ErrorKind::Backpressure => true,
        ErrorKind::Unknown => {
            error
                .details()
                .starts_with("Too many failed write attempts")
                || error.details() == NOT_ROUTED
        }
        ErrorKind::Routing => error.details() == NOT_ROUTED,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use fred::error::{Error as FredError, ErrorKind};

    use super::*;

    #[test]
    fn the_questions_a_caller_asks_have_answers() {
        let timeout: DistkitError = FredError::new(ErrorKind::Timeout, "slow").into();
        assert!(timeout.is_timeout() && timeout.is_transport() && timeout.is_outcome_unknown());
        assert!(!timeout.is_contention());
        let unsent: DistkitError = FredError::new(ErrorKind::Backpressure, "full").into();
        assert!(unsent.is_transport() && !unsent.is_outcome_unknown());
        let refused: DistkitError = FredError::new(ErrorKind::Unknown, "ERR wrong").into();
        assert!(!refused.is_timeout() && !refused.is_transport() && !refused.is_outcome_unknown());
        let closed = DistkitError::Closed;
        assert!(!closed.is_timeout() && !closed.is_contention() && !closed.is_transport());
        let limited = DistkitError::RateLimited {
            retry_after: Duration::from_secs(3),
        };
        assert!(limited.is_contention() && !limited.is_timeout() && !limited.is_transport());
        assert!(!limited.is_outcome_unknown());
        assert_eq!(
            limited.to_string(),
            "rate limited: the call would be admitted in 3s, later than its max_wait allows; \
             nothing was charged"
        );
    }

    #[test]
    fn a_command_fred_could_not_route_to_a_node_is_a_transport_failure_of_unknown_outcome() {
        // fred's words when no connection serves the slot (a cluster reconfiguring): kind
        // Unknown without fred's `replicas` feature (this workspace), Routing with it.
        for kind in [ErrorKind::Unknown, ErrorKind::Routing] {
            let unrouted: DistkitError = FredError::new(kind, "Failed to route command.").into();
            assert!(unrouted.is_transport(), "{unrouted:?}");
            assert!(unrouted.is_outcome_unknown(), "{unrouted:?}");
            assert!(
                !unrouted.is_timeout() && !unrouted.is_contention(),
                "{unrouted:?}"
            );
        }
        // A redirection loop is the servers' answer, and a server's reply is not transport.
        let redirected: DistkitError =
            FredError::new(ErrorKind::Routing, "Too many redirections.").into();
        assert!(!redirected.is_transport());
        let replied: DistkitError =
            FredError::new(ErrorKind::Unknown, "ERR Failed to route command.").into();
        assert!(!replied.is_transport());
    }

    #[cfg(feature = "lock")]
    #[test]
    fn a_held_lock_is_contention_and_a_bounded_wait_a_timeout() {
        assert!(DistkitError::from(LockError::AcquireFail).is_contention());
        assert!(DistkitError::from(LockError::RetriesExhausted { retries: 3 }).is_contention());
        let waited = DistkitError::from(LockError::Timeout {
            waited: Duration::from_millis(5),
        });
        assert!(waited.is_timeout() && !waited.is_contention() && !waited.is_transport());
        assert!(!DistkitError::from(LockError::NotOwner).is_contention());
    }

    #[cfg(feature = "counter")]
    #[test]
    fn an_unknown_outcome_is_transport_and_unknown_even_inside_a_batch() {
        let unknown = DistkitError::from(CounterError::OutcomeUnknown {
            key: None,
            source: FredError::new(ErrorKind::IO, "reset"),
        });
        assert!(unknown.is_outcome_unknown() && unknown.is_transport() && !unknown.is_timeout());
        let partial = DistkitError::from(CounterError::BatchPartiallyApplied {
            applied: 2,
            source: Box::new(unknown),
        });
        assert!(partial.is_outcome_unknown() && partial.is_transport());
        let overflow = DistkitError::from(CounterError::Overflow { key: "k".into() });
        assert!(!overflow.is_outcome_unknown() && !overflow.is_transport());
    }

    #[test]
    fn invalid_key_message_names_the_rule() {
        let error = DistkitError::InvalidRedisKey("a key must not be empty".into());
        assert_eq!(
            error.to_string(),
            "invalid redis key: a key must not be empty"
        );
        assert!(error.source().is_none());
    }

    #[test]
    fn redis_errors_convert_and_keep_their_message() {
        let inner = FredError::new(ErrorKind::IO, "connection reset");
        let error: DistkitError = inner.into();
        assert!(matches!(error, DistkitError::RedisError(_)));
        assert!(error.to_string().contains("connection reset"));
    }

    #[cfg(feature = "counter")]
    #[test]
    fn counter_errors_convert_and_are_lowercase_without_repeating_their_source() {
        let error: DistkitError = CounterError::Overflow { key: "k".into() }.into();
        assert!(matches!(
            error,
            DistkitError::CounterError(CounterError::Overflow { .. })
        ));
        assert!(
            error
                .to_string()
                .starts_with("the operation on \"k\" would overflow")
        );

        let unknown = CounterError::OutcomeUnknown {
            key: None,
            source: FredError::new(ErrorKind::IO, "broken pipe"),
        };
        assert!(!unknown.to_string().contains("broken pipe"));
        assert!(
            unknown
                .source()
                .is_some_and(|s| s.to_string().contains("broken pipe"))
        );
        let text = CounterError::NotAnInteger { key: "x".into() }.to_string();
        assert_eq!(text, "the value stored for \"x\" is not an integer");
        for message in [text, unknown.to_string()] {
            assert!(
                message.chars().next().is_some_and(char::is_lowercase),
                "{message}"
            );
        }
    }

    #[cfg(feature = "lock")]
    #[test]
    fn lock_errors_convert_and_describe_themselves() {
        let error: DistkitError = LockError::AcquireFail.into();
        assert!(matches!(
            error,
            DistkitError::LockError(LockError::AcquireFail)
        ));
        assert_eq!(
            LockError::InvalidTtl(0).to_string(),
            "the lock ttl must be at least 1 ms and at most 30 days, got 0 ms"
        );
        assert!(
            LockError::Timeout {
                waited: Duration::from_millis(5)
            }
            .to_string()
            .contains("5ms")
        );
        assert!(
            LockError::RetriesExhausted { retries: 3 }
                .to_string()
                .contains("3 retries")
        );
        assert!(LockError::NotOwner.to_string().starts_with("the lease"));
        assert!(LockError::InvalidOwner.to_string().contains("empty"));
    }

    #[test]
    fn transport_failures_are_told_apart_from_server_replies() {
        assert!(is_transport_failure(&FredError::new(
            ErrorKind::IO,
            "reset"
        )));
        assert!(is_transport_failure(&FredError::new(
            ErrorKind::Timeout,
            "t"
        )));
        assert!(is_transport_failure(&FredError::new(
            ErrorKind::Unknown,
            "Too many failed write attempts."
        )));
        assert!(!is_transport_failure(&FredError::new(
            ErrorKind::Unknown,
            "ERR wrong"
        )));
        assert!(!is_transport_failure(&FredError::new(
            ErrorKind::InvalidArgument,
            "WRONGTYPE"
        )));
    }

    #[cfg(feature = "lock")]
    #[test]
    fn lock_errors_keep_the_contract_texts_and_a_lost_replication_names_the_lock() {
        let cases = [
            (LockError::AcquireFail, "the lock is held by someone else"),
            (
                LockError::Timeout {
                    waited: Duration::from_millis(250),
                },
                "gave up waiting for the lock after 250ms",
            ),
            (
                LockError::RetriesExhausted { retries: 3 },
                "the lock was still held after 3 retries",
            ),
            (
                LockError::NotOwner,
                "the lease is no longer owned by this guard",
            ),
            (
                LockError::NotReplicated {
                    key: "distkit-locks:{migration}".to_owned(),
                    acknowledged: 0,
                    required: 1,
                },
                "the grant of the lock \"distkit-locks:{migration}\" was acknowledged by only 0 of 1 \
                 replicas; it was not kept",
            ),
        ];
        for (error, text) in cases {
            assert_eq!(DistkitError::from(error).to_string(), text);
        }
    }

    #[cfg(feature = "semaphore")]
    #[test]
    fn a_permit_count_mismatch_names_the_semaphore() {
        let error = LockError::PermitCountMismatch {
            key: "distkit-semaphores:{pool}".into(),
            stored: 3,
            configured: 5,
        };
        assert_eq!(
            error.to_string(),
            "the semaphore \"distkit-semaphores:{pool}\" is in use with 3 permits, but this \
             handle was configured with 5"
        );
    }

    #[test]
    fn a_redis_error_about_a_key_names_it_and_keeps_its_kind_and_code() {
        let wrong_type: DistkitError = FredError::new(
            ErrorKind::InvalidArgument,
            "WRONGTYPE Operation against a key holding the wrong kind of value",
        )
        .into();
        let named = wrong_type.about_key("counter key", "tenant-42");
        assert_eq!(
            named.to_string(),
            "Invalid Argument: WRONGTYPE Operation against a key holding the wrong kind of value \
             (counter key \"tenant-42\")"
        );
        let DistkitError::RedisError(inner) = &named else {
            panic!("{named:?}");
        };
        assert_eq!(*inner.kind(), ErrorKind::InvalidArgument);
        assert_eq!(crate::script::error_code(inner), Some("WRONGTYPE"));
        // A transport failure stays one.
        let reset: DistkitError = FredError::new(ErrorKind::IO, "connection reset").into();
        let reset = reset.about_key("lock", "l:{k}");
        assert!(reset.is_transport() && reset.is_outcome_unknown());
        assert!(reset.to_string().ends_with("(lock \"l:{k}\")"), "{reset}");
        // Errors that are not about Redis are left alone.
        let closed = DistkitError::Closed.about_key("counter key", "k");
        assert_eq!(closed.to_string(), DistkitError::Closed.to_string());
    }

    #[test]
    fn a_huge_key_is_cut_in_messages() {
        let key = "k".repeat(300);
        let error: DistkitError = FredError::new(ErrorKind::Unknown, "ERR x").into();
        let text = error.about_key("counter key", &key).to_string();
        assert!(text.contains("… (300 bytes)"), "{text}");
        assert!(text.len() < 200, "{text}");
    }

    #[cfg(feature = "counter")]
    #[test]
    fn an_unknown_outcome_about_one_key_names_it() {
        let unknown = DistkitError::from(CounterError::OutcomeUnknown {
            key: None,
            source: FredError::new(ErrorKind::Timeout, "slow"),
        });
        assert_eq!(
            unknown.to_string(),
            "the connection failed after the command was sent; whether it was applied is unknown"
        );
        let named = unknown.about_key("counter key", "tenant-42");
        assert_eq!(
            named.to_string(),
            "the connection failed after the command on key \"tenant-42\" was sent; whether it \
             was applied is unknown"
        );
        assert!(named.is_outcome_unknown() && named.is_timeout());
        let not_replicated = DistkitError::from(CounterError::NotReplicated {
            key: None,
            acknowledged: 0,
            required: 1,
        })
        .about_key("counter key", "tenant-42");
        assert_eq!(
            not_replicated.to_string(),
            "the write on key \"tenant-42\" was applied but only 0 of 1 replicas acknowledged \
             it; a failover may lose it"
        );
        // A key already named stays.
        let again = named.about_key("counter key", "other");
        assert!(again.to_string().contains("tenant-42"), "{again}");
    }
}
