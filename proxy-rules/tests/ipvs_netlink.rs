//! Golden bytes of the generic netlink IPVS protocol.
//!
//! Every expected message below is written out by hand from the kernel's uapi headers
//! (`include/uapi/linux/netlink.h`, `genetlink.h`, `ip_vs.h`), one field per line, so a
//! reader can check each byte. Netlink headers and attribute headers are in host byte
//! order: these tests describe a little-endian host (x86_64, aarch64); ports are in
//! network order on every host.
//!
//! Layout reminders:
//! - `nlmsghdr`: u32 length (whole message), u16 type, u16 flags, u32 seq, u32 pid.
//! - `genlmsghdr`: u8 cmd, u8 version, u16 reserved.
//! - `nlattr`: u16 length (4 + payload, unpadded), u16 type, payload, zero padding to
//!   a multiple of 4.
#![cfg(target_endian = "little")]

use proptest::prelude::*;
use proxy_rules::ipvs::netlink::{self, IpvsCommand, Reply};
use proxy_rules::ipvs::{Destination, ForwardMethod, RealServer, ServiceFlags, VirtualServer};
use proxy_rules::model::Protocol;

/// The IPVS family id used in these messages (the kernel assigns one at boot).
const FAMILY: u16 = 0x25;

fn cluster_ip_service() -> VirtualServer {
    VirtualServer::new("10.96.0.1".parse().unwrap(), Protocol::Tcp, 443, "rr")
}

/// The nested `IPVS_CMD_ATTR_SERVICE` of `cluster_ip_service()`: 84 bytes.
#[rustfmt::skip]
const SERVICE_10_96_0_1_443_TCP: [u8; 84] = [
    84, 0, 1, 0,                 // nlattr len 84, type IPVS_CMD_ATTR_SERVICE (1)
    6, 0, 1, 0,                  //   nlattr len 6, IPVS_SVC_ATTR_AF (1)
    2, 0, 0, 0,                  //     AF_INET (2) as u16, 2 bytes padding
    6, 0, 2, 0,                  //   nlattr len 6, IPVS_SVC_ATTR_PROTOCOL (2)
    6, 0, 0, 0,                  //     IPPROTO_TCP (6) as u16, padding
    20, 0, 3, 0,                 //   nlattr len 20, IPVS_SVC_ATTR_ADDR (3)
    10, 96, 0, 1,                //     union nf_inet_addr: 10.96.0.1 ...
    0, 0, 0, 0,                  //     ... then 12 zero bytes
    0, 0, 0, 0,
    0, 0, 0, 0,
    6, 0, 4, 0,                  //   nlattr len 6, IPVS_SVC_ATTR_PORT (4)
    0x01, 0xbb, 0, 0,            //     443 in network order, padding
    7, 0, 6, 0,                  //   nlattr len 7, IPVS_SVC_ATTR_SCHED_NAME (6)
    b'r', b'r', 0, 0,            //     "rr\0", 1 byte padding
    12, 0, 7, 0,                 //   nlattr len 12, IPVS_SVC_ATTR_FLAGS (7)
    0, 0, 0, 0,                  //     struct ip_vs_flags.flags = 0
    0xff, 0xff, 0xff, 0xff,      //     struct ip_vs_flags.mask = 0xffffffff
    8, 0, 8, 0,                  //   nlattr len 8, IPVS_SVC_ATTR_TIMEOUT (8)
    0, 0, 0, 0,                  //     0 seconds
    8, 0, 9, 0,                  //   nlattr len 8, IPVS_SVC_ATTR_NETMASK (9)
    0xff, 0xff, 0xff, 0xff,      //     0xffffffff (kube-proxy's IPv4 netmask)
];

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.iter().flat_map(|p| p.iter().copied()).collect()
}

