//! What the end-to-end tests share: a fresh database per test (a SQLite file in a temp dir,
//! or a PostgreSQL schema of its own when `TEST_POSTGRES_URL` is set).
#![allow(dead_code, unreachable_pub)]

use demo_app::{
    database::{Database, DatabaseUrl, quote},
    seed::{self, SeedCounts},
};
use sqlx::{AssertSqlSafe, Executor};

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
    pg_schema: Option<(String, String)>,
}

impl TestDb {
    pub async fn new(backend: Backend) -> Self {
        let (url, dir, pg_schema) = match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}", dir.path().join("demo.db").display());
                (url, Some(dir), None)
            }
            Backend::Postgres => {
                let admin = postgres_url().expect("TEST_POSTGRES_URL");
                let schema = format!("demo_test_{}", rand::random::<u64>());
                let conn = admin_pool(&admin).await;
                conn.execute(AssertSqlSafe(format!("CREATE SCHEMA {}", quote(&schema))))
                    .await
                    .expect("create schema");
                conn.close().await;
                let sep = if admin.contains('?') { '&' } else { '?' };
                let url = format!("{admin}{sep}options[search_path]={schema}");
                (url, None, Some((admin, schema)))
            }
        };
        let url: DatabaseUrl = url.parse().expect("database url");
        let db = Database::connect(&url).await.expect("connect");
        seed::seed(&db, SeedCounts::SMALL).await.expect("seed");
        Self {
            url,
            db,
            _dir: dir,
            pg_schema,
        }
    }

    /// Drops the test's PostgreSQL schema (a SQLite file goes with its temp dir).
    pub async fn cleanup(self) {
        self.db.pool().close().await;
        if let Some((admin, schema)) = self.pg_schema {
            let conn = admin_pool(&admin).await;
            conn.execute(AssertSqlSafe(format!("DROP SCHEMA {} CASCADE", quote(&schema))))
                .await
                .expect("drop schema");
            conn.close().await;
        }
    }
}

async fn admin_pool(url: &str) -> sqlx::AnyPool {
    sqlx::any::install_default_drivers();
    sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await
        .expect("connect to TEST_POSTGRES_URL")
}
