//! `BENCHMARKS.md`: the header (the command, how to read the report, the knobs, the
//! machine), the rows with their goals and verdicts, the charts and the detail tables.

use std::fmt::Write as _;

use crate::charts::{HANDOFF_CHART, LAX_CHART, RATIO_CHART, STRICT_CHART};
use crate::measure::ROUNDS;
use crate::report::{CHARTS_DIR, Report};
use crate::rows::{self, ROWS, RowRun, RowSpec, Verdict, format_range};
use crate::stats::{millis, percentile};
use crate::workloads::ScalePoint;

/// The command that regenerates the report.
pub const COMMAND: &str = "cargo run -p distkit-benchmarks --release --bin report";

/// The report as markdown.
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    header(&mut out, report);
    summary(&mut out, report);
    charts(&mut out, report);
    details(&mut out, report);
    out
}

/// A ratio range with its `×`.
fn ratio_range(values: &[f64]) -> String {
    if values.is_empty() {
        "—".to_owned()
    } else {
        format!("{}×", format_range(values, |value| format!("{value:.2}")))
    }
}

fn header(out: &mut String, report: &Report) {
    let config = &report.config;
    let machine = &report.machine;
    let _ = writeln!(out, "# distkit benchmarks\n");
    let _ = writeln!(
        out,
        "Regenerate this file and its charts with one command (it starts a private \
         `redis-server`; with the default rounds a full two-run report takes about 7 minutes \
         on a 2-core machine):\n"
    );
    let _ = writeln!(out, "```sh\n{COMMAND}\n```\n");
    let _ = writeln!(out, "## How to read it\n");
    let _ = writeln!(
        out,
        "- Every workload runs three contenders: **distkit** (this workspace), a **baseline** \
         (the `redis` crate's multiplexed async connection doing the minimal equivalent Redis \
         work, or an in-process floor where distkit does no Redis work) and **distkit 0.7.1** \
         (the published crate, as an anchor).\n\
         - The contenders run in interleaved rounds (A, B, C, A, B, C, A, B, C); each figure is \
         the **median of {ROUNDS} rounds**. Ratios compare figures of the **same run**, so a \
         noisy machine affects all contenders alike.\n\
         - The whole set runs {} time(s); a ratio reads as the **range over the runs** \
         (`0.91–0.97×`). A ratio is the speed of distkit (or 0.7.1) as a multiple of the \
         baseline's: above 1 is faster, whatever the unit (for ns/call and ms, the baseline's \
         figure over distkit's).\n\
         - A goal is **met** when every run meets it.\n\
         - **Absolute numbers are machine-specific** (see the machine below); compare ratios \
         across machines, not absolute figures.\n",
        config.runs
    );
    let _ = writeln!(out, "Knobs (environment variables):\n");
    let _ = writeln!(out, "| variable | default | meaning |\n| --- | --- | --- |");
    let _ = writeln!(
        out,
        "| `DISTKIT_REPORT_ROUND_MS` | `{}` | length of one round of one contender, in ms |",
        crate::config::DEFAULT_ROUND.as_millis()
    );
    let _ = writeln!(
        out,
        "| `DISTKIT_REPORT_RUNS` | `{}` | how many times the whole set runs |",
        crate::config::DEFAULT_RUNS
    );
    let _ = writeln!(
        out,
        "| `DISTKIT_REPORT_ONLY` | all | comma-separated workloads (`{}`) or row ids (`strict.64`: the workload of that row) to run |",
        crate::report::WORKLOADS.join("`, `")
    );
    let _ = writeln!(
        out,
        "| `DISTKIT_REPORT_OUT` | repository root | where `BENCHMARKS.md` and `{CHARTS_DIR}/` are written |"
    );
    let _ = writeln!(
        out,
        "| `REDIS_URL` | private server | a loopback Redis to measure instead |\n"
    );
    let _ = writeln!(out, "## Machine\n");
    let _ = writeln!(
        out,
        "- CPU: {} ({} cores available)\n- Redis: {}\n- Rust: {}\n- Date: {}\n\
         - Rounds of {} ms, {} run(s), workloads: {}; the report took {:.0} s\n",
        machine.cpu,
        machine.cores,
        machine.redis,
        machine.rustc,
        machine.date,
        config.round.as_millis(),
        config.runs,
        report.workloads.join(", "),
        report.elapsed.as_secs_f64()
    );
}

/// The rows of the selected workloads that some run measured.
fn measured_rows(report: &Report) -> Vec<(&'static RowSpec, Vec<RowRun>)> {
    ROWS.iter()
        .filter_map(|spec| {
            let runs: Vec<RowRun> = report
                .runs
                .iter()
                .filter_map(|run| run.rows.get(spec.id).copied())
                .collect();
            (!runs.is_empty()).then_some((spec, runs))
        })
        .collect()
}

