//! Record ids: opaque strings from the source, validated so they can never break a key.

use std::{borrow::Borrow, fmt, str::FromStr, sync::Arc};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The longest id accepted, in bytes.
pub const MAX_ID_LEN: usize = 256;

/// Characters that mean something in a store key or a key pattern; an id never contains them.
///
/// `:` separates key parts, `*` `?` `[` `]` `\` are glob syntax for `SCAN MATCH`, and `{` `}`
/// delimit Redis Cluster hash tags. Rejecting them (rather than encoding them) keeps every key
/// readable in `redis-cli` and makes it impossible for one id to match another's key or pattern.
pub const FORBIDDEN_ID_CHARS: &[char] = &[':', '*', '?', '[', ']', '{', '}', '\\'];

/// The id of a record at the source: Airtable's `recXXXXXXXXXXXXXX`, an SQL key rendered as
/// text, a UUID.
///
/// A `RecordId` is non-empty, at most [`MAX_ID_LEN`] bytes, and has no whitespace, no control
/// characters and none of [`FORBIDDEN_ID_CHARS`]. Cloning is cheap (reference counted).
///
/// ```
/// use cache_core::RecordId;
///
/// let id: RecordId = "recA1b2C3d4E5f6G7".parse()?;
/// assert_eq!(id.as_str(), "recA1b2C3d4E5f6G7");
/// assert!(RecordId::new("projects:*").is_err());
/// # Ok::<(), cache_core::InvalidId>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RecordId(Arc<str>);

/// Why a string is not a valid [`RecordId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidId {
    /// The id is the empty string.
    #[error("a record id cannot be empty")]
    Empty,
    /// The id is longer than [`MAX_ID_LEN`] bytes.
    #[error("a record id is at most {MAX_ID_LEN} bytes, this one has {len}")]
    TooLong {
        /// The id's length in bytes.
        len: usize,
    },
    /// The id contains whitespace, a control character or one of [`FORBIDDEN_ID_CHARS`].
    #[error("a record id cannot contain {ch:?} (found at byte {at} of {id:?})")]
    ForbiddenChar {
        /// The offending character.
        ch: char,
        /// Its byte offset.
        at: usize,
        /// The id as given (truncated to [`MAX_ID_LEN`] bytes).
        id: String,
    },
}

