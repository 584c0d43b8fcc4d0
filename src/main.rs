//! The `sluice` binary: `serve`, `send`, `status`, and the simulator / load generator from
//! sluice-loadtest (`sim`, `loadtest`). Logs go to stderr (`RUST_LOG`, `--log-json`);
//! command results go to stdout.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use sluice::config::Config;
use sluice::serve::{ServeOptions, run_until_signal};
use sluice_loadtest::cli::{LoadtestArgs, SimArgs, run_loadtest, run_sim};

/// mimalloc instead of glibc malloc: the pipeline allocates many small, short-lived buffers
/// across threads, where glibc's arena locking and consolidation showed up as ~15 % of CPU
/// (BENCHMARKS.md, "Where the time goes"). The `system-alloc` feature keeps the system
/// allocator instead, so heap profilers that hook malloc (heaptrack, valgrind) see every
/// allocation — mimalloc's own never reach them.
#[cfg(not(feature = "system-alloc"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "sluice", version, about = "High-throughput bulk SMS gateway")]
struct Cli {
    /// Log as JSON lines instead of text.
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the gateway until SIGTERM / Ctrl-C, then drain.
    Serve(ServeArgs),
    #[command(flatten)]
    Other(OtherCmd),
}

/// Every command but `serve`: they run on tokio's default runtime, where `serve` sizes its
/// own from the config.
#[derive(Subcommand)]
enum OtherCmd {
    /// Send one message through a running gateway's HTTP API.
    Send(SendArgs),
    /// Show a message's state from a running gateway.
    Status(StatusArgs),
    /// Run the SMSC / ISMG simulator.
    Sim(SimArgs),
    /// Drive a server with load and report.
    Loadtest(Box<LoadtestArgs>),
    /// Campaign service: subscribers, segments, tasks, launch, reports.
    Campaign(sluice::campaign_cmd::CampaignArgs),
    /// Subscriber events for triggered tasks (`events import FILE` replays a file).
    Events(sluice::campaign_cmd::EventsArgs),
    /// One A/B/control campaign end to end against the built-in simulator.
    Demo(sluice::demo::DemoArgs),
}

#[derive(Args)]
struct ServeArgs {
    /// Config file (TOML). Without it the embedded default runs: one dev account, the
    /// built-in simulator, data under ./data.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Longest wait for in-flight messages at shutdown, seconds.
    #[arg(long, default_value_t = 30)]
    drain_secs: u64,
    /// Plaintext API key the hosted campaign service sends with (the config keeps only key
    /// hashes). Defaults to the embedded config's development key when no --config is given.
    #[arg(long, env = "SLUICE_CAMPAIGN_KEY")]
    campaign_key: Option<String>,
    /// Do not host the campaign service (/v1/campaign) in this process.
    #[arg(long)]
    no_campaign: bool,
}

#[derive(Args)]
struct ClientArgs {
    /// Gateway base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080", env = "SLUICE_URL")]
    url: String,
    /// API key (the embedded default config's development key by default).
    #[arg(long, default_value = "sluice-dev-key", env = "SLUICE_API_KEY")]
    key: String,
}

#[derive(Args)]
struct SendArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// Destination number.
    #[arg(long)]
    to: String,
    /// Message text.
    #[arg(long)]
    text: String,
    /// Sender (else the account default).
    #[arg(long)]
    from: Option<String>,
    /// Idempotency key.
    #[arg(long)]
    client_ref: Option<String>,
    /// Lane: otp, notification or marketing.
    #[arg(long)]
    lane: Option<String>,
}

#[derive(Args)]
struct StatusArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// Message id from `send`.
    id: String,
}

fn init_logs(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logs(cli.log_json);
    // Before any HTTP client is built (webhooks, `send`, loadtest, campaign dispatch).
    sluice::tls::install_provider();
    match cli.cmd {
        Cmd::Serve(a) => {
            // The config names the runtime's size, so it is read before the runtime exists.
            let config = serve_config(&a)?;
            let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
            let workers = config.runtime.gateway_workers(cores);
            tracing::info!(
                workers,
                cores,
                "Gateway runtime: {workers} worker thread(s)."
            );
            runtime(Some(workers))?.block_on(serve(a, config))
        }
        Cmd::Other(cmd) => runtime(None)?.block_on(run(cmd)),
    }
}

