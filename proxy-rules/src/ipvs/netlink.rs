//! The generic netlink IPVS protocol, encoded and decoded without I/O.
//!
//! Wire facts, from `include/uapi/linux/netlink.h`, `genetlink.h` and `ip_vs.h`:
//!
//! - every message is a 16-byte `nlmsghdr` (length, type, flags, sequence, port id,
//!   in host byte order) followed by a 4-byte `genlmsghdr` (command, version 1,
//!   reserved) and attributes;
//! - an attribute is a 4-byte `nlattr` (length of header plus payload, unpadded; type)
//!   and its payload, padded with zeros to a multiple of 4 (`NLA_ALIGN`);
//! - the IPVS family's id is dynamic: `CTRL_CMD_GETFAMILY` to the controller (type
//!   `GENL_ID_CTRL` = 0x10) with `CTRL_ATTR_FAMILY_NAME` "IPVS" answers with
//!   `CTRL_ATTR_FAMILY_ID`. On a kernel without IP_VS the controller answers
//!   `NLMSG_ERROR` with `-ENOENT`;
//! - a service travels nested in `IPVS_CMD_ATTR_SERVICE`: `AF` (u16), `PROTOCOL`
//!   (u16), `ADDR` (16 bytes, `union nf_inet_addr`, an IPv4 address in the first 4),
//!   `PORT` (u16, network order), `SCHED_NAME` (NUL-terminated), `FLAGS`
//!   (`struct ip_vs_flags {u32 flags; u32 mask}`), `TIMEOUT` (u32), `NETMASK` (u32);
//! - a destination nested in `IPVS_CMD_ATTR_DEST`: `ADDR`, `PORT` (network order),
//!   `FWD_METHOD`, `WEIGHT`, `U_THRESH`, `L_THRESH` (u32 each), `ADDR_FAMILY` (u16).
//!
//! Requests carry `NLM_F_REQUEST | NLM_F_ACK` (as moby/ipvs, which kube-proxy uses;
//! the IPVS family ignores `NLM_F_CREATE`/`NLM_F_EXCL`, so neither sets them) and
//! `NLM_F_DUMP` for listings. Nested attributes are sent without `NLA_F_NESTED`, as
//! moby/ipvs and ipvsadm send them (the kernel's IPVS parser accepts both), and the
//! decoder accepts both. Every decoder returns an error, never panics, on bad input.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::ipvs::service::{Destination, ForwardMethod, RealServer, ServiceFlags, VirtualServer};
use crate::model::Protocol;

/// `NETLINK_GENERIC`, the socket protocol.
pub const NETLINK_GENERIC: isize = 16;
/// The generic netlink controller's message type (`GENL_ID_CTRL`).
pub const GENL_ID_CTRL: u16 = 0x10;
/// `CTRL_CMD_GETFAMILY`.
pub const CTRL_CMD_GETFAMILY: u8 = 3;
/// `CTRL_ATTR_FAMILY_ID` (u16).
pub const CTRL_ATTR_FAMILY_ID: u16 = 1;
/// `CTRL_ATTR_FAMILY_NAME` (string).
pub const CTRL_ATTR_FAMILY_NAME: u16 = 2;
/// The IPVS family's name (`IPVS_GENL_NAME`).
pub const IPVS_GENL_NAME: &str = "IPVS";
/// The IPVS family's version (`IPVS_GENL_VERSION`), also used for controller requests
/// (as moby/ipvs does).
pub const IPVS_GENL_VERSION: u8 = 1;

/// `NLMSG_NOOP`.
pub const NLMSG_NOOP: u16 = 1;
/// `NLMSG_ERROR`: an error or, with error 0, an acknowledgement.
pub const NLMSG_ERROR: u16 = 2;
/// `NLMSG_DONE`: the end of a dump.
pub const NLMSG_DONE: u16 = 3;
/// `NLMSG_OVERRUN`.
pub const NLMSG_OVERRUN: u16 = 4;

/// `NLM_F_REQUEST`.
pub const NLM_F_REQUEST: u16 = 0x1;
/// `NLM_F_MULTI`: part of a multipart (dump) reply.
pub const NLM_F_MULTI: u16 = 0x2;
/// `NLM_F_ACK`: ask for an acknowledgement.
pub const NLM_F_ACK: u16 = 0x4;
/// `NLM_F_DUMP` (`NLM_F_ROOT | NLM_F_MATCH`).
pub const NLM_F_DUMP: u16 = 0x300;
/// `NLM_F_CAPPED` in an error message: the original request's payload was left out.
pub const NLM_F_CAPPED: u16 = 0x100;
/// `NLM_F_ACK_TLVS` in an error message: extended ack attributes follow.
pub const NLM_F_ACK_TLVS: u16 = 0x200;
/// `NLMSGERR_ATTR_MSG`: the extended ack's text.
pub const NLMSGERR_ATTR_MSG: u16 = 1;

