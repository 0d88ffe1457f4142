//! The IPVS objects: virtual servers (IPVS "services"), real servers (IPVS
//! "destinations") and a table of both, as the kernel holds them and as a plan wants
//! them.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use crate::model::{IpFamily, Protocol, join_host_port};

/// IPVS virtual service flags (`IP_VS_SVC_F_*` in `include/uapi/linux/ip_vs.h`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceFlags(pub u32);

impl ServiceFlags {
    /// `IP_VS_SVC_F_PERSISTENT` (0x1): persistent connections (ClientIP affinity).
    pub const PERSISTENT: ServiceFlags = ServiceFlags(0x0001);
    /// `IP_VS_SVC_F_HASHED` (0x2): set by the kernel on every listed service; never
    /// sent, and stripped when a service is read back.
    pub const HASHED: ServiceFlags = ServiceFlags(0x0002);
    /// `IP_VS_SVC_F_ONEPACKET` (0x4): one-packet scheduling.
    pub const ONE_PACKET: ServiceFlags = ServiceFlags(0x0004);
    /// `IP_VS_SVC_F_SCHED1` (0x8): scheduler flag 1 (`sh-fallback`, `mh-fallback`).
    pub const SCHED1: ServiceFlags = ServiceFlags(0x0008);
    /// `IP_VS_SVC_F_SCHED2` (0x10): scheduler flag 2 (`sh-port`, `mh-port`).
    pub const SCHED2: ServiceFlags = ServiceFlags(0x0010);
    /// `IP_VS_SVC_F_SCHED3` (0x20): scheduler flag 3.
    pub const SCHED3: ServiceFlags = ServiceFlags(0x0020);
    /// kube-proxy's `FlagSourceHash` (0x10 = `IP_VS_SVC_F_SCHED2`), set for the `mh`
    /// scheduler so it hashes the source port too.
    pub const SOURCE_HASH: ServiceFlags = ServiceFlags::SCHED2;

    /// No flag.
    pub fn empty() -> Self {
        ServiceFlags(0)
    }

    /// Whether every bit of `other` is set.
    pub fn contains(self, other: ServiceFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// These flags plus `other`.
    #[must_use]
    pub fn with(self, other: ServiceFlags) -> Self {
        ServiceFlags(self.0 | other.0)
    }

    /// These flags without `other`.
    #[must_use]
    pub fn without(self, other: ServiceFlags) -> Self {
        ServiceFlags(self.0 & !other.0)
    }
}

/// How IPVS forwards to a real server (`IP_VS_CONN_F_*` forwarding methods).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ForwardMethod {
    /// `IP_VS_CONN_F_MASQ` (0): NAT. The only method that can map ports, so the only one
    /// kube-proxy uses.
    #[default]
    Masquerade,
    /// `IP_VS_CONN_F_LOCALNODE` (1).
    LocalNode,
    /// `IP_VS_CONN_F_TUNNEL` (2): IP-in-IP.
    Tunnel,
    /// `IP_VS_CONN_F_DROUTE` (3): direct routing.
    DirectRoute,
    /// `IP_VS_CONN_F_BYPASS` (4).
    Bypass,
}

impl ForwardMethod {
    /// The wire value (`IPVS_DEST_ATTR_FWD_METHOD`).
    pub fn value(self) -> u32 {
        match self {
            ForwardMethod::Masquerade => 0,
            ForwardMethod::LocalNode => 1,
            ForwardMethod::Tunnel => 2,
            ForwardMethod::DirectRoute => 3,
            ForwardMethod::Bypass => 4,
        }
    }

    /// The method of a wire value (only its low 3 bits, `IP_VS_CONN_F_FWD_MASK`, count).
    pub fn from_value(value: u32) -> Self {
        match value & 0x7 {
            1 => ForwardMethod::LocalNode,
            2 => ForwardMethod::Tunnel,
            3 => ForwardMethod::DirectRoute,
            4 => ForwardMethod::Bypass,
            _ => ForwardMethod::Masquerade,
        }
    }

    /// The word `ipvsadm -Ln` prints: `Masq`, `Local`, `Tunnel`, `Route`, `Bypass`.
    pub fn ipvsadm_name(self) -> &'static str {
        match self {
            ForwardMethod::Masquerade => "Masq",
            ForwardMethod::LocalNode => "Local",
            ForwardMethod::Tunnel => "Tunnel",
            ForwardMethod::DirectRoute => "Route",
            ForwardMethod::Bypass => "Bypass",
        }
    }
}

