//! `sluice demo`: one A/B/control campaign end to end on one machine.
//!
//! What runs, in order:
//! 1. the SMSC simulator (sluice-loadtest), answering DLRs with a configurable mix and
//!    replying "Y" with a different probability per variant: variant A's template carries
//!    the marker [`MARKER_A`], B's [`MARKER_B`], and the simulator's reply rules are keyed by
//!    those substrings;
//! 2. the gateway in-process ([`crate::serve::start`]) with one channel to that simulator,
//!    its data in a fresh directory;
//! 3. the campaign service in-process: a synthetic city, exclusion lists (blacklist sample
//!    and SMS do-not-disturb sample), three users with API keys: `alice` (planner and
//!    approver), `bob` (approver) and `feed` (operator: the event feed of step 7);
//! 4. through the campaign HTTP API ([`crate::campaign_cmd::wiring::mount`]) alice builds a
//!    segment by condition (brand + ARPU), a campaign, activity and task, and submits each
//!    to its approval chain; her own approval of the task is refused (403, shown in the
//!    output); bob approves all three; alice schedules
//!    it, adds a bulk send split A / B / hold-out control and launches it, and the runner
//!    hands batches to the gateway's own `POST /v1/messages`;
//! 5. receipts and replies flow back through the gateway's in-process subscription
//!    ([`crate::campaign_cmd::wiring::spawn_feedback`]) until they settle: every message
//!    sent has its final receipt and every reply the simulator sent is recorded (bounded by
//!    a timeout);
//! 6. an "organic" order file (a seeded share of every group, control included) is imported,
//!    then the funnel and the uplift table are printed;
//! 7. the triggered part, beside the bulk send: alice also creates a triggered task under the
//!    same activity — a `roaming_arrival` trigger for subscribers outside the bulk's segment
//!    (ARPU under 50) arriving abroad, 10 % held out as control, one send a day per
//!    subscriber — submits it, bob approves, alice schedules and activates it; while the bulk
//!    send goes out, the event feed (user `feed`, operator) posts a burst of roaming events
//!    (some at home, which do not match; some subscribers arrive twice, which the cooldown
//!    suppresses) to `POST /v1/events`; the simulator replies "Y" to the roaming offer (its
//!    marker [`MARKER_ROAM`]) and the report prints the trigger's funnel: matched, sent,
//!    delivered, replies, control.
//!
//! [`run`] returns everything it measured ([`DemoOutcome`]), so `tests/campaign_e2e.rs` checks
//! the same path against the simulator's tally.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use jiff::Timestamp;
use sluice_campaign::feedback::OrdersReport;
use sluice_campaign::groups::{GroupSpec, Variant, bucket_point};
use sluice_campaign::identity::{self, Role};
use sluice_campaign::launch::{self, BulkSpec, PlanReport, SliceSpec};
use sluice_campaign::lifecycle::{self, TaskState};
use sluice_campaign::report::{FunnelRow, UpliftRow};
use sluice_campaign::rules::{self, Channel, ListKind};
use sluice_campaign::template::PushSpec;
use sluice_campaign::triggers::evaluate::{self, TriggerFunnel};
use sluice_campaign::{CampaignError, Campaigns};
use sluice_loadtest::config::{Account, DlrConfig, MoConfig, ReplyRule};
use sluice_loadtest::dist::Delay;
use sluice_loadtest::{ListenerConfig, SimConfig, TallySnapshot};
use tokio::sync::watch;

use crate::campaign_cmd::wiring::{FeedbackConfig, InProcess};
use crate::config::Config;
use crate::serve::{ServeOptions, start};

/// Substring of variant A's text the simulator's reply rule keys on.
pub const MARKER_A: &str = "#OFFER-A";
/// Substring of variant B's text.
pub const MARKER_B: &str = "#OFFER-B";
/// Substring of the roaming trigger's text the simulator's reply rule keys on.
pub const MARKER_ROAM: &str = "#ROAM";
/// The roaming trigger's condition: abroad, and outside the bulk send's segment (ARPU 50 and
/// up) so that a reply is attributed to one offer only.
pub const ROAMING_CONDITION: &str = r#"attrs.country != "CN" and arpu < 50"#;
/// The roaming trigger's hold-out share and cooldown (one send a day per subscriber).
const ROAMING_CONTROL: f64 = 0.1;
const ROAMING_COOLDOWN_S: u32 = 86_400;
/// The development API key of the embedded account.
const API_KEY: &str = "sluice-dev-key";
/// Offer code of the demo bulk send (order attribution).
const OFFER: &str = "data5g";

