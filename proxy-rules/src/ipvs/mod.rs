//! IPVS mode: kube-proxy's IPVS proxier as a plan, a diff and a thin applier.
//!
//! In IPVS mode kube-proxy lets the kernel's L4 load balancer (LVS) pick endpoints.
//! Every service address (ClusterIP, external IP, LoadBalancer IP, and each node
//! address for NodePorts) becomes an IPVS *virtual server* with one *real server*
//! (weight 1, NAT forwarding) per endpoint. IPVS hooks LOCAL_IN, so the service
//! addresses are bound to a down dummy device, `kube-ipvs0`, to make them local.
//! Masquerading, NodePorts, LoadBalancer source ranges and a filter against reaching
//! host ports through a VIP still need iptables, with a fixed set of rules whose
//! members live in ipsets (`KUBE-CLUSTER-IP`, `KUBE-NODE-PORT-TCP`, ...).
//!
//! The layers, pure first:
//!
//! - [`plan()`] turns one family's [`ProxyState`](crate::model::ProxyState) into an
//!   [`IpvsPlan`]: virtual servers with their real servers, the dummy addresses, the
//!   ipsets (`ipset restore` input) and the iptables rules (`iptables-restore` input).
//!   [`IpvsPlan::to_text`] prints it like `ipvsadm -Ln` plus the rest.
//! - [`diff()`] compares the plan with the kernel's table ([`IpvsTable::read`]) or the
//!   previous plan ([`IpvsPlan::diff_from`]) and lists the operations ([`IpvsOp`]).
//! - [`netlink`] encodes and decodes the generic netlink IPVS protocol (golden-byte
//!   tested).
//! - [`apply()`] sends a diff through two side-effect traits: [`IpvsHandle`] (real:
//!   [`NetlinkIpvs`]; fake: [`FakeIpvs`]) and [`AddressBinder`] (real:
//!   [`IpCommandBinder`] over `ip`; fake: [`FakeBinder`]). [`ipset::load`] runs
//!   `ipset restore`; the iptables part loads with the crate's
//!   [`IptablesExec::restore`](crate::exec::IptablesExec::restore) like any
//!   `iptables-restore` input ([`IpvsIptables::restore_input`]).
//!
//! # What is real on our machines
//!
//! Our development and CI kernel is built **without IP_VS**: the generic netlink family
//! `IPVS` does not exist, so [`NetlinkIpvs::open`] fails with
//! [`Error::Unsupported`] saying the kernel has no IPVS
//! (the kernel answers the family lookup with ENOENT). Everything up to the bytes on
//! the wire is tested without it; the generic netlink machinery itself is tested
//! against the kernel by resolving the always-present `nlctrl` family. The same kernel
//! has **no `dummy` link driver** either (`ip link add … type dummy` says `Unknown
//! device type`), which [`IpCommandBinder`] reports as `Unsupported`; the address
//! binding is exercised for real with [`LinkKind::Bridge`], a down, `NOARP` bridge
//! without ports, which holds local addresses the same way (`NOARP` matters: the
//! kernel skips IPv6 duplicate address detection on such links, as on a dummy device,
//! so IPv6 service addresses become local while the link stays down). ip_set is built in and `ipset`
//! installs from Debian, so the ipsets and the iptables rules that use them load for
//! real — except the `KUBE-IPVS-OUT-FILTER` rules, whose `-m ipvs` match needs the
//! IPVS kernel module too.
//!
//! # Deliberate differences from kube-proxy
//!
//! - The ipsets are loaded with one `ipset restore` (create `-exist`, flush, add)
//!   instead of per-member `ipset add`/`del` calls after a listing.
//! - The iptables mark prints as `0x4000` (as in this crate's iptables mode) where
//!   kube-proxy's IPVS mode prints `%#08x`, `0x00004000`; the kernel stores the same.
//! - Graceful termination is in the diff instead of a background manager: a removed
//!   TCP real server is set to weight 0, and deleted by a later diff against the
//!   kernel's table once it has no connections (UDP and SCTP ones are deleted at
//!   once, as upstream). A draining endpoint that comes back is re-weighted rather
//!   than deleted and re-added.
//! - Addresses are sent as the full 16-byte `nf_inet_addr` (as ipvsadm does; moby/ipvs
//!   sends 4 bytes for IPv4) and destinations carry `IPVS_DEST_ATTR_ADDR_FAMILY`; the
//!   kernel accepts both forms.
//! - kube-proxy only binds external and LoadBalancer IPs that are not already on
//!   another interface, learning them from the kernel; the plan uses
//!   [`ProxyConfig::addresses`](crate::config::ProxyConfig::addresses) (node IPs and
//!   host addresses) for that and for the NodePort addresses.
//! - Scheduler names are checked against the kernel's schedulers (kube-proxy's config
//!   validation knows rr, wrr, lc, wlc, lblc, lblcr, sh, dh, sed, nq, and its proxier
//!   also handles mh).
//! - Firewall-mark virtual servers (made by other tools) are not listed, so never
//!   deleted.
//! - The `conn_reuse_mode` sysctl (set by kube-proxy only on kernels older than 5.9)
//!   is not part of [`IpvsPlan::sysctls`]; the plan never applies sysctls.
//!
//! # Example
//!
//! ```
//! use proxy_rules::config::ProxyConfig;
//! use proxy_rules::ipvs::{self, FakeBinder, FakeIpvs, IpvsOptions, IpvsTable};
//! use proxy_rules::model::{Endpoint, IpFamily, Protocol, ProxyState, ServicePort, ServicePortName};
//!
//! let name = ServicePortName::new("ns1", "svc1", "p80", Protocol::Tcp);
//! let mut state = ProxyState::new();
//! state.add_service(ServicePort::cluster_ip(name.clone(), "172.30.0.41".parse()?, 80));
//! state.set_endpoints(name, vec![Endpoint::ready("10.180.0.1".parse()?, 80)]);
//!
//! let config = ProxyConfig::new("node-a").cluster_cidr("10.0.0.0/8".parse()?);
//! let plan = ipvs::plan(&state, &config, IpFamily::V4, &IpvsOptions::default())?;
//! assert!(plan.ipvsadm_text().contains("TCP  172.30.0.41:80 rr\n  -> 10.180.0.1:80"));
//!
//! // Apply it to an empty (fake) kernel.
//! let (mut kernel, mut dummy) = (FakeIpvs::new(), FakeBinder::new());
//! let changes = ipvs::diff(&IpvsTable::new(), &[], &plan);
//! ipvs::apply(&changes, &mut kernel, &mut dummy).into_result()?;
//! assert_eq!(IpvsTable::read(&mut kernel)?, plan.table().with_connections(0));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod diff;
pub mod dummy;
pub mod handle;
pub mod ipset;
pub mod netlink;
mod plan;
mod rules;
mod service;

