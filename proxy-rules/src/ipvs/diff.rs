//! What a sync changes: the operations that turn the current IPVS table and dummy
//! addresses into the planned ones, and their application through the side-effect
//! traits.

use std::collections::BTreeSet;
use std::fmt::{self, Write as _};
use std::net::IpAddr;

use crate::Error;
use crate::ipvs::IpvsPlan;
use crate::ipvs::dummy::AddressBinder;
use crate::ipvs::handle::IpvsHandle;
use crate::ipvs::service::{IpvsTable, RealServer, ServiceKey, TableDestination, VirtualServer};
use crate::model::{IpFamily, Protocol};

/// One IPVS change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IpvsOp {
    /// Create a virtual server (`IPVS_CMD_NEW_SERVICE`).
    AddService(VirtualServer),
    /// Change a virtual server's scheduler, flags, timeout or netmask
    /// (`IPVS_CMD_SET_SERVICE`); connections survive.
    UpdateService(VirtualServer),
    /// Delete a virtual server and its real servers (`IPVS_CMD_DEL_SERVICE`).
    DeleteService(VirtualServer),
    /// Add a real server (`IPVS_CMD_NEW_DEST`).
    AddDestination(VirtualServer, RealServer),
    /// Change a real server's weight or settings (`IPVS_CMD_SET_DEST`).
    UpdateDestination(VirtualServer, RealServer),
    /// Set a removed TCP real server's weight to 0 so it gets no new connections while
    /// its open ones finish (`IPVS_CMD_SET_DEST`, weight 0): kube-proxy's graceful
    /// termination. A later diff against the kernel's table deletes it once it has no
    /// connection left.
    DrainDestination(VirtualServer, RealServer),
    /// Delete a real server (`IPVS_CMD_DEL_DEST`).
    DeleteDestination(VirtualServer, RealServer),
}

impl IpvsOp {
    /// The virtual server the operation is about.
    pub fn service(&self) -> &VirtualServer {
        match self {
            IpvsOp::AddService(s)
            | IpvsOp::UpdateService(s)
            | IpvsOp::DeleteService(s)
            | IpvsOp::AddDestination(s, _)
            | IpvsOp::UpdateDestination(s, _)
            | IpvsOp::DrainDestination(s, _)
            | IpvsOp::DeleteDestination(s, _) => s,
        }
    }
}

impl fmt::Display for IpvsOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let svc = |s: &VirtualServer| {
            let mut t = format!("{s} {}", s.scheduler);
            if s.is_persistent() {
                let _ = write!(t, " persistent {}", s.timeout);
            }
            if s.flags.0 != 0 {
                let _ = write!(t, " flags {:#x}", s.flags.0);
            }
            t
        };
        match self {
            IpvsOp::AddService(s) => write!(f, "add service {}", svc(s)),
            IpvsOp::UpdateService(s) => write!(f, "update service {}", svc(s)),
            IpvsOp::DeleteService(s) => write!(f, "delete service {s}"),
            IpvsOp::AddDestination(s, r) => {
                write!(f, "add destination {s} -> {r} weight {}", r.weight)
            }
            IpvsOp::UpdateDestination(s, r) => {
                write!(f, "update destination {s} -> {r} weight {}", r.weight)
            }
            IpvsOp::DrainDestination(s, r) => write!(f, "drain destination {s} -> {r} weight 0"),
            IpvsOp::DeleteDestination(s, r) => write!(f, "delete destination {s} -> {r}"),
        }
    }
}

/// The changes of one sync.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpvsDiff {
    /// The dummy device that holds the addresses.
    pub device: String,
    /// Addresses to bind to the dummy device (first, so the virtual addresses are
    /// local before their services exist).
    pub bind: Vec<IpAddr>,
    /// IPVS operations: per virtual server (in key order) its service change then its
    /// real server changes, and the deletions of virtual servers last.
    pub ops: Vec<IpvsOp>,
    /// Addresses to remove from the dummy device (last).
    pub unbind: Vec<IpAddr>,
}

