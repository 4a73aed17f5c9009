//! Closed-loop load: N workers, each doing one operation after another on its own connection,
//! until a deadline or an operation budget; latencies of every operation, percentiles.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use crate::BenchError;

/// When a measurement stops: at the deadline, or after `max_operations` started, whichever
/// comes first.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    /// How long to run.
    pub duration: Duration,
    /// How many operations to start at most.
    pub max_operations: Option<u64>,
}

impl Budget {
    /// Runs for `duration`.
    pub fn for_duration(duration: Duration) -> Budget {
        Budget {
            duration,
            max_operations: None,
        }
    }
}

/// What one closed-loop run measured.
#[derive(Debug, Clone)]
pub struct Measurement {
    /// Workers (operations in flight).
    pub concurrency: usize,
    /// Completed operations.
    pub operations: u64,
    /// Wall time from the first start to the last completion.
    pub elapsed: Duration,
    /// Every operation's latency in microseconds, sorted.
    pub latencies_us: Vec<u32>,
}

impl Measurement {
    /// Operations per second.
    pub fn rate(&self) -> f64 {
        let seconds = self.elapsed.as_secs_f64();
        if seconds == 0.0 {
            return 0.0;
        }
        self.operations as f64 / seconds
    }

    /// The `quantile` (0–1) latency in milliseconds (nearest rank).
    pub fn percentile_ms(&self, quantile: f64) -> f64 {
        percentile(&self.latencies_us, quantile) as f64 / 1000.0
    }
}

/// The nearest-rank percentile of sorted values; 0 for none.
pub fn percentile(sorted: &[u32], quantile: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (quantile * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Runs `step` in a closed loop on every worker until `budget` is spent. Each step takes the
/// worker by value and hands it back, so a worker owns its connection without locks. The first
/// failing step fails the measurement: a benchmark that counts errors as throughput lies.
pub async fn closed_loop<W, F, Fut>(
    workers: Vec<W>,
    budget: Budget,
    step: F,
) -> Result<(Vec<W>, Measurement), BenchError>
where
    W: Send + 'static,
    F: Fn(W) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<W, BenchError>> + Send + 'static,
{
    let concurrency = workers.len();
    let started = Arc::new(AtomicU64::new(0));
    let begin = Instant::now();
    let deadline = begin + budget.duration;
    let mut tasks = JoinSet::new();
    for worker in workers {
        let step = step.clone();
        let started = Arc::clone(&started);
        tasks.spawn(async move {
            let mut worker = worker;
            let mut latencies: Vec<u32> = Vec::new();
            loop {
                if Instant::now() >= deadline {
                    break;
                }
                if let Some(max) = budget.max_operations
                    && started.fetch_add(1, Ordering::Relaxed) >= max
                {
                    break;
                }
                let operation = Instant::now();
                worker = step(worker).await?;
                let micros = operation.elapsed().as_micros();
                latencies.push(u32::try_from(micros).unwrap_or(u32::MAX));
            }
            Ok::<_, BenchError>((worker, latencies, Instant::now()))
        });
    }
    let mut workers = Vec::with_capacity(concurrency);
    let mut latencies_us = Vec::new();
    let mut last = begin;
    while let Some(joined) = tasks.join_next().await {
        let (worker, latencies, finished) = joined.map_err(|error| BenchError::Protocol {
            step: "load",
            message: format!("a worker task failed: {error}"),
        })??;
        workers.push(worker);
        latencies_us.extend(latencies);
        last = last.max(finished);
    }
    latencies_us.sort_unstable();
    let measurement = Measurement {
        concurrency,
        operations: latencies_us.len() as u64,
        elapsed: last - begin,
        latencies_us,
    };
    Ok((workers, measurement))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let values: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&values, 0.5), 50);
        assert_eq!(percentile(&values, 0.99), 99);
        assert_eq!(percentile(&values, 1.0), 100);
        assert_eq!(percentile(&[7], 0.99), 7);
        assert_eq!(percentile(&[], 0.5), 0);
    }

    #[test]
    fn an_operation_budget_stops_every_worker_at_the_total() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let budget = Budget {
            duration: Duration::from_secs(10),
            max_operations: Some(25),
        };
        let (workers, measurement) = runtime
            .block_on(closed_loop(vec![0u32; 4], budget, |count| async move {
                tokio::task::yield_now().await;
                Ok(count + 1)
            }))
            .unwrap();
        assert_eq!(measurement.operations, 25);
        assert_eq!(workers.iter().sum::<u32>(), 25);
        assert_eq!(measurement.concurrency, 4);
    }

    #[test]
    fn a_failing_step_fails_the_measurement() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let result = runtime.block_on(closed_loop(
            vec![()],
            Budget::for_duration(Duration::from_secs(10)),
            |()| async {
                Err::<(), _>(BenchError::Protocol {
                    step: "test",
                    message: "refused".to_owned(),
                })
            },
        ));
        assert_eq!(result.unwrap_err().to_string(), "test: refused");
    }
}
