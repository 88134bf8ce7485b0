//! Flush patterns: `keys::validate_pattern` and `keys::glob_match` against the reference, a
//! namespace no accepted pattern can leave, and `DELETE /admin/cache?pattern=` through the admin
//! router over the in-memory store: a flush removes exactly the keys its pattern matches and
//! reports what it removed.

use std::{collections::BTreeMap, time::Duration};

use axum::{Router, body::Body};
use bytes::Bytes;
use cache_core::{
    Cache, Cacheable, RecordId, keys,
    store::{Lookup, Store, StoreError},
};
use cache_http::admin::{self, AdminConfig, MAX_PATTERN_LEN};
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use model_cache_fuzz::{
    Source,
    reference::{self, glob_match, instantiate, is_well_formed_pattern, percent_encode_all},
};
use serde_json::Value;
use tower::ServiceExt;

use crate::{Event, Project, cache, fuzz, id, origin, runtime};

const TOKEN: &str = "fuzz-admin-token-0123456789-abcdefghijkl";

/// Glob syntax and the separators of keys: picked often in patterns.
const GLOB: &[char] = &['*', '?', '[', ']', '^', '-', '\\', ':', 'r', 'v', 'a', 'é', '*', '['];

#[test]
fn flush_patterns() {
    let rt = runtime();
    let mut outcomes: BTreeMap<&'static str, u64> = BTreeMap::new();
    fuzz!(1_500, 256, |input: &[u8]| {
        let mut source = Source::new(input);
        let admin = source.one_in(4);
        let pattern = pattern(&mut source);
        let key = match source.below(3) {
            0 => source.text(16),
            _ => instantiate(&pattern, || (!source.one_in(3)).then(|| source.char())).unwrap_or_default(),
        };
        let checked = check_pattern(&pattern, &key);
        *outcomes.entry(checked).or_default() += 1;
        if admin {
            let answered = rt.block_on(check_admin_flush(&mut source, &pattern));
            *outcomes.entry(answered).or_default() += 1;
        }
    });
    eprintln!("flush_patterns outcomes: {outcomes:?}");
    // The inputs reach every answer.
    if outcomes.values().sum::<u64>() >= 1_000 {
        for expected in ["accepted", "refused", "matched", "admin 200", "admin 400", "admin 401"] {
            assert!(outcomes.contains_key(expected), "no {expected:?} among {outcomes:?}");
        }
    }
}

fn pattern(source: &mut Source<'_>) -> String {
    let len = source.below(14);
    (0..len)
        .map(|_| {
            if source.one_in(2) {
                *source.pick(GLOB)
            } else {
                source.char()
            }
        })
        .collect()
}

/// Checks one pattern against one key; answers whether it was `"refused"`, `"matched"` (an
/// accepted pattern matching the key) or `"accepted"`.
fn check_pattern(pattern: &str, key: &str) -> &'static str {
    let matched = keys::glob_match(pattern, key);
    assert_eq!(matched, glob_match(pattern, key), "pattern {pattern:?}, key {key:?}");
    let checked = keys::validate_pattern(pattern);
    assert_eq!(
        checked.is_ok(),
        is_well_formed_pattern(pattern),
        "{pattern:?}: {checked:?}"
    );
    match checked {
        Err(StoreError::Invalid(why)) => {
            assert!(why.contains(&format!("{pattern:?}")), "{why}");
            "refused"
        }
        Err(other) => panic!("{pattern:?}: {other:?}"),
        Ok(()) => {
            // Stores put the namespace in front of the pattern as a literal: an accepted
            // pattern can only match keys of that namespace.
            for namespace in ["mc", "fz"] {
                let scoped = format!("{namespace}:{pattern}");
                for candidate in [
                    key.to_owned(),
                    format!("other:{key}"),
                    format!("{namespace}{key}"),
                    format!("mc:{key}"),
                    format!("{namespace}:{key}"),
                ] {
                    if keys::glob_match(&scoped, &candidate) {
                        assert!(
                            candidate.starts_with(&format!("{namespace}:")),
                            "{scoped:?} matched {candidate:?}"
                        );
                    }
                }
                if let Some(matching) = instantiate(pattern, || None) {
                    assert!(keys::glob_match(pattern, &matching), "{pattern:?} vs {matching:?}");
                    assert!(keys::glob_match(&scoped, &format!("{namespace}:{matching}")));
                }
            }
            if matched { "matched" } else { "accepted" }
        }
    }
}

/// The logical keys the warmed store holds, and how to see whether each is still there.
const RECORDS: &[(&str, &str)] = &[
    ("events", "recE1"),
    ("events", "recE2"),
    ("projects", "recP1"),
    ("projects", "recP2"),
];
const TOMBSTONE: (&str, &str) = ("projects", "recNope");
const VALUE: &str = "http:events:recE1:projects:params_0123456789abcdef:v1";

