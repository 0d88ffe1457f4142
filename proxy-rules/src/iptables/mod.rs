//! iptables mode: kube-proxy's rule layout rendered as `iptables-restore` input.
//!
//! [`render`] turns one family's [`ProxyState`] into an [`IptablesRuleset`] (the whole
//! ruleset); [`IptablesRenderer`] keeps the per-service rules between syncs so a
//! change to one Service re-renders only that Service and a partial restore rewrites
//! only its chains, as kube-proxy's `MinimizeIPTablesRestore` does.
//!
//! Names and texts are kube-proxy's: `KUBE-SERVICES`, `KUBE-SVC-<hash>`, the comments,
//! the `statistic` probabilities (`0.5000000000`), the masquerade mark. A node that ran
//! kube-proxy can switch to this renderer and keep its `iptables-save | grep` habits.

pub mod dump;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::IpAddr;

use crate::Result;
use crate::config::{LocalDetector, NodePortTargets, ProxyConfig};
use crate::model::{Endpoint, IpFamily, ProxyState, ServiceName, ServicePort, ServicePortName};
use crate::names::{IptablesChainNames, chains, iptables_endpoint_chain};
use crate::topology::plan_policies;

/// An iptables table this crate writes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Table {
    /// `filter`.
    Filter,
    /// `nat`.
    Nat,
    /// `mangle` (only the canary chain).
    Mangle,
}

impl Table {
    /// The table's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Table::Filter => "filter",
            Table::Nat => "nat",
            Table::Mangle => "mangle",
        }
    }
}

/// A rule in a built-in chain jumping to one of ours, which kube-proxy ensures with
/// individual `iptables -C`/`-I` calls (never through `iptables-restore`, which would
/// have to own the built-in chain).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JumpRule {
    /// The table.
    pub table: Table,
    /// The built-in chain (`PREROUTING`, `INPUT`, ...).
    pub chain: &'static str,
    /// The rule's arguments after the chain, ending in `-j <our chain>`.
    pub args: Vec<String>,
}

impl JumpRule {
    /// The rule as an `-A CHAIN ...` line of restore input (arguments quoted).
    pub fn restore_line(&self) -> String {
        let mut line = format!("-A {}", self.chain);
        for arg in &self.args {
            line.push(' ');
            line.push_str(&quote_arg(arg));
        }
        line
    }
}

/// kube-proxy's jump rules from the built-in chains (`iptablesJumpChains` and the
/// kubelet firewall jumps), in the order kube-proxy prepends them.
pub fn jump_rules(localhost_firewall: bool) -> Vec<JumpRule> {
    let new = ["-m", "conntrack", "--ctstate", "NEW"];
    let mut out = Vec::new();
    let mut add = |table, chain, extra: &[&str], comment: &str, target: &str| {
        let mut args: Vec<String> = extra.iter().map(|s| (*s).to_owned()).collect();
        if !comment.is_empty() {
            args.extend(["-m", "comment", "--comment", comment].map(str::to_owned));
        }
        args.extend(["-j".to_owned(), target.to_owned()]);
        out.push(JumpRule { table, chain, args });
    };
    let ext = "kubernetes externally-visible service portals";
    let portals = "kubernetes service portals";
    let lbfw = "kubernetes load balancer firewall";
    add(Table::Filter, "INPUT", &new, ext, chains::EXTERNAL_SERVICES);
    add(
        Table::Filter,
        "FORWARD",
        &new,
        ext,
        chains::EXTERNAL_SERVICES,
    );
    add(
        Table::Filter,
        "INPUT",
        &[],
        "kubernetes health check service ports",
        chains::NODEPORTS,
    );
    add(Table::Filter, "FORWARD", &new, portals, chains::SERVICES);
    add(Table::Filter, "OUTPUT", &new, portals, chains::SERVICES);
    add(
        Table::Filter,
        "FORWARD",
        &[],
        "kubernetes forwarding rules",
        chains::FORWARD,
    );
    add(Table::Filter, "INPUT", &new, lbfw, chains::PROXY_FIREWALL);
    add(Table::Filter, "OUTPUT", &new, lbfw, chains::PROXY_FIREWALL);
    add(Table::Filter, "FORWARD", &new, lbfw, chains::PROXY_FIREWALL);
    add(Table::Nat, "OUTPUT", &[], portals, chains::SERVICES);
    add(Table::Nat, "PREROUTING", &[], portals, chains::SERVICES);
    add(
        Table::Nat,
        "POSTROUTING",
        &[],
        "kubernetes postrouting rules",
        chains::POSTROUTING,
    );
    if localhost_firewall {
        add(Table::Filter, "INPUT", &[], "", chains::FIREWALL);
        add(Table::Filter, "OUTPUT", &[], "", chains::FIREWALL);
    }
    out
}