#[test]
fn get_family_ipvs() {
    #[rustfmt::skip]
    let want: [u8; 32] = [
        32, 0, 0, 0,             // nlmsg_len 32
        0x10, 0,                 // nlmsg_type GENL_ID_CTRL (0x10)
        0x05, 0,                 // nlmsg_flags NLM_F_REQUEST (1) | NLM_F_ACK (4)
        1, 0, 0, 0,              // nlmsg_seq 1
        0, 0, 0, 0,              // nlmsg_pid 0 (the kernel)
        3, 1, 0, 0,              // genl cmd CTRL_CMD_GETFAMILY (3), version 1, reserved
        9, 0, 2, 0,              // nlattr len 9, CTRL_ATTR_FAMILY_NAME (2)
        b'I', b'P', b'V', b'S',  //   "IPVS" ...
        0, 0, 0, 0,              //   ... NUL, 3 bytes padding
    ];
    assert_eq!(netlink::encode_get_family("IPVS", 1), want);
}

#[test]
fn new_service() {
    #[rustfmt::skip]
    let header: [u8; 20] = [
        104, 0, 0, 0,            // nlmsg_len 104 = 16 + 4 + 84
        0x25, 0,                 // nlmsg_type: the IPVS family id
        0x05, 0,                 // NLM_F_REQUEST | NLM_F_ACK
        2, 0, 0, 0,              // seq 2
        0, 0, 0, 0,              // pid 0
        1, 1, 0, 0,              // IPVS_CMD_NEW_SERVICE (1), IPVS_GENL_VERSION 1
    ];
    let got = netlink::encode_service(FAMILY, IpvsCommand::NewService, 2, &cluster_ip_service());
    assert_eq!(got, cat(&[&header, &SERVICE_10_96_0_1_443_TCP]));
}

#[test]
fn set_and_delete_service_differ_only_in_the_command() {
    let svc = cluster_ip_service();
    for (cmd, number) in [(IpvsCommand::SetService, 2u8), (IpvsCommand::DelService, 3)] {
        let got = netlink::encode_service(FAMILY, cmd, 2, &svc);
        let mut want = netlink::encode_service(FAMILY, IpvsCommand::NewService, 2, &svc);
        want[16] = number; // genlmsghdr.cmd
        assert_eq!(got, want, "{cmd}");
    }
}

#[test]
fn new_destination() {
    let dest = RealServer::masquerade("10.180.0.1".parse().unwrap(), 8080);
    #[rustfmt::skip]
    let header: [u8; 20] = [
        176, 0, 0, 0,            // nlmsg_len 176 = 16 + 4 + 84 + 72
        0x25, 0,                 // the IPVS family id
        0x05, 0,                 // NLM_F_REQUEST | NLM_F_ACK
        3, 0, 0, 0,              // seq 3
        0, 0, 0, 0,              // pid 0
        5, 1, 0, 0,              // IPVS_CMD_NEW_DEST (5), version 1
    ];
    #[rustfmt::skip]
    let dest_attr: [u8; 72] = [
        72, 0, 2, 0,             // nlattr len 72, IPVS_CMD_ATTR_DEST (2)
        20, 0, 1, 0,             //   nlattr len 20, IPVS_DEST_ATTR_ADDR (1)
        10, 180, 0, 1,           //     10.180.0.1 ...
        0, 0, 0, 0,              //     ... 12 zero bytes
        0, 0, 0, 0,
        0, 0, 0, 0,
        6, 0, 2, 0,              //   nlattr len 6, IPVS_DEST_ATTR_PORT (2)
        0x1f, 0x90, 0, 0,        //     8080 in network order, padding
        8, 0, 3, 0,              //   nlattr len 8, IPVS_DEST_ATTR_FWD_METHOD (3)
        0, 0, 0, 0,              //     IP_VS_CONN_F_MASQ (0)
        8, 0, 4, 0,              //   nlattr len 8, IPVS_DEST_ATTR_WEIGHT (4)
        1, 0, 0, 0,              //     weight 1
        8, 0, 5, 0,              //   nlattr len 8, IPVS_DEST_ATTR_U_THRESH (5)
        0, 0, 0, 0,              //     0: no upper threshold
        8, 0, 6, 0,              //   nlattr len 8, IPVS_DEST_ATTR_L_THRESH (6)
        0, 0, 0, 0,              //     0: no lower threshold
        6, 0, 11, 0,             //   nlattr len 6, IPVS_DEST_ATTR_ADDR_FAMILY (11)
        2, 0, 0, 0,              //     AF_INET as u16, padding
    ];
    let got = netlink::encode_destination(
        FAMILY,
        IpvsCommand::NewDest,
        3,
        &cluster_ip_service(),
        &dest,
    );
    assert_eq!(got, cat(&[&header, &SERVICE_10_96_0_1_443_TCP, &dest_attr]));
    // Draining is IPVS_CMD_SET_DEST (6) with weight 0.
    let drain = netlink::encode_destination(
        FAMILY,
        IpvsCommand::SetDest,
        3,
        &cluster_ip_service(),
        &dest.with_weight(0),
    );
    assert_eq!(drain[16], 6);
    assert_eq!(drain[20 + 84 + 4 + 20 + 8 + 8 + 4..][..4], [0, 0, 0, 0]);
}

