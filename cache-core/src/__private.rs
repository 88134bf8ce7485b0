//! Support for the code `#[derive(Cacheable)]` generates. Not a public API: anything here may
//! change in any release.

pub use serde;
pub use serde_json;
