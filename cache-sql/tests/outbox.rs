//! Change capture through the outbox, on SQLite and PostgreSQL: writers the application never
//! hears of reach the cache.

mod common;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

use cache_core::{
    Cache, Cacheable, MemoryStore, RecordId,
    clock::ManualClock,
    feed::{Backlog, FeedStatus},
    store::Lookup,
    testing::FailingStore,
};
use cache_sql::{
    Outbox, OutboxListener, SqlError, SqlOrigin,
    outbox::{OUTBOX_FEED, Operation, OutboxChange},
};
use common::{GatedOrigin, HeldOrigin, TestDb};
use tokio::{sync::watch, time::timeout};

#[derive(Debug, Clone, PartialEq, Cacheable)]
#[cache(entity = "people", source_table = "people")]
struct Person {
    #[cache(id)]
    id: RecordId,
    name: String,
    #[cache(version)]
    version: i64,
}

const TABLES: &str = "CREATE TABLE people (id TEXT PRIMARY KEY, name TEXT NOT NULL, version BIGINT NOT NULL);
    INSERT INTO people VALUES ('ada', 'Ada', 1), ('bob', 'Bob', 1)";

struct Setup {
    db: Arc<TestDb>,
    origin: SqlOrigin,
    gated: GatedOrigin,
    cache: Cache,
    store: MemoryStore,
}

async fn setup(db: TestDb) -> Setup {
    db.execute(TABLES).await;
    let origin = SqlOrigin::builder(db.pool())
        .model::<Person>()
        .build()
        .await
        .expect("the tables answer the models");
    let db = Arc::new(db);
    let gated = GatedOrigin::new(HeldOrigin {
        origin: origin.clone(),
        db: Arc::clone(&db),
    });
    let store = MemoryStore::new();
    let cache = Cache::builder(store.clone(), gated.clone())
        .register::<Person>()
        .build()
        .expect("a cache");
    Outbox::new(&origin).install().await.expect("installs the triggers");
    Setup {
        db,
        origin,
        gated,
        cache,
        store,
    }
}

fn id(s: &str) -> RecordId {
    s.parse().expect("a valid id")
}

/// What the cache holds for a person, without asking the database.
async fn cached(cache: &Cache, pid: &str) -> Lookup {
    cache
        .store()
        .get(Person::schema(), &id(pid))
        .await
        .expect("the store answers")
}

fn person(lookup: Lookup) -> Option<Person> {
    match lookup {
        Lookup::Hit(bytes) => Some(Person::from_cached(&bytes).expect("a cached person")),
        _ => None,
    }
}

async fn external_writes_are_served_without_the_application(db: TestDb) {
    let s = setup(db).await;
    assert_eq!(
        s.cache
            .get::<Person>(&id("ada"))
            .await
            .expect("answers")
            .expect("ada")
            .name,
        "Ada"
    );
    assert!(s.cache.get::<Person>(&id("bob")).await.expect("answers").is_some());
    let fetches = s.gated.fetches();

    let (applied_tx, mut applied) = watch::channel(0_usize);
    let listener = OutboxListener::new(&s.origin, &s.cache)
        .poll_interval(Duration::from_millis(20))
        .on_batch(move |rows| applied_tx.send_modify(|n| *n += rows.len()));
    let (stop_tx, stop) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(async move {
        listener
            .run(async {
                let _ = stop.await;
            })
            .await
    });

    // As psql or sqlite3 would: another connection, each statement its own transaction.
    s.db.execute_elsewhere(
        "UPDATE people SET name = 'Ada L.', version = 2 WHERE id = 'ada'; DELETE FROM people WHERE id = 'bob'",
    )
    .await;
    timeout(Duration::from_secs(10), applied.wait_for(|n| *n >= 2))
        .await
        .expect("the listener applied both changes")
        .expect("the listener runs");

    let ada = s.cache.get::<Person>(&id("ada")).await.expect("answers").expect("ada");
    assert_eq!((ada.name.as_str(), ada.version), ("Ada L.", 2), "served new");
    assert_eq!(
        s.cache.get::<Person>(&id("bob")).await.expect("answers"),
        None,
        "served 404"
    );
    assert!(matches!(cached(&s.cache, "bob").await, Lookup::Tombstone));
    assert_eq!(
        s.gated.fetches(),
        fetches,
        "no read through the cache: the listener read the updated row itself"
    );
    assert_eq!(s.db.count("SELECT count(*) FROM cache_outbox").await, 0, "pruned");

    stop_tx.send(()).expect("the listener is running");
    running.await.expect("joins").expect("stops cleanly");
}

