//! Small reference implementations the targets compare the library with. Each is written for
//! being obviously right, not fast: the glob matcher is the textbook recursion (memoised, so
//! that no pattern makes it exponential), straight from the rules Redis documents for `KEYS`
//! and `SCAN MATCH`.

use std::collections::HashMap;

/// The characters a record id never contains besides whitespace and control characters.
pub const ID_FORBIDDEN: &str = ":*?[]{}\\";

/// The characters an encoded key component never contains raw besides whitespace and control
/// characters (`%` appears only as the start of a `%XX` escape).
pub const COMPONENT_FORBIDDEN: &str = ":*?[]{}\\&=";

/// Whether `id` is a valid record id: non-empty, at most 256 bytes, no whitespace, no control
/// character and none of [`ID_FORBIDDEN`].
///
/// ```
/// use model_cache_fuzz::reference::is_valid_id;
/// assert!(is_valid_id("recA1"));
/// assert!(!is_valid_id("a b") && !is_valid_id("") && !is_valid_id("a:b"));
/// ```
pub fn is_valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 256
        && id
            .chars()
            .all(|c| !c.is_whitespace() && !c.is_control() && !ID_FORBIDDEN.contains(c))
}

/// Whether `component` could be a key component as encoded: no raw [`COMPONENT_FORBIDDEN`],
/// whitespace or control character, and every `%` starts a `%XX` escape.
pub fn is_encoded_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    component.char_indices().all(|(at, c)| match c {
        '%' => bytes
            .get(at + 1..at + 3)
            .is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit)),
        c => !c.is_whitespace() && !c.is_control() && !COMPONENT_FORBIDDEN.contains(c),
    })
}

/// Decodes every `%XX` escape of `text`; `None` when an escape is malformed or the bytes are
/// not UTF-8.
///
/// ```
/// use model_cache_fuzz::reference::percent_decode;
/// assert_eq!(percent_decode("a%3Ab%20").as_deref(), Some("a:b "));
/// assert_eq!(percent_decode("%zz"), None);
/// ```
pub fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Percent-encodes every byte of `text` but ASCII letters and digits: a query value any URL
/// parser reads back as `text`.
pub fn percent_encode_all(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// One element of a glob pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Element {
    /// `*`: any run of characters.
    Star,
    /// `?`: any one character.
    Any,
    /// A literal character (escaped or not).
    Literal(char),
    /// `[...]`: one character of the class, or not of it (`[^...]`). Ranges are kept ordered.
    Class {
        negated: bool,
        singles: Vec<char>,
        ranges: Vec<(char, char)>,
        closed: bool,
    },
}

impl Element {
    fn matches(&self, c: char) -> bool {
        match self {
            Element::Star | Element::Any => true,
            Element::Literal(l) => *l == c,
            Element::Class {
                negated,
                singles,
                ranges,
                ..
            } => (singles.contains(&c) || ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi)) != *negated,
        }
    }
}

/// Reads a pattern into elements, as Redis reads it: `\x` is `x`, a trailing `\` is itself,
/// in a class `\x` is `x`, `a-z` a range (either way round) when three characters are left,
/// and a class runs to the end of the pattern when its `]` is missing.
fn parse(pattern: &[char]) -> Vec<Element> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < pattern.len() {
        match pattern[i] {
            '*' => {
                out.push(Element::Star);
                i += 1;
            }
            '?' => {
                out.push(Element::Any);
                i += 1;
            }
            '\\' if i + 1 < pattern.len() => {
                out.push(Element::Literal(pattern[i + 1]));
                i += 2;
            }
            '[' => {
                i += 1;
                let negated = pattern.get(i) == Some(&'^');
                if negated {
                    i += 1;
                }
                let (mut singles, mut ranges, mut closed) = (Vec::new(), Vec::new(), false);
                while i < pattern.len() {
                    let rest = &pattern[i..];
                    match rest {
                        ['\\', x, ..] => {
                            singles.push(*x);
                            i += 2;
                        }
                        [']', ..] => {
                            closed = true;
                            i += 1;
                            break;
                        }
                        [a, '-', b, ..] => {
                            ranges.push((*a.min(b), *a.max(b)));
                            i += 3;
                        }
                        [x, ..] => {
                            singles.push(*x);
                            i += 1;
                        }
                        [] => unreachable!("the loop stops at the end"),
                    }
                }
                out.push(Element::Class {
                    negated,
                    singles,
                    ranges,
                    closed,
                });
            }
            c => {
                out.push(Element::Literal(c));
                i += 1;
            }
        }
    }
    out
}