/// `NLA_F_NESTED`.
pub const NLA_F_NESTED: u16 = 0x8000;
/// `NLA_F_NET_BYTEORDER`.
pub const NLA_F_NET_BYTEORDER: u16 = 0x4000;

/// `IPVS_CMD_ATTR_SERVICE`: nested service attributes.
pub const IPVS_CMD_ATTR_SERVICE: u16 = 1;
/// `IPVS_CMD_ATTR_DEST`: nested destination attributes.
pub const IPVS_CMD_ATTR_DEST: u16 = 2;
/// `IPVS_CMD_ATTR_TIMEOUT_TCP` (u32 seconds).
pub const IPVS_CMD_ATTR_TIMEOUT_TCP: u16 = 4;
/// `IPVS_CMD_ATTR_TIMEOUT_TCP_FIN` (u32 seconds).
pub const IPVS_CMD_ATTR_TIMEOUT_TCP_FIN: u16 = 5;
/// `IPVS_CMD_ATTR_TIMEOUT_UDP` (u32 seconds).
pub const IPVS_CMD_ATTR_TIMEOUT_UDP: u16 = 6;

/// `IPVS_SVC_ATTR_AF` (u16).
pub const IPVS_SVC_ATTR_AF: u16 = 1;
/// `IPVS_SVC_ATTR_PROTOCOL` (u16).
pub const IPVS_SVC_ATTR_PROTOCOL: u16 = 2;
/// `IPVS_SVC_ATTR_ADDR` (16 bytes).
pub const IPVS_SVC_ATTR_ADDR: u16 = 3;
/// `IPVS_SVC_ATTR_PORT` (u16, network order).
pub const IPVS_SVC_ATTR_PORT: u16 = 4;
/// `IPVS_SVC_ATTR_FWMARK` (u32).
pub const IPVS_SVC_ATTR_FWMARK: u16 = 5;
/// `IPVS_SVC_ATTR_SCHED_NAME` (string).
pub const IPVS_SVC_ATTR_SCHED_NAME: u16 = 6;
/// `IPVS_SVC_ATTR_FLAGS` (`struct ip_vs_flags`).
pub const IPVS_SVC_ATTR_FLAGS: u16 = 7;
/// `IPVS_SVC_ATTR_TIMEOUT` (u32).
pub const IPVS_SVC_ATTR_TIMEOUT: u16 = 8;
/// `IPVS_SVC_ATTR_NETMASK` (u32).
pub const IPVS_SVC_ATTR_NETMASK: u16 = 9;

/// `IPVS_DEST_ATTR_ADDR` (16 bytes).
pub const IPVS_DEST_ATTR_ADDR: u16 = 1;
/// `IPVS_DEST_ATTR_PORT` (u16, network order).
pub const IPVS_DEST_ATTR_PORT: u16 = 2;
/// `IPVS_DEST_ATTR_FWD_METHOD` (u32).
pub const IPVS_DEST_ATTR_FWD_METHOD: u16 = 3;
/// `IPVS_DEST_ATTR_WEIGHT` (u32).
pub const IPVS_DEST_ATTR_WEIGHT: u16 = 4;
/// `IPVS_DEST_ATTR_U_THRESH` (u32).
pub const IPVS_DEST_ATTR_U_THRESH: u16 = 5;
/// `IPVS_DEST_ATTR_L_THRESH` (u32).
pub const IPVS_DEST_ATTR_L_THRESH: u16 = 6;
/// `IPVS_DEST_ATTR_ACTIVE_CONNS` (u32, replies only).
pub const IPVS_DEST_ATTR_ACTIVE_CONNS: u16 = 7;
/// `IPVS_DEST_ATTR_INACT_CONNS` (u32, replies only).
pub const IPVS_DEST_ATTR_INACT_CONNS: u16 = 8;
/// `IPVS_DEST_ATTR_PERSIST_CONNS` (u32, replies only).
pub const IPVS_DEST_ATTR_PERSIST_CONNS: u16 = 9;
/// `IPVS_DEST_ATTR_ADDR_FAMILY` (u16).
pub const IPVS_DEST_ATTR_ADDR_FAMILY: u16 = 11;

/// `AF_INET`.
pub const AF_INET: u16 = 2;
/// `AF_INET6`.
pub const AF_INET6: u16 = 10;

/// The size of `nlmsghdr`.
pub const NLMSG_HDRLEN: usize = 16;
/// The size of `genlmsghdr`.
pub const GENL_HDRLEN: usize = 4;

