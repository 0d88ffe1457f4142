//! [`NetlinkConntrack`] against the real kernel, as root, each test in its own
//! throwaway network namespace (`nsdk-ctnl-*`, deleted on drop), checked against the
//! `conntrack` tool (the CLI path, [`Commands`]). Needs root and the `conntrack`,
//! `ip` and `iptables` commands: `scripts/env.sh up` installs them.
//!
//! Flows are made with `conntrack -I` (exact tuples, zones, both families) or, for the
//! many-flows test, by real UDP datagrams through a DNAT rule.

use std::net::{IpAddr, UdpSocket};
use std::os::fd::AsFd;
use std::process::Command;
use std::time::{Duration, Instant};

use netlink_sys::{Socket, SocketAddr};
use node_sdk_e2e::{Netns, SETUP_HINT, require_root};
use proxy_rules::Error;
use proxy_rules::conntrack::{self, CleanupReport, Flow};
use proxy_rules::ctnetlink::{
    self, Dump, DumpFilter, DumpReader, NetlinkConntrack, ReplyError, UdpEntry, decode_ack,
    encode_delete, encode_dump_request,
};
use proxy_rules::exec::{Commands, ConntrackExec, Target};
use proxy_rules::model::{Endpoint, IpFamily, Protocol, ProxyState, ServicePort, ServicePortName};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A UDP flow whose reply goes back to the client unchanged.
fn flow(src: &str, sport: u16, dst: &str, dport: u16, reply_src: &str, reply_sport: u16) -> Flow {
    Flow {
        orig_src: ip(src),
        orig_dst: ip(dst),
        orig_sport: sport,
        orig_dport: dport,
        reply_src: ip(reply_src),
        reply_dst: ip(src),
        reply_sport,
        reply_dport: sport,
    }
}

/// A fresh namespace, after checking root and the tools.
fn namespace(tag: &str) -> Netns {
    require_root();
    for tool in ["conntrack", "ip", "iptables"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .expect("running sh");
        assert!(
            found.status.success(),
            "the `{tool}` command is missing: {SETUP_HINT}"
        );
    }
    Netns::new(tag)
}

/// `conntrack -I` of a flow (`proto` "udp" or "tcp"), optionally in a zone.
fn insert(ns: &Netns, proto: &str, f: &Flow, zone: Option<u16>) {
    let (sport, dport, rsport, rdport) = (
        f.orig_sport.to_string(),
        f.orig_dport.to_string(),
        f.reply_sport.to_string(),
        f.reply_dport.to_string(),
    );
    let (src, dst, rsrc, rdst) = (
        f.orig_src.to_string(),
        f.orig_dst.to_string(),
        f.reply_src.to_string(),
        f.reply_dst.to_string(),
    );
    let mut argv = vec![
        "conntrack",
        "-I",
        "-p",
        proto,
        "-s",
        &src,
        "-d",
        &dst,
        "--sport",
        &sport,
        "--dport",
        &dport,
        "--reply-src",
        &rsrc,
        "--reply-dst",
        &rdst,
        "--reply-port-src",
        &rsport,
        "--reply-port-dst",
        &rdport,
        "-t",
        "120",
    ];
    if proto == "tcp" {
        argv.extend(["--state", "ESTABLISHED"]);
    }
    let zone = zone.map(|z| z.to_string());
    if let Some(z) = &zone {
        argv.extend(["-w", z.as_str()]);
    }
    ns.exec(&argv, None);
}

fn cli(ns: &Netns) -> Commands {
    Commands::new(Target::netns(ns.name()))
}

async fn cli_list(ns: &Netns, family: IpFamily) -> Vec<Flow> {
    sorted(cli(ns).list_udp(family).await.unwrap())
}

fn sorted(mut flows: Vec<Flow>) -> Vec<Flow> {
    flows.sort_by_key(|f| format!("{f:?}"));
    flows
}

fn handle(ns: &Netns) -> NetlinkConntrack {
    NetlinkConntrack::in_netns(ns.path()).unwrap()
}

