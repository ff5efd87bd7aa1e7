//! Driving a load: N concurrent callers looping for a while, and the figures they measured.

use std::future::Future;
use std::time::{Duration, Instant};

/// Throughput and latency of one run.
pub struct Figures {
    pub rps: f64,
    pub p50: Duration,
    pub p99: Duration,
}

/// Runs `callers` concurrent loops of `call` for `secs` (after a short warm-up).
pub async fn drive<F, Fut>(callers: usize, secs: f64, call: F) -> Figures
where
    F: Fn() -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = ()> + Send,
{
    let warm = Instant::now() + Duration::from_millis(300);
    let mut tasks = Vec::new();
    for _ in 0..callers {
        let call = call.clone();
        tasks.push(tokio::spawn(async move {
            while Instant::now() < warm {
                call().await;
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(secs);
    let mut tasks = Vec::new();
    for _ in 0..callers {
        let call = call.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(1 << 16);
            loop {
                let t0 = Instant::now();
                if t0 >= end {
                    break;
                }
                call().await;
                lat.push(t0.elapsed());
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap_or_default());
    }
    let elapsed = start.elapsed().as_secs_f64();
    all.sort_unstable();
    let pick = |q: f64| {
        let i = ((all.len() as f64 * q) as usize).min(all.len().saturating_sub(1));
        all.get(i).copied().unwrap_or_default()
    };
    Figures {
        rps: all.len() as f64 / elapsed,
        p50: pick(0.50),
        p99: pick(0.99),
    }
}

/// The median of each figure over several runs.
pub fn median(mut runs: Vec<Figures>) -> Figures {
    let mid = runs.len() / 2;
    runs.sort_by(|a, b| a.rps.total_cmp(&b.rps));
    let rps = runs[mid].rps;
    runs.sort_by_key(|f| f.p50);
    let p50 = runs[mid].p50;
    runs.sort_by_key(|f| f.p99);
    Figures {
        rps,
        p50,
        p99: runs[mid].p99,
    }
}

/// `a / b`, or 0 when `b` is 0.
pub fn ratio(a: f64, b: f64) -> f64 {
    if b == 0.0 {
        0.0
    } else {
        a / b
    }
}
