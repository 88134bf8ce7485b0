//! What the database says a table (or view) has: its columns and their types, read once at
//! start-up from the catalogue (`pg_attribute`, SQLite's `pragma_table_info`).

use std::collections::HashMap;

use sqlx::{PgPool, Row, SqlitePool};

use crate::{Dialect, SqlError};

/// How the origin treats a column's values, from its declared type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ColumnClass {
    /// `smallint`, `integer`, `bigint` (SQLite: `INT` in the declared type).
    Integer,
    /// `real`, `double precision`, `numeric` (SQLite: `REAL`, `FLOA`, `DOUB`, `NUMERIC`, `DECIMAL`).
    Number,
    /// `boolean` (SQLite: `BOOL` in the declared type; stored as 0 or 1).
    Bool,
    /// `uuid` (PostgreSQL).
    Uuid,
    /// `timestamp`, `timestamptz`, `date` (SQLite: `DATE` or `TIME` in the declared type, the
    /// value ISO-8601 text).
    Timestamp,
    /// `json`, `jsonb` (SQLite: `JSON` in the declared type, the value JSON text).
    Json,
    /// A PostgreSQL array.
    Array,
    /// Anything else: text, enums, domains; compared as text.
    Text,
}

impl ColumnClass {
    /// Whether query results can be ordered by it as the cache orders scores.
    pub(crate) fn sortable(self) -> bool {
        matches!(self, Self::Integer | Self::Number | Self::Timestamp)
    }
}

/// One column as the catalogue describes it.
#[derive(Debug, Clone)]
pub(crate) struct Column {
    /// The declared type as the database spells it (`bigint`, `timestamp with time zone`).
    pub(crate) declared: String,
    /// How values are treated.
    pub(crate) class: ColumnClass,
    /// PostgreSQL: a timestamp without time zone (read as UTC).
    pub(crate) naive_time: bool,
}

/// The columns of one table, by name.
pub(crate) type Columns = HashMap<String, Column>;

/// A catalogue read of `table` that failed.
fn catalogue(table: &str) -> impl Fn(sqlx::Error) -> SqlError + '_ {
    move |source| SqlError::Catalogue {
        table: table.to_owned(),
        source,
    }
}

/// Reads the columns of `table` (resolved through the search path on PostgreSQL); empty when
/// there is no such table or view.
pub(crate) async fn postgres(pool: &PgPool, table: &str) -> Result<Columns, SqlError> {
    let rows = sqlx::query(
        "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), t.typcategory::text \
         FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid \
         WHERE a.attrelid = to_regclass(quote_ident($1)) AND a.attnum > 0 AND NOT a.attisdropped",
    )
    .bind(table)
    .fetch_all(pool)
    .await
    .map_err(catalogue(table))?;
    let mut columns = Columns::new();
    for row in rows {
        let name: String = row.try_get(0).map_err(catalogue(table))?;
        let declared: String = row.try_get(1).map_err(catalogue(table))?;
        let category: String = row.try_get(2).map_err(catalogue(table))?;
        let (class, naive_time) = postgres_class(&declared, &category);
        columns.insert(
            name,
            Column {
                declared,
                class,
                naive_time,
            },
        );
    }
    Ok(columns)
}

fn postgres_class(declared: &str, category: &str) -> (ColumnClass, bool) {
    let class = match declared {
        "smallint" | "integer" | "bigint" => ColumnClass::Integer,
        "real" | "double precision" => ColumnClass::Number,
        d if d.starts_with("numeric") => ColumnClass::Number,
        "boolean" => ColumnClass::Bool,
        "uuid" => ColumnClass::Uuid,
        "json" | "jsonb" => ColumnClass::Json,
        d if d.starts_with("timestamp") || d == "date" => ColumnClass::Timestamp,
        _ if category == "A" => ColumnClass::Array,
        _ => ColumnClass::Text,
    };
    let naive = class == ColumnClass::Timestamp && !declared.contains("with time zone");
    (class, naive)
}

