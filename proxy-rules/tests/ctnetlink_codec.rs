//! Golden bytes, round trips and robustness of the ctnetlink codec (no root needed).
//!
//! Every expected message below is written out by hand from the kernel's uapi headers
//! (`include/uapi/linux/netlink.h`, `netfilter/nfnetlink.h`,
//! `netfilter/nfnetlink_conntrack.h`), one field per line, so a reader can check each
//! byte. Netlink and attribute headers are in host byte order: these tests describe a
//! little-endian host (x86_64, aarch64); addresses, ports, zones and ids are in network
//! order on every host.
//!
//! Layout reminders:
//! - `nlmsghdr`: u32 length (whole message), u16 type, u16 flags, u32 seq, u32 pid.
//! - `nfgenmsg`: u8 family (AF_INET 2, AF_INET6 10), u8 version (0), be16 res_id (0).
//! - `nlattr`: u16 length (4 + payload, unpadded), u16 type (bit 15 `NLA_F_NESTED`, so
//!   a nested `CTA_TUPLE_ORIG` is `0x8001`, written `0x01, 0x80`), payload, zero
//!   padding to a multiple of 4.
//! - message types: `NFNL_SUBSYS_CTNETLINK (1) << 8 | op`: GET `0x0101`, DELETE
//!   `0x0102`, NEW `0x0100`.
#![cfg(target_endian = "little")]

use std::net::IpAddr;

use proptest::prelude::*;
use proxy_rules::Error;
use proxy_rules::conntrack::Flow;
use proxy_rules::ctnetlink::{
    self, DumpFilter, DumpReader, NetlinkConntrack, ReplyError, UdpEntry, decode_ack, decode_dump,
    decode_entry, encode_delete, encode_dump_request, encode_entry_message,
};
use proxy_rules::ipvs::netlink::{NLM_F_MULTI, parse_attrs, split_messages};
use proxy_rules::model::IpFamily;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn dns_flow() -> Flow {
    Flow {
        orig_src: ip("10.0.0.9"),
        orig_dst: ip("172.30.0.10"),
        orig_sport: 40000,
        orig_dport: 53,
        reply_src: ip("10.180.0.5"),
        reply_dst: ip("10.0.0.9"),
        reply_sport: 53,
        reply_dport: 40000,
    }
}

fn dns_flow_v6() -> Flow {
    Flow {
        orig_src: ip("fd00::9"),
        orig_dst: ip("fd00::10"),
        orig_sport: 40000,
        orig_dport: 53,
        reply_src: ip("fd00::5"),
        reply_dst: ip("fd00::9"),
        reply_sport: 53,
        reply_dport: 40000,
    }
}

/// `NLMSG_DONE` ending a dump: 20 bytes.
fn done(seq: u32, code: i32) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&20u32.to_le_bytes()); // nlmsg_len 20
    b.extend_from_slice(&3u16.to_le_bytes()); // NLMSG_DONE
    b.extend_from_slice(&NLM_F_MULTI.to_le_bytes()); // NLM_F_MULTI
    b.extend_from_slice(&seq.to_le_bytes());
    b.extend_from_slice(&0x1234u32.to_le_bytes()); // our port id
    b.extend_from_slice(&code.to_le_bytes()); // the dump's error code
    b
}

