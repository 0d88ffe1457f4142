//! CNI results in every specification version, and conversion between them as libcni's
//! `pkg/types` (020, 040, 100 and the converter table) does.
//!
//! | Versions | Shape | Type |
//! |---|---|---|
//! | 0.1.0, 0.2.0 | `ip4`/`ip6` objects with their routes | [`Result020`] |
//! | 0.3.0, 0.3.1, 0.4.0 | `interfaces`, `ips` with `version`, `routes` | [`Result040`] |
//! | 1.0.0, 1.1.0 | as 0.4.0 without `ips[].version`, richer interfaces and routes | [`Result100`] |
//!
//! # Example
//!
//! ```
//! use cni_exec::result::VersionedResult;
//!
//! // A plugin that prints no cniVersion gets the configuration's version (libcni).
//! let out = br#"{"ips": [{"address": "10.244.0.5/24", "gateway": "10.244.0.1"}]}"#;
//! let result = VersionedResult::from_plugin_output(out, "1.0.0").unwrap();
//! assert_eq!(result.cni_version(), "1.0.0");
//!
//! let old = result.convert_to("0.2.0").unwrap();
//! let json = old.to_value();
//! assert_eq!(json["ip4"]["ip"], "10.244.0.5/24");
//! assert_eq!(json["ip4"]["gateway"], "10.244.0.1");
//! ```

use std::net::IpAddr;

/// Re-exported: the address type of results, so users match the version.
pub use ipnetwork::IpNetwork;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::parse_version;

/// An error while parsing, converting or validating a result.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ResultError {
    /// The bytes are not a JSON object of the expected shape.
    #[error("invalid cni result (version {version:?}): {detail}")]
    Json {
        /// The result version whose shape was expected (empty if not known yet).
        version: String,
        /// What the JSON parser said.
        detail: String,
    },
    /// The result's `cniVersion` is not one this crate knows.
    #[error("unsupported cni result version {version:?}")]
    UnsupportedVersion {
        /// The version.
        version: String,
    },
    /// No converter between the two versions (libcni's wording).
    #[error("no converter for CNI result version {from} to {to}")]
    NoConverter {
        /// The result's version.
        from: String,
        /// The version asked for.
        to: String,
    },
    /// Converting to 0.1.0/0.2.0 needs an IPv4 or IPv6 address.
    #[error("cannot convert cni result to {to}: no valid ip addresses")]
    NoAddresses {
        /// The version asked for.
        to: String,
    },
    /// An `ips[].interface` index does not point into `interfaces`.
    #[error("cni result ips[{ip}].interface is {index}, but there are {count} interfaces")]
    InterfaceIndex {
        /// The position in `ips`.
        ip: usize,
        /// The index it names.
        index: usize,
        /// How many interfaces there are.
        count: usize,
    },
}

/// The `dns` object of a result.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dns {
    /// Name servers, in priority order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    /// The local domain.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub domain: String,
    /// Search domains, in priority order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    /// Resolver options.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

impl Dns {
    /// Whether nothing is set (the object is then omitted).
    pub fn is_empty(&self) -> bool {
        self.nameservers.is_empty()
            && self.domain.is_empty()
            && self.search.is_empty()
            && self.options.is_empty()
    }
}

/// A route of a 0.3.0+ result (libcni's shared `types.Route`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// The destination.
    #[serde(with = "cidr")]
    pub dst: IpNetwork,
    /// The next hop; the default gateway if absent.
    #[serde(default, with = "opt_ip", skip_serializing_if = "Option::is_none")]
    pub gw: Option<IpAddr>,
    /// The route's MTU (1.1.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// The advertised MSS (1.1.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advmss: Option<u32>,
    /// The route's priority (1.1.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u32>,
    /// The routing table (1.1.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<u32>,
    /// The route scope (1.1.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<u32>,
}

impl Route {
    /// A route with only a destination and a next hop.
    pub fn new(dst: IpNetwork, gw: Option<IpAddr>) -> Self {
        Route {
            dst,
            gw,
            mtu: None,
            advmss: None,
            priority: None,
            table: None,
            scope: None,
        }
    }
}

