//! Helpers for the background work of the primitives: lax flushes, heartbeats, lease
//! renewals, the lock notifier, group commit and replica acknowledgement.
//!
//! # One background runtime, owned by the library
//!
//! Background work never runs on a runtime of the caller. A service may run several runtimes,
//! build one per test or per call, bridge from `spawn_blocking` with `Handle::block_on`, or
//! drop its runtime as `main` returns; a task left on such a runtime stops when that runtime
//! idles or ends, while another runtime still uses the object. So every background task of
//! distkit is spawned on **one runtime the library owns** ([`spawn_background`]): a
//! multi-thread Tokio runtime with a single worker thread named `distkit-background`, built on
//! first use and kept for the life of the process (it is never shut down, so nothing spawned
//! on it is ever dropped unfinished while the process lives).
//!
//! The alternative, work driven by whichever caller happens to be active, would need every
//! primitive to run its timers (lax flush cadence, lease renewal, heartbeats) from calls that
//! may never come; a thread of our own is simpler to reason about and costs one idle thread.
//!
//! # Which runtime must outlive which
//!
//! The user's fred [`Client`](fred::clients::Client) stays theirs: its connection tasks live
//! on the runtime where it was connected, and every command, from any runtime, goes through
//! them. Background work keeps running when the runtime that *first touched a distkit object*
//! ends, but it can only reach Redis while the runtime that **connected the client** runs.
//! Keep that runtime alive until every distkit object built on the client was closed or
//! dropped (for `#[tokio::main]`, that is the whole of `main`).
//!
//! # Work that must finish before a drop returns
//!
//! A drop that owes Redis something (the last handle of a lax counter with pending deltas, a
//! lock guard that still holds its lease) hands the work to the background runtime and, where
//! the dropping thread may block, waits for it, bounded ([`finish_before_returning`]): outside
//! any runtime, and on a multi-thread runtime (through
//! [`block_in_place`](tokio::task::block_in_place)). On a current-thread runtime blocking could
//! deadlock (the client's connection may live on that very thread), so the work is left to
//! finish in the background: the explicit `close()` / `release()` is the way to be sure there.

use std::cell::Cell;
use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;

use tokio::runtime::{Handle, Runtime, RuntimeFlavor};
use tokio::task::JoinHandle;

/// The library's background runtime; `None` when it could not be built (then background
/// work falls back to the caller's runtime, as before).
static BACKGROUND: OnceLock<Option<Runtime>> = OnceLock::new();

thread_local! {
    /// Whether this thread belongs to the background runtime.
    static ON_BACKGROUND_THREAD: Cell<bool> = const { Cell::new(false) };
}

fn background_runtime() -> Option<&'static Runtime> {
    BACKGROUND
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .max_blocking_threads(1)
                .thread_name("distkit-background")
                .on_thread_start(|| ON_BACKGROUND_THREAD.with(|flag| flag.set(true)))
                .enable_all()
                .build()
                .map_err(|error| {
                    tracing::error!(
                        target: "distkit::core",
                        %error,
                        "the distkit background runtime could not be built; background work runs on the caller's runtime"
                    );
                })
                .ok()
        })
        .as_ref()
}

/// The handle of the library's background runtime (built on first use), or `None` when it
/// could not be built.
pub fn background_handle() -> Option<&'static Handle> {
    background_runtime().map(Runtime::handle)
}

/// Whether the calling thread is a thread of the background runtime.
pub fn on_background_thread() -> bool {
    ON_BACKGROUND_THREAD.with(Cell::get)
}

/// Spawns background work on the library's runtime (see the module docs); falls back to the
/// current runtime when the library's runtime could not be built, and returns `None` only
/// when neither exists. Works from any thread, in a runtime or not.
///
/// The work logs to the `tracing` subscriber that is the caller's default when it is
/// spawned (a scoped one included), as it would on the caller's own runtime.
pub fn spawn_background<F>(future: F) -> Option<JoinHandle<F::Output>>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    use tracing::instrument::WithSubscriber;
    let future = future.with_current_subscriber();
    match background_handle() {
        Some(handle) => Some(handle.spawn(future)),
        None => spawn_if_in_runtime(future),
    }
}

