//! Node facts and proxier options: what kube-proxy takes from its flags and the node.
//!
//! Every default is kube-proxy's default and says so.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnetwork::IpNetwork;

use crate::model::IpFamily;
use crate::{Error, Result};

/// The node label holding the node's zone (`topology.kubernetes.io/zone`).
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";

/// How kube-proxy tells pod traffic from other traffic (`--detect-local-mode`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum LocalDetector {
    /// No detection: no "masquerade off-cluster traffic" rule and no pod short-circuit
    /// for external policy Local (kube-proxy's no-op detector).
    #[default]
    None,
    /// `ClusterCIDR` (kube-proxy's default mode): sources inside these CIDRs are pods.
    ClusterCidr(Vec<IpNetwork>),
    /// `NodeCIDR`: sources inside the node's pod CIDRs are local pods.
    NodeCidr(Vec<IpNetwork>),
    /// `BridgeInterface`: packets arriving on this bridge come from pods.
    BridgeInterface(String),
    /// `InterfaceNamePrefix`: packets arriving on interfaces with this prefix.
    InterfaceNamePrefix(String),
}

/// Which node addresses accept NodePort traffic (`--nodeport-addresses`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum NodePortAddresses {
    /// The mode's default: every local address in iptables and IPVS modes, the node's
    /// primary IPs in nftables mode (kube-proxy turns an unset flag into `primary` there).
    #[default]
    Default,
    /// `primary`: the node IPs (`--node-ip`).
    Primary,
    /// These CIDRs, matched against the node's addresses; a zero CIDR (`0.0.0.0/0`,
    /// `::/0`) means every local address of that family.
    Cidrs(Vec<IpNetwork>),
}

/// The proxier's configuration: node facts and options, for both families.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyConfig {
    /// The node name endpoints are matched against (`--hostname-override`).
    pub node_name: String,
    /// The node's primary IPs (`--node-ip`, at most one per family is primary: the first).
    pub node_ips: Vec<IpAddr>,
    /// Every address of the node (the interfaces' addresses), for matching
    /// `--nodeport-addresses`. The node IPs count even when absent here.
    pub host_addresses: Vec<IpAddr>,
    /// The node's labels; the zone label picks zone topology hints.
    pub node_labels: BTreeMap<String, String>,
    /// Pod traffic detection.
    pub local_detector: LocalDetector,
    /// Which addresses accept NodePorts.
    pub nodeport_addresses: NodePortAddresses,
    /// `--masquerade-all` (default false): SNAT all ClusterIP traffic.
    pub masquerade_all: bool,
    /// `--iptables-masquerade-bit` (default 14): the mark bit for SNAT.
    pub masquerade_bit: u8,
    /// `--iptables-localhost-nodeports` (default true): NodePorts answer on 127.0.0.1
    /// in iptables mode (IPv4 only; needs `route_localnet`).
    pub localhost_nodeports: bool,
    /// MASQUERADE with `--random-fully` (kube-proxy adds it when iptables supports it,
    /// which every iptables since 1.6.2 does).
    pub random_fully: bool,
    /// Count dropped INVALID packets and localhost NodePort packets with `-m nfacct`
    /// (kube-proxy does when it could create the counters; default false here since we
    /// do not create nfacct objects).
    pub nfacct: bool,
    /// `net.netfilter.nf_conntrack_tcp_be_liberal` is set: no INVALID drop rule.
    pub conntrack_tcp_be_liberal: bool,
    /// The service CIDRs (from ServiceCIDR objects), for nftables mode's drop of
    /// traffic to unallocated ClusterIPs.
    pub service_cidrs: Vec<IpNetwork>,
    /// Above this many endpoints in total, per-endpoint rule comments are left out
    /// (kube-proxy's `largeClusterEndpointsThreshold`, 1000).
    pub large_cluster_threshold: usize,
    /// Honour node topology hints (`PreferSameTrafficDistribution`, GA in 1.35: true).
    pub prefer_same_node: bool,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        Self {
            node_name: String::new(),
            node_ips: Vec::new(),
            host_addresses: Vec::new(),
            node_labels: BTreeMap::new(),
            local_detector: LocalDetector::None,
            nodeport_addresses: NodePortAddresses::Default,
            masquerade_all: false,
            masquerade_bit: 14,
            localhost_nodeports: true,
            random_fully: true,
            nfacct: false,
            conntrack_tcp_be_liberal: false,
            service_cidrs: Vec::new(),
            large_cluster_threshold: 1000,
            prefer_same_node: true,
        }
    }
}

