//! Shared proptest strategies generating every SMPP PDU with arbitrary fields, including
//! unknown TLVs (included by the smpp_* tests with `#[path]`; a folder, so cargo does not
//! build it as a test target of its own).
#![allow(dead_code, unreachable_pub)]

use proptest::collection::vec;
use proptest::prelude::*;
use sluice_protocols::smpp::*;

pub fn cstr(max: usize) -> impl Strategy<Value = Octets> {
    vec(1u8..=255, 0..=max).prop_map(Octets::from)
}

pub fn octets(max: usize) -> impl Strategy<Value = Octets> {
    vec(any::<u8>(), 0..=max).prop_map(Octets::from)
}

pub fn address() -> impl Strategy<Value = Address> {
    (any::<u8>(), any::<u8>(), cstr(21)).prop_map(|(ton, npi, addr)| Address { ton, npi, addr })
}

pub fn tlvs() -> impl Strategy<Value = Tlvs> {
    vec(
        (any::<u16>(), octets(40)).prop_map(|(tag, value)| Tlv { tag, value }),
        0..4,
    )
    .prop_map(|v| v.into_iter().collect::<Tlvs>())
}

pub fn bind() -> impl Strategy<Value = Bind> {
    (
        cstr(16),
        cstr(9),
        cstr(13),
        any::<u8>(),
        any::<u8>(),
        any::<u8>(),
        cstr(41),
    )
        .prop_map(
            |(
                system_id,
                password,
                system_type,
                interface_version,
                addr_ton,
                addr_npi,
                address_range,
            )| {
                Bind {
                    system_id,
                    password,
                    system_type,
                    interface_version,
                    addr_ton,
                    addr_npi,
                    address_range,
                }
            },
        )
}

pub fn sm() -> impl Strategy<Value = Sm> {
    (
        (cstr(6), address(), address(), any::<[u8; 3]>()),
        (cstr(17), cstr(17), any::<[u8; 4]>(), octets(255), tlvs()),
    )
        .prop_map(
            |((service_type, source, dest, a), (sched, validity, b, short_message, tlvs))| Sm {
                service_type,
                source,
                dest,
                esm_class: a[0],
                protocol_id: a[1],
                priority_flag: a[2],
                schedule_delivery_time: sched,
                validity_period: validity,
                registered_delivery: b[0],
                replace_if_present_flag: b[1],
                data_coding: b[2],
                sm_default_msg_id: b[3],
                short_message,
                tlvs,
            },
        )
}

pub fn dest_address() -> impl Strategy<Value = DestAddress> {
    prop_oneof![
        address().prop_map(DestAddress::Sme),
        cstr(21).prop_map(DestAddress::DistributionList),
    ]
}

pub fn submit_multi() -> impl Strategy<Value = SubmitMulti> {
    (sm(), vec(dest_address(), 0..6)).prop_map(|(s, dests)| SubmitMulti {
        service_type: s.service_type,
        source: s.source,
        dests,
        esm_class: s.esm_class,
        protocol_id: s.protocol_id,
        priority_flag: s.priority_flag,
        schedule_delivery_time: s.schedule_delivery_time,
        validity_period: s.validity_period,
        registered_delivery: s.registered_delivery,
        replace_if_present_flag: s.replace_if_present_flag,
        data_coding: s.data_coding,
        sm_default_msg_id: s.sm_default_msg_id,
        short_message: s.short_message,
        tlvs: s.tlvs,
    })
}

pub fn message_id_resp() -> impl Strategy<Value = MessageIdResp> {
    (cstr(65), tlvs()).prop_map(|(message_id, tlvs)| MessageIdResp { message_id, tlvs })
}

pub fn pdu() -> impl Strategy<Value = Pdu> {
    let bind_resp =
        || (cstr(16), tlvs()).prop_map(|(system_id, tlvs)| BindResp { system_id, tlvs });
    prop_oneof![
        bind().prop_map(Pdu::BindTransmitter),
        bind().prop_map(Pdu::BindReceiver),
        bind().prop_map(Pdu::BindTransceiver),
        bind_resp().prop_map(Pdu::BindTransmitterResp),
        bind_resp().prop_map(Pdu::BindReceiverResp),
        bind_resp().prop_map(Pdu::BindTransceiverResp),
        (cstr(16), cstr(9)).prop_map(|(system_id, password)| Pdu::Outbind(Outbind {
            system_id,
            password
        })),
        Just(Pdu::Unbind),
        Just(Pdu::UnbindResp),
        Just(Pdu::EnquireLink),
        Just(Pdu::EnquireLinkResp),
        Just(Pdu::GenericNack),
        sm().prop_map(Pdu::SubmitSm),
        message_id_resp().prop_map(Pdu::SubmitSmResp),
        sm().prop_map(Pdu::DeliverSm),
        message_id_resp().prop_map(Pdu::DeliverSmResp),
        submit_multi().prop_map(Pdu::SubmitMulti),
        (cstr(65), vec((address(), any::<u32>()), 0..5), tlvs()).prop_map(
            |(message_id, u, tlvs)| {
                Pdu::SubmitMultiResp(SubmitMultiResp {
                    message_id,
                    unsuccess: u
                        .into_iter()
                        .map(|(dest, e)| UnsuccessSme {
                            dest,
                            error_status: CommandStatus::from_u32(e),
                        })
                        .collect(),
                    tlvs,
                })
            }
        ),
        (cstr(6), address(), address(), any::<[u8; 3]>(), tlvs()).prop_map(
            |(service_type, source, dest, a, tlvs)| {
                Pdu::DataSm(DataSm {
                    service_type,
                    source,
                    dest,
                    esm_class: a[0],
                    registered_delivery: a[1],
                    data_coding: a[2],
                    tlvs,
                })
            }
        ),
        message_id_resp().prop_map(Pdu::DataSmResp),
        (cstr(65), address())
            .prop_map(|(message_id, source)| Pdu::QuerySm(QuerySm { message_id, source })),
        (cstr(65), cstr(17), any::<u8>(), any::<u8>()).prop_map(
            |(message_id, final_date, st, error_code)| {
                Pdu::QuerySmResp(QuerySmResp {
                    message_id,
                    final_date,
                    message_state: MessageState::from_u8(st),
                    error_code,
                })
            }
        ),
        (cstr(6), cstr(65), address(), address()).prop_map(
            |(service_type, message_id, source, dest)| {
                Pdu::CancelSm(CancelSm {
                    service_type,
                    message_id,
                    source,
                    dest,
                })
            }
        ),
        Just(Pdu::CancelSmResp),
        (sm(), cstr(65)).prop_map(|(s, message_id)| Pdu::ReplaceSm(ReplaceSm {
            message_id,
            source: s.source,
            schedule_delivery_time: s.schedule_delivery_time,
            validity_period: s.validity_period,
            registered_delivery: s.registered_delivery,
            sm_default_msg_id: s.sm_default_msg_id,
            short_message: s.short_message,
            tlvs: s.tlvs,
        })),
        Just(Pdu::ReplaceSmResp),
        (address(), address(), tlvs()).prop_map(|(source, esme, tlvs)| {
            Pdu::AlertNotification(AlertNotification { source, esme, tlvs })
        }),
    ]
}

pub fn command() -> impl Strategy<Value = Command> {
    (prop_oneof![Just(0u32), any::<u32>()], any::<u32>(), pdu()).prop_map(
        |(status, sequence, pdu)| Command::new(CommandStatus::from_u32(status), sequence, pdu),
    )
}
