//! Support for the code `#[derive(Cacheable)]`, `#[derive(CacheView)]` and
//! `#[derive(IndexValue)]` generate. Not a public API: anything here may change in any release.
//!
//! The generated code calls these functions rather than inlining their bodies so that it stays
//! small, and so that every error message a record can produce at run time is written once.

pub use serde;
pub use serde_json;
pub use std::sync::LazyLock;

/// The model types the generated code names that are not at the crate root.
pub use crate::{
    origin::SourceRecord,
    schema::{EntitySchema, FieldKind, IndexEntries, IndexKind, ModelError, NoSort, SortField, SortKey},
};

use serde::{Serialize, de::DeserializeOwned};
use serde_json::{Map, Value};

use crate::{IndexValue, Link, schema::FieldSchema};

/// A field of a derived schema. Built from [`FieldSchema::scalar`] so that the generated code
/// does not break if `FieldSchema` gains a field.
#[allow(clippy::too_many_arguments, clippy::fn_params_excessive_bools)]
pub fn field(
    name: &'static str,
    source_name: &'static str,
    rust_type: &'static str,
    kind: FieldKind,
    optional: bool,
    index: Option<IndexKind>,
    sortable: bool,
    skipped: bool,
) -> FieldSchema {
    let mut field = FieldSchema::scalar(name, rust_type);
    field.source_name = source_name;
    field.kind = kind;
    field.optional = optional;
    field.index = index;
    field.sortable = sortable;
    field.skipped = skipped;
    field
}

/// `Cacheable::near_copy` for the derive, by autoref specialisation on the concrete model:
/// `(&&NearCopy(self)).__near_copy()` finds [`CopyByClone`] (on `&NearCopy`) first when the
/// model is `Clone`, and [`NoCopy`] (one autoref less) otherwise.
pub struct NearCopy<'a, T>(pub &'a T);

/// The `Clone` arm of [`NearCopy`].
pub trait CopyByClone<T> {
    /// `Some` copy of the record.
    fn __near_copy(&self) -> Option<T>;
}

impl<T: Clone> CopyByClone<T> for &NearCopy<'_, T> {
    #[inline]
    fn __near_copy(&self) -> Option<T> {
        Some(self.0.clone())
    }
}

/// The fallback arm of [`NearCopy`].
pub trait NoCopy<T> {
    /// `None`: the model is not `Clone`.
    fn __near_copy(&self) -> Option<T>;
}

impl<T> NoCopy<T> for NearCopy<'_, T> {
    #[inline]
    fn __near_copy(&self) -> Option<T> {
        None
    }
}

/// Serialises the borrowed cached form of a record.
#[inline]
pub fn to_cached<T: Serialize>(entity: &'static str, cached: &T) -> Result<Vec<u8>, ModelError> {
    serde_json::to_vec(cached).map_err(|source| ModelError::Serialize { entity, source })
}

/// Parses the owned cached form of a record.
#[inline]
pub fn from_cached<T: DeserializeOwned>(entity: &'static str, bytes: &[u8]) -> Result<T, ModelError> {
    // Checking the whole body is UTF-8 at once is cheaper than serde_json checking each string
    // it reads; a body that is not UTF-8 is read as bytes, for serde_json's error and position.
    match std::str::from_utf8(bytes) {
        Ok(text) => serde_json::from_str(text),
        Err(_) => serde_json::from_slice(bytes),
    }
    .map_err(|source| ModelError::Cached { entity, source })
}

/// The source value of a scalar field.
#[inline]
pub fn scalar_to_source<T: Serialize + ?Sized>(entity: &'static str, value: &T) -> Result<Value, ModelError> {
    serde_json::to_value(value).map_err(|source| ModelError::Serialize { entity, source })
}

/// The source value of an optional single link: `None` is absent (`null`, then omitted).
#[inline]
pub fn optional_link_to_source<T: ?Sized>(link: &Option<Link<T>>) -> Value {
    link.as_ref().map_or(Value::Null, Link::to_source)
}

/// Adds a field to a source record. `null` is left out, as Airtable leaves out empty fields;
/// reading treats a missing field as `null`, so the two forms are the same record.
#[inline]
pub fn insert_source(fields: &mut Map<String, Value>, source_name: &'static str, value: Value) {
    if !value.is_null() {
        fields.insert(source_name.to_owned(), value);
    }
}

/// Reads a field of a source record (a scalar, a `Link<T>` or a `Links<T>`). A missing field
/// reads as `null`: `Option` fields become `None`, `Links` become empty, anything else is a
/// "missing" error naming the field.
pub fn from_source<T: DeserializeOwned>(
    entity: &'static str,
    source_name: &'static str,
    value: Option<Value>,
) -> Result<T, ModelError> {
    let missing = value.is_none();
    serde_json::from_value(value.unwrap_or(Value::Null)).map_err(|err| ModelError::Field {
        entity,
        field: source_name.to_owned(),
        reason: if missing { "missing".to_owned() } else { err.to_string() },
    })
}

