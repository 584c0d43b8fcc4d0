//! Standalone binary: `sluice-loadtest sim …` and `sluice-loadtest loadtest …`, usable before
//! the gateway binary mounts the same subcommands.

use clap::{Parser, Subcommand};
use sluice_loadtest::cli::{LoadtestArgs, SimArgs, run_loadtest, run_sim};

/// Same allocator as the gateway binary, so simulator and load generator figures are taken
/// under the allocator sluice ships with.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "sluice-loadtest",
    version,
    about = "SMSC/ISMG simulator and load generator for sluice"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the center simulator.
    Sim(SimArgs),
    /// Drive a server with load and report.
    Loadtest(Box<LoadtestArgs>),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().cmd {
        Cmd::Sim(a) => run_sim(a).await.map(|_| ()),
        Cmd::Loadtest(a) => run_loadtest(*a).await.map(|_| ()),
    }
}