/// An interface of a 1.0.0/1.1.0 result.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Interface {
    /// The interface name.
    pub name: String,
    /// The hardware address.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mac: String,
    /// The MTU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// The network namespace path for a container interface; empty for a host interface.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sandbox: String,
    /// A socket path for a userspace interface.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub socket_path: String,
    /// The PCI ID of a device interface.
    #[serde(default, rename = "pciID", skip_serializing_if = "String::is_empty")]
    pub pci_id: String,
}

/// An address of a 1.0.0/1.1.0 result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpConfig {
    /// Index into the result's `interfaces`; absent for IPAM results.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
    /// The address with its prefix length, e.g. `10.244.0.5/24`.
    #[serde(with = "cidr")]
    pub address: IpNetwork,
    /// The default gateway for this subnet.
    #[serde(default, with = "opt_ip", skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
}

/// A 1.0.0 or 1.1.0 result (libcni `types100.Result`; the types did not change in 1.1.0).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Result100 {
    /// The result's version.
    #[serde(default)]
    pub cni_version: String,
    /// The interfaces created.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<Interface>,
    /// The addresses assigned.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ips: Vec<IpConfig>,
    /// The routes created.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
    /// DNS settings.
    #[serde(default, skip_serializing_if = "Dns::is_empty")]
    pub dns: Dns,
}

/// An interface of a 0.3.x/0.4.0 result.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interface040 {
    /// The interface name.
    pub name: String,
    /// The hardware address.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mac: String,
    /// The network namespace path; empty for a host interface.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sandbox: String,
}

/// An address of a 0.3.x/0.4.0 result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpConfig040 {
    /// "4" or "6"; containerd's cache shows it may be "".
    #[serde(default)]
    pub version: String,
    /// Index into the result's `interfaces`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
    /// The address with its prefix length.
    #[serde(with = "cidr")]
    pub address: IpNetwork,
    /// The default gateway for this subnet.
    #[serde(default, with = "opt_ip", skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
}

/// A 0.3.0, 0.3.1 or 0.4.0 result (libcni `types040.Result`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Result040 {
    /// The result's version.
    #[serde(default)]
    pub cni_version: String,
    /// The interfaces created.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<Interface040>,
    /// The addresses assigned.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ips: Vec<IpConfig040>,
    /// The routes created (libcni shares the route type, so 1.1.0 fields pass through).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
    /// DNS settings.
    #[serde(default, skip_serializing_if = "Dns::is_empty")]
    pub dns: Dns,
}

/// A route of a 0.1.0/0.2.0 result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route020 {
    /// The destination.
    #[serde(with = "cidr")]
    pub dst: IpNetwork,
    /// The next hop.
    #[serde(default, with = "opt_ip", skip_serializing_if = "Option::is_none")]
    pub gw: Option<IpAddr>,
}

/// The `ip4` or `ip6` object of a 0.1.0/0.2.0 result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpConfig020 {
    /// The address with its prefix length.
    #[serde(with = "cidr")]
    pub ip: IpNetwork,
    /// The default gateway.
    #[serde(default, with = "opt_ip", skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    /// Routes of this family.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route020>,
}

/// A 0.1.0 or 0.2.0 result (libcni `types020.Result`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Result020 {
    /// The result's version.
    #[serde(default)]
    pub cni_version: String,
    /// The IPv4 configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip4: Option<IpConfig020>,
    /// The IPv6 configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip6: Option<IpConfig020>,
    /// DNS settings.
    #[serde(default, skip_serializing_if = "Dns::is_empty")]
    pub dns: Dns,
}

/// A result of any version, in the shape its `cniVersion` defines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionedResult {
    /// 0.1.0 or 0.2.0.
    V020(Result020),
    /// 0.3.0, 0.3.1 or 0.4.0.
    V040(Result040),
    /// 1.0.0 or 1.1.0.
    V100(Result100),
}

/// The result shape family of a version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    V020,
    V040,
    V100,
}

fn family(version: &str) -> Option<Family> {
    match version {
        "0.1.0" | "0.2.0" => Some(Family::V020),
        "0.3.0" | "0.3.1" | "0.4.0" => Some(Family::V040),
        "1.0.0" | "1.1.0" => Some(Family::V100),
        _ => None,
    }
}

