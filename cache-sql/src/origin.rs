//! [`SqlOrigin`]: the [`Origin`] over the registered models' tables.

use std::{collections::HashMap, sync::Arc, time::Duration};

use async_trait::async_trait;
use cache_core::{Cacheable, Deletion, EntitySchema, Origin, OriginError, RecordId, SourceQuery, SourceRecord};
use serde_json::{Map, Number, Value};
use sqlx::{
    AssertSqlSafe, Postgres, Row, Sqlite, TypeInfo, ValueRef,
    postgres::PgArguments,
    query::Query,
    sqlite::{SqliteArguments, SqliteRow},
};

use crate::{
    Dialect, SqlError, SqlPool,
    columns::{self, ColumnClass},
    plan::{FilterBind, Plan},
};

/// How long a statement may run before the origin gives up on it, unless the builder says.
pub const DEFAULT_STATEMENT_TIMEOUT: Duration = Duration::from_secs(10);

/// The [`Origin`] for an SQL database: every registered model is read from its
/// `source_table` (a table or a view), its fields from the columns named by their source
/// names, its id from the column named by the id field.
///
/// Built with [`SqlOrigin::builder`], which reads each table's columns and refuses, naming
/// the table and column, what the table cannot answer exactly. Cloning is cheap: clones share
/// the pool and the statements.
#[derive(Debug, Clone)]
pub struct SqlOrigin {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    pool: SqlPool,
    timeout: Duration,
    plans: HashMap<&'static str, Plan>,
}

/// Builds a [`SqlOrigin`]: the pool, the models, the statement timeout.
#[derive(Debug)]
pub struct SqlOriginBuilder {
    pool: SqlPool,
    timeout: Duration,
    entities: Vec<&'static EntitySchema>,
}

impl SqlOrigin {
    /// Starts an origin over `pool` (a `PgPool` or a `SqlitePool`).
    pub fn builder(pool: impl Into<SqlPool>) -> SqlOriginBuilder {
        SqlOriginBuilder {
            pool: pool.into(),
            timeout: DEFAULT_STATEMENT_TIMEOUT,
            entities: Vec::new(),
        }
    }

    /// The pool the origin reads through.
    pub fn pool(&self) -> &SqlPool {
        &self.inner.pool
    }

    /// Every entity's plan.
    pub(crate) fn plans(&self) -> impl Iterator<Item = &Plan> {
        self.inner.plans.values()
    }

    fn plan(&self, entity: &'static EntitySchema) -> Result<&Plan, OriginError> {
        self.inner.plans.get(entity.entity).ok_or_else(|| {
            OriginError::Unsupported(format!(
                "entity `{}` is not registered with the SQL origin (SqlOriginBuilder::model)",
                entity.entity
            ))
        })
    }

