//! User Data Header (TS 23.040 §9.2.3.24): `UDHL, (IEI, IEDL, data)*`.
//!
//! Job: parse a header off the front of user data, build one, and read the two kinds of IE
//! sluice acts on: concatenation (IEI 0x00 with an 8-bit reference, 0x08 with a 16-bit one)
//! and application port addressing (0x04 8-bit ports, 0x05 16-bit ports).
//!
//! Invariants: parsing never panics and never reads past UDHL; an encoded header always
//! starts with a UDHL equal to the number of octets after it. Unknown IEs survive a
//! parse → encode round trip unchanged and in order.

use super::error::UdhError;

/// IEI: concatenated short messages, 8-bit reference number.
pub const IEI_CONCAT_8: u8 = 0x00;
/// IEI: application port addressing, 8-bit ports.
pub const IEI_PORTS_8: u8 = 0x04;
/// IEI: application port addressing, 16-bit ports (WDP over SMS, WAP Push).
pub const IEI_PORTS_16: u8 = 0x05;
/// IEI: concatenated short messages, 16-bit reference number.
pub const IEI_CONCAT_16: u8 = 0x08;

/// Concatenation info of one part: the same numbers whether they travel in a UDH IE or in
/// SMPP `sar_*` TLVs (`sar_msg_ref_num`, `sar_total_segments`, `sar_segment_seqnum`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Concat {
    /// Reference shared by all parts of one message; fresh per message. Only the low 8 bits
    /// travel in an IE 0x00.
    pub reference: u16,
    /// Number of parts, 1..=255.
    pub total: u8,
    /// This part's number, 1..=total.
    pub seq: u8,
}

impl Concat {
    /// True if `total >= 1` and `1 <= seq <= total`, as TS 23.040 requires; receivers ignore
    /// the IE otherwise.
    #[must_use]
    pub const fn is_valid(&self) -> bool {
        self.total >= 1 && self.seq >= 1 && self.seq <= self.total
    }
}

/// Source and destination application ports (IE 0x04 or 0x05).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ports {
    /// Destination port (2948 for WAP Push connectionless).
    pub dest: u16,
    /// Originator port (9200 for a WAP gateway).
    pub src: u16,
}

/// One information element.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct InformationElement {
    /// IEI.
    pub id: u8,
    /// IE data (IEDL is its length, so at most 255 octets).
    pub data: Vec<u8>,
}

impl InformationElement {
    /// Concatenation IE with an 8-bit reference (IEI 0x00); keeps the low 8 bits of `reference`.
    #[must_use]
    pub fn concat8(c: Concat) -> Self {
        Self {
            id: IEI_CONCAT_8,
            data: vec![c.reference as u8, c.total, c.seq],
        }
    }

    /// Concatenation IE with a 16-bit reference (IEI 0x08).
    #[must_use]
    pub fn concat16(c: Concat) -> Self {
        let [hi, lo] = c.reference.to_be_bytes();
        Self {
            id: IEI_CONCAT_16,
            data: vec![hi, lo, c.total, c.seq],
        }
    }

    /// Port addressing with 16-bit ports (IEI 0x05): `dest, src`, big-endian.
    #[must_use]
    pub fn ports16(p: Ports) -> Self {
        let [dh, dl] = p.dest.to_be_bytes();
        let [sh, sl] = p.src.to_be_bytes();
        Self {
            id: IEI_PORTS_16,
            data: vec![dh, dl, sh, sl],
        }
    }

    /// Port addressing with 8-bit ports (IEI 0x04); keeps the low 8 bits of each port.
    #[must_use]
    pub fn ports8(p: Ports) -> Self {
        Self {
            id: IEI_PORTS_8,
            data: vec![p.dest as u8, p.src as u8],
        }
    }

    /// Octets this IE takes in a header (IEI + IEDL + data).
    #[must_use]
    pub fn encoded_len(&self) -> usize {
        2 + self.data.len()
    }

    /// Concatenation info if this is a well-formed IE 0x00 or 0x08.
    #[must_use]
    pub fn as_concat(&self) -> Option<Concat> {
        let c = match (self.id, self.data.as_slice()) {
            (IEI_CONCAT_8, &[r, total, seq]) => Concat {
                reference: u16::from(r),
                total,
                seq,
            },
            (IEI_CONCAT_16, &[hi, lo, total, seq]) => Concat {
                reference: u16::from_be_bytes([hi, lo]),
                total,
                seq,
            },
            _ => return None,
        };
        c.is_valid().then_some(c)
    }

    /// Port addressing if this is a well-formed IE 0x04 or 0x05.
    #[must_use]
    pub fn as_ports(&self) -> Option<Ports> {
        match (self.id, self.data.as_slice()) {
            (IEI_PORTS_8, &[d, s]) => Some(Ports {
                dest: u16::from(d),
                src: u16::from(s),
            }),
            (IEI_PORTS_16, &[dh, dl, sh, sl]) => Some(Ports {
                dest: u16::from_be_bytes([dh, dl]),
                src: u16::from_be_bytes([sh, sl]),
            }),
            _ => None,
        }
    }
}