impl IpvsDiff {
    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.bind.is_empty() && self.ops.is_empty() && self.unbind.is_empty()
    }

    /// One line per change.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for a in &self.bind {
            let _ = writeln!(out, "bind {a} dev {}", self.device);
        }
        for op in &self.ops {
            let _ = writeln!(out, "{op}");
        }
        for a in &self.unbind {
            let _ = writeln!(out, "unbind {a} dev {}", self.device);
        }
        out
    }
}

impl fmt::Display for IpvsDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_text())
    }
}

/// Whether kube-proxy drains a protocol's removed real servers: TCP yes; UDP and SCTP
/// are deleted at once (`IsRsGracefulTerminationNeeded`).
pub fn graceful_termination(protocol: Protocol) -> bool {
    protocol == Protocol::Tcp
}

fn removal(svc: &VirtualServer, cur: &TableDestination, ops: &mut Vec<IpvsOp>) {
    let drained = cur.connections == Some(0);
    if !graceful_termination(svc.protocol) || drained {
        ops.push(IpvsOp::DeleteDestination(svc.clone(), cur.server.clone()));
    } else if cur.server.weight != 0 {
        ops.push(IpvsOp::DrainDestination(
            svc.clone(),
            cur.server.with_weight(0),
        ));
    }
    // Weight 0 already and connections open (or unknown): still draining.
}

/// The changes from `current` (the kernel's table, or the previous plan's) and the
/// addresses `bound` on the dummy device to what `desired` wants.
///
/// - A virtual server only in `current` is deleted, unless it is of the other family
///   or its address is inside one of `--ipvs-exclude-cidrs` (so services made by
///   others survive), as kube-proxy's `cleanLegacyService`.
/// - A real server only in `current` is deleted at once for UDP and SCTP, and for TCP
///   once its connections are known to be 0; otherwise it is drained to weight 0 first
///   (kube-proxy's graceful termination). Deleting it later needs a diff against the
///   kernel's table ([`IpvsTable::read`]), which knows the connection counts.
/// - A real server in both with another weight or setting is updated; this also brings
///   back a draining endpoint that returned (upstream deletes and re-adds it).
/// - Addresses: the planned ones not bound are bound, bound ones not planned are
///   removed.
pub fn diff(current: &IpvsTable, bound: &[IpAddr], desired: &IpvsPlan) -> IpvsDiff {
    let want = desired.table();
    let mut ops = Vec::new();
    let mut deletions = Vec::new();
    let keys: BTreeSet<&ServiceKey> = current
        .services
        .keys()
        .chain(want.services.keys())
        .collect();
    for key in keys {
        match (current.services.get(key), want.services.get(key)) {
            (None, Some(w)) => {
                ops.push(IpvsOp::AddService(w.service.clone()));
                for d in w.destinations.values() {
                    ops.push(IpvsOp::AddDestination(w.service.clone(), d.server.clone()));
                }
            }
            (Some(c), None) => {
                let family = c.service.family();
                let excluded = desired
                    .options
                    .exclude_cidrs
                    .iter()
                    .any(|n| n.contains(c.service.address));
                if family == desired.family && !excluded {
                    deletions.push(IpvsOp::DeleteService(c.service.clone()));
                }
            }
            (Some(c), Some(w)) => {
                if c.service != w.service {
                    ops.push(IpvsOp::UpdateService(w.service.clone()));
                }
                for (dk, d) in &w.destinations {
                    match c.destinations.get(dk) {
                        None => {
                            ops.push(IpvsOp::AddDestination(w.service.clone(), d.server.clone()))
                        }
                        Some(cd) if cd.server != d.server => ops.push(IpvsOp::UpdateDestination(
                            w.service.clone(),
                            d.server.clone(),
                        )),
                        Some(_) => {}
                    }
                }
                for (dk, cd) in &c.destinations {
                    if !w.destinations.contains_key(dk) {
                        removal(&w.service, cd, &mut ops);
                    }
                }
            }
            (None, None) => {}
        }
    }
    ops.extend(deletions);
    let want_addrs: BTreeSet<IpAddr> = desired.bound_addresses.iter().copied().collect();
    let have: BTreeSet<IpAddr> = bound
        .iter()
        .copied()
        .filter(|a| IpFamily::of(a) == desired.family)
        .collect();
    IpvsDiff {
        device: desired.options.dummy_device.clone(),
        bind: want_addrs.difference(&have).copied().collect(),
        ops,
        unbind: have.difference(&want_addrs).copied().collect(),
    }
}

