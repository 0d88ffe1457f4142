//! What `proxy-render`, `proxy-sync` and `proxy-trace` share: the node options, named
//! as kube-proxy names its flags, and reading the input objects.

use std::collections::BTreeMap;
use std::net::IpAddr;

use anyhow::{Context as _, bail};
use clap::{Args, ValueEnum};
use proxy_rules::config::{LocalDetector, NodePortAddresses, ProxyConfig};
use proxy_rules::ipnetwork::IpNetwork;
use proxy_rules::k8s::{Objects, parse_objects};
use proxy_rules::model::IpFamily;

/// The proxy mode (`--mode`, also accepted as kube-proxy's `--proxy-mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ModeArg {
    /// iptables rules.
    Iptables,
    /// nftables rules.
    Nftables,
    /// IPVS virtual servers (with their ipsets and iptables rules).
    Ipvs,
}

/// An IP family choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FamilyArg {
    /// IPv4 only.
    Ipv4,
    /// IPv6 only.
    Ipv6,
    /// Both (dual-stack).
    Both,
}

/// `--detect-local-mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DetectLocalArg {
    /// Sources inside `--cluster-cidr` are pods (kube-proxy's default).
    #[value(name = "ClusterCIDR")]
    ClusterCidr,
    /// Sources inside the node's pod CIDR (`--pod-cidr` here) are local pods.
    #[value(name = "NodeCIDR")]
    NodeCidr,
    /// Packets from `--pod-bridge-interface` come from pods.
    #[value(name = "BridgeInterface")]
    BridgeInterface,
    /// Packets from interfaces named `--pod-interface-name-prefix*` come from pods.
    #[value(name = "InterfaceNamePrefix")]
    InterfaceNamePrefix,
}

/// The node options, with kube-proxy's flag names and defaults.
#[derive(Debug, Clone, Args)]
pub struct NodeArgs {
    /// The node name endpoints are matched against (`nodeName`).
    #[arg(long = "hostname-override", value_name = "NAME")]
    pub hostname_override: Option<String>,
    /// A node IP (repeatable; the first of each family is the primary one).
    #[arg(long = "node-ip", value_name = "IP")]
    pub node_ip: Vec<IpAddr>,
    /// The pod network, one CIDR per family (`a,b`): pod traffic detection.
    #[arg(
        long = "cluster-cidr",
        value_name = "CIDR[,CIDR]",
        value_delimiter = ','
    )]
    pub cluster_cidr: Vec<IpNetwork>,
    /// How pod traffic is told from other traffic.
    #[arg(long = "detect-local-mode", value_enum, default_value = "ClusterCIDR")]
    pub detect_local_mode: DetectLocalArg,
    /// The node's pod CIDR(s), for `--detect-local-mode NodeCIDR`.
    #[arg(long = "pod-cidr", value_name = "CIDR[,CIDR]", value_delimiter = ',')]
    pub pod_cidr: Vec<IpNetwork>,
    /// The pod bridge, for `--detect-local-mode BridgeInterface`.
    #[arg(long = "pod-bridge-interface", value_name = "NAME")]
    pub pod_bridge_interface: Option<String>,
    /// The pod interface prefix, for `--detect-local-mode InterfaceNamePrefix`.
    #[arg(long = "pod-interface-name-prefix", value_name = "PREFIX")]
    pub pod_interface_name_prefix: Option<String>,
    /// Addresses that accept NodePorts: CIDRs, or `primary` (the node IPs). Unset: every
    /// local address (iptables, IPVS) or the node IPs (nftables).
    #[arg(
        long = "nodeport-addresses",
        value_name = "CIDR[,CIDR]|primary",
        value_delimiter = ','
    )]
    pub nodeport_addresses: Vec<String>,
    /// Other addresses of the node (repeatable), matched against `--nodeport-addresses`
    /// (kube-proxy reads the interfaces; here they are given).
    #[arg(long = "host-address", value_name = "IP")]
    pub host_address: Vec<IpAddr>,
    /// SNAT all traffic sent to ClusterIPs.
    #[arg(long = "masquerade-all")]
    pub masquerade_all: bool,
    /// The fwmark bit for packets to SNAT (0-31).
    #[arg(long = "iptables-masquerade-bit", default_value_t = 14)]
    pub masquerade_bit: u8,
    /// Accept NodePorts on 127.0.0.1 (iptables mode, IPv4).
    #[arg(long = "iptables-localhost-nodeports", default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub localhost_nodeports: bool,
    /// A node label `KEY=VALUE` (repeatable); `topology.kubernetes.io/zone` picks zone hints.
    #[arg(long = "node-label", value_name = "KEY=VALUE")]
    pub node_label: Vec<String>,
    /// Which families to proxy. Default: the family of the first `--node-ip` (IPv4 if none).
    #[arg(long = "ip-family", value_enum)]
    pub ip_family: Option<FamilyArg>,
}

