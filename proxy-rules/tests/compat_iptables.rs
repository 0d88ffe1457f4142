//! Upstream kube-proxy's own golden iptables case (`TestOverallIPTablesRules`, data in
//! `shared/compat/kube-proxy/`), rendered by us and compared in upstream's canonical
//! order. The kernel round trip of the same comparison is in the real-kernel tests.

mod golden;

use golden::compat;
use proxy_rules::config::ProxyConfig;
use proxy_rules::iptables::dump::IptablesDump;

/// The fixture's settings (overall-iptables.md): node test-node, 192.168.0.2, pod CIDR
/// 10.0.0.0/8, nfacct counters present, an iptables without --random-fully.
fn fixture_config() -> ProxyConfig {
    let mut c = golden::config();
    c.nfacct = true;
    c.random_fully = false;
    c
}

fn render_golden_case() -> proxy_rules::iptables::IptablesRuleset {
    let objs = golden::objects("overall-iptables.yaml", false);
    assert_eq!((objs.services.len(), objs.slices.len()), (6, 5));
    golden::render_iptables(objs, &fixture_config())
}

#[test]
fn overall_iptables_rules_match_upstream_golden_text() {
    let ours = render_golden_case();
    let got = IptablesDump::parse(&ours.restore_input(), "ours")
        .unwrap()
        .canonical();
    let want = IptablesDump::parse(&compat("overall-iptables.rules"), "overall-iptables.rules")
        .unwrap()
        .canonical();
    if got != want {
        let diff: Vec<String> = diff_lines(&want, &got);
        panic!(
            "rendered rules differ from upstream's golden text:\n{}",
            diff.join("\n")
        );
    }
    // Byte for byte, too: the canonical form is exactly the golden file.
    assert_eq!(got, compat("overall-iptables.rules"));
}

#[test]
fn overall_rule_counts_match_upstream() {
    let ours = render_golden_case();
    // The test checks the nat rule-count metric against the 55 nat rules.
    assert_eq!(ours.counts.nat, 55);
    assert_eq!(ours.counts.filter, 10);
    // svc2: external policy Local and no local endpoint.
    assert_eq!(ours.counts.no_local_external, 1);
    assert_eq!(ours.counts.no_local_internal, 0);
}

#[test]
fn every_jump_target_is_declared_and_used() {
    // upstream's checkIPTablesRuleJumps, on our output.
    let ours = render_golden_case();
    let dump = IptablesDump::parse(&ours.restore_input(), "ours").unwrap();
    for table in &dump.tables {
        let declared: Vec<&str> = table.chains.iter().map(|c| c.name.as_str()).collect();
        let mut jumped = std::collections::BTreeSet::new();
        for chain in &table.chains {
            for rule in &chain.rules {
                if let Some(t) = rule.target()
                    && t.starts_with("KUBE-")
                {
                    assert!(
                        declared.contains(&t),
                        "{}: {} jumps to undeclared {t}",
                        table.name,
                        chain.name
                    );
                    jumped.insert(t.to_owned());
                }
            }
        }
        for chain in &table.chains {
            if chain.name.starts_with("KUBE-SVC-")
                || chain.name.starts_with("KUBE-SEP-")
                || chain.name.starts_with("KUBE-EXT-")
                || chain.name.starts_with("KUBE-FW-")
            {
                assert!(
                    jumped.contains(&chain.name),
                    "{} declared but never jumped to",
                    chain.name
                );
                assert!(!chain.rules.is_empty(), "{} is empty", chain.name);
            }
        }
    }
}

fn diff_lines(want: &str, got: &str) -> Vec<String> {
    let w: Vec<&str> = want.lines().collect();
    let g: Vec<&str> = got.lines().collect();
    let mut out = Vec::new();
    for l in &w {
        if !g.contains(l) {
            out.push(format!("- {l}"));
        }
    }
    for l in &g {
        if !w.contains(l) {
            out.push(format!("+ {l}"));
        }
    }
    out
}