impl IpvsPlan {
    /// The changes from a previous plan to this one (a sync that trusts its own last
    /// plan instead of reading the kernel).
    pub fn diff_from(&self, previous: &IpvsPlan) -> IpvsDiff {
        diff(&previous.table(), &previous.bound_addresses, self)
    }
}

/// One change that failed.
#[derive(Debug)]
pub struct ApplyFailure {
    /// What was being done (`add service 10.96.0.1:443/tcp rr`, `bind 10.96.0.1 dev
    /// kube-ipvs0`).
    pub action: String,
    /// Why it failed.
    pub error: Error,
}

/// What [`apply`] did.
#[derive(Debug, Default)]
pub struct ApplyOutcome {
    /// Changes that succeeded.
    pub applied: usize,
    /// Changes left out because what they depend on failed (the real servers of a
    /// virtual server that could not be created, the addresses of a device that could
    /// not be made).
    pub skipped: usize,
    /// Changes that failed, in order.
    pub failures: Vec<ApplyFailure>,
}

impl ApplyOutcome {
    /// Whether every change succeeded.
    pub fn is_ok(&self) -> bool {
        self.failures.is_empty()
    }

    /// `Ok(applied)`, or the first failure's error (with its action in front when the
    /// error does not already say it).
    pub fn into_result(mut self) -> crate::Result<usize> {
        if self.failures.is_empty() {
            return Ok(self.applied);
        }
        Err(self.failures.remove(0).error)
    }
}

/// Apply a diff: ensure the dummy device and bind addresses, send the IPVS operations,
/// then unbind addresses. Like kube-proxy, a failure does not stop the sync: the rest
/// is still applied (except the real servers of a virtual server whose creation
/// failed, and the addresses when the device cannot be made) and every failure is
/// reported; the caller should resync fully after one.
pub fn apply<H, B>(diff: &IpvsDiff, ipvs: &mut H, addresses: &mut B) -> ApplyOutcome
where
    H: IpvsHandle + ?Sized,
    B: AddressBinder + ?Sized,
{
    let mut out = ApplyOutcome::default();
    let record = |out: &mut ApplyOutcome, action: String, r: crate::Result<()>| match r {
        Ok(()) => {
            out.applied += 1;
            true
        }
        Err(error) => {
            out.failures.push(ApplyFailure { action, error });
            false
        }
    };
    if !diff.bind.is_empty() {
        let ok = record(
            &mut out,
            format!("ensure device {}", diff.device),
            addresses.ensure_device(),
        );
        if ok {
            for a in &diff.bind {
                record(
                    &mut out,
                    format!("bind {a} dev {}", diff.device),
                    addresses.bind(*a),
                );
            }
        } else {
            out.skipped += diff.bind.len();
        }
    }
    let mut failed: BTreeSet<ServiceKey> = BTreeSet::new();
    for op in &diff.ops {
        let key = op.service().key();
        if failed.contains(&key) && !matches!(op, IpvsOp::DeleteService(_)) {
            out.skipped += 1;
            continue;
        }
        let r = match op {
            IpvsOp::AddService(s) => ipvs.add_service(s),
            IpvsOp::UpdateService(s) => ipvs.update_service(s),
            IpvsOp::DeleteService(s) => ipvs.delete_service(s),
            IpvsOp::AddDestination(s, d) => ipvs.add_destination(s, d),
            IpvsOp::UpdateDestination(s, d) | IpvsOp::DrainDestination(s, d) => {
                ipvs.update_destination(s, d)
            }
            IpvsOp::DeleteDestination(s, d) => ipvs.delete_destination(s, d),
        };
        let ok = record(&mut out, op.to_string(), r);
        if !ok && matches!(op, IpvsOp::AddService(_)) {
            failed.insert(key);
        }
    }
    for a in &diff.unbind {
        record(
            &mut out,
            format!("unbind {a} dev {}", diff.device),
            addresses.unbind(*a),
        );
    }
    out
}
