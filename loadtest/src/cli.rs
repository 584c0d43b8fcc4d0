//! clap argument structs and entry points for `sluice sim` / `sluice loadtest` (mounted by
//! the root binary) and for the standalone `sluice-loadtest` binary. Errors here are
//! `anyhow` because this is the binary edge.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

use crate::config::Mm7Config;
use crate::config::{ListenerConfig, Protocol, SimConfig};
use crate::load::mm7::Mm7Target;
use crate::load::{CmppVersion, ConcatMode, LoadConfig, PayloadConfig, Summary, Target};
use crate::sim::Simulator;
use crate::tally::TallySnapshot;

/// `sim`: run the center simulator until Ctrl-C / SIGTERM (or `--duration`).
#[derive(Debug, Clone, clap::Args)]
pub struct SimArgs {
    /// Simulator config: a standalone file or a sluice.toml with a `[simulator]` section.
    /// Without it: one open SMPP listener and one open CMPP listener with default behaviour.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// SMPP listen address when no config is given.
    #[arg(long, default_value = "127.0.0.1:2775")]
    pub smpp: SocketAddr,
    /// CMPP listen address when no config is given.
    #[arg(long, default_value = "127.0.0.1:7890")]
    pub cmpp: SocketAddr,
    /// Write the tally as JSON here on exit (overrides the config's tally_path).
    #[arg(long)]
    pub tally_out: Option<PathBuf>,
    /// Also run an MMSC (MM7) on this address when no config is given.
    #[arg(long)]
    pub mm7: Option<SocketAddr>,
    /// Where that MMSC sends DeliveryReportReq / DeliverReq (e.g. sluice's
    /// http://127.0.0.1:8080/mm7/CHANNEL, or `loadtest --target mm7`'s report listener).
    #[arg(long)]
    pub vasp_url: Option<String>,
    /// Stop after this many seconds instead of waiting for Ctrl-C.
    #[arg(long)]
    pub duration: Option<f64>,
    /// While running, rewrite the tally file every this many seconds (when it changed), so
    /// scripts can watch progress. Needs --tally-out or the config's tally_path.
    #[arg(long)]
    pub tally_every: Option<f64>,
}

/// Where `loadtest` sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TargetKind {
    /// An SMPP server (simulator, sluice's SMPP ingress).
    Smpp,
    /// A CMPP 2.0 / 3.0 ISMG (the simulator's on :7890), as an SP.
    Cmpp,
    /// sluice's HTTP batch API.
    Http,
    /// Kannel's HTTP sendsms.
    Kannel,
    /// An MMSC over MM7 (the simulator's MMSC), as a VASP.
    Mm7,
}