/// What identifies a virtual server: address, protocol and port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceKey {
    /// The virtual address.
    pub address: IpAddr,
    /// The L4 protocol.
    pub protocol: Protocol,
    /// The virtual port.
    pub port: u16,
}

impl fmt::Display for ServiceKey {
    /// `10.96.0.1:443/tcp`, `[fd00::1]:80/udp` (kube-proxy's `VirtualServer.String()`
    /// with a lower-case protocol).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}",
            join_host_port(&self.address, self.port),
            self.protocol
        )
    }
}

/// An IPVS virtual server (the kernel's "service"): kube-proxy's `VirtualServer`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VirtualServer {
    /// The virtual address (a ClusterIP, external IP, LoadBalancer IP or node IP).
    pub address: IpAddr,
    /// The L4 protocol.
    pub protocol: Protocol,
    /// The virtual port (the Service port, or the NodePort).
    pub port: u16,
    /// The scheduler name (`rr`, `lc`, ...).
    pub scheduler: String,
    /// Service flags (persistent, scheduler flags); never `HASHED`.
    pub flags: ServiceFlags,
    /// The persistence timeout in seconds (the ClientIP affinity timeout), 0 if not
    /// persistent.
    pub timeout: u32,
    /// The persistence netmask: `0xffffffff` for IPv4, the prefix length 128 for IPv6,
    /// as kube-proxy sets them.
    pub netmask: u32,
}

impl VirtualServer {
    /// A virtual server with no flags and kube-proxy's netmask for the family.
    pub fn new(address: IpAddr, protocol: Protocol, port: u16, scheduler: &str) -> Self {
        Self {
            address,
            protocol,
            port,
            scheduler: scheduler.to_owned(),
            flags: ServiceFlags::empty(),
            timeout: 0,
            netmask: default_netmask(IpFamily::of(&address)),
        }
    }

    /// The identity of the virtual server.
    pub fn key(&self) -> ServiceKey {
        ServiceKey {
            address: self.address,
            protocol: self.protocol,
            port: self.port,
        }
    }

    /// The address family.
    pub fn family(&self) -> IpFamily {
        IpFamily::of(&self.address)
    }

    /// Whether the service is persistent (ClientIP session affinity).
    pub fn is_persistent(&self) -> bool {
        self.flags.contains(ServiceFlags::PERSISTENT)
    }
}

impl fmt::Display for VirtualServer {
    /// The key, `10.96.0.1:443/tcp`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.key().fmt(f)
    }
}

/// kube-proxy's persistence netmask of a family: `0xffffffff` (IPv4) or 128 (IPv6).
pub fn default_netmask(family: IpFamily) -> u32 {
    match family {
        IpFamily::V4 => 0xffff_ffff,
        IpFamily::V6 => 128,
    }
}

/// An IPVS real server (the kernel's "destination"): kube-proxy's `RealServer`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RealServer {
    /// The endpoint address.
    pub address: IpAddr,
    /// The endpoint (target) port.
    pub port: u16,
    /// The weight: 1 for a live endpoint, 0 while a removed one drains.
    pub weight: u32,
    /// The forwarding method (always masquerade/NAT in kube-proxy).
    pub forward: ForwardMethod,
    /// Upper connection threshold (0: none).
    pub upper_threshold: u32,
    /// Lower connection threshold (0: none).
    pub lower_threshold: u32,
}

impl RealServer {
    /// A real server as kube-proxy adds them: weight 1, NAT, no thresholds.
    pub fn masquerade(address: IpAddr, port: u16) -> Self {
        Self {
            address,
            port,
            weight: 1,
            forward: ForwardMethod::Masquerade,
            upper_threshold: 0,
            lower_threshold: 0,
        }
    }

    /// `ip:port` (`[ip]:port` for IPv6): the identity of a real server within its
    /// virtual server.
    pub fn endpoint(&self) -> String {
        join_host_port(&self.address, self.port)
    }

    /// The identity within a virtual server.
    pub fn key(&self) -> (IpAddr, u16) {
        (self.address, self.port)
    }

    /// The same real server with another weight.
    #[must_use]
    pub fn with_weight(&self, weight: u32) -> Self {
        Self {
            weight,
            ..self.clone()
        }
    }
}

impl fmt::Display for RealServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.endpoint())
    }
}