/// Quote an argument for `iptables-restore` input when it needs it: anything but
/// `[A-Za-z0-9/:._,!+=@-]` gets double quotes, with `"` and `\` escaped. Control
/// characters (newlines above all, which would end the rule) are dropped, so no text
/// can add a rule or an option.
pub fn quote_arg(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/:._,!+=@-".contains(&b));
    if plain {
        return arg.to_owned();
    }
    let mut out = String::with_capacity(arg.len() + 2);
    out.push('"');
    for c in arg.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The probability text of rule `i` (0-based) of `n` endpoints, as kube-proxy prints
/// it: `1/(n-i)` with 10 decimals (`%0.10f`), for example `0.5000000000`.
pub fn probability(remaining: usize) -> String {
    format!("{:.10}", 1.0 / remaining as f64)
}

/// The rules one service port contributes, by destination.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServicePortRules {
    /// The nat chains this service port owns (`KUBE-SVC/SVL/EXT/FW/SEP-…`), each with
    /// its rules as full `-A` lines, in declaration order.
    pub nat_chains: Vec<(String, Vec<String>)>,
    /// Lines for nat `KUBE-SERVICES`.
    pub nat_services: Vec<String>,
    /// Lines for nat `KUBE-NODEPORTS`.
    pub nat_nodeports: Vec<String>,
    /// Lines for filter `KUBE-SERVICES`.
    pub filter_services: Vec<String>,
    /// Lines for filter `KUBE-EXTERNAL-SERVICES`.
    pub filter_external: Vec<String>,
    /// Lines for filter `KUBE-NODEPORTS`.
    pub filter_nodeports: Vec<String>,
    /// Lines for filter `KUBE-PROXY-FIREWALL`.
    pub filter_firewall: Vec<String>,
    /// Internal policy Local without local endpoints (DROP).
    pub no_local_internal: bool,
    /// External policy Local without local endpoints (DROP).
    pub no_local_external: bool,
}

impl ServicePortRules {
    fn nat_rule_count(&self) -> usize {
        self.nat_chains.iter().map(|(_, r)| r.len()).sum::<usize>()
            + self.nat_services.len()
            + self.nat_nodeports.len()
    }

    fn filter_rule_count(&self) -> usize {
        self.filter_services.len()
            + self.filter_external.len()
            + self.filter_nodeports.len()
            + self.filter_firewall.len()
    }
}

/// Settings resolved once per family and configuration.
#[derive(Debug, Clone)]
struct Context {
    family: IpFamily,
    config: ProxyConfig,
    mark: String,
    if_local: Option<Vec<String>>,
    if_not_local: Option<Vec<String>>,
    nodeports: NodePortTargets,
    localhost_nodeports: bool,
}

impl Context {
    fn new(config: &ProxyConfig, family: IpFamily) -> Result<Self> {
        config.validate()?;
        let (if_local, if_not_local) = match &config.local_detector {
            LocalDetector::None => (None, None),
            LocalDetector::ClusterCidr(cidrs) | LocalDetector::NodeCidr(cidrs) => {
                match cidrs
                    .iter()
                    .find(|c| crate::model::IpFamily::of_net(c) == family)
                {
                    Some(c) => (
                        Some(vec!["-s".into(), c.to_string()]),
                        Some(vec!["!".into(), "-s".into(), c.to_string()]),
                    ),
                    None => (None, None),
                }
            }
            LocalDetector::BridgeInterface(br) => (
                Some(vec!["-i".into(), br.clone()]),
                Some(vec!["!".into(), "-i".into(), br.clone()]),
            ),
            LocalDetector::InterfaceNamePrefix(p) => (
                Some(vec!["-i".into(), format!("{p}+")]),
                Some(vec!["!".into(), "-i".into(), format!("{p}+")]),
            ),
        };
        let nodeports = NodePortTargets::resolve(config, family, true);
        let localhost_nodeports =
            config.localhost_nodeports && family == IpFamily::V4 && nodeports.includes_loopback();
        Ok(Self {
            family,
            config: config.clone(),
            mark: config.masquerade_mark_text(),
            if_local,
            if_not_local,
            nodeports,
            localhost_nodeports,
        })
    }
}

/// A line builder: words joined by spaces, quoted where needed.
pub(crate) struct Line(String);

impl Line {
    pub(crate) fn new(chain: &str) -> Self {
        Line(format!("-A {chain}"))
    }
    pub(crate) fn w(mut self, words: &[&str]) -> Self {
        for w in words {
            self.0.push(' ');
            self.0.push_str(w);
        }
        self
    }
    pub(crate) fn comment(mut self, text: &str) -> Self {
        self.0.push_str(" -m comment --comment ");
        self.0.push_str(&quote_arg(text));
        self
    }
    fn opt_comment(self, text: &str, on: bool) -> Self {
        if on { self.comment(text) } else { self }
    }
    fn args(mut self, args: &Option<Vec<String>>) -> Self {
        for a in args.iter().flatten() {
            self.0.push(' ');
            self.0.push_str(a);
        }
        self
    }
    fn proto(self, proto: &str) -> Self {
        self.w(&["-m", proto, "-p", proto])
    }
    pub(crate) fn done(self) -> String {
        self.0
    }
}

