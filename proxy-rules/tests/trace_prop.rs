//! Property tests: random small `ProxyState`s (every kind of service, several ports and
//! protocols, endpoints with random conditions and nodes, affinity, traffic policies,
//! source ranges, masquerade-all, every local-traffic detector) render in both modes
//! without panics, and for packets from pods, outside clients and the node to every
//! service address the iptables tracer (following the jump rules from the built-in
//! chains) and the nftables tracer agree on the reachable endpoints (with their
//! probabilities), on drop / reject / pass, and on masquerading.
//!
//! Packets are restricted to what both modes are meant to treat alike: NodePorts on
//! the primary node IP only (nftables' default `--nodeport-addresses` is the node IP,
//! iptables' every local address), no localhost NodePorts (iptables only), no health
//! check ports (iptables accepts them in filter, nftables has no rule). The remaining
//! deliberate differences are encoded in `expected_nft`:
//!
//! 1. a ClusterIP on a port or protocol it does not serve: iptables lets the packet
//!    through untouched, nftables rejects it (`cluster-ips-check`, KEP-3866);
//! 2. an unallocated address in the service CIDR: iptables lets it through, nftables
//!    drops it;
//! 3. the node itself to an external IP or LoadBalancer IP of a service port without
//!    endpoints: iptables only hooks `KUBE-EXTERNAL-SERVICES` into INPUT and FORWARD
//!    (upstream's `iptablesJumpChains`), so the packet leaves the node; nftables
//!    rejects it in `filter-output` (or drops it in `firewall-check` when the node is
//!    not in the source ranges);
//! 4. a source outside `loadBalancerSourceRanges` to the LoadBalancer IP of a port
//!    without endpoints: iptables writes no firewall chain without endpoints
//!    (`usesFWChain := hasEndpoints && …`) and REJECTs, nftables checks the ranges
//!    first (upstream's nftables proxier has no `hasEndpoints` there) and DROPs.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};

use ipnetwork::IpNetwork;
use proptest::prelude::*;
use proxy_rules::config::{LocalDetector, ProxyConfig};
use proxy_rules::iptables::dump::IptablesDump;
use proxy_rules::model::{Endpoint, IpFamily, Protocol, ProxyState, ServicePort, ServicePortName};
use proxy_rules::topology::categorize_endpoints;
use proxy_rules::trace::{
    NftTable, Node, Origin, Packet, Trace, Verdict, trace_iptables, trace_nftables,
};

