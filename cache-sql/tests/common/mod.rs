//! Real databases for the tests: a SQLite file in a temp dir, a PostgreSQL schema with a random
//! name on the server `TEST_POSTGRES_URL` names (dropped after; the tests skip with a notice
//! when it is unset).
#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;

use async_trait::async_trait;
use cache_core::{
    RecordId,
    origin::{Deletion, Origin, OriginError, SourceQuery, SourceRecord},
    schema::{EntitySchema, FieldKind, IndexKind},
};
use cache_sql::{NORMALIZED_SUFFIX, SqlOrigin, SqlPool};
use serde_json::Value;
use sqlx::{
    AssertSqlSafe, Connection, Executor, PgConnection, PgPool, SqlitePool,
    postgres::{PgConnectOptions, PgPoolOptions},
    sqlite::{SqliteConnectOptions, SqlitePoolOptions},
};

/// A database that lives as long as the test holds it.
pub enum TestDb {
    Sqlite {
        pool: SqlitePool,
        options: SqliteConnectOptions,
        _dir: tempfile::TempDir,
    },
    Postgres {
        pool: PgPool,
        options: PgConnectOptions,
        url: String,
        schema: String,
    },
}

impl TestDb {
    /// A SQLite file in a fresh temp dir.
    pub async fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("a temp dir");
        let options = SqliteConnectOptions::new()
            .filename(dir.path().join("test.db"))
            .create_if_missing(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.clone())
            .await
            .expect("SQLite opens");
        Self::Sqlite {
            pool,
            options,
            _dir: dir,
        }
    }

    /// A fresh schema on the PostgreSQL server of `TEST_POSTGRES_URL`; `None` (with a notice)
    /// when it is unset.
    pub async fn postgres() -> Option<Self> {
        let Ok(url) = std::env::var("TEST_POSTGRES_URL") else {
            eprintln!("TEST_POSTGRES_URL is unset: skipping the PostgreSQL test");
            return None;
        };
        let schema = format!("cache_sql_{:016x}", rand::random::<u64>());
        let mut conn = PgConnection::connect(&url).await.expect("PostgreSQL answers");
        conn.execute(AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .await
            .expect("the schema is created");
        let options: PgConnectOptions = url.parse().expect("a PostgreSQL URL");
        let options = options.options([("search_path", schema.as_str())]);
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .connect_with(options.clone())
            .await
            .expect("PostgreSQL answers");
        Some(Self::Postgres {
            pool,
            options,
            url,
            schema,
        })
    }

    pub fn pool(&self) -> SqlPool {
        match self {
            Self::Sqlite { pool, .. } => pool.clone().into(),
            Self::Postgres { pool, .. } => pool.clone().into(),
        }
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self, Self::Postgres { .. })
    }

    /// Runs statements (DDL, writes) separated by `;`.
    pub async fn execute(&self, sql: &str) {
        for statement in sql.split(';').map(str::trim).filter(|s| !s.is_empty()) {
            let result = match self {
                Self::Sqlite { pool, .. } => pool.execute(AssertSqlSafe(statement.to_owned())).await.map(|_| ()),
                Self::Postgres { pool, .. } => pool.execute(AssertSqlSafe(statement.to_owned())).await.map(|_| ()),
            };
            result.unwrap_or_else(|e| panic!("{statement}: {e}"));
        }
    }

    /// Runs statements in one transaction.
    pub async fn execute_in_transaction(&self, statements: &[String]) {
        match self {
            Self::Sqlite { pool, .. } => {
                let mut tx = pool.begin().await.expect("begins");
                for statement in statements {
                    (&mut *tx)
                        .execute(AssertSqlSafe(statement.clone()))
                        .await
                        .unwrap_or_else(|e| panic!("{statement}: {e}"));
                }
                tx.commit().await.expect("commits");
            }
            Self::Postgres { pool, .. } => {
                let mut tx = pool.begin().await.expect("begins");
                for statement in statements {
                    (&mut *tx)
                        .execute(AssertSqlSafe(statement.clone()))
                        .await
                        .unwrap_or_else(|e| panic!("{statement}: {e}"));
                }
                tx.commit().await.expect("commits");
            }
        }
    }

    /// Runs statements on a connection of their own, outside the pool, as psql or sqlite3
    /// would: each statement commits on its own.
    pub async fn execute_elsewhere(&self, sql: &str) {
        let statements: Vec<String> = sql
            .split(';')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        match self {
            Self::Sqlite { options, .. } => {
                let mut conn = sqlx::SqliteConnection::connect_with(options).await.expect("connects");
                for statement in statements {
                    conn.execute(AssertSqlSafe(statement.clone()))
                        .await
                        .unwrap_or_else(|e| panic!("{statement}: {e}"));
                }
            }
            Self::Postgres { options, .. } => {
                let mut conn = PgConnection::connect_with(options).await.expect("connects");
                for statement in statements {
                    conn.execute(AssertSqlSafe(statement.clone()))
                        .await
                        .unwrap_or_else(|e| panic!("{statement}: {e}"));
                }
            }
        }
    }

    /// One number the database answers (`SELECT count(*) …`).
    pub async fn count(&self, sql: &'static str) -> i64 {
        match self {
            Self::Sqlite { pool, .. } => sqlx::query_scalar(sql).fetch_one(pool).await,
            Self::Postgres { pool, .. } => sqlx::query_scalar(sql).fetch_one(pool).await,
        }
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Inserts records given in source shape: single links as their id, multi-record links as
    /// an array (PostgreSQL) or a JSON list (SQLite), and each lowercase-indexed field's
    /// normalised column written from `IndexKind::normalize`.
    pub async fn insert(&self, schema: &EntitySchema, records: &[SourceRecord]) {
        for record in records {
            let mut columns = vec![schema.id_field.to_owned()];
            let mut values = vec![Value::String(record.id.as_str().to_owned())];
            for field in &schema.fields {
                let Some(value) = record.fields.get(field.source_name) else {
                    continue;
                };
                let value = match (field.kind, value) {
                    (FieldKind::Link { .. }, Value::Array(ids)) => ids.first().cloned().unwrap_or(Value::Null),
                    (_, v) => v.clone(),
                };
                if let (Some(IndexKind::Lowercase), Value::String(s)) = (field.index, &value) {
                    columns.push(format!("{}{NORMALIZED_SUFFIX}", field.source_name));
                    values.push(Value::String(IndexKind::Lowercase.normalize(s.clone())));
                }
                columns.push(field.source_name.to_owned());
                values.push(value);
            }
            let names: Vec<String> = columns.iter().map(|c| format!("\"{c}\"")).collect();
            let marks: Vec<String> = (1..=values.len()).map(|i| format!("${i}")).collect();
            let sql = format!(
                "INSERT INTO \"{}\" ({}) VALUES ({})",
                schema.source_table,
                names.join(", "),
                marks.join(", ")
            );
            match self {
                Self::Sqlite { pool, .. } => {
                    let mut q = sqlx::query(AssertSqlSafe(sql.clone()));
                    for v in values {
                        q = match v {
                            Value::String(s) => q.bind(s),
                            Value::Bool(b) => q.bind(b),
                            Value::Number(n) if n.is_i64() => q.bind(n.as_i64()),
                            Value::Number(n) => q.bind(n.as_f64()),
                            Value::Null => q.bind(None::<String>),
                            other => q.bind(other.to_string()),
                        };
                    }
                    q.execute(pool).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
                }
                Self::Postgres { pool, .. } => {
                    let mut q = sqlx::query(AssertSqlSafe(sql.clone()));
                    for v in values {
                        q = match v {
                            Value::String(s) => q.bind(s),
                            Value::Bool(b) => q.bind(b),
                            Value::Number(n) if n.is_i64() => q.bind(n.as_i64()),
                            Value::Number(n) => q.bind(n.as_f64()),
                            Value::Null => q.bind(None::<String>),
                            Value::Array(items) => q.bind(
                                items
                                    .iter()
                                    .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_owned))
                                    .collect::<Vec<String>>(),
                            ),
                            other => q.bind(other.to_string()),
                        };
                    }
                    q.execute(pool).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
                }
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Self::Postgres { url, schema, .. } = self {
            let (url, name) = (url.clone(), schema.clone());
            // Drop runs inside the test's runtime: the schema is dropped on a thread of its own.
            let dropped = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
                runtime.block_on(async {
                    let mut conn = PgConnection::connect(&url).await?;
                    conn.execute(AssertSqlSafe(format!("DROP SCHEMA {name} CASCADE")))
                        .await?;
                    Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
                })
            })
            .join();
            if !matches!(dropped, Ok(Ok(()))) {
                eprintln!("could not drop the test schema {schema}");
            }
        }
    }
}