/// An IPVS generic netlink command (`IPVS_CMD_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IpvsCommand {
    /// `IPVS_CMD_NEW_SERVICE` (1).
    NewService,
    /// `IPVS_CMD_SET_SERVICE` (2).
    SetService,
    /// `IPVS_CMD_DEL_SERVICE` (3).
    DelService,
    /// `IPVS_CMD_GET_SERVICE` (4).
    GetService,
    /// `IPVS_CMD_NEW_DEST` (5).
    NewDest,
    /// `IPVS_CMD_SET_DEST` (6).
    SetDest,
    /// `IPVS_CMD_DEL_DEST` (7).
    DelDest,
    /// `IPVS_CMD_GET_DEST` (8).
    GetDest,
    /// `IPVS_CMD_SET_CONFIG` (12).
    SetConfig,
    /// `IPVS_CMD_FLUSH` (17).
    Flush,
}

impl IpvsCommand {
    /// The command number.
    pub fn value(self) -> u8 {
        match self {
            IpvsCommand::NewService => 1,
            IpvsCommand::SetService => 2,
            IpvsCommand::DelService => 3,
            IpvsCommand::GetService => 4,
            IpvsCommand::NewDest => 5,
            IpvsCommand::SetDest => 6,
            IpvsCommand::DelDest => 7,
            IpvsCommand::GetDest => 8,
            IpvsCommand::SetConfig => 12,
            IpvsCommand::Flush => 17,
        }
    }

    /// The uapi name, `IPVS_CMD_NEW_SERVICE`.
    pub fn name(self) -> &'static str {
        match self {
            IpvsCommand::NewService => "IPVS_CMD_NEW_SERVICE",
            IpvsCommand::SetService => "IPVS_CMD_SET_SERVICE",
            IpvsCommand::DelService => "IPVS_CMD_DEL_SERVICE",
            IpvsCommand::GetService => "IPVS_CMD_GET_SERVICE",
            IpvsCommand::NewDest => "IPVS_CMD_NEW_DEST",
            IpvsCommand::SetDest => "IPVS_CMD_SET_DEST",
            IpvsCommand::DelDest => "IPVS_CMD_DEL_DEST",
            IpvsCommand::GetDest => "IPVS_CMD_GET_DEST",
            IpvsCommand::SetConfig => "IPVS_CMD_SET_CONFIG",
            IpvsCommand::Flush => "IPVS_CMD_FLUSH",
        }
    }
}

impl fmt::Display for IpvsCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Bad bytes: what was wrong and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(pub String);

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DecodeError {}

fn bad(what: impl Into<String>) -> DecodeError {
    DecodeError(what.into())
}

/// `NLA_ALIGN`/`NLMSG_ALIGN`: round up to a multiple of 4.
pub fn align4(len: usize) -> usize {
    (len + 3) & !3
}

/// A message builder: header, generic header, attributes; the length is filled in by
/// [`MessageBuilder::finish`].
#[derive(Debug, Clone)]
pub struct MessageBuilder {
    buf: Vec<u8>,
    nests: Vec<usize>,
}

impl MessageBuilder {
    /// Start a generic netlink message of `message_type` (a family id) with `flags`,
    /// `seq`, port id 0 (the kernel), command `cmd` and version `version`.
    pub fn new(message_type: u16, flags: u16, seq: u32, cmd: u8, version: u8) -> Self {
        let mut buf = Vec::with_capacity(128);
        buf.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_len, set by finish()
        buf.extend_from_slice(&message_type.to_ne_bytes());
        buf.extend_from_slice(&flags.to_ne_bytes());
        buf.extend_from_slice(&seq.to_ne_bytes());
        buf.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_pid
        buf.extend_from_slice(&[cmd, version, 0, 0]);
        Self {
            buf,
            nests: Vec::new(),
        }
    }

    /// Append an attribute with a raw payload (padded to 4 bytes).
    pub fn attr(&mut self, kind: u16, payload: &[u8]) -> &mut Self {
        let len = u16::try_from(4 + payload.len()).unwrap_or(u16::MAX);
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(payload);
        self.pad();
        self
    }

    /// Append a u16 attribute (host order).
    pub fn attr_u16(&mut self, kind: u16, value: u16) -> &mut Self {
        self.attr(kind, &value.to_ne_bytes())
    }

    /// Append a u32 attribute (host order).
    pub fn attr_u32(&mut self, kind: u16, value: u32) -> &mut Self {
        self.attr(kind, &value.to_ne_bytes())
    }

    /// Append a NUL-terminated string attribute.
    pub fn attr_str(&mut self, kind: u16, value: &str) -> &mut Self {
        let mut payload = Vec::with_capacity(value.len() + 1);
        payload.extend_from_slice(value.as_bytes());
        payload.push(0);
        self.attr(kind, &payload)
    }

    /// Open a nested attribute (closed by [`MessageBuilder::end_nested`]).
    pub fn begin_nested(&mut self, kind: u16) -> &mut Self {
        self.nests.push(self.buf.len());
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self
    }