#[tokio::test]
async fn lists_exactly_the_udp_flows_the_cli_shows() {
    let ns = namespace("ctnl-list");
    let v4 = [
        flow("10.0.0.9", 40000, "172.30.0.10", 53, "10.180.0.5", 53),
        flow("10.0.0.9", 40001, "172.30.0.10", 53, "172.30.0.10", 53),
        flow("10.0.0.8", 5000, "172.30.0.20", 8125, "10.180.0.9", 8125),
    ];
    let v6 = [
        flow("fd00::9", 40000, "fd00:30::10", 53, "fd00:180::5", 53),
        flow("fd00::9", 40001, "fd00:30::10", 53, "fd00:30::10", 53),
    ];
    for f in &v4 {
        insert(&ns, "udp", f, None);
    }
    insert(&ns, "udp", &v4[0], Some(5)); // the same tuple again, in zone 5
    for f in &v6 {
        insert(&ns, "udp", f, None);
    }
    // Not UDP: never listed.
    insert(
        &ns,
        "tcp",
        &flow("10.0.0.9", 40000, "172.30.0.10", 443, "10.180.0.5", 8443),
        None,
    );
    insert(
        &ns,
        "tcp",
        &flow("fd00::9", 40000, "fd00:30::10", 443, "fd00:180::5", 8443),
        None,
    );

    for filter in [DumpFilter::UdpOnly, DumpFilter::AllProtocols] {
        let nl = NetlinkConntrack::for_target(&Target::netns(ns.name()))
            .unwrap()
            .with_dump_filter(filter);
        assert_eq!(nl.netns(), Some(std::path::Path::new(&ns.path())));
        let got4 = sorted(nl.list_udp(IpFamily::V4).await.unwrap());
        let got6 = sorted(nl.list_udp(IpFamily::V6).await.unwrap());
        assert_eq!(got4, cli_list(&ns, IpFamily::V4).await, "{filter:?}");
        assert_eq!(got6, cli_list(&ns, IpFamily::V6).await, "{filter:?}");
        let mut want4 = v4.to_vec();
        want4.push(v4[0].clone());
        assert_eq!(got4, sorted(want4), "{filter:?}");
        assert_eq!(got6, sorted(v6.to_vec()), "{filter:?}");
    }
}

#[tokio::test]
async fn delete_removes_exactly_one_flow_and_a_gone_flow_is_ok() {
    let ns = namespace("ctnl-del");
    let flows = [
        flow("10.0.0.9", 40000, "172.30.0.10", 53, "10.180.0.5", 53),
        flow("10.0.0.9", 40001, "172.30.0.10", 53, "10.180.0.6", 53),
        flow("10.0.0.9", 40002, "172.30.0.10", 53, "10.180.0.7", 53),
    ];
    let v6 = [
        flow("fd00::9", 40000, "fd00:30::10", 53, "fd00:180::5", 53),
        flow("fd00::9", 40001, "fd00:30::10", 53, "fd00:180::6", 53),
    ];
    for f in flows.iter().chain(&v6) {
        insert(&ns, "udp", f, None);
    }
    let nl = handle(&ns);
    assert_eq!(nl.list_udp(IpFamily::V4).await.unwrap().len(), 3);
    nl.delete(IpFamily::V4, &flows[1]).await.unwrap();
    assert_eq!(
        cli_list(&ns, IpFamily::V4).await,
        sorted(vec![flows[0].clone(), flows[2].clone()])
    );
    // Again: the kernel answers ENOENT, which is "already gone".
    nl.delete(IpFamily::V4, &flows[1]).await.unwrap();
    // A handle that never listed deletes by tuple in zone 0.
    let fresh = handle(&ns);
    fresh.delete(IpFamily::V4, &flows[2]).await.unwrap();
    fresh.delete(IpFamily::V4, &flows[2]).await.unwrap();
    assert_eq!(cli_list(&ns, IpFamily::V4).await, vec![flows[0].clone()]);

    nl.list_udp(IpFamily::V6).await.unwrap();
    nl.delete(IpFamily::V6, &v6[0]).await.unwrap();
    assert_eq!(cli_list(&ns, IpFamily::V6).await, vec![v6[1].clone()]);

    // A flow of the other family is refused locally, naming the operation.
    let err = nl.delete(IpFamily::V6, &flows[0]).await.unwrap_err();
    assert!(
        matches!(&err, Error::Netlink { errno: 0, operation, .. } if operation.contains("IPCTNL_MSG_CT_DELETE")),
        "{err}"
    );
}