#[test]
fn dump_request_ipv4_with_the_udp_filter() {
    #[rustfmt::skip]
    let expected: Vec<u8> = vec![
        48, 0, 0, 0,        // nlmsg_len 48
        0x01, 0x01,         // type 0x0101: CTNETLINK << 8 | IPCTNL_MSG_CT_GET (1)
        0x01, 0x03,         // flags 0x0301: NLM_F_REQUEST | NLM_F_DUMP (0x300)
        7, 0, 0, 0,         // seq 7
        0, 0, 0, 0,         // pid 0: to the kernel
        2, 0, 0, 0,         // nfgenmsg: AF_INET, NFNETLINK_V0, res_id 0
        16, 0, 0x01, 0x80,  // nlattr len 16, CTA_TUPLE_ORIG (1) | NLA_F_NESTED
        12, 0, 0x02, 0x80,  //   nlattr len 12, CTA_TUPLE_PROTO (2) | NLA_F_NESTED
        5, 0, 1, 0,         //     nlattr len 5, CTA_PROTO_NUM (1)
        17, 0, 0, 0,        //       IPPROTO_UDP (u8), 3 bytes padding
        12, 0, 0x19, 0x80,  // nlattr len 12, CTA_FILTER (25) | NLA_F_NESTED
        8, 0, 1, 0,         //   nlattr len 8, CTA_FILTER_ORIG_FLAGS (1)
        8, 0, 0, 0,         //     u32 host order: CTA_FILTER_FLAG_CTA_PROTO_NUM (1 << 3)
    ];
    assert_eq!(
        encode_dump_request(IpFamily::V4, 7, DumpFilter::UdpOnly),
        expected
    );
}

#[test]
fn dump_request_ipv6_without_filter() {
    #[rustfmt::skip]
    let expected: Vec<u8> = vec![
        20, 0, 0, 0,        // nlmsg_len 20: header and nfgenmsg only
        0x01, 0x01,         // IPCTNL_MSG_CT_GET
        0x01, 0x03,         // NLM_F_REQUEST | NLM_F_DUMP
        1, 0, 0, 0,         // seq 1
        0, 0, 0, 0,         // pid 0
        10, 0, 0, 0,        // nfgenmsg: AF_INET6 (10), NFNETLINK_V0, res_id 0
    ];
    assert_eq!(
        encode_dump_request(IpFamily::V6, 1, DumpFilter::AllProtocols),
        expected
    );
}

#[rustfmt::skip]
const DELETE_V4: [u8; 72] = [
    72, 0, 0, 0,            // nlmsg_len 72
    0x02, 0x01,             // type 0x0102: CTNETLINK << 8 | IPCTNL_MSG_CT_DELETE (2)
    0x05, 0x00,             // flags NLM_F_REQUEST | NLM_F_ACK
    42, 0, 0, 0,            // seq 42
    0, 0, 0, 0,             // pid 0
    2, 0, 0, 0,             // nfgenmsg: AF_INET, NFNETLINK_V0, res_id 0
    52, 0, 0x01, 0x80,      // nlattr len 52, CTA_TUPLE_ORIG | NLA_F_NESTED
    20, 0, 0x01, 0x80,      //   nlattr len 20, CTA_TUPLE_IP (1) | NLA_F_NESTED
    8, 0, 1, 0,             //     nlattr len 8, CTA_IP_V4_SRC (1)
    10, 0, 0, 9,            //       10.0.0.9
    8, 0, 2, 0,             //     nlattr len 8, CTA_IP_V4_DST (2)
    172, 30, 0, 10,         //       172.30.0.10
    28, 0, 0x02, 0x80,      //   nlattr len 28, CTA_TUPLE_PROTO (2) | NLA_F_NESTED
    5, 0, 1, 0,             //     nlattr len 5, CTA_PROTO_NUM (1)
    17, 0, 0, 0,            //       IPPROTO_UDP, padding
    6, 0, 2, 0,             //     nlattr len 6, CTA_PROTO_SRC_PORT (2)
    0x9c, 0x40, 0, 0,       //       40000 big-endian, padding
    6, 0, 3, 0,             //     nlattr len 6, CTA_PROTO_DST_PORT (3)
    0, 53, 0, 0,            //       53 big-endian, padding
];

#[test]
fn delete_ipv4_carries_the_whole_original_tuple() {
    assert_eq!(
        encode_delete(&UdpEntry::new(dns_flow()), 42),
        DELETE_V4.to_vec()
    );
}

