//! Placement: which channel a validated submission goes to and when it is due — routing
//! (account, kind, destination prefix, failover health) plus the windows that apply
//! (channel, account, the message's own), quiet hours, `not_before` and expiry.
//!
//! Ingress calls it once per message before the batch is stored, so a message that can never
//! be sent (no route, windows that never open) is refused with its line and field instead of
//! waiting in the store.

use std::sync::{Arc, Mutex};

use crate::clock::{from_ms, to_ms};
use crate::config::Config;
use crate::ingress::accept::{PlaceFn, Placement};
use crate::ingress::message::FieldError;
use crate::route::ChannelHealth;
use crate::rules::Rules;
use crate::schedule::{Due, due};

/// Routing + windows from `config` as the ingress placement function; `health` is the
/// channels' up/down state failover reads. The public rules' quiet hours join the channel's
/// quiet hours for messages of the lanes the rules bind: such a message is deferred past
/// them, never refused for them.
#[must_use]
pub fn placement(
    config: Arc<Config>,
    health: Arc<Mutex<ChannelHealth>>,
    public: Arc<Rules>,
) -> PlaceFn {
    let router = config.router();
    let tz = config.time_zone();
    Arc::new(move |account, s, now_ms| {
        let now = from_ms(now_ms);
        let channel = {
            let health = health
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            router
                .pick(account, s.kind, &s.to, now, &health)
                .map_err(|e| FieldError {
                    field: "to".into(),
                    reason: e.to_string(),
                })?
                .channel
                .to_owned()
        };
        let mut rules = config
            .window_rules(&channel, account, s.window.as_deref())
            .map_err(|e| FieldError {
                field: "window".into(),
                reason: e.to_string(),
            })?;
        rules
            .quiet
            .extend(public.quiet_hours_for(s.lane).iter().copied());
        let due_ms = match due(now, s.not_before, s.expires_at, &tz, &rules) {
            Due::At(t) => to_ms(t),
            // No allowed instant before `expires_at`: due exactly at the expiry, so the first
            // lease (or the expiry sweep) that can see it also sees it expired and ends it
            // with EXPIRED. Due now would let dispatch lease it while still valid and send it
            // outside an account window, which only placement checks.
            Due::Expired => s.expires_at.map_or(now_ms, to_ms),
            Due::Never => {
                return Err(FieldError {
                    field: "window".into(),
                    reason: "the applicable windows and quiet hours leave no time to send".into(),
                });
            }
        };
        Ok(Placement { channel, due_ms })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingress::message::{SenderPolicy, Submission, WireMessage, validate};

    fn config(channel_windows: &str) -> Arc<Config> {
        let text = format!(
            r#"
timezone = "Asia/Shanghai"
[[accounts]]
name = "a"
rate = 10
default_sender = "1069"
[[channels]]
name = "day"
kind = "smpp"
host = "127.0.0.1"
port = 2775
system_id = "s"
password = "p"
rate = 10
windows = [{channel_windows}]
[[channels]]
name = "intl"
kind = "smpp"
host = "127.0.0.1"
port = 2776
system_id = "s"
password = "p"
rate = 10
[[routes]]
channel = "day"
[[routes]]
prefixes = ["+44"]
channel = "intl"
"#
        );
        Arc::new(Config::parse(&text, "test.toml").expect("valid config"))
    }

    fn submission(to: &str, window: Option<&str>, not_before: Option<&str>) -> Submission {
        let senders = SenderPolicy {
            allowed: vec![],
            default: Some("1069".into()),
            callbacks: false,
        };
        validate(
            WireMessage {
                to: to.into(),
                text: Some("x".into()),
                window: window.map(Into::into),
                not_before: not_before.map(Into::into),
                ..WireMessage::default()
            },
            &senders,
        )
        .expect("valid")
    }

    fn no_rules() -> Arc<Rules> {
        Arc::new(
            Rules::in_memory(
                jiff::tz::TimeZone::get("Asia/Shanghai").expect("tz"),
                &[],
                crate::clock::AnyClock::System,
            )
            .expect("rules"),
        )
    }

    fn ms_of(s: &str) -> u64 {
        to_ms(s.parse().expect("timestamp"))
    }

    #[test]
    fn placement_routes_and_waits_for_the_channel_window() {
        let place = placement(config("\"08:00-21:00\""), Arc::default(), no_rules());
        // 22:00 in Shanghai: outside 08:00-21:00, so due at 08:00 the next morning.
        let now = ms_of("2026-11-26T22:00:00+08:00");
        let p = place("a", &submission("13800138000", None, None), now).expect("placed");
        assert_eq!(p.channel, "day");
        assert_eq!(p.due_ms, ms_of("2026-11-27T08:00:00+08:00"));
        // Inside the window: due now.
        let noon = ms_of("2026-11-26T12:00:00+08:00");
        assert_eq!(
            place("a", &submission("13800138000", None, None), noon)
                .expect("placed")
                .due_ms,
            noon
        );
        // Longest prefix routes +44… elsewhere (no windows there).
        let p = place("a", &submission("+447700900123", None, None), now).expect("placed");
        assert_eq!((p.channel.as_str(), p.due_ms), ("intl", now));
    }

    #[test]
    fn placement_combines_message_window_and_not_before() {
        let place = placement(config(""), Arc::default(), no_rules());
        let now = ms_of("2026-11-26T12:00:00+08:00");
        let s = submission("13800138000", Some("18:00-19:00"), None);
        assert_eq!(
            place("a", &s, now).expect("placed").due_ms,
            ms_of("2026-11-26T18:00:00+08:00")
        );
        let s = submission(
            "13800138000",
            Some("18:00-19:00"),
            Some("2026-11-26T18:30:00+08:00"),
        );
        assert_eq!(
            place("a", &s, now).expect("placed").due_ms,
            ms_of("2026-11-26T18:30:00+08:00")
        );
        let s = submission(
            "13800138000",
            Some("18:00-19:00"),
            Some("2026-11-26T19:30:00+08:00"),
        );
        assert_eq!(
            place("a", &s, now).expect("placed").due_ms,
            ms_of("2026-11-27T18:00:00+08:00")
        );
    }

    #[test]
    fn a_message_that_cannot_go_before_it_expires_is_due_at_its_expiry() {
        let place = placement(config(""), Arc::default(), no_rules());
        let now = ms_of("2026-11-26T12:00:00+08:00");
        let mut s = submission("13800138000", Some("13:00-14:00"), None);
        s.expires_at = Some("2026-11-26T12:10:00+08:00".parse().expect("timestamp"));
        // Due at the expiry, not now: a lease before 12:10 would find it still valid.
        assert_eq!(
            place("a", &s, now).expect("placed").due_ms,
            ms_of("2026-11-26T12:10:00+08:00")
        );
        // Already expired: due at its (past) expiry, so the next lease ends it at once.
        s.expires_at = Some("2026-11-26T11:00:00+08:00".parse().expect("timestamp"));
        assert_eq!(
            place("a", &s, now).expect("placed").due_ms,
            ms_of("2026-11-26T11:00:00+08:00")
        );
    }

    #[test]
    fn disjoint_windows_are_a_client_error() {
        let place = placement(config("\"08:00-09:00\""), Arc::default(), no_rules());
        let now = ms_of("2026-11-26T12:00:00+08:00");
        let e = place(
            "a",
            &submission("13800138000", Some("20:00-21:00"), None),
            now,
        )
        .expect_err("never allowed");
        assert_eq!(e.field, "window");
    }

    #[test]
    fn public_quiet_hours_defer_bound_lanes_only() {
        let rules = Rules::in_memory(
            jiff::tz::TimeZone::get("Asia/Shanghai").expect("tz"),
            &[crate::store::Lane::Otp, crate::store::Lane::Notification],
            crate::clock::AnyClock::System,
        )
        .expect("rules");
        rules
            .set_quiet_hours("ops", &["21:00-08:00".into()])
            .expect("quiet");
        let place = placement(config(""), Arc::default(), Arc::new(rules));
        let now = ms_of("2026-11-26T22:00:00+08:00");
        let mut s = submission("13800138000", None, None);
        // Notification (the default lane) is exempt: due now.
        assert_eq!(place("a", &s, now).expect("placed").due_ms, now);
        s.lane = crate::store::Lane::Marketing;
        assert_eq!(
            place("a", &s, now).expect("placed").due_ms,
            ms_of("2026-11-27T08:00:00+08:00")
        );
    }
}
