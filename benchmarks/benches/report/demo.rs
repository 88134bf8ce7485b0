//! The demo over HTTP (8): `GET /projects/{id}` with the cache hitting, beside the same with
//! the cache disabled (SQLite alone) and beside a bare axum handler returning the same bytes,
//! under the in-repo load generator.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use axum::{
    Router,
    extract::{Path, State},
    http::{
        HeaderName, HeaderValue, StatusCode,
        header::{CONTENT_LENGTH, CONTENT_TYPE, DATE},
    },
    response::{IntoResponse, Response},
    routing::get,
};
use bytes::Bytes;
use cache_core::{Cacheable, RecordId};
use futures::StreamExt as _;
use model_cache_bench::{
    http::{self, LoadPlan, LoadResult},
    report::{Line, Verdict, fmt_duration, fmt_rate, fmt_ratio, thousands},
    sample::Summary,
};

use super::{Bench, signed};

/// Where the bare handler's Redis route reads a project's response bytes.
const BARE_KEY_PREFIX: &str = "bench:http:";
/// Line 8a's target against the bare handler: at least this share of its rate.
const BARE_SHARE: f64 = 0.8;

/// The demo, served on its own runtime and thread: as shipped over Redis (its near cache on),
/// with its near cache off (every hit a Redis round trip), and with `CACHE_ENABLED=false`, all
/// over the same SQLite database with no added latency.
struct Demo {
    on: std::net::SocketAddr,
    far: std::net::SocketAddr,
    off: std::net::SocketAddr,
    ids: Vec<RecordId>,
    origin_on: demo_app::origin::DemoOrigin,
    origin_off: demo_app::origin::DemoOrigin,
    seeded: Duration,
    _server: ServerThread,
}

impl Demo {
    fn start(redis_url: String) -> Self {
        use demo_app::{
            api::AppState,
            app::{Secrets, build_cache, build_cache_with, connect_store, open_database, open_origin, router},
            config::{CacheSettings, DEFAULT_NEAR_MB, RedisUrl, Secret},
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
                // As `serve` builds it over Redis: its near cache on, at the default budget.
                let shipped = CacheSettings {
                    enabled: true,
                    near_bytes: DEFAULT_NEAR_MB * 1024 * 1024,
                };
                let cache_on = build_cache_with(store.clone(), origin_on.clone(), shipped).expect("cache");
                let cache_far = build_cache(store.clone(), origin_on.clone(), true).expect("cache");
                let cache_off = build_cache(store, origin_off.clone(), false).expect("cache");
                let near = cache_on.near_cache().expect("a near cache over Redis");
                let deadline = Instant::now() + Duration::from_secs(10);
                while !near.is_enabled() {
                    assert!(Instant::now() < deadline, "the near cache's tracking is on within 10 s");
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
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
                let app_far = router(
                    AppState {
                        cache: cache_far,
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
                let listen_far = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
                let listen_off = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
                let (on, far, off) = (
                    listen_on.local_addr().expect("address"),
                    listen_far.local_addr().expect("address"),
                    listen_off.local_addr().expect("address"),
                );
                let _ = ready_tx.send((on, far, off, ids, origin_on, origin_off, seeded));
                let until = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
                    let _ = rx.wait_for(|stop| *stop).await;
                };
                let serve_on = axum::serve(listen_on, app_on).with_graceful_shutdown(until(stopped.clone()));
                let serve_far = axum::serve(listen_far, app_far).with_graceful_shutdown(until(stopped.clone()));
                let serve_off = axum::serve(listen_off, app_off).with_graceful_shutdown(until(stopped));
                let (a, b, c) = tokio::join!(serve_on, serve_far, serve_off);
                a.expect("serving");
                b.expect("serving");
                c.expect("serving");
                drop(dir);
            });
        });
        let (on, far, off, ids, origin_on, origin_off, seeded) = ready_rx.recv().expect("the demo started");
        Self {
            on,
            far,
            off,
            ids,
            origin_on,
            origin_off,
            seeded,
            _server: ServerThread {
                stop,
                thread: Some(thread),
            },
        }
    }

    fn urls(&self, addr: std::net::SocketAddr) -> Vec<String> {
        (0..self.ids.len())
            .map(|i| format!("http://{addr}/projects/{}", self.ids[(i * 7_919) % self.ids.len()]))
            .collect()
    }
}

