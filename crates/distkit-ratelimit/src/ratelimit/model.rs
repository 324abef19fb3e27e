//! Reference models of the limiters, driven with explicit times (tests only).

use std::collections::VecDeque;

/// What a model decided: admitted or not, the quota left, retry_after (µs for GCRA, ms for
/// the sliding window; 0 when admitted), the limit reported (the burst, the window's limit)
/// and reset_after (same units: until the full limit is back).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Outcome {
    pub(crate) allowed: bool,
    pub(crate) remaining: u64,
    pub(crate) retry_after: u64,
    pub(crate) limit: u64,
    pub(crate) reset_after: u64,
}

/// GCRA as a leaky bucket ("continuous-state" form), in exact integers: time is counted in
/// ticks of `1/limit` µs, so one unit fills the bucket by `period_us` ticks and the bucket
/// drains one tick per tick. Independent of the TAT form the script uses.
#[derive(Clone, Debug, Default)]
pub(crate) struct LeakyBucket {
    level: u128,
    last: u128,
}

impl LeakyBucket {
    /// What [`check`](Self::check) would decide, without charging anything.
    pub(crate) fn peek(
        &self,
        now_us: u64,
        limit: u64,
        period_us: u64,
        burst: u64,
        cost: u64,
    ) -> Outcome {
        self.clone().check(now_us, limit, period_us, burst, cost)
    }

    pub(crate) fn check(
        &mut self,
        now_us: u64,
        limit: u64,
        period_us: u64,
        burst: u64,
        cost: u64,
    ) -> Outcome {
        let now = u128::from(now_us) * u128::from(limit);
        let drained = self.level.saturating_sub(now.saturating_sub(self.last));
        let capacity = u128::from(burst) * u128::from(period_us);
        let charged = drained + u128::from(cost) * u128::from(period_us);
        // The bucket is empty (the full burst back) once the level has drained: one tick
        // per tick, in whole µs rounded up.
        let reset = |level: u128| u64::try_from(level.div_ceil(u128::from(limit))).unwrap();
        if charged <= capacity {
            self.level = charged;
            self.last = now;
            return Outcome {
                allowed: true,
                remaining: u64::try_from((capacity - charged) / u128::from(period_us)).unwrap(),
                retry_after: 0,
                limit: burst,
                reset_after: reset(charged),
            };
        }
        // Not charged: the state is left as it was (draining continues from `last`).
        let excess = charged - capacity;
        Outcome {
            allowed: false,
            remaining: u64::try_from((capacity - drained) / u128::from(period_us)).unwrap(),
            retry_after: u64::try_from(excess.div_ceil(u128::from(limit))).unwrap(),
            limit: burst,
            reset_after: reset(drained),
        }
    }
}

/// The sliding window: buckets `(start_ms, count, last_ms)` oldest first, as trypema's
/// absolute limiter keeps them, except that a bucket counts until its newest call (`last`)
/// is a window old, not its start.
#[derive(Clone, Debug, Default)]
pub(crate) struct Window {
    buckets: VecDeque<(u64, u64, u64)>,
}

impl Window {
    /// A window holding `buckets` `(start_ms, count, last_ms)`, oldest first.
    pub(crate) fn with_buckets(buckets: impl IntoIterator<Item = (u64, u64, u64)>) -> Self {
        Self {
            buckets: buckets.into_iter().collect(),
        }
    }

    /// What [`check`](Self::check) would decide, without charging anything.
    pub(crate) fn peek(
        &self,
        now_ms: u64,
        limit: u64,
        window_ms: u64,
        bucket_ms: u64,
        cost: u64,
    ) -> Outcome {
        self.clone()
            .check(now_ms, limit, window_ms, bucket_ms, cost)
    }

    pub(crate) fn check(
        &mut self,
        now_ms: u64,
        limit: u64,
        window_ms: u64,
        bucket_ms: u64,
        cost: u64,
    ) -> Outcome {
        while let Some(&(_, _, last)) = self.buckets.front() {
            if now_ms - last > window_ms {
                self.buckets.pop_front();
            } else {
                break;
            }
        }
        let total: u64 = self.buckets.iter().map(|(_, count, _)| count).sum();
        if total + cost > limit {
            let mut freed = 0;
            let mut retry_after = 0;
            for &(_, count, last) in &self.buckets {
                freed += count;
                retry_after = retry_after.max(last + window_ms + 1 - now_ms);
                if total - freed + cost <= limit {
                    break;
                }
            }
            return Outcome {
                allowed: false,
                remaining: limit.saturating_sub(total),
                retry_after,
                limit,
                reset_after: self.reset_after(now_ms, window_ms),
            };
        }
        match self.buckets.back_mut() {
            Some((start, count, last)) if now_ms - *start <= bucket_ms => {
                *count += cost;
                // Later than now only for a bucket read without a last time (start + bucket).
                *last = (*last).max(now_ms);
            }
            _ => self.buckets.push_back((now_ms, cost, now_ms)),
        }
        Outcome {
            allowed: true,
            remaining: limit - total - cost,
            retry_after: 0,
            limit,
            reset_after: self.reset_after(now_ms, window_ms),
        }
    }

    /// The time until the newest bucket leaves the window (0 when there is none).
    fn reset_after(&self, now_ms: u64, window_ms: u64) -> u64 {
        self.buckets.back().map_or(0, |&(_, _, last)| {
            (last + window_ms + 1).saturating_sub(now_ms)
        })
    }
}