/// Whether `table` is a table (not a view): only tables take the outbox's triggers.
pub(crate) async fn is_table(pool: &crate::SqlPool, table: &str) -> Result<bool, SqlError> {
    let catalogue = catalogue(table);
    let kind: Option<String> = match pool {
        crate::SqlPool::Postgres(pool) => {
            sqlx::query_scalar("SELECT relkind::text FROM pg_class WHERE oid = to_regclass(quote_ident($1))")
                .bind(table)
                .fetch_optional(pool)
                .await
                .map_err(catalogue)?
        }
        crate::SqlPool::Sqlite(pool) => sqlx::query_scalar("SELECT type FROM sqlite_master WHERE name = $1")
            .bind(table)
            .fetch_optional(pool)
            .await
            .map_err(catalogue)?,
    };
    // `r`: an ordinary table, `p`: a partitioned one.
    Ok(matches!(kind.as_deref(), Some("r" | "p" | "table")))
}

/// Reads the columns of `table`; empty when there is no such table or view.
pub(crate) async fn sqlite(pool: &SqlitePool, table: &str) -> Result<Columns, SqlError> {
    let rows = sqlx::query("SELECT name, type FROM pragma_table_info($1)")
        .bind(table)
        .fetch_all(pool)
        .await
        .map_err(catalogue(table))?;
    let mut columns = Columns::new();
    for row in rows {
        let name: String = row.try_get(0).map_err(catalogue(table))?;
        let declared: String = row.try_get(1).map_err(catalogue(table))?;
        let class = sqlite_class(&declared);
        columns.insert(
            name,
            Column {
                declared,
                class,
                naive_time: false,
            },
        );
    }
    Ok(columns)
}

/// SQLite's own affinity rules (<https://sqlite.org/datatype3.html>), refined by the names
/// people give booleans, timestamps and JSON.
fn sqlite_class(declared: &str) -> ColumnClass {
    let d = declared.to_ascii_uppercase();
    if d.contains("BOOL") {
        ColumnClass::Bool
    } else if d.contains("JSON") {
        ColumnClass::Json
    } else if d.contains("DATE") || d.contains("TIME") {
        ColumnClass::Timestamp
    } else if d.contains("INT") {
        ColumnClass::Integer
    } else if d.contains("CHAR") || d.contains("CLOB") || d.contains("TEXT") || d.contains("UUID") {
        ColumnClass::Text
    } else if d.contains("REAL") || d.contains("FLOA") || d.contains("DOUB") || d.contains("NUM") || d.contains("DEC") {
        ColumnClass::Number
    } else {
        ColumnClass::Text
    }
}

impl Dialect {
    /// Quotes an identifier: `"Email Address"`, with embedded quotes doubled.
    pub(crate) fn quote(self, name: &str) -> String {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_declared_types() {
        assert_eq!(sqlite_class("INTEGER"), ColumnClass::Integer);
        assert_eq!(sqlite_class("bigint"), ColumnClass::Integer);
        assert_eq!(sqlite_class("BOOLEAN"), ColumnClass::Bool);
        assert_eq!(sqlite_class("TIMESTAMP"), ColumnClass::Timestamp);
        assert_eq!(sqlite_class("DATETIME"), ColumnClass::Timestamp);
        assert_eq!(sqlite_class("JSON"), ColumnClass::Json);
        assert_eq!(sqlite_class("REAL"), ColumnClass::Number);
        assert_eq!(sqlite_class("NUMERIC(10,2)"), ColumnClass::Number);
        assert_eq!(sqlite_class("TEXT"), ColumnClass::Text);
        assert_eq!(sqlite_class(""), ColumnClass::Text);
    }

    #[test]
    fn postgres_declared_types() {
        assert_eq!(postgres_class("bigint", "N"), (ColumnClass::Integer, false));
        assert_eq!(postgres_class("numeric(10,2)", "N"), (ColumnClass::Number, false));
        assert_eq!(
            postgres_class("timestamp with time zone", "D"),
            (ColumnClass::Timestamp, false)
        );
        assert_eq!(
            postgres_class("timestamp without time zone", "D"),
            (ColumnClass::Timestamp, true)
        );
        assert_eq!(postgres_class("text[]", "A"), (ColumnClass::Array, false));
        assert_eq!(postgres_class("jsonb", "U"), (ColumnClass::Json, false));
        assert_eq!(postgres_class("character varying(20)", "S"), (ColumnClass::Text, false));
    }
}
