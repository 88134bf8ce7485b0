//! The in-memory store: the conformance suite, and what needs its injected clock or its key
//! layout.

mod conformance {
    cache_core::store_conformance_tests!(async { cache_core::MemoryStore::new() });
}
