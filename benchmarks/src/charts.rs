//! The SVG charts of the report, drawn with plotters' SVG backend: throughput against tasks
//! for the strict and lax counters, the handoff wait distribution, and every row's ratio to
//! its baseline.

use std::path::{Path, PathBuf};
use std::time::Duration;

use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;

use crate::report::Report;
use crate::rows::{ROWS, RowRun, Unit};
use crate::stats::{median, millis};
use crate::workloads::ScalePoint;
use crate::{BenchError, BenchResult};

/// The file name of the strict counter's throughput chart.
pub const STRICT_CHART: &str = "strict_throughput.svg";
/// The file name of the lax counter's throughput chart.
pub const LAX_CHART: &str = "lax_throughput.svg";
/// The file name of the handoff wait distribution chart.
pub const HANDOFF_CHART: &str = "handoff_wait_cdf.svg";
/// The file name of the ratio chart.
pub const RATIO_CHART: &str = "ratios.svg";

/// distkit's colour.
const DISTKIT: RGBColor = RGBColor(0x1f, 0x77, 0xb4);
/// The baseline's colour.
const RAW: RGBColor = RGBColor(0x7f, 0x7f, 0x7f);
/// distkit 0.7.1's colour.
const ANCHOR: RGBColor = RGBColor(0xff, 0x7f, 0x0e);
/// The size of every chart, in pixels.
const SIZE: (u32, u32) = (900, 520);
/// The most points one line of the distribution chart draws.
const CDF_POINTS: usize = 400;

/// A plotters error as a value.
fn plot_error(error: impl std::fmt::Display) -> BenchError {
    format!("cannot draw a chart: {error}").into()
}

/// Writes every chart the report has data for into `dir`; returns their paths.
///
/// # Errors
///
/// A chart that cannot be drawn or written.
pub fn write_all(report: &Report, dir: &Path) -> BenchResult<Vec<PathBuf>> {
    let mut written = Vec::new();
    let strict: Vec<Vec<ScalePoint>> = report
        .runs
        .iter()
        .map(|run| run.strict_scaling.clone())
        .collect();
    if strict.iter().any(|points| !points.is_empty()) {
        let path = dir.join(STRICT_CHART);
        scaling_chart(
            &path,
            "StrictCounter inc: throughput vs tasks (16 keys)",
            "raw EVALSHA (redis crate)",
            &strict,
        )?;
        written.push(path);
    }
    let lax: Vec<Vec<ScalePoint>> = report
        .runs
        .iter()
        .map(|run| run.lax_scaling.clone())
        .collect();
    if lax.iter().any(|points| !points.is_empty()) {
        let path = dir.join(LAX_CHART);
        scaling_chart(
            &path,
            "LaxCounter warm inc: throughput vs tasks (a key per task)",
            "Mutex<HashMap> floor",
            &lax,
        )?;
        written.push(path);
    }
    if let Some(waits) = report
        .runs
        .iter()
        .rev()
        .find_map(|run| run.handoff.as_ref())
    {
        let path = dir.join(HANDOFF_CHART);
        let series = [
            ("distkit", DISTKIT, waits.distkit.as_slice()),
            (
                "in-process FIFO + same Redis work",
                RAW,
                waits.fifo.as_slice(),
            ),
            ("distkit 0.7.1", ANCHOR, waits.anchor.as_slice()),
        ];
        cdf_chart(&path, &series)?;
        written.push(path);
    }
    let ratios = ratio_rows(report);
    if !ratios.is_empty() {
        let path = dir.join(RATIO_CHART);
        ratio_chart(&path, &ratios)?;
        written.push(path);
    }
    Ok(written)
}

/// The median over the runs of one contender's figure at each task count.
fn series_over_runs(
    runs: &[Vec<ScalePoint>],
    figure: impl Fn(&RowRun) -> Option<f64>,
) -> Vec<(f64, f64)> {
    let mut tasks: Vec<usize> = runs.iter().flatten().map(|point| point.tasks).collect();
    tasks.sort_unstable();
    tasks.dedup();
    tasks
        .into_iter()
        .filter_map(|count| {
            let values: Vec<f64> = runs
                .iter()
                .flatten()
                .filter(|point| point.tasks == count)
                .filter_map(|point| figure(&point.figures))
                .collect();
            #[expect(clippy::cast_precision_loss, reason = "task counts are small")]
            let x = count as f64;
            median(&values).map(|y| (x, y))
        })
        .collect()
}

