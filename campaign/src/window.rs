//! Allowed sending windows ("HH:MM-HH:MM", local time) and time slices.
//!
//! A window may wrap midnight (`"21:00-08:00"`); the end is exclusive; `"00:00-24:00"` is
//! the whole day. A slice is a start time plus an optional window: it may send when
//! `now >= start` and the local time of `now` (in the task's time zone) is in the window.

use std::fmt;
use std::str::FromStr;

use jiff::Timestamp;
use jiff::tz::TimeZone;

use crate::error::{CampaignError, Result};

/// Default time zone of the operator.
pub const DEFAULT_TZ: &str = "Asia/Shanghai";

/// A daily window in minutes since local midnight, `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeWindow {
    pub start: u16,
    pub end: u16,
}

impl TimeWindow {
    /// Whether minute-of-day `m` is inside.
    pub fn contains(self, m: u16) -> bool {
        if self.start <= self.end {
            (self.start..self.end).contains(&m)
        } else {
            m >= self.start || m < self.end
        }
    }
}

fn hhmm(s: &str) -> Option<u16> {
    let (h, m) = s.trim().split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    ((h < 24 && m < 60) || (h == 24 && m == 0)).then_some(h * 60 + m)
}

impl FromStr for TimeWindow {
    type Err = CampaignError;
    fn from_str(s: &str) -> Result<Self> {
        let bad = || CampaignError::invalid("window", format!("{s:?} is not \"HH:MM-HH:MM\""));
        let (a, b) = s.split_once('-').ok_or_else(bad)?;
        let (start, end) = (hhmm(a).ok_or_else(bad)?, hhmm(b).ok_or_else(bad)?);
        if start == end || start == 24 * 60 {
            return Err(bad());
        }
        Ok(Self { start, end })
    }
}

impl fmt::Display for TimeWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:02}:{:02}-{:02}:{:02}",
            self.start / 60,
            self.start % 60,
            self.end / 60,
            self.end % 60
        )
    }
}

/// Resolves a time zone name.
///
/// # Errors
/// [`CampaignError::Invalid`] for an unknown name.
pub fn time_zone(name: &str) -> Result<TimeZone> {
    TimeZone::get(name).map_err(|e| CampaignError::invalid("timezone", e.to_string()))
}

/// Whether a slice starting at `start` with `window` may send at `now`.
pub fn may_send(
    start: Timestamp,
    window: Option<TimeWindow>,
    now: Timestamp,
    tz: &TimeZone,
) -> bool {
    if now < start {
        return false;
    }
    window.is_none_or(|w| {
        let local = tz.to_datetime(now);
        w.contains(local.hour() as u16 * 60 + local.minute() as u16)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_contains() {
        let w: TimeWindow = "10:00-11:00".parse().unwrap();
        assert!(w.contains(600) && w.contains(659) && !w.contains(660) && !w.contains(599));
        let night: TimeWindow = "21:00-08:00".parse().unwrap();
        assert!(night.contains(22 * 60) && night.contains(7 * 60) && !night.contains(12 * 60));
        let all: TimeWindow = "00:00-24:00".parse().unwrap();
        assert!(all.contains(0) && all.contains(1439));
        assert_eq!(w.to_string(), "10:00-11:00");
        for bad in [
            "",
            "10:00",
            "1000-1100",
            "25:00-26:00",
            "10:00-10:00",
            "10:60-11:00",
            "9:00-10:00",
        ] {
            assert!(bad.parse::<TimeWindow>().is_err(), "{bad}");
        }
    }

    #[test]
    fn slices_respect_start_and_local_window() {
        let tz = time_zone(DEFAULT_TZ).unwrap();
        let start: Timestamp = "2026-03-05T00:00:00+08:00".parse().unwrap();
        let w = Some("10:00-11:00".parse().unwrap());
        let at = |s: &str| s.parse::<Timestamp>().unwrap();
        assert!(
            !may_send(start, w, at("2026-03-04T10:30:00+08:00"), &tz),
            "before start"
        );
        assert!(may_send(start, w, at("2026-03-05T10:30:00+08:00"), &tz));
        // 02:30 UTC is 10:30 in Shanghai.
        assert!(may_send(start, w, at("2026-03-05T02:30:00Z"), &tz));
        assert!(
            !may_send(start, w, at("2026-03-05T11:00:00+08:00"), &tz),
            "end exclusive"
        );
        assert!(
            !may_send(start, w, at("2026-03-05T10:30:00Z"), &tz),
            "18:30 local"
        );
        assert!(may_send(start, None, at("2026-03-06T03:00:00+08:00"), &tz));
    }
}
