//! Sans-IO codecs for sluice: pure functions over bytes, no sockets, no clock.
//!
//! Callers pass in everything that depends on the outside world (the current time for a
//! CMPP CONNECT timestamp, the maximum PDU length they accept). Decoders never panic,
//! never loop and never allocate more than the length they were told to accept.
//!
//! - [`smpp`]: SMPP 3.4 / 5.0 PDUs, TLVs, delivery-receipt text.
//! - [`cmpp`]: CMPP 2.0 / 3.0 PDUs, Msg_Id, authenticators, the SP session state machine.
//! - [`sms`]: GSM 03.38, UCS-2, Latin-1, GBK; encoding choice; splitting and reassembly.
//! - [`wap`]: WAP Push SI/SL → WBXML → WSP → WDP → SMS parts.
//! - [`mm7`]: MM7 SOAP envelopes in multipart/related, status codes → accept / retry / fail.
#![forbid(unsafe_code)]

pub mod cmpp;
pub mod mm7;
pub mod smpp;
pub mod sms;
pub mod wap;
mod window;
