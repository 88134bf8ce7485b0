//! A response as stored: the value inside cache-core's computed-value envelope, which adds
//! when it was computed, when it expires and the tags it depends on. JSON, like every
//! computed value (`redis-cli GET` shows it):
//!
//! ```json
//! {"value":{"status":200,"headers":[["content-type","application/json"]],"etag":"\"9f1c0e2a7b3d4c55\"",
//!   "vary":[],"body":{"text":"[{\"id\":\"recP1\"}]"}},
//!  "computed_at_ms":1700000000000,"expires_at_ms":1700000060000,"delta_ms":3,"tags":["projects?event=recE1"]}
//! ```
//!
//! The body is kept as text when it is UTF-8 (`{"text": ...}`), as base64 otherwise
//! (`{"base64": ...}`).

use std::{
    ops::Deref,
    sync::{Arc, OnceLock},
};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Headers never stored: hop-by-hop ones, ones recomputed when serving, and cookies.
const DROPPED: &[HeaderName] = &[
    header::CONNECTION,
    header::TRANSFER_ENCODING,
    header::TE,
    header::TRAILER,
    header::UPGRADE,
    header::PROXY_AUTHENTICATE,
    header::CONTENT_LENGTH,
    header::DATE,
    header::AGE,
    header::SET_COOKIE,
];

/// A response as stored. A clone shares it (the near cache hands one to every hit); the
/// headers are checked and converted once, at the first answer, not at every hit.
#[derive(Debug, Clone)]
pub(crate) struct StoredResponse(Arc<Stored>);

/// What [`StoredResponse`] holds: the stored fields, and their headers as HTTP values once
/// prepared.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Stored {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) etag: String,
    /// The request headers named by the response's `Vary`, with the values the stored
    /// response was produced for.
    pub(crate) vary: Vec<(String, Vec<String>)>,
    #[serde(with = "body")]
    pub(crate) body: Bytes,
    /// `headers` and `etag` as HTTP header values, the ones that are valid (`header_map`).
    #[serde(skip)]
    prepared: OnceLock<Vec<(HeaderName, HeaderValue)>>,
}

impl StoredResponse {
    /// A response to store.
    pub(crate) fn new(
        status: u16,
        headers: Vec<(String, String)>,
        etag: String,
        vary: Vec<(String, Vec<String>)>,
        body: Bytes,
    ) -> Self {
        Self(Arc::new(Stored {
            status,
            headers,
            etag,
            vary,
            body,
            prepared: OnceLock::new(),
        }))
    }
}

impl Deref for StoredResponse {
    type Target = Stored;

    fn deref(&self) -> &Stored {
        &self.0
    }
}

/// Equal when what is stored is equal, prepared or not.
impl PartialEq for StoredResponse {
    fn eq(&self, other: &Self) -> bool {
        let (a, b) = (&*self.0, &*other.0);
        (a.status, &a.headers, &a.etag, &a.vary, &a.body) == (b.status, &b.headers, &b.etag, &b.vary, &b.body)
    }
}

impl Serialize for StoredResponse {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for StoredResponse {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Stored::deserialize(deserializer).map(|stored| Self(Arc::new(stored)))
    }
}

impl StoredResponse {
    /// The headers of `response` worth keeping; `None` when one cannot be stored as text
    /// (then the response is not cached).
    pub(crate) fn keep_headers(headers: &HeaderMap, skip: &[HeaderName]) -> Option<Vec<(String, String)>> {
        let mut kept = Vec::with_capacity(headers.len());
        for (name, value) in headers {
            if DROPPED.contains(name) || skip.contains(name) {
                continue;
            }
            kept.push((name.as_str().to_owned(), value.to_str().ok()?.to_owned()));
        }
        Some(kept)
    }

    /// The values of the request headers named in `names`, to store with the response.
    pub(crate) fn vary_values(request: &HeaderMap, names: &[HeaderName]) -> Vec<(String, Vec<String>)> {
        names
            .iter()
            .map(|name| {
                let values = request
                    .get_all(name)
                    .iter()
                    .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                    .collect();
                (name.as_str().to_owned(), values)
            })
            .collect()
    }

    /// Whether the stored response was produced for the same values of the headers it varies
    /// on as `request` has.
    pub(crate) fn matches_vary(&self, request: &HeaderMap) -> bool {
        self.vary.iter().all(|(name, stored)| {
            let current = request
                .get_all(name.as_str())
                .iter()
                .map(|v| String::from_utf8_lossy(v.as_bytes()));
            current.eq(stored.iter().map(|s| std::borrow::Cow::Borrowed(s.as_str())))
        })
    }