    /// Runs `fut` under the statement timeout, naming the table in its errors.
    async fn run<T>(
        &self,
        plan: &Plan,
        fut: impl Future<Output = Result<T, sqlx::Error>>,
    ) -> Result<T, OriginError> {
        let table = plan.schema.source_table;
        match tokio::time::timeout(self.inner.timeout, fut).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(source)) => Err(OriginError::failed(SqlError::Query {
                table: table.to_owned(),
                source,
            })),
            Err(_) => Err(OriginError::failed(SqlError::Timeout {
                table: table.to_owned(),
                after: self.inner.timeout,
            })),
        }
    }

    /// Runs a statement that selects records, with its binds, on the pool.
    async fn records(&self, plan: &Plan, sql: Arc<str>, binds: Vec<Bind>) -> Result<Vec<SourceRecord>, OriginError> {
        match &self.inner.pool {
            SqlPool::Postgres(pool) => {
                let rows = self.run(plan, pg_query(sql, binds).fetch_all(pool)).await?;
                decode_pg_rows(plan, &rows)
            }
            SqlPool::Sqlite(pool) => {
                let rows = self.run(plan, sqlite_query(sql, binds).fetch_all(pool)).await?;
                rows.iter().map(|row| decode_sqlite(plan, row)).collect()
            }
        }
    }

    /// Reads records inside a transaction, on its connection: what the transaction will commit.
    pub(crate) async fn fetch_many_in(
        &self,
        conn: Conn<'_>,
        entity: &'static EntitySchema,
        ids: &[RecordId],
    ) -> Result<Vec<SourceRecord>, OriginError> {
        let plan = self.plan(entity)?;
        let Some(keys) = self.key_list(plan, ids) else {
            return Ok(Vec::new());
        };
        let sql = Arc::clone(&plan.fetch_many);
        match conn {
            Conn::Postgres(conn) => {
                let rows = self.run(plan, pg_query(sql, vec![keys]).fetch_all(conn)).await?;
                decode_pg_rows(plan, &rows)
            }
            Conn::Sqlite(conn) => {
                let rows = self.run(plan, sqlite_query(sql, vec![keys]).fetch_all(conn)).await?;
                rows.iter().map(|row| decode_sqlite(plan, row)).collect()
            }
        }
    }

    /// Deletes a record inside a transaction: whether it existed, and its version.
    pub(crate) async fn delete_in(
        &self,
        conn: Conn<'_>,
        entity: &'static EntitySchema,
        id: &RecordId,
    ) -> Result<Option<Deletion>, OriginError> {
        let plan = self.plan(entity)?;
        let Some(key) = self.key(plan, id) else {
            return Ok(None);
        };
        let sql = Arc::clone(&plan.delete);
        let version = |e: sqlx::Error| decode_error(plan, "RETURNING", e.to_string());
        let deleted: Option<Option<f64>> = match conn {
            Conn::Postgres(conn) => self
                .run(plan, pg_query(sql, vec![key]).fetch_optional(conn))
                .await?
                .map(|row| row.try_get(0))
                .transpose()
                .map_err(version)?,
            Conn::Sqlite(conn) => self
                .run(plan, sqlite_query(sql, vec![key]).fetch_optional(conn))
                .await?
                .map(|row| row.try_get(0))
                .transpose()
                .map_err(version)?,
        };
        Ok(deleted.map(|version| match version {
            Some(v) => Deletion::new().with_version(v),
            None => Deletion::new(),
        }))
    }

    /// Runs a statement that selects ids as text.
    async fn ids(&self, plan: &Plan, sql: Arc<str>, binds: Vec<Bind>) -> Result<Vec<RecordId>, OriginError> {
        let texts: Vec<String> = match &self.inner.pool {
            SqlPool::Postgres(pool) => {
                let rows = self.run(plan, pg_query(sql, binds).fetch_all(pool)).await?;
                rows.iter().map(|row| row.try_get(0)).collect::<Result<_, _>>()
            }
            SqlPool::Sqlite(pool) => {
                let rows = self.run(plan, sqlite_query(sql, binds).fetch_all(pool)).await?;
                rows.iter().map(|row| row.try_get(0)).collect::<Result<_, _>>()
            }
        }
        .map_err(|e| decode_error(plan, plan.schema.id_field, e.to_string()))?;
        texts
            .into_iter()
            .map(|id| RecordId::new(&id).map_err(|e| decode_error(plan, plan.schema.id_field, e.to_string())))
            .collect()
    }

    /// The ids as the key column can hold them: an id that cannot be a key (`abc` for an
    /// integer key, `007` which the database would read as `7`) is not there.
    fn keys<'a>(&self, plan: &Plan, ids: &'a [RecordId]) -> Vec<&'a str> {
        ids.iter()
            .map(RecordId::as_str)
            .filter(|id| match plan.key {
                ColumnClass::Integer => canonical_integer(id).is_some(),
                ColumnClass::Uuid => canonical_uuid(id),
                _ => true,
            })
            .collect()
    }

    fn key_list(&self, plan: &Plan, ids: &[RecordId]) -> Option<Bind> {
        let keys = self.keys(plan, ids);
        if keys.is_empty() {
            return None;
        }
        Some(match (plan.dialect, plan.key) {
            (Dialect::Postgres, _) => Bind::TextArray(keys.into_iter().map(str::to_owned).collect()),
            (Dialect::Sqlite, ColumnClass::Integer) => Bind::Text(
                Value::Array(
                    keys.into_iter()
                        .filter_map(canonical_integer)
                        .map(|n| Value::Number(n.into()))
                        .collect(),
                )
                .to_string(),
            ),
            (Dialect::Sqlite, _) => {
                Bind::Text(Value::Array(keys.into_iter().map(|k| Value::String(k.to_owned())).collect()).to_string())
            }
        })
    }

    fn key(&self, plan: &Plan, id: &RecordId) -> Option<Bind> {
        let key = self.keys(plan, std::slice::from_ref(id)).into_iter().next()?;
        Some(match (plan.dialect, plan.key) {
            (Dialect::Sqlite, ColumnClass::Integer) => Bind::Int(canonical_integer(key)?),
            _ => Bind::Text(key.to_owned()),
        })
    }
}