/// Reads an optional single link from a source record: missing, `null` and `[]` are `None`;
/// `"recX"` and `["recX"]` are the link; several ids are an error naming the field.
pub fn optional_link_from_source<T: ?Sized>(
    entity: &'static str,
    source_name: &'static str,
    value: Option<Value>,
) -> Result<Option<Link<T>>, ModelError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(ids)) if ids.is_empty() => Ok(None),
        Some(value) => from_source(entity, source_name, Some(value)).map(Some),
    }
}

/// A field's index entry, normalised; `None` when the value is absent.
#[inline]
pub fn index_value<T: IndexValue + ?Sized>(value: &T, kind: IndexKind) -> Option<String> {
    value.index_value().map(|v| kind.normalize(v))
}

/// A query argument as the index stores it.
#[inline]
pub fn index_arg<T: IndexValue + ?Sized>(arg: &T::Arg, kind: IndexKind) -> String {
    kind.normalize(T::arg_value(arg))
}

/// A sortable field's score.
#[inline]
pub fn sort_score<T: SortKey + ?Sized>(value: &T) -> f64 {
    value.sort_score()
}

/// The version of a record: its version field's score, unless absent (`-inf`) or `NaN`.
#[inline]
pub fn version<T: SortKey + ?Sized>(value: &T) -> Option<f64> {
    let score = value.sort_score();
    (score > f64::NEG_INFINITY).then_some(score)
}

/// The index value of an enum deriving `IndexValue`: its serde form, if that is a string, a
/// number or a bool; otherwise `None` (not indexed).
pub fn serde_index_value<T: Serialize + ?Sized>(value: &T) -> Option<String> {
    match serde_json::to_value(value).ok()? {
        Value::String(s) => Some(s),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Null | Value::Array(_) | Value::Object(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RecordId;

    struct User;

    #[test]
    fn missing_source_fields() {
        let none: Option<String> = from_source("users", "Name", None).unwrap();
        assert_eq!(none, None);
        let err = from_source::<String>("users", "Name", None).unwrap_err();
        assert_eq!(err.to_string(), "users.Name: missing");
        let err = from_source::<String>("users", "Name", Some(Value::Bool(true))).unwrap_err();
        assert_eq!(
            err.to_string(),
            "users.Name: invalid type: boolean `true`, expected a string"
        );
    }

    #[test]
    fn optional_links_accept_every_empty_shape() {
        for empty in [None, Some(Value::Null), Some(serde_json::json!([]))] {
            let link = optional_link_from_source::<User>("projects", "owner_id", empty).unwrap();
            assert!(link.is_none());
        }
        let link = optional_link_from_source::<User>("projects", "owner_id", Some(serde_json::json!(["recU"])));
        assert_eq!(link.unwrap().unwrap().id(), "recU");
        let err =
            optional_link_from_source::<User>("projects", "owner_id", Some(serde_json::json!(["a", "b"]))).unwrap_err();
        assert!(
            err.to_string().starts_with("projects.owner_id: invalid length 2"),
            "{err}"
        );
    }

    #[test]
    fn versions_and_scores() {
        assert_eq!(version(&Some(3_i64)), Some(3.0));
        assert_eq!(version(&None::<i64>), None);
        assert_eq!(version(&f64::NAN), None);
        assert_eq!(sort_score(&None::<i64>), f64::NEG_INFINITY);
    }

    #[test]
    fn index_values_are_normalised() {
        assert_eq!(
            index_value(&" Ada@X.org ".to_owned(), IndexKind::Lowercase).as_deref(),
            Some("ada@x.org")
        );
        assert_eq!(index_value(&None::<String>, IndexKind::Exact), None);
        assert_eq!(index_arg::<String>(" A ", IndexKind::Lowercase), "a");
        let id = RecordId::new("recE").unwrap();
        assert_eq!(index_arg::<Link<User>>(&id, IndexKind::Exact), "recE");
    }

    /// The derive works inside this crate too (through `extern crate self as cache_core`), so
    /// its unit tests can use real models.
    #[cfg(feature = "derive")]
    #[test]
    fn derive_inside_the_crate() {
        use crate::{Cacheable, Links};

        #[derive(crate::Cacheable, Debug, PartialEq)]
        #[cache(entity = "teams")]
        struct Team {
            #[cache(id)]
            id: RecordId,
            #[indexed]
            name: String,
            members: Links<Team>,
        }

        let team = Team {
            id: RecordId::new("t1").unwrap(),
            name: "A".into(),
            members: Links::default(),
        };
        let cached = team.to_cached().unwrap();
        assert_eq!(cached, br#"{"id":"t1","name":"A","members":[]}"#);
        assert_eq!(Team::from_cached(&cached).unwrap(), team);
        assert_eq!(Team::by_name("A").as_index_query().filter_key(), "name=A");
    }
}
