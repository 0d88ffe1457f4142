//! kube-proxy's object names: the fixed iptables chains, the hashed per-service chains
//! of iptables mode and the hashed, readable object names of nftables mode.

use sha2::{Digest, Sha256};

use crate::model::{Endpoint, ServicePortName};

/// The fixed chain names of kube-proxy's iptables mode.
pub mod chains {
    /// nat and filter: the entry point for ClusterIP, ExternalIP and LoadBalancer
    /// traffic (nat) and the REJECT/DROP of services without endpoints (filter).
    pub const SERVICES: &str = "KUBE-SERVICES";
    /// nat: NodePort traffic, jumped to last from `KUBE-SERVICES`; filter: ACCEPT of
    /// health check node ports.
    pub const NODEPORTS: &str = "KUBE-NODEPORTS";
    /// nat: masquerades packets carrying the masquerade mark.
    pub const POSTROUTING: &str = "KUBE-POSTROUTING";
    /// nat: sets the masquerade mark.
    pub const MARK_MASQ: &str = "KUBE-MARK-MASQ";
    /// filter: REJECT/DROP of external IPs, LoadBalancer IPs and NodePorts without
    /// (local) endpoints.
    pub const EXTERNAL_SERVICES: &str = "KUBE-EXTERNAL-SERVICES";
    /// filter: accepts forwarded traffic that was marked or is established.
    pub const FORWARD: &str = "KUBE-FORWARD";
    /// filter: drops LoadBalancer traffic that `loadBalancerSourceRanges` did not allow.
    pub const PROXY_FIREWALL: &str = "KUBE-PROXY-FIREWALL";
    /// filter: kubelet's anti-martian rule for localhost NodePorts (CVE-2020-8558).
    pub const FIREWALL: &str = "KUBE-FIREWALL";
    /// mangle, nat, filter: an empty chain whose disappearance reveals a flush.
    pub const PROXY_CANARY: &str = "KUBE-PROXY-CANARY";
    /// `KUBE-SERVICES` in the filter table (the same name as in nat).
    pub const SERVICES_FILTER: &str = SERVICES;
}

/// The per-service-port chain kinds of iptables mode, which share one hash suffix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChainPrefix {
    /// `KUBE-SVC-`: endpoint choice under "Cluster" traffic policy.
    Svc,
    /// `KUBE-SVL-`: endpoint choice under "Local" traffic policy.
    Svl,
    /// `KUBE-EXT-`: external traffic (NodePort, ExternalIP, LoadBalancer).
    Ext,
    /// `KUBE-FW-`: LoadBalancer source-range firewall.
    Fw,
}

impl ChainPrefix {
    /// The prefix text, for example `KUBE-SVC-`.
    pub fn as_str(self) -> &'static str {
        match self {
            ChainPrefix::Svc => "KUBE-SVC-",
            ChainPrefix::Svl => "KUBE-SVL-",
            ChainPrefix::Ext => "KUBE-EXT-",
            ChainPrefix::Fw => "KUBE-FW-",
        }
    }
}

/// The chain name kube-proxy gives a service port: the prefix plus the first 16
/// characters of the standard base32 encoding of sha256(`service_port_name` +
/// `protocol`).
///
/// `service_port_name` is `namespace/name`, plus `:port-name` when the port is named;
/// `protocol` is lower case (`tcp`, `udp`, `sctp`). The result is at most 25 characters,
/// within iptables' 28-character limit.
pub fn service_port_chain(prefix: ChainPrefix, service_port_name: &str, protocol: &str) -> String {
    format!(
        "{}{}",
        prefix.as_str(),
        hash_prefix(&[service_port_name, protocol], 16)
    )
}

/// The `KUBE-SEP-` chain name of one endpoint of a service port; `endpoint` is
/// `ip:port` (`[ip]:port` for IPv6).
pub fn endpoint_chain(service_port_name: &str, protocol: &str, endpoint: &str) -> String {
    format!(
        "KUBE-SEP-{}",
        hash_prefix(&[service_port_name, protocol, endpoint], 16)
    )
}