/// A real server as the kernel lists it: its settings plus its connection counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// The settings.
    pub server: RealServer,
    /// `IPVS_DEST_ATTR_ACTIVE_CONNS`.
    pub active_connections: u32,
    /// `IPVS_DEST_ATTR_INACT_CONNS`.
    pub inactive_connections: u32,
    /// `IPVS_DEST_ATTR_PERSIST_CONNS`.
    pub persistent_connections: u32,
}

impl Destination {
    /// A destination with zero counters.
    pub fn idle(server: RealServer) -> Self {
        Self {
            server,
            active_connections: 0,
            inactive_connections: 0,
            persistent_connections: 0,
        }
    }
}

/// One real server of a [`IpvsTable`] entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableDestination {
    /// The settings.
    pub server: RealServer,
    /// Active plus inactive connections when read from the kernel; `None` when unknown
    /// (a table made from a plan).
    pub connections: Option<u64>,
}

/// One virtual server of a [`IpvsTable`] with its real servers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableEntry {
    /// The virtual server.
    pub service: VirtualServer,
    /// Its real servers by address and port.
    pub destinations: BTreeMap<(IpAddr, u16), TableDestination>,
}

/// Virtual servers and their real servers, keyed by address, protocol and port: what a
/// plan wants ([`crate::ipvs::IpvsPlan::table`]) or what the kernel holds
/// ([`IpvsTable::read`]). The diff compares two of them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpvsTable {
    /// The entries.
    pub services: BTreeMap<ServiceKey, TableEntry>,
}

impl IpvsTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Insert a virtual server with its real servers (replacing an entry with the same
    /// key). `connections` is what is known about each real server's connections.
    pub fn insert(
        &mut self,
        service: VirtualServer,
        destinations: impl IntoIterator<Item = (RealServer, Option<u64>)>,
    ) {
        let destinations = destinations
            .into_iter()
            .map(|(server, connections)| {
                (
                    server.key(),
                    TableDestination {
                        server,
                        connections,
                    },
                )
            })
            .collect();
        self.services.insert(
            service.key(),
            TableEntry {
                service,
                destinations,
            },
        );
    }

    /// Read the kernel's table through a handle: every virtual server and its real
    /// servers with their connection counters (firewall-mark services are not listed).
    pub fn read<H: crate::ipvs::IpvsHandle + ?Sized>(handle: &mut H) -> crate::Result<Self> {
        let mut table = IpvsTable::new();
        for service in handle.list_services()? {
            let dests = handle.list_destinations(&service)?;
            table.insert(
                service,
                dests.into_iter().map(|d| {
                    let conns = u64::from(d.active_connections) + u64::from(d.inactive_connections);
                    (d.server, Some(conns))
                }),
            );
        }
        Ok(table)
    }

    /// The number of virtual servers.
    pub fn len(&self) -> usize {
        self.services.len()
    }

    /// Whether the table has no virtual server.
    pub fn is_empty(&self) -> bool {
        self.services.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_print_like_kube_proxy() {
        let v4 = VirtualServer::new("10.96.0.1".parse().unwrap(), Protocol::Tcp, 443, "rr");
        assert_eq!(v4.to_string(), "10.96.0.1:443/tcp");
        assert_eq!(v4.netmask, 0xffff_ffff);
        let v6 = VirtualServer::new("fd00::1".parse().unwrap(), Protocol::Udp, 53, "rr");
        assert_eq!(v6.to_string(), "[fd00::1]:53/udp");
        assert_eq!(v6.netmask, 128);
    }

    #[test]
    fn flags_and_forwarding() {
        let f = ServiceFlags::PERSISTENT.with(ServiceFlags::HASHED);
        assert!(f.contains(ServiceFlags::PERSISTENT));
        assert_eq!(f.without(ServiceFlags::HASHED), ServiceFlags::PERSISTENT);
        assert_eq!(ServiceFlags::SOURCE_HASH.0, 0x10);
        for m in [
            ForwardMethod::Masquerade,
            ForwardMethod::LocalNode,
            ForwardMethod::Tunnel,
            ForwardMethod::DirectRoute,
            ForwardMethod::Bypass,
        ] {
            assert_eq!(ForwardMethod::from_value(m.value()), m);
        }
        // Only the forwarding bits count.
        assert_eq!(ForwardMethod::from_value(0x100), ForwardMethod::Masquerade);
    }
}
