//! The demo through Redis outages: the API starts and serves while Redis is down and caches
//! once it is up; the bulk commands report what they did and fail when part of it failed.
//! SQLite databases in temp dirs and spawned redis-servers.

mod common;

use std::time::{Duration, Instant};

use cache_core::Cacheable;
use cache_redis::testing::RedisServer;
use clap::Parser;
use common::{Backend, TestDb};
use demo_app::{
    api::AppState,
    app::{AppError, Secrets, build_cache, connect_store_with, open_origin, router},
    commands,
    config::{Cli, Command, RedisUrl, Secret, StoreSettings},
    models::Project,
    origin::OriginSettings,
};

fn cli(db: &TestDb, redis: &RedisServer, command: &[&str]) -> Cli {
    let url = db.url.to_string();
    let mut args = vec!["demo-app", "--database-url", url.as_str(), "--origin-latency-ms", "0"];
    let redis_url = redis.url();
    args.extend(["--redis-url", redis_url.as_str()]);
    args.extend_from_slice(command);
    Cli::try_parse_from(args).expect("arguments")
}

fn x_cache(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("x-cache")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_starts_while_redis_is_down_and_caches_once_it_is_up() {
    let db = TestDb::new(Backend::Sqlite).await;
    let mut redis = RedisServer::reserve();
    let origin = open_origin(&db.db, OriginSettings::default()).await.expect("origin");
    let url: RedisUrl = redis.url().parse().expect("url");
    let store = connect_store_with(Some(&url), &StoreSettings::default())
        .await
        .expect("starts although Redis is down");
    let cache = build_cache(store.clone(), origin.clone(), true).expect("cache");
    let secrets = Secrets {
        webhook: Secret::generate("webhook secret").expect("secret"),
        admin: Secret::generate("admin token").expect("secret"),
    };
    let app = router(
        AppState {
            cache,
            origin: origin.clone(),
        },
        &secrets,
    )
    .expect("router");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    let server = tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    let http = reqwest::Client::new();
    let id = origin.recent_ids(Project::schema(), Some(1)).await.expect("ids")[0].clone();
    let path = format!("{base}/projects/{id}");

    let down = http.get(&path).send().await.expect("request");
    assert_eq!(down.status(), reqwest::StatusCode::OK, "answered from the database");

    tokio::task::block_in_place(|| redis.start_again());
    let deadline = Instant::now() + Duration::from_secs(20);
    while store.ping().await.is_err() {
        assert!(Instant::now() < deadline, "the store never connected");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The first read after Redis came up fills the cache (a response cache entry made while
    // Redis was down may not exist); from then on reads are hits.
    let _ = http.get(&path).send().await.expect("request");
    let up = http.get(&path).send().await.expect("request");
    assert_eq!(up.status(), reqwest::StatusCode::OK);
    assert_eq!(x_cache(&up), "HIT");
    server.abort();
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_fails_when_the_cache_does_not_hold_what_it_read() {
    let db = TestDb::new(Backend::Sqlite).await;
    let mut redis = RedisServer::start();
    let cli = cli(&db, &redis, &["warm", "--entity", "projects"]);
    let Some(Command::Warm(args)) = &cli.command else {
        panic!("not a warm")
    };
    commands::warm(&cli.config, args)
        .await
        .expect("Redis is up: every record is cached");

    // The report of one entity, through a cache whose store loses Redis.
    let origin = open_origin(&db.db, OriginSettings::default()).await.expect("origin");
    let url: RedisUrl = redis.url().parse().expect("url");
    let store = connect_store_with(Some(&url), &StoreSettings::default())
        .await
        .expect("store");
    let cache = build_cache(store, origin.clone(), true).expect("cache");
    let up = commands::warm_entity::<Project>(&cache, &origin, None, 8)
        .await
        .expect("warm");
    assert!(up.is_complete(), "{up:?}");
    assert_eq!((up.listed, up.loaded, up.cached), (30, 30, 30));

    tokio::task::block_in_place(|| redis.stop());
    let down = commands::warm_entity::<Project>(&cache, &origin, None, 8)
        .await
        .expect("warm");
    assert_eq!((down.listed, down.loaded, down.cached), (30, 30, 0), "read, not cached");
    assert!(!down.is_complete());
    assert!(down.error.is_some(), "{down:?}");

    let err = commands::warm(&cli.config, args).await.expect_err("Redis is down");
    assert!(matches!(err, AppError::Incomplete(_)), "{err}");
    assert!(err.to_string().contains("projects"), "{err}");
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweep_and_flush_fail_when_redis_fails() {
    let db = TestDb::new(Backend::Sqlite).await;
    let mut redis = RedisServer::start();
    let sweep = cli(&db, &redis, &["sweep"]);
    let Some(Command::Sweep(sweep_args)) = &sweep.command else {
        panic!("not a sweep")
    };
    let flush = cli(&db, &redis, &["flush", "--pattern", "projects:*"]);
    let Some(Command::Flush(flush_args)) = &flush.command else {
        panic!("not a flush")
    };
    commands::sweep(&sweep.config, sweep_args).await.expect("Redis is up");
    commands::flush(&flush.config, flush_args).await.expect("Redis is up");
    let bad = cli(&db, &redis, &["flush", "--pattern", "projects:[ab"]);
    let Some(Command::Flush(bad_args)) = &bad.command else {
        panic!("not a flush")
    };
    let err = commands::flush(&bad.config, bad_args).await.expect_err("a bad pattern");
    assert!(matches!(err, AppError::Usage(_)), "{err}");

    tokio::task::block_in_place(|| redis.stop());
    let err = commands::sweep(&sweep.config, sweep_args)
        .await
        .expect_err("Redis is down");
    assert!(matches!(err, AppError::Incomplete(_)), "{err}");
    let err = commands::flush(&flush.config, flush_args)
        .await
        .expect_err("Redis is down");
    assert!(matches!(err, AppError::Incomplete(_)), "{err}");
    db.cleanup().await;
}
