//! Query parameters: the response cache's key (`canonical_query`, and whole requests through a
//! `ResponseCacheLayer` over the in-memory store: path parameters and query strings into
//! `http:{resource}:{id}:{sub}:params_{hash}:{version}`), and `offset` / `limit` as an API
//! hands them to `Cache::query` (the demo's `?offset=&limit=`).

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use axum::{
    Router,
    body::Body,
    extract::{Path, RawQuery},
    routing::get,
};
use cache_core::{CacheError, Link, Links, store::Store};
use cache_http::{
    ResponseCacheLayer,
    response_cache::{X_CACHE_KEY, canonical_query},
};
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use model_cache_fuzz::{
    Source,
    reference::{is_encoded_component, percent_decode, percent_encode_all},
};
use tower::ServiceExt;

use crate::{Project, ProjectSort, cache, fuzz, id, origin, runtime};

/// Requests per harness, so that the store starts afresh now and then.
const REQUESTS_PER_HARNESS: u32 = 256;

struct Harness {
    app: Router,
    requests: u32,
}

impl Harness {
    fn new() -> Self {
        let (cache, _store): (_, Arc<dyn Store>) = cache(&origin());
        let layer = ResponseCacheLayer::new(&cache).ttl(Duration::from_secs(600));
        let app = Router::new()
            .route("/items/{id}", get(item).layer(layer.clone()))
            .route("/items/{id}/parts/{part}", get(part).layer(layer));
        Self { app, requests: 0 }
    }
}

async fn item(Path(id): Path<String>, RawQuery(query): RawQuery) -> String {
    format!("{id}|{}", query.unwrap_or_default())
}

async fn part(Path((id, part)): Path<(String, String)>, RawQuery(query): RawQuery) -> String {
    format!("{id}/{part}|{}", query.unwrap_or_default())
}

#[test]
fn query_parameters() {
    let rt = runtime();
    let mut harness = Harness::new();
    let mut outcomes: BTreeMap<&'static str, u64> = BTreeMap::new();
    fuzz!(1_000, 512, |input: &[u8]| {
        let mut source = Source::new(input);
        let paging = source.one_in(4);
        let pairs = pairs(&mut source);
        check_canonical(&mut source, &pairs);
        if harness.requests >= REQUESTS_PER_HARNESS {
            harness = Harness::new();
        }
        harness.requests += 3;
        let keyed = rt.block_on(check_response_keys(&harness, &mut source, &pairs));
        *outcomes.entry(keyed).or_default() += 1;
        if paging {
            rt.block_on(check_paging(&mut source));
            *outcomes.entry("paged").or_default() += 1;
        }
    });
    eprintln!("query_parameters outcomes: {outcomes:?}");
    // Most URIs reach the layer (the `http` crate refuses some raw characters).
    let keyed = outcomes.get("keyed").copied().unwrap_or(0);
    if outcomes.values().sum::<u64>() >= 1_000 {
        assert!(keyed > outcomes.get("refused").copied().unwrap_or(0), "{outcomes:?}");
        assert!(outcomes.contains_key("paged"), "{outcomes:?}");
    }
}

/// Query parameters as sent: names and values with `&`, `=`, `%` and the rest, raw or encoded.
fn pairs(source: &mut Source<'_>) -> Vec<(String, Option<String>)> {
    (0..source.below(6))
        .map(|_| {
            let name = match source.below(4) {
                3 => source.text(6),
                2 => visible(&source.text(6)),
                _ => source.pick(&["sort", "page", "q", "a", "offset", "limit"]).to_string(),
            };
            let value = match source.below(8) {
                7 => None,
                6 => Some(source.text(10)),
                5 => Some(percent_encode_all(&source.text(10))),
                _ => Some(visible(&source.text(10))),
            };
            // `&` and `=` raw would make other parameters than the ones listed.
            let name = name.replace('&', "%26").replace('=', "%3D");
            (name, value.map(|v| v.replace('&', "%26")))
        })
        .collect()
}

/// `text` with visible ASCII kept raw (`:`, `*`, `[`, `%`...) and the rest percent-encoded,
/// as a browser sends it.
fn visible(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '#' {
                c.to_string()
            } else {
                percent_encode_all(c.encode_utf8(&mut [0; 4]))
            }
        })
        .collect()
}

