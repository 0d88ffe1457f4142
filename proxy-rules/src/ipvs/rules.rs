//! The iptables rules IPVS mode still needs (masquerade, NodePorts, LoadBalancer
//! source ranges, the VIP access filter), written as kube-proxy's IPVS proxier writes
//! them (`writeIptablesRules`, `acceptIPVSTraffic`, `createAndLinkKubeChain`). Their
//! number is fixed: what they apply to lives in the ipsets.

use crate::config::{LocalDetector, ProxyConfig};
use crate::iptables::{JumpRule, Line, Table, TableRules, kube_forward_rules};
use crate::ipvs::ipset::{IpSet, names};
use crate::model::{IpFamily, Protocol};

/// The chains of IPVS mode.
pub mod chains {
    /// nat: the entry point; matches the service ipsets.
    pub const SERVICES: &str = "KUBE-SERVICES";
    /// nat: masquerades marked and hairpin traffic.
    pub const POSTROUTING: &str = "KUBE-POSTROUTING";
    /// nat: NodePort masquerade (RETURN for Local policy); filter: health check
    /// node port ACCEPT.
    pub const NODE_PORT: &str = "KUBE-NODE-PORT";
    /// nat: LoadBalancer masquerade (RETURN for Local policy).
    pub const LOAD_BALANCER: &str = "KUBE-LOAD-BALANCER";
    /// nat: sets the masquerade mark.
    pub const MARK_MASQ: &str = "KUBE-MARK-MASQ";
    /// filter: accepts marked and established forwarded traffic.
    pub const FORWARD: &str = "KUBE-FORWARD";
    /// filter: sends LoadBalancer IPs with source ranges to the source-range check.
    pub const PROXY_FIREWALL: &str = "KUBE-PROXY-FIREWALL";
    /// filter: RETURN for allowed sources, DROP for the rest.
    pub const SOURCE_RANGES_FIREWALL: &str = "KUBE-SOURCE-RANGES-FIREWALL";
    /// filter: REJECTs new connections to a VIP on a port that is no service
    /// (kubernetes issue 72236).
    pub const IPVS_FILTER: &str = "KUBE-IPVS-FILTER";
    /// filter: DROPs the node's own traffic to LoadBalancer IPs whose source ranges do
    /// not include the node (kubernetes issue 119656).
    pub const IPVS_OUT_FILTER: &str = "KUBE-IPVS-OUT-FILTER";
}

/// The nat chains kube-proxy's IPVS mode declares, in its order.
pub const NAT_CHAINS: [&str; 5] = [
    chains::SERVICES,
    chains::POSTROUTING,
    chains::NODE_PORT,
    chains::LOAD_BALANCER,
    chains::MARK_MASQ,
];

/// The filter chains kube-proxy's IPVS mode declares, in its order.
pub const FILTER_CHAINS: [&str; 6] = [
    chains::FORWARD,
    chains::NODE_PORT,
    chains::PROXY_FIREWALL,
    chains::SOURCE_RANGES_FIREWALL,
    chains::IPVS_FILTER,
    chains::IPVS_OUT_FILTER,
];

/// The jump rules from built-in chains (kube-proxy's `iptablesJumpChain` for IPVS
/// mode), in the order kube-proxy prepends them.
pub fn jump_rules() -> Vec<JumpRule> {
    let jump = |table, chain, comment: &str, target: &str| JumpRule {
        table,
        chain,
        args: ["-m", "comment", "--comment", comment, "-j", target]
            .map(str::to_owned)
            .to_vec(),
    };
    vec![
        jump(
            Table::Nat,
            "OUTPUT",
            "kubernetes service portals",
            chains::SERVICES,
        ),
        jump(
            Table::Nat,
            "PREROUTING",
            "kubernetes service portals",
            chains::SERVICES,
        ),
        jump(
            Table::Nat,
            "POSTROUTING",
            "kubernetes postrouting rules",
            chains::POSTROUTING,
        ),
        jump(
            Table::Filter,
            "FORWARD",
            "kubernetes forwarding rules",
            chains::FORWARD,
        ),
        jump(
            Table::Filter,
            "INPUT",
            "kubernetes health check rules",
            chains::NODE_PORT,
        ),
        jump(
            Table::Filter,
            "INPUT",
            "kube-proxy firewall rules",
            chains::PROXY_FIREWALL,
        ),
        jump(
            Table::Filter,
            "FORWARD",
            "kube-proxy firewall rules",
            chains::PROXY_FIREWALL,
        ),
        jump(
            Table::Filter,
            "INPUT",
            "kubernetes ipvs access filter",
            chains::IPVS_FILTER,
        ),
        jump(
            Table::Filter,
            "OUTPUT",
            "kubernetes ipvs access filter",
            chains::IPVS_OUT_FILTER,
        ),
    ]
}

