//! The IPVS plan: what kube-proxy's IPVS `syncProxyRules` would program for one
//! family, computed without touching the kernel.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{self, Write as _};
use std::net::IpAddr;

use crate::Result;
use crate::config::{NodePortTargets, ProxyConfig};
use crate::ipvs::IpvsOptions;
use crate::ipvs::ipset::{self, IPSETS, IpSet, names};
use crate::ipvs::rules::{self, IpvsIptables, NoNodeAccess};
use crate::ipvs::service::{IpvsTable, RealServer, ServiceFlags, ServiceKey, VirtualServer};
use crate::model::{Endpoint, IpFamily, Protocol, ProxyState, ServiceName, ServicePortName};
use crate::topology::categorize_endpoints;

/// What a virtual server stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum VirtualServerKind {
    /// The ClusterIP.
    ClusterIp,
    /// An external IP.
    ExternalIp,
    /// A LoadBalancer ingress IP.
    LoadBalancer,
    /// A NodePort on one node address.
    NodePort,
}

impl VirtualServerKind {
    /// `cluster IP`, `external IP`, `loadbalancer IP`, `node port`.
    pub fn as_str(self) -> &'static str {
        match self {
            VirtualServerKind::ClusterIp => "cluster IP",
            VirtualServerKind::ExternalIp => "external IP",
            VirtualServerKind::LoadBalancer => "loadbalancer IP",
            VirtualServerKind::NodePort => "node port",
        }
    }
}

/// One virtual server of the plan with the real servers it gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedService {
    /// The service port it serves.
    pub service_port: ServicePortName,
    /// What it stands for.
    pub kind: VirtualServerKind,
    /// The virtual server.
    pub service: VirtualServer,
    /// Its real servers, in endpoint (`ip:port` text) order.
    pub real_servers: Vec<RealServer>,
}

/// Everything IPVS mode programs for one family: virtual and real servers, the
/// addresses on the dummy interface, the ipsets and the iptables rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpvsPlan {
    /// The family.
    pub family: IpFamily,
    /// The options planned with.
    pub options: IpvsOptions,
    /// The virtual servers, by service port then kind, in state order.
    pub services: Vec<PlannedService>,
    /// The addresses bound to the dummy interface (each ClusterIP, and each external
    /// and LoadBalancer IP that is not already a node address), sorted.
    pub bound_addresses: Vec<IpAddr>,
    /// The ipsets, in kube-proxy's order, with their members.
    pub ipsets: Vec<IpSet>,
    /// The iptables rules.
    pub iptables: IpvsIptables,
    /// The sysctls kube-proxy's IPVS mode sets at start (`path`, value), for the
    /// record: the plan does not apply them.
    pub sysctls: Vec<(String, String)>,
    /// Services with internal traffic policy Local, endpoints, but none on this node
    /// (kube-proxy's `sync_proxy_rules_no_local_endpoints_total{traffic_policy="internal"}`).
    pub no_local_internal: BTreeSet<ServiceName>,
    /// Likewise for external traffic policy Local.
    pub no_local_external: BTreeSet<ServiceName>,
}

