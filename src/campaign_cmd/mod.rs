//! `sluice campaign …`: the campaign service from the command line, and its wiring into the
//! gateway process ([`wiring`]).
//!
//! Every command opens the SQLite store (`--db`, default `./data/campaign.db`), calls one
//! [`sluice_campaign`] function and prints the result as JSON on stdout (tables for
//! `report`). Sending (`launch`, `resume`) goes through a running gateway's HTTP API
//! (`--gateway`, `--key`), the same path the in-process service and external campaign
//! platforms use; the client_refs make a re-run after a crash or Ctrl-C exact.
//!
//! ```text
//! sluice campaign import subscribers.csv
//! sluice campaign synth --count 200000
//! sluice campaign segment count 'brand = "gotone" and arpu >= 100'
//! sluice campaign segment create --name vip --condition 'brand = "gotone" and arpu >= 100'
//! sluice campaign segment preview 1 -n 5
//! sluice campaign segment export 1 --out vip.csv
//! sluice campaign list add --kind blacklist --name complaints numbers.txt
//! sluice campaign task create --name "winter push"
//! sluice campaign approval chain 100 task '[{"level":"self","action":"approve"},{"level":"parent","action":"approve"}]'
//! sluice campaign approval submit task 1 --as alice
//! sluice campaign approval approve task 1 --as bob --comment ok
//! sluice campaign approval show task 1
//! sluice campaign task transition 1 scheduled --actor alice
//! sluice campaign task bulk 1 --spec bulk.json
//! sluice campaign launch 1 --actor bob
//! sluice campaign pause 1 / resume 1
//! sluice campaign report 1
//! sluice campaign orders orders.csv
//! SLUICE_WEBHOOK_SECRET=… sluice campaign serve --listen 127.0.0.1:8081   # standalone, signed webhooks
//! sluice campaign admin init --org Province --user admin   # root org + admin, prints its API key
//! ```
//!
//! The CLI works on the database file directly, as the local operator: it needs no
//! credential, records `--actor` as free text in task histories (no user id), and rows it
//! creates belong to the root organisation. The HTTP API (`/v1/campaign`) needs an API key
//! or session of a user; `admin init` creates the first one.

pub mod wiring;

use std::fmt::Write as _;
use std::io::BufReader;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use jiff::Timestamp;
use serde::de::DeserializeOwned;
use sluice_campaign::approval::{self, Actor, ApprovalError, Subject, SubjectKind};
use sluice_campaign::dispatch::HttpDispatcher;
use sluice_campaign::identity;
use sluice_campaign::launch::{self, BulkSpec, RunOutcome};
use sluice_campaign::lifecycle::{self, TaskState};
use sluice_campaign::report::{FunnelRow, UpliftRow};
use sluice_campaign::rules::{self, Channel, ListKind};
use sluice_campaign::segment::{self, SetOp};
use sluice_campaign::signature::WebhookSecret;
use sluice_campaign::webhook_guard::WebhookGuard;
use sluice_campaign::{CampaignError, Campaigns};

/// Why a campaign command failed.
#[derive(Debug, thiserror::Error)]
pub enum CmdError {
    /// The campaign library refused or failed.
    #[error(transparent)]
    Campaign(#[from] CampaignError),
    /// The approval chain refused or failed.
    #[error(transparent)]
    Approval(#[from] ApprovalError),
    /// Reading or writing a file.
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// A JSON input (bulk spec) did not parse.
    #[error("{path}: {source}")]
    Json {
        /// The file.
        path: String,
        /// Cause.
        source: serde_json::Error,
    },
    /// The arguments do not say what to do.
    #[error("usage: {0}")]
    Usage(&'static str),
    /// `--as` names no enabled user.
    #[error("no enabled user {0:?}")]
    UnknownUser(String),
    /// `admin init` on a database that already has users.
    #[error("the campaign database already has users; create more over the API")]
    AlreadyInitialised,
    /// Sending through the gateway failed; the cursor did not move, re-run to retry.
    #[error(transparent)]
    Run(#[from] launch::RunError),
}

/// `sluice campaign` arguments.
#[derive(Debug, Args)]
pub struct CampaignArgs {
    /// Campaign store (SQLite).
    #[arg(
        long,
        global = true,
        default_value = "./data/campaign.db",
        env = "SLUICE_CAMPAIGN_DB"
    )]
    pub db: PathBuf,
    #[command(subcommand)]
    pub cmd: CampaignCmd,
}

/// `sluice events` arguments: subscriber events for triggered tasks.
#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Campaign store (SQLite) the events go to; a running `serve` on the same store
    /// matches them within a second.
    #[arg(
        long,
        global = true,
        default_value = "./data/campaign.db",
        env = "SLUICE_CAMPAIGN_DB"
    )]
    pub db: PathBuf,
    #[command(subcommand)]
    pub cmd: EventsCmd,
}