#[tokio::test]
async fn delete_covers_every_zone_the_flow_was_listed_in_like_the_cli() {
    let ns = namespace("ctnl-zone");
    let f = flow("10.0.0.9", 40000, "172.30.0.10", 53, "10.180.0.5", 53);
    let other = flow("10.0.0.9", 40001, "172.30.0.10", 53, "10.180.0.5", 53);
    insert(&ns, "udp", &f, None);
    insert(&ns, "udp", &f, Some(7));
    insert(&ns, "udp", &other, Some(7));
    let nl = handle(&ns);
    assert_eq!(nl.list_udp(IpFamily::V4).await.unwrap().len(), 3);
    nl.delete(IpFamily::V4, &f).await.unwrap();
    assert_eq!(cli_list(&ns, IpFamily::V4).await, vec![other.clone()]);
    // The second occurrence of the flow in the listing finds nothing left: Ok.
    nl.delete(IpFamily::V4, &f).await.unwrap();
    nl.delete(IpFamily::V4, &other).await.unwrap();
    assert!(cli_list(&ns, IpFamily::V4).await.is_empty());
}

/// Send one request on a raw `NETLINK_NETFILTER` socket made in the namespace and read
/// the datagrams answering it, with the public codec.
fn exchange(ns: &Netns, request: Vec<u8>, seq: u32, dump: bool) -> Result<Dump, ReplyError> {
    in_namespace(ns.path(), move || {
        let mut socket = Socket::new(ctnetlink::NETLINK_NETFILTER).unwrap();
        socket.bind_auto().unwrap();
        socket.send_to(&request, &SocketAddr::new(0, 0), 0).unwrap();
        let mut reader = DumpReader::new(seq);
        loop {
            let (buf, _) = socket.recv_from_full().unwrap();
            if dump {
                if reader.feed(&buf)? {
                    return Ok(reader.finish());
                }
            } else if decode_ack(&buf, seq)? {
                return Ok(Dump::default());
            }
        }
    })
}

#[tokio::test]
async fn the_kernel_deletes_by_id_only_the_entry_it_names() {
    let ns = namespace("ctnl-id");
    let f = flow("10.0.0.9", 40000, "172.30.0.10", 53, "10.180.0.6", 53);
    insert(&ns, "udp", &f, None);
    let dump = exchange(
        &ns,
        encode_dump_request(IpFamily::V4, 1, DumpFilter::UdpOnly),
        1,
        true,
    )
    .unwrap();
    let [listed] = dump.entries.as_slice() else {
        panic!("{dump:?}");
    };
    assert_eq!(listed.flow, f);
    let id = listed.id.expect("the kernel sends CTA_ID");
    // Another id: the kernel answers ENOENT and deletes nothing.
    let wrong = UdpEntry {
        id: Some(id ^ 1),
        ..listed.clone()
    };
    assert_eq!(
        exchange(&ns, encode_delete(&wrong, 2), 2, false),
        Err(ReplyError::Kernel {
            errno: 2,
            message: None
        })
    );
    assert_eq!(cli_list(&ns, IpFamily::V4).await, vec![f.clone()]);
    // The listed id: deleted.
    exchange(&ns, encode_delete(listed, 3), 3, false).unwrap();
    assert!(cli_list(&ns, IpFamily::V4).await.is_empty());
}

fn udp_service(state: &mut ProxyState, name: &str, ip: &str, endpoint: &str) {
    let n = ServicePortName::new("kube-system", name, "dns", Protocol::Udp);
    state.add_service(ServicePort::cluster_ip(n.clone(), self::ip(ip), 53));
    state.set_endpoints(n, vec![Endpoint::ready(self::ip(endpoint), 53)]);
}

