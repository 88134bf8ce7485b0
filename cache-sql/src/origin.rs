//! [`SqlOrigin`]: the [`Origin`] over the registered models' tables.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use async_trait::async_trait;
use cache_core::{
    Cacheable, RecordId,
    origin::{Deletion, Origin, OriginError, SourceQuery, SourceRecord},
    schema::EntitySchema,
};
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
    plan::{self, FilterBind, PgStored, Plan},
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
    check_normalized: bool,
    entities: Vec<&'static EntitySchema>,
}

impl SqlOrigin {
    /// Starts an origin over `pool` (a `PgPool` or a `SqlitePool`).
    pub fn builder(pool: impl Into<SqlPool>) -> SqlOriginBuilder {
        SqlOriginBuilder {
            pool: pool.into(),
            timeout: DEFAULT_STATEMENT_TIMEOUT,
            check_normalized: false,
            entities: Vec::new(),
        }
    }

    /// The pool the origin reads through.
    pub fn pool(&self) -> &SqlPool {
        &self.inner.pool
    }

    /// Reads every row of each table with a lowercase-indexed field and checks that its
    /// normalised column holds exactly the value the cache looks up
    /// (`IndexKind::Lowercase.normalize` of the indexed column): the first row that does not
    /// is refused ([`SqlError::NotNormalized`]). Reads the tables row by row (a stream, not
    /// all at once).
    pub async fn check_normalized_values(&self) -> Result<(), SqlError> {
        use futures::TryStreamExt;

        for plan in self.inner.plans.values() {
            for field in plan.schema.indexed_fields() {
                let Some(kind @ cache_core::schema::IndexKind::Lowercase) = field.index else {
                    continue;
                };
                let table = plan.schema.source_table;
                let d = plan.dialect;
                let normalized = format!("{}{}", field.source_name, crate::NORMALIZED_SUFFIX);
                let sql = format!(
                    "SELECT CAST({} AS TEXT), CAST({} AS TEXT), CAST({} AS TEXT) FROM {} WHERE {} IS NOT NULL",
                    d.quote(plan.schema.id_field),
                    d.quote(field.source_name),
                    d.quote(&normalized),
                    d.quote(table),
                    d.quote(field.source_name)
                );
                let failed = |source| SqlError::Query {
                    table: table.to_owned(),
                    source,
                };
                let check = |(id, value, found): (String, String, Option<String>)| {
                    let expected = kind.normalize(value.clone());
                    if found.as_deref() == Some(expected.as_str()) {
                        Ok(())
                    } else {
                        Err(SqlError::NotNormalized(Box::new(crate::NotNormalized {
                            table: table.to_owned(),
                            column: field.source_name.to_owned(),
                            normalized: normalized.clone(),
                            id,
                            value,
                            found,
                            expected,
                        })))
                    }
                };
                match &self.inner.pool {
                    SqlPool::Postgres(pool) => {
                        let mut rows =
                            sqlx::query_as::<_, (String, String, Option<String>)>(AssertSqlSafe(sql.clone()))
                                .fetch(pool);
                        while let Some(row) = rows.try_next().await.map_err(failed)? {
                            check(row)?;
                        }
                    }
                    SqlPool::Sqlite(pool) => {
                        let mut rows =
                            sqlx::query_as::<_, (String, String, Option<String>)>(AssertSqlSafe(sql.clone()))
                                .fetch(pool);
                        while let Some(row) = rows.try_next().await.map_err(failed)? {
                            check(row)?;
                        }
                    }
                }
            }
        }
        Ok(())
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
    async fn run<T>(&self, plan: &Plan, fut: impl Future<Output = Result<T, sqlx::Error>>) -> Result<T, OriginError> {
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
                rows.iter().map(|row| decode_sqlite(plan, row, 0)).collect()
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
                rows.iter().map(|row| decode_sqlite(plan, row, 0)).collect()
            }
        }
    }

    /// Deletes a record inside a transaction: whether it existed, its version and the row as it
    /// was.
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
        let deleted: Option<(Option<f64>, SourceRecord)> = match conn {
            Conn::Postgres(conn) => match self.run(plan, pg_query(sql, vec![key]).fetch_optional(conn)).await? {
                Some(row) => Some((row.try_get(0).map_err(version)?, decode_pg(plan, &row, 1)?)),
                None => None,
            },
            Conn::Sqlite(conn) => match self
                .run(plan, sqlite_query(sql, vec![key]).fetch_optional(conn))
                .await?
            {
                Some(row) => Some((row.try_get(0).map_err(version)?, decode_sqlite(plan, &row, 1)?)),
                None => None,
            },
        };
        Ok(deleted.map(|(version, record)| {
            let deletion = Deletion::new().with_record(record);
            match version {
                Some(v) => deletion.with_version(v),
                None => deletion,
            }
        }))
    }

    /// Runs a statement that selects ids as text; answers the ids of `asked` among them, in the
    /// order asked, each once. The answered texts are read in place, not copied, and no id is
    /// parsed again.
    async fn found_among(
        &self,
        plan: &Plan,
        (sql, binds): (Arc<str>, Vec<Bind>),
        asked: &[RecordId],
    ) -> Result<Vec<RecordId>, OriginError> {
        fn matching<'r>(
            answered: impl Iterator<Item = Result<&'r str, sqlx::Error>>,
            asked: &[RecordId],
        ) -> Result<Vec<RecordId>, sqlx::Error> {
            let mut found: HashSet<&str> = answered.collect::<Result<_, _>>()?;
            Ok(asked.iter().filter(|id| found.remove(id.as_str())).cloned().collect())
        }
        match &self.inner.pool {
            SqlPool::Postgres(pool) => {
                let rows = self.run(plan, pg_query(sql, binds).fetch_all(pool)).await?;
                matching(rows.iter().map(|row| row.try_get(0)), asked)
            }
            SqlPool::Sqlite(pool) => {
                let rows = self.run(plan, sqlite_query(sql, binds).fetch_all(pool)).await?;
                matching(rows.iter().map(|row| row.try_get(0)), asked)
            }
        }
        .map_err(|e| decode_error(plan, plan.schema.id_field, e.to_string()))
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
            // A JSON list for `json_each`, written straight from the keys (no value tree).
            (Dialect::Sqlite, ColumnClass::Integer) => {
                let numbers: Vec<i64> = keys.into_iter().filter_map(canonical_integer).collect();
                Bind::Text(serde_json::to_string(&numbers).ok()?)
            }
            (Dialect::Sqlite, _) => Bind::Text(serde_json::to_string(&keys).ok()?),
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

    /// Also reads every row of each table with a lowercase-indexed field at start-up, and
    /// refuses ([`SqlError::NotNormalized`], naming the table, the column and the row) when a
    /// normalised column does not hold exactly what the cache would look up: a column written
    /// by SQL's `lower()` on non-ASCII text, or not written at all. Off by default: it reads
    /// whole tables ([`SqlOrigin::check_normalized_values`] runs it on demand).
    #[must_use]
    pub fn check_normalized_values(mut self, check: bool) -> Self {
        self.check_normalized = check;
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
        let origin = SqlOrigin {
            inner: Arc::new(Inner {
                pool: self.pool,
                timeout: self.timeout,
                plans,
            }),
        };
        if self.check_normalized {
            origin.check_normalized_values().await?;
        }
        Ok(origin)
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
        let sql = plan.query(query).map_err(|e| OriginError::Unsupported(e.to_string()))?;
        if plan::paged(query) {
            let limit = query.limit.map(|l| i64::try_from(l).unwrap_or(i64::MAX));
            match plan.dialect {
                Dialect::Postgres => binds.push(Bind::OptInt(limit)),
                Dialect::Sqlite => binds.push(Bind::Int(limit.unwrap_or(-1))),
            }
            binds.push(Bind::Int(i64::try_from(query.offset).unwrap_or(i64::MAX)));
        }
        self.records(plan, sql, binds).await
    }

    async fn exists_many(&self, entity: &'static EntitySchema, ids: &[RecordId]) -> Result<Vec<RecordId>, OriginError> {
        let plan = self.plan(entity)?;
        let Some(keys) = self.key_list(plan, ids) else {
            return Ok(Vec::new());
        };
        self.found_among(plan, (Arc::clone(&plan.exists_many), vec![keys]), ids)
            .await
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
    rows.iter().map(|row| decode_pg(plan, row, 0)).collect()
}

