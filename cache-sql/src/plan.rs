//! One entity's statements, built once from its schema and its table's columns, checked
//! against the table at start-up: what the origin runs, in either dialect.
//!
//! Results are ordered exactly as the cache orders them ([`cache_core::order`]): by the sort
//! field's *score* (the `f64` a [`SortKey`](cache_core::SortKey) gives: numbers as `f64`,
//! timestamps as whole milliseconds, an absent value `-inf`), then by the id's text compared
//! byte by byte, both in the query's direction. Ordering by the native column instead would
//! part from the cache on ties below a millisecond, on integer ids (`9` after `10` as text) and
//! on collations.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
};

use cache_core::{EntitySchema, FieldKind, FieldSchema, IndexKind, Order, SourceQuery};

use crate::{
    Dialect, SqlError,
    columns::{Column, ColumnClass, Columns},
};

/// The suffix of the column that holds a lowercase-indexed field as the cache normalises it:
/// `email` is looked up in `email_normalized`.
pub const NORMALIZED_SUFFIX: &str = "_normalized";

/// The most query shapes (filter fields and sort) kept per entity; others are built per call.
const MAX_QUERY_SHAPES: usize = 256;

/// A column the origin selects: its source name and how its values are read.
#[derive(Debug, Clone)]
pub(crate) struct Selected {
    pub(crate) name: &'static str,
    pub(crate) class: ColumnClass,
    /// A multi-record link: a text value holds a JSON list.
    pub(crate) links: bool,
}