/// The iptables part of an IPVS plan: nat and filter chains and rules for
/// `iptables-restore --noflush`, plus the jumps from built-in chains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpvsIptables {
    /// The family (`iptables-restore` or `ip6tables-restore`).
    pub family: IpFamily,
    /// The nat table.
    pub nat: TableRules,
    /// The filter table.
    pub filter: TableRules,
    /// The jump rules from built-in chains, ensured separately by kube-proxy.
    pub jumps: Vec<JumpRule>,
}

impl IpvsIptables {
    /// The `iptables-restore --noflush` input: `*nat … COMMIT` then `*filter … COMMIT`,
    /// kube-proxy's order for IPVS mode. It names ipsets, which must exist first.
    pub fn restore_input(&self) -> String {
        let mut out = String::new();
        self.nat.write("nat", &mut out);
        self.filter.write("filter", &mut out);
        out
    }

    /// The restore input plus the jump rules (each put first in its built-in chain, as
    /// kube-proxy's prepends leave them), for loading into a fresh namespace.
    pub fn complete_restore_input(&self) -> String {
        let mut out = String::new();
        self.nat
            .with_jumps(Table::Nat, &self.jumps)
            .write("nat", &mut out);
        self.filter
            .with_jumps(Table::Filter, &self.jumps)
            .write("filter", &mut out);
        out
    }

    /// The number of rules in both tables.
    pub fn rule_count(&self) -> usize {
        self.nat.rules.len() + self.filter.rules.len()
    }
}

/// One rule matching one ipset (kube-proxy's `ipsetWithIptablesChain` entries).
struct SetRule {
    set: &'static str,
    table: Table,
    from: &'static str,
    to: &'static str,
    match_type: &'static str,
    protocol: Option<&'static str>,
}

const fn set_rule(
    set: &'static str,
    table: Table,
    from: &'static str,
    to: &'static str,
    match_type: &'static str,
    protocol: Option<&'static str>,
) -> SetRule {
    SetRule {
        set,
        table,
        from,
        to,
        match_type,
        protocol,
    }
}

