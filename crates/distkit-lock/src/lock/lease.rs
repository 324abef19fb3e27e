//! The lease behind every guard: background renewal, the guard state, `extend`, `release`
//! and the release on drop.

use std::sync::{Arc, Mutex as StdMutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use distkit_core::fred::clients::Client;
use distkit_core::fred::types::Value;
use distkit_core::script::{CallPolicy, LuaScript};
use distkit_core::{DistkitError, LockError};
use tokio::runtime::Handle;
use tokio::task::JoinHandle;

use super::LockGuardState;
use crate::scripts::{OWNER_EXTEND, OWNER_RELEASE, RW_EXTEND_READ, RW_RELEASE_READ};

/// What kind of entry a lease is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LeaseKind {
    /// An owner key holding the token: a mutex, or the writer of a rwlock (`keys[0]`).
    Owner,
    /// A reader entry of a rwlock (`keys` are the six rwlock keys).
    Reader,
}

/// Where a lease lives in Redis.
#[derive(Debug)]
pub(crate) struct LeaseTarget {
    pub(crate) client: Client,
    pub(crate) kind: LeaseKind,
    pub(crate) keys: Vec<String>,
    pub(crate) channel: String,
    pub(crate) token: String,
    pub(crate) ttl: Duration,
}

impl LeaseTarget {
    fn ttl_ms(&self) -> i64 {
        i64::try_from(self.ttl.as_millis()).unwrap_or(i64::MAX)
    }

    fn key_refs(&self) -> Vec<&str> {
        let keys = self.keys.iter().map(String::as_str);
        match self.kind {
            LeaseKind::Owner => keys.take(1).collect(),
            LeaseKind::Reader => keys.collect(),
        }
    }

    /// Renews the lease to a full ttl if it still holds the token (`owner_extend` or
    /// `rw_extend_read`, atomic). Idempotent, so it may be replayed after a reconnect.
    pub(crate) async fn extend_once(&self, timeout: Duration) -> Result<bool, DistkitError> {
        let script: &LuaScript = match self.kind {
            LeaseKind::Owner => &OWNER_EXTEND,
            LeaseKind::Reader => &RW_EXTEND_READ,
        };
        let args = vec![Value::from(self.token.as_str()), Value::from(self.ttl_ms())];
        let reply = script
            .run(
                &self.client,
                &self.key_refs(),
                args,
                CallPolicy::RETRY.with_timeout(timeout),
            )
            .await?;
        Ok(reply.as_i64() == Some(1))
    }

    /// Deletes the lease if it still holds the token and announces the release
    /// (`owner_release` or `rw_release_read`, atomic, sent once).
    pub(crate) async fn release_once(&self) -> Result<bool, DistkitError> {
        let script: &LuaScript = match self.kind {
            LeaseKind::Owner => &OWNER_RELEASE,
            LeaseKind::Reader => &RW_RELEASE_READ,
        };
        let args = vec![
            Value::from(self.token.as_str()),
            Value::from(self.channel.as_str()),
        ];
        let reply = script
            .run(&self.client, &self.key_refs(), args, CallPolicy::ONCE)
            .await?;
        Ok(reply.as_i64() == Some(1))
    }
}

/// What the holder knows about its lease.
#[derive(Debug)]
struct Health {
    released: bool,
    refused: bool,
    /// When the last confirmed renewal (or the acquisition) was *sent*: the lease in Redis
    /// runs at least a ttl from then, so a holder that counts from here learns of a lapse
    /// no later than Redis expires the key.
    confirmed_at: Instant,
}

/// The lease of one guard.
#[derive(Debug)]
pub(crate) struct Lease {
    target: Arc<LeaseTarget>,
    health: Arc<StdMutex<Health>>,
    renewal: JoinHandle<()>,
    runtime: Handle,
    fencing_token: u64,
    attempt: usize,
    finished: bool,
}

/// How long a lease may go unconfirmed before it is `Lost`: the ttl less a 1 % allowance for
/// the local clock running slower than the server's.
fn safe_lifetime(ttl: Duration) -> Duration {
    ttl.saturating_sub(ttl.checked_div(100).unwrap_or_default())
}

/// The renewal period: a third of the ttl, at least 1 ms.
fn renewal_period(ttl: Duration) -> Duration {
    ttl.checked_div(3)
        .unwrap_or_default()
        .max(Duration::from_millis(1))
}

