//! Distributed locks: a [`Mutex`] and a writer-preferring [`RwLock`], mirroring
//! `tokio::sync`, with RAII guards.
//!
//! # Leases and guard state
//!
//! A lock is held under a lease of `ttl` (30 s by default) that the guard renews every
//! `ttl / 3` in the background. If the holder crashes, the lease runs out and another process
//! can take the lock after at most `ttl`. A guard tracks its lease in a
//! [`LockGuardState`]: `Acquired` while renewals are confirmed; `Lost` as soon as a renewal
//! is refused, or none has been confirmed for a whole ttl on the local monotonic clock — so a
//! holder cut off from Redis learns it before Redis lets anybody else in; `Released` after a
//! release. Check the state before work that must not run twice.
//!
//! # Acquisition styles
//!
//! | call | waits | when held |
//! |---|---|---|
//! | `lock()` / `read()` / `write()` | until acquired, or `max_wait` | `Timeout` after `max_wait` |
//! | `try_lock()` / `try_read()` / `try_write()` | no (one attempt) | `AcquireFail` |
//! | `try_*_for(timeout)` | up to `timeout` | `Timeout { waited }` |
//! | `try_*_with_retries(n)` | up to `1 + n` attempts | `RetriesExhausted { retries }` |
//!
//! Waiters are woken by notifications, through one pub/sub subscriber per client shared by
//! all its locks: a [`Mutex`] release hands the lock to the first waiter in line and tells
//! only that waiter's client (its *inbox* channel), so one waiter wakes however many wait,
//! and confirms the handover in one round trip (a notification only wakes: only Redis's
//! reply to an attempt makes a holder); an [`RwLock`] release is announced on the lock's channel to all
//! its waiters. Waiters also poll every `retry_interval` with jitter, so a handoff takes a
//! couple of round trips, and correctness never depends on a notification arriving.
//!
//! # Fencing tokens
//!
//! Every acquisition (every write acquisition, for a [`RwLock`]) gets a fencing token that
//! strictly increases per lock key; a read lease of a [`RwLock`] gets a token at least every
//! earlier one and below every later write token. Pass it to the resource you protect, and have the resource
//! refuse tokens older than the newest it has seen: that keeps a holder that lost its lease
//! (a long GC pause, a partition) from writing after the next holder.
//!
//! A token is `max(previous token + 1, the Redis server clock in microseconds)`, computed in
//! the granting script (`TIME`) and stored in the lock's fence key (`…:fence`,
//! `…:rw:fence`). Tokens are therefore large (about 1.8 × 10¹⁵ in 2026) and not
//! consecutive; they are exact integers below 2⁶³.
//!
//! # Retention: no key lives forever
//!
//! Every key of a lock expires, so locks on many distinct names (one per order, per
//! document) do not fill Redis. Leases, queues and handovers expire with themselves; the
//! fence and the loss guard's epoch expire [`ttl + key_retention`](LockOptions::key_retention)
//! (10 minutes by default) after the lock's last grant or renewal, the fence later while
//! its counter runs ahead of the server clock. Tokens still only rise across that expiry:
//! the fence expires only once the server clock has passed its last token by the
//! retention, and the next token is then the clock itself — above every earlier token
//! unless the server clock stepped back by more than the retention.
//!
//! # After data loss
//!
//! What holds when Redis loses a lock's keys (a restart without persistence, a failover to a
//! replica that missed the last writes, eviction, `FLUSHALL`):
//!
//! - **Fencing tokens never go backwards** (readers' tokens included: a read lease gets
//!   `max(last token, clock)` like a writer's floor). While the fence key is kept, tokens
//!   strictly increase whatever the server clock does (the `+ 1` part). After the key was lost, the
//!   next token comes from the clock alone, so it is above every earlier token as long as
//!   the clock of the server issuing it is not behind the clock that issued the earlier ones
//!   by more than the time between the two grants (a restart, or a failover to a replica
//!   whose clock is within that of the old primary; with
//!   [`loss_quarantine`](LockOptions::loss_quarantine) at least a ttl passes between them,
//!   so a clock step of up to a ttl is absorbed). A clock that stepped back while the
//!   state was kept makes tokens run ahead of the clock by that step; a loss before the
//!   clock caught up could then issue a smaller token.
//! - **The old holder learns it lost the lock** at its next renewal (at most `ttl / 3`
//!   later): its key is gone or someone else's, the renewal is refused, and the guard turns
//!   `Lost` ([`lost`](MutexGuard::lost) completes).
//! - **No second believing holder, with [`loss_quarantine`](LockOptions::loss_quarantine)
//!   on** (off by default): a grant is refused until every lease that Redis may have
//!   forgotten has surely run out — for one ttl after a grant script finds the lock's state
//!   written by another Redis process (its run id, kept in `…:epoch`: a restart that kept
//!   data, a failover), and, for a lock without any state on a server that started less
//!   than a ttl ago, until the server has been up for a ttl and 1 s. Mutex handovers are
//!   grants too: during a quarantine a release deletes the lock instead of handing it over.
//!   The old holder's belief ends within a ttl of its last confirmed renewal, which was sent
//!   before the loss; the next grant comes at least a ttl after the loss. This assumes that
//!   every lock object of a key uses the same ttl and the same `loss_quarantine`, and that the local clock of a holder does
//!   not run more than 1 % slower than the server's (the lease margin of every guard).
//! - **What Redis cannot tell, and so distkit cannot catch**: a restarted server without
//!   persistence looks like a fresh one, so with the quarantine on the first use of a lock
//!   on a server younger than a ttl waits too (tests and development servers included);
//!   and a lock with no state at all on a server up for longer than a ttl is granted at
//!   once — its first use or its first use after its keys' retention, but also its keys
//!   lost to `FLUSHALL`, to eviction (use `maxmemory-policy noeviction`: every lock key has
//!   an expiry, so `volatile-*` policies may evict them too), or to a failover to a replica
//!   that received none of this lock's writes for longer than its retention. Without the quarantine, a new holder may be
//!   granted right after a loss while the old one still believes it holds the lock until
//!   its next renewal (up to `ttl / 3`); its fencing token is still the larger one.
//! - **Replica acknowledgement** ([`replica_acks`](LockOptions::replica_acks)) makes a
//!   grant or renewal count only once that many replicas confirmed it (`WAIT`): a failover
//!   to an acknowledging replica then keeps the lock's state. Redis replication stays
//!   asynchronous — the promoted replica may be one that did not acknowledge — so combine it
//!   with the quarantine for the guarantee above. With Sentinel, ask for every replica: a
//!   forced failover moves the replicas one by one, and an old primary that still has one
//!   of them can acknowledge a grant the new primary never sees. A grant whose client
//!   reconnected before its `WAIT` answered counts as unacknowledged. The failover tests
//!   (ten Sentinel and ten cluster failovers under load, both options on) saw no
//!   overlapping holds and no fencing token out of order.
//!
//! # Tokens and re-attaching
//!
//! With `owner_id: None` every acquisition has its own random token: locks are not
//! re-entrant and a stale guard can never extend or delete a later holder's lease. With
//! `owner_id: Some(id)`, `id` is the token, and acquiring a lock held by the same id
//! re-attaches to it (e.g. a restarted worker taking back its job). A re-attach is an
//! acquisition like any other: it gets a fencing token above every earlier one of the lock,
//! also when the lock was just handed over to the same id (another guard of the id may
//! already hold the handover's token), so the guard it supersedes is fenced off.
//!
//! A cancelled acquisition (dropped, or cut off by its time bound) releases in the background
//! whatever it may have taken, except with an explicit `owner_id`: then the lock (a mutex, or
//! a rwlock's write lock) may stay held by that id for up to a ttl, for the next acquisition
//! with the id to re-attach to, because a leftover cannot be told from another guard's hold
//! with the same id.
//!
//! ```no_run
//! # use distkit_lock as distkit; // the facade crate, as users name it
//! use distkit::DistkitRedisKey;
//! use distkit::lock::{LockGuardState, LockOptions, Mutex};
//!
//! # async fn example() -> Result<(), distkit::DistkitError> {
//! let client = distkit::connect("redis://127.0.0.1:6379").await?;
//! let mutex = Mutex::new(LockOptions::new(DistkitRedisKey::try_from("nightly-report")?, client));
//!
//! let guard = mutex.lock().await?;
//! if guard.get_state().await == LockGuardState::Acquired {
//!     // The protected work; hand guard.fencing_token() to the resource.
//! }
//! guard.release().await?;
//! # Ok(())
//! # }
//! ```

