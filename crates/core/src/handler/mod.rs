//! Handler configs: Mee's YAML format describing one index, parsed with positions and
//! checked before any I/O ([`Handler::parse`]), every problem reported at once.

mod model;
mod parse;
pub mod placeholder;
pub mod statement;
pub mod yaml;

pub use model::{Field, Group, Handler, Item, Template};
pub use parse::{HandlerError, Issue};

#[cfg(test)]
mod tests;
