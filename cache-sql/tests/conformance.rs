//! The origin conformance suite against `SqlOrigin`, on SQLite and on PostgreSQL.

mod common;

use std::sync::Arc;

use cache_core::testing::origin_conformance::{OriginSeed, people, teams};
use cache_sql::SqlOrigin;
use common::{HeldOrigin, TestDb};

const SQLITE_TABLES: &str = r#"
    CREATE TABLE conformance_teams (id TEXT PRIMARY KEY, name TEXT NOT NULL);
    CREATE TABLE conformance_people (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        email TEXT NOT NULL,
        email_normalized TEXT NOT NULL,
        status TEXT NOT NULL,
        level INTEGER NOT NULL,
        active BOOLEAN NOT NULL,
        team_id TEXT REFERENCES conformance_teams (id),
        mentor_ids JSON NOT NULL,
        points INTEGER,
        rating REAL NOT NULL,
        version INTEGER NOT NULL
    );
    CREATE INDEX conformance_people_email ON conformance_people (email_normalized)
"#;

const POSTGRES_TABLES: &str = r#"
    CREATE TABLE conformance_teams (id text PRIMARY KEY, name text NOT NULL);
    CREATE TABLE conformance_people (
        id text PRIMARY KEY,
        name text NOT NULL,
        email text NOT NULL,
        email_normalized text NOT NULL,
        status text NOT NULL,
        level bigint NOT NULL,
        active boolean NOT NULL,
        team_id text REFERENCES conformance_teams (id),
        mentor_ids text[] NOT NULL,
        points integer,
        rating double precision NOT NULL,
        version bigint NOT NULL
    );
    CREATE INDEX conformance_people_email ON conformance_people (email_normalized)
"#;

async fn seeded(db: TestDb, tables: &str, seed: OriginSeed) -> HeldOrigin {
    db.execute(tables).await;
    for (schema, records) in &seed.entities {
        db.insert(schema, records).await;
    }
    let origin = SqlOrigin::builder(db.pool())
        .entity(teams())
        .entity(people())
        .build()
        .await
        .expect("the tables answer the schemas");
    HeldOrigin {
        origin,
        db: Arc::new(db),
    }
}

async fn sqlite_origin(seed: OriginSeed) -> Option<HeldOrigin> {
    Some(seeded(TestDb::sqlite().await, SQLITE_TABLES, seed).await)
}

async fn postgres_origin(seed: OriginSeed) -> Option<HeldOrigin> {
    Some(seeded(TestDb::postgres().await?, POSTGRES_TABLES, seed).await)
}

mod sqlite {
    cache_core::origin_conformance_tests!(super::sqlite_origin);
}

mod postgres {
    cache_core::origin_conformance_tests!(super::postgres_origin);
}
