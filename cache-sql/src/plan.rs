//! One entity's statements, built once from its schema and its table's columns, checked
//! against the table at start-up: what the origin runs, in either dialect.
//!
//! Results are ordered exactly as the cache orders them ([`cache_core::order`]): by the sort
//! field's *score* (the `f64` a [`SortKey`](cache_core::schema::SortKey) gives: numbers as `f64`,
//! timestamps as whole milliseconds, an absent value `-inf`), then by the id's text compared
//! byte by byte, both in the query's direction. Ordering by the native column instead would
//! part from the cache on ties below a millisecond, on integer ids (`9` after `10` as text) and
//! on collations.
//!
//! What costs a query its time beyond a hand-written statement (measured by the benchmark
//! report's SQL lines) is neither the score nor the id's order: it is converting values on the
//! server and, on SQLite, a `LIMIT` clause (SQLite then sorts into a bounded b-tree instead of
//! its sorter). So a query the cache sends unpaged (every fill) has no `LIMIT`/`OFFSET`, and
//! PostgreSQL sends timestamps and text arrays as they are stored (binary), read here exactly
//! as the server's `to_char`/`to_json` would have written them ([`pg_timestamp_text`],
//! [`pg_text_array`]).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
};

use cache_core::{
    Order,
    origin::SourceQuery,
    schema::{EntitySchema, FieldKind, FieldSchema, IndexKind},
};
use serde_json::Value;

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
    /// PostgreSQL sends it as stored, for the origin to convert (else the statement converts
    /// it, [`pg_select`]).
    pub(crate) stored: Option<PgStored>,
}

/// A PostgreSQL column selected as stored: converting it on the server is what a query spent
/// its time on beyond a hand-written statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PgStored {
    /// A `timestamp` or `timestamptz`: microseconds since 2000-01-01, read with
    /// [`pg_timestamp_text`].
    Timestamp,
    /// A `text[]` or `varchar[]`, read with [`pg_text_array`].
    TextArray,
}

impl PgStored {
    /// Whether `column` is sent as stored.
    fn of(column: &Column) -> Option<Self> {
        let d = column.declared.as_str();
        match column.class {
            ColumnClass::Timestamp if d.starts_with("timestamp") => Some(Self::Timestamp),
            ColumnClass::Array
                if d == "text[]"
                    || (d.starts_with("character varying") && d.ends_with("[]") && !d.ends_with("[][]")) =>
            {
                Some(Self::TextArray)
            }
            _ => None,
        }
    }
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
    /// With `LIMIT` and `OFFSET` (see [`paged`]).
    paged: bool,
}

