//! Medians, percentiles and ranges of measured figures.

use std::time::Duration;

/// The median of `values` (the mean of the middle two for an even count); `None` when empty.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    sorted.sort_by(f64::total_cmp);
    let middle = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        sorted.get(middle).copied()
    } else {
        let low = sorted.get(middle.checked_sub(1)?)?;
        let high = sorted.get(middle)?;
        Some(low.midpoint(*high))
    }
}

/// The smallest and largest of `values`; `None` when empty.
pub fn range(values: &[f64]) -> Option<(f64, f64)> {
    let mut finite = values.iter().copied().filter(|v| v.is_finite());
    let first = finite.next()?;
    Some(finite.fold((first, first), |(low, high), v| (low.min(v), high.max(v))))
}

/// The `permille`th per-mille of `sorted` (nearest rank, so 1000 is the maximum);
/// zero when empty.
pub fn percentile(sorted: &[Duration], permille: usize) -> Duration {
    let last = sorted.len().saturating_sub(1);
    let rank = last.saturating_mul(permille.min(1000)) / 1000;
    sorted.get(rank).copied().unwrap_or_default()
}

/// A duration in milliseconds.
pub fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_ranges() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
        assert_eq!(range(&[2.0, 5.0, 1.0]), Some((1.0, 5.0)));
        let sorted: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&sorted, 500), Duration::from_millis(50));
        assert_eq!(percentile(&sorted, 1000), Duration::from_millis(100));
    }
}
