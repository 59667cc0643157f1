use clap::Parser;
use mee_listen::Cli;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let cfg = mee_core::AppConfig::load(&cli.config)?;
    mee_telemetry::init_tracing(&cfg.telemetry)?;
    mee_listen::run(cli, cfg).await
}