async fn changes_made_while_no_listener_runs_are_applied_when_one_starts(db: TestDb) {
    let s = setup(db).await;
    // 500 inserts, then 500 updates: 1,000 changes, none of which the application hears of.
    let inserts: Vec<String> = (0..500)
        .map(|n| format!("INSERT INTO people VALUES ('p{n}', 'v1', 1)"))
        .collect();
    s.db.execute_in_transaction(&inserts).await;
    // Read some of them through the cache now: it holds their first state.
    for n in (0..500).step_by(50) {
        let p = s.cache.get::<Person>(&id(&format!("p{n}"))).await.expect("answers");
        assert_eq!(p.expect("inserted").name, "v1");
    }
    s.db.execute("UPDATE people SET name = 'v2', version = 2 WHERE id LIKE 'p%'")
        .await;
    assert_eq!(s.db.count("SELECT count(*) FROM cache_outbox").await, 1000);

    let listener = OutboxListener::new(&s.origin, &s.cache).batch_size(200);
    let mut rounds = 0;
    while s.db.count("SELECT count(*) FROM cache_outbox").await > 0 {
        listener.run_once().await.expect("a round");
        rounds += 1;
        assert!(rounds < 20, "the outbox drains");
    }
    for n in 0..500 {
        let p = person(cached(&s.cache, &format!("p{n}")).await).unwrap_or_else(|| panic!("p{n} is cached"));
        assert_eq!((p.name.as_str(), p.version), ("v2", 2), "p{n}");
    }
    let _ = &s.store;
}

async fn two_listeners_never_apply_out_of_order(db: TestDb) {
    let s = setup(db).await;
    // A second instance: its own cache over the same store.
    let other = Cache::builder(s.store.clone(), s.gated.clone())
        .register::<Person>()
        .build()
        .expect("a cache");
    let log: Arc<Mutex<Vec<OutboxChange>>> = Arc::default();
    let listener = |cache: &Cache| {
        let log = Arc::clone(&log);
        OutboxListener::new(&s.origin, cache)
            .batch_size(7)
            .on_batch(move |rows| log.lock().expect("the log").extend_from_slice(rows))
    };
    let listeners = [listener(&s.cache), listener(&other)];

    let (done_tx, done) = watch::channel(false);
    let mut runners = Vec::new();
    for listener in listeners {
        let db = Arc::clone(&s.db);
        let mut done = done.clone();
        runners.push(tokio::spawn(async move {
            let mut refused = 0;
            loop {
                let finished = *done.borrow_and_update();
                refused += listener.run_once().await.expect("a round").refused;
                if finished && db.count("SELECT count(*) FROM cache_outbox").await == 0 {
                    return refused;
                }
                tokio::task::yield_now().await;
            }
        }));
    }
    for version in 2..=101 {
        for pid in ["ada", "bob"] {
            s.db.execute(&format!(
                "UPDATE people SET name = '{pid}{version}', version = {version} WHERE id = '{pid}'"
            ))
            .await;
        }
    }
    done_tx.send_replace(true);
    let mut refused = 0;
    for runner in runners {
        refused += timeout(Duration::from_secs(60), runner)
            .await
            .expect("the listeners drain the outbox")
            .expect("joins");
    }

    let log = log.lock().expect("the log").clone();
    assert_eq!(log.len(), 200, "every change applied once");
    let mut last: HashMap<RecordId, (i64, std::time::SystemTime)> = HashMap::new();
    for change in &log {
        assert_eq!(change.operation, Operation::Upsert);
        if let Some((seq, at)) = last.get(&change.id) {
            assert!(change.seq > *seq && change.at >= *at, "{change:?} after seq {seq}");
        }
        last.insert(change.id.clone(), (change.seq, change.at));
    }
    assert_eq!(refused, 0, "nothing reached the cache out of order");
    for pid in ["ada", "bob"] {
        let p = person(cached(&s.cache, pid).await).expect("cached");
        assert_eq!((p.name, p.version), (format!("{pid}101"), 101));
    }
}

async fn the_triggers_print_install_and_remove(db: TestDb) {
    let s = setup(db).await;
    let outbox = Outbox::new(&s.origin);
    let sql = outbox.install_sql();
    assert!(sql.contains("CREATE TABLE IF NOT EXISTS cache_outbox"), "{sql}");
    assert!(sql.contains("\"people\""), "{sql}");
    s.db.execute("UPDATE people SET version = 2 WHERE id = 'ada'").await;
    assert_eq!(s.db.count("SELECT count(*) FROM cache_outbox").await, 1);
    outbox.remove().await.expect("removes");
    s.db.execute("UPDATE people SET version = 3 WHERE id = 'ada'").await;
    assert_eq!(
        s.db.count("SELECT count(*) FROM cache_outbox").await,
        1,
        "no trigger any more"
    );
    outbox.install().await.expect("installs again");
    s.db.execute("DELETE FROM people WHERE id = 'ada'").await;
    assert_eq!(s.db.count("SELECT count(*) FROM cache_outbox").await, 2);
    let version: Option<f64> = match &*s.db {
        TestDb::Sqlite { pool, .. } => {
            sqlx::query_scalar("SELECT version FROM cache_outbox WHERE operation = 'delete'")
                .fetch_one(pool)
                .await
        }
        TestDb::Postgres { pool, .. } => {
            sqlx::query_scalar("SELECT version FROM cache_outbox WHERE operation = 'delete'")
                .fetch_one(pool)
                .await
        }
    }
    .expect("the delete row");
    assert_eq!(version, Some(3.0), "a delete records the deleted version");
}

