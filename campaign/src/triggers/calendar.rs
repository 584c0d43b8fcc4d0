//! Calendar triggers: birthdays and holidays become ordinary events, once a day.
//!
//! [`emit`] writes, for the local date `day`:
//! - a `birthday` event (only when a running trigger listens for `birthday`) for every subscriber whose birthday attribute (a custom column,
//!   `MM-DD` or `YYYY-MM-DD`) falls on that day (29 February birthdays on 28 February in
//!   other years);
//! - a `holiday` event (`attrs.holiday` = its name) for every subscriber, per holiday of the
//!   `calendar_days` table on that day — only when a running trigger listens for `holiday`.
//!
//! Ids are `birthday:<day>:<msisdn>` / `holiday:<name>:<day>:<msisdn>` and go through the
//! same intake, so emitting twice a day (a restart, a second process) stores nothing new.
//! The events are dated local midnight; a calendar trigger's window decides when they are
//! sent (held until it opens), so its `staleness_s` must cover the hours until the window
//! closes (e.g. 86 400).

use jiff::civil::Date;
use jiff::tz::TimeZone;
use rusqlite::{Connection, params};
use serde_json::{Map, Value};

use crate::error::{CampaignError, Result};
use crate::events::{Event, intake};
use crate::table::SubscriberTable;

/// Default subscriber column holding birthdays.
pub const BIRTHDAY_ATTR: &str = "birthday";

/// Adds a holiday to the calendar (idempotent).
///
/// # Errors
/// [`CampaignError::Invalid`] for an empty name; SQLite failure.
pub fn add_holiday(conn: &Connection, day: Date, name: &str) -> Result<()> {
    if name.trim().is_empty() {
        return Err(CampaignError::invalid("name", "a holiday needs a name"));
    }
    conn.execute(
        "INSERT OR IGNORE INTO calendar_days (day, name) VALUES (?1, ?2)",
        params![day.to_string(), name.trim()],
    )?;
    Ok(())
}

fn birthday_on(value: &str, day: Date) -> bool {
    let md = value.trim();
    let md = if md.len() == 10 { &md[5..] } else { md };
    let Some((m, d)) = md.split_once('-') else {
        return false;
    };
    let (Ok(m), Ok(d)) = (m.parse::<i8>(), d.parse::<i8>()) else {
        return false;
    };
    if (m, d) == (day.month(), day.day()) {
        return true;
    }
    // 29 February outside leap years: celebrated on the 28th.
    (m, d) == (2, 29) && !day.in_leap_year() && (day.month(), day.day()) == (2, 28)
}

/// Emits the calendar events of local date `day` in `tz`; returns how many were new.
///
/// # Errors
/// SQLite failure.
pub fn emit(
    conn: &Connection,
    table: &SubscriberTable,
    day: Date,
    tz: &TimeZone,
    birthday_attr: &str,
    now: i64,
) -> Result<u64> {
    let ts = tz
        .to_ambiguous_timestamp(day.to_datetime(jiff::civil::Time::midnight()))
        .compatible()
        .map_err(|e| CampaignError::invalid("day", e.to_string()))?
        .as_second();
    let listening = |kind: &str| -> Result<bool> {
        let n: i64 = conn.query_row(
            "SELECT COUNT(*) FROM triggers g JOIN tasks t ON t.id = g.task_id
             WHERE t.state = 'running' AND g.event_type = ?1",
            [kind],
            |r| r.get(0),
        )?;
        Ok(n > 0)
    };
    let holidays: Vec<String> = if listening("holiday")? {
        let mut st = conn.prepare("SELECT name FROM calendar_days WHERE day = ?1 ORDER BY name")?;
        st.query_map([day.to_string()], |r| r.get(0))?
            .collect::<std::result::Result<_, _>>()?
    } else {
        Vec::new()
    };
    let mut batch = Vec::new();
    let mut stored = 0;
    let mut flush = |batch: &mut Vec<Event>| -> Result<()> {
        stored += intake::store(conn, batch, now)?;
        batch.clear();
        Ok(())
    };
    let has_birthdays = table.column(birthday_attr).is_some() && listening("birthday")?;
    if !has_birthdays && holidays.is_empty() {
        return Ok(0);
    }
    for id in 0..table.len() {
        let Some(msisdn) = table.msisdn(id) else {
            continue;
        };
        if has_birthdays && birthday_on(table.str_value(birthday_attr, id), day) {
            batch.push(Event {
                id: format!("birthday:{day}:{msisdn}"),
                msisdn,
                kind: "birthday".into(),
                ts,
                attrs: Map::from_iter([("date".to_owned(), Value::String(day.to_string()))]),
            });
        }
        for h in &holidays {
            batch.push(Event {
                id: format!("holiday:{h}:{day}:{msisdn}"),
                msisdn,
                kind: "holiday".into(),
                ts,
                attrs: Map::from_iter([("holiday".to_owned(), Value::String(h.clone()))]),
            });
        }
        if batch.len() >= crate::events::MAX_BATCH_LINES {
            flush(&mut batch)?;
        }
    }
    flush(&mut batch)?;
    Ok(stored)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn birthdays_match_month_and_day_and_leap_days_fall_back() {
        let d = |s: &str| s.parse::<Date>().unwrap();
        assert!(birthday_on("1990-12-05", d("2026-12-05")));
        assert!(birthday_on("12-05", d("2026-12-05")));
        assert!(!birthday_on("12-06", d("2026-12-05")));
        assert!(birthday_on("2000-02-29", d("2027-02-28")));
        assert!(!birthday_on("2000-02-29", d("2028-02-28")));
        assert!(!birthday_on("", d("2026-12-05")));
    }
}
