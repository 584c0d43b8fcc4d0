//! Configuration: the embedded default works with no file, and bad input fails with the file,
//! the key path, the reason and (when the key is in the text) the line and column.

use sluice::config::{
    BindMode, ChannelKind, CmppVersion, Concatenation, Config, ConfigError, IdFormatSetting,
    Protocol, hash_api_key,
};
use sluice::store::{BackendKind, MessageKind};

const BASE: &str = r#"
timezone = "Asia/Shanghai"

[[accounts]]
name = "acme"
api_keys = ["KEYHASH"]
rate = 100

[[channels]]
name = "smsc1"
kind = "smpp"
host = "10.0.0.1"
port = 2775
system_id = "acme"
password = "secret"
rate = 500
windows = ["08:00-21:00"]

[[channels]]
name = "smsc2"
kind = "cmpp"
host = "10.0.0.2"
port = 7890
source_addr = "901234"
shared_secret = "s3cret"
src_id = "10658000"
rate = 200

[[routes]]
prefixes = ["86138"]
channel = "smsc1"
failover = "smsc2"
"#;

fn base() -> String {
    BASE.replace("KEYHASH", &hash_api_key("k1"))
}

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, "test.toml")
}

/// Parses `text`, expecting an error at `key` on `line`; returns the message.
fn expect_err(text: &str, key: &str, line: Option<usize>) -> String {
    let err = parse(text).expect_err("config should be refused");
    assert_eq!(err.key(), Some(key), "{err}");
    assert_eq!(err.line(), line, "{err}");
    let msg = err.to_string();
    assert!(msg.starts_with("test.toml"), "{msg}");
    if !key.is_empty() {
        assert!(msg.contains(key), "{msg}");
    }
    msg
}

fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .expect("needle")
        + 1
}

#[test]
fn embedded_default_runs_without_a_file() {
    let cfg = Config::embedded().unwrap();
    let dev = cfg
        .account_for_key("sluice-dev-key")
        .expect("documented dev key");
    assert_eq!(dev.name, "dev");
    assert!(cfg.account_for_key("wrong").is_none());
    let sim = cfg.channel("sim").unwrap();
    assert_eq!(sim.host, "127.0.0.1");
    assert_eq!(sim.kind(), ChannelKind::Smpp);
    assert!(cfg.simulator.enabled);
    assert_eq!(cfg.simulator.port, sim.port);
    assert_eq!(cfg.storage.path.to_str(), Some("./data"));
    assert_eq!(cfg.storage.backend, BackendKind::Redb);
    assert_eq!(cfg.time_zone().iana_name(), Some("Asia/Shanghai"));
    let router = cfg.router();
    let choice = router
        .pick(
            "dev",
            MessageKind::Sms,
            "+8613800138000",
            jiff::Timestamp::now(),
            &Default::default(),
        )
        .unwrap();
    assert_eq!(choice.channel, "sim");
    // An MMS goes to the embedded simulator's MMSC (channel "mmsc" on simulator.mm7_port).
    let mmsc = cfg.channel("mmsc").unwrap();
    assert_eq!(mmsc.kind(), ChannelKind::Mm7);
    assert_eq!(mmsc.host, "127.0.0.1");
    assert_eq!(cfg.simulator.mm7_port, mmsc.port);
    let mms = router
        .pick(
            "dev",
            MessageKind::Mms,
            "+8613800138000",
            jiff::Timestamp::now(),
            &Default::default(),
        )
        .unwrap();
    assert_eq!(mms.channel, "mmsc");
}