/// An origin that keeps its database alive.
#[derive(Clone)]
pub struct HeldOrigin {
    pub origin: SqlOrigin,
    pub db: Arc<TestDb>,
}

#[async_trait]
impl Origin for HeldOrigin {
    async fn fetch(&self, entity: &'static EntitySchema, id: &RecordId) -> Result<Option<SourceRecord>, OriginError> {
        self.origin.fetch(entity, id).await
    }

    async fn fetch_many(
        &self,
        entity: &'static EntitySchema,
        ids: &[RecordId],
    ) -> Result<Vec<SourceRecord>, OriginError> {
        self.origin.fetch_many(entity, ids).await
    }

    async fn query(
        &self,
        entity: &'static EntitySchema,
        query: &SourceQuery,
    ) -> Result<Vec<SourceRecord>, OriginError> {
        self.origin.query(entity, query).await
    }

    async fn exists_many(&self, entity: &'static EntitySchema, ids: &[RecordId]) -> Result<Vec<RecordId>, OriginError> {
        self.origin.exists_many(entity, ids).await
    }

    async fn delete(&self, entity: &'static EntitySchema, id: &RecordId) -> Result<Option<Deletion>, OriginError> {
        self.origin.delete(entity, id).await
    }
}

/// An origin that counts its fetches and can hold them at a gate after they read, so that a
/// test can write while a read is in flight.
#[derive(Clone)]
pub struct GatedOrigin {
    pub inner: HeldOrigin,
    fetches: Arc<std::sync::atomic::AtomicUsize>,
    gate: Arc<std::sync::Mutex<Option<Gate>>>,
}

