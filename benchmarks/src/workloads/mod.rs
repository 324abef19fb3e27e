//! The workloads: each measures distkit, its baseline and distkit 0.7.1 in interleaved
//! rounds and returns the figures of its rows.

pub mod client;
pub mod handoff;
pub mod icounter;
pub mod lax;
pub mod locks;
pub mod memory;
pub mod mixed;
pub mod ratelimit;
pub mod strict;

use std::collections::BTreeMap;

use crate::rows::RowRun;
use crate::stats;

/// One point of a throughput-versus-tasks series.
#[derive(Clone, Copy, Debug)]
pub struct ScalePoint {
    /// The number of tasks.
    pub tasks: usize,
    /// The contenders' calls per second (medians of the rounds).
    pub figures: RowRun,
}

/// The three contenders' handoff wait latencies of one run (every round's, sorted).
#[derive(Clone, Debug, Default)]
pub struct HandoffWaits {
    /// distkit's waits in `lock()`.
    pub distkit: Vec<std::time::Duration>,
    /// The in-process FIFO handoff's waits.
    pub fifo: Vec<std::time::Duration>,
    /// distkit 0.7.1's waits in `lock()`.
    pub anchor: Vec<std::time::Duration>,
}

/// The cost of one in-process primitive a warm lax `inc` is built from.
#[derive(Clone, Copy, Debug)]
pub struct Floor {
    /// What was measured.
    pub what: &'static str,
    /// Nanoseconds per call (the median of the rounds).
    pub nanos: f64,
}

/// One operation of the mixed workload: p50 and p99 latency of distkit and 0.7.1, in ms.
#[derive(Clone, Debug)]
pub struct MixedOp {
    /// The operation.
    pub name: &'static str,
    /// distkit's calls per second of this operation.
    pub distkit_rate: f64,
    /// distkit's p50 and p99, in ms.
    pub distkit: (f64, f64),
    /// distkit 0.7.1's calls per second of this operation.
    pub anchor_rate: f64,
    /// distkit 0.7.1's p50 and p99, in ms.
    pub anchor: (f64, f64),
}

/// Everything one run measured.
#[derive(Clone, Debug, Default)]
pub struct RunResults {
    /// The figures of each row, by row id.
    pub rows: BTreeMap<&'static str, RowRun>,
    /// StrictCounter `inc` calls per second against tasks.
    pub strict_scaling: Vec<ScalePoint>,
    /// LaxCounter warm `inc` calls per second against tasks.
    pub lax_scaling: Vec<ScalePoint>,
    /// What the parts of a warm lax `inc` cost on this machine, ns per call.
    pub lax_floors: Vec<Floor>,
    /// The handoff workload's wait latencies.
    pub handoff: Option<HandoffWaits>,
    /// The handoff workload's handovers: from one holder's release returning to the next
    /// holder holding.
    pub handovers: Option<HandoffWaits>,
    /// The mixed workload's operations.
    pub mixed_ops: Vec<MixedOp>,
}

/// The medians of three contenders' round figures, as a row's figures.
pub fn medians(samples: &crate::measure::Samples) -> RowRun {
    RowRun {
        distkit: stats::median(&samples.distkit).unwrap_or(f64::NAN),
        raw: stats::median(&samples.raw),
        anchor: stats::median(&samples.anchor),
    }
}