impl Lease {
    /// Starts the renewal of a lease acquired by a request sent at `sent_at`. Must be called
    /// within a Tokio runtime (acquisition is async, so it always is).
    pub(crate) fn start(
        target: LeaseTarget,
        sent_at: Instant,
        fencing_token: u64,
        attempt: usize,
    ) -> Self {
        let target = Arc::new(target);
        let health = Arc::new(StdMutex::new(Health {
            released: false,
            refused: false,
            confirmed_at: sent_at,
        }));
        let runtime = Handle::current();
        let renewal = runtime.spawn(renew(Arc::clone(&target), Arc::downgrade(&health)));
        Self {
            target,
            health,
            renewal,
            runtime,
            fencing_token,
            attempt,
            finished: false,
        }
    }

    pub(crate) fn state(&self) -> LockGuardState {
        let health = self.health.lock().unwrap_or_else(PoisonError::into_inner);
        if health.released {
            LockGuardState::Released
        } else if health.refused || health.confirmed_at.elapsed() >= safe_lifetime(self.target.ttl)
        {
            LockGuardState::Lost
        } else {
            LockGuardState::Acquired
        }
    }

    pub(crate) fn fencing_token(&self) -> u64 {
        self.fencing_token
    }

    pub(crate) fn attempt(&self) -> usize {
        self.attempt
    }

    pub(crate) async fn extend(&self) -> Result<(), DistkitError> {
        let sent_at = Instant::now();
        let renewed = self.target.extend_once(self.target.ttl).await?;
        record_renewal(&self.health, sent_at, renewed);
        if renewed {
            Ok(())
        } else {
            Err(LockError::NotOwner.into())
        }
    }

    pub(crate) async fn release(mut self) -> Result<LockGuardState, DistkitError> {
        self.finished = true;
        self.renewal.abort();
        let released = self.target.release_once().await;
        self.health
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .released = true;
        Ok(if released? {
            LockGuardState::Released
        } else {
            LockGuardState::Lost
        })
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        self.renewal.abort();
        let target = Arc::clone(&self.target);
        // Handle::spawn works from any thread, in a runtime or not; on a runtime that is
        // shutting down the task is dropped and the lease expires after its ttl.
        drop(self.runtime.spawn(async move {
            if let Err(error) = target.release_once().await {
                tracing::warn!(%error, "releasing a dropped lock guard failed; the lease expires after its ttl");
            }
        }));
    }
}

fn record_renewal(health: &StdMutex<Health>, sent_at: Instant, renewed: bool) {
    let mut health = health.lock().unwrap_or_else(PoisonError::into_inner);
    if renewed {
        health.refused = false;
        if sent_at > health.confirmed_at {
            health.confirmed_at = sent_at;
        }
    } else {
        health.refused = true;
    }
}

async fn renew(target: Arc<LeaseTarget>, health: Weak<StdMutex<Health>>) {
    let period = renewal_period(target.ttl);
    loop {
        tokio::time::sleep(period).await;
        if health.strong_count() == 0 {
            return;
        }
        let sent_at = Instant::now();
        let outcome = target.extend_once(period).await;
        let Some(health) = health.upgrade() else {
            return;
        };
        match outcome {
            Ok(renewed) => {
                if !renewed {
                    tracing::warn!(
                        token = target.token.as_str(),
                        "lock lease renewal refused: the lease is lost"
                    );
                }
                record_renewal(&health, sent_at, renewed);
            }
            Err(error) => tracing::warn!(%error, "lock lease renewal failed; retrying"),
        }
    }
}

/// Releases what an acquisition attempt may have taken when the attempt is abandoned
/// before its outcome is known (cancelled, or cut off by a transport error).
#[derive(Debug)]
pub(crate) struct AttemptGuard {
    target: Option<LeaseTarget>,
}

impl AttemptGuard {
    pub(crate) fn arm(target: LeaseTarget) -> Self {
        Self {
            target: Some(target),
        }
    }

    /// The outcome is known: nothing to clean up; returns the target for the lease.
    pub(crate) fn disarm(mut self) -> Option<LeaseTarget> {
        self.target.take()
    }
}

impl Drop for AttemptGuard {
    fn drop(&mut self) {
        if let Some(target) = self.target.take() {
            let _cleanup = distkit_core::task::spawn_if_in_runtime(async move {
                if let Err(error) = target.release_once().await {
                    tracing::warn!(%error, "cleaning up an abandoned lock attempt failed; its lease expires after its ttl");
                }
            });
        }
    }
}