impl RecordId {
    /// Validates `id` and wraps it.
    pub fn new(id: impl AsRef<str>) -> Result<Self, InvalidId> {
        let id = id.as_ref();
        validate(id)?;
        Ok(Self(Arc::from(id)))
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The bytes an id may hold as they are, by value: printable ASCII, not a space, none of
/// [`FORBIDDEN_ID_CHARS`]. A byte of a non-ASCII character is not one of them.
const ID_ASCII: [bool; 256] = {
    let mut allowed = [false; 256];
    let mut b = 0x21;
    while b < 0x7F {
        allowed[b] = true;
        b += 1;
    }
    let mut i = 0;
    while i < FORBIDDEN_ID_CHARS.len() {
        allowed[FORBIDDEN_ID_CHARS[i] as usize] = false;
        i += 1;
    }
    allowed
};

/// Whether `b` is one of [`ID_ASCII`]'s bytes.
fn ascii_allowed(b: u8) -> bool {
    ID_ASCII[usize::from(b)]
}

fn validate(id: &str) -> Result<(), InvalidId> {
    if id.is_empty() {
        return Err(InvalidId::Empty);
    }
    if id.len() > MAX_ID_LEN {
        return Err(InvalidId::TooLong { len: id.len() });
    }
    // The usual id is ASCII: one table lookup a byte. Anything else (a non-ASCII character,
    // or a byte the table refuses) takes the character walk, which names what it found.
    if id.bytes().all(ascii_allowed) {
        return Ok(());
    }
    match id
        .char_indices()
        .find(|&(_, ch)| ch.is_whitespace() || ch.is_control() || FORBIDDEN_ID_CHARS.contains(&ch))
    {
        Some((at, ch)) => Err(InvalidId::ForbiddenChar {
            ch,
            at,
            id: id.to_owned(),
        }),
        None => Ok(()),
    }
}

impl fmt::Debug for RecordId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for RecordId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for RecordId {
    type Err = InvalidId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl TryFrom<String> for RecordId {
    type Error = InvalidId;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        validate(&value)?;
        Ok(Self(Arc::from(value)))
    }
}

impl TryFrom<&str> for RecordId {
    type Error = InvalidId;

    fn try_from(value: &str) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl AsRef<str> for RecordId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for RecordId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for RecordId {
    fn eq(&self, other: &str) -> bool {
        &*self.0 == other
    }
}

impl PartialEq<&str> for RecordId {
    fn eq(&self, other: &&str) -> bool {
        &*self.0 == *other
    }
}

impl Serialize for RecordId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for RecordId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = RecordId;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a record id (a non-empty string without whitespace or `: * ? [ ] { } \\`) or an integer")
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RecordId, E> {
                RecordId::new(v).map_err(E::custom)
            }

            // SQL keys arrive as numbers; their text form is the id.
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<RecordId, E> {
                RecordId::new(v.to_string()).map_err(E::custom)
            }

            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<RecordId, E> {
                RecordId::new(v.to_string()).map_err(E::custom)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_source_ids() {
        for id in [
            "recA1b2C3d4E5f6G7",
            "42",
            "0b3f5c1e-7d2a-4c1b-9a8e-1f2d3c4b5a69",
            "a.b-c_d@e",
        ] {
            assert_eq!(RecordId::new(id).unwrap().as_str(), id);
        }
    }

    #[test]
    fn rejects_what_could_break_a_key() {
        assert_eq!(RecordId::new(""), Err(InvalidId::Empty));
        assert_eq!(
            RecordId::new("x".repeat(MAX_ID_LEN + 1)),
            Err(InvalidId::TooLong { len: MAX_ID_LEN + 1 })
        );
        assert!(RecordId::new("x".repeat(MAX_ID_LEN)).is_ok());
        for bad in [
            "a:b", "rec*", "a?", "[a]", "{tag}", "a\\b", "a b", "a\tb", "a\nb", "a\u{7f}",
        ] {
            let err = RecordId::new(bad).unwrap_err();
            assert!(matches!(err, InvalidId::ForbiddenChar { .. }), "{bad:?} gave {err:?}");
        }
    }

    #[test]
    fn the_ascii_table_agrees_with_the_character_rules() {
        for b in 0u8..128 {
            let ch = char::from(b);
            let allowed = !(ch.is_whitespace() || ch.is_control() || FORBIDDEN_ID_CHARS.contains(&ch));
            assert_eq!(ascii_allowed(b), allowed, "byte {b:#04x}");
            assert_eq!(validate(&format!("a{ch}b")).is_ok(), allowed, "byte {b:#04x}");
        }
        assert!((128..=255).all(|b| !ascii_allowed(b)));
        // Beyond ASCII, the character walk decides.
        assert!(RecordId::new("caf\u{e9}").is_ok());
        assert!(matches!(
            RecordId::new("a\u{a0}b"),
            Err(InvalidId::ForbiddenChar {
                ch: '\u{a0}',
                at: 1,
                ..
            })
        ));
    }

    #[test]
    fn error_names_the_character() {
        let err = RecordId::new("projects:*").unwrap_err();
        assert_eq!(
            err.to_string(),
            "a record id cannot contain ':' (found at byte 8 of \"projects:*\")"
        );
    }

    #[test]
    fn deserialises_strings_and_integers() {
        let id: RecordId = serde_json::from_str("\"recX\"").unwrap();
        assert_eq!(id, "recX");
        let id: RecordId = serde_json::from_str("17").unwrap();
        assert_eq!(id, "17");
        assert!(serde_json::from_str::<RecordId>("\"a:b\"").is_err());
        assert!(serde_json::from_str::<RecordId>("null").is_err());
    }
}