#[test]
fn delete_persistent_ipv6_service() {
    let mut svc = VirtualServer::new("fd00::1".parse().unwrap(), Protocol::Udp, 53, "rr");
    svc.flags = ServiceFlags::PERSISTENT;
    svc.timeout = 10_800;
    #[rustfmt::skip]
    let want: [u8; 104] = [
        104, 0, 0, 0,            // nlmsg_len 104
        0x25, 0,                 // the IPVS family id
        0x05, 0,                 // NLM_F_REQUEST | NLM_F_ACK
        4, 0, 0, 0,              // seq 4
        0, 0, 0, 0,              // pid 0
        3, 1, 0, 0,              // IPVS_CMD_DEL_SERVICE (3), version 1
        84, 0, 1, 0,             // nlattr len 84, IPVS_CMD_ATTR_SERVICE
        6, 0, 1, 0,              //   IPVS_SVC_ATTR_AF
        10, 0, 0, 0,             //     AF_INET6 (10), padding
        6, 0, 2, 0,              //   IPVS_SVC_ATTR_PROTOCOL
        17, 0, 0, 0,             //     IPPROTO_UDP (17), padding
        20, 0, 3, 0,             //   IPVS_SVC_ATTR_ADDR
        0xfd, 0, 0, 0,           //     fd00::1, all 16 bytes
        0, 0, 0, 0,
        0, 0, 0, 0,
        0, 0, 0, 1,
        6, 0, 4, 0,              //   IPVS_SVC_ATTR_PORT
        0, 53, 0, 0,             //     53 in network order, padding
        7, 0, 6, 0,              //   IPVS_SVC_ATTR_SCHED_NAME
        b'r', b'r', 0, 0,        //     "rr\0", padding
        12, 0, 7, 0,             //   IPVS_SVC_ATTR_FLAGS
        1, 0, 0, 0,              //     IP_VS_SVC_F_PERSISTENT (1)
        0xff, 0xff, 0xff, 0xff,  //     mask
        8, 0, 8, 0,              //   IPVS_SVC_ATTR_TIMEOUT
        0x30, 0x2a, 0, 0,        //     10800 = 0x2a30 seconds
        8, 0, 9, 0,              //   IPVS_SVC_ATTR_NETMASK
        128, 0, 0, 0,            //     128 (kube-proxy's IPv6 netmask: a prefix length)
    ];
    assert_eq!(
        netlink::encode_service(FAMILY, IpvsCommand::DelService, 4, &svc),
        want
    );
}