impl VersionedResult {
    /// Parses a result from its JSON, in the shape its own `cniVersion` names. A missing or
    /// empty `cniVersion` means 0.1.0 (libcni). Use [`from_plugin_output`](Self::from_plugin_output)
    /// for a plugin's stdout.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, ResultError> {
        let value: Value = serde_json::from_slice(bytes).map_err(|e| ResultError::Json {
            version: String::new(),
            detail: e.to_string(),
        })?;
        Self::from_value(value)
    }

    /// Parses a plugin's stdout as libcni does: `null` is an empty result; a `cniVersion`
    /// that is missing, empty or not a string is taken to be `config_version`
    /// (`fixupResultVersion`; an empty `config_version` then means 0.1.0).
    pub fn from_plugin_output(stdout: &[u8], config_version: &str) -> Result<Self, ResultError> {
        let mut value: Value = serde_json::from_slice(stdout).map_err(|e| ResultError::Json {
            version: config_version.to_owned(),
            detail: e.to_string(),
        })?;
        if value.is_null() {
            value = Value::Object(serde_json::Map::new());
        }
        if let Value::Object(map) = &mut value {
            // As libcni: only a non-empty string counts as a version.
            let missing = !matches!(map.get("cniVersion"), Some(Value::String(s)) if !s.is_empty());
            if missing {
                map.insert("cniVersion".into(), config_version.into());
            }
        }
        Self::from_value(value)
    }

    /// Parses a result from a JSON value (see [`from_slice`](Self::from_slice)).
    pub fn from_value(mut value: Value) -> Result<Self, ResultError> {
        let Value::Object(map) = &mut value else {
            return Err(ResultError::Json {
                version: String::new(),
                detail: "not a json object".into(),
            });
        };
        let version = match map.get("cniVersion") {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(other) => {
                return Err(ResultError::Json {
                    version: String::new(),
                    detail: format!("cniVersion is not a string: {other}"),
                });
            }
        };
        let version = if version.is_empty() {
            map.insert("cniVersion".into(), "0.1.0".into());
            "0.1.0".to_owned()
        } else {
            version
        };
        let json_err = |e: serde_json::Error| ResultError::Json {
            version: version.clone(),
            detail: e.to_string(),
        };
        match family(&version) {
            Some(Family::V020) => Ok(Self::V020(serde_json::from_value(value).map_err(json_err)?)),
            Some(Family::V040) => Ok(Self::V040(serde_json::from_value(value).map_err(json_err)?)),
            Some(Family::V100) => Ok(Self::V100(serde_json::from_value(value).map_err(json_err)?)),
            None => Err(ResultError::UnsupportedVersion { version }),
        }
    }

    /// The result's `cniVersion`.
    pub fn cni_version(&self) -> &str {
        match self {
            Self::V020(r) => &r.cni_version,
            Self::V040(r) => &r.cni_version,
            Self::V100(r) => &r.cni_version,
        }
    }

    /// The result as JSON, in its version's shape.
    pub fn to_value(&self) -> Value {
        // Serializing these types cannot fail: all keys are strings.
        match self {
            Self::V020(r) => serde_json::to_value(r),
            Self::V040(r) => serde_json::to_value(r),
            Self::V100(r) => serde_json::to_value(r),
        }
        .unwrap_or(Value::Null)
    }

    /// The result as JSON bytes, in its version's shape.
    pub fn to_vec(&self) -> Vec<u8> {
        serde_json::to_vec(&self.to_value()).unwrap_or_default()
    }

    /// Converts the result to another version, as libcni's converter table:
    /// 0.2 ↔ 0.4 ↔ 1.x, where 1.x → 0.2 goes through 0.4.0 and 0.4.0 → 1.x drops
    /// `ips[].version`. A version outside [`KNOWN_VERSIONS`](crate::config::KNOWN_VERSIONS)
    /// is a [`ResultError::NoConverter`].
    ///
    /// One difference from libcni: going down to 0.2.0, an address whose `version` is
    /// neither "4" nor "6" (containerd's cache holds `""`) takes its family from the address
    /// instead of being skipped.
    pub fn convert_to(&self, version: &str) -> Result<Self, ResultError> {
        let from = self.cni_version();
        let no_converter = || ResultError::NoConverter {
            from: from.to_owned(),
            to: version.to_owned(),
        };
        let (Some(_), Some(target)) = (family(from), family(version)) else {
            return Err(no_converter());
        };
        let to = version.to_owned();
        Ok(match (self, target) {
            (Self::V020(r), Family::V020) => Self::V020(Result020 {
                cni_version: to,
                ..r.clone()
            }),
            (Self::V040(r), Family::V040) => Self::V040(Result040 {
                cni_version: to,
                ..r.clone()
            }),
            (Self::V100(r), Family::V100) => Self::V100(Result100 {
                cni_version: to,
                ..r.clone()
            }),
            (Self::V020(r), Family::V040) => Self::V040(from_020(r, to)),
            (Self::V020(r), Family::V100) => Self::V100(from_040(&from_020(r, to.clone()), to)),
            (Self::V040(r), Family::V100) => Self::V100(from_040(r, to)),
            (Self::V040(r), Family::V020) => Self::V020(to_020(r, to)?),
            (Self::V100(r), Family::V040) => Self::V040(to_040(r, to)),
            (Self::V100(r), Family::V020) => Self::V020(to_020(&to_040(r, "0.4.0".into()), to)?),
        })
    }

    /// The result as a 1.1.0 [`Result100`] (converting if needed), the richest shape.
    pub fn to_current(&self) -> Result<Result100, ResultError> {
        match self.convert_to(crate::config::CURRENT_VERSION)? {
            Self::V100(r) => Ok(r),
            _ => Err(ResultError::NoConverter {
                from: self.cni_version().to_owned(),
                to: crate::config::CURRENT_VERSION.to_owned(),
            }),
        }
    }

    /// Checks that every `ips[].interface` index points into `interfaces` (an index equal
    /// to the number of interfaces is rejected, unlike go-cni's off-by-one).
    pub fn validate(&self) -> Result<(), ResultError> {
        let (count, indexes): (usize, Vec<Option<usize>>) = match self {
            Self::V020(_) => return Ok(()),
            Self::V040(r) => (
                r.interfaces.len(),
                r.ips.iter().map(|i| i.interface).collect(),
            ),
            Self::V100(r) => (
                r.interfaces.len(),
                r.ips.iter().map(|i| i.interface).collect(),
            ),
        };
        for (ip, index) in indexes.into_iter().enumerate() {
            if let Some(index) = index
                && index >= count
            {
                return Err(ResultError::InterfaceIndex { ip, index, count });
            }
        }
        Ok(())
    }

    /// Whether the result's version is at least `version` (both must parse).
    pub fn is_at_least(&self, version: &str) -> bool {
        match (parse_version(self.cni_version()), parse_version(version)) {
            (Ok(a), Ok(b)) => a >= b,
            _ => false,
        }
    }
}

