//! `CACHE_MEMORY_BUDGET_MB` bounds the in-memory store the demo builds when `REDIS_URL` is
//! unset.

mod common;

use std::sync::Arc;

use cache_core::{Links, RecordId, store::Store};
use chrono::{TimeZone, Utc};
use clap::Parser;
use common::{Backend, TestDb};
use demo_app::{
    app::{build_cache, connect_store_with, open_origin},
    config::Cli,
    models::User,
    origin::OriginSettings,
};

/// About 4 MB of users: four times what a budget of 1 MiB holds.
const USERS: usize = 2_000;

async fn fill(store: Arc<dyn Store>, test: &TestDb) -> cache_core::store::StoreStats {
    let origin = open_origin(&test.db, OriginSettings::default()).await.expect("origin");
    let cache = build_cache(Arc::clone(&store), origin, true).expect("cache");
    let at = Utc.with_ymd_and_hms(2025, 1, 6, 9, 0, 0).single().expect("a time");
    for i in 0..USERS {
        let user = User {
            id: RecordId::new(format!("recBudget{i:08}")).expect("an id"),
            email: format!("user{i}@example.com"),
            display_name: "x".repeat(2_000),
            owned_events: Links::default(),
            attending_events: Links::default(),
            created_at: at,
            updated_at: at,
        };
        cache.upsert(&user).await.expect("upsert");
    }
    store.stats().await.expect("stats")
}

#[tokio::test]
async fn the_memory_budget_bounds_the_in_memory_store() {
    let test = TestDb::new(Backend::Sqlite).await;
    let settings = |args: &[&str]| {
        let mut all = vec!["demo-app"];
        all.extend_from_slice(args);
        Cli::try_parse_from(all).expect("arguments").config.store_settings()
    };

    let small = connect_store_with(None, &settings(&["--cache-memory-budget-mb", "1"]))
        .await
        .expect("store");
    let stats = fill(small, &test).await;
    let used = stats.memory_used_bytes.expect("the memory store weighs what it holds");
    assert!(used <= 1024 * 1024, "{used} bytes held within a budget of 1 MiB");
    assert!(
        stats.total_keys < USERS as u64,
        "{} keys: the budget evicted some",
        stats.total_keys
    );

    // The default budget (128 MiB) keeps them all.
    let default = connect_store_with(None, &settings(&[])).await.expect("store");
    let stats = fill(default, &test).await;
    assert!(stats.total_keys >= USERS as u64, "{} keys", stats.total_keys);
    test.cleanup().await;
}
