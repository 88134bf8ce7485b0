//! Links between records: `Link<T>` (one record) and `Links<T>` (many), typed by the target.

use std::{fmt, hash::Hash, marker::PhantomData};

use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

use crate::RecordId;

/// A single-record link to a `T`, such as a project's event.
///
/// At the source it arrives as `["recXYZ"]` (Airtable's shape, a one-element array) or as
/// `"recXYZ"`; both deserialise. It is stored flat (`"recXYZ"`) so that it can be indexed, and
/// [`Link::to_source`] renders the source shape again. A two-element array is an error: use
/// [`Links<T>`] for multi-record links, and `Option<Link<T>>` for an optional one.
///
/// ```
/// use cache_core::Link;
/// # struct Event;
///
/// let flat: Link<Event> = serde_json::from_str(r#""recE1""#)?;
/// let airtable: Link<Event> = serde_json::from_str(r#"["recE1"]"#)?;
/// assert_eq!(flat, airtable);
/// assert_eq!(serde_json::to_string(&flat)?, r#""recE1""#);
/// assert!(serde_json::from_str::<Link<Event>>(r#"["recE1", "recE2"]"#).is_err());
/// # Ok::<(), serde_json::Error>(())
/// ```
pub struct Link<T: ?Sized> {
    id: RecordId,
    target: PhantomData<fn() -> T>,
}

impl<T: ?Sized> Link<T> {
    /// A link to the record with this id.
    pub fn new(id: RecordId) -> Self {
        Self {
            id,
            target: PhantomData,
        }
    }

    /// The id of the linked record.
    pub fn id(&self) -> &RecordId {
        &self.id
    }

    /// The link in the source's shape: a one-element array, as Airtable sends it.
    pub fn to_source(&self) -> serde_json::Value {
        serde_json::Value::Array(vec![serde_json::Value::String(self.id.as_str().to_owned())])
    }
}

impl<T: ?Sized> From<RecordId> for Link<T> {
    fn from(id: RecordId) -> Self {
        Self::new(id)
    }
}

impl<T: ?Sized> From<Link<T>> for RecordId {
    fn from(link: Link<T>) -> Self {
        link.id
    }
}

// Manual impls: derives would put needless bounds on `T`.
impl<T: ?Sized> Clone for Link<T> {
    fn clone(&self) -> Self {
        Self::new(self.id.clone())
    }
}

impl<T: ?Sized> PartialEq for Link<T> {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}

impl<T: ?Sized> Eq for Link<T> {}

impl<T: ?Sized> Hash for Link<T> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.id.hash(state);
    }
}

impl<T: ?Sized> PartialOrd for Link<T> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl<T: ?Sized> Ord for Link<T> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.id.cmp(&other.id)
    }
}

impl<T: ?Sized> fmt::Debug for Link<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Link({:?})", self.id)
    }
}

impl<T: ?Sized> Serialize for Link<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.id.serialize(serializer)
    }
}

impl<'de, T: ?Sized> Deserialize<'de> for Link<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor<T: ?Sized>(PhantomData<fn() -> T>);

        impl<'de, T: ?Sized> de::Visitor<'de> for Visitor<T> {
            type Value = Link<T>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a record id, or an array of exactly one record id")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Link<T>, E> {
                RecordId::new(v).map(Link::new).map_err(E::custom)
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Link<T>, E> {
                self.visit_str(&v.to_string())
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Link<T>, E> {
                self.visit_str(&v.to_string())
            }

            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Link<T>, A::Error> {
                let Some(id) = seq.next_element::<RecordId>()? else {
                    return Err(de::Error::invalid_length(0, &"exactly one record id"));
                };
                if seq.next_element::<de::IgnoredAny>()?.is_some() {
                    let mut len = 2;
                    while seq.next_element::<de::IgnoredAny>()?.is_some() {
                        len += 1;
                    }
                    return Err(de::Error::invalid_length(
                        len,
                        &"exactly one record id (use `Links<T>` for a multi-record link)",
                    ));
                }
                Ok(Link::new(id))
            }
        }

        deserializer.deserialize_any(Visitor(PhantomData))
    }
}

/// A multi-record link to `T`s, such as a project's collaborators: a list of ids, stored as a
/// list and never indexed.
///
/// Deserialises from an array of ids; a missing value (`null`) is the empty list, as Airtable
/// omits empty link fields.
pub struct Links<T: ?Sized> {
    ids: Vec<RecordId>,
    target: PhantomData<fn() -> T>,
}