impl SqlOriginBuilder {
    /// Serves the model `T` from its `source_table`.
    #[must_use]
    pub fn model<T: Cacheable>(self) -> Self {
        self.entity(T::schema())
    }

    /// Serves the entity from its `source_table`.
    #[must_use]
    pub fn entity(mut self, schema: &'static EntitySchema) -> Self {
        if !self.entities.iter().any(|e| e.entity == schema.entity) {
            self.entities.push(schema);
        }
        self
    }

    /// How long one statement may run (default [`DEFAULT_STATEMENT_TIMEOUT`]); a call that
    /// takes longer fails naming its table. On PostgreSQL, set the server's
    /// `statement_timeout` too (a connect option), so that the server stops the work as well.
    #[must_use]
    pub fn statement_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Reads every table's columns, checks them against the models and builds the
    /// statements. Refuses, naming the table and the column: a missing table or column, an id
    /// column that is not an integer, uuid or text, a sortable or version field on a column
    /// with no numeric order, an indexed field on a column that cannot be compared, and a
    /// lowercase-indexed field without its normalised column (see [`NORMALIZED_SUFFIX`](crate::NORMALIZED_SUFFIX)).
    pub async fn build(self) -> Result<SqlOrigin, SqlError> {
        let mut plans = HashMap::new();
        for schema in self.entities {
            let columns = match &self.pool {
                SqlPool::Postgres(pool) => columns::postgres(pool, schema.source_table).await?,
                SqlPool::Sqlite(pool) => columns::sqlite(pool, schema.source_table).await?,
            };
            let is_table = columns::is_table(&self.pool, schema.source_table).await?;
            let plan = Plan::new(self.pool.dialect(), schema, columns, is_table)?;
            plans.insert(schema.entity, plan);
        }
        tracing::info!(
            event = "sql_origin_ready",
            dialect = ?self.pool.dialect(),
            entities = plans.len(),
            "SQL origin checked its tables"
        );
        Ok(SqlOrigin {
            inner: Arc::new(Inner {
                pool: self.pool,
                timeout: self.timeout,
                plans,
            }),
        })
    }
}

#[async_trait]
impl Origin for SqlOrigin {
    async fn fetch(&self, entity: &'static EntitySchema, id: &RecordId) -> Result<Option<SourceRecord>, OriginError> {
        let plan = self.plan(entity)?;
        let Some(key) = self.key(plan, id) else {
            return Ok(None);
        };
        Ok(self
            .records(plan, Arc::clone(&plan.fetch), vec![key])
            .await?
            .into_iter()
            .next())
    }

    async fn fetch_many(
        &self,
        entity: &'static EntitySchema,
        ids: &[RecordId],
    ) -> Result<Vec<SourceRecord>, OriginError> {
        let plan = self.plan(entity)?;
        let Some(keys) = self.key_list(plan, ids) else {
            return Ok(Vec::new());
        };
        self.records(plan, Arc::clone(&plan.fetch_many), vec![keys]).await
    }

    async fn query(
        &self,
        entity: &'static EntitySchema,
        query: &SourceQuery,
    ) -> Result<Vec<SourceRecord>, OriginError> {
        let plan = self.plan(entity)?;
        let mut binds = Vec::with_capacity(query.filters.len() + 2);
        for filter in &query.filters {
            let bind = plan.filter_bind(filter.field.name).ok_or_else(|| {
                OriginError::Unsupported(format!(
                    "{}.{} is not indexed: it cannot be filtered on",
                    entity.source_table, filter.field.source_name
                ))
            })?;
            // A value the column cannot hold equals no row: the answer is empty, exactly.
            let Some(bind) = filter_value(plan.dialect, bind, &filter.value) else {
                return Ok(Vec::new());
            };
            binds.push(bind);
        }
        let sql = plan
            .query(query)
            .map_err(|e| OriginError::Unsupported(e.to_string()))?;
        let limit = query.limit.map(|l| i64::try_from(l).unwrap_or(i64::MAX));
        match plan.dialect {
            Dialect::Postgres => binds.push(Bind::OptInt(limit)),
            Dialect::Sqlite => binds.push(Bind::Int(limit.unwrap_or(-1))),
        }
        binds.push(Bind::Int(i64::try_from(query.offset).unwrap_or(i64::MAX)));
        self.records(plan, sql, binds).await
    }

