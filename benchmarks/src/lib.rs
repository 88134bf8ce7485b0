//! The pieces of model-cache's benchmark report.
//!
//! The report itself is the bench target `benches/report/`: `cargo bench -p
//! model-cache-bench` spawns one `redis-server` on loopback and measures model-cache side by
//! side with the physical limit (raw redis-rs commands on the same connection, and
//! `redis-benchmark`) and with peers (`cached`'s Redis store, a bare `moka` cache), then writes
//! `docs/benchmarks.md`. Every figure there is a ratio of two variants measured in the same
//! run, in alternate batches, so that it holds on a noisy shared machine.
//!
//! This library holds what the report is made of, so that it is unit-tested: the record
//! model and its generator ([`model`]), an origin that counts its calls ([`origin`]), latency
//! samples and the interleaved runner ([`sample`]), the HTTP load generator ([`http`]),
//! `redis-benchmark` output parsing ([`redis_benchmark`]), what the machine is ([`machine`])
//! and the Markdown report ([`report`]).

pub mod http;
pub mod machine;
pub mod model;
pub mod origin;
pub mod redis_benchmark;
pub mod report;
pub mod sample;