impl From<Result100> for VersionedResult {
    fn from(r: Result100) -> Self {
        Self::V100(r)
    }
}

impl From<Result040> for VersionedResult {
    fn from(r: Result040) -> Self {
        Self::V040(r)
    }
}

impl From<Result020> for VersionedResult {
    fn from(r: Result020) -> Self {
        Self::V020(r)
    }
}

/// Whether an address is IPv4 as Go's `IP.To4() != nil` decides (IPv4-mapped IPv6 counts).
fn is_ipv4(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(_) => true,
        IpAddr::V6(v6) => v6.to_ipv4_mapped().is_some(),
    }
}

fn from_020(r: &Result020, to: String) -> Result040 {
    let mut out = Result040 {
        cni_version: to,
        dns: r.dns.clone(),
        ..Result040::default()
    };
    for (conf, v) in [(&r.ip4, "4"), (&r.ip6, "6")] {
        if let Some(conf) = conf {
            out.ips.push(IpConfig040 {
                version: v.to_owned(),
                interface: None,
                address: conf.ip,
                gateway: conf.gateway,
            });
            out.routes
                .extend(conf.routes.iter().map(|rt| Route::new(rt.dst, rt.gw)));
        }
    }
    out
}

fn from_040(r: &Result040, to: String) -> Result100 {
    Result100 {
        cni_version: to,
        interfaces: r
            .interfaces
            .iter()
            .map(|i| Interface {
                name: i.name.clone(),
                mac: i.mac.clone(),
                sandbox: i.sandbox.clone(),
                ..Interface::default()
            })
            .collect(),
        ips: r
            .ips
            .iter()
            .map(|i| IpConfig {
                interface: i.interface,
                address: i.address,
                gateway: i.gateway,
            })
            .collect(),
        routes: r.routes.clone(),
        dns: r.dns.clone(),
    }
}

