//! The stored form of a cached response: `MCR1`, the length of a JSON header (status, the
//! headers worth keeping, when it was stored, its TTL, its entity tag, the request headers it
//! varied on), that header, then the body as it is.

use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use serde::{Deserialize, Serialize};

const MAGIC: &[u8; 4] = b"MCR1";

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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Meta {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    /// Milliseconds since the Unix epoch.
    pub(crate) stored_at_ms: u64,
    pub(crate) ttl_secs: u64,
    pub(crate) etag: String,
    /// The request headers named by the response's `Vary`, with the values the stored
    /// response was produced for.
    pub(crate) vary: Vec<(String, Vec<String>)>,
    /// The dependency tags the response was stored under.
    pub(crate) tags: Vec<String>,
}

/// A response as stored.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Envelope {
    pub(crate) meta: Meta,
    pub(crate) body: Bytes,
}

impl Envelope {
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
        self.meta.vary.iter().all(|(name, stored)| {
            let current = request
                .get_all(name.as_str())
                .iter()
                .map(|v| String::from_utf8_lossy(v.as_bytes()));
            current.eq(stored.iter().map(|s| std::borrow::Cow::Borrowed(s.as_str())))
        })
    }

    pub(crate) fn encode(&self) -> Result<Bytes, serde_json::Error> {
        let meta = serde_json::to_vec(&self.meta)?;
        let mut out = BytesMut::with_capacity(MAGIC.len() + 4 + meta.len() + self.body.len());
        out.put_slice(MAGIC);
        // A header over 4 GiB is impossible (headers are bounded by the server); saturate
        // rather than wrap so that decoding fails cleanly if it ever happens.
        out.put_u32(u32::try_from(meta.len()).unwrap_or(u32::MAX));
        out.put_slice(&meta);
        out.put_slice(&self.body);
        Ok(out.freeze())
    }

    /// Reads a stored response; `None` when the bytes are not one (another version wrote
    /// them, or they are damaged): the caller treats that as a miss.
    pub(crate) fn decode(bytes: &Bytes) -> Option<Self> {
        let rest = bytes.strip_prefix(MAGIC.as_slice())?;
        let (len, rest) = rest.split_first_chunk::<4>()?;
        let len = usize::try_from(u32::from_be_bytes(*len)).ok()?;
        let meta_bytes = rest.get(..len)?;
        let meta: Meta = serde_json::from_slice(meta_bytes).ok()?;
        StatusCode::from_u16(meta.status).ok()?;
        let start = MAGIC.len() + 4 + len;
        Some(Self {
            meta,
            body: bytes.slice(start..),
        })
    }

    /// The stored status, headers and entity tag as an HTTP header map.
    pub(crate) fn header_map(&self) -> HeaderMap {
        let mut headers = HeaderMap::with_capacity(self.meta.headers.len() + 1);
        for (name, value) in &self.meta.headers {
            if let (Ok(name), Ok(value)) = (HeaderName::try_from(name.as_str()), HeaderValue::from_str(value)) {
                headers.append(name, value);
            }
        }
        if let Ok(etag) = HeaderValue::from_str(&self.meta.etag) {
            headers.insert(header::ETAG, etag);
        }
        headers
    }

    /// Whole seconds since the response was stored, at `now_ms`.
    pub(crate) fn age_secs(&self, now_ms: u64) -> u64 {
        now_ms.saturating_sub(self.meta.stored_at_ms) / 1000
    }

    pub(crate) fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.meta.status).unwrap_or(StatusCode::OK)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope() -> Envelope {
        Envelope {
            meta: Meta {
                status: 200,
                headers: vec![("content-type".into(), "application/json".into())],
                stored_at_ms: 1_700_000_000_000,
                ttl_secs: 60,
                etag: "\"abc\"".into(),
                vary: vec![("accept-language".into(), vec!["fr".into()])],
                tags: vec!["projects:recP1".into()],
            },
            body: Bytes::from_static(b"{\"a\":1}"),
        }
    }

    #[test]
    fn round_trips() {
        let e = envelope();
        assert_eq!(Envelope::decode(&e.encode().unwrap()), Some(e));
    }

    #[test]
    fn garbage_is_a_miss() {
        assert_eq!(Envelope::decode(&Bytes::from_static(b"not an envelope")), None);
        let mut bytes = envelope().encode().unwrap().to_vec();
        bytes.truncate(12);
        assert_eq!(Envelope::decode(&Bytes::from(bytes)), None);
    }

    #[test]
    fn keeps_useful_headers_only() {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, "text/plain".parse().unwrap());
        h.insert(header::CONTENT_LENGTH, "3".parse().unwrap());
        h.insert("x-request-id", "1".parse().unwrap());
        let kept = Envelope::keep_headers(&h, &[HeaderName::from_static("x-request-id")]).unwrap();
        assert_eq!(kept, vec![("content-type".to_owned(), "text/plain".to_owned())]);
    }

    #[test]
    fn vary_values_must_match() {
        let e = envelope();
        let mut fr = HeaderMap::new();
        fr.insert("accept-language", "fr".parse().unwrap());
        assert!(e.matches_vary(&fr));
        let mut en = HeaderMap::new();
        en.insert("accept-language", "en".parse().unwrap());
        assert!(!e.matches_vary(&en));
        assert!(!e.matches_vary(&HeaderMap::new()));
    }
}