#[test]
fn delete_ipv6_in_a_zone_with_its_id() {
    let entry = UdpEntry {
        flow: dns_flow_v6(),
        zone: 5,
        id: Some(0xdead_beef),
    };
    #[rustfmt::skip]
    let expected: Vec<u8> = vec![
        112, 0, 0, 0,       // nlmsg_len 112
        0x02, 0x01,         // IPCTNL_MSG_CT_DELETE
        0x05, 0x00,         // NLM_F_REQUEST | NLM_F_ACK
        3, 0, 0, 0,         // seq 3
        0, 0, 0, 0,         // pid 0
        10, 0, 0, 0,        // nfgenmsg: AF_INET6, NFNETLINK_V0, res_id 0
        76, 0, 0x01, 0x80,  // nlattr len 76, CTA_TUPLE_ORIG | NLA_F_NESTED
        44, 0, 0x01, 0x80,  //   nlattr len 44, CTA_TUPLE_IP | NLA_F_NESTED
        20, 0, 3, 0,        //     nlattr len 20, CTA_IP_V6_SRC (3)
        0xfd, 0, 0, 0,      //       fd00::9
        0, 0, 0, 0,
        0, 0, 0, 0,
        0, 0, 0, 9,
        20, 0, 4, 0,        //     nlattr len 20, CTA_IP_V6_DST (4)
        0xfd, 0, 0, 0,      //       fd00::10
        0, 0, 0, 0,
        0, 0, 0, 0,
        0, 0, 0, 0x10,
        28, 0, 0x02, 0x80,  //   nlattr len 28, CTA_TUPLE_PROTO | NLA_F_NESTED
        5, 0, 1, 0,         //     CTA_PROTO_NUM
        17, 0, 0, 0,        //       IPPROTO_UDP, padding
        6, 0, 2, 0,         //     CTA_PROTO_SRC_PORT
        0x9c, 0x40, 0, 0,   //       40000
        6, 0, 3, 0,         //     CTA_PROTO_DST_PORT
        0, 53, 0, 0,        //       53
        6, 0, 18, 0,        // nlattr len 6, CTA_ZONE (18)
        0, 5, 0, 0,         //   zone 5 big-endian, padding
        8, 0, 12, 0,        // nlattr len 8, CTA_ID (12)
        0xde, 0xad, 0xbe, 0xef, // the id as the dump gave it (big-endian)
    ];
    assert_eq!(encode_delete(&entry, 3), expected);
}

