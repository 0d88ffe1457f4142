//! Packet-flow tests on upstream's golden case (`TestOverallIPTablesRules` /
//! `TestOverallNFTablesRules`, data in `shared/compat/kube-proxy/`), in the table form
//! of upstream's `packetFlowTest`: one table for what both modes agree on, run through
//! the iptables tracer (kube-proxy's restore input as upstream traces it, the same with
//! the jump rules from the built-in chains, and upstream's golden text itself) and the
//! nftables tracer; and one table per mode where they deliberately differ.
//!
//! Where a case comes from upstream, the comment names the test in
//! kubernetes/kubernetes `pkg/proxy/iptables/proxier_test.go` (ipt) or
//! `pkg/proxy/nftables/proxier_test.go` (nft). Upstream's packet tracer runs its cases
//! against these very rules in `TestTracePacket`.

mod golden;

use golden::compat;

use std::net::{IpAddr, SocketAddr};

use proxy_rules::config::NodePortAddresses;
use proxy_rules::iptables::dump::IptablesDump;
use proxy_rules::model::Protocol;
use proxy_rules::trace::{
    IptablesEntry, NftTable, Node, Origin, Packet, Trace, TraceMode, Verdict, trace_iptables,
    trace_iptables_with, trace_nftables,
};

/// Upstream's `testNodeIPs`: what the tracer treats as local (plus loopback).
fn upstream_node() -> Node {
    Node::new(
        [
            "192.168.0.2",
            "192.168.1.2",
            "192.168.99.11",
            "2001:db8::1",
            "2001:db8:1::2",
        ]
        .map(|s| s.parse::<IpAddr>().unwrap()),
    )
}

/// As `tests/compat_iptables.rs` renders the golden case.
fn iptables_ruleset() -> proxy_rules::iptables::IptablesRuleset {
    let mut c = golden::config();
    c.nfacct = true;
    c.random_fully = false;
    golden::render_iptables(golden::objects("overall-iptables.yaml", false), &c)
}

/// As `tests/compat_nftables.rs` renders the golden case (with the ServiceCIDR).
fn nftables_ruleset() -> proxy_rules::nftables::NftRuleset {
    let config = golden::config().nodeport_addresses(NodePortAddresses::Cidrs(vec![
        "192.168.0.2/32".parse().unwrap(),
        "2001:db8::1/128".parse().unwrap(),
    ]));
    golden::render_nftables(golden::objects("overall-nftables.yaml", true), config)
}

/// Upstream's `packetFlowTest`, plus where the packet comes from.
struct Case {
    name: &'static str,
    origin: Origin,
    protocol: Protocol,
    source: &'static str,
    dest: &'static str,
    /// As upstream's tracer prints it: endpoints joined with ", ", `DROP`, `REJECT`,
    /// `ACCEPT`, or empty for no match.
    output: &'static str,
    masq: bool,
}

const fn case(
    name: &'static str,
    origin: Origin,
    source: &'static str,
    dest: &'static str,
    output: &'static str,
    masq: bool,
) -> Case {
    Case {
        name,
        origin,
        protocol: Protocol::Tcp,
        source,
        dest,
        output,
        masq,
    }
}

use Origin::{External, Host, Pod};

const NODE: &str = "192.168.0.2";
const CLIENT: &str = "203.0.113.2"; // testExternalClient (inside the LB source range)
const BLOCKED: &str = "203.0.113.130"; // testExternalClientBlocked (outside it)