/// kube-proxy's `KUBE-FORWARD` rules (iptables and IPVS modes): drop INVALID (unless
/// `nf_conntrack_tcp_be_liberal`; counted with nfacct when `nfacct`), accept marked and
/// established traffic. `mark` is the masquerade mark text (`0x4000`).
pub(crate) fn kube_forward_rules(mark: &str, nfacct: bool, drop_invalid: bool) -> Vec<String> {
    let mut out = Vec::new();
    if drop_invalid {
        let mut l = Line::new(chains::FORWARD).w(&["-m", "conntrack", "--ctstate", "INVALID"]);
        if nfacct {
            l = l.w(&[
                "-m",
                "nfacct",
                "--nfacct-name",
                "ct_state_invalid_dropped_pkts",
            ]);
        }
        out.push(l.w(&["-j", "DROP"]).done());
    }
    out.push(
        Line::new(chains::FORWARD)
            .comment("kubernetes forwarding rules")
            .w(&[
                "-m",
                "mark",
                "--mark",
                &format!("{mark}/{mark}"),
                "-j",
                "ACCEPT",
            ])
            .done(),
    );
    out.push(
        Line::new(chains::FORWARD)
            .comment("kubernetes forwarding conntrack rule")
            .w(&[
                "-m",
                "conntrack",
                "--ctstate",
                "RELATED,ESTABLISHED",
                "-j",
                "ACCEPT",
            ])
            .done(),
    );
    out
}

