//! The report's settings, read from the environment by the binary or built by a test.

use std::path::PathBuf;
use std::time::Duration;

use crate::BenchResult;

/// What a report measures and where it writes.
#[derive(Clone, Debug)]
pub struct ReportConfig {
    /// The length of one round of one contender.
    pub round: Duration,
    /// How many times the whole set of workloads runs.
    pub runs: usize,
    /// The workloads or rows to run (`None`: all of them).
    pub only: Option<Vec<String>>,
    /// The directory that receives `BENCHMARKS.md` and `benchmarks/charts/`.
    pub out_dir: PathBuf,
    /// A Redis to measure against instead of a private server (loopback only).
    pub redis_url: Option<String>,
    /// How many keys the memory workload tracks.
    pub memory_keys: usize,
}

/// The default round: a full two-run report takes about seven minutes on a 2-core machine.
pub const DEFAULT_ROUND: Duration = Duration::from_millis(1200);
/// The default number of runs.
pub const DEFAULT_RUNS: usize = 2;
/// The default number of keys of the memory workload.
pub const DEFAULT_MEMORY_KEYS: usize = 200_000;

impl ReportConfig {
    /// The settings of the `report` binary: defaults overridden by `DISTKIT_REPORT_ROUND_MS`,
    /// `DISTKIT_REPORT_RUNS`, `DISTKIT_REPORT_ONLY`, `DISTKIT_REPORT_OUT` and `REDIS_URL`.
    ///
    /// # Errors
    ///
    /// A variable that does not parse, or a `REDIS_URL` that is not on a loopback host.
    pub fn from_env() -> BenchResult<Self> {
        let round = match std::env::var("DISTKIT_REPORT_ROUND_MS") {
            Ok(text) => Duration::from_millis(
                text.trim()
                    .parse()
                    .map_err(|error| format!("DISTKIT_REPORT_ROUND_MS={text}: {error}"))?,
            ),
            Err(_) => DEFAULT_ROUND,
        };
        let runs = match std::env::var("DISTKIT_REPORT_RUNS") {
            Ok(text) => text
                .trim()
                .parse()
                .map_err(|error| format!("DISTKIT_REPORT_RUNS={text}: {error}"))?,
            Err(_) => DEFAULT_RUNS,
        };
        if runs == 0 {
            return Err("DISTKIT_REPORT_RUNS must be at least 1".into());
        }
        let only = std::env::var("DISTKIT_REPORT_ONLY").ok().map(|text| {
            text.split(',')
                .map(|entry| entry.trim().to_owned())
                .filter(|entry| !entry.is_empty())
                .collect()
        });
        let out_dir = match std::env::var("DISTKIT_REPORT_OUT") {
            Ok(dir) => PathBuf::from(dir),
            // benchmarks/ is one level below the repository root.
            Err(_) => PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .parent()
                .ok_or("the benchmarks crate has no parent directory")?
                .to_path_buf(),
        };
        let redis_url = std::env::var("REDIS_URL").ok();
        if let Some(url) = &redis_url {
            check_loopback(url)?;
        }
        Ok(Self {
            round,
            runs,
            only,
            out_dir,
            redis_url,
            memory_keys: DEFAULT_MEMORY_KEYS,
        })
    }

    /// Whether the workload `workload` runs: every entry of `only` names a workload or one
    /// of its rows (`workload.row`).
    pub fn runs_workload(&self, workload: &str) -> bool {
        self.only.as_ref().is_none_or(|entries| {
            entries.iter().any(|entry| {
                entry == workload
                    || entry
                        .strip_prefix(workload)
                        .is_some_and(|rest| rest.starts_with('.'))
            })
        })
    }
}

/// Refuses a Redis URL whose host is not on the loopback interface.
///
/// # Errors
///
/// When the host is anything but `127.x.x.x`, `localhost` or `[::1]`.
pub fn check_loopback(url: &str) -> BenchResult<()> {
    let rest = url
        .split_once("://")
        .map_or(url, |(_, rest)| rest)
        .rsplit('@')
        .next()
        .unwrap_or_default();
    let host = if let Some(bracketed) = rest.strip_prefix('[') {
        bracketed.split(']').next().unwrap_or_default()
    } else {
        rest.split([':', '/', '?']).next().unwrap_or_default()
    };
    let loopback = host == "localhost"
        || host == "::1"
        || host
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|address| address.is_loopback());
    if loopback {
        Ok(())
    } else {
        Err(format!(
            "REDIS_URL must name a loopback host (127.0.0.1, localhost, [::1]), not {host:?}"
        )
        .into())
    }
}

#[cfg(test)]
mod tests {
    use super::check_loopback;

    #[test]
    fn only_loopback_urls_pass() {
        assert!(check_loopback("redis://127.0.0.1:6379").is_ok());
        assert!(check_loopback("redis://localhost:6379/0").is_ok());
        assert!(check_loopback("redis://user:pw@[::1]:6379").is_ok());
        assert!(check_loopback("redis://10.0.0.2:6379").is_err());
        assert!(check_loopback("redis://example.com").is_err());
    }
}