/// How one filter's value is bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FilterBind {
    /// The value as text (PostgreSQL casts it to the column's type).
    Text,
    /// An integer: only its canonical text (`42`, not `042`) can equal an index value.
    Integer,
    /// `true` / `false` (SQLite: 1 / 0).
    Bool,
    /// A UUID: only its canonical lower-case text can equal an index value.
    Uuid,
    /// A number: only text that reads as one can equal a value.
    Number,
    /// The value normalised as the cache normalises it, against the normalised column.
    Normalized(IndexKind),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Shape {
    filters: Vec<&'static str>,
    sort: Option<(&'static str, bool)>,
}

/// The statements of one entity.
#[derive(Debug)]
pub(crate) struct Plan {
    pub(crate) schema: &'static EntitySchema,
    pub(crate) dialect: Dialect,
    /// A table (not a view): it can take the outbox's triggers.
    pub(crate) is_table: bool,
    /// The id column's class (integer, uuid or text).
    pub(crate) key: ColumnClass,
    /// SQLite: the selected columns, id first.
    pub(crate) selected: Vec<Selected>,
    pub(crate) fetch: Arc<str>,
    pub(crate) fetch_many: Arc<str>,
    pub(crate) exists_many: Arc<str>,
    pub(crate) delete: Arc<str>,
    /// The filter binds by field name.
    filter_binds: HashMap<&'static str, FilterBind>,
    /// The score expression by sortable field name.
    scores: HashMap<&'static str, String>,
    /// The version field's column and its class, if the model has one.
    pub(crate) version_column: Option<(&'static str, ColumnClass)>,
    /// The head of every query: `SELECT … FROM …`.
    select: String,
    queries: Mutex<HashMap<Shape, Arc<str>>>,
    columns: Columns,
}

impl Plan {
    /// Checks the table against the schema and builds the statements.
    pub(crate) fn new(
        dialect: Dialect,
        schema: &'static EntitySchema,
        columns: Columns,
        is_table: bool,
    ) -> Result<Self, SqlError> {
        let table = schema.source_table;
        if columns.is_empty() {
            return Err(SqlError::NoTable {
                table: table.to_owned(),
                entity: schema.entity,
            });
        }
        let column = |name: &str, field: &'static str| -> Result<&Column, SqlError> {
            columns.get(name).ok_or_else(|| SqlError::NoColumn {
                table: table.to_owned(),
                column: name.to_owned(),
                field,
            })
        };
        let key_column = column(schema.id_field, schema.id_field)?;
        let key = key_column.class;
        if !matches!(key, ColumnClass::Integer | ColumnClass::Uuid | ColumnClass::Text) {
            return Err(SqlError::UnsupportedKey {
                table: table.to_owned(),
                column: schema.id_field.to_owned(),
                declared: key_column.declared.clone(),
            });
        }
        let stored: Vec<&'static FieldSchema> = schema.fields.iter().filter(|f| !f.skipped).collect();
        let mut selected = vec![Selected {
            name: schema.id_field,
            class: key,
            links: false,
        }];
        for field in &stored {
            let c = column(field.source_name, field.name)?;
            selected.push(Selected {
                name: field.source_name,
                class: c.class,
                links: matches!(field.kind, FieldKind::Links { .. }),
            });
        }
        let mut filter_binds = HashMap::new();
        for field in schema.indexed_fields() {
            let c = column(field.source_name, field.name)?;
            let bind = match field.index {
                Some(kind @ IndexKind::Lowercase) => {
                    let normalized = format!("{}{NORMALIZED_SUFFIX}", field.source_name);
                    if !columns.contains_key(&normalized) {
                        return Err(SqlError::NoNormalizedColumn {
                            table: table.to_owned(),
                            column: field.source_name.to_owned(),
                            normalized,
                        });
                    }
                    FilterBind::Normalized(kind)
                }
                _ => match (c.class, dialect) {
                    (ColumnClass::Integer, _) => FilterBind::Integer,
                    (ColumnClass::Bool, _) => FilterBind::Bool,
                    (ColumnClass::Uuid, _) => FilterBind::Uuid,
                    (ColumnClass::Number, _) => FilterBind::Number,
                    (ColumnClass::Text, _) => FilterBind::Text,
                    (ColumnClass::Timestamp | ColumnClass::Json | ColumnClass::Array, _) => {
                        return Err(SqlError::NotIndexable {
                            table: table.to_owned(),
                            column: field.source_name.to_owned(),
                            declared: c.declared.clone(),
                        });
                    }
                },
            };
            filter_binds.insert(field.name, bind);
        }
        let mut scores = HashMap::new();
        let version = schema.version_field.and_then(|name| schema.field(name));
        for field in schema.sortable_fields().chain(version) {
            let c = column(field.source_name, field.name)?;
            if !c.class.sortable() {
                return Err(SqlError::NotSortable {
                    table: table.to_owned(),
                    column: field.source_name.to_owned(),
                    declared: c.declared.clone(),
                });
            }
            scores.insert(field.name, score(dialect, &col(dialect, field.source_name), c.class));
        }

        let q = |name: &str| dialect.quote(name);
        let id = col(dialect, schema.id_field);
        let list = match dialect {
            Dialect::Postgres => {
                let mut list = format!("{id}::text AS {}", q(schema.id_field));
                for field in &stored {
                    list.push_str(", ");
                    list.push_str(&pg_select(field.source_name, &columns[field.source_name]));
                }
                list
            }
            Dialect::Sqlite => selected.iter().map(|s| q(s.name)).collect::<Vec<_>>().join(", "),
        };
        let from = match dialect {
            Dialect::Postgres => format!("SELECT {list} FROM {} AS __t", q(table)),
            Dialect::Sqlite => format!("SELECT {list} FROM {}", q(table)),
        };
        let (one, many) = match dialect {
            // A text key is compared as text: a cast to `varchar(20)` would cut a longer id
            // down to one that matches another row.
            Dialect::Postgres if key == ColumnClass::Text => (format!("{id} = $1"), format!("{id} = ANY($1)")),
            Dialect::Postgres => (
                format!("{id} = CAST($1 AS {})", key_column.declared),
                format!("{id} = ANY(CAST($1 AS {}[]))", key_column.declared),
            ),
            Dialect::Sqlite => (
                format!("{id} = $1"),
                format!("{id} IN (SELECT value FROM json_each($1))"),
            ),
        };
        let table_ref = match dialect {
            Dialect::Postgres => format!("{} AS __t", q(table)),
            Dialect::Sqlite => q(table),
        };
        let id_text = id_text(dialect, schema.id_field);
        let version_expr = match version.and_then(|v| scores.get(v.name)) {
            // The version as the cache reads it: an absent version is no version, not -inf.
            Some(_) => {
                let v = version.map(|v| v.source_name).unwrap_or_default();
                raw_score(dialect, &col(dialect, v), columns[v].class)
            }
            None => match dialect {
                Dialect::Postgres => "NULL::float8".to_owned(),
                Dialect::Sqlite => "NULL".to_owned(),
            },
        };
        Ok(Self {
            schema,
            dialect,
            is_table,
            key,
            selected,
            fetch: format!("{from} WHERE {one}").into(),
            fetch_many: format!("{from} WHERE {many}").into(),
            exists_many: format!("SELECT {id_text} FROM {table_ref} WHERE {many}").into(),
            // The version first, then the row as a fetch selects it.
            delete: format!("DELETE FROM {table_ref} WHERE {one} RETURNING {version_expr}, {list}").into(),
            filter_binds,
            scores,
            version_column: version.map(|v| (v.source_name, columns[v.source_name].class)),
            select: from,
            queries: Mutex::new(HashMap::new()),
            columns,
        })
    }

    /// How a filter on `field` is bound; `None` when the field is not indexed.
    pub(crate) fn filter_bind(&self, field: &str) -> Option<FilterBind> {
        self.filter_binds.get(field).copied()
    }

    /// The statement for a query's shape: filters bound as `$1…$n`, then the limit and the
    /// offset. Kept per shape, up to a bound.
    pub(crate) fn query(&self, query: &SourceQuery) -> Result<Arc<str>, SqlError> {
        let shape = Shape {
            filters: query.filters.iter().map(|f| f.field.name).collect(),
            sort: query.sort.map(|(f, o)| (f.name, o == Order::Desc)),
        };
        let mut queries = self.queries.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(sql) = queries.get(&shape) {
            return Ok(Arc::clone(sql));
        }
        let sql: Arc<str> = self.build_query(&shape)?.into();
        if queries.len() < MAX_QUERY_SHAPES {
            queries.insert(shape, Arc::clone(&sql));
        }
        Ok(sql)
    }

    fn build_query(&self, shape: &Shape) -> Result<String, SqlError> {
        let d = self.dialect;
        let table = self.schema.source_table;
        let mut conditions = Vec::with_capacity(shape.filters.len());
        for (i, name) in shape.filters.iter().enumerate() {
            let field = self.schema.field(name).ok_or_else(|| SqlError::NotFilterable {
                table: table.to_owned(),
                field: (*name).to_owned(),
            })?;
            let bind = self.filter_bind(name).ok_or_else(|| SqlError::NotFilterable {
                table: table.to_owned(),
                field: (*name).to_owned(),
            })?;
            let n = i + 1;
            conditions.push(match (bind, d) {
                (FilterBind::Normalized(_), _) => {
                    format!(
                        "{} = ${n}",
                        col(d, &format!("{}{NORMALIZED_SUFFIX}", field.source_name))
                    )
                }
                (_, Dialect::Postgres) => {
                    let declared = &self.columns[field.source_name].declared;
                    if is_pg_text(declared) {
                        // Compared as text: a cast to `varchar(20)` would cut a longer value
                        // down to one that matches.
                        format!("{} = ${n}", col(d, field.source_name))
                    } else {
                        // Numbers, bools, uuids, enums: the value cast to the column's type.
                        format!("{} = CAST(${n} AS {declared})", col(d, field.source_name))
                    }
                }
                (_, Dialect::Sqlite) => format!("{} = ${n}", col(d, field.source_name)),
            });
        }
        let mut sql = self.select.clone();
        if !conditions.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&conditions.join(" AND "));
        }
        let id = id_text(d, self.schema.id_field);
        let id = match d {
            Dialect::Postgres => format!("{id} COLLATE \"C\""),
            Dialect::Sqlite => id,
        };
        match shape.sort {
            Some((name, desc)) => {
                let score = self.scores.get(name).ok_or_else(|| SqlError::NotSortableField {
                    table: table.to_owned(),
                    field: name.to_owned(),
                })?;
                let dir = if desc { "DESC" } else { "ASC" };
                sql.push_str(&format!(" ORDER BY {score} {dir}, {id} {dir}"));
            }
            None => sql.push_str(&format!(" ORDER BY {id} ASC")),
        }
        let n = shape.filters.len();
        sql.push_str(&format!(" LIMIT ${} OFFSET ${}", n + 1, n + 2));
        Ok(sql)
    }
}