/// A rate with a k/M suffix.
fn human_rate(value: f64) -> String {
    if value >= 1e6 {
        format!("{:.1}M", value / 1e6)
    } else if value >= 1e3 {
        format!("{:.0}k", value / 1e3)
    } else {
        format!("{value:.0}")
    }
}

/// A line chart of calls per second against tasks (log scale) for the three contenders.
fn scaling_chart(
    path: &Path,
    title: &str,
    raw_label: &str,
    runs: &[Vec<ScalePoint>],
) -> BenchResult<()> {
    let lines = [
        (
            "distkit",
            DISTKIT,
            series_over_runs(runs, |figures| Some(figures.distkit)),
        ),
        (
            raw_label,
            RAW,
            series_over_runs(runs, |figures| figures.raw),
        ),
        (
            "distkit 0.7.1",
            ANCHOR,
            series_over_runs(runs, |figures| figures.anchor),
        ),
    ];
    let points = lines.iter().flat_map(|(_, _, points)| points.iter());
    let max_x = points
        .clone()
        .map(|(x, _)| *x)
        .fold(1.0_f64, f64::max)
        .max(2.0);
    let max_y = points
        .map(|(_, y)| *y)
        .filter(|y| y.is_finite())
        .fold(1.0_f64, f64::max)
        * 1.1;
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d((1.0_f64..max_x).log_scale(), 0.0_f64..max_y)
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .x_desc("tasks (log scale)")
        .y_desc("calls/s")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| human_rate(*y))
        .draw()
        .map_err(plot_error)?;
    for (label, color, points) in lines {
        if points.is_empty() {
            continue;
        }
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
            .map_err(plot_error)?
            .label(label)
            .legend(move |(x, y)| {
                PathElement::new(
                    vec![(x, y), (x.saturating_add(20), y)],
                    color.stroke_width(2),
                )
            });
        chart
            .draw_series(
                points
                    .into_iter()
                    .map(|point| Circle::new(point, 4, color.filled())),
            )
            .map_err(plot_error)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(plot_error)?;
    root.present().map_err(plot_error)?;
    Ok(())
}

/// At most [`CDF_POINTS`] points `(wait in ms, fraction of waits at most that)` of a sorted
/// sample.
#[expect(clippy::cast_precision_loss, reason = "sample counts far below 2^52")]
fn cdf_points(sorted: &[Duration]) -> Vec<(f64, f64)> {
    let count = sorted.len();
    let step = count.div_ceil(CDF_POINTS).max(1);
    let mut points: Vec<(f64, f64)> = sorted
        .iter()
        .enumerate()
        .filter(|(index, _)| index.is_multiple_of(step) || index.saturating_add(1) == count)
        .map(|(index, wait)| {
            (
                millis(*wait).max(0.01),
                index.saturating_add(1) as f64 / count as f64,
            )
        })
        .collect();
    points.dedup_by(|later, earlier| later.0 == earlier.0 && later.1 == earlier.1);
    points
}

