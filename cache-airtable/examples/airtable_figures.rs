//! Figures against the simulator (5 requests a second per base, as Airtable): a sweep of
//! 10,000 cached records, a cold leaderboard of 200 projects, 64 concurrent cold reads, and
//! the feed's notification-to-cache latency and throughput.
//!
//! ```text
//! cargo run --release -p cache-airtable --features testing --example airtable_figures
//! ```

use std::time::{Duration, Instant};

use cache_airtable::{AirtableClient, AirtableConfig, AirtableOrigin, FeedConfig, WebhookFeed, testing::Simulator};
use cache_core::{Cache, Cacheable, Link, MemoryStore, RecordId};
use serde_json::{Map, Value, json};

const BASE: &str = "appFigures0000001";

#[derive(Cacheable, Clone, Debug)]
#[cache(entity = "events", source_table = "Events")]
struct Event {
    #[cache(id)]
    id: RecordId,
    name: String,
}

#[derive(Cacheable, Clone, Debug)]
#[cache(entity = "projects", source_table = "Projects")]
struct Project {
    #[cache(id)]
    id: RecordId,
    name: String,
    event: Link<Event>,
    #[sortable]
    points: i64,
}

fn fields(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let records: usize = std::env::var("FIGURES_RECORDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(10_000);
    let sim = Simulator::start().await?;
    let big = sim.insert(BASE, "Events", fields(json!({ "name": "big" })));
    let small = sim.insert(BASE, "Events", fields(json!({ "name": "small" })));
    let mut ids = Vec::new();
    for n in 0..records {
        let event = if n % 50 == 0 { &small } else { &big };
        let id = sim.insert(
            BASE,
            "Projects",
            fields(json!({ "name": format!("p{n}"), "event_id": [event], "points": n % 97 })),
        );
        ids.push(RecordId::new(id)?);
    }
    let client = AirtableClient::new(AirtableConfig::new(BASE, sim.token()).api_url(sim.url()))?;
    let origin = AirtableOrigin::new(client.clone());
    let cache = Cache::builder(MemoryStore::new(), origin.clone())
        .register::<Event>()
        .register::<Project>()
        .build()?;

    // Fill the cache with all 10,000 (get_many: 100 ids a request), then sweep it.
    let before = sim.stats(BASE).requests;
    let started = Instant::now();
    for chunk in ids.chunks(1000) {
        cache.get_many::<Project>(chunk).await?;
    }
    println!(
        "fill 10,000: {} requests, {:.1} s",
        sim.stats(BASE).requests - before,
        started.elapsed().as_secs_f64()
    );
    let skip_sweep = std::env::var_os("FIGURES_SKIP_SWEEP").is_some();
    for id in ids.iter().skip(1).step_by(200).filter(|_| !skip_sweep) {
        sim.remove(BASE, "Projects", id.as_str());
    }
    let before = sim.stats(BASE).requests;
    let started = Instant::now();
    let report = if skip_sweep {
        cache_core::SweepReport {
            entity: "projects",
            checked: 0,
            removed: 0,
            batches: 0,
            elapsed_ms: 0,
        }
    } else {
        cache.sweep(Project::schema(), 100, |_| {}).await?
    };
    println!(
        "sweep 10,000: {} requests, {:.1} s, {} removed",
        sim.stats(BASE).requests - before,
        started.elapsed().as_secs_f64(),
        report.removed
    );

    // A cold leaderboard: the 200 projects of the small event.
    let cold = Cache::builder(MemoryStore::new(), origin.clone())
        .register::<Event>()
        .register::<Project>()
        .build()?;
    let before = sim.stats(BASE).requests;
    let started = Instant::now();
    let board = cold
        .query(
            Project::by_event(&RecordId::new(&small)?)
                .desc(ProjectSort::Points)
                .limit(200),
        )
        .await?;
    println!(
        "cold leaderboard of {}: {} requests, {:.2} s",
        board.len(),
        sim.stats(BASE).requests - before,
        started.elapsed().as_secs_f64()
    );

    // 64 concurrent cold reads of different records.
    let cold = Cache::builder(MemoryStore::new(), origin.clone())
        .register::<Event>()
        .register::<Project>()
        .build()?;
    let before = sim.stats(BASE);
    let started = Instant::now();
    let reads = futures::future::join_all(ids[3..67].iter().map(|id| cold.get::<Project>(id))).await;
    let answered = reads.iter().filter(|r| matches!(r, Ok(Some(_)))).count();
    let after = sim.stats(BASE);
    println!(
        "64 concurrent cold reads: {answered} answered, {} requests, {} refused (429), at most {} in a second, {:.1} s",
        after.requests - before.requests,
        after.rate_limited - before.rate_limited,
        after.max_per_second,
        started.elapsed().as_secs_f64()
    );

    // The feed: a notification route on a loopback port.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/airtable", listener.local_addr()?);
    let webhook = client.create_webhook(Some(&url)).await?;
    let mut config = FeedConfig::new(webhook.id, webhook.mac_secret_base64);
    config.poll_interval = Duration::from_secs(3600);
    let feed = WebhookFeed::new(cache.clone(), origin, config)?;
    let app: axum::Router = feed.routes("/airtable");
    tokio::spawn(async move { axum::serve(listener, app).await });
    tokio::spawn({
        let feed = feed.clone();
        async move { feed.run(std::future::pending()).await }
    });
    let mut latencies = Vec::new();
    for round in 0..10 {
        // Not one of the records deleted above (every 200th from the second).
        let id = &ids[1010 + round];
        cache.get::<Project>(id).await?;
        let name = format!("renamed {round}");
        let started = Instant::now();
        assert!(sim.update(BASE, "Projects", id.as_str(), fields(json!({ "name": name }))));
        loop {
            if cache.get::<Project>(id).await?.is_some_and(|p| p.name == name) {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(60), "the change never arrived");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        latencies.push(started.elapsed());
    }
    latencies.sort();
    println!(
        "notification to cache: median {:.0} ms, max {:.0} ms (10 changes, one at a time)",
        latencies[latencies.len() / 2].as_secs_f64() * 1000.0,
        latencies[latencies.len() - 1].as_secs_f64() * 1000.0
    );

    // Throughput: 1,000 changes made at once, applied by the consumer.
    let started = Instant::now();
    let changed: Vec<&RecordId> = ids[2000..3000]
        .iter()
        .filter(|id| sim.update(BASE, "Projects", id.as_str(), fields(json!({ "name": "bulk" }))))
        .collect();
    let last = changed[changed.len() - 1];
    loop {
        if cache.get::<Project>(last).await?.is_some_and(|p| p.name == "bulk") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "the changes never arrived"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "feed throughput: {} changes in {elapsed:.1} s ({:.0} changes/s)",
        changed.len(),
        changed.len() as f64 / elapsed
    );
    Ok(())
}
