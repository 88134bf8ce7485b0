//! What a store tells about itself: its counters and gauges ([`StoreStats`]) and whether it
//! takes calls now ([`Availability`]).

use serde::Serialize;

/// Whether a store takes calls now, as its connection and circuit breaker see it
/// ([`Store::availability`](super::Store::availability)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Availability {
    /// Calls go through.
    Available,
    /// Calls are refused or fail: not connected, or the circuit breaker is open. The cache
    /// answers from the origin meanwhile.
    Unavailable,
    /// The circuit breaker lets one probe through to see whether the store is back.
    Probing,
}

impl Availability {
    /// `available`, `unavailable`, `probing`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Available => "available",
            Self::Unavailable => "unavailable",
            Self::Probing => "probing",
        }
    }
}

/// Counters and gauges a store reports. Fields a store cannot know are `None`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StoreStats {
    /// The backend: `memory`, `redis`, `redis-cluster`.
    pub backend: String,
    /// Keys (entries) in this cache's namespace.
    pub total_keys: u64,
    /// Memory used by the store (the whole server for Redis).
    pub memory_used_bytes: Option<u64>,
    /// The same, for people (`1.21M`).
    pub memory_used_human: Option<String>,
    /// Server-wide keyspace hits.
    pub keyspace_hits: Option<u64>,
    /// Server-wide keyspace misses.
    pub keyspace_misses: Option<u64>,
    /// Connected clients.
    pub connected_clients: Option<u64>,
    /// Keys evicted for memory.
    pub evicted_keys: Option<u64>,
    /// Whether [`StoreStats::total_keys`] was counted key by key (`true`) or estimated, as a
    /// large Redis namespace is from `DBSIZE` and a sample so that scrapes stay cheap.
    pub total_keys_exact: bool,
}

/// Bytes for people, as Redis writes `used_memory_human` ([`StoreStats::memory_used_human`]).
///
/// ```
/// assert_eq!(cache_core::store::human_bytes(912), "912B");
/// assert_eq!(cache_core::store::human_bytes(1_268_000), "1.21M");
/// ```
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["K", "M", "G", "T", "P"];
    if bytes < 1024 {
        return format!("{bytes}B");
    }
    #[allow(clippy::cast_precision_loss)]
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.2}{}", UNITS[unit])
}