/// The `at` of the outbox's oldest row, as the listener reads it.
async fn oldest_at(db: &TestDb) -> SystemTime {
    let micros: i64 = match db {
        TestDb::Sqlite { pool, .. } => sqlx::query_scalar("SELECT min(at) FROM cache_outbox")
            .fetch_one(pool)
            .await
            .expect("the outbox answers"),
        TestDb::Postgres { pool, .. } => {
            sqlx::query_scalar("SELECT (extract(epoch FROM min(at)) * 1000000)::int8 FROM cache_outbox")
                .fetch_one(pool)
                .await
                .expect("the outbox answers")
        }
    };
    SystemTime::UNIX_EPOCH + Duration::from_micros(u64::try_from(micros).expect("after 1970"))
}

fn status(cache: &Cache) -> FeedStatus {
    cache.feeds().status(OUTBOX_FEED).expect("the listener reported")
}

async fn the_listener_reports_its_position_lag_backlog_and_outcomes(db: TestDb) {
    let s = setup(db).await;
    // Its own cache, over a store that can fail.
    let store = FailingStore::new(MemoryStore::new());
    let cache = Cache::builder(store.clone(), s.gated.clone())
        .register::<Person>()
        .build()
        .expect("a cache");
    let listener = OutboxListener::new(&s.origin, &cache);
    assert!(
        cache.feeds().status(OUTBOX_FEED).is_none(),
        "nothing before the first round"
    );

    // An empty outbox: caught up as of the round, nothing applied.
    let before = SystemTime::now();
    listener.run_once().await.expect("a round");
    let after = SystemTime::now();
    let first = status(&cache);
    assert_eq!(first.backlog, Backlog::Exactly(0));
    let base = first.current_as_of.expect("caught up as of the round");
    assert!(before <= base && base <= after, "{base:?}");
    assert!(first.lag(after).expect("a lag") <= after.duration_since(before).expect("later"));
    assert_eq!(
        (first.position, first.last_batch, first.last_applied_at),
        (None, None, None)
    );

    // Two changes applied: the position, the batch's outcomes, the newest change's time.
    s.db.execute(
        "UPDATE people SET name = 'Ada L.', version = 2 WHERE id = 'ada'; DELETE FROM people WHERE id = 'bob'",
    )
    .await;
    let newest = oldest_at(&s.db).await;
    let drained = listener.run_once().await.expect("a round");
    assert_eq!(drained.rows, 2);
    let applied = status(&cache);
    let batch = applied.last_batch.expect("a batch");
    assert_eq!((batch.applied, batch.refused(), batch.failed), (2, 0, 0));
    let position: i64 = applied.position.as_deref().expect("a position").parse().expect("a seq");
    assert!(position >= 2, "the last seq applied: {position}");
    assert!(applied.last_source_time.expect("a source time") >= newest);
    assert!(applied.last_applied_at.is_some());
    assert_eq!(applied.backlog, Backlog::Exactly(0));
    assert!(applied.current_as_of.expect("caught up") >= base, "moved on");

    // A change older than one applied already is refused, rightly: counted by its reason.
    let long_ago = if s.db.is_postgres() {
        "'2001-01-01T00:00:00Z'"
    } else {
        "978307200000000" // SQLite keeps microseconds
    };
    s.db.execute(&format!(
        "INSERT INTO cache_outbox (table_name, record_id, operation, version, at) \
         VALUES ('people', 'ada', 'upsert', NULL, {long_ago})"
    ))
    .await;
    assert_eq!(listener.run_once().await.expect("a round").refused, 1);
    let refused = status(&cache);
    assert_eq!(refused.last_batch.map(|b| (b.applied, b.stale)), Some((0, 1)));
    assert_eq!(refused.totals.changes.stale, 1);

    // The store fails under the next change: the round fails, the row waits, and the lag is
    // the age of the row.
    store.fail("put");
    s.db.execute("UPDATE people SET name = 'Ada Lovelace', version = 3 WHERE id = 'ada'")
        .await;
    let waiting_since = oldest_at(&s.db).await;
    let err = listener.run_once().await.expect_err("the store failed");
    assert!(matches!(err, SqlError::Retry), "{err}");
    let failing = status(&cache);
    assert!(failing.failing);
    assert_eq!(failing.backlog, Backlog::Exactly(1), "the row is still in the outbox");
    assert_eq!(failing.current_as_of, Some(waiting_since), "as of the waiting row");
    let now = SystemTime::now();
    assert_eq!(
        failing.lag(now),
        Some(now.duration_since(waiting_since).unwrap_or_default()),
        "the age of the oldest waiting change"
    );
    assert_eq!(failing.last_batch.map(|b| b.failed), Some(1));
    assert!(failing.last_error.is_some());
    assert_eq!(failing.position, refused.position, "the position stays");

    // Healed: applied, caught up, the history kept.
    store.heal();
    assert_eq!(listener.run_once().await.expect("a round").rows, 1);
    let healed = status(&cache);
    assert!(!healed.failing);
    assert_eq!(healed.backlog, Backlog::Exactly(0));
    assert!(healed.current_as_of.expect("caught up") > waiting_since);
    let totals = healed.totals;
    assert_eq!(
        (
            totals.changes.applied,
            totals.changes.stale,
            totals.changes.failed,
            totals.errors
        ),
        (3, 1, 1, 1)
    );
    let outcomes: Vec<&str> = cache.feeds().recent().iter().map(|e| e.outcome()).collect();
    assert_eq!(
        outcomes,
        ["applied", "error", "failed", "stale", "applied"],
        "newest first"
    );
}