fn join(pairs: &[(String, Option<String>)]) -> String {
    pairs
        .iter()
        .map(|(name, value)| match value {
            Some(value) => format!("{name}={value}"),
            None => name.clone(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// The same parameters, each name's values in their order, the names moved around.
fn shuffled(source: &mut Source<'_>, pairs: &[(String, Option<String>)]) -> Vec<(String, Option<String>)> {
    let mut names: Vec<&str> = pairs.iter().map(|(n, _)| n.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    let mut rank: Vec<(&str, usize)> = names.iter().map(|&n| (n, source.below(256))).collect();
    rank.sort_by_key(|&(_, r)| r);
    let mut out = pairs.to_vec();
    out.sort_by_key(|(name, _)| rank.iter().position(|(n, _)| n == name));
    out
}

fn check_canonical(source: &mut Source<'_>, pairs: &[(String, Option<String>)]) {
    let any = source.text(24);
    assert_eq!(
        canonical_query(&canonical_query(&any)),
        canonical_query(&any),
        "{any:?}"
    );
    let raw = join(pairs);
    let canonical = canonical_query(&raw);
    assert_eq!(canonical_query(&canonical), canonical, "{raw:?}");
    let moved = join(&shuffled(source, pairs));
    assert_eq!(canonical_query(&moved), canonical, "{raw:?} vs {moved:?}");
    // Names come in order; what was sent is all there.
    let names: Vec<&str> = canonical
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').map_or(p, |(n, _)| n))
        .collect();
    assert!(names.is_sorted(), "{canonical:?}");
    let count = |q: &str| q.split('&').filter(|p| !p.is_empty()).count();
    assert_eq!(count(&canonical), count(&raw), "{raw:?} -> {canonical:?}");
}

async fn send(app: &Router, uri: &str) -> Option<(StatusCode, Option<String>, String)> {
    let request = Request::get(uri).body(Body::empty()).ok()?;
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let key = response
        .headers()
        .get(X_CACHE_KEY)
        // Keys keep non-ASCII text as it is: the header carries it as UTF-8.
        .map(|v| String::from_utf8(v.as_bytes().to_vec()).unwrap());
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Some((status, key, String::from_utf8(body.to_vec()).unwrap()))
}

/// The first request is stored, the same one with its parameters moved is served from it,
/// under a key whose readable parts are encoded; a request with another parameter is not.
/// Answers `"keyed"`, or `"refused"` for a URI the `http` crate refuses.
async fn check_response_keys(
    harness: &Harness,
    source: &mut Source<'_>,
    pairs: &[(String, Option<String>)],
) -> &'static str {
    let segment = |source: &mut Source<'_>| {
        let text = source.text(12);
        if text.is_empty() { "x".to_owned() } else { text }
    };
    let id = segment(source);
    let part = source.one_in(2).then(|| segment(source));
    let path = match &part {
        None => format!("/items/{}", percent_encode_all(&id)),
        Some(part) => format!("/items/{}/parts/{}", percent_encode_all(&id), percent_encode_all(part)),
    };
    let query = join(pairs).replace('#', "%23");
    let first_uri = format!("{path}?{query}");
    let Some((status, key, first)) = send(&harness.app, &first_uri).await else {
        // A URI the `http` crate refuses never reaches the layer.
        return "refused";
    };
    assert_eq!(status, StatusCode::OK, "{first_uri:?}");
    let moved_uri = format!("{path}?{}", join(&shuffled(source, pairs)).replace('#', "%23"));
    let (status, hit_key, second) = send(&harness.app, &moved_uri).await.unwrap();
    assert_eq!(status, StatusCode::OK, "{moved_uri:?}");
    let Some(hit_key) = hit_key else {
        panic!("{moved_uri:?} missed after {first_uri:?} (first answered with key {key:?})");
    };
    assert_eq!(second, first, "{moved_uri:?} served another body");

    let parts: Vec<&str> = hit_key.split(':').collect();
    let [prefix, resource, key_id, sub, hash, version] = parts[..] else {
        panic!("{hit_key:?} has {} parts", parts.len());
    };
    assert_eq!((prefix, resource, version), ("http", "items", "v1"), "{hit_key:?}");
    let params = match &part {
        None => id.clone(),
        Some(part) => format!("{id},{part}"),
    };
    assert!(is_encoded_component(key_id), "{hit_key:?}");
    assert_eq!(percent_decode(key_id), Some(params), "{hit_key:?}");
    assert_eq!(sub, if part.is_some() { "parts" } else { "_" }, "{hit_key:?}");
    let hex = hash.strip_prefix("params_").unwrap_or_else(|| panic!("{hit_key:?}"));
    assert!(
        hex.len() == 16 && hex.bytes().all(|b| b.is_ascii_hexdigit()),
        "{hit_key:?}"
    );

    // A parameter no earlier request of this harness had.
    let other_uri = format!("{first_uri}&zz%00={}", harness.requests);
    let (status, other_key, _) = send(&harness.app, &other_uri).await.unwrap();
    assert_eq!(status, StatusCode::OK, "{other_uri:?}");
    assert_eq!(other_key, None, "{other_uri:?} was served from {first_uri:?}");
    "keyed"
}

/// `offset` and `limit`, whatever their size: a page is the slice of the whole order.
async fn check_paging(source: &mut Source<'_>) {
    let origin = origin();
    for i in 0..source.below(7) {
        origin
            .put(&Project {
                id: id(&format!("recQ{i}")),
                name: String::new(),
                event: Link::new(id("recE2")),
                collaborators: Links::default(),
                points: source.edgy_i64(),
                version: 1,
            })
            .unwrap();
    }
    let (cache, _store) = cache(&origin);
    let ascending = source.one_in(2);
    let query = || {
        let query = Project::by_event(&id("recE2"));
        if ascending {
            query.asc(ProjectSort::Points)
        } else {
            query.desc(ProjectSort::Points)
        }
    };
    let whole = cache.query(query()).await.unwrap();
    let offset = source.edgy_usize();
    let limit = match source.below(3) {
        0 => source.edgy_usize(),
        _ => 1 + source.below(100),
    };
    let start = offset.min(whole.len());
    let end = offset.saturating_add(limit).min(whole.len());
    for round in ["first", "again"] {
        match cache.query(query().offset(offset).limit(limit)).await {
            Ok(page) => assert_eq!(page, whole[start..end], "{round}: offset {offset}, limit {limit}"),
            Err(CacheError::InvalidQuery { .. }) => {}
            Err(other) => panic!("{round}: offset {offset}, limit {limit}: {other}"),
        }
    }
}