/// `loadtest`: drive a server and report throughput and latency.
#[derive(Debug, Clone, clap::Args)]
pub struct LoadtestArgs {
    #[arg(long, value_enum, default_value = "smpp")]
    pub target: TargetKind,
    /// SMPP server address (default 127.0.0.1:2775), CMPP ISMG address (default
    /// 127.0.0.1:7890) or MMSC (default 127.0.0.1:7070; a full http:// URL is used as is).
    #[arg(long)]
    pub addr: Option<String>,
    /// HTTP URL (sluice: http://127.0.0.1:8080/v1/messages; Kannel: http://127.0.0.1:13013/cgi-bin/sendsms).
    #[arg(long, default_value = "http://127.0.0.1:8080/v1/messages")]
    pub url: String,
    /// SMPP system_id / Kannel username.
    #[arg(long, default_value = "sluice")]
    pub system_id: String,
    /// SMPP / Kannel password.
    #[arg(long, default_value = "secret")]
    pub password: String,
    /// CMPP: version asked for in CONNECT.
    #[arg(long, value_enum, default_value = "3.0")]
    pub cmpp_version: CmppVersion,
    /// CMPP: SP id (Source_Addr of CONNECT, Msg_src of SUBMIT), at most 6 characters.
    #[arg(long, default_value = "901234")]
    pub source_addr: String,
    /// CMPP: the shared secret hashed into AuthenticatorSource.
    #[arg(long, default_value = "secret")]
    pub shared_secret: String,
    /// CMPP: Service_Id of every SUBMIT.
    #[arg(long, default_value = "MSGTEST")]
    pub service_id: String,
    /// CMPP: Src_Id (the SP's service number) of every SUBMIT.
    #[arg(long, default_value = "10690001")]
    pub src_id: String,
    /// CMPP: send the --ucs2-share messages as GBK (Msg_Fmt 15) instead of UCS-2.
    #[arg(long)]
    pub gbk: bool,
    /// sluice API key (Bearer).
    #[arg(long, default_value = "")]
    pub api_key: String,
    /// Messages per HTTP request (sluice API).
    #[arg(long, default_value_t = 1000)]
    pub batch: usize,
    /// Connections (SMPP binds, CMPP connections) or HTTP workers.
    #[arg(long, short = 'c', default_value_t = 2)]
    pub connections: usize,
    /// Outstanding submits per bind / CMPP connection.
    #[arg(long, short = 'w', default_value_t = 256)]
    pub window: usize,
    /// Parts (SMPP, CMPP) or messages (HTTP) per second; 0 = as fast as possible.
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Stop after this many messages.
    #[arg(long, short = 'n')]
    pub count: Option<u64>,
    /// Stop after this many seconds (default if neither is given: --count 10000).
    #[arg(long, short = 'd')]
    pub duration: Option<f64>,
    /// Characters per message (more than one SMS → concatenated).
    #[arg(long, default_value_t = 40)]
    pub chars: usize,
    /// Share of messages in UCS-2 (0..1).
    #[arg(long, default_value_t = 0.0)]
    pub ucs2_share: f64,
    #[arg(long, value_enum, default_value = "udh8")]
    pub concat: ConcatMode,
    /// Put this at the start of every text (e.g. a campaign variant tag).
    #[arg(long, default_value = "")]
    pub text_prefix: String,
    /// Run tag inside every text (keeps runs against one simulator distinct).
    #[arg(long)]
    pub run: Option<String>,
    /// Request receipts (SMPP: bind as transceiver; CMPP: Registered_Delivery = 1) and
    /// report submit → receipt latency.
    #[arg(long)]
    pub dlr: bool,
    /// Kannel only: ask for final receipts (`dlr-mask=3`) to be fetched from this URL.
    /// Kannel then requests receipts from the SMSC and correlates them; count them in
    /// bearerbox's status page (`DLR: received`).
    #[arg(long)]
    pub kannel_dlr_url: Option<String>,
    /// Seconds to wait for outstanding receipts at the end.
    #[arg(long, default_value_t = 10.0)]
    pub dlr_wait: f64,
    #[arg(long, default_value_t = 5.0)]
    pub bind_timeout: f64,
    #[arg(long, default_value_t = 10.0)]
    pub response_timeout: f64,
    /// MM7: bytes of the image part of every MMS.
    #[arg(long, default_value_t = 50 * 1024)]
    pub mm7_content_bytes: usize,
    /// MM7: where the MMSC's DeliveryReportReq / DeliverReq are received (with --dlr); the
    /// MMSC's `mm7.vasp_url` must point here.
    #[arg(long, default_value = "127.0.0.1:9091")]
    pub mm7_report_listen: String,
    /// MM7: VASPID and VASID of every SubmitReq (ServiceCode is --service-id, the sender
    /// short code --src-id).
    #[arg(long, default_value = "901234")]
    pub vaspid: String,
    #[arg(long, default_value = "10690001")]
    pub vasid: String,
    /// MM7: HTTP basic user and password for the MMSC, if it asks.
    #[arg(long)]
    pub mm7_user: Option<String>,
    #[arg(long)]
    pub mm7_password: Option<String>,
    /// Write the JSON summary here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Start an in-process simulator (default behaviour) and target it.
    #[arg(long)]
    pub with_sim: bool,
    /// No progress bar / progress log lines.
    #[arg(long)]
    pub quiet: bool,
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.clamp(0.0, 1e7))
}

