//! Safe key components and dependency tags.
//!
//! Tags name what a cached value depended on, so that a write can purge it:
//! - a record: `projects:recP1` ([`record_tag`]);
//! - an index value: `projects?event=recE1` ([`index_tag`]), emitted for every value a written
//!   record enters or leaves, and read by every query filtering on it;
//! - a whole entity: `projects?*` ([`entity_tag`]), read by unfiltered queries and emitted by
//!   every write.
//!
//! Record ids cannot contain `?`, so the three forms never collide.

use std::borrow::Cow;

use crate::RecordId;

/// Percent-encodes the characters that would break a key, a key pattern or a tag (`%`, `:`,
/// `*`, `?`, `[`, `]`, `{`, `}`, `\`, `&`, `=`, whitespace and control characters). Other text
/// is kept as it is, so keys stay readable.
///
/// ```
/// assert_eq!(cache_core::keys::encode_component("ada@example.com"), "ada@example.com");
/// assert_eq!(cache_core::keys::encode_component("a:b *"), "a%3Ab%20%2A");
/// ```
pub fn encode_component(value: &str) -> Cow<'_, str> {
    fn needs(ch: char) -> bool {
        matches!(ch, '%' | ':' | '*' | '?' | '[' | ']' | '{' | '}' | '\\' | '&' | '=')
            || ch.is_whitespace()
            || ch.is_control()
    }
    if !value.chars().any(needs) {
        return Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len() + 8);
    for ch in value.chars() {
        if needs(ch) {
            let mut buf = [0u8; 4];
            for b in ch.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        } else {
            out.push(ch);
        }
    }
    Cow::Owned(out)
}

/// The tag of one record.
pub fn record_tag(entity: &str, id: &RecordId) -> String {
    format!("{entity}:{id}")
}

/// The tag of one value of one indexed field.
pub fn index_tag(entity: &str, field: &str, value: &str) -> String {
    format!("{entity}?{field}={}", encode_component(value))
}

/// The tag of a whole entity.
pub fn entity_tag(entity: &str) -> String {
    format!("{entity}?*")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_is_injective_on_special_characters() {
        assert_eq!(encode_component("100%"), "100%25");
        assert_ne!(encode_component("a%3Ab"), encode_component("a:b"));
        assert_eq!(encode_component("é"), "é");
        assert_eq!(encode_component("\n"), "%0A");
    }

    #[test]
    fn tags() {
        let id = RecordId::new("recP1").unwrap();
        assert_eq!(record_tag("projects", &id), "projects:recP1");
        assert_eq!(index_tag("users", "email", "a b"), "users?email=a%20b");
        assert_eq!(entity_tag("projects"), "projects?*");
    }
}
