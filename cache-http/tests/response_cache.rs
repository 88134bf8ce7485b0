//! The response cache over real HTTP and through `oneshot`: what is stored, what is served,
//! the headers of each, and the purges that keep stored responses true.
// Helpers outside `#[test]` functions unwrap too: a failure there is a test failure.
#![allow(clippy::unwrap_used)]

mod common;

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::{
    Json, Router,
    body::Body,
    extract::Path,
    response::{IntoResponse, Response},
    routing::get,
};
use bytes::Bytes;
use cache_core::{Cache, store::Store, testing::OriginMethod};
use cache_http::{CacheTelemetryLayer, ResponseCacheLayer};
use common::{Event, Gate, Harness, Project, ProjectSort, header, id, project, serve};
use http::{HeaderName, Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

fn names(projects: &[Project]) -> Vec<&str> {
    projects.iter().map(|p| p.id.as_str()).collect()
}

#[tokio::test]
async fn stores_then_serves_with_key_age_ttl_and_etag() {
    let h = Harness::new();
    let base = serve(h.app()).await;
    let client = reqwest::Client::new();
    let url = format!("{base}/events/recE1/projects");

    let first = client.get(&url).send().await.unwrap();
    assert_eq!(first.status(), 200);
    assert_eq!(header(&first, "x-cache"), Some("MISS"));
    assert_eq!(header(&first, "x-origin-calls"), Some("1"));
    assert!(
        header(&first, "x-cache-key").is_none(),
        "not served from the response cache"
    );
    let etag = header(&first, "etag")
        .expect("fresh cacheable responses carry an ETag")
        .to_owned();
    let first_body: Vec<Project> = first.json().await.unwrap();
    assert_eq!(names(&first_body), ["recP1", "recP2"]);
    let record_reads = h.cache.stats().entity("projects");

    let second = client.get(&url).send().await.unwrap();
    assert_eq!(second.status(), 200);
    assert_eq!(header(&second, "x-cache"), Some("HIT"));
    assert_eq!(header(&second, "x-origin-calls"), Some("0"));
    let key = header(&second, "x-cache-key").unwrap();
    assert!(key.starts_with("http:events:recE1:projects:params_"), "{key}");
    assert!(key.ends_with(":v1"), "{key}");
    assert_eq!(header(&second, "x-cache-age"), Some("0"));
    assert_eq!(header(&second, "x-cache-ttl"), Some("60"));
    assert_eq!(header(&second, "etag"), Some(etag.as_str()));
    assert_eq!(header(&second, "content-type"), Some("application/json"));
    assert_eq!(second.json::<Vec<Project>>().await.unwrap(), first_body);
    assert_eq!(h.origin.count(OriginMethod::Query), 1);
    assert_eq!(
        h.cache.stats().entity("projects"),
        record_reads,
        "the handler did not run: no record was read"
    );
}

#[tokio::test]
async fn a_disabled_cache_caches_no_response() {
    let h = Harness::new();
    let disabled = Cache::builder(Arc::clone(&h.store) as Arc<dyn Store>, h.origin.clone())
        .enabled(false)
        .register::<Event>()
        .register::<Project>()
        .build()
        .unwrap();
    let app = Router::new()
        .route(
            "/events/{id}/projects",
            get(|| async { "listed" }).layer(ResponseCacheLayer::new(&disabled)),
        )
        .layer(CacheTelemetryLayer::new());
    let base = serve(app).await;
    let client = reqwest::Client::new();
    for _ in 0..2 {
        let response = client
            .get(format!("{base}/events/recE1/projects"))
            .send()
            .await
            .unwrap();
        assert_eq!(header(&response, "x-cache"), Some("BYPASS"));
        assert!(
            header(&response, "x-cache-key").is_none(),
            "never served from the response cache"
        );
    }
    assert_eq!(h.store.flush(Some("v:*")).await.unwrap(), 0, "nothing was stored");
}

#[tokio::test]
async fn if_none_match_answers_304() {
    let h = Harness::new();
    let base = serve(h.app()).await;
    let client = reqwest::Client::new();
    let url = format!("{base}/events/recE1/projects");

    // A fresh response can be answered 304 too: no-cache skips the lookup.
    let etag = client.get(&url).send().await.unwrap().headers()["etag"]
        .to_str()
        .unwrap()
        .to_owned();
    let fresh = client
        .get(&url)
        .header("if-none-match", &etag)
        .header("cache-control", "no-cache")
        .send()
        .await
        .unwrap();
    assert_eq!(fresh.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(header(&fresh, "x-cache"), Some("BYPASS"));
    assert_eq!(header(&fresh, "etag"), Some(etag.as_str()));

    let cached = client.get(&url).header("if-none-match", &etag).send().await.unwrap();
    assert_eq!(cached.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(header(&cached, "x-cache"), Some("HIT"));
    assert_eq!(header(&cached, "etag"), Some(etag.as_str()));
    assert!(header(&cached, "x-cache-key").is_some());
    assert!(cached.bytes().await.unwrap().is_empty());

    let other = client
        .get(&url)
        .header("if-none-match", "\"stale\"")
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), StatusCode::OK);
    assert!(!other.bytes().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_points_change_purges_the_list() {
    let h = Harness::new();
    let base = serve(h.app()).await;
    let client = reqwest::Client::new();
    let url = format!("{base}/events/recE1/projects");
    client.get(&url).send().await.unwrap();
    assert!(header(&client.get(&url).send().await.unwrap(), "x-cache-key").is_some());

    // P2 overtakes P1.
    h.cache.upsert(&project("recP2", "recE1", 50, 2)).await.unwrap();

    let after = client.get(&url).send().await.unwrap();
    assert!(header(&after, "x-cache-key").is_none(), "the stored list was purged");
    assert_eq!(names(&after.json::<Vec<Project>>().await.unwrap()), ["recP2", "recP1"]);
    let again = client.get(&url).send().await.unwrap();
    assert!(header(&again, "x-cache-key").is_some(), "and stored again");
    assert_eq!(names(&again.json::<Vec<Project>>().await.unwrap()), ["recP2", "recP1"]);
}

#[tokio::test]
async fn a_new_project_joining_purges_the_list_and_others_do_not() {
    let h = Harness::new();
    let app = h.app();
    let get = |path: &'static str| app.clone().oneshot(Request::get(path).body(Body::empty()).unwrap());
    get("/events/recE1/projects").await.unwrap();
    get("/events/recE2/projects").await.unwrap();

    // A project of the other event changes: the list of E1 does not depend on it.
    h.cache.upsert(&project("recP3", "recE2", 8, 2)).await.unwrap();
    let e1 = get("/events/recE1/projects").await.unwrap();
    assert!(e1.headers().contains_key("x-cache-key"), "E1's list is still stored");
    let e2 = get("/events/recE2/projects").await.unwrap();
    assert!(!e2.headers().contains_key("x-cache-key"), "E2's list was purged");

    // P3 moves to E1: it enters E1's list.
    h.cache.upsert(&project("recP3", "recE1", 8, 3)).await.unwrap();
    let e1 = get("/events/recE1/projects").await.unwrap();
    assert!(!e1.headers().contains_key("x-cache-key"));
    let body = e1.into_body().collect().await.unwrap().to_bytes();
    let projects: Vec<Project> = serde_json::from_slice(&body).unwrap();
    assert_eq!(names(&projects), ["recP1", "recP3", "recP2"]);

    // A brand new project joins E1.
    get("/events/recE1/projects").await.unwrap();
    h.cache.upsert(&project("recP4", "recE1", 1, 1)).await.unwrap();
    let e1 = get("/events/recE1/projects").await.unwrap();
    assert!(!e1.headers().contains_key("x-cache-key"));
    let body = e1.into_body().collect().await.unwrap().to_bytes();
    let projects: Vec<Project> = serde_json::from_slice(&body).unwrap();
    assert_eq!(names(&projects), ["recP1", "recP3", "recP2", "recP4"]);
}

#[tokio::test]
async fn a_deleted_project_leaves_the_list() {
    let h = Harness::new();
    let app = h.app();
    let get = || {
        app.clone()
            .oneshot(Request::get("/events/recE1/projects").body(Body::empty()).unwrap())
    };
    get().await.unwrap();
    let handle = *h.cache.entities().get("projects").unwrap();
    assert_eq!(
        handle.remove(&h.cache, &id("recP2"), true).await,
        cache_core::RemoveOutcome::Removed
    );
    let response = get().await.unwrap();
    assert!(!response.headers().contains_key("x-cache-key"));
}

#[tokio::test]
async fn query_parameters_are_keyed_in_any_order() {
    let h = Harness::new();
    let app = h.app();
    let get = |uri: &'static str| app.clone().oneshot(Request::get(uri).body(Body::empty()).unwrap());
    get("/events/recE1/projects?a=1&b=2").await.unwrap();
    let swapped = get("/events/recE1/projects?b=2&a=1").await.unwrap();
    assert!(swapped.headers().contains_key("x-cache-key"));
    let other = get("/events/recE1/projects?a=2&b=2").await.unwrap();
    assert!(!other.headers().contains_key("x-cache-key"));
    let bare = get("/events/recE1/projects").await.unwrap();
    assert!(!bare.headers().contains_key("x-cache-key"));
}

#[tokio::test]
async fn repeated_query_parameters_are_keyed_in_their_order() {
    let h = Harness::new();
    let app = h.app();
    let get = |uri: &'static str| app.clone().oneshot(Request::get(uri).body(Body::empty()).unwrap());
    get("/events/recE1/projects?sort=points&sort=name").await.unwrap();
    let reordered = get("/events/recE1/projects?sort=name&sort=points").await.unwrap();
    assert!(
        !reordered.headers().contains_key("x-cache-key"),
        "another order of the values is another request"
    );
    let same = get("/events/recE1/projects?sort=points&sort=name").await.unwrap();
    assert!(same.headers().contains_key("x-cache-key"));
}

/// A route whose handler reads the event's projects, then waits at the gate in `slot` (the
/// first request that finds one there).
fn gated_app(h: &Harness, slot: &Arc<Mutex<Option<Arc<Gate>>>>) -> Router {
    let cache = h.cache.clone();
    let slot = Arc::clone(slot);
    let handler = move |Path(eid): Path<String>| {
        let (cache, slot) = (cache.clone(), Arc::clone(&slot));
        async move {
            let projects = cache
                .query(Project::by_event(&id(&eid)).desc(ProjectSort::Points))
                .await
                .unwrap();
            let gate = slot.lock().unwrap().take();
            if let Some(gate) = gate {
                gate.pass().await;
            }
            Json(projects)
        }
    };
    Router::new()
        .route(
            "/events/{id}/projects",
            get(handler).layer(ResponseCacheLayer::new(&h.cache).ttl(Duration::from_secs(60))),
        )
        .layer(CacheTelemetryLayer::new())
}

#[tokio::test]
async fn a_response_built_across_a_write_is_not_stored() {
    for no_cache in [false, true] {
        let h = Harness::new();
        let slot = Arc::new(Mutex::new(None));
        let app = gated_app(&h, &slot);
        let request = |no_cache: bool| {
            let mut req = Request::get("/events/recE1/projects");
            if no_cache {
                req = req.header("cache-control", "no-cache");
            }
            app.clone().oneshot(req.body(Body::empty()).unwrap())
        };
        if no_cache {
            // A stored response, which the refresh replaces.
            request(false).await.unwrap();
        }
        let gate = Arc::new(Gate::default());
        *slot.lock().unwrap() = Some(Arc::clone(&gate));
        let held = tokio::spawn(request(no_cache));
        gate.arrived().await;
        // The handler read the list; now P2 overtakes P1.
        h.cache.upsert(&project("recP2", "recE1", 50, 2)).await.unwrap();
        gate.release();
        let held = held.await.unwrap().unwrap();
        assert_eq!(held.status(), 200);

        let next = request(false).await.unwrap();
        assert!(
            !next.headers().contains_key("x-cache-key"),
            "no_cache={no_cache}: the response built before the write was not stored"
        );
        let body = next.into_body().collect().await.unwrap().to_bytes();
        let projects: Vec<Project> = serde_json::from_slice(&body).unwrap();
        assert_eq!(names(&projects), ["recP2", "recP1"], "no_cache={no_cache}");
        let after = request(false).await.unwrap();
        assert!(
            after.headers().contains_key("x-cache-key"),
            "no_cache={no_cache}: a response built after the write is stored"
        );
    }
}

#[tokio::test]
async fn authorization_and_cookies_bypass_unless_the_route_opts_in() {
    for (name, value) in [("authorization", "Bearer abc"), ("cookie", "session=1")] {
        let h = Harness::new();
        let app = h.app();
        for _ in 0..2 {
            let response = app
                .clone()
                .oneshot(
                    Request::get("/events/recE1/projects")
                        .header(name, value)
                        .body(Body::empty())
                        .unwrap(),
                )
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            assert!(!response.headers().contains_key("x-cache-key"), "{name}");
            assert!(
                !response.headers().contains_key("etag"),
                "{name}: not a cacheable response"
            );
        }
        let anonymous = app
            .clone()
            .oneshot(Request::get("/events/recE1/projects").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert!(
            !anonymous.headers().contains_key("x-cache-key"),
            "nothing was stored for {name}"
        );

        let opted_in = h.app_with(
            ResponseCacheLayer::new(&h.cache)
                .prefix(format!("optin-{name}:"))
                .allow_authenticated(true),
        );
        for expect_hit in [false, true] {
            let response = opted_in
                .clone()
                .oneshot(
                    Request::get("/events/recE1/projects")
                        .header(name, value)
                        .body(Body::empty())
                        .unwrap(),
                )
                .await
                .unwrap();
            assert_eq!(response.headers().contains_key("x-cache-key"), expect_hit, "{name}");
        }
    }
}

/// Builds a handler's response.
type Respond = fn() -> Response;

/// A router whose one route counts its calls and answers what `respond` builds.
fn counting(layer: ResponseCacheLayer, respond: Respond) -> (Router, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let app = Router::new()
        .route(
            "/r",
            get(move || {
                counter.fetch_add(1, Ordering::SeqCst);
                async move { respond() }
            })
            .layer(layer),
        )
        .layer(CacheTelemetryLayer::new());
    (app, calls)
}

async fn twice(app: &Router) -> (Response, Response) {
    let a = app
        .clone()
        .oneshot(Request::get("/r").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let b = app
        .clone()
        .oneshot(Request::get("/r").body(Body::empty()).unwrap())
        .await
        .unwrap();
    (a, b)
}

#[tokio::test]
async fn what_is_never_stored() {
    let h = Harness::new();
    let cases: [(&str, Respond); 7] = [
        ("set-cookie", || ([("set-cookie", "a=1")], "body").into_response()),
        ("vary *", || ([("vary", "*")], "body").into_response()),
        ("no-store", || ([("cache-control", "no-store")], "body").into_response()),
        ("private", || {
            ([("cache-control", "private, max-age=60")], "body").into_response()
        }),
        ("404", || (StatusCode::NOT_FOUND, "missing").into_response()),
        ("201", || (StatusCode::CREATED, "made").into_response()),
        ("streaming", || {
            let chunks = futures::stream::iter([
                Ok::<_, std::io::Error>(Bytes::from_static(b"a")),
                Ok(Bytes::from_static(b"b")),
            ]);
            Body::from_stream(chunks).into_response()
        }),
    ];
    for (case, respond) in cases {
        let (app, calls) = counting(ResponseCacheLayer::new(&h.cache).prefix(format!("{case}:")), respond);
        let (first, second) = twice(&app).await;
        assert_eq!(calls.load(Ordering::SeqCst), 2, "{case}: the handler ran twice");
        assert!(!second.headers().contains_key("x-cache-key"), "{case}");
        assert_eq!(first.status(), second.status(), "{case}");
        let body = second.into_body().collect().await.unwrap().to_bytes();
        assert!(!body.is_empty(), "{case}: passed through whole");
    }

    // The same handler with a plain body is stored: the cases above fail for their reason.
    let (app, calls) = counting(ResponseCacheLayer::new(&h.cache).prefix("plain:"), || {
        "body".into_response()
    });
    let (_, second) = twice(&app).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(second.headers()["x-cache"], "HIT");
    assert!(
        second.headers()["x-cache-key"]
            .to_str()
            .unwrap()
            .starts_with("plain:r:_:_:params_")
    );
}

#[tokio::test]
async fn bodies_over_the_limit_pass_through() {
    let h = Harness::new();
    let big = || "x".repeat(2048).into_response();
    let (app, calls) = counting(ResponseCacheLayer::new(&h.cache).max_body_bytes(1024), big);
    let (_, second) = twice(&app).await;
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(second.into_body().collect().await.unwrap().to_bytes().len(), 2048);

    let (app, calls) = counting(
        ResponseCacheLayer::new(&h.cache).max_body_bytes(4096).prefix("roomy:"),
        big,
    );
    let (_, second) = twice(&app).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(second.into_body().collect().await.unwrap().to_bytes().len(), 2048);
}

#[tokio::test]
async fn declared_vary_headers_key_variants_side_by_side() {
    let h = Harness::new();
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let app: Router = Router::new()
        .route(
            "/greeting",
            get(move |headers: http::HeaderMap| {
                counter.fetch_add(1, Ordering::SeqCst);
                async move {
                    let lang = headers
                        .get("accept-language")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("en");
                    let text = if lang == "fr" { "bonjour" } else { "hello" };
                    ([("vary", "Accept-Language")], text)
                }
            })
            .layer(ResponseCacheLayer::new(&h.cache).vary(HeaderName::from_static("accept-language"))),
        )
        .layer(CacheTelemetryLayer::new());
    let get = |lang: &'static str| {
        app.clone().oneshot(
            Request::get("/greeting")
                .header("accept-language", lang)
                .body(Body::empty())
                .unwrap(),
        )
    };
    let text =
        |r: Response| async { String::from_utf8(r.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap() };
    assert_eq!(text(get("fr").await.unwrap()).await, "bonjour");
    assert_eq!(text(get("en").await.unwrap()).await, "hello");
    let fr = get("fr").await.unwrap();
    assert_eq!(fr.headers()["x-cache"], "HIT");
    assert_eq!(text(fr).await, "bonjour");
    let en = get("en").await.unwrap();
    assert_eq!(en.headers()["x-cache"], "HIT");
    assert_eq!(text(en).await, "hello");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn undeclared_vary_headers_are_checked_on_lookup() {
    let h = Harness::new();
    let app: Router = Router::new()
        .route(
            "/flavour",
            get(|headers: http::HeaderMap| async move {
                let flavour = headers
                    .get("x-flavour")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("plain")
                    .to_owned();
                ([("vary", "X-Flavour")], flavour)
            })
            .layer(ResponseCacheLayer::new(&h.cache)),
        )
        .layer(CacheTelemetryLayer::new());
    let get = |flavour: &'static str| {
        app.clone().oneshot(
            Request::get("/flavour")
                .header("x-flavour", flavour)
                .body(Body::empty())
                .unwrap(),
        )
    };
    get("mint").await.unwrap();
    let lemon = get("lemon").await.unwrap();
    assert!(
        !lemon.headers().contains_key("x-cache-key"),
        "mint is not served to lemon"
    );
    assert_eq!(&lemon.into_body().collect().await.unwrap().to_bytes()[..], b"lemon");
    let lemon = get("lemon").await.unwrap();
    assert!(lemon.headers().contains_key("x-cache-key"));
    assert_eq!(&lemon.into_body().collect().await.unwrap().to_bytes()[..], b"lemon");
}

#[tokio::test]
async fn head_is_answered_from_the_cache_but_never_fills_it() {
    let h = Harness::new();
    let base = serve(h.app()).await;
    let client = reqwest::Client::new();
    let url = format!("{base}/events/recE1/projects");

    let head = client.head(&url).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert!(header(&head, "x-cache-key").is_none());
    let get = client.get(&url).send().await.unwrap();
    assert!(header(&get, "x-cache-key").is_none(), "the HEAD stored nothing");
    let length = get.bytes().await.unwrap().len();

    let head = client.head(&url).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert!(header(&head, "x-cache-key").is_some());
    assert_eq!(header(&head, "content-length"), Some(length.to_string().as_str()));
    assert!(head.bytes().await.unwrap().is_empty());
}

#[tokio::test]
async fn invalidation_by_tag_and_by_pattern() {
    let h = Harness::new();
    let layer = ResponseCacheLayer::new(&h.cache).ttl(Duration::from_secs(60));
    let app = h.app_with(layer.clone());
    let get = |uri: &'static str| app.clone().oneshot(Request::get(uri).body(Body::empty()).unwrap());
    let stored = |uri: &'static str| async move { get(uri).await.unwrap().headers().contains_key("x-cache-key") };

    get("/events/recE1/projects").await.unwrap();
    get("/events/recE2/projects").await.unwrap();
    let removed = layer
        .invalidate_tags(&[cache_core::keys::index_tag("projects", "event", "recE1")])
        .await
        .unwrap();
    assert_eq!(removed, 1);
    assert!(!stored("/events/recE1/projects").await);
    assert!(stored("/events/recE2/projects").await);

    let removed = layer.invalidate_pattern(Some("events:recE2:*")).await.unwrap();
    assert_eq!(removed, 1);
    assert!(!stored("/events/recE2/projects").await);
    assert!(stored("/events/recE1/projects").await);

    assert_eq!(layer.invalidate_pattern(None).await.unwrap(), 2);
    assert!(!stored("/events/recE1/projects").await);
    // Records are not responses: the flush left them.
    assert!(h.store.get_value("nothing").await.unwrap().is_none());
    assert_eq!(
        h.cache.stats().entity("projects").origin_calls,
        2,
        "records still cached"
    );
}

#[tokio::test]
async fn a_failing_store_serves_from_the_handler() {
    let h = Harness::new();
    let app = h.app();
    h.store.set_down(true);
    let response = app
        .oneshot(Request::get("/events/recE1/projects").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(!response.headers().contains_key("x-cache-key"));
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let projects: Vec<Project> = serde_json::from_slice(&body).unwrap();
    assert_eq!(names(&projects), ["recP1", "recP2"]);
}

#[tokio::test]
async fn a_version_bump_misses_old_entries() {
    let h = Harness::new();
    let v1 = h.app_with(ResponseCacheLayer::new(&h.cache));
    let v2 = h.app_with(ResponseCacheLayer::new(&h.cache).version("v2"));
    let get = |app: &Router| {
        app.clone()
            .oneshot(Request::get("/events/recE1/projects").body(Body::empty()).unwrap())
    };
    get(&v1).await.unwrap();
    assert!(get(&v1).await.unwrap().headers().contains_key("x-cache-key"));
    let bumped = get(&v2).await.unwrap();
    assert!(!bumped.headers().contains_key("x-cache-key"));
    let bumped = get(&v2).await.unwrap();
    assert!(bumped.headers()["x-cache-key"].to_str().unwrap().ends_with(":v2"));
}

#[tokio::test]
async fn the_layer_works_on_a_whole_router() {
    let h = Harness::new();
    let cache: Cache = h.cache.clone();
    let app: Router = Router::new()
        .route(
            "/events/{id}/projects",
            get(
                move |axum::extract::Path(eid): axum::extract::Path<String>| async move {
                    let projects = cache.query(Project::by_event(&id(&eid))).await.unwrap();
                    axum::Json(projects)
                },
            ),
        )
        .layer(ResponseCacheLayer::new(&h.cache))
        .layer(CacheTelemetryLayer::new());
    let get = || {
        app.clone()
            .oneshot(Request::get("/events/recE1/projects").body(Body::empty()).unwrap())
    };
    get().await.unwrap();
    let hit = get().await.unwrap();
    assert!(
        hit.headers()["x-cache-key"]
            .to_str()
            .unwrap()
            .starts_with("http:events:recE1:projects:")
    );
    h.cache.upsert(&project("recP1", "recE1", 11, 2)).await.unwrap();
    assert!(
        !get().await.unwrap().headers().contains_key("x-cache-key"),
        "purged through the router layer too"
    );
}

#[tokio::test]
async fn no_cache_refreshes_records_without_the_telemetry_layer() {
    let h = Harness::new();
    let cache: Cache = h.cache.clone();
    let app: Router = Router::new().route(
        "/events/{id}/projects",
        get(
            move |axum::extract::Path(eid): axum::extract::Path<String>| async move {
                axum::Json(cache.query(Project::by_event(&id(&eid))).await.unwrap())
            },
        )
        .layer(ResponseCacheLayer::new(&h.cache)),
    );
    let get = |no_cache: bool| {
        let mut req = Request::get("/events/recE1/projects");
        if no_cache {
            req = req.header("cache-control", "no-cache");
        }
        app.clone().oneshot(req.body(Body::empty()).unwrap())
    };
    get(false).await.unwrap();
    assert_eq!(h.origin.count(OriginMethod::Query), 1);
    let refreshed = get(true).await.unwrap();
    assert!(!refreshed.headers().contains_key("x-cache-key"));
    assert_eq!(
        h.origin.count(OriginMethod::Query),
        2,
        "the query skipped the store too"
    );
    assert!(
        get(false).await.unwrap().headers().contains_key("x-cache-key"),
        "and stored afresh"
    );
}

/// A record a query refill finds gone at the source takes its cached responses with it: the
/// response of `GET /projects/{id}` is not served after the refill forgot the record.
#[tokio::test]
async fn a_record_a_query_refill_drops_takes_its_responses_with_it() {
    let h = Harness::new();
    let cache = h.cache.clone();
    let project_route = get(move |Path(pid): Path<String>| {
        let cache = cache.clone();
        async move {
            match cache.get::<Project>(&id(&pid)).await {
                Ok(Some(p)) => Json(p).into_response(),
                Ok(None) => StatusCode::NOT_FOUND.into_response(),
                Err(err) => (StatusCode::BAD_GATEWAY, err.to_string()).into_response(),
            }
        }
    })
    .layer(ResponseCacheLayer::new(&h.cache).ttl(Duration::from_secs(300)));
    let app = Router::new()
        .route("/projects/{id}", project_route)
        .merge(h.app())
        .layer(CacheTelemetryLayer::new());
    let get_project = || {
        app.clone()
            .oneshot(Request::get("/projects/recP2").body(Body::empty()).unwrap())
    };
    assert_eq!(get_project().await.unwrap().status(), StatusCode::OK);
    let served = get_project().await.unwrap();
    assert!(served.headers().contains_key("x-cache-key"), "the response is cached");

    // The source deletes recP2 without telling the cache; the event's leaderboard is read.
    assert!(h.origin.remove::<Project>(&id("recP2")));
    let list = app
        .clone()
        .oneshot(Request::get("/events/recE1/projects").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let body = list.into_body().collect().await.unwrap().to_bytes();
    assert!(!String::from_utf8_lossy(&body).contains("recP2"));

    let after = get_project().await.unwrap();
    assert!(
        !after.headers().contains_key("x-cache-key"),
        "the stored response was purged"
    );
    assert_eq!(after.status(), StatusCode::NOT_FOUND);
}

// ------------------------------------------------------------------ stampedes

/// Returns once `n` requests wait for the computation in flight in `cache`'s process (the
/// in-process single flight's own count, not a sleep); fails after a deadline.
async fn until_waiting(cache: &Cache, n: usize) {
    let waiting = async {
        while cache.computation_waiters() < n {
            tokio::task::yield_now().await;
        }
    };
    tokio::time::timeout(Duration::from_secs(20), waiting)
        .await
        .expect("the other requests never waited for the running handler");
}

/// Fails when `fut` does not finish within a deadline (instead of hanging the suite).
async fn within_deadline<F: std::future::Future>(fut: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(20), fut)
        .await
        .expect("not finished within the deadline")
}

/// `GET /events/{id}/projects` that counts its calls, reads the list through the cache, and
/// holds its first call until `waiters` other requests wait for it.
fn leaderboard(cache: &Cache, calls: &Arc<AtomicUsize>, waiters: usize) -> Router {
    let (cache, calls) = (cache.clone(), Arc::clone(calls));
    let layer = ResponseCacheLayer::new(&cache).ttl(Duration::from_secs(60));
    let handler = move |Path(eid): Path<String>| {
        let (cache, calls) = (cache.clone(), Arc::clone(&calls));
        async move {
            let call = calls.fetch_add(1, Ordering::SeqCst);
            let projects = cache
                .query(Project::by_event(&id(&eid)).desc(ProjectSort::Points))
                .await
                .unwrap();
            if call == 0 {
                until_waiting(&cache, waiters).await;
            }
            Json(projects)
        }
    };
    Router::new()
        .route("/events/{id}/projects", get(handler).layer(layer))
        .layer(CacheTelemetryLayer::new())
}

/// Sixteen requests for one response over real sockets, at once: the handler runs once and
/// everyone gets its response. The request that ran it reports what it read (`MISS`); the
/// others `HIT` with `X-Cache-Coalesced: true`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_over_http_run_the_handler_once() {
    const N: usize = 16;
    let h = Harness::new();
    let calls = Arc::new(AtomicUsize::new(0));
    let base = serve(leaderboard(&h.cache, &calls, N - 1)).await;
    let client = reqwest::Client::new();
    let url = format!("{base}/events/recE1/projects");

    let responses = within_deadline(futures::future::join_all((0..N).map(|_| client.get(&url).send()))).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1, "one handler call for {N} requests");
    assert_eq!(h.origin.count(OriginMethod::Query), 1);
    let mut leaders = 0;
    let mut bodies = Vec::new();
    for response in responses {
        let response = response.unwrap();
        assert_eq!(response.status(), 200);
        if header(&response, "x-cache-coalesced").is_some() {
            assert_eq!(header(&response, "x-cache-coalesced"), Some("true"));
            assert_eq!(header(&response, "x-cache"), Some("HIT"));
            assert_eq!(header(&response, "x-origin-calls"), Some("0"));
            assert!(header(&response, "x-cache-key").is_some());
            assert_eq!(header(&response, "x-cache-ttl"), Some("60"));
        } else {
            leaders += 1;
            assert_eq!(header(&response, "x-cache"), Some("MISS"));
            assert_eq!(header(&response, "x-origin-calls"), Some("1"));
            assert!(header(&response, "x-cache-key").is_none(), "produced, not served");
        }
        assert!(header(&response, "etag").is_some());
        bodies.push(response.bytes().await.unwrap());
    }
    assert_eq!(leaders, 1, "the request that ran the handler");
    assert!(bodies.iter().all(|b| *b == bodies[0]), "everyone got the same body");
    let listed: Vec<Project> = serde_json::from_slice(&bodies[0]).unwrap();
    assert_eq!(names(&listed), ["recP1", "recP2"]);

    // And it was stored: the next request is a plain hit.
    let next = client.get(&url).send().await.unwrap();
    assert_eq!(header(&next, "x-cache"), Some("HIT"));
    assert!(header(&next, "x-cache-coalesced").is_none());
    assert_eq!(next.bytes().await.unwrap(), bodies[0]);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

/// A response that may not be stored (here: it sets a cookie) belongs to its request: the
/// requests that waited for it run the handler themselves, side by side (each waits at a
/// barrier for the others: run one after another, they would never all reach it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_that_is_not_stored_is_not_shared_and_its_waiters_run_the_handler() {
    const N: usize = 4;
    let h = Harness::new();
    let calls = Arc::new(AtomicUsize::new(0));
    let side_by_side = Arc::new(tokio::sync::Barrier::new(N - 1));
    let (cache, counter) = (h.cache.clone(), Arc::clone(&calls));
    let handler = move || {
        let (cache, counter, side_by_side) = (cache.clone(), Arc::clone(&counter), Arc::clone(&side_by_side));
        async move {
            let call = counter.fetch_add(1, Ordering::SeqCst);
            if call == 0 {
                until_waiting(&cache, N - 1).await;
                return ([("set-cookie", "session=first")], "first").into_response();
            }
            within_deadline(side_by_side.wait()).await;
            format!("call {call}").into_response()
        }
    };
    let app = Router::new()
        .route("/r", get(handler).layer(ResponseCacheLayer::new(&h.cache)))
        .layer(CacheTelemetryLayer::new());
    let base = serve(app).await;
    let client = reqwest::Client::new();
    let url = format!("{base}/r");

    let responses = within_deadline(futures::future::join_all((0..N).map(|_| client.get(&url).send()))).await;
    assert_eq!(calls.load(Ordering::SeqCst), N, "every waiter ran the handler itself");
    let mut with_cookie = 0;
    for response in responses {
        let response = response.unwrap();
        assert_eq!(response.status(), 200);
        assert!(header(&response, "x-cache-coalesced").is_none(), "nothing was shared");
        assert!(header(&response, "x-cache-key").is_none());
        let cookie = header(&response, "set-cookie").map(str::to_owned);
        let body = response.text().await.unwrap();
        if cookie.is_some() {
            with_cookie += 1;
            assert_eq!(body, "first");
        } else {
            assert!(body.starts_with("call "), "{body}: a response of its own");
        }
    }
    assert_eq!(with_cookie, 1, "the cookie went to its own request only");
}

/// A failure of the inner service is its request's answer alone: the requests that waited
/// for it run the service themselves and get their own responses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_of_the_inner_service_is_not_shared() {
    const N: usize = 4;
    let h = Harness::new();
    let calls = Arc::new(AtomicUsize::new(0));
    let (cache, counter) = (h.cache.clone(), Arc::clone(&calls));
    let inner = tower::service_fn(move |_: Request<Body>| {
        let (cache, counter) = (cache.clone(), Arc::clone(&counter));
        async move {
            if counter.fetch_add(1, Ordering::SeqCst) == 0 {
                until_waiting(&cache, N - 1).await;
                return Err(std::io::Error::other("the service failed"));
            }
            Ok(Response::new(Body::from("fresh")))
        }
    });
    let service = tower::Layer::layer(&ResponseCacheLayer::new(&h.cache), inner);
    let results = within_deadline(futures::future::join_all(
        (0..N).map(|_| service.clone().oneshot(Request::get("/r").body(Body::empty()).unwrap())),
    ))
    .await;
    assert_eq!(
        calls.load(Ordering::SeqCst),
        N,
        "the waiters called the service themselves"
    );
    let mut failed = 0;
    for result in results {
        match result {
            Err(err) => {
                failed += 1;
                assert_eq!(err.to_string(), "the service failed");
            }
            Ok(response) => {
                assert_eq!(response.status(), 200);
                assert!(!response.headers().contains_key("x-cache-coalesced"));
                assert_eq!(&response.into_body().collect().await.unwrap().to_bytes()[..], b"fresh");
            }
        }
    }
    assert_eq!(failed, 1, "the error went to its own request only");
}

/// Two instances of the application on one Redis: a request to each at once runs the handler
/// once. The second instance's request waits for the first's through the store's compute
/// lock (blocked in Redis, as the server reports), and answers its response.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_sharing_redis_run_the_handler_once() {
    use cache_redis::{
        RedisStore,
        testing::{RedisServer, unique_namespace},
    };

    let server = RedisServer::start();
    let namespace = unique_namespace();
    let h = Harness::new();
    let instance = || async {
        let store = RedisStore::builder(server.url())
            .namespace(&namespace)
            .timeouts(Duration::from_secs(10), Duration::from_secs(10))
            .connect()
            .await
            .unwrap();
        Cache::builder(store, h.origin.clone())
            .ttl_jitter(0.0)
            .register::<Event>()
            .register::<Project>()
            .build()
            .unwrap()
    };
    let (a, b) = (instance().await, instance().await);
    let calls = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(Gate::default());
    let app = |cache: Cache| {
        let (calls, gate) = (Arc::clone(&calls), Arc::clone(&gate));
        let layer = ResponseCacheLayer::new(&cache).ttl(Duration::from_secs(60));
        let handler = move |Path(eid): Path<String>| {
            let (cache, calls, gate) = (cache.clone(), Arc::clone(&calls), Arc::clone(&gate));
            async move {
                let projects = cache.query(Project::by_event(&id(&eid))).await.unwrap();
                if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                    gate.pass().await;
                }
                Json(projects)
            }
        };
        Router::new()
            .route("/events/{id}/projects", get(handler).layer(layer))
            .layer(CacheTelemetryLayer::new())
    };
    let (base_a, base_b) = (serve(app(a)).await, serve(app(b)).await);
    let client = reqwest::Client::new();
    let path = "/events/recE1/projects";

    let first = tokio::spawn(client.get(format!("{base_a}{path}")).send());
    within_deadline(gate.arrived()).await;
    let second = tokio::spawn(client.get(format!("{base_b}{path}")).send());
    // Instance B waits in Redis for A's computation.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let info: String = server.query(cache_redis::redis::cmd("INFO").arg("clients"));
        let blocked = info
            .lines()
            .find_map(|l| l.strip_prefix("blocked_clients:"))
            .and_then(|n| n.trim().parse::<u64>().ok())
            .unwrap_or(0);
        if blocked >= 1 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "instance B never waited in Redis");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    gate.release();

    let first = within_deadline(first).await.unwrap().unwrap();
    let second = within_deadline(second).await.unwrap().unwrap();
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "one handler call across both instances"
    );
    assert_eq!(header(&first, "x-cache"), Some("MISS"));
    assert!(header(&first, "x-cache-coalesced").is_none());
    assert_eq!(header(&second, "x-cache"), Some("HIT"));
    assert_eq!(header(&second, "x-cache-coalesced"), Some("true"));
    assert_eq!(header(&second, "x-origin-calls"), Some("0"));
    assert_eq!(header(&first, "etag"), header(&second, "etag"));
    assert_eq!(first.bytes().await.unwrap(), second.bytes().await.unwrap());
}