/// The `sluice events` subcommands.
#[derive(Debug, Subcommand)]
pub enum EventsCmd {
    /// Replays an NDJSON file of events (`{id, msisdn, type, ts, attrs}` per line) through
    /// the durable intake, 10 000 lines per commit; ids already stored are skipped, bad
    /// lines reported with their line number.
    Import {
        /// The NDJSON file.
        file: PathBuf,
    },
}

/// Runs one `sluice events` command; prints the intake report as JSON.
///
/// # Errors
/// [`CmdError`]: the file, the store.
pub async fn run_events(args: EventsArgs) -> Result<(), CmdError> {
    let EventsCmd::Import { file } = args.cmd;
    let f = open_file(&file)?;
    let svc = Mutex::new(open_store(&args.db)?);
    let mut source = sluice_campaign::events::source::FileSource::new(BufReader::new(f));
    let rep =
        sluice_campaign::events::source::pump(&mut source, &svc, || Timestamp::now().as_second())
            .await?;
    print_json(&rep);
    Ok(())
}

/// Where to send (launch / resume).
#[derive(Debug, Clone, Args)]
pub struct GatewayArgs {
    /// Gateway base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080", env = "SLUICE_URL")]
    pub gateway: String,
    /// API key of the sending account.
    #[arg(long, default_value = "sluice-dev-key", env = "SLUICE_API_KEY")]
    pub key: String,
    /// Who launches (recorded in the task history).
    #[arg(long, default_value = "cli")]
    pub actor: String,
    /// Service numbers of the sending account (its `[[accounts]] service_numbers`): a launch
    /// gives the task an extension and sends from number + extension (comma-separated).
    #[arg(
        long = "service-number",
        env = "SLUICE_SERVICE_NUMBERS",
        value_delimiter = ','
    )]
    pub service_numbers: Vec<String>,
    /// Unsubscribe keywords of replies (comma-separated); default TD,T,退订,STOP,UNSUB.
    #[arg(
        long = "unsubscribe-keyword",
        env = "SLUICE_UNSUBSCRIBE_KEYWORDS",
        value_delimiter = ','
    )]
    pub unsubscribe_keywords: Vec<String>,
}

