//! Endpoint selection: which endpoints Cluster and Local traffic policy use, with
//! kube-proxy's fallback to serving-and-terminating endpoints and its topology hints
//! (`CategorizeEndpoints` in kube-proxy's `topology.go`).

use crate::config::ProxyConfig;
use crate::model::{Endpoint, ServicePort};

/// The endpoints a service port uses on this node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CategorizedEndpoints<'a> {
    /// The endpoints for "Cluster" traffic policy (empty when the port never uses it).
    pub cluster: Vec<&'a Endpoint>,
    /// The endpoints for "Local" traffic policy (empty when the port never uses it).
    pub local: Vec<&'a Endpoint>,
    /// Every endpoint some traffic can reach from this node: the union of the two,
    /// each once, in `ip:port` text order.
    pub all_reachable: Vec<&'a Endpoint>,
    /// Whether the port has any usable endpoint anywhere in the cluster (decides
    /// between REJECT and DROP).
    pub has_any: bool,
}

/// Which topology hints apply to a service port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopologyMode {
    /// No filtering.
    None,
    /// Only endpoints hinted for this node (`trafficDistribution: PreferSameNode`).
    PreferSameNode,
    /// Only endpoints hinted for this node's zone.
    PreferSameZone,
}

/// Decide the topology mode from the hints of the ready endpoints: node hints when
/// every ready endpoint has one and one names this node; else zone hints when every
/// ready endpoint has one and one names this node's zone; else none. There is no
/// per-endpoint fallback.
pub fn topology_mode(endpoints: &[Endpoint], config: &ProxyConfig) -> TopologyMode {
    let zone = config.zone().unwrap_or("");
    let (mut all_node, mut for_node, mut all_zone, mut for_zone) = (true, false, true, false);
    for ep in endpoints.iter().filter(|e| e.ready) {
        if ep.node_hints.is_empty() {
            all_node = false;
        } else if ep.node_hints.contains(&config.node_name) {
            for_node = true;
        }
        if ep.zone_hints.is_empty() {
            all_zone = false;
        } else if !zone.is_empty() && ep.zone_hints.iter().any(|z| z == zone) {
            for_zone = true;
        }
    }
    if config.prefer_same_node && all_node && for_node {
        return TopologyMode::PreferSameNode;
    }
    if all_zone && for_zone {
        return TopologyMode::PreferSameZone;
    }
    TopologyMode::None
}

fn available(ep: &Endpoint, mode: TopologyMode, config: &ProxyConfig) -> bool {
    match mode {
        TopologyMode::None => true,
        TopologyMode::PreferSameNode => ep.node_hints.contains(&config.node_name),
        TopologyMode::PreferSameZone => {
            let zone = config.zone().unwrap_or("");
            ep.zone_hints.iter().any(|z| z == zone)
        }
    }
}

/// kube-proxy's `CategorizeEndpoints` for one service port.
///
/// - Cluster endpoints: the ready ones (filtered by topology when hints apply); if none,
///   the serving-and-terminating ones.
/// - Local endpoints: the ready local ones; if none, the serving-and-terminating local
///   ones.
/// - `has_any`: some endpoint anywhere is ready, or serving and terminating.
pub fn categorize_endpoints<'a>(
    endpoints: &'a [Endpoint],
    svc: &ServicePort,
    config: &ProxyConfig,
) -> CategorizedEndpoints<'a> {
    let mut out = CategorizedEndpoints::default();
    let mut use_topology = false;
    if svc.uses_cluster_endpoints() {
        let mode = topology_mode(endpoints, config);
        use_topology = mode != TopologyMode::None;
        out.cluster = endpoints
            .iter()
            .filter(|e| e.ready && available(e, mode, config))
            .collect();
        if out.cluster.is_empty() {
            out.cluster = endpoints
                .iter()
                .filter(|e| e.serving && e.terminating)
                .collect();
        }
        out.has_any = !out.cluster.is_empty();
    }
    if !svc.uses_local_endpoints() {
        out.all_reachable = out.cluster.clone();
        return out;
    }
    let node = config.node_name.as_str();
    let (mut local_ready, mut local_terminating) = (false, false);
    for ep in endpoints {
        if ep.ready {
            out.has_any = true;
            local_ready |= ep.is_local(node);
        } else if ep.serving && ep.terminating {
            out.has_any = true;
            local_terminating |= ep.is_local(node);
        }
    }
    let use_terminating = !local_ready && local_terminating;
    if local_ready {
        out.local = endpoints
            .iter()
            .filter(|e| e.is_local(node) && e.ready)
            .collect();
    } else if local_terminating {
        out.local = endpoints
            .iter()
            .filter(|e| e.is_local(node) && e.serving && e.terminating)
            .collect();
    }
    if !svc.uses_cluster_endpoints() {
        out.all_reachable = out.local.clone();
        return out;
    }
    if !use_topology && !use_terminating {
        // Cluster endpoints are then every ready endpoint, a superset of the local ones.
        out.all_reachable = out.cluster.clone();
        return out;
    }
    let mut merged: Vec<&Endpoint> = out
        .cluster
        .iter()
        .chain(out.local.iter())
        .copied()
        .collect();
    merged.sort_by_key(|e| e.address());
    merged.dedup_by_key(|e| e.address());
    out.all_reachable = merged;
    out
}