#[tokio::test]
async fn cleanup_over_netlink_deletes_the_stale_flows_only() {
    let ns = namespace("ctnl-cleanup");
    let mut state = ProxyState::new();
    udp_service(&mut state, "dns", "172.30.0.10", "10.180.0.5");
    udp_service(&mut state, "dns6", "fd00:30::10", "fd00:180::5");
    let keep = flow("10.0.0.9", 40000, "172.30.0.10", 53, "10.180.0.5", 53);
    let removed_endpoint = flow("10.0.0.9", 40001, "172.30.0.10", 53, "10.180.0.6", 53);
    let never_dnated = flow("10.0.0.9", 40002, "172.30.0.10", 53, "172.30.0.10", 53);
    let other_ip = flow("10.0.0.9", 40003, "172.30.0.11", 53, "10.180.0.7", 53);
    let keep6 = flow("fd00::9", 40000, "fd00:30::10", 53, "fd00:180::5", 53);
    let stale6 = flow("fd00::9", 40001, "fd00:30::10", 53, "fd00:180::6", 53);
    for f in [
        &keep,
        &removed_endpoint,
        &never_dnated,
        &other_ip,
        &keep6,
        &stale6,
    ] {
        insert(&ns, "udp", f, None);
    }
    let nl = handle(&ns);
    let r4 = conntrack::cleanup(&nl, IpFamily::V4, &state, &[])
        .await
        .unwrap();
    let r6 = conntrack::cleanup(&nl, IpFamily::V6, &state, &[])
        .await
        .unwrap();
    assert_eq!(
        r4,
        CleanupReport {
            deleted: 2,
            failed: 0
        }
    );
    assert_eq!(
        r6,
        CleanupReport {
            deleted: 1,
            failed: 0
        }
    );
    assert_eq!(
        cli_list(&ns, IpFamily::V4).await,
        sorted(vec![keep, other_ip])
    );
    assert_eq!(cli_list(&ns, IpFamily::V6).await, vec![keep6]);
    // A second run finds nothing to do.
    let again = conntrack::cleanup(&nl, IpFamily::V4, &state, &[])
        .await
        .unwrap();
    assert_eq!(again, CleanupReport::default());
}

/// Run `f` on a thread that entered the namespace (sockets made there belong to it).
fn in_namespace<T: Send + 'static>(path: String, f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        rustix::thread::move_into_link_name_space(
            file.as_fd(),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )
        .unwrap_or_else(|e| panic!("setns {path}: {e}"));
        f()
    })
    .join()
    .expect("namespace thread panicked")
}

