//! `testbed-bench [OPTIONS]`: measures the emulator binary on loopback, prints the table and the
//! targets, writes `results.json` and compares it with the baseline; `testbed-bench ceiling`
//! prints the RS256 signing rate of the core it runs on (the main run calls it under `taskset`).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use bench::process::{EmulatorCommand, pin_self};
use bench::report::{Results, table, targets, targets_table};
use bench::run::{Settings, run};
use clap::{Parser, Subcommand};

/// Throughput, latency, cold start and memory of the emulator, with the emulator pinned to one
/// core and this generator to another.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Arguments {
    #[command(subcommand)]
    command: Option<Sub>,
    /// The emulator binary (build it with `cargo build --release -p scalekit-emulator`).
    #[arg(long, default_value = "target/release/scalekit-emulator")]
    emulator: PathBuf,
    /// The environment file the emulator runs with.
    #[arg(long, default_value = "fixtures/environment.toml")]
    config: PathBuf,
    /// Where results.json and the state directories go.
    #[arg(long, default_value = "target/bench")]
    work_dir: PathBuf,
    /// The committed baseline to compare with.
    #[arg(long, default_value = "bench/baseline.json")]
    baseline: PathBuf,
    /// Rewrites the baseline with this run's figures.
    #[arg(long)]
    update_baseline: bool,
    /// Milliseconds each load point is measured.
    #[arg(long, default_value_t = 3000)]
    duration_ms: u64,
    /// Milliseconds the load points with one operation in flight are measured (their p99 needs
    /// more samples).
    #[arg(long, default_value_t = 10_000)]
    latency_duration_ms: u64,
    /// Milliseconds each load point runs before it is measured.
    #[arg(long, default_value_t = 500)]
    warm_up_ms: u64,
    /// Flows in flight, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    flow_concurrency: Vec<usize>,
    /// Token endpoint connections, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,32")]
    token_concurrency: Vec<usize>,
    /// Completed flows before the second RSS reading.
    #[arg(long, default_value_t = 100_000)]
    rss_flows: u64,
    /// The most seconds the flows for the RSS reading may take.
    #[arg(long, default_value_t = 150)]
    rss_max_secs: u64,
    /// Cold starts per kind of state directory (the median is reported).
    #[arg(long, default_value_t = 5)]
    cold_starts: usize,
    /// Milliseconds the signing ceiling is measured.
    #[arg(long, default_value_t = 2000)]
    ceiling_ms: u64,
    /// The core the emulator is pinned to.
    #[arg(long, default_value_t = 0)]
    emulator_cpu: usize,
    /// The core this generator is pinned to.
    #[arg(long, default_value_t = 1)]
    generator_cpu: usize,
    /// Pins nothing (figures then do not compare with the baseline).
    #[arg(long)]
    no_pin: bool,
}

#[derive(Debug, Subcommand)]
enum Sub {
    /// Prints the RS256 signatures per second of the calling core.
    Ceiling {
        /// How long to sign.
        #[arg(long, default_value_t = 2000)]
        millis: u64,
    },
    /// Runs flows against an emulator that is already running (for `perf record -p` and
    /// `/proc/PID/smaps_rollup` while it works) and prints the rate and the percentiles.
    Flows {
        /// Where the emulator listens.
        #[arg(long)]
        address: std::net::SocketAddr,
        /// Flows in flight.
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        /// How many flows (or refreshes) to complete at most.
        #[arg(long, default_value_t = 10_000)]
        flows: u64,
        /// The most seconds to run.
        #[arg(long, default_value_t = 60)]
        max_secs: u64,
        /// One flow per connection, then refreshes with rotation instead of flows.
        #[arg(long)]
        refreshes: bool,
    },
}

fn main() -> anyhow::Result<()> {
    let arguments = Arguments::parse();
    match arguments.command {
        Some(Sub::Ceiling { millis }) => {
            let rates = bench::ceiling::signing_rate(Duration::from_millis(millis))?;
            println!("{:.1} {:.1}", rates.signer, rates.jsonwebtoken_encode);
            return Ok(());
        }
        Some(Sub::Flows {
            address,
            concurrency,
            flows,
            max_secs,
            refreshes,
        }) => {
            let config = scalekit_emulator::Config::from_file(&arguments.config)?;
            let budget = bench::load::Budget {
                duration: Duration::from_secs(max_secs),
                max_operations: Some(flows),
            };
            let measurement =
                bench::run::flows_against(&config, address, concurrency, budget, refreshes)?;
            println!(
                "{} {}, {concurrency} in flight: {:.0}/s, p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
                measurement.operations,
                if refreshes { "refreshes" } else { "flows" },
                measurement.rate(),
                measurement.percentile_ms(0.50),
                measurement.percentile_ms(0.99),
                measurement.percentile_ms(1.0),
            );
            return Ok(());
        }
        None => {}
    }
    if !arguments.no_pin {
        pin_self(arguments.generator_cpu).context("cannot pin the generator")?;
    }
    let settings = Settings {
        emulator: EmulatorCommand {
            binary: arguments.emulator.clone(),
            config: arguments.config.clone(),
            cpu: (!arguments.no_pin).then_some(arguments.emulator_cpu),
        },
        work_dir: arguments.work_dir.clone(),
        self_exe: std::env::current_exe().context("cannot find this program")?,
        duration: Duration::from_millis(arguments.duration_ms),
        latency_duration: Duration::from_millis(arguments.latency_duration_ms),
        warm_up: Duration::from_millis(arguments.warm_up_ms),
        flow_concurrency: arguments.flow_concurrency.clone(),
        token_concurrency: arguments.token_concurrency.clone(),
        rss_flows: arguments.rss_flows,
        rss_max: Duration::from_secs(arguments.rss_max_secs),
        cold_starts: arguments.cold_starts,
        ceiling: Duration::from_millis(arguments.ceiling_ms),
    };
    let results = run(&settings)?;
    let baseline = if arguments.baseline.exists() {
        Some(Results::read(&arguments.baseline)?)
    } else {
        None
    };
    println!("{}", table(&results, baseline.as_ref()));
    println!("targets (issue 7, item 3):");
    println!("{}", targets_table(&targets(&results)));
    let out = arguments.work_dir.join("results.json");
    results.write(&out)?;
    println!("wrote {}", out.display());
    if arguments.update_baseline {
        results.write(&arguments.baseline)?;
        println!("wrote the baseline {}", arguments.baseline.display());
    } else if baseline.is_none() {
        println!(
            "no baseline at {}; --update-baseline writes one",
            arguments.baseline.display()
        );
    }
    Ok(())
}
