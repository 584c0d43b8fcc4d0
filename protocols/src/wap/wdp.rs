//! WDP over SMS (WAP-259 Annex A): the WSP PDU travels as 8-bit SMS user data with a UDH
//! port-addressing IE 0x05 (16-bit ports), destination 2948 (connectionless push) and source
//! 9200 (WAP gateway), split across parts with a concatenation IE when it is long.
//!
//! This is what Kannel's wapbox does (`pack_udhdata` + `sms_split`): the port IE comes
//! first, the 8-bit-reference concatenation IE (0x00) is appended after it, so a part has
//! the 12-octet UDH `0B 05 04 0B 84 23 F0 00 03 ref total seq` and up to 128 octets of PDU;
//! a PDU of up to 133 octets goes as one SMS with only the 7-octet port UDH.

use crate::sms::{InformationElement, Part, Ports, SplitError, SplitOptions, split_binary};

/// WDP port of the connectionless push application (WAP-259).
pub const PORT_PUSH_CONNECTIONLESS: u16 = 2948;
/// WDP port of the WAP gateway's connectionless WSP.
pub const PORT_WAP_GATEWAY: u16 = 9200;

/// The ports a WAP push is sent with.
pub const PUSH_PORTS: Ports = Ports {
    dest: PORT_PUSH_CONNECTIONLESS,
    src: PORT_WAP_GATEWAY,
};

/// Splits a WDP datagram into binary SMS parts addressed to `ports`.
///
/// # Errors
/// [`SplitError::TooManyParts`] if the datagram needs more than `opts.max_parts`.
pub fn sms_parts(
    datagram: &[u8],
    ports: Ports,
    opts: &SplitOptions,
) -> Result<Vec<Part>, SplitError> {
    split_binary(datagram, &[InformationElement::ports16(ports)], opts)
}

/// The UDH (UDHL included) that addresses a single-part datagram to `ports`: for
/// [`PUSH_PORTS`] `06 05 04 0B 84 23 F0`. Splitting a datagram stored with this UDH through
/// [`split_binary`] with its IEs gives exactly the parts of [`sms_parts`].
#[must_use]
pub fn port_udh(ports: Ports) -> Vec<u8> {
    let ie = InformationElement::ports16(ports);
    let mut out = Vec::with_capacity(1 + ie.encoded_len());
    // One 16-bit port IE is 6 octets: the length always fits the UDHL octet.
    out.push(6);
    out.push(0x05);
    out.push(4);
    out.extend_from_slice(&ports.dest.to_be_bytes());
    out.extend_from_slice(&ports.src.to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sms::Udh;

    #[test]
    fn port_udh_is_the_ports_ie() {
        let udh = port_udh(PUSH_PORTS);
        assert_eq!(udh, [0x06, 0x05, 0x04, 0x0B, 0x84, 0x23, 0xF0]);
        let (parsed, rest) = Udh::parse(&udh).unwrap();
        assert!(rest.is_empty());
        assert_eq!(parsed.ports(), Some(PUSH_PORTS));
        assert_eq!(parsed.ies, vec![InformationElement::ports16(PUSH_PORTS)]);
    }
}