/// Knobs of one demo run.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Subscribers in the synthetic city.
    pub subscribers: u32,
    /// Seed of the city, the split, the simulator and the organic orders.
    pub seed: u64,
    /// Data directory (gateway store + campaign.db); a fresh temp dir when `None`.
    pub data_dir: Option<PathBuf>,
    /// Keep the data directory afterwards.
    pub keep: bool,
    /// Longest wait for receipts and replies after the last batch.
    pub settle_timeout: Duration,
    /// Draw a progress bar (stderr, TTY only) / log progress lines.
    pub progress: bool,
    /// Probability of a "Y" reply to variant A / variant B.
    pub reply_a: f64,
    pub reply_b: f64,
    /// Probability of a "Y" reply to the roaming trigger's message.
    pub reply_roam: f64,
    /// First roaming arrivals the feed posts during the demo, plus a second arrival for every
    /// twentieth subscriber (0: the trigger is planned and activated, no event is posted).
    pub roaming_events: u32,
    /// Share of every group (control included) that orders the offer anyway.
    pub organic_rate: f64,
    /// DLR states and weights of the simulator.
    pub dlr_mix: BTreeMap<String, f64>,
    /// Condition of the segment.
    pub condition: String,
    /// Every n-th subscriber is blacklisted / on the SMS do-not-disturb list (0 = none).
    pub blacklist_every: u32,
    pub dnd_every: u32,
    /// Send the bulk on channel `wap_push` as a Service Indication with this URL (the SMS
    /// templates become the SI text); plain SMS when `None`.
    pub push: Option<PushSpec>,
}

impl Default for DemoOptions {
    fn default() -> Self {
        Self {
            subscribers: 200_000,
            seed: 7,
            data_dir: None,
            keep: false,
            settle_timeout: Duration::from_secs(60),
            progress: true,
            reply_a: 0.06,
            reply_b: 0.09,
            reply_roam: 0.2,
            roaming_events: 400,
            organic_rate: 0.02,
            dlr_mix: BTreeMap::from([
                ("DELIVRD".to_owned(), 0.93),
                ("UNDELIV".to_owned(), 0.05),
                ("EXPIRED".to_owned(), 0.02),
            ]),
            condition: r#"brand in ["gotone", "mzone"] and arpu >= 50"#.to_owned(),
            blacklist_every: 97,
            dnd_every: 61,
            push: None,
        }
    }
}

/// `sluice demo` arguments.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Subscribers in the synthetic city.
    #[arg(long, default_value_t = 200_000)]
    pub subscribers: u32,
    /// Seed (city, split, simulator, orders).
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Data directory (must be empty or absent); a temp dir when not given.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Keep the data directory afterwards.
    #[arg(long)]
    pub keep: bool,
    /// Longest wait for receipts and replies after sending, seconds.
    #[arg(long, default_value_t = 60)]
    pub settle_secs: u64,
}

/// `sluice demo`: runs and prints the tables on stdout.
///
/// # Errors
/// As [`run`].
pub async fn run_cli(a: DemoArgs) -> Result<(), DemoError> {
    let keep = a.keep;
    let out = run(DemoOptions {
        subscribers: a.subscribers,
        seed: a.seed,
        data_dir: a.data,
        keep,
        settle_timeout: Duration::from_secs(a.settle_secs),
        ..DemoOptions::default()
    })
    .await?;
    let mut text = render(&out);
    if keep {
        let _ = writeln!(text, "Data kept in {}", out.data_dir.display());
    }
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    let _ = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush());
    Ok(())
}

