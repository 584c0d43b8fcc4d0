//! Mobile-originated traffic: spontaneous MOs at a configured rate, and reply rules that
//! answer a submitted message whose text contains a substring with a given probability
//! (the campaign demo's per-variant reply rates).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rand::RngExt;
use rand::rngs::SmallRng;
use tokio::sync::watch;
use tokio::time::Instant;

use super::center::Center;
use super::dlr::{Delivery, Item};
use crate::config::ReplyRule;

/// How the payload bytes of a submit are to be read as text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TextCoding {
    /// GSM 7-bit unpacked, ASCII, Latin-1: one byte per character (close enough for matching
    /// tags, which are ASCII).
    Bytes,
    Ucs2,
    Gbk,
}

/// Decodes a payload for substring matching; lossy, never fails.
pub(crate) fn decode_text(payload: &[u8], coding: TextCoding) -> String {
    match coding {
        TextCoding::Bytes => payload.iter().map(|&b| b as char).collect(),
        TextCoding::Ucs2 => {
            let units = payload
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]));
            char::decode_utf16(units)
                .map(|c| c.unwrap_or('\u{FFFD}'))
                .collect()
        }
        TextCoding::Gbk => encoding_rs::GBK
            .decode_without_bom_handling(payload)
            .0
            .into_owned(),
    }
}

/// The first rule whose substring the text contains, if its coin flip succeeds.
pub(crate) fn pick_reply<'r>(
    rules: &'r [ReplyRule],
    text: &str,
    rng: &mut SmallRng,
) -> Option<&'r ReplyRule> {
    let rule = rules.iter().find(|r| text.contains(r.contains.as_str()))?;
    (rng.random::<f64>() < rule.probability).then_some(rule)
}

/// Schedules the reply MO (handset → service number) if a rule fires.
#[allow(clippy::too_many_arguments)]
pub(crate) fn maybe_reply(
    center: &Center,
    account: &Arc<str>,
    session: u64,
    handset: &[u8],
    service: &[u8],
    payload: &[u8],
    coding: TextCoding,
    rng: &mut SmallRng,
) {
    let rules = &center.cfg.mo.reply;
    if rules.is_empty() {
        return;
    }
    let text = decode_text(payload, coding);
    if let Some(rule) = pick_reply(rules, &text, rng) {
        let at = Instant::now() + rule.delay.sample(rng);
        let item = Item::Mo {
            from: handset.into(),
            to: service.into(),
            text: rule.text.clone(),
        };
        if center
            .deliveries
            .send(Delivery {
                at,
                account: account.clone(),
                prefer: session,
                item,
            })
            .is_ok()
        {
            center.tally.mo_scheduled.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Generates spontaneous MOs at `mo.rate` per second to any receiver bind until shutdown.
pub(crate) async fn run_generator(center: Arc<Center>, mut shutdown: watch::Receiver<bool>) {
    let rate = center.cfg.mo.rate;
    if rate <= 0.0 || center.cfg.mo.texts.is_empty() {
        return;
    }
    let mut rng = center.session_rng(u64::MAX);
    let period = Duration::from_secs_f64((1.0 / rate).max(0.01));
    let mut tick = tokio::time::interval(period);
    let started = Instant::now();
    let mut sent = 0u64;
    let empty: Arc<str> = Arc::from("");
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tick.tick() => {}
        }
        let due = (started.elapsed().as_secs_f64() * rate) as u64;
        while sent < due {
            sent += 1;
            let mo = &center.cfg.mo;
            let text = mo.texts[rng.random_range(0..mo.texts.len())].clone();
            let from = format!("{}{:06}", mo.from_prefix, rng.random_range(0..1_000_000u32));
            let item = Item::Mo {
                from: from.into_bytes().into(),
                to: mo.to.as_bytes().into(),
                text,
            };
            if center
                .deliveries
                .send(Delivery {
                    at: Instant::now(),
                    account: empty.clone(),
                    prefer: 0,
                    item,
                })
                .is_ok()
            {
                center.tally.mo_scheduled.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn reply_probability_is_selected_by_substring() {
        let rules = vec![
            ReplyRule {
                contains: "variant-A".into(),
                probability: 1.0,
                text: "Y".into(),
                delay: Default::default(),
            },
            ReplyRule {
                contains: "variant-B".into(),
                probability: 0.0,
                text: "Y".into(),
                delay: Default::default(),
            },
        ];
        let mut rng = SmallRng::seed_from_u64(1);
        assert!(pick_reply(&rules, "offer variant-A #1", &mut rng).is_some());
        assert!(pick_reply(&rules, "offer variant-B #1", &mut rng).is_none());
        assert!(pick_reply(&rules, "other", &mut rng).is_none());
    }

    #[test]
    fn decodes_ucs2_and_gbk() {
        assert_eq!(
            decode_text(&[0x4F, 0x60, 0x59, 0x7D], TextCoding::Ucs2),
            "你好"
        );
        assert_eq!(
            decode_text(&[0xC4, 0xE3, 0xBA, 0xC3], TextCoding::Gbk),
            "你好"
        );
        assert_eq!(decode_text(b"abc", TextCoding::Bytes), "abc");
    }
}