/// A dump answer as Linux 6.18 sent it (captured from a namespace holding two flows
/// made by `conntrack -I`, one in zone 5), then a TCP entry written by hand, then the
/// end.
#[rustfmt::skip]
fn kernel_dump_answer() -> Vec<u8> {
    let zoned_udp_entry: Vec<u8> = vec![
        200, 0, 0, 0,       // nlmsg_len 200
        0x00, 0x01,         // type 0x0100: CTNETLINK << 8 | IPCTNL_MSG_CT_NEW (0)
        0x22, 0x00,         // flags NLM_F_MULTI (0x2) | NLM_F_DUMP_FILTERED (0x20)
        9, 0, 0, 0,         // seq 9
        0x34, 0x12, 0, 0,   // pid: our port id
        2, 0, 0, 0,         // nfgenmsg: AF_INET, NFNETLINK_V0, res_id 0
        52, 0, 0x01, 0x80,  // CTA_TUPLE_ORIG | NLA_F_NESTED, len 52
        20, 0, 0x01, 0x80,  //   CTA_TUPLE_IP
        8, 0, 1, 0,         //     CTA_IP_V4_SRC
        10, 0, 0, 9,        //       10.0.0.9
        8, 0, 2, 0,         //     CTA_IP_V4_DST
        172, 30, 0, 10,     //       172.30.0.10
        28, 0, 0x02, 0x80,  //   CTA_TUPLE_PROTO
        5, 0, 1, 0,         //     CTA_PROTO_NUM
        17, 0, 0, 0,        //       UDP
        6, 0, 2, 0,         //     CTA_PROTO_SRC_PORT
        0x9c, 0x41, 0, 0,   //       40001
        6, 0, 3, 0,         //     CTA_PROTO_DST_PORT
        0, 53, 0, 0,        //       53
        52, 0, 0x02, 0x80,  // CTA_TUPLE_REPLY | NLA_F_NESTED, len 52
        20, 0, 0x01, 0x80,  //   CTA_TUPLE_IP
        8, 0, 1, 0,         //     CTA_IP_V4_SRC
        10, 180, 0, 5,      //       10.180.0.5: the DNAT target
        8, 0, 2, 0,         //     CTA_IP_V4_DST
        10, 0, 0, 9,        //       10.0.0.9
        28, 0, 0x02, 0x80,  //   CTA_TUPLE_PROTO
        5, 0, 1, 0,         //     CTA_PROTO_NUM
        17, 0, 0, 0,        //       UDP
        6, 0, 2, 0,         //     CTA_PROTO_SRC_PORT
        0, 53, 0, 0,        //       53
        6, 0, 3, 0,         //     CTA_PROTO_DST_PORT
        0x9c, 0x41, 0, 0,   //       40001
        6, 0, 18, 0,        // CTA_ZONE (18), be16
        0, 5, 0, 0,         //   zone 5, padding
        8, 0, 3, 0,         // CTA_STATUS (3), be32
        0, 0, 0, 8,         //   IPS_CONFIRMED (1 << 3)
        8, 0, 8, 0,         // CTA_MARK (8), be32
        0, 0, 0, 0,         //   0
        8, 0, 12, 0,        // CTA_ID (12), be32
        0x56, 0x65, 0x80, 0xfb,
        8, 0, 11, 0,        // CTA_USE (11), be32
        0, 0, 0, 1,         //   1
        8, 0, 7, 0,         // CTA_TIMEOUT (7), be32
        0, 0, 0, 59,        //   59 s
        28, 0, 0x18, 0x80,  // CTA_SYNPROXY (24) | NLA_F_NESTED: not used here
        8, 0, 1, 0,         //   CTA_SYNPROXY_ISN
        0, 0, 0, 0,
        8, 0, 2, 0,         //   CTA_SYNPROXY_ITS
        0, 0, 0, 0,
        8, 0, 3, 0,         //   CTA_SYNPROXY_TSOFF
        0, 0, 0, 0,
    ];
    let udp_entry: Vec<u8> = vec![
        192, 0, 0, 0,       // nlmsg_len 192
        0x00, 0x01,         // IPCTNL_MSG_CT_NEW
        0x22, 0x00,         // NLM_F_MULTI | NLM_F_DUMP_FILTERED
        9, 0, 0, 0,         // seq 9
        0x34, 0x12, 0, 0,   // pid
        2, 0, 0, 0,         // AF_INET
        52, 0, 0x01, 0x80,  // CTA_TUPLE_ORIG
        20, 0, 0x01, 0x80,  //   CTA_TUPLE_IP
        8, 0, 1, 0,         //     CTA_IP_V4_SRC
        10, 0, 0, 9,
        8, 0, 2, 0,         //     CTA_IP_V4_DST
        172, 30, 0, 10,
        28, 0, 0x02, 0x80,  //   CTA_TUPLE_PROTO
        5, 0, 1, 0,         //     CTA_PROTO_NUM
        17, 0, 0, 0,
        6, 0, 2, 0,         //     CTA_PROTO_SRC_PORT
        0x9c, 0x40, 0, 0,   //       40000
        6, 0, 3, 0,         //     CTA_PROTO_DST_PORT
        0, 53, 0, 0,
        52, 0, 0x02, 0x80,  // CTA_TUPLE_REPLY
        20, 0, 0x01, 0x80,
        8, 0, 1, 0,
        10, 180, 0, 5,
        8, 0, 2, 0,
        10, 0, 0, 9,
        28, 0, 0x02, 0x80,
        5, 0, 1, 0,
        17, 0, 0, 0,
        6, 0, 2, 0,
        0, 53, 0, 0,
        6, 0, 3, 0,
        0x9c, 0x40, 0, 0,
        8, 0, 3, 0,         // CTA_STATUS: IPS_CONFIRMED (no CTA_ZONE: zone 0)
        0, 0, 0, 8,
        8, 0, 8, 0,         // CTA_MARK
        0, 0, 0, 0,
        8, 0, 12, 0,        // CTA_ID
        0x5d, 0x4e, 0x39, 0xaf,
        8, 0, 11, 0,        // CTA_USE
        0, 0, 0, 1,
        8, 0, 7, 0,         // CTA_TIMEOUT
        0, 0, 0, 59,
        28, 0, 0x18, 0x80,  // CTA_SYNPROXY
        8, 0, 1, 0,
        0, 0, 0, 0,
        8, 0, 2, 0,
        0, 0, 0, 0,
        8, 0, 3, 0,
        0, 0, 0, 0,
    ];
    let tcp_entry: Vec<u8> = vec![
        124, 0, 0, 0,       // nlmsg_len 124
        0x00, 0x01,         // IPCTNL_MSG_CT_NEW
        0x22, 0x00,         // NLM_F_MULTI | NLM_F_DUMP_FILTERED
        9, 0, 0, 0,         // seq 9
        0x34, 0x12, 0, 0,   // pid
        2, 0, 0, 0,         // AF_INET
        52, 0, 0x01, 0x80,  // CTA_TUPLE_ORIG
        20, 0, 0x01, 0x80,  //   CTA_TUPLE_IP
        8, 0, 1, 0,         //     CTA_IP_V4_SRC
        10, 0, 0, 9,
        8, 0, 2, 0,         //     CTA_IP_V4_DST
        172, 30, 0, 10,
        28, 0, 0x02, 0x80,  //   CTA_TUPLE_PROTO
        5, 0, 1, 0,         //     CTA_PROTO_NUM
        6, 0, 0, 0,         //       TCP: not ours
        6, 0, 2, 0,
        0x9c, 0x40, 0, 0,
        6, 0, 3, 0,
        0, 53, 0, 0,
        52, 0, 0x02, 0x80,  // CTA_TUPLE_REPLY
        20, 0, 0x01, 0x80,
        8, 0, 1, 0,
        10, 180, 0, 5,
        8, 0, 2, 0,
        10, 0, 0, 9,
        28, 0, 0x02, 0x80,
        5, 0, 1, 0,
        6, 0, 0, 0,
        6, 0, 2, 0,
        0, 53, 0, 0,
        6, 0, 3, 0,
        0x9c, 0x40, 0, 0,
    ];
    let mut all = zoned_udp_entry;
    all.extend(udp_entry);
    all.extend(tcp_entry);
    all.extend(done(9, 0));
    all
}

