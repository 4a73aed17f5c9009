//! One whole benchmark run, in the order that keeps the figures honest: the signing ceiling on the
//! emulator's core while nothing else runs there, cold starts, then one long-lived emulator
//! process for throughput and latency, then enough extra flows to read RSS after 100,000.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use scalekit_emulator::Config;

use crate::BenchError;
use crate::ceiling::{CeilingRates, signing_rate};
use crate::client::Connection;
use crate::load::{Budget, Measurement, closed_loop};
use crate::process::{Emulator, EmulatorCommand, cold_start, own_allowed_cpus, own_cpu_time};
use crate::report::{
    Better, CEILING, CEILING_JSONWEBTOKEN_ENCODE, Machine, Metric, Results, SCHEMA,
};
use crate::scenario::{Session, Target, client_credentials, refresh, run_flow};

/// What to measure and for how long.
#[derive(Debug, Clone)]
pub struct Settings {
    /// How to start the emulator (binary, environment file, core).
    pub emulator: EmulatorCommand,
    /// Where state directories go (`{work_dir}/state/…`).
    pub work_dir: PathBuf,
    /// This program, run again as `ceiling` on the emulator's core.
    pub self_exe: PathBuf,
    /// How long each load point is measured.
    pub duration: Duration,
    /// How long the load points with one operation in flight are measured: their p99 is a
    /// target, and a stable p99 needs many more samples than a rate does.
    pub latency_duration: Duration,
    /// How long each load point runs before it is measured.
    pub warm_up: Duration,
    /// Flows in flight for (a).
    pub flow_concurrency: Vec<usize>,
    /// Connections for (b).
    pub token_concurrency: Vec<usize>,
    /// Completed flows before the second RSS reading (d).
    pub rss_flows: u64,
    /// The most time the flows for (d) may take; fewer are run (and reported) past it.
    pub rss_max: Duration,
    /// Cold starts per kind of state directory (c); the median is reported.
    pub cold_starts: usize,
    /// How long the signing ceiling is measured (e).
    pub ceiling: Duration,
}

impl Settings {
    fn as_json(&self) -> serde_json::Value {
        serde_json::json!({
            "duration_ms": self.duration.as_millis() as u64,
            "latency_duration_ms": self.latency_duration.as_millis() as u64,
            "warm_up_ms": self.warm_up.as_millis() as u64,
            "flow_concurrency": self.flow_concurrency,
            "token_concurrency": self.token_concurrency,
            "rss_flows": self.rss_flows,
            "rss_max_secs": self.rss_max.as_secs(),
            "cold_starts": self.cold_starts,
            "ceiling_ms": self.ceiling.as_millis() as u64,
            "emulator_cpu": self.emulator.cpu,
        })
    }
}