/// Every command but `serve`, on tokio's default runtime.
async fn run(cmd: OtherCmd) -> anyhow::Result<()> {
    match cmd {
        OtherCmd::Send(a) => send(a).await,
        OtherCmd::Status(a) => status(a).await,
        OtherCmd::Sim(a) => run_sim(a).await.map(|_| ()),
        OtherCmd::Loadtest(a) => run_loadtest(*a).await.map(|_| ()),
        OtherCmd::Campaign(a) => Ok(sluice::campaign_cmd::run(a).await?),
        OtherCmd::Events(a) => Ok(sluice::campaign_cmd::run_events(a).await?),
        OtherCmd::Demo(a) => Ok(sluice::demo::run_cli(a).await?),
    }
}

/// `serve`'s config: the file given, or the embedded default.
fn serve_config(a: &ServeArgs) -> anyhow::Result<Config> {
    match &a.config {
        Some(p) => Config::load(p).with_context(|| format!("loading {}", p.display())),
        None => Config::embedded().context("embedded default config"),
    }
}

/// A multi-thread runtime with every driver; `workers` worker threads, or tokio's default
/// (one per core, or `TOKIO_WORKER_THREADS`).
fn runtime(workers: Option<usize>) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut b = tokio::runtime::Builder::new_multi_thread();
    b.enable_all();
    if let Some(n) = workers {
        b.worker_threads(n);
    }
    b.build().context("starting the tokio runtime")
}

async fn serve(a: ServeArgs, config: Config) -> anyhow::Result<()> {
    let metrics = sluice::metrics::install().context("installing the metrics recorder")?;
    let campaign_key = a.campaign_key.clone().or_else(|| {
        a.config
            .is_none()
            .then(|| sluice::config::EMBEDDED_DEV_KEY.to_owned())
    });
    let campaign = match (a.no_campaign, campaign_key) {
        (false, Some(api_key)) => Some(sluice::serve::CampaignHost {
            db: config.storage.path.join("campaign.db"),
            api_key,
            // The embedded (development) config only: an admin whose API key is the dev key.
            dev_admin_key: a
                .config
                .is_none()
                .then(|| sluice::config::EMBEDDED_DEV_KEY.to_owned()),
        }),
        (false, None) => {
            tracing::warn!("No --campaign-key / SLUICE_CAMPAIGN_KEY: campaign service not hosted.");
            None
        }
        (true, _) => None,
    };
    let opts = ServeOptions {
        drain_deadline: Duration::from_secs(a.drain_secs),
        metrics: Some(metrics),
        campaign,
        ..ServeOptions::default()
    };
    run_until_signal(config, opts).await?;
    Ok(())
}

async fn send(a: SendArgs) -> anyhow::Result<()> {
    let mut msg = serde_json::json!({"to": a.to, "text": a.text});
    for (k, v) in [
        ("from", a.from),
        ("client_ref", a.client_ref),
        ("lane", a.lane),
    ] {
        if let Some(v) = v {
            msg[k] = serde_json::Value::String(v);
        }
    }
    let body = serde_json::json!({"messages": [msg]});
    let r = reqwest::Client::new()
        .post(format!(
            "{}/v1/messages",
            a.client.url.trim_end_matches('/')
        ))
        .bearer_auth(&a.client.key)
        .json(&body)
        .send()
        .await
        .context("sending to the gateway")?;
    let status = r.status();
    let text = r.text().await.context("reading the answer")?;
    if !status.is_success() {
        bail!("gateway answered {status}: {text}");
    }
    let v: serde_json::Value = serde_json::from_str(&text).context("answer is not JSON")?;
    match v["results"][0]["id"].as_str() {
        Some(id) => println!("{id}"),
        None => bail!("unexpected answer: {text}"),
    }
    Ok(())
}

async fn status(a: StatusArgs) -> anyhow::Result<()> {
    let r = reqwest::Client::new()
        .get(format!(
            "{}/v1/messages/{}",
            a.client.url.trim_end_matches('/'),
            a.id
        ))
        .bearer_auth(&a.client.key)
        .send()
        .await
        .context("asking the gateway")?;
    let status = r.status();
    let text = r.text().await.context("reading the answer")?;
    if !status.is_success() {
        bail!("gateway answered {status}: {text}");
    }
    let v: serde_json::Value = serde_json::from_str(&text).context("answer is not JSON")?;
    println!("{}", serde_json::to_string_pretty(&v)?);
    Ok(())
}