#[test]
fn kernel_dump_answer_decodes_the_udp_entry_and_skips_the_rest() {
    let dump = decode_dump(&kernel_dump_answer(), 9).unwrap();
    let mut zoned = dns_flow();
    zoned.orig_sport = 40001;
    zoned.reply_dport = 40001;
    assert_eq!(
        dump.entries,
        vec![
            UdpEntry {
                flow: zoned,
                zone: 5,
                id: Some(0x5665_80fb),
            },
            UdpEntry {
                flow: dns_flow(),
                zone: 0,
                id: Some(0x5d4e_39af),
            },
        ]
    );
    assert_eq!(dump.skipped, 1);
    assert!(!dump.interrupted);
    // The same bytes, one datagram per message, through the streaming reader.
    let buf = kernel_dump_answer();
    let mut reader = DumpReader::new(9);
    let messages = split_messages(&buf).unwrap();
    let mut at = 0;
    for (i, m) in messages.iter().enumerate() {
        let len = m.header.length as usize;
        let finished = reader.feed(&buf[at..at + len]).unwrap();
        assert_eq!(finished, i == messages.len() - 1);
        at += len;
    }
    assert!(reader.is_done());
    assert_eq!(reader.finish(), dump);
}

#[test]
fn nested_attributes_without_the_nested_flag_decode_too() {
    let mut buf = kernel_dump_answer();
    // Clear NLA_F_NESTED on the first entry's CTA_TUPLE_ORIG, CTA_TUPLE_IP, CTA_TUPLE_PROTO.
    for at in [23, 27, 47] {
        assert_eq!(buf[at], 0x80, "byte {at}");
        buf[at] = 0;
    }
    assert_eq!(
        decode_dump(&buf, 9).unwrap().entries[0].flow.reply_src,
        ip("10.180.0.5")
    );
}