/// Whether `name` is one of the per-service or per-endpoint chains of iptables mode
/// (what stale-chain cleanup may delete). `KUBE-XLB-` is an older kube-proxy's name
/// for the Local-policy chain, still recognized so it is cleaned up.
pub fn is_service_chain_name(name: &str) -> bool {
    [
        "KUBE-SVC-",
        "KUBE-SVL-",
        "KUBE-EXT-",
        "KUBE-FW-",
        "KUBE-SEP-",
        "KUBE-XLB-",
    ]
    .iter()
    .any(|p| name.starts_with(p))
}

/// The names of one service port's iptables chains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IptablesChainNames {
    /// `KUBE-SVC-…`.
    pub cluster: String,
    /// `KUBE-SVL-…`.
    pub local: String,
    /// `KUBE-EXT-…`.
    pub external: String,
    /// `KUBE-FW-…`.
    pub firewall: String,
}

impl IptablesChainNames {
    /// The chain names of a service port.
    pub fn of(name: &ServicePortName) -> Self {
        let text = name.to_string();
        let hash = hash_prefix(&[&text, name.protocol.as_str()], 16);
        Self {
            cluster: format!("KUBE-SVC-{hash}"),
            local: format!("KUBE-SVL-{hash}"),
            external: format!("KUBE-EXT-{hash}"),
            firewall: format!("KUBE-FW-{hash}"),
        }
    }
}

/// The `KUBE-SEP-` chain of an endpoint of a service port.
pub fn iptables_endpoint_chain(name: &ServicePortName, endpoint: &Endpoint) -> String {
    endpoint_chain(
        &name.to_string(),
        name.protocol.as_str(),
        &endpoint.address(),
    )
}

/// nftables' maximum object name length (knftables `NameLengthMax`).
const NFT_NAME_LENGTH_MAX: usize = 256;
/// The longest of kube-proxy's nftables name prefixes, with its hyphen.
const NFT_PREFIX_LENGTH_MAX: usize = 16;

/// kube-proxy's `hashAndTruncate`: the first 8 base32 characters of sha256(`name`), a
/// hyphen and `name`, cut to 240 characters (ending in `...`) if longer.
pub fn nft_hash_and_truncate(name: &str) -> String {
    let max = NFT_NAME_LENGTH_MAX - NFT_PREFIX_LENGTH_MAX;
    let mut out = format!("{}-{name}", hash_prefix(&[name], 8));
    if out.len() > max {
        out.truncate(max - 3);
        out.push_str("...");
    }
    out
}

/// The nftables base name of a service port: `HASH-ns/name/protocol/port`, for
/// example `ULMVA6XW-ns1/svc1/tcp/p80`.
pub fn nft_service_base(name: &ServicePortName) -> String {
    nft_hash_and_truncate(&format!(
        "{}/{}/{}/{}",
        name.service.namespace,
        name.service.name,
        name.protocol.as_str(),
        name.port
    ))
}

/// The nftables base name of an endpoint of a service port:
/// `HASH-ns/name/protocol/port__ip/port`, IPv6 colons turned into dots.
pub fn nft_endpoint_base(name: &ServicePortName, endpoint: &Endpoint) -> String {
    let ip = endpoint.ip.to_string().replace(':', ".");
    nft_hash_and_truncate(&format!(
        "{}/{}/{}/{}__{}/{}",
        name.service.namespace,
        name.service.name,
        name.protocol.as_str(),
        name.port,
        ip,
        endpoint.port
    ))
}

/// The names of one service port's nftables objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NftChainNames {
    /// `service-…`: endpoint choice under "Cluster" policy.
    pub cluster: String,
    /// `local-…`: endpoint choice under "Local" policy.
    pub local: String,
    /// `external-…`: external traffic.
    pub external: String,
    /// `firewall-…`: LoadBalancer source ranges.
    pub firewall: String,
}

impl NftChainNames {
    /// The chain names of a service port.
    pub fn of(name: &ServicePortName) -> Self {
        let base = nft_service_base(name);
        Self {
            cluster: format!("service-{base}"),
            local: format!("local-{base}"),
            external: format!("external-{base}"),
            firewall: format!("firewall-{base}"),
        }
    }
}

/// Whether an nftables chain name is a per-service or per-endpoint chain: those, and
/// only those, contain a `/`.
pub fn is_nft_service_chain_name(name: &str) -> bool {
    name.contains('/')
}

