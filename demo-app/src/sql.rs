//! Translating the origin's requests into SQL over an entity's schema: the table is its
//! `source_table`, the columns its fields' `source_name`s, the key column its `id_field`.
//!
//! A lowercase-indexed field also has a normalised column ([`normalized_column`]) that every
//! insert fills from Rust with [`IndexKind::normalize`], and that lowercase filters compare:
//! SQL's `lower` and `trim` are not the cache's (SQLite lower-cases ASCII only and trims
//! spaces only), and a lookup the origin answered with nothing would be cached as complete.
//!
//! Pure functions from schema and request to [`Statement`], so that the translation is tested
//! without a database.

use cache_core::{EntitySchema, FieldKind, FieldSchema, IndexKind, Order, RecordId, SourceQuery};

use crate::database::{Dialect, quote};

/// One SQL statement with its parameters (`$1`, `$2`, … in both dialects).
#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    /// The SQL text.
    pub sql: String,
    /// The values of `$1`, `$2`, …
    pub binds: Vec<Bind>,
}

/// A parameter value.
#[derive(Debug, Clone, PartialEq)]
pub enum Bind {
    /// Text (ids, strings, timestamps).
    Text(String),
    /// An integer.
    Int(i64),
    /// A boolean.
    Bool(bool),
    /// `NULL` (in a text column).
    Null,
}

/// Why a request cannot be put in SQL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TranslateError {
    /// Multi-record links are JSON lists: there is nothing to compare them with.
    #[error("{entity}.{field} is a multi-record link and cannot be filtered on")]
    FilterOnLinks {
        /// The entity.
        entity: &'static str,
        /// The field.
        field: &'static str,
    },
    /// The filter value does not parse as the field's type.
    #[error("{entity}.{field} is a {rust_type}; `{value}` is not one")]
    BadValue {
        /// The entity.
        entity: &'static str,
        /// The field.
        field: &'static str,
        /// The field's type.
        rust_type: &'static str,
        /// The value given.
        value: String,
    },
}

/// The selected columns: the key and every field the cache stores.
pub fn columns(entity: &EntitySchema) -> String {
    let mut out = quote(entity.id_field);
    for field in entity.fields.iter().filter(|f| !f.skipped) {
        out.push_str(", ");
        out.push_str(&quote(field.source_name));
    }
    out
}

/// `SELECT … WHERE id = $1`.
pub fn fetch(entity: &EntitySchema, id: &RecordId) -> Statement {
    Statement {
        sql: format!(
            "SELECT {} FROM {} WHERE {} = $1",
            columns(entity),
            quote(entity.source_table),
            quote(entity.id_field)
        ),
        binds: vec![Bind::Text(id.as_str().to_owned())],
    }
}

/// `SELECT … WHERE id IN ($1, …)`.
pub fn fetch_many(entity: &EntitySchema, ids: &[RecordId]) -> Statement {
    let (list, binds) = id_list(ids);
    Statement {
        sql: format!(
            "SELECT {} FROM {} WHERE {} IN ({list})",
            columns(entity),
            quote(entity.source_table),
            quote(entity.id_field)
        ),
        binds,
    }
}

/// `SELECT id … WHERE id IN ($1, …)`.
pub fn exists_many(entity: &EntitySchema, ids: &[RecordId]) -> Statement {
    let (list, binds) = id_list(ids);
    let id = quote(entity.id_field);
    Statement {
        sql: format!("SELECT {id} FROM {} WHERE {id} IN ({list})", quote(entity.source_table)),
        binds,
    }
}