#[test]
fn a_tuple_zone_counts_when_there_is_no_cta_zone() {
    let mut msg = encode_entry_message(&UdpEntry::new(dns_flow_v6()), 1, NLM_F_MULTI);
    // Append CTA_TUPLE_ZONE (3) = 7 inside CTA_TUPLE_ORIG: grow the message and the
    // original tuple by 8 bytes.
    let orig_at = 20;
    let orig_len = u16::from_le_bytes([msg[orig_at], msg[orig_at + 1]]) as usize;
    #[rustfmt::skip]
    let zone_attr = [
        6, 0, 3, 0,         // nlattr len 6, CTA_TUPLE_ZONE (3)
        0, 7, 0, 0,         //   zone 7 big-endian, padding
    ];
    msg.splice(
        orig_at + orig_len..orig_at + orig_len,
        zone_attr.iter().copied(),
    );
    msg[orig_at..orig_at + 2].copy_from_slice(&((orig_len + 8) as u16).to_le_bytes());
    let total = msg.len() as u32;
    msg[0..4].copy_from_slice(&total.to_le_bytes());
    let entry = decode_entry(&msg[16..]).unwrap().unwrap();
    assert_eq!(entry.zone, 7);
    assert_eq!(entry.flow, dns_flow_v6());
}

#[test]
fn answers_to_other_requests_are_ignored() {
    let mut buf = encode_entry_message(&UdpEntry::new(dns_flow()), 8, NLM_F_MULTI);
    buf.extend(done(8, 0));
    buf.extend(encode_entry_message(
        &UdpEntry::new(dns_flow_v6()),
        9,
        NLM_F_MULTI,
    ));
    buf.extend(done(9, 0));
    let dump = decode_dump(&buf, 9).unwrap();
    assert_eq!(dump.entries, vec![UdpEntry::new(dns_flow_v6())]);
}

#[test]
fn an_interrupted_dump_is_flagged() {
    let mut buf = encode_entry_message(&UdpEntry::new(dns_flow()), 4, NLM_F_MULTI | 0x10);
    buf.extend(done(4, 0));
    let dump = decode_dump(&buf, 4).unwrap();
    assert!(dump.interrupted);
    assert_eq!(dump.entries.len(), 1);
}

#[test]
fn a_dump_refused_for_permission_is_the_kernels_errno() {
    #[rustfmt::skip]
    let answer: [u8; 36] = [
        36, 0, 0, 0,        // nlmsg_len 36
        2, 0,               // NLMSG_ERROR
        0x00, 0x01,         // NLM_F_CAPPED (0x100): the request's payload left out
        9, 0, 0, 0,         // seq 9
        0x34, 0x12, 0, 0,   // pid
        0xff, 0xff, 0xff, 0xff, // error -1: -EPERM
        48, 0, 0, 0,        // the request's header: nlmsg_len 48
        0x01, 0x01,         //   IPCTNL_MSG_CT_GET
        0x01, 0x03,         //   NLM_F_REQUEST | NLM_F_DUMP
        9, 0, 0, 0,         //   seq 9
        0, 0, 0, 0,         //   pid 0
    ];
    let err = decode_dump(&answer, 9).unwrap_err();
    assert_eq!(
        err,
        ReplyError::Kernel {
            errno: 1,
            message: None
        }
    );
    assert_eq!(err.to_string(), "Operation not permitted (errno 1)");
}

