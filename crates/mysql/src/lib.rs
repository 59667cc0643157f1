//! MySQL/MariaDB adapter: connection options from the app config, connections and
//! pools, server facts (version, binlog settings, current binlog position).
//!
//! Errors carry the logical database name and say whether a retry can help.

pub mod binlog;
mod error;
mod opts;
mod preflight;
mod server;
mod source;

pub use error::MySqlError;
pub use opts::{connect, opts, pool};
pub use preflight::{PreflightProblem, check_handler};
pub use server::{ServerInfo, binlog_position, server_info, snapshot_position};
pub use source::{MySqlSource, column_kind, json_columns};

pub use mysql_async;
