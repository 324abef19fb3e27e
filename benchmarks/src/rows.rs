//! The rows of the report: what each one measures, its goal, and how a run's figures are
//! judged against it.

use crate::stats;

/// How a row's figures read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// Calls per second: higher is better.
    CallsPerSecond,
    /// Nanoseconds per call: lower is better.
    NanosPerCall,
    /// A throughput as a multiple of one task's: higher is better.
    TimesOneTask,
    /// Lock handoffs per second: higher is better.
    HandoffsPerSecond,
    /// Milliseconds of waiting: lower is better.
    Millis,
    /// Heap bytes per tracked key: lower is better.
    BytesPerKey,
}

impl Unit {
    /// The unit's suffix in tables.
    pub fn suffix(self) -> &'static str {
        match self {
            Self::CallsPerSecond => "calls/s",
            Self::NanosPerCall => "ns/call",
            Self::TimesOneTask => "× 1 task",
            Self::HandoffsPerSecond => "handoffs/s",
            Self::Millis => "ms",
            Self::BytesPerKey => "B/key",
        }
    }

    /// Whether a larger figure is better.
    pub fn higher_is_better(self) -> bool {
        matches!(
            self,
            Self::CallsPerSecond | Self::TimesOneTask | Self::HandoffsPerSecond
        )
    }

    /// A figure in this unit, rounded for a table.
    pub fn format(self, value: f64) -> String {
        match self {
            Self::CallsPerSecond | Self::HandoffsPerSecond | Self::BytesPerKey => {
                format!("{value:.0}")
            }
            Self::NanosPerCall | Self::Millis => format!("{value:.1}"),
            Self::TimesOneTask => format!("{value:.2}"),
        }
    }
}

/// A row's goal.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Goal {
    /// distkit at least this multiple of the baseline's speed (for a lower-is-better unit,
    /// the baseline's figure over distkit's).
    RatioAtLeast(f64),
    /// distkit's figure at most this.
    AtMost(f64),
    /// distkit's figure at least this.
    AtLeast(f64),
    /// No goal: the row informs.
    None,
}

impl Goal {
    /// The goal as the report states it.
    pub fn describe(self, unit: Unit) -> String {
        match self {
            Self::RatioAtLeast(ratio) => format!("≥ {ratio:.2}× baseline"),
            Self::AtMost(limit) => format!("≤ {} {}", unit.format(limit), unit.suffix()),
            Self::AtLeast(floor) => format!("≥ {} {}", unit.format(floor), unit.suffix()),
            Self::None => "— (informational)".to_owned(),
        }
    }
}

/// One row of the report.
#[derive(Clone, Copy, Debug)]
pub struct RowSpec {
    /// `workload.row`: the workload names the measurement that produces the row.
    pub id: &'static str,
    /// What the row measures.
    pub title: &'static str,
    /// The baseline's name (`—` without one).
    pub baseline: &'static str,
    /// The unit of the absolute figures.
    pub unit: Unit,
    /// The goal.
    pub goal: Goal,
}

impl RowSpec {
    /// The workload that produces this row (the id's part before the dot).
    pub fn workload(&self) -> &'static str {
        self.id.split('.').next().unwrap_or(self.id)
    }
}

