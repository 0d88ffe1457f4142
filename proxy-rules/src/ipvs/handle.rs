//! The IPVS side effect: a small trait, a real implementation over a generic netlink
//! socket, and an in-memory fake with fault injection.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use netlink_sys::{Socket, SocketAddr};

use crate::ipvs::IpvsTimeouts;
use crate::ipvs::netlink::{self as wire, IpvsCommand, Reply};
use crate::ipvs::service::{Destination, RealServer, ServiceKey, VirtualServer};
use crate::{Error, Result};

/// What IPVS mode does to the kernel's IPVS table (kube-proxy's `utilipvs.Interface`).
pub trait IpvsHandle {
    /// Create a virtual server (`ipvsadm -A`).
    fn add_service(&mut self, service: &VirtualServer) -> Result<()>;
    /// Change a virtual server's scheduler, flags, timeout, netmask (`ipvsadm -E`).
    fn update_service(&mut self, service: &VirtualServer) -> Result<()>;
    /// Delete a virtual server and its real servers (`ipvsadm -D`).
    fn delete_service(&mut self, service: &VirtualServer) -> Result<()>;
    /// Add a real server to a virtual server (`ipvsadm -a`).
    fn add_destination(&mut self, service: &VirtualServer, dest: &RealServer) -> Result<()>;
    /// Change a real server's weight or settings (`ipvsadm -e`).
    fn update_destination(&mut self, service: &VirtualServer, dest: &RealServer) -> Result<()>;
    /// Delete a real server (`ipvsadm -d`).
    fn delete_destination(&mut self, service: &VirtualServer, dest: &RealServer) -> Result<()>;
    /// Every address/port virtual server (`ipvsadm -Ln`).
    fn list_services(&mut self) -> Result<Vec<VirtualServer>>;
    /// A virtual server's real servers with their connection counters.
    fn list_destinations(&mut self, service: &VirtualServer) -> Result<Vec<Destination>>;
    /// Delete every virtual server (`ipvsadm -C`).
    fn flush(&mut self) -> Result<()>;
    /// Set the connection timeouts (`ipvsadm --set TCP TCPFIN UDP`; unset ones stay).
    fn set_timeouts(&mut self, timeouts: &IpvsTimeouts) -> Result<()>;
}

/// Set the timeouts when any is configured (kube-proxy does it once at start).
pub fn configure_timeouts<H: IpvsHandle + ?Sized>(
    handle: &mut H,
    timeouts: &IpvsTimeouts,
) -> Result<()> {
    if timeouts.is_empty() {
        return Ok(());
    }
    handle.set_timeouts(timeouts)
}

fn errno_text(errno: i32) -> String {
    let s = std::io::Error::from_raw_os_error(errno).to_string();
    // "No such file or directory (os error 2)" -> "No such file or directory".
    match s.find(" (os error") {
        Some(at) => s[..at].to_owned(),
        None => s,
    }
}

fn netlink_error(operation: &str, errno: i32, message: Option<String>) -> Error {
    let mut text = errno_text(errno);
    if let Some(m) = message {
        text.push_str(": ");
        text.push_str(&m);
    }
    Error::Netlink {
        operation: operation.to_owned(),
        errno,
        message: text,
    }
}

fn io_netlink_error(operation: &str, e: &std::io::Error) -> Error {
    Error::Netlink {
        operation: operation.to_owned(),
        errno: e.raw_os_error().unwrap_or(0),
        message: e.to_string(),
    }
}

fn decode_error(operation: &str, e: &wire::DecodeError) -> Error {
    Error::Netlink {
        operation: operation.to_owned(),
        errno: 0,
        message: format!("bad reply from the kernel: {e}"),
    }
}

/// A generic netlink socket: send one request, collect the data messages of its reply.
struct GenlSocket {
    socket: Socket,
    seq: u32,
}