impl GatewayArgs {
    /// The reply routing these arguments describe (defaults for what is not given).
    pub fn mo_settings(&self) -> sluice_campaign::routing::MoSettings {
        let mut mo = sluice_campaign::routing::MoSettings {
            service_numbers: self.service_numbers.clone(),
            ..Default::default()
        };
        if !self.unsubscribe_keywords.is_empty() {
            mo.unsubscribe_keywords = self.unsubscribe_keywords.clone();
        }
        mo
    }
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum CampaignCmd {
    /// Import subscribers from CSV (msisdn,brand,region,city,arpu,age,plan,…; upsert by msisdn).
    Import {
        /// The CSV file.
        file: PathBuf,
    },
    /// Add a synthetic city of subscribers (for trials and demos).
    Synth {
        /// Subscribers to generate.
        #[arg(long, default_value_t = 200_000)]
        count: u32,
        /// Seed.
        #[arg(long, default_value_t = 7)]
        seed: u64,
    },
    /// Segments (客户群).
    #[command(subcommand)]
    Segment(SegmentCmd),
    /// Exclusion lists (blacklist, graylist, staff, do-not-disturb, custom).
    #[command(subcommand)]
    List(ListCmd),
    /// Tasks: create, schedule and stop, add bulk sends, history.
    #[command(subcommand)]
    Task(TaskCmd),
    /// Approval chains of campaigns, activities and tasks: configure, submit, approve,
    /// reject, revise, cancel, show.
    #[command(subcommand)]
    Approval(ApprovalCmd),
    /// Plan a bulk send (rules + split), set its task running and send it through the gateway.
    Launch {
        /// Bulk send id.
        bulk: i64,
        #[command(flatten)]
        gateway: GatewayArgs,
    },
    /// Pause a running task (its runners stop at the next batch boundary).
    Pause {
        /// Task id.
        task: i64,
        /// Who pauses.
        #[arg(long, default_value = "cli")]
        actor: String,
    },
    /// Resume a paused task and send its remaining slices.
    Resume {
        /// Task id.
        task: i64,
        #[command(flatten)]
        gateway: GatewayArgs,
    },
    /// Funnel and uplift of a task.
    Report {
        /// Task id.
        task: i64,
        /// JSON instead of tables.
        #[arg(long)]
        json: bool,
    },
    /// Import an order / conversion CSV (msisdn,offer,time).
    Orders {
        /// The CSV file.
        file: PathBuf,
    },
    /// Users and organisations.
    #[command(subcommand)]
    Admin(AdminCmd),
    /// Run the campaign service on its own (out of the gateway process): the HTTP API under
    /// /v1/campaign, receipts and replies by webhook at /v1/campaign/webhooks/receipts and
    /// /v1/campaign/webhooks/replies (point the account's webhook_url / mo_url there).
    Serve {
        /// Listen address.
        #[arg(long, default_value = "127.0.0.1:8081")]
        listen: std::net::SocketAddr,
        /// The sending account's `webhook_secret`: webhooks whose X-Sluice-Signature does not
        /// verify with it (or is older than 5 minutes) are refused with 401.
        #[arg(long, env = "SLUICE_WEBHOOK_SECRET", hide_env_values = true)]
        webhook_secret: WebhookSecret,
        #[command(flatten)]
        gateway: GatewayArgs,
    },
}

/// `sluice campaign admin …`.
#[derive(Debug, Subcommand)]
pub enum AdminCmd {
    /// Create the root organisation (a province) and an admin user, and print the admin's
    /// API key (shown once). Refused when the database already has users.
    Init {
        /// Name of the root organisation.
        #[arg(long)]
        org: String,
        /// Name of the admin user.
        #[arg(long, default_value = "admin")]
        user: String,
        /// Read the admin's console password from the first line of stdin.
        #[arg(long)]
        password_stdin: bool,
    },
}

/// `sluice campaign segment …`.
#[derive(Debug, Subcommand)]
pub enum SegmentCmd {
    /// Count the subscribers matching a condition (nothing stored).
    Count {
        /// Condition, e.g. `brand = "gotone" and arpu >= 100`.
        condition: String,
    },
    /// Create a segment from a condition, a number file, or set algebra.
    Create {
        /// Segment name.
        #[arg(long)]
        name: String,
        /// Condition.
        #[arg(long, conflicts_with_all = ["numbers", "op"])]
        condition: Option<String>,
        /// File with one number per line.
        #[arg(long, conflicts_with = "op")]
        numbers: Option<PathBuf>,
        /// union, intersection or difference of segments --a and --b.
        #[arg(long, value_parser = serde_enum::<SetOp>, requires_all = ["a", "b"])]
        op: Option<SetOp>,
        /// Left segment id.
        #[arg(long)]
        a: Option<i64>,
        /// Right segment id.
        #[arg(long)]
        b: Option<i64>,
    },
    /// List segments.
    List,
    /// Show some members.
    Preview {
        /// Segment id.
        id: i64,
        /// How many.
        #[arg(short, default_value_t = 20)]
        n: usize,
    },
    /// Export members as CSV.
    Export {
        /// Segment id.
        id: i64,
        /// Output file (stdout when absent).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// `sluice campaign list …`.
#[derive(Debug, Subcommand)]
pub enum ListCmd {
    /// Add the numbers of a file (one per line) to a list.
    Add {
        /// blacklist, graylist, staff, do_not_disturb or custom.
        #[arg(long, value_parser = serde_enum::<ListKind>)]
        kind: ListKind,
        /// List name.
        #[arg(long)]
        name: String,
        /// Only for this channel (sms, mms, wap_push); all channels when absent.
        #[arg(long)]
        channel: Option<Channel>,
        /// The file.
        file: PathBuf,
    },
}

/// `sluice campaign task …`.
#[derive(Debug, Subcommand)]
pub enum TaskCmd {
    /// Create a task (state draft).
    Create {
        /// Task name.
        #[arg(long)]
        name: String,
        /// Parent activity id.
        #[arg(long)]
        activity: Option<i64>,
    },
    /// Move a task: scheduled, running, paused, completed, cancelled (moves before sending go
    /// through `sluice campaign approval`).
    Transition {
        /// Task id.
        task: i64,
        /// Target state.
        to: TaskState,
        /// Who.
        #[arg(long, default_value = "cli")]
        actor: String,
        /// Why.
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Add a bulk send to a task from a JSON `BulkSpec` file.
    Bulk {
        /// Task id.
        task: i64,
        /// The spec (see campaign/src/launch.rs `BulkSpec`).
        #[arg(long)]
        spec: PathBuf,
    },
    /// Show a task's transitions.
    History {
        /// Task id.
        task: i64,
    },
}

/// `sluice campaign approval …`: acting as the user `--as` names (its organisation and
/// roles decide, as for the same user over the HTTP API).
#[derive(Debug, Subcommand)]
pub enum ApprovalCmd {
    /// Set an organisation's chain for a kind: JSON steps
    /// `[{"level": "self|parent|grandparent|root", "action": "approve|file"}, …]`.
    Chain {
        /// Organisation id.
        org: i64,
        /// campaign, activity or task.
        kind: SubjectKind,
        /// The steps (JSON).
        steps: String,
    },
    /// Submit (or resubmit after revise): draft → pending at step 0 of a new round.
    Submit {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        who: ActorArgs,
    },
    /// Approve the current step.
    Approve {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        who: ActorArgs,
    },
    /// Reject at the current step (`--comment` is the reason, required).
    Reject {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        who: ActorArgs,
    },
    /// Rejected → draft.
    Revise {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        who: ActorArgs,
    },
    /// Cancel before sending.
    Cancel {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        who: ActorArgs,
    },
    /// Status and trail.
    Show {
        #[command(flatten)]
        target: Target,
    },
}

/// What an approval command acts on.
#[derive(Debug, Clone, Args)]
pub struct Target {
    /// campaign, activity or task.
    pub kind: SubjectKind,
    /// Its id.
    pub id: i64,
}

/// Who acts on an approval.
#[derive(Debug, Clone, Args)]
pub struct ActorArgs {
    /// Name of the user who acts (an existing, enabled user).
    #[arg(long = "as")]
    pub user: String,
    /// Comment (the reason of a reject).
    #[arg(long, default_value = "")]
    pub comment: String,
}

impl ActorArgs {
    /// The named user as an approval actor: its organisation, and whether a role lets it
    /// approve.
    fn actor(&self, conn: &rusqlite::Connection) -> Result<Actor, CmdError> {
        let unknown = || CmdError::UnknownUser(self.user.clone());
        let id: i64 = conn
            .query_row("SELECT id FROM users WHERE name = ?1", [&self.user], |r| {
                r.get(0)
            })
            .map_err(|_| unknown())?;
        let u = identity::user(conn, id)?;
        if u.disabled {
            return Err(unknown());
        }
        Ok(Actor {
            user_id: u.id,
            can_approve: u.roles.iter().any(|r| r.allows(identity::Action::Approve)),
            user: u.name,
            org_id: u.org,
        })
    }
}

/// The organisation of `subject` (rows from before organisations belong to the root), and
/// its ancestors up to the root.
fn ancestry(conn: &rusqlite::Connection, subject: Subject) -> Result<Vec<i64>, CmdError> {
    let org: Option<i64> = conn
        .query_row(
            &format!(
                "SELECT COALESCE(org_id, (SELECT id FROM orgs WHERE parent_id IS NULL))
                 FROM {} WHERE id = ?1",
                subject.kind().plural()
            ),
            [subject.id()],
            |r| r.get(0),
        )
        .map_err(|_| CampaignError::NotFound {
            what: subject.kind().as_str(),
            id: subject.id(),
        })?;
    let org = org.ok_or(CmdError::Usage(
        "no organisations yet: run `admin init` first",
    ))?;
    Ok(identity::ancestry(conn, org)?)
}

fn approval_cmd(c: &mut Campaigns, cmd: ApprovalCmd, now: Timestamp) -> Result<(), CmdError> {
    let at = now.as_second();
    let subject = |t: &Target| t.kind.subject(t.id);
    let status = match cmd {
        ApprovalCmd::Chain { org, kind, steps } => {
            let steps: serde_json::Value =
                serde_json::from_str(&steps).map_err(|source| CmdError::Json {
                    path: "steps".into(),
                    source,
                })?;
            print_json(&approval::set_chain(&c.conn, org, kind, &steps, at)?);
            return Ok(());
        }
        ApprovalCmd::Show { target } => {
            let s: Subject = subject(&target);
            print_json(&serde_json::json!({
                "status": approval::status(&c.conn, s)?,
                "trail": approval::trail(&c.conn, s)?,
            }));
            return Ok(());
        }
        ApprovalCmd::Submit { target, who } => {
            let (subject, actor) = (subject(&target), who.actor(&c.conn)?);
            let ancestry = ancestry(&c.conn, subject)?;
            approval::submit(&mut c.conn, subject, &ancestry, &actor, at, &who.comment)?
        }
        ApprovalCmd::Approve { target, who } => {
            let actor = who.actor(&c.conn)?;
            approval::approve(&mut c.conn, subject(&target), &actor, at, &who.comment)?
        }
        ApprovalCmd::Reject { target, who } => {
            let actor = who.actor(&c.conn)?;
            approval::reject(&mut c.conn, subject(&target), &actor, at, &who.comment)?
        }
        ApprovalCmd::Revise { target, who } => {
            let actor = who.actor(&c.conn)?;
            approval::revise(&mut c.conn, subject(&target), &actor, at, &who.comment)?
        }
        ApprovalCmd::Cancel { target, who } => {
            let actor = who.actor(&c.conn)?;
            approval::cancel(&mut c.conn, subject(&target), &actor, at, &who.comment)?
        }
    };
    print_json(&status);
    Ok(())
}

/// Parses a snake_case enum value the way the library's serde does.
fn serde_enum<T: DeserializeOwned>(s: &str) -> Result<T, String> {
    serde_json::from_value(serde_json::Value::String(s.to_owned())).map_err(|e| e.to_string())
}

fn open_file(path: &std::path::Path) -> Result<std::fs::File, CmdError> {
    std::fs::File::open(path).map_err(|source| CmdError::File {
        path: path.display().to_string(),
        source,
    })
}

/// Writes to stdout; a closed pipe (`| head`) ends output quietly instead of panicking.
fn print_out(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

fn print_json(v: &impl serde::Serialize) {
    match serde_json::to_string_pretty(v) {
        Ok(s) => print_out(&(s + "\n")),
        Err(e) => eprintln!("cannot print result: {e}"),
    }
}

/// Opens the store at `db`, creating its directory first.
fn open_store(db: &std::path::Path) -> Result<Campaigns, CmdError> {
    if let Some(dir) = db.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| CmdError::File {
            path: dir.display().to_string(),
            source,
        })?;
    }
    Ok(Campaigns::open(db)?)
}

/// Runs one `sluice campaign` command.
///
/// # Errors
/// [`CmdError`]: library errors (with the column of a bad condition), files, sending.
pub async fn run(args: CampaignArgs) -> Result<(), CmdError> {
    let mut c = open_store(&args.db)?;
    let now = Timestamp::now();
    match args.cmd {
        CampaignCmd::Import { file } => {
            let f = open_file(&file)?;
            let size = f.metadata().ok().map(|m| m.len());
            let rep = c.import_subscribers(f, size)?;
            print_json(&rep);
        }
        CampaignCmd::Synth { count, seed } => {
            c.load_synthetic(count, seed)?;
            print_json(&serde_json::json!({"subscribers": c.table.len()}));
        }
        CampaignCmd::Segment(cmd) => segment_cmd(&mut c, cmd, now)?,
        CampaignCmd::List(ListCmd::Add {
            kind,
            name,
            channel,
            file,
        }) => {
            let text = std::fs::read_to_string(&file).map_err(|source| CmdError::File {
                path: file.display().to_string(),
                source,
            })?;
            let numbers: Vec<&str> = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect();
            let change = rules::add_to_list(&c.conn, &c.table, kind, channel, &name, &numbers)?;
            print_json(&change);
        }
        CampaignCmd::Task(cmd) => task_cmd(&mut c, cmd, now)?,
        CampaignCmd::Approval(cmd) => approval_cmd(&mut c, cmd, now)?,
        CampaignCmd::Launch { bulk, gateway } => {
            c.mo = gateway.mo_settings();
            let plan = c.plan(bulk, now)?;
            let task = launch::load_bulk(&c.conn, bulk)?.task;
            if lifecycle::task_state(&c.conn, task)? == TaskState::Scheduled {
                c.transition(task, TaskState::Running, &gateway.actor, now, "launch")?;
            }
            eprintln!("{}", serde_json::to_string(&plan).unwrap_or_default());
            send(c, task, &[bulk], &gateway).await?;
        }
        CampaignCmd::Pause { task, actor } => {
            c.transition(task, TaskState::Paused, &actor, now, "pause")?;
            print_json(&serde_json::json!({"task": task, "state": TaskState::Paused}));
        }
        CampaignCmd::Resume { task, gateway } => {
            c.transition(task, TaskState::Running, &gateway.actor, now, "resume")?;
            let bulks = planned_bulks(&c, task)?;
            send(c, task, &bulks, &gateway).await?;
        }
        CampaignCmd::Report { task, json } => {
            let (funnel, uplift) = (c.funnel(task)?, c.uplift(task)?);
            if json {
                print_json(&serde_json::json!({"funnel": funnel, "uplift": uplift}));
            } else {
                print_out(&render_tables(&funnel, &uplift));
            }
        }
        CampaignCmd::Orders { file } => {
            let rep = c.import_orders(open_file(&file)?)?;
            print_json(&rep);
        }
        CampaignCmd::Admin(AdminCmd::Init {
            org,
            user,
            password_stdin,
        }) => {
            let password = if password_stdin {
                let mut line = String::new();
                std::io::stdin()
                    .read_line(&mut line)
                    .map_err(|source| CmdError::File {
                        path: "stdin".into(),
                        source,
                    })?;
                Some(line.trim_end_matches(['\r', '\n']).to_owned())
            } else {
                None
            };
            let made = identity::bootstrap(
                &mut c.conn,
                &org,
                &user,
                password.as_deref(),
                None,
                now.as_second(),
            )?
            .ok_or(CmdError::AlreadyInitialised)?;
            print_json(&made);
        }
        CampaignCmd::Serve {
            listen,
            webhook_secret,
            gateway,
        } => {
            if !identity::has_users(&c.conn)? {
                tracing::warn!(
                    "No campaign users yet: every API call answers 401 until `sluice campaign admin init`."
                );
            }
            c.mo = gateway.mo_settings();
            serve(c, listen, webhook_secret, &gateway).await?;
        }
    }
    Ok(())
}

/// Ctrl-C or (unix) SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    if let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    {
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        return;
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// The standalone service: API + signed webhooks + ticker until Ctrl-C / SIGTERM.
async fn serve(
    c: Campaigns,
    listen: std::net::SocketAddr,
    secret: WebhookSecret,
    gw: &GatewayArgs,
) -> Result<(), CmdError> {
    let svc = Arc::new(Mutex::new(c));
    let (router, api) = wiring::mount(Arc::clone(&svc), &gw.gateway, &gw.key);
    let router = router.merge(wiring::webhooks(svc, WebhookGuard::new(secret)));
    // Refused webhooks are counted through the metrics facade: export them on /metrics.
    let router = match crate::metrics::install() {
        Ok(handle) => router.route(
            "/metrics",
            axum::routing::get(move || {
                let handle = handle.clone();
                async move { handle.render() }
            }),
        ),
        Err(e) => {
            tracing::warn!(error = %e, "Metrics recorder not installed; /metrics is off.");
            router
        }
    };
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let ticker = wiring::spawn_ticker(api, Duration::from_secs(5), stop_rx);
    let io = |source| CmdError::File {
        path: listen.to_string(),
        source,
    };
    let listener = tokio::net::TcpListener::bind(listen).await.map_err(io)?;
    tracing::info!(addr = %listener.local_addr().map_err(io)?, "Campaign service listening.");
    // The same accept loop as `serve`'s listeners: header limits and a header read timeout
    // (the defaults of config `[limits]`; this command reads no gateway config).
    let (stop_http, stop_http_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop_http.send(true);
    });
    crate::serve::http_listener::serve(
        listener,
        router,
        crate::serve::http_listener::HttpLimits::from_config(
            &crate::config::LimitsConfig::default(),
        ),
        stop_http_rx,
    )
    .await;
    let _ = stop.send(true);
    let _ = ticker.await;
    Ok(())
}

fn segment_cmd(c: &mut Campaigns, cmd: SegmentCmd, now: Timestamp) -> Result<(), CmdError> {
    match cmd {
        SegmentCmd::Count { condition } => {
            print_json(&serde_json::json!({"count": c.count(&condition)?}));
        }
        SegmentCmd::Create {
            name,
            condition,
            numbers,
            op,
            a,
            b,
        } => {
            let info = if let Some(cond) = condition {
                c.segment_from_condition(&name, &cond, now)?
            } else if let Some(file) = numbers {
                let (info, rep) =
                    c.segment_from_numbers(&name, BufReader::new(open_file(&file)?), now)?;
                eprintln!("{}", serde_json::to_string(&rep).unwrap_or_default());
                info
            } else if let (Some(op), Some(a), Some(b)) = (op, a, b) {
                c.segment_from_algebra(&name, op, a, b, now)?
            } else {
                return Err(CmdError::Usage(
                    "give --condition, --numbers or --op with --a and --b",
                ));
            };
            print_json(&info);
        }
        SegmentCmd::List => print_json(&segment::list(&c.conn)?),
        SegmentCmd::Preview { id, n } => {
            let m = segment::members(&c.conn, id)?;
            print_json(&segment::sample(&c.table, &m, n));
        }
        SegmentCmd::Export { id, out } => {
            let m = segment::members(&c.conn, id)?;
            match out {
                Some(p) => {
                    let f = std::fs::File::create(&p).map_err(|source| CmdError::File {
                        path: p.display().to_string(),
                        source,
                    })?;
                    segment::export_csv(&c.table, &m, std::io::BufWriter::new(f))?;
                }
                None => segment::export_csv(&c.table, &m, std::io::stdout().lock())?,
            }
        }
    }
    Ok(())
}

fn task_cmd(c: &mut Campaigns, cmd: TaskCmd, now: Timestamp) -> Result<(), CmdError> {
    match cmd {
        TaskCmd::Create { name, activity } => {
            let id = lifecycle::create_task(&c.conn, activity, &name, now.as_second())?;
            print_json(&serde_json::json!({"id": id}));
        }
        TaskCmd::Transition {
            task,
            to,
            actor,
            note,
        } => {
            c.transition(task, to, &actor, now, &note)?;
            print_json(&serde_json::json!({"task": task, "state": to}));
        }
        TaskCmd::Bulk { task, spec } => {
            let f = open_file(&spec)?;
            let s: BulkSpec =
                serde_json::from_reader(BufReader::new(f)).map_err(|source| CmdError::Json {
                    path: spec.display().to_string(),
                    source,
                })?;
            print_json(&serde_json::json!({"id": c.create_bulk(task, &s)?}));
        }
        TaskCmd::History { task } => print_json(&lifecycle::history(&c.conn, task)?),
    }
    Ok(())
}

fn planned_bulks(c: &Campaigns, task: i64) -> Result<Vec<i64>, CmdError> {
    let mut st = c
        .conn
        .prepare("SELECT id FROM bulk_sends WHERE task_id = ?1 AND planned_at IS NOT NULL")
        .map_err(CampaignError::from)?;
    let ids = st
        .query_map([task], |r| r.get(0))
        .map_err(CampaignError::from)?
        .collect::<Result<Vec<i64>, _>>()
        .map_err(CampaignError::from)?;
    Ok(ids)
}

fn contacts_of(c: &Campaigns, task: i64) -> u64 {
    c.conn
        .query_row(
            "SELECT COUNT(*) FROM contacts WHERE task_id = ?1",
            [task],
            |r| r.get::<_, i64>(0),
        )
        .map_or(0, |n| u64::try_from(n).unwrap_or(0))
}

/// Sends `bulks` of `task` through the gateway with a progress spinner; marks the task
/// completed when every slice of every bulk send is done.
async fn send(c: Campaigns, task: i64, bulks: &[i64], gw: &GatewayArgs) -> Result<(), CmdError> {
    let svc = Arc::new(Mutex::new(c));
    let dispatcher = HttpDispatcher::new(&gw.gateway, &gw.key);
    let target = if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let bar = ProgressBar::with_draw_target(None, target);
    bar.set_style(
        ProgressStyle::with_template("{spinner} {elapsed} {pos} messages handed to the gateway")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    let start = contacts_of(&lock(&svc), task);
    let mut outcomes = Vec::new();
    for &bulk in bulks {
        let run = launch::run(&svc, &dispatcher, bulk, Timestamp::now);
        tokio::pin!(run);
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        let out = loop {
            tokio::select! {
                r = &mut run => break r,
                _ = tick.tick() => {
                    bar.set_position(contacts_of(&lock(&svc), task) - start);
                }
            }
        };
        outcomes.push((bulk, out?));
    }
    bar.finish_and_clear();
    let mut g = lock(&svc);
    let all_done = bulks.iter().try_fold(true, |acc, &b| {
        Ok::<_, CampaignError>(acc && launch::slice_states(&g.conn, b)?.iter().all(|s| s.done))
    })?;
    if all_done
        && outcomes
            .iter()
            .all(|(_, o)| matches!(o, RunOutcome::Finished { .. }))
    {
        g.transition(
            task,
            TaskState::Completed,
            "system",
            Timestamp::now(),
            "all slices sent",
        )?;
    }
    let report: Vec<_> = outcomes
        .iter()
        .map(|(b, o)| serde_json::json!({"bulk": b, "outcome": format!("{o:?}")}))
        .collect();
    print_json(&report);
    Ok(())
}

fn lock(svc: &Mutex<Campaigns>) -> std::sync::MutexGuard<'_, Campaigns> {
    svc.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// p-values below f64's resolution of `1 - cdf` print as a bound, not as a false zero.
fn p_value(p: f64) -> String {
    if p < 1e-15 {
        "<1e-15".to_owned()
    } else {
        format!("{p:.2e}")
    }
}

fn pct(x: f64) -> String {
    format!("{:.2}%", x * 100.0)
}

/// The funnel (targeted → sent → delivered → converted per group) and the uplift table.
pub fn render_tables(funnel: &[FunnelRow], uplift: &[UpliftRow]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "Funnel (targeted → sent → delivered → converted)");
    let _ = writeln!(
        s,
        "{:<8} {:<5} {:>9} {:>9} {:>10} {:>8} {:>10} {:>7} {:>9} {:>9}",
        "group",
        "chan",
        "targeted",
        "sent",
        "delivered",
        "failed",
        "converted",
        "unsub",
        "deliv%",
        "conv%"
    );
    for r in funnel {
        let _ = writeln!(
            s,
            "{:<8} {:<5} {:>9} {:>9} {:>10} {:>8} {:>10} {:>7} {:>9} {:>9}",
            r.group,
            r.channel,
            r.targeted,
            r.sent,
            r.delivered,
            r.failed,
            r.converted,
            r.unsubscribed,
            pct(r.delivered_rate),
            pct(r.conversion_rate)
        );
    }
    let _ = writeln!(
        s,
        "\nUplift vs control (two-proportion z-test, 95% CI of the difference)"
    );
    let _ = writeln!(
        s,
        "{:<8} {:>8} {:>8} {:>8} {:>9} {:>7} {:>10}  95% CI",
        "variant", "rate", "control", "diff", "relative", "z", "p-value"
    );
    for u in uplift {
        match &u.test {
            Some(t) => {
                let _ = writeln!(
                    s,
                    "{:<8} {:>8} {:>8} {:>8} {:>9} {:>7.2} {:>10}  [{}, {}]",
                    u.variant,
                    pct(t.variant_rate),
                    pct(t.control_rate),
                    pct(t.difference),
                    t.relative
                        .map_or_else(|| "n/a".to_owned(), |r| format!("{:+.0}%", r * 100.0)),
                    t.z,
                    p_value(t.p_value),
                    pct(t.ci_low),
                    pct(t.ci_high)
                );
            }
            None => {
                let _ = writeln!(s, "{:<8} (no test: a group is empty)", u.variant);
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: CampaignArgs,
    }

    fn args(db: &std::path::Path, rest: &[&str]) -> CampaignArgs {
        let mut v = vec!["campaign", "--db", db.to_str().expect("utf-8 path")];
        v.extend_from_slice(rest);
        Cli::try_parse_from(v).expect("valid arguments").args
    }

    #[derive(Parser)]
    struct EventsCli {
        #[command(flatten)]
        args: EventsArgs,
    }

    #[tokio::test]
    async fn events_import_stores_a_file_once_into_a_new_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("new").join("c.db");
        let file = dir.path().join("e.ndjson");
        std::fs::write(
            &file,
            "{\"id\":\"a\",\"msisdn\":\"13800000001\",\"type\":\"balance_low\",\"ts\":1}\nbad\n",
        )
        .expect("write");
        for _ in 0..2 {
            let a = EventsCli::try_parse_from([
                "events",
                "--db",
                db.to_str().expect("utf-8"),
                "import",
                file.to_str().expect("utf-8"),
            ])
            .expect("valid arguments")
            .args;
            run_events(a).await.expect("import");
        }
        let c = Campaigns::open(&db).expect("store");
        let n: i64 = c
            .conn
            .query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0))
            .expect("count");
        assert_eq!(n, 1);
        EventsCli::command().debug_assert();
    }

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    /// The standalone service cannot start without a usable webhook secret (flag or
    /// `SLUICE_WEBHOOK_SECRET`), and the parsed secret never shows in `Debug`.
    #[test]
    fn serve_requires_a_webhook_secret() {
        let parse = |rest: &[&str]| {
            let mut v = vec!["campaign", "serve"];
            v.extend_from_slice(rest);
            Cli::try_parse_from(v)
        };
        if std::env::var_os("SLUICE_WEBHOOK_SECRET").is_none() {
            let e = parse(&[])
                .err()
                .expect("refused without a secret")
                .to_string();
            assert!(e.contains("--webhook-secret"), "{e}");
        }
        let e = parse(&["--webhook-secret", "short"])
            .err()
            .expect("refused: too short")
            .to_string();
        assert!(e.contains("at least 16"), "{e}");
        let ok = parse(&["--webhook-secret", "a-long-enough-secret"]).expect("accepted");
        assert!(!format!("{:?}", ok.args).contains("a-long-enough-secret"));
    }