#[test]
fn dump_services_flush_and_timeouts() {
    #[rustfmt::skip]
    let dump: [u8; 24] = [
        24, 0, 0, 0,             // nlmsg_len 24
        0x25, 0,                 // the IPVS family id
        0x05, 0x03,              // NLM_F_REQUEST | NLM_F_ACK | NLM_F_DUMP (0x300)
        5, 0, 0, 0,              // seq 5
        0, 0, 0, 0,              // pid 0
        4, 1, 0, 0,              // IPVS_CMD_GET_SERVICE (4), version 1
        4, 0, 1, 0,              // empty IPVS_CMD_ATTR_SERVICE (as moby/ipvs sends)
    ];
    assert_eq!(netlink::encode_dump_services(FAMILY, 5), dump);

    #[rustfmt::skip]
    let flush: [u8; 20] = [
        20, 0, 0, 0,             // nlmsg_len 20: no attribute
        0x25, 0,
        0x05, 0,                 // NLM_F_REQUEST | NLM_F_ACK
        6, 0, 0, 0,              // seq 6
        0, 0, 0, 0,
        17, 1, 0, 0,             // IPVS_CMD_FLUSH (17), version 1
    ];
    assert_eq!(netlink::encode_flush(FAMILY, 6), flush);

    #[rustfmt::skip]
    let timeouts: [u8; 44] = [
        44, 0, 0, 0,             // nlmsg_len 44 = 16 + 4 + 3 * 8
        0x25, 0,
        0x05, 0,
        7, 0, 0, 0,              // seq 7
        0, 0, 0, 0,
        12, 1, 0, 0,             // IPVS_CMD_SET_CONFIG (12), version 1
        8, 0, 4, 0,              // IPVS_CMD_ATTR_TIMEOUT_TCP (4)
        0x84, 0x03, 0, 0,        //   900 s
        8, 0, 5, 0,              // IPVS_CMD_ATTR_TIMEOUT_TCP_FIN (5)
        120, 0, 0, 0,            //   120 s
        8, 0, 6, 0,              // IPVS_CMD_ATTR_TIMEOUT_UDP (6)
        0x2c, 0x01, 0, 0,        //   300 s
    ];
    assert_eq!(
        netlink::encode_set_timeouts(FAMILY, 7, 900, 120, 300),
        timeouts
    );

    // A destination dump carries the service, with NLM_F_DUMP.
    let dests = netlink::encode_dump_destinations(FAMILY, 8, &cluster_ip_service());
    assert_eq!(&dests[4..8], [0x25, 0, 0x05, 0x03]);
    assert_eq!(dests[16], 8); // IPVS_CMD_GET_DEST
    assert_eq!(&dests[20..], SERVICE_10_96_0_1_443_TCP);
}

#[test]
fn family_reply_is_decoded() {
    // The controller's answer to CTRL_CMD_GETFAMILY (trimmed to two attributes).
    #[rustfmt::skip]
    let reply: [u8; 44] = [
        44, 0, 0, 0,             // nlmsg_len 44 = 16 + 4 + 12 + 8 + 4
        0x10, 0,                 // GENL_ID_CTRL
        0, 0,                    // no flags
        1, 0, 0, 0,              // seq 1 (the request's)
        0x39, 0x30, 0, 0,        // pid: our port id
        1, 2, 0, 0,              // CTRL_CMD_NEWFAMILY (1), version 2
        9, 0, 2, 0,              // CTRL_ATTR_FAMILY_NAME
        b'I', b'P', b'V', b'S',
        0, 0, 0, 0,
        6, 0, 1, 0,              // CTRL_ATTR_FAMILY_ID
        0x25, 0, 0, 0,           //   0x25, padding
        4, 0, 3, 0,              // CTRL_ATTR_VERSION with no payload (ignored)
    ];
    let msgs = netlink::split_messages(&reply).unwrap();
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].header.seq, 1);
    let Reply::Data { cmd, attrs } = netlink::classify(&msgs[0]).unwrap() else {
        panic!("not data");
    };
    assert_eq!(cmd, 1);
    assert_eq!(netlink::decode_family_id(attrs).unwrap(), 0x25);
}