/// The addresses of one IP family's test cluster (upstream's conventions).
struct Addrs {
    family: IpFamily,
    node: &'static str,
    pod_cidr: &'static str,
    service_cidr: &'static str,
    unallocated: &'static str,
    no_service: &'static str,
    pod: &'static str,
    clients: [&'static str; 3],
    ranges: [&'static str; 3],
}

const V4: Addrs = Addrs {
    family: IpFamily::V4,
    node: "192.168.0.2",
    pod_cidr: "10.0.0.0/8",
    service_cidr: "172.30.0.0/16",
    unallocated: "172.30.0.250",
    no_service: "10.0.0.3",
    pod: "10.0.0.2",
    // In the first range; in none; in the node's range.
    clients: ["203.0.113.2", "203.0.113.130", "192.168.0.77"],
    ranges: ["203.0.113.0/25", "192.168.0.0/24", "10.0.0.0/8"],
};

const V6: Addrs = Addrs {
    family: IpFamily::V6,
    node: "2001:db8::1",
    pod_cidr: "fd00:10::/64",
    service_cidr: "fd00:172:30::/112",
    unallocated: "fd00:172:30::fa",
    no_service: "fd00:10::3",
    pod: "fd00:10::2",
    clients: ["2600:5200::1", "2600:5201::1", "2001:db8::77"],
    ranges: ["2600:5200::/64", "2001:db8::/64", "fd00:10::/64"],
};

impl Addrs {
    fn of(v6: bool) -> &'static Addrs {
        if v6 { &V6 } else { &V4 }
    }

    fn cluster_ip(&self, i: usize) -> IpAddr {
        match self.family {
            IpFamily::V4 => ip(&format!("172.30.0.{}", 10 + i)),
            IpFamily::V6 => ip(&format!("fd00:172:30::{:x}", 0x10 + i)),
        }
    }

    fn external_ip(&self, i: usize) -> IpAddr {
        match self.family {
            IpFamily::V4 => ip(&format!("192.168.99.{}", 20 + i)),
            IpFamily::V6 => ip(&format!("fd00:192:168:99::{:x}", 0x20 + i)),
        }
    }

    fn lb_ip(&self, i: usize) -> IpAddr {
        match self.family {
            IpFamily::V4 => ip(&format!("1.2.3.{}", i + 1)),
            IpFamily::V6 => ip(&format!("2001:db8:1234::{:x}", i + 1)),
        }
    }

    fn endpoint(&self, i: usize, k: usize) -> IpAddr {
        match self.family {
            IpFamily::V4 => ip(&format!("10.180.{i}.{}", k + 1)),
            IpFamily::V6 => ip(&format!("fd00:10::180:{i}:{:x}", k + 1)),
        }
    }
}
const PORTS: [(Protocol, u16); 4] = [
    (Protocol::Tcp, 80),
    (Protocol::Udp, 53),
    (Protocol::Tcp, 53),
    (Protocol::Sctp, 9000),
];

#[derive(Debug, Clone)]
struct EpGen {
    ready: bool,
    serving: bool,
    terminating: bool,
    /// 0: no node, 1: this node, 2: another node.
    node: u8,
}

#[derive(Debug, Clone)]
struct SvcGen {
    ports: Vec<usize>,
    node_port: bool,
    external_ip: bool,
    load_balancer: bool,
    ranges: Vec<usize>,
    affinity: bool,
    external_local: bool,
    internal_local: bool,
    endpoints: Vec<EpGen>,
}

#[derive(Debug, Clone)]
struct Gen {
    services: Vec<SvcGen>,
    masquerade_all: bool,
    /// 0: cluster CIDR, 1: bridge `cbr0`, 2: interface prefix `veth`.
    detector: u8,
    v6: bool,
}

fn ep_gen() -> impl Strategy<Value = EpGen> {
    (any::<bool>(), any::<bool>(), any::<bool>(), 0u8..3).prop_map(
        |(ready, serving, terminating, node)| EpGen {
            // Mostly ready, so most services have endpoints.
            ready: ready || serving,
            serving,
            terminating,
            node,
        },
    )
}

fn svc_gen() -> impl Strategy<Value = SvcGen> {
    (
        proptest::sample::subsequence((0..PORTS.len()).collect::<Vec<_>>(), 1..=2),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        proptest::sample::subsequence(vec![0usize, 1, 2], 0..=2),
        any::<bool>(),
        any::<bool>(),
        proptest::bool::weighted(0.2),
        proptest::collection::vec(ep_gen(), 0..=3),
    )
        .prop_map(
            |(
                ports,
                node_port,
                external_ip,
                load_balancer,
                ranges,
                affinity,
                external_local,
                internal_local,
                endpoints,
            )| {
                SvcGen {
                    ports,
                    node_port,
                    external_ip,
                    load_balancer,
                    ranges,
                    affinity,
                    external_local,
                    internal_local,
                    endpoints,
                }
            },
        )
}

fn state_gen() -> impl Strategy<Value = Gen> {
    (
        proptest::collection::vec(svc_gen(), 1..=3),
        proptest::bool::weighted(0.2),
        0u8..3,
        proptest::bool::weighted(0.3),
    )
        .prop_map(|(services, masquerade_all, detector, v6)| Gen {
            services,
            masquerade_all,
            detector,
            v6,
        })
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn build(g: &Gen) -> (ProxyState, ProxyConfig) {
    let a = Addrs::of(g.v6);
    let mut config = ProxyConfig::new("test-node").node_ip(ip(a.node));
    config.local_detector = match g.detector {
        0 => LocalDetector::ClusterCidr(vec![a.pod_cidr.parse().unwrap()]),
        1 => LocalDetector::BridgeInterface("cbr0".into()),
        _ => LocalDetector::InterfaceNamePrefix("veth".into()),
    };
    config.masquerade_all = g.masquerade_all;
    config.service_cidrs = vec![a.service_cidr.parse().unwrap()];
    let mut state = ProxyState::new();
    for (i, s) in g.services.iter().enumerate() {
        for &pi in &s.ports {
            let (proto, port) = PORTS[pi];
            let name = ServicePortName::new("ns", format!("svc{i}"), format!("p{pi}"), proto);
            let mut sp = ServicePort::cluster_ip(name.clone(), a.cluster_ip(i), port);
            if s.node_port {
                sp.node_port = Some(30000 + (i * 10 + pi) as u16);
            }
            if s.external_ip {
                sp.external_ips = vec![a.external_ip(i)];
            }
            if s.load_balancer {
                sp.load_balancer_ips = vec![a.lb_ip(i)];
                sp.load_balancer_source_ranges = s
                    .ranges
                    .iter()
                    .map(|r| a.ranges[*r].parse::<IpNetwork>().unwrap())
                    .collect();
            }
            if s.affinity {
                sp.session_affinity_seconds = Some(10800);
            }
            sp.external_policy_local = s.external_local && sp.externally_accessible();
            sp.internal_policy_local = s.internal_local;
            if sp.external_policy_local && s.load_balancer {
                sp.health_check_node_port = Some(32000 + i as u16);
            }
            state.add_service(sp);
            let eps = s
                .endpoints
                .iter()
                .enumerate()
                .map(|(k, e)| {
                    let mut ep = Endpoint::ready(a.endpoint(i, k), 8000 + pi as u16);
                    ep.ready = e.ready;
                    ep.serving = e.serving;
                    ep.terminating = e.terminating;
                    ep.node_name = match e.node {
                        0 => None,
                        1 => Some("test-node".into()),
                        _ => Some("other-node".into()),
                    };
                    ep
                })
                .collect();
            state.set_endpoints(name, eps);
        }
    }
    (state, config)
}

/// What a trace amounts to, for comparison.
#[derive(Debug, Clone, PartialEq)]
struct Outcome {
    /// Reached endpoints with their probability (rounded).
    endpoints: Vec<(SocketAddr, u64)>,
    /// `dnat`, `pass` (accepted untouched), `drop`, `reject`, per path.
    kinds: BTreeSet<&'static str>,
    /// Masqueraded on some accepted path.
    masq: bool,
}

fn outcome(t: &Trace) -> Outcome {
    let mut endpoints: Vec<(SocketAddr, u64)> = t
        .endpoint_probabilities()
        .into_iter()
        .map(|(e, p)| (e, (p * 1e6).round() as u64))
        .collect();
    endpoints.sort();
    let kinds = t
        .paths
        .iter()
        .map(|p| match (p.verdict, p.dnat) {
            (Verdict::Dropped, _) => "drop",
            (Verdict::Rejected, _) => "reject",
            (Verdict::Accepted, Some(_)) => "dnat",
            (Verdict::Accepted, None) => "pass",
        })
        .collect();
    Outcome {
        endpoints,
        kinds,
        masq: t.masqueraded(),
    }
}

fn only(kind: &'static str) -> Outcome {
    Outcome {
        endpoints: Vec::new(),
        kinds: [kind].into_iter().collect(),
        masq: false,
    }
}

/// Facts about a service address, for the known differences.
#[derive(Debug, Clone)]
struct AddrFacts {
    /// Some endpoint anywhere is usable.
    has_any: bool,
    /// An external IP or LoadBalancer IP.
    external: bool,
    /// A LoadBalancer IP with source ranges.
    ranges: Vec<IpNetwork>,
}

struct Facts {
    cluster_ips: BTreeSet<IpAddr>,
    by_dest: BTreeMap<(IpAddr, u8, u16), AddrFacts>,
}

fn facts(state: &ProxyState, config: &ProxyConfig) -> Facts {
    let mut f = Facts {
        cluster_ips: BTreeSet::new(),
        by_dest: BTreeMap::new(),
    };
    for (name, sp) in &state.services {
        f.cluster_ips.insert(sp.cluster_ip);
        let has_any = categorize_endpoints(state.endpoints_of(name), sp, config).has_any;
        let proto = sp.protocol().number();
        for e in &sp.external_ips {
            f.by_dest.insert(
                (*e, proto, sp.port),
                AddrFacts {
                    has_any,
                    external: true,
                    ranges: Vec::new(),
                },
            );
        }
        for lb in &sp.load_balancer_ips {
            f.by_dest.insert(
                (*lb, proto, sp.port),
                AddrFacts {
                    has_any,
                    external: true,
                    ranges: sp.load_balancer_source_ranges.clone(),
                },
            );
        }
    }
    f
}

/// What nftables should give, from what iptables gave (see the module docs).
fn expected_nft(ipt: &Outcome, p: &Packet, f: &Facts, node: &Node, a: &Addrs) -> Vec<Outcome> {
    let passes = ipt.kinds.len() == 1 && ipt.kinds.contains("pass");
    let service_cidr: IpNetwork = a.service_cidr.parse().unwrap();
    let dest = f
        .by_dest
        .get(&(p.destination, p.protocol.number(), p.destination_port));
    let node_ip = ip(a.node);
    let in_ranges = |d: &AddrFacts| {
        d.ranges.is_empty()
            || d.ranges.iter().any(|r| r.contains(p.source))
            // The node's own LB traffic is allowed when the node IP is in the ranges.
            || (d.ranges.iter().any(|r| r.contains(node_ip)) && p.source == p.destination)
    };
    if passes && f.cluster_ips.contains(&p.destination) {
        return vec![only("reject")]; // 1
    }
    if passes && service_cidr.contains(p.destination) && !f.cluster_ips.contains(&p.destination) {
        return vec![only("drop")]; // 2
    }
    if let Some(d) = dest {
        if passes
            && p.origin == Origin::Host
            && d.external
            && !d.has_any
            && !node.is_local(&p.destination)
        {
            // 3: rejected, or dropped by the source ranges first.
            return if in_ranges(d) {
                vec![only("reject")]
            } else {
                vec![only("drop")]
            };
        }
        if ipt == &only("reject") && !d.has_any && !in_ranges(d) {
            return vec![only("drop")]; // 4
        }
    }
    vec![ipt.clone()]
}

fn packets(state: &ProxyState, g: &Gen) -> Vec<Packet> {
    let a = Addrs::of(g.v6);
    let pod_if = match g.detector {
        1 => "cbr0",
        2 => "veth0a1b",
        _ => "cbr0",
    };
    let mut dests: Vec<(Protocol, SocketAddr)> = vec![
        (Protocol::Tcp, SocketAddr::new(ip(a.unallocated), 80)),
        (Protocol::Tcp, SocketAddr::new(ip(a.no_service), 80)),
    ];
    let mut hairpins: Vec<IpAddr> = Vec::new();
    for (name, sp) in &state.services {
        let proto = sp.protocol();
        let other = if proto == Protocol::Tcp {
            Protocol::Udp
        } else {
            Protocol::Tcp
        };
        dests.push((proto, SocketAddr::new(sp.cluster_ip, sp.port)));
        dests.push((other, SocketAddr::new(sp.cluster_ip, sp.port)));
        dests.push((proto, SocketAddr::new(sp.cluster_ip, sp.port + 1)));
        for e in sp.external_ips.iter().chain(&sp.load_balancer_ips) {
            dests.push((proto, SocketAddr::new(*e, sp.port)));
        }
        if let Some(np) = sp.node_port {
            dests.push((proto, SocketAddr::new(ip(a.node), np)));
        }
        hairpins.extend(state.endpoints_of(name).first().map(|e| e.ip));
    }
    let mut out = Vec::new();
    for (proto, d) in dests {
        let mut srcs: Vec<Packet> = vec![
            Packet::new(Origin::Pod, proto, ip(a.pod), d).with_in_interface(pod_if),
            Packet::new(Origin::External, proto, ip(a.clients[0]), d).with_in_interface("eth0"),
            Packet::new(Origin::External, proto, ip(a.clients[1]), d).with_in_interface("eth0"),
            Packet::new(Origin::External, proto, ip(a.clients[2]), d).with_in_interface("eth0"),
            Packet::new(Origin::Host, proto, ip(a.node), d),
        ];
        for h in &hairpins {
            srcs.push(Packet::new(Origin::Pod, proto, *h, d).with_in_interface(pod_if));
        }
        out.extend(srcs.into_iter().map(|p| p.with_out_interface("eth0")));
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn iptables_and_nftables_agree(g in state_gen()) {
        let (state, config) = build(&g);
        let family = Addrs::of(g.v6).family;
        let ipt = proxy_rules::iptables::render(&state, &config, family).unwrap();
        let nft = proxy_rules::nftables::render(&state, &config, family).unwrap();
        let dump = IptablesDump::parse(&ipt.complete_restore_input(), "rendered").unwrap();
        let table = NftTable::from_ruleset(&nft).unwrap();
        let node = Node::from_config(&config);
        let f = facts(&state, &config);
        for p in packets(&state, &g) {
            let a = trace_iptables(&dump, &p, &node).unwrap_or_else(|e| panic!("{p}: {e}"));
            let b = trace_nftables(&table, &p, &node).unwrap_or_else(|e| panic!("{p}: {e}"));
            let (oa, ob) = (outcome(&a), outcome(&b));
            let want = expected_nft(&oa, &p, &f, &node, Addrs::of(g.v6));
            prop_assert!(
                want.contains(&ob),
                "{p}: iptables {oa:?}, nftables {ob:?} (expected {want:?})\n{a}\n{b}\nstate: {state:#?}"
            );
            let total: f64 = a.paths.iter().chain(&b.paths).map(|p| p.probability).sum();
            prop_assert!((total - 2.0).abs() < 1e-9);
        }
    }
}
