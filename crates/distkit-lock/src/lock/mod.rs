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
//! only that waiter's client (its *inbox* channel), so one waiter wakes, already holding the
//! lock, however many wait; an [`RwLock`] release is announced on the lock's channel to all
//! its waiters. Waiters also poll every `retry_interval` with jitter, so a handoff takes a
//! couple of round trips, and correctness never depends on a notification arriving.
//!
//! # Fencing tokens
//!
//! Every acquisition (every write acquisition, for a [`RwLock`]) gets a fencing token that
//! strictly increases per lock key. Pass it to the resource you protect, and have the resource
//! refuse tokens older than the newest it has seen: that keeps a holder that lost its lease
//! (a long GC pause, a partition) from writing after the next holder.
//!
//! # Tokens and re-attaching
//!
//! With `owner_id: None` every acquisition has its own random token: locks are not
//! re-entrant and a stale guard can never extend or delete a later holder's lease. With
//! `owner_id: Some(id)`, `id` is the token, and acquiring a lock held by the same id
//! re-attaches to it (e.g. a restarted worker taking back its job).
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
mod options;
mod per_client;
mod renewal;
mod rwlock;
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
    /// Acquired, with this fencing token.
    Granted(u64),
    /// Refused; the script's second value (for `mutex_acquire`, the lock's fencing counter
    /// when it refused; other scripts report something else, or 0).
    Refused(u64),
}

/// Decodes `{ 1, fencing token }` (granted) or `{ 0, n }` (refused) from an acquire script.
fn decode_grant(reply: Value) -> Result<Reply, DistkitError> {
    let parts = match reply {
        Value::Array(parts) => parts,
        _ => Vec::new(),
    };
    let number = |value: &Value| {
        value
            .as_i64()
            .and_then(|number| u64::try_from(number).ok())
            .unwrap_or(0)
    };
    match parts.as_slice() {
        [granted, token, ..] if granted.as_i64() == Some(1) => Ok(Reply::Granted(number(token))),
        [_, second, ..] => Ok(Reply::Refused(number(second))),
        [_] => Ok(Reply::Refused(0)),
        [] => Err(distkit_core::fred::error::Error::new(
            distkit_core::fred::error::ErrorKind::Parse,
            "unexpected reply from a lock script",
        )
        .into()),
    }
}