/// Every row, in report order.
pub const ROWS: &[RowSpec] = &[
    RowSpec {
        id: "strict.1",
        title: "StrictCounter `inc`, 1 task",
        baseline: "raw EVALSHA of a one-line HINCRBY script",
        unit: Unit::CallsPerSecond,
        goal: Goal::RatioAtLeast(0.9),
    },
    RowSpec {
        id: "strict.64",
        title: "StrictCounter `inc`, 64 tasks over 16 keys",
        baseline: "raw EVALSHA of a one-line HINCRBY script",
        unit: Unit::CallsPerSecond,
        goal: Goal::RatioAtLeast(2.0),
    },
    RowSpec {
        id: "lax.warm",
        title: "LaxCounter warm `inc`, 1 task",
        baseline: "in-process `Mutex<HashMap>` increment (floor)",
        unit: Unit::NanosPerCall,
        goal: Goal::AtMost(20.0),
    },
    RowSpec {
        id: "lax.scaling",
        title: "LaxCounter warm `inc`, 2 tasks on 2 cores vs 1 task",
        baseline: "in-process `Mutex<HashMap>` increment (floor)",
        unit: Unit::TimesOneTask,
        goal: Goal::AtLeast(1.7),
    },
    RowSpec {
        id: "mutex.lock",
        title: "Mutex `lock()` + `release()`, uncontended",
        baseline: "raw SET NX PX + compare-and-delete EVALSHA (two round trips)",
        unit: Unit::CallsPerSecond,
        goal: Goal::RatioAtLeast(0.9),
    },
    RowSpec {
        id: "mutex.try_lock",
        title: "Mutex `try_lock()` + `release()`, uncontended",
        baseline: "raw SET NX PX + compare-and-delete EVALSHA (two round trips)",
        unit: Unit::CallsPerSecond,
        goal: Goal::RatioAtLeast(0.9),
    },
    RowSpec {
        id: "icounter.inc",
        title: "StrictInstanceAwareCounter warm `inc`, 1 task",
        baseline: "raw serial EVALSHA of a one-line HINCRBY script",
        unit: Unit::CallsPerSecond,
        goal: Goal::RatioAtLeast(0.9),
    },
    RowSpec {
        id: "icounter.same_work",
        title: "StrictInstanceAwareCounter warm `inc`, 1 task, against the least Redis work of its model",
        baseline: "raw serial EVALSHA of TIME, ZADD of the lease and two HINCRBYs (slice and total)",
        unit: Unit::CallsPerSecond,
        goal: Goal::RatioAtLeast(0.9),
    },
    RowSpec {
        id: "rwlock.read",
        title: "RwLock `read()` + `release()`, uncontended",
        baseline: "raw SET NX PX + compare-and-delete EVALSHA (two round trips)",
        unit: Unit::CallsPerSecond,
        goal: Goal::RatioAtLeast(0.9),
    },
    RowSpec {
        id: "rwlock.readers",
        title: "RwLock `read()` + `release()`, 8 concurrent readers",
        baseline: "raw two round trips from 8 tasks (a key each)",
        unit: Unit::CallsPerSecond,
        goal: Goal::RatioAtLeast(0.9),
    },
    RowSpec {
        id: "handoff.throughput",
        title: "Mutex handoff, 4 contenders, 1 ms hold",
        baseline: "in-process FIFO handoff (tokio Mutex) around the same Redis work",
        unit: Unit::HandoffsPerSecond,
        goal: Goal::RatioAtLeast(0.95),
    },
    RowSpec {
        id: "handoff.max_wait",
        title: "Mutex handoff, 4 contenders, 1 ms hold: max wait in `lock()`",
        baseline: "in-process FIFO handoff (tokio Mutex) around the same Redis work",
        unit: Unit::Millis,
        goal: Goal::AtMost(10.0),
    },
    RowSpec {
        id: "memory.lax",
        title: "LaxCounter heap bytes per tracked key (counting allocator)",
        baseline: "—",
        unit: Unit::BytesPerKey,
        goal: Goal::AtMost(128.0),
    },
    RowSpec {
        id: "gcra.64",
        title: "GcraLimiter `check`, 64 tasks (a key each), every call admitted",
        baseline: "raw EVALSHA of an equivalent GCRA script (TIME, GET, compare, SET PX) from 64 tasks",
        unit: Unit::CallsPerSecond,
        goal: Goal::RatioAtLeast(0.9),
    },
    RowSpec {
        id: "window.64",
        title: "SlidingWindowLimiter `check`, 64 tasks (a key each), every call admitted",
        baseline: "raw EVALSHA of an equivalent sliding-window script (bucket list and total) from 64 tasks",
        unit: Unit::CallsPerSecond,
        goal: Goal::RatioAtLeast(0.9),
    },
    RowSpec {
        id: "mixed.all",
        title: "Mixed workload: 7 operations cycled by 64 tasks, all operations",
        baseline: "raw EVALSHA of a one-line HINCRBY script from 64 tasks (not the same work: see `mixed.same_ops`)",
        unit: Unit::CallsPerSecond,
        goal: Goal::None,
    },
    RowSpec {
        id: "mixed.same_ops",
        title: "Mixed workload: 7 operations cycled by 64 tasks, all operations (the same rounds as `mixed.all`)",
        baseline: "the same 7 operations done raw, cycled the same way by 64 tasks (see Workloads)",
        unit: Unit::CallsPerSecond,
        goal: Goal::RatioAtLeast(0.9),
    },
    RowSpec {
        id: "client.evalsha.1",
        title: "fred's raw `EVALSHA` of the one-line HINCRBY script (distkit's client, no distkit code), 1 task",
        baseline: "the same `EVALSHA` sent by the `redis` crate (the raw baselines' client)",
        unit: Unit::CallsPerSecond,
        goal: Goal::None,
    },
    RowSpec {
        id: "client.evalsha.64",
        title: "fred's raw `EVALSHA` of the one-line HINCRBY script (distkit's client, no distkit code), 64 tasks over 16 keys",
        baseline: "the same `EVALSHA` sent by the `redis` crate (the raw baselines' client)",
        unit: Unit::CallsPerSecond,
        goal: Goal::None,
    },
];

