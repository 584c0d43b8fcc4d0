//! Code tables: command ids, CONNECT_RESP statuses, SUBMIT/DELIVER results, Msg_Fmt.
//!
//! Each table is one list fed to `code_table!`, which generates the enum, the raw
//! conversions and `Display`. Unknown values survive a round trip as `Other(raw)`; build
//! values from the wire with `from_raw` so a known value never hides inside `Other`.

use std::fmt;

macro_rules! code_table {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident: $repr:ty {
            $( $(#[$vmeta:meta])* $variant:ident = $value:literal => $label:literal, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        $vis enum $name {
            $( $(#[$vmeta])* $variant, )*
            /// A value this table does not name, kept as sent.
            Other($repr),
        }

        impl $name {
            /// Maps a wire value to its variant (`Other` only for values not listed).
            pub const fn from_raw(raw: $repr) -> Self {
                match raw {
                    $( $value => Self::$variant, )*
                    other => Self::Other(other),
                }
            }

            /// The wire value.
            pub const fn raw(self) -> $repr {
                match self {
                    $( Self::$variant => $value, )*
                    Self::Other(raw) => raw,
                }
            }

            /// The specification's name for the value, or `None` for `Other`.
            pub const fn label(self) -> Option<&'static str> {
                match self {
                    $( Self::$variant => Some($label), )*
                    Self::Other(_) => None,
                }
            }
        }

        impl From<$repr> for $name {
            fn from(raw: $repr) -> Self {
                Self::from_raw(raw)
            }
        }

        impl From<$name> for $repr {
            fn from(code: $name) -> Self {
                code.raw()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self.label() {
                    Some(label) => write!(f, "{label}({})", self.raw()),
                    None => write!(f, "{}({:#x})", stringify!($name), self.raw()),
                }
            }
        }
    };
}

code_table! {
    /// Command_Id of the 12-byte header. Responses are the request id | 0x8000_0000.
    pub enum CommandId: u32 {
        /// SP → ISMG login.
        Connect = 0x0000_0001 => "CMPP_CONNECT",
        /// Login answer with Status and AuthenticatorISMG.
        ConnectResp = 0x8000_0001 => "CMPP_CONNECT_RESP",
        /// Either side ends the link.
        Terminate = 0x0000_0002 => "CMPP_TERMINATE",
        /// Answer to TERMINATE.
        TerminateResp = 0x8000_0002 => "CMPP_TERMINATE_RESP",
        /// SP → ISMG mobile-terminated message.
        Submit = 0x0000_0004 => "CMPP_SUBMIT",
        /// Answer to SUBMIT carrying the ISMG's Msg_Id and Result.
        SubmitResp = 0x8000_0004 => "CMPP_SUBMIT_RESP",
        /// ISMG → SP mobile-originated message or status report.
        Deliver = 0x0000_0005 => "CMPP_DELIVER",
        /// Answer to DELIVER.
        DeliverResp = 0x8000_0005 => "CMPP_DELIVER_RESP",
        /// SP → ISMG traffic statistics query.
        Query = 0x0000_0006 => "CMPP_QUERY",
        /// Answer to QUERY.
        QueryResp = 0x8000_0006 => "CMPP_QUERY_RESP",
        /// SP → ISMG cancel a submitted message.
        Cancel = 0x0000_0007 => "CMPP_CANCEL",
        /// Answer to CANCEL.
        CancelResp = 0x8000_0007 => "CMPP_CANCEL_RESP",
        /// Link keep-alive.
        ActiveTest = 0x0000_0008 => "CMPP_ACTIVE_TEST",
        /// Answer to ACTIVE_TEST (one Reserved byte).
        ActiveTestResp = 0x8000_0008 => "CMPP_ACTIVE_TEST_RESP",
        /// ISMG ↔ ISMG forward (not decoded here).
        Fwd = 0x0000_0009 => "CMPP_FWD",
        /// Answer to FWD (not decoded here).
        FwdResp = 0x8000_0009 => "CMPP_FWD_RESP",
        /// ISMG ↔ GNS MT route request (not decoded here).
        MtRoute = 0x0000_0010 => "CMPP_MT_ROUTE",
        /// Answer to MT_ROUTE (not decoded here).
        MtRouteResp = 0x8000_0010 => "CMPP_MT_ROUTE_RESP",
        /// ISMG ↔ GNS MO route request (not decoded here).
        MoRoute = 0x0000_0011 => "CMPP_MO_ROUTE",
        /// Answer to MO_ROUTE (not decoded here).
        MoRouteResp = 0x8000_0011 => "CMPP_MO_ROUTE_RESP",
    }
}

impl CommandId {
    /// Whether this id is a response (high bit set).
    pub const fn is_response(self) -> bool {
        self.raw() & 0x8000_0000 != 0
    }
}

code_table! {
    /// CONNECT_RESP Status (1 byte in 2.0, 4 bytes in 3.0).
    pub enum ConnectStatus: u32 {
        /// Login accepted.
        Ok = 0 => "ok",
        /// The CONNECT did not parse.
        StructureError = 1 => "message structure error",
        /// Source_Addr is not a known SP.
        IllegalSourceAddress = 2 => "illegal source address",
        /// AuthenticatorSource did not verify.
        AuthenticationError = 3 => "authentication error",
        /// The requested Version is higher than the ISMG supports.
        VersionTooHigh = 4 => "version too high",
        /// Any other failure (5 and above are "other errors" in both versions).
        OtherError = 5 => "other error",
    }
}

code_table! {
    /// SUBMIT_RESP / DELIVER_RESP Result (1 byte in 2.0, 4 bytes in 3.0).
    ///
    /// 0..=8 mean the same in both versions; 9 is "other error" in 2.0 and, like 10..=13,
    /// was given a specific meaning by 3.0.
    pub enum ResultCode: u32 {
        /// Accepted.
        Success = 0 => "success",
        /// 消息结构错: the PDU did not parse.
        MessageStructureError = 1 => "message structure error",
        /// 命令字错: unknown or unexpected Command_Id.
        CommandWordError = 2 => "command word error",
        /// 消息序号重复: Sequence_Id reused while outstanding.
        DuplicateSequence = 3 => "duplicate sequence",
        /// 消息长度错: Total_Length or Msg_Length disagrees with the body.
        MessageLengthError = 4 => "message length error",
        /// 资费代码错: bad FeeType / FeeCode.
        FeeCodeError = 5 => "fee code error",
        /// 超过最大信息长: Msg_Content too long.
        ContentTooLong = 6 => "content too long",
        /// 业务代码错: unknown Service_Id.
        ServiceCodeError = 7 => "service code error",
        /// 流量控制错: throttled; back off and retry.
        FlowControl = 8 => "flow control",
        /// 2.0: other error. 3.0: 本网关不负责服务此计费号码 (fee terminal not served here).
        FeeTerminalNotServed = 9 => "fee terminal not served / other error",
        /// 3.0: Src_Id 错误.
        SrcIdError = 10 => "Src_Id error",
        /// 3.0: Msg_src 错误.
        MsgSrcError = 11 => "Msg_src error",
        /// 3.0: Fee_terminal_Id 错误.
        FeeTerminalIdError = 12 => "Fee_terminal_Id error",
        /// 3.0: Dest_terminal_Id 错误.
        DestTerminalIdError = 13 => "Dest_terminal_Id error",
    }
}

impl ResultCode {
    /// Whether the peer asks us to slow down (Result 8), which drives AIMD in the channel.
    pub const fn is_throttle(self) -> bool {
        matches!(self, Self::FlowControl)
    }
}

code_table! {
    /// Msg_Fmt: how Msg_Content is encoded. The codec keeps content raw; this only names it.
    #[derive(Default)]
    pub enum MsgFmt: u8 {
        /// ASCII.
        #[default]
        Ascii = 0 => "ASCII",
        /// SIM card write instruction.
        WriteCard = 3 => "write card",
        /// Binary (8-bit data, WAP push, ringtones).
        Binary = 4 => "binary",
        /// UCS-2 big-endian.
        Ucs2 = 8 => "UCS2",
        /// GB 2312 / GBK Chinese.
        Gbk = 15 => "GBK",
    }
}
