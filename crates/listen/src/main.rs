use clap::Parser;
use mee_listen::Cli;
use std::process::ExitCode;

/// mimalloc: the materializer and the encoders allocate many small strings; glibc
/// malloc spent about 30% of `update`'s CPU on them (scripts/bench update).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = async {
        let cfg = mee_core::AppConfig::load(&cli.config)?;
        mee_telemetry::init_tracing(&cfg.telemetry)?;
        mee_listen::run(cli, cfg).await
    };
    mee_telemetry::exit_code(result.await)
}