/// Render the rules of one service port (pure; kube-proxy's per-service part of
/// `syncProxyRules`).
fn render_service_port(
    ctx: &Context,
    svc: &ServicePort,
    endpoints: &[Endpoint],
    large_cluster: bool,
) -> ServicePortRules {
    let config = &ctx.config;
    let mut out = ServicePortRules::default();
    let spn = svc.name.to_string();
    let proto = svc.protocol().as_str();
    let port = svc.port.to_string();
    let names = IptablesChainNames::of(&svc.name);
    let with_comments = !large_cluster;
    let plan = plan_policies(svc, endpoints, config);
    let cat = &plan.endpoints;
    let (has_any, has_internal, has_external) =
        (plan.has_any(), plan.has_internal, plan.has_external);
    let (uses_cluster_chain, uses_local_chain, uses_ext_chain) = (
        plan.uses_cluster_chain,
        plan.uses_local_chain,
        plan.uses_external_chain,
    );
    let pick = |local: bool| if local { &names.local } else { &names.cluster };
    let internal_chain = pick(svc.internal_policy_local);
    let external_policy_chain = pick(svc.external_policy_local);
    out.no_local_internal = plan.no_local_internal;
    out.no_local_external = plan.no_local_external;

    let no_endpoints = format!("{spn} has no endpoints");
    let no_local = format!("{spn} has no local endpoints");
    let (internal_filter, external_filter) = if !has_any {
        (
            (no_endpoints.as_str(), "REJECT"),
            (no_endpoints.as_str(), "REJECT"),
        )
    } else {
        ((no_local.as_str(), "DROP"), (no_local.as_str(), "DROP"))
    };

    let mut chains: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    let declare = |name: &str, order: &mut Vec<String>| {
        if !order.iter().any(|n| n == name) {
            order.push(name.to_owned());
        }
    };

    // Endpoint chains.
    let mut sep_rules: Vec<(String, Vec<String>)> = Vec::new();
    for ep in &cat.all_reachable {
        let chain = iptables_endpoint_chain(&svc.name, ep);
        let ip = ep.ip.to_string();
        let masq = Line::new(&chain)
            .opt_comment(&spn, with_comments)
            .w(&["-s", &ip, "-j", chains::MARK_MASQ])
            .done();
        let mut dnat = Line::new(&chain).opt_comment(&spn, with_comments);
        if svc.session_affinity_seconds.is_some() {
            dnat = dnat.w(&["-m", "recent", "--name", &chain, "--set"]);
        }
        let dnat = dnat
            .proto(proto)
            .w(&["-j", "DNAT", "--to-destination", &ep.address()])
            .done();
        sep_rules.push((chain, vec![masq, dnat]));
    }

    // The ClusterIP.
    let cip = svc.cluster_ip.to_string();
    let cluster_ip_comment = format!("{spn} cluster IP");
    let cip_args = |l: Line| {
        l.comment(&cluster_ip_comment)
            .proto(proto)
            .w(&["-d", &cip, "--dport", &port])
    };
    if has_internal {
        out.nat_services.push(
            cip_args(Line::new(chains::SERVICES))
                .w(&["-j", internal_chain])
                .done(),
        );
    } else {
        out.filter_services.push(
            Line::new(chains::SERVICES)
                .comment(internal_filter.0)
                .proto(proto)
                .w(&["-d", &cip, "--dport", &port, "-j", internal_filter.1])
                .done(),
        );
    }

    // External IPs.
    let ext_ip_comment = format!("{spn} external IP");
    for ip in &svc.external_ips {
        let ip = ip.to_string();
        if has_any {
            out.nat_services.push(
                Line::new(chains::SERVICES)
                    .comment(&ext_ip_comment)
                    .proto(proto)
                    .w(&["-d", &ip, "--dport", &port, "-j", &names.external])
                    .done(),
            );
        }
        if !has_external {
            out.filter_external.push(
                Line::new(chains::EXTERNAL_SERVICES)
                    .comment(external_filter.0)
                    .proto(proto)
                    .w(&["-d", &ip, "--dport", &port, "-j", external_filter.1])
                    .done(),
            );
        }
    }

    // LoadBalancer IPs.
    let uses_fw =
        has_any && !svc.load_balancer_ips.is_empty() && !svc.load_balancer_source_ranges.is_empty();
    let lb_chain = if uses_fw {
        &names.firewall
    } else {
        &names.external
    };
    let lb_comment = format!("{spn} loadbalancer IP");
    for ip in &svc.load_balancer_ips {
        let ip = ip.to_string();
        if has_any {
            out.nat_services.push(
                Line::new(chains::SERVICES)
                    .comment(&lb_comment)
                    .proto(proto)
                    .w(&["-d", &ip, "--dport", &port, "-j", lb_chain])
                    .done(),
            );
        }
        if uses_fw {
            out.filter_firewall.push(
                Line::new(chains::PROXY_FIREWALL)
                    .comment(&format!("{spn} traffic not accepted by {}", names.firewall))
                    .proto(proto)
                    .w(&["-d", &ip, "--dport", &port, "-j", "DROP"])
                    .done(),
            );
        }
    }
    if !has_external {
        for ip in &svc.load_balancer_ips {
            let ip = ip.to_string();
            out.filter_external.push(
                Line::new(chains::EXTERNAL_SERVICES)
                    .comment(external_filter.0)
                    .proto(proto)
                    .w(&["-d", &ip, "--dport", &port, "-j", external_filter.1])
                    .done(),
            );
        }
    }

    // NodePort.
    if let Some(np) = svc.node_port {
        let np = np.to_string();
        if has_any {
            if ctx.localhost_nodeports {
                let mut l = Line::new(chains::NODEPORTS).comment(&spn).proto(proto).w(&[
                    "-d",
                    "127.0.0.0/8",
                    "--dport",
                    &np,
                ]);
                if config.nfacct {
                    l = l.w(&[
                        "-m",
                        "nfacct",
                        "--nfacct-name",
                        "localhost_nps_accepted_pkts",
                    ]);
                }
                out.nat_nodeports.push(l.w(&["-j", &names.external]).done());
            }
            out.nat_nodeports.push(
                Line::new(chains::NODEPORTS)
                    .comment(&spn)
                    .proto(proto)
                    .w(&["--dport", &np, "-j", &names.external])
                    .done(),
            );
        }
        if !has_external {
            out.filter_external.push(
                Line::new(chains::EXTERNAL_SERVICES)
                    .comment(external_filter.0)
                    .w(&["-m", "addrtype", "--dst-type", "LOCAL"])
                    .proto(proto)
                    .w(&["--dport", &np, "-j", external_filter.1])
                    .done(),
            );
        }
    }

    // Health check node port.
    if let Some(hc) = svc.health_check_node_port {
        out.filter_nodeports.push(
            Line::new(chains::NODEPORTS)
                .comment(&format!("{spn} health check node port"))
                .proto("tcp")
                .w(&["--dport", &hc.to_string(), "-j", "ACCEPT"])
                .done(),
        );
    }

    // The firewall chain (loadBalancerSourceRanges).
    if uses_fw {
        declare(&names.firewall, &mut order);
        let rules = chains.entry(names.firewall.clone()).or_default();
        let mut allow_from_node = false;
        for src in &svc.load_balancer_source_ranges {
            rules.push(
                Line::new(&names.firewall)
                    .comment(&lb_comment)
                    .w(&["-s", &src.to_string(), "-j", &names.external])
                    .done(),
            );
            if let Some(node_ip) = config.primary_ip(ctx.family) {
                allow_from_node |= src.contains(node_ip);
            }
        }
        if allow_from_node {
            for ip in &svc.load_balancer_ips {
                rules.push(
                    Line::new(&names.firewall)
                        .comment(&lb_comment)
                        .w(&["-s", &ip.to_string(), "-j", &names.external])
                        .done(),
                );
            }
        }
        rules.push(
            Line::new(&names.firewall)
                .comment(&format!(
                    "other traffic to {spn} will be dropped by KUBE-PROXY-FIREWALL"
                ))
                .done(),
        );
    }

    // Masquerade of ClusterIP traffic from outside the pod network (or all of it).
    if has_internal {
        let masq = if config.masquerade_all {
            Some(
                cip_args(Line::new(internal_chain))
                    .w(&["-j", chains::MARK_MASQ])
                    .done(),
            )
        } else if ctx.if_not_local.is_some() {
            Some(
                cip_args(Line::new(internal_chain))
                    .args(&ctx.if_not_local)
                    .w(&["-j", chains::MARK_MASQ])
                    .done(),
            )
        } else {
            None
        };
        declare(internal_chain, &mut order);
        if let Some(m) = masq {
            chains.entry(internal_chain.clone()).or_default().push(m);
        }
    }

    // The external chain.
    if uses_ext_chain {
        declare(&names.external, &mut order);
        let rules = chains.entry(names.external.clone()).or_default();
        if !svc.external_policy_local {
            rules.push(
                Line::new(&names.external)
                    .comment(&format!(
                        "masquerade traffic for {spn} external destinations"
                    ))
                    .w(&["-j", chains::MARK_MASQ])
                    .done(),
            );
        } else {
            if ctx.if_local.is_some() {
                rules.push(
                    Line::new(&names.external)
                        .comment(&format!("pod traffic for {spn} external destinations"))
                        .args(&ctx.if_local)
                        .w(&["-j", &names.cluster])
                        .done(),
                );
            }
            rules.push(
                Line::new(&names.external)
                    .comment(&format!(
                        "masquerade LOCAL traffic for {spn} external destinations"
                    ))
                    .w(&[
                        "-m",
                        "addrtype",
                        "--src-type",
                        "LOCAL",
                        "-j",
                        chains::MARK_MASQ,
                    ])
                    .done(),
            );
            rules.push(
                Line::new(&names.external)
                    .comment(&format!(
                        "route LOCAL traffic for {spn} external destinations"
                    ))
                    .w(&[
                        "-m",
                        "addrtype",
                        "--src-type",
                        "LOCAL",
                        "-j",
                        &names.cluster,
                    ])
                    .done(),
            );
        }
        if has_external {
            rules.push(
                Line::new(&names.external)
                    .w(&["-j", external_policy_chain])
                    .done(),
            );
        }
    }

    // Endpoint choice.
    let mut lb_rules = |chain: &str, eps: &[&Endpoint], order: &mut Vec<String>| {
        declare(chain, order);
        let rules = chains.entry(chain.to_owned()).or_default();
        if let Some(secs) = svc.session_affinity_seconds {
            for ep in eps {
                let sep = iptables_endpoint_chain(&svc.name, ep);
                rules.push(
                    Line::new(chain)
                        .opt_comment(&format!("{spn} -> {}", ep.address()), with_comments)
                        .w(&[
                            "-m",
                            "recent",
                            "--name",
                            &sep,
                            "--rcheck",
                            "--seconds",
                            &secs.to_string(),
                            "--reap",
                            "-j",
                            &sep,
                        ])
                        .done(),
                );
            }
        }
        let n = eps.len();
        for (i, ep) in eps.iter().enumerate() {
            let sep = iptables_endpoint_chain(&svc.name, ep);
            let mut l =
                Line::new(chain).opt_comment(&format!("{spn} -> {}", ep.address()), with_comments);
            if i + 1 < n {
                l = l.w(&[
                    "-m",
                    "statistic",
                    "--mode",
                    "random",
                    "--probability",
                    &probability(n - i),
                ]);
            }
            rules.push(l.w(&["-j", &sep]).done());
        }
    };
    if uses_cluster_chain {
        lb_rules(&names.cluster, &cat.cluster, &mut order);
    }
    if uses_local_chain {
        lb_rules(&names.local, &cat.local, &mut order);
    }

    for name in order {
        let rules = chains.remove(&name).unwrap_or_default();
        out.nat_chains.push((name, rules));
    }
    out.nat_chains.extend(sep_rules);
    out
}

