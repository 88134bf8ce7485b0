//! What the end-to-end tests share: a fresh database per test (a SQLite file in a temp dir,
//! or a PostgreSQL schema of its own when `TEST_POSTGRES_URL` is set).
#![allow(dead_code, unreachable_pub)]

use demo_app::{
    database::{Database, DatabaseUrl, quote},
    seed::{self, SeedCounts},
};
use sqlx::{AssertSqlSafe, Connection, Executor};

/// Which database a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The backends to run on here: SQLite always, PostgreSQL when `TEST_POSTGRES_URL` is set.
pub fn backends() -> Vec<Backend> {
    let mut out = vec![Backend::Sqlite];
    if postgres_url().is_some() {
        out.push(Backend::Postgres);
    }
    out
}

fn postgres_url() -> Option<String> {
    std::env::var("TEST_POSTGRES_URL").ok().filter(|u| !u.is_empty())
}

/// A database that only this test uses, seeded with the small data set.
pub struct TestDb {
    pub url: DatabaseUrl,
    pub db: Database,
    _dir: Option<tempfile::TempDir>,
    pg_schema: Option<PgSchema>,
}

impl TestDb {
    pub async fn new(backend: Backend) -> Self {
        Self::seeded(backend, SeedCounts::SMALL).await
    }

    /// A database of its own, seeded with `counts`.
    pub async fn seeded(backend: Backend, counts: SeedCounts) -> Self {
        let (url, dir, pg_schema) = match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}", dir.path().join("demo.db").display());
                (url, Some(dir), None)
            }
            Backend::Postgres => {
                let schema = PgSchema::create().await;
                let url = schema.url();
                (url, None, Some(schema))
            }
        };
        let url: DatabaseUrl = url.parse().expect("database url");
        let db = Database::connect(&url).await.expect("connect");
        seed::seed(&db, counts).await.expect("seed");
        Self {
            url,
            db,
            _dir: dir,
            pg_schema,
        }
    }

    /// The PostgreSQL schema the test owns, if it runs on PostgreSQL.
    pub fn pg_schema(&self) -> Option<&str> {
        self.pg_schema.as_ref().map(|s| s.name.as_str())
    }

    /// Runs SQL on the database behind the application's back, on a connection of its own
    /// (as `sqlite3` or `psql` would: the statement commits on its own), with `$1` bound to
    /// `id`; the rows it changed.
    pub async fn execute_elsewhere(&self, sql: &str, id: &str) -> u64 {
        let sql = AssertSqlSafe(sql.to_owned());
        match &self.db {
            Database::Sqlite(_) => {
                let mut conn = sqlx::SqliteConnection::connect(self.url.as_str())
                    .await
                    .expect("connect");
                let done = sqlx::query(sql).bind(id.to_owned()).execute(&mut conn).await;
                conn.close().await.expect("close");
                done.expect("sql").rows_affected()
            }
            Database::Postgres(_) => {
                let mut conn = sqlx::PgConnection::connect(self.url.as_str()).await.expect("connect");
                let done = sqlx::query(sql).bind(id.to_owned()).execute(&mut conn).await;
                conn.close().await.expect("close");
                done.expect("sql").rows_affected()
            }
        }
    }

    /// Runs statements through the pool (DDL, test set-up).
    pub async fn execute(&self, statements: &[&str]) {
        for statement in statements {
            self.db
                .execute(statement)
                .await
                .unwrap_or_else(|e| panic!("{statement}: {e}"));
        }
    }

    /// Closes the pool, then drops the database (a failing test, which never gets here,
    /// drops it too: see [`PgSchema`]).
    pub async fn cleanup(self) {
        self.db.close().await;
    }
}

/// A PostgreSQL schema of one test, dropped when this is dropped: on success and on failure
/// (a panic unwinds through it) alike.
struct PgSchema {
    admin: String,
    name: String,
}

impl PgSchema {
    async fn create() -> Self {
        let admin = postgres_url().expect("TEST_POSTGRES_URL");
        let name = format!("demo_test_{}", rand::random::<u64>());
        let conn = admin_pool(&admin).await;
        conn.execute(AssertSqlSafe(format!("CREATE SCHEMA {}", quote(&name))))
            .await
            .expect("create schema");
        conn.close().await;
        Self { admin, name }
    }

    /// The test's connections: on the schema, and named after it so that the drop can end
    /// those a failing test left open (an open transaction would block `DROP SCHEMA`).
    fn url(&self) -> String {
        let sep = if self.admin.contains('?') { '&' } else { '?' };
        format!(
            "{}{sep}options[search_path]={name}&application_name={name}",
            self.admin,
            name = self.name
        )
    }

    async fn drop_schema(admin: &str, name: &str) -> Result<(), sqlx::Error> {
        let conn = admin_pool(admin).await;
        sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1")
            .bind(name.to_owned())
            .execute(&conn)
            .await?;
        conn.execute(AssertSqlSafe(format!("DROP SCHEMA IF EXISTS {} CASCADE", quote(name))))
            .await?;
        conn.close().await;
        Ok(())
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        // Drop is synchronous and may run inside the test's runtime, which cannot block on
        // another future: a thread of its own with its own runtime does the work.
        let (admin, name) = (self.admin.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(Self::drop_schema(&admin, &name))
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(err)) => eprintln!("could not drop the test schema {}: {err}", self.name),
            Err(_) => eprintln!("could not drop the test schema {}", self.name),
        }
    }
}

async fn admin_pool(url: &str) -> sqlx::PgPool {
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await
        .expect("connect to TEST_POSTGRES_URL")
}

/// Whether PostgreSQL has a schema of that name.
pub async fn pg_schema_exists(name: &str) -> bool {
    let conn = admin_pool(&postgres_url().expect("TEST_POSTGRES_URL")).await;
    let found: Option<i32> = sqlx::query_scalar("SELECT 1 FROM information_schema.schemata WHERE schema_name = $1")
        .bind(name.to_owned())
        .fetch_optional(&conn)
        .await
        .expect("query the schemas");
    conn.close().await;
    found.is_some()
}