impl ProxyConfig {
    /// A configuration for node `node_name` with kube-proxy's defaults.
    pub fn new(node_name: impl Into<String>) -> Self {
        Self {
            node_name: node_name.into(),
            ..Self::default()
        }
    }

    /// Add a node IP (`--node-ip`).
    #[must_use]
    pub fn node_ip(mut self, ip: IpAddr) -> Self {
        self.node_ips.push(ip);
        self
    }

    /// Detect pod traffic by cluster CIDR (`--cluster-cidr`, `--detect-local-mode
    /// ClusterCIDR`).
    #[must_use]
    pub fn cluster_cidr(mut self, cidr: IpNetwork) -> Self {
        match &mut self.local_detector {
            LocalDetector::ClusterCidr(cidrs) => cidrs.push(cidr),
            other => *other = LocalDetector::ClusterCidr(vec![cidr]),
        }
        self
    }

    /// Set `--nodeport-addresses`.
    #[must_use]
    pub fn nodeport_addresses(mut self, addresses: NodePortAddresses) -> Self {
        self.nodeport_addresses = addresses;
        self
    }

    /// Set `--masquerade-all`.
    #[must_use]
    pub fn masquerade_all(mut self, on: bool) -> Self {
        self.masquerade_all = on;
        self
    }

    /// Check the configuration; the error names the field.
    pub fn validate(&self) -> Result<()> {
        if self.masquerade_bit > 31 {
            return Err(Error::invalid_config(format!(
                "masquerade bit {} is out of range 0..=31",
                self.masquerade_bit
            )));
        }
        if let LocalDetector::BridgeInterface(name) | LocalDetector::InterfaceNamePrefix(name) =
            &self.local_detector
            && (name.is_empty()
                || name.len() > 15
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.@".contains(&b)))
        {
            return Err(Error::invalid_config(format!(
                "local traffic detection interface {name:?} is not a valid interface name"
            )));
        }
        Ok(())
    }

    /// The masquerade mark value, `1 << masquerade_bit` (0x4000 by default).
    pub fn masquerade_mark(&self) -> u32 {
        1u32 << self.masquerade_bit
    }

    /// The mark as rules print it, `0x4000`.
    ///
    /// kube-proxy formats it with Go's `%#08x` (`0x00004000`); the kernel stores the
    /// same number and `iptables-save` prints `0x4000` either way. We print the short
    /// form, which upstream's own golden tests use.
    pub fn masquerade_mark_text(&self) -> String {
        format!("{:#x}", self.masquerade_mark())
    }

    /// The node's zone label, if set.
    pub fn zone(&self) -> Option<&str> {
        self.node_labels.get(ZONE_LABEL).map(String::as_str)
    }

    /// The primary node IP of a family: the first `--node-ip` of it.
    pub fn primary_ip(&self, family: IpFamily) -> Option<IpAddr> {
        self.node_ips.iter().copied().find(|ip| family.contains(ip))
    }

    /// The node's addresses of a family: node IPs first, then other host addresses.
    pub fn addresses(&self, family: IpFamily) -> Vec<IpAddr> {
        let mut out: Vec<IpAddr> = Vec::new();
        for ip in self.node_ips.iter().chain(self.host_addresses.iter()) {
            if family.contains(ip) && !out.contains(ip) {
                out.push(*ip);
            }
        }
        out
    }
}

/// Where NodePorts are accepted, resolved for one family and mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodePortTargets {
    /// Every local address (`--dst-type LOCAL` / `fib daddr type local`).
    All,
    /// Only these addresses (possibly none).
    Addresses(Vec<IpAddr>),
}