/// Whether a query's statement takes a limit and an offset (bound after the filters): not
/// when it asks for every row, as the cache's fills do.
pub(crate) fn paged(query: &SourceQuery) -> bool {
    query.limit.is_some() || query.offset > 0
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
            stored: None,
        }];
        for field in &stored {
            let c = column(field.source_name, field.name)?;
            selected.push(Selected {
                name: field.source_name,
                class: c.class,
                links: matches!(field.kind, FieldKind::Links { .. }),
                stored: PgStored::of(c),
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
        // A key column already of text needs no cast: the rows' ids are read as they are.
        let id_selected = match stores_text(dialect, &key_column.declared) {
            true => col(dialect, schema.id_field),
            false => id_text(dialect, schema.id_field),
        };
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
            exists_many: format!("SELECT {id_selected} FROM {table_ref} WHERE {many}").into(),
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

    /// The statement for a query's shape: filters bound as `$1…$n`, then, when it is
    /// [`paged`], the limit and the offset. Kept per shape, up to a bound.
    pub(crate) fn query(&self, query: &SourceQuery) -> Result<Arc<str>, SqlError> {
        let shape = Shape {
            filters: query.filters.iter().map(|f| f.field.name).collect(),
            sort: query.sort.map(|(f, o)| (f.name, o == Order::Desc)),
            paged: paged(query),
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
        if shape.paged {
            let n = shape.filters.len();
            sql.push_str(&format!(" LIMIT ${} OFFSET ${}", n + 1, n + 2));
        }
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
/// Whether every value of a column declared `declared` is text: PostgreSQL's `text` and
/// `character varying`; on SQLite a declared type of TEXT affinity (it names `CHAR`, `CLOB` or
/// `TEXT` and not `INT`), which stores numbers given to it as text.
fn stores_text(dialect: Dialect, declared: &str) -> bool {
    let declared = declared.to_ascii_uppercase();
    match dialect {
        Dialect::Postgres => declared == "TEXT" || declared.starts_with("CHARACTER VARYING"),
        Dialect::Sqlite => !declared.contains("INT") && ["CHAR", "CLOB", "TEXT"].iter().any(|t| declared.contains(t)),
    }
}

fn id_text(dialect: Dialect, id: &str) -> String {
    match dialect {
        Dialect::Postgres => format!("{}::text", col(dialect, id)),
        Dialect::Sqlite => format!("CAST({} AS TEXT)", col(dialect, id)),
    }
}

/// A selected column on PostgreSQL, in the form the origin decodes: integers as `int8`,
/// bools as `bool`, numbers as their exact text, dates as RFC 3339 text, JSON and arrays as
/// JSON text, everything else (text, uuids, enums) as text; timestamps and text arrays as they
/// are stored ([`PgStored`]), for the origin to write as the server would have (RFC 3339 text
/// in UTC, a timestamp without time zone taken as UTC, whatever the session's time zone; a
/// JSON list).
fn pg_select(name: &str, column: &Column) -> String {
    let c = col(Dialect::Postgres, name);
    let alias = Dialect::Postgres.quote(name);
    let rfc3339 = "'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'";
    if PgStored::of(column).is_some() {
        return format!("{c} AS {alias}");
    }
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

/// PostgreSQL's epoch, 2000-01-01, in days after 1970-01-01.
const PG_EPOCH_DAYS: i64 = 10_957;

/// A `timestamp`/`timestamptz` sent as stored (microseconds since 2000-01-01, UTC for a
/// `timestamptz`), as `to_char(…, 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')` writes it: on the
/// proleptic Gregorian calendar, a year before 1 AD as its BC number without a sign, a year
/// past 9999 in full, and nothing for `infinity` and `-infinity` (`to_char` answers `NULL`).
pub(crate) fn pg_timestamp_text(micros: i64) -> Option<String> {
    const DAY: i64 = 86_400_000_000;
    if micros == i64::MAX || micros == i64::MIN {
        return None;
    }
    let (days, of_day) = (micros.div_euclid(DAY), micros.rem_euclid(DAY));
    // Howard Hinnant's `civil_from_days`, counted from 0000-03-01.
    let z = days + PG_EPOCH_DAYS + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    // Astronomical year 0 is 1 BC.
    let year = if year <= 0 { 1 - year } else { year };
    let (seconds, fraction) = (of_day / 1_000_000, of_day % 1_000_000);
    // Written digit by digit: `format!`'s padding took a fifth of a leaderboard read's decoding.
    let mut text = String::with_capacity(27);
    for (value, width, after) in [
        (year, 4, '-'),
        (month, 2, '-'),
        (day, 2, 'T'),
        (seconds / 3_600, 2, ':'),
        (seconds / 60 % 60, 2, ':'),
        (seconds % 60, 2, '.'),
        (fraction, 6, 'Z'),
    ] {
        push_padded(&mut text, value.unsigned_abs(), width);
        text.push(after);
    }
    Some(text)
}

/// Writes `n` in decimal, zero-padded to `width` digits (more when it needs them).
fn push_padded(out: &mut String, mut n: u64, width: usize) {
    let mut digits = [b'0'; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let start = start.min(digits.len().saturating_sub(width));
    out.extend(digits[start..].iter().map(|&d| char::from(d)));
}

/// A `text[]`/`varchar[]` sent as stored (PostgreSQL's binary array format), as `to_json`
/// writes it: one nested list a dimension, bounds ignored, `NULL` elements as `null`.
pub(crate) fn pg_text_array(bytes: &[u8]) -> Result<Value, String> {
    /// `text` and `varchar`.
    const TEXT_OIDS: [u32; 2] = [25, 1043];
    fn int(rest: &mut &[u8]) -> Result<i32, String> {
        let (head, tail) = rest.split_first_chunk::<4>().ok_or("a truncated array")?;
        *rest = tail;
        Ok(i32::from_be_bytes(*head))
    }
    let rest = &mut &bytes[..];
    let dimensions = int(rest)?;
    let _has_nulls = int(rest)?;
    let element = u32::from_be_bytes(int(rest)?.to_be_bytes());
    if !TEXT_OIDS.contains(&element) {
        return Err(format!("an array of type oid {element}, not of text"));
    }
    let mut lengths = Vec::new();
    for _ in 0..dimensions {
        lengths.push(usize::try_from(int(rest)?).map_err(|_| "a negative array length")?);
        let _lower_bound = int(rest)?;
    }
    let count = match lengths.is_empty() {
        true => 0,
        false => lengths
            .iter()
            .try_fold(1_usize, |n, &length| n.checked_mul(length))
            .ok_or("an array too large")?,
    };
    let mut elements = Vec::with_capacity(count.min(rest.len() / 4));
    for _ in 0..count {
        // -1 is NULL.
        let Ok(length) = usize::try_from(int(rest)?) else {
            elements.push(Value::Null);
            continue;
        };
        let (text, tail) = rest.split_at_checked(length).ok_or("a truncated array element")?;
        *rest = tail;
        let text = std::str::from_utf8(text).map_err(|e| format!("an element is not UTF-8: {e}"))?;
        elements.push(Value::String(text.to_owned()));
    }
    if !rest.is_empty() {
        return Err("bytes after the array".to_owned());
    }
    // The elements come in row-major order: group them, innermost dimension first.
    for &length in lengths.iter().skip(1).rev() {
        let mut items = elements.into_iter();
        let mut grouped = Vec::with_capacity(items.len() / length.max(1));
        while items.len() > 0 {
            grouped.push(Value::Array(items.by_ref().take(length).collect()));
        }
        elements = grouped;
    }
    Ok(Value::Array(elements))
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
    use sqlx::{Row, ValueRef};

    use super::*;

    #[test]
    fn only_text_key_columns_are_read_without_a_cast() {
        for declared in ["text", "character varying(64)", "character varying"] {
            assert!(stores_text(Dialect::Postgres, declared), "{declared}");
        }
        for declared in ["uuid", "bigint", "citext", "character(8)", "my_enum"] {
            assert!(!stores_text(Dialect::Postgres, declared), "{declared}");
        }
        for declared in ["TEXT", "varchar(20)", "NCHAR(5)", "clob"] {
            assert!(stores_text(Dialect::Sqlite, declared), "{declared}");
        }
        // No declared type (BLOB affinity) keeps integers as integers; `INT` wins over `CHAR`.
        for declared in ["", "BLOB", "INTEGER", "CHARINT", "NUMERIC"] {
            assert!(!stores_text(Dialect::Sqlite, declared), "{declared}");
        }
    }

    /// Microseconds since PostgreSQL's epoch of a calendar date and time (astronomical years:
    /// 0 is 1 BC).
    fn pg_micros(year: i32, month: u32, day: u32, hms: (u32, u32, u32), micro: u32) -> i64 {
        let at = chrono::NaiveDate::from_ymd_opt(year, month, day)
            .and_then(|d| d.and_hms_micro_opt(hms.0, hms.1, hms.2, micro))
            .expect("a valid date");
        at.and_utc().timestamp_micros() - PG_EPOCH_DAYS * 86_400_000_000
    }

    #[test]
    fn pg_timestamps_read_as_to_char_writes_them() {
        // Over the years chrono and `to_char` write alike, every ~3 days and a few hours.
        let first = pg_micros(1, 1, 1, (0, 0, 0), 0);
        let last = pg_micros(9999, 12, 31, (23, 59, 59), 999_999);
        let step = 270_000_000_007_i64;
        let mut at = first;
        while at <= last {
            let want = chrono::DateTime::from_timestamp_micros(at + PG_EPOCH_DAYS * 86_400_000_000)
                .expect("in chrono's range")
                .format("%Y-%m-%dT%H:%M:%S%.6fZ")
                .to_string();
            assert_eq!(pg_timestamp_text(at).as_deref(), Some(want.as_str()), "{at}");
            at += step;
        }
        // What `to_char` writes where chrono differs (psql, PostgreSQL 15).
        for (micros, want) in [
            (pg_micros(-43, 3, 15, (12, 0, 0), 0), "0044-03-15T12:00:00.000000Z"),
            (pg_micros(0, 1, 1, (0, 0, 0), 0), "0001-01-01T00:00:00.000000Z"),
            (pg_micros(-4712, 1, 1, (0, 0, 0), 0), "4713-01-01T00:00:00.000000Z"),
            (
                pg_micros(12345, 6, 7, (8, 9, 10), 500_000),
                "12345-06-07T08:09:10.500000Z",
            ),
            (
                pg_micros(1999, 12, 31, (23, 59, 59), 999_999),
                "1999-12-31T23:59:59.999999Z",
            ),
            (0, "2000-01-01T00:00:00.000000Z"),
        ] {
            assert_eq!(pg_timestamp_text(micros).as_deref(), Some(want));
        }
        assert_eq!(pg_timestamp_text(i64::MAX), None, "infinity");
        assert_eq!(pg_timestamp_text(i64::MIN), None, "-infinity");
    }

    /// PostgreSQL's binary array of `text` (oid 25): dimensions as (length, lower bound).
    fn binary_array(dimensions: &[(i32, i32)], elements: &[Option<&str>]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend(i32::try_from(dimensions.len()).expect("few").to_be_bytes());
        out.extend(i32::from(elements.contains(&None)).to_be_bytes());
        out.extend(25_u32.to_be_bytes());
        for (length, lower) in dimensions {
            out.extend(length.to_be_bytes());
            out.extend(lower.to_be_bytes());
        }
        for element in elements {
            match element {
                Some(text) => {
                    out.extend(i32::try_from(text.len()).expect("short").to_be_bytes());
                    out.extend(text.as_bytes());
                }
                None => out.extend((-1_i32).to_be_bytes()),
            }
        }
        out
    }

    #[test]
    fn pg_text_arrays_read_as_to_json_writes_them() {
        let read = |dimensions: &[(i32, i32)], elements: &[Option<&str>]| {
            pg_text_array(&binary_array(dimensions, elements)).expect("an array")
        };
        assert_eq!(read(&[], &[]), serde_json::json!([]));
        assert_eq!(read(&[(2, 1)], &[Some("a"), None]), serde_json::json!(["a", null]));
        assert_eq!(read(&[(2, 2)], &[Some("a"), Some("b")]), serde_json::json!(["a", "b"]));
        assert_eq!(
            read(&[(2, 1), (2, 1)], &[Some("a"), None, Some("c d"), Some("\\")]),
            serde_json::json!([["a", null], ["c d", "\\"]])
        );
        assert_eq!(
            read(&[(1, 1), (2, 1), (1, 1)], &[Some("a"), Some("b")]),
            serde_json::json!([[["a"], ["b"]]])
        );
        let mut ints = binary_array(&[(1, 1)], &[Some("1234")]);
        ints[8..12].copy_from_slice(&23_u32.to_be_bytes());
        assert!(pg_text_array(&ints).is_err(), "an int4 array is not read as text");
        let whole = binary_array(&[(2, 1)], &[Some("ab"), Some("cd")]);
        assert!(pg_text_array(&whole[..whole.len() - 1]).is_err(), "truncated");
    }

    /// The server agrees: what it sends as stored reads as what `to_char` and `to_json` write.
    #[tokio::test]
    async fn postgres_values_read_as_the_server_writes_them() {
        let Ok(url) = std::env::var("TEST_POSTGRES_URL") else {
            eprintln!("TEST_POSTGRES_URL is unset: skipping the PostgreSQL test");
            return;
        };
        let pool = sqlx::PgPool::connect(&url).await.expect("PostgreSQL answers");
        let sql = "SELECT v, to_char(v AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), \
                   v::text::timestamp, to_char(v::text::timestamp, 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') \
                   FROM (SELECT CAST($1 AS timestamptz) AS v) t";
        for text in [
            "infinity",
            "-infinity",
            "0044-03-15 12:00:00+00 BC",
            "0001-01-01 00:00:00+00 BC",
            "4713-01-01 00:00:00+00 BC",
            "0001-01-01 00:00:00+00",
            "1969-12-31 23:59:59.999999+00",
            "2000-01-01 00:00:00+00",
            "2024-02-29 23:59:59.123456+00",
            "2024-05-01 10:00:00.5+02",
            "12345-06-07 08:09:10.5+00",
            "294276-12-31 23:59:59.999999+00",
        ] {
            let row = sqlx::query(sql)
                .bind(text)
                .fetch_one(&pool)
                .await
                .expect("PostgreSQL answers");
            for (raw, written) in [(0, 1), (2, 3)] {
                let value = row.try_get_raw(raw).expect("a value");
                let bytes = <[u8; 8]>::try_from(value.as_bytes().expect("binary")).expect("8 bytes");
                let want: Option<String> = row.try_get(written).expect("text");
                assert_eq!(pg_timestamp_text(i64::from_be_bytes(bytes)), want, "{text}");
            }
        }
        for literal in [
            "'{}'::text[]",
            "'{a,NULL,\"\"}'::text[]",
            "'[2:3]={a,b}'::text[]",
            "'{{a,NULL},{\"c d\",\"\\\\\"}}'::text[]",
            "'{{{a},{b}}}'::text[]",
            "'{\"é ☃\",x}'::varchar(3)[]",
            "ARRAY['x  ']::varchar[]",
        ] {
            let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT v, to_json(v)::text FROM (SELECT {literal} AS v) t"
            )))
            .fetch_one(&pool)
            .await
            .expect("PostgreSQL answers");
            let value = row.try_get_raw(0).expect("a value");
            assert!(!value.is_null());
            let json: String = row.try_get(1).expect("JSON");
            assert_eq!(
                pg_text_array(value.as_bytes().expect("binary")),
                Ok(serde_json::from_str::<Value>(&json).expect("JSON")),
                "{literal}"
            );
        }
    }

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
