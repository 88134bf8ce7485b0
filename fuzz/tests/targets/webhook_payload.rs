//! `POST /webhooks/airtable` through the router: secrets, content types, declared lengths and
//! bodies (raw bytes, or JSON shaped like a payload with fuzzed tables, ids, timestamps,
//! actions and records, duplicated fields, truncations and trailing text).
//!
//! Each answer is the documented one for what was sent: `401` without the secret, `415` when
//! not JSON, `413` over the limit (those three with `Connection: close`), `400` when the body is
//! not JSON, else `200`, `400` (unknown table) or `422`; never a `5xx`. A refused delivery
//! writes nothing; an applied upsert leaves the record in the store, an applied delete a
//! tombstone.

use std::{collections::BTreeMap, sync::Arc};

use axum::{Router, body::Body};
use cache_core::{
    Cacheable, RecordId,
    schema::EntitySchema,
    store::{Lookup, Store},
};
use cache_http::webhook::{self, WebhookConfig};
use http::{HeaderValue, Request, StatusCode, header};
use http_body_util::BodyExt;
use model_cache_fuzz::{Source, reference::is_valid_id};
use serde::de::IgnoredAny;
use serde_json::Value;
use tower::ServiceExt;

use crate::{Event, Project, User, cache, fuzz, origin, runtime};

const SECRET: &str = "fuzz-webhook-secret-0123456789-abcdefgh";
/// Small, so that fuzzed bodies go over it.
const LIMIT: usize = 2048;
/// Deliveries per harness: enough for ordering state to build up, few enough to start afresh.
const DELIVERIES_PER_HARNESS: u32 = 64;

struct Harness {
    app: Router,
    store: Arc<dyn Store>,
    deliveries: u32,
}

impl Harness {
    fn new() -> Self {
        let (cache, store) = cache(&origin());
        let config = WebhookConfig::new(cache, SECRET).max_body_bytes(LIMIT);
        Self {
            app: webhook::routes(config).unwrap(),
            store,
            deliveries: 0,
        }
    }
}

#[test]
fn webhook_payload() {
    let rt = runtime();
    let mut harness = Harness::new();
    let mut outcomes: BTreeMap<String, u64> = BTreeMap::new();
    fuzz!(1_000, 3 * LIMIT, |input: &[u8]| {
        if harness.deliveries == DELIVERIES_PER_HARNESS {
            harness = Harness::new();
        }
        harness.deliveries += 1;
        let outcome = rt.block_on(deliver(&harness, &mut Source::new(input)));
        *outcomes.entry(outcome).or_default() += 1;
    });
    eprintln!("webhook_payload outcomes: {outcomes:?}");
    // The inputs reach every answer, applied deliveries included.
    if outcomes.values().sum::<u64>() >= 1_000 {
        for expected in [
            "200 upsert",
            "200 delete",
            "200 stale",
            "400",
            "401",
            "413",
            "415",
            "422",
        ] {
            assert!(outcomes.contains_key(expected), "no {expected:?} among {outcomes:?}");
        }
    }
}

/// Content types, and whether the webhook takes each as JSON.
const CONTENT_TYPES: &[(&str, bool)] = &[
    ("application/json", true),
    ("application/json; charset=utf-8", true),
    ("Application/JSON", true),
    ("  application/json  ;", true),
    ("application/vnd.airtable+json", true),
    ("application/+json", true),
    ("application/jsonx", false),
    ("application/json+xml", false),
    ("text/json", false),
    ("text/plain", false),
    ("", false),
    ("json", false),
    ("application", false),
    ("application/ json", false),
];

