//! Upstream's packet-flow tests on their own fixtures, rebuilt as `ProxyState`s and
//! run through both renderers and both tracers: `TestClusterIPGeneral`,
//! `TestLoadBalancer`, `TestNodePorts`, `TestExternalTrafficPolicyLocal`,
//! `TestExternalTrafficPolicyCluster` and `TestNoEndpointsReject` from
//! kubernetes/kubernetes `pkg/proxy/iptables/proxier_test.go` and
//! `pkg/proxy/nftables/proxier_test.go`, with their expectations (`ipt` and `nft` differ
//! only where upstream's two tests differ). iptables is traced both ways in: through
//! the jump rules of the built-in chains, and upstream's way on the bare restore input.

use std::net::{IpAddr, SocketAddr};

use ipnetwork::IpNetwork;
use proxy_rules::config::{NodePortAddresses, ProxyConfig};
use proxy_rules::iptables::dump::IptablesDump;
use proxy_rules::model::{Endpoint, IpFamily, Protocol, ProxyState, ServicePort, ServicePortName};
use proxy_rules::trace::{
    IptablesEntry, NftTable, Node, Origin, Packet, Trace, trace_iptables_with, trace_nftables,
};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Upstream's `testNodeIPs`.
fn upstream_node() -> Node {
    Node::new(
        [
            "192.168.0.2",
            "192.168.1.2",
            "192.168.99.11",
            "2001:db8::1",
            "2001:db8:1::2",
        ]
        .map(ip),
    )
}

fn config(family: IpFamily) -> ProxyConfig {
    let (node, pods, services) = match family {
        IpFamily::V4 => ("192.168.0.2", "10.0.0.0/8", "172.30.0.0/16"),
        IpFamily::V6 => ("2001:db8::1", "fd00:10::/64", "fd00:172:30::/112"),
    };
    let mut c = ProxyConfig::new("test-node")
        .node_ip(ip(node))
        .cluster_cidr(pods.parse().unwrap());
    c.service_cidrs = vec![services.parse().unwrap()];
    c.host_addresses = [
        "192.168.1.2",
        "192.168.99.11",
        "2001:db8:1::2",
        "127.0.0.1",
        "::1",
    ]
    .map(ip)
    .to_vec();
    c
}

fn ep(addr: &str, port: u16, node: Option<&str>) -> Endpoint {
    let mut e = Endpoint::ready(ip(addr), port);
    e.node_name = node.map(str::to_owned);
    e
}

fn port(name: &str, proto: Protocol, cluster_ip: &str, port: u16) -> ServicePort {
    ServicePort::cluster_ip(
        ServicePortName::new("ns1", "svc1", name, proto),
        ip(cluster_ip),
        port,
    )
}

struct Case {
    name: &'static str,
    origin: Origin,
    protocol: Protocol,
    source: &'static str,
    dest: String,
    ipt: String,
    nft: String,
    masq: bool,
}

fn case(
    name: &'static str,
    origin: Origin,
    source: &'static str,
    dest: &str,
    output: &str,
    masq: bool,
) -> Case {
    Case {
        name,
        origin,
        protocol: Protocol::Tcp,
        source,
        dest: dest.to_owned(),
        ipt: output.to_owned(),
        nft: output.to_owned(),
        masq,
    }
}

impl Case {
    fn nft(mut self, output: &str) -> Self {
        self.nft = output.to_owned();
        self
    }

    fn proto(mut self, p: Protocol) -> Self {
        self.protocol = p;
        self
    }
}

use Origin::{External, Host, Pod};

const CLIENT: &str = "203.0.113.2";
const BLOCKED: &str = "203.0.113.130";
const NODE: &str = "192.168.0.2";

fn check(label: &str, c: &Case, t: &Trace, want: &str) -> Option<String> {
    let got = t.upstream_output();
    (got != want || t.masqueraded() != c.masq).then(|| {
        format!(
            "{label}: {:?}: expected {want:?} masq {}, got {got:?} masq {}\n{t}",
            c.name,
            c.masq,
            t.masqueraded()
        )
    })
}

