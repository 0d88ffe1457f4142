//! Upstream kube-proxy's golden case (`TestOverallIPTablesRules` /
//! `TestOverallNFTablesRules`, data in `shared/compat/kube-proxy/`), loaded and
//! rendered the way the fixture's settings say (overall-iptables.md): node test-node,
//! 192.168.0.2, pod CIDR 10.0.0.0/8.

#![allow(dead_code, unreachable_pub)]

use proxy_rules::config::ProxyConfig;
use proxy_rules::iptables::IptablesRuleset;
use proxy_rules::k8s::{Objects, parse_objects};
use proxy_rules::model::IpFamily;
use proxy_rules::nftables::NftRuleset;
use proxy_rules::store::ServiceStore;

/// A file of `shared/compat/kube-proxy/`.
pub fn compat(file: &str) -> String {
    let path = format!(
        "{}/../../shared/compat/kube-proxy/{file}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{path}: {e}: the shared/ folder must sit beside the checkout"))
}

/// The ServiceCIDR object upstream's nftables case configures.
pub const SERVICE_CIDR: &str = "
apiVersion: networking.k8s.io/v1
kind: ServiceCIDR
metadata: {name: kubernetes}
spec: {cidrs: [172.30.0.0/16]}
";

/// The objects of `file` (`overall-iptables.yaml` or `overall-nftables.yaml`), with
/// the ServiceCIDR object appended when asked; none of them may be rejected.
pub fn objects(file: &str, with_service_cidr: bool) -> Objects {
    let mut text = compat(file);
    if with_service_cidr {
        text.push_str("\n---\n");
        text.push_str(SERVICE_CIDR);
    }
    let objs = parse_objects(&text, file).unwrap();
    assert!(objs.errors.is_empty(), "{:?}", objs.errors);
    objs
}

/// The fixture's node settings; tests add what their mode needs.
pub fn config() -> ProxyConfig {
    ProxyConfig::new("test-node")
        .node_ip("192.168.0.2".parse().unwrap())
        .cluster_cidr("10.0.0.0/8".parse().unwrap())
}

fn store(objs: Objects) -> ServiceStore {
    let mut store = ServiceStore::new();
    store.replace_all(objs.services, objs.slices);
    store
}

/// The iptables golden case rendered with `config`.
pub fn render_iptables(objs: Objects, config: &ProxyConfig) -> IptablesRuleset {
    let state = store(objs).proxy_state(IpFamily::V4, "test-node");
    proxy_rules::iptables::render(&state, config, IpFamily::V4).unwrap()
}

/// The nftables golden case rendered with `config`, whose service CIDRs come from the
/// objects (as kube-proxy takes them from ServiceCIDR objects).
pub fn render_nftables(objs: Objects, mut config: ProxyConfig) -> NftRuleset {
    config.service_cidrs = objs.service_cidrs.clone();
    let state = store(objs).proxy_state(IpFamily::V4, "test-node");
    proxy_rules::nftables::render(&state, &config, IpFamily::V4).unwrap()
}