    #[tokio::test]
    async fn commands_drive_the_library_up_to_a_bulk_send() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = dir.path().join("c.db");
        let spec = dir.path().join("bulk.json");
        std::fs::write(
            &spec,
            r#"{"segment":1,"template":"hi {city}","channel":"sms","offer":"o",
                "slices":[{"start":"2026-01-01T00:00:00Z"}]}"#,
        )
        .expect("spec");
        let spec = spec.to_str().expect("utf-8 path");
        for cmd in [
            &["synth", "--count", "300"][..],
            &[
                "segment",
                "create",
                "--name",
                "s",
                "--condition",
                "arpu >= 50",
            ],
            &["task", "create", "--name", "t"],
            &["admin", "init", "--org", "Province"],
            &["task", "bulk", "1", "--spec", spec],
        ] {
            run(args(&db, cmd)).await.expect("command succeeds");
        }
        {
            // A planner who may also approve, and an approver.
            use identity::Role;
            let c = Campaigns::open(&db).expect("open");
            let root = identity::root_org(&c.conn).expect("root").expect("some");
            for (name, roles) in [
                ("alice", &[Role::Planner, Role::Approver][..]),
                ("bob", &[Role::Approver][..]),
            ] {
                identity::create_user(&c.conn, name, root, roles, None, None, 0).expect("user");
            }
        }
        let e = run(args(
            &db,
            &["approval", "submit", "task", "1", "--as", "nobody"],
        ))
        .await
        .expect_err("unknown user");
        assert!(matches!(e, CmdError::UnknownUser(_)), "{e}");
        run(args(
            &db,
            &["approval", "submit", "task", "1", "--as", "alice"],
        ))
        .await
        .expect("alice submits");
        // The submitter cannot approve, another approver of the organisation can.
        let approve = |user: &'static str| {
            run(args(
                &db,
                &["approval", "approve", "task", "1", "--as", user],
            ))
        };
        let e = approve("alice").await.expect_err("own submission");
        assert!(
            matches!(e, CmdError::Approval(ApprovalError::SelfApproval { .. })),
            "{e}"
        );
        approve("bob").await.expect("approver approves");
        // An illegal move is refused with the library's error.
        let e = run(args(&db, &["task", "transition", "1", "running"]))
            .await
            .expect_err("approved -> running is illegal");
        assert!(
            matches!(
                e,
                CmdError::Campaign(CampaignError::IllegalTransition { .. })
            ),
            "{e}"
        );
        let c = Campaigns::open(&db).expect("reopen");
        assert_eq!(c.table.len(), 300);
        let segs = segment::list(&c.conn).expect("segments");
        assert_eq!(segs.len(), 1);
        assert_eq!(segs[0].count, c.count("arpu >= 50").expect("count"));
        assert_eq!(
            lifecycle::task_state(&c.conn, 1).expect("state"),
            TaskState::Approved
        );
        assert_eq!(launch::load_bulk(&c.conn, 1).expect("bulk").task, 1);
        // A bad condition names its column.
        let e = run(args(&db, &["segment", "count", "arpu >= "]))
            .await
            .expect_err("incomplete condition");
        assert!(e.to_string().contains("column 9"), "{e}");
    }

    #[tokio::test]
    async fn admin_init_creates_one_admin_and_refuses_a_second_time() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = dir.path().join("c.db");
        run(args(&db, &["admin", "init", "--org", "Province"]))
            .await
            .expect("first init");
        let e = run(args(&db, &["admin", "init", "--org", "Other"]))
            .await
            .expect_err("second init");
        assert!(matches!(e, CmdError::AlreadyInitialised), "{e}");
        let c = Campaigns::open(&db).expect("reopen");
        let users = identity::list_users(
            &c.conn,
            &[identity::root_org(&c.conn).expect("root").expect("some")],
        )
        .expect("users");
        assert_eq!(users.len(), 1);
        assert_eq!(
            (users[0].name.as_str(), &users[0].roles[..]),
            ("admin", &[identity::Role::Admin][..])
        );
    }
}