#[test]
fn a_dump_ending_with_an_error_code_fails() {
    let mut buf = encode_entry_message(&UdpEntry::new(dns_flow()), 5, NLM_F_MULTI);
    buf.extend(done(5, -4)); // -EINTR in NLMSG_DONE's payload
    assert_eq!(
        decode_dump(&buf, 5).unwrap_err(),
        ReplyError::Kernel {
            errno: 4,
            message: None
        }
    );
    // Without NLMSG_DONE the answer is incomplete.
    let partial = encode_entry_message(&UdpEntry::new(dns_flow()), 5, NLM_F_MULTI);
    assert!(matches!(
        decode_dump(&partial, 5),
        Err(ReplyError::Decode(_))
    ));
}

#[test]
fn delete_ack_and_errors() {
    #[rustfmt::skip]
    let ack: [u8; 36] = [
        36, 0, 0, 0,        // nlmsg_len 36
        2, 0,               // NLMSG_ERROR
        0x00, 0x01,         // NLM_F_CAPPED
        42, 0, 0, 0,        // seq 42
        0x34, 0x12, 0, 0,   // pid
        0, 0, 0, 0,         // error 0: an acknowledgement
        72, 0, 0, 0,        // the request's header: nlmsg_len 72
        0x02, 0x01,         //   IPCTNL_MSG_CT_DELETE
        0x05, 0x00,         //   NLM_F_REQUEST | NLM_F_ACK
        42, 0, 0, 0,        //   seq 42
        0, 0, 0, 0,         //   pid 0
    ];
    assert_eq!(decode_ack(&ack, 42), Ok(true));
    assert_eq!(decode_ack(&ack, 41), Ok(false), "another request's answer");

    #[rustfmt::skip]
    let enoent: [u8; 52] = [
        52, 0, 0, 0,        // nlmsg_len 52
        2, 0,               // NLMSG_ERROR
        0x00, 0x03,         // NLM_F_CAPPED | NLM_F_ACK_TLVS (0x200)
        42, 0, 0, 0,        // seq 42
        0x34, 0x12, 0, 0,   // pid
        0xfe, 0xff, 0xff, 0xff, // error -2: -ENOENT
        72, 0, 0, 0,        // the request's header
        0x02, 0x01,
        0x05, 0x00,
        42, 0, 0, 0,
        0, 0, 0, 0,
        14, 0, 1, 0,        // nlattr len 14, NLMSGERR_ATTR_MSG (1)
        b'n', b'o', b't', b' ',
        b'f', b'o', b'u', b'n',
        b'd', 0, 0, 0,      //   "not found\0", padding
    ];
    let err = decode_ack(&enoent, 42).unwrap_err();
    assert_eq!(
        err,
        ReplyError::Kernel {
            errno: 2,
            message: Some("not found".into())
        }
    );
    assert_eq!(
        err.to_string(),
        "No such file or directory: not found (errno 2)"
    );
}

#[test]
fn message_types_and_families() {
    assert_eq!(
        ctnetlink::message_type(ctnetlink::IPCTNL_MSG_CT_GET),
        0x0101
    );
    assert_eq!(
        ctnetlink::message_type(ctnetlink::IPCTNL_MSG_CT_DELETE),
        0x0102
    );
    assert_eq!(ctnetlink::nfgen_family(IpFamily::V4), 2);
    assert_eq!(ctnetlink::nfgen_family(IpFamily::V6), 10);
}

#[test]
fn truncated_answers_are_errors() {
    let buf = kernel_dump_answer();
    for cut in 0..buf.len() {
        assert!(decode_dump(&buf[..cut], 9).is_err(), "cut at {cut}");
    }
}