/// Plan IPVS mode for one family (pure; kube-proxy's IPVS `syncProxyRules` without the
/// kernel calls).
///
/// - One virtual server per ClusterIP, external IP, LoadBalancer IP and (for NodePorts)
///   node address, each with the configured scheduler; ClientIP affinity makes it
///   persistent with the affinity timeout; `mh` adds the source-hash flag.
/// - Real servers: the Cluster-policy endpoints; for the ClusterIP with internal
///   policy Local, and for external addresses with external policy Local, the local
///   endpoints, **falling back to the Cluster-policy endpoints when there is no local
///   one** (upstream PR 97081, "allow access from local PODs"; the iptables and
///   nftables modes drop instead). A Service that only uses Local endpoints
///   (internal Local, no external access) has no Cluster list to fall back to, so its
///   virtual server then has no real server, as upstream.
/// - NodePorts: on every non-loopback node address of the family
///   (`--nodeport-addresses` unset), or the matching non-loopback ones; with no such
///   address, the NodePort (and its health check port) is left out, as upstream.
/// - When two service ports claim the same address, protocol and port, the first in
///   name order keeps it (upstream: whichever its map yields last).
pub fn plan(
    state: &ProxyState,
    config: &ProxyConfig,
    family: IpFamily,
    options: &IpvsOptions,
) -> Result<IpvsPlan> {
    config.validate()?;
    options.validate()?;
    let mut sets: BTreeMap<&'static str, IpSet> = IPSETS
        .iter()
        .map(|s| (s.base_name, IpSet::new(s, family)))
        .collect();
    let mut add = |base: &'static str, entry: String| {
        if let Some(s) = sets.get_mut(base) {
            s.entries.insert(entry);
        }
    };

    // The node's own addresses (kube-proxy's nodeAddressSet: every local address but
    // the dummy interface's, no loopback, no IPv6 link-local).
    let node_addresses: Vec<IpAddr> = config
        .addresses(family)
        .into_iter()
        .filter(|ip| !ip.is_loopback() && !is_link_local_v6(ip))
        .collect();
    let nodeport_addresses: Vec<IpAddr> = match NodePortTargets::resolve(config, family, true) {
        NodePortTargets::All => node_addresses.clone(),
        NodePortTargets::Addresses(ips) => ips.into_iter().filter(|ip| !ip.is_loopback()).collect(),
    };
    let primary = config.primary_ip(family);
    let scheduler = options.scheduler.as_str();

    let mut planned: Vec<PlannedService> = Vec::new();
    let mut taken: BTreeSet<ServiceKey> = BTreeSet::new();
    let mut bound: BTreeSet<IpAddr> = BTreeSet::new();
    let mut no_node_access: Vec<NoNodeAccess> = Vec::new();
    let mut no_local_internal = BTreeSet::new();
    let mut no_local_external = BTreeSet::new();

    for (name, svc) in &state.services {
        if !family.contains(&svc.cluster_ip) {
            continue;
        }
        let proto = svc.protocol();
        let p = proto.as_str();
        let endpoints = state.endpoints_of(name);

        // Hairpin: every local endpoint, whatever its readiness.
        for ep in endpoints.iter().filter(|e| e.is_local(&config.node_name)) {
            add(
                names::LOOP_BACK,
                format!("{},{p}:{},{}", ep.ip, ep.port, ep.ip),
            );
        }

        let cat = categorize_endpoints(endpoints, svc, config);
        let pick = |only_local: bool| -> Vec<RealServer> {
            let chosen: &[&Endpoint] = if only_local && !cat.local.is_empty() {
                &cat.local
            } else {
                &cat.cluster
            };
            let mut seen = BTreeSet::new();
            chosen
                .iter()
                .filter(|e| seen.insert((e.ip, e.port)))
                .map(|e| RealServer::masquerade(e.ip, e.port))
                .collect()
        };
        if cat.has_any && cat.local.is_empty() {
            if svc.internal_policy_local {
                no_local_internal.insert(name.service.clone());
            }
            if svc.external_policy_local && svc.externally_accessible() {
                no_local_external.insert(name.service.clone());
            }
        }
        let virtual_server = |address: IpAddr, port: u16| {
            let mut vs = VirtualServer::new(address, proto, port, scheduler);
            if let Some(secs) = svc.session_affinity_seconds {
                vs.flags = vs.flags.with(ServiceFlags::PERSISTENT);
                vs.timeout = secs;
            }
            if scheduler == "mh" {
                vs.flags = vs.flags.with(ServiceFlags::SOURCE_HASH);
            }
            vs
        };
        let mut push = |kind, service: VirtualServer, real_servers| {
            if taken.insert(service.key()) {
                planned.push(PlannedService {
                    service_port: name.clone(),
                    kind,
                    service,
                    real_servers,
                });
            }
        };

        // The ClusterIP.
        add(
            names::CLUSTER_IP,
            format!("{},{p}:{}", svc.cluster_ip, svc.port),
        );
        bound.insert(svc.cluster_ip);
        push(
            VirtualServerKind::ClusterIp,
            virtual_server(svc.cluster_ip, svc.port),
            pick(svc.internal_policy_local),
        );

        // External IPs.
        for ip in svc.external_ips.iter().filter(|ip| family.contains(ip)) {
            let entry = format!("{ip},{p}:{}", svc.port);
            if svc.external_policy_local {
                add(names::EXTERNAL_IP_LOCAL, entry);
            } else {
                add(names::EXTERNAL_IP, entry);
            }
            if !node_addresses.contains(ip) {
                bound.insert(*ip);
            }
            push(
                VirtualServerKind::ExternalIp,
                virtual_server(*ip, svc.port),
                pick(svc.external_policy_local),
            );
        }

        // LoadBalancer IPs.
        for ip in svc
            .load_balancer_ips
            .iter()
            .filter(|ip| family.contains(ip))
        {
            let entry = format!("{ip},{p}:{}", svc.port);
            add(names::LOAD_BALANCER, entry.clone());
            if svc.external_policy_local {
                add(names::LOAD_BALANCER_LOCAL, entry.clone());
            }
            let ranges: Vec<_> = svc
                .load_balancer_source_ranges
                .iter()
                .filter(|c| IpFamily::of_net(c) == family)
                .collect();
            if !ranges.is_empty() {
                add(names::LOAD_BALANCER_FW, entry);
                let mut allow_from_node = false;
                for cidr in ranges {
                    add(
                        names::LOAD_BALANCER_SOURCE_CIDR,
                        format!("{ip},{p}:{},{cidr}", svc.port),
                    );
                    allow_from_node |= primary.is_some_and(|n| cidr.contains(n));
                }
                if allow_from_node {
                    add(
                        names::LOAD_BALANCER_SOURCE_IP,
                        format!("{ip},{p}:{},{ip}", svc.port),
                    );
                } else {
                    no_node_access.push(NoNodeAccess {
                        ip: ip.to_string(),
                        protocol: proto,
                        port: svc.port,
                    });
                }
            }
            if !node_addresses.contains(ip) {
                bound.insert(*ip);
            }
            push(
                VirtualServerKind::LoadBalancer,
                virtual_server(*ip, svc.port),
                pick(svc.external_policy_local),
            );
        }

        // NodePorts, on each node address.
        if let Some(np) = svc.node_port {
            if nodeport_addresses.is_empty() {
                continue;
            }
            let entries: Vec<String> = match proto {
                Protocol::Sctp => nodeport_addresses
                    .iter()
                    .map(|ip| format!("{ip},sctp:{np}"))
                    .collect(),
                _ => vec![np.to_string()],
            };
            let (all_set, local_set) = match proto {
                Protocol::Tcp => (names::NODE_PORT_TCP, names::NODE_PORT_LOCAL_TCP),
                Protocol::Udp => (names::NODE_PORT_UDP, names::NODE_PORT_LOCAL_UDP),
                Protocol::Sctp => (names::NODE_PORT_SCTP, names::NODE_PORT_LOCAL_SCTP),
            };
            for e in &entries {
                add(all_set, e.clone());
                if svc.external_policy_local {
                    add(local_set, e.clone());
                }
            }
            for ip in &nodeport_addresses {
                push(
                    VirtualServerKind::NodePort,
                    virtual_server(*ip, np),
                    pick(svc.external_policy_local),
                );
            }
        }

        if let Some(hc) = svc.health_check_node_port {
            add(names::HEALTH_CHECK_NODE_PORT, hc.to_string());
        }
    }

    if let Some(s) = sets.get_mut(names::IPVS_IPS) {
        s.entries = bound.iter().map(IpAddr::to_string).collect();
    }
    let ipsets: Vec<IpSet> = IPSETS
        .iter()
        .filter_map(|spec| sets.remove(spec.base_name))
        .collect();
    let iptables = rules::render(config, family, &ipsets, &no_node_access);
    Ok(IpvsPlan {
        family,
        options: options.clone(),
        services: planned,
        bound_addresses: bound.into_iter().collect(),
        ipsets,
        iptables,
        sysctls: sysctls(options),
        no_local_internal,
        no_local_external,
    })
}