mod acquire;
mod lease;
mod mutex;
mod notify;
mod observe;
mod options;
mod per_client;
mod renewal;
mod rwlock;
#[cfg(feature = "semaphore")]
pub(crate) mod semaphore;
mod state;

use distkit_core::DistkitError;
pub use distkit_core::LockError;
use distkit_core::fred::types::Value;
pub use mutex::{Mutex, MutexGuard};
pub use options::{LockOptions, LockOptionsBuilder};
pub use rwlock::{RwLock, RwLockReadGuard, RwLockWriteGuard};
pub use state::LockGuardState;

/// The per-client services every lock object holds: the shared release subscriber and the
/// shared renewal scheduler. Holding them keeps them (and their connection and task) alive
/// between acquisitions instead of making them anew for each.
#[derive(Debug)]
struct LockServices {
    notifier: std::sync::Arc<notify::ReleaseNotifier>,
    renewals: std::sync::Arc<renewal::RenewalScheduler>,
}

impl LockServices {
    fn of(client: &distkit_core::fred::clients::Client) -> Self {
        Self {
            notifier: notify::ReleaseNotifier::of(client),
            renewals: renewal::RenewalScheduler::of(client),
        }
    }
}

/// An acquire script's reply: `{ 1, fencing token }` or `{ 0, n }`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reply {
    /// Acquired, with this fencing token; `true` when the attempt confirmed a handover
    /// (`mutex_acquire` replies `{ 1, fencing token, 1 }`).
    Granted(u64, bool),
    /// Refused (the script's second value, a fencing counter or a queue position, is not
    /// used).
    Refused,
}

/// Decodes `{ 1, fencing token }` (granted) or `{ 0, n }` (refused) from an acquire script.
fn decode_grant(reply: Value) -> Result<Reply, DistkitError> {
    let parts = match reply {
        Value::Array(parts) => parts,
        _ => Vec::new(),
    };
    // Fencing tokens come as decimal strings (exact for every int64), counts as integers.
    let number = |value: &Value| {
        value
            .as_i64()
            .or_else(|| value.as_str().and_then(|text| text.parse::<i64>().ok()))
            .and_then(|number| u64::try_from(number).ok())
            .unwrap_or(0)
    };
    match parts.as_slice() {
        [granted, token, rest @ ..] if granted.as_i64() == Some(1) => Ok(Reply::Granted(
            number(token),
            rest.first().and_then(Value::as_i64) == Some(1),
        )),
        [_, ..] => Ok(Reply::Refused),
        [] => Err(distkit_core::fred::error::Error::new(
            distkit_core::fred::error::ErrorKind::Parse,
            "unexpected reply from a lock script",
        )
        .into()),
    }
}
