//! What configures a [`Cache`](crate::Cache) beyond its builder's methods: the defaults the
//! [`CacheBuilder`](crate::CacheBuilder) starts from, and the `CACHE_ENABLED` switch that turns the
//! cache off without a rebuild.

use std::time::Duration;

/// The default fraction by which TTLs are randomly lengthened or shortened, so that records
/// cached together do not all expire together.
pub const DEFAULT_TTL_JITTER: f64 = 0.05;
/// The default life of a fill lease: longer than any origin call should take.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(30);
/// The environment variable read by
/// [`CacheBuilder::enabled_from_env`](crate::CacheBuilder::enabled_from_env).
pub const CACHE_ENABLED_ENV: &str = "CACHE_ENABLED";

/// Reads an on/off switch as [`CacheBuilder::enabled_from_env`](crate::CacheBuilder::enabled_from_env) reads
/// [`CACHE_ENABLED`](CACHE_ENABLED_ENV): `true`, `1`, `yes`, `on` switch on, `false`, `0`, `no`,
/// `off` switch off, in any case and with surrounding whitespace; anything else is an error.
/// Fits `clap`'s `value_parser`.
///
/// ```
/// assert_eq!(cache_core::config::parse_switch(" Off "), Ok(false));
/// assert_eq!(cache_core::config::parse_switch("1"), Ok(true));
/// assert!(cache_core::config::parse_switch("maybe").is_err());
/// ```
pub fn parse_switch(value: &str) -> Result<bool, InvalidSwitch> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(InvalidSwitch {
            value: value.to_owned(),
        }),
    }
}

/// A value that is not an on/off switch ([`parse_switch`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not understood: use one of {}", Self::EXPECTED)]
pub struct InvalidSwitch {
    /// The value given.
    pub value: String,
}

impl InvalidSwitch {
    /// The values a switch accepts.
    pub const EXPECTED: &'static str = "true, false, 1, 0, yes, no, on, off";
}