#[test]
fn good_config_resolves_everything() {
    let text = base().replace("kind = \"smpp\"", "kind = \"smpp\"\nbind_mode = \"transmitter+receiver\"\nconcatenation = \"sar\"\ninterface_version = 0x50");
    let cfg = parse(&text).unwrap();
    assert_eq!(cfg.account_for_key("k1").unwrap().name, "acme");
    let ch = cfg.channel("smsc1").unwrap();
    let Protocol::Smpp(smpp) = &ch.protocol else {
        panic!("smsc1 is smpp")
    };
    assert_eq!(smpp.bind_mode, BindMode::TransmitterReceiver);
    assert_eq!(smpp.interface_version, 0x50);
    assert_eq!(ch.concatenation, Concatenation::Sar);
    assert_eq!(ch.window, 10, "default window");
    let cmpp = cfg.channel("smsc2").unwrap();
    assert_eq!(cmpp.kind(), ChannelKind::Cmpp);
    assert_eq!(cmpp.window, 16, "CMPP's default window");
    assert_eq!(
        cmpp.message_id_format,
        IdFormatSetting::Decimal,
        "Msg_Ids are numbers"
    );
    let Protocol::Cmpp(settings) = &cmpp.protocol else {
        panic!("smsc2 is cmpp")
    };
    assert_eq!(settings.version, CmppVersion::V20);
    assert_eq!(settings.fee_type, "01");
    assert_eq!(settings.src_id, "10658000");
    let rules = cfg
        .window_rules("smsc1", "acme", Some("20:00-23:00"))
        .unwrap();
    // The channel's window and the message's own; the account has none (an empty set
    // would restrict nothing, so it is not there).
    let set = |w: &str| vec![w.parse::<sluice::schedule::TimeWindow>().unwrap()];
    assert_eq!(rules.allowed, [set("08:00-21:00"), set("20:00-23:00")]);
    assert!(rules.quiet.is_empty());
    assert!(
        cfg.window_rules("smsc1", "acme", Some("25:00-26:00"))
            .is_err()
    );
    // Defaults for everything omitted.
    assert_eq!(cfg.storage.retention_hours, 72);
    assert_eq!(cfg.listeners.http.port(), 8080);
    assert!(!cfg.simulator.enabled);
}

#[test]
fn wrong_type_names_key_and_line() {
    let text = base().replace("rate = 500", "rate = 500\nwindow = \"ten\"");
    let msg = expect_err(
        &text,
        "channels[0].window",
        Some(line_of(&text, "window = \"ten\"")),
    );
    assert!(msg.contains("invalid type"), "{msg}");
}

#[test]
fn unknown_key_is_refused() {
    let text = base().replace("rate = 500", "rate = 500\nwindoww = 3");
    let msg = parse(&text).unwrap_err().to_string();
    assert!(msg.contains("windoww"), "{msg}");
    assert!(msg.contains("channels[0]"), "{msg}");
    assert!(
        msg.contains(&format!(":{}:", line_of(&text, "windoww"))),
        "{msg}"
    );
}

#[test]
fn syntax_error_has_position() {
    let text = base().replace("port = 2775", "port = = 2775");
    let err = parse(&text).unwrap_err();
    assert_eq!(err.key(), Some(""));
    assert_eq!(err.line(), Some(line_of(&text, "port = = 2775")));
}

#[test]
fn route_to_missing_channel() {
    let text = base().replace("channel = \"smsc1\"", "channel = \"nope\"");
    let msg = expect_err(
        &text,
        "routes[0].channel",
        Some(line_of(&text, "channel = \"nope\"")),
    );
    assert!(msg.contains("no channel named \"nope\""), "{msg}");
    let text = base().replace("failover = \"smsc2\"", "failover = \"gone\"");
    expect_err(
        &text,
        "routes[0].failover",
        Some(line_of(&text, "failover = \"gone\"")),
    );
    let text = base().replace("failover = \"smsc2\"", "failover = \"smsc1\"");
    expect_err(
        &text,
        "routes[0].failover",
        Some(line_of(&text, "failover = \"smsc1\"")),
    );
    let text = base().replace(
        "prefixes = [\"86138\"]",
        "prefixes = [\"86138\"]\naccounts = [\"ghost\"]",
    );
    expect_err(
        &text,
        "routes[0].accounts[0]",
        Some(line_of(&text, "ghost")),
    );
    let text = base().replace("\"86138\"", "\"86x\"");
    expect_err(&text, "routes[0].prefixes[0]", Some(line_of(&text, "86x")));
}