    async fn exists_many(&self, entity: &'static EntitySchema, ids: &[RecordId]) -> Result<Vec<RecordId>, OriginError> {
        let plan = self.plan(entity)?;
        let Some(keys) = self.key_list(plan, ids) else {
            return Ok(Vec::new());
        };
        self.ids(plan, Arc::clone(&plan.exists_many), vec![keys]).await
    }

    async fn delete(&self, entity: &'static EntitySchema, id: &RecordId) -> Result<Option<Deletion>, OriginError> {
        let plan = self.plan(entity)?;
        match &self.inner.pool {
            SqlPool::Postgres(pool) => {
                let mut conn = self.run(plan, pool.acquire()).await?;
                self.delete_in(Conn::Postgres(&mut conn), entity, id).await
            }
            SqlPool::Sqlite(pool) => {
                let mut conn = self.run(plan, pool.acquire()).await?;
                self.delete_in(Conn::Sqlite(&mut conn), entity, id).await
            }
        }
    }
}

/// Where a statement runs: a transaction's connection.
pub(crate) enum Conn<'a> {
    Postgres(&'a mut sqlx::PgConnection),
    Sqlite(&'a mut sqlx::SqliteConnection),
}

fn decode_pg_rows(plan: &Plan, rows: &[sqlx::postgres::PgRow]) -> Result<Vec<SourceRecord>, OriginError> {
    rows.iter()
        .map(|row| {
            let json: String = row
                .try_get(0)
                .map_err(|e| decode_error(plan, plan.schema.id_field, e.to_string()))?;
            decode_json(plan, &json)
        })
        .collect()
}

/// A statement parameter.
#[derive(Debug, Clone)]
pub(crate) enum Bind {
    Text(String),
    Int(i64),
    OptInt(Option<i64>),
    Float(f64),
    TextArray(Vec<String>),
}

/// A PostgreSQL statement with its parameters.
pub(crate) fn pg_query(sql: Arc<str>, binds: Vec<Bind>) -> Query<'static, Postgres, PgArguments> {
    let mut query = sqlx::query(AssertSqlSafe(sql));
    for bind in binds {
        query = match bind {
            Bind::Text(s) => query.bind(s),
            Bind::Int(i) => query.bind(i),
            Bind::OptInt(i) => query.bind(i),
            Bind::Float(f) => query.bind(f),
            Bind::TextArray(a) => query.bind(a),
        };
    }
    query
}

/// A SQLite statement with its parameters (SQLite has no arrays: a list is JSON text).
pub(crate) fn sqlite_query(sql: Arc<str>, binds: Vec<Bind>) -> Query<'static, Sqlite, SqliteArguments> {
    let mut query = sqlx::query(AssertSqlSafe(sql));
    for bind in binds {
        query = match bind {
            Bind::Text(s) => query.bind(s),
            Bind::Int(i) => query.bind(i),
            Bind::OptInt(i) => query.bind(i),
            Bind::Float(f) => query.bind(f),
            Bind::TextArray(a) => query.bind(Value::from(a).to_string()),
        };
    }
    query
}

/// A filter's value as its column holds it; `None` when no row can hold it.
fn filter_value(dialect: Dialect, bind: FilterBind, value: &str) -> Option<Bind> {
    Some(match (bind, dialect) {
        (FilterBind::Normalized(kind), _) => Bind::Text(kind.normalize(value.to_owned())),
        (FilterBind::Integer, Dialect::Sqlite) => Bind::Int(canonical_integer(value)?),
        (FilterBind::Integer, Dialect::Postgres) => Bind::Text(canonical_integer(value)?.to_string()),
        (FilterBind::Bool, Dialect::Sqlite) => Bind::Int(i64::from(parse_bool(value)?)),
        (FilterBind::Bool, Dialect::Postgres) => Bind::Text(parse_bool(value)?.to_string()),
        (FilterBind::Uuid, _) => canonical_uuid(value).then(|| Bind::Text(value.to_owned()))?,
        (FilterBind::Number, _) => Bind::Float(value.parse().ok()?),
        (FilterBind::Text, _) => Bind::Text(value.to_owned()),
    })
}