/// A parsed or to-be-built User Data Header.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Udh {
    /// IEs in wire order.
    pub ies: Vec<InformationElement>,
}

impl Udh {
    /// Parses a UDH from the start of `user_data` (which begins with UDHL) and returns it with
    /// the payload that follows.
    ///
    /// # Errors
    /// [`UdhError`] when UDHL or an IEDL runs past the data.
    pub fn parse(user_data: &[u8]) -> Result<(Self, &[u8]), UdhError> {
        let (&udhl, rest) = user_data.split_first().ok_or(UdhError::Empty)?;
        let udhl = usize::from(udhl);
        if udhl > rest.len() {
            return Err(UdhError::LengthOverrun {
                udhl,
                available: rest.len(),
            });
        }
        let (mut header, payload) = rest.split_at(udhl);
        let mut ies = Vec::new();
        let mut offset = 0;
        while let [id, rest @ ..] = header {
            let Some((&len, rest)) = rest.split_first() else {
                return Err(UdhError::IeOverrun {
                    id: *id,
                    offset,
                    len: 0,
                    remaining: 0,
                });
            };
            let len = usize::from(len);
            if len > rest.len() {
                return Err(UdhError::IeOverrun {
                    id: *id,
                    offset,
                    len,
                    remaining: rest.len(),
                });
            }
            let (data, rest) = rest.split_at(len);
            ies.push(InformationElement {
                id: *id,
                data: data.to_vec(),
            });
            offset += 2 + len;
            header = rest;
        }
        Ok((Self { ies }, payload))
    }

    /// Octets of the encoded header including UDHL; 0 for a header with no IEs is *not*
    /// special-cased (an empty `Udh` encodes as the single octet `00`).
    #[must_use]
    pub fn encoded_len(&self) -> usize {
        1 + self
            .ies
            .iter()
            .map(InformationElement::encoded_len)
            .sum::<usize>()
    }

    /// Appends the encoded header (UDHL first) to `out`.
    ///
    /// # Errors
    /// [`UdhError::TooLong`] / [`UdhError::IeTooLong`] if a length does not fit one octet.
    pub fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), UdhError> {
        let udhl = self.encoded_len() - 1;
        let udhl = u8::try_from(udhl).map_err(|_| UdhError::TooLong { len: udhl })?;
        out.push(udhl);
        for ie in &self.ies {
            let len = u8::try_from(ie.data.len()).map_err(|_| UdhError::IeTooLong {
                id: ie.id,
                len: ie.data.len(),
            })?;
            out.push(ie.id);
            out.push(len);
            out.extend_from_slice(&ie.data);
        }
        Ok(())
    }

    /// The encoded header.
    ///
    /// # Errors
    /// As [`Self::encode_into`].
    pub fn encode(&self) -> Result<Vec<u8>, UdhError> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.encode_into(&mut out)?;
        Ok(out)
    }

    /// The first valid concatenation IE, if any.
    #[must_use]
    pub fn concat(&self) -> Option<Concat> {
        self.ies.iter().find_map(InformationElement::as_concat)
    }

    /// The first valid port addressing IE, if any.
    #[must_use]
    pub fn ports(&self) -> Option<Ports> {
        self.ies.iter().find_map(InformationElement::as_ports)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_concat8_and_payload() {
        let data = [0x05, 0x00, 0x03, 0x2A, 0x03, 0x02, b'h', b'i'];
        let (udh, payload) = Udh::parse(&data).unwrap();
        assert_eq!(payload, b"hi");
        assert_eq!(
            udh.concat(),
            Some(Concat {
                reference: 0x2A,
                total: 3,
                seq: 2
            })
        );
        assert_eq!(udh.encode().unwrap(), data[..6]);
    }

    #[test]
    fn parse_wap_ports_and_concat16() {
        let data = [
            0x0C, 0x05, 0x04, 0x0B, 0x84, 0x23, 0xF0, 0x08, 0x04, 0x12, 0x34, 0x02, 0x01,
        ];
        let (udh, payload) = Udh::parse(&data).unwrap();
        assert!(payload.is_empty());
        assert_eq!(
            udh.ports(),
            Some(Ports {
                dest: 2948,
                src: 9200
            })
        );
        assert_eq!(
            udh.concat(),
            Some(Concat {
                reference: 0x1234,
                total: 2,
                seq: 1
            })
        );
        assert_eq!(udh.encode().unwrap(), data);
    }

    #[test]
    fn malformed_headers_are_errors() {
        assert_eq!(Udh::parse(&[]), Err(UdhError::Empty));
        assert!(matches!(
            Udh::parse(&[0x05, 0x00]),
            Err(UdhError::LengthOverrun { .. })
        ));
        assert!(matches!(
            Udh::parse(&[0x03, 0x00, 0x05, 0x01]),
            Err(UdhError::IeOverrun { .. })
        ));
        assert!(matches!(
            Udh::parse(&[0x01, 0x00]),
            Err(UdhError::IeOverrun { .. })
        ));
        // seq 0 is not a valid concatenation IE: ignored, not an error.
        let (udh, _) = Udh::parse(&[0x05, 0x00, 0x03, 0x01, 0x02, 0x00]).unwrap();
        assert_eq!(udh.concat(), None);
    }
}