/// Delivers one fuzzed request and checks the answer; returns what it was (`"422"`,
/// `"200 upsert"`, `"200 stale"`).
async fn deliver(harness: &Harness, source: &mut Source<'_>) -> String {
    let mut request = Request::post("/webhooks/airtable");
    // The first choice (all an exhausted input makes) is the well-formed one throughout.
    let authorized = match source.below(20) {
        16 => false,
        17 => {
            let wrong = source.text(48);
            if let Ok(value) = HeaderValue::from_str(&wrong) {
                request = request.header("x-airtable-secret", value);
            }
            wrong == SECRET
        }
        18 => {
            request = request.header("x-airtable-secret", format!("{SECRET}x"));
            false
        }
        19 => {
            request = request.header("x-airtable-secret", &SECRET[1..]);
            false
        }
        _ => {
            request = request.header("x-airtable-secret", SECRET);
            true
        }
    };
    let json_type = match source.below(20) {
        17 => false,
        18 => {
            let (value, json) = *source.pick(CONTENT_TYPES);
            request = request.header(header::CONTENT_TYPE, value);
            json
        }
        19 => {
            let value = source.text(24);
            match HeaderValue::from_str(&value) {
                Ok(header) => {
                    request = request.header(header::CONTENT_TYPE, header);
                    // Decided by the reference rule: the media type before any `;`.
                    let essence = value.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
                    essence == "application/json"
                        || essence
                            .strip_prefix("application/")
                            .is_some_and(|sub| sub.ends_with("+json"))
                }
                Err(_) => false,
            }
        }
        _ => {
            request = request.header(header::CONTENT_TYPE, "application/json");
            true
        }
    };
    let body = body(source);
    let declared: Option<u64> = match source.below(8) {
        5 => {
            let n = source.edgy_u64();
            request = request.header(header::CONTENT_LENGTH, n.to_string());
            Some(n)
        }
        6 => {
            request = request.header(header::CONTENT_LENGTH, "abc");
            None
        }
        7 => {
            request = request.header(header::CONTENT_LENGTH, body.len().to_string());
            Some(body.len() as u64)
        }
        _ => None,
    };
    let expected = if !authorized {
        Some(StatusCode::UNAUTHORIZED)
    } else if !json_type {
        Some(StatusCode::UNSUPPORTED_MEDIA_TYPE)
    } else if declared.is_some_and(|n| n > LIMIT as u64) || body.len() > LIMIT {
        Some(StatusCode::PAYLOAD_TOO_LARGE)
    } else if serde_json::from_slice::<IgnoredAny>(&body).is_err() {
        // Not JSON at all. (JSON with a number out of range for a float, `1e400`, is JSON to a
        // reader skipping it, and refused with `400` by one reading it into a value.)
        Some(StatusCode::BAD_REQUEST)
    } else {
        None
    };

    let keys_before = harness.store.stats().await.unwrap().total_keys;
    let request = request.body(Body::from(body.clone())).unwrap();
    let response = harness.app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let closes = response.headers().get(header::CONNECTION).is_some_and(|v| v == "close");
    let answer = response.into_body().collect().await.unwrap().to_bytes();
    let json: Value = serde_json::from_slice(&answer).unwrap_or_else(|_| panic!("{status}: {answer:?}"));
    let shown = String::from_utf8_lossy(&body);

    assert!(!status.is_server_error(), "{status} {json} for {shown}");
    match expected {
        Some(expected) => assert_eq!(status, expected, "{json} for {shown}"),
        None => assert!(
            [
                StatusCode::OK,
                StatusCode::BAD_REQUEST,
                StatusCode::UNPROCESSABLE_ENTITY
            ]
            .contains(&status),
            "{status} {json} for {shown}"
        ),
    }
    // Refused before the body was read: the connection cannot carry another request.
    let unread = [
        StatusCode::UNAUTHORIZED,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        StatusCode::PAYLOAD_TOO_LARGE,
    ]
    .contains(&status);
    assert_eq!(closes, unread, "{status}: Connection: close");

    if status != StatusCode::OK {
        assert!(json["error"].is_string(), "{status} {json}");
        if status == StatusCode::BAD_REQUEST && expected.is_none() {
            // Valid JSON is refused with 400 only for an unknown table. (A number out of range
            // for a float, `1e400`, is JSON to a reader skipping it, not to one reading it
            // into a value.)
            let out_of_range = serde_json::from_slice::<Value>(&body).is_err();
            assert!(
                json["table"].is_string() || out_of_range,
                "a valid JSON body refused with 400: {json} for {shown}"
            );
        }
        let keys_after = harness.store.stats().await.unwrap().total_keys;
        assert_eq!(
            keys_after, keys_before,
            "{status} {json} wrote to the store for {shown}"
        );
        return status.as_u16().to_string();
    }
    let record_id = json["record_id"].as_str().unwrap_or_else(|| panic!("{json}"));
    assert!(is_valid_id(record_id), "{json}");
    let rid = RecordId::new(record_id).unwrap();
    let schema: &EntitySchema = match json["entity"].as_str() {
        Some("events") => Event::schema(),
        Some("projects") => Project::schema(),
        Some("users") => User::schema(),
        other => panic!("entity {other:?} in {json}"),
    };
    let lookup = harness.store.get(schema, &rid).await.unwrap();
    match (json["applied"].as_bool(), json["action"].as_str()) {
        (Some(true), Some(action @ "upsert")) => {
            assert!(matches!(lookup, Lookup::Hit(_)), "{json}: {lookup:?}");
            format!("200 {action}")
        }
        (Some(true), Some(action @ "delete")) => {
            assert!(matches!(lookup, Lookup::Tombstone), "{json}: {lookup:?}");
            format!("200 {action}")
        }
        (Some(false), Some("upsert" | "delete")) => match json["reason"].as_str() {
            Some(reason @ ("stale" | "deleted")) => format!("200 {reason}"),
            other => panic!("reason {other:?} in {json}"),
        },
        _ => panic!("{json}"),
    }
}

