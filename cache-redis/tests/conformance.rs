//! The store conformance suite (`cache_core::testing`) against real servers: one server with
//! one bucket and with several, and a three-master cluster with entities spread over buckets.
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