#[test]
fn errors_and_acks_are_decoded() {
    // What a kernel without IP_VS answers to CTRL_CMD_GETFAMILY "IPVS".
    #[rustfmt::skip]
    let enoent: [u8; 36] = [
        36, 0, 0, 0,             // nlmsg_len 36
        2, 0,                    // NLMSG_ERROR
        0x00, 0x01,              // NLM_F_CAPPED (0x100): request payload left out
        1, 0, 0, 0,              // seq 1
        0x39, 0x30, 0, 0,        // our port id
        0xfe, 0xff, 0xff, 0xff,  // error -2 (-ENOENT)
        32, 0, 0, 0,             // the request's header: len 32 ...
        0x10, 0, 0x05, 0,        //   ... GENL_ID_CTRL, REQUEST | ACK
        1, 0, 0, 0,              //   ... seq 1
        0, 0, 0, 0,              //   ... pid 0
    ];
    let msgs = netlink::split_messages(&enoent).unwrap();
    assert_eq!(
        netlink::classify(&msgs[0]).unwrap(),
        Reply::Error {
            errno: 2,
            message: None
        }
    );

    // With extended ack: the kernel's text after the capped request header.
    #[rustfmt::skip]
    let einval: [u8; 48] = [
        48, 0, 0, 0,             // nlmsg_len 48
        2, 0,                    // NLMSG_ERROR
        0x00, 0x03,              // NLM_F_CAPPED | NLM_F_ACK_TLVS (0x200)
        9, 0, 0, 0,
        0, 0, 0, 0,
        0xea, 0xff, 0xff, 0xff,  // error -22 (-EINVAL)
        104, 0, 0, 0,            // the request's header (capped)
        0x25, 0, 0x05, 0,
        9, 0, 0, 0,
        0, 0, 0, 0,
        12, 0, 1, 0,             // NLMSGERR_ATTR_MSG (1), len 12
        b'b', b'a', b'd', b' ',  //   "bad addr", no NUL: the text ends with the
        b'a', b'd', b'd', b'r',  //   attribute
    ];
    let msgs = netlink::split_messages(&einval).unwrap();
    assert_eq!(
        netlink::classify(&msgs[0]).unwrap(),
        Reply::Error {
            errno: 22,
            message: Some("bad addr".into())
        }
    );

    #[rustfmt::skip]
    let ack: [u8; 36] = [
        36, 0, 0, 0, 2, 0, 0x00, 0x01, 2, 0, 0, 0, 0, 0, 0, 0,
        0, 0, 0, 0,              // error 0: acknowledgement
        104, 0, 0, 0, 0x25, 0, 0x05, 0, 2, 0, 0, 0, 0, 0, 0, 0,
    ];
    let msgs = netlink::split_messages(&ack).unwrap();
    assert_eq!(netlink::classify(&msgs[0]).unwrap(), Reply::Ack);
}

