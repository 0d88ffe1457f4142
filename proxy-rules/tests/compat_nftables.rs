//! Upstream kube-proxy's own golden nftables case (`TestOverallNFTablesRules`, data in
//! `shared/compat/kube-proxy/`), rendered by us and compared after upstream's own
//! normalisation. The kernel round trip is in the real-kernel tests.

mod golden;

use golden::compat;
use proxy_rules::config::NodePortAddresses;
use proxy_rules::nftables::canonical::canonical;

fn render_golden_case(with_cidr_object: bool) -> proxy_rules::nftables::NftRuleset {
    let config = golden::config().nodeport_addresses(NodePortAddresses::Cidrs(vec![
        "192.168.0.2/32".parse().unwrap(),
        "2001:db8::1/128".parse().unwrap(),
    ]));
    golden::render_nftables(
        golden::objects("overall-nftables.yaml", with_cidr_object),
        config,
    )
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
    let ours = golden::render_nftables(
        golden::objects("overall-nftables.yaml", true),
        golden::config(),
    );
    assert_eq!(
        canonical(&ours.dump()),
        canonical(&compat("overall-nftables.nft"))
    );
}