async fn warm(cache: &Cache) {
    for e in ["recE1", "recE2"] {
        assert!(cache.get::<Event>(&id(e)).await.unwrap().is_some());
    }
    assert_eq!(cache.query(Project::by_event(&id("recE1"))).await.unwrap().len(), 2);
    assert!(cache.get::<Project>(&id("recNope")).await.unwrap().is_none());
    cache
        .store()
        .put_value(VALUE, Bytes::from_static(b"{}"), Duration::from_secs(600), &[])
        .await
        .unwrap();
}

fn schema(entity: &str) -> &'static cache_core::schema::EntitySchema {
    match entity {
        "events" => Event::schema(),
        _ => Project::schema(),
    }
}

/// Which of the warmed keys are still in the store, by logical key.
async fn present(store: &dyn Store) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    for &(entity, rid) in RECORDS {
        let lookup = store.get(schema(entity), &RecordId::new(rid).unwrap()).await.unwrap();
        out.push((format!("{entity}:r:{rid}"), matches!(lookup, Lookup::Hit(_))));
    }
    let (entity, rid) = TOMBSTONE;
    let lookup = store.get(schema(entity), &RecordId::new(rid).unwrap()).await.unwrap();
    out.push((format!("{entity}:tomb:{rid}"), matches!(lookup, Lookup::Tombstone)));
    out.push((format!("v:{VALUE}"), store.get_value(VALUE).await.unwrap().is_some()));
    out
}

/// Flushes a warmed store through the admin router; answers `"admin {status}"` (or
/// `"admin skipped"` for a URI the `http` crate refuses).
async fn check_admin_flush(source: &mut Source<'_>, pattern: &str) -> &'static str {
    let origin = origin();
    let (cache, store) = cache(&origin);
    warm(&cache).await;
    let before = present(&*store).await;
    assert!(before.iter().all(|(_, there)| *there), "{before:?}");
    let keys_before = store.stats().await.unwrap().total_keys;

    // What is asked: one pattern (`None` when it should be), no pattern, or any query.
    let (query, asked): (String, Option<Option<String>>) = match source.below(6) {
        0 => (String::new(), Some(None)),
        1 => {
            let raw = source.text(24);
            (raw.replace('#', "%23"), None)
        }
        2 => {
            let padded = format!("{pattern}{}", "*".repeat(MAX_PATTERN_LEN));
            (format!("pattern={}", percent_encode_all(&padded)), Some(Some(padded)))
        }
        _ => (
            format!("pattern={}", percent_encode_all(pattern)),
            Some(Some(pattern.to_owned())),
        ),
    };
    let authorized = !source.one_in(8);
    let uri = format!("/admin/cache?{query}");
    let mut request = Request::delete(uri.as_str());
    if authorized {
        request = request.header("authorization", format!("Bearer {TOKEN}"));
    }
    // A URI the `http` crate refuses never reaches the router.
    let Ok(request) = request.body(Body::empty()) else {
        assert!(asked.is_none(), "{uri:?} was refused");
        return "admin skipped";
    };
    let app: Router = admin::routes(AdminConfig::new(cache.clone(), TOKEN)).unwrap();
    let response = app.oneshot(request).await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let json: Value = serde_json::from_slice(&body).unwrap_or_else(|_| panic!("{uri:?}: {body:?}"));
    let after = present(&*store).await;
    let keys_after = store.stats().await.unwrap().total_keys;

    if !authorized {
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{uri:?}");
        assert_eq!(after, before, "{uri:?}");
        return "admin 401";
    }
    match status {
        StatusCode::OK => {
            // What a flush counts is the logical keys it removed (records, tombstones, values),
            // not the index keys and markers that go with them.
            let removed = json["removed"].as_u64().unwrap_or_else(|| panic!("{uri:?}: {json}"));
            let gone = after.iter().filter(|(_, there)| !there).count() as u64;
            assert_eq!(removed, gone, "{uri:?}: {json}");
            assert!(
                keys_after <= keys_before - removed,
                "{uri:?}: {keys_before} -> {keys_after}"
            );
            let flushed = json["pattern"].as_str().map(str::to_owned);
            if let Some(expected) = &asked {
                assert_eq!(&flushed, expected, "{uri:?}");
            }
            if let Some(p) = &flushed {
                assert!(
                    p.len() <= MAX_PATTERN_LEN && is_well_formed_pattern(p),
                    "{uri:?} was accepted"
                );
            }
            for (key, there) in &after {
                let matched = flushed.as_deref().is_none_or(|p| reference::glob_match(p, key));
                assert_eq!(*there, !matched, "{uri:?}: {key} after flushing {flushed:?}");
            }
            "admin 200"
        }
        StatusCode::BAD_REQUEST => {
            assert!(json["error"].is_string(), "{uri:?}: {json}");
            assert_eq!(after, before, "{uri:?}: a refused flush removed something");
            match &asked {
                Some(Some(p)) => assert!(
                    p.len() > MAX_PATTERN_LEN || !is_well_formed_pattern(p),
                    "{uri:?}: {json}"
                ),
                Some(None) => panic!("{uri:?}: flushing everything was refused: {json}"),
                None => {}
            }
            "admin 400"
        }
        other => panic!("{uri:?}: {other} {json}"),
    }
}
