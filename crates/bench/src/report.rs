//! The figures as named metrics: the table, `results.json`, the comparison with the committed
//! baseline (ratios, since machines differ and this one is shared), and the issue's targets.

use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::BenchError;

/// The version of the JSON shape.
pub const SCHEMA: u32 = 1;

/// The signing ceiling's metric name: RS256 through the emulator's own signer (aws-lc-rs, the key
/// parsed once), per second of one core's CPU time.
pub const CEILING: &str = "ceiling.rs256_per_cpu_second";

/// For reference: the same tokens through `jsonwebtoken::encode`, which parses the key each time.
pub const CEILING_JSONWEBTOKEN_ENCODE: &str = "ceiling.rs256_jsonwebtoken_encode_per_cpu_second";

/// Which way is better for a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Better {
    /// Throughput.
    Higher,
    /// Latency, memory, start time.
    Lower,
    /// Context (CPU use, counts): reported, not judged.
    Neither,
}

/// One figure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metric {
    /// A dotted name, stable across runs (`flow.c16.rate`).
    pub name: String,
    /// The value in `unit`.
    pub value: f64,
    /// `flows/s`, `requests/s`, `ms`, `MB`, `cores`, `flows`, `signatures/s`.
    pub unit: String,
    /// Which way is better.
    pub better: Better,
}

/// Where the figures were taken.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    /// Online cores.
    pub cores: usize,
    /// `model name` from `/proc/cpuinfo`.
    pub cpu_model: String,
    /// The cores the generator was allowed on.
    pub generator_cpus: String,
    /// The core the emulator was pinned to, if any.
    pub emulator_cpu: Option<usize>,
}

/// One run's results (`target/bench/results.json`, and `bench/baseline.json` when kept).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Results {
    /// [`SCHEMA`].
    pub schema: u32,
    /// Unix seconds when the run finished.
    pub recorded_at_unix: u64,
    /// The machine.
    pub machine: Machine,
    /// The settings the run used (durations, concurrency levels, flow count).
    pub settings: serde_json::Value,
    /// The figures, in the order they were taken.
    pub metrics: Vec<Metric>,
}

impl Results {
    /// The value of a metric by name.
    pub fn value(&self, name: &str) -> Option<f64> {
        self.metrics
            .iter()
            .find(|metric| metric.name == name)
            .map(|metric| metric.value)
    }

    /// Reads a results or baseline file.
    pub fn read(path: &Path) -> Result<Results, BenchError> {
        let text = std::fs::read_to_string(path)
            .map_err(BenchError::io(format!("reading {}", path.display())))?;
        Ok(serde_json::from_str(&text)?)
    }

    /// Writes it as pretty JSON, creating the directory.
    pub fn write(&self, path: &Path) -> Result<(), BenchError> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(BenchError::io(format!("creating {}", parent.display())))?;
        }
        let mut text = serde_json::to_string_pretty(self)?;
        text.push('\n');
        std::fs::write(path, text).map_err(BenchError::io(format!("writing {}", path.display())))
    }
}

/// The table: each figure, its share of the signing ceiling for rates, and its ratio to the
/// baseline (current / baseline, with whether that is better or worse).
pub fn table(results: &Results, baseline: Option<&Results>) -> String {
    let ceiling = results.value(CEILING);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<56} {:>10} {:<13} {:>10} {:>14}",
        "metric", "value", "unit", "of ceiling", "vs baseline"
    );
    for metric in &results.metrics {
        let of_ceiling = match (ceiling, metric.unit.as_str()) {
            (Some(ceiling), "flows/s" | "requests/s") if ceiling > 0.0 => {
                format!("{:.0}%", 100.0 * metric.value / ceiling)
            }
            _ => String::new(),
        };
        let versus = baseline
            .and_then(|baseline| baseline.value(&metric.name))
            .map(|before| compare(metric, before))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "{:<56} {:>10} {:<13} {:>10} {:>14}",
            metric.name,
            format_value(metric.value),
            metric.unit,
            of_ceiling,
            versus
        );
    }
    out
}

fn format_value(value: f64) -> String {
    if value.abs() >= 100.0 {
        format!("{value:.0}")
    } else if value.abs() >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}

/// `x1.08 better`, `x0.91 worse`, `x1.00`: the ratio current / baseline.
pub fn compare(metric: &Metric, before: f64) -> String {
    if before == 0.0 {
        return "n/a".to_owned();
    }
    let ratio = metric.value / before;
    let verdict = match metric.better {
        // Within 5 %: noise on a shared machine.
        _ if (ratio - 1.0).abs() < 0.05 => "",
        Better::Higher if ratio > 1.0 => " better",
        Better::Lower if ratio < 1.0 => " better",
        Better::Neither => "",
        _ => " worse",
    };
    format!("x{ratio:.2}{verdict}")
}

/// One of the issue's targets and whether this run met it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TargetCheck {
    /// What is asked.
    pub target: &'static str,
    /// What was measured, in the target's terms.
    pub measured: String,
    /// `None` when a figure it needs is missing.
    pub met: Option<bool>,
}