/// Why the demo stopped.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// Campaign library failure.
    #[error("campaign: {0}")]
    Campaign(#[from] CampaignError),
    /// The simulator did not start or stop cleanly.
    #[error("simulator: {0}")]
    Simulator(String),
    /// The gateway did not start.
    #[error("gateway: {0}")]
    Gateway(#[from] crate::serve::ServeError),
    /// The demo gateway config was rejected.
    #[error("config: {0}")]
    Config(#[from] crate::config::ConfigError),
    /// Calling the campaign API failed.
    #[error("campaign API: {0}")]
    Api(String),
    /// Files or sockets.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

/// Everything a run measured.
#[derive(Debug, Clone)]
pub struct DemoOutcome {
    pub task: i64,
    pub bulk: i64,
    /// Status and error of planner alice approving her own submission (refused).
    pub self_approval: String,
    /// Segment size before exclusions.
    pub segment_size: u64,
    pub plan: PlanReport,
    pub funnel: Vec<FunnelRow>,
    pub uplift: Vec<UpliftRow>,
    pub orders: OrdersReport,
    /// Simulator tally at shutdown.
    pub tally: TallySnapshot,
    /// Receipts / replies the campaign service settled.
    pub receipts_matched: u64,
    pub receipts_unmatched: u64,
    pub replies_attributed: u64,
    pub replies_unattributed: u64,
    pub feedback_lagged: u64,
    /// Receipts/replies that arrived before their contact row and were held for a retry.
    pub feedback_held: u64,
    /// Whether everything settled before the timeout.
    pub settled: bool,
    /// Wall time per phase.
    pub phases: Vec<(&'static str, Duration)>,
    /// Where the data was (removed unless `keep`).
    pub data_dir: PathBuf,
    /// The triggered part: its task and trigger, the roaming events the feed posted and
    /// how many intake accepted, and the trigger's funnel against its control.
    pub trigger_task: i64,
    pub trigger: i64,
    pub roaming_posted: u64,
    pub roaming_accepted: u64,
    pub trigger_funnel: TriggerFunnel,
}

fn sim_config(o: &DemoOptions) -> SimConfig {
    let rule = |contains: &str, probability: f64| ReplyRule {
        contains: contains.to_owned(),
        probability,
        text: "Y".to_owned(),
        delay: Delay::Exponential { mean_ms: 100.0 },
    };
    SimConfig {
        tally_path: None,
        seed: Some(o.seed),
        listeners: vec![ListenerConfig {
            name: "demo-smsc".into(),
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            accounts: vec![Account {
                system_id: "sluice".into(),
                password: "sim".into(),
                max_binds: 0,
            }],
            dlr: DlrConfig {
                mix: o.dlr_mix.clone(),
                delay: Delay::Exponential { mean_ms: 50.0 },
                ..DlrConfig::default()
            },
            mo: MoConfig {
                reply: vec![
                    rule(MARKER_A, o.reply_a),
                    rule(MARKER_B, o.reply_b),
                    rule(MARKER_ROAM, o.reply_roam),
                ],
                ..MoConfig::default()
            },
            ..ListenerConfig::default()
        }],
    }
}

/// The gateway config: the embedded default's shape, pointed at the demo simulator and dir.
fn gateway_config(dir: &std::path::Path, sim: SocketAddr) -> Result<Config, DemoError> {
    let text = format!(
        r#"
timezone = "Asia/Shanghai"
[listeners]
http = "127.0.0.1:0"
[storage]
path = {path:?}
backend = "redb"
[simulator]
enabled = false
port = {port}
[[accounts]]
name = "dev"
api_keys = ["{key}"]
rate = 1000000
burst = 1000000
default_sender = "10690000"
[[channels]]
name = "sim"
kind = "smpp"
host = "127.0.0.1"
port = {port}
system_id = "sluice"
password = "sim"
bind_mode = "transceiver"
binds = 2
window = 256
rate = 100000
burst = 10000
[[routes]]
channel = "sim"
"#,
        path = dir.join("gateway").display().to_string(),
        port = sim.port(),
        key = crate::config::hash_api_key(API_KEY),
    );
    Ok(Config::parse(&text, "demo.toml")?)
}

/// A data directory nobody else uses: the given one must be empty or absent; the default is
/// created exclusively under the temp dir (two demos in one process, e.g. parallel tests,
/// never share a store).
fn fresh_dir(o: &DemoOptions) -> Result<PathBuf, DemoError> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    if let Some(dir) = &o.data_dir {
        if dir.exists() && std::fs::read_dir(dir)?.next().is_some() {
            return Err(DemoError::Io(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                format!(
                    "{} is not empty (the demo needs a fresh directory)",
                    dir.display()
                ),
            )));
        }
        std::fs::create_dir_all(dir)?;
        return Ok(dir.clone());
    }
    loop {
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let ms = Timestamp::now().as_millisecond();
        let dir = std::env::temp_dir().join(format!("sluice-demo-{}-{ms}-{n}", std::process::id()));
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e.into()),
        }
    }
}

fn lock(svc: &Mutex<Campaigns>) -> std::sync::MutexGuard<'_, Campaigns> {
    svc.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The demo's campaign users: a planner, an approver and the event feed, with their API keys.
struct Users {
    alice: String,
    bob: String,
    /// The event feed (operator): posts the roaming events.
    feed: String,
}

/// Creates the city, the exclusion lists, and the users: the root organisation with an
/// admin, planner (and approver) `alice` and approver `bob` (the approval needs two people).
fn prepare(c: &mut Campaigns, o: &DemoOptions) -> Result<Users, DemoError> {
    let now = Timestamp::now();
    c.load_synthetic(o.subscribers, o.seed)?;
    let n = c.table.len();
    let every = |k: u32| -> Vec<String> {
        if k == 0 {
            return Vec::new();
        }
        (0..n)
            .step_by(k as usize)
            .filter_map(|id| c.table.msisdn(id).map(|m| m.to_string()))
            .collect()
    };
    let black = every(o.blacklist_every);
    let dnd = every(o.dnd_every);
    rules::add_to_list(
        &c.conn,
        &c.table,
        ListKind::Blacklist,
        None,
        "demo-blacklist",
        &black.iter().map(String::as_str).collect::<Vec<_>>(),
    )?;
    rules::add_to_list(
        &c.conn,
        &c.table,
        ListKind::DoNotDisturb,
        Some(Channel::Sms),
        "demo-dnd",
        &dnd.iter().map(String::as_str).collect::<Vec<_>>(),
    )?;
    let t = now.as_second();
    let root = identity::bootstrap(&mut c.conn, "Demo province", "admin", None, None, t)?
        .ok_or_else(|| DemoError::Api("the demo database already has users".into()))?;
    let user = |name: &str, roles: &[Role]| -> Result<String, DemoError> {
        let id = identity::create_user(&c.conn, name, root.org, roles, None, Some(root.user), t)?;
        Ok(identity::create_key(&c.conn, id, "demo", None, t)?.key)
    };
    Ok(Users {
        // alice may approve too (a department head), so what refuses her own approval is
        // the self-approval rule, not a missing role.
        alice: user("alice", &[Role::Planner, Role::Approver])?,
        bob: user("bob", &[Role::Approver])?,
        feed: user("feed", &[Role::Operator])?,
    })
}