/// Counts of what a render holds, for kube-proxy's metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RuleCounts {
    /// Rules in the filter table (`sync_proxy_rules_iptables_total{table="filter"}`).
    pub filter: usize,
    /// Rules in the nat table (`sync_proxy_rules_iptables_total{table="nat"}`).
    pub nat: usize,
    /// Service ports with internal policy Local and no local endpoint.
    pub no_local_internal: usize,
    /// Service ports with external policy Local and no local endpoint.
    pub no_local_external: usize,
}

/// One table's part of restore input.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableRules {
    /// The chains declared (`:CHAIN - [0:0]`, which also flushes them), in order.
    pub chains: Vec<String>,
    /// The `-A` lines, in order.
    pub rules: Vec<String>,
    /// Chains deleted after the rules (`-X CHAIN`).
    pub deleted: Vec<String>,
}

impl TableRules {
    /// A copy with the jump rules of `table` put first, in the order kube-proxy's
    /// prepends leave them (the last one listed ends up first).
    pub fn with_jumps(&self, table: Table, jumps: &[JumpRule]) -> TableRules {
        let mut out = self.clone();
        for jump in jumps.iter().filter(|j| j.table == table) {
            out.rules.insert(0, jump.restore_line());
        }
        out
    }

    /// Append this table as restore input (`*name`, declarations, rules, deletions,
    /// `COMMIT`).
    pub fn write(&self, name: &str, out: &mut String) {
        let _ = writeln!(out, "*{name}");
        for c in &self.chains {
            let _ = writeln!(out, ":{c} - [0:0]");
        }
        for r in &self.rules {
            out.push_str(r);
            out.push('\n');
        }
        for c in &self.deleted {
            let _ = writeln!(out, "-X {c}");
        }
        out.push_str("COMMIT\n");
    }
}

/// A ruleset for `iptables-restore --noflush`: the filter and nat tables' chains and
/// rules, plus the jump rules the built-in chains need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IptablesRuleset {
    /// The IP family (`iptables-restore` or `ip6tables-restore`).
    pub family: IpFamily,
    /// The filter table.
    pub filter: TableRules,
    /// The nat table.
    pub nat: TableRules,
    /// The jump rules from built-in chains (ensured separately).
    pub jumps: Vec<JumpRule>,
    /// Rule counts of the whole ruleset (also of chains a partial restore skips).
    pub counts: RuleCounts,
}

impl IptablesRuleset {
    /// The `iptables-restore --noflush` input: `*filter … COMMIT` then `*nat … COMMIT`.
    pub fn restore_input(&self) -> String {
        let mut out = String::with_capacity(
            64 * (self.filter.rules.len() + self.nat.rules.len() + self.nat.chains.len()),
        );
        self.filter.write("filter", &mut out);
        self.nat.write("nat", &mut out);
        out
    }