/// Render `state` both ways and run the cases through every tracer.
fn run(state: &ProxyState, config: &ProxyConfig, family: IpFamily, cases: &[Case]) {
    let node = upstream_node();
    let ipt = proxy_rules::iptables::render(state, config, family).unwrap();
    let hooks = IptablesDump::parse(&ipt.complete_restore_input(), "complete").unwrap();
    let bare = IptablesDump::parse(&ipt.restore_input(), "restore").unwrap();
    let nft =
        NftTable::from_ruleset(&proxy_rules::nftables::render(state, config, family).unwrap())
            .unwrap();
    let mut failures = Vec::new();
    for c in cases {
        let dest: SocketAddr = c.dest.parse().unwrap();
        let p = Packet::new(c.origin, c.protocol, ip(c.source), dest);
        for (label, dump, entry) in [
            ("iptables hooks", &hooks, IptablesEntry::Hooks),
            ("iptables kube chains", &bare, IptablesEntry::KubeChains),
        ] {
            let t = trace_iptables_with(dump, &p, &node, entry).unwrap();
            failures.extend(check(label, c, &t, &c.ipt));
        }
        let t = trace_nftables(&nft, &p, &node).unwrap();
        failures.extend(check("nftables", c, &t, &c.nft));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn cluster_ip_general() {
    let mut s = ProxyState::new();
    let svc1 = port("http", Protocol::Tcp, "172.30.0.41", 80);
    s.set_endpoints(
        svc1.name.clone(),
        vec![ep("10.180.0.1", 80, Some("test-node"))],
    );
    s.add_service(svc1);
    for (name, proto, p, target) in [
        ("http", Protocol::Tcp, 80, 80),
        ("https", Protocol::Tcp, 443, 8443),
        ("dns-udp", Protocol::Udp, 53, 53),
        ("dns-tcp", Protocol::Tcp, 53, 5353),
        ("dns-sctp", Protocol::Sctp, 53, 53),
    ] {
        let mut sp = port(name, proto, "172.30.0.42", p);
        sp.name.service.name = "svc2".into();
        sp.name.service.namespace = "ns2".into();
        s.set_endpoints(
            sp.name.clone(),
            vec![
                ep("10.180.0.1", target, Some("test-node")),
                ep("10.180.2.1", target, Some("node2")),
            ],
        );
        s.add_service(sp);
    }
    let both = "10.180.0.1:80, 10.180.2.1:80";
    run(
        &s,
        &config(IpFamily::V4),
        IpFamily::V4,
        &[
            case(
                "simple clusterIP",
                Pod,
                "10.180.0.2",
                "172.30.0.41:80",
                "10.180.0.1:80",
                false,
            ),
            case(
                "hairpin to cluster IP",
                Pod,
                "10.180.0.1",
                "172.30.0.41:80",
                "10.180.0.1:80",
                true,
            ),
            case(
                "clusterIP with multiple endpoints",
                Pod,
                "10.180.0.2",
                "172.30.0.42:80",
                both,
                false,
            ),
            case(
                "clusterIP with TargetPort",
                Pod,
                "10.180.0.2",
                "172.30.0.42:443",
                "10.180.0.1:8443, 10.180.2.1:8443",
                false,
            ),
            case(
                "clusterIP with TCP, UDP, and SCTP on same port (TCP)",
                Pod,
                "10.180.0.2",
                "172.30.0.42:53",
                "10.180.0.1:5353, 10.180.2.1:5353",
                false,
            ),
            case(
                "clusterIP with TCP, UDP, and SCTP on same port (UDP)",
                Pod,
                "10.180.0.2",
                "172.30.0.42:53",
                "10.180.0.1:53, 10.180.2.1:53",
                false,
            )
            .proto(Protocol::Udp),
            case(
                "clusterIP with TCP, UDP, and SCTP on same port (SCTP)",
                Pod,
                "10.180.0.2",
                "172.30.0.42:53",
                "10.180.0.1:53, 10.180.2.1:53",
                false,
            )
            .proto(Protocol::Sctp),
            case(
                "TCP-only port does not match UDP traffic",
                Pod,
                "10.180.0.2",
                "172.30.0.42:80",
                "",
                false,
            )
            .proto(Protocol::Udp)
            .nft("REJECT"),
            case(
                "svc1 does not accept svc2's ports",
                Pod,
                "10.180.0.2",
                "172.30.0.41:443",
                "",
                false,
            )
            .nft("REJECT"),
            case(
                "packet to unallocated cluster ip",
                Pod,
                "10.180.0.2",
                "172.30.0.50:80",
                "",
                false,
            )
            .nft("DROP"),
        ],
    );
}

#[test]
fn load_balancer() {
    let mut s = ProxyState::new();
    let mut sp = port("p80", Protocol::Tcp, "172.30.0.41", 80);
    sp.node_port = Some(3001);
    sp.load_balancer_ips = vec![ip("1.2.3.4"), ip("5.6.7.8")];
    sp.load_balancer_source_ranges = ["192.168.0.0/24", "203.0.113.0/25"]
        .map(|r| r.parse::<IpNetwork>().unwrap())
        .to_vec();
    s.set_endpoints(sp.name.clone(), vec![ep("10.180.0.1", 80, None)]);
    s.add_service(sp);
    let e = "10.180.0.1:80";
    run(
        &s,
        &config(IpFamily::V4),
        IpFamily::V4,
        &[
            case(
                "pod to cluster IP",
                Pod,
                "10.0.0.2",
                "172.30.0.41:80",
                e,
                false,
            ),
            case(
                "external to nodePort",
                External,
                CLIENT,
                "192.168.0.2:3001",
                e,
                true,
            ),
            case(
                "nodePort bypasses LoadBalancerSourceRanges",
                External,
                BLOCKED,
                "192.168.0.2:3001",
                e,
                true,
            ),
            case(
                "accepted external to LB1",
                External,
                CLIENT,
                "1.2.3.4:80",
                e,
                true,
            ),
            case(
                "accepted external to LB2",
                External,
                CLIENT,
                "5.6.7.8:80",
                e,
                true,
            ),
            case(
                "blocked external to LB1",
                External,
                BLOCKED,
                "1.2.3.4:80",
                "DROP",
                false,
            ),
            case(
                "blocked external to LB2",
                External,
                BLOCKED,
                "5.6.7.8:80",
                "DROP",
                false,
            ),
            case(
                "pod to LB1 (blocked by LoadBalancerSourceRanges)",
                Pod,
                "10.0.0.2",
                "1.2.3.4:80",
                "DROP",
                false,
            ),
            case(
                "pod to LB2 (blocked by LoadBalancerSourceRanges)",
                Pod,
                "10.0.0.2",
                "5.6.7.8:80",
                "DROP",
                false,
            ),
            case(
                "node to LB1 (allowed by LoadBalancerSourceRanges)",
                Host,
                NODE,
                "1.2.3.4:80",
                e,
                true,
            ),
            case(
                "node to LB2 (allowed by LoadBalancerSourceRanges)",
                Host,
                NODE,
                "5.6.7.8:80",
                e,
                true,
            ),
            // Something outside kube-proxy SNATs the node's connection to the LB IP,
            // and the LB sends it back: allowed because the node IP is in a range.
            case(
                "same node to LB1, SNATted to LB1 (implicitly allowed)",
                External,
                "1.2.3.4",
                "1.2.3.4:80",
                e,
                true,
            ),
            case(
                "same node to LB2, SNATted to LB2 (implicitly allowed)",
                External,
                "5.6.7.8",
                "5.6.7.8:80",
                e,
                true,
            ),
        ],
    );
}

fn node_port_state(family: IpFamily) -> ProxyState {
    let (cip, ep1, ep2) = match family {
        IpFamily::V4 => ("172.30.0.41", "10.180.0.1", "10.180.2.1"),
        IpFamily::V6 => ("fd00:172:30::41", "fd00:10:180::1", "fd00:10:180::2:1"),
    };
    let mut s = ProxyState::new();
    let mut sp = port("p80", Protocol::Tcp, cip, 80);
    sp.node_port = Some(3001);
    s.set_endpoints(
        sp.name.clone(),
        vec![ep(ep1, 80, None), ep(ep2, 80, Some("test-node"))],
    );
    s.add_service(sp);
    s
}

#[test]
fn node_ports_ipv4() {
    let both = "10.180.0.1:80, 10.180.2.1:80";
    let basic = || {
        vec![
            case(
                "pod to cluster IP",
                Pod,
                "10.0.0.2",
                "172.30.0.41:80",
                both,
                false,
            ),
            case(
                "external to nodePort",
                External,
                CLIENT,
                "192.168.0.2:3001",
                both,
                true,
            ),
            case(
                "node to nodePort",
                Host,
                NODE,
                "192.168.0.2:3001",
                both,
                true,
            ),
        ]
    };
    // ipt "ipv4, localhost-nodeports enabled" / nft "ipv4": iptables accepts NodePorts
    // on every local address and on localhost, nftables on the node IP only.
    let c = config(IpFamily::V4);
    let state = node_port_state(IpFamily::V4);
    run(&state, &c, IpFamily::V4, &basic());
    for (name, origin, source, dest) in [
        (
            "localhost to nodePort gets masqueraded",
            Host,
            "127.0.0.1",
            "127.0.0.1:3001",
        ),
        (
            "external to nodePort on secondary IP",
            External,
            CLIENT,
            "192.168.1.2:3001",
        ),
    ] {
        run_one_mode(
            &state,
            &c,
            IpFamily::V4,
            &case(name, origin, source, dest, both, true),
            true,
        );
        run_one_mode(
            &state,
            &c,
            IpFamily::V4,
            &case(name, origin, source, dest, "", false),
            false,
        );
    }
    // "ipv4, localhost-nodeports disabled, multiple nodeport-addresses" (ipt) /
    // "ipv4, multiple nodeport-addresses" (nft): the secondary IP is in the list.
    let mut c = config(IpFamily::V4).nodeport_addresses(NodePortAddresses::Cidrs(
        ["192.168.0.0/24", "192.168.1.0/24", "2001:db8::/64"]
            .map(|r| r.parse().unwrap())
            .to_vec(),
    ));
    c.localhost_nodeports = false;
    let mut cases = basic();
    cases.push(case(
        "external to nodePort on secondary IP",
        External,
        CLIENT,
        "192.168.1.2:3001",
        both,
        true,
    ));
    cases.push(case(
        "localhost to nodePort is ignored",
        Host,
        "127.0.0.1",
        "127.0.0.1:3001",
        "",
        false,
    ));
    run(&state, &c, IpFamily::V4, &cases);
}

/// Run one case against one mode only (`iptables`: both ways into iptables).
fn run_one_mode(
    state: &ProxyState,
    config: &ProxyConfig,
    family: IpFamily,
    c: &Case,
    iptables: bool,
) {
    let node = upstream_node();
    let dest: SocketAddr = c.dest.parse().unwrap();
    let p = Packet::new(c.origin, c.protocol, ip(c.source), dest);
    let mut failures = Vec::new();
    if iptables {
        let ipt = proxy_rules::iptables::render(state, config, family).unwrap();
        for (label, text, entry) in [
            (
                "iptables hooks",
                ipt.complete_restore_input(),
                IptablesEntry::Hooks,
            ),
            (
                "iptables kube chains",
                ipt.restore_input(),
                IptablesEntry::KubeChains,
            ),
        ] {
            let dump = IptablesDump::parse(&text, "x").unwrap();
            let t = trace_iptables_with(&dump, &p, &node, entry).unwrap();
            failures.extend(check(label, c, &t, &c.ipt));
        }
    } else {
        let nft =
            NftTable::from_ruleset(&proxy_rules::nftables::render(state, config, family).unwrap())
                .unwrap();
        let t = trace_nftables(&nft, &p, &node).unwrap();
        failures.extend(check("nftables", c, &t, &c.nft));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn node_ports_ipv6() {
    let both = "[fd00:10:180::1]:80, [fd00:10:180::2:1]:80";
    let state = node_port_state(IpFamily::V6);
    let basic = || {
        vec![
            case(
                "pod to cluster IP",
                Pod,
                "fd00:10::2",
                "[fd00:172:30::41]:80",
                both,
                false,
            ),
            case(
                "external to nodePort",
                External,
                "2600:5200::1",
                "[2001:db8::1]:3001",
                both,
                true,
            ),
            case(
                "node to nodePort",
                Host,
                "2001:db8::1",
                "[2001:db8::1]:3001",
                both,
                true,
            ),
            // "localhost to nodePort is ignored": never in IPv6.
            case(
                "localhost to nodePort is ignored",
                Host,
                "::1",
                "[::1]:3001",
                "",
                false,
            ),
        ]
    };
    // ipt "ipv6, localhost-nodeports enabled": every local address, so the secondary
    // IP too; nft "ipv6": the node IP only.
    let c = config(IpFamily::V6);
    run(&state, &c, IpFamily::V6, &basic());
    let alt = case(
        "external to nodePort on secondary IP",
        External,
        "2600:5200::1",
        "[2001:db8:1::2]:3001",
        both,
        true,
    );
    run_one_mode(&state, &c, IpFamily::V6, &alt, true);
    let alt_nft = case(
        "secondary nodeIP ignores NodePorts",
        External,
        "2600:5200::1",
        "[2001:db8:1::2]:3001",
        "",
        false,
    );
    run_one_mode(&state, &c, IpFamily::V6, &alt_nft, false);
    // nft "ipv6, multiple nodeport-addresses": the secondary IP is in the list.
    let c = config(IpFamily::V6).nodeport_addresses(NodePortAddresses::Cidrs(
        [
            "192.168.0.0/24",
            "192.168.1.0/24",
            "2001:db8::/64",
            "2001:db8:1::2/128",
        ]
        .map(|r| r.parse().unwrap())
        .to_vec(),
    ));
    let mut cases = basic();
    cases.push(alt);
    run(&state, &c, IpFamily::V6, &cases);
}

fn policy_state(local: bool) -> ProxyState {
    let mut s = ProxyState::new();
    let mut sp = port("p80", Protocol::Tcp, "172.30.0.41", 80);
    sp.node_port = Some(3001);
    sp.external_ips = vec![ip("192.168.99.11")];
    sp.load_balancer_ips = vec![ip("1.2.3.4")];
    if local {
        sp.external_policy_local = true;
        sp.health_check_node_port = Some(30000);
    }
    s.set_endpoints(
        sp.name.clone(),
        vec![
            ep("10.180.0.1", 80, None),
            ep("10.180.2.1", 80, Some("test-node")),
        ],
    );
    s.add_service(sp);
    s
}

#[test]
fn external_traffic_policy_local() {
    let both = "10.180.0.1:80, 10.180.2.1:80";
    let local = "10.180.2.1:80";
    run(
        &policy_state(true),
        &config(IpFamily::V4),
        IpFamily::V4,
        &[
            case(
                "pod to cluster IP hits both endpoints, unmasqueraded",
                Pod,
                "10.0.0.2",
                "172.30.0.41:80",
                both,
                false,
            ),
            case(
                "pod to external IP hits both endpoints, unmasqueraded",
                Pod,
                "10.0.0.2",
                "192.168.99.11:80",
                both,
                false,
            ),
            case(
                "external to external IP hits only local endpoint, unmasqueraded",
                External,
                CLIENT,
                "192.168.99.11:80",
                local,
                false,
            ),
            case(
                "pod to LB IP hits only both endpoints, unmasqueraded",
                Pod,
                "10.0.0.2",
                "1.2.3.4:80",
                both,
                false,
            ),
            case(
                "external to LB IP hits only local endpoint, unmasqueraded",
                External,
                CLIENT,
                "1.2.3.4:80",
                local,
                false,
            ),
            case(
                "pod to NodePort hits both endpoints, unmasqueraded",
                Pod,
                "10.0.0.2",
                "192.168.0.2:3001",
                both,
                false,
            ),
            case(
                "external to NodePort hits only local endpoint, unmasqueraded",
                External,
                CLIENT,
                "192.168.0.2:3001",
                local,
                false,
            ),
            // Not upstream: the node itself goes to every endpoint, masqueraded.
            case("node to LB IP", Host, NODE, "1.2.3.4:80", both, true),
        ],
    );
}

#[test]
fn external_traffic_policy_cluster() {
    let both = "10.180.0.1:80, 10.180.2.1:80";
    run(
        &policy_state(false),
        &config(IpFamily::V4),
        IpFamily::V4,
        &[
            case(
                "pod to cluster IP hits both endpoints, unmasqueraded",
                Pod,
                "10.0.0.2",
                "172.30.0.41:80",
                both,
                false,
            ),
            case(
                "pod to external IP hits both endpoints, masqueraded",
                Pod,
                "10.0.0.2",
                "192.168.99.11:80",
                both,
                true,
            ),
            case(
                "external to external IP hits both endpoints, masqueraded",
                External,
                CLIENT,
                "192.168.99.11:80",
                both,
                true,
            ),
            case(
                "pod to LB IP hits both endpoints, masqueraded",
                Pod,
                "10.0.0.2",
                "1.2.3.4:80",
                both,
                true,
            ),
            case(
                "external to LB IP hits both endpoints, masqueraded",
                External,
                CLIENT,
                "1.2.3.4:80",
                both,
                true,
            ),
            case(
                "pod to NodePort hits both endpoints, masqueraded",
                Pod,
                "10.0.0.2",
                "192.168.0.2:3001",
                both,
                true,
            ),
            case(
                "external to NodePort hits both endpoints, masqueraded",
                External,
                CLIENT,
                "192.168.0.2:3001",
                both,
                true,
            ),
        ],
    );
}

#[test]
fn no_endpoints_reject() {
    let mut s = ProxyState::new();
    let mut sp = port("p80", Protocol::Tcp, "172.30.0.41", 80);
    sp.node_port = Some(3001);
    sp.external_ips = vec![ip("192.168.99.11")];
    sp.load_balancer_ips = vec![ip("1.2.3.4")];
    s.add_service(sp);
    run(
        &s,
        &config(IpFamily::V4),
        IpFamily::V4,
        &[
            case(
                "pod to cluster IP with no endpoints",
                Pod,
                "10.0.0.2",
                "172.30.0.41:80",
                "REJECT",
                false,
            ),
            case(
                "external to external IP with no endpoints",
                External,
                CLIENT,
                "192.168.99.11:80",
                "REJECT",
                false,
            ),
            case(
                "pod to NodePort with no endpoints",
                Pod,
                "10.0.0.2",
                "192.168.0.2:3001",
                "REJECT",
                false,
            ),
            case(
                "external to NodePort with no endpoints",
                External,
                CLIENT,
                "192.168.0.2:3001",
                "REJECT",
                false,
            ),
            case(
                "pod to LoadBalancer IP with no endpoints",
                Pod,
                "10.0.0.2",
                "1.2.3.4:80",
                "REJECT",
                false,
            ),
            case(
                "external to LoadBalancer IP with no endpoints",
                External,
                CLIENT,
                "1.2.3.4:80",
                "REJECT",
                false,
            ),
            // Not upstream: the node itself. nftables rejects in filter-output; iptables
            // hooks KUBE-EXTERNAL-SERVICES into INPUT and FORWARD only, so the packet to
            // a remote LB IP leaves the node (upstream's tracer, which runs that chain
            // for every packet, says REJECT: the bare restore input below does too).
            case(
                "node to cluster IP with no endpoints",
                Host,
                NODE,
                "172.30.0.41:80",
                "REJECT",
                false,
            ),
            case(
                "node to local external IP with no endpoints",
                Host,
                NODE,
                "192.168.99.11:80",
                "REJECT",
                false,
            ),
        ],
    );
    let node_to_lb = case(
        "node to LoadBalancer IP with no endpoints",
        Host,
        NODE,
        "1.2.3.4:80",
        "REJECT",
        false,
    );
    run_one_mode(&s, &config(IpFamily::V4), IpFamily::V4, &node_to_lb, false);
    let node = upstream_node();
    let ipt = proxy_rules::iptables::render(&s, &config(IpFamily::V4), IpFamily::V4).unwrap();
    let p = Packet::tcp(Host, ip(NODE), "1.2.3.4:80".parse().unwrap());
    let hooks = IptablesDump::parse(&ipt.complete_restore_input(), "x").unwrap();
    let t = trace_iptables_with(&hooks, &p, &node, IptablesEntry::Hooks).unwrap();
    assert_eq!(t.upstream_output(), "", "{t}");
    let bare = IptablesDump::parse(&ipt.restore_input(), "x").unwrap();
    let t = trace_iptables_with(&bare, &p, &node, IptablesEntry::KubeChains).unwrap();
    assert_eq!(t.upstream_output(), "REJECT", "{t}");
}
