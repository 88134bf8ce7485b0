//! Change capture in the demo, on SQLite and PostgreSQL: once `demo-app outbox install` has run,
//! the service `serve` builds runs the outbox listener (`CACHE_OUTBOX=auto`), and a write made
//! in the database by another connection, as `sqlite3` or `psql` would make it, reaches the API
//! with no call from the application.

mod common;

use std::time::{Duration, Instant};

use cache_core::Cacheable;
use clap::Parser;
use common::{TestDb, backends};
use demo_app::{
    app::{self, AppError},
    commands,
    config::{Cli, OutboxAction, OutboxArgs},
    models::Project,
};
use reqwest::{Response, StatusCode};
use serde_json::Value;

fn cli(test: &TestDb, args: &[&str]) -> Cli {
    let url = test.url.as_str().to_owned();
    let mut all = vec!["demo-app", "--database-url", url.as_str(), "--origin-latency-ms", "0"];
    all.extend_from_slice(args);
    Cli::try_parse_from(all).expect("arguments")
}

fn origin_calls(response: &Response) -> u64 {
    response
        .headers()
        .get("x-origin-calls")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(u64::MAX)
}

/// Asks `url` until `done` says yes, for at most ten seconds; the answer that said yes.
async fn poll_until(
    http: &reqwest::Client,
    url: &str,
    what: &str,
    done: impl Fn(StatusCode, &Value) -> bool,
) -> (StatusCode, Value, u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let response = http.get(url).send().await.expect("request");
        let (status, calls) = (response.status(), origin_calls(&response));
        let body: Value = response.json().await.expect("a JSON body");
        if done(status, &body) {
            return (status, body, calls);
        }
        assert!(
            Instant::now() < deadline,
            "{what}: still {status} {body} at the deadline"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn writes_made_outside_the_app_reach_the_api_through_the_outbox() {
    for backend in backends() {
        let test = TestDb::new(backend).await;
        let auto = cli(&test, &[]);

        // Before the install: `auto` runs no listener, `on` refuses to start.
        let service = app::service(&auto.config).await.expect("service");
        assert!(service.outbox.is_none(), "{backend:?}: nothing to listen to yet");
        let on = cli(&test, &["--cache-outbox", "on"]);
        let Err(err) = app::service(&on.config).await else {
            panic!("{backend:?}: CACHE_OUTBOX=on started without an outbox");
        };
        assert!(matches!(err, AppError::NoOutbox { .. }), "{err}");
        assert!(err.to_string().contains("run `demo-app outbox install` first"), "{err}");

        let install = OutboxArgs {
            action: OutboxAction::Install,
        };
        commands::outbox(&auto.config, &install).await.expect("outbox install");
        let off = cli(&test, &["--cache-outbox", "off"]);
        assert!(app::service(&off.config).await.expect("service").outbox.is_none());

        let service = app::service(&auto.config).await.expect("service");
        let listener = service.outbox.expect("auto listens once the outbox is installed");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let listening = tokio::spawn(async move {
            listener
                .poll_interval(Duration::from_millis(25))
                .run(async {
                    let _ = stopped.await;
                })
                .await
        });
        let socket = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", socket.local_addr().expect("address"));
        let router = service.router;
        let server = tokio::spawn(async move { axum::serve(socket, router).await.expect("serve") });
        let http = reqwest::Client::new();

        let ids = service
            .state
            .origin
            .recent_ids(Project::schema(), Some(2))
            .await
            .expect("ids");
        let (renamed, deleted) = (
            format!("{base}/projects/{}", ids[0]),
            format!("{base}/projects/{}", ids[1]),
        );
        for url in [&renamed, &deleted] {
            let read = http.get(url).send().await.expect("request");
            assert_eq!(read.status(), StatusCode::OK, "{backend:?}");
            let again = http.get(url).send().await.expect("request");
            assert_eq!(origin_calls(&again), 0, "{backend:?}: cached");
        }

        // Another connection, as sqlite3 or psql: the row's version (`updated_at`) untouched.
        let changed = test
            .execute_elsewhere(
                r#"UPDATE "Projects" SET "name" = 'Renamed outside the app' WHERE "id" = $1"#,
                ids[0].as_str(),
            )
            .await;
        assert_eq!(changed, 1);
        let removed = test
            .execute_elsewhere(r#"DELETE FROM "Projects" WHERE "id" = $1"#, ids[1].as_str())
            .await;
        assert_eq!(removed, 1);

        let (_, body, calls) = poll_until(&http, &renamed, "the renamed project", |status, body| {
            status == StatusCode::OK && body["name"] == "Renamed outside the app"
        })
        .await;
        assert_eq!(body["id"], ids[0].as_str());
        assert_eq!(
            calls, 0,
            "{backend:?}: the listener put it in the cache; the read did not ask"
        );
        let (_, _, calls) = poll_until(&http, &deleted, "the deleted project", |status, _| {
            status == StatusCode::NOT_FOUND
        })
        .await;
        assert_eq!(calls, 0, "{backend:?}: answered by the tombstone the listener left");

        let _ = stop.send(());
        listening.await.expect("the listener ends").expect("the listener ran");
        server.abort();
        test.cleanup().await;
    }
}

#[tokio::test]
async fn the_outbox_command_prints_installs_and_removes_the_triggers() {
    for backend in backends() {
        let test = TestDb::new(backend).await;
        let config = cli(&test, &[]).config;
        let count_triggers = match backend {
            common::Backend::Sqlite => "SELECT count(*) FROM sqlite_master WHERE type = 'trigger'",
            // This test's schema only: other tests install the same triggers in theirs.
            common::Backend::Postgres => {
                "SELECT count(*) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid \
                 WHERE t.tgname = 'cache_outbox' AND c.relnamespace = current_schema()::regnamespace"
            }
        };
        let triggers = || async { test.db.scalar(count_triggers).await.expect("count").unwrap_or(0) };

        let print = OutboxArgs {
            action: OutboxAction::Print { remove: false },
        };
        commands::outbox(&config, &print).await.expect("print");
        assert_eq!(triggers().await, 0, "{backend:?}: printing installs nothing");
        assert!(!test.db.has_outbox().await.expect("has_outbox"));

        let install = OutboxArgs {
            action: OutboxAction::Install,
        };
        commands::outbox(&config, &install).await.expect("install");
        commands::outbox(&config, &install).await.expect("install again");
        assert!(test.db.has_outbox().await.expect("has_outbox"));
        // Every table of the demo: three triggers each on SQLite, one on PostgreSQL.
        let expected = match backend {
            common::Backend::Sqlite => 15,
            common::Backend::Postgres => 5,
        };
        assert_eq!(triggers().await, expected, "{backend:?}");

        let remove = OutboxArgs {
            action: OutboxAction::Remove,
        };
        commands::outbox(&config, &remove).await.expect("remove");
        assert_eq!(triggers().await, 0, "{backend:?}");
        assert!(test.db.has_outbox().await.expect("has_outbox"), "the table is kept");
        test.cleanup().await;
    }
}