    /// Complete input for a plain `iptables-restore` (which replaces the filter and nat
    /// tables, as on a fresh node): the ruleset plus the jump rules from the built-in
    /// chains, so piping it into `iptables-restore` makes the Services work.
    pub fn complete_restore_input(&self) -> String {
        let mut out = String::new();
        self.filter
            .with_jumps(Table::Filter, &self.jumps)
            .write("filter", &mut out);
        self.nat
            .with_jumps(Table::Nat, &self.jumps)
            .write("nat", &mut out);
        out
    }
}

/// Render one family's whole ruleset (a full sync's input).
pub fn render(
    state: &ProxyState,
    config: &ProxyConfig,
    family: IpFamily,
) -> Result<IptablesRuleset> {
    let mut r = IptablesRenderer::new(config, family)?;
    r.update(state, None);
    Ok(r.ruleset(None, &[]))
}

/// The iptables renderer with its per-service cache: the sync engine's state between
/// syncs.
#[derive(Debug, Clone)]
pub struct IptablesRenderer {
    ctx: Context,
    large_cluster: bool,
    rules: BTreeMap<ServicePortName, ServicePortRules>,
}

/// What [`IptablesRenderer::update`] changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RenderUpdate {
    /// Service ports whose rules changed (or appeared, or disappeared).
    pub changed: BTreeSet<ServicePortName>,
    /// nat chains no longer rendered (to delete).
    pub removed_chains: BTreeSet<String>,
    /// Whether every service port was re-rendered (first render, config or
    /// large-cluster mode change).
    pub full: bool,
}

impl IptablesRenderer {
    /// A renderer for one family.
    pub fn new(config: &ProxyConfig, family: IpFamily) -> Result<Self> {
        Ok(Self {
            ctx: Context::new(config, family)?,
            large_cluster: false,
            rules: BTreeMap::new(),
        })
    }

    /// The family rendered.
    pub fn family(&self) -> IpFamily {
        self.ctx.family
    }

    /// The configuration rendered with.
    pub fn config(&self) -> &ProxyConfig {
        &self.ctx.config
    }

    /// Whether per-endpoint comments are left out (more than the configured threshold
    /// of endpoints).
    pub fn large_cluster_mode(&self) -> bool {
        self.large_cluster
    }

    /// Re-render the given Services' ports (`None`: all of them) from `state`.
    pub fn update(
        &mut self,
        state: &ProxyState,
        services: Option<&BTreeSet<ServiceName>>,
    ) -> RenderUpdate {
        let large = state.total_endpoints() > self.ctx.config.large_cluster_threshold;
        let full = services.is_none() || large != self.large_cluster || self.rules.is_empty();
        self.large_cluster = large;
        let mut upd = RenderUpdate {
            full,
            ..RenderUpdate::default()
        };
        let targets: Vec<ServicePortName> = if full {
            self.rules
                .keys()
                .chain(state.services.keys())
                .cloned()
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect()
        } else {
            let services = services.expect("checked above");
            self.rules
                .keys()
                .chain(state.services.keys())
                .filter(|k| services.contains(&k.service))
                .cloned()
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect()
        };
        for name in targets {
            let new = state
                .services
                .get(&name)
                .map(|svc| render_service_port(&self.ctx, svc, state.endpoints_of(&name), large));
            let old = self.rules.remove(&name);
            if old.as_ref() != new.as_ref() {
                upd.changed.insert(name.clone());
                let new_chains: BTreeSet<&str> = new
                    .iter()
                    .flat_map(|r| r.nat_chains.iter().map(|(c, _)| c.as_str()))
                    .collect();
                for (c, _) in old.iter().flat_map(|r| r.nat_chains.iter()) {
                    if !new_chains.contains(c.as_str()) {
                        upd.removed_chains.insert(c.clone());
                    }
                }
            }
            if let Some(new) = new {
                self.rules.insert(name, new);
            }
        }
        // A chain dropped by one port may be owned by another (never with kube-proxy's
        // hashes, but stay safe).
        let live: BTreeSet<&str> = self
            .rules
            .values()
            .flat_map(|r| r.nat_chains.iter().map(|(c, _)| c.as_str()))
            .collect();
        upd.removed_chains.retain(|c| !live.contains(c.as_str()));
        upd
    }

    /// Every nat chain the current render owns.
    pub fn owned_chains(&self) -> BTreeSet<String> {
        self.rules
            .values()
            .flat_map(|r| r.nat_chains.iter().map(|(c, _)| c.clone()))
            .collect()
    }

    /// The jump rules from the built-in chains this configuration needs.
    pub fn jump_rules(&self) -> Vec<JumpRule> {
        jump_rules(self.ctx.localhost_nodeports)
    }

    /// Whether NodePorts answer on 127.0.0.1 (needs `route_localnet`).
    pub fn localhost_nodeports(&self) -> bool {
        self.ctx.localhost_nodeports
    }

    /// The counts of the current render.
    pub fn counts(&self) -> RuleCounts {
        let mut counts = RuleCounts {
            filter: self.fixed_filter_rules().len(),
            nat: self.fixed_nat_rules().len() + self.final_nodeport_rules().len(),
            ..RuleCounts::default()
        };
        for r in self.rules.values() {
            counts.filter += r.filter_rule_count();
            counts.nat += r.nat_rule_count();
            counts.no_local_internal += usize::from(r.no_local_internal);
            counts.no_local_external += usize::from(r.no_local_external);
        }
        counts
    }

