//! A distributed counting semaphore: leased, fair, fenced permits.
//!
//! "At most N workers call the payment provider at once", "N concurrent exports per
//! tenant": a [`Semaphore`] has [`permits`](SemaphoreOptions::permits) units, and
//! [`acquire_many(n)`](Semaphore::acquire_many) takes `n` of them together, across every
//! process that uses the same key. It is built on the machinery of the
//! [locks](crate::lock) — leases renewed in the background, release notifications with
//! polling as the fallback, fencing tokens, the loss quarantine and replica acknowledgement —
//! and keeps their promises.
//!
//! # Guarantees
//!
//! - **Never more than `permits`.** At no instant do the permits of [`SemaphorePermit`]s
//!   whose state is `Acquired` add up to more than `permits`. Each acquisition holds its
//!   permits under a lease of `ttl` on the Redis server clock, renewed every `ttl / 3`; a
//!   permit turns `Lost` as soon as a renewal is refused or none was confirmed for a ttl
//!   (less 1 %) counted from when the last confirmed request was *sent*, so its holder stops
//!   believing before Redis lets the permits go. A crashed holder's permits come back when
//!   its lease runs out (at most `ttl`).
//! - **Fair.** Waiters are served in arrival order: a waiting
//!   [`acquire_many(n)`](Semaphore::acquire_many) is never overtaken by later, smaller
//!   requests (no starvation of large requests), and a one-shot
//!   [`try_acquire_many`](Semaphore::try_acquire_many) never jumps the line. A crashed
//!   waiter leaves the line within its heartbeat window, `max(4 × retry_interval, 250 ms)`.
//! - **Fenced.** Every acquisition gets a [fencing token](SemaphorePermit::fencing_token)
//!   that strictly increases per key, as for locks: `max(previous + 1, server clock in µs)`.
//! - **One bound per key.** The permit count is stored with the key while any permit is held
//!   or waited for; a handle configured with another count gets
//!   [`LockError::PermitCountMismatch`], never a different bound.
//! - **Errors before I/O.** `n == 0`, `n > permits` ([`LockError::InvalidPermits`]),
//!   `permits == 0` and invalid durations ([`SemaphoreOptions::validate`]) fail before any
//!   Redis call.
//! - **Cancellation-safe.** A cancelled or timed-out acquisition leaves the line at once and
//!   gives back, in the background, permits an attempt in flight may have taken.
//! - `loss_quarantine` and `replica_acks` behave as for locks (see *After data loss* in the
//!   [`lock`](crate::lock) docs); with the quarantine on, waiters keep their place while
//!   grants are refused.
//!
//! # Design
//!
//! All keys of one semaphore share one hash tag, so every script runs in one slot of a
//! Redis Cluster: `<namespace>:{<key>}:sem:…` (namespace `distkit-semaphores` by default).
//!
//! | key | type | holds | expires |
//! |---|---|---|---|
//! | `…:sem:holders` | sorted set | each acquisition's token → its lease deadline (server ms, `TIME`) | with the latest lease; deleted when the last holder leaves |
//! | `…:sem:held` | hash | token → permits held; `#used` → their sum; `#permits` → the count in use | with `…:sem:holders` |
//! | `…:sem:queue` | sorted set | each waiter (`<n> <token>`) → its arrival ticket | with the latest heartbeat; deleted when the line is empty |
//! | `…:sem:alive` | sorted set | each waiter → its heartbeat deadline (server ms) | with `…:sem:queue` |
//! | `…:sem:line` | hash | `next` → the last ticket; `permits` → the count the waiters use | with `…:sem:queue` |
//! | `…:sem:fence` | string | the last fencing token | `ttl` + 10 min after the last grant or renewal, longer while the token is ahead of the clock |
//! | `…:sem:epoch`, `…:sem:quarantine` | string | the loss guard's state (only with `loss_quarantine`) | `ttl` + 10 min after the last check; the quarantine's own length |
//!
//! Releases are announced on the channel `…:sem:released` (sharded in a cluster), only while
//! someone waits. Scripts, each atomic:
//!
//! - `semaphore_acquire` (sent once): drops leases that ran out and waiters whose heartbeat
//!   stopped, then grants `n` when `used + n` plus the requests of every waiter **ahead**
//!   (every waiter, for a newcomer) fit in `permits`. That is what makes the line fair: a
//!   later request can be served before an earlier one only while the earlier one's
//!   permits stay free for it, so none is ever overtaken. Refused waiters join the line
//!   (or renew their heartbeat) in the same call. A grant takes the next fencing token.
//!   A free permit is one round trip.
//! - `semaphore_release` (sent once): removes its own entry only, announces the release
//!   when waiters are in line.
//! - `semaphore_extend` (idempotent): renews the lease if it is still valid, and the
//!   retention of the fence and epoch.
//! - `semaphore_leave_queue`: a cancelled waiter leaves and wakes those behind it.
//! - `semaphore_available` (read only): the free permits.
//!
//! Waiters wait with the locks' acquisition loop: a release notification (one pub/sub
//! subscriber per client, shared with the locks) wakes every waiter of the semaphore, each
//! tries again, and the script decides; notifications never grant anything. Waiters also
//! poll every `retry_interval` (jittered), so a lost notification costs one poll, never
//! correctness; each attempt renews the waiter's heartbeat.
//!
//! ```no_run
//! # use distkit_lock as distkit; // the facade crate, as users name it
//! use std::time::Duration;
//! use distkit::{DistkitError, DistkitRedisKey};
//! use distkit::semaphore::{LockError, LockGuardState, Semaphore, SemaphoreOptions};
//!
//! # async fn example() -> Result<(), DistkitError> {
//! let client = distkit::connect("redis://127.0.0.1:6379").await?;
//! let exports = Semaphore::new(
//!     SemaphoreOptions::builder(DistkitRedisKey::try_from("exports-tenant-42")?, client, 3)
//!         .ttl(Duration::from_secs(10))
//!         .build(),
//! );
//!
//! // A large export takes two of the three slots; it waits its turn in line.
//! match exports.try_acquire_many_for(2, Duration::from_secs(5)).await {
//!     Ok(permit) => {
//!         if permit.get_state().await == LockGuardState::Acquired {
//!             // The export; pass permit.fencing_token() to what it writes.
//!         }
//!         permit.release().await?;
//!     }
//!     Err(DistkitError::LockError(LockError::Timeout { waited, .. })) => {
//!         println!("busy, waited {waited:?}");
//!     }
//!     Err(error) => return Err(error),
//! }
//! # Ok(())
//! # }
//! ```

pub use crate::lock::LockGuardState;
pub use crate::lock::semaphore::{
    Semaphore, SemaphoreOptions, SemaphoreOptionsBuilder, SemaphorePermit,
};
pub use distkit_core::LockError;
