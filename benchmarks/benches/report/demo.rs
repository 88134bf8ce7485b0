//! The demo over HTTP (8): `GET /projects/{id}` with the cache hitting, beside the same with
//! the cache disabled (SQLite alone), under the in-repo load generator.

use std::time::{Duration, Instant};

use cache_core::{Cacheable, RecordId};
use model_cache_bench::{
    http::{self, LoadPlan, LoadResult},
    report::{Line, Verdict, fmt_duration, fmt_rate, fmt_ratio, thousands},
    sample::Summary,
};

use super::Bench;

/// The demo, served on its own runtime and thread: once with the cache, once with
/// `CACHE_ENABLED=false`, both over the same SQLite database with no added latency.
struct Demo {
    on: std::net::SocketAddr,
    off: std::net::SocketAddr,
    ids: Vec<RecordId>,
    origin_on: demo_app::origin::DemoOrigin,
    origin_off: demo_app::origin::DemoOrigin,
    seeded: Duration,
    stop: Option<tokio::sync::watch::Sender<bool>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Demo {
    fn start(redis_url: String) -> Self {
        use demo_app::{
            api::AppState,
            app::{Secrets, build_cache, connect_store, open_database, open_origin, router},
            config::{RedisUrl, Secret},
            database::DatabaseUrl,
            models::Project as DemoProject,
            origin::OriginSettings,
        };

        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("the demo's runtime");
            runtime.block_on(async move {
                let dir = tempfile::tempdir().expect("a temporary directory");
                let url: DatabaseUrl = format!("sqlite://{}", dir.path().join("demo.db").display())
                    .parse()
                    .expect("a database url");
                let started = Instant::now();
                let db = open_database(&url).await.expect("the demo database");
                let seeded = started.elapsed();
                let origin_on = open_origin(&db, OriginSettings::default())
                    .await
                    .expect("the demo's origin");
                let origin_off = open_origin(&db, OriginSettings::default())
                    .await
                    .expect("the demo's origin");
                let store = connect_store(Some(&RedisUrl::Single(redis_url)))
                    .await
                    .expect("the demo's store");
                let secrets = Secrets {
                    webhook: Secret::generate("webhook secret").expect("a webhook secret"),
                    admin: Secret::generate("admin token").expect("an admin token"),
                };
                let cache_on = build_cache(store.clone(), origin_on.clone(), true).expect("cache");
                let cache_off = build_cache(store, origin_off.clone(), false).expect("cache");
                let ids = origin_on
                    .recent_ids(DemoProject::schema(), None)
                    .await
                    .expect("the demo's project ids");
                let app_on = router(
                    AppState {
                        cache: cache_on,
                        origin: origin_on.clone(),
                    },
                    &secrets,
                )
                .expect("the demo's router");
                let app_off = router(
                    AppState {
                        cache: cache_off,
                        origin: origin_off.clone(),
                    },
                    &secrets,
                )
                .expect("the demo's router");
                let listen_on = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
                let listen_off = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
                let (on, off) = (
                    listen_on.local_addr().expect("address"),
                    listen_off.local_addr().expect("address"),
                );
                let _ = ready_tx.send((on, off, ids, origin_on, origin_off, seeded));
                let until = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
                    let _ = rx.wait_for(|stop| *stop).await;
                };
                let serve_on = axum::serve(listen_on, app_on).with_graceful_shutdown(until(stopped.clone()));
                let serve_off = axum::serve(listen_off, app_off).with_graceful_shutdown(until(stopped));
                let (a, b) = tokio::join!(serve_on, serve_off);
                a.expect("serving");
                b.expect("serving");
                drop(dir);
            });
        });
        let (on, off, ids, origin_on, origin_off, seeded) = ready_rx.recv().expect("the demo started");
        Self {
            on,
            off,
            ids,
            origin_on,
            origin_off,
            seeded,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    fn urls(&self, addr: std::net::SocketAddr) -> Vec<String> {
        (0..self.ids.len())
            .map(|i| format!("http://{addr}/projects/{}", self.ids[(i * 7_919) % self.ids.len()]))
            .collect()
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(true);
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The URLs one HTTP variant requests, and the headers it sends.
type Variant<'a> = (&'a [String], &'a [(&'a str, &'a str)]);

pub(super) async fn http_lines(b: &mut Bench) {
    let demo = Demo::start(b.server.url());
    let concurrency = 32;
    let client = http::client(concurrency).expect("an HTTP client");
    let (urls_on, urls_off) = (demo.urls(demo.on), demo.urls(demo.off));
    let no_store: &[(&str, &str)] = &[("cache-control", "no-store")];
    let variants: [Variant<'_>; 3] = [(&urls_on, &[]), (&urls_on, no_store), (&urls_off, no_store)];

    // Fill the caches: every project once through the cached app.
    let fill = http::run(
        &client,
        &urls_on,
        &[],
        &LoadPlan {
            concurrency,
            requests: urls_on.len(),
            max_duration: Duration::from_secs(60),
        },
    )
    .await;
    assert_eq!(fill.failed, 0, "every project was served");
    let probe = client.get(&urls_on[0]).send().await.expect("a probe request");
    let x_cache = probe
        .headers()
        .get("x-cache")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("none")
        .to_owned();
    let body_len = probe.bytes().await.map_or(0, |b| b.len());
    let warm = LoadPlan {
        concurrency,
        requests: b.n(1_000, 200),
        max_duration: Duration::from_secs(10),
    };
    for (urls, headers) in variants {
        http::run(&client, urls, headers, &warm).await;
    }

    let on_before = demo.origin_on.calls().total();
    let off_before = demo.origin_off.calls().total();
    let plan = LoadPlan {
        concurrency,
        requests: b.n(4_000, 300),
        max_duration: Duration::from_secs(15),
    };
    let rounds = 4;
    let mut results = [LoadResult::default(), LoadResult::default(), LoadResult::default()];
    for round in 0..rounds {
        for k in 0..variants.len() {
            let v = (round + k) % variants.len();
            let (urls, headers) = variants[v];
            results[v].add(&http::run(&client, urls, headers, &plan).await);
        }
    }
    let on_calls = thousands(demo.origin_on.calls().total() - on_before);
    let off_calls = thousands(demo.origin_off.calls().total() - off_before);
    let seeded = demo.seeded;
    drop(client);
    drop(demo);

    let summaries: Vec<Summary> = results.iter().map(|r| r.latencies.summary()).collect();
    let failed: usize = results.iter().map(|r| r.failed).sum();
    let fig = |r: &LoadResult, s: &Summary| {
        format!(
            "{} (p50 {}, p99 {})",
            fmt_rate(r.rps()),
            fmt_duration(s.p50),
            fmt_duration(s.p99)
        )
    };
    let baseline = format!(
        "`CACHE_ENABLED=false`, `ORIGIN_LATENCY_MS=0` (SQLite alone): {}",
        fig(&results[2], &summaries[2])
    );
    let common = format!(
        "{rounds} alternating rounds of {} requests per variant from {concurrency} keep-alive connections \
         (reqwest, HTTP/1.1) on one thread; the demo serves from its own 2-thread runtime; {} failed requests. \
         The demo's seeded SQLite database ({} to create and seed), {} projects, a {body_len}-byte response.",
        thousands(plan.requests as u64),
        failed,
        fmt_duration(seeded),
        thousands(urls_on.len() as u64)
    );
    b.lines.push(Line {
        number: "8a".to_owned(),
        name: "HTTP `GET /projects/{id}`: the demo as shipped, cache hitting (response cache)".to_owned(),
        ours: fig(&results[0], &summaries[0]),
        baseline: baseline.clone(),
        ratio: fmt_ratio(results[0].rps() / results[2].rps()),
        target: "— (none set)".to_owned(),
        verdict: Verdict::Info,
        notes: vec![
            common.clone(),
            format!(
                "Cache hitting: the response cache layer answers the whole response from Redis (`X-Cache: {x_cache}`); \
                 {on_calls} origin calls while measuring both cached variants, {off_calls} for the uncached one."
            ),
            "The ratio is of requests per second (higher is better); p99 ratio (lower is better): ".to_owned()
                + &fmt_ratio(summaries[0].p99_ratio(&summaries[2]))
                + ".",
            "`CACHE_ENABLED=false` disables the record cache but not the demo's response cache layer, which \
             still stores and serves whole responses: the uncached variant sends `Cache-Control: no-store` so \
             that every request reaches SQLite."
                .to_owned(),
        ],
    });
    b.lines.push(Line {
        number: "8b".to_owned(),
        name: "HTTP `GET /projects/{id}`: record cache hitting, response cache skipped".to_owned(),
        ours: fig(&results[1], &summaries[1]),
        baseline,
        ratio: fmt_ratio(results[1].rps() / results[2].rps()),
        target: "— (none set)".to_owned(),
        verdict: Verdict::Info,
        notes: vec![
            common,
            "The cached app with `Cache-Control: no-store` on the request: the handler's `Cache::get_as` hits \
             Redis (one `mget`) and decodes the record."
                .to_owned(),
            "p99 ratio (lower is better): ".to_owned() + &fmt_ratio(summaries[1].p99_ratio(&summaries[2])) + ".",
        ],
    });
}