impl LoadtestArgs {
    /// The run configuration these arguments describe.
    pub fn to_config(&self) -> LoadConfig {
        let target = match self.target {
            TargetKind::Smpp => Target::Smpp {
                addr: self.addr.clone().unwrap_or_else(|| "127.0.0.1:2775".into()),
                system_id: self.system_id.clone(),
                password: self.password.clone(),
            },
            TargetKind::Cmpp => Target::Cmpp {
                addr: self.addr.clone().unwrap_or_else(|| "127.0.0.1:7890".into()),
                source_addr: self.source_addr.clone(),
                shared_secret: self.shared_secret.clone(),
                version: self.cmpp_version,
                service_id: self.service_id.clone(),
                src_id: self.src_id.clone(),
                gbk: self.gbk,
            },
            TargetKind::Http => Target::Http {
                url: self.url.clone(),
                api_key: self.api_key.clone(),
                batch: self.batch,
            },
            TargetKind::Kannel => Target::Kannel {
                url: self.url.clone(),
                username: self.system_id.clone(),
                password: self.password.clone(),
                dlr_url: self.kannel_dlr_url.clone(),
            },
            TargetKind::Mm7 => {
                let addr = self.addr.clone().unwrap_or_else(|| "127.0.0.1:7070".into());
                Target::Mm7(Mm7Target {
                    url: if addr.starts_with("http://") || addr.starts_with("https://") {
                        addr
                    } else {
                        format!("http://{addr}/mm7")
                    },
                    vaspid: self.vaspid.clone(),
                    vasid: self.vasid.clone(),
                    service_code: self.service_id.clone(),
                    namespace: sluice_protocols::mm7::soap::REL_6_MM7_1_4.to_owned(),
                    content_bytes: self.mm7_content_bytes,
                    user: self.mm7_user.clone(),
                    password: self.mm7_password.clone(),
                    report_listen: self.mm7_report_listen.clone(),
                })
            }
        };
        let count = match (self.count, self.duration) {
            (None, None) => Some(10_000),
            (c, _) => c,
        };
        let run = self
            .run
            .clone()
            .unwrap_or_else(|| format!("{:x}", jiff::Timestamp::now().as_millisecond()));
        LoadConfig {
            target,
            connections: self.connections,
            window: self.window,
            rate: self.rate,
            count,
            duration: self.duration.map(secs),
            payload: PayloadConfig {
                source: if self.target == TargetKind::Mm7 {
                    self.src_id.clone()
                } else {
                    PayloadConfig::default().source
                },
                chars: self.chars,
                ucs2_share: self.ucs2_share,
                concat: self.concat,
                text_prefix: self.text_prefix.clone(),
                run,
                ..Default::default()
            },
            dlr: self.dlr,
            dlr_wait: secs(self.dlr_wait),
            bind_timeout: secs(self.bind_timeout),
            response_timeout: secs(self.response_timeout),
            progress: !self.quiet,
        }
    }
}

