//! Fixed-rate latency driver for `benches/load/run.sh` (wrk only measures at saturation):
//!
//!   trino-edge latency-probe URL RATE SECONDS [--post BODY]   (hidden subcommand)
//!
//! Sends RATE requests per second on a schedule for SECONDS and prints `p50 p99 p99.9` in
//! microseconds. Latency is measured from each request's *scheduled* start, so a stalled server
//! cannot hide its stall by slowing the sender (no coordinated omission). It lives in the binary
//! rather than in `benches/` so the load harness needs one release build: a bench target pulls in
//! the dev-dependencies, whose features differ, and rebuilds DataFusion a second time.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Run the schedule on a one-thread runtime and print `p50 p99 p99.9` (µs).
pub fn run_probe(
    url: String,
    rate: f64,
    secs: f64,
    body: Option<String>,
) -> Result<(), ProbeError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(ProbeError::Runtime)?;
    let lat = rt.block_on(run(url, rate, secs, body))?;
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    println!("{} {} {}", pct(0.50), pct(0.99), pct(0.999));
    Ok(())
}

/// Why the probe could not run (failed requests are counted, not errors).
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("cannot start the probe's runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("cannot build the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
}

async fn run(
    url: String,
    rate: f64,
    secs: f64,
    body: Option<String>,
) -> Result<Vec<u64>, ProbeError> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .build()
        .map_err(ProbeError::Client)?;
    let samples = Arc::new(Mutex::new(Vec::with_capacity((rate * secs) as usize)));
    let errors = Arc::new(Mutex::new(0u64));
    let start = Instant::now();
    let n = (rate * secs) as u64;
    let mut tasks = Vec::with_capacity(n as usize);
    for i in 0..n {
        let due = start + Duration::from_secs_f64(i as f64 / rate);
        tokio::time::sleep_until(due.into()).await;
        let (client, url, body) = (client.clone(), url.clone(), body.clone());
        let (samples, errors) = (samples.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            let req = match body {
                Some(b) => client.post(&url).body(b),
                None => client.get(&url),
            };
            let ok = match req.header("X-Trino-User", "bench").send().await {
                Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                Err(_) => false,
            };
            if ok {
                samples
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(due.elapsed().as_micros() as u64);
            } else {
                *errors.lock().unwrap_or_else(|p| p.into_inner()) += 1;
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let errors = *errors.lock().unwrap_or_else(|p| p.into_inner());
    if errors > 0 {
        eprintln!("warning: {errors} failed requests");
    }
    let mut v = std::mem::take(&mut *samples.lock().unwrap_or_else(|p| p.into_inner()));
    v.sort_unstable();
    if v.is_empty() {
        v.push(0);
    }
    Ok(v)
}
