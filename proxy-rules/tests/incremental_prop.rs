//! Incremental rendering is exact: for random Service and EndpointSlice changes, the
//! renderers' incrementally kept state equals a render from scratch, and the partial
//! update they emit moves the previous ruleset to exactly the new one.

use std::collections::BTreeSet;
use std::net::IpAddr;

use proptest::prelude::*;
use proxy_rules::config::ProxyConfig;
use proxy_rules::exec::{FakeIptables, IptablesExec};
use proxy_rules::iptables::IptablesRenderer;
use proxy_rules::iptables::dump::IptablesDump;
use proxy_rules::model::{
    Endpoint, IpFamily, Protocol, ProxyState, ServiceName, ServicePort, ServicePortName,
};
use proxy_rules::nftables::{NftRenderer, transaction};

#[derive(Debug, Clone)]
struct Svc {
    ports: Vec<(Protocol, u16, Option<u16>)>,
    external_local: bool,
    affinity: bool,
    lb: bool,
    endpoints: Vec<(u8, bool, bool, bool)>,
}

fn svc() -> impl Strategy<Value = Svc> {
    (
        prop::collection::vec(
            (
                prop::sample::select(vec![Protocol::Tcp, Protocol::Udp]),
                1u16..4,
                prop::option::of(30000u16..30004),
            ),
            1..3,
        ),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        prop::collection::vec((0u8..6, any::<bool>(), any::<bool>(), any::<bool>()), 0..5),
    )
        .prop_map(|(ports, external_local, affinity, lb, endpoints)| Svc {
            ports,
            external_local,
            affinity,
            lb,
            endpoints,
        })
}

fn state(svcs: &[Option<Svc>]) -> ProxyState {
    let mut st = ProxyState::new();
    let mut used_node_ports = BTreeSet::new();
    for (i, s) in svcs.iter().enumerate() {
        let Some(s) = s else { continue };
        let mut seen = BTreeSet::new();
        for (j, (proto, port, np)) in s.ports.iter().enumerate() {
            if !seen.insert((*proto, *port)) {
                continue;
            }
            let name = ServicePortName::new("ns", format!("s{i}"), format!("p{j}"), *proto);
            let cip: IpAddr = format!("172.30.0.{}", 10 + i).parse().unwrap();
            let mut sp = ServicePort::cluster_ip(name.clone(), cip, 80 + port);
            sp.node_port = np.filter(|n| used_node_ports.insert((*proto, *n)));
            sp.external_policy_local = s.external_local && sp.node_port.is_some();
            sp.session_affinity_seconds = s.affinity.then_some(300);
            if s.lb {
                sp.load_balancer_ips = vec![format!("5.6.7.{i}").parse().unwrap()];
                sp.load_balancer_source_ranges = vec!["203.0.113.0/25".parse().unwrap()];
            }
            st.add_service(sp);
            let eps = s
                .endpoints
                .iter()
                .map(|(n, ready, local, terminating)| {
                    let mut e = Endpoint::ready(format!("10.180.0.{n}").parse().unwrap(), 8080);
                    e.ready = *ready;
                    e.terminating = *terminating;
                    e.node_name = Some(if *local { "node-a" } else { "node-b" }.into());
                    e
                })
                .collect();
            st.set_endpoints(name, eps);
        }
    }
    st
}

fn config() -> ProxyConfig {
    ProxyConfig::new("node-a")
        .node_ip("192.168.0.2".parse().unwrap())
        .cluster_cidr("10.0.0.0/8".parse().unwrap())
}

fn changed_services(a: &[Option<Svc>], b: &[Option<Svc>]) -> BTreeSet<ServiceName> {
    (0..a.len().max(b.len()))
        .map(|i| ServiceName::new("ns", format!("s{i}")))
        .collect()
}