    fn fixed_filter_rules(&self) -> Vec<String> {
        let c = &self.ctx.config;
        let mut out = kube_forward_rules(&self.ctx.mark, c.nfacct, !c.conntrack_tcp_be_liberal);
        if self.ctx.localhost_nodeports {
            out.push(
                Line::new(chains::FIREWALL)
                    .comment("block incoming localnet connections")
                    .w(&[
                        "-d",
                        "127.0.0.0/8",
                        "!",
                        "-s",
                        "127.0.0.0/8",
                        "-m",
                        "conntrack",
                        "!",
                        "--ctstate",
                        "RELATED,ESTABLISHED,DNAT",
                        "-j",
                        "DROP",
                    ])
                    .done(),
            );
        }
        out
    }

    fn fixed_nat_rules(&self) -> Vec<String> {
        let mark = &self.ctx.mark;
        let mut masq = Line::new(chains::POSTROUTING)
            .comment("kubernetes service traffic requiring SNAT")
            .w(&["-j", "MASQUERADE"]);
        if self.ctx.config.random_fully {
            masq = masq.w(&["--random-fully"]);
        }
        vec![
            Line::new(chains::POSTROUTING)
                .w(&[
                    "-m",
                    "mark",
                    "!",
                    "--mark",
                    &format!("{mark}/{mark}"),
                    "-j",
                    "RETURN",
                ])
                .done(),
            Line::new(chains::POSTROUTING)
                .w(&["-j", "MARK", "--xor-mark", mark])
                .done(),
            masq.done(),
            Line::new(chains::MARK_MASQ)
                .w(&["-j", "MARK", "--or-mark", mark])
                .done(),
        ]
    }

    /// The rule(s) ending nat `KUBE-SERVICES` that send local destinations to
    /// `KUBE-NODEPORTS`.
    fn final_nodeport_rules(&self) -> Vec<String> {
        let comment =
            "kubernetes service nodeports; NOTE: this must be the last rule in this chain";
        match &self.ctx.nodeports {
            NodePortTargets::All => {
                let mut l = Line::new(chains::SERVICES).comment(comment).w(&[
                    "-m",
                    "addrtype",
                    "--dst-type",
                    "LOCAL",
                ]);
                if self.ctx.family == IpFamily::V6 {
                    l = l.w(&["!", "-d", "::1/128"]);
                } else if !self.ctx.localhost_nodeports {
                    l = l.w(&["!", "-d", "127.0.0.0/8"]);
                }
                vec![l.w(&["-j", chains::NODEPORTS]).done()]
            }
            NodePortTargets::Addresses(ips) => ips
                .iter()
                .filter(|ip: &&IpAddr| !ip.is_loopback() || self.ctx.localhost_nodeports)
                .map(|ip| {
                    Line::new(chains::SERVICES)
                        .comment(comment)
                        .w(&["-d", &ip.to_string(), "-j", chains::NODEPORTS])
                        .done()
                })
                .collect(),
        }
    }

    /// Assemble restore input. `only`: write the owned chains of these service ports
    /// only (a partial sync; `None` writes every chain). `deleted`: chains to flush and
    /// delete (`-X`). The top-level chains are always written whole.
    pub fn ruleset(
        &self,
        only: Option<&BTreeSet<ServicePortName>>,
        deleted: &[String],
    ) -> IptablesRuleset {
        let mut filter = TableRules {
            chains: [
                chains::SERVICES,
                chains::EXTERNAL_SERVICES,
                chains::FORWARD,
                chains::NODEPORTS,
                chains::PROXY_FIREWALL,
            ]
            .map(str::to_owned)
            .to_vec(),
            ..TableRules::default()
        };
        if self.ctx.localhost_nodeports {
            filter.chains.push(chains::FIREWALL.to_owned());
        }
        let mut nat = TableRules {
            chains: [
                chains::SERVICES,
                chains::NODEPORTS,
                chains::POSTROUTING,
                chains::MARK_MASQ,
            ]
            .map(str::to_owned)
            .to_vec(),
            ..TableRules::default()
        };
        let mut f_services = Vec::new();
        let mut f_external = Vec::new();
        let mut f_nodeports = Vec::new();
        let mut f_firewall = Vec::new();
        let mut n_services = Vec::new();
        let mut n_nodeports = Vec::new();
        let mut chain_rules = Vec::new();
        for (name, r) in &self.rules {
            f_services.extend(r.filter_services.iter().cloned());
            f_external.extend(r.filter_external.iter().cloned());
            f_nodeports.extend(r.filter_nodeports.iter().cloned());
            f_firewall.extend(r.filter_firewall.iter().cloned());
            n_services.extend(r.nat_services.iter().cloned());
            n_nodeports.extend(r.nat_nodeports.iter().cloned());
            if only.is_none_or(|o| o.contains(name)) {
                for (chain, rules) in &r.nat_chains {
                    nat.chains.push(chain.clone());
                    chain_rules.extend(rules.iter().cloned());
                }
            }
        }
        filter.rules.extend(f_services);
        filter.rules.extend(f_external);
        filter.rules.extend(self.fixed_filter_rules());
        filter.rules.extend(f_nodeports);
        filter.rules.extend(f_firewall);
        nat.rules.extend(self.fixed_nat_rules());
        nat.rules.extend(chain_rules);
        nat.rules.extend(n_services);
        nat.rules.extend(self.final_nodeport_rules());
        nat.rules.extend(n_nodeports);
        for c in deleted {
            if !nat.chains.contains(c) {
                nat.chains.push(c.clone());
            }
            nat.deleted.push(c.clone());
        }
        IptablesRuleset {
            family: self.ctx.family,
            filter,
            nat,
            jumps: self.jump_rules(),
            counts: self.counts(),
        }
    }

