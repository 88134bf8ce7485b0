//! The demo on Airtable, end to end: the Airtable simulator in process, seeded through the
//! seed command's code, the demo served with `SOURCE=airtable` on a real socket with the base's
//! webhook set up as `demo-app airtable webhook setup` does. A record changed and another
//! deleted in the simulator reach the API through the webhook feed (no origin call, no sweep);
//! a notification with a wrong MAC is refused and changes nothing; the API's writes go to
//! Airtable.

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use base64::Engine;
use cache_airtable::{WebhookFeed, testing::Simulator};
use cache_core::{Cache, Cacheable, feed::FeedStatus};
use clap::Parser;
use demo_app::{
    airtable::{
        self, WebhookFile,
        seed::{SeededBase, seed_base},
        webhook::{self, Setup},
    },
    app::{self, AppError},
    config::Cli,
    models::Project,
    origin::DemoOrigin,
    seed::SeedCounts,
};
use hmac::{KeyInit, Mac};
use reqwest::StatusCode;
use serde_json::{Map, Value, json};

const BASE: &str = "appDemoTest000001";

/// A few records of each kind: seeding them takes some 15 requests (3 s at 5 a second).
const COUNTS: SeedCounts = SeedCounts {
    users: 20,
    events: 2,
    projects: 8,
    votes: 12,
    referrals: 3,
};

/// How long a change may take to reach the API before the test fails (the README says a
/// second; this leaves room for a loaded machine).
const DEADLINE: Duration = Duration::from_secs(10);

struct Demo {
    sim: Simulator,
    url: String,
    http: reqwest::Client,
    cache: Cache,
    origin: DemoOrigin,
    feed: WebhookFeed,
    deliveries: cache_http::dashboard::DeliveryLog,
    seeded: SeededBase,
    webhook: WebhookFile,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<Result<(), AppError>>>,
    _dir: tempfile::TempDir,
}

impl Demo {
    async fn start() -> Self {
        let sim = airtable::start_simulator("127.0.0.1:0".parse().expect("an address"), BASE, None)
            .await
            .expect("the simulator");
        let dir = tempfile::tempdir().expect("a temp dir");
        let file: PathBuf = dir.path().join("airtable-webhook.json");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("an address");
        let port = addr.port().to_string();
        let config = Cli::try_parse_from([
            "demo-app",
            "--source",
            "airtable",
            "--airtable-base-id",
            BASE,
            "--airtable-token",
            sim.token(),
            "--airtable-api-url",
            &sim.url(),
            "--airtable-webhook-file",
            file.to_str().expect("a UTF-8 path"),
            "--port",
            &port,
        ])
        .expect("the command line")
        .config;

        // What `demo-app airtable seed` and `demo-app airtable webhook setup` do.
        let settings = config.airtable_settings().expect("Airtable settings");
        let client = airtable::client(&settings).expect("a client");
        let seeded = seed_base(&client, COUNTS, false, |_| {}).await.expect("seeded");
        let notify = airtable::default_notification_url(&config);
        assert_eq!(notify, format!("http://{addr}/airtable/notifications"));
        let Setup::Created { webhook, .. } = webhook::setup(&client, &file, Some(notify), false)
            .await
            .expect("the webhook")
        else {
            panic!("a new webhook");
        };
        assert_eq!(WebhookFile::read(&file).expect("the file"), Some(webhook.clone()));

        // What `demo-app serve` does.
        let service = app::service(&config).await.expect("the service");
        let feed = service.feed.clone().expect("a feed: the webhook file names one");
        let (cache, origin) = (service.state.cache.clone(), service.state.origin.clone());
        let deliveries = service.deliveries.clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(app::run(service, listener, async move {
            let _ = stopped.await;
        }));
        let demo = Self {
            sim,
            url: format!("http://{addr}"),
            http: reqwest::Client::new(),
            cache,
            origin,
            feed,
            deliveries,
            seeded,
            webhook,
            stop: Some(stop),
            server: Some(server),
            _dir: dir,
        };
        // The feed's first round (it finds no cursor: nothing is cached yet to check).
        demo.until("the feed's first round", |d| {
            let ready = d.status().is_some_and(|s| s.position.is_some());
            async move { ready }
        })
        .await;
        demo
    }

    fn status(&self) -> Option<FeedStatus> {
        self.cache.feeds().status(self.feed.name())
    }

    /// The Airtable id of the seed's `n`th project.
    fn project(&self, n: usize) -> String {
        let tables = demo_app::seed::tables(COUNTS);
        let (_, rows) = tables
            .iter()
            .find(|(schema, _)| schema.entity == Project::schema().entity)
            .expect("projects");
        let seed_id = rows[n]["id"].as_str().expect("an id");
        self.seeded.id_of(seed_id).expect("seeded").to_owned()
    }