impl<T: ?Sized> Links<T> {
    /// Links to these ids, in this order.
    pub fn new(ids: Vec<RecordId>) -> Self {
        Self {
            ids,
            target: PhantomData,
        }
    }

    /// The linked ids, in order.
    pub fn ids(&self) -> &[RecordId] {
        &self.ids
    }

    /// Whether `id` is one of the linked records.
    pub fn contains(&self, id: &RecordId) -> bool {
        self.ids.contains(id)
    }

    /// The number of linked records.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether no record is linked.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Adds a link at the end.
    pub fn push(&mut self, id: RecordId) {
        self.ids.push(id);
    }

    /// Iterates over the linked ids as single links.
    pub fn iter(&self) -> impl Iterator<Item = Link<T>> + '_ {
        self.ids.iter().cloned().map(Link::new)
    }

    /// The links in the source's shape: an array of ids.
    pub fn to_source(&self) -> serde_json::Value {
        serde_json::Value::Array(
            self.ids
                .iter()
                .map(|id| serde_json::Value::String(id.as_str().to_owned()))
                .collect(),
        )
    }
}

impl<T: ?Sized> Default for Links<T> {
    fn default() -> Self {
        Self::new(Vec::new())
    }
}

impl<T: ?Sized> From<Vec<RecordId>> for Links<T> {
    fn from(ids: Vec<RecordId>) -> Self {
        Self::new(ids)
    }
}

impl<T: ?Sized> FromIterator<RecordId> for Links<T> {
    fn from_iter<I: IntoIterator<Item = RecordId>>(iter: I) -> Self {
        Self::new(iter.into_iter().collect())
    }
}

impl<T: ?Sized> Clone for Links<T> {
    fn clone(&self) -> Self {
        Self::new(self.ids.clone())
    }
}

impl<T: ?Sized> PartialEq for Links<T> {
    fn eq(&self, other: &Self) -> bool {
        self.ids == other.ids
    }
}

impl<T: ?Sized> Eq for Links<T> {}

impl<T: ?Sized> Hash for Links<T> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.ids.hash(state);
    }
}

impl<T: ?Sized> fmt::Debug for Links<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Links").field(&self.ids).finish()
    }
}

impl<T: ?Sized> Serialize for Links<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.ids.serialize(serializer)
    }
}

impl<'de, T: ?Sized> Deserialize<'de> for Links<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let ids = Option::<Vec<RecordId>>::deserialize(deserializer)?;
        Ok(Self::new(ids.unwrap_or_default()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct User;

    #[test]
    fn link_accepts_both_source_shapes_and_stores_flat() {
        let a: Link<User> = serde_json::from_str(r#"["recU1"]"#).unwrap();
        let b: Link<User> = serde_json::from_str(r#""recU1""#).unwrap();
        assert_eq!(a, b);
        assert_eq!(serde_json::to_value(&a).unwrap(), serde_json::json!("recU1"));
        assert_eq!(a.to_source(), serde_json::json!(["recU1"]));
    }

    #[test]
    fn link_rejects_zero_or_several_ids() {
        let two = serde_json::from_str::<Link<User>>(r#"["recU1", "recU2"]"#).unwrap_err();
        assert!(two.to_string().contains("invalid length 2"), "{two}");
        assert!(serde_json::from_str::<Link<User>>("[]").is_err());
        assert!(serde_json::from_str::<Link<User>>(r#"["rec:1"]"#).is_err());
    }

    #[test]
    fn optional_link() {
        let none: Option<Link<User>> = serde_json::from_str("null").unwrap();
        assert!(none.is_none());
        let some: Option<Link<User>> = serde_json::from_str(r#"["recU1"]"#).unwrap();
        assert_eq!(some.unwrap().id(), "recU1");
    }

    #[test]
    fn links_stay_a_list() {
        let links: Links<User> = serde_json::from_str(r#"["recU1", "recU2"]"#).unwrap();
        assert_eq!(links.len(), 2);
        assert_eq!(
            serde_json::to_value(&links).unwrap(),
            serde_json::json!(["recU1", "recU2"])
        );
        let empty: Links<User> = serde_json::from_str("null").unwrap();
        assert!(empty.is_empty());
    }
}
