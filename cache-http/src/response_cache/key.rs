//! Response cache keys: `{prefix}{resource}:{id}:{sub}:params_{hash}:{version}`.
//!
//! The readable parts (resource, id, sub) let people find and flush entries by pattern
//! (`http:events:recE1:*`). The hash covers the full path as well as the query string (its
//! parameters sorted by name) and the declared `Vary` headers, so that two URLs never share an
//! entry even when a route's readable parts are configured alike.

use std::{borrow::Cow, fmt::Write as _};

use cache_core::keys::encode_component;
use http::{HeaderMap, HeaderName};
use xxhash_rust::xxh3::Xxh3;

/// The query string with its parameters sorted by name, empty parameters dropped:
/// `b=2&a=1&a=0` becomes `a=1&a=0&b=2`. The values of a repeated parameter keep their order,
/// since applications read them in order (`?sort=points&sort=name` sorts by points first).
///
/// ```
/// use cache_http::response_cache::canonical_query;
///
/// assert_eq!(canonical_query("b=2&a=1&&a=0"), "a=1&a=0&b=2");
/// assert_ne!(canonical_query("sort=points&sort=name"), canonical_query("sort=name&sort=points"));
/// ```
pub fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(&str, &str)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
        .collect();
    // Stable, by name only: repeated parameters keep their order.
    pairs.sort_by(|a, b| a.0.cmp(b.0));
    let mut out = String::with_capacity(query.len());
    for (i, (name, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(name);
        out.push('=');
        out.push_str(value);
    }
    out
}

/// The parts of one request that make its key.
pub(crate) struct KeyInput<'a> {
    pub(crate) prefix: &'a str,
    pub(crate) resource: &'a str,
    pub(crate) id: &'a str,
    pub(crate) sub: &'a str,
    pub(crate) version: &'a str,
    pub(crate) path: &'a str,
    pub(crate) query: Option<&'a str>,
    pub(crate) vary: &'a [HeaderName],
    pub(crate) headers: &'a HeaderMap,
}

impl KeyInput<'_> {
    pub(crate) fn key(&self) -> String {
        let mut hasher = Xxh3::new();
        // Each part is followed by a byte that cannot occur in it, so parts cannot run into
        // each other.
        hasher.update(self.path.as_bytes());
        hasher.update(b"\n");
        if let Some(query) = self.query.filter(|q| !q.is_empty()) {
            hasher.update(canonical_query(query).as_bytes());
        }
        hasher.update(b"\n");
        for name in self.vary {
            hasher.update(name.as_str().as_bytes());
            hasher.update(b":");
            for value in self.headers.get_all(name) {
                hasher.update(value.as_bytes());
                hasher.update(b"\x00");
            }
            hasher.update(b"\n");
        }
        let (resource, id, sub, version) = (part(self.resource), part(self.id), part(self.sub), part(self.version));
        let len = self.prefix.len() + resource.len() + id.len() + sub.len() + version.len();
        let mut key = String::with_capacity(len + ":::params_:".len() + 16);
        for piece in [self.prefix, &resource, ":", &id, ":", &sub, ":params_"] {
            key.push_str(piece);
        }
        // Writing to a String cannot fail.
        let _ = write!(key, "{:016x}", hasher.digest());
        key.push(':');
        key.push_str(&version);
        key
    }
}

fn part(value: &str) -> Cow<'_, str> {
    if value.is_empty() {
        "_".into()
    } else {
        encode_component(value)
    }
}

/// The readable parts of a request's key taken from its path, for what the route did not
/// configure: `/events/recE1/projects` gives `events`, `recE1`, `projects`.
///
/// With a route's path parameters (the layer is on a route), the id is their values joined
/// by `,` and the sub-resource is the literal segments of the matched route after the first;
/// without them (the layer is on a router), the id is the second segment and the
/// sub-resource the ones after it. Borrowed from the path where a part is one piece of it
/// (the common case: a hit builds no string but its key).
pub(crate) fn default_parts<'a>(
    path: &'a str,
    matched: Option<&'a str>,
    params: &[&'a str],
) -> (&'a str, Cow<'a, str>, Cow<'a, str>) {
    let mut segments = path.split('/').filter(|s| !s.is_empty());
    let resource = segments.next().unwrap_or("");
    match matched {
        Some(matched) if !params.is_empty() => {
            let literals = matched
                .split('/')
                .filter(|s| !s.is_empty() && !s.starts_with('{'))
                .skip(1);
            (resource, joined(params.iter().copied(), ","), joined(literals, "."))
        }
        _ => {
            let id = segments.next().unwrap_or("");
            (resource, Cow::Borrowed(id), joined(segments, "."))
        }
    }
}