/// The decisions both renderers make for a service port from its endpoints and traffic
/// policies (the shared part of kube-proxy's iptables and nftables `syncProxyRules`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyPlan<'a> {
    /// The categorized endpoints.
    pub endpoints: CategorizedEndpoints<'a>,
    /// The "Cluster" policy chain is needed (it has endpoints and some traffic uses it).
    pub uses_cluster_chain: bool,
    /// The "Local" policy chain is needed.
    pub uses_local_chain: bool,
    /// Internal (ClusterIP) traffic goes to endpoints; else it is dropped (Local policy
    /// without local endpoints) or rejected (no endpoints at all).
    pub has_internal: bool,
    /// External traffic (NodePort, external IPs, LoadBalancer IPs) goes to endpoints.
    pub has_external: bool,
    /// The external chain exists: the port is reachable from outside and has endpoints
    /// somewhere (even without local ones, for the short-circuit of pod and host traffic).
    pub uses_external_chain: bool,
    /// Counted in `sync_proxy_rules_no_local_endpoints_total{traffic_policy="internal"}`.
    pub no_local_internal: bool,
    /// Counted in `sync_proxy_rules_no_local_endpoints_total{traffic_policy="external"}`.
    pub no_local_external: bool,
}

impl PolicyPlan<'_> {
    /// Whether the port has usable endpoints anywhere (REJECT when not, DROP when only
    /// the local ones are missing).
    pub fn has_any(&self) -> bool {
        self.endpoints.has_any
    }
}