#[test]
fn bad_window_names_the_element() {
    let text = base().replace("[\"08:00-21:00\"]", "[\"08:00-21:00\", \"21:00-25:00\"]");
    let msg = expect_err(
        &text,
        "channels[0].windows[1]",
        Some(line_of(&text, "21:00-25:00")),
    );
    assert!(msg.contains("21:00-25:00"), "{msg}");
}

#[test]
fn numeric_checks() {
    let text = base().replace("rate = 500", "rate = 0");
    expect_err(&text, "channels[0].rate", Some(line_of(&text, "rate = 0")));
    let text = base().replace("rate = 100", "rate = 100\nburst = 0");
    expect_err(
        &text,
        "accounts[0].burst",
        Some(line_of(&text, "burst = 0")),
    );
    let text = base().replace("rate = 500", "rate = 500\ninterface_version = 0x33");
    let msg = expect_err(
        &text,
        "channels[0].interface_version",
        Some(line_of(&text, "0x33")),
    );
    assert!(msg.contains("0x33"), "{msg}");
    let text = base().replace("rate = 500", "rate = 500\nport2 = 1");
    assert!(parse(&text).is_err());
    let text = base().replace("port = 2775", "port = 70000");
    expect_err(&text, "channels[0].port", Some(line_of(&text, "70000")));
    let text = base().replace("rate = 500", "rate = 500\nretry = { max_attempts = 0 }");
    expect_err(
        &text,
        "channels[0].retry.max_attempts",
        Some(line_of(&text, "max_attempts = 0")),
    );
    // A negative number for an unsigned field.
    let text = base().replace("rate = 500", "rate = -5");
    expect_err(&text, "channels[0].rate", Some(line_of(&text, "rate = -5")));
}

#[test]
fn protocol_limits() {
    let text = base().replace("password = \"secret\"", "password = \"muchtoolong\"");
    expect_err(
        &text,
        "channels[0].password",
        Some(line_of(&text, "muchtoolong")),
    );
    let text = base().replace("source_addr = \"901234\"", "source_addr = \"9012345\"");
    expect_err(
        &text,
        "channels[1].source_addr",
        Some(line_of(&text, "9012345")),
    );
    let text = base().replace("src_id = \"10658000\"", "src_id = \"1065x\"");
    expect_err(&text, "channels[1].src_id", Some(line_of(&text, "1065x")));
    let text = base().replace("rate = 200", "rate = 200\nlink_id = \"L1\"");
    let msg = expect_err(&text, "channels[1].link_id", Some(line_of(&text, "L1")));
    assert!(msg.contains("3.0"), "{msg}");
    let text = base().replace(
        "rate = 200",
        "rate = 200\nversion = \"3.0\"\nlink_id = \"L1\"",
    );
    assert!(parse(&text).is_ok());
    let text = base().replace("rate = 200", "rate = 200\nversion = \"4.0\"");
    expect_err(&text, "channels[1].version", Some(line_of(&text, "4.0")));
}

/// A key of another kind is refused with its path, so a CMPP channel cannot carry SMPP-only
/// settings (and the other way round) that would silently do nothing.
#[test]
fn keys_of_another_kind_are_refused() {
    let text = base().replace(
        "src_id = \"10658000\"",
        "src_id = \"10658000\"\ninterface_version = 0x34",
    );
    let msg = expect_err(
        &text,
        "channels[1].interface_version",
        Some(line_of(&text, "interface_version")),
    );
    assert!(
        msg.contains("smpp key") && msg.contains("cmpp channel"),
        "{msg}"
    );
    let text = base().replace(
        "system_id = \"acme\"",
        "system_id = \"acme\"\nshared_secret = \"x\"",
    );
    let msg = expect_err(
        &text,
        "channels[0].shared_secret",
        Some(line_of(&text, "shared_secret")),
    );
    assert!(msg.contains("cmpp key"), "{msg}");
    let text = base().replace("concatenation = ", "x").replace(
        "src_id = \"10658000\"",
        "src_id = \"10658000\"\nconcatenation = \"sar\"",
    );
    expect_err(
        &text,
        "channels[1].concatenation",
        Some(line_of(&text, "\"sar\"")),
    );
}