use std::time::Duration;

use ipnetwork::IpNetwork;

pub use diff::{ApplyFailure, ApplyOutcome, IpvsDiff, IpvsOp, apply, diff, graceful_termination};
pub use dummy::{AddressBinder, FakeBinder, IpCommandBinder, LinkKind};
pub use handle::{FakeIpvs, IpvsHandle, NetlinkIpvs, configure_timeouts, resolve_family};
pub use ipset::{IpSet, IpSetType};
pub use plan::{IpvsPlan, PlannedService, VirtualServerKind, plan};
pub use rules::{FILTER_CHAINS, IpvsIptables, NAT_CHAINS, chains, jump_rules};
pub use service::{
    Destination, ForwardMethod, IpvsTable, RealServer, ServiceFlags, ServiceKey, TableDestination,
    TableEntry, VirtualServer, default_netmask,
};

use crate::{Error, Result};

/// kube-proxy's default scheduler, round robin.
pub const DEFAULT_SCHEDULER: &str = "rr";

/// kube-proxy's default dummy device.
pub const DEFAULT_DUMMY_DEVICE: &str = "kube-ipvs0";

/// The schedulers the kernel has (`ip_vs_*` modules): `rr` round robin, `wrr`
/// weighted round robin, `lc` least connection, `wlc` weighted least connection, `fo`
/// weighted failover, `ovf` weighted overflow, `lblc` locality-based least connection,
/// `lblcr` the same with replication, `dh` destination hashing, `sh` source hashing,
/// `mh` maglev hashing, `sed` shortest expected delay, `nq` never queue, `twos`
/// weighted random twos choice.
pub const SCHEDULERS: [&str; 14] = [
    "rr", "wrr", "lc", "wlc", "fo", "ovf", "lblc", "lblcr", "dh", "sh", "mh", "sed", "nq", "twos",
];

/// The IPVS connection timeouts (`--ipvs-tcp-timeout`, `--ipvs-tcpfin-timeout`,
/// `--ipvs-udp-timeout`; `ipvsadm --set`). Unset ones keep the kernel's value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpvsTimeouts {
    /// Idle TCP sessions.
    pub tcp: Option<Duration>,
    /// TCP sessions after a FIN.
    pub tcp_fin: Option<Duration>,
    /// UDP.
    pub udp: Option<Duration>,
}

