//! The model-based check of `cache-core` (`cache-core/tests/model/mod.rs`) over Redis, with two
//! `Cache` instances sharing one namespace, each with its own store and near cache: random
//! reads and writes, each on either instance, answer exactly what the origin says. A writer
//! reads its own writes at once; the other instance after the invalidations made before a
//! fence reached it ([`RedisStore::sync_invalidations`]). Time does not move on a real server:
//! the model's clock op changes nothing here.
#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

#[path = "../../cache-core/tests/common/mod.rs"]
mod common;
#[path = "../../cache-core/tests/model/mod.rs"]
mod model;

use std::time::{Duration, Instant};

use cache_core::{Cache, testing::MemoryOrigin};
use cache_redis::{
    RedisStore,
    testing::{shared_server, unique_namespace},
};
use common::{Event, Project, User};
use model::{World, op};
use proptest::prelude::*;

/// Two instances over one namespace of the shared server.
struct Pair {
    caches: [Cache; 2],
    stores: [RedisStore; 2],
    origin: MemoryOrigin,
}

impl World for Pair {
    fn cache(&self, n: usize) -> &Cache {
        &self.caches[n % 2]
    }

    fn origin(&self) -> &MemoryOrigin {
        &self.origin
    }

    fn advance(&self, _: Duration) -> bool {
        false
    }

    /// A miss fills the store, the next read keeps the store's answer, the third is near.
    fn reads(&self) -> usize {
        3
    }

    async fn settle(&self, writer: usize) {
        self.stores[(writer + 1) % 2].sync_invalidations().await;
    }
}

async fn pair() -> Pair {
    let server = shared_server();
    let namespace = unique_namespace();
    let origin = MemoryOrigin::new();
    let instance = || async {
        let store = RedisStore::builder(server.url())
            .namespace(&namespace)
            .connect()
            .await
            .unwrap_or_else(|e| server.fail(&format!("connect: {e}")));
        let cache = Cache::builder(store.clone(), origin.clone())
            .register::<Project>()
            .register::<Event>()
            .register::<User>()
            .near_cache(1 << 20)
            .build()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !cache.near_cache().unwrap().is_enabled() {
            assert!(Instant::now() < deadline, "tracking never came on");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        (cache, store)
    };
    let (a, b) = (instance().await, instance().await);
    Pair {
        caches: [a.0, b.0],
        stores: [a.1, b.1],
        origin,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn every_answer_of_either_instance_is_what_the_origin_says(
        ops in prop::collection::vec((0..2usize, op()), 1..40)
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let pair = pair().await;
            let near = |n: usize| pair.caches[n].near_cache().unwrap().stats();
            let outcome = model::run(&pair, ops).await;
            // The near caches took part: neither went off during the run.
            prop_assert_eq!((near(0).outages, near(1).outages), (0, 0));
            outcome
        })?;
    }
}
