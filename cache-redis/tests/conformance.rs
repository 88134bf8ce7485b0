//! The store conformance suite (`cache_core::testing`) against real servers: one server with
//! one bucket and with several, and a three-master cluster with entities spread over buckets;
//! the first and the last again with a near cache tracking each store.
//! Each check gets a fresh namespace on a server shared by the checks running at the same time.

mod single_server {
    cache_core::store_conformance_tests!(cache_redis::testing::store_on_shared_server(1));
}

mod single_server_buckets {
    cache_core::store_conformance_tests!(cache_redis::testing::store_on_shared_server(4));
}

mod cluster_buckets {
    cache_core::store_conformance_tests!(cache_redis::testing::store_on_shared_cluster(6));
}

// The same suites with a near cache over each store, waiting until tracking is on: every check
// then runs with the store's tracking connections open, its pushes arriving and its own
// writes reported to the near cache.

mod single_server_tracked {
    cache_core::store_conformance_tests!(crate::tracked(cache_redis::testing::store_on_shared_server(1)));
}

mod cluster_tracked {
    cache_core::store_conformance_tests!(crate::tracked(cache_redis::testing::store_on_shared_cluster(6)));
}

/// `store` with a near cache subscribed and tracking on.
async fn tracked(store: impl Future<Output = cache_redis::RedisStore>) -> cache_redis::RedisStore {
    let store = store.await;
    let cache = cache_core::Cache::builder(store.clone(), cache_core::testing::MemoryOrigin::new())
        .near_cache(1 << 20)
        .build()
        .expect("a cache");
    let near = cache.near_cache().expect("redis supports the near cache");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !near.is_enabled() {
        assert!(std::time::Instant::now() < deadline, "tracking never came on");
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    // The store holds its near caches weakly: this one lives as long as the test's process.
    Box::leak(Box::new(cache));
    store
}