/// The cumulative distribution of the handoff waits (log-scale milliseconds).
fn cdf_chart(path: &Path, series: &[(&str, RGBColor, &[Duration])]) -> BenchResult<()> {
    let max_ms = series
        .iter()
        .filter_map(|(_, _, waits)| waits.last().copied().map(millis))
        .fold(1.0_f64, f64::max)
        * 1.5;
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Mutex handoff, 4 contenders, 1 ms hold: wait in lock() (CDF)",
            ("sans-serif", 20),
        )
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d((0.01_f64..max_ms).log_scale(), 0.0_f64..1.0_f64)
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .x_desc("wait (ms, log scale)")
        .y_desc("fraction of waits ≤ x")
        .x_label_formatter(&|x| format!("{x}"))
        .draw()
        .map_err(plot_error)?;
    for (label, color, waits) in series {
        if waits.is_empty() {
            continue;
        }
        let color = *color;
        chart
            .draw_series(LineSeries::new(cdf_points(waits), color.stroke_width(2)))
            .map_err(plot_error)?
            .label(*label)
            .legend(move |(x, y)| {
                PathElement::new(
                    vec![(x, y), (x.saturating_add(20), y)],
                    color.stroke_width(2),
                )
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(plot_error)?;
    root.present().map_err(plot_error)?;
    Ok(())
}

/// One bar pair of the ratio chart: row id, distkit/raw and 0.7.1/raw (medians over runs).
type RatioRow = (&'static str, f64, Option<f64>);

/// The rows with a baseline to compare with (the scaling row compares with one task, not a
/// baseline, and is left out).
fn ratio_rows(report: &Report) -> Vec<RatioRow> {
    ROWS.iter()
        .filter(|spec| spec.unit != Unit::TimesOneTask)
        .filter_map(|spec| {
            let runs: Vec<&RowRun> = report
                .runs
                .iter()
                .filter_map(|run| run.rows.get(spec.id))
                .collect();
            let ours: Vec<f64> = runs
                .iter()
                .filter_map(|run| run.distkit_ratio(spec.unit))
                .collect();
            let theirs: Vec<f64> = runs
                .iter()
                .filter_map(|run| run.anchor_ratio(spec.unit))
                .collect();
            median(&ours).map(|ratio| (spec.id, ratio, median(&theirs)))
        })
        .collect()
}

/// Horizontal bars of distkit/raw and 0.7.1/raw for every row with a baseline, with the
/// parity line (1.0) and the 0.9 goal line; the first row at the top.
fn ratio_chart(path: &Path, rows: &[RatioRow]) -> BenchResult<()> {
    // Segments count from the bottom up.
    let rows: Vec<RatioRow> = rows.iter().rev().copied().collect();
    let segments = rows.len().saturating_mul(2);
    let max_x = rows
        .iter()
        .flat_map(|(_, ours, theirs)| [Some(*ours), *theirs])
        .flatten()
        .filter(|ratio| ratio.is_finite())
        .fold(1.2_f64, f64::max)
        * 1.1;
    let height = u32::try_from(segments.saturating_mul(22).saturating_add(140)).unwrap_or(u32::MAX);
    let root = SVGBackend::new(path, (SIZE.0, height)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Speed relative to the baseline (median over runs; > 1 is faster)",
            ("sans-serif", 20),
        )
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(150)
        .build_cartesian_2d(0.0_f64..max_x, (0..segments).into_segmented())
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(segments)
        .x_desc("× baseline")
        .y_label_formatter(&|value| match value {
            SegmentValue::CenterOf(segment) if segment % 2 == 0 => rows
                .get(segment / 2)
                .map(|(id, _, _)| (*id).to_owned())
                .unwrap_or_default(),
            _ => String::new(),
        })
        .draw()
        .map_err(plot_error)?;
    let bars = |anchor: bool| {
        rows.iter()
            .enumerate()
            .filter_map(move |(index, (_, ours, theirs))| {
                let segment = index.saturating_mul(2).saturating_add(usize::from(anchor));
                let (ratio, color) = if anchor {
                    ((*theirs)?, ANCHOR)
                } else {
                    (*ours, DISTKIT)
                };
                let mut bar = Rectangle::new(
                    [
                        (0.0, SegmentValue::Exact(segment)),
                        (ratio, SegmentValue::Exact(segment.saturating_add(1))),
                    ],
                    color.filled(),
                );
                bar.set_margin(2, 2, 0, 0);
                Some(bar)
            })
    };
    chart
        .draw_series(bars(false))
        .map_err(plot_error)?
        .label("distkit / baseline")
        .legend(|(x, y)| {
            Rectangle::new(
                [
                    (x, y.saturating_sub(5)),
                    (x.saturating_add(20), y.saturating_add(5)),
                ],
                DISTKIT.filled(),
            )
        });
    chart
        .draw_series(bars(true))
        .map_err(plot_error)?
        .label("distkit 0.7.1 / baseline")
        .legend(|(x, y)| {
            Rectangle::new(
                [
                    (x, y.saturating_sub(5)),
                    (x.saturating_add(20), y.saturating_add(5)),
                ],
                ANCHOR.filled(),
            )
        });
    for (at, style) in [(1.0, BLACK.stroke_width(1)), (0.9, RED.stroke_width(1))] {
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![
                    (at, SegmentValue::Exact(0)),
                    (at, SegmentValue::Exact(segments)),
                ],
                style,
            )))
            .map_err(plot_error)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(plot_error)?;
    root.present().map_err(plot_error)?;
    Ok(())
}