    /// `GET path`: the status, the `X-Origin-Calls` header and the body.
    async fn get(&self, path: &str) -> (StatusCode, u64, Value) {
        let response = self
            .http
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .expect("the demo answers");
        let status = response.status();
        let calls = response
            .headers()
            .get("x-origin-calls")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .expect("an X-Origin-Calls header");
        (status, calls, response.json().await.unwrap_or(Value::Null))
    }

    /// Polls `check` until it holds, failing past the deadline.
    async fn until<F, Fut>(&self, what: &str, check: F) -> Duration
    where
        F: Fn(&Self) -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let started = Instant::now();
        loop {
            if check(self).await {
                return started.elapsed();
            }
            assert!(started.elapsed() < DEADLINE, "{what}: not within {DEADLINE:?}");
            // The poll's interval, not a wait for something to happen.
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Polls `GET path` until `answered` holds for it; the answer and how long it took.
    async fn until_answered(
        &self,
        path: &str,
        answered: impl Fn(StatusCode, &Value) -> bool,
    ) -> (u64, Value, Duration) {
        let started = Instant::now();
        loop {
            let (status, calls, body) = self.get(path).await;
            if answered(status, &body) {
                return (calls, body, started.elapsed());
            }
            assert!(
                started.elapsed() < DEADLINE,
                "GET {path}: still {status} {body} after {DEADLINE:?}"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    fn cells(fields: Value) -> Map<String, Value> {
        match fields {
            Value::Object(map) => map,
            other => panic!("not an object: {other}"),
        }
    }

    /// A notification as Airtable posts it, signed with `secret`.
    async fn notify(&self, secret: &[u8]) -> StatusCode {
        let body = json!({ "base": { "id": BASE }, "webhook": { "id": self.webhook.webhook_id },
                           "timestamp": "2026-12-01T00:00:00.000Z" })
        .to_string();
        let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(secret).expect("a key");
        mac.update(body.as_bytes());
        let signature = format!("hmac-sha256={}", hex::encode(mac.finalize().into_bytes()));
        self.http
            .post(format!("{}/airtable/notifications", self.url))
            .header("content-type", "application/json")
            .header("x-airtable-content-mac", signature)
            .body(body)
            .send()
            .await
            .expect("the demo answers")
            .status()
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.expect("the server task").expect("served");
        }
    }
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_and_deletes_in_airtable_reach_the_api_through_the_feed() {
    let demo = Demo::start().await;
    let (changed, deleted) = (demo.project(0), demo.project(1));

    // Both read once: cached from now on.
    for id in [&changed, &deleted] {
        let (status, calls, _) = demo.get(&format!("/projects/{id}")).await;
        assert_eq!((status, calls), (StatusCode::OK, 1), "the first read asks Airtable");
        let (status, calls, _) = demo.get(&format!("/projects/{id}")).await;
        assert_eq!((status, calls), (StatusCode::OK, 0), "the second is a hit");
    }
    let fetches = demo.origin.calls();

    // A change made in Airtable (the simulator), as a user would make it.
    let mut times = Vec::new();
    for round in 0..5 {
        let name = format!("Renamed in Airtable {round}");
        let started = Instant::now();
        assert!(
            demo.sim
                .update(BASE, "Projects", &changed, Demo::cells(json!({ "name": name })))
        );
        let path = format!("/projects/{changed}");
        let (calls, body, _) = demo
            .until_answered(&path, |status, body| status == StatusCode::OK && body["name"] == name)
            .await;
        times.push(started.elapsed());
        assert_eq!(
            calls, 0,
            "the feed put the change in the cache: no origin call ({body})"
        );
    }

    // A record deleted in Airtable: a 404 at once, from the tombstone.
    let started = Instant::now();
    assert!(demo.sim.remove(BASE, "Projects", &deleted));
    let (calls, body, _) = demo
        .until_answered(&format!("/projects/{deleted}"), |status, _| {
            status == StatusCode::NOT_FOUND
        })
        .await;
    let delete_time = started.elapsed();
    assert_eq!(calls, 0, "the tombstone answered: no origin call ({body})");

    // Through the feed, not a sweep: no read of Airtable for any of it, and no resync but the
    // feed's first (with nothing cached to check).
    let after = demo.origin.calls();
    assert_eq!(after, fetches, "the demo's origin was not asked anything");
    let status = demo.status().expect("the feed's status");
    assert!(
        status.totals.changes.applied >= 6,
        "five changes and a delete applied: {status:?}"
    );
    let resync = status.last_resync.as_ref().expect("the first round's resync");
    assert_eq!((resync.reason.as_str(), resync.checked), ("no_cursor", 0));
    assert_eq!(status.totals.resyncs, 1);
    assert!(demo.feed.notifications() >= 6, "the simulator's pings woke the feed");
    eprintln!(
        "simulator change to API answer: median {:?} of {times:?}; delete to 404: {delete_time:?}",
        median(times.clone())
    );
    demo.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_with_a_wrong_mac_is_refused_and_changes_nothing() {
    let demo = Demo::start().await;
    let id = demo.project(2);
    let path = format!("/projects/{id}");
    let (_, _, before) = demo.get(&path).await;

    // A change Airtable makes without notifying (its ping lost): the feed would find it at its
    // next poll, a minute away, or on a notification.
    demo.sim.set_pings(false);
    assert!(
        demo.sim
            .update(BASE, "Projects", &id, Demo::cells(json!({ "name": "Pending" })))
    );
    let notifications = demo.feed.notifications();
    let status_before = demo.status().expect("the feed's status");

    let wrong = b"not the webhook's secret".to_vec();
    assert_eq!(demo.notify(&wrong).await, StatusCode::UNAUTHORIZED);
    let unsigned = demo
        .http
        .post(format!("{}/airtable/notifications", demo.url))
        .body("{}")
        .send()
        .await
        .expect("the demo answers");
    assert_eq!(unsigned.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        demo.feed.notifications(),
        notifications,
        "no refused notification woke the feed"
    );
    let (_, calls, now) = demo.get(&path).await;
    assert_eq!((calls, &now), (0, &before), "the cached record is as it was");
    let status = demo.status().expect("the feed's status");
    assert_eq!(status.totals, status_before.totals, "the feed did nothing: {status:?}");
    let refused: Vec<_> = demo
        .deliveries
        .recent()
        .into_iter()
        .filter(|d| d.source == "airtable:notification")
        .collect();
    assert_eq!(refused.len(), 2, "both refusals are on the dashboard");
    assert!(refused.iter().all(|d| d.outcome == "unauthorized"));

    // The same notification signed with the webhook's secret wakes the feed.
    let secret = base64::engine::general_purpose::STANDARD
        .decode(&demo.webhook.mac_secret_base64)
        .expect("base64");
    assert_eq!(demo.notify(&secret).await, StatusCode::NO_CONTENT);
    let (calls, _, _) = demo.until_answered(&path, |_, body| body["name"] == "Pending").await;
    assert_eq!(calls, 0);
    demo.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_writes_to_airtable() {
    let demo = Demo::start().await;
    let project = demo.project(3);
    let (_, _, before) = demo.get(&format!("/projects/{project}")).await;
    let voter = before["owner"].as_str().expect("an owner").to_owned();
    let event = before["event"].as_str().expect("an event").to_owned();
    let post = |path: String, body: Value| demo.http.post(format!("{}{path}", demo.url)).json(&body).send();

    let created: Value = post(
        "/projects".to_owned(),
        json!({ "name": "Made through the API", "event": event, "owner": voter }),
    )
    .await
    .expect("answered")
    .json()
    .await
    .expect("json");
    let new_id = created["id"].as_str().expect("an id").to_owned();
    let cells = demo.sim.record(BASE, "Projects", &new_id).expect("in Airtable");
    assert_eq!(cells["name"], "Made through the API");
    assert_eq!(cells["event_id"], json!([event]), "links as Airtable writes them");
    let (status, calls, body) = demo.get(&format!("/projects/{new_id}")).await;
    assert_eq!(
        (status, calls),
        (StatusCode::OK, 0),
        "in the cache after the write: {body}"
    );

    let patched = demo
        .http
        .patch(format!("{}/projects/{project}", demo.url))
        .json(&json!({ "name": "Patched through the API" }))
        .send()
        .await
        .expect("answered");
    assert_eq!(patched.status(), StatusCode::OK);
    let cells = demo.sim.record(BASE, "Projects", &project).expect("in Airtable");
    assert_eq!(cells["name"], "Patched through the API");

    let points = before["points"].as_i64().unwrap_or(0);
    let voted = post(
        format!("/projects/{project}/votes"),
        json!({ "voter": voter, "points": 3 }),
    )
    .await
    .expect("answered");
    assert_eq!(voted.status(), StatusCode::CREATED);
    let voted: Value = voted.json().await.expect("json");
    assert_eq!(voted["project"]["points"], points + 3);
    let cells = demo.sim.record(BASE, "Projects", &project).expect("in Airtable");
    assert_eq!(cells["points"], points + 3);
    let vote = voted["vote"]["id"].as_str().expect("a vote id");
    assert!(demo.sim.record(BASE, "Votes", vote).is_some());

    let deleted = demo
        .http
        .delete(format!("{}/projects/{new_id}", demo.url))
        .send()
        .await
        .expect("answered");
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    assert!(
        demo.sim.record(BASE, "Projects", &new_id).is_none(),
        "deleted in Airtable"
    );
    let (status, calls, _) = demo.get(&format!("/projects/{new_id}")).await;
    assert_eq!((status, calls), (StatusCode::NOT_FOUND, 0), "the tombstone answers");
    demo.stop().await;
}
