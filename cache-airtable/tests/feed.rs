//! The webhooks-API feed against the simulator, into a real `Cache` on the in-memory store.

use std::time::{Duration, SystemTime};

use cache_airtable::{
    AirtableClient, AirtableConfig, AirtableOrigin, CreatedWebhook, FeedConfig, FeedError, MAC_HEADER, WebhookFeed,
    testing::Simulator,
};
use cache_core::{
    Cache, Cacheable, MemoryStore, RecordId,
    clock::ManualClock,
    feed::{Backlog, FeedState, FeedStatus},
    store::{Lookup, Store},
    testing::FailingStore,
};
use hmac::{KeyInit, Mac};
use serde_json::{Map, Value, json};
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};

const BASE: &str = "appFeedBase000001";
const DAY: Duration = Duration::from_secs(24 * 3600);

#[derive(Cacheable, Clone, Debug, PartialEq)]
#[cache(entity = "notes", source_table = "Notes")]
struct Note {
    #[cache(id)]
    id: RecordId,
    title: String,
}

fn fields(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

fn rid(s: &str) -> RecordId {
    RecordId::new(s).expect("a valid id")
}

struct Setup {
    sim: Simulator,
    client: AirtableClient,
    cache: Cache,
    feed: WebhookFeed,
    webhook: CreatedWebhook,
    notification_url: String,
    _server: JoinHandle<()>,
}

async fn setup() -> Setup {
    setup_with(MemoryStore::new()).await
}

/// [`setup`], over `store`.
async fn setup_with(store: impl Store) -> Setup {
    let sim = Simulator::start().await.expect("the simulator starts");
    sim.create_table(BASE, "Notes");
    let config = AirtableConfig::new(BASE, sim.token())
        .api_url(sim.url())
        .retries(3, Duration::from_millis(10));
    let client = AirtableClient::new(config).expect("valid");
    let origin = AirtableOrigin::new(client.clone());
    let cache = Cache::builder(store, origin.clone())
        .register::<Note>()
        .build()
        .expect("the cache builds");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port");
    let notification_url = format!(
        "http://{}/airtable/notifications",
        listener.local_addr().expect("bound")
    );
    let webhook = client.create_webhook(Some(&notification_url)).await.expect("created");
    let mut config = FeedConfig::new(webhook.id.clone(), webhook.mac_secret_base64.clone());
    // Only notifications wake the consumer in these tests.
    config.poll_interval = Duration::from_secs(3600);
    let feed = WebhookFeed::new(cache.clone(), origin, config).expect("a valid feed");
    // The first round follows the new webhook: with nothing cached, its resync reads nothing.
    let first = feed.round().await.expect("the first round runs");
    assert!(first.resynced && first.payloads == 0, "{first:?}");
    let app = feed.routes::<()>("/airtable/notifications");
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Setup {
        sim,
        client,
        cache,
        feed,
        webhook,
        notification_url,
        _server: server,
    }
}

/// What the store holds for a note, without asking Airtable.
async fn held(cache: &Cache, id: &str) -> Lookup {
    cache
        .store()
        .get(Note::schema(), &rid(id))
        .await
        .expect("the store answers")
}

fn held_title(lookup: Lookup) -> Option<String> {
    match lookup {
        Lookup::Hit(bytes) => Some(Note::from_cached(&bytes).expect("a cached note").title),
        _ => None,
    }
}

fn status(s: &Setup) -> FeedStatus {
    s.cache.feeds().status(s.feed.name()).expect("the feed reported")
}

async fn title(cache: &Cache, id: &str) -> Option<String> {
    cache
        .get::<Note>(&rid(id))
        .await
        .expect("the cache answers")
        .map(|n| n.title)
}

/// Polls `condition` until it holds or 10 s pass.
async fn eventually<F: AsyncFnMut() -> bool>(what: &str, mut condition: F) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !condition().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_change_and_a_delete_are_served_without_a_sweep() {
    let s = setup().await;
    let a = s.sim.insert(BASE, "Notes", fields(json!({ "title": "old" })));
    let b = s.sim.insert(BASE, "Notes", fields(json!({ "title": "doomed" })));
    assert_eq!(title(&s.cache, &a).await.as_deref(), Some("old"));
    assert_eq!(title(&s.cache, &b).await.as_deref(), Some("doomed"));
    let (stop, stopped) = oneshot::channel::<()>();
    let feed = s.feed.clone();
    let consumer = tokio::spawn(async move {
        feed.run(async {
            let _ = stopped.await;
        })
        .await;
    });

    s.sim.update(BASE, "Notes", &a, fields(json!({ "title": "new" })));
    assert!(s.sim.remove(BASE, "Notes", &b));
    eventually("the change and the delete", async || {
        title(&s.cache, &a).await.as_deref() == Some("new") && title(&s.cache, &b).await.is_none()
    })
    .await;
    assert!(
        s.feed.notifications() >= 1,
        "woken by notifications (the poll is an hour)"
    );
    let _ = stop.send(());
    consumer.await.expect("the consumer stops");
}

#[tokio::test]
async fn a_wrong_or_missing_mac_gets_401_and_changes_nothing() {
    let s = setup().await;
    let http = reqwest::Client::new();
    let body = format!(
        r#"{{"base":{{"id":"{BASE}"}},"webhook":{{"id":"{}"}},"timestamp":"2026-01-01T00:00:00.000Z"}}"#,
        s.webhook.id
    );
    let post = |mac: Option<String>| {
        let mut request = http.post(&s.notification_url).body(body.clone());
        if let Some(mac) = mac {
            request = request.header(MAC_HEADER, mac);
        }
        request.send()
    };
    assert_eq!(post(None).await.expect("answers").status(), 401);
    assert_eq!(
        post(Some("hmac-sha256=00".to_owned())).await.expect("answers").status(),
        401
    );
    assert_eq!(post(Some("garbage".to_owned())).await.expect("answers").status(), 401);
    let wrong_key = sign(b"not the secret", body.as_bytes());
    assert_eq!(post(Some(wrong_key)).await.expect("answers").status(), 401);
    assert_eq!(s.feed.notifications(), 0, "no refused notification woke the consumer");

    let secret = base64_decode(&s.webhook.mac_secret_base64);
    let tampered = sign(&secret, b"another body");
    assert_eq!(post(Some(tampered)).await.expect("answers").status(), 401);
    assert_eq!(
        post(Some(sign(&secret, body.as_bytes())))
            .await
            .expect("answers")
            .status(),
        204
    );
    assert_eq!(s.feed.notifications(), 1);
}

fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(text).expect("base64")
}

fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(secret).expect("any key length");
    mac.update(body);
    format!("hmac-sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[tokio::test]
async fn after_an_outage_a_restart_applies_everything_once() {
    let s = setup().await;
    let a = s.sim.insert(BASE, "Notes", fields(json!({ "title": "v1" })));
    let b = s.sim.insert(BASE, "Notes", fields(json!({ "title": "b" })));
    assert_eq!(title(&s.cache, &a).await.as_deref(), Some("v1"));
    assert_eq!(title(&s.cache, &b).await.as_deref(), Some("b"));
    // The consumer is down: changes pile up in the webhook's payloads.
    s.sim.update(BASE, "Notes", &a, fields(json!({ "title": "v2" })));
    s.sim.update(BASE, "Notes", &a, fields(json!({ "title": "v3" })));
    assert!(s.sim.remove(BASE, "Notes", &b));
    let c = s.sim.insert(BASE, "Notes", fields(json!({ "title": "c" })));

    let report = s.feed.round().await.expect("the round runs");
    assert_eq!(report.payloads, 6, "2 creates, 2 updates, a delete, a create");
    // b's creation is skipped (b is gone when read); its delete applies.
    assert_eq!(report.changes, 5);
    assert!(!report.resynced && !report.busy && !report.more);
    assert_eq!(title(&s.cache, &a).await.as_deref(), Some("v3"));
    assert_eq!(title(&s.cache, &b).await, None);
    assert_eq!(title(&s.cache, &c).await.as_deref(), Some("c"));

    let again = s.feed.round().await.expect("the round runs");
    assert_eq!((again.payloads, again.changes), (0, 0), "nothing is applied twice");
    // Another instance continues from the stored cursor.
    let position = FeedState::new(&s.cache, format!("airtable:{BASE}:{}", s.webhook.id))
        .position()
        .await
        .expect("the store answers");
    assert_eq!(position.as_deref(), Some("7"));
}

#[tokio::test]
async fn one_consumer_at_a_time() {
    let s = setup().await;
    let state = FeedState::new(&s.cache, format!("airtable:{BASE}:{}", s.webhook.id));
    let lock = state
        .try_lock(Duration::from_secs(30))
        .await
        .expect("answers")
        .expect("free");
    let report = s.feed.round().await.expect("the round runs");
    assert!(report.busy, "another consumer holds the feed");
    assert!(status(&s).held_elsewhere, "and the status says so");
    state.unlock(lock).await.expect("unlocks");
    assert!(!s.feed.round().await.expect("runs").busy);
    assert!(!status(&s).held_elsewhere);
}

/// A round that stalls in its resync past the feed's lock stops there: another consumer may
/// hold the feed by then, and the stalled one neither applies what it read nor moves the cursor.
#[tokio::test]
async fn a_round_that_outlived_its_lock_stops_without_moving_the_cursor() {
    let clock = ManualClock::new();
    let store = FailingStore::new(MemoryStore::builder().clock(clock.clone()).build());
    let s = setup_with(store.clone()).await;
    let changed = s.sim.insert(BASE, "Notes", fields(json!({ "title": "old" })));
    assert_eq!(title(&s.cache, &changed).await.as_deref(), Some("old"));
    // A new webhook, nothing consumed: the feed's first round resyncs what the cache holds.
    s.client.delete_webhook(&s.webhook.id).await.expect("deleted");
    s.sim.update(BASE, "Notes", &changed, fields(json!({ "title": "new" })));
    let replacement = s.client.create_webhook(None).await.expect("created");
    let config = FeedConfig::new(replacement.id.clone(), replacement.mac_secret_base64);
    let ttl = config.lock_ttl;
    let feed = WebhookFeed::new(s.cache.clone(), AirtableOrigin::new(s.client.clone()), config).expect("valid");

    // The round renews its lock before the resync's request: held there, it stalls.
    let hold = store.hold("extend_computed");
    let round = tokio::spawn({
        let feed = feed.clone();
        async move { feed.round().await }
    });
    // Stalled past its lock: another consumer takes the feed.
    let (other, taken) = hold.take_over_feed(&clock, &s.cache, feed.name(), ttl).await;

    let stopped = round.await.expect("the round's task");
    assert!(matches!(stopped, Err(FeedError::LockLost)), "{stopped:?}");
    assert_eq!(
        held_title(held(&s.cache, &changed).await).as_deref(),
        Some("old"),
        "nothing read after the lock lapsed was applied"
    );
    assert_eq!(
        other.position().await.expect("answers"),
        None,
        "the cursor did not move"
    );
    assert!(
        other.try_lock(ttl).await.expect("answers").is_none(),
        "the other consumer keeps the feed"
    );
    other.unlock(taken).await.expect("unlocks");
    // The feed's next round, holding it, resyncs and follows the webhook.
    let report = feed.round().await.expect("runs");
    assert!(report.resynced, "{report:?}");
    assert_eq!(held_title(held(&s.cache, &changed).await).as_deref(), Some("new"));
    assert_eq!(other.position().await.expect("answers").as_deref(), Some("1"));
}

#[tokio::test]
async fn past_the_payload_retention_the_base_is_resynced() {
    let s = setup().await;
    let changed = s.sim.insert(BASE, "Notes", fields(json!({ "title": "old" })));
    let deleted = s.sim.insert(BASE, "Notes", fields(json!({ "title": "doomed" })));
    let kept = s.sim.insert(BASE, "Notes", fields(json!({ "title": "kept" })));
    assert!(s.feed.round().await.expect("runs").changes > 0);
    for id in [&changed, &deleted, &kept] {
        assert!(title(&s.cache, id).await.is_some(), "{id} cached");
    }
    s.sim.update(BASE, "Notes", &changed, fields(json!({ "title": "new" })));
    assert!(s.sim.remove(BASE, "Notes", &deleted));
    // A week and a day without the consumer; the webhook itself was refreshed meanwhile, and
    // the payloads of the change and the delete are gone.
    s.sim.advance(6 * DAY);
    s.feed.refresh().await.expect("refreshed");
    s.sim.advance(2 * DAY);
    assert_eq!(
        held_title(held(&s.cache, &changed).await).as_deref(),
        Some("old"),
        "still stale"
    );
    assert_eq!(held_title(held(&s.cache, &deleted).await).as_deref(), Some("doomed"));

    let requests = s.sim.stats(BASE).requests;
    let report = s.feed.round().await.expect("runs");
    assert!(report.resynced, "the lost payloads were noticed");
    // Read from the store, not through the cache: the resync put them there.
    assert_eq!(
        held_title(held(&s.cache, &changed).await).as_deref(),
        Some("new"),
        "fresh"
    );
    assert!(
        matches!(held(&s.cache, &deleted).await, Lookup::Tombstone),
        "gone, and tombstoned"
    );
    assert_eq!(
        held_title(held(&s.cache, &kept).await).as_deref(),
        Some("kept"),
        "still cached"
    );
    assert_eq!(
        s.sim.stats(BASE).requests - requests,
        3,
        "the payloads, the base's tables, and one read of the 3 cached records"
    );

    let status = status(&s);
    let resync = status.last_resync.expect("the resync is reported");
    assert_eq!(resync.reason, "payloads_lost");
    assert_eq!(resync.entities, ["notes"]);
    assert_eq!((resync.checked, resync.refreshed, resync.removed), (3, 2, 1));
    assert_eq!(status.totals.resyncs, 2, "the first round's and this one");
    assert_eq!(status.backlog, Backlog::Exactly(0));
    assert!(!status.failing);
    let recent = s.cache.feeds().recent();
    assert_eq!(recent[0].outcome(), "resync", "among the recent deliveries: {recent:?}");
}

#[tokio::test]
async fn an_expired_webhook_resyncs_the_base_once_and_says_so() {
    let s = setup().await;
    let changed = s.sim.insert(BASE, "Notes", fields(json!({ "title": "old" })));
    let deleted = s.sim.insert(BASE, "Notes", fields(json!({ "title": "doomed" })));
    assert_eq!(title(&s.cache, &changed).await.as_deref(), Some("old"));
    assert_eq!(title(&s.cache, &deleted).await.as_deref(), Some("doomed"));
    s.sim.update(BASE, "Notes", &changed, fields(json!({ "title": "new" })));
    assert!(s.sim.remove(BASE, "Notes", &deleted));
    s.sim.advance(8 * DAY);
    assert!(s.sim.webhook_ids(BASE).is_empty(), "expired unrefreshed");
    let err = s.feed.round().await.expect_err("the webhook is gone");
    assert!(matches!(err, FeedError::WebhookGone(_)), "{err}");
    assert_eq!(
        held_title(held(&s.cache, &changed).await).as_deref(),
        Some("new"),
        "fresh"
    );
    assert!(matches!(held(&s.cache, &deleted).await, Lookup::Tombstone), "gone");
    let gone = status(&s);
    assert!(gone.failing);
    assert!(gone.last_error.expect("the error").message.contains("gone"));
    let resync = gone.last_resync.expect("a resync");
    assert_eq!(
        (resync.reason.as_str(), resync.refreshed, resync.removed),
        ("webhook_gone", 1, 1)
    );

    // Every later round fails the same way, without reading the base again.
    let requests = s.sim.stats(BASE).requests;
    assert!(matches!(s.feed.round().await, Err(FeedError::WebhookGone(_))));
    assert_eq!(s.sim.stats(BASE).requests - requests, 1, "the payload list alone");
    assert_eq!(
        status(&s).totals.resyncs,
        2,
        "the first round's and the one after the expiry"
    );

    // Webhooks can be listed and removed.
    let fresh = s.client.create_webhook(None).await.expect("created");
    assert_eq!(s.client.list_webhooks().await.expect("listed").len(), 1);
    s.client.delete_webhook(&fresh.id).await.expect("deleted");
    assert!(s.client.list_webhooks().await.expect("listed").is_empty());
}

#[tokio::test]
async fn a_feed_without_a_cursor_resyncs_what_the_cache_holds_first() {
    let s = setup().await;
    let changed = s.sim.insert(BASE, "Notes", fields(json!({ "title": "old" })));
    let deleted = s.sim.insert(BASE, "Notes", fields(json!({ "title": "doomed" })));
    assert!(title(&s.cache, &changed).await.is_some() && title(&s.cache, &deleted).await.is_some());
    // The webhook is replaced while nothing consumes: the old one's payloads are lost with it.
    s.client.delete_webhook(&s.webhook.id).await.expect("deleted");
    s.sim.update(BASE, "Notes", &changed, fields(json!({ "title": "new" })));
    assert!(s.sim.remove(BASE, "Notes", &deleted));
    let replacement = s.client.create_webhook(None).await.expect("created");
    let feed = WebhookFeed::new(
        s.cache.clone(),
        AirtableOrigin::new(s.client.clone()),
        FeedConfig::new(replacement.id, replacement.mac_secret_base64),
    )
    .expect("valid");
    let report = feed.round().await.expect("runs");
    assert!(report.resynced);
    assert_eq!(held_title(held(&s.cache, &changed).await).as_deref(), Some("new"));
    assert!(matches!(held(&s.cache, &deleted).await, Lookup::Tombstone));
    let status = s.cache.feeds().status(feed.name()).expect("reported");
    assert_eq!(status.last_resync.map(|r| r.reason), Some("no_cursor".to_owned()));
    assert_eq!(status.position.as_deref(), Some("1"), "followed from its first payload");
    assert!(!feed.round().await.expect("runs").resynced, "once");
}

#[tokio::test]
async fn the_feed_reports_its_cursor_lag_backlog_and_outcomes() {
    let s = setup().await;
    let before = SystemTime::now();
    let caught_up = status(&s);
    assert_eq!(caught_up.backlog, Backlog::Exactly(0));
    assert!(caught_up.current_as_of.expect("as of the first round") <= before);

    // 60 creations: more than a page of payloads (50), and the round reads one page.
    let ids: Vec<String> = (0..60)
        .map(|n| s.sim.insert(BASE, "Notes", fields(json!({ "title": format!("n{n}") }))))
        .collect();
    let mut config = FeedConfig::new(s.webhook.id.clone(), s.webhook.mac_secret_base64.clone());
    config.max_pages_per_round = 1;
    let one_page = WebhookFeed::new(s.cache.clone(), AirtableOrigin::new(s.client.clone()), config).expect("valid");
    let report = one_page.round().await.expect("runs");
    assert!(report.more && report.payloads == 50, "{report:?}");
    let behind = status(&s);
    assert_eq!(behind.backlog, Backlog::AtLeastOne, "mightHaveMore");
    assert_eq!(behind.position.as_deref(), Some("51"));
    let batch = behind.last_batch.expect("a batch");
    assert_eq!((batch.applied, batch.refused(), batch.failed), (50, 0, 0));
    let newest = behind.last_source_time.expect("the payloads' time");
    assert_eq!(behind.current_as_of, Some(newest), "as of the last payload applied");
    let now = SystemTime::now();
    assert_eq!(behind.lag(now), Some(now.duration_since(newest).unwrap_or_default()));

    let looked = SystemTime::now();
    let report = s.feed.round().await.expect("runs");
    assert!(!report.more && report.payloads == 10, "{report:?}");
    let drained = status(&s);
    assert_eq!(drained.backlog, Backlog::Exactly(0));
    assert_eq!(drained.position.as_deref(), Some("61"));
    assert!(
        drained.current_as_of.expect("caught up") >= looked,
        "as of the last look"
    );
    assert_eq!(drained.totals.changes.applied, 60);
    assert_eq!(drained.totals.batches, 2);
    assert!(drained.last_applied_at.expect("applied") >= looked);
    for id in &ids[..3] {
        assert!(
            held_title(held(&s.cache, id).await).is_some(),
            "{id} cached by the feed"
        );
    }
    let outcomes: Vec<&str> = s.cache.feeds().recent().iter().map(|e| e.outcome()).collect();
    assert_eq!(&outcomes[..2], ["applied", "applied"], "{outcomes:?}");
}

#[tokio::test]
async fn the_poll_catches_a_missed_notification_and_the_webhook_is_refreshed() {
    let s = setup().await;
    let a = s.sim.insert(BASE, "Notes", fields(json!({ "title": "old" })));
    assert_eq!(title(&s.cache, &a).await.as_deref(), Some("old"));
    let expires = s.client.list_webhooks().await.expect("listed")[0]
        .expiration_time
        .clone();
    // Six days on, and no ping reaches the route.
    s.sim.advance(6 * DAY);
    s.sim.set_pings(false);
    let mut config = FeedConfig::new(s.webhook.id.clone(), s.webhook.mac_secret_base64.clone());
    config.poll_interval = Duration::from_millis(50);
    let origin = AirtableOrigin::new(s.client.clone());
    let polling = WebhookFeed::new(s.cache.clone(), origin, config).expect("valid");
    let (stop, stopped) = oneshot::channel::<()>();
    let consumer = tokio::spawn({
        let polling = polling.clone();
        async move {
            polling
                .run(async {
                    let _ = stopped.await;
                })
                .await;
        }
    });
    s.sim.update(BASE, "Notes", &a, fields(json!({ "title": "new" })));
    eventually("the polled change", async || {
        title(&s.cache, &a).await.as_deref() == Some("new")
    })
    .await;
    assert_eq!(polling.notifications(), 0, "no notification arrived");
    let refreshed = s.client.list_webhooks().await.expect("listed")[0]
        .expiration_time
        .clone();
    assert!(
        refreshed > expires,
        "refreshed at start: {refreshed:?} after {expires:?}"
    );
    let _ = stop.send(());
    consumer.await.expect("the consumer stops");
}