/// Cases where both modes agree.
fn shared_cases() -> Vec<Case> {
    vec![
        // ipt TestTracePacket "no match".
        case("no match", Pod, "10.0.0.2", "10.0.0.3:80", "", false),
        // ipt TestTracePacket "single endpoint"; nft TestClusterIPGeneral "simple clusterIP".
        case(
            "pod to ClusterIP",
            Pod,
            "10.0.0.2",
            "172.30.0.41:80",
            "10.180.0.1:80",
            false,
        ),
        // The node is outside the pod CIDR: "masquerade off-cluster traffic".
        case(
            "host to ClusterIP",
            Host,
            NODE,
            "172.30.0.41:80",
            "10.180.0.1:80",
            true,
        ),
        // ipt/nft TestClusterIPGeneral "hairpin to cluster IP".
        case(
            "hairpin to ClusterIP",
            Pod,
            "10.180.0.1",
            "172.30.0.41:80",
            "10.180.0.1:80",
            true,
        ),
        // ipt TestTracePacket "multiple endpoints".
        case(
            "svc4 ClusterIP reaches both endpoints",
            Pod,
            "10.0.0.2",
            "172.30.0.44:80",
            "10.180.0.4:80, 10.180.0.5:80",
            false,
        ),
        case(
            "external to svc4 externalIP (Cluster policy)",
            External,
            CLIENT,
            "192.168.99.33:80",
            "10.180.0.4:80, 10.180.0.5:80",
            true,
        ),
        // ipt TestTracePacket "LOCAL, KUBE-MARK-MASQ".
        case(
            "host to svc2 externalIP",
            Host,
            NODE,
            "192.168.99.22:80",
            "10.180.0.2:80",
            true,
        ),
        // ipt TestTracePacket "DROP": Local policy, no local endpoint.
        case(
            "external to svc2 externalIP",
            External,
            CLIENT,
            "192.168.99.22:80",
            "DROP",
            false,
        ),
        case(
            "external to svc2 LB IP",
            External,
            CLIENT,
            "1.2.3.4:80",
            "DROP",
            false,
        ),
        case(
            "external to svc2 NodePort",
            External,
            CLIENT,
            "192.168.0.2:3001",
            "DROP",
            false,
        ),
        // ipt/nft TestExternalTrafficPolicyLocal "pod to external IP hits both
        // endpoints, unmasqueraded": the pod short-circuit ignores the policy.
        case(
            "pod to svc2 externalIP",
            Pod,
            "10.0.0.2",
            "192.168.99.22:80",
            "10.180.0.2:80",
            false,
        ),
        case(
            "pod to svc2 LB IP",
            Pod,
            "10.0.0.2",
            "1.2.3.4:80",
            "10.180.0.2:80",
            false,
        ),
        case(
            "pod to svc2 NodePort",
            Pod,
            "10.0.0.2",
            "192.168.0.2:3001",
            "10.180.0.2:80",
            false,
        ),
        case(
            "host to svc2 NodePort",
            Host,
            NODE,
            "192.168.0.2:3001",
            "10.180.0.2:80",
            true,
        ),
        case(
            "pod to svc2 ClusterIP",
            Pod,
            "10.0.0.2",
            "172.30.0.42:80",
            "10.180.0.2:80",
            false,
        ),
        // ipt/nft TestNodePorts "external to nodePort", "node to nodePort".
        case(
            "external to svc3 NodePort",
            External,
            CLIENT,
            "192.168.0.2:3003",
            "10.180.0.3:80",
            true,
        ),
        case(
            "node to svc3 NodePort",
            Host,
            NODE,
            "192.168.0.2:3003",
            "10.180.0.3:80",
            true,
        ),
        // ipt/nft TestLoadBalancer "accepted external to LB1", "blocked external to LB1".
        case(
            "allowed external to svc5 LB IP",
            External,
            CLIENT,
            "5.6.7.8:80",
            "10.180.0.3:80",
            true,
        ),
        case(
            "blocked external to svc5 LB IP",
            External,
            BLOCKED,
            "5.6.7.8:80",
            "DROP",
            false,
        ),
        // ipt/nft TestLoadBalancer "pod to LB1 (blocked by LoadBalancerSourceRanges)".
        case(
            "pod to svc5 LB IP",
            Pod,
            "10.0.0.2",
            "5.6.7.8:80",
            "DROP",
            false,
        ),
        // The node IP is not in 203.0.113.0/25 either.
        case(
            "host to svc5 LB IP",
            Host,
            NODE,
            "5.6.7.8:80",
            "DROP",
            false,
        ),
        // ipt/nft TestLoadBalancer "nodePort bypasses LoadBalancerSourceRanges".
        case(
            "blocked external to svc5 NodePort",
            External,
            BLOCKED,
            "192.168.0.2:3002",
            "10.180.0.3:80",
            true,
        ),
        // Affinity: a new connection has no affinity entry, so the random choice runs.
        case(
            "pod to svc5 ClusterIP",
            Pod,
            "10.0.0.2",
            "172.30.0.45:80",
            "10.180.0.3:80",
            false,
        ),
        // ipt TestTracePacket "REJECT".
        case(
            "pod to svc6 (no endpoints)",
            Pod,
            "10.0.0.2",
            "172.30.0.46:80",
            "REJECT",
            false,
        ),
        case(
            "host to svc6 (no endpoints)",
            Host,
            NODE,
            "172.30.0.46:80",
            "REJECT",
            false,
        ),
        case(
            "external to a node port nobody uses",
            External,
            CLIENT,
            "192.168.0.2:4444",
            "",
            false,
        ),
    ]
}