/// The demo's bulk send over segment `segment`: A / B / 10 % control, one slice from now.
fn bulk_spec(o: &DemoOptions, segment: i64) -> BulkSpec {
    let now = Timestamp::now();
    BulkSpec {
        segment,
        template: "{city} special: 5GB data for 10 yuan. Reply Y to order.".into(),
        group_templates: BTreeMap::from([
            (
                "A".to_owned(),
                format!("{{city}} special: 5GB data for 10 yuan. Reply Y to order. {MARKER_A}"),
            ),
            (
                "B".to_owned(),
                format!("Only today in {{city}}: 5GB for 10 yuan! Reply Y now. {MARKER_B}"),
            ),
        ]),
        channel: if o.push.is_some() {
            Channel::WapPush
        } else {
            Channel::Sms
        },
        push: o.push.clone(),
        mms: None,
        lane: sluice_campaign::dispatch::Lane::Marketing,
        from: None,
        extension: None,
        offer: OFFER.into(),
        campaign_type: "upsell".into(),
        groups: GroupSpec::Random {
            seed: o.seed,
            variants: vec![
                Variant {
                    name: "A".into(),
                    weight: 1,
                },
                Variant {
                    name: "B".into(),
                    weight: 1,
                },
            ],
            control_share: 0.1,
        },
        policy: rules::ContactPolicy::default(),
        custom_lists: Vec::new(),
        slices: vec![SliceSpec {
            start: Timestamp::from_second(now.as_second() - 1).unwrap_or(now),
            window: None,
        }],
        timezone: sluice_campaign::window::DEFAULT_TZ.into(),
        batch_size: launch::MAX_BATCH,
    }
}