    /// Close the innermost nested attribute, writing its length.
    pub fn end_nested(&mut self) -> &mut Self {
        if let Some(start) = self.nests.pop() {
            let len = u16::try_from(self.buf.len() - start).unwrap_or(u16::MAX);
            self.buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
        }
        self
    }

    fn pad(&mut self) {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }

    /// The finished message, its length written in.
    pub fn finish(mut self) -> Vec<u8> {
        while !self.nests.is_empty() {
            self.end_nested();
        }
        let len = u32::try_from(self.buf.len()).unwrap_or(u32::MAX);
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        self.buf
    }
}

/// The 16 bytes of an address attribute: IPv4 in the first 4 bytes, zeros after
/// (`union nf_inet_addr`).
pub fn address_bytes(ip: &IpAddr) -> [u8; 16] {
    let mut out = [0u8; 16];
    match ip {
        IpAddr::V4(v4) => out[..4].copy_from_slice(&v4.octets()),
        IpAddr::V6(v6) => out.copy_from_slice(&v6.octets()),
    }
    out
}

/// The `AF_*` of an address.
pub fn address_family(ip: &IpAddr) -> u16 {
    match ip {
        IpAddr::V4(_) => AF_INET,
        IpAddr::V6(_) => AF_INET6,
    }
}

fn request_flags(dump: bool) -> u16 {
    let mut flags = NLM_F_REQUEST | NLM_F_ACK;
    if dump {
        flags |= NLM_F_DUMP;
    }
    flags
}

/// `CTRL_CMD_GETFAMILY` for a family name (`"IPVS"`).
pub fn encode_get_family(name: &str, seq: u32) -> Vec<u8> {
    let mut b = MessageBuilder::new(
        GENL_ID_CTRL,
        request_flags(false),
        seq,
        CTRL_CMD_GETFAMILY,
        IPVS_GENL_VERSION,
    );
    b.attr_str(CTRL_ATTR_FAMILY_NAME, name);
    b.finish()
}

fn put_service(b: &mut MessageBuilder, svc: &VirtualServer) {
    b.begin_nested(IPVS_CMD_ATTR_SERVICE);
    b.attr_u16(IPVS_SVC_ATTR_AF, address_family(&svc.address));
    b.attr_u16(IPVS_SVC_ATTR_PROTOCOL, u16::from(svc.protocol.number()));
    b.attr(IPVS_SVC_ATTR_ADDR, &address_bytes(&svc.address));
    b.attr(IPVS_SVC_ATTR_PORT, &svc.port.to_be_bytes());
    b.attr_str(IPVS_SVC_ATTR_SCHED_NAME, &svc.scheduler);
    let mut flags = [0u8; 8];
    flags[..4].copy_from_slice(&svc.flags.0.to_ne_bytes());
    flags[4..].copy_from_slice(&u32::MAX.to_ne_bytes());
    b.attr(IPVS_SVC_ATTR_FLAGS, &flags);
    b.attr_u32(IPVS_SVC_ATTR_TIMEOUT, svc.timeout);
    b.attr_u32(IPVS_SVC_ATTR_NETMASK, svc.netmask);
    b.end_nested();
}

fn put_destination(b: &mut MessageBuilder, dest: &RealServer) {
    b.begin_nested(IPVS_CMD_ATTR_DEST);
    b.attr(IPVS_DEST_ATTR_ADDR, &address_bytes(&dest.address));
    b.attr(IPVS_DEST_ATTR_PORT, &dest.port.to_be_bytes());
    b.attr_u32(IPVS_DEST_ATTR_FWD_METHOD, dest.forward.value());
    b.attr_u32(IPVS_DEST_ATTR_WEIGHT, dest.weight);
    b.attr_u32(IPVS_DEST_ATTR_U_THRESH, dest.upper_threshold);
    b.attr_u32(IPVS_DEST_ATTR_L_THRESH, dest.lower_threshold);
    b.attr_u16(IPVS_DEST_ATTR_ADDR_FAMILY, address_family(&dest.address));
    b.end_nested();
}

/// `IPVS_CMD_NEW_SERVICE`, `SET_SERVICE` or `DEL_SERVICE` (or a single
/// `GET_SERVICE`) with the full service attributes.
pub fn encode_service(family_id: u16, cmd: IpvsCommand, seq: u32, svc: &VirtualServer) -> Vec<u8> {
    let mut b = MessageBuilder::new(
        family_id,
        request_flags(false),
        seq,
        cmd.value(),
        IPVS_GENL_VERSION,
    );
    put_service(&mut b, svc);
    b.finish()
}

/// `IPVS_CMD_NEW_DEST`, `SET_DEST` or `DEL_DEST`: the service then the destination.
pub fn encode_destination(
    family_id: u16,
    cmd: IpvsCommand,
    seq: u32,
    svc: &VirtualServer,
    dest: &RealServer,
) -> Vec<u8> {
    let mut b = MessageBuilder::new(
        family_id,
        request_flags(false),
        seq,
        cmd.value(),
        IPVS_GENL_VERSION,
    );
    put_service(&mut b, svc);
    put_destination(&mut b, dest);
    b.finish()
}

