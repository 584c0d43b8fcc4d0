//! Deterministic message content: message `i` of a run always has the same destination,
//! text, encoding and parts, so a part can be regenerated for a resubmit instead of stored.
//! Every text carries the token `<prefix><run>:<i>` which makes its identity unique (see the
//! tally's identity rule).

use serde::{Deserialize, Serialize};

/// How long messages are split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum ConcatMode {
    /// UDH IE 0x00, 8-bit reference (153 GSM / 67 UCS-2 chars per part).
    #[default]
    Udh8,
    /// UDH IE 0x08, 16-bit reference (152 / 66).
    Udh16,
    /// SAR TLVs, no UDH (153 / 67 — same budget as UDH8 so both are comparable).
    Sar,
}

/// Content settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PayloadConfig {
    /// Characters per message (longer than one SMS → concatenated).
    pub chars: usize,
    /// Share of messages sent as UCS-2; the rest as GSM 7-bit (one septet per octet).
    pub ucs2_share: f64,
    pub concat: ConcatMode,
    /// Destinations are this prefix plus 8 digits of the message index.
    pub dest_prefix: String,
    pub source: String,
    /// Put at the start of every text (e.g. `variant-A` for reply rules).
    pub text_prefix: String,
    /// Distinguishes runs so two runs against one simulator do not collide.
    pub run: String,
}

impl Default for PayloadConfig {
    fn default() -> Self {
        Self {
            chars: 40,
            ucs2_share: 0.0,
            concat: ConcatMode::Udh8,
            dest_prefix: "86138".to_owned(),
            source: "10690001".to_owned(),
            text_prefix: String::new(),
            run: "r".to_owned(),
        }
    }
}

/// One submit's worth of content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub dest: String,
    pub data_coding: u8,
    /// Full short_message including any UDH.
    pub short_message: Vec<u8>,
    pub udhi: bool,
    /// (reference, total, seq) for SAR TLVs.
    pub sar: Option<(u16, u8, u8)>,
}

/// Splitmix64: a cheap, well-mixed hash of the message index.
fn mix(i: u64) -> u64 {
    let mut z = i.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl PayloadConfig {
    /// The destination of message `i`.
    pub fn dest(&self, i: u64) -> String {
        format!("{}{:08}", self.dest_prefix, i % 100_000_000)
    }

    /// The text of message `i`.
    pub fn text(&self, i: u64) -> String {
        let ucs2 = self.is_ucs2(i);
        let mut t = format!("{}{}:{} ", self.text_prefix, self.run, i);
        let filler: &[char] = if ucs2 {
            &['测', '试', '短', '信']
        } else {
            &['a', 'b', 'c', 'd', 'e', 'f', 'g']
        };
        let mut k = 0;
        while t.chars().count() < self.chars {
            t.push(filler[k % filler.len()]);
            k += 1;
        }
        t
    }

    fn is_ucs2(&self, i: u64) -> bool {
        self.ucs2_share > 0.0 && (mix(i) as f64 / u64::MAX as f64) < self.ucs2_share
    }

    /// All parts of message `i`, in order.
    pub fn parts(&self, i: u64) -> Vec<Part> {
        let text = self.text(i);
        let dest = self.dest(i);
        let (dc, bytes, unit, single, per_part) = if self.is_ucs2(i) {
            let b: Vec<u8> = text.encode_utf16().flat_map(u16::to_be_bytes).collect();
            let per = if self.concat == ConcatMode::Udh16 {
                66
            } else {
                67
            };
            (8u8, b, 2usize, 70usize, per)
        } else {
            // Unpacked GSM 7-bit: ASCII letters and digits map to the same octets.
            let per = if self.concat == ConcatMode::Udh16 {
                152
            } else {
                153
            };
            (0u8, text.into_bytes(), 1usize, 160usize, per)
        };
        if bytes.len() <= single * unit {
            return vec![Part {
                dest,
                data_coding: dc,
                short_message: bytes,
                udhi: false,
                sar: None,
            }];
        }
        let chunks: Vec<&[u8]> = bytes.chunks(per_part * unit).collect();
        let total = chunks.len().min(255) as u8;
        let reference = (mix(i) & 0xFFFF) as u16;
        chunks
            .iter()
            .take(255)
            .enumerate()
            .map(|(k, c)| {
                let seq = k as u8 + 1;
                let (sm, udhi, sar) = match self.concat {
                    ConcatMode::Udh8 => {
                        let mut v = vec![5, 0x00, 3, reference as u8, total, seq];
                        v.extend_from_slice(c);
                        (v, true, None)
                    }
                    ConcatMode::Udh16 => {
                        let [hi, lo] = reference.to_be_bytes();
                        let mut v = vec![6, 0x08, 4, hi, lo, total, seq];
                        v.extend_from_slice(c);
                        (v, true, None)
                    }
                    ConcatMode::Sar => (c.to_vec(), false, Some((reference, total, seq))),
                };
                Part {
                    dest: dest.clone(),
                    data_coding: dc,
                    short_message: sm,
                    udhi,
                    sar,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tally::{Piece, Recorded, Tally, split_udh};

    #[test]
    fn long_messages_split_and_reassemble_in_the_tally() {
        for concat in [ConcatMode::Udh8, ConcatMode::Udh16, ConcatMode::Sar] {
            for ucs2 in [0.0, 1.0] {
                let p = PayloadConfig {
                    chars: 400,
                    ucs2_share: ucs2,
                    concat,
                    ..Default::default()
                };
                let parts = p.parts(7);
                assert!(parts.len() >= 3, "{concat:?} {ucs2}: {}", parts.len());
                let tally = Tally::new();
                let mut done = None;
                for part in &parts {
                    // SMPP carries GSM 7-bit unpacked (one septet per octet): 153 + UDH fits in 160.
                    assert!(
                        part.short_message.len() <= if part.data_coding == 8 { 140 } else { 160 }
                    );
                    let (c, payload) = if part.udhi {
                        split_udh(&part.short_message)
                    } else {
                        (
                            part.sar.map(|(r, t, s)| crate::tally::Concat {
                                reference: r,
                                total: t,
                                seq: s,
                            }),
                            &part.short_message[..],
                        )
                    };
                    if let Recorded::Complete { payload, .. } = tally.record(Piece {
                        source: b"s",
                        dest: part.dest.as_bytes(),
                        payload,
                        concat: c,
                        udh: &[],
                        eight_bit: false,
                    }) {
                        done = Some(payload.into_owned());
                    }
                }
                let full = done.expect("reassembled");
                let text = if ucs2 > 0.0 {
                    String::from_utf16(
                        &full
                            .chunks(2)
                            .map(|c| u16::from_be_bytes([c[0], c[1]]))
                            .collect::<Vec<_>>(),
                    )
                    .unwrap()
                } else {
                    String::from_utf8(full).unwrap()
                };
                assert_eq!(text, p.text(7));
            }
        }
    }

    #[test]
    fn texts_are_unique_and_sized() {
        let p = PayloadConfig {
            chars: 30,
            ..Default::default()
        };
        assert_ne!(p.text(1), p.text(2));
        assert_eq!(p.text(1).chars().count(), 30);
        assert_eq!(p.parts(1).len(), 1);
    }
}