impl GenlSocket {
    fn open(netns: Option<&Path>) -> Result<Self> {
        let socket = crate::netns::within(netns, "opening the netlink socket", new_socket)?;
        Ok(Self { socket, seq: 0 })
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1).max(1);
        self.seq
    }

    /// Send `msg` (whose sequence number is `seq`) and read until its ack, error or
    /// end of dump; the data messages' attribute bytes.
    fn transact(&mut self, operation: &str, seq: u32, msg: &[u8]) -> Result<Vec<Vec<u8>>> {
        self.socket
            .send_to(msg, &SocketAddr::new(0, 0), 0)
            .map_err(|e| io_netlink_error(operation, &e))?;
        let mut data = Vec::new();
        loop {
            let (buf, _) = self
                .socket
                .recv_from_full()
                .map_err(|e| io_netlink_error(operation, &e))?;
            let msgs = wire::split_messages(&buf).map_err(|e| decode_error(operation, &e))?;
            for m in &msgs {
                if m.header.seq != seq {
                    continue;
                }
                match wire::classify(m).map_err(|e| decode_error(operation, &e))? {
                    Reply::Ack | Reply::Done => return Ok(data),
                    Reply::Error { errno, message } => {
                        return Err(netlink_error(operation, errno, message));
                    }
                    Reply::Data { attrs, .. } => data.push(attrs.to_vec()),
                    Reply::Noop => {}
                }
            }
        }
    }
}

fn new_socket() -> Result<Socket> {
    let mut socket = Socket::new(wire::NETLINK_GENERIC)
        .map_err(|e| Error::io("opening a NETLINK_GENERIC socket", e))?;
    socket
        .bind_auto()
        .map_err(|e| Error::io("binding a NETLINK_GENERIC socket", e))?;
    // Ask for the kernel's error text with errors; older kernels ignore it.
    let _ = socket.set_ext_ack(true);
    Ok(socket)
}

/// Resolve a generic netlink family's id by name (`CTRL_CMD_GETFAMILY`), in the named
/// network namespace (a path such as `/run/netns/NAME`) or the current one. A family
/// the kernel does not know is an [`Error::Netlink`] with errno 2 (ENOENT).
pub fn resolve_family(netns: Option<&Path>, name: &str) -> Result<u16> {
    let mut sock = GenlSocket::open(netns)?;
    resolve_on(&mut sock, name)
}

fn resolve_on(sock: &mut GenlSocket, name: &str) -> Result<u16> {
    let seq = sock.next_seq();
    let operation = format!("CTRL_CMD_GETFAMILY {name:?}");
    let replies = sock.transact(&operation, seq, &wire::encode_get_family(name, seq))?;
    let first = replies.first().ok_or_else(|| Error::Netlink {
        operation: operation.clone(),
        errno: 0,
        message: "the controller acknowledged without a reply".into(),
    })?;
    wire::decode_family_id(first).map_err(|e| decode_error(&operation, &e))
}

/// The clear error for a kernel without IPVS.
fn no_ipvs(netns: Option<&Path>) -> Error {
    let place = netns
        .map(|p| format!(" in network namespace {}", p.display()))
        .unwrap_or_default();
    Error::Unsupported(format!(
        "the kernel has no IPVS: the generic netlink family \"IPVS\" is not registered{place} \
         (the ip_vs module is not loaded, or the kernel was built without CONFIG_IP_VS); \
         kube-proxy's IPVS mode cannot run on this kernel"
    ))
}

/// The real [`IpvsHandle`]: IPVS generic netlink over a `NETLINK_GENERIC` socket,
/// optionally made inside another network namespace (IPVS tables are per namespace).
pub struct NetlinkIpvs {
    sock: GenlSocket,
    family: u16,
    netns: Option<PathBuf>,
}

impl std::fmt::Debug for NetlinkIpvs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetlinkIpvs")
            .field("family", &self.family)
            .field("netns", &self.netns)
            .finish_non_exhaustive()
    }
}

impl NetlinkIpvs {
    /// Open a handle in the current network namespace, resolving the IPVS family.
    ///
    /// On a kernel without IPVS this is [`Error::Unsupported`] saying so (the kernel
    /// loads `ip_vs` by itself on the lookup when it is built as a module).
    pub fn open() -> Result<Self> {
        Self::open_in(None)
    }

