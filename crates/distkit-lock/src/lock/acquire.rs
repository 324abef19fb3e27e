//! The acquisition loop shared by every acquisition style of every lock.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use distkit_core::task::jittered;
use distkit_core::{DistkitError, LockError};

use super::notify::{Interest, ReleaseNotifier};

/// How long an acquisition may keep trying.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Patience {
    /// One attempt; held → [`LockError::AcquireFail`].
    Once,
    /// `1 + n` attempts; held → [`LockError::RetriesExhausted`].
    Retries(usize),
    /// Until the duration ran out; held → [`LockError::Timeout`].
    Within(Duration),
    /// Until acquired, or until the optional bound ran out → [`LockError::Timeout`].
    Wait(Option<Duration>),
}

impl Patience {
    fn bound(self) -> Option<Duration> {
        match self {
            Self::Within(bound) => Some(bound),
            Self::Wait(bound) => bound,
            Self::Once | Self::Retries(_) => None,
        }
    }

    /// Whether a waiting writer should hold a place in the queue.
    pub(crate) fn waits(self) -> bool {
        self != Self::Once
    }
}

/// Where and how to wait between attempts.
#[derive(Debug)]
pub(crate) struct Waiting<'a> {
    pub(crate) notifier: &'a Arc<ReleaseNotifier>,
    pub(crate) channel: &'a str,
    pub(crate) retry_interval: Duration,
}

/// Calls `attempt(index)` until it returns `Some`, waiting between attempts for a release
/// notification or the jittered `retry_interval`, whichever comes first. Returns what the
/// winning attempt returned and its 0-based index.
///
/// # Errors
///
/// The error of an attempt, or the [`LockError`] of `patience` running out.
pub(crate) async fn acquire<T, F, Fut>(
    waiting: Waiting<'_>,
    patience: Patience,
    mut attempt: F,
) -> Result<(T, usize), DistkitError>
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = Result<Option<T>, DistkitError>>,
{
    let started = Instant::now();
    let bound = patience.bound();
    let remaining = |started: Instant| bound.map(|bound| bound.saturating_sub(started.elapsed()));
    let mut interest: Option<Interest> = None;
    let mut index = 0_usize;
    loop {
        let notify = interest.as_ref().map(Interest::notify);
        let notified = notify.as_ref().map(|notify| {
            let mut notified = Box::pin(notify.notified());
            notified.as_mut().enable();
            notified
        });
        let outcome = match remaining(started) {
            // An attempt must not outlive the caller's bound (its cleanup guard covers a
            // cut-off attempt that did acquire).
            Some(left) if index > 0 => tokio::time::timeout(left, attempt(index))
                .await
                .unwrap_or(Ok(None)),
            _ => attempt(index).await,
        };
        if let Some(acquired) = outcome? {
            return Ok((acquired, index));
        }
        match patience {
            Patience::Once => return Err(LockError::AcquireFail.into()),
            Patience::Retries(retries) if index >= retries => {
                return Err(LockError::RetriesExhausted { retries }.into());
            }
            _ => {}
        }
        let left = remaining(started);
        if left == Some(Duration::ZERO) {
            return Err(LockError::Timeout {
                waited: started.elapsed(),
            }
            .into());
        }
        index = index.saturating_add(1);
        if interest.is_none() {
            // Subscribe, then try again at once: a release between the first attempt and the
            // subscription must not be missed.
            interest = Some(waiting.notifier.watch(waiting.channel).await);
            continue;
        }
        let pause = if waiting.retry_interval.is_zero() {
            Duration::ZERO
        } else {
            let pause = jittered(waiting.retry_interval, 0.5);
            left.map_or(pause, |left| pause.min(left))
        };
        match notified {
            _ if pause.is_zero() => tokio::task::yield_now().await,
            Some(notified) => drop(tokio::time::timeout(pause, notified).await),
            None => tokio::time::sleep(pause).await,
        }
    }
}