/// Spawns `future` on the current Tokio runtime, or returns `None` outside a runtime.
///
/// Only for work the caller awaits itself; background work uses [`spawn_background`].
pub fn spawn_if_in_runtime<F>(future: F) -> Option<JoinHandle<F::Output>>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    Handle::try_current()
        .ok()
        .map(|handle| handle.spawn(future))
}

/// How long a drop waits for work of its own on `client` (see [`finish_before_returning`]):
/// the client's command timeout plus a second, or 10 s when the client has no command
/// timeout.
pub fn drop_bound(client: &fred::clients::Client) -> Duration {
    use fred::interfaces::ClientLike;
    let per_command = client.perf_config().default_command_timeout;
    if per_command.is_zero() {
        Duration::from_secs(10)
    } else {
        per_command.saturating_add(Duration::from_secs(1))
    }
}

/// How a drop's work ended, as seen by [`finish_before_returning`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropWork {
    /// The work finished before the call returned.
    Finished,
    /// The work runs on in the background: the calling thread could not block (a
    /// current-thread runtime, or a thread of the background runtime itself).
    Detached,
    /// The work did not finish within the bound; it runs on in the background.
    TimedOut,
    /// No runtime could run the work at all; it was dropped.
    NotStarted,
}

/// Runs `work` on the background runtime and, where the calling thread may block, waits up
/// to `bound` for it to finish (see the module docs). Never panics.
///
/// Blocking is allowed outside any runtime and on a multi-thread runtime (through
/// [`tokio::task::block_in_place`], which hands the worker's other tasks to another thread
/// meanwhile); it is not on a current-thread runtime nor on the background runtime's own
/// threads.
pub fn finish_before_returning<F>(work: F, bound: Duration) -> DropWork
where
    F: Future<Output = ()> + Send + 'static,
{
    let (done, finished) = std::sync::mpsc::sync_channel::<()>(1);
    let spawned = spawn_background(async move {
        work.await;
        let _ = done.send(());
    });
    if spawned.is_none() {
        return DropWork::NotStarted;
    }
    let wait = || match finished.recv_timeout(bound) {
        Ok(()) => DropWork::Finished,
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => DropWork::TimedOut,
        // The task ended without sending: it was dropped (its runtime is shutting down).
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => DropWork::NotStarted,
    };
    if on_background_thread() {
        return DropWork::Detached;
    }
    match Handle::try_current().map(|handle| handle.runtime_flavor()) {
        Err(_) => wait(),
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(wait),
        Ok(_) => DropWork::Detached,
    }
}

thread_local! {
    static JITTER_STATE: Cell<u64> = Cell::new(seed());
}

fn seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0x9e37_79b9_7f4a_7c15, |elapsed| {
            u64::from(elapsed.subsec_nanos())
        });
    let local = 0_u8;
    let address = std::ptr::addr_of!(local) as usize as u64;
    (nanos ^ address.rotate_left(32)) | 1
}

/// A pseudo-random `u64` (xorshift, per thread): for jitter, never for anything secret.
pub fn random_u64() -> u64 {
    JITTER_STATE.with(|state| {
        let mut x = state.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        state.set(x);
        x
    })
}

/// `base` scaled by a random factor in `[1 - spread, 1 + spread]`, with `spread` in `[0, 1]`.
pub fn jittered(base: Duration, spread: f64) -> Duration {
    let spread = spread.clamp(0.0, 1.0);
    #[expect(clippy::cast_precision_loss, reason = "jitter needs no precision")]
    let unit = (random_u64() >> 11) as f64 / (1_u64 << 53) as f64;
    let factor = 1.0 - spread + 2.0 * spread * unit;
    // Never panics: a product too large for a `Duration` keeps `base`.
    Duration::try_from_secs_f64(base.as_secs_f64() * factor).unwrap_or(base)
}

/// Exponential backoff for retrying background work after a failure.
#[derive(Clone, Debug)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    current: Duration,
}