/// A body: raw bytes or text, or JSON shaped like a payload (which may then be cut short or
/// followed by more text).
fn body(source: &mut Source<'_>) -> Vec<u8> {
    match source.below(10) {
        7 => source.take_rest().to_vec(),
        8 => source.text(64).into_bytes(),
        9 => {
            // Deep nesting, around serde_json's recursion limit.
            let depth = 100 + source.below(60);
            format!("{}{}", "[".repeat(depth), "]".repeat(depth)).into_bytes()
        }
        _ => {
            let mut text = payload(source);
            match source.below(8) {
                6 => {
                    let cut = source.below(text.len() + 1);
                    let mut bytes = text.into_bytes();
                    bytes.truncate(cut);
                    return bytes;
                }
                7 => text.push_str(&source.text(8)),
                _ => {}
            }
            text.into_bytes()
        }
    }
}

fn string(text: &str) -> String {
    serde_json::to_string(text).unwrap()
}

fn payload(source: &mut Source<'_>) -> String {
    let mut fields: Vec<(String, String)> = Vec::new();
    let table = match source.below(16) {
        13 => None,
        14 => Some(string(&source.text(12))),
        15 => Some(json_value(source, 1)),
        12 => Some(string(source.pick::<&str>(&["events", "Users"]))),
        10 | 11 => Some(string("Events")),
        _ => Some(string("Projects")),
    };
    let record_id = match source.below(16) {
        13 => None,
        14 => Some(string(&source.text(16))),
        15 => Some(source.edgy_i64().to_string()),
        12 => Some(string(&format!("rec{}", source.plain(20)))),
        // A few records, so that deliveries for one overtake each other.
        _ => Some(string(source.pick::<&str>(&["recP1", "recP2", "recE1", "recU1"]))),
    };
    let timestamp = match source.below(16) {
        13 => None,
        14 => Some(string(&source.text(24))),
        15 => Some(source.edgy_i64().to_string()),
        12 => Some(string(source.pick::<&str>(&[
            "+262143-12-31T23:59:59.999999999Z",
            "-262143-01-01T00:00:00Z",
            "9999-12-31T23:59:59Z",
            "0000-01-01T00:00:00Z",
            "1970-01-01T00:00:00Z",
            "1969-12-31T23:59:59.999999999Z",
            "2025-02-30T00:00:00Z",
            "2025-01-01T00:00:00.123456789+14:00",
            "2025-01-01T24:00:00Z",
            "2025-01-01T23:59:60Z",
            "2025-01-01 00:00:00Z",
            "2025-01-01T00:00:00-23:59",
        ]))),
        _ => {
            // Mostly a valid time (a day or two of them, so that deliveries overtake each
            // other), sometimes out of range anywhere.
            let wild = source.one_in(8);
            let (year, month, day, hour, minute, second) = if wild {
                let year = source.edgy_i64() % 1_000_000;
                (
                    year,
                    source.below(14),
                    source.below(33),
                    source.below(25),
                    source.below(61),
                    source.below(62),
                )
            } else {
                (
                    2025,
                    6,
                    1 + source.below(2),
                    source.below(24),
                    source.below(60),
                    source.below(60),
                )
            };
            let sign = if year < 0 {
                "-"
            } else if year > 9999 {
                "+"
            } else {
                ""
            };
            Some(string(&format!(
                "{sign}{:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.{}Z",
                year.unsigned_abs(),
                source.below(1_000_000_000)
            )))
        }
    };
    let action = match source.below(16) {
        13 => None,
        14 => Some(string(&source.text(8))),
        15 => Some(source.pick(&["null", "5", "[]", "{\"delete\":null}"]).to_string()),
        10..=12 => Some(string("delete")),
        _ => Some(string("upsert")),
    };
    let record = match source.below(16) {
        13 => None,
        14 => Some("null".to_owned()),
        15 => Some(json_value(source, 2)),
        11 | 12 => Some(record(source, record_id.as_deref())),
        _ => Some(complete_record(source, table.as_deref())),
    };
    for (name, value) in [
        ("table", table),
        ("record_id", record_id),
        ("timestamp", timestamp),
        ("action", action),
        ("record", record),
    ] {
        if let Some(value) = value {
            fields.push((string(name), value));
        }
    }
    if source.one_in(8) {
        fields.push((string(&source.text(8)), json_value(source, 1)));
    }
    if source.one_in(16) && !fields.is_empty() {
        // A field given twice.
        let twice = fields[source.below(fields.len())].clone();
        fields.push(twice);
    }
    if source.one_in(4) && fields.len() > 1 {
        let (a, b) = (source.below(fields.len()), source.below(fields.len()));
        fields.swap(a, b);
    }
    let space = *source.pick(&["", " ", "\n", "\t"]);
    let inner: Vec<String> = fields.into_iter().map(|(k, v)| format!("{k}:{space}{v}")).collect();
    format!("{{{space}{}{space}}}", inner.join(","))
}

