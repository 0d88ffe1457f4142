//! The dummy interface side effect: every virtual address must be local for IPVS
//! (which hooks LOCAL_IN) to see its packets, so kube-proxy binds them to a down
//! dummy device, `kube-ipvs0`. A trait, an implementation over the `ip` command, and
//! an in-memory fake.

use std::collections::BTreeSet;
use std::net::IpAddr;

use crate::ipvs::ipset::{RunError, run};
use crate::{Error, Result};

/// Binding addresses to the dummy device (kube-proxy's `NetLinkHandle`).
pub trait AddressBinder {
    /// Create the device if it does not exist (`ip link add NAME type dummy`).
    fn ensure_device(&mut self) -> Result<()>;
    /// The addresses on the device (`ip addr show dev NAME`).
    fn bound_addresses(&mut self) -> Result<Vec<IpAddr>>;
    /// Bind an address as /32 or /128; binding a bound one succeeds.
    fn bind(&mut self, address: IpAddr) -> Result<()>;
    /// Remove an address; removing an absent one succeeds.
    fn unbind(&mut self, address: IpAddr) -> Result<()>;
    /// Delete the device if it exists (kube-proxy's cleanup).
    fn delete_device(&mut self) -> Result<()>;
}

/// The kind of link [`IpCommandBinder`] creates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LinkKind {
    /// `type dummy`, as kube-proxy (needs the kernel's `dummy` driver, CONFIG_DUMMY).
    #[default]
    Dummy,
    /// `type bridge` with `arp off`: a stand-in for kernels without the dummy driver. A
    /// bridge without ports, left down and made `NOARP` like a dummy device, holds
    /// local addresses the same way: IPv4 ones at once, IPv6 ones too because the
    /// kernel skips duplicate address detection on `NOARP` links (on an ARP-capable
    /// down link an IPv6 address would stay tentative and never become local).
    Bridge,
}

impl LinkKind {
    /// The `ip link add ... type` word.
    pub fn as_str(self) -> &'static str {
        match self {
            LinkKind::Dummy => "dummy",
            LinkKind::Bridge => "bridge",
        }
    }
}

/// The real [`AddressBinder`]: runs `ip` (`ip -n NETNS ...` for a named namespace).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpCommandBinder {
    device: String,
    netns: Option<String>,
    kind: LinkKind,
}

impl IpCommandBinder {
    /// A binder for `device` (`kube-ipvs0`) in the current namespace, creating a dummy
    /// device.
    pub fn new(device: impl Into<String>) -> Self {
        Self {
            device: device.into(),
            netns: None,
            kind: LinkKind::Dummy,
        }
    }

    /// Work in the named network namespace (a name under `/run/netns`, as `ip -n`
    /// takes it).
    #[must_use]
    pub fn netns(mut self, name: impl Into<String>) -> Self {
        self.netns = Some(name.into());
        self
    }

    /// Create this kind of link.
    #[must_use]
    pub fn link_kind(mut self, kind: LinkKind) -> Self {
        self.kind = kind;
        self
    }

    /// The device name.
    pub fn device(&self) -> &str {
        &self.device
    }

    fn argv(&self, args: &[&str]) -> Vec<String> {
        let mut out = vec!["ip".to_owned()];
        if let Some(ns) = &self.netns {
            out.push("-n".into());
            out.push(ns.clone());
        }
        out.extend(args.iter().map(|s| (*s).to_owned()));
        out
    }

    fn ip(&self, args: &[&str]) -> Result<String> {
        let argv = self.argv(args);
        match run(&argv, None) {
            Ok(out) => Ok(out),
            Err(RunError::NotFound(_)) => Err(Error::Unsupported(
                "the `ip` command is not installed (Debian package `iproute2`)".into(),
            )),
            Err(RunError::Failed(e)) => Err(e),
        }
    }

    fn exists(&self) -> Result<bool> {
        match self.ip(&["link", "show", "dev", &self.device]) {
            Ok(_) => Ok(true),
            Err(Error::Command { stderr, .. }) if stderr.contains("does not exist") => Ok(false),
            Err(e) => Err(e),
        }
    }
}

fn prefix(address: &IpAddr) -> String {
    match address {
        IpAddr::V4(_) => format!("{address}/32"),
        IpAddr::V6(_) => format!("{address}/128"),
    }
}

fn stderr_has(e: &Error, needles: &[&str]) -> bool {
    matches!(e, Error::Command { stderr, .. } if needles.iter().any(|n| stderr.contains(n)))
}

