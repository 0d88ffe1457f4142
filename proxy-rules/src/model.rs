//! The plain model the renderers work from: service ports and their endpoints for one
//! IP family, as kube-proxy's `ServicePortMap` and `EndpointsMap` hold them.
//!
//! Users without an API server build these directly; [`crate::k8s`] builds them from
//! `core/v1` Services and `discovery/v1` EndpointSlices, and [`crate::store`] keeps the
//! objects and tracks which services changed.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use ipnetwork::IpNetwork;

/// An IP family. kube-proxy runs one proxier per family; so do the renderers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum IpFamily {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

impl IpFamily {
    /// The family of an address.
    pub fn of(ip: &IpAddr) -> Self {
        match ip {
            IpAddr::V4(_) => IpFamily::V4,
            IpAddr::V6(_) => IpFamily::V6,
        }
    }

    /// The family of a network.
    pub fn of_net(net: &IpNetwork) -> Self {
        Self::of(&net.ip())
    }

    /// Whether `ip` is of this family.
    pub fn contains(self, ip: &IpAddr) -> bool {
        Self::of(ip) == self
    }

    /// The loopback network of the family: `127.0.0.0/8` or `::1/128`.
    pub fn loopback_net(self) -> &'static str {
        match self {
            IpFamily::V4 => "127.0.0.0/8",
            IpFamily::V6 => "::1/128",
        }
    }
}

impl fmt::Display for IpFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IpFamily::V4 => "IPv4",
            IpFamily::V6 => "IPv6",
        })
    }
}

/// A Service port's L4 protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    /// TCP (the Kubernetes default).
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

impl Protocol {
    /// Lower case, as iptables, nftables and the chain hashes spell it: `tcp`.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }

    /// The IP protocol number (6, 17, 132).
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
            Protocol::Sctp => 132,
        }
    }

    /// Parse the Kubernetes spelling (`TCP`, `UDP`, `SCTP`) or the lower-case one.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "TCP" | "tcp" => Some(Protocol::Tcp),
            "UDP" | "udp" => Some(Protocol::Udp),
            "SCTP" | "sctp" => Some(Protocol::Sctp),
            _ => None,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A Service's namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceName {
    /// The namespace.
    pub namespace: String,
    /// The Service's name.
    pub name: String,
}

impl ServiceName {
    /// A name from its two parts.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for ServiceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// One port of one Service: kube-proxy's `ServicePortName` (namespace, name, port name
/// and protocol). Displays as `ns/name:port`, or `ns/name` for an unnamed port, which
/// is the text kube-proxy hashes and writes into rule comments.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServicePortName {
    /// The Service.
    pub service: ServiceName,
    /// The port's name (empty for a Service's single unnamed port).
    pub port: String,
    /// The port's protocol.
    pub protocol: Protocol,
}

impl ServicePortName {
    /// A service port name from its parts.
    pub fn new(
        namespace: impl Into<String>,
        name: impl Into<String>,
        port: impl Into<String>,
        protocol: Protocol,
    ) -> Self {
        Self {
            service: ServiceName::new(namespace, name),
            port: port.into(),
            protocol,
        }
    }
}

impl fmt::Display for ServicePortName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.port.is_empty() {
            write!(f, "{}", self.service)
        } else {
            write!(f, "{}:{}", self.service, self.port)
        }
    }
}

/// The default ClientIP affinity timeout: 10800 s (3 h), the API default of
/// `sessionAffinityConfig.clientIP.timeoutSeconds`.
pub const DEFAULT_AFFINITY_TIMEOUT_SECONDS: u32 = 10_800;

/// One port of a Service, for one IP family: what kube-proxy's `BaseServicePortInfo`
/// holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePort {
    /// The port's name.
    pub name: ServicePortName,
    /// The ClusterIP of this family.
    pub cluster_ip: IpAddr,
    /// The Service port.
    pub port: u16,
    /// The NodePort, if any.
    pub node_port: Option<u16>,
    /// `spec.externalIPs` of this family.
    pub external_ips: Vec<IpAddr>,
    /// LoadBalancer ingress IPs of this family whose `ipMode` is `VIP` (or unset);
    /// `Proxy`-mode ingress IPs are not captured on the node (KEP-1860).
    pub load_balancer_ips: Vec<IpAddr>,
    /// `spec.loadBalancerSourceRanges` of this family (whitespace trimmed).
    pub load_balancer_source_ranges: Vec<IpNetwork>,
    /// ClientIP session affinity timeout in seconds, when affinity is on.
    pub session_affinity_seconds: Option<u32>,
    /// `externalTrafficPolicy: Local` on a Service reachable from outside.
    pub external_policy_local: bool,
    /// `internalTrafficPolicy: Local`.
    pub internal_policy_local: bool,
    /// The health check NodePort (LoadBalancer with external policy Local only).
    pub health_check_node_port: Option<u16>,
}