fn to_040(r: &Result100, to: String) -> Result040 {
    Result040 {
        cni_version: to,
        interfaces: r
            .interfaces
            .iter()
            .map(|i| Interface040 {
                name: i.name.clone(),
                mac: i.mac.clone(),
                sandbox: i.sandbox.clone(),
            })
            .collect(),
        ips: r
            .ips
            .iter()
            .map(|i| IpConfig040 {
                version: if is_ipv4(i.address.ip()) { "4" } else { "6" }.to_owned(),
                interface: i.interface,
                address: i.address,
                gateway: i.gateway,
            })
            .collect(),
        routes: r.routes.clone(),
        dns: r.dns.clone(),
    }
}

fn to_020(r: &Result040, to: String) -> Result<Result020, ResultError> {
    let mut out = Result020 {
        cni_version: to.clone(),
        dns: r.dns.clone(),
        ..Result020::default()
    };
    for ip in &r.ips {
        let v4 = match ip.version.as_str() {
            "4" => true,
            "6" => false,
            _ => is_ipv4(ip.address.ip()),
        };
        let slot = if v4 { &mut out.ip4 } else { &mut out.ip6 };
        if slot.is_none() {
            *slot = Some(IpConfig020 {
                ip: ip.address,
                gateway: ip.gateway,
                routes: Vec::new(),
            });
        }
        if out.ip4.is_some() && out.ip6.is_some() {
            break;
        }
    }
    for route in &r.routes {
        let slot = if is_ipv4(route.dst.ip()) {
            &mut out.ip4
        } else {
            &mut out.ip6
        };
        if let Some(conf) = slot {
            conf.routes.push(Route020 {
                dst: route.dst,
                gw: route.gw,
            });
        }
    }
    if out.ip4.is_none() && out.ip6.is_none() {
        return Err(ResultError::NoAddresses { to });
    }
    Ok(out)
}

/// An address with a prefix length, written `ip/prefix` (Go's `net.ParseCIDR`; the host
/// bits are kept).
mod cidr {
    use ipnetwork::IpNetwork;
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

    pub(super) fn serialize<S: Serializer>(net: &IpNetwork, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(net)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<IpNetwork, D::Error> {
        let text = String::deserialize(d)?;
        parse(&text).ok_or_else(|| D::Error::custom(format!("invalid CIDR address {text:?}")))
    }

    pub(super) fn parse(text: &str) -> Option<IpNetwork> {
        let (ip, prefix) = text.split_once('/')?;
        if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let ip: std::net::IpAddr = ip.parse().ok()?;
        IpNetwork::new(ip, prefix.parse().ok()?).ok()
    }
}

/// An optional IP address; absent, `null` and `""` all mean none (Go's `net.IP`).
mod opt_ip {
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};
    use std::net::IpAddr;