/// A server on a runtime and thread of its own, stopped (gracefully) and joined on drop.
struct ServerThread {
    stop: tokio::sync::watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for ServerThread {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A bare axum server, on a runtime and thread of its own as the demo is: `GET
/// /projects/{id}` answers the bytes the demo answered for that project, from memory (line
/// 8c); `GET /redis/projects/{id}` answers them after one raw Redis `GET` (8a's notes).
struct Bare {
    addr: SocketAddr,
    _server: ServerThread,
}

#[derive(Clone)]
struct BareState {
    bodies: Arc<HashMap<String, Bytes>>,
    content_type: HeaderValue,
    /// The headers the demo's response cache hit answered besides `Content-Type` (8a's notes).
    hit_headers: Arc<Vec<(HeaderName, HeaderValue)>>,
    redis: redis::aio::MultiplexedConnection,
}

impl Bare {
    fn start(
        bodies: HashMap<String, Bytes>,
        content_type: HeaderValue,
        hit_headers: Vec<(HeaderName, HeaderValue)>,
        redis_url: String,
    ) -> Self {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("the bare server's runtime");
            runtime.block_on(async move {
                let redis = redis::Client::open(redis_url)
                    .expect("a Redis client")
                    .get_multiplexed_async_connection()
                    .await
                    .expect("a Redis connection");
                let state = BareState {
                    bodies: Arc::new(bodies),
                    content_type,
                    hit_headers: Arc::new(hit_headers),
                    redis,
                };
                let app = Router::new()
                    .route("/projects/{id}", get(bare_from_memory))
                    .route("/redis/projects/{id}", get(bare_from_redis))
                    .route("/headers/projects/{id}", get(bare_with_headers))
                    .with_state(state);
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
                let _ = ready_tx.send(listener.local_addr().expect("address"));
                axum::serve(listener, app)
                    .with_graceful_shutdown(async move {
                        let _ = stopped.wait_for(|stop| *stop).await;
                    })
                    .await
                    .expect("serving");
            });
        });
        let addr = ready_rx.recv().expect("the bare server started");
        Self {
            addr,
            _server: ServerThread {
                stop,
                thread: Some(thread),
            },
        }
    }
}

fn bare_answer(state: &BareState, body: Option<Bytes>) -> Response {
    match body {
        Some(body) => ([(CONTENT_TYPE, state.content_type.clone())], body).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn bare_from_memory(State(state): State<BareState>, Path(id): Path<String>) -> Response {
    let body = state.bodies.get(&id).cloned();
    bare_answer(&state, body)
}

async fn bare_with_headers(State(state): State<BareState>, Path(id): Path<String>) -> Response {
    let body = state.bodies.get(&id).cloned();
    let mut response = bare_answer(&state, body);
    for (name, value) in state.hit_headers.iter() {
        response.headers_mut().insert(name.clone(), value.clone());
    }
    response
}

async fn bare_from_redis(State(mut state): State<BareState>, Path(id): Path<String>) -> Response {
    let body: Option<Vec<u8>> = redis::cmd("GET")
        .arg(format!("{BARE_KEY_PREFIX}{id}"))
        .query_async(&mut state.redis)
        .await
        .unwrap_or(None);
    bare_answer(&state, body.map(Bytes::from))
}

/// The body the demo answers for each of its projects, through its cached app.
async fn demo_bodies(client: &reqwest::Client, demo: &Demo, concurrency: usize) -> HashMap<String, Bytes> {
    futures::stream::iter(demo.ids.iter().map(|id| async move {
        let response = client
            .get(format!("http://{}/projects/{id}", demo.on))
            .send()
            .await
            .expect("a project's response");
        assert!(response.status().is_success(), "project {id}: {}", response.status());
        let body = response.bytes().await.expect("a project's body");
        (id.as_str().to_owned(), body)
    }))
    .buffer_unordered(concurrency)
    .collect()
    .await
}

/// `` `mget`, `evalsha` `` (or `none`).
fn commands(names: &[String]) -> String {
    if names.is_empty() {
        return "none".to_owned();
    }
    names.iter().map(|c| format!("`{c}`")).collect::<Vec<_>>().join(", ")
}

/// The time one request takes of the machine, at a rate: its inverse.
fn per_request(r: &LoadResult) -> Duration {
    Duration::from_secs_f64(1.0 / r.rps().max(f64::MIN_POSITIVE))
}

/// The URLs one HTTP variant requests, and the headers it sends.
type Variant<'a> = (&'a [String], &'a [(&'a str, &'a str)]);

pub(super) async fn http_lines(b: &mut Bench) {
    let demo = Demo::start(b.server.url());
    let concurrency = 32;
    let client = http::client(concurrency).expect("an HTTP client");
    let (urls_on, urls_far, urls_off) = (demo.urls(demo.on), demo.urls(demo.far), demo.urls(demo.off));
    let no_store: &[(&str, &str)] = &[("cache-control", "no-store")];

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
    let content_type = probe
        .headers()
        .get(CONTENT_TYPE)
        .cloned()
        .unwrap_or_else(|| HeaderValue::from_static("application/json"));
    let hit_headers: Vec<(HeaderName, HeaderValue)> = probe
        .headers()
        .iter()
        .filter(|(name, _)| ![CONTENT_TYPE, CONTENT_LENGTH, DATE].contains(name))
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect();
    let hit_header_names: Vec<String> = hit_headers.iter().map(|(n, _)| format!("`{n}`")).collect();
    let body_len = probe.bytes().await.map_or(0, |b| b.len());

    // What one response cache hit, and one record cache hit, send to Redis (each asked once
    // before, so that the near cache holds what the store answered).
    let hit = |urls: &[String], headers: &'static [(&'static str, &'static str)]| {
        let mut request = client.get(&urls[1]);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        async move {
            let response = request.send().await.expect("a request");
            assert!(response.status().is_success(), "{}", response.status());
            response.bytes().await.expect("a body")
        }
    };
    let no_store_hit: &[(&str, &str)] = &[("cache-control", "no-store")];
    hit(&urls_on, &[]).await;
    hit(&urls_on, no_store_hit).await;
    let (_, response_hit_commands) = b.server.count_commands(hit(&urls_on, &[])).await;
    let (_, record_hit_commands) = b.server.count_commands(hit(&urls_on, no_store_hit)).await;
    let (_, far_hit_commands) = b.server.count_commands(hit(&urls_far, &[])).await;
    // The bare handler answers the same bytes: from memory, or from Redis after one `GET`.
    let bodies = demo_bodies(&client, &demo, concurrency).await;
    for chunk in bodies.iter().collect::<Vec<_>>().chunks(500) {
        let mut pipe = redis::pipe();
        for (id, body) in chunk {
            pipe.cmd("SET")
                .arg(format!("{BARE_KEY_PREFIX}{id}"))
                .arg(&body[..])
                .ignore();
        }
        let () = pipe
            .query_async(&mut b.conn.clone())
            .await
            .expect("SET the bare handler's bodies");
    }
    let bare = Bare::start(bodies, content_type, hit_headers, b.server.url());
    let urls_bare = demo.urls(bare.addr);
    let urls_bare_redis: Vec<String> = urls_bare
        .iter()
        .map(|u| u.replacen("/projects/", "/redis/projects/", 1))
        .collect();
    let urls_bare_headers: Vec<String> = urls_bare
        .iter()
        .map(|u| u.replacen("/projects/", "/headers/projects/", 1))
        .collect();
    // The demo's index: its router and telemetry layer, no cache.
    let urls_index = vec![format!("http://{}/", demo.on)];
    let variants: [Variant<'_>; 8] = [
        (&urls_on, &[]),
        (&urls_on, no_store),
        (&urls_off, no_store),
        (&urls_bare, &[]),
        (&urls_bare_redis, &[]),
        (&urls_index, &[]),
        (&urls_far, &[]),
        (&urls_bare_headers, &[]),
    ];
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
        requests: b.n(6_000, 300),
        max_duration: Duration::from_secs(15),
    };
    // Eight rounds: a round of one variant lasts about a tenth of a second, and lines 8a and 8b
    // are close enough that four rounds let the machine's noise decide between them.
    let rounds = 8;
    let mut results = vec![LoadResult::default(); variants.len()];
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
    drop(bare);
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
    let common_far = common.clone();
    let (on, record, off) = (&results[0], &results[1], &results[2]);
    let (bare, bare_redis, index, far) = (&results[3], &results[4], &results[5], &results[6]);
    let bare_headers = &results[7];
    let r = on.rps() / bare.rps();
    b.lines.push(Line {
        number: "8a".to_owned(),
        name: "HTTP `GET /projects/{id}`: the demo as shipped, cache hitting (response cache)".to_owned(),
        ours: fig(on, &summaries[0]),
        baseline: format!(
            "a bare axum handler returning the same bytes (8c): {}",
            fig(bare, &summaries[3])
        ),
        ratio: fmt_ratio(r),
        target: format!("≥ {BARE_SHARE:.2}x the bare handler, and ≥ line 8b's rate"),
        verdict: Verdict::from_check(r >= BARE_SHARE && on.rps() >= record.rps()),
        notes: vec![
            common.clone(),
            format!(
                "Cache hitting: the response cache layer answers the whole response (`X-Cache: {x_cache}`) from \
                 the near cache the demo turns on over Redis (`CACHE_NEAR_MB`, {} MiB by default): \
                 the stored response as Redis answered it, kept in process and dropped when Redis pushes a change \
                 of its key (`CLIENT TRACKING`). {on_calls} origin calls while measuring the cached variants, \
                 {off_calls} for the uncached one. Commands per request: {} for a response cache hit, {} for a \
                 record cache hit (8b), {} for a response cache hit with the near cache off (8d).",
                demo_app::config::DEFAULT_NEAR_MB,
                commands(&response_hit_commands),
                commands(&record_hit_commands),
                commands(&far_hit_commands)
            ),
            format!(
                "The ratio is of requests per second (higher is better); p99 ratio to the bare handler (lower is \
                 better): {}. Against line 8b (the record cache answering, measured alongside): {} its rate. \
                 Against SQLite alone (`CACHE_ENABLED=false`, `Cache-Control: no-store`): {} its rate, which is {}.",
                fmt_ratio(summaries[0].p99_ratio(&summaries[3])),
                fmt_ratio(on.rps() / record.rps()),
                fmt_ratio(on.rps() / off.rps()),
                fig(off, &summaries[2])
            ),
            format!(
                "Where the time goes, per request (the inverse of the rate: the machine's time for one answer, \
                 the load generator's included): the bare handler {}; the demo's `GET /` (its router and \
                 `CacheTelemetryLayer`, no cache, a small fixed JSON) {} ({} over the bare handler; {}); the demo \
                 answering from its response cache in process {} ({} over its `GET /`: the response cache layer \
                 — its key, the near cache's lookup, the decoded response it keeps, shared rather than copied, its checks and \
                 headers). \
                 The record cache path (8b: `Cache::get_as` answered by the near cache, a clone and the JSON \
                 encoding, response cache skipped) takes {}; the response cache hitting Redis (8d) {}. The \
                 headers a hit answers besides the body's ({}) cost by themselves: the bare handler adding \
                 the same ones takes {} ({} over the bare handler; {}).",
                fmt_duration(per_request(bare)),
                fmt_duration(per_request(index)),
                signed(per_request(index), per_request(bare)),
                fig(index, &summaries[5]),
                fmt_duration(per_request(on)),
                signed(per_request(on), per_request(index)),
                fmt_duration(per_request(record)),
                fmt_duration(per_request(far)),
                hit_header_names.join(", "),
                fmt_duration(per_request(bare_headers)),
                signed(per_request(bare_headers), per_request(bare)),
                fig(bare_headers, &summaries[7])
            ),
            "`CACHE_ENABLED=false` disables the record cache but not the demo's response cache layer, which \
             still stores and serves whole responses: the uncached variant sends `Cache-Control: no-store` so \
             that every request reaches SQLite."
                .to_owned(),
        ],
    });
    b.lines.push(Line {
        number: "8b".to_owned(),
        name: "HTTP `GET /projects/{id}`: record cache hitting, response cache skipped".to_owned(),
        ours: fig(record, &summaries[1]),
        baseline,
        ratio: fmt_ratio(record.rps() / off.rps()),
        target: "— (none set)".to_owned(),
        verdict: Verdict::Info,
        notes: vec![
            common.clone(),
            "The cached app as shipped with `Cache-Control: no-store` on the request: the handler's \
             `Cache::get_as` is answered by the near cache (a clone of the decoded record, no round trip)."
                .to_owned(),
            "p99 ratio (lower is better): ".to_owned() + &fmt_ratio(summaries[1].p99_ratio(&summaries[2])) + ".",
        ],
    });
    b.lines.push(Line {
        number: "8c".to_owned(),
        name: "HTTP `GET /projects/{id}`: a bare axum handler returning the same bytes (8a's baseline)".to_owned(),
        ours: "— (a baseline: no model-cache)".to_owned(),
        baseline: format!("bare axum handler: {}", fig(bare, &summaries[3])),
        ratio: "—".to_owned(),
        target: "— (8a's baseline)".to_owned(),
        verdict: Verdict::Info,
        notes: vec![
            common,
            "An axum `Router` with one route answering, for each project, the bytes the demo answered for it \
             (with its `Content-Type`) from a `HashMap` in memory: no middleware, no metrics, no cache. Served by \
             `axum::serve` on a loopback socket from a 2-thread runtime of its own, as the demo is, in the same \
             process and run, under the same load generator and plan as 8a and 8b, alternating with them."
                .to_owned(),
            format!(
                "The same handler reading the bytes from the spawned Redis server (one `GET` a request): {}.",
                fig(bare_redis, &summaries[4])
            ),
        ],
    });
    b.lines.push(Line {
        number: "8d".to_owned(),
        name: "HTTP `GET /projects/{id}`: the response cache hitting Redis (near cache off)".to_owned(),
        ours: fig(far, &summaries[6]),
        baseline: format!(
            "the bare handler reading the same bytes with one raw Redis `GET`: {}",
            fig(bare_redis, &summaries[4])
        ),
        ratio: fmt_ratio(far.rps() / bare_redis.rps()),
        target: "— (none set)".to_owned(),
        verdict: Verdict::Info,
        notes: vec![
            common_far,
            format!(
                "The demo built as 8a's but with `CACHE_NEAR_MB=0`: every response cache hit is a Redis round \
                 trip ({} a request). Per request: {} against {} for the bare handler's `GET` ({} over the bare \
                 handler from memory, {}: the round trip a response cache in Redis cannot avoid). Against the \
                 bare handler from memory (8c): {} its rate.",
                commands(&far_hit_commands),
                fmt_duration(per_request(far)),
                fmt_duration(per_request(bare_redis)),
                signed(per_request(bare_redis), per_request(bare)),
                fmt_duration(per_request(bare)),
                fmt_ratio(far.rps() / bare.rps())
            ),
        ],
    });
}