    /// The stored headers and entity tag as an HTTP header map, with room for the headers a
    /// cached answer adds (`Content-Length`, `X-Cache-*`, the telemetry layer's). A stored
    /// header that is not a valid one is left out.
    pub(crate) fn header_map(&self) -> HeaderMap {
        let prepared = self.0.prepared.get_or_init(|| {
            let mut valid = Vec::with_capacity(self.headers.len() + 1);
            for (name, value) in &self.headers {
                if let (Ok(name), Ok(value)) = (HeaderName::try_from(name.as_str()), HeaderValue::from_str(value))
                    && name != header::ETAG
                {
                    valid.push((name, value));
                }
            }
            if let Ok(etag) = HeaderValue::from_str(&self.etag) {
                valid.push((header::ETAG, etag));
            }
            valid
        });
        let mut headers = HeaderMap::with_capacity(prepared.len() + 8);
        for (name, value) in prepared {
            headers.append(name.clone(), value.clone());
        }
        headers
    }

    pub(crate) fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::OK)
    }
}

/// The body as text when it is UTF-8, as base64 otherwise.
mod body {
    use base64::{Engine as _, engine::general_purpose::STANDARD};
    use bytes::Bytes;
    use serde::{Deserialize, Deserializer, Serialize, Serializer, de::Error as _};

    #[derive(Serialize)]
    #[serde(rename_all = "snake_case")]
    enum Out<'a> {
        Text(&'a str),
        Base64(String),
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "snake_case")]
    enum In {
        Text(String),
        Base64(String),
    }

    pub(super) fn serialize<S: Serializer>(body: &Bytes, serializer: S) -> Result<S::Ok, S::Error> {
        match std::str::from_utf8(body) {
            Ok(text) => Out::Text(text),
            Err(_) => Out::Base64(STANDARD.encode(body)),
        }
        .serialize(serializer)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Bytes, D::Error> {
        match In::deserialize(deserializer)? {
            In::Text(text) => Ok(Bytes::from(text)),
            In::Base64(encoded) => STANDARD.decode(encoded).map(Bytes::from).map_err(D::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(body: &'static [u8]) -> StoredResponse {
        StoredResponse::new(
            200,
            vec![("content-type".into(), "application/json".into())],
            "\"abc\"".into(),
            vec![("accept-language".into(), vec!["fr".into()])],
            Bytes::from_static(body),
        )
    }

    #[test]
    fn round_trips_text_and_binary_bodies() {
        for (body, form) in [(&b"{\"a\":1}"[..], "\"text\""), (&[0xff, 0x00, 0x80][..], "\"base64\"")] {
            let s = stored(body);
            let json = serde_json::to_string(&s).unwrap();
            assert!(json.contains(form), "{json}");
            assert_eq!(serde_json::from_str::<StoredResponse>(&json).unwrap(), s);
        }
    }

    #[test]
    fn damaged_bodies_do_not_decode() {
        let json = r#"{"status":200,"headers":[],"etag":"","vary":[],"body":{"base64":"%%%"}}"#;
        assert!(serde_json::from_str::<StoredResponse>(json).is_err());
    }

    #[test]
    fn keeps_useful_headers_only() {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, "text/plain".parse().unwrap());
        h.insert(header::CONTENT_LENGTH, "3".parse().unwrap());
        h.insert("x-request-id", "1".parse().unwrap());
        let kept = StoredResponse::keep_headers(&h, &[HeaderName::from_static("x-request-id")]).unwrap();
        assert_eq!(kept, vec![("content-type".to_owned(), "text/plain".to_owned())]);
    }

    #[test]
    fn the_header_map_has_the_valid_headers_and_the_entity_tag_once() {
        let s = StoredResponse::new(
            200,
            vec![
                ("content-type".into(), "application/json".into()),
                ("etag".into(), "\"stale\"".into()),
                ("bad name".into(), "x".into()),
                ("x-bad-value".into(), "a\nb".into()),
            ],
            "\"abc\"".into(),
            Vec::new(),
            Bytes::new(),
        );
        // The first answer prepares the headers, a later one (from a clone) reuses them.
        for answer in [s.header_map(), s.clone().header_map()] {
            assert_eq!(answer.len(), 2, "{answer:?}");
            assert_eq!(answer[header::CONTENT_TYPE], "application/json");
            assert_eq!(answer.get_all(header::ETAG).iter().collect::<Vec<_>>(), ["\"abc\""]);
            assert!(answer.capacity() >= 2 + 8, "room for the headers a hit adds");
        }
    }

    #[test]
    fn vary_values_must_match() {
        let s = stored(b"");
        let mut fr = HeaderMap::new();
        fr.insert("accept-language", "fr".parse().unwrap());
        assert!(s.matches_vary(&fr));
        let mut en = HeaderMap::new();
        en.insert("accept-language", "en".parse().unwrap());
        assert!(!s.matches_vary(&en));
        assert!(!s.matches_vary(&HeaderMap::new()));
    }
}
