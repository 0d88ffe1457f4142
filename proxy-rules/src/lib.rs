//! kube-proxy compatible Service routing: iptables, nftables and IPVS rules from
//! Services and EndpointSlices.
//!
//! **Status:** this crate is at its start. What exists today are kube-proxy's fixed names
//! and marks ([`chains`], [`MASQUERADE_MARK`]) and its per-service chain naming
//! ([`service_port_chain`], [`endpoint_chain`]), which match upstream's golden output.
//! The model, the renderers, the sync engine and the packet tracer are being built; see
//! the README.
//!
//! # Example
//!
//! ```
//! use proxy_rules::{ChainPrefix, endpoint_chain, service_port_chain};
//!
//! // The same names kube-proxy gives the chains of port "p80" of Service ns1/svc1.
//! assert_eq!(service_port_chain(ChainPrefix::Svc, "ns1/svc1:p80", "tcp"), "KUBE-SVC-XPGD46QRK7WJZT7O");
//! assert_eq!(endpoint_chain("ns1/svc1:p80", "tcp", "10.180.0.1:80"), "KUBE-SEP-SXIVWICOYRO3J4NJ");
//! ```

use sha2::{Digest, Sha256};

/// The fixed chain names of kube-proxy's iptables mode.
pub mod chains {
    /// nat: the entry point for ClusterIP, ExternalIP and LoadBalancer traffic.
    pub const SERVICES: &str = "KUBE-SERVICES";
    /// nat: NodePort traffic, jumped to last from `KUBE-SERVICES`.
    pub const NODEPORTS: &str = "KUBE-NODEPORTS";
    /// nat: masquerades packets carrying the masquerade mark.
    pub const POSTROUTING: &str = "KUBE-POSTROUTING";
    /// nat: sets the masquerade mark.
    pub const MARK_MASQ: &str = "KUBE-MARK-MASQ";
    /// filter: rejects traffic to external IPs and NodePorts without endpoints.
    pub const EXTERNAL_SERVICES: &str = "KUBE-EXTERNAL-SERVICES";
    /// filter: accepts forwarded traffic that was marked or is established.
    pub const FORWARD: &str = "KUBE-FORWARD";
    /// filter: `loadBalancerSourceRanges` enforcement.
    pub const PROXY_FIREWALL: &str = "KUBE-PROXY-FIREWALL";
    /// filter and nat: rejects ClusterIP traffic to services without endpoints.
    pub const SERVICES_FILTER: &str = "KUBE-SERVICES";
    /// filter: the firewall chain that drops invalid packets to node ports.
    pub const FIREWALL: &str = "KUBE-FIREWALL";
    /// mangle, nat, filter: an empty chain whose disappearance reveals a flush.
    pub const PROXY_CANARY: &str = "KUBE-PROXY-CANARY";
}

/// The masquerade mark: bit 14 (`--masquerade-bit` default), `0x4000`.
pub const MASQUERADE_MARK: u32 = 1 << 14;

/// The per-service-port chain kinds, which share one hash suffix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChainPrefix {
    /// `KUBE-SVC-`: cluster-wide endpoint choice.
    Svc,
    /// `KUBE-SVL-`: node-local endpoint choice (traffic policy Local).
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
        hash16(&[service_port_name, protocol])
    )
}

/// The `KUBE-SEP-` chain name of one endpoint of a service port; `endpoint` is
/// `ip:port` (`[ip]:port` for IPv6).
pub fn endpoint_chain(service_port_name: &str, protocol: &str, endpoint: &str) -> String {
    format!(
        "KUBE-SEP-{}",
        hash16(&[service_port_name, protocol, endpoint])
    )
}

/// Whether `name` is one of the per-service or per-endpoint chains kube-proxy owns
/// (what stale-chain cleanup may delete).
pub fn is_service_chain_name(name: &str) -> bool {
    [
        "KUBE-SVC-",
        "KUBE-SVL-",
        "KUBE-EXT-",
        "KUBE-FW-",
        "KUBE-SEP-",
    ]
    .iter()
    .any(|p| name.starts_with(p))
}

/// The first 16 characters of base32(sha256(concatenated parts)), RFC 4648 alphabet.
fn hash16(parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part.as_bytes());
    }
    let digest = hasher.finalize();
    base32_prefix(&digest, 16)
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
    fn prefixes_share_the_suffix_and_fit_iptables_limit() {
        let names: Vec<String> = [
            ChainPrefix::Svc,
            ChainPrefix::Svl,
            ChainPrefix::Ext,
            ChainPrefix::Fw,
        ]
        .into_iter()
        .map(|p| service_port_chain(p, "ns1/svc1:p80", "tcp"))
        .collect();
        for name in &names {
            assert!(name.ends_with("XPGD46QRK7WJZT7O"), "{name}");
            assert!(name.len() <= 28, "{name}");
            assert!(is_service_chain_name(name));
        }
        assert!(!is_service_chain_name(chains::SERVICES));
        assert!(!is_service_chain_name(chains::MARK_MASQ));
    }

    #[test]
    fn base32_matches_rfc4648_vectors() {
        // RFC 4648 section 10 test vectors (without padding).
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

    #[test]
    fn masquerade_mark_is_bit_14() {
        assert_eq!(format!("{MASQUERADE_MARK:#x}"), "0x4000");
    }

    #[test]
    fn golden_rules_use_our_chain_names() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/compat/kube-proxy/overall-iptables.rules"
        );
        let rules = std::fs::read_to_string(path).unwrap_or_else(|e| {
            panic!("{path}: {e}: the shared/ folder must sit beside the checkout")
        });
        for chain in [
            chains::SERVICES,
            chains::NODEPORTS,
            chains::POSTROUTING,
            chains::MARK_MASQ,
            chains::FORWARD,
        ] {
            assert!(
                rules.contains(&format!(":{chain} - [0:0]")),
                "{chain} declared in the golden rules"
            );
        }
        assert!(rules.contains(&format!(
            ":{} - [0:0]",
            endpoint_chain("ns1/svc1:p80", "tcp", "10.180.0.1:80")
        )));
    }
}