/// A record with every field of the table's model, of the right type: most upserts that
/// carry one apply.
fn complete_record(source: &mut Source<'_>, table: Option<&str>) -> String {
    let text = string(&source.text(16));
    match table {
        Some("\"Events\"") => format!("{{\"name\":{text},\"slug\":{}}}", string(&source.text(8))),
        Some("\"Users\"") => format!("{{\"email\":{text}}}"),
        _ => format!(
            "{{\"name\":{text},\"event_id\":[{}],\"collaborators\":[{}],\"points\":{},\"version\":{}}}",
            string(source.pick::<&str>(&["recE1", "recE2", "recNope"])),
            string(&format!("recU{}", source.below(4))),
            source.edgy_i64(),
            source.edgy_i64()
        ),
    }
}

/// A record in the source's shape, with fields of the right type or not.
fn record(source: &mut Source<'_>, record_id: Option<&str>) -> String {
    let mut fields = Vec::new();
    if source.one_in(3) {
        let id = match (source.below(3), record_id) {
            (0, _) | (_, None) => json_value(source, 1),
            (_, Some(id)) => id.to_owned(),
        };
        fields.push(format!("\"id\":{id}"));
    }
    let link = |source: &mut Source<'_>| match source.below(6) {
        0 => json_value(source, 2),
        1 => string("recE1"),
        2 => format!("[{},{}]", string("recE1"), string("recE2")),
        3 => format!("[{}]", string(&source.text(10))),
        _ => format!("[{}]", string(source.pick::<&str>(&["recE1", "recE2", "recNope"]))),
    };
    let number = |source: &mut Source<'_>| match source.below(6) {
        0 => json_value(source, 1),
        1 => source.edgy_u64().to_string(),
        2 => source
            .pick(&["1e308", "-0", "1.5", "1e400", "-9223372036854775809", "12"])
            .to_string(),
        _ => source.edgy_i64().to_string(),
    };
    let text = |source: &mut Source<'_>| match source.below(4) {
        0 => json_value(source, 1),
        _ => string(&source.text(16)),
    };
    for _ in 0..source.below(8) {
        let field = match source.below(10) {
            0 => format!("\"name\":{}", text(source)),
            1 => format!("\"slug\":{}", text(source)),
            2 => format!("\"email\":{}", text(source)),
            3 | 4 => format!("\"event_id\":{}", link(source)),
            5 => format!("\"collaborators\":{}", json_value(source, 2)),
            6 | 7 => format!("\"points\":{}", number(source)),
            8 => format!("\"version\":{}", number(source)),
            _ => format!("{}:{}", string(&source.text(8)), json_value(source, 1)),
        };
        fields.push(field);
    }
    format!("{{{}}}", fields.join(","))
}

/// Any JSON value, at most `depth` levels deep.
fn json_value(source: &mut Source<'_>, depth: usize) -> String {
    match source.below(if depth == 0 { 6 } else { 8 }) {
        0 => "null".to_owned(),
        1 => source.pick(&["true", "false"]).to_string(),
        2 => source.edgy_i64().to_string(),
        3 => source.pick(&["0.0", "-0", "1e-7", "2.5e10", "1E2"]).to_string(),
        4 => string(&source.text(12)),
        5 => string(&format!("rec{}", source.plain(6))),
        6 => {
            let items: Vec<String> = (0..source.below(4)).map(|_| json_value(source, depth - 1)).collect();
            format!("[{}]", items.join(","))
        }
        _ => {
            let items: Vec<String> = (0..source.below(3))
                .map(|_| format!("{}:{}", string(&source.text(6)), json_value(source, depth - 1)))
                .collect();
            format!("{{{}}}", items.join(","))
        }
    }
}