impl ServicePort {
    /// A ClusterIP-only port with upstream defaults; set the other fields as needed.
    pub fn cluster_ip(name: ServicePortName, cluster_ip: IpAddr, port: u16) -> Self {
        Self {
            name,
            cluster_ip,
            port,
            node_port: None,
            external_ips: Vec::new(),
            load_balancer_ips: Vec::new(),
            load_balancer_source_ranges: Vec::new(),
            session_affinity_seconds: None,
            external_policy_local: false,
            internal_policy_local: false,
            health_check_node_port: None,
        }
    }

    /// The protocol.
    pub fn protocol(&self) -> Protocol {
        self.name.protocol
    }

    /// Reachable from outside: a NodePort, an external IP or a LoadBalancer IP.
    pub fn externally_accessible(&self) -> bool {
        self.node_port.is_some()
            || !self.external_ips.is_empty()
            || !self.load_balancer_ips.is_empty()
    }

    /// Whether traffic is ever sent to endpoints chosen by "Cluster" policy: internal
    /// policy Cluster, or any external access (Local external policy still needs the
    /// cluster-wide endpoints for its short-circuit of pod and host traffic).
    pub fn uses_cluster_endpoints(&self) -> bool {
        !self.internal_policy_local || self.externally_accessible()
    }

    /// Whether traffic is ever sent to endpoints chosen by "Local" policy.
    pub fn uses_local_endpoints(&self) -> bool {
        self.internal_policy_local || (self.external_policy_local && self.externally_accessible())
    }
}

/// One endpoint of a service port: kube-proxy's `BaseEndpointInfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The endpoint's address (an EndpointSlice endpoint's first address).
    pub ip: IpAddr,
    /// The target port.
    pub port: u16,
    /// `conditions.ready` (unset means true).
    pub ready: bool,
    /// `conditions.serving` (unset means true).
    pub serving: bool,
    /// `conditions.terminating` (unset means false).
    pub terminating: bool,
    /// The node the endpoint runs on, if known.
    pub node_name: Option<String>,
    /// `hints.forZones`.
    pub zone_hints: Vec<String>,
    /// `hints.forNodes`.
    pub node_hints: Vec<String>,
}

impl Endpoint {
    /// A ready endpoint with no node and no hints.
    pub fn ready(ip: IpAddr, port: u16) -> Self {
        Self {
            ip,
            port,
            ready: true,
            serving: true,
            terminating: false,
            node_name: None,
            zone_hints: Vec::new(),
            node_hints: Vec::new(),
        }
    }

    /// `ip:port`, with brackets for IPv6: the text kube-proxy hashes and comments.
    pub fn address(&self) -> String {
        join_host_port(&self.ip, self.port)
    }

    /// Whether the endpoint runs on node `node_name`.
    pub fn is_local(&self, node_name: &str) -> bool {
        self.node_name.as_deref() == Some(node_name)
    }
}

/// `ip:port`, or `[ip]:port` for IPv6 (Go's `net.JoinHostPort`).
pub fn join_host_port(ip: &IpAddr, port: u16) -> String {
    match ip {
        IpAddr::V4(v4) => format!("{v4}:{port}"),
        IpAddr::V6(v6) => format!("[{v6}]:{port}"),
    }
}

/// Everything one family's proxier renders from: service ports and their endpoints,
/// both keyed (and so ordered) by service port name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxyState {
    /// Service ports by name.
    pub services: BTreeMap<ServicePortName, ServicePort>,
    /// Endpoints by service port, sorted by `ip:port` text and without duplicates.
    pub endpoints: BTreeMap<ServicePortName, Vec<Endpoint>>,
}