/// Runs every measurement and returns the figures.
pub fn run(settings: &Settings) -> Result<Results, BenchError> {
    let config = Config::from_file(&settings.emulator.config)?;
    let mut metrics = Vec::new();

    eprintln!("bench: (e) RS256 signing ceiling on the emulator's core");
    let ceiling = measure_ceiling(settings)?;
    metrics.push(metric(
        CEILING,
        ceiling.signer,
        "signatures/s",
        Better::Higher,
    ));
    metrics.push(metric(
        CEILING_JSONWEBTOKEN_ENCODE,
        ceiling.jsonwebtoken_encode,
        "signatures/s",
        Better::Higher,
    ));

    let probe = Target::from_config(&config, SocketAddr::from(([127, 0, 0, 1], 0)))?;
    let metadata_path = probe.metadata_path();
    let state_root = settings.work_dir.join("state");
    remove_dir(&state_root)?;

    eprintln!("bench: (c) cold starts");
    let fresh_dirs: Vec<PathBuf> = (0..settings.cold_starts)
        .map(|index| state_root.join(format!("fresh-{index}")))
        .collect();
    let fresh = cold_starts(settings, &metadata_path, |index| {
        Some(fresh_dirs[index].clone())
    })?;
    metrics.push(metric(
        "cold_start.fresh_state.median_ms",
        fresh,
        "ms",
        Better::Lower,
    ));
    let existing_dir = fresh_dirs[0].clone();
    let existing = cold_starts(settings, &metadata_path, |_| Some(existing_dir.clone()))?;
    metrics.push(metric(
        "cold_start.existing_state.median_ms",
        existing,
        "ms",
        Better::Lower,
    ));
    let memory = cold_starts(settings, &metadata_path, |_| None)?;
    metrics.push(metric(
        "cold_start.no_state_dir.median_ms",
        memory,
        "ms",
        Better::Lower,
    ));

    eprintln!("bench: (a), (b), (d) on one emulator process with a state directory");
    let load_dir = state_root.join("load");
    let mut emulator = settings.emulator.spawn(Some(&load_dir))?;
    emulator.wait_for_200(&metadata_path, Duration::from_secs(20))?;
    let rss_start = emulator.rss_bytes()?;
    metrics.push(metric(
        "rss.after_start_mb",
        megabytes(rss_start),
        "MB",
        Better::Lower,
    ));
    let target = Target::from_config(&config, emulator.address())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(BenchError::io("starting the generator's runtime"))?;
    let (load_metrics, flows_completed) =
        runtime.block_on(load_phases(settings, &emulator, target))?;
    metrics.extend(load_metrics);
    metrics.push(metric(
        "rss.after_flows_mb",
        megabytes(emulator.rss_bytes()?),
        "MB",
        Better::Lower,
    ));
    metrics.push(metric(
        "rss.flows_completed",
        flows_completed as f64,
        "flows",
        Better::Neither,
    ));
    drop(emulator);

    eprintln!("bench: (c) cold start with the state directory of {flows_completed} flows");
    let loaded = cold_starts(settings, &metadata_path, |_| Some(load_dir.clone()))?;
    metrics.push(metric(
        "cold_start.state_after_load.median_ms",
        loaded,
        "ms",
        Better::Lower,
    ));

    Ok(Results {
        schema: SCHEMA,
        recorded_at_unix: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_secs()),
        machine: machine(settings),
        settings: settings.as_json(),
        metrics,
    })
}

/// Runs flows (or, with `refreshes`, one flow per worker and then refreshes with rotation)
/// against an emulator started elsewhere (`testbed-bench flows`), on a single-threaded runtime on
/// the calling thread, `concurrency` in flight until `budget` is spent.
pub fn flows_against(
    config: &Config,
    address: SocketAddr,
    concurrency: usize,
    budget: Budget,
    refreshes: bool,
) -> Result<Measurement, BenchError> {
    let target = Target::from_config(config, address)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(BenchError::io("starting the generator's runtime"))?;
    // Unique per run, so that states and verifiers never repeat across runs.
    let first_id = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos() as u64);
    runtime.block_on(async move {
        let session = Arc::new(Session::establish(target).await?);
        if refreshes {
            let mut workers = Vec::with_capacity(concurrency);
            for id in 0..concurrency as u64 {
                let mut connection = Connection::open(address).await?;
                let tokens =
                    run_flow(&mut connection, &session, first_id.wrapping_add(id), 0).await?;
                workers.push(RefreshWorker {
                    connection,
                    session: Arc::clone(&session),
                    refresh_token: tokens.refresh_token,
                });
            }
            let (_, measurement) = closed_loop(workers, budget, refresh_step).await?;
            return Ok(measurement);
        }
        let mut workers = Vec::with_capacity(concurrency);
        for id in 0..concurrency as u64 {
            workers.push(FlowWorker {
                connection: Connection::open(address).await?,
                session: Arc::clone(&session),
                id: first_id.wrapping_add(id),
                sequence: 0,
            });
        }
        let (_, measurement) = closed_loop(workers, budget, flow_step).await?;
        Ok(measurement)
    })
}

/// The ceiling on the emulator's core: this program again, as `ceiling`, under `taskset`.
fn measure_ceiling(settings: &Settings) -> Result<CeilingRates, BenchError> {
    let Some(cpu) = settings.emulator.cpu else {
        return signing_rate(settings.ceiling);
    };
    let output = Command::new("taskset")
        .args(["-c", &cpu.to_string()])
        .arg(&settings.self_exe)
        .args([
            "ceiling",
            "--millis",
            &settings.ceiling.as_millis().to_string(),
        ])
        .stderr(Stdio::inherit())
        .output()
        .map_err(BenchError::io("running the signing ceiling under taskset"))?;
    let text = String::from_utf8_lossy(&output.stdout);
    let rates: Vec<f64> = text
        .split_whitespace()
        .filter_map(|word| word.parse().ok())
        .collect();
    match rates.as_slice() {
        [signer, jsonwebtoken_encode] => Ok(CeilingRates {
            signer: *signer,
            jsonwebtoken_encode: *jsonwebtoken_encode,
        }),
        _ => Err(BenchError::Protocol {
            step: "ceiling",
            message: format!(
                "the ceiling run printed {:?} ({})",
                text.trim(),
                output.status
            ),
        }),
    }
}