impl IpvsTimeouts {
    /// Whether none is set.
    pub fn is_empty(&self) -> bool {
        self.tcp.is_none() && self.tcp_fin.is_none() && self.udp.is_none()
    }

    /// The three in whole seconds, 0 for unset (0 leaves the kernel's value).
    pub fn seconds(&self) -> (u32, u32, u32) {
        let s =
            |d: Option<Duration>| d.map_or(0, |d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX));
        (s(self.tcp), s(self.tcp_fin), s(self.udp))
    }
}

/// IPVS mode's options (kube-proxy's `ipvs` configuration section), with kube-proxy's
/// defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpvsOptions {
    /// `--ipvs-scheduler` (default `rr`).
    pub scheduler: String,
    /// The dummy device for the service addresses (default `kube-ipvs0`).
    pub dummy_device: String,
    /// `--ipvs-strict-arp` (default false): also set `arp_ignore=1`, `arp_announce=2`.
    pub strict_arp: bool,
    /// `--ipvs-exclude-cidrs`: virtual servers inside these are never deleted.
    pub exclude_cidrs: Vec<IpNetwork>,
    /// The connection timeouts (default: unset, keep the kernel's).
    pub timeouts: IpvsTimeouts,
}

impl Default for IpvsOptions {
    fn default() -> Self {
        Self {
            scheduler: DEFAULT_SCHEDULER.to_owned(),
            dummy_device: DEFAULT_DUMMY_DEVICE.to_owned(),
            strict_arp: false,
            exclude_cidrs: Vec::new(),
            timeouts: IpvsTimeouts::default(),
        }
    }
}

impl IpvsOptions {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Set the scheduler (an empty name means `rr`, as kube-proxy).
    #[must_use]
    pub fn scheduler(mut self, name: impl Into<String>) -> Self {
        self.scheduler = name.into();
        self
    }

    /// Set the dummy device name.
    #[must_use]
    pub fn dummy_device(mut self, name: impl Into<String>) -> Self {
        self.dummy_device = name.into();
        self
    }

    /// Set strict ARP.
    #[must_use]
    pub fn strict_arp(mut self, on: bool) -> Self {
        self.strict_arp = on;
        self
    }

    /// Add an exclude CIDR.
    #[must_use]
    pub fn exclude_cidr(mut self, cidr: IpNetwork) -> Self {
        self.exclude_cidrs.push(cidr);
        self
    }

    /// Set the timeouts.
    #[must_use]
    pub fn timeouts(mut self, timeouts: IpvsTimeouts) -> Self {
        self.timeouts = timeouts;
        self
    }

    /// Check and normalize (empty scheduler → `rr`); the error names the field.
    pub fn build(mut self) -> Result<Self> {
        if self.scheduler.is_empty() {
            self.scheduler = DEFAULT_SCHEDULER.to_owned();
        }
        self.validate()?;
        Ok(self)
    }

    /// Check the options; the error names the field.
    pub fn validate(&self) -> Result<()> {
        if !SCHEDULERS.contains(&self.scheduler.as_str()) {
            return Err(Error::InvalidConfig(format!(
                "ipvs scheduler {:?} is not one of {}",
                self.scheduler,
                SCHEDULERS.join(", ")
            )));
        }
        let d = &self.dummy_device;
        if d.is_empty()
            || d.len() > 15
            || !d
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.@".contains(&b))
        {
            return Err(Error::InvalidConfig(format!(
                "ipvs dummy device {d:?} is not a valid interface name"
            )));
        }
        for (name, t) in [
            ("tcp", self.timeouts.tcp),
            ("tcpfin", self.timeouts.tcp_fin),
            ("udp", self.timeouts.udp),
        ] {
            if t.is_some_and(|t| t.as_secs() > u64::from(u32::MAX)) {
                return Err(Error::InvalidConfig(format!(
                    "ipvs {name} timeout is longer than {} seconds",
                    u32::MAX
                )));
            }
        }
        Ok(())
    }
}

impl IpvsTable {
    /// The same table with every real server's connection count set to `n` (to
    /// compare a plan's table with one read from a kernel).
    #[must_use]
    pub fn with_connections(mut self, n: u64) -> Self {
        for e in self.services.values_mut() {
            for d in e.destinations.values_mut() {
                d.connections = Some(n);
            }
        }
        self
    }
}

#[cfg(test)]
mod tests;