/// kube-proxy's `ipsetWithIptablesChain`, in its order: the Local-policy NodePort sets
/// come before the masquerading ones so their RETURN wins.
const SET_RULES: [SetRule; 12] = [
    set_rule(
        names::LOOP_BACK,
        Table::Nat,
        chains::POSTROUTING,
        "MASQUERADE",
        "dst,dst,src",
        None,
    ),
    set_rule(
        names::LOAD_BALANCER,
        Table::Nat,
        chains::SERVICES,
        chains::LOAD_BALANCER,
        "dst,dst",
        None,
    ),
    set_rule(
        names::LOAD_BALANCER_LOCAL,
        Table::Nat,
        chains::LOAD_BALANCER,
        "RETURN",
        "dst,dst",
        None,
    ),
    set_rule(
        names::NODE_PORT_LOCAL_TCP,
        Table::Nat,
        chains::NODE_PORT,
        "RETURN",
        "dst",
        Some("tcp"),
    ),
    set_rule(
        names::NODE_PORT_TCP,
        Table::Nat,
        chains::NODE_PORT,
        chains::MARK_MASQ,
        "dst",
        Some("tcp"),
    ),
    set_rule(
        names::NODE_PORT_LOCAL_UDP,
        Table::Nat,
        chains::NODE_PORT,
        "RETURN",
        "dst",
        Some("udp"),
    ),
    set_rule(
        names::NODE_PORT_UDP,
        Table::Nat,
        chains::NODE_PORT,
        chains::MARK_MASQ,
        "dst",
        Some("udp"),
    ),
    set_rule(
        names::NODE_PORT_LOCAL_SCTP,
        Table::Nat,
        chains::NODE_PORT,
        "RETURN",
        "dst,dst",
        Some("sctp"),
    ),
    set_rule(
        names::NODE_PORT_SCTP,
        Table::Nat,
        chains::NODE_PORT,
        chains::MARK_MASQ,
        "dst,dst",
        Some("sctp"),
    ),
    set_rule(
        names::LOAD_BALANCER_FW,
        Table::Filter,
        chains::PROXY_FIREWALL,
        chains::SOURCE_RANGES_FIREWALL,
        "dst,dst",
        None,
    ),
    set_rule(
        names::LOAD_BALANCER_SOURCE_CIDR,
        Table::Filter,
        chains::SOURCE_RANGES_FIREWALL,
        "RETURN",
        "dst,dst,src",
        None,
    ),
    set_rule(
        names::LOAD_BALANCER_SOURCE_IP,
        Table::Filter,
        chains::SOURCE_RANGES_FIREWALL,
        "RETURN",
        "dst,dst,src",
        None,
    ),
];

/// A LoadBalancer IP, port and protocol the node itself must not reach (source ranges
/// that exclude the node).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NoNodeAccess {
    pub(crate) ip: String,
    pub(crate) protocol: Protocol,
    pub(crate) port: u16,
}

/// `! -s CIDR`, `! -i BRIDGE`, `! -i PREFIX+`: kube-proxy's `IfNotLocal()`.
fn if_not_local(config: &ProxyConfig, family: IpFamily) -> Option<Vec<String>> {
    match &config.local_detector {
        LocalDetector::None => None,
        LocalDetector::ClusterCidr(cidrs) | LocalDetector::NodeCidr(cidrs) => cidrs
            .iter()
            .find(|c| IpFamily::of_net(c) == family)
            .map(|c| vec!["!".into(), "-s".into(), c.to_string()]),
        LocalDetector::BridgeInterface(br) => Some(vec!["!".into(), "-i".into(), br.clone()]),
        LocalDetector::InterfaceNamePrefix(p) => {
            Some(vec!["!".into(), "-i".into(), format!("{p}+")])
        }
    }
}