/// Reads a PostgreSQL row (selected as [`Plan`] casts each column) into a record in source
/// shape. `NULL` columns are left out, as Airtable leaves out empty fields.
fn decode_pg(plan: &Plan, row: &sqlx::postgres::PgRow, from: usize) -> Result<SourceRecord, OriginError> {
    let mut id = None;
    let mut fields = Map::new();
    for (n, selected) in plan.selected.iter().enumerate() {
        let i = n + from;
        let name = selected.name;
        let fail = |e: sqlx::Error| decode_error(plan, name, e.to_string());
        if n == 0 {
            let text: String = row.try_get(i).map_err(fail)?;
            id = Some(RecordId::new(text).map_err(|e| decode_error(plan, name, e.to_string()))?);
            continue;
        }
        if let Some(stored) = selected.stored {
            if let Some(value) = read_stored(plan, (row, i, name), stored)? {
                fields.insert(name.to_owned(), value);
            }
            continue;
        }
        let value = match selected.class {
            ColumnClass::Integer => row.try_get::<Option<i64>, _>(i).map_err(fail)?.map(Value::from),
            ColumnClass::Bool => row.try_get::<Option<bool>, _>(i).map_err(fail)?.map(Value::Bool),
            ColumnClass::Number => row
                .try_get::<Option<String>, _>(i)
                .map_err(fail)?
                .map(|text| number(&text)),
            ColumnClass::Json | ColumnClass::Array => match row.try_get::<Option<String>, _>(i).map_err(fail)? {
                Some(text) => {
                    Some(serde_json::from_str(&text).map_err(|e| decode_error(plan, name, format!("not JSON: {e}")))?)
                }
                None => None,
            },
            ColumnClass::Timestamp | ColumnClass::Uuid | ColumnClass::Text => {
                match row.try_get::<Option<String>, _>(i).map_err(fail)? {
                    // A multi-record link in a text column holds a JSON list.
                    Some(text) if selected.links => Some(
                        serde_json::from_str(&text)
                            .map_err(|e| decode_error(plan, name, format!("not a JSON list of ids: {e}")))?,
                    ),
                    other => other.map(Value::String),
                }
            }
        };
        if let Some(value) = value.filter(|v| !v.is_null()) {
            fields.insert(name.to_owned(), value);
        }
    }
    let id = id.ok_or_else(|| decode_error(plan, plan.schema.id_field, "the id is missing".to_owned()))?;
    Ok(SourceRecord { id, fields })
}

