//! Regenerates `BENCHMARKS.md` and `benchmarks/charts/` (see the `distkit_benchmarks` crate
//! docs for the knobs): `cargo run -p distkit-benchmarks --release --bin report`.

use distkit_benchmarks::{BenchResult, ReportConfig, run_report};

/// Counts the bytes the program asks of the allocator, for the memory row.
#[global_allocator]
static ALLOCATOR: &stats_alloc::StatsAlloc<std::alloc::System> = &stats_alloc::INSTRUMENTED_SYSTEM;

fn main() -> BenchResult<()> {
    let config = ReportConfig::from_env()?;
    let report = run_report(&config)?;
    eprintln!(
        "wrote {} and {} chart(s) in {:.0} s",
        report.markdown.display(),
        report.charts.len(),
        report.elapsed.as_secs_f64()
    );
    Ok(())
}