/// The issue's targets (2-core machine, server on one core) against this run.
pub fn targets(results: &Results) -> Vec<TargetCheck> {
    let value = |name: &str| results.value(name);
    let mut checks = Vec::new();
    // Throughput is judged per second of the emulator's CPU time: on a shared machine the wall
    // rate says more about the neighbours than about the emulator. Both are shown.
    let flows = value("flow.c16.per_emulator_cpu_second");
    let flows_wall = value("flow.c16.rate").unwrap_or(0.0);
    checks.push(TargetCheck {
        target: "full flows at 16 in flight >= 2500/s (per emulator CPU-second)",
        measured: flows.map_or_else(String::new, |rate| {
            format!("{rate:.0}/s ({flows_wall:.0}/s wall)")
        }),
        met: flows.map(|rate| rate >= 2500.0),
    });
    let share = value("token.client_credentials.c32.per_emulator_cpu_second")
        .zip(value(CEILING))
        .map(|(rate, ceiling)| rate / ceiling);
    checks.push(TargetCheck {
        target: "client_credentials at 32 connections >= 85% of the signing ceiling",
        measured: share.map_or_else(String::new, |share| format!("{:.0}%", 100.0 * share)),
        met: share.map(|share| share >= 0.85),
    });
    let p99 = value("flow.c1.p99_ms");
    checks.push(TargetCheck {
        target: "p99 of a whole flow at concurrency 1 < 2 ms",
        measured: p99.map_or_else(String::new, |ms| format!("{ms:.2} ms")),
        met: p99.map(|ms| ms < 2.0),
    });
    let cold = value("cold_start.existing_state.median_ms");
    checks.push(TargetCheck {
        target: "cold start with an existing state directory < 20 ms",
        measured: cold.map_or_else(String::new, |ms| format!("{ms:.1} ms")),
        met: cold.map(|ms| ms < 20.0),
    });
    let start = value("rss.after_start_mb");
    checks.push(TargetCheck {
        target: "RSS after start < 20 MB",
        measured: start.map_or_else(String::new, |mb| format!("{mb:.1} MB")),
        met: start.map(|mb| mb < 20.0),
    });
    let after = value("rss.after_flows_mb").zip(start);
    let flows_run = value("rss.flows_completed").unwrap_or(0.0);
    checks.push(TargetCheck {
        target: "RSS after 100,000 flows < 2x RSS after start",
        measured: after.map_or_else(String::new, |(after, start)| {
            format!(
                "{after:.1} MB = {:.2}x after {flows_run:.0} flows",
                after / start
            )
        }),
        met: after.map(|(after, start)| after < 2.0 * start && flows_run >= 100_000.0),
    });
    checks
}

/// The targets as lines.
pub fn targets_table(checks: &[TargetCheck]) -> String {
    let mut out = String::new();
    for check in checks {
        let verdict = match check.met {
            Some(true) => "met",
            Some(false) => "MISSED",
            None => "not measured",
        };
        let _ = writeln!(
            out,
            "{:<13} {:<70} {}",
            verdict, check.target, check.measured
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metric(name: &str, value: f64, unit: &str, better: Better) -> Metric {
        Metric {
            name: name.to_owned(),
            value,
            unit: unit.to_owned(),
            better,
        }
    }

    fn results(metrics: Vec<Metric>) -> Results {
        Results {
            schema: SCHEMA,
            recorded_at_unix: 0,
            machine: Machine {
                cores: 2,
                cpu_model: "test".to_owned(),
                generator_cpus: "1".to_owned(),
                emulator_cpu: Some(0),
            },
            settings: serde_json::Value::Null,
            metrics,
        }
    }

    #[test]
    fn ratios_say_which_way_is_better() {
        let rate = metric("flow.c16.rate", 1200.0, "flows/s", Better::Higher);
        assert_eq!(compare(&rate, 1000.0), "x1.20 better");
        assert_eq!(compare(&rate, 1500.0), "x0.80 worse");
        assert_eq!(compare(&rate, 1190.0), "x1.01");
        let latency = metric("flow.c1.p99_ms", 1.5, "ms", Better::Lower);
        assert_eq!(compare(&latency, 3.0), "x0.50 better");
        assert_eq!(compare(&latency, 0.0), "n/a");
    }

    #[test]
    fn the_table_shows_rates_as_a_share_of_the_ceiling_and_the_baseline_ratio() {
        let current = results(vec![
            metric(CEILING, 4000.0, "signatures/s", Better::Higher),
            metric("flow.c16.rate", 2000.0, "flows/s", Better::Higher),
        ]);
        let baseline = results(vec![metric(
            "flow.c16.rate",
            1000.0,
            "flows/s",
            Better::Higher,
        )]);
        let table = table(&current, Some(&baseline));
        let line = table
            .lines()
            .find(|line| line.starts_with("flow.c16.rate"))
            .unwrap();
        assert!(line.contains("50%"), "{line}");
        assert!(line.contains("x2.00 better"), "{line}");
    }

    #[test]
    fn targets_are_judged_from_the_metrics_and_missing_ones_are_not_measured() {
        let current = results(vec![
            metric(CEILING, 4000.0, "signatures/s", Better::Higher),
            metric(
                "token.client_credentials.c32.per_emulator_cpu_second",
                3600.0,
                "requests/s",
                Better::Higher,
            ),
            metric("flow.c1.p99_ms", 2.5, "ms", Better::Lower),
            metric("rss.after_start_mb", 10.0, "MB", Better::Lower),
            metric("rss.after_flows_mb", 15.0, "MB", Better::Lower),
            metric("rss.flows_completed", 100_000.0, "flows", Better::Neither),
        ]);
        let checks = targets(&current);
        let met: Vec<Option<bool>> = checks.iter().map(|check| check.met).collect();
        assert_eq!(
            met,
            vec![None, Some(true), Some(false), None, Some(true), Some(true)]
        );
        assert_eq!(checks[1].measured, "90%");
    }

    #[test]
    fn results_round_trip_through_json() {
        let current = results(vec![metric(
            "flow.c1.rate",
            500.0,
            "flows/s",
            Better::Higher,
        )]);
        let text = serde_json::to_string(&current).unwrap();
        let back: Results = serde_json::from_str(&text).unwrap();
        assert_eq!(back, current);
        assert!(text.contains(r#""better":"higher""#));
    }
}