/// `IPVS_CMD_GET_SERVICE` as a dump of every service. Like moby/ipvs it carries an
/// empty `IPVS_CMD_ATTR_SERVICE`.
pub fn encode_dump_services(family_id: u16, seq: u32) -> Vec<u8> {
    let mut b = MessageBuilder::new(
        family_id,
        request_flags(true),
        seq,
        IpvsCommand::GetService.value(),
        IPVS_GENL_VERSION,
    );
    b.begin_nested(IPVS_CMD_ATTR_SERVICE).end_nested();
    b.finish()
}

/// `IPVS_CMD_GET_DEST` as a dump of one service's destinations.
pub fn encode_dump_destinations(family_id: u16, seq: u32, svc: &VirtualServer) -> Vec<u8> {
    let mut b = MessageBuilder::new(
        family_id,
        request_flags(true),
        seq,
        IpvsCommand::GetDest.value(),
        IPVS_GENL_VERSION,
    );
    put_service(&mut b, svc);
    b.finish()
}

/// `IPVS_CMD_FLUSH`: remove every service and destination.
pub fn encode_flush(family_id: u16, seq: u32) -> Vec<u8> {
    MessageBuilder::new(
        family_id,
        request_flags(false),
        seq,
        IpvsCommand::Flush.value(),
        IPVS_GENL_VERSION,
    )
    .finish()
}

/// `IPVS_CMD_SET_CONFIG` with the three timeouts in seconds (`ipvsadm --set tcp
/// tcpfin udp`; 0 leaves one unchanged).
pub fn encode_set_timeouts(family_id: u16, seq: u32, tcp: u32, tcp_fin: u32, udp: u32) -> Vec<u8> {
    let mut b = MessageBuilder::new(
        family_id,
        request_flags(false),
        seq,
        IpvsCommand::SetConfig.value(),
        IPVS_GENL_VERSION,
    );
    b.attr_u32(IPVS_CMD_ATTR_TIMEOUT_TCP, tcp)
        .attr_u32(IPVS_CMD_ATTR_TIMEOUT_TCP_FIN, tcp_fin)
        .attr_u32(IPVS_CMD_ATTR_TIMEOUT_UDP, udp);
    b.finish()
}

/// A netlink message header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageHeader {
    /// `nlmsg_len`: header plus payload.
    pub length: u32,
    /// `nlmsg_type`.
    pub message_type: u16,
    /// `nlmsg_flags`.
    pub flags: u16,
    /// `nlmsg_seq`.
    pub seq: u32,
    /// `nlmsg_pid`.
    pub pid: u32,
}

impl MessageHeader {
    /// Parse the first 16 bytes.
    pub fn parse(buf: &[u8]) -> Result<Self, DecodeError> {
        if buf.len() < NLMSG_HDRLEN {
            return Err(bad(format!(
                "netlink header needs {NLMSG_HDRLEN} bytes, got {}",
                buf.len()
            )));
        }
        Ok(Self {
            length: read_u32(&buf[0..4]),
            message_type: read_u16(&buf[4..6]),
            flags: read_u16(&buf[6..8]),
            seq: read_u32(&buf[8..12]),
            pid: read_u32(&buf[12..16]),
        })
    }
}

/// One netlink message of a received buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Message<'a> {
    /// The header.
    pub header: MessageHeader,
    /// The bytes after the header.
    pub payload: &'a [u8],
}

fn read_u16(b: &[u8]) -> u16 {
    u16::from_ne_bytes([b[0], b[1]])
}

fn read_u32(b: &[u8]) -> u32 {
    u32::from_ne_bytes([b[0], b[1], b[2], b[3]])
}

/// Split a received datagram into its messages.
pub fn split_messages(buf: &[u8]) -> Result<Vec<Message<'_>>, DecodeError> {
    let mut out = Vec::new();
    let mut rest = buf;
    while !rest.is_empty() {
        let header = MessageHeader::parse(rest)?;
        let len = header.length as usize;
        if len < NLMSG_HDRLEN || len > rest.len() {
            return Err(bad(format!(
                "netlink message length {len} is out of range (header {NLMSG_HDRLEN}, {} bytes left)",
                rest.len()
            )));
        }
        out.push(Message {
            header,
            payload: &rest[NLMSG_HDRLEN..len],
        });
        let next = align4(len).min(rest.len());
        rest = &rest[next..];
    }
    Ok(out)
}

/// One attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attr<'a> {
    /// The type, without the `NLA_F_NESTED`/`NLA_F_NET_BYTEORDER` bits.
    pub kind: u16,
    /// The payload, without padding.
    pub value: &'a [u8],
}