/// A PostgreSQL value sent as stored ([`PgStored`]), as the server would have written it:
/// `None` for `NULL` (and a timestamp's `infinity`, which `to_char` writes as `NULL`).
fn read_stored(
    plan: &Plan,
    (row, i, name): (&sqlx::postgres::PgRow, usize, &str),
    stored: PgStored,
) -> Result<Option<Value>, OriginError> {
    let fail = |reason: String| decode_error(plan, name, reason);
    let raw = row.try_get_raw(i).map_err(|e| fail(e.to_string()))?;
    if raw.is_null() {
        return Ok(None);
    }
    let bytes = match raw.format() {
        sqlx::postgres::PgValueFormat::Binary => raw.as_bytes().map_err(|e| fail(e.to_string()))?,
        sqlx::postgres::PgValueFormat::Text => return Err(fail("sent as text, not as stored".to_owned())),
    };
    Ok(match stored {
        PgStored::Timestamp => {
            let micros = <[u8; 8]>::try_from(bytes).map_err(|_| fail("a timestamp is not 8 bytes".to_owned()))?;
            plan::pg_timestamp_text(i64::from_be_bytes(micros)).map(Value::String)
        }
        PgStored::TextArray => Some(plan::pg_text_array(bytes).map_err(fail)?),
    })
}

/// A number from its exact text: an integer when it is one (`3`, not `3.0`), else a float;
/// `NaN` and infinities, which JSON cannot hold, as no value.
fn number(text: &str) -> Value {
    if let Ok(n) = text.parse::<i64>() {
        return Value::from(n);
    }
    text.parse::<f64>()
        .ok()
        .and_then(Number::from_f64)
        .map_or(Value::Null, Value::Number)
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
        (FilterBind::Number, Dialect::Sqlite) => Bind::Float(value.parse().ok()?),
        (FilterBind::Number, Dialect::Postgres) => {
            value.parse::<f64>().ok()?;
            Bind::Text(value.to_owned())
        }
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

/// Reads a SQLite row into a record in source shape, by each value's storage class and its
/// column's declared type (a `BOOLEAN` column's 0/1 as a bool, a `JSON` column's text as
/// JSON). `NULL` columns are left out.
fn decode_sqlite(plan: &Plan, row: &SqliteRow, from: usize) -> Result<SourceRecord, OriginError> {
    let mut id = None;
    let mut fields = Map::new();
    for (n, selected) in plan.selected.iter().enumerate() {
        let i = n + from;
        let name = selected.name;
        let fail = |e: sqlx::Error| decode_error(plan, name, e.to_string());
        let raw = row.try_get_raw(i).map_err(fail)?;
        if raw.is_null() {
            continue;
        }
        let storage = raw.type_info();
        let value = match storage.name() {
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
        if n == 0 {
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
