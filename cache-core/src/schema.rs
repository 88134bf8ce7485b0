//! What the cache knows about an entity: the schema the derive produces ([`EntitySchema`]), and
//! the rest of what a [`Cacheable`](crate::Cacheable) model provides beside it: its index
//! entries, the sort keys of its sortable fields, and the errors of converting it.
//!
//! For code that acts on entities named at run time, and for a `Cacheable` written by hand; an
//! application that derives its models needs none of it.

use std::{fmt, time::Duration};

use serde::{Serialize, Serializer, ser::SerializeStruct};

pub use crate::model::{IndexEntries, ModelError, NoSort, SortField, SortKey};

/// The default time a cached record lives: 8 hours.
pub const DEFAULT_TTL: Duration = Duration::from_secs(8 * 3600);
/// The default time a tombstone (negative cache entry) lives: 6 hours.
pub const DEFAULT_TOMBSTONE_TTL: Duration = Duration::from_secs(6 * 3600);
/// The default time a negative answer lives (a fill that found no record, an index result
/// that found none): 5 minutes.
pub const DEFAULT_NEGATIVE_TTL: Duration = Duration::from_secs(5 * 60);

/// Bumped whenever the way records and indexes are stored changes, so that every fingerprint
/// changes with it (2: a tombstone lives in its record's key).
const LAYOUT_VERSION: u32 = 2;

/// Everything the cache knows about one entity (one model struct).
///
/// `#[derive(Cacheable)]` builds it; it is reachable at run time as
/// [`Cacheable::schema`](crate::Cacheable::schema) and serialises to JSON (the admin schema
/// endpoint and `demo-app schema` print it).
#[derive(Debug)]
pub struct EntitySchema {
    /// The entity's name, used in keys: `projects`.
    pub entity: &'static str,
    /// The table (or resource) at the source: `Projects`.
    pub source_table: &'static str,
    /// The Rust type the schema was derived from.
    pub type_name: &'static str,
    /// How long a cached record lives (before jitter).
    pub ttl: Duration,
    /// How long a tombstone lives: the delete the source reported.
    pub tombstone_ttl: Duration,
    /// How long a negative answer lives: a fill that found no record (a fill tombstone), or
    /// an index result that found none. Short, since anyone can ask for ids that do not exist.
    pub negative_ttl: Duration,
    /// The Rust name of the id field.
    pub id_field: &'static str,
    /// The Rust name of the `#[cache(version)]` field, if any.
    pub version_field: Option<&'static str>,
    /// Every field but the id, in declaration order.
    pub fields: Vec<FieldSchema>,
    fingerprint: u64,
}

/// One field of an entity.
#[derive(Debug, Clone)]
pub struct FieldSchema {
    /// The Rust name (without `r#`): the key in the cached form.
    pub name: &'static str,
    /// The name at the source: `event_id`, `Email Address`.
    pub source_name: &'static str,
    /// The field's Rust type as written, e.g. `Link<Event>`.
    pub rust_type: &'static str,
    /// Scalar, link or links.
    pub kind: FieldKind,
    /// Whether the type is an `Option`.
    pub optional: bool,
    /// How the field is indexed for equality queries, if it is.
    pub index: Option<IndexKind>,
    /// Whether query results can be ordered by this field.
    pub sortable: bool,
    /// `#[cache(skip)]`: never stored in the cache.
    pub skipped: bool,
    /// `#[cache(default)]` (on the field or the struct): a source record without the field
    /// (or with `null`) reads as the field's default instead of being refused. Sources that
    /// leave out empty cells (Airtable) may omit it. Does not change what is stored, so it is
    /// not part of the fingerprint.
    pub default: bool,
}

/// What a field holds.
#[derive(Clone, Copy)]
pub enum FieldKind {
    /// A value: string, number, bool, enum, timestamp, nested data.
    Scalar,
    /// A single-record link (`Link<T>` or `Option<Link<T>>`).
    Link {
        /// The target's schema (a function, so that models may link to each other).
        target: fn() -> &'static EntitySchema,
    },
    /// A multi-record link (`Links<T>`).
    Links {
        /// The target's schema.
        target: fn() -> &'static EntitySchema,
    },
}

impl fmt::Debug for FieldKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Scalar => f.write_str("Scalar"),
            Self::Link { target } => write!(f, "Link({})", target().entity),
            Self::Links { target } => write!(f, "Links({})", target().entity),
        }
    }
}

