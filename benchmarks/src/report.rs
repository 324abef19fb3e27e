//! Runs the workloads the configuration selects, as many times as it asks, and writes
//! `BENCHMARKS.md` and the charts.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use distkit_test_support::TestRedis;

use crate::config::{ReportConfig, check_loopback};
use crate::machine::Machine;
use crate::measure::{Targets, within};
use crate::workloads::{self, RunResults};
use crate::{BenchResult, charts, markdown};

/// The charts directory, relative to the output directory.
pub const CHARTS_DIR: &str = "benchmarks/charts";
/// The report's file name, in the output directory.
pub const REPORT_FILE: &str = "BENCHMARKS.md";

/// Every workload, in the order a run measures them.
pub const WORKLOADS: [&str; 11] = [
    "strict", "lax", "mutex", "icounter", "rwlock", "handoff", "memory", "gcra", "window", "mixed",
    "client",
];

/// What a report measured and wrote.
#[derive(Clone, Debug)]
pub struct Report {
    /// The settings it ran with.
    pub config: ReportConfig,
    /// The machine it ran on.
    pub machine: Machine,
    /// Every run's results.
    pub runs: Vec<RunResults>,
    /// The workloads it ran.
    pub workloads: Vec<&'static str>,
    /// How long it took.
    pub elapsed: Duration,
    /// The markdown file written.
    pub markdown: PathBuf,
    /// The charts written.
    pub charts: Vec<PathBuf>,
}

/// Runs the report: starts a private redis-server (unless `config.redis_url` names one),
/// measures every selected workload `config.runs` times on a two-worker tokio runtime, and
/// writes `BENCHMARKS.md` and the charts into `config.out_dir`. Progress goes to stderr.
///
/// # Errors
///
/// A missing `redis-server`, a failed measurement, or a file that cannot be written.
pub fn run_report(config: &ReportConfig) -> BenchResult<Report> {
    let started = Instant::now();
    let workloads: Vec<&'static str> = WORKLOADS
        .iter()
        .copied()
        .filter(|workload| config.runs_workload(workload))
        .collect();
    if workloads.is_empty() {
        return Err(format!(
            "DISTKIT_REPORT_ONLY selects no workload; pick among {}",
            WORKLOADS.join(", ")
        )
        .into());
    }
    let redis = match &config.redis_url {
        Some(url) => {
            check_loopback(url)?;
            None
        }
        None => {
            if std::process::Command::new("redis-server")
                .arg("--version")
                .output()
                .is_err()
            {
                return Err(
                    "redis-server was not found on PATH; install it or set REDIS_URL".into(),
                );
            }
            Some(TestRedis::start_standalone())
        }
    };
    let url = match (&config.redis_url, &redis) {
        (Some(url), _) => url.clone(),
        (None, Some(server)) => server.url().to_owned(),
        (None, None) => return Err("no Redis to measure".into()),
    };
    // A private server unless REDIS_URL was set: either way, loopback only.
    check_loopback(&url)?;
    let budget = config
        .round
        .saturating_mul(200)
        .saturating_add(Duration::from_secs(120));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let (runs, redis_version) = runtime.block_on(async {
        let targets = Targets::connect(&url).await?;
        let redis_version = server_version(&targets).await;
        let mut runs = Vec::new();
        for run in 0..config.runs {
            let mut results = RunResults::default();
            for workload in &workloads {
                eprintln!(
                    "[{:>6.1}s] run {}/{}: {workload}",
                    started.elapsed().as_secs_f64(),
                    run.saturating_add(1),
                    config.runs
                );
                // Boxed: the workloads' futures are large.
                within(
                    budget,
                    Box::pin(run_workload(workload, &targets, config, &mut results)),
                )
                .await??;
            }
            runs.push(results);
        }
        Ok::<_, crate::BenchError>((runs, redis_version))
    })?;
    runtime.shutdown_timeout(Duration::from_secs(5));
    drop(redis);
    let machine = Machine::detect(redis_version);
    let charts_dir = config.out_dir.join(CHARTS_DIR);
    std::fs::create_dir_all(&charts_dir)?;
    let mut report = Report {
        config: config.clone(),
        machine,
        runs,
        workloads,
        elapsed: started.elapsed(),
        markdown: config.out_dir.join(REPORT_FILE),
        charts: Vec::new(),
    };
    report.charts = charts::write_all(&report, &charts_dir)?;
    std::fs::write(&report.markdown, markdown::render(&report))?;
    Ok(report)
}

/// Measures one workload into `results`.
async fn run_workload(
    workload: &str,
    targets: &Targets,
    config: &ReportConfig,
    results: &mut RunResults,
) -> BenchResult<()> {
    let round = config.round;
    match workload {
        "strict" => workloads::strict::run(targets, round, results).await,
        "lax" => workloads::lax::run(targets, round, results).await,
        "mutex" => workloads::locks::run_mutex(targets, round, results).await,
        "icounter" => workloads::icounter::run(targets, round, results).await,
        "rwlock" => workloads::locks::run_rwlock(targets, round, results).await,
        "handoff" => workloads::handoff::run(&targets.url, round, results).await,
        "memory" => workloads::memory::run(targets, config.memory_keys, results).await,
        "gcra" => workloads::ratelimit::run_gcra(targets, round, results).await,
        "window" => workloads::ratelimit::run_window(targets, round, results).await,
        "mixed" => workloads::mixed::run(targets, round, results).await,
        "client" => workloads::client::run(targets, round, results).await,
        other => Err(format!("unknown workload {other}").into()),
    }
}

/// The measured server's `redis_version`, from `INFO server`.
async fn server_version(targets: &Targets) -> Option<String> {
    let mut connection = targets.raw.clone();
    let info: String = within(
        Duration::from_secs(5),
        redis::cmd("INFO")
            .arg("server")
            .query_async(&mut connection),
    )
    .await
    .ok()?
    .ok()?;
    info.lines()
        .find_map(|line| line.strip_prefix("redis_version:"))
        .map(|version| version.trim().to_owned())
}