/// The ids of the most recent records, newest first: by `created_at` when the entity has it
/// sortable, else by id. All of them when `limit` is `None`.
pub fn recent_ids(entity: &EntitySchema, limit: Option<usize>) -> Statement {
    let id = quote(entity.id_field);
    let order = match entity.sortable_fields().find(|f| f.name == "created_at") {
        Some(field) => format!("{} DESC NULLS LAST, {id} DESC", quote(field.source_name)),
        None => format!("{id} DESC"),
    };
    let mut sql = format!("SELECT {id} FROM {} ORDER BY {order}", quote(entity.source_table));
    let mut binds = Vec::new();
    if let Some(limit) = limit {
        binds.push(Bind::Int(i64::try_from(limit).unwrap_or(i64::MAX)));
        sql.push_str(" LIMIT $1");
    }
    Statement { sql, binds }
}

/// The column holding a lowercase-indexed field's value as the cache normalises it
/// (`email_normalized`); `None` for other fields.
pub fn normalized_column(field: &FieldSchema) -> Option<String> {
    match field.index {
        Some(IndexKind::Lowercase) => Some(format!("{}_normalized", field.source_name)),
        Some(IndexKind::Exact) | None => None,
    }
}

/// A multi-row `INSERT` of `rows` (values of `columns`, in that order) into the entity's
/// table, with the normalised column of each lowercase-indexed field among `columns` filled
/// in from its value.
pub fn insert(entity: &EntitySchema, columns: &[&str], rows: &[Vec<Bind>]) -> Statement {
    let normalized: Vec<(usize, IndexKind, String)> = entity
        .fields
        .iter()
        .filter_map(|field| {
            let column = normalized_column(field)?;
            let at = columns.iter().position(|c| *c == field.source_name)?;
            Some((at, field.index?, column))
        })
        .collect();
    let names: Vec<String> = columns
        .iter()
        .copied()
        .chain(normalized.iter().map(|(_, _, column)| column.as_str()))
        .map(quote)
        .collect();
    let mut sql = format!(
        "INSERT INTO {} ({}) VALUES ",
        quote(entity.source_table),
        names.join(", ")
    );
    let mut binds = Vec::with_capacity(rows.len() * names.len());
    for (r, row) in rows.iter().enumerate() {
        let values = row
            .iter()
            .cloned()
            .chain(normalized.iter().map(|(at, kind, _)| match &row[*at] {
                Bind::Text(value) => Bind::Text(kind.normalize(value.clone())),
                other => other.clone(),
            }));
        let mut placeholders = Vec::with_capacity(names.len());
        for value in values {
            binds.push(value);
            placeholders.push(format!("${}", binds.len()));
        }
        if r > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&format!("({})", placeholders.join(", ")));
    }
    Statement { sql, binds }
}

/// `DELETE … WHERE id = $1 RETURNING *`: the deleted row, whose version the tombstone keeps.
pub fn delete(entity: &EntitySchema, id: &RecordId) -> Statement {
    Statement {
        sql: format!(
            "DELETE FROM {} WHERE {} = $1 RETURNING *",
            quote(entity.source_table),
            quote(entity.id_field)
        ),
        binds: vec![Bind::Text(id.as_str().to_owned())],
    }
}