impl Backoff {
    /// Backoff starting at `initial` and doubling up to `max`.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            current: initial,
        }
    }

    /// The next delay (jittered by ±25 %); each call doubles the base up to the maximum.
    pub fn next_delay(&mut self) -> Duration {
        let delay = jittered(self.current, 0.25);
        self.current = self.current.saturating_mul(2).min(self.max);
        delay
    }

    /// Back to the initial delay, after a success.
    pub fn reset(&mut self) {
        self.current = self.initial;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_its_spread() {
        let base = Duration::from_millis(100);
        for _ in 0..1_000 {
            let delay = jittered(base, 0.2);
            assert!(
                delay >= Duration::from_millis(80) && delay <= Duration::from_millis(120),
                "{delay:?}"
            );
        }
        assert_eq!(jittered(base, 0.0), base);
    }

    #[test]
    fn backoff_doubles_up_to_its_maximum_and_resets() {
        let mut backoff = Backoff::new(Duration::from_millis(10), Duration::from_millis(40));
        let delays: Vec<_> = (0..5).map(|_| backoff.next_delay()).collect();
        assert!(delays[0] <= Duration::from_micros(12_500));
        assert!(delays[4] >= Duration::from_millis(30) && delays[4] <= Duration::from_millis(50));
        backoff.reset();
        assert!(backoff.next_delay() <= Duration::from_micros(12_500));
    }

    #[test]
    fn spawning_outside_a_runtime_returns_none() {
        assert!(spawn_if_in_runtime(async {}).is_none());
    }

    #[test]
    fn background_work_runs_with_no_runtime_of_the_caller() {
        let (done, finished) = std::sync::mpsc::channel();
        let task = spawn_background(async move {
            tokio::time::sleep(Duration::from_millis(5)).await;
            let _ = done.send(on_background_thread());
        });
        assert!(task.is_some());
        let on_background = finished.recv_timeout(Duration::from_secs(10)).unwrap();
        assert!(on_background, "the work ran on a thread of another runtime");
        assert!(!on_background_thread());
    }

    #[test]
    fn background_work_outlives_the_runtime_that_spawned_it() {
        let (done, finished) = std::sync::mpsc::channel();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            spawn_background(async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                let _ = done.send(());
            });
        });
        drop(runtime);
        finished.recv_timeout(Duration::from_secs(10)).unwrap();
    }

    #[test]
    fn a_drop_outside_any_runtime_waits_for_its_work() {
        let (done, finished) = std::sync::mpsc::channel();
        let outcome = finish_before_returning(
            async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                let _ = done.send(());
            },
            Duration::from_secs(10),
        );
        assert_eq!(outcome, DropWork::Finished);
        assert!(finished.try_recv().is_ok());
    }

    #[test]
    fn a_drop_on_a_multi_thread_runtime_waits_for_its_work() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let outcome = runtime.block_on(async {
            tokio::spawn(async {
                finish_before_returning(
                    tokio::time::sleep(Duration::from_millis(20)),
                    Duration::from_secs(10),
                )
            })
            .await
            .unwrap()
        });
        assert_eq!(outcome, DropWork::Finished);
    }

    #[test]
    fn a_drop_on_a_current_thread_runtime_never_blocks_it() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (done, finished) = std::sync::mpsc::channel();
        let outcome = runtime.block_on(async move {
            finish_before_returning(
                async move {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    let _ = done.send(());
                },
                Duration::from_secs(10),
            )
        });
        assert_eq!(outcome, DropWork::Detached);
        drop(runtime);
        // The work still finishes, on the background runtime.
        finished.recv_timeout(Duration::from_secs(10)).unwrap();
    }

    #[test]
    fn a_drop_that_outlasts_its_bound_returns_at_the_bound() {
        let started = std::time::Instant::now();
        let outcome = finish_before_returning(
            async { tokio::time::sleep(Duration::from_secs(30)).await },
            Duration::from_millis(50),
        );
        assert_eq!(outcome, DropWork::TimedOut);
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
