//! `mee-bench <benchmark>`: measured figures beside a baseline measured in the same
//! run, as ratios. Run through `scripts/bench`, which builds in release mode and
//! brings the local stack up. Results go to stdout and `target/bench/report.md`.

mod listen;
mod materializer;
mod report;

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
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().bench {
        Bench::Materializer(args) => materializer::run(args).await,
        Bench::Listen(args) => listen::run(args).await,
    }
}