#[test]
fn service_dump_reply_is_decoded() {
    // One IPVS_CMD_NEW_SERVICE dump message as the kernel sends it (with the HASHED
    // flag and a stats attribute), then NLMSG_DONE, in one datagram.
    #[rustfmt::skip]
    let reply: Vec<u8> = cat(&[
        &[
            112, 0, 0, 0,        // nlmsg_len 112 = 16 + 4 + 92
            0x25, 0,             // the IPVS family id
            0x02, 0,             // NLM_F_MULTI
            5, 0, 0, 0,          // seq 5
            0x39, 0x30, 0, 0,    // our port id
            1, 1, 0, 0,          // IPVS_CMD_NEW_SERVICE, version 1
            92, 0, 1, 0,         // IPVS_CMD_ATTR_SERVICE, len 92
            6, 0, 1, 0, 2, 0, 0, 0,          // AF_INET
            6, 0, 2, 0, 6, 0, 0, 0,          // TCP
            20, 0, 3, 0, 10, 96, 0, 1,       // 10.96.0.1
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            6, 0, 4, 0, 0x01, 0xbb, 0, 0,    // port 443
            7, 0, 6, 0, b'r', b'r', 0, 0,    // "rr"
            12, 0, 7, 0,                     // flags:
            3, 0, 0, 0,                      //   PERSISTENT | HASHED
            0xff, 0xff, 0xff, 0xff,          //   mask
            8, 0, 8, 0, 0x30, 0x2a, 0, 0,    // timeout 10800
            8, 0, 9, 0, 0xff, 0xff, 0xff, 0xff, // netmask
            8, 0, 10, 0x80,                  // IPVS_SVC_ATTR_STATS | NLA_F_NESTED ...
            4, 0, 1, 0,                      //   ... holding an empty CONNS attribute
        ],
        &[
            20, 0, 0, 0,         // NLMSG_DONE message: len 20
            3, 0,                // NLMSG_DONE
            0x02, 0,             // NLM_F_MULTI
            5, 0, 0, 0, 0x39, 0x30, 0, 0,
            0, 0, 0, 0,          // int 0
        ],
    ]);
    let msgs = netlink::split_messages(&reply).unwrap();
    assert_eq!(msgs.len(), 2);
    let Reply::Data { attrs, .. } = netlink::classify(&msgs[0]).unwrap() else {
        panic!("not data");
    };
    let svc = netlink::decode_service(attrs).unwrap().unwrap();
    let mut want = cluster_ip_service();
    want.flags = ServiceFlags::PERSISTENT; // HASHED stripped
    want.timeout = 10_800;
    assert_eq!(svc, want);
    assert_eq!(netlink::classify(&msgs[1]).unwrap(), Reply::Done);
}

#[test]
fn firewall_mark_services_are_not_ours() {
    #[rustfmt::skip]
    let attrs: [u8; 40] = [
        40, 0, 1, 0,             // IPVS_CMD_ATTR_SERVICE, len 40
        6, 0, 1, 0, 2, 0, 0, 0,  // AF_INET
        8, 0, 5, 0, 1, 0, 0, 0,  // IPVS_SVC_ATTR_FWMARK 1
        7, 0, 6, 0, b'r', b'r', 0, 0,
        12, 0, 7, 0, 2, 0, 0, 0, 0xff, 0xff, 0xff, 0xff,
    ];
    assert_eq!(netlink::decode_service(&attrs).unwrap(), None);
}

#[test]
fn destination_dump_reply_is_decoded() {
    #[rustfmt::skip]
    let attrs: [u8; 96] = [
        96, 0, 2, 0,             // IPVS_CMD_ATTR_DEST, len 96
        20, 0, 1, 0,             // ADDR 10.180.0.1
        10, 180, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        6, 0, 2, 0, 0x1f, 0x90, 0, 0,    // PORT 8080
        8, 0, 3, 0, 0, 0, 0, 0,          // FWD_METHOD masquerade
        8, 0, 4, 0, 0, 0, 0, 0,          // WEIGHT 0 (draining)
        8, 0, 5, 0, 0, 0, 0, 0,          // U_THRESH
        8, 0, 6, 0, 0, 0, 0, 0,          // L_THRESH
        8, 0, 7, 0, 3, 0, 0, 0,          // ACTIVE_CONNS 3
        8, 0, 8, 0, 1, 0, 0, 0,          // INACT_CONNS 1
        8, 0, 9, 0, 0, 0, 0, 0,          // PERSIST_CONNS 0
        6, 0, 11, 0, 2, 0, 0, 0,         // ADDR_FAMILY AF_INET
    ];
    let d = netlink::decode_destination(&attrs).unwrap();
    assert_eq!(
        d,
        Destination {
            server: RealServer::masquerade("10.180.0.1".parse().unwrap(), 8080).with_weight(0),
            active_connections: 3,
            inactive_connections: 1,
            persistent_connections: 0,
        }
    );
    // A kernel before 3.18 sends no ADDR_FAMILY: guessed from the address bytes.
    let mut old = attrs[..attrs.len() - 8].to_vec();
    old[0] = 88;
    let d = netlink::decode_destination(&old).unwrap();
    assert_eq!(
        d.server.address,
        "10.180.0.1".parse::<std::net::IpAddr>().unwrap()
    );
    assert_eq!(d.server.forward, ForwardMethod::Masquerade);
}

