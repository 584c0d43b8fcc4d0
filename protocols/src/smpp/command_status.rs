//! SMPP 3.4 / 5.0 `command_status` values, generated from one list.

use super::table::code_table;

code_table! {
    /// `command_status` of an SMPP PDU (0 in requests, the result in responses).
    pub enum CommandStatus {
        EsmeRok = 0x0000_0000, "ESME_ROK: no error";
        EsmeRinvmsglen = 0x0000_0001, "ESME_RINVMSGLEN: message length is invalid";
        EsmeRinvcmdlen = 0x0000_0002, "ESME_RINVCMDLEN: command length is invalid";
        EsmeRinvcmdid = 0x0000_0003, "ESME_RINVCMDID: invalid command id";
        EsmeRinvbndsts = 0x0000_0004, "ESME_RINVBNDSTS: incorrect bind status for given command";
        EsmeRalybnd = 0x0000_0005, "ESME_RALYBND: ESME already in bound state";
        EsmeRinvprtflg = 0x0000_0006, "ESME_RINVPRTFLG: invalid priority flag";
        EsmeRinvregdlvflg = 0x0000_0007, "ESME_RINVREGDLVFLG: invalid registered delivery flag";
        EsmeRsyserr = 0x0000_0008, "ESME_RSYSERR: system error";
        EsmeRinvsrcadr = 0x0000_000A, "ESME_RINVSRCADR: invalid source address";
        EsmeRinvdstadr = 0x0000_000B, "ESME_RINVDSTADR: invalid destination address";
        EsmeRinvmsgid = 0x0000_000C, "ESME_RINVMSGID: message id is invalid";
        EsmeRbindfail = 0x0000_000D, "ESME_RBINDFAIL: bind failed";
        EsmeRinvpaswd = 0x0000_000E, "ESME_RINVPASWD: invalid password";
        EsmeRinvsysid = 0x0000_000F, "ESME_RINVSYSID: invalid system id";
        EsmeRcancelfail = 0x0000_0011, "ESME_RCANCELFAIL: cancel_sm failed";
        EsmeRreplacefail = 0x0000_0013, "ESME_RREPLACEFAIL: replace_sm failed";
        EsmeRmsgqful = 0x0000_0014, "ESME_RMSGQFUL: message queue full";
        EsmeRinvsertyp = 0x0000_0015, "ESME_RINVSERTYP: invalid service type";
        EsmeRinvnumdests = 0x0000_0033, "ESME_RINVNUMDESTS: invalid number of destinations";
        EsmeRinvdlname = 0x0000_0034, "ESME_RINVDLNAME: invalid distribution list name";
        EsmeRinvdestflag = 0x0000_0040, "ESME_RINVDESTFLAG: destination flag is invalid";
        EsmeRinvsubrep = 0x0000_0042, "ESME_RINVSUBREP: invalid submit with replace request";
        EsmeRinvesmclass = 0x0000_0043, "ESME_RINVESMCLASS: invalid esm_class field data";
        EsmeRcntsubdl = 0x0000_0044, "ESME_RCNTSUBDL: cannot submit to distribution list";
        EsmeRsubmitfail = 0x0000_0045, "ESME_RSUBMITFAIL: submit_sm or submit_multi failed";
        EsmeRinvsrcton = 0x0000_0048, "ESME_RINVSRCTON: invalid source address TON";
        EsmeRinvsrcnpi = 0x0000_0049, "ESME_RINVSRCNPI: invalid source address NPI";
        EsmeRinvdstton = 0x0000_0050, "ESME_RINVDSTTON: invalid destination address TON";
        EsmeRinvdstnpi = 0x0000_0051, "ESME_RINVDSTNPI: invalid destination address NPI";
        EsmeRinvsystyp = 0x0000_0053, "ESME_RINVSYSTYP: invalid system_type field";
        EsmeRinvrepflag = 0x0000_0054, "ESME_RINVREPFLAG: invalid replace_if_present flag";
        EsmeRinvnummsgs = 0x0000_0055, "ESME_RINVNUMMSGS: invalid number of messages";
        EsmeRthrottled = 0x0000_0058, "ESME_RTHROTTLED: throttling error";
        EsmeRinvsched = 0x0000_0061, "ESME_RINVSCHED: invalid scheduled delivery time";
        EsmeRinvexpiry = 0x0000_0062, "ESME_RINVEXPIRY: invalid validity period";
        EsmeRinvdftmsgid = 0x0000_0063, "ESME_RINVDFTMSGID: predefined message invalid or not found";
        EsmeRxTAppn = 0x0000_0064, "ESME_RX_T_APPN: receiver temporary app error";
        EsmeRxPAppn = 0x0000_0065, "ESME_RX_P_APPN: receiver permanent app error";
        EsmeRxRAppn = 0x0000_0066, "ESME_RX_R_APPN: receiver reject message error";
        EsmeRqueryfail = 0x0000_0067, "ESME_RQUERYFAIL: query_sm request failed";
        EsmeRinvtlvstream = 0x0000_00C0, "ESME_RINVTLVSTREAM: error in the optional part of the PDU body";
        EsmeRtlvnotallwd = 0x0000_00C1, "ESME_RTLVNOTALLWD: TLV not allowed";
        EsmeRinvtlvlen = 0x0000_00C2, "ESME_RINVTLVLEN: invalid parameter length";
        EsmeRmissingtlv = 0x0000_00C3, "ESME_RMISSINGTLV: expected TLV missing";
        EsmeRinvtlvval = 0x0000_00C4, "ESME_RINVTLVVAL: invalid TLV value";
        EsmeRdeliveryfailure = 0x0000_00FE, "ESME_RDELIVERYFAILURE: transaction delivery failure";
        EsmeRunknownerr = 0x0000_00FF, "ESME_RUNKNOWNERR: unknown error";
        EsmeRsertypunauth = 0x0000_0100, "ESME_RSERTYPUNAUTH: ESME not authorised to use specified service_type";
        EsmeRprohibited = 0x0000_0101, "ESME_RPROHIBITED: ESME prohibited from using specified operation";
        EsmeRsertypunavail = 0x0000_0102, "ESME_RSERTYPUNAVAIL: specified service_type is unavailable";
        EsmeRsertypdenied = 0x0000_0103, "ESME_RSERTYPDENIED: specified service_type is denied";
        EsmeRinvdcs = 0x0000_0104, "ESME_RINVDCS: invalid data coding scheme";
        EsmeRinvsrcaddrsubunit = 0x0000_0105, "ESME_RINVSRCADDRSUBUNIT: source address sub unit is invalid";
        EsmeRinvdstaddrsubunit = 0x0000_0106, "ESME_RINVDSTADDRSUBUNIT: destination address sub unit is invalid";
        EsmeRinvbcastfreqint = 0x0000_0107, "ESME_RINVBCASTFREQINT: broadcast frequency interval is invalid";
        EsmeRinvbcastaliasName = 0x0000_0108, "ESME_RINVBCASTALIAS_NAME: broadcast alias name is invalid";
        EsmeRinvbcastareafmt = 0x0000_0109, "ESME_RINVBCASTAREAFMT: broadcast area format is invalid";
        EsmeRinvnumbcastAreas = 0x0000_010A, "ESME_RINVNUMBCAST_AREAS: number of broadcast areas is invalid";
        EsmeRinvbcastcnttype = 0x0000_010B, "ESME_RINVBCASTCNTTYPE: broadcast content type is invalid";
        EsmeRinvbcastmsgclass = 0x0000_010C, "ESME_RINVBCASTMSGCLASS: broadcast message class is invalid";
        EsmeRbcastfail = 0x0000_010D, "ESME_RBCASTFAIL: broadcast_sm operation failed";
        EsmeRbcastqueryfail = 0x0000_010E, "ESME_RBCASTQUERYFAIL: query_broadcast_sm operation failed";
        EsmeRbcastcancelfail = 0x0000_010F, "ESME_RBCASTCANCELFAIL: cancel_broadcast_sm operation failed";
        EsmeRinvbcastRep = 0x0000_0110, "ESME_RINVBCAST_REP: number of repeated broadcasts is invalid";
        EsmeRinvbcastsrvgrp = 0x0000_0111, "ESME_RINVBCASTSRVGRP: broadcast service group is invalid";
        EsmeRinvbcastchanind = 0x0000_0112, "ESME_RINVBCASTCHANIND: broadcast channel indicator is invalid";
    }
}

impl CommandStatus {
    /// True for ESME_ROK.
    pub const fn is_ok(self) -> bool {
        self.to_u32() == 0
    }
}
