//! Pure core of Mee in Rust.
//!
//! Everything here is plain data and pure functions: the application configuration
//! ([`config`]), secrets that never print ([`secret`]), binlog positions
//! ([`position`]) and the retry policy ([`retry`]). Adapter crates (MySQL, Kafka, Elasticsearch, Redis) depend on this
//! crate; it depends on none of them and does no network I/O.

pub mod config;
pub mod dead_letter;
pub mod event;
pub mod generation;
pub mod handler;
pub mod materialize;
pub mod position;
pub mod retry;
pub mod secret;
pub mod value;

pub use config::{AppConfig, ConfigError};
pub use position::BinlogPosition;
pub use retry::{Backoff, Transient};
pub use secret::Secret;