/// `pieces` joined by `separator`: borrowed when there is at most one.
fn joined<'a>(mut pieces: impl Iterator<Item = &'a str>, separator: &str) -> Cow<'a, str> {
    let Some(first) = pieces.next() else {
        return Cow::Borrowed("");
    };
    let Some(second) = pieces.next() else {
        return Cow::Borrowed(first);
    };
    let mut out = String::with_capacity(first.len() + second.len() + 2 * separator.len());
    for piece in [first, separator, second] {
        out.push_str(piece);
    }
    for piece in pieces {
        out.push_str(separator);
        out.push_str(piece);
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(path: &str, query: Option<&str>) -> String {
        KeyInput {
            prefix: "http:",
            resource: "events",
            id: "recE1",
            sub: "projects",
            version: "v1",
            path,
            query,
            vary: &[],
            headers: &HeaderMap::new(),
        }
        .key()
    }

    #[test]
    fn query_order_does_not_matter() {
        assert_eq!(key("/e", Some("a=1&b=2")), key("/e", Some("b=2&a=1")));
        assert_ne!(key("/e", Some("a=1&b=2")), key("/e", Some("a=2&b=1")));
        assert_eq!(key("/e", None), key("/e", Some("")));
        assert_ne!(key("/e", None), key("/f", None), "the path is in the hash");
    }

    #[test]
    fn repeated_parameters_keep_their_order() {
        assert_ne!(
            key("/e", Some("sort=points&sort=name")),
            key("/e", Some("sort=name&sort=points"))
        );
        assert_eq!(
            key("/e", Some("sort=points&page=2&sort=name")),
            key("/e", Some("page=2&sort=points&sort=name")),
            "other parameters still move freely"
        );
        assert_eq!(canonical_query("b=2&a=1&&a=0"), "a=1&a=0&b=2");
    }

    #[test]
    fn key_layout() {
        let k = key("/events/recE1/projects", Some("sort=points"));
        assert!(k.starts_with("http:events:recE1:projects:params_"), "{k}");
        assert!(k.ends_with(":v1"), "{k}");
        assert_eq!(k.len(), "http:events:recE1:projects:params_".len() + 16 + ":v1".len());
    }

    #[test]
    fn vary_headers_are_in_the_key() {
        let vary = [HeaderName::from_static("accept-language")];
        let mut fr = HeaderMap::new();
        fr.insert("accept-language", "fr".parse().unwrap());
        let mut en = HeaderMap::new();
        en.insert("accept-language", "en".parse().unwrap());
        let with = |headers: &HeaderMap| {
            KeyInput {
                prefix: "",
                resource: "r",
                id: "",
                sub: "",
                version: "v1",
                path: "/r",
                query: None,
                vary: &vary,
                headers,
            }
            .key()
        };
        assert_ne!(with(&fr), with(&en));
        assert!(with(&fr).starts_with("r:_:_:params_"));
    }

    #[test]
    fn default_parts_from_the_route_or_the_path() {
        assert_eq!(
            default_parts("/events/recE1/projects", Some("/events/{id}/projects"), &["recE1"]),
            ("events", "recE1".into(), "projects".into())
        );
        assert_eq!(
            default_parts("/a/x/b/y/c", Some("/a/{x}/b/{y}/c"), &["x", "y"]),
            ("a", "x,y".into(), "b.c".into())
        );
        assert_eq!(
            default_parts("/events/recE1/projects/top", None, &[]),
            ("events", "recE1".into(), "projects.top".into())
        );
        assert_eq!(default_parts("/", None, &[]), ("", "".into(), "".into()));
    }

    #[test]
    fn components_cannot_inject_separators() {
        let k = KeyInput {
            prefix: "http:",
            resource: "a:b",
            id: "*",
            sub: "",
            version: "v1",
            path: "/",
            query: None,
            vary: &[],
            headers: &HeaderMap::new(),
        }
        .key();
        assert!(k.starts_with("http:a%3Ab:%2A:_:params_"), "{k}");
    }
}