/// iptables mode only.
fn iptables_only_cases() -> Vec<Case> {
    let mut udp = case(
        "TCP-only port does not match UDP traffic",
        Pod,
        "10.180.0.2",
        "172.30.0.42:80",
        "",
        false,
    );
    udp.protocol = Protocol::Udp;
    vec![
        // ipt TestClusterIPGeneral "TCP-only port does not match UDP traffic".
        udp,
        // ipt TestClusterIPGeneral "svc1 does not accept svc2's ports".
        case(
            "undefined ClusterIP port",
            Pod,
            "10.180.0.2",
            "172.30.0.41:443",
            "",
            false,
        ),
        // ipt TestTracePacket "ACCEPT (NodePortHealthCheck)".
        case(
            "health check node port",
            Host,
            NODE,
            "192.168.0.2:30000",
            "ACCEPT",
            false,
        ),
        // ipt TestNodePorts "localhost to nodePort gets masqueraded".
        case(
            "localhost NodePort",
            Host,
            "127.0.0.1",
            "127.0.0.1:3003",
            "10.180.0.3:80",
            true,
        ),
        // ipt TestNodePorts "external to nodePort on secondary IP": every local address.
        case(
            "NodePort on a secondary node IP",
            External,
            CLIENT,
            "192.168.1.2:3003",
            "10.180.0.3:80",
            true,
        ),
        // Nothing drops traffic to unallocated ClusterIPs in iptables mode.
        case(
            "unallocated ClusterIP",
            Pod,
            "10.180.0.2",
            "172.30.0.50:80",
            "",
            false,
        ),
    ]
}

/// nftables mode only.
fn nftables_only_cases() -> Vec<Case> {
    let mut udp = case(
        "TCP-only port does not match UDP traffic",
        Pod,
        "10.180.0.2",
        "172.30.0.42:80",
        "REJECT",
        false,
    );
    udp.protocol = Protocol::Udp;
    vec![
        // nft TestClusterIPGeneral "TCP-only port does not match UDP traffic": REJECT.
        udp,
        // nft TestClusterIPGeneral "svc1 does not accept svc2's ports": REJECT.
        case(
            "undefined ClusterIP port",
            Pod,
            "10.180.0.2",
            "172.30.0.41:443",
            "REJECT",
            false,
        ),
        case(
            "host to an undefined ClusterIP port",
            Host,
            NODE,
            "172.30.0.41:443",
            "REJECT",
            false,
        ),
        // No rule accepts health check node ports in nftables mode.
        case(
            "health check node port",
            Host,
            NODE,
            "192.168.0.2:30000",
            "",
            false,
        ),
        // KEP-3866: no localhost NodePorts.
        case(
            "localhost NodePort",
            Host,
            "127.0.0.1",
            "127.0.0.1:3003",
            "",
            false,
        ),
        // nftables NodePorts are on the primary node IP only (nodeport-ips).
        case(
            "NodePort on a secondary node IP",
            External,
            CLIENT,
            "192.168.1.2:3003",
            "",
            false,
        ),
        // nft TestClusterIPGeneral "packet to unallocated cluster ip": DROP.
        case(
            "unallocated ClusterIP",
            Pod,
            "10.180.0.2",
            "172.30.0.50:80",
            "DROP",
            false,
        ),
    ]
}

fn packet(c: &Case) -> Packet {
    let dest: SocketAddr = c.dest.parse().unwrap();
    Packet::new(c.origin, c.protocol, c.source.parse().unwrap(), dest)
}

