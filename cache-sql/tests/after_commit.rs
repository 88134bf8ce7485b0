//! Writes that reach the cache after commit, and only then, on SQLite and PostgreSQL.

mod common;

use std::{sync::Arc, time::Duration};

use cache_core::{
    Cache, Cacheable, MemoryStore, RecordId,
    change::{Change, ChangeOutcome, Refusal},
    testing::FailingStore,
};
use cache_sql::{SqlError, SqlOrigin, SqlTransaction};
use common::{GatedOrigin, HeldOrigin, TestDb};
use tokio::time::timeout;

#[derive(Debug, Clone, PartialEq, Cacheable)]
#[cache(entity = "people", source_table = "people")]
struct Person {
    #[cache(id)]
    id: RecordId,
    name: String,
    #[cache(version)]
    version: i64,
}

/// No version field: only the fill protocol and source times order its writes.
#[derive(Debug, Clone, PartialEq, Cacheable)]
#[cache(entity = "notes", source_table = "notes")]
struct Note {
    #[cache(id)]
    id: RecordId,
    title: String,
}

const TABLES: &str = "CREATE TABLE people (id TEXT PRIMARY KEY, name TEXT NOT NULL, version BIGINT NOT NULL);
    CREATE TABLE notes (id TEXT PRIMARY KEY, title TEXT NOT NULL);
    INSERT INTO people VALUES ('ada', 'Ada', 1), ('bob', 'Bob', 1);
    INSERT INTO notes VALUES ('n1', 'old')";

struct Setup<S = MemoryStore> {
    origin: SqlOrigin,
    gated: GatedOrigin,
    cache: Cache,
    store: S,
}

async fn setup<S: Clone + cache_core::store::Store>(db: TestDb, store: S) -> Setup<S> {
    db.execute(TABLES).await;
    let origin = SqlOrigin::builder(db.pool())
        .model::<Person>()
        .model::<Note>()
        .build()
        .await
        .expect("the tables answer the models");
    let gated = GatedOrigin::new(HeldOrigin {
        origin: origin.clone(),
        db: Arc::new(db),
    });
    let cache = Cache::builder(store.clone(), gated.clone())
        .register::<Person>()
        .register::<Note>()
        .build()
        .expect("a cache");
    Setup {
        origin,
        gated,
        cache,
        store,
    }
}

fn id(s: &str) -> RecordId {
    s.parse().expect("a valid id")
}

/// Runs one statement on the transaction's connection, whichever the database.
async fn run(tx: &mut SqlTransaction, sql: &'static str) -> Result<(), sqlx::Error> {
    match tx.postgres() {
        Ok(conn) => sqlx::query(sql).execute(conn).await.map(|_| ()),
        Err(_) => sqlx::query(sql)
            .execute(tx.sqlite().expect("one of the two"))
            .await
            .map(|_| ()),
    }
}

async fn person(s: &Setup<impl cache_core::store::Store>, pid: &str) -> Option<Person> {
    s.cache.get::<Person>(&id(pid)).await.expect("the cache answers")
}

async fn commit_applies_the_committed_row(db: TestDb) {
    let s = setup(db, MemoryStore::new()).await;
    assert_eq!(person(&s, "ada").await.expect("ada").name, "Ada");
    let mut tx = s.origin.begin(&s.cache).await.expect("begins");
    // The database computes the version: the cache gets what is committed, not what the
    // application meant.
    run(
        &mut tx,
        "UPDATE people SET name = 'Ada L.', version = version + 1 WHERE id = 'ada'",
    )
    .await
    .expect("updates");
    tx.wrote::<Person>(&id("ada")).expect("noted");
    let committed = tx.commit().await.expect("commits");
    assert_eq!((committed.applied, committed.invalidated), (1, 0));
    assert!(committed.failed.is_empty());
    let fetches = s.gated.fetches();
    let ada = person(&s, "ada").await.expect("ada");
    assert_eq!((ada.name.as_str(), ada.version), ("Ada L.", 2));
    assert_eq!(s.gated.fetches(), fetches, "served from the cache, not the database");
}