/// An index query: equality on each filter's column (its normalised column for
/// lowercase-indexed fields, compared with the value normalised as the cache does), ordered
/// by the sort column then the key in the same direction, absent values first ascending,
/// then paged.
pub fn query(
    dialect: Dialect,
    entity: &'static EntitySchema,
    query: &SourceQuery,
) -> Result<Statement, TranslateError> {
    let mut binds = Vec::new();
    let mut sql = format!("SELECT {} FROM {}", columns(entity), quote(entity.source_table));
    for (i, filter) in query.filters.iter().enumerate() {
        let field = filter.field;
        if matches!(field.kind, FieldKind::Links { .. }) {
            return Err(TranslateError::FilterOnLinks {
                entity: entity.entity,
                field: field.name,
            });
        }
        let column = match (normalized_column(field), field.index) {
            (Some(column), Some(kind)) => {
                binds.push(Bind::Text(kind.normalize(filter.value.clone())));
                quote(&column)
            }
            _ => {
                binds.push(bind_for(entity, field, &filter.value)?);
                quote(field.source_name)
            }
        };
        sql.push_str(if i == 0 { " WHERE " } else { " AND " });
        sql.push_str(&format!("{column} = ${}", binds.len()));
    }

    let id = quote(entity.id_field);
    match query.sort {
        Some((field, order)) => {
            let (dir, nulls) = match order {
                Order::Asc => ("ASC", "NULLS FIRST"),
                Order::Desc => ("DESC", "NULLS LAST"),
            };
            sql.push_str(&format!(
                " ORDER BY {} {dir} {nulls}, {id} {dir}",
                quote(field.source_name)
            ));
        }
        None => sql.push_str(&format!(" ORDER BY {id} ASC")),
    }

    let limit = query.limit.map(|l| i64::try_from(l).unwrap_or(i64::MAX));
    match (limit, query.offset) {
        (Some(limit), _) => {
            binds.push(Bind::Int(limit));
            sql.push_str(&format!(" LIMIT ${}", binds.len()));
        }
        // SQLite takes OFFSET only after a LIMIT; -1 is "no limit" there.
        (None, offset) if offset > 0 && dialect == Dialect::Sqlite => sql.push_str(" LIMIT -1"),
        (None, _) => {}
    }
    if query.offset > 0 {
        binds.push(Bind::Int(i64::try_from(query.offset).unwrap_or(i64::MAX)));
        sql.push_str(&format!(" OFFSET ${}", binds.len()));
    }
    Ok(Statement { sql, binds })
}

fn id_list(ids: &[RecordId]) -> (String, Vec<Bind>) {
    let list = (1..=ids.len()).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ");
    let binds = ids.iter().map(|id| Bind::Text(id.as_str().to_owned())).collect();
    (list, binds)
}