impl NodePortTargets {
    /// Resolve `--nodeport-addresses` for a family. `all_by_default` is true for the
    /// iptables and IPVS modes, false for nftables (where the default is `primary`).
    pub fn resolve(config: &ProxyConfig, family: IpFamily, all_by_default: bool) -> Self {
        match &config.nodeport_addresses {
            NodePortAddresses::Default if all_by_default => NodePortTargets::All,
            NodePortAddresses::Default | NodePortAddresses::Primary => {
                NodePortTargets::Addresses(config.primary_ip(family).into_iter().collect())
            }
            NodePortAddresses::Cidrs(cidrs) => {
                let ours: Vec<&IpNetwork> = cidrs
                    .iter()
                    .filter(|c| IpFamily::of_net(c) == family)
                    .collect();
                // As kube-proxy: no CIDR of this family means every address of it.
                if ours.is_empty() || ours.iter().any(|c| c.prefix() == 0) {
                    return NodePortTargets::All;
                }
                let addrs = config
                    .addresses(family)
                    .into_iter()
                    .filter(|ip| ours.iter().any(|c| c.contains(*ip)))
                    .collect();
                NodePortTargets::Addresses(addrs)
            }
        }
    }

    /// Whether loopback addresses accept NodePorts under this setting.
    pub fn includes_loopback(&self) -> bool {
        match self {
            NodePortTargets::All => true,
            NodePortTargets::Addresses(a) => a.iter().any(IpAddr::is_loopback),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn mark_text_is_short_hex() {
        let c = ProxyConfig::default();
        assert_eq!(c.masquerade_mark(), 0x4000);
        assert_eq!(c.masquerade_mark_text(), "0x4000");
    }

    #[test]
    fn nodeport_targets_by_mode() {
        let mut c = ProxyConfig::new("n").node_ip(ip("192.168.0.2"));
        c.host_addresses = vec![ip("192.168.1.2"), ip("127.0.0.1"), ip("2001:db8::1")];
        assert_eq!(
            NodePortTargets::resolve(&c, IpFamily::V4, true),
            NodePortTargets::All
        );
        assert_eq!(
            NodePortTargets::resolve(&c, IpFamily::V4, false),
            NodePortTargets::Addresses(vec![ip("192.168.0.2")])
        );
        c.nodeport_addresses = NodePortAddresses::Cidrs(vec![
            "192.168.0.0/16".parse().unwrap(),
            "2001:db8::1/128".parse().unwrap(),
        ]);
        assert_eq!(
            NodePortTargets::resolve(&c, IpFamily::V4, true),
            NodePortTargets::Addresses(vec![ip("192.168.0.2"), ip("192.168.1.2")])
        );
        assert_eq!(
            NodePortTargets::resolve(&c, IpFamily::V6, false),
            NodePortTargets::Addresses(vec![ip("2001:db8::1")])
        );
        c.nodeport_addresses = NodePortAddresses::Cidrs(vec!["0.0.0.0/0".parse().unwrap()]);
        assert_eq!(
            NodePortTargets::resolve(&c, IpFamily::V4, false),
            NodePortTargets::All
        );
    }

    #[test]
    fn bad_config_is_named() {
        let mut c = ProxyConfig {
            masquerade_bit: 40,
            ..ProxyConfig::default()
        };
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("masquerade bit 40")
        );
        c.masquerade_bit = 14;
        c.local_detector = LocalDetector::BridgeInterface("bad name\n".into());
        assert!(c.validate().unwrap_err().to_string().contains("interface"));
    }
}
