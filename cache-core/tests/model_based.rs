//! Property tests: random sequences of reads and writes against a cache answer exactly what the
//! origin says (the check itself is `model/mod.rs`, shared with the Redis run), and concurrent
//! misses of any shape make one origin call.
#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

mod common;
mod model;

use std::time::Duration;

use cache_core::{
    Cache,
    testing::{MemoryOrigin, OriginMethod},
};
use common::*;
use model::{IDS, World, op, rid, status};
use proptest::prelude::*;

/// One cache over the harness's memory store, on its manual clock.
struct Memory<'h>(&'h Harness);

impl World for Memory<'_> {
    fn cache(&self, _: usize) -> &Cache {
        &self.0.cache
    }

    fn origin(&self) -> &MemoryOrigin {
        &self.0.origin
    }

    fn advance(&self, by: Duration) -> bool {
        self.0.clock.advance(by);
        true
    }

    async fn settle(&self, _: usize) {}
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn every_answer_is_what_the_origin_says(ops in prop::collection::vec(op(), 1..40)) {
        let h = harness();
        runtime().block_on(model::run(&Memory(&h), ops.into_iter().map(|op| (0, op)).collect()))?;
    }
}

#[derive(Debug, Clone)]
enum Miss {
    Get(u8),
    GetMany(Vec<u8>),
    Query { status: Status, pages: Vec<(u8, u8)> },
}

fn miss() -> impl Strategy<Value = Miss> {
    prop_oneof![
        (0..IDS).prop_map(Miss::Get),
        prop::collection::btree_set(0..IDS, 1..5).prop_map(|s| Miss::GetMany(s.into_iter().collect())),
        (status(), prop::collection::vec((0..4u8, 1..4u8), 1..4))
            .prop_map(|(status, pages)| Miss::Query { status, pages }),
    ]
}

async fn stampede(n: usize, miss: Miss) -> Result<(), TestCaseError> {
    let h = harness();
    for i in 0..IDS / 2 {
        let status = if i % 2 == 0 { Status::Submitted } else { Status::Draft };
        h.origin
            .put(&project(&format!("recP{i}"), "recE1", status, i64::from(i), 1))
            .expect("renders");
    }
    let (method, per_reader) = match &miss {
        Miss::Get(_) => (OriginMethod::Fetch, 1),
        Miss::GetMany(list) => (OriginMethod::FetchMany, list.len() as u64),
        Miss::Query { .. } => (OriginMethod::Query, 1),
    };
    let hold = h.origin.hold(method);
    let readers: Vec<_> = (0..n)
        .map(|k| {
            let cache = h.cache.clone();
            let miss = miss.clone();
            tokio::spawn(async move {
                let found: Vec<Project> = match miss {
                    Miss::Get(i) => cache.get::<Project>(&rid(i)).await?.into_iter().collect(),
                    Miss::GetMany(list) => {
                        cache
                            .get_many(&list.iter().map(|i| rid(*i)).collect::<Vec<_>>())
                            .await?
                    }
                    Miss::Query { status, pages } => {
                        let (offset, limit) = pages[k % pages.len()];
                        let q = Project::by_status(&status)
                            .asc(ProjectSort::Points)
                            .offset(usize::from(offset))
                            .limit(usize::from(limit));
                        cache.query(q).await?
                    }
                };
                Ok::<_, cache_core::CacheError>(found.into_iter().map(|p| p.id).collect::<Vec<_>>())
            })
        })
        .collect();
    let joined = (n as u64 - 1) * per_reader;
    tokio::time::timeout(Duration::from_secs(10), hold_until(&h, &hold, 1, "projects", joined))
        .await
        .map_err(|_| TestCaseError::fail("the misses did not all join one origin call"))?;
    hold.release();
    let mut answers = Vec::new();
    for r in readers {
        answers.push(r.await.expect("no panic").expect("no error"));
    }
    prop_assert_eq!(h.origin.count(method), 1, "one origin call for {} misses", n);
    if !matches!(miss, Miss::Query { .. }) {
        prop_assert!(
            answers.windows(2).all(|w| w[0] == w[1]),
            "every reader got the same answer"
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn concurrent_misses_make_one_origin_call(n in 2usize..12, miss in miss()) {
        runtime().block_on(stampede(n, miss))?;
    }
}
