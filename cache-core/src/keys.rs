//! Safe key components, dependency tags, and the key patterns of [`Store::flush`](crate::store::Store::flush)
//! ([`glob_match`], [`validate_pattern`]), shared by every store and the admin router.
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

use crate::{RecordId, store::StoreError};

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

/// The value key holding the latest source time applied to a record (Unix microseconds):
/// `order:{entity}:{id}`.
pub fn order_key(entity: &str, id: &RecordId) -> String {
    format!("order:{entity}:{id}")
}

/// Whether `key` is a value key the cache keeps for itself (source order watermarks,
/// [`order_key`]; change feeds' positions and locks, `feed:…`): never read through a near
/// cache, so a store's reports of their changes concern no near entry.
pub fn is_bookkeeping_value_key(key: &str) -> bool {
    key.starts_with("order:") || key.starts_with("feed:")
}

/// The tag of a whole entity.
pub fn entity_tag(entity: &str) -> String {
    format!("{entity}?*")
}

/// Whether `key` matches the glob `pattern`, with the syntax of Redis `SCAN MATCH`: `*` (any
/// run of characters), `?` (one character), `[abc]`, `[^a]`, `[a-z]` (one character of a class)
/// and `\x` (the character `x`).
///
/// Linear in the key for a pattern without `*` and `O(key × pattern)` at worst: it keeps one
/// backtrack point (the last `*`) instead of trying every split of the key, so no pattern can
/// make it exponential.
///
/// ```
/// use cache_core::keys::glob_match;
/// assert!(glob_match("projects:*", "projects:r:recX"));
/// assert!(glob_match("v:\\*", "v:*"));
/// assert!(!glob_match("v:[^ab]*", "v:b-key"));
/// ```
pub fn glob_match(pattern: &str, key: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let key: Vec<char> = key.chars().collect();
    let (mut p, mut k) = (0, 0);
    // After a mismatch, the last `*` takes one more character of the key and matching resumes
    // after it: (the pattern after the star, where in the key the star's run ends).
    let mut star: Option<(usize, usize)> = None;
    while k < key.len() {
        if pattern.get(p) == Some(&'*') {
            p += 1;
            star = Some((p, k));
            continue;
        }
        if let Some((true, next)) = match_one(&pattern, p, key[k]) {
            p = next;
            k += 1;
            continue;
        }
        match star {
            Some((after, run_end)) => {
                p = after;
                k = run_end + 1;
                star = Some((after, k));
            }
            None => return false,
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

/// Matches one key character against the pattern element at `p` (anything but `*`); answers
/// whether it matched and where the next element starts, or `None` at the end of the pattern.
fn match_one(pattern: &[char], p: usize, c: char) -> Option<(bool, usize)> {
    Some(match *pattern.get(p)? {
        '?' => (true, p + 1),
        '[' => {
            let class = Class::parse(pattern, p + 1, c);
            (class.matched, class.next)
        }
        // A trailing `\` is a literal backslash, as in Redis.
        '\\' if p + 1 < pattern.len() => (pattern[p + 1] == c, p + 2),
        literal => (literal == c, p + 1),
    })
}

/// A character class, read the way Redis reads it.
struct Class {
    matched: bool,
    /// Where the pattern continues: after the `]`, or at the end of an unclosed class.
    next: usize,
    closed: bool,
}

impl Class {
    /// Reads the class whose body starts at `start` (after its `[`) and matches `c` against it.
    fn parse(pattern: &[char], start: usize, c: char) -> Self {
        let mut i = start;
        let negate = pattern.get(i) == Some(&'^');
        if negate {
            i += 1;
        }
        let mut matched = false;
        loop {
            match pattern.get(i) {
                None => {
                    return Self {
                        matched: matched != negate,
                        next: i,
                        closed: false,
                    };
                }
                Some(']') => break,
                Some('\\') if i + 1 < pattern.len() => {
                    matched |= pattern[i + 1] == c;
                    i += 2;
                }
                Some(&lo) if i + 2 < pattern.len() && pattern[i + 1] == '-' => {
                    let hi = pattern[i + 2];
                    let (lo, hi) = if lo <= hi { (lo, hi) } else { (hi, lo) };
                    matched |= (lo..=hi).contains(&c);
                    i += 3;
                }
                Some(&literal) => {
                    matched |= literal == c;
                    i += 1;
                }
            }
        }
        Self {
            matched: matched != negate,
            next: i + 1,
            closed: true,
        }
    }
}

/// Checks a key pattern for [`Store::flush`](crate::store::Store::flush): every store refuses the same
/// patterns, as [`Invalid`](crate::store::StoreError::Invalid). Refused: the empty pattern
/// (it matches nothing: flush everything with `None`), whitespace and control characters (no
/// key has them: [`encode_component`] encodes them), a `[` without its `]` or a `]` without
/// its `[`, and a trailing `\` (an escape of nothing).
///
/// ```
/// use cache_core::keys::validate_pattern;
/// assert!(validate_pattern("projects:r:*").is_ok());
/// assert!(validate_pattern("v:\\*").is_ok());
/// assert!(validate_pattern("projects:[ab").is_err());
/// ```
pub fn validate_pattern(pattern: &str) -> Result<(), StoreError> {
    let invalid = |why: String| Err(StoreError::Invalid(format!("flush pattern {pattern:?}: {why}")));
    if pattern.is_empty() {
        return invalid("an empty pattern matches nothing; flush everything with no pattern".to_owned());
    }
    if let Some(ch) = pattern.chars().find(|&ch| ch.is_whitespace() || ch.is_control()) {
        return invalid(format!("keys never contain {ch:?}"));
    }
    let chars: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '\\' if i + 1 == chars.len() => return invalid("a trailing `\\` escapes nothing".to_owned()),
            '\\' => i += 2,
            '[' => {
                let class = Class::parse(&chars, i + 1, '\0');
                if !class.closed {
                    return invalid("a `[` without its `]`".to_owned());
                }
                i = class.next;
            }
            ']' => return invalid("a `]` without its `[`".to_owned()),
            _ => i += 1,
        }
    }
    Ok(())
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

    #[test]
    fn glob() {
        let m = glob_match;
        assert!(m("*", "projects:r:recX"));
        assert!(m("projects:*", "projects:r:recX"));
        assert!(!m("projects:*", "users:r:recX"));
        assert!(m("projects:r:rec?", "projects:r:recX"));
        assert!(!m("projects:r:rec?", "projects:r:recXY"));
        assert!(m("*:tomb:*", "projects:tomb:rec1"));
        assert!(m("*r*c*X", "projects:r:recX"));
        assert!(!m("*r*c*Y", "projects:r:recX"));
        assert!(m("a**b", "ab"));
        assert!(m("*a", "aaa"));
        assert!(!m("*a?", "aab-"));
        assert!(m("v:[ab]*", "v:b-key"));
        assert!(!m("v:[^ab]*", "v:b-key"));
        assert!(m("v:[a-c]", "v:b"));
        assert!(m("v:[c-a]", "v:b"), "a reversed range, as in Redis");
        assert!(m("v:[\\]]", "v:]"));
        assert!(m("v:\\*", "v:*"));
        assert!(!m("v:\\*", "v:x"));
        assert!(m("v:\\", "v:\\"), "a trailing backslash is literal");
        assert!(m("é?", "éé"));
        assert!(m("", ""));
        assert!(!m("", "x"));
        assert!(!m("x", ""));
    }

    #[test]
    fn glob_never_backtracks_exponentially() {
        let pattern = format!("{}b", "*a".repeat(30));
        assert!(!glob_match(&pattern, &"a".repeat(2000)));
    }

    #[test]
    fn patterns() {
        for good in ["*", "projects:r:*", "v:[ab]*", "v:[^a-c]?", "v:\\*", "v:[\\]]", "a\\]"] {
            assert!(validate_pattern(good).is_ok(), "{good:?}");
        }
        for bad in ["", "a\\", "[a", "a]", "a b", "a\n", "a\u{7f}"] {
            assert!(matches!(validate_pattern(bad), Err(StoreError::Invalid(_))), "{bad:?}");
        }
    }
}