    /// Open a handle whose socket lives in the network namespace at `netns` (for
    /// example `/run/netns/NAME`), or the current one.
    pub fn open_in(netns: Option<&Path>) -> Result<Self> {
        let mut sock = GenlSocket::open(netns)?;
        let family = match resolve_on(&mut sock, wire::IPVS_GENL_NAME) {
            Ok(id) => id,
            Err(Error::Netlink { errno: 2, .. }) => return Err(no_ipvs(netns)),
            Err(e) => return Err(e),
        };
        Ok(Self {
            sock,
            family,
            netns: netns.map(Path::to_path_buf),
        })
    }

    /// A handle that sends to a known family id without resolving it (for a caller
    /// that resolved it already, or a test of the error path).
    pub fn with_family_id(netns: Option<&Path>, family: u16) -> Result<Self> {
        Ok(Self {
            sock: GenlSocket::open(netns)?,
            family,
            netns: netns.map(Path::to_path_buf),
        })
    }

    /// The IPVS family id in use.
    pub fn family_id(&self) -> u16 {
        self.family
    }

    fn service_cmd(&mut self, cmd: IpvsCommand, svc: &VirtualServer) -> Result<()> {
        let seq = self.sock.next_seq();
        let msg = wire::encode_service(self.family, cmd, seq, svc);
        self.sock.transact(&format!("{cmd} {svc}"), seq, &msg)?;
        Ok(())
    }

    fn dest_cmd(&mut self, cmd: IpvsCommand, svc: &VirtualServer, dest: &RealServer) -> Result<()> {
        let seq = self.sock.next_seq();
        let msg = wire::encode_destination(self.family, cmd, seq, svc, dest);
        self.sock
            .transact(&format!("{cmd} {svc} -> {dest}"), seq, &msg)?;
        Ok(())
    }
}

impl IpvsHandle for NetlinkIpvs {
    fn add_service(&mut self, service: &VirtualServer) -> Result<()> {
        self.service_cmd(IpvsCommand::NewService, service)
    }

    fn update_service(&mut self, service: &VirtualServer) -> Result<()> {
        self.service_cmd(IpvsCommand::SetService, service)
    }

    fn delete_service(&mut self, service: &VirtualServer) -> Result<()> {
        self.service_cmd(IpvsCommand::DelService, service)
    }

    fn add_destination(&mut self, service: &VirtualServer, dest: &RealServer) -> Result<()> {
        self.dest_cmd(IpvsCommand::NewDest, service, dest)
    }

    fn update_destination(&mut self, service: &VirtualServer, dest: &RealServer) -> Result<()> {
        self.dest_cmd(IpvsCommand::SetDest, service, dest)
    }

    fn delete_destination(&mut self, service: &VirtualServer, dest: &RealServer) -> Result<()> {
        self.dest_cmd(IpvsCommand::DelDest, service, dest)
    }

    fn list_services(&mut self) -> Result<Vec<VirtualServer>> {
        let seq = self.sock.next_seq();
        let op = "IPVS_CMD_GET_SERVICE (dump)";
        let replies = self
            .sock
            .transact(op, seq, &wire::encode_dump_services(self.family, seq))?;
        let mut out = Vec::new();
        for r in &replies {
            if let Some(s) = wire::decode_service(r).map_err(|e| decode_error(op, &e))? {
                out.push(s);
            }
        }
        Ok(out)
    }

    fn list_destinations(&mut self, service: &VirtualServer) -> Result<Vec<Destination>> {
        let seq = self.sock.next_seq();
        let op = format!("IPVS_CMD_GET_DEST {service} (dump)");
        let replies = self.sock.transact(
            &op,
            seq,
            &wire::encode_dump_destinations(self.family, seq, service),
        )?;
        replies
            .iter()
            .map(|r| wire::decode_destination(r).map_err(|e| decode_error(&op, &e)))
            .collect()
    }

