//! Entity tags and `If-None-Match`.

use http::{HeaderMap, HeaderValue, header};
use xxhash_rust::xxh3::xxh3_64;

/// A strong entity tag for a body: its xxh3 hash, quoted.
pub(crate) fn etag_for(body: &[u8]) -> String {
    format!("\"{:016x}\"", xxh3_64(body))
}

/// Whether the request's `If-None-Match` matches `etag` (weak comparison, as RFC 9110 asks
/// for `If-None-Match`): a `304 Not Modified` is then the answer to a `GET` or `HEAD`.
pub(crate) fn if_none_match(headers: &HeaderMap, etag: &str) -> bool {
    let etag = opaque(etag);
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v: &HeaderValue| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|candidate| candidate == "*" || opaque(candidate) == etag)
}

fn opaque(tag: &str) -> &str {
    tag.strip_prefix("W/").unwrap_or(tag)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::IF_NONE_MATCH, value.parse().unwrap());
        h
    }

    #[test]
    fn etags_follow_the_body() {
        assert_eq!(etag_for(b"a"), etag_for(b"a"));
        assert_ne!(etag_for(b"a"), etag_for(b"b"));
        assert!(etag_for(b"a").starts_with('"') && etag_for(b"a").ends_with('"'));
    }

    #[test]
    fn if_none_match_lists_wildcards_and_weak_tags() {
        let tag = etag_for(b"body");
        assert!(if_none_match(&headers(&tag), &tag));
        assert!(if_none_match(&headers(&format!("\"x\", W/{tag}")), &tag));
        assert!(if_none_match(&headers("*"), &tag));
        assert!(!if_none_match(&headers("\"x\""), &tag));
        assert!(!if_none_match(&HeaderMap::new(), &tag));
    }
}