/// The median cold start over `settings.cold_starts` spawns, in milliseconds.
fn cold_starts(
    settings: &Settings,
    metadata_path: &str,
    state_dir: impl Fn(usize) -> Option<PathBuf>,
) -> Result<f64, BenchError> {
    let mut times = Vec::with_capacity(settings.cold_starts);
    for index in 0..settings.cold_starts.max(1) {
        let dir = state_dir(index);
        let (elapsed, emulator) = cold_start(&settings.emulator, dir.as_deref(), metadata_path)?;
        drop(emulator);
        times.push(elapsed.as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

struct FlowWorker {
    connection: Connection,
    session: Arc<Session>,
    id: u64,
    sequence: u64,
}

async fn flow_step(mut worker: FlowWorker) -> Result<FlowWorker, BenchError> {
    run_flow(
        &mut worker.connection,
        &worker.session,
        worker.id,
        worker.sequence,
    )
    .await?;
    worker.sequence += 1;
    Ok(worker)
}

struct TokenWorker {
    connection: Connection,
    target: Arc<Target>,
}

async fn client_credentials_step(mut worker: TokenWorker) -> Result<TokenWorker, BenchError> {
    client_credentials(&mut worker.connection, &worker.target).await?;
    Ok(worker)
}

struct RefreshWorker {
    connection: Connection,
    session: Arc<Session>,
    refresh_token: String,
}

async fn refresh_step(mut worker: RefreshWorker) -> Result<RefreshWorker, BenchError> {
    worker.refresh_token = refresh(
        &mut worker.connection,
        &worker.session,
        &worker.refresh_token,
    )
    .await?;
    Ok(worker)
}

/// (a), (b) and the flows for (d). Returns the metrics and how many flows completed in all.
async fn load_phases(
    settings: &Settings,
    emulator: &Emulator,
    target: Target,
) -> Result<(Vec<Metric>, u64), BenchError> {
    let mut metrics = Vec::new();
    let mut flows_completed: u64 = 0;
    let session = Arc::new(Session::establish(target.clone()).await?);
    let target = Arc::new(target);
    let mut next_worker: u64 = 0;

    for &concurrency in &settings.flow_concurrency {
        eprintln!("bench: (a) full flows, {concurrency} in flight");
        let mut workers = Vec::with_capacity(concurrency);
        for _ in 0..concurrency {
            workers.push(FlowWorker {
                connection: Connection::open(target.address).await?,
                session: Arc::clone(&session),
                id: next_worker,
                sequence: 0,
            });
            next_worker += 1;
        }
        let (measurement, warm_up_operations) = measured(
            settings,
            emulator,
            workers,
            flow_step,
            &format!("flow.c{concurrency}"),
            "flows/s",
            &mut metrics,
        )
        .await?;
        flows_completed += measurement.operations + warm_up_operations;
    }

    for &concurrency in &settings.token_concurrency {
        eprintln!("bench: (b) client_credentials, {concurrency} connections");
        let mut workers = Vec::with_capacity(concurrency);
        for _ in 0..concurrency {
            workers.push(TokenWorker {
                connection: Connection::open(target.address).await?,
                target: Arc::clone(&target),
            });
        }
        measured(
            settings,
            emulator,
            workers,
            client_credentials_step,
            &format!("token.client_credentials.c{concurrency}"),
            "requests/s",
            &mut metrics,
        )
        .await?;
    }

    for &concurrency in &settings.token_concurrency {
        eprintln!("bench: (b) refresh_token, {concurrency} connections");
        let mut workers = Vec::with_capacity(concurrency);
        for _ in 0..concurrency {
            let mut connection = Connection::open(target.address).await?;
            let tokens = run_flow(&mut connection, &session, next_worker, 0).await?;
            next_worker += 1;
            flows_completed += 1;
            workers.push(RefreshWorker {
                connection,
                session: Arc::clone(&session),
                refresh_token: tokens.refresh_token,
            });
        }
        measured(
            settings,
            emulator,
            workers,
            refresh_step,
            &format!("token.refresh.c{concurrency}"),
            "requests/s",
            &mut metrics,
        )
        .await?;
    }

    let remaining = settings.rss_flows.saturating_sub(flows_completed);
    if remaining > 0 {
        eprintln!(
            "bench: (d) {remaining} more flows, 16 in flight, for the RSS after {} flows \
             (at most {:?})",
            settings.rss_flows, settings.rss_max
        );
        let mut workers = Vec::with_capacity(16);
        for _ in 0..16 {
            workers.push(FlowWorker {
                connection: Connection::open(target.address).await?,
                session: Arc::clone(&session),
                id: next_worker,
                sequence: 0,
            });
            next_worker += 1;
        }
        let budget = Budget {
            duration: settings.rss_max,
            max_operations: Some(remaining),
        };
        let (_, measurement) = closed_loop(workers, budget, flow_step).await?;
        flows_completed += measurement.operations;
        metrics.push(metric(
            "rss.flows_rate",
            measurement.rate(),
            "flows/s",
            Better::Higher,
        ));
    }
    Ok((metrics, flows_completed))
}

/// Warms up, then measures one load point and records rate, p50, p99 and both sides' CPU use.
/// Returns the measurement and how many operations the warm-up completed.
async fn measured<W, F, Fut>(
    settings: &Settings,
    emulator: &Emulator,
    workers: Vec<W>,
    step: F,
    name: &str,
    unit: &str,
    metrics: &mut Vec<Metric>,
) -> Result<(Measurement, u64), BenchError>
where
    W: Send + 'static,
    F: Fn(W) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<W, BenchError>> + Send + 'static,
{
    let (workers, warm_up) = closed_loop(
        workers,
        Budget::for_duration(settings.warm_up),
        step.clone(),
    )
    .await?;
    let duration = if workers.len() == 1 {
        settings.latency_duration
    } else {
        settings.duration
    };
    let emulator_before = emulator.cpu_time()?;
    let generator_before = own_cpu_time()?;
    let (_, measurement) = closed_loop(workers, Budget::for_duration(duration), step).await?;
    let emulator_cpu = emulator.cpu_time()?.saturating_sub(emulator_before);
    let generator_cpu = own_cpu_time()?.saturating_sub(generator_before);
    let wall = measurement.elapsed.as_secs_f64().max(f64::EPSILON);
    metrics.push(metric(
        &format!("{name}.rate"),
        measurement.rate(),
        unit,
        Better::Higher,
    ));
    metrics.push(metric(
        &format!("{name}.p50_ms"),
        measurement.percentile_ms(0.50),
        "ms",
        Better::Lower,
    ));
    metrics.push(metric(
        &format!("{name}.p99_ms"),
        measurement.percentile_ms(0.99),
        "ms",
        Better::Lower,
    ));
    metrics.push(metric(
        &format!("{name}.emulator_cpu"),
        emulator_cpu.as_secs_f64() / wall,
        "cores",
        Better::Neither,
    ));
    // Operations per second of the emulator's CPU time: what one idle core would do when the
    // load saturates it, and robust against other processes sharing the core.
    let per_cpu_second = measurement.operations as f64 / emulator_cpu.as_secs_f64().max(0.01);
    metrics.push(metric(
        &format!("{name}.per_emulator_cpu_second"),
        per_cpu_second,
        unit,
        Better::Higher,
    ));
    metrics.push(metric(
        &format!("{name}.generator_cpu"),
        generator_cpu.as_secs_f64() / wall,
        "cores",
        Better::Neither,
    ));
    Ok((measurement, warm_up.operations))
}

fn metric(name: &str, value: f64, unit: &str, better: Better) -> Metric {
    Metric {
        name: name.to_owned(),
        value,
        unit: unit.to_owned(),
        better,
    }
}

fn megabytes(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn remove_dir(path: &Path) -> Result<(), BenchError> {
    match std::fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(BenchError::Io {
            context: format!("removing {}", path.display()),
            source: error,
        }),
    }
}

fn machine(settings: &Settings) -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cores = cpuinfo
        .lines()
        .filter(|line| line.starts_with("processor"))
        .count();
    let cpu_model = cpuinfo
        .lines()
        .find_map(|line| line.strip_prefix("model name"))
        .and_then(|rest| rest.split_once(':'))
        .map(|(_, model)| model.trim().to_owned())
        .unwrap_or_else(|| "unknown".to_owned());
    Machine {
        cores,
        cpu_model,
        generator_cpus: own_allowed_cpus(),
        emulator_cpu: settings.emulator.cpu,
    }
}
