//! What the absolute numbers were measured on: CPU, cores, Redis, rustc and the date.

use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

/// The machine and software of one report.
#[derive(Clone, Debug)]
pub struct Machine {
    /// The CPU model (`model name` of `/proc/cpuinfo`).
    pub cpu: String,
    /// The cores this process may use.
    pub cores: usize,
    /// The Redis server's version (`INFO server`, else `redis-server --version`).
    pub redis: String,
    /// `rustc --version`.
    pub rustc: String,
    /// The date the report started (UTC, `YYYY-MM-DD HH:MM`).
    pub date: String,
}

impl Machine {
    /// Reads what it can; anything unknown reads `unknown`. `redis_version` is the version the
    /// measured server reported, if any.
    pub fn detect(redis_version: Option<String>) -> Self {
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|info| {
                info.lines()
                    .find(|line| line.starts_with("model name"))
                    .and_then(|line| line.split_once(':'))
                    .map(|(_, model)| model.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown".to_owned());
        let cores = std::thread::available_parallelism().map_or(0, std::num::NonZeroUsize::get);
        let redis = redis_version
            .map(|version| format!("Redis {version}"))
            .or_else(|| command_output("redis-server", &["--version"]))
            .unwrap_or_else(|| "unknown".to_owned());
        let rustc = command_output("rustc", &["--version"]).unwrap_or_else(|| "unknown".to_owned());
        let seconds = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_secs());
        Self {
            cpu,
            cores,
            redis,
            rustc,
            date: utc_date(seconds),
        }
    }
}

/// The first line a command prints, if it runs.
fn command_output(program: &str, args: &[&str]) -> Option<String> {
    let output = Command::new(program).args(args).output().ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let line = text.lines().next()?.trim().to_owned();
    (!line.is_empty()).then_some(line)
}

/// `YYYY-MM-DD HH:MM UTC` of a Unix time in seconds (the civil-from-days algorithm).
fn utc_date(seconds: u64) -> String {
    let days = seconds / 86_400;
    let of_day = seconds % 86_400;
    let (hour, minute) = (of_day / 3_600, of_day % 3_600 / 60);
    let shifted = days.saturating_add(719_468);
    let era = shifted / 146_097;
    let day_of_era = shifted % 146_097;
    let year_of_era = day_of_era
        .saturating_sub(day_of_era / 1_460)
        .saturating_add(day_of_era / 36_524)
        .saturating_sub(day_of_era / 146_096)
        / 365;
    let day_of_year = day_of_era.saturating_sub(
        year_of_era
            .saturating_mul(365)
            .saturating_add(year_of_era / 4)
            .saturating_sub(year_of_era / 100),
    );
    let month_index = day_of_year.saturating_mul(5).saturating_add(2) / 153;
    let day = day_of_year
        .saturating_sub(month_index.saturating_mul(153).saturating_add(2) / 5)
        .saturating_add(1);
    let month = if month_index < 10 {
        month_index.saturating_add(3)
    } else {
        month_index.saturating_sub(9)
    };
    let year = era
        .saturating_mul(400)
        .saturating_add(year_of_era)
        .saturating_add(u64::from(month <= 2));
    format!("{year:04}-{month:02}-{day:02} {hour:02}:{minute:02} UTC")
}

#[cfg(test)]
mod tests {
    use super::utc_date;

    #[test]
    fn dates() {
        assert_eq!(utc_date(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc_date(951_782_400), "2000-02-29 00:00 UTC");
        assert_eq!(utc_date(1_798_761_600 + 3_660), "2027-01-01 01:01 UTC");
    }
}
