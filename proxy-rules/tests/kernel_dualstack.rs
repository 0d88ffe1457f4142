//! Dual-stack: one engine with an IPv4 and an IPv6 proxier programs both families
//! (`iptables-restore` and `ip6tables-restore`, or `table ip` and `table ip6`); IPv6
//! clients reach IPv6 ClusterIPs and NodePorts over TCP and UDP, traffic spreads, and a
//! partial sync removing an IPv6 endpoint deletes its IPv6 conntrack flows. Needs root.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{Lab, NODE_IP, NODE_IP6, NODE_NAME};
use proxy_rules::config::ProxyConfig;
use proxy_rules::exec::Target;
use proxy_rules::model::{IpFamily, Protocol, ServiceName};
use proxy_rules::store::{EndpointSliceSpec, ServiceSpec, ServiceType, SliceEndpoint, SlicePort};
use proxy_rules::sync::{Event, Execs, Mode, SyncEngine, SyncOptions};

fn service(
    name: &str,
    v4: &str,
    v6: &str,
    proto: Protocol,
    port: u16,
    node_port: u16,
) -> ServiceSpec {
    let mut s = ServiceSpec::cluster_ip(ServiceName::new("lab", name), v4.parse().unwrap())
        .with_port("p", proto, port, Some(node_port));
    s.cluster_ips.push(v6.parse().unwrap());
    s.service_type = ServiceType::NodePort;
    s
}

fn slice(
    svc: &str,
    family: IpFamily,
    proto: Protocol,
    port: u16,
    ips: &[String],
) -> EndpointSliceSpec {
    EndpointSliceSpec {
        name: format!("{svc}-{family}"),
        service: ServiceName::new("lab", svc),
        address_type: Some(family),
        ports: vec![SlicePort {
            name: "p".into(),
            protocol: proto,
            port: Some(port),
        }],
        endpoints: ips
            .iter()
            .map(|ip| SliceEndpoint::ready(ip.parse().unwrap()))
            .collect(),
    }
}

fn v4(i: usize) -> String {
    format!("10.180.0.{}", 10 + i)
}

fn v6(i: usize) -> String {
    format!("fd00:180::{}", 10 + i)
}

fn names(replies: &[String]) -> BTreeSet<&str> {
    replies.iter().map(String::as_str).collect()
}

async fn dual_stack(mode: Mode, tag: &str) {
    let lab = Lab::new(tag, 3);
    let config = ProxyConfig::new(NODE_NAME)
        .node_ip(NODE_IP.parse().unwrap())
        .node_ip(NODE_IP6.parse().unwrap())
        .cluster_cidr("10.180.0.0/16".parse().unwrap())
        .cluster_cidr("fd00:180::/64".parse().unwrap());
    let mut e = SyncEngine::new(
        mode,
        &[IpFamily::V4, IpFamily::V6],
        config,
        SyncOptions::default(),
        Execs::commands(Target::netns(lab.node.name())),
    )
    .unwrap();
    let all4: Vec<String> = (0..3).map(v4).collect();
    let all6: Vec<String> = (0..3).map(v6).collect();
    e.apply(Event::Replace {
        services: vec![
            service(
                "web",
                "172.30.0.10",
                "fd00:30::10",
                Protocol::Tcp,
                80,
                30080,
            ),
            service(
                "dns",
                "172.30.0.53",
                "fd00:30::53",
                Protocol::Udp,
                53,
                30053,
            ),
        ],
        slices: vec![
            slice("web", IpFamily::V4, Protocol::Tcp, 8080, &all4),
            slice("web", IpFamily::V6, Protocol::Tcp, 8080, &all6),
            slice("dns", IpFamily::V4, Protocol::Udp, 5353, &all4),
            slice("dns", IpFamily::V6, Protocol::Udp, 5353, &all6),
        ],
    })
    .unwrap();
    let reports = e.sync(false).await;
    assert_eq!(reports.len(), 2);
    for r in reports {
        let r = r.unwrap_or_else(|err| panic!("sync failed: {err}"));
        assert!(r.full);
    }

    // IPv6 ClusterIP and NodePort, TCP: spread over all endpoints, masqueraded to the
    // node's bridge address (the client is outside the pod network).
    let seen = lab.tcp_names("[fd00:30::10]:80", 30);
    assert_eq!(names(&seen), BTreeSet::from(["b0", "b1", "b2"]), "{seen:?}");
    let seen = lab.tcp_names(&format!("[{NODE_IP6}]:30080"), 30);
    assert_eq!(names(&seen), BTreeSet::from(["b0", "b1", "b2"]), "{seen:?}");
    let reply = lab.tcp("[fd00:30::10]:80", Duration::from_secs(5)).unwrap();
    assert!(reply.ends_with(" fd00:180::1"), "masqueraded: {reply}");
    // IPv4 still works next to it.
    assert_eq!(lab.tcp_names("172.30.0.10:80", 1).len(), 1);

    // IPv6 UDP, and a pinned flow that a partial sync cleans up.
    let mut udp = BTreeSet::new();
    for _ in 0..30 {
        let r = lab
            .udp("[fd00:30::53]:53", 0, Duration::from_secs(5))
            .unwrap();
        udp.insert(r.split_whitespace().next().unwrap().to_owned());
    }
    assert_eq!(udp.len(), 3, "{udp:?}");
    const PORT: u16 = 42000;
    let first = lab
        .udp("[fd00:30::53]:53", PORT, Duration::from_secs(5))
        .unwrap();
    let victim = first.split_whitespace().next().unwrap().to_owned();
    let victim_index: usize = victim.trim_start_matches('b').parse().unwrap();
    let victim_ip = v6(victim_index);
    assert!(
        lab.conntrack_udp().contains(&format!("src={victim_ip} ")),
        "{}",
        lab.conntrack_udp()
    );
    let remaining: Vec<String> = (0..3).filter(|i| *i != victim_index).map(v6).collect();
    e.apply(Event::Slice(slice(
        "dns",
        IpFamily::V6,
        Protocol::Udp,
        5353,
        &remaining,
    )))
    .unwrap();
    let reports = e.sync(false).await;
    let v6_report = reports
        .into_iter()
        .map(|r| r.unwrap())
        .find(|r| r.family == IpFamily::V6)
        .unwrap();
    assert!(
        !v6_report.full && v6_report.conntrack.deleted >= 1,
        "{v6_report:?}"
    );
    assert!(
        !lab.conntrack_udp().contains(&format!("src={victim_ip} ")),
        "{}",
        lab.conntrack_udp()
    );
    let after = lab
        .udp("[fd00:30::53]:53", PORT, Duration::from_secs(5))
        .unwrap();
    assert_ne!(after.split_whitespace().next().unwrap(), victim);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iptables_dual_stack() {
    dual_stack(Mode::Iptables, "kdi").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nftables_dual_stack() {
    dual_stack(Mode::Nftables, "kdn").await;
}