const MM7: &str = r#"
[[channels]]
name = "mmsc"
kind = "mm7"
url = "https://mmsc.example:8443/mm7/vasp"
username = "vasp"
password = "pw"
vasp_id = "901234"
vas_id = "9012340001"
service_code = "MMSTEST"
sender = "10658000"
namespace = "REL-5-MM7-1-0"
delivery_report = false
charged_party = "Sender"
max_recipients = 50
max_content_bytes = 102400
inbound_username = "mmsc"
inbound_password_sha256 = "INHASH"
timeout_ms = 4000
rate = 20

[[routes]]
kinds = ["mms"]
channel = "mmsc"
"#;

fn with_mm7() -> String {
    format!(
        "{}{}",
        base(),
        MM7.replace("INHASH", &hash_api_key("in-pw"))
    )
}

/// Every MM7 key reaches the typed config; host and port come from the URL.
#[test]
fn mm7_keys_are_accepted_and_typed() {
    let cfg = parse(&with_mm7()).expect("valid mm7 channel");
    let ch = cfg.channel("mmsc").expect("channel");
    assert_eq!(ch.kind(), ChannelKind::Mm7);
    assert_eq!((ch.host.as_str(), ch.port), ("mmsc.example", 8443));
    assert_eq!(ch.window, 16);
    assert_eq!(ch.response_timeout_ms, 4000);
    assert_eq!(ch.max_content_bytes(), Some(102_400));
    assert_eq!(cfg.channel("smsc1").unwrap().max_content_bytes(), None);
    let Protocol::Mm7(m) = &ch.protocol else {
        panic!("not mm7: {:?}", ch.protocol)
    };
    assert_eq!(m.url, "https://mmsc.example:8443/mm7/vasp");
    assert_eq!(m.username.as_deref(), Some("vasp"));
    assert_eq!(m.password.as_deref(), Some("pw"));
    assert_eq!(
        (m.vasp_id.as_str(), m.vas_id.as_str()),
        ("901234", "9012340001")
    );
    assert_eq!(m.service_code.as_deref(), Some("MMSTEST"));
    assert_eq!(m.sender.as_deref(), Some("10658000"));
    assert!(m.namespace.ends_with("/REL-5-MM7-1-0"), "{}", m.namespace);
    assert!(!m.delivery_report);
    assert_eq!(m.charged_party.as_deref(), Some("Sender"));
    assert_eq!(m.max_recipients, 50);
    assert_eq!(m.inbound_username.as_deref(), Some("mmsc"));
    assert!(m.inbound_password_sha256.is_some());
    assert!(!format!("{m:?}").contains("\"pw\""), "password redacted");
    // Defaults.
    let minimal = format!(
        "{}\n[[channels]]\nname = \"m\"\nkind = \"mm7\"\nurl = \"http://h/mm7\"\nvasp_id = \"v\"\nrate = 1\n",
        base()
    );
    let cfg = parse(&minimal).expect("minimal mm7");
    let Protocol::Mm7(m) = &cfg.channel("m").unwrap().protocol else {
        panic!("not mm7")
    };
    assert!(m.namespace.ends_with("/REL-6-MM7-1-4"));
    assert!(m.delivery_report);
    assert_eq!((m.max_recipients, m.max_content_bytes), (1, 307_200));
    assert_eq!(cfg.channel("m").unwrap().port, 80);
}

