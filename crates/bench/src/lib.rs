//! Pieces of the benchmarks that the `mee-bench` binary and the tests share.
//!
//! - [`sink`]: an HTTP server answering the Elasticsearch API subset Mee's writer
//!   uses, storing nothing and counting what it received, to measure our own ceiling.
//! - [`bulk_baseline`]: the raw bulk rate of pre-built documents, posted with a plain
//!   HTTP client, against the sink or a real cluster.

pub mod bulk_baseline;
pub mod sink;