/// Render the rules from the filled sets (pure).
pub(crate) fn render(
    config: &ProxyConfig,
    family: IpFamily,
    sets: &[IpSet],
    no_node_access: &[NoNodeAccess],
) -> IpvsIptables {
    let set = |base: &str| -> &IpSet {
        sets.iter()
            .find(|s| s.base_name == base)
            .expect("every ipset of IPSETS is in the plan")
    };
    let mark = config.masquerade_mark_text();
    let mut nat: Vec<String> = Vec::new();
    let mut filter: Vec<String> = Vec::new();

    // Connections from localhost never reach a service chain.
    nat.push(
        Line::new(chains::SERVICES)
            .w(&["-s", family.loopback_net(), "-j", "RETURN"])
            .done(),
    );

    // kube-proxy's ipsetWithIptablesChain: one rule per non-empty set.
    for r in &SET_RULES {
        let s = set(r.set);
        if s.is_empty() {
            continue;
        }
        let mut l = Line::new(r.from);
        if let Some(p) = r.protocol {
            l = l.w(&["-p", p]);
        }
        let line = l
            .comment(s.comment)
            .w(&[
                "-m",
                "set",
                "--match-set",
                &s.name,
                r.match_type,
                "-j",
                r.to,
            ])
            .done();
        match r.table {
            Table::Filter => filter.push(line),
            _ => nat.push(line),
        }
    }

    // ClusterIP masquerade: all of it, off-cluster sources, or (no detector) sources
    // that are themselves VIPs (`src,dst`).
    let cluster = set(names::CLUSTER_IP);
    if !cluster.is_empty() {
        let base = Line::new(chains::SERVICES).comment(cluster.comment).w(&[
            "-m",
            "set",
            "--match-set",
            &cluster.name,
        ]);
        let line = if config.masquerade_all {
            base.w(&["dst,dst", "-j", chains::MARK_MASQ])
        } else if let Some(args) = if_not_local(config, family) {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            base.w(&["dst,dst"]).w(&args).w(&["-j", chains::MARK_MASQ])
        } else {
            base.w(&["src,dst", "-j", chains::MARK_MASQ])
        };
        nat.push(line.done());
    }

    // External IPs: masquerade (Cluster policy only), then accept traffic from off the
    // machine and traffic to IPs that are local anyway.
    let external_accepts = |s: &IpSet, nat: &mut Vec<String>| {
        let base = || {
            Line::new(chains::SERVICES).comment(s.comment).w(&[
                "-m",
                "set",
                "--match-set",
                &s.name,
                "dst,dst",
            ])
        };
        nat.push(
            base()
                .w(&[
                    "-m",
                    "physdev",
                    "!",
                    "--physdev-is-in",
                    "-m",
                    "addrtype",
                    "!",
                    "--src-type",
                    "LOCAL",
                    "-j",
                    "ACCEPT",
                ])
                .done(),
        );
        nat.push(
            base()
                .w(&["-m", "addrtype", "--dst-type", "LOCAL", "-j", "ACCEPT"])
                .done(),
        );
    };
    let ext = set(names::EXTERNAL_IP);
    if !ext.is_empty() {
        nat.push(
            Line::new(chains::SERVICES)
                .comment(ext.comment)
                .w(&[
                    "-m",
                    "set",
                    "--match-set",
                    &ext.name,
                    "dst,dst",
                    "-j",
                    chains::MARK_MASQ,
                ])
                .done(),
        );
        external_accepts(ext, &mut nat);
    }
    let ext_local = set(names::EXTERNAL_IP_LOCAL);
    if !ext_local.is_empty() {
        external_accepts(ext_local, &mut nat);
    }

    nat.push(
        Line::new(chains::SERVICES)
            .w(&[
                "-m",
                "addrtype",
                "--dst-type",
                "LOCAL",
                "-j",
                chains::NODE_PORT,
            ])
            .done(),
    );
    nat.push(
        Line::new(chains::LOAD_BALANCER)
            .w(&["-j", chains::MARK_MASQ])
            .done(),
    );
    filter.push(
        Line::new(chains::SOURCE_RANGES_FIREWALL)
            .w(&["-j", "DROP"])
            .done(),
    );
    for e in no_node_access {
        let port = e.port.to_string();
        filter.push(
            Line::new(chains::IPVS_OUT_FILTER)
                .w(&[
                    "-s",
                    &e.ip,
                    "-m",
                    "ipvs",
                    "--vaddr",
                    &e.ip,
                    "--vproto",
                    e.protocol.as_str(),
                    "--vport",
                    &port,
                    "-j",
                    "DROP",
                ])
                .done(),
        );
    }

    // acceptIPVSTraffic: at the end of KUBE-SERVICES, accept what IPVS will handle.
    for base in [names::CLUSTER_IP, names::LOAD_BALANCER] {
        let s = set(base);
        if !s.is_empty() {
            nat.push(
                Line::new(chains::SERVICES)
                    .w(&[
                        "-m",
                        "set",
                        "--match-set",
                        &s.name,
                        s.dst_match(),
                        "-j",
                        "ACCEPT",
                    ])
                    .done(),
            );
        }
    }

    // kube-proxy's IPVS mode writes no INVALID drop here.
    filter.extend(kube_forward_rules(&mark, false, false));
    let mark_mask = format!("{mark}/{mark}");
    let hc = set(names::HEALTH_CHECK_NODE_PORT);
    filter.push(
        Line::new(chains::NODE_PORT)
            .comment(hc.comment)
            .w(&["-m", "set", "--match-set", &hc.name, "dst", "-j", "ACCEPT"])
            .done(),
    );

    // KUBE-IPVS-FILTER: VIP traffic to a service port passes, other new connections
    // to a VIP are rejected.
    for (base, dir) in [
        (names::LOAD_BALANCER, "dst,dst"),
        (names::CLUSTER_IP, "dst,dst"),
        (names::EXTERNAL_IP, "dst,dst"),
        (names::EXTERNAL_IP_LOCAL, "dst,dst"),
        (names::HEALTH_CHECK_NODE_PORT, "dst"),
    ] {
        filter.push(
            Line::new(chains::IPVS_FILTER)
                .w(&[
                    "-m",
                    "set",
                    "--match-set",
                    &set(base).name,
                    dir,
                    "-j",
                    "RETURN",
                ])
                .done(),
        );
    }
    filter.push(
        Line::new(chains::IPVS_FILTER)
            .w(&[
                "-m",
                "conntrack",
                "--ctstate",
                "NEW",
                "-m",
                "set",
                "--match-set",
                &set(names::IPVS_IPS).name,
                "dst",
                "-j",
                "REJECT",
            ])
            .done(),
    );

    // KUBE-POSTROUTING and KUBE-MARK-MASQ, as in iptables mode.
    nat.push(
        Line::new(chains::POSTROUTING)
            .w(&["-m", "mark", "!", "--mark", &mark_mask, "-j", "RETURN"])
            .done(),
    );
    nat.push(
        Line::new(chains::POSTROUTING)
            .w(&["-j", "MARK", "--xor-mark", &mark])
            .done(),
    );
    let mut masq = Line::new(chains::POSTROUTING)
        .comment("kubernetes service traffic requiring SNAT")
        .w(&["-j", "MASQUERADE"]);
    if config.random_fully {
        masq = masq.w(&["--random-fully"]);
    }
    nat.push(masq.done());
    nat.push(
        Line::new(chains::MARK_MASQ)
            .w(&["-j", "MARK", "--or-mark", &mark])
            .done(),
    );

    IpvsIptables {
        family,
        nat: TableRules {
            chains: NAT_CHAINS.map(str::to_owned).to_vec(),
            rules: nat,
            deleted: Vec::new(),
        },
        filter: TableRules {
            chains: FILTER_CHAINS.map(str::to_owned).to_vec(),
            rules: filter,
            deleted: Vec::new(),
        },
        jumps: jump_rules(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipvs::ipset::IPSETS;

    fn empty_sets(family: IpFamily) -> Vec<IpSet> {
        IPSETS.iter().map(|s| IpSet::new(s, family)).collect()
    }

    #[test]
    fn empty_plan_has_only_the_fixed_rules() {
        let config = ProxyConfig::new("n");
        let r = render(&config, IpFamily::V4, &empty_sets(IpFamily::V4), &[]);
        assert_eq!(
            r.nat.rules,
            [
                "-A KUBE-SERVICES -s 127.0.0.0/8 -j RETURN",
                "-A KUBE-SERVICES -m addrtype --dst-type LOCAL -j KUBE-NODE-PORT",
                "-A KUBE-LOAD-BALANCER -j KUBE-MARK-MASQ",
                "-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN",
                "-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000",
                "-A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE --random-fully",
                "-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000",
            ]
        );
        assert_eq!(r.filter.rules.len(), 1 + 2 + 1 + 6);
        assert_eq!(r.jumps.len(), 9);
        assert_eq!(
            r.jumps[8].restore_line(),
            "-A OUTPUT -m comment --comment \"kubernetes ipvs access filter\" -j KUBE-IPVS-OUT-FILTER"
        );
    }

    #[test]
    fn ipv6_uses_its_loopback_and_set_names() {
        let config = ProxyConfig::new("n");
        let r = render(&config, IpFamily::V6, &empty_sets(IpFamily::V6), &[]);
        assert_eq!(r.nat.rules[0], "-A KUBE-SERVICES -s ::1/128 -j RETURN");
        assert!(
            r.filter.rules.contains(
                &"-A KUBE-IPVS-FILTER -m set --match-set KUBE-6-CLUSTER-IP dst,dst -j RETURN"
                    .to_owned()
            )
        );
    }
}
