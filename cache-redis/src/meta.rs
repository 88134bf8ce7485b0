//! A record's *meta*: its index entries and version, as the scripts store them in the bucket's
//! meta hash so that a later write can take the record out of its old entries atomically.
//!
//! JSON, read by the scripts with `cjson`: `{"v":"3","t":[["event","recE1"]],"s":[["points","12.5"]]}`.
//! Tag fields and values are key-encoded ([`encode_component`]) so that a script can build the
//! set's key from them; scores and the version are strings because JSON has no infinities and
//! `ZADD` takes `-inf` as it is. The hash's field `""` is no record's: it holds the hash's
//! incarnation, by which the scripts notice an evicted hash (see [`crate::KeyLayout`]).

use std::borrow::Cow;

use cache_core::{keys::encode_component, schema::IndexEntries};
use serde::{Deserialize, Serialize};

#[derive(Serialize)]
struct MetaOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    v: Option<String>,
    t: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    s: Vec<(Cow<'a, str>, String)>,
}

#[derive(Deserialize)]
struct MetaIn {
    t: Vec<(String, String)>,
    s: Vec<(String, String)>,
}

/// A score as `ZADD` takes it. NaN has no place in an order: it is stored as absent (`-inf`).
pub(crate) fn score_arg(score: f64) -> String {
    if score.is_nan() || score == f64::NEG_INFINITY {
        "-inf".to_owned()
    } else if score == f64::INFINITY {
        "inf".to_owned()
    } else {
        // `Display` never uses an exponent and round-trips exactly; Redis parses it with strtod.
        score.to_string()
    }
}

/// The version as the scripts compare it (`''` when there is none or it is not a number).
pub(crate) fn version_arg(version: Option<f64>) -> String {
    match version {
        Some(v) if v.is_finite() => v.to_string(),
        _ => String::new(),
    }
}

/// Encodes a record's meta.
pub(crate) fn encode(index: &IndexEntries, version: Option<f64>) -> String {
    let meta = MetaOut {
        v: Some(version_arg(version)).filter(|v| !v.is_empty()),
        t: index
            .tags
            .iter()
            .map(|(f, v)| (encode_component(f), encode_component(v)))
            .collect(),
        s: index
            .scores
            .iter()
            .map(|(f, s)| (encode_component(f), score_arg(*s)))
            .collect(),
    };
    serde_json::to_string(&meta).unwrap_or_else(|_| unreachable!("strings always serialise"))
}

/// Decodes a meta the scripts handed back into the index entries it was written from.
pub(crate) fn decode(meta: &[u8]) -> Result<IndexEntries, String> {
    let meta: MetaIn = serde_json::from_slice(meta).map_err(|e| format!("unreadable record meta: {e}"))?;
    let tags = meta
        .t
        .into_iter()
        .map(|(f, v)| Ok((percent_decode(&f)?, percent_decode(&v)?)))
        .collect::<Result<_, String>>()?;
    let scores = meta
        .s
        .into_iter()
        .map(|(f, s)| {
            let score = s
                .parse::<f64>()
                .map_err(|_| format!("unreadable score {s:?} in record meta"))?;
            Ok((percent_decode(&f)?, score))
        })
        .collect::<Result<_, String>>()?;
    Ok(IndexEntries { tags, scores })
}

/// Reverses [`encode_component`].
fn percent_decode(text: &str) -> Result<String, String> {
    if !text.contains('%') {
        return Ok(text.to_owned());
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let byte = text
                .get(i + 1..i + 3)
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                .ok_or_else(|| format!("bad escape in {text:?}"))?;
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("escape in {text:?} is not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_entries() {
        let entries = IndexEntries {
            tags: vec![
                ("event".into(), "recE1".into()),
                ("email".into(), "a:b *% é\u{a0}x".into()),
            ],
            scores: vec![
                ("points".into(), 12.5),
                ("due".into(), f64::NEG_INFINITY),
                ("big".into(), 1e300),
                ("tiny".into(), -1.25e-10),
            ],
        };
        let meta = encode(&entries, Some(3.0));
        assert!(meta.starts_with(r#"{"v":"3","t":[["event","recE1"]"#), "{meta}");
        assert_eq!(decode(meta.as_bytes()).unwrap(), entries);
        assert!(!encode(&entries, None).contains("\"v\""));
    }

    #[test]
    fn scores_are_what_zadd_takes() {
        assert_eq!(score_arg(f64::NAN), "-inf");
        assert_eq!(score_arg(f64::INFINITY), "inf");
        assert_eq!(score_arg(1_700_000_000_000.0), "1700000000000");
        assert_eq!(version_arg(Some(f64::NAN)), "");
    }
}