    /// The restore input of [`IptablesRenderer::ruleset`], split into several
    /// `iptables-restore --noflush` calls when it declares more than `max_chains`
    /// per-service chains (0: never split).
    ///
    /// iptables-nft 1.8.9 (Debian 12) takes time proportional to the chains declared
    /// times the rules added in one `--noflush` call: 25 s for 2,000 services of 10
    /// endpoints in one call, 1.9 s in ten (iptables-legacy: 0.8 s in one). So large
    /// restores go in chunks of whole service ports (each chunk atomic, its chains
    /// complete: nothing references them until the last call), then one call with the
    /// filter table, nat's `KUBE-SERVICES` and `KUBE-NODEPORTS` and the deletions.
    /// Between calls the kernel holds new chains that nothing uses yet; if a call
    /// fails, the services of the chunks before it are updated and the rest are not
    /// (each service consistent), and the next sync is full.
    pub fn restore_inputs(
        &self,
        only: Option<&BTreeSet<ServicePortName>>,
        deleted: &[String],
        max_chains: usize,
    ) -> Vec<String> {
        let rs = self.ruleset(only, deleted);
        let declared: usize = self
            .rules
            .iter()
            .filter(|(name, _)| only.is_none_or(|o| o.contains(*name)))
            .map(|(_, r)| r.nat_chains.len())
            .sum();
        if max_chains == 0 || declared <= max_chains {
            return vec![rs.restore_input()];
        }
        let mut inputs = Vec::new();
        let mut chunk = TableRules {
            chains: vec![chains::POSTROUTING.to_owned(), chains::MARK_MASQ.to_owned()],
            rules: self.fixed_nat_rules(),
            deleted: Vec::new(),
        };
        let mut count = 0;
        for (name, r) in &self.rules {
            if !only.is_none_or(|o| o.contains(name)) {
                continue;
            }
            if count >= max_chains {
                let mut text = String::new();
                std::mem::take(&mut chunk).write("nat", &mut text);
                inputs.push(text);
                count = 0;
            }
            for (chain, rules) in &r.nat_chains {
                chunk.chains.push(chain.clone());
                chunk.rules.extend(rules.iter().cloned());
                count += 1;
            }
        }
        let mut text = String::new();
        chunk.write("nat", &mut text);
        inputs.push(text);
        let top = [chains::SERVICES, chains::NODEPORTS];
        let mut nat = TableRules {
            chains: top.map(str::to_owned).to_vec(),
            rules: rs
                .nat
                .rules
                .iter()
                .filter(|r| top.iter().any(|c| r.starts_with(&format!("-A {c} "))))
                .cloned()
                .collect(),
            deleted: rs.nat.deleted.clone(),
        };
        nat.chains.extend(rs.nat.deleted.iter().cloned());
        let mut last = String::new();
        rs.filter.write("filter", &mut last);
        nat.write("nat", &mut last);
        inputs.push(last);
        inputs
    }

    /// The rules of one service port, as last rendered.
    pub fn service_port_rules(&self, name: &ServicePortName) -> Option<&ServicePortRules> {
        self.rules.get(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probabilities_print_as_upstream() {
        assert_eq!(probability(2), "0.5000000000");
        assert_eq!(probability(3), "0.3333333333");
        assert_eq!(probability(4), "0.2500000000");
        assert_eq!(probability(6), "0.1666666667");
        assert_eq!(probability(1000), "0.0010000000");
        // 1/2048 = 0.00048828125 exactly: a tie at the 11th digit, rounded to even as
        // Go's %0.10f does.
        assert_eq!(probability(2048), "0.0004882812");
    }

    #[test]
    fn quoting_keeps_rules_whole() {
        assert_eq!(quote_arg("ns1/svc1:p80"), "ns1/svc1:p80");
        assert_eq!(
            quote_arg("ns1/svc1:p80 cluster IP"),
            "\"ns1/svc1:p80 cluster IP\""
        );
        assert_eq!(quote_arg("a\"b\\c\nd"), "\"a\\\"b\\\\cd\"");
        assert_eq!(quote_arg(""), "\"\"");
    }

    #[test]
    fn jump_rules_are_kube_proxys() {
        let jumps = jump_rules(false);
        assert_eq!(jumps.len(), 12);
        assert_eq!(
            jumps[0].restore_line(),
            "-A INPUT -m conntrack --ctstate NEW -m comment --comment \"kubernetes externally-visible service portals\" -j KUBE-EXTERNAL-SERVICES"
        );
        assert_eq!(
            jumps[11].restore_line(),
            "-A POSTROUTING -m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING"
        );
        assert_eq!(jump_rules(true).len(), 14);
    }
}