/// The campaign HTTP API as the demo's users call it.
struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    /// POSTs `body` to `path` as the user with `key`; the status and JSON answer.
    async fn post(
        &self,
        key: &str,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<(u16, serde_json::Value), DemoError> {
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(key)
            .json(body)
            .send()
            .await
            .map_err(|e| DemoError::Api(format!("{path}: {e}")))?;
        let status = resp.status().as_u16();
        let v = resp.json().await.unwrap_or(serde_json::Value::Null);
        Ok((status, v))
    }

    /// As [`Api::post`], but anything other than 2xx is an error.
    async fn ok(
        &self,
        key: &str,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<serde_json::Value, DemoError> {
        let (status, v) = self.post(key, path, body).await?;
        if (200..300).contains(&status) {
            Ok(v)
        } else {
            Err(DemoError::Api(format!("{path} answered {status}: {v}")))
        }
    }

    fn id(v: &serde_json::Value) -> Result<i64, DemoError> {
        v["id"]
            .as_i64()
            .ok_or_else(|| DemoError::Api(format!("no id in {v}")))
    }
}

/// What the planner and the approver did through the API before the launch.
struct Planned {
    task: i64,
    bulk: i64,
    segment_size: u64,
    /// The answer to alice approving her own submission (refused).
    self_approval: String,
    /// The activity the task (and the triggered task) hang under.
    activity: i64,
}

/// alice builds the segment, campaign, activity and task and submits each; her own approval
/// of the task is refused; bob approves the three; alice schedules the task and adds the
/// bulk send.
async fn plan_via_api(api: &Api, u: &Users, o: &DemoOptions) -> Result<Planned, DemoError> {
    use serde_json::json;
    let seg = api
        .ok(
            &u.alice,
            "/segments",
            &json!({"name": "demo: high-value gotone/mzone", "condition": o.condition}),
        )
        .await?;
    let segment = seg["segment"]["id"]
        .as_i64()
        .ok_or_else(|| DemoError::Api(format!("no segment in {seg}")))?;
    let segment_size = seg["segment"]["count"].as_u64().unwrap_or(0);
    let campaign = Api::id(
        &api.ok(&u.alice, "/campaigns", &json!({"name": "Winter data push"}))
            .await?,
    )?;
    let activity = Api::id(
        &api.ok(
            &u.alice,
            &format!("/campaigns/{campaign}/activities"),
            &json!({"name": "5 GB data pack"}),
        )
        .await?,
    )?;
    let task = Api::id(
        &api.ok(
            &u.alice,
            "/tasks",
            &json!({"name": "SMS A/B test", "activity": activity}),
        )
        .await?,
    )?;
    // Campaign, activity and task each go through their chain (the root's default: one
    // approval by its own approvers). alice approving her own task is refused.
    let comment = json!({"comment": "demo"});
    let mut refused = None;
    for path in [
        format!("/campaigns/{campaign}"),
        format!("/activities/{activity}"),
        format!("/tasks/{task}"),
    ] {
        api.ok(&u.alice, &format!("{path}/submit"), &comment)
            .await?;
        if path.starts_with("/tasks") {
            let (status, answer) = api
                .post(&u.alice, &format!("{path}/approve"), &comment)
                .await?;
            if status != 403 {
                return Err(DemoError::Api(format!(
                    "alice approving her own task answered {status}, not 403: {answer}"
                )));
            }
            refused = Some((status, answer));
        }
        api.ok(&u.bob, &format!("{path}/approve"), &comment).await?;
    }
    let (status, refused) = refused.unwrap_or_default();
    api.ok(
        &u.alice,
        &format!("/tasks/{task}/transitions"),
        &json!({"to": "scheduled", "note": "demo"}),
    )
    .await?;
    let spec = serde_json::to_value(bulk_spec(o, segment))
        .map_err(|e| DemoError::Api(format!("bulk spec: {e}")))?;
    let bulk = Api::id(
        &api.ok(&u.alice, &format!("/tasks/{task}/bulk"), &spec)
            .await?,
    )?;
    Ok(Planned {
        task,
        bulk,
        segment_size,
        self_approval: format!("{status} {}", refused["error"].as_str().unwrap_or_default()),
        activity,
    })
}

/// The roaming trigger as alice writes it (`POST /tasks/{id}/trigger`).
fn roaming_trigger() -> serde_json::Value {
    serde_json::json!({
        "event_type": "roaming_arrival",
        "condition": ROAMING_CONDITION,
        "template": format!(
            "Welcome to {{attrs.country}}! 1 GB roaming data for 30 yuan. Reply Y to order. {MARKER_ROAM}"
        ),
        "offer": "roam1g",
        "campaign_type": "roaming",
        "staleness_s": 600,
        "cooldown_s": ROAMING_COOLDOWN_S,
        "control_share": ROAMING_CONTROL,
    })
}

/// alice creates the triggered task under `activity` (already approved) and submits it; bob
/// approves it; alice schedules it and activates its trigger. `(task, trigger)`.
async fn plan_trigger(api: &Api, u: &Users, activity: i64) -> Result<(i64, i64), DemoError> {
    use serde_json::json;
    let task = Api::id(
        &api.ok(
            &u.alice,
            "/tasks",
            &json!({"name": "Roaming welcome (triggered)", "activity": activity}),
        )
        .await?,
    )?;
    let trigger = Api::id(
        &api.ok(
            &u.alice,
            &format!("/tasks/{task}/trigger"),
            &roaming_trigger(),
        )
        .await?,
    )?;
    let comment = json!({"comment": "demo"});
    api.ok(&u.alice, &format!("/tasks/{task}/submit"), &comment)
        .await?;
    api.ok(&u.bob, &format!("/tasks/{task}/approve"), &comment)
        .await?;
    api.ok(
        &u.alice,
        &format!("/tasks/{task}/transitions"),
        &json!({"to": "scheduled", "note": "demo"}),
    )
    .await?;
    api.ok(
        &u.alice,
        &format!("/triggers/{trigger}/activate"),
        &json!({}),
    )
    .await?;
    Ok((task, trigger))
}

/// Countries of the roaming events ("CN" is home: those do not match).
const COUNTRIES: [&str; 6] = [
    "Thailand",
    "Japan",
    "France",
    "Kazakhstan",
    "Russia",
    "Singapore",
];

/// The feed's first arrivals in parts, and the second arrivals posted after them.
type Bursts = (Vec<Vec<serde_json::Value>>, Vec<serde_json::Value>);

/// The event feed's burst: `o.roaming_events` arrivals over subscribers spread across the
/// city, every tenth at home, in `parts` JSON arrays; then the second arrivals of every
/// twentieth subscriber, in the next country (posted once the first ones are matched, so
/// the trigger's cooldown is what suppresses them).
fn roaming_bursts(c: &Campaigns, o: &DemoOptions, parts: usize) -> Bursts {
    let n = c.table.len();
    let k = o.roaming_events.min(n);
    if k == 0 {
        return (Vec::new(), Vec::new());
    }
    let ts = Timestamp::now().to_string();
    let event = |id: String, msisdn: u64, country: &str| {
        serde_json::json!({"id": id, "msisdn": msisdn.to_string(), "type": "roaming_arrival",
            "ts": ts, "attrs": {"country": country}})
    };
    let (mut all, mut again) = (Vec::new(), Vec::new());
    let step = usize::try_from(n / k).unwrap_or(1).max(1);
    for (i, sub) in (0..n).step_by(step).take(k as usize).enumerate() {
        let Some(m) = c.table.msisdn(sub) else {
            continue;
        };
        let country = if i % 10 == 9 {
            "CN"
        } else {
            COUNTRIES[i % COUNTRIES.len()]
        };
        all.push(event(format!("roam-{}-{i}", o.seed), m, country));
        if i % 20 == 0 {
            let next = COUNTRIES[(i + 1) % COUNTRIES.len()];
            again.push(event(format!("roam-{}-{i}-again", o.seed), m, next));
        }
    }
    let size = all.len().div_ceil(parts.max(1)).max(1);
    (all.chunks(size).map(<[_]>::to_vec).collect(), again)
}

/// Posts one burst to the issue's `POST /v1/events` as the feed; the events accepted.
async fn post_events(api: &Api, u: &Users, burst: &[serde_json::Value]) -> Result<u64, DemoError> {
    let url = format!("{}/v1/events", api.base.trim_end_matches("/v1/campaign"));
    let resp = api
        .http
        .post(&url)
        .bearer_auth(&u.feed)
        .json(burst)
        .send()
        .await
        .map_err(|e| DemoError::Api(format!("/v1/events: {e}")))?;
    let status = resp.status().as_u16();
    let v: serde_json::Value = resp.json().await.unwrap_or(serde_json::Value::Null);
    match v["accepted"].as_u64() {
        Some(n) if status == 200 => Ok(n),
        _ => Err(DemoError::Api(format!("/v1/events answered {status}: {v}"))),
    }
}

/// Organic orders: a seeded share of every launched group (control included) orders the
/// offer, so the control group has a baseline and replies show up as uplift.
fn organic_orders(
    c: &mut Campaigns,
    bulk: i64,
    o: &DemoOptions,
) -> Result<OrdersReport, DemoError> {
    let mut csv = String::from("msisdn,offer,time\n");
    let at = Timestamp::now() + jiff::SignedDuration::from_secs(1);
    for (_, _, members) in launch::groups(&c.conn, bulk)? {
        for id in &members {
            if bucket_point(o.seed ^ 0x0dde_5eed, id) < o.organic_rate
                && let Some(m) = c.table.msisdn(id)
            {
                let _ = writeln!(csv, "{m},{OFFER},{at}");
            }
        }
    }
    Ok(c.import_orders(csv.as_bytes())?)
}

struct Progress {
    bar: ProgressBar,
    last_log: Instant,
    enabled: bool,
}

impl Progress {
    fn new(enabled: bool, total: u64) -> Self {
        let target = if enabled && console_is_tty() {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        let bar = ProgressBar::with_draw_target(Some(total), target);
        bar.set_style(
            ProgressStyle::with_template("{spinner} {elapsed:>4} [{bar:30}] {pos}/{len} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        Self {
            bar,
            last_log: Instant::now(),
            enabled,
        }
    }

    fn update(&mut self, sent: u64, receipts: u64, replies: u64) {
        self.bar.set_position(receipts);
        self.bar.set_message(format!(
            "sent {sent}, receipts {receipts}, replies {replies}"
        ));
        if self.enabled && self.bar.is_hidden() && self.last_log.elapsed() >= Duration::from_secs(2)
        {
            self.last_log = Instant::now();
            tracing::info!(sent, receipts, replies, "Demo progress.");
        }
    }
}

fn console_is_tty() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal()
}

async fn serve_router(
    router: axum::Router,
    stop: watch::Receiver<bool>,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), DemoError> {
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let addr = listener.local_addr()?;
    let h = tokio::spawn(async move {
        let mut stop = stop;
        let _ = axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await;
    });
    Ok((addr, h))
}

/// Runs the whole demo (see the module doc).
///
/// # Errors
/// [`DemoError`] when a part cannot start or a campaign step fails. A settle timeout is not
/// an error: the outcome says `settled: false`.
pub async fn run(o: DemoOptions) -> Result<DemoOutcome, DemoError> {
    let mut phases = Vec::new();
    let dir = fresh_dir(&o)?;
    let t0 = Instant::now();

    let sim = sluice_loadtest::Simulator::start(sim_config(&o))
        .await
        .map_err(|e| DemoError::Simulator(e.to_string()))?;
    let sim_addr = sim
        .addrs()
        .first()
        .copied()
        .ok_or_else(|| DemoError::Simulator("no listener".into()))?;
    let gw = start(
        gateway_config(&dir, sim_addr)?,
        ServeOptions {
            drain_deadline: Duration::from_secs(5),
            http_addr: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
            ..ServeOptions::default()
        },
    )
    .await?;
    let gateway_url = format!("http://{}", gw.http_addr());
    phases.push(("start simulator + gateway", t0.elapsed()));

    let t = Instant::now();
    let mut campaigns = Campaigns::open(&dir.join("campaign.db"))?;
    let users = prepare(&mut campaigns, &o)?;
    let svc = Arc::new(Mutex::new(campaigns));
    phases.push(("city + lists + users", t.elapsed()));

    let (router, service) = InProcess::start(
        Arc::clone(&svc),
        gw.receipts(),
        &gateway_url,
        API_KEY,
        FeedbackConfig::default(),
        Duration::from_secs(1),
    );
    let counts = Arc::clone(&service.counts);
    let (stop_tx, stop_rx) = watch::channel(false);
    let (api_addr, api_task) = serve_router(router, stop_rx.clone()).await?;
    // `start` above installed the rustls provider this client needs.
    let api = Api {
        http: reqwest::Client::new(),
        base: format!("http://{api_addr}/v1/campaign"),
    };

    // Plan, approve and launch through the campaign API, as the console's users would.
    let t = Instant::now();
    let Planned {
        task,
        bulk,
        segment_size,
        self_approval,
        activity,
    } = plan_via_api(&api, &users, &o).await?;
    phases.push(("segment + task + approval (API)", t.elapsed()));
    let t = Instant::now();
    let (trigger_task, trigger) = plan_trigger(&api, &users, activity).await?;
    let (bursts, mut again) = roaming_bursts(&lock(&svc), &o, 3);
    let mut bursts = bursts.into_iter();
    let mut pending_events = u64::MAX;
    let (mut roaming_posted, mut roaming_accepted) = (0u64, 0u64);
    phases.push(("triggered task + approval (API)", t.elapsed()));
    let t = Instant::now();
    api.ok(
        &users.alice,
        &format!("/bulk/{bulk}/launch"),
        &serde_json::json!({}),
    )
    .await?;
    let plan = launch::plan_report(&lock(&svc).conn, bulk)?;
    phases.push(("launch (plan + rules + split)", t.elapsed()));

    let to_send: u64 = plan
        .groups
        .iter()
        .filter(|g| !g.is_control)
        .map(|g| g.count)
        .sum();
    let mut progress = Progress::new(o.progress, to_send);
    let t = Instant::now();
    let mut settled = false;
    let mut all_sent_at = None;
    let deadline_after_send = o.settle_timeout;
    let hard_deadline = Instant::now() + o.settle_timeout * 3;
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        // The feed's burst of roaming events, while the bulk send goes out.
        let burst = match bursts.next() {
            Some(b) => b,
            None if pending_events == 0 => std::mem::take(&mut again),
            None => Vec::new(),
        };
        let feeding = !burst.is_empty() || !again.is_empty();
        if !burst.is_empty() {
            roaming_posted += burst.len() as u64;
            roaming_accepted += post_events(&api, &users, &burst).await?;
        }
        let (state, sent, finals, triggered) = {
            let c = lock(&svc);
            let state = lifecycle::task_state(&c.conn, task)?;
            let f = c.funnel(task)?;
            let sent: u64 = f.iter().map(|r| r.sent).sum();
            let finals: u64 = f.iter().map(|r| r.delivered + r.failed).sum();
            // Every event matched (nothing pending or held) and every triggered send has
            // its final receipt.
            let m = evaluate::monitor(&c.conn, Timestamp::now().as_second(), None)?;
            let tf = evaluate::funnel(&c.conn, trigger, trigger_task)?;
            pending_events = m.pending_events;
            let triggered = m.pending_events == 0
                && tf.held_now == 0
                && tf.delivered + tf.failed + tf.cancelled >= tf.sent;
            (state, sent, finals, triggered)
        };
        let tally = sim.tally();
        progress.update(sent, finals, counts.replies());
        let done_sending = state == TaskState::Completed;
        if done_sending && all_sent_at.is_none() {
            all_sent_at = Some(Instant::now());
            phases.push(("hand all batches to gateway (acked)", t.elapsed()));
        }
        // Replies the simulator has decided on (some still waiting out their delay), not only
        // those already sent: otherwise a late reply can arrive after the demo settled.
        if done_sending
            && !feeding
            && triggered
            && finals >= sent
            && counts.replies() >= tally.mo_scheduled
        {
            settled = true;
            break;
        }
        let late = all_sent_at.is_some_and(|s| s.elapsed() > deadline_after_send);
        if late || Instant::now() > hard_deadline {
            tracing::warn!(
                sent,
                finals,
                replies = counts.replies(),
                mo_scheduled = tally.mo_scheduled,
                "Demo: receipts/replies did not settle in time."
            );
            break;
        }
    }
    progress.bar.finish_and_clear();
    phases.push(("… + all receipts and replies settled", t.elapsed()));

    let t = Instant::now();
    let orders = organic_orders(&mut lock(&svc), bulk, &o)?;
    let (funnel, uplift, trigger_funnel) = {
        let c = lock(&svc);
        (
            c.funnel(task)?,
            c.uplift(task)?,
            evaluate::funnel(&c.conn, trigger, trigger_task)?,
        )
    };
    phases.push(("orders + evaluation", t.elapsed()));

    let _ = stop_tx.send(true);
    let _ = api_task.await;
    gw.shutdown().await;
    service.shutdown().await;
    let tally = sim
        .shutdown()
        .await
        .map_err(|e| DemoError::Simulator(e.to_string()))?;
    phases.push(("total", t0.elapsed()));
    drop(svc);
    if !o.keep {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(DemoOutcome {
        task,
        bulk,
        segment_size,
        self_approval,
        plan,
        funnel,
        uplift,
        orders,
        tally,
        receipts_matched: counts
            .receipts_matched
            .load(std::sync::atomic::Ordering::Relaxed),
        receipts_unmatched: counts
            .receipts_unmatched
            .load(std::sync::atomic::Ordering::Relaxed),
        replies_attributed: counts
            .replies_attributed
            .load(std::sync::atomic::Ordering::Relaxed),
        replies_unattributed: counts
            .replies_unattributed
            .load(std::sync::atomic::Ordering::Relaxed),
        feedback_lagged: counts.lagged.load(std::sync::atomic::Ordering::Relaxed),
        feedback_held: counts.held.load(std::sync::atomic::Ordering::Relaxed),
        settled,
        phases,
        data_dir: dir,
        trigger_task,
        trigger,
        roaming_posted,
        roaming_accepted,
        trigger_funnel,
    })
}

/// The funnel, uplift and timing tables as text.
pub fn render(o: &DemoOutcome) -> String {
    let mut s = String::new();
    let p = &o.plan;
    let _ = writeln!(
        s,
        "Segment {} members; launch excluded {} ({}); task {} bulk {}\n",
        o.segment_size,
        o.segment_size
            .saturating_sub(p.groups.iter().map(|g| g.count).sum()),
        launch::reason_names(&p.excluded)
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(k, n)| format!("{k} {n}"))
            .collect::<Vec<_>>()
            .join(", "),
        o.task,
        o.bulk
    );
    let _ = writeln!(
        s,
        "Approval: alice (planner, approver) submitted task {}; alice approving it herself was refused ({}); bob (approver) approved it\n",
        o.task, o.self_approval
    );
    s.push_str(&crate::campaign_cmd::render_tables(&o.funnel, &o.uplift));
    let _ = writeln!(
        s,
        "\nFeedback: receipts matched {} (unmatched {}), replies attributed {} (unattributed {}), held for their contact row {}, lagged {}; orders {} ({} to contacts, {} to control, {} unmatched)",
        o.receipts_matched,
        o.receipts_unmatched,
        o.replies_attributed,
        o.replies_unattributed,
        o.feedback_held,
        o.feedback_lagged,
        o.orders.rows,
        o.orders.contacted,
        o.orders.control,
        o.orders.unmatched
    );
    render_trigger(&mut s, o);
    let t = &o.tally;
    let _ = writeln!(
        s,
        "Simulator tally: {} unique messages, {} duplicates, {} DLRs sent, {} replies (MO) sent",
        t.unique_messages, t.duplicates, t.dlrs_sent, t.mo_sent
    );
    if !o.settled {
        let _ = writeln!(
            s,
            "WARNING: receipts/replies had not settled at the timeout."
        );
    }
    let _ = writeln!(s, "\nTiming");
    for (name, d) in &o.phases {
        let _ = writeln!(s, "  {name:<36} {:>8.2} s", d.as_secs_f64());
    }
    s
}

/// The triggered part of the report: what the trigger is, the events, and its funnel.
fn render_trigger(s: &mut String, o: &DemoOutcome) {
    let f = &o.trigger_funnel;
    let _ = writeln!(
        s,
        "\nTriggered task {} (trigger {}): roaming_arrival where {ROAMING_CONDITION}; {:.0} % control, cooldown {} h",
        o.trigger_task,
        o.trigger,
        ROAMING_CONTROL * 100.0,
        ROAMING_COOLDOWN_S / 3_600
    );
    let _ = writeln!(
        s,
        "  events posted {} (accepted {}) during the bulk send",
        o.roaming_posted, o.roaming_accepted
    );
    let _ = writeln!(
        s,
        "  matched {} -> sent {} -> delivered {} (failed {}) -> replies {}; control {} (converted {})",
        f.matched, f.sent, f.delivered, f.failed, f.converted, f.control, f.control_converted
    );
    let suppressed: Vec<String> = f
        .suppressed
        .iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
    let _ = writeln!(
        s,
        "  suppressed: {}; dropped as stale {}",
        if suppressed.is_empty() {
            "none".to_owned()
        } else {
            suppressed.join(", ")
        },
        f.dropped_stale
    );
    match &f.uplift {
        Some(u) => {
            let _ = writeln!(
                s,
                "  uplift vs control: {:+.1} pp ({:.1} % vs {:.1} %), z {:.2}, p {:.3}",
                u.difference * 100.0,
                u.variant_rate * 100.0,
                u.control_rate * 100.0,
                u.z,
                u.p_value
            );
        }
        None => {
            let _ = writeln!(s, "  uplift vs control: not computable (a group is empty)");
        }
    }
}