fn is_link_local_v6(ip: &IpAddr) -> bool {
    matches!(ip, IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80)
}

/// The sysctls kube-proxy's IPVS mode sets when it starts. `conn_reuse_mode=0` is only
/// set on kernels older than 5.9 and is left out.
fn sysctls(options: &IpvsOptions) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = [
        ("net/ipv4/vs/conntrack", "1"),
        ("net/ipv4/vs/expire_nodest_conn", "1"),
        ("net/ipv4/vs/expire_quiescent_template", "1"),
        ("net/ipv4/ip_forward", "1"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    if options.strict_arp {
        out.push(("net/ipv4/conf/all/arp_ignore".into(), "1".into()));
        out.push(("net/ipv4/conf/all/arp_announce".into(), "2".into()));
    }
    out
}

impl IpvsPlan {
    /// The plan's virtual and real servers as a table (connection counts unknown), for
    /// [`crate::ipvs::diff`].
    pub fn table(&self) -> IpvsTable {
        let mut t = IpvsTable::new();
        for p in &self.services {
            t.insert(
                p.service.clone(),
                p.real_servers.iter().map(|r| (r.clone(), None)),
            );
        }
        t
    }

    /// The virtual server at an address, protocol and port.
    pub fn service(&self, key: &ServiceKey) -> Option<&PlannedService> {
        self.services.iter().find(|p| &p.service.key() == key)
    }

    /// An ipset by its base (IPv4) name, for example `KUBE-CLUSTER-IP`.
    pub fn ipset(&self, base_name: &str) -> Option<&IpSet> {
        self.ipsets.iter().find(|s| s.base_name == base_name)
    }

    /// The `ipset restore` input.
    pub fn ipset_restore_input(&self) -> String {
        ipset::restore_input(&self.ipsets)
    }

    /// The number of real servers in all virtual servers.
    pub fn real_server_count(&self) -> usize {
        self.services.iter().map(|p| p.real_servers.len()).sum()
    }

    /// The virtual and real servers as `ipvsadm -Ln` prints them.
    pub fn ipvsadm_text(&self) -> String {
        let mut out = String::new();
        out.push_str("Prot LocalAddress:Port Scheduler Flags\n");
        out.push_str("  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n");
        let mut sorted: Vec<&PlannedService> = self.services.iter().collect();
        // ipvsadm lists services by protocol then address then port.
        sorted.sort_by_key(|p| (p.service.protocol, p.service.address, p.service.port));
        for p in sorted {
            let s = &p.service;
            let _ = write!(
                out,
                "{}  {} {}",
                s.protocol.as_str().to_ascii_uppercase(),
                crate::model::join_host_port(&s.address, s.port),
                s.scheduler
            );
            if s.is_persistent() {
                let _ = write!(out, " persistent {}", s.timeout);
                if s.family() == IpFamily::V4 && s.netmask != 0xffff_ffff {
                    let _ = write!(out, " mask {}", std::net::Ipv4Addr::from(s.netmask));
                }
            }
            if s.flags.contains(ServiceFlags::SCHED1) {
                let _ = write!(out, " {}-fallback", s.scheduler);
            }
            if s.flags.contains(ServiceFlags::SCHED2) {
                let _ = write!(out, " {}-port", s.scheduler);
            }
            out.push('\n');
            for r in &p.real_servers {
                let _ = writeln!(
                    out,
                    "  -> {:<28} {:<7} {:<6} {:<10} {:<10}",
                    r.endpoint(),
                    r.forward.ipvsadm_name(),
                    r.weight,
                    0,
                    0
                );
                // ipvsadm pads the last column too; keep lines free of trailing blanks.
                trim_line_end(&mut out);
            }
        }
        out
    }

    /// The readable plan: `ipvsadm -Ln`-style virtual servers, the dummy interface's
    /// addresses, the sysctls, the `ipset restore` input and the `iptables-restore`
    /// input. What `proxy-render --mode ipvs` prints.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# IPVS plan ({}): {} virtual servers, {} real servers, scheduler {}",
            self.family,
            self.services.len(),
            self.real_server_count(),
            self.options.scheduler
        );
        out.push_str("# virtual servers (ipvsadm -Ln)\n");
        out.push_str(&self.ipvsadm_text());
        let prefix = match self.family {
            IpFamily::V4 => 32,
            IpFamily::V6 => 128,
        };
        let _ = writeln!(
            out,
            "# addresses on {} (ip addr add ADDRESS dev {})",
            self.options.dummy_device, self.options.dummy_device
        );
        for a in &self.bound_addresses {
            let _ = writeln!(out, "{a}/{prefix}");
        }
        out.push_str("# sysctls\n");
        for (k, v) in &self.sysctls {
            let _ = writeln!(out, "{}={v}", k.replace('/', "."));
        }
        out.push_str("# ipsets (ipset restore)\n");
        out.push_str(&self.ipset_restore_input());
        let _ = writeln!(
            out,
            "# iptables ({} --noflush)",
            match self.family {
                IpFamily::V4 => "iptables-restore",
                IpFamily::V6 => "ip6tables-restore",
            }
        );
        out.push_str(&self.iptables.restore_input());
        out.push_str("# jump rules from built-in chains (iptables -t TABLE -I ...)\n");
        for j in &self.iptables.jumps {
            let _ = writeln!(out, "-t {} {}", j.table.as_str(), j.restore_line());
        }
        out
    }
}

fn trim_line_end(out: &mut String) {
    // `out` ends with "...\n": drop the blanks before that newline.
    if out.ends_with('\n') {
        out.pop();
        let trimmed = out.trim_end_matches(' ').len();
        out.truncate(trimmed);
        out.push('\n');
    }
}

impl fmt::Display for IpvsPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_text())
    }
}