/// The first `len` characters of base32(sha256(concatenated parts)), RFC 4648 alphabet.
pub(crate) fn hash_prefix(parts: &[&str], len: usize) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part.as_bytes());
    }
    base32_prefix(&hasher.finalize(), len)
}

/// The first `len` characters of the RFC 4648 base32 encoding of `bytes`.
fn base32_prefix(bytes: &[u8], len: usize) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::with_capacity(len);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &byte in bytes {
        buffer = (buffer << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 && out.len() < len {
            bits -= 5;
            out.push(char::from(ALPHABET[((buffer >> bits) & 31) as usize]));
        }
        buffer &= (1 << bits) - 1;
        if out.len() == len {
            return out;
        }
    }
    if bits > 0 && out.len() < len {
        // The last partial group is padded with zero bits on the right.
        out.push(char::from(ALPHABET[((buffer << (5 - bits)) & 31) as usize]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Protocol;

    #[test]
    fn names_match_upstream_golden_output() {
        assert_eq!(
            service_port_chain(ChainPrefix::Svc, "ns1/svc1:p80", "tcp"),
            "KUBE-SVC-XPGD46QRK7WJZT7O"
        );
        assert_eq!(
            service_port_chain(ChainPrefix::Svc, "ns5/svc5:p80", "tcp"),
            "KUBE-SVC-NUKIZ6OKUXPJNT4C"
        );
        assert_eq!(
            endpoint_chain("ns1/svc1:p80", "tcp", "10.180.0.1:80"),
            "KUBE-SEP-SXIVWICOYRO3J4NJ"
        );
    }

    #[test]
    fn nft_names_match_upstream_golden_output() {
        let n = ServicePortName::new("ns1", "svc1", "p80", Protocol::Tcp);
        assert_eq!(
            NftChainNames::of(&n).cluster,
            "service-ULMVA6XW-ns1/svc1/tcp/p80"
        );
        let ep = Endpoint::ready("10.180.0.1".parse().unwrap(), 80);
        assert_eq!(
            format!("endpoint-{}", nft_endpoint_base(&n, &ep)),
            "endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80"
        );
        let n5 = ServicePortName::new("ns5", "svc5", "p80", Protocol::Tcp);
        let ep5 = Endpoint::ready("10.180.0.3".parse().unwrap(), 80);
        assert_eq!(
            format!("affinity-{}", nft_endpoint_base(&n5, &ep5)),
            "affinity-GTK6MW7G-ns5/svc5/tcp/p80__10.180.0.3/80"
        );
        let v6 = Endpoint::ready("fd00::1".parse().unwrap(), 80);
        assert!(nft_endpoint_base(&n, &v6).ends_with("__fd00..1/80"));
        assert!(is_nft_service_chain_name(&NftChainNames::of(&n).external));
        assert!(!is_nft_service_chain_name("services"));
    }

    #[test]
    fn long_nft_names_are_truncated_with_dots() {
        let long = "x".repeat(300);
        let out = nft_hash_and_truncate(&long);
        assert_eq!(out.len(), 240);
        assert!(out.ends_with("..."));
    }

    #[test]
    fn prefixes_share_the_suffix_and_fit_iptables_limit() {
        let n = ServicePortName::new("ns1", "svc1", "p80", Protocol::Tcp);
        let names = IptablesChainNames::of(&n);
        for name in [
            &names.cluster,
            &names.local,
            &names.external,
            &names.firewall,
        ] {
            assert!(name.ends_with("XPGD46QRK7WJZT7O"), "{name}");
            assert!(name.len() <= 28, "{name}");
            assert!(is_service_chain_name(name));
        }
        assert_eq!(
            names.cluster,
            service_port_chain(ChainPrefix::Svc, "ns1/svc1:p80", "tcp")
        );
        assert!(!is_service_chain_name(chains::SERVICES));
        assert!(!is_service_chain_name(chains::MARK_MASQ));
    }

    #[test]
    fn base32_matches_rfc4648_vectors() {
        for (input, want) in [
            ("f", "MY"),
            ("fo", "MZXQ"),
            ("foo", "MZXW6"),
            ("foob", "MZXW6YQ"),
            ("fooba", "MZXW6YTB"),
            ("foobar", "MZXW6YTBOI"),
        ] {
            assert_eq!(base32_prefix(input.as_bytes(), want.len()), want, "{input}");
        }
    }
}
