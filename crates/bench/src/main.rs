//! `mee-bench <benchmark>`: measured figures beside a baseline measured in the same
//! run, as ratios. Run through `scripts/bench`, which builds in release mode and
//! brings the local stack up. Results go to stdout and `target/bench/report.md`.

mod common;
mod fixture;
mod listen;
mod materializer;
mod report;
mod sync;
mod update;

use clap::{Parser, Subcommand};

/// The services use mimalloc; so does the benchmark, for both sides.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "mee-bench",
    about = "Benchmarks against the local stack, with same-run baselines"
)]
struct Cli {
    #[command(subcommand)]
    bench: Bench,
}

#[derive(Debug, Subcommand)]
enum Bench {
    /// Documents/s of the materializer vs a plain mysql_async client running the same
    /// queries, and peak RSS after 10% and after 100% of the masters.
    Materializer(materializer::Args),
    /// Events/s from a pre-generated binlog to Kafka vs reading alone and producing alone.
    Listen(listen::Args),
    /// Documents/s of the `update` binary rebuilding the fixture into the bulk sink (vs
    /// the raw MySQL read of the same rows) and into the stack's Elasticsearch API (vs
    /// the raw bulk rate of the same documents), and its peak RSS at two table sizes.
    Update(update::Args),
    /// Latency from commit to visible through `listen` and `sync` at a steady rate (local
    /// ES API and bulk sink), and catch-up events/s over a backlog vs a plain consumer.
    Sync(sync::Args),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().bench {
        Bench::Materializer(args) => materializer::run(args).await,
        Bench::Listen(args) => listen::run(args).await,
        Bench::Update(args) => update::run(args).await,
        Bench::Sync(args) => sync::run(args).await,
    }
}
