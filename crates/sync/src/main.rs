use clap::Parser;
use mee_sync::Cli;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let cfg = mee_core::AppConfig::load(&cli.config)?;
    mee_telemetry::init_tracing(&cfg.telemetry)?;
    mee_sync::run(cli, cfg).await
}