/// Run the cases; report every mismatch with the trace that shows why.
fn run(label: &str, cases: &[Case], trace: impl Fn(&Packet) -> Trace) {
    let mut failures = Vec::new();
    for c in cases {
        let t = trace(&packet(c));
        let total: f64 = t.paths.iter().map(|p| p.probability).sum();
        assert!(
            (total - 1.0).abs() < 1e-9,
            "{label}: {}: probabilities sum to {total}",
            c.name
        );
        let output = t.upstream_output();
        if output != c.output || t.masqueraded() != c.masq {
            failures.push(format!(
                "{label}: {:?}: expected {:?} masq {}, got {:?} masq {}\n{t}",
                c.name,
                c.output,
                c.masq,
                output,
                t.masqueraded()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

fn iptables_dumps() -> Vec<(&'static str, IptablesDump, TraceMode)> {
    let rules = iptables_ruleset();
    vec![
        (
            "iptables restore input (upstream's way in)",
            IptablesDump::parse(&rules.restore_input(), "restore input").unwrap(),
            TraceMode::IptablesKubeChains,
        ),
        (
            "iptables with jump rules (hooks)",
            IptablesDump::parse(&rules.complete_restore_input(), "complete").unwrap(),
            TraceMode::IptablesHooks,
        ),
        (
            "upstream's golden iptables text",
            IptablesDump::parse(&compat("overall-iptables.rules"), "golden").unwrap(),
            TraceMode::IptablesKubeChains,
        ),
    ]
}

#[test]
fn iptables_golden_packet_flows() {
    let node = upstream_node();
    for (label, dump, mode) in iptables_dumps() {
        let trace = |p: &Packet| {
            let t = trace_iptables(&dump, p, &node).unwrap_or_else(|e| panic!("{label}: {e}"));
            assert_eq!(t.mode, mode, "{label}");
            t
        };
        run(label, &shared_cases(), trace);
        run(label, &iptables_only_cases(), trace);
    }
}

#[test]
fn nftables_golden_packet_flows() {
    let node = upstream_node();
    for (label, table) in [
        (
            "rendered nftables",
            NftTable::from_ruleset(&nftables_ruleset()).unwrap(),
        ),
        (
            "upstream's golden nftables text",
            NftTable::parse(&compat("overall-nftables.nft"), "golden").unwrap(),
        ),
    ] {
        let trace = |p: &Packet| {
            trace_nftables(&table, p, &node).unwrap_or_else(|e| panic!("{label}: {e}"))
        };
        run(label, &shared_cases(), trace);
        run(label, &nftables_only_cases(), trace);
    }
}

#[test]
fn random_choices_are_uniform_in_both_modes() {
    let node = upstream_node();
    let p = Packet::tcp(
        Pod,
        "10.0.0.2".parse().unwrap(),
        "172.30.0.44:80".parse().unwrap(),
    );
    let ipt = IptablesDump::parse(&iptables_ruleset().complete_restore_input(), "x").unwrap();
    let nft = NftTable::from_ruleset(&nftables_ruleset()).unwrap();
    for t in [
        trace_iptables(&ipt, &p, &node).unwrap(),
        trace_nftables(&nft, &p, &node).unwrap(),
    ] {
        let probs = t.endpoint_probabilities();
        assert_eq!(probs.len(), 2, "{t}");
        for (_, prob) in probs {
            assert!((prob - 0.5).abs() < 1e-9, "{t}");
        }
        assert_eq!(t.paths.len(), 2);
        assert_eq!(t.verdict(), Some(Verdict::Accepted));
    }
}

#[test]
fn hooks_follow_the_kernel_order() {
    let node = upstream_node();
    let dump = IptablesDump::parse(&iptables_ruleset().complete_restore_input(), "x").unwrap();
    // External to a NodePort: nat PREROUTING, then FORWARD (the endpoint is not local),
    // where KUBE-FORWARD accepts the marked packet, then POSTROUTING masquerades it.
    let p = Packet::tcp(
        External,
        CLIENT.parse().unwrap(),
        "192.168.0.2:3003".parse().unwrap(),
    );
    let t = trace_iptables(&dump, &p, &node).unwrap();
    let path = &t.paths[0];
    let chains: Vec<String> = path
        .steps
        .iter()
        .map(|s| format!("{} {}", s.table, s.chain))
        .collect();
    assert_eq!(
        chains,
        [
            "nat PREROUTING",
            "nat KUBE-SERVICES",
            "nat KUBE-NODEPORTS",
            "nat KUBE-EXT-X27LE4BHSL4DOUIK",
            "nat KUBE-MARK-MASQ",
            "nat KUBE-EXT-X27LE4BHSL4DOUIK",
            "nat KUBE-SVC-X27LE4BHSL4DOUIK",
            "nat KUBE-SEP-OYPFS5VJICHGATKP",
            // The jump to KUBE-PROXY-FIREWALL (no rule there matches), then KUBE-FORWARD.
            "filter FORWARD",
            "filter FORWARD",
            "filter KUBE-FORWARD",
            "nat POSTROUTING",
            "nat KUBE-POSTROUTING",
            "nat KUBE-POSTROUTING",
        ],
        "{t}"
    );
    let by = path.verdict_rule.as_ref().unwrap();
    assert_eq!(by.chain, "KUBE-FORWARD");
    assert!(path.masqueraded);
    // The same packet with `! --ctstate`: host to localhost is not blocked by
    // KUBE-FIREWALL because it was DNATed (the rule skips DNAT connections).
    let p = Packet::tcp(
        Host,
        "127.0.0.1".parse().unwrap(),
        "127.0.0.1:3003".parse().unwrap(),
    );
    let t = trace_iptables(&dump, &p, &node).unwrap();
    assert_eq!(t.upstream_output(), "10.180.0.3:80");
    // nftables: filter-prerouting-pre-dnat (-110) runs before nat-prerouting (-100).
    let nft = NftTable::from_ruleset(&nftables_ruleset()).unwrap();
    let p = Packet::tcp(
        External,
        BLOCKED.parse().unwrap(),
        "5.6.7.8:80".parse().unwrap(),
    );
    let t = trace_nftables(&nft, &p, &node).unwrap();
    let steps: Vec<&str> = t.paths[0].steps.iter().map(|s| s.chain.as_str()).collect();
    assert_eq!(
        steps,
        [
            "filter-prerouting-pre-dnat",
            "firewall-check",
            "firewall-HVFWP5L3-ns5/svc5/tcp/p80"
        ]
    );
    assert_eq!(t.verdict(), Some(Verdict::Dropped));
}

#[test]
fn both_ways_into_iptables_agree_on_the_golden_case() {
    // The restore input traced upstream's way and the same rules with jump rules
    // traced through the hooks give the same outcome for every shared case.
    let node = upstream_node();
    let rules = iptables_ruleset();
    let plain = IptablesDump::parse(&rules.restore_input(), "plain").unwrap();
    let full = IptablesDump::parse(&rules.complete_restore_input(), "full").unwrap();
    for c in shared_cases().iter().chain(&iptables_only_cases()) {
        let p = packet(c);
        let a = trace_iptables_with(&plain, &p, &node, IptablesEntry::KubeChains).unwrap();
        let b = trace_iptables_with(&full, &p, &node, IptablesEntry::Hooks).unwrap();
        assert_eq!(a.upstream_output(), b.upstream_output(), "{}", c.name);
        assert_eq!(a.masqueraded(), b.masqueraded(), "{}", c.name);
        assert_eq!(
            a.endpoint_probabilities().len(),
            b.endpoint_probabilities().len()
        );
    }
}

#[test]
fn nft_transactions_are_applied_in_order() {
    // A partial-sync transaction on top of the first dump gives the same table as the
    // second render's dump.
    let node = upstream_node();
    let old = nftables_ruleset();
    let mut changed = old.clone();
    // Drop svc4's second endpoint: its chain is flushed, the numgen rule rewritten.
    let svc4 = changed
        .chains
        .keys()
        .find(|k| k.starts_with("service-LAUZTJTB"))
        .unwrap()
        .clone();
    let ep5 = changed
        .chains
        .keys()
        .find(|k| k.starts_with("endpoint-5RFCDDV7"))
        .unwrap()
        .clone();
    let rules = &mut changed.chains.get_mut(&svc4).unwrap().rules;
    let last = rules.last_mut().unwrap();
    last.text = last.text.replace("mod 2", "mod 1");
    last.text = format!("{} }}", last.text.split(" , ").next().unwrap());
    changed.chains.remove(&ep5);
    let tx = proxy_rules::nftables::transaction(Some(&old), &changed, false, &[]);
    let applied = NftTable::parse(&format!("{}{tx}", old.dump()), "dump+tx").unwrap();
    let p = Packet::tcp(
        Pod,
        "10.0.0.2".parse().unwrap(),
        "172.30.0.44:80".parse().unwrap(),
    );
    let before = trace_nftables(&NftTable::from_ruleset(&old).unwrap(), &p, &node).unwrap();
    let after = trace_nftables(&applied, &p, &node).unwrap();
    assert_eq!(before.endpoints().len(), 2);
    assert_eq!(after.upstream_output(), "10.180.0.4:80", "{tx}\n{after}");
    // The flushed endpoint chain is still there (deleted a sync later), but empty.
    assert!(applied.chains[&ep5].rules.is_empty());
    // A full replace script works on any earlier state.
    let replaced = NftTable::parse(
        &format!("{}{}", old.dump(), changed.replace_script()),
        "replace",
    )
    .unwrap();
    assert_eq!(replaced, NftTable::from_ruleset(&changed).unwrap());
}

#[test]
fn reports_name_what_they_cannot_evaluate() {
    let node = upstream_node();
    let mut text = iptables_ruleset().complete_restore_input();
    text = text.replace(
        "-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment \"ns1/svc1:p80 -> 10.180.0.1:80\"",
        "-A KUBE-SVC-XPGD46QRK7WJZT7O -m cpu --cpu 0 -m comment --comment \"ns1/svc1:p80 -> 10.180.0.1:80\"",
    );
    let dump = IptablesDump::parse(&text, "edited").unwrap();
    let p = Packet::tcp(
        Pod,
        "10.0.0.2".parse().unwrap(),
        "172.30.0.41:80".parse().unwrap(),
    );
    let e = trace_iptables(&dump, &p, &node).unwrap_err().to_string();
    assert!(
        e.contains("iptables nat KUBE-SVC-XPGD46QRK7WJZT7O:2") && e.contains("-m cpu"),
        "{e}"
    );
    // Other services are still traced.
    let p = Packet::tcp(
        Pod,
        "10.0.0.2".parse().unwrap(),
        "172.30.0.44:80".parse().unwrap(),
    );
    assert!(trace_iptables(&dump, &p, &node).is_ok());

    let dump = nftables_ruleset()
        .dump()
        .replace("masquerade fully-random", "masquerade to :1000");
    let table = NftTable::parse(&dump, "edited").unwrap();
    let p = Packet::tcp(
        Host,
        NODE.parse().unwrap(),
        "172.30.0.41:80".parse().unwrap(),
    );
    let e = trace_nftables(&table, &p, &node).unwrap_err().to_string();
    assert!(
        e.contains("chain masquerading:3") && e.contains("masquerade to"),
        "{e}"
    );
    // Unmarked packets never get there.
    let p = Packet::tcp(
        Pod,
        "10.0.0.2".parse().unwrap(),
        "172.30.0.41:80".parse().unwrap(),
    );
    assert!(trace_nftables(&table, &p, &node).is_ok());
}

#[test]
fn the_report_is_readable() {
    let node = upstream_node();
    let dump = IptablesDump::parse(&iptables_ruleset().complete_restore_input(), "x").unwrap();
    let p = Packet::tcp(
        Pod,
        "10.0.0.2".parse().unwrap(),
        "172.30.0.44:80".parse().unwrap(),
    );
    let text = trace_iptables(&dump, &p, &node).unwrap().to_string();
    assert!(
        text.starts_with("pod tcp 10.0.0.2 -> 172.30.0.44:80 through iptables (built-in chains)"),
        "{text}"
    );
    assert!(
        text.contains("path 1/2 (p=0.5000): DNAT to 10.180.0.4:80, not masqueraded, accepted"),
        "{text}"
    );
    assert!(text.contains("[random: taken, p=0.5000]"), "{text}");
    assert!(
        text.ends_with(
            "summary: endpoints [10.180.0.4:80, 10.180.0.5:80], masquerade no, verdict accepted"
        ),
        "{text}"
    );
}