impl AddressBinder for IpCommandBinder {
    fn ensure_device(&mut self) -> Result<()> {
        if self.exists()? {
            return Ok(());
        }
        let kind = self.kind.as_str();
        match self.ip(&["link", "add", &self.device, "type", kind]) {
            Ok(_) if self.kind == LinkKind::Bridge => self
                .ip(&["link", "set", &self.device, "arp", "off"])
                .map(|_| ()),
            Ok(_) => Ok(()),
            Err(e) if stderr_has(&e, &["Unknown device type"]) => {
                let stderr = match &e {
                    Error::Command { stderr, .. } => stderr.clone(),
                    _ => String::new(),
                };
                Err(Error::Unsupported(format!(
                    "the kernel has no {kind} network device driver{}: `{}` said {stderr:?}",
                    if self.kind == LinkKind::Dummy {
                        " (CONFIG_DUMMY)"
                    } else {
                        ""
                    },
                    self.argv(&["link", "add", &self.device, "type", kind])
                        .join(" ")
                )))
            }
            // Made meanwhile by someone else: fine.
            Err(e) if stderr_has(&e, &["File exists"]) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn bound_addresses(&mut self) -> Result<Vec<IpAddr>> {
        let out = self.ip(&["-j", "addr", "show", "dev", &self.device])?;
        parse_addresses(&out).map_err(|reason| {
            Error::parse(
                format!("ip -j addr show dev {}", self.device),
                1,
                out.trim(),
                reason,
            )
        })
    }

    fn bind(&mut self, address: IpAddr) -> Result<()> {
        match self.ip(&["addr", "add", &prefix(&address), "dev", &self.device]) {
            Ok(_) => Ok(()),
            Err(e) if stderr_has(&e, &["File exists", "Address already assigned"]) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn unbind(&mut self, address: IpAddr) -> Result<()> {
        match self.ip(&["addr", "del", &prefix(&address), "dev", &self.device]) {
            Ok(_) => Ok(()),
            Err(e)
                if stderr_has(
                    &e,
                    &["Cannot assign requested address", "Address not found"],
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    fn delete_device(&mut self) -> Result<()> {
        if !self.exists()? {
            return Ok(());
        }
        self.ip(&["link", "del", &self.device]).map(|_| ())
    }
}

/// The addresses in `ip -j addr show` output (`[{"addr_info":[{"local":"10.0.0.1"}]}]`).
pub fn parse_addresses(json: &str) -> std::result::Result<Vec<IpAddr>, String> {
    let v: serde_json::Value =
        serde_json::from_str(json.trim()).map_err(|e| format!("not JSON: {e}"))?;
    let links = v.as_array().ok_or("not a JSON array of links")?;
    let mut out = Vec::new();
    for link in links {
        for info in link
            .get("addr_info")
            .and_then(|a| a.as_array())
            .into_iter()
            .flatten()
        {
            if let Some(local) = info.get("local").and_then(|l| l.as_str()) {
                out.push(
                    local
                        .parse()
                        .map_err(|_| format!("{local:?} is not an IP address"))?,
                );
            }
        }
    }
    Ok(out)
}

/// An in-memory [`AddressBinder`] that records every call and can be told to fail one.
#[derive(Debug, Clone, Default)]
pub struct FakeBinder {
    device: bool,
    addresses: BTreeSet<IpAddr>,
    calls: Vec<String>,
    fail_at: BTreeSet<usize>,
}

impl FakeBinder {
    /// No device, no address.
    pub fn new() -> Self {
        Self::default()
    }

    /// Make the `n`th call (1-based) fail.
    pub fn fail_call(&mut self, n: usize) {
        self.fail_at.insert(n);
    }

    /// The calls so far.
    pub fn calls(&self) -> &[String] {
        &self.calls
    }

    /// Whether the device exists.
    pub fn has_device(&self) -> bool {
        self.device
    }

    /// The bound addresses, sorted.
    pub fn addresses(&self) -> Vec<IpAddr> {
        self.addresses.iter().copied().collect()
    }

    fn call(&mut self, what: String) -> Result<()> {
        self.calls.push(what.clone());
        if self.fail_at.remove(&self.calls.len()) {
            return Err(Error::Command {
                argv: vec!["fake".into(), what],
                status: "exit status: 2".into(),
                stderr: "injected by FakeBinder".into(),
                context: Vec::new(),
            });
        }
        Ok(())
    }

    fn need_device(&self) -> Result<()> {
        if self.device {
            Ok(())
        } else {
            Err(Error::Command {
                argv: vec!["fake".into()],
                status: "exit status: 1".into(),
                stderr: "Device does not exist".into(),
                context: Vec::new(),
            })
        }
    }
}

impl AddressBinder for FakeBinder {
    fn ensure_device(&mut self) -> Result<()> {
        self.call("ensure_device".into())?;
        self.device = true;
        Ok(())
    }

    fn bound_addresses(&mut self) -> Result<Vec<IpAddr>> {
        self.call("bound_addresses".into())?;
        if !self.device {
            return Ok(Vec::new());
        }
        Ok(self.addresses())
    }

    fn bind(&mut self, address: IpAddr) -> Result<()> {
        self.call(format!("bind {address}"))?;
        self.need_device()?;
        self.addresses.insert(address);
        Ok(())
    }

    fn unbind(&mut self, address: IpAddr) -> Result<()> {
        self.call(format!("unbind {address}"))?;
        self.need_device()?;
        self.addresses.remove(&address);
        Ok(())
    }

    fn delete_device(&mut self) -> Result<()> {
        self.call("delete_device".into())?;
        self.device = false;
        self.addresses.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ip_json() {
        let json = r#"[{"ifindex":2,"ifname":"kube-ipvs0","addr_info":[
            {"family":"inet","local":"10.96.0.1","prefixlen":32},
            {"family":"inet6","local":"fd00::1","prefixlen":128}]}]"#;
        assert_eq!(
            parse_addresses(json).unwrap(),
            vec![
                "10.96.0.1".parse::<IpAddr>().unwrap(),
                "fd00::1".parse().unwrap()
            ]
        );
        assert_eq!(parse_addresses("[]").unwrap(), Vec::<IpAddr>::new());
        assert!(parse_addresses("{}").is_err());
    }

    #[test]
    fn argv_names_the_namespace() {
        let b = IpCommandBinder::new("kube-ipvs0").netns("ns1");
        assert_eq!(
            b.argv(&["link", "show"]),
            ["ip", "-n", "ns1", "link", "show"]
        );
    }
}
