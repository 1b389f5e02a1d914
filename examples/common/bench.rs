//! What the benchmark binaries share: a closed loop of calls and its percentiles.
//! Included with `#[path = "common/bench.rs"] mod bench;` (a folder without `main.rs` is
//! not an example of its own).

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What a closed loop of calls measured: the latencies of the accepted calls (sorted),
/// how many were refused, and the accepted calls per second.
pub struct Loop {
    pub latencies: Vec<Duration>,
    pub refused: usize,
    pub rate: f64,
}

impl Loop {
    pub fn p50_ms(&self) -> f64 {
        ms(pct(&self.latencies, 0.50))
    }

    pub fn p99_ms(&self) -> f64 {
        ms(pct(&self.latencies, 0.99))
    }
}

/// `total` calls from `concurrency` tasks spread over `channels`, each task sending its
/// next call as soon as the last one is answered. `call(channel, i)` makes call `i`.
pub async fn closed_loop<C, F, Fut, E>(
    total: usize,
    concurrency: usize,
    channels: &[C],
    call: F,
) -> anyhow::Result<Loop>
where
    C: Clone + Send + 'static,
    F: Fn(C, usize) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<(), E>> + Send,
    E: Send + 'static,
{
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..concurrency.max(1) {
        let channel = channels[t % channels.len()].clone();
        let (next, call) = (next.clone(), call.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut refused = 0usize;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                let t0 = Instant::now();
                match call(channel.clone(), i).await {
                    Ok(()) => lat.push(t0.elapsed()),
                    Err(_) => refused += 1,
                }
            }
            (lat, refused)
        }));
    }
    let mut latencies = Vec::new();
    let mut refused = 0;
    for t in tasks {
        let (l, r) = t.await?;
        latencies.extend(l);
        refused += r;
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let rate = latencies.len() as f64 / elapsed.as_secs_f64();
    Ok(Loop {
        latencies,
        refused,
        rate,
    })
}

/// The `p` quantile (0..=1) of sorted durations; zero for none.
pub fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