impl<'a> Attr<'a> {
    /// The payload as a u16 (host order).
    pub fn u16(&self) -> Result<u16, DecodeError> {
        if self.value.len() < 2 {
            return Err(bad(format!(
                "attribute {} holds {} bytes, a u16 needs 2",
                self.kind,
                self.value.len()
            )));
        }
        Ok(read_u16(self.value))
    }

    /// The payload as a u16 in network order.
    pub fn u16_be(&self) -> Result<u16, DecodeError> {
        self.u16().map(u16::from_be)
    }

    /// The payload as a u32 (host order).
    pub fn u32(&self) -> Result<u32, DecodeError> {
        if self.value.len() < 4 {
            return Err(bad(format!(
                "attribute {} holds {} bytes, a u32 needs 4",
                self.kind,
                self.value.len()
            )));
        }
        Ok(read_u32(self.value))
    }

    /// The payload as a string up to its first NUL.
    pub fn string(&self) -> Result<String, DecodeError> {
        let end = self
            .value
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(self.value.len());
        String::from_utf8(self.value[..end].to_vec())
            .map_err(|_| bad(format!("attribute {} is not UTF-8", self.kind)))
    }

    /// The payload's attributes (a nested attribute).
    pub fn nested(&self) -> Result<Vec<Attr<'a>>, DecodeError> {
        parse_attrs(self.value)
    }
}

/// Parse a run of attributes.
pub fn parse_attrs(buf: &[u8]) -> Result<Vec<Attr<'_>>, DecodeError> {
    let mut out = Vec::new();
    let mut rest = buf;
    while rest.len() >= 4 {
        let len = read_u16(&rest[0..2]) as usize;
        let kind = read_u16(&rest[2..4]) & !(NLA_F_NESTED | NLA_F_NET_BYTEORDER);
        if len < 4 || len > rest.len() {
            return Err(bad(format!(
                "attribute length {len} is out of range ({} bytes left)",
                rest.len()
            )));
        }
        out.push(Attr {
            kind,
            value: &rest[4..len],
        });
        rest = &rest[align4(len).min(rest.len())..];
    }
    if !rest.is_empty() {
        return Err(bad(format!(
            "{} trailing bytes after attributes",
            rest.len()
        )));
    }
    Ok(out)
}

/// What a received message means to a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply<'a> {
    /// `NLMSG_ERROR` with error 0: the request succeeded.
    Ack,
    /// `NLMSG_ERROR` with an error.
    Error {
        /// The positive errno.
        errno: i32,
        /// The extended ack text, when the kernel sent one.
        message: Option<String>,
    },
    /// `NLMSG_DONE`: the end of a dump.
    Done,
    /// A data message: its generic netlink command and attributes' bytes.
    Data {
        /// `genlmsghdr.cmd`.
        cmd: u8,
        /// The attributes after the generic header.
        attrs: &'a [u8],
    },
    /// `NLMSG_NOOP` or `NLMSG_OVERRUN`: nothing to act on.
    Noop,
}

/// Classify a message.
pub fn classify<'a>(msg: &Message<'a>) -> Result<Reply<'a>, DecodeError> {
    match msg.header.message_type {
        NLMSG_ERROR => {
            if msg.payload.len() < 4 {
                return Err(bad("netlink error message is shorter than its 4-byte code"));
            }
            let code = i32::from_ne_bytes([
                msg.payload[0],
                msg.payload[1],
                msg.payload[2],
                msg.payload[3],
            ]);
            if code == 0 {
                return Ok(Reply::Ack);
            }
            Ok(Reply::Error {
                errno: code.checked_neg().unwrap_or(i32::MAX),
                message: ext_ack_message(msg),
            })
        }
        NLMSG_DONE => Ok(Reply::Done),
        NLMSG_NOOP | NLMSG_OVERRUN => Ok(Reply::Noop),
        _ => {
            if msg.payload.len() < GENL_HDRLEN {
                return Err(bad(format!(
                    "generic netlink message of {} bytes is shorter than its header",
                    msg.payload.len()
                )));
            }
            Ok(Reply::Data {
                cmd: msg.payload[0],
                attrs: &msg.payload[GENL_HDRLEN..],
            })
        }
    }
}

/// The `NLMSGERR_ATTR_MSG` of an error message with extended ack attributes.
fn ext_ack_message(msg: &Message<'_>) -> Option<String> {
    if msg.header.flags & NLM_F_ACK_TLVS == 0 {
        return None;
    }
    // After the code: the original header, and its payload unless capped.
    let original = MessageHeader::parse(msg.payload.get(4..)?).ok()?;
    let skip = if msg.header.flags & NLM_F_CAPPED != 0 {
        NLMSG_HDRLEN
    } else {
        align4(original.length as usize)
    };
    let tlvs = msg.payload.get(4 + skip..)?;
    parse_attrs(tlvs)
        .ok()?
        .iter()
        .find(|a| a.kind == NLMSGERR_ATTR_MSG)
        .and_then(|a| a.string().ok())
        .filter(|s| !s.is_empty())
}

