//! Upstream kube-proxy's own golden nftables case (`TestOverallNFTablesRules`, data in
//! `shared/compat/kube-proxy/`), rendered by us and compared after upstream's own
//! normalisation. The kernel round trip is in the real-kernel tests.

use proxy_rules::config::{NodePortAddresses, ProxyConfig};
use proxy_rules::k8s::parse_objects;
use proxy_rules::model::IpFamily;
use proxy_rules::nftables::canonical::canonical;
use proxy_rules::store::ServiceStore;

fn compat(file: &str) -> String {
    let path = format!(
        "{}/../../shared/compat/kube-proxy/{file}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{path}: {e}: the shared/ folder must sit beside the checkout"))
}

const SERVICE_CIDR: &str = "
apiVersion: networking.k8s.io/v1
kind: ServiceCIDR
metadata: {name: kubernetes}
spec: {cidrs: [172.30.0.0/16]}
";

fn render_golden_case(with_cidr_object: bool) -> proxy_rules::nftables::NftRuleset {
    let mut text = compat("overall-nftables.yaml");
    if with_cidr_object {
        text.push_str("\n---\n");
        text.push_str(SERVICE_CIDR);
    }
    let objs = parse_objects(&text, "overall-nftables.yaml").unwrap();
    assert!(objs.errors.is_empty(), "{:?}", objs.errors);
    let mut config = ProxyConfig::new("test-node")
        .node_ip("192.168.0.2".parse().unwrap())
        .cluster_cidr("10.0.0.0/8".parse().unwrap())
        .nodeport_addresses(NodePortAddresses::Cidrs(vec![
            "192.168.0.2/32".parse().unwrap(),
            "2001:db8::1/128".parse().unwrap(),
        ]));
    config.service_cidrs = objs.service_cidrs.clone();
    let mut store = ServiceStore::new();
    store.replace_all(objs.services, objs.slices);
    let state = store.proxy_state(IpFamily::V4, "test-node");
    proxy_rules::nftables::render(&state, &config, IpFamily::V4).unwrap()
}

#[test]
fn overall_nftables_rules_match_upstream_golden_text() {
    let ours = render_golden_case(true);
    let got = canonical(&ours.dump());
    let want = canonical(&compat("overall-nftables.nft"));
    if got != want {
        let w: Vec<&str> = want.lines().collect();
        let g: Vec<&str> = got.lines().collect();
        let mut diff = Vec::new();
        diff.extend(
            w.iter()
                .filter(|l| !g.contains(l))
                .map(|l| format!("- {l}")),
        );
        diff.extend(
            g.iter()
                .filter(|l| !w.contains(l))
                .map(|l| format!("+ {l}")),
        );
        panic!(
            "rendered table differs from upstream's golden text:\n{}",
            diff.join("\n")
        );
    }
    assert_eq!(got.lines().count(), 122);
    // Our dump is loadable as is: it is exactly the loadable golden file.
    assert_eq!(ours.dump(), compat("overall-nftables.loadable.nft"));
}

#[test]
fn the_service_cidr_comes_from_the_servicecidr_object() {
    let without = render_golden_case(false).dump();
    assert!(!without.contains("Drop traffic to unallocated ClusterIPs"));
    let with = render_golden_case(true).dump();
    assert!(with.contains(
        "ip daddr { 172.30.0.0/16 } drop comment \"Drop traffic to unallocated ClusterIPs\""
    ));
}

#[test]
fn default_nodeport_addresses_are_the_primary_ip_in_nftables_mode() {
    // With no --nodeport-addresses, nftables mode uses the node IPs: same table.
    let objs = parse_objects(
        &format!("{}\n---\n{SERVICE_CIDR}", compat("overall-nftables.yaml")),
        "x",
    )
    .unwrap();
    let mut config = ProxyConfig::new("test-node")
        .node_ip("192.168.0.2".parse().unwrap())
        .cluster_cidr("10.0.0.0/8".parse().unwrap());
    config.service_cidrs = objs.service_cidrs.clone();
    let mut store = ServiceStore::new();
    store.replace_all(objs.services, objs.slices);
    let state = store.proxy_state(IpFamily::V4, "test-node");
    let ours = proxy_rules::nftables::render(&state, &config, IpFamily::V4).unwrap();
    assert_eq!(
        canonical(&ours.dump()),
        canonical(&compat("overall-nftables.nft"))
    );
}