fn any_protocol() -> impl Strategy<Value = Protocol> {
    prop_oneof![
        Just(Protocol::Tcp),
        Just(Protocol::Udp),
        Just(Protocol::Sctp)
    ]
}

fn any_ip() -> impl Strategy<Value = std::net::IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(std::net::IpAddr::from),
        any::<[u8; 16]>().prop_map(std::net::IpAddr::from),
    ]
}

fn any_service() -> impl Strategy<Value = VirtualServer> {
    (
        any_ip(),
        any_protocol(),
        any::<u16>(),
        "[a-z]{1,15}",
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
    )
        .prop_map(|(ip, proto, port, sched, flags, timeout, netmask)| {
            let mut s = VirtualServer::new(ip, proto, port, &sched);
            s.flags = ServiceFlags(flags).without(ServiceFlags::HASHED);
            s.timeout = timeout;
            s.netmask = netmask;
            s
        })
}

fn any_dest() -> impl Strategy<Value = RealServer> {
    (
        any_ip(),
        any::<u16>(),
        any::<u32>(),
        0u32..5,
        any::<u32>(),
        any::<u32>(),
    )
        .prop_map(|(ip, port, weight, fwd, u, l)| RealServer {
            address: ip,
            port,
            weight,
            forward: ForwardMethod::from_value(fwd),
            upper_threshold: u,
            lower_threshold: l,
        })
}

proptest! {
    #[test]
    fn requests_round_trip(svc in any_service(), dest in any_dest(), seq in any::<u32>()) {
        let bytes = netlink::encode_destination(FAMILY, IpvsCommand::SetDest, seq, &svc, &dest);
        let req = netlink::decode_request(&bytes).unwrap();
        prop_assert_eq!(req.header.seq, seq);
        prop_assert_eq!(req.header.length as usize, bytes.len());
        prop_assert_eq!(req.cmd, 6);
        prop_assert_eq!(req.service, Some(svc.clone()));
        prop_assert_eq!(req.destination, Some(dest));
        let only = netlink::decode_request(&netlink::encode_service(FAMILY, IpvsCommand::NewService, seq, &svc)).unwrap();
        prop_assert_eq!(only.service, Some(svc));
        prop_assert_eq!(only.destination, None);
    }

    #[test]
    fn decoding_random_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = netlink::parse_attrs(&bytes);
        let _ = netlink::decode_service(&bytes);
        let _ = netlink::decode_destination(&bytes);
        let _ = netlink::decode_family_id(&bytes);
        let _ = netlink::decode_request(&bytes);
        if let Ok(msgs) = netlink::split_messages(&bytes) {
            for m in &msgs {
                if let Ok(Reply::Data { attrs, .. }) = netlink::classify(m) {
                    let _ = netlink::decode_service(attrs);
                    let _ = netlink::decode_destination(attrs);
                }
            }
        }
    }

    #[test]
    fn corrupting_a_valid_message_never_panics(
        svc in any_service(),
        dest in any_dest(),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        cut in any::<usize>(),
    ) {
        let mut bytes = netlink::encode_destination(FAMILY, IpvsCommand::NewDest, 1, &svc, &dest);
        for (at, value) in flips {
            let n = bytes.len();
            bytes[at % n] = value;
        }
        let cut = cut % (bytes.len() + 1);
        let _ = netlink::decode_request(&bytes[..cut]);
        let _ = netlink::decode_request(&bytes);
        if let Ok(msgs) = netlink::split_messages(&bytes) {
            for m in &msgs {
                let _ = netlink::classify(m);
            }
        }
    }
}