    pub(super) fn serialize<S: Serializer>(ip: &Option<IpAddr>, s: S) -> Result<S::Ok, S::Error> {
        match ip {
            Some(ip) => s.collect_str(ip),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<IpAddr>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(s) if s.is_empty() => Ok(None),
            Some(s) => s
                .parse()
                .map(Some)
                .map_err(|_| D::Error::custom(format!("invalid IP address {s:?}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> VersionedResult {
        VersionedResult::from_value(v).unwrap()
    }

    #[test]
    fn cidr_parsing_is_strict_and_keeps_host_bits() {
        let n = cidr::parse("10.244.0.5/24").unwrap();
        assert_eq!(n.to_string(), "10.244.0.5/24");
        assert_eq!(cidr::parse("fd00::5/64").unwrap().to_string(), "fd00::5/64");
        for bad in [
            "10.0.0.1",
            "10.0.0.1/33",
            "10.0.0.1/",
            "x/24",
            "10.0.0.1/+4",
            "::/129",
        ] {
            assert!(cidr::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn containerd_cache_result_with_empty_ip_version() {
        // containerd's cni-loopback result on this machine (0.3.1, "version": "").
        let r = parse(json!({"cniVersion": "0.3.1",
            "interfaces": [{"name": "lo", "mac": "00:00:00:00:00:00", "sandbox": "/var/run/netns/x"}],
            "ips": [{"version": "", "interface": 0, "address": "127.0.0.1/8"},
                    {"version": "", "interface": 0, "address": "::1/128"}],
            "dns": {}}));
        assert_eq!(r.cni_version(), "0.3.1");
        r.validate().unwrap();
        let up = r.to_current().unwrap();
        assert_eq!(up.ips.len(), 2);
        assert_eq!(up.interfaces[0].name, "lo");
        let down = r.convert_to("0.2.0").unwrap().to_value();
        assert_eq!(down["ip4"]["ip"], "127.0.0.1/8");
        assert_eq!(down["ip6"]["ip"], "::1/128");
        // Serialized back, the empty version is kept and `dns` is omitted.
        let v = r.to_value();
        assert_eq!(v["ips"][0]["version"], "");
        assert!(v.get("dns").is_none());
    }

    #[test]
    fn full_100_result_round_trips() {
        let json = json!({"cniVersion": "1.1.0",
            "interfaces": [{"name": "cni0", "mac": "aa:bb:cc:dd:ee:ff", "mtu": 1500},
                {"name": "eth0", "mac": "0a:58:0a:f4:00:05", "sandbox": "/var/run/netns/p",
                 "socketPath": "/run/x.sock", "pciID": "0000:00:1f.6"}],
            "ips": [{"interface": 1, "address": "10.244.0.5/24", "gateway": "10.244.0.1"}],
            "routes": [{"dst": "0.0.0.0/0", "gw": "10.244.0.1", "mtu": 1400, "advmss": 1360,
                "priority": 10, "table": 100, "scope": 0}],
            "dns": {"nameservers": ["10.96.0.10"], "domain": "cluster.local",
                "search": ["svc.cluster.local"], "options": ["ndots:5"]}});
        let r = parse(json.clone());
        assert_eq!(r.to_value(), json);
        r.validate().unwrap();
        let VersionedResult::V100(typed) = &r else {
            panic!("not 1.x")
        };
        assert_eq!(typed.routes[0].table, Some(100));
        assert_eq!(typed.interfaces[1].pci_id, "0000:00:1f.6");
    }

    #[test]
    fn down_to_040_recomputes_version_and_keeps_routes() {
        let r = parse(json!({"cniVersion": "1.0.0",
            "interfaces": [{"name": "eth0", "mtu": 9000}],
            "ips": [{"interface": 0, "address": "fd00::5/64"},
                    {"interface": 0, "address": "10.0.0.5/24", "gateway": "10.0.0.1"},
                    {"address": "::ffff:10.0.0.6/120"}],
            "routes": [{"dst": "0.0.0.0/0"}]}));
        let down = r.convert_to("0.4.0").unwrap().to_value();
        assert_eq!(down["cniVersion"], "0.4.0");
        assert_eq!(down["ips"][0]["version"], "6");
        assert_eq!(down["ips"][1]["version"], "4");
        assert_eq!(down["ips"][2]["version"], "4");
        assert_eq!(down["interfaces"], json!([{"name": "eth0"}]));
        assert_eq!(down["routes"], json!([{"dst": "0.0.0.0/0"}]));
        let old = r.convert_to("0.1.0").unwrap().to_value();
        assert_eq!(old["cniVersion"], "0.1.0");
        assert_eq!(old["ip4"]["ip"], "10.0.0.5/24");
        assert_eq!(old["ip4"]["routes"], json!([{"dst": "0.0.0.0/0"}]));
        assert_eq!(old["ip6"]["ip"], "fd00::5/64");
        assert!(old["ip6"].get("routes").is_none());
    }

    #[test]
    fn up_from_020() {
        let r = parse(json!({"cniVersion": "0.2.0",
            "ip4": {"ip": "10.1.0.2/16", "gateway": "10.1.0.1",
                    "routes": [{"dst": "0.0.0.0/0", "gw": "10.1.0.1"}]},
            "ip6": {"ip": "fd00::2/64", "routes": [{"dst": "::/0"}]},
            "dns": {"nameservers": ["1.1.1.1"]}}));
        let v = r.convert_to("0.4.0").unwrap().to_value();
        assert_eq!(
            v,
            json!({"cniVersion": "0.4.0",
                "ips": [{"version": "4", "address": "10.1.0.2/16", "gateway": "10.1.0.1"},
                        {"version": "6", "address": "fd00::2/64"}],
                "routes": [{"dst": "0.0.0.0/0", "gw": "10.1.0.1"}, {"dst": "::/0"}],
                "dns": {"nameservers": ["1.1.1.1"]}})
        );
        let v = r.convert_to("1.1.0").unwrap().to_value();
        assert_eq!(
            v["ips"][0],
            json!({"address": "10.1.0.2/16", "gateway": "10.1.0.1"})
        );
        assert_eq!(r.convert_to("0.1.0").unwrap().cni_version(), "0.1.0");
    }

    #[test]
    fn plugin_output_rules() {
        let r = VersionedResult::from_plugin_output(b"null", "1.0.0").unwrap();
        assert_eq!(
            r,
            VersionedResult::V100(Result100 {
                cni_version: "1.0.0".into(),
                ..Result100::default()
            })
        );
        let r = VersionedResult::from_plugin_output(br#"{"cniVersion": ""}"#, "0.3.1").unwrap();
        assert_eq!(r.cni_version(), "0.3.1");
        let r = VersionedResult::from_plugin_output(br#"{"cniVersion": 1}"#, "1.1.0").unwrap();
        assert_eq!(r.cni_version(), "1.1.0");
        let r = VersionedResult::from_plugin_output(b"{}", "").unwrap();
        assert_eq!(r.cni_version(), "0.1.0");
        let r =
            VersionedResult::from_plugin_output(br#"{"cniVersion": "0.4.0"}"#, "1.0.0").unwrap();
        assert_eq!(r.cni_version(), "0.4.0");
        // Without fixup, an empty version is 0.1.0.
        assert_eq!(
            VersionedResult::from_slice(b"{}").unwrap().cni_version(),
            "0.1.0"
        );
        assert!(VersionedResult::from_plugin_output(b"", "1.0.0").is_err());
        assert!(VersionedResult::from_plugin_output(b"[]", "1.0.0").is_err());
        let err = VersionedResult::from_plugin_output(b"{}", "2.0.0").unwrap_err();
        assert!(
            matches!(err, ResultError::UnsupportedVersion { .. }),
            "{err}"
        );
        let err = VersionedResult::from_slice(
            br#"{"cniVersion": "1.0.0", "ips": [{"address": "1.2.3.4"}]}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("invalid CIDR address"), "{err}");
    }

    #[test]
    fn conversion_errors() {
        let r = parse(json!({"cniVersion": "1.0.0"}));
        let err = r.convert_to("0.5.0").unwrap_err();
        assert_eq!(
            err.to_string(),
            "no converter for CNI result version 1.0.0 to 0.5.0"
        );
        let err = r.convert_to("0.2.0").unwrap_err();
        assert!(matches!(err, ResultError::NoAddresses { .. }), "{err}");
        assert!(r.is_at_least("0.4.0") && !r.is_at_least("1.1.0"));
    }

    #[test]
    fn interface_index_validation_rejects_len() {
        let ok = parse(
            json!({"cniVersion": "1.0.0", "interfaces": [{"name": "eth0"}],
            "ips": [{"interface": 0, "address": "10.0.0.2/24"}, {"address": "10.0.0.3/24"}]}),
        );
        ok.validate().unwrap();
        let bad = parse(
            json!({"cniVersion": "1.0.0", "interfaces": [{"name": "eth0"}],
            "ips": [{"interface": 1, "address": "10.0.0.2/24"}]}),
        );
        let err = bad.validate().unwrap_err();
        assert!(matches!(
            err,
            ResultError::InterfaceIndex {
                ip: 0,
                index: 1,
                count: 1
            }
        ));
        let bad040 = bad.convert_to("0.4.0").unwrap();
        assert!(bad040.validate().is_err());
        assert!(parse(json!({"cniVersion": "0.2.0"})).validate().is_ok());
    }
}