/// The three contenders' figures of one row in one run (medians of the rounds).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RowRun {
    /// distkit (this workspace).
    pub distkit: f64,
    /// The baseline, where the row has one.
    pub raw: Option<f64>,
    /// distkit 0.7.1, where it has an equivalent.
    pub anchor: Option<f64>,
}

impl RowRun {
    /// distkit's speed as a multiple of the baseline's.
    pub fn distkit_ratio(&self, unit: Unit) -> Option<f64> {
        speed_ratio(unit, self.distkit, self.raw?)
    }

    /// distkit 0.7.1's speed as a multiple of the baseline's.
    pub fn anchor_ratio(&self, unit: Unit) -> Option<f64> {
        speed_ratio(unit, self.anchor?, self.raw?)
    }
}

/// `value`'s speed as a multiple of `baseline`'s: for a lower-is-better unit the baseline's
/// figure over `value`.
fn speed_ratio(unit: Unit, value: f64, baseline: f64) -> Option<f64> {
    let ratio = if unit.higher_is_better() {
        value / baseline
    } else {
        baseline / value
    };
    ratio.is_finite().then_some(ratio)
}

/// Whether one run's figures meet the row's goal (`None` for a row without a goal, or one
/// whose baseline is missing).
pub fn meets(spec: &RowSpec, run: &RowRun) -> Option<bool> {
    match spec.goal {
        Goal::RatioAtLeast(floor) => run.distkit_ratio(spec.unit).map(|ratio| ratio >= floor),
        Goal::AtMost(limit) => Some(run.distkit <= limit),
        Goal::AtLeast(floor) => Some(run.distkit >= floor),
        Goal::None => None,
    }
}

/// A row's verdict over every run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Met in every run.
    Met,
    /// Met in some runs only.
    Partly {
        /// The runs that met it.
        met: usize,
        /// All runs.
        of: usize,
    },
    /// Met in no run.
    NotMet,
    /// No goal to meet.
    NoGoal,
}

/// The verdict of a row over its runs.
pub fn verdict(spec: &RowSpec, runs: &[RowRun]) -> Verdict {
    let judged: Vec<bool> = runs.iter().filter_map(|run| meets(spec, run)).collect();
    let met = judged.iter().filter(|met| **met).count();
    if judged.is_empty() {
        Verdict::NoGoal
    } else if met == judged.len() {
        Verdict::Met
    } else if met == 0 {
        Verdict::NotMet
    } else {
        Verdict::Partly {
            met,
            of: judged.len(),
        }
    }
}

/// The range of a figure over the runs, as `low–high` (one figure when they agree).
pub fn format_range(values: &[f64], format: impl Fn(f64) -> String) -> String {
    match stats::range(values) {
        None => "—".to_owned(),
        Some((low, high)) => {
            let (low, high) = (format(low), format(high));
            if low == high {
                low
            } else {
                format!("{low}–{high}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts() {
        let spec = ROWS[0];
        let good = RowRun {
            distkit: 95.0,
            raw: Some(100.0),
            anchor: None,
        };
        let bad = RowRun {
            distkit: 80.0,
            raw: Some(100.0),
            anchor: None,
        };
        assert_eq!(verdict(&spec, &[good, good]), Verdict::Met);
        assert_eq!(
            verdict(&spec, &[good, bad]),
            Verdict::Partly { met: 1, of: 2 }
        );
        assert_eq!(verdict(&spec, &[bad]), Verdict::NotMet);
        let ns = RowRun {
            distkit: 10.0,
            raw: Some(20.0),
            anchor: Some(40.0),
        };
        assert_eq!(ns.distkit_ratio(Unit::NanosPerCall), Some(2.0));
        assert_eq!(ns.anchor_ratio(Unit::NanosPerCall), Some(0.5));
        assert_eq!(
            format_range(&[0.914, 0.97], |v| format!("{v:.2}")),
            "0.91–0.97"
        );
    }
}