impl ProxyState {
    /// An empty state.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a service port (replacing one of the same name).
    pub fn add_service(&mut self, port: ServicePort) {
        self.services.insert(port.name.clone(), port);
    }

    /// Set a service port's endpoints; they are sorted and deduplicated as kube-proxy's
    /// endpoint slice cache does (a local copy of a duplicate wins).
    pub fn set_endpoints(&mut self, name: ServicePortName, endpoints: Vec<Endpoint>) {
        self.endpoints
            .insert(name, normalize_endpoints(endpoints, None));
    }

    /// The endpoints of a service port (empty when it has none).
    pub fn endpoints_of(&self, name: &ServicePortName) -> &[Endpoint] {
        self.endpoints.get(name).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The total number of endpoints of all known service ports (what decides
    /// kube-proxy's large-cluster mode).
    pub fn total_endpoints(&self) -> usize {
        self.services
            .keys()
            .map(|name| self.endpoints_of(name).len())
            .sum()
    }
}

/// Sort endpoints by their `ip:port` text and drop duplicates; with `node_name`, a
/// duplicate on that node replaces an earlier one elsewhere.
pub(crate) fn normalize_endpoints(
    mut endpoints: Vec<Endpoint>,
    node_name: Option<&str>,
) -> Vec<Endpoint> {
    let mut keyed: BTreeMap<String, Endpoint> = BTreeMap::new();
    for ep in endpoints.drain(..) {
        let key = ep.address();
        let replace = match keyed.get(&key) {
            None => true,
            Some(_) => node_name.is_some_and(|n| ep.is_local(n)),
        };
        if replace {
            keyed.insert(key, ep);
        }
    }
    keyed.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_port_name_text() {
        let named = ServicePortName::new("ns1", "svc1", "p80", Protocol::Tcp);
        assert_eq!(named.to_string(), "ns1/svc1:p80");
        let unnamed = ServicePortName::new("ns1", "svc1", "", Protocol::Udp);
        assert_eq!(unnamed.to_string(), "ns1/svc1");
    }

    #[test]
    fn endpoint_addresses_bracket_ipv6() {
        let v4 = Endpoint::ready("10.180.0.1".parse().unwrap(), 80);
        assert_eq!(v4.address(), "10.180.0.1:80");
        let v6 = Endpoint::ready("fd00::1".parse().unwrap(), 80);
        assert_eq!(v6.address(), "[fd00::1]:80");
    }

    #[test]
    fn endpoints_sort_as_text_and_dedupe() {
        let eps = vec![
            Endpoint::ready("10.180.0.2".parse().unwrap(), 80),
            Endpoint::ready("10.180.0.10".parse().unwrap(), 80),
            Endpoint::ready("10.180.0.2".parse().unwrap(), 80),
        ];
        let out = normalize_endpoints(eps, None);
        let addrs: Vec<String> = out.iter().map(Endpoint::address).collect();
        // Text order, as kube-proxy sorts: "10.180.0.10:80" < "10.180.0.2:80".
        assert_eq!(addrs, ["10.180.0.10:80", "10.180.0.2:80"]);
    }

    #[test]
    fn local_duplicate_wins() {
        let remote = Endpoint::ready("10.0.0.1".parse().unwrap(), 80);
        let mut local = remote.clone();
        local.node_name = Some("n1".into());
        let out = normalize_endpoints(vec![remote.clone(), local.clone()], Some("n1"));
        assert_eq!(out, vec![local.clone()]);
        let out = normalize_endpoints(vec![local.clone(), remote], Some("n1"));
        assert_eq!(out, vec![local]);
    }

    #[test]
    fn traffic_policy_uses() {
        let name = ServicePortName::new("a", "b", "", Protocol::Tcp);
        let mut sp = ServicePort::cluster_ip(name, "10.0.0.1".parse().unwrap(), 80);
        assert!(sp.uses_cluster_endpoints() && !sp.uses_local_endpoints());
        sp.internal_policy_local = true;
        assert!(!sp.uses_cluster_endpoints() && sp.uses_local_endpoints());
        sp.node_port = Some(30000);
        assert!(sp.uses_cluster_endpoints());
        sp.internal_policy_local = false;
        sp.external_policy_local = true;
        assert!(sp.uses_cluster_endpoints() && sp.uses_local_endpoints());
    }
}