/// MM7 keys on another kind, SMPP/CMPP keys on mm7, and bad values are refused by key.
#[test]
fn mm7_keys_are_refused_elsewhere_and_checked() {
    let text = base().replace(
        "system_id = \"acme\"",
        "system_id = \"acme\"\nvasp_id = \"x\"",
    );
    let msg = expect_err(
        &text,
        "channels[0].vasp_id",
        Some(line_of(&text, "vasp_id")),
    );
    assert!(
        msg.contains("mm7 key") && msg.contains("smpp channel"),
        "{msg}"
    );
    let text = base().replace(
        "src_id = \"10658000\"",
        "src_id = \"10658000\"\npassword = \"x\"",
    );
    let msg = expect_err(
        &text,
        "channels[1].password",
        Some(line_of(&text, "password = \"x\"")),
    );
    assert!(msg.contains("cmpp channel"), "{msg}");
    for (from, to, key) in [
        (
            "vas_id = ",
            "system_id = \"s\"\nvas_id = ",
            "channels[2].system_id",
        ),
        (
            "url = \"https://mmsc.example:8443/mm7/vasp\"",
            "host = \"h\"",
            "channels[2].host",
        ),
        (
            "url = \"https://mmsc.example:8443/mm7/vasp\"",
            "url = \"ftp://h/\"",
            "channels[2].url",
        ),
        (
            "namespace = \"REL-5-MM7-1-0\"",
            "namespace = \"REL-7-MM7-1-0\"",
            "channels[2].namespace",
        ),
        (
            "vasp_id = \"901234\"",
            "vasp_id = \"\"",
            "channels[2].vasp_id",
        ),
        (
            "charged_party = \"Sender\"",
            "charged_party = \"Nobody\"",
            "channels[2].charged_party",
        ),
        (
            "max_recipients = 50",
            "max_recipients = 0",
            "channels[2].max_recipients",
        ),
        (
            "max_content_bytes = 102400",
            "max_content_bytes = 0",
            "channels[2].max_content_bytes",
        ),
        (
            "inbound_username = \"mmsc\"\n",
            "",
            "channels[2].inbound_username",
        ),
        (
            "timeout_ms = 4000",
            "timeout_ms = 4000\nbinds = 2",
            "channels[2].binds",
        ),
        (
            "timeout_ms = 4000",
            "timeout_ms = 4000\nconcatenation = \"udh8\"",
            "channels[2].concatenation",
        ),
    ] {
        let text = with_mm7().replace(from, to);
        assert_ne!(text, with_mm7(), "{from}");
        let e = parse(&text).expect_err(to);
        assert_eq!(e.key(), Some(key), "{to}: {e}");
    }
    let text = with_mm7().replace(&hash_api_key("in-pw"), "nothex");
    assert_eq!(
        parse(&text).unwrap_err().key(),
        Some("channels[2].inbound_password_sha256")
    );
}

/// MMS travels only over MM7 channels and MM7 channels carry only MMS.
#[test]
fn mms_routes_name_mm7_channels_only() {
    let text = with_mm7().replace(
        "kinds = [\"mms\"]\nchannel = \"mmsc\"",
        "channel = \"mmsc\"",
    );
    let msg = expect_err(
        &text,
        "routes[1].channel",
        Some(line_of(&text, "channel = \"mmsc\"")),
    );
    assert!(msg.contains("kinds = [\"mms\"]"), "{msg}");
    let text = with_mm7().replace("channel = \"mmsc\"", "channel = \"smsc1\"");
    let msg = expect_err(
        &text,
        "routes[1].channel",
        Some(line_of(&text, "kinds = [\"mms\"]") + 1),
    );
    assert!(msg.contains("not an mm7 channel"), "{msg}");
    let text = with_mm7().replace("failover = \"smsc2\"", "failover = \"mmsc\"");
    expect_err(
        &text,
        "routes[0].failover",
        Some(line_of(&text, "failover = \"mmsc\"")),
    );
    let text = with_mm7().replace(
        "prefixes = [\"86138\"]",
        "prefixes = [\"86138\"]\nkinds = [\"sms\", \"mms\"]",
    );
    expect_err(
        &text,
        "routes[0].kinds",
        Some(line_of(&text, "\"sms\", \"mms\"")),
    );
}