async fn rollback_error_and_drop_apply_nothing(db: TestDb) {
    let s = setup(db, MemoryStore::new()).await;
    assert_eq!(person(&s, "ada").await.expect("ada").name, "Ada");

    // Rolled back.
    let mut tx = s.origin.begin(&s.cache).await.expect("begins");
    run(
        &mut tx,
        "UPDATE people SET name = 'Rolled', version = 9 WHERE id = 'ada'",
    )
    .await
    .expect("updates");
    tx.wrote::<Person>(&id("ada")).expect("noted");
    tx.rollback().await.expect("rolls back");

    // An error inside the transaction: the application returns early and drops it.
    let failed = async {
        let mut tx = s.origin.begin(&s.cache).await.expect("begins");
        run(
            &mut tx,
            "UPDATE people SET name = 'Errored', version = 9 WHERE id = 'ada'",
        )
        .await?;
        tx.wrote::<Person>(&id("ada")).expect("noted");
        run(&mut tx, "INSERT INTO people VALUES ('bob', 'Bob again', 1)").await?;
        tx.commit().await.map(|_| ()).map_err(|e| match e {
            SqlError::Transaction { source, .. } => source,
            other => panic!("unexpected {other}"),
        })
    }
    .await;
    assert!(failed.is_err(), "the duplicate key fails the transaction");

    // Dropped without commit.
    let mut tx = s.origin.begin(&s.cache).await.expect("begins");
    run(
        &mut tx,
        "UPDATE people SET name = 'Dropped', version = 9 WHERE id = 'ada'",
    )
    .await
    .expect("updates");
    tx.wrote::<Person>(&id("ada")).expect("noted");
    drop(tx);

    let fetches = s.gated.fetches();
    let ada = person(&s, "ada").await.expect("ada");
    assert_eq!(
        (ada.name.as_str(), ada.version),
        ("Ada", 1),
        "the cache was not touched"
    );
    assert_eq!(s.gated.fetches(), fetches, "and still serves its copy");
    s.cache.invalidate::<Person>(&id("ada")).await.expect("invalidates");
    assert_eq!(person(&s, "ada").await.expect("ada").name, "Ada", "nor the database");
}

async fn a_failing_cache_step_leaves_the_record_invalidated(db: TestDb) {
    let store = FailingStore::new(MemoryStore::new());
    let s = setup(db, store).await;
    assert_eq!(person(&s, "ada").await.expect("ada").name, "Ada");
    s.store.fail("put");
    let mut tx = s.origin.begin(&s.cache).await.expect("begins");
    run(
        &mut tx,
        "UPDATE people SET name = 'Ada L.', version = 2 WHERE id = 'ada'",
    )
    .await
    .expect("updates");
    tx.wrote::<Person>(&id("ada")).expect("noted");
    let committed = tx.commit().await.expect("the commit succeeded");
    assert_eq!((committed.applied, committed.invalidated), (0, 1), "{committed:?}");
    s.store.heal();
    let fetches = s.gated.fetches();
    let ada = person(&s, "ada").await.expect("ada");
    assert_eq!(ada.name, "Ada L.", "never the stale copy");
    assert_eq!(s.gated.fetches(), fetches + 1, "read from the database");
}

async fn a_fill_racing_the_transaction_is_not_stored(db: TestDb) {
    let s = setup(db, MemoryStore::new()).await;
    let gate = s.gated.hold();
    let cache = s.cache.clone();
    let reader = tokio::spawn(async move { cache.get::<Note>(&id("n1")).await });
    timeout(Duration::from_secs(10), gate.arrived(1))
        .await
        .expect("the fill read the row");

    let mut tx = s.origin.begin(&s.cache).await.expect("begins");
    run(&mut tx, "UPDATE notes SET title = 'new' WHERE id = 'n1'")
        .await
        .expect("updates");
    tx.wrote::<Note>(&id("n1")).expect("noted");
    let committed = tx.commit().await.expect("commits");
    assert_eq!(committed.applied, 1);
    gate.release();

    let read = reader.await.expect("joins").expect("answers").expect("n1");
    assert_eq!(read.title, "old", "the racing read answers what it read");
    let now = s.cache.get::<Note>(&id("n1")).await.expect("answers").expect("n1");
    assert_eq!(now.title, "new", "its pre-commit state was not stored over the commit");
    assert_eq!(s.gated.fetches(), 1, "the committed row came from the transaction");
}

async fn a_delete_in_the_transaction_leaves_a_versioned_tombstone(db: TestDb) {
    let s = setup(db, MemoryStore::new()).await;
    let old = person(&s, "bob").await.expect("bob");
    let mut tx = s.origin.begin(&s.cache).await.expect("begins");
    let deleted = tx
        .delete::<Person>(&id("bob"))
        .await
        .expect("deletes")
        .expect("bob existed");
    assert_eq!(deleted.version, Some(1.0));
    assert!(tx.delete::<Person>(&id("nobody")).await.expect("answers").is_none());
    tx.commit().await.expect("commits");
    let fetches = s.gated.fetches();
    assert_eq!(person(&s, "bob").await, None, "gone");
    assert_eq!(s.gated.fetches(), fetches, "from the tombstone");
    // A late write of the old state is refused by the tombstone.
    let late = Change::upsert(Person::schema(), old.to_source().expect("source shape"));
    let outcome = s.cache.apply_change(late).await.expect("answers");
    assert!(
        matches!(outcome, ChangeOutcome::Refused(Refusal::Deleted)),
        "{outcome:?}"
    );
}

macro_rules! both {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(super::TestDb::sqlite().await).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    let Some(db) = super::TestDb::postgres().await else { return };
                    super::$name(db).await;
                }
            )*
        }
    };
}

both!(
    commit_applies_the_committed_row,
    rollback_error_and_drop_apply_nothing,
    a_failing_cache_step_leaves_the_record_invalidated,
    a_fill_racing_the_transaction_is_not_stored,
    a_delete_in_the_transaction_leaves_a_versioned_tombstone,
);
