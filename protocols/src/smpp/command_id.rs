//! SMPP 3.4 / 5.0 command ids, generated from one list. Responses are `id | 0x8000_0000`.

use super::table::code_table;

code_table! {
    /// `command_id` of an SMPP PDU.
    pub enum CommandId {
        GenericNack = 0x8000_0000, "generic_nack";
        BindReceiver = 0x0000_0001, "bind_receiver";
        BindReceiverResp = 0x8000_0001, "bind_receiver_resp";
        BindTransmitter = 0x0000_0002, "bind_transmitter";
        BindTransmitterResp = 0x8000_0002, "bind_transmitter_resp";
        QuerySm = 0x0000_0003, "query_sm";
        QuerySmResp = 0x8000_0003, "query_sm_resp";
        SubmitSm = 0x0000_0004, "submit_sm";
        SubmitSmResp = 0x8000_0004, "submit_sm_resp";
        DeliverSm = 0x0000_0005, "deliver_sm";
        DeliverSmResp = 0x8000_0005, "deliver_sm_resp";
        Unbind = 0x0000_0006, "unbind";
        UnbindResp = 0x8000_0006, "unbind_resp";
        ReplaceSm = 0x0000_0007, "replace_sm";
        ReplaceSmResp = 0x8000_0007, "replace_sm_resp";
        CancelSm = 0x0000_0008, "cancel_sm";
        CancelSmResp = 0x8000_0008, "cancel_sm_resp";
        BindTransceiver = 0x0000_0009, "bind_transceiver";
        BindTransceiverResp = 0x8000_0009, "bind_transceiver_resp";
        Outbind = 0x0000_000B, "outbind";
        EnquireLink = 0x0000_0015, "enquire_link";
        EnquireLinkResp = 0x8000_0015, "enquire_link_resp";
        SubmitMulti = 0x0000_0021, "submit_multi";
        SubmitMultiResp = 0x8000_0021, "submit_multi_resp";
        AlertNotification = 0x0000_0102, "alert_notification";
        DataSm = 0x0000_0103, "data_sm";
        DataSmResp = 0x8000_0103, "data_sm_resp";
    }
}

impl CommandId {
    /// True for response ids (high bit set), including generic_nack.
    pub const fn is_response(self) -> bool {
        self.to_u32() & 0x8000_0000 != 0
    }
}