fn summary(out: &mut String, report: &Report) {
    let _ = writeln!(out, "## Results\n");
    let _ = writeln!(
        out,
        "| row | what | baseline | goal | distkit ÷ baseline | 0.7.1 ÷ baseline | distkit | baseline | distkit 0.7.1 | verdict |"
    );
    let _ = writeln!(
        out,
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    );
    for (spec, runs) in measured_rows(report) {
        let unit = spec.unit;
        let (ours, theirs): (Vec<f64>, Vec<f64>) = if unit == rows::Unit::TimesOneTask {
            (Vec::new(), Vec::new())
        } else {
            (
                runs.iter()
                    .filter_map(|run| run.distkit_ratio(unit))
                    .collect(),
                runs.iter()
                    .filter_map(|run| run.anchor_ratio(unit))
                    .collect(),
            )
        };
        let absolute = |values: Vec<f64>| {
            if values.is_empty() {
                "—".to_owned()
            } else {
                format!(
                    "{} {}",
                    format_range(&values, |value| unit.format(value)),
                    unit.suffix()
                )
            }
        };
        let verdict = match rows::verdict(spec, &runs) {
            Verdict::Met => "✅ met".to_owned(),
            Verdict::NotMet => "❌ not met".to_owned(),
            Verdict::Partly { met, of } => format!("⚠️ met in {met} of {of} runs"),
            Verdict::NoGoal => "—".to_owned(),
        };
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            spec.id,
            spec.title,
            spec.baseline,
            spec.goal.describe(unit),
            ratio_range(&ours),
            ratio_range(&theirs),
            absolute(runs.iter().map(|run| run.distkit).collect()),
            absolute(runs.iter().filter_map(|run| run.raw).collect()),
            absolute(runs.iter().filter_map(|run| run.anchor).collect()),
            verdict
        );
    }
    let _ = writeln!(
        out,
        "\nAbsolute columns give the range of the per-run medians. `lax.scaling` compares 2 \
         tasks with 1 task of the same contender (the baseline's two tasks share one \
         `Mutex`); `handoff.max_wait` is the largest wait of all rounds of a run.\n"
    );
}

fn charts(out: &mut String, report: &Report) {
    let _ = writeln!(out, "## Charts\n");
    let captions = [
        (
            RATIO_CHART,
            "Every row's speed relative to its baseline: distkit and distkit 0.7.1",
        ),
        (STRICT_CHART, "StrictCounter inc throughput vs tasks"),
        (LAX_CHART, "LaxCounter warm inc throughput vs tasks"),
        (HANDOFF_CHART, "Mutex handoff wait distribution"),
    ];
    for (file, caption) in captions {
        if report.charts.iter().any(|path| path.ends_with(file)) {
            let _ = writeln!(out, "![{caption}]({CHARTS_DIR}/{file})\n");
        }
    }
}

/// A table of a throughput series, ranges over the runs.
fn scaling_table(out: &mut String, title: &str, raw_label: &str, runs: &[&Vec<ScalePoint>]) {
    let mut tasks: Vec<usize> = runs
        .iter()
        .flat_map(|points| points.iter())
        .map(|point| point.tasks)
        .collect();
    tasks.sort_unstable();
    tasks.dedup();
    if tasks.is_empty() {
        return;
    }
    let _ = writeln!(out, "### {title}\n");
    let _ = writeln!(
        out,
        "| tasks | distkit calls/s | {raw_label} calls/s | distkit 0.7.1 calls/s | distkit ÷ baseline | 0.7.1 ÷ baseline |"
    );
    let _ = writeln!(out, "| ---: | ---: | ---: | ---: | ---: | ---: |");
    for count in tasks {
        let figures: Vec<RowRun> = runs
            .iter()
            .flat_map(|points| points.iter())
            .filter(|point| point.tasks == count)
            .map(|point| point.figures)
            .collect();
        let column = |values: Vec<f64>| format_range(&values, |value| format!("{value:.0}"));
        let unit = rows::Unit::CallsPerSecond;
        let _ = writeln!(
            out,
            "| {count} | {} | {} | {} | {} | {} |",
            column(figures.iter().map(|run| run.distkit).collect()),
            column(figures.iter().filter_map(|run| run.raw).collect()),
            column(figures.iter().filter_map(|run| run.anchor).collect()),
            ratio_range(
                &figures
                    .iter()
                    .filter_map(|run| run.distkit_ratio(unit))
                    .collect::<Vec<_>>()
            ),
            ratio_range(
                &figures
                    .iter()
                    .filter_map(|run| run.anchor_ratio(unit))
                    .collect::<Vec<_>>()
            ),
        );
    }
    let _ = writeln!(out);
}