/// How an indexed field's values are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IndexKind {
    /// Exact match on the value as stored.
    Exact,
    /// Exact match after trimming and lower-casing, both when stored and when queried
    /// (`#[indexed(normalize = "lowercase")]`, for emails).
    Lowercase,
}

impl IndexKind {
    /// Normalises a value for storage or lookup in an index of this kind.
    pub fn normalize(self, value: String) -> String {
        match self {
            Self::Exact => value,
            Self::Lowercase => value.trim().to_lowercase(),
        }
    }
}

impl EntitySchema {
    /// Starts a schema for `entity`, with the default TTLs, `source_table` equal to the entity
    /// and `id` as the id field. The derive calls this; tests and hand-written stores may too.
    pub fn builder(entity: &'static str) -> EntitySchemaBuilder {
        EntitySchemaBuilder {
            schema: EntitySchema {
                entity,
                source_table: entity,
                type_name: entity,
                ttl: DEFAULT_TTL,
                tombstone_ttl: DEFAULT_TOMBSTONE_TTL,
                negative_ttl: DEFAULT_NEGATIVE_TTL,
                id_field: "id",
                version_field: None,
                fields: Vec::new(),
                fingerprint: 0,
            },
        }
    }

    /// A 64-bit hash of everything that affects stored data or indexes: entity name, field
    /// names and types, link targets, index kinds, sortable and skipped flags, the version
    /// field and the storage layout version. Stores put it in their keys so that data written
    /// under an old schema is never read as current.
    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    /// The fingerprint as 8 hex digits (the low 32 bits), as used in keys.
    pub fn fingerprint_hex(&self) -> String {
        format!("{:08x}", self.fingerprint as u32)
    }

    /// The field with this Rust name.
    pub fn field(&self, name: &str) -> Option<&FieldSchema> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// The fields with an equality index.
    pub fn indexed_fields(&self) -> impl Iterator<Item = &FieldSchema> {
        self.fields.iter().filter(|f| f.index.is_some())
    }

    /// The fields that can order query results.
    pub fn sortable_fields(&self) -> impl Iterator<Item = &FieldSchema> {
        self.fields.iter().filter(|f| f.sortable)
    }

    fn compute_fingerprint(&self) -> u64 {
        use std::fmt::Write;
        let mut canonical = format!(
            "layout={LAYOUT_VERSION};entity={};id={};version={:?};",
            self.entity, self.id_field, self.version_field
        );
        for f in &self.fields {
            let kind = match f.kind {
                FieldKind::Scalar => "scalar",
                FieldKind::Link { .. } => "link",
                FieldKind::Links { .. } => "links",
            };
            // Link targets are named by their Rust type (inside `rust_type`), not by calling
            // `target()`: two models linking to each other would otherwise recurse.
            let _ = write!(
                canonical,
                "field={},type={},kind={kind},optional={},index={:?},sortable={},skipped={};",
                f.name, f.rust_type, f.optional, f.index, f.sortable, f.skipped
            );
        }
        xxhash_rust::xxh3::xxh3_64(canonical.as_bytes())
    }
}

/// Builds an [`EntitySchema`]; see [`EntitySchema::builder`].
#[derive(Debug)]
pub struct EntitySchemaBuilder {
    schema: EntitySchema,
}

impl EntitySchemaBuilder {
    /// The table at the source.
    pub fn source_table(mut self, table: &'static str) -> Self {
        self.schema.source_table = table;
        self
    }

    /// The Rust type's name.
    pub fn type_name(mut self, name: &'static str) -> Self {
        self.schema.type_name = name;
        self
    }

    /// How long records live.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.schema.ttl = ttl;
        self
    }

    /// How long tombstones live.
    pub fn tombstone_ttl(mut self, ttl: Duration) -> Self {
        self.schema.tombstone_ttl = ttl;
        self
    }

    /// How long negative answers live (see [`EntitySchema::negative_ttl`]).
    pub fn negative_ttl(mut self, ttl: Duration) -> Self {
        self.schema.negative_ttl = ttl;
        self
    }

    /// The Rust name of the id field.
    pub fn id_field(mut self, name: &'static str) -> Self {
        self.schema.id_field = name;
        self
    }

    /// The Rust name of the version field.
    pub fn version_field(mut self, name: &'static str) -> Self {
        self.schema.version_field = Some(name);
        self
    }

    /// Adds a field.
    pub fn field(mut self, field: FieldSchema) -> Self {
        self.schema.fields.push(field);
        self
    }

    /// Finishes the schema and computes its fingerprint.
    pub fn build(mut self) -> EntitySchema {
        self.schema.fingerprint = self.schema.compute_fingerprint();
        self.schema
    }
}