/// The family id in a `CTRL_CMD_GETFAMILY` reply's attributes.
pub fn decode_family_id(attrs: &[u8]) -> Result<u16, DecodeError> {
    parse_attrs(attrs)?
        .iter()
        .find(|a| a.kind == CTRL_ATTR_FAMILY_ID)
        .ok_or_else(|| bad("the controller's reply has no CTRL_ATTR_FAMILY_ID"))?
        .u16()
}

fn decode_address(value: &[u8], family: u16) -> Result<IpAddr, DecodeError> {
    match family {
        AF_INET if value.len() >= 4 => Ok(IpAddr::V4(Ipv4Addr::new(
            value[0], value[1], value[2], value[3],
        ))),
        AF_INET6 if value.len() >= 16 => {
            let mut o = [0u8; 16];
            o.copy_from_slice(&value[..16]);
            Ok(IpAddr::V6(Ipv6Addr::from(o)))
        }
        AF_INET | AF_INET6 => Err(bad(format!(
            "address of {} bytes is too short for family {family}",
            value.len()
        ))),
        other => Err(bad(format!("unknown address family {other}"))),
    }
}

fn find<'a>(attrs: &'a [Attr<'a>], kind: u16, what: &str) -> Result<&'a Attr<'a>, DecodeError> {
    attrs
        .iter()
        .find(|a| a.kind == kind)
        .ok_or_else(|| bad(format!("{what} is missing")))
}

/// Decode the service of an `IPVS_CMD_NEW_SERVICE` message (a `GET_SERVICE` reply or
/// request) from its attributes. `Ok(None)` is a firewall-mark service, which has no
/// address or port and which this crate does not manage. The kernel's `HASHED` flag is
/// stripped.
pub fn decode_service(attrs: &[u8]) -> Result<Option<VirtualServer>, DecodeError> {
    let top = parse_attrs(attrs)?;
    let nested = find(&top, IPVS_CMD_ATTR_SERVICE, "IPVS_CMD_ATTR_SERVICE")?.nested()?;
    decode_service_attrs(&nested)
}

fn decode_service_attrs(attrs: &[Attr<'_>]) -> Result<Option<VirtualServer>, DecodeError> {
    let af = find(attrs, IPVS_SVC_ATTR_AF, "IPVS_SVC_ATTR_AF")?.u16()?;
    if attrs.iter().any(|a| a.kind == IPVS_SVC_ATTR_FWMARK)
        && !attrs.iter().any(|a| a.kind == IPVS_SVC_ATTR_ADDR)
    {
        return Ok(None);
    }
    let proto_number = find(attrs, IPVS_SVC_ATTR_PROTOCOL, "IPVS_SVC_ATTR_PROTOCOL")?.u16()?;
    let protocol = protocol_of(proto_number)?;
    let address = decode_address(
        find(attrs, IPVS_SVC_ATTR_ADDR, "IPVS_SVC_ATTR_ADDR")?.value,
        af,
    )?;
    let port = find(attrs, IPVS_SVC_ATTR_PORT, "IPVS_SVC_ATTR_PORT")?.u16_be()?;
    let mut svc = VirtualServer::new(address, protocol, port, "");
    for a in attrs {
        match a.kind {
            IPVS_SVC_ATTR_SCHED_NAME => svc.scheduler = a.string()?,
            IPVS_SVC_ATTR_FLAGS => {
                svc.flags = ServiceFlags(a.u32()?).without(ServiceFlags::HASHED);
            }
            IPVS_SVC_ATTR_TIMEOUT => svc.timeout = a.u32()?,
            IPVS_SVC_ATTR_NETMASK => svc.netmask = a.u32()?,
            _ => {}
        }
    }
    Ok(Some(svc))
}

fn protocol_of(number: u16) -> Result<Protocol, DecodeError> {
    match number {
        6 => Ok(Protocol::Tcp),
        17 => Ok(Protocol::Udp),
        132 => Ok(Protocol::Sctp),
        other => Err(bad(format!("IP protocol {other} is not TCP, UDP or SCTP"))),
    }
}

/// Decode the destination of an `IPVS_CMD_NEW_DEST` message (a `GET_DEST` reply or a
/// request) from its attributes. Without `IPVS_DEST_ATTR_ADDR_FAMILY` (kernels before
/// 3.18) the family is guessed from the address bytes, as moby/ipvs does.
pub fn decode_destination(attrs: &[u8]) -> Result<Destination, DecodeError> {
    let top = parse_attrs(attrs)?;
    let nested = find(&top, IPVS_CMD_ATTR_DEST, "IPVS_CMD_ATTR_DEST")?.nested()?;
    let addr = find(&nested, IPVS_DEST_ATTR_ADDR, "IPVS_DEST_ATTR_ADDR")?.value;
    let family = match nested.iter().find(|a| a.kind == IPVS_DEST_ATTR_ADDR_FAMILY) {
        Some(a) => a.u16()?,
        None if addr.len() == 4 || (addr.len() >= 16 && addr[4..16].iter().all(|&b| b == 0)) => {
            AF_INET
        }
        None => AF_INET6,
    };
    let address = decode_address(addr, family)?;
    let port = find(&nested, IPVS_DEST_ATTR_PORT, "IPVS_DEST_ATTR_PORT")?.u16_be()?;
    let mut d = Destination::idle(RealServer::masquerade(address, port));
    for a in &nested {
        match a.kind {
            IPVS_DEST_ATTR_FWD_METHOD => d.server.forward = ForwardMethod::from_value(a.u32()?),
            IPVS_DEST_ATTR_WEIGHT => d.server.weight = a.u32()?,
            IPVS_DEST_ATTR_U_THRESH => d.server.upper_threshold = a.u32()?,
            IPVS_DEST_ATTR_L_THRESH => d.server.lower_threshold = a.u32()?,
            IPVS_DEST_ATTR_ACTIVE_CONNS => d.active_connections = a.u32()?,
            IPVS_DEST_ATTR_INACT_CONNS => d.inactive_connections = a.u32()?,
            IPVS_DEST_ATTR_PERSIST_CONNS => d.persistent_connections = a.u32()?,
            _ => {}
        }
    }
    Ok(d)
}

/// A request decoded back from its bytes (for tests and fakes that see the wire).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedRequest {
    /// The header.
    pub header: MessageHeader,
    /// The generic netlink command.
    pub cmd: u8,
    /// The service, if the request carries one with an address.
    pub service: Option<VirtualServer>,
    /// The destination, if the request carries one.
    pub destination: Option<RealServer>,
}