/// The parameter for a filter value, typed as the column is (the value comes as text).
fn bind_for(entity: &EntitySchema, field: &'static FieldSchema, value: &str) -> Result<Bind, TranslateError> {
    let bad = || TranslateError::BadValue {
        entity: entity.entity,
        field: field.name,
        rust_type: field.rust_type,
        value: value.to_owned(),
    };
    if !matches!(field.kind, FieldKind::Scalar) {
        return Ok(Bind::Text(value.to_owned()));
    }
    let ty = field.rust_type.replace(' ', "");
    let ty = ty
        .strip_prefix("Option<")
        .and_then(|t| t.strip_suffix('>'))
        .unwrap_or(&ty);
    match ty {
        "i8" | "i16" | "i32" | "i64" | "isize" | "u8" | "u16" | "u32" | "u64" | "usize" => {
            value.parse().map(Bind::Int).map_err(|_| bad())
        }
        "bool" => value.parse().map(Bind::Bool).map_err(|_| bad()),
        _ => Ok(Bind::Text(value.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::LazyLock;

    use cache_core::{FieldSchema, SourceFilter};

    use super::*;

    fn users() -> &'static EntitySchema {
        static SCHEMA: LazyLock<EntitySchema> = LazyLock::new(|| {
            let mut email = FieldSchema::scalar("email", "String");
            email.index = Some(IndexKind::Lowercase);
            let mut name = FieldSchema::scalar("display_name", "String");
            name.source_name = "name";
            let mut age = FieldSchema::scalar("age", "Option<u32>");
            age.index = Some(IndexKind::Exact);
            age.sortable = true;
            let mut admin = FieldSchema::scalar("admin", "bool");
            admin.index = Some(IndexKind::Exact);
            let mut skipped = FieldSchema::scalar("session", "String");
            skipped.skipped = true;
            let mut owner = FieldSchema::scalar("team", "Link<Team>");
            owner.source_name = "team_id";
            owner.kind = FieldKind::Link { target: users };
            owner.index = Some(IndexKind::Exact);
            let mut friends = FieldSchema::scalar("friends", "Links<User>");
            friends.kind = FieldKind::Links { target: users };
            EntitySchema::builder("users")
                .source_table("Users")
                .field(email)
                .field(name)
                .field(age)
                .field(admin)
                .field(skipped)
                .field(owner)
                .field(friends)
                .build()
        });
        &SCHEMA
    }

    fn field(name: &str) -> &'static FieldSchema {
        users().field(name).unwrap()
    }

    fn source_query(filters: &[(&str, &str)], sort: Option<(&str, Order)>) -> SourceQuery {
        SourceQuery {
            filters: filters
                .iter()
                .map(|(f, v)| SourceFilter {
                    field: field(f),
                    value: (*v).to_owned(),
                })
                .collect(),
            sort: sort.map(|(f, o)| (field(f), o)),
            offset: 0,
            limit: None,
        }
    }

    fn text(s: &str) -> Bind {
        Bind::Text(s.to_owned())
    }

    const COLUMNS: &str = r#""id", "email", "name", "age", "admin", "team_id", "friends""#;

    #[test]
    fn selects_source_columns_without_skipped_fields() {
        assert_eq!(columns(users()), COLUMNS);
        let id = RecordId::new("recU1").unwrap();
        assert_eq!(
            fetch(users(), &id),
            Statement {
                sql: format!(r#"SELECT {COLUMNS} FROM "Users" WHERE "id" = $1"#),
                binds: vec![text("recU1")],
            }
        );
    }

    #[test]
    fn batches_are_one_in_list() {
        let ids = ["recA", "recB", "recC"].map(|id| RecordId::new(id).unwrap());
        let stmt = fetch_many(users(), &ids);
        assert_eq!(
            stmt.sql,
            format!(r#"SELECT {COLUMNS} FROM "Users" WHERE "id" IN ($1, $2, $3)"#)
        );
        assert_eq!(stmt.binds, vec![text("recA"), text("recB"), text("recC")]);
        let stmt = exists_many(users(), &ids[..2]);
        assert_eq!(stmt.sql, r#"SELECT "id" FROM "Users" WHERE "id" IN ($1, $2)"#);
        assert_eq!(
            delete(users(), &ids[0]).sql,
            r#"DELETE FROM "Users" WHERE "id" = $1 RETURNING *"#
        );
    }

    #[test]
    fn recent_ids_newest_first() {
        let stmt = recent_ids(users(), Some(10));
        assert_eq!(stmt.sql, r#"SELECT "id" FROM "Users" ORDER BY "id" DESC LIMIT $1"#);
        assert_eq!(stmt.binds, vec![Bind::Int(10)]);
        let mut created = FieldSchema::scalar("created_at", "DateTime<Utc>");
        created.sortable = true;
        let events = EntitySchema::builder("events")
            .source_table("Events")
            .field(created)
            .build();
        assert_eq!(
            recent_ids(&events, None).sql,
            r#"SELECT "id" FROM "Events" ORDER BY "created_at" DESC NULLS LAST, "id" DESC"#
        );
    }

    #[test]
    fn lowercase_index_compares_normalised_column() {
        let stmt = query(
            Dialect::Sqlite,
            users(),
            &source_query(&[("email", " ÉVA@X.ORG\t")], None),
        )
        .unwrap();
        assert_eq!(
            stmt.sql,
            format!(r#"SELECT {COLUMNS} FROM "Users" WHERE "email_normalized" = $1 ORDER BY "id" ASC"#)
        );
        assert_eq!(stmt.binds, vec![text("éva@x.org")]);
        assert_eq!(normalized_column(field("email")).as_deref(), Some("email_normalized"));
        assert_eq!(normalized_column(field("age")), None);
    }

    #[test]
    fn inserts_fill_the_normalised_columns_as_the_cache_normalises() {
        let rows = [
            vec![text("recU1"), text(" ÉVA@X.ORG\t"), text("Éva")],
            vec![text("recU2"), text("Ada@x.org"), Bind::Null],
        ];
        let stmt = insert(users(), &["id", "email", "name"], &rows);
        assert_eq!(
            stmt.sql,
            r#"INSERT INTO "Users" ("id", "email", "name", "email_normalized") VALUES ($1, $2, $3, $4), ($5, $6, $7, $8)"#
        );
        assert_eq!(
            stmt.binds,
            [
                text("recU1"),
                text(" ÉVA@X.ORG\t"),
                text("Éva"),
                text(&IndexKind::Lowercase.normalize(" ÉVA@X.ORG\t".to_owned())),
                text("recU2"),
                text("Ada@x.org"),
                Bind::Null,
                text("ada@x.org"),
            ]
        );
        assert_eq!(stmt.binds[3], text("éva@x.org"));
        let without_email = insert(users(), &["id"], &[vec![text("recU3")]]);
        assert_eq!(without_email.sql, r#"INSERT INTO "Users" ("id") VALUES ($1)"#);
    }

    #[test]
    fn links_filter_on_their_id_column_and_values_are_typed() {
        let stmt = query(
            Dialect::Postgres,
            users(),
            &source_query(&[("admin", "true"), ("age", "42"), ("team", "recT1")], None),
        )
        .unwrap();
        assert!(
            stmt.sql
                .ends_with(r#"WHERE "admin" = $1 AND "age" = $2 AND "team_id" = $3 ORDER BY "id" ASC"#),
            "{}",
            stmt.sql
        );
        assert_eq!(stmt.binds, vec![Bind::Bool(true), Bind::Int(42), text("recT1")]);
    }

    #[test]
    fn sorts_ties_by_id_in_the_same_direction_with_nulls_first_ascending() {
        let asc = query(Dialect::Sqlite, users(), &source_query(&[], Some(("age", Order::Asc)))).unwrap();
        assert!(
            asc.sql
                .ends_with(r#"FROM "Users" ORDER BY "age" ASC NULLS FIRST, "id" ASC"#),
            "{}",
            asc.sql
        );
        let desc = query(Dialect::Sqlite, users(), &source_query(&[], Some(("age", Order::Desc)))).unwrap();
        assert!(
            desc.sql.ends_with(r#"ORDER BY "age" DESC NULLS LAST, "id" DESC"#),
            "{}",
            desc.sql
        );
    }

    #[test]
    fn pages() {
        let mut q = source_query(&[("team", "recT1")], Some(("age", Order::Desc)));
        q.offset = 20;
        q.limit = Some(10);
        let stmt = query(Dialect::Sqlite, users(), &q).unwrap();
        assert!(stmt.sql.ends_with(r#""id" DESC LIMIT $2 OFFSET $3"#), "{}", stmt.sql);
        assert_eq!(stmt.binds, vec![text("recT1"), Bind::Int(10), Bind::Int(20)]);

        q.limit = None;
        let sqlite = query(Dialect::Sqlite, users(), &q).unwrap();
        assert!(sqlite.sql.ends_with(" LIMIT -1 OFFSET $2"), "{}", sqlite.sql);
        let postgres = query(Dialect::Postgres, users(), &q).unwrap();
        assert!(postgres.sql.ends_with(r#""id" DESC OFFSET $2"#), "{}", postgres.sql);

        q.offset = 0;
        let unpaged = query(Dialect::Postgres, users(), &q).unwrap();
        assert!(unpaged.sql.ends_with(r#""id" DESC"#), "{}", unpaged.sql);
        assert_eq!(unpaged.binds, vec![text("recT1")]);
    }

    #[test]
    fn refuses_what_sql_cannot_compare() {
        let err = query(Dialect::Sqlite, users(), &source_query(&[("friends", "recU1")], None)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "users.friends is a multi-record link and cannot be filtered on"
        );
        let err = query(Dialect::Sqlite, users(), &source_query(&[("age", "old")], None)).unwrap_err();
        assert_eq!(err.to_string(), "users.age is a Option<u32>; `old` is not one");
    }
}
