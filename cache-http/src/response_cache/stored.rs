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

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use serde::{Deserialize, Serialize};

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

/// A response as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct StoredResponse {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) etag: String,
    /// The request headers named by the response's `Vary`, with the values the stored
    /// response was produced for.
    pub(crate) vary: Vec<(String, Vec<String>)>,
    #[serde(with = "body")]
    pub(crate) body: Bytes,
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
    /// cached answer adds (`Content-Length`, `X-Cache-*`, the telemetry layer's).
    pub(crate) fn header_map(&self) -> HeaderMap {
        let mut headers = HeaderMap::with_capacity(self.headers.len() + 8);
        for (name, value) in &self.headers {
            if let (Ok(name), Ok(value)) = (HeaderName::try_from(name.as_str()), HeaderValue::from_str(value)) {
                headers.append(name, value);
            }
        }
        if let Ok(etag) = HeaderValue::from_str(&self.etag) {
            headers.insert(header::ETAG, etag);
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
        StoredResponse {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            etag: "\"abc\"".into(),
            vary: vec![("accept-language".into(), vec!["fr".into()])],
            body: Bytes::from_static(body),
        }
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