    fn flush(&mut self) -> Result<()> {
        let seq = self.sock.next_seq();
        self.sock
            .transact("IPVS_CMD_FLUSH", seq, &wire::encode_flush(self.family, seq))?;
        Ok(())
    }

    fn set_timeouts(&mut self, timeouts: &IpvsTimeouts) -> Result<()> {
        let seq = self.sock.next_seq();
        let (tcp, fin, udp) = timeouts.seconds();
        self.sock.transact(
            "IPVS_CMD_SET_CONFIG",
            seq,
            &wire::encode_set_timeouts(self.family, seq, tcp, fin, udp),
        )?;
        Ok(())
    }
}

/// An in-memory [`IpvsHandle`] that behaves like the kernel's table (the same errnos:
/// `EEXIST` for a duplicate, `ESRCH` for a missing service, `ENOENT` for a missing
/// destination), records every call and can be told to fail a given call.
#[derive(Debug, Clone, Default)]
pub struct FakeIpvs {
    services: BTreeMap<ServiceKey, FakeEntry>,
    calls: Vec<String>,
    fail_at: BTreeMap<usize, i32>,
    timeouts: Option<IpvsTimeouts>,
}

/// A fake virtual server with its real servers.
type FakeEntry = (VirtualServer, BTreeMap<(IpAddr, u16), Destination>);

/// `ENOENT`.
const ENOENT: i32 = 2;
/// `ESRCH`.
const ESRCH: i32 = 3;
/// `EEXIST`.
const EEXIST: i32 = 17;

impl FakeIpvs {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Make the `n`th call (1-based, counting every trait method call from the start)
    /// fail with `errno`, without changing the table.
    pub fn fail_call(&mut self, n: usize, errno: i32) {
        self.fail_at.insert(n, errno);
    }

    /// The calls so far, one line each (`add_service 10.96.0.1:443/tcp`).
    pub fn calls(&self) -> &[String] {
        &self.calls
    }

    /// The virtual servers held.
    pub fn services(&self) -> Vec<VirtualServer> {
        self.services.values().map(|(s, _)| s.clone()).collect()
    }