#[test]
fn accounts_checks() {
    let text = BASE.replace("KEYHASH", "not-a-hash");
    let msg = expect_err(
        &text,
        "accounts[0].api_keys[0]",
        Some(line_of(&text, "not-a-hash")),
    );
    assert!(msg.contains("SHA-256"), "{msg}");
    let text = base().replace(
        "rate = 100",
        "rate = 100\nallowed_senders = [\"1069\"]\ndefault_sender = \"1070\"",
    );
    expect_err(
        &text,
        "accounts[0].default_sender",
        Some(line_of(&text, "default_sender")),
    );
    let text = base().replace("rate = 100", "rate = 100\nwebhook_url = \"ftp://x\"");
    expect_err(
        &text,
        "accounts[0].webhook_url",
        Some(line_of(&text, "ftp://x")),
    );
    // Every webhook is signed: a webhook or reply URL without a secret is refused, naming
    // the missing key and why; a short secret is refused at its line.
    for url_key in ["webhook_url", "mo_url"] {
        let text = base().replace(
            "rate = 100",
            &format!("rate = 100\n{url_key} = \"https://hooks.example/x\""),
        );
        let err = parse(&text).expect_err("no secret");
        assert_eq!(err.key(), Some("accounts[0].webhook_secret"), "{err}");
        let msg = err.to_string();
        assert!(msg.contains(url_key) && msg.contains("signed"), "{msg}");
    }
    let text = base().replace(
        "rate = 100",
        "rate = 100\nwebhook_url = \"https://h.example/\"\nwebhook_secret = \"short\"",
    );
    let msg = expect_err(
        &text,
        "accounts[0].webhook_secret",
        Some(line_of(&text, "\"short\"")),
    );
    assert!(msg.contains("at least 16"), "{msg}");
    let text = base().replace(
        "rate = 100",
        "rate = 100\nwebhook_url = \"https://h.example/\"\nwebhook_secret = \"a-secret-nobody-may-see\"",
    );
    let cfg = parse(&text).expect("signed account");
    assert!(cfg.accounts[0].webhook_secret.is_some());
    assert!(!format!("{cfg:?}").contains("a-secret-nobody-may-see"));
    let dup = format!("{}\n[[accounts]]\nname = \"acme\"\nrate = 1\n", base());
    let err = parse(&dup).unwrap_err();
    assert_eq!(err.key(), Some("accounts[1].name"));
}

#[test]
fn bad_timezone_and_missing_required() {
    let text = base().replace("Asia/Shanghai", "Mars/Olympus");
    expect_err(&text, "timezone", Some(line_of(&text, "Mars/Olympus")));
    let text = base().replace("host = \"10.0.0.1\"\n", "");
    let msg = parse(&text).unwrap_err().to_string();
    assert!(msg.contains("host"), "{msg}");
    assert!(msg.contains("channels[0]"), "{msg}");
}

#[test]
fn load_reports_missing_file() {
    let err = Config::load(std::path::Path::new("/nonexistent/sluice.toml")).unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }));
    assert!(err.to_string().contains("/nonexistent/sluice.toml"));
}

#[test]
fn id_formats_parse_and_bad_values_name_the_key() {
    let text =
        sluice::config::EMBEDDED.replace("dlr_id_format = \"text\"", "dlr_id_format = \"decimal\"");
    let cfg = sluice::config::Config::parse(&text, "t.toml").expect("valid");
    assert_eq!(
        cfg.channels[0].dlr_id_format,
        sluice::config::IdFormatSetting::Decimal
    );
    let bad = text.replace("dlr_id_format = \"decimal\"", "dlr_id_format = \"octal\"");
    let err = sluice::config::Config::parse(&bad, "t.toml")
        .unwrap_err()
        .to_string();
    assert!(err.contains("channels[0].dlr_id_format"), "{err}");
}

#[test]
fn embedded_dev_key_matches_the_dev_account_hash() {
    let cfg = sluice::config::Config::embedded().expect("embedded config");
    let hash = sluice::config::hash_api_key(sluice::config::EMBEDDED_DEV_KEY);
    assert!(cfg.accounts.iter().any(|a| a.api_keys.contains(&hash)));
}

#[test]
fn simulator_mm7_port_must_be_a_port_of_its_own() {
    for clash in ["mm7_port = 2775", "mm7_port = 7890", "mm7_port = 0"] {
        let text = sluice::config::EMBEDDED.replace("mm7_port = 8088", clash);
        let err = Config::parse(&text, "x.toml").unwrap_err();
        assert!(
            err.to_string().contains("simulator.mm7_port"),
            "{clash}: {err}"
        );
    }
}