fn parse_bool(value: &str) -> Option<bool> {
    match value {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

/// The integer whose text is exactly `text`.
fn canonical_integer(text: &str) -> Option<i64> {
    text.parse::<i64>().ok().filter(|n| n.to_string() == text)
}

/// Whether `text` is a UUID as the database renders one (lower-case, hyphenated).
fn canonical_uuid(text: &str) -> bool {
    text.len() == 36
        && text.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_digit() || ('a'..='f').contains(&c),
        })
}

fn decode_error(plan: &Plan, column: &str, reason: String) -> OriginError {
    OriginError::failed(SqlError::Decode {
        table: plan.schema.source_table.to_owned(),
        column: column.to_owned(),
        reason,
    })
}

/// Reads a PostgreSQL row (`to_json` of the selected columns) into a record in source shape.
/// `NULL` columns are left out, as Airtable leaves out empty fields.
fn decode_json(plan: &Plan, json: &str) -> Result<SourceRecord, OriginError> {
    let id_field = plan.schema.id_field;
    let mut fields: Map<String, Value> =
        serde_json::from_str(json).map_err(|e| decode_error(plan, id_field, format!("unreadable row: {e}")))?;
    let id = match fields.remove(id_field) {
        Some(Value::String(id)) => RecordId::new(id).map_err(|e| decode_error(plan, id_field, e.to_string()))?,
        _ => return Err(decode_error(plan, id_field, "the id is missing".to_owned())),
    };
    fields.retain(|_, v| !v.is_null());
    for selected in plan.selected.iter().filter(|s| s.links) {
        // A multi-record link in a text column holds a JSON list.
        if let Some(value) = fields.get_mut(selected.name)
            && let Value::String(text) = value
        {
            *value = serde_json::from_str(text)
                .map_err(|e| decode_error(plan, selected.name, format!("not a JSON list of ids: {e}")))?;
        }
    }
    Ok(SourceRecord { id, fields })
}

/// Reads a SQLite row into a record in source shape, by each value's storage class and its
/// column's declared type (a `BOOLEAN` column's 0/1 as a bool, a `JSON` column's text as
/// JSON). `NULL` columns are left out.
fn decode_sqlite(plan: &Plan, row: &SqliteRow) -> Result<SourceRecord, OriginError> {
    let mut id = None;
    let mut fields = Map::new();
    for (i, selected) in plan.selected.iter().enumerate() {
        let name = selected.name;
        let fail = |e: sqlx::Error| decode_error(plan, name, e.to_string());
        let raw = row.try_get_raw(i).map_err(fail)?;
        if raw.is_null() {
            continue;
        }
        let storage = raw.type_info().name().to_owned();
        let value = match storage.as_str() {
            "INTEGER" | "BOOLEAN" => {
                let n: i64 = row.try_get(i).map_err(fail)?;
                if selected.class == ColumnClass::Bool {
                    Value::Bool(n != 0)
                } else {
                    Value::Number(n.into())
                }
            }
            "REAL" | "NUMERIC" => {
                let f: f64 = row.try_get(i).map_err(fail)?;
                Number::from_f64(f).map_or(Value::Null, Value::Number)
            }
            "TEXT" | "DATETIME" | "DATE" | "TIME" => {
                let text: String = row.try_get(i).map_err(fail)?;
                if selected.class == ColumnClass::Json || selected.links {
                    serde_json::from_str(&text).map_err(|e| decode_error(plan, name, format!("not JSON: {e}")))?
                } else {
                    Value::String(text)
                }
            }
            other => return Err(decode_error(plan, name, format!("unsupported value of type {other}"))),
        };
        if i == 0 {
            let text = match value {
                Value::String(s) => s,
                other => other.to_string(),
            };
            id = Some(RecordId::new(text).map_err(|e| decode_error(plan, name, e.to_string()))?);
        } else if !value.is_null() {
            fields.insert(name.to_owned(), value);
        }
    }
    let id = id.ok_or_else(|| decode_error(plan, plan.schema.id_field, "the id is NULL".to_owned()))?;
    Ok(SourceRecord { id, fields })
}