/// Whether a PostgreSQL type is one of the character types, which compare with `text`.
fn is_pg_text(declared: &str) -> bool {
    declared == "text" || declared == "name" || declared.starts_with("character")
}

/// A column of the entity's table, as statements name it.
fn col(dialect: Dialect, name: &str) -> String {
    match dialect {
        Dialect::Postgres => format!("__t.{}", dialect.quote(name)),
        Dialect::Sqlite => dialect.quote(name),
    }
}

/// The id as text, as the cache orders and names ids.
fn id_text(dialect: Dialect, id: &str) -> String {
    match dialect {
        Dialect::Postgres => format!("{}::text", col(dialect, id)),
        Dialect::Sqlite => format!("CAST({} AS TEXT)", col(dialect, id)),
    }
}

/// A selected column on PostgreSQL, in the form the origin decodes: integers as `int8`,
/// bools as `bool`, numbers as their exact text, timestamps as RFC 3339 text in UTC (a
/// timestamp without time zone is taken as UTC) whatever the session's time zone, JSON and
/// arrays as JSON text, everything else (text, uuids, enums) as text.
fn pg_select(name: &str, column: &Column) -> String {
    let c = col(Dialect::Postgres, name);
    let alias = Dialect::Postgres.quote(name);
    let rfc3339 = "'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'";
    match column.class {
        ColumnClass::Integer => format!("{c}::int8 AS {alias}"),
        ColumnClass::Bool => format!("{c} AS {alias}"),
        ColumnClass::Timestamp if column.naive_time || column.declared == "date" => {
            format!("to_char({c}, {rfc3339}) AS {alias}")
        }
        ColumnClass::Timestamp => format!("to_char({c} AT TIME ZONE 'UTC', {rfc3339}) AS {alias}"),
        ColumnClass::Json | ColumnClass::Array => format!("to_json({c})::text AS {alias}"),
        ColumnClass::Number | ColumnClass::Uuid | ColumnClass::Text => format!("{c}::text AS {alias}"),
    }
}