/// Decode one request message this module encodes.
pub fn decode_request(buf: &[u8]) -> Result<DecodedRequest, DecodeError> {
    let msgs = split_messages(buf)?;
    let [msg] = msgs.as_slice() else {
        return Err(bad(format!("expected one message, got {}", msgs.len())));
    };
    let Reply::Data { cmd, attrs } = classify(msg)? else {
        return Err(bad("not a generic netlink request"));
    };
    let top = parse_attrs(attrs)?;
    let mut service = None;
    let mut destination = None;
    for a in &top {
        match a.kind {
            IPVS_CMD_ATTR_SERVICE => {
                let nested = a.nested()?;
                if !nested.is_empty() {
                    service = decode_service_attrs(&nested)?;
                }
            }
            IPVS_CMD_ATTR_DEST => {
                destination = Some(decode_destination(&buf_of(a))?.server);
            }
            _ => {}
        }
    }
    Ok(DecodedRequest {
        header: msg.header,
        cmd,
        service,
        destination,
    })
}

/// Re-wrap a nested destination attribute so [`decode_destination`] can read it.
fn buf_of(a: &Attr<'_>) -> Vec<u8> {
    let mut b = Vec::with_capacity(4 + a.value.len());
    let len = u16::try_from(4 + a.value.len()).unwrap_or(u16::MAX);
    b.extend_from_slice(&len.to_ne_bytes());
    b.extend_from_slice(&IPVS_CMD_ATTR_DEST.to_ne_bytes());
    b.extend_from_slice(a.value);
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alignment() {
        assert_eq!(align4(0), 0);
        assert_eq!(align4(5), 8);
        assert_eq!(align4(8), 8);
    }

    #[test]
    fn service_round_trips() {
        let mut svc = VirtualServer::new("fd00::10".parse().unwrap(), Protocol::Sctp, 9, "mh");
        svc.flags = ServiceFlags::PERSISTENT.with(ServiceFlags::SOURCE_HASH);
        svc.timeout = 10_800;
        let bytes = encode_service(0x25, IpvsCommand::SetService, 7, &svc);
        let req = decode_request(&bytes).unwrap();
        assert_eq!(req.cmd, 2);
        assert_eq!(req.header.seq, 7);
        assert_eq!(req.header.flags, NLM_F_REQUEST | NLM_F_ACK);
        assert_eq!(req.service, Some(svc));
        assert_eq!(req.destination, None);
    }

    #[test]
    fn truncated_input_is_an_error() {
        let svc = VirtualServer::new("10.0.0.1".parse().unwrap(), Protocol::Tcp, 80, "rr");
        let bytes = encode_destination(
            0x25,
            IpvsCommand::NewDest,
            1,
            &svc,
            &RealServer::masquerade("10.1.0.1".parse().unwrap(), 8080),
        );
        for cut in 0..bytes.len() {
            assert!(decode_request(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        assert!(decode_request(&bytes).is_ok());
    }
}