    /// The real servers of a virtual server.
    pub fn destinations(&self, key: &ServiceKey) -> Vec<Destination> {
        self.services
            .get(key)
            .map(|(_, d)| d.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Set a real server's connection counters (to play graceful termination).
    pub fn set_connections(
        &mut self,
        key: &ServiceKey,
        dest: (IpAddr, u16),
        active: u32,
        inactive: u32,
    ) {
        if let Some(d) = self
            .services
            .get_mut(key)
            .and_then(|(_, ds)| ds.get_mut(&dest))
        {
            d.active_connections = active;
            d.inactive_connections = inactive;
        }
    }

    /// The timeouts last set.
    pub fn timeouts(&self) -> Option<&IpvsTimeouts> {
        self.timeouts.as_ref()
    }

    fn call(&mut self, what: String) -> Result<()> {
        self.calls.push(what.clone());
        if let Some(errno) = self.fail_at.remove(&self.calls.len()) {
            return Err(netlink_error(
                &what,
                errno,
                Some("injected by FakeIpvs".into()),
            ));
        }
        Ok(())
    }

    fn service_mut(&mut self, op: &str, svc: &VirtualServer) -> Result<&mut FakeEntry> {
        self.services
            .get_mut(&svc.key())
            .ok_or_else(|| netlink_error(op, ESRCH, None))
    }
}

impl IpvsHandle for FakeIpvs {
    fn add_service(&mut self, service: &VirtualServer) -> Result<()> {
        let op = format!("add_service {service}");
        self.call(op.clone())?;
        if self.services.contains_key(&service.key()) {
            return Err(netlink_error(&op, EEXIST, None));
        }
        self.services
            .insert(service.key(), (service.clone(), BTreeMap::new()));
        Ok(())
    }

    fn update_service(&mut self, service: &VirtualServer) -> Result<()> {
        let op = format!("update_service {service}");
        self.call(op.clone())?;
        self.service_mut(&op, service)?.0 = service.clone();
        Ok(())
    }

    fn delete_service(&mut self, service: &VirtualServer) -> Result<()> {
        let op = format!("delete_service {service}");
        self.call(op.clone())?;
        self.services
            .remove(&service.key())
            .map(|_| ())
            .ok_or_else(|| netlink_error(&op, ESRCH, None))
    }

    fn add_destination(&mut self, service: &VirtualServer, dest: &RealServer) -> Result<()> {
        let op = format!("add_destination {service} -> {dest}");
        self.call(op.clone())?;
        let (_, dests) = self.service_mut(&op, service)?;
        if dests.contains_key(&dest.key()) {
            return Err(netlink_error(&op, EEXIST, None));
        }
        dests.insert(dest.key(), Destination::idle(dest.clone()));
        Ok(())
    }

    fn update_destination(&mut self, service: &VirtualServer, dest: &RealServer) -> Result<()> {
        let op = format!(
            "update_destination {service} -> {dest} weight {}",
            dest.weight
        );
        self.call(op.clone())?;
        let (_, dests) = self.service_mut(&op, service)?;
        let d = dests
            .get_mut(&dest.key())
            .ok_or_else(|| netlink_error(&op, ENOENT, None))?;
        d.server = dest.clone();
        Ok(())
    }

    fn delete_destination(&mut self, service: &VirtualServer, dest: &RealServer) -> Result<()> {
        let op = format!("delete_destination {service} -> {dest}");
        self.call(op.clone())?;
        let (_, dests) = self.service_mut(&op, service)?;
        dests
            .remove(&dest.key())
            .map(|_| ())
            .ok_or_else(|| netlink_error(&op, ENOENT, None))
    }

    fn list_services(&mut self) -> Result<Vec<VirtualServer>> {
        self.call("list_services".into())?;
        Ok(self.services())
    }

    fn list_destinations(&mut self, service: &VirtualServer) -> Result<Vec<Destination>> {
        let op = format!("list_destinations {service}");
        self.call(op.clone())?;
        Ok(self
            .service_mut(&op, service)?
            .1
            .values()
            .cloned()
            .collect())
    }

    fn flush(&mut self) -> Result<()> {
        self.call("flush".into())?;
        self.services.clear();
        Ok(())
    }

    fn set_timeouts(&mut self, timeouts: &IpvsTimeouts) -> Result<()> {
        self.call("set_timeouts".into())?;
        self.timeouts = Some(timeouts.clone());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Protocol;

    #[test]
    fn fake_behaves_like_the_kernel_table() {
        let mut f = FakeIpvs::new();
        let s = VirtualServer::new("10.96.0.1".parse().unwrap(), Protocol::Tcp, 443, "rr");
        let d = RealServer::masquerade("10.0.0.5".parse().unwrap(), 6443);
        f.add_service(&s).unwrap();
        let dup = f.add_service(&s).unwrap_err();
        assert!(matches!(dup, Error::Netlink { errno: 17, .. }), "{dup}");
        f.add_destination(&s, &d).unwrap();
        f.update_destination(&s, &d.with_weight(0)).unwrap();
        assert_eq!(f.destinations(&s.key())[0].server.weight, 0);
        f.delete_service(&s).unwrap();
        let missing = f.delete_destination(&s, &d).unwrap_err();
        assert!(
            matches!(missing, Error::Netlink { errno: 3, .. }),
            "{missing}"
        );
    }

    #[test]
    fn fake_fails_the_chosen_call_only() {
        let mut f = FakeIpvs::new();
        let s = VirtualServer::new("10.96.0.1".parse().unwrap(), Protocol::Tcp, 443, "rr");
        f.fail_call(2, 12);
        f.list_services().unwrap();
        let e = f.add_service(&s).unwrap_err();
        assert_eq!(
            e.to_string(),
            "netlink add_service 10.96.0.1:443/tcp: Cannot allocate memory: injected by FakeIpvs (errno 12)"
        );
        assert!(f.services().is_empty());
        f.add_service(&s).unwrap();
        assert_eq!(f.calls().len(), 3);
    }
}