/// Held fetches: how many arrived, and whether they may go on.
#[derive(Clone)]
pub struct Gate {
    arrived: tokio::sync::watch::Sender<usize>,
    open: tokio::sync::watch::Sender<bool>,
}

impl Gate {
    /// Waits until `n` fetches are held.
    pub async fn arrived(&self, n: usize) {
        let mut rx = self.arrived.subscribe();
        let _ = rx.wait_for(|a| *a >= n).await;
    }

    /// Lets them go.
    pub fn release(&self) {
        self.open.send_replace(true);
    }
}

impl GatedOrigin {
    pub fn new(inner: HeldOrigin) -> Self {
        Self {
            inner,
            fetches: Arc::default(),
            gate: Arc::default(),
        }
    }

    /// Fetches (one or many) made so far.
    pub fn fetches(&self) -> usize {
        self.fetches.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Holds every later fetch, after it has read, until the gate is released.
    pub fn hold(&self) -> Gate {
        let gate = Gate {
            arrived: tokio::sync::watch::Sender::new(0),
            open: tokio::sync::watch::Sender::new(false),
        };
        *self.gate.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(gate.clone());
        gate
    }
}

#[async_trait]
impl Origin for GatedOrigin {
    async fn fetch(&self, entity: &'static EntitySchema, id: &RecordId) -> Result<Option<SourceRecord>, OriginError> {
        self.fetches.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let read = self.inner.fetch(entity, id).await;
        let gate = self
            .gate
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        if let Some(gate) = gate {
            let mut open = gate.open.subscribe();
            gate.arrived.send_modify(|a| *a += 1);
            let _ = open.wait_for(|o| *o).await;
        }
        read
    }

    async fn fetch_many(
        &self,
        entity: &'static EntitySchema,
        ids: &[RecordId],
    ) -> Result<Vec<SourceRecord>, OriginError> {
        self.fetches.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.fetch_many(entity, ids).await
    }

    async fn query(
        &self,
        entity: &'static EntitySchema,
        query: &SourceQuery,
    ) -> Result<Vec<SourceRecord>, OriginError> {
        self.inner.query(entity, query).await
    }

    async fn exists_many(&self, entity: &'static EntitySchema, ids: &[RecordId]) -> Result<Vec<RecordId>, OriginError> {
        self.inner.exists_many(entity, ids).await
    }

    async fn delete(&self, entity: &'static EntitySchema, id: &RecordId) -> Result<Option<Deletion>, OriginError> {
        self.inner.delete(entity, id).await
    }
}