/// A listener that stalls past its lock stops where it would move the position: another
/// listener may hold the feed by then, and the position stays where that one puts it.
async fn a_listener_that_outlived_its_lock_stops_without_moving_the_position(db: TestDb) {
    let s = setup(db).await;
    let clock = ManualClock::new();
    let store = FailingStore::new(MemoryStore::builder().clock(clock.clone()).build());
    let cache = Cache::builder(store.clone(), s.gated.clone())
        .register::<Person>()
        .build()
        .expect("a cache");
    let ttl = Duration::from_secs(30);
    let listener = OutboxListener::new(&s.origin, &cache).lock_ttl(ttl);
    s.db.execute("UPDATE people SET name = 'Ada 2', version = 2 WHERE id = 'ada'")
        .await;

    // The round renews its lock as it moves the position after its batch: held there, it stalls.
    let hold = store.hold("extend_computed");
    let round = tokio::spawn(async move { listener.run_once().await });
    // Stalled past its lock: another listener takes the feed.
    let (other, taken) = hold.take_over_feed(&clock, &cache, OUTBOX_FEED, ttl).await;

    let stopped = round.await.expect("the round's task");
    assert!(matches!(stopped, Err(SqlError::FeedLost)), "{stopped:?}");
    assert_eq!(
        other.position().await.expect("answers"),
        None,
        "the position did not move"
    );
    assert!(
        other.try_lock(ttl).await.expect("answers").is_none(),
        "the other listener keeps the feed"
    );
    other.unlock(taken).await.expect("unlocks");
}

macro_rules! both {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::TestDb::sqlite().await).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(db) = super::TestDb::postgres().await else { return };
                    super::$name(db).await;
                }
            )*
        }
    };
}

both!(
    external_writes_are_served_without_the_application,
    changes_made_while_no_listener_runs_are_applied_when_one_starts,
    two_listeners_never_apply_out_of_order,
    the_triggers_print_install_and_remove,
    the_listener_reports_its_position_lag_backlog_and_outcomes,
    a_listener_that_outlived_its_lock_stops_without_moving_the_position,
);

/// PostgreSQL hands out `seq` at the write, not at the commit: a transaction holding a smaller
/// `seq` can commit after a larger one was applied. Its change is applied all the same.
#[tokio::test]
async fn postgres_a_change_committed_after_a_later_one_is_not_skipped() {
    let Some(db) = TestDb::postgres().await else { return };
    let s = setup(db).await;
    let TestDb::Postgres { pool, .. } = &*s.db else {
        unreachable!("a PostgreSQL test")
    };
    let mut slow = pool.begin().await.expect("begins");
    sqlx::query("UPDATE people SET name = 'Ada slow', version = 2 WHERE id = 'ada'")
        .execute(&mut *slow)
        .await
        .expect("takes the smaller seq");
    s.db.execute("UPDATE people SET name = 'Bob fast', version = 2 WHERE id = 'bob'")
        .await;

    let listener = OutboxListener::new(&s.origin, &s.cache);
    assert_eq!(
        listener.run_once().await.expect("a round").rows,
        1,
        "only the committed change"
    );
    assert_eq!(person(cached(&s.cache, "bob").await).expect("bob").name, "Bob fast");
    assert!(person(cached(&s.cache, "ada").await).is_none());

    slow.commit().await.expect("commits after");
    assert_eq!(listener.run_once().await.expect("a round").rows, 1, "the late change");
    assert_eq!(person(cached(&s.cache, "ada").await).expect("ada").name, "Ada slow");
}
