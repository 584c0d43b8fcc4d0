//! What happens to an accepted submit, whatever the protocol: tally it, schedule its
//! receipt (possibly before the response), and fire reply rules on the reassembled text.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use rand::RngExt;
use rand::rngs::SmallRng;
use tokio::time::Instant;

use super::center::Center;
use super::dlr::{Delivery, Item, MsgRef, Stat};
use super::mo::{TextCoding, maybe_reply};
use crate::tally::{Concat, Piece, Recorded};

/// An accepted submit, borrowed from the read buffer.
pub(crate) struct Accepted<'a> {
    pub(crate) source: &'a [u8],
    pub(crate) dest: &'a [u8],
    /// User data without UDH.
    pub(crate) payload: &'a [u8],
    pub(crate) concat: Option<Concat>,
    /// The UDH before `payload` (empty when none).
    pub(crate) udh: &'a [u8],
    /// 8-bit data coding.
    pub(crate) eight_bit: bool,
    /// Receipt requested, SMPP registered_delivery bits 0-1: 0 none, 1 on success and
    /// failure, 2 on failure only, 3 on success only (SMPP 5.0). CMPP maps its 0/1 here.
    pub(crate) receipt: u8,
    pub(crate) coding: TextCoding,
}

/// What the session must do after [`on_accepted`].
pub(crate) enum Receipt {
    None,
    /// The receipt was already queued: hold the response back by `dlr.early_lead_ms`.
    Early,
    /// Queue these receipts (the receipt, and the copies `dlr.duplicate` and
    /// `dlr.unknown_share` add) only after the response has been handed to the writer, and
    /// not before the response's due time (so a normal receipt never overtakes its response).
    After(Vec<Delivery>),
}

/// Records the submit, prepares its receipt and fires reply rules.
pub(crate) fn on_accepted(
    center: &Center,
    account: &Arc<str>,
    session: u64,
    m: Accepted<'_>,
    id: MsgRef,
    rng: &mut SmallRng,
) -> Receipt {
    let rec = center.tally.record(Piece {
        source: m.source,
        dest: m.dest,
        payload: m.payload,
        concat: m.concat,
        udh: m.udh,
        eight_bit: m.eight_bit,
    });
    let mut receipt = Receipt::None;
    if m.receipt & 3 != 0 {
        let stat = center.draw_stat(rng);
        if wants_receipt(m.receipt, stat) {
            let cfg = &center.cfg.dlr;
            let early = cfg.early_share > 0.0 && rng.random::<f64>() < cfg.early_share;
            let delay = if early {
                std::time::Duration::ZERO
            } else {
                cfg.delay.sample(rng)
            };
            let at = Instant::now() + delay;
            let submitted = jiff::Timestamp::now();
            let delivery = |id: MsgRef| Delivery {
                at,
                account: account.clone(),
                prefer: session,
                item: Item::Receipt {
                    id,
                    handset: m.dest.into(),
                    service: m.source.into(),
                    stat,
                    submitted,
                    text: m.payload[..m.payload.len().min(20)].into(),
                },
            };
            let mut all = vec![delivery(id.clone())];
            if cfg.duplicate {
                all.push(delivery(id.clone()));
                center
                    .tally
                    .duplicate_receipts
                    .fetch_add(1, Ordering::Relaxed);
            }
            if cfg.unknown_share > 0.0 && rng.random::<f64>() < cfg.unknown_share {
                all.push(delivery(center.unknown_ref(&id)));
                center
                    .tally
                    .unknown_receipts
                    .fetch_add(1, Ordering::Relaxed);
            }
            receipt = if early {
                for d in all {
                    let _ = center.deliveries.send(d);
                }
                Receipt::Early
            } else {
                Receipt::After(all)
            };
        }
    }
    if let Recorded::Complete {
        duplicate: false,
        payload,
    } = rec
    {
        maybe_reply(
            center, account, session, m.dest, m.source, &payload, m.coding, rng,
        );
    }
    receipt
}

/// Whether a receipt with outcome `stat` is due under the SMPP `registered_delivery` bits
/// 0-1 of `mode`: 0 never, 1 always, 2 only for failures, 3 only for success (SMPP 5.0
/// §4.7.21; 3 is not "always"). Only DELIVRD counts as success.
pub(crate) fn wants_receipt(mode: u8, stat: Stat) -> bool {
    let success = stat == Stat::Delivrd;
    match mode & 3 {
        0 => false,
        1 => true,
        2 => !success,
        _ => success,
    }
}

#[cfg(test)]
mod tests {
    use super::{Stat, wants_receipt};

    #[test]
    fn registered_delivery_bits_select_receipts() {
        for (mode, on_ok, on_fail) in [
            (0, false, false),
            (1, true, true),
            (2, false, true),
            (3, true, false),
            // Higher bits (SME ack, intermediate) do not change the MC receipt choice.
            (0x13, true, false),
        ] {
            assert_eq!(wants_receipt(mode, Stat::Delivrd), on_ok, "mode {mode}");
            assert_eq!(wants_receipt(mode, Stat::Undeliv), on_fail, "mode {mode}");
        }
    }
}
