//! One fuzz target per parser an outsider can reach, each a test driven by bolero's random
//! engine: a short run in the test suite (a few thousand inputs each), any number of inputs
//! with `BOLERO_RANDOM_ITERATIONS` (the README's "Fuzzing" section runs 1,000,000 each).
//!
//! | target | what it feeds |
//! |---|---|
//! | `webhook_payload` | `POST /webhooks/airtable`: secrets, content types, lengths and bodies |
//! | `record_ids` | `RecordId` from text and JSON, `Link` and `Links` from JSON |
//! | `index_values_in_keys` | index values into tags, encoded components and Redis key names |
//! | `flush_patterns` | `validate_pattern`, `glob_match` and `DELETE /admin/cache?pattern=` |
//! | `query_parameters` | query strings into response-cache keys, and paging through the cache |
//!
//! Each asserts properties, not only the absence of panics. A failure prints the input and
//! the `BOLERO_RANDOM_SEED` that replays it.
// Helpers outside `#[test]` functions unwrap too: a failure there is a test failure.
#![allow(clippy::unwrap_used)]

mod flush_patterns;
mod index_values;
mod query_parameters;
mod record_ids;
mod webhook_payload;

use std::sync::Arc;

use cache_core::{Cache, Cacheable, Link, Links, MemoryStore, RecordId, store::Store, testing::MemoryOrigin};
use serde::{Deserialize, Serialize};

/// Runs a target over fuzz inputs: `$short` of them unless `BOLERO_RANDOM_ITERATIONS` says
/// how many, each at most `$max_len` bytes (`BOLERO_RANDOM_MAX_LEN` overrides it).
macro_rules! fuzz {
    ($short:expr, $max_len:expr, $target:expr) => {{
        let mut target = ::std::panic::AssertUnwindSafe($target);
        ::bolero::check!()
            .with_iterations($short)
            .with_max_len($max_len)
            .for_each(move |input: &[u8]| {
                // The whole wrapper, not its field (closures capture fields apart).
                let target = &mut target;
                (target.0)(input)
            });
    }};
}
pub(crate) use fuzz;

/// A single-threaded runtime, as each target drives one request at a time.
pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A hackathon; `slug` is indexed.
#[derive(Cacheable, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cache(entity = "events", source_table = "Events")]
pub(crate) struct Event {
    #[cache(id)]
    id: RecordId,
    name: String,
    #[indexed]
    slug: String,
}

/// A user; `email` is indexed, lowercased.
#[derive(Cacheable, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cache(entity = "users", source_table = "Users")]
pub(crate) struct User {
    #[cache(id)]
    id: RecordId,
    #[indexed(normalize = "lowercase")]
    email: String,
}

/// A project in one event (`event_id` at the source, indexed), sorted by points.
#[derive(Cacheable, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cache(entity = "projects", source_table = "Projects")]
pub(crate) struct Project {
    #[cache(id)]
    id: RecordId,
    name: String,
    event: Link<Event>,
    collaborators: Links<User>,
    #[sortable]
    points: i64,
    #[cache(version)]
    version: i64,
}

/// A valid id.
pub(crate) fn id(s: &str) -> RecordId {
    RecordId::new(s).unwrap()
}

/// Two events and three projects at the source.
pub(crate) fn origin() -> MemoryOrigin {
    let origin = MemoryOrigin::new();
    for (eid, slug) in [("recE1", "hack-one"), ("recE2", "hack-two")] {
        origin
            .put(&Event {
                id: id(eid),
                name: format!("Event {eid}"),
                slug: slug.to_owned(),
            })
            .unwrap();
    }
    for (pid, eid, points) in [("recP1", "recE1", 10), ("recP2", "recE1", 5), ("recP3", "recE2", 7)] {
        origin
            .put(&Project {
                id: id(pid),
                name: format!("Project {pid}"),
                event: Link::new(id(eid)),
                collaborators: Links::default(),
                points,
                version: 1,
            })
            .unwrap();
    }
    origin
}

/// A cache over a fresh in-memory store and `origin`, with the three models registered.
pub(crate) fn cache(origin: &MemoryOrigin) -> (Cache, Arc<dyn Store>) {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let cache = Cache::builder(Arc::clone(&store), origin.clone())
        .ttl_jitter(0.0)
        .register::<Event>()
        .register::<User>()
        .register::<Project>()
        .build()
        .unwrap();
    (cache, store)
}
