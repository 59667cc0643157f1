//! The scenario suite lives in `tests/`: the three services as real processes (built by
//! `cargo build --bins`, which `scripts/test` runs first) against the local stack, with
//! a random workload on the shop schema, each scenario ending with `update --verify`.
//!
//! `MEE_E2E_LONG=1` runs the long variants (ten times the changes);
//! `MEE_E2E_SEED=<n>` replays a run's random choices (each test prints its seed).