impl NodeArgs {
    /// The proxier configuration these options describe.
    pub fn config(&self) -> anyhow::Result<ProxyConfig> {
        let node_name = match &self.hostname_override {
            Some(n) => n.clone(),
            None => std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_lowercase())
                .unwrap_or_default(),
        };
        let mut c = ProxyConfig::new(node_name);
        c.node_ips = self.node_ip.clone();
        c.host_addresses = self.host_address.clone();
        c.masquerade_all = self.masquerade_all;
        c.masquerade_bit = self.masquerade_bit;
        c.localhost_nodeports = self.localhost_nodeports;
        c.local_detector = match self.detect_local_mode {
            DetectLocalArg::ClusterCidr if self.cluster_cidr.is_empty() => LocalDetector::None,
            DetectLocalArg::ClusterCidr => LocalDetector::ClusterCidr(self.cluster_cidr.clone()),
            DetectLocalArg::NodeCidr => {
                if self.pod_cidr.is_empty() {
                    bail!("--detect-local-mode NodeCIDR needs --pod-cidr");
                }
                LocalDetector::NodeCidr(self.pod_cidr.clone())
            }
            DetectLocalArg::BridgeInterface => LocalDetector::BridgeInterface(
                self.pod_bridge_interface
                    .clone()
                    .context("--detect-local-mode BridgeInterface needs --pod-bridge-interface")?,
            ),
            DetectLocalArg::InterfaceNamePrefix => {
                LocalDetector::InterfaceNamePrefix(self.pod_interface_name_prefix.clone().context(
                    "--detect-local-mode InterfaceNamePrefix needs --pod-interface-name-prefix",
                )?)
            }
        };
        c.nodeport_addresses = match self.nodeport_addresses.as_slice() {
            [] => NodePortAddresses::Default,
            [p] if p == "primary" => NodePortAddresses::Primary,
            list => NodePortAddresses::Cidrs(
                list.iter()
                    .map(|s| {
                        s.trim().parse::<IpNetwork>().with_context(|| {
                            format!("--nodeport-addresses: {s:?} is not a CIDR (or `primary`)")
                        })
                    })
                    .collect::<anyhow::Result<_>>()?,
            ),
        };
        let mut labels = BTreeMap::new();
        for l in &self.node_label {
            let (k, v) = l
                .split_once('=')
                .with_context(|| format!("--node-label {l:?} is not KEY=VALUE"))?;
            labels.insert(k.to_owned(), v.to_owned());
        }
        c.node_labels = labels;
        c.validate()?;
        Ok(c)
    }

    /// The families to proxy.
    pub fn families(&self) -> Vec<IpFamily> {
        match self.ip_family {
            Some(FamilyArg::Ipv4) => vec![IpFamily::V4],
            Some(FamilyArg::Ipv6) => vec![IpFamily::V6],
            Some(FamilyArg::Both) => vec![IpFamily::V4, IpFamily::V6],
            None => vec![self.node_ip.first().map_or(IpFamily::V4, IpFamily::of)],
        }
    }
}

/// Read the objects of a file (`-` for stdin); errors about single objects are printed
/// to stderr (each naming the object and field) and the rest is kept.
pub fn read_objects(path: &str) -> anyhow::Result<Objects> {
    let (text, name) = if path == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s).context("reading stdin")?;
        (s, "<stdin>".to_owned())
    } else {
        (
            std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?,
            path.to_owned(),
        )
    };
    let objects = parse_objects(&text, &name)?;
    for e in &objects.errors {
        eprintln!("warning: skipped: {e}");
    }
    Ok(objects)
}

/// The IPVS plan of one family as text (`proxy-render --mode ipvs`): virtual and real
/// servers as `ipvsadm -Ln` shows them, the `kube-ipvs0` addresses, the ipsets and the
/// companion iptables rules.
pub fn ipvs_plan_text(
    state: &proxy_rules::model::ProxyState,
    config: &ProxyConfig,
    family: IpFamily,
    scheduler: &str,
) -> anyhow::Result<String> {
    let options = proxy_rules::ipvs::IpvsOptions::new()
        .scheduler(scheduler)
        .build()?;
    Ok(proxy_rules::ipvs::plan(state, config, family, &options)?.to_text())
}

/// The addresses on the interfaces of a target's network namespace (`ip -j addr`).
pub async fn local_addresses(target: &proxy_rules::exec::Target) -> anyhow::Result<Vec<IpAddr>> {
    let out = target.run("ip", &["-j", "addr"], None).await?;
    let v: serde_json::Value = serde_json::from_str(&out).context("parsing `ip -j addr`")?;
    Ok(v.as_array()
        .into_iter()
        .flatten()
        .flat_map(|link| link["addr_info"].as_array().cloned().unwrap_or_default())
        .filter_map(|a| a["local"].as_str().and_then(|s| s.parse().ok()))
        .collect())
}