/// The costs of the primitives a warm lax `inc` is built from, ranges over the runs.
fn lax_floors(out: &mut String, report: &Report) {
    let mut names: Vec<&'static str> = Vec::new();
    for floor in report.runs.iter().flat_map(|run| run.lax_floors.iter()) {
        if !names.contains(&floor.what) {
            names.push(floor.what);
        }
    }
    if names.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "### What a warm lax `inc` is made of (this machine, one thread, same runs)\n"
    );
    let _ = writeln!(out, "| primitive | ns per call |");
    let _ = writeln!(out, "| --- | ---: |");
    for name in names {
        let values: Vec<f64> = report
            .runs
            .iter()
            .flat_map(|run| run.lax_floors.iter())
            .filter(|floor| floor.what == name)
            .map(|floor| floor.nanos)
            .collect();
        let _ = writeln!(
            out,
            "| {name} | {} |",
            format_range(&values, |value| format!("{value:.1}"))
        );
    }
    let _ = writeln!(
        out,
        "\nThe increments of a warm key are shared with the flush task, so a warm `inc` makes at \
         least one atomic read-modify-write besides finding its key and the measuring loop's own \
         cost; distkit's makes two (its shard's lock and unlock), like the `Mutex<HashMap>` floor \
         of `lax.warm`.\n"
    );
}

