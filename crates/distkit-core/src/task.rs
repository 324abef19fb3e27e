//! Helpers for the background work of the primitives: lax flushes, heartbeats and lease
//! renewals.
//!
//! Background tasks hold a `Weak` reference to their owner and end when it is dropped; they
//! are spawned on the runtime of the caller when there is one ([`spawn_if_in_runtime`]), so a
//! constructor called outside a runtime never panics and can defer the spawn instead.

use std::cell::Cell;
use std::future::Future;
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::task::JoinHandle;

/// Spawns `future` on the current Tokio runtime, or returns `None` outside a runtime.
pub fn spawn_if_in_runtime<F>(future: F) -> Option<JoinHandle<F::Output>>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    Handle::try_current()
        .ok()
        .map(|handle| handle.spawn(future))
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
}