#[tokio::test]
async fn many_flows_from_real_traffic_list_and_delete_faster_than_the_cli() {
    // `CTNL_FLOWS=20000` measures a bigger table (at most 45535).
    let n: u16 = std::env::var("CTNL_FLOWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000)
        .min(45535);
    const DELETED: usize = 200;
    let ns = namespace("ctnl-many");
    // The client 10.0.0.9, the service 172.30.0.10:53 and the endpoint 10.180.0.5 are
    // all local; a DNAT rule (kube-proxy's job) sends the service to the endpoint.
    ns.exec(&["ip", "addr", "add", "10.0.0.9/32", "dev", "lo"], None);
    ns.exec(
        &["ip", "route", "add", "local", "172.30.0.0/16", "dev", "lo"],
        None,
    );
    ns.exec(
        &["ip", "route", "add", "local", "10.180.0.0/16", "dev", "lo"],
        None,
    );
    ns.exec(
        &[
            "iptables",
            "-w",
            "5",
            "-t",
            "nat",
            "-A",
            "OUTPUT",
            "-p",
            "udp",
            "-d",
            "172.30.0.10",
            "--dport",
            "53",
            "-j",
            "DNAT",
            "--to-destination",
            "10.180.0.5:53",
        ],
        None,
    );
    in_namespace(ns.path(), move || {
        for port in 20000..20000 + n {
            let sock = UdpSocket::bind(("10.0.0.9", port)).expect("bind 10.0.0.9");
            sock.send_to(b"q", ("172.30.0.10", 53)).expect("send");
        }
    });
    // A few TCP flows, which neither path lists.
    for p in 0..5 {
        insert(
            &ns,
            "tcp",
            &flow(
                "10.0.0.9",
                30000 + p,
                "172.30.0.10",
                443,
                "10.180.0.5",
                8443,
            ),
            None,
        );
    }

    let nl = handle(&ns);
    let commands = cli(&ns);
    let started = Instant::now();
    let via_netlink = nl.list_udp(IpFamily::V4).await.unwrap();
    let netlink_list = started.elapsed();
    let started = Instant::now();
    let via_cli = commands.list_udp(IpFamily::V4).await.unwrap();
    let cli_list_time = started.elapsed();
    let via_netlink = sorted(via_netlink);
    assert_eq!(via_netlink, sorted(via_cli));
    assert_eq!(via_netlink.len(), usize::from(n));
    assert!(
        via_netlink
            .iter()
            .all(|f| f.reply_src == ip("10.180.0.5") && f.orig_dst == ip("172.30.0.10")),
        "every flow was DNATed to the endpoint"
    );

    let (by_netlink, rest) = via_netlink.split_at(DELETED);
    let by_cli = &rest[..DELETED];
    let started = Instant::now();
    for f in by_netlink {
        nl.delete(IpFamily::V4, f).await.unwrap();
    }
    let netlink_delete = started.elapsed();
    let started = Instant::now();
    for f in by_cli {
        commands.delete(IpFamily::V4, f).await.unwrap();
    }
    let cli_delete = started.elapsed();
    let left = cli_list(&ns, IpFamily::V4).await;
    assert_eq!(left, sorted(rest[DELETED..].to_vec()));

    let per = |d: Duration| d / u32::try_from(DELETED).unwrap();
    println!(
        "ctnetlink timings, {n} UDP flows: listing: netlink {netlink_list:?}, conntrack CLI \
         {cli_list_time:?}; deleting {DELETED}: netlink {netlink_delete:?} ({:?} per flow), \
         conntrack CLI {cli_delete:?} ({:?} per flow)",
        per(netlink_delete),
        per(cli_delete),
    );
}

#[test]
fn without_cap_net_admin_errors_name_the_operation_and_eperm() {
    let ns = namespace("ctnl-eperm");
    let f = flow("10.0.0.9", 40000, "172.30.0.10", 53, "10.180.0.5", 53);
    insert(&ns, "udp", &f, None);
    let path = ns.path();
    let flow = f.clone();
    // Capabilities are per thread, and the kernel checks the sending thread's: drop
    // CAP_NET_ADMIN on a thread that then runs its own runtime, whose blocking pool
    // threads inherit the reduced set.
    let (listed, deleted) = std::thread::spawn(move || {
        let mut caps = rustix::thread::capabilities(None).unwrap();
        caps.effective
            .remove(rustix::thread::CapabilitySet::NET_ADMIN);
        rustix::thread::set_capabilities(None, caps).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let nl = NetlinkConntrack::in_netns(path).unwrap();
            (
                nl.list_udp(IpFamily::V4).await,
                nl.delete(IpFamily::V4, &flow).await,
            )
        })
    })
    .join()
    .unwrap();
    let err = listed.unwrap_err();
    let Error::Netlink {
        operation, errno, ..
    } = &err
    else {
        panic!("{err:?}");
    };
    assert_eq!(*errno, 1, "{err}");
    assert!(operation.contains("IPCTNL_MSG_CT_GET"), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("Operation not permitted") && text.contains("CAP_NET_ADMIN"),
        "{text}"
    );
    let err = deleted.unwrap_err();
    assert!(
        matches!(&err, Error::Netlink { errno: 1, operation, .. } if operation.contains("IPCTNL_MSG_CT_DELETE udp 10.0.0.9:40000 -> 172.30.0.10:53")),
        "{err}"
    );
    // Nothing was deleted.
    let out = ns.exec(&["conntrack", "-L", "-p", "udp"], None);
    assert_eq!(
        conntrack::parse_flows(&String::from_utf8_lossy(&out.stdout)),
        vec![f]
    );
}