fn details(out: &mut String, report: &Report) {
    let _ = writeln!(out, "## Details\n");
    let strict: Vec<&Vec<ScalePoint>> = report.runs.iter().map(|run| &run.strict_scaling).collect();
    scaling_table(
        out,
        "StrictCounter `inc` vs tasks (16 keys)",
        "raw EVALSHA",
        &strict,
    );
    let lax: Vec<&Vec<ScalePoint>> = report.runs.iter().map(|run| &run.lax_scaling).collect();
    scaling_table(
        out,
        "LaxCounter warm `inc` vs tasks (a key per task, 2 worker threads)",
        "`Mutex<HashMap>`",
        &lax,
    );
    lax_floors(out, report);
    let handoffs: Vec<_> = report
        .runs
        .iter()
        .enumerate()
        .filter_map(|(index, run)| run.handoff.as_ref().map(|waits| (index, waits)))
        .collect();
    if !handoffs.is_empty() {
        let _ = writeln!(
            out,
            "### Mutex handoff waits (4 contenders, 1 ms hold; every wait in `lock()` of a run's rounds)\n"
        );
        let _ = writeln!(
            out,
            "distkit 0.7.1 runs with its documented defaults: a waiter polls every 50 ms.\n"
        );
        let _ = writeln!(
            out,
            "The handover is the time from one holder's release returning to the next holder \
             holding the lock (the FIFO's: its `SET NX PX` answered).\n"
        );
        let _ = writeln!(
            out,
            "| run | contender | handoffs | p50 ms | p99 ms | max ms | handover p50 ms | handover p90 ms |"
        );
        let _ = writeln!(
            out,
            "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |"
        );
        for (index, waits) in handoffs {
            let handovers = report
                .runs
                .get(index)
                .and_then(|run| run.handovers.as_ref());
            for (name, sorted, handed) in [
                (
                    "distkit",
                    &waits.distkit,
                    handovers.map(|handed| &handed.distkit),
                ),
                (
                    "in-process FIFO + same Redis work",
                    &waits.fifo,
                    handovers.map(|handed| &handed.fifo),
                ),
                (
                    "distkit 0.7.1",
                    &waits.anchor,
                    handovers.map(|handed| &handed.anchor),
                ),
            ] {
                let handover = |permille: usize| {
                    handed.filter(|handed| !handed.is_empty()).map_or_else(
                        || "—".to_owned(),
                        |handed| format!("{:.3}", millis(percentile(handed, permille))),
                    )
                };
                let _ = writeln!(
                    out,
                    "| {} | {name} | {} | {:.2} | {:.2} | {:.2} | {} | {} |",
                    index.saturating_add(1),
                    sorted.len(),
                    millis(percentile(sorted, 500)),
                    millis(percentile(sorted, 990)),
                    millis(percentile(sorted, 1000)),
                    handover(500),
                    handover(900),
                );
            }
        }
        let _ = writeln!(out);
    }
    let mixed: Vec<_> = report
        .runs
        .iter()
        .enumerate()
        .filter(|(_, run)| !run.mixed_ops.is_empty())
        .collect();
    if !mixed.is_empty() {
        let _ = writeln!(
            out,
            "### Mixed workload per operation (64 tasks; latencies of all rounds of a run)\n"
        );
        let _ = writeln!(
            out,
            "| run | operation | distkit calls/s | distkit p50 ms | distkit p99 ms | 0.7.1 calls/s | 0.7.1 p50 ms | 0.7.1 p99 ms |"
        );
        let _ = writeln!(
            out,
            "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |"
        );
        for (index, run) in mixed {
            for op in &run.mixed_ops {
                let _ = writeln!(
                    out,
                    "| {} | {} | {:.0} | {:.2} | {:.2} | {:.0} | {:.2} | {:.2} |",
                    index.saturating_add(1),
                    op.name,
                    op.distkit_rate,
                    op.distkit.0,
                    op.distkit.1,
                    op.anchor_rate,
                    op.anchor.0,
                    op.anchor.1,
                );
            }
        }
        let _ = writeln!(out);
    }
    let _ = writeln!(
        out,
        "### Workloads\n\n\
         - `strict`: `StrictCounter::inc` from 1, 4, 16, 64 tasks over 16 keys; baseline \
         `EVALSHA` of `return redis.call('HINCRBY', KEYS[1], ARGV[1], ARGV[2])`.\n\
         - `lax`: warm `LaxCounter::inc` (the key is already tracked) from 1, 2, 4, 16, 64 \
         tasks, each on a key of its own; baseline a `std::sync::Mutex<HashMap>` \
         increment (one map shared by all tasks).\n\
         - `mutex`, `rwlock`: acquire + release on a fresh lock; baseline `SET key token NX PX \
         30000` then a compare-and-delete script (two round trips); 8 readers use a key each \
         in the baseline.\n\
         - `icounter`: warm `StrictInstanceAwareCounter::inc` from one task; baseline serial \
         `EVALSHA` of the HINCRBY script.\n\
         - `handoff`: 4 tasks, each with its own connection, loop lock → 1 ms sleep → release; \
         the baseline orders them with a fair in-process `tokio::sync::Mutex` and does the raw \
         lock's two round trips around the hold.\n\
         - `memory`: heap bytes live after tracking {} keys of 15 bytes (`inc_all` in chunks of \
         5000, then a flush; 0.7.1, which has no `flush`, gets 300 ms to flush) as counted by \
         `stats_alloc`, divided by the key count.\n\
         - `gcra`, `window`: `GcraLimiter::check` (1 000 000 per second, bursts of 1 000 000) \
         and `SlidingWindowLimiter::check` (10 s of 100 ms buckets, limit 10^9) from 64 tasks, \
         a key each, every call admitted; baseline `EVALSHA` from the same 64 tasks of the \
         least script doing the same job (GCRA: `TIME`, `GET`, compare, `SET PX`; window: a \
         list of buckets and a total), the baselines of `cargo bench -p distkit-ratelimit \
         --bench ratelimit`. distkit 0.7.1 has no limiter.\n\
         - `mixed`: the workload of `distkit/benches/mixed.rs`: 64 tasks each cycle through \
         strict `inc`, lax `inc`, instance-aware `inc`, lax instance-aware `inc`, `Mutex` \
         `lock` + `release` (8 mutexes, so 8 tasks share each), `RwLock` `read` + `release` (one \
         lock, readers only) and strict `get`, on 16 keys. Every task waits for each operation \
         before its next, so the mix runs at the pace of its slowest operation: the contended \
         mutex (see its p50 in the table above). `mixed.all` compares it with one-line \
         `HINCRBY` scripts from 64 tasks: not the same work (no lock, no waiting, one \
         pipelined round trip per call), kept for continuity. `mixed.same_ops` compares the \
         same rounds with the same seven operations done raw and cycled the same way: \
         `EVALSHA` of the `HINCRBY` script, in-process `Mutex<HashMap>` increments for both lax \
         counters, `EVALSHA` of the `icounter.same_work` script, a fair in-process \
         `tokio::sync::Mutex` per mutex around the raw lock's two round trips (contended the \
         same way, handed over in process with no Redis work), the raw lock's two round trips \
         on a key of the task's own for the read lock, and one `HGET`. What would move the \
         ratio is the contended mutex: its handover (release, notification, the waiter's \
         confirming acquire) costs round trips the in-process FIFO does not make.\n\
         - `client`: the client library's share. The strict rows' `EVALSHA` of the one-line \
         `HINCRBY` script, sent raw by fred (the client distkit runs on; no distkit code) from \
         1 and 64 tasks, against the same call sent by the `redis` crate, the client of every \
         raw baseline above. fred 10 flushes its socket after every `EVALSHA`, so concurrent \
         script calls reach Redis one write each, where the `redis` crate writes whatever is \
         queued at once: `client.evalsha.64` is the ceiling, on this machine, of every 64-task \
         row whose baseline is a raw `EVALSHA` (`gcra.64`, `window.64`, the raw calls of \
         `strict.64` and `mixed.same_ops`).",
        report.config.memory_keys
    );
}