/// Runs the simulator until Ctrl-C or `--duration`; returns the final tally.
pub async fn run_sim(args: SimArgs) -> anyhow::Result<TallySnapshot> {
    let mut cfg = match &args.config {
        Some(p) => SimConfig::from_file(p).with_context(|| format!("loading {}", p.display()))?,
        None => {
            let mut cfg = default_sim(args.smpp, args.cmpp);
            if let Some(addr) = args.mm7 {
                cfg.listeners
                    .push(mmsc_listener(addr, args.vasp_url.clone()));
            }
            cfg
        }
    };
    if args.tally_out.is_some() {
        cfg.tally_path = args.tally_out.clone();
    }
    let live = match args.tally_every {
        Some(every) => {
            let path = cfg
                .tally_path
                .clone()
                .context("--tally-every needs --tally-out or tally_path in the config")?;
            Some((path, secs(every)))
        }
        None => None,
    };
    let mut handle = Simulator::start(cfg).await?;
    if let Some((path, every)) = live {
        handle.snapshot_every(path, every);
    }
    for l in handle.listeners() {
        println!("listening {} {:?} {}", l.name, l.protocol, l.addr);
    }
    match args.duration {
        Some(d) => tokio::time::sleep(secs(d)).await,
        None => wait_for_stop().await?,
    }
    let tally = handle.shutdown().await?;
    println!("{}", serde_json::to_string_pretty(&tally)?);
    Ok(tally)
}

/// Ctrl-C or SIGTERM (so scripts and service managers get the tally file too).
async fn wait_for_stop() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("installing the SIGTERM handler")?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r.context("waiting for Ctrl-C")?,
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    Ok(())
}

/// One open SMPP and one open CMPP listener with default behaviour.
pub fn default_sim(smpp: SocketAddr, cmpp: SocketAddr) -> SimConfig {
    SimConfig {
        listeners: vec![
            ListenerConfig {
                name: "smsc".into(),
                protocol: Protocol::Smpp,
                addr: smpp,
                ..Default::default()
            },
            ListenerConfig {
                name: "ismg".into(),
                protocol: Protocol::Cmpp,
                addr: cmpp,
                ..Default::default()
            },
        ],
        ..Default::default()
    }
}

/// An MMSC with default behaviour on `addr`, reporting to `vasp_url`.
pub fn mmsc_listener(addr: SocketAddr, vasp_url: Option<String>) -> ListenerConfig {
    ListenerConfig {
        name: "mmsc".into(),
        protocol: Protocol::Mm7,
        addr,
        mm7: Mm7Config {
            vasp_url,
            ..Default::default()
        },
        ..Default::default()
    }
}

/// Runs a load test, prints the report and writes the JSON summary if asked.
pub async fn run_loadtest(args: LoadtestArgs) -> anyhow::Result<Summary> {
    let mut cfg = args.to_config();
    let sim = if args.with_sim {
        let mut sim_cfg = default_sim("127.0.0.1:0".parse()?, "127.0.0.1:0".parse()?);
        if let Target::Mm7(t) = &mut cfg.target {
            // The MMSC must know the report listener's port before the run binds it.
            let free = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
            t.report_listen = free.to_string();
            sim_cfg.listeners.push(mmsc_listener(
                "127.0.0.1:0".parse()?,
                Some(format!("http://{free}/")),
            ));
        }
        let h = Simulator::start(sim_cfg).await?;
        match &mut cfg.target {
            Target::Smpp { addr, .. } => {
                if let Some(a) = h.addr_of(Protocol::Smpp) {
                    *addr = a.to_string();
                }
            }
            Target::Cmpp { addr, .. } => {
                if let Some(a) = h.addr_of(Protocol::Cmpp) {
                    *addr = a.to_string();
                }
            }
            Target::Mm7(t) => {
                if let Some(a) = h.addr_of(Protocol::Mm7) {
                    t.url = format!("http://{a}/mm7");
                }
            }
            Target::Http { .. } | Target::Kannel { .. } => {}
        }
        Some(h)
    } else {
        None
    };
    let summary = crate::load::run(cfg).await?;
    print!("{summary}");
    if let Some(p) = &args.json {
        summary
            .write_json(p)
            .with_context(|| format!("writing {}", p.display()))?;
    }
    if let Some(h) = sim {
        let t = h.shutdown().await?;
        println!(
            "simulator tally: unique {} duplicates {} parts {}",
            t.unique_messages, t.duplicates, t.parts_accepted
        );
    }
    Ok(summary)
}