/// The score of a sortable column as the cache computes it, `NULL` when absent.
pub(crate) fn raw_score(dialect: Dialect, c: &str, class: ColumnClass) -> String {
    match (dialect, class) {
        (Dialect::Postgres, ColumnClass::Timestamp) => format!("floor(extract(epoch FROM {c}) * 1000)::float8"),
        // A NaN scores as an absent value, as `SortKey` scores it.
        (Dialect::Postgres, _) => format!("NULLIF(CAST({c} AS float8), 'NaN'::float8)"),
        (Dialect::Sqlite, ColumnClass::Timestamp) => sqlite_millis(c),
        // SQLite stores a NaN as NULL.
        (Dialect::Sqlite, _) => format!("CAST({c} AS REAL)"),
    }
}

/// The score of a sortable column as the cache orders it: an absent value is `-inf`.
fn score(dialect: Dialect, c: &str, class: ColumnClass) -> String {
    match dialect {
        Dialect::Postgres => format!("COALESCE({}, '-Infinity'::float8)", raw_score(dialect, c, class)),
        Dialect::Sqlite => format!("COALESCE({}, -9e999)", raw_score(dialect, c, class)),
    }
}

/// Whole milliseconds since the epoch of an ISO-8601 text, rounded down as
/// `DateTime::timestamp_millis` rounds: SQLite's own `unixepoch(…, 'subsec')` rounds the
/// fraction to the nearest millisecond, so the seconds are read without the fraction and its
/// first three digits are added.
fn sqlite_millis(c: &str) -> String {
    let dot = format!("instr({c}, '.')");
    let rest = format!("substr({c}, {dot} + 1)");
    let suffix = format!("ltrim({rest}, '0123456789')");
    let digits = format!("substr({rest}, 1, length({rest}) - length({suffix}))");
    format!(
        "(CASE WHEN {dot} = 0 THEN unixepoch({c}) * 1000.0 \
         ELSE unixepoch(substr({c}, 1, {dot} - 1) || {suffix}) * 1000.0 \
         + CAST(substr({digits} || '00', 1, 3) AS INTEGER) END)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The expression against real SQLite agrees with `DateTime::timestamp_millis`.
    #[tokio::test]
    async fn sqlite_millis_round_down_as_chrono_does() {
        let pool = sqlx::SqlitePool::connect("sqlite::memory:")
            .await
            .expect("SQLite opens");
        let sql = format!("SELECT {}", sqlite_millis("$1"));
        for text in [
            "2024-05-01T10:00:00Z",
            "2024-05-01T10:00:00.5Z",
            "2024-05-01T10:00:00.123999Z",
            "2024-05-01T10:00:00.9999+02:00",
            "2024-05-01T10:00:00.1234567-05:30",
            "1969-12-31T23:59:59.25Z",
        ] {
            let want = chrono::DateTime::parse_from_rfc3339(text)
                .expect("RFC 3339")
                .timestamp_millis();
            let got: f64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.clone()))
                .bind(text)
                .fetch_one(&pool)
                .await
                .expect("SQLite answers");
            assert_eq!(got, want as f64, "{text}");
        }
    }
}
