//! A bounded run of the whole report: tiny rounds, one run, into a temporary directory. It
//! checks that the markdown has every row and that every chart is an SVG file.

use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Duration;

use distkit_benchmarks::rows::ROWS;
use distkit_benchmarks::{ReportConfig, run_report};

/// The memory row needs the counting allocator, as in the `report` binary.
#[global_allocator]
static ALLOCATOR: &stats_alloc::StatsAlloc<std::alloc::System> = &stats_alloc::INSTRUMENTED_SYSTEM;

/// The whole test's limit: the report itself is bounded by its rounds and its own timeouts.
const LIMIT: Duration = Duration::from_secs(55);

#[test]
fn the_report_has_every_row_and_chart() {
    let out_dir: PathBuf = std::env::temp_dir().join(format!(
        "distkit-report-smoke-{}",
        distkit_test_support::unique_prefix()
    ));
    std::fs::create_dir_all(&out_dir).unwrap();
    let config = ReportConfig {
        round: Duration::from_millis(50),
        runs: 1,
        only: None,
        out_dir: out_dir.clone(),
        // A private server, whatever the environment says (the report refuses non-loopback URLs).
        redis_url: None,
        memory_keys: 2_000,
    };
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = sender.send(run_report(&config).map_err(|error| error.to_string()));
    });
    let report = receiver
        .recv_timeout(LIMIT)
        .expect("the report did not finish within the limit")
        .expect("the report failed");

    let markdown = std::fs::read_to_string(out_dir.join("BENCHMARKS.md")).unwrap();
    assert!(markdown.contains("cargo run -p distkit-benchmarks --release --bin report"));
    for row in ROWS {
        assert!(
            markdown.contains(&format!("| `{}` |", row.id)),
            "row {} is missing from the report",
            row.id
        );
    }
    let charts = [
        "strict_throughput.svg",
        "lax_throughput.svg",
        "handoff_wait_cdf.svg",
        "ratios.svg",
    ];
    assert_eq!(report.charts.len(), charts.len());
    for chart in charts {
        let path = out_dir.join("benchmarks/charts").join(chart);
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(
            svg.trim_start().starts_with("<svg"),
            "{chart} is not an SVG"
        );
        assert!(
            svg.trim_end().ends_with("</svg>"),
            "{chart} is not a whole SVG"
        );
        assert!(
            markdown.contains(&format!("](benchmarks/charts/{chart})")),
            "{chart} is not embedded"
        );
    }
    std::fs::remove_dir_all(&out_dir).unwrap();
}
