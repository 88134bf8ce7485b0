//! Figures for the report, against the PostgreSQL of `TEST_POSTGRES_URL` (a schema of its own,
//! dropped after): the origin's statements beside hand-written SQL on the same pool, and the
//! outbox's commit-to-cache latency and throughput.
//!
//! `TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test cargo run --release -p cache-sql --example sql_figures`
#![allow(clippy::unwrap_used, clippy::cast_precision_loss)]

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use cache_core::{Cache, Cacheable, MemoryStore, Order, Origin, RecordId, SourceQuery};
use cache_sql::{Outbox, OutboxListener, SqlOrigin};
use sqlx::{AssertSqlSafe, Executor, PgPool, Row, postgres::PgConnectOptions};

#[derive(Debug, Clone, PartialEq, Cacheable)]
#[cache(entity = "items", source_table = "items")]
struct Item {
    #[cache(id)]
    id: RecordId,
    name: String,
    #[indexed]
    team: i64,
    #[sortable]
    points: i64,
    #[cache(version)]
    version: i64,
}

const ROWS: i64 = 20_000;

async fn time<F: Future>(runs: u32, mut f: impl FnMut() -> F) -> Duration {
    f().await;
    let start = Instant::now();
    for _ in 0..runs {
        f().await;
    }
    start.elapsed() / runs
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let Ok(url) = std::env::var("TEST_POSTGRES_URL") else {
        eprintln!("TEST_POSTGRES_URL is unset");
        return Ok(());
    };
    let schema = format!("cache_sql_figures_{:08x}", rand::random::<u32>());
    let admin = PgPool::connect(&url).await?;
    admin.execute(AssertSqlSafe(format!("CREATE SCHEMA {schema}"))).await?;
    let options: PgConnectOptions = url.parse()?;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(8)
        .connect_with(options.options([("search_path", schema.as_str())]))
        .await?;
    let result = run(&pool).await;
    pool.close().await;
    admin
        .execute(AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
        .await?;
    result
}

async fn run(pool: &PgPool) -> Result<(), Box<dyn std::error::Error>> {
    pool.execute(
        "CREATE TABLE items (id bigint PRIMARY KEY, name text NOT NULL, team bigint NOT NULL, points bigint NOT NULL, version bigint NOT NULL)",
    )
    .await?;
    pool.execute(AssertSqlSafe(format!(
        "INSERT INTO items SELECT n, 'item ' || n, n % 50, (n * 7919) % 1000, 1 FROM generate_series(1, {ROWS}) n"
    )))
    .await?;
    pool.execute("CREATE INDEX items_team ON items (team)").await?;
    pool.execute("ANALYZE items").await?;
    let origin = SqlOrigin::builder(pool.clone()).model::<Item>().build().await?;
    let schema = Item::schema();

    let ids: Vec<RecordId> = (1..=100)
        .map(|n| RecordId::new((n * 97).to_string()).unwrap())
        .collect();
    let raw_ids: Vec<i64> = (1..=100).map(|n| n * 97).collect();
    let ours = time(200, || async { origin.fetch_many(schema, &ids).await.unwrap() }).await;
    let hand = time(200, || async {
        sqlx::query("SELECT id, name, team, points, version FROM items WHERE id = ANY($1)")
            .bind(&raw_ids)
            .fetch_all(pool)
            .await
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r.get::<i64, _>(0),
                    r.get::<String, _>(1),
                    r.get::<i64, _>(2),
                    r.get::<i64, _>(3),
                )
            })
            .collect::<Vec<_>>()
    })
    .await;
    println!(
        "fetch_many 100:   origin {ours:>10.1?}   hand-written {hand:>10.1?}   ratio {:.2}",
        ours.as_secs_f64() / hand.as_secs_f64()
    );

    let query = SourceQuery {
        filters: vec![cache_core::SourceFilter {
            field: schema.field("team").unwrap(),
            value: "7".into(),
        }],
        sort: Some((schema.field("points").unwrap(), Order::Desc)),
        offset: 0,
        limit: Some(200),
    };
    let ours = time(200, || async { origin.query(schema, &query).await.unwrap() }).await;
    let hand = time(200, || async {
        sqlx::query(
            "SELECT id, name, team, points, version FROM items WHERE team = $1 ORDER BY points DESC, id::text DESC LIMIT 200",
        )
        .bind(7_i64)
        .fetch_all(pool)
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get::<i64, _>(0), r.get::<String, _>(1), r.get::<i64, _>(3)))
        .collect::<Vec<_>>()
    })
    .await;
    println!(
        "query 200 rows:   origin {ours:>10.1?}   hand-written {hand:>10.1?}   ratio {:.2}",
        ours.as_secs_f64() / hand.as_secs_f64()
    );

    let ids: Vec<RecordId> = (1..=500)
        .map(|n| RecordId::new((n * 31).to_string()).unwrap())
        .collect();
    let raw_ids: Vec<i64> = (1..=500).map(|n| n * 31).collect();
    let ours = time(200, || async { origin.exists_many(schema, &ids).await.unwrap() }).await;
    let hand = time(200, || async {
        sqlx::query_scalar::<_, i64>("SELECT id FROM items WHERE id = ANY($1)")
            .bind(&raw_ids)
            .fetch_all(pool)
            .await
            .unwrap()
    })
    .await;
    println!(
        "exists_many 500:  origin {ours:>10.1?}   hand-written {hand:>10.1?}   ratio {:.2}",
        ours.as_secs_f64() / hand.as_secs_f64()
    );

    // The outbox: commit-to-cache latency with a listener woken by NOTIFY.
    Outbox::new(&origin).install().await?;
    let cache = Cache::builder(MemoryStore::new(), origin.clone())
        .register::<Item>()
        .build()?;
    let applied: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let log = Arc::clone(&applied);
    let listener = OutboxListener::new(&origin, &cache)
        .on_batch(move |rows| log.lock().unwrap().extend(rows.iter().map(|_| Instant::now())));
    let (stop_tx, stop) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn({
        let listener = listener.clone();
        async move {
            listener
                .run(async {
                    let _ = stop.await;
                })
                .await
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut committed = Vec::new();
    let mut conn = pool.acquire().await?;
    for n in 1..=1000_i64 {
        sqlx::query("UPDATE items SET version = version + 1 WHERE id = $1")
            .bind(n)
            .execute(&mut *conn)
            .await?;
        committed.push(Instant::now());
        // One change in flight at a time: the latency of each, not of a queue.
        while applied.lock().unwrap().len() < committed.len() {
            tokio::task::yield_now().await;
        }
    }
    let _ = stop_tx.send(());
    running.await??;
    let applied = applied.lock().unwrap().clone();
    let mut latencies: Vec<Duration> = applied
        .iter()
        .zip(&committed)
        .map(|(a, c)| a.saturating_duration_since(*c))
        .collect();
    latencies.sort();
    println!(
        "outbox commit-to-cache latency (1,000 single-row commits): p50 {:.1?}  p99 {:.1?}",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99)
    );

    // Throughput: changes made while no listener runs, then drained.
    pool.execute(AssertSqlSafe(format!(
        "UPDATE items SET version = version + 1 WHERE id <= {}",
        ROWS / 2
    )))
    .await?;
    let pending: i64 = sqlx::query_scalar("SELECT count(*) FROM cache_outbox")
        .fetch_one(pool)
        .await?;
    let start = Instant::now();
    while listener.run_once().await?.rows > 0 {}
    let elapsed = start.elapsed();
    println!(
        "outbox throughput: {pending} changes applied in {elapsed:.2?}: {:.0} changes/s",
        pending as f64 / elapsed.as_secs_f64()
    );
    Ok(())
}