impl FieldSchema {
    /// A plain stored field whose source name is its Rust name.
    pub fn scalar(name: &'static str, rust_type: &'static str) -> Self {
        Self {
            name,
            source_name: name,
            rust_type,
            kind: FieldKind::Scalar,
            optional: false,
            index: None,
            sortable: false,
            skipped: false,
            default: false,
        }
    }

    /// Whether a source record may leave this field out: it is an `Option`, a `Links<T>`
    /// (absent is empty), takes a default, or is skipped (never read).
    pub fn may_be_absent(&self) -> bool {
        self.optional || self.default || self.skipped || matches!(self.kind, FieldKind::Links { .. })
    }
}

fn serialize_secs<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_secs())
}

impl Serialize for EntitySchema {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        struct Secs<'a>(&'a Duration);
        impl Serialize for Secs<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                serialize_secs(self.0, s)
            }
        }
        let mut s = serializer.serialize_struct("EntitySchema", 11)?;
        s.serialize_field("entity", self.entity)?;
        s.serialize_field("source_table", self.source_table)?;
        s.serialize_field("type_name", self.type_name)?;
        s.serialize_field("key_prefix", self.entity)?;
        s.serialize_field("ttl_secs", &Secs(&self.ttl))?;
        s.serialize_field("tombstone_ttl_secs", &Secs(&self.tombstone_ttl))?;
        s.serialize_field("negative_ttl_secs", &Secs(&self.negative_ttl))?;
        s.serialize_field("id_field", self.id_field)?;
        s.serialize_field("version_field", &self.version_field)?;
        s.serialize_field("fields", &self.fields)?;
        s.serialize_field("fingerprint", &self.fingerprint_hex())?;
        s.end()
    }
}

impl Serialize for FieldSchema {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("FieldSchema", 10)?;
        s.serialize_field("name", self.name)?;
        s.serialize_field("source_name", self.source_name)?;
        s.serialize_field("rust_type", self.rust_type)?;
        let (kind, target) = match self.kind {
            FieldKind::Scalar => ("scalar", None),
            FieldKind::Link { target } => ("link", Some(target().entity)),
            FieldKind::Links { target } => ("links", Some(target().entity)),
        };
        s.serialize_field("kind", kind)?;
        s.serialize_field("target", &target)?;
        s.serialize_field("optional", &self.optional)?;
        s.serialize_field("default", &self.default)?;
        s.serialize_field("index", &self.index)?;
        s.serialize_field("sortable", &self.sortable)?;
        s.serialize_field("skipped", &self.skipped)?;
        s.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> EntitySchemaBuilder {
        EntitySchema::builder("projects")
            .source_table("Projects")
            .field(FieldSchema::scalar("name", "String"))
    }

    #[test]
    fn fingerprint_changes_with_what_is_stored() {
        let a = base().build();
        assert_eq!(a.fingerprint(), base().build().fingerprint(), "stable");
        let renamed = base().field(FieldSchema::scalar("slug", "String")).build();
        assert_ne!(a.fingerprint(), renamed.fingerprint());
        let mut indexed = FieldSchema::scalar("slug", "String");
        indexed.index = Some(IndexKind::Exact);
        let indexed = base().field(indexed).build();
        assert_ne!(renamed.fingerprint(), indexed.fingerprint());
        // The TTL and the source table do not change what is stored.
        assert_eq!(
            a.fingerprint(),
            base()
                .ttl(Duration::from_secs(5))
                .source_table("P")
                .build()
                .fingerprint()
        );
    }

    #[test]
    fn a_default_changes_what_may_be_absent_not_the_fingerprint() {
        let mut points = FieldSchema::scalar("points", "i64");
        assert!(!points.may_be_absent());
        let required = base().field(points.clone()).build();
        points.default = true;
        assert!(points.may_be_absent());
        let defaulted = base().field(points).build();
        assert_eq!(required.fingerprint(), defaulted.fingerprint());
    }

    #[test]
    fn serialises_to_json() {
        let json = serde_json::to_value(base().build()).unwrap();
        assert_eq!(json["entity"], "projects");
        assert_eq!(json["ttl_secs"], 8 * 3600);
        assert_eq!(json["fields"][0]["kind"], "scalar");
        assert_eq!(json["fields"][0]["default"], false);
        assert_eq!(json["fingerprint"].as_str().unwrap().len(), 8);
    }
}
