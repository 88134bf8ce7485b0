//! The HTTP load generator: a fixed number of keep-alive clients sending `GET`s to loopback
//! URLs, bounded by a request count and a duration, recording each request's latency.

use std::{
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, Instant},
};

use crate::sample::Samples;

/// How much load to send.
#[derive(Debug, Clone, Copy)]
pub struct LoadPlan {
    /// Requests in flight at once (one keep-alive connection each).
    pub concurrency: usize,
    /// Requests to send at most.
    pub requests: usize,
    /// Time to send them in at most: the run stops early when it is over.
    pub max_duration: Duration,
}

/// What a run measured.
#[derive(Debug, Clone, Default)]
pub struct LoadResult {
    /// Requests answered with a success status.
    pub ok: usize,
    /// Requests that failed or were answered with another status.
    pub failed: usize,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// The latency of every successful request.
    pub latencies: Samples,
}

impl LoadResult {
    /// Successful requests per second.
    pub fn rps(&self) -> f64 {
        #[allow(clippy::cast_precision_loss)]
        let ok = self.ok as f64;
        ok / self.elapsed.as_secs_f64().max(f64::MIN_POSITIVE)
    }

    /// Adds another run's counts and latencies (the elapsed times add up).
    pub fn add(&mut self, other: &LoadResult) {
        self.ok += other.ok;
        self.failed += other.failed;
        self.elapsed += other.elapsed;
        self.latencies.extend(&other.latencies);
    }
}

/// A client for the load: keep-alive, no proxy, enough idle connections for `concurrency`.
pub fn client(concurrency: usize) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(concurrency)
        .timeout(Duration::from_secs(10))
        .build()
}

/// Sends `GET` requests to `urls` (in turn), with `headers`, as `plan` says. Only loopback
/// URLs are accepted: the load generator never sends traffic off the machine.
pub async fn run(client: &reqwest::Client, urls: &[String], headers: &[(&str, &str)], plan: &LoadPlan) -> LoadResult {
    assert!(
        !urls.is_empty() && urls.iter().all(|u| is_loopback(u)),
        "the load generator only sends to loopback URLs"
    );
    let next = AtomicUsize::new(0);
    let started = Instant::now();
    let deadline = started + plan.max_duration;
    let workers = (0..plan.concurrency.max(1)).map(|_| async {
        let mut out = LoadResult::default();
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            if i >= plan.requests || Instant::now() >= deadline {
                break;
            }
            let mut request = client.get(&urls[i % urls.len()]);
            for (name, value) in headers {
                request = request.header(*name, *value);
            }
            let sent = Instant::now();
            let answered = match request.send().await {
                Ok(response) if response.status().is_success() => response.bytes().await.is_ok(),
                _ => false,
            };
            if answered {
                out.ok += 1;
                out.latencies.push(sent.elapsed());
            } else {
                out.failed += 1;
            }
        }
        out
    });
    let mut total = LoadResult::default();
    for worker in futures::future::join_all(workers).await {
        total.ok += worker.ok;
        total.failed += worker.failed;
        total.latencies.extend(&worker.latencies);
    }
    total.elapsed = started.elapsed();
    total
}

/// Whether `url` names a loopback host.
fn is_loopback(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("http://") else {
        return false;
    };
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.split(':').next().unwrap_or_default(),
    };
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_urls() {
        assert!(is_loopback("http://127.0.0.1:3000/projects/recP1"));
        assert!(is_loopback("http://localhost:80/"));
        assert!(is_loopback("http://[::1]:8080/x"));
        assert!(!is_loopback("http://10.0.0.1:3000/"));
        assert!(!is_loopback("https://127.0.0.1/"));
        assert!(!is_loopback("http://127.0.0.1.example.com/"));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn bounded_by_count_against_a_local_server() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new().route("/ok", axum::routing::get(|| async { "ok" }));
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        let client = client(4).unwrap();
        let urls = vec![format!("http://{addr}/ok"), format!("http://{addr}/missing")];
        let plan = LoadPlan {
            concurrency: 4,
            requests: 40,
            max_duration: Duration::from_secs(10),
        };
        let result = run(&client, &urls, &[("cache-control", "no-store")], &plan).await;
        assert_eq!((result.ok, result.failed), (20, 20));
        assert_eq!(result.latencies.len(), 20);
        assert!(result.rps() > 0.0);
        server.abort();
    }
}