/// Decide what a service port's rules need (see [`PolicyPlan`]).
pub fn plan_policies<'a>(
    svc: &ServicePort,
    endpoints: &'a [Endpoint],
    config: &ProxyConfig,
) -> PolicyPlan<'a> {
    let cat = categorize_endpoints(endpoints, svc, config);
    let has_any = cat.has_any;
    let local_ok = has_any && !cat.local.is_empty();
    let has_internal = if svc.internal_policy_local {
        local_ok
    } else {
        has_any
    };
    let has_external = if svc.external_policy_local {
        local_ok
    } else {
        has_any
    };
    let external = svc.externally_accessible();
    PolicyPlan {
        uses_cluster_chain: !cat.cluster.is_empty() && svc.uses_cluster_endpoints(),
        uses_local_chain: !cat.local.is_empty() && svc.uses_local_endpoints(),
        has_internal,
        has_external,
        uses_external_chain: has_any && external,
        no_local_internal: has_any && !has_internal,
        no_local_external: has_any && !has_external && external,
        endpoints: cat,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ZONE_LABEL;
    use crate::model::{Protocol, ServicePortName};

    fn ep(ip: &str, node: Option<&str>, ready: bool, serving: bool, terminating: bool) -> Endpoint {
        let mut e = Endpoint::ready(ip.parse().unwrap(), 80);
        e.node_name = node.map(str::to_owned);
        e.ready = ready;
        e.serving = serving;
        e.terminating = terminating;
        e
    }

    fn svc() -> ServicePort {
        ServicePort::cluster_ip(
            ServicePortName::new("ns", "s", "p", Protocol::Tcp),
            "172.30.0.1".parse().unwrap(),
            80,
        )
    }

    fn ips(v: &[&Endpoint]) -> Vec<String> {
        v.iter().map(|e| e.ip.to_string()).collect()
    }

    fn cfg() -> ProxyConfig {
        ProxyConfig::new("node-a")
    }

    #[test]
    fn ready_endpoints_are_used_and_terminating_only_as_fallback() {
        let eps = vec![
            ep("10.0.0.1", None, true, true, false),
            ep("10.0.0.2", None, false, true, true),
        ];
        let c = categorize_endpoints(&eps, &svc(), &cfg());
        assert_eq!(ips(&c.cluster), ["10.0.0.1"]);
        assert!(c.has_any);
        let only_terminating = vec![
            ep("10.0.0.2", None, false, true, true),
            ep("10.0.0.3", None, false, false, true),
        ];
        let c = categorize_endpoints(&only_terminating, &svc(), &cfg());
        assert_eq!(ips(&c.cluster), ["10.0.0.2"]);
        assert!(c.has_any);
        let none = vec![ep("10.0.0.3", None, false, false, false)];
        let c = categorize_endpoints(&none, &svc(), &cfg());
        assert!(c.cluster.is_empty() && !c.has_any);
    }

    #[test]
    fn internal_local_uses_only_local_endpoints() {
        let mut s = svc();
        s.internal_policy_local = true;
        let eps = vec![
            ep("10.0.0.1", Some("node-b"), true, true, false),
            ep("10.0.0.2", Some("node-a"), true, true, false),
        ];
        let c = categorize_endpoints(&eps, &s, &cfg());
        assert!(c.cluster.is_empty());
        assert_eq!(ips(&c.local), ["10.0.0.2"]);
        assert_eq!(ips(&c.all_reachable), ["10.0.0.2"]);
        // No local endpoint: local is empty but the service has endpoints (DROP, not REJECT).
        let remote_only = vec![ep("10.0.0.1", Some("node-b"), true, true, false)];
        let c = categorize_endpoints(&remote_only, &s, &cfg());
        assert!(c.local.is_empty() && c.has_any);
    }

    #[test]
    fn external_local_falls_back_to_local_terminating_and_merges() {
        let mut s = svc();
        s.node_port = Some(30080);
        s.external_policy_local = true;
        let eps = vec![
            ep("10.0.0.1", Some("node-b"), true, true, false),
            ep("10.0.0.2", Some("node-a"), false, true, true),
        ];
        let c = categorize_endpoints(&eps, &s, &cfg());
        assert_eq!(ips(&c.cluster), ["10.0.0.1"]);
        assert_eq!(ips(&c.local), ["10.0.0.2"]);
        assert_eq!(ips(&c.all_reachable), ["10.0.0.1", "10.0.0.2"]);
    }

    #[test]
    fn zone_hints_apply_only_when_all_ready_endpoints_have_them() {
        let mut config = cfg();
        config.node_labels.insert(ZONE_LABEL.into(), "z1".into());
        let mut a = ep("10.0.0.1", None, true, true, false);
        a.zone_hints = vec!["z1".into()];
        let mut b = ep("10.0.0.2", None, true, true, false);
        b.zone_hints = vec!["z2".into()];
        let eps = vec![a.clone(), b.clone()];
        let c = categorize_endpoints(&eps, &svc(), &config);
        assert_eq!(ips(&c.cluster), ["10.0.0.1"]);
        // One ready endpoint without hints: no filtering at all.
        let c_none = ep("10.0.0.3", None, true, true, false);
        let eps = vec![a.clone(), b.clone(), c_none];
        let c = categorize_endpoints(&eps, &svc(), &config);
        assert_eq!(c.cluster.len(), 3);
        // No hint for our zone: no filtering.
        config.node_labels.insert(ZONE_LABEL.into(), "z9".into());
        let eps = vec![a, b];
        assert_eq!(categorize_endpoints(&eps, &svc(), &config).cluster.len(), 2);
    }

    #[test]
    fn node_hints_win_over_zone_hints() {
        let mut config = cfg();
        config.node_labels.insert(ZONE_LABEL.into(), "z1".into());
        let mut a = ep("10.0.0.1", None, true, true, false);
        a.zone_hints = vec!["z1".into()];
        a.node_hints = vec!["node-b".into()];
        let mut b = ep("10.0.0.2", None, true, true, false);
        b.zone_hints = vec!["z1".into()];
        b.node_hints = vec!["node-a".into()];
        let eps = vec![a, b];
        assert_eq!(topology_mode(&eps, &config), TopologyMode::PreferSameNode);
        let c = categorize_endpoints(&eps, &svc(), &config);
        assert_eq!(ips(&c.cluster), ["10.0.0.2"]);
        config.prefer_same_node = false;
        assert_eq!(topology_mode(&eps, &config), TopologyMode::PreferSameZone);
        assert_eq!(categorize_endpoints(&eps, &svc(), &config).cluster.len(), 2);
    }
}