fn kube_chains(d: &IptablesDump) -> Vec<(String, String, Vec<String>)> {
    let mut v = Vec::new();
    for t in &d.tables {
        for c in t.chains.iter().filter(|c| c.name.starts_with("KUBE-")) {
            v.push((
                t.name.clone(),
                c.name.clone(),
                c.rules.iter().map(|r| r.text()).collect(),
            ));
        }
    }
    v.sort();
    v
}

fn sorted_lines(s: &str) -> Vec<&str> {
    let mut v: Vec<&str> = s.lines().collect();
    v.sort();
    v
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn incremental_equals_from_scratch(
        a in prop::collection::vec(prop::option::of(svc()), 1..6),
        b in prop::collection::vec(prop::option::of(svc()), 1..6),
    ) {
        let (sa, sb) = (state(&a), state(&b));
        let cfg = config();
        let changed = changed_services(&a, &b);

        // iptables: the incremental render equals the full render of B...
        let mut r = IptablesRenderer::new(&cfg, IpFamily::V4).unwrap();
        r.update(&sa, None);
        let full_a = r.ruleset(None, &[]).restore_input();
        let upd = r.update(&sb, Some(&changed));
        let full_b = proxy_rules::iptables::render(&sb, &cfg, IpFamily::V4).unwrap();
        prop_assert_eq!(r.ruleset(None, &[]).restore_input(), full_b.restore_input());
        // ...and the partial restore on top of A's rules gives exactly B's rules.
        let removed: Vec<String> = upd.removed_chains.iter().cloned().collect();
        let only = (!upd.full).then_some(&upd.changed);
        let partial = r.ruleset(only, &removed).restore_input();
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let fake = FakeIptables::new();
        rt.block_on(fake.restore(IpFamily::V4, &full_a)).unwrap();
        rt.block_on(fake.restore(IpFamily::V4, &partial)).unwrap();
        let want = IptablesDump::parse(&full_b.restore_input(), "b").unwrap();
        prop_assert_eq!(kube_chains(&fake.dump(IpFamily::V4)), kube_chains(&want));
        // The same update split into small restores gives the same rules.
        let chunked = FakeIptables::new();
        rt.block_on(chunked.restore(IpFamily::V4, &full_a)).unwrap();
        for input in r.restore_inputs(only, &removed, 3) {
            rt.block_on(chunked.restore(IpFamily::V4, &input)).unwrap();
        }
        prop_assert_eq!(kube_chains(&chunked.dump(IpFamily::V4)), kube_chains(&want));

        // nftables: the incrementally kept table equals the render of B, and the partial
        // script holds the same operations as the whole-table comparison.
        let mut n = NftRenderer::new(&cfg, IpFamily::V4).unwrap();
        n.update(&sa, None);
        n.commit();
        let table_a = n.ruleset().clone();
        n.update(&sb, Some(&changed));
        let table_b = proxy_rules::nftables::render(&sb, &cfg, IpFamily::V4).unwrap();
        prop_assert_eq!(n.ruleset(), &table_b);
        // What the renderer believes the kernel has is A's table...
        prop_assert_eq!(n.kernel_view(), table_a.clone());
        // ...and a fresh renderer told so (after a configuration change) emits the
        // same update.
        let mut fresh = NftRenderer::new(&cfg, IpFamily::V4).unwrap();
        fresh.update(&sb, None);
        fresh.assume_kernel(&table_a);
        let (from_fresh, from_incremental) = (fresh.partial_script(&[]), n.partial_script(&[]));
        prop_assert_eq!(sorted_lines(&from_fresh), sorted_lines(&from_incremental));
        let ours = n.partial_script(&[]);
        let reference = transaction(Some(&table_a), &table_b, false, &[]);
        prop_assert_eq!(sorted_lines(&ours), sorted_lines(&reference));
        prop_assert_eq!(n.stale_chains(), proxy_rules::nftables::stale_chains(&table_a, &table_b));
        n.commit();
        prop_assert!(!n.has_pending_changes());
    }
}
