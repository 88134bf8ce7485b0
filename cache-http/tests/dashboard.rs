//! The dashboard over real HTTP, without a browser: signing in, what is refused (no session,
//! another site, no CSRF token, a flush without its dry run), the record inspector, the flush,
//! and the live overview following the cache. The browser tests are in `dashboard_browser.rs`.
#![allow(clippy::unwrap_used)]

mod common;
mod dashboard_support;

use std::time::{Duration, SystemTime};

use cache_core::{
    change::{ChangeOutcome, Refusal},
    feed::{Backlog, FeedResync},
    store::{Lookup, Store},
};
use cache_http::dashboard::DeliveryEvent;
use common::{Event, Harness, Project, TOKEN, id, serve};
use dashboard_support::{Client, app, csrf_of, eventually};
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(10);

async fn started() -> (Harness, Client, cache_http::dashboard::DeliveryLog) {
    let h = Harness::new();
    let (router, log) = app(&h);
    let base = serve(router).await;
    (h, Client::new(&base), log)
}

#[tokio::test]
async fn signing_in_exchanges_the_token_for_a_strict_short_lived_cookie() {
    let (_h, mut client, _) = started().await;

    let (status, html) = client.page("/admin/").await;
    assert_eq!(status, 200);
    assert!(
        html.contains(r#"<label for="token">Admin token</label>"#),
        "the sign-in form: {html}"
    );
    assert!(!html.contains("chart-hit-rate"), "nothing else before signing in");
    let redirect = client.get("/admin").send().await.unwrap();
    assert_eq!(redirect.headers()["location"], "/admin/");

    // A wrong or empty token: 403, the form again with why, no cookie.
    for (token, why) in [
        ("wrong-token-0123456789-abcdefghij", "not the admin token"),
        ("", "Enter the admin token"),
    ] {
        let response = client
            .post_form("/admin/session", &[("token", token)])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 403, "{token:?}");
        assert!(response.headers().get("set-cookie").is_none());
        assert!(response.text().await.unwrap().contains(why));
    }

    let cookie = client.sign_in(TOKEN).await;
    for part in [
        "model_cache_admin=",
        "HttpOnly",
        "SameSite=Strict",
        "Path=/admin",
        "Max-Age=1800",
    ] {
        assert!(cookie.contains(part), "{part} in {cookie}");
    }
    assert!(
        !cookie.contains("Secure"),
        "plain HTTP: the browser would drop a Secure cookie"
    );

    let response = client.get("/admin/").send().await.unwrap();
    let csp = response.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert_eq!(response.headers()["cache-control"], "no-store");
    let html = response.text().await.unwrap();
    assert!(
        html.contains(r#"id="chart-hit-rate""#),
        "the signed-in page has the charts"
    );
    let csrf = csrf_of(&html);
    assert!(csrf.len() >= 43, "a random CSRF token: {csrf}");

    // Behind a TLS-terminating proxy the cookie is Secure.
    let secure = client
        .post_form("/admin/session", &[("token", TOKEN)])
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .unwrap();
    assert!(secure.headers()["set-cookie"].to_str().unwrap().contains("; Secure"));

    // Signing out ends the session.
    let out = client
        .post_form("/admin/session/end", &[("csrf", &csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 303);
    assert!(out.headers()["set-cookie"].to_str().unwrap().contains("Max-Age=0"));
    assert_eq!(
        client.get("/admin/live").send().await.unwrap().status(),
        401,
        "the old cookie is dead"
    );
}

#[tokio::test]
async fn requests_without_a_session_or_from_another_site_are_refused() {
    let (h, mut client, _) = started().await;
    let _ = h.cache.get::<Event>(&id("recE1")).await.unwrap();
    let schema = <Event as cache_core::Cacheable>::schema();
    let still_cached = || async { matches!(h.store.get(schema, &id("recE1")).await.unwrap(), Lookup::Hit(_)) };

    // No session.
    for path in ["/admin/live", "/admin/overview.json"] {
        assert_eq!(client.get(path).send().await.unwrap().status(), 401, "{path}");
    }
    let response = client
        .post_form("/admin/flush", &[("pattern", "*"), ("csrf", "guess")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert!(response.text().await.unwrap().contains("sign in first"));
    client.cookie = Some("model_cache_admin=forged".to_owned());
    assert_eq!(
        client.get("/admin/live").send().await.unwrap().status(),
        401,
        "a forged cookie"
    );
    let (status, html) = client.page("/admin/").await;
    assert_eq!(status, 200);
    assert!(html.contains(r#"id="token""#), "a forged cookie gets the sign-in form");

    client.sign_in(TOKEN).await;
    let csrf = client.csrf().await;
    let (_, dry) = client.page("/admin/?flush=*").await;
    assert!(dry.contains("confirm-flush"), "the dry run offers the confirmation");

    // A form posted by another site: no CSRF token, or the wrong origin, or the browser's word.
    let forged = [
        (vec![("pattern", "*")], None, None, "CSRF token"),
        (
            vec![("pattern", "*"), ("csrf", "not-the-token")],
            None,
            None,
            "CSRF token",
        ),
        (
            vec![("pattern", "*"), ("csrf", csrf.as_str())],
            Some("http://evil.example"),
            None,
            "Origin",
        ),
        (
            vec![("pattern", "*"), ("csrf", csrf.as_str())],
            None,
            Some("cross-site"),
            "another site",
        ),
        (
            vec![("pattern", "*"), ("csrf", csrf.as_str())],
            None,
            Some("same-site"),
            "another site",
        ),
    ];
    for (fields, origin, fetch_site, why) in forged {
        let mut req = client.post_form("/admin/flush", &fields);
        if let Some(origin) = origin {
            req = req.header("origin", origin);
        }
        if let Some(site) = fetch_site {
            req = req.header("sec-fetch-site", site);
        }
        let response = req.send().await.unwrap();
        assert_eq!(response.status(), 403, "{fields:?} {origin:?} {fetch_site:?}");
        let body = response.text().await.unwrap();
        assert!(body.contains(why), "{why} in {body}");
        assert!(still_cached().await, "nothing was flushed");
    }
    // Signing in from another site is refused too (login CSRF).
    let response = client
        .post_form("/admin/session", &[("token", TOKEN)])
        .header("origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);

    // The bearer API is unchanged, and a session cookie is not a bearer token.
    let stats = client.get("/admin/cache/stats").send().await.unwrap();
    assert_eq!(stats.status(), 401);
    let stats = client
        .http
        .get(format!("{}/admin/cache/stats", client.base))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(stats.status(), 200);

    // The same form from this page goes through.
    let origin = client.base.clone();
    let response = client
        .post_form("/admin/flush", &[("pattern", "*"), ("csrf", &csrf)])
        .header("origin", origin)
        .header("sec-fetch-site", "same-origin")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    assert!(!still_cached().await);
}

#[tokio::test]
async fn looks_up_invalidates_and_flushes_after_a_dry_run() {
    let (h, mut client, _) = started().await;
    client.sign_in(TOKEN).await;
    let csrf = client.csrf().await;
    let _ = h.cache.get::<Event>(&id("recE1")).await.unwrap();
    let _ = h.cache.get::<Event>(&id("recE2")).await.unwrap();
    assert_eq!(
        h.cache.get::<Event>(&id("recGone")).await.unwrap(),
        None,
        "leaves a tombstone"
    );
    let _ = h.cache.get::<Project>(&id("recP1")).await.unwrap();

    let (status, html) = client.page("/admin/?entity=projects&id=recP1").await;
    assert_eq!(status, 200);
    assert!(html.contains(r#"id="held">cached<"#), "{html}");
    assert!(html.contains(r#"<dd id="held-version">1</dd>"#), "the version");
    assert!(
        html.contains("<code>event=&quot;recE1&quot;</code>"),
        "the index entry: {html}"
    );
    assert!(html.contains("Project recP1"), "the cached form");
    let (_, html) = client.page("/admin/?entity=events&id=recGone").await;
    assert!(html.contains(r#"id="held">tombstone<"#));
    let (_, html) = client.page("/admin/?entity=events&id=recNever").await;
    assert!(html.contains(r#"id="held">not cached<"#));
    assert!(!html.contains(r#"id="invalidate""#), "nothing to invalidate");

    // Bad input: 400 and why.
    let (status, html) = client.page("/admin/?entity=nope&id=recE1").await;
    assert_eq!(status, 400);
    assert!(html.contains("no entity is registered as &quot;nope&quot;"), "{html}");
    let (status, _) = client.page("/admin/?entity=events&id=a%3Ab").await;
    assert_eq!(status, 400, "an id the cache refuses");

    // Invalidate: redirected back to the lookup, which now misses; the origin is not called.
    let response = client
        .post_form(
            "/admin/records/invalidate",
            &[("csrf", &csrf), ("entity", "events"), ("id", "recE1")],
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()["location"], "/admin/?entity=events&id=recE1#lookup");
    let (_, html) = client.page("/admin/?entity=events&id=recE1").await;
    assert!(html.contains("Invalidated events recE1"), "the notice");
    assert!(html.contains(r#"id="held">not cached<"#));
    let (_, html) = client.page("/admin/").await;
    assert!(!html.contains("Invalidated"), "a notice is shown once");

    // A flush must follow its dry run.
    let response = client
        .post_form("/admin/flush", &[("csrf", &csrf), ("pattern", "events:*")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 409);
    let (status, html) = client.page("/admin/?flush=events:[").await;
    assert_eq!(status, 400);
    assert!(html.contains("without its"), "why the pattern is refused: {html}");

    let (_, html) = client.page("/admin/?flush=events:*").await;
    assert!(
        html.contains(r#"<strong id="dry-run-count">1</strong> cached record would be removed (1 in events)"#),
        "{html}"
    );
    assert!(
        html.contains("may also match tombstones"),
        "what cannot be counted: {html}"
    );
    assert!(
        matches!(
            h.store
                .get(<Event as cache_core::Cacheable>::schema(), &id("recE2"))
                .await
                .unwrap(),
            Lookup::Hit(_)
        ),
        "a dry run removes nothing"
    );
    let (_, html) = client.page("/admin/?flush=projects:r:*").await;
    assert!(html.contains(r#"<strong id="dry-run-count">1</strong>"#));
    assert!(
        !html.contains("may also match"),
        "a record pattern matches nothing uncounted: {html}"
    );

    // The confirmation must name the pattern of the last dry run.
    let response = client
        .post_form("/admin/flush", &[("csrf", &csrf), ("pattern", "events:*")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 409, "the last dry run was of projects:r:*");
    let (_, _) = client.page("/admin/?flush=events:*").await;
    let response = client
        .post_form("/admin/flush", &[("csrf", &csrf), ("pattern", "events:*")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    let (_, html) = client.page("/admin/").await;
    assert!(
        html.contains("Flushed events:*: 2 keys removed."),
        "a record and a tombstone: {html}"
    );
    let response = client
        .post_form("/admin/flush", &[("csrf", &csrf), ("pattern", "events:*")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 409, "a dry run confirms one flush");
    assert!(
        matches!(
            h.store
                .get(<Project as cache_core::Cacheable>::schema(), &id("recP1"))
                .await
                .unwrap(),
            Lookup::Hit(_)
        ),
        "other entities stay"
    );
}

#[tokio::test]
async fn the_overview_follows_the_cache_and_the_deliveries() {
    let h = Harness::new();
    let (router, log) = app(&h);
    // A burst of reads as soon as the dashboard exists, before its sampling task has run at
    // all (this test's runtime is blocked while another thread reads): the samples show the
    // hits, misses and latency for events, the first interval counting from when the
    // dashboard's routes were made.
    let cache = h.cache.clone();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            for _ in 0..20 {
                let _ = cache.get::<Event>(&id("recE1")).await.unwrap();
            }
        });
    })
    .join()
    .unwrap();
    let base = serve(router).await;
    let mut client = Client::new(&base);
    client.sign_in(TOKEN).await;
    let overview = |client: &Client| {
        let req = client.get("/admin/overview.json");
        async move { req.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let first = overview(&client).await;
    assert_eq!(first["deliveries"], Value::Array(vec![]));
    assert_eq!(first["window_seconds"], 60.0);

    let sample = eventually("a sample with the burst", LIMIT, || {
        let req = client.get("/admin/overview.json");
        async move {
            let o: Value = req.send().await.unwrap().json().await.unwrap();
            o["samples"]
                .as_array()?
                .iter()
                .map(|s| s["entities"]["events"].clone())
                .find(|e| e["hits"].as_u64().unwrap_or(0) > 0)
        }
    })
    .await;
    assert!(
        sample["p50_ms"].as_f64().is_some(),
        "latency from the histogram: {sample}"
    );
    let o = overview(&client).await;
    assert_eq!(o["entities"]["events"]["hits"], 19);
    assert_eq!(o["entities"]["events"]["misses"], 1);
    assert_eq!(o["store"]["reachable"], true);
    assert_eq!(o["store"]["stats"]["backend"], "memory");

    // Deliveries reported to the log appear, newest first.
    log.record(
        DeliveryEvent::new("webhook", "applied")
            .entity("events")
            .record("recE1"),
    );
    log.record(
        DeliveryEvent::new("webhook", "invalid_record")
            .entity("events")
            .detail("`name` is missing"),
    );
    let o = overview(&client).await;
    assert_eq!(o["deliveries"][0]["outcome"], "invalid_record");
    assert_eq!(o["deliveries"][1]["record"], "recE1");
    assert_eq!(o["store"]["availability"], "available");
    let live = client.get("/admin/live").send().await.unwrap().text().await.unwrap();
    assert!(live.contains("`name` is missing"), "{live}");

    // The store going down shows as unreachable with its error.
    h.store.set_down(true);
    let error = eventually("the store's failure", LIMIT, || {
        let req = client.get("/admin/overview.json");
        async move {
            let o: Value = req.send().await.unwrap().json().await.unwrap();
            (o["store"]["reachable"] == false).then(|| o["store"]["last_error"]["message"].clone())
        }
    })
    .await;
    assert!(error.as_str().unwrap().contains("unavailable"), "{error}");
    let (status, html) = client.page("/admin/?entity=events&id=recE1").await;
    assert_eq!(status, 503, "a lookup while the store is down");
    assert!(html.contains("the store did not answer"), "{html}");
    let (status, _) = client.page("/admin/?flush=events:*").await;
    assert_eq!(status, 503, "a dry run while the store is down");
}

#[tokio::test]
async fn each_change_feed_shows_its_cursor_lag_backlog_and_outcomes() {
    let (h, mut client, log) = started().await;
    client.sign_in(TOKEN).await;
    let (_, html) = client.page("/admin/").await;
    assert!(html.contains("No change feed has reported."), "{html}");

    // A feed reports as the SQL outbox listener does: a batch, then what still waits.
    let outbox = h.cache.feeds().reporter("sql:outbox");
    let now = SystemTime::now();
    let changed_at = now - Duration::from_secs(50);
    outbox.applied(
        &[
            ChangeOutcome::Applied,
            ChangeOutcome::Applied,
            ChangeOutcome::Refused(Refusal::Older),
        ],
        Some("1042"),
        Some(changed_at),
    );
    outbox.checked(Backlog::Exactly(3), Some(now - Duration::from_secs(40)), now);
    // And another, as the Airtable feed after lost payloads.
    let airtable = h.cache.feeds().reporter("airtable:appBase:achHook");
    let mut resync = FeedResync::new("payloads_lost");
    (resync.checked, resync.refreshed, resync.removed) = (3, 2, 1);
    airtable.resynced(resync);
    airtable.failed(&"the store failed under 1 change", None, None);
    log.record(
        DeliveryEvent::new("webhook", "applied")
            .entity("events")
            .record("recE1"),
    );

    let o: Value = client
        .get("/admin/overview.json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let feed = &o["feeds"]["sql:outbox"];
    assert_eq!(feed["position"], "1042");
    assert_eq!(feed["backlog"], 3);
    assert_eq!(feed["last_batch"]["applied"], 2);
    assert_eq!(feed["last_batch"]["stale"], 1);
    assert_eq!(feed["totals"]["changes"]["applied"], 2);
    assert!(feed["last_source_time"].is_string() && feed["last_applied_at"].is_string());
    let lag = feed["lag_seconds"].as_f64().unwrap();
    assert!(
        (40.0..60.0).contains(&lag),
        "the oldest waiting change is 40 s old: {lag}"
    );
    let other = &o["feeds"]["airtable:appBase:achHook"];
    assert_eq!(other["failing"], true);
    assert_eq!(other["last_resync"]["removed"], 1);
    assert_eq!(
        other["lag_seconds"],
        Value::Null,
        "not known before it looked at the source"
    );

    // Feed events are listed among the deliveries, newest first, with their outcome.
    let deliveries: Vec<(&str, &str)> = o["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["source"].as_str().unwrap(), d["outcome"].as_str().unwrap()))
        .collect();
    assert_eq!(
        deliveries,
        [
            ("webhook", "applied"),
            ("feed:airtable:appBase:achHook", "error"),
            ("feed:airtable:appBase:achHook", "resync"),
            ("feed:sql:outbox", "applied"),
        ]
    );
    assert_eq!(o["deliveries"][3]["detail"], "2 applied, 1 stale; cursor 1042");

    // The page shows the same.
    let live = client.get("/admin/live").send().await.unwrap().text().await.unwrap();
    let row = live
        .split(r#"<tr data-feed="sql:outbox">"#)
        .nth(1)
        .and_then(|rest| rest.split("</tr>").next())
        .unwrap_or_else(|| panic!("a row for the outbox: {live}"));
    assert!(row.contains("<code>1042</code>"), "{row}");
    assert!(row.contains("<td data-backlog>3</td>"), "{row}");
    assert!(row.contains("2 applied, 1 refused (1 stale, 0 deleted)"), "{row}");
    assert!(
        row.contains("<td data-lag>4") || row.contains("<td data-lag>5"),
        "a lag of 40-odd s: {row}"
    );
    assert!(
        live.contains("payloads_lost") && live.contains(r#"<span class="badge bad">failing</span>"#),
        "{live}"
    );
    assert!(
        live.contains("2 applied, 1 stale; cursor 1042"),
        "among the deliveries: {live}"
    );
}