/// Whether `key` matches the glob `pattern` (`*`, `?`, `[abc]`, `[^a]`, `[a-z]`, `\x`),
/// character by character.
///
/// ```
/// use model_cache_fuzz::reference::glob_match;
/// assert!(glob_match("projects:*", "projects:r:recX"));
/// assert!(glob_match("v:[c-a]", "v:b"));
/// assert!(!glob_match("v:[^ab]*", "v:b-key"));
/// ```
pub fn glob_match(pattern: &str, key: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let elements = parse(&pattern);
    let key: Vec<char> = key.chars().collect();
    let mut memo = HashMap::new();
    matches_from(&elements, &key, 0, 0, &mut memo)
}

fn matches_from(
    elements: &[Element],
    key: &[char],
    e: usize,
    k: usize,
    memo: &mut HashMap<(usize, usize), bool>,
) -> bool {
    if let Some(&known) = memo.get(&(e, k)) {
        return known;
    }
    let answer = match elements.get(e) {
        None => k == key.len(),
        // The star takes nothing, or one more character.
        Some(Element::Star) => {
            matches_from(elements, key, e + 1, k, memo)
                || (k < key.len() && matches_from(elements, key, e, k + 1, memo))
        }
        Some(element) => k < key.len() && element.matches(key[k]) && matches_from(elements, key, e + 1, k + 1, memo),
    };
    memo.insert((e, k), answer);
    answer
}

/// Whether a flush pattern is well formed: non-empty, no whitespace or control character,
/// every class closed, no `]` outside a class, and no trailing `\`.
pub fn is_well_formed_pattern(pattern: &str) -> bool {
    if pattern.is_empty() || pattern.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return false;
    }
    let chars: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '\\' if i + 1 == chars.len() => return false,
            '\\' => i += 2,
            ']' => return false,
            '[' => {
                let elements = parse(&chars[i..]);
                let Some(Element::Class { closed, .. }) = elements.first() else {
                    return false;
                };
                if !closed {
                    return false;
                }
                i += class_len(&chars[i..]);
            }
            _ => i += 1,
        }
    }
    true
}

/// The length of the closed class at the start of `chars` (`[` to `]` included).
fn class_len(chars: &[char]) -> usize {
    let mut i = 1;
    if chars.get(i) == Some(&'^') {
        i += 1;
    }
    loop {
        match &chars[i..] {
            ['\\', _, ..] => i += 2,
            [']', ..] => return i + 1,
            [_, '-', _, ..] => i += 3,
            [_, ..] => i += 1,
            [] => return i,
        }
    }
}

/// A key `pattern` matches, built by choosing what each `*`, `?` and class stands for with
/// `choose` (asked for a character; answering `None` ends a star's run). `None` when the
/// pattern cannot match anything (an empty or full negated class).
pub fn instantiate(pattern: &str, mut choose: impl FnMut() -> Option<char>) -> Option<String> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = String::new();
    for element in parse(&chars) {
        match element {
            Element::Star => {
                for _ in 0..4 {
                    match choose() {
                        Some(c) => out.push(c),
                        None => break,
                    }
                }
            }
            Element::Any => out.push(choose().unwrap_or('x')),
            Element::Literal(c) => out.push(c),
            class @ Element::Class { .. } => {
                let candidates = [choose().unwrap_or('a'), 'a', 'z', '0', ':', '-', 'é'];
                let Element::Class { singles, ranges, .. } = &class else {
                    unreachable!("a class")
                };
                let c = candidates
                    .into_iter()
                    .chain(singles.iter().copied())
                    .chain(ranges.iter().map(|r| r.0))
                    .find(|&c| class.matches(c))?;
                out.push(c);
            }
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_reference_follows_the_documented_rules() {
        let m = glob_match;
        assert!(m("*", ""));
        assert!(m("a**b", "ab"));
        assert!(!m("*a?", "aab-"));
        assert!(m("v:[\\]]", "v:]"));
        assert!(m("v:\\", "v:\\"));
        assert!(m("[abc", "b"), "an unclosed class runs to the end");
        assert!(m("[a-]", "]"), "a range needs three characters: `a-]` is one");
        assert!(!m("[]a]", "a"), "`[]` is an empty class");
        assert!(m("é?", "éé"));
        let stars = format!("{}b", "*a".repeat(30));
        assert!(!m(&stars, &"a".repeat(200)));
    }

    #[test]
    fn well_formed_patterns() {
        for good in ["*", "a\\\\", "v:[\\]]", "a\\]", "[]", "[]a"] {
            assert!(is_well_formed_pattern(good), "{good:?}");
        }
        for bad in ["", "a\\", "[a", "a]", "a b", "[]]", "x[\\]"] {
            assert!(!is_well_formed_pattern(bad), "{bad:?}");
        }
    }

    #[test]
    fn instantiated_keys_match() {
        let mut n = 0u32;
        let key = instantiate("p:*:[a-c]?\\*", || {
            n += 1;
            (n < 3).then_some('q')
        })
        .unwrap();
        assert!(glob_match("p:*:[a-c]?\\*", &key), "{key}");
        assert_eq!(instantiate("[^\u{0}-\u{10ffff}]", || None), None);
    }
}