#[test]
fn a_missing_namespace_is_an_io_error_naming_it() {
    let err = NetlinkConntrack::in_netns("/nonexistent/netns/x").unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err:?}");
    assert!(err.to_string().contains("/nonexistent/netns/x"), "{err}");
}

fn any_ip(v6: bool) -> BoxedStrategy<IpAddr> {
    if v6 {
        any::<[u8; 16]>().prop_map(IpAddr::from).boxed()
    } else {
        any::<[u8; 4]>().prop_map(IpAddr::from).boxed()
    }
}

fn any_entry() -> impl Strategy<Value = UdpEntry> {
    any::<bool>().prop_flat_map(|v6| {
        (
            [any_ip(v6), any_ip(v6), any_ip(v6), any_ip(v6)],
            any::<[u16; 4]>(),
            any::<u16>(),
            any::<Option<u32>>(),
        )
            .prop_map(|([a, b, c, d], [p, q, r, s], zone, id)| UdpEntry {
                flow: Flow {
                    orig_src: a,
                    orig_dst: b,
                    orig_sport: p,
                    orig_dport: q,
                    reply_src: c,
                    reply_dst: d,
                    reply_sport: r,
                    reply_dport: s,
                },
                zone,
                id,
            })
    })
}

proptest! {
    #[test]
    fn entries_round_trip(entries in proptest::collection::vec(any_entry(), 0..8), seq in 1u32..) {
        let mut buf = Vec::new();
        for e in &entries {
            let msg = encode_entry_message(e, seq, NLM_F_MULTI);
            prop_assert_eq!(decode_entry(&msg[16..]).unwrap(), Some(e.clone()));
            buf.extend(msg);
        }
        buf.extend(done(seq, 0));
        let dump = decode_dump(&buf, seq).unwrap();
        prop_assert_eq!(dump.entries, entries);
        prop_assert_eq!(dump.skipped, 0);
    }

    #[test]
    fn deletes_always_carry_the_original_tuple(entry in any_entry(), seq in any::<u32>()) {
        let msg = encode_delete(&entry, seq);
        let msgs = split_messages(&msg).unwrap();
        prop_assert_eq!(msgs.len(), 1);
        prop_assert_eq!(msgs[0].header.length as usize, msg.len());
        prop_assert_eq!(msgs[0].header.message_type, 0x0102);
        prop_assert_eq!(msgs[0].header.seq, seq);
        let family = if entry.flow.orig_dst.is_ipv4() { 2 } else { 10 };
        prop_assert_eq!(msgs[0].payload[0], family);
        let attrs = parse_attrs(&msgs[0].payload[4..]).unwrap();
        let orig = attrs.iter().find(|a| a.kind == ctnetlink::CTA_TUPLE_ORIG).unwrap();
        let tuple = orig.nested().unwrap();
        prop_assert_eq!(tuple.len(), 2);
        prop_assert_eq!(
            attrs.iter().any(|a| a.kind == ctnetlink::CTA_ZONE),
            entry.zone != 0
        );
        prop_assert_eq!(attrs.iter().any(|a| a.kind == ctnetlink::CTA_ID), entry.id.is_some());
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512), seq in 0u32..4) {
        let _ = decode_dump(&bytes, seq);
        let _ = decode_ack(&bytes, seq);
        let _ = decode_entry(&bytes);
        let mut reader = DumpReader::new(seq);
        let _ = reader.feed(&bytes);
    }

    #[test]
    fn corrupted_answers_never_panic(
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut buf = kernel_dump_answer();
        for (at, byte) in flips {
            let i = at.index(buf.len());
            buf[i] = byte;
        }
        let end = cut.index(buf.len() + 1);
        let _ = decode_dump(&buf[..end], 9);
        let _ = decode_ack(&buf[..end], 9);
        if buf.len() > 16 {
            let _ = decode_entry(&buf[16..end.max(16)]);
        }
    }
}
