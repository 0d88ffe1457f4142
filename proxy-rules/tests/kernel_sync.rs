//! The sync engine against the real kernel: a node that ran kube-proxy switches to us
//! with no stale chains left; someone flushing the rules is noticed through the canary
//! and repaired; switching modes removes the other mode's rules; a failing apply keeps
//! the previous rules. Needs root (`scripts/env.sh up`).

mod common;

use std::time::Duration;

use common::{Lab, NODE_IP, NODE_NAME};
use proxy_rules::config::ProxyConfig;
use proxy_rules::exec::Target;
use proxy_rules::iptables::dump::IptablesDump;
use proxy_rules::model::{IpFamily, Protocol, ServiceName};
use proxy_rules::store::{EndpointSliceSpec, ServiceSpec, SliceEndpoint, SlicePort};
use proxy_rules::sync::{Event, Execs, Mode, SyncEngine, SyncOptions};

fn web() -> (ServiceSpec, EndpointSliceSpec) {
    let svc = ServiceSpec::cluster_ip(
        ServiceName::new("lab", "web"),
        "172.30.0.10".parse().unwrap(),
    )
    .with_port("p", Protocol::Tcp, 80, Some(30080));
    let slice = EndpointSliceSpec {
        name: "web-1".into(),
        service: ServiceName::new("lab", "web"),
        address_type: Some(IpFamily::V4),
        ports: vec![SlicePort {
            name: "p".into(),
            protocol: Protocol::Tcp,
            port: Some(8080),
        }],
        endpoints: ["10.180.0.10", "10.180.0.11"]
            .iter()
            .map(|i| SliceEndpoint::ready(i.parse().unwrap()))
            .collect(),
    };
    (svc, slice)
}

fn engine(lab: &Lab, mode: Mode) -> SyncEngine {
    let config = ProxyConfig::new(NODE_NAME)
        .node_ip(NODE_IP.parse().unwrap())
        .cluster_cidr("10.180.0.0/16".parse().unwrap());
    let mut e = SyncEngine::new(
        mode,
        &[IpFamily::V4],
        config,
        SyncOptions::default(),
        Execs::commands(Target::netns(lab.node.name())),
    )
    .unwrap();
    let (svc, slice) = web();
    e.apply(Event::Service(svc)).unwrap();
    e.apply(Event::Slice(slice)).unwrap();
    e
}

fn saved(lab: &Lab, table: &str) -> IptablesDump {
    IptablesDump::parse(
        &lab.on_node(&["iptables-save", "-t", table], None),
        "iptables-save",
    )
    .unwrap()
}

/// `nft list table ip kube-proxy` in the node.
fn nft_table(lab: &Lab) -> String {
    lab.on_node(&["nft", "list", "table", "ip", "kube-proxy"], None)
}

fn chains(d: &IptablesDump, table: &str) -> Vec<String> {
    d.table(table)
        .map(|t| t.chains.iter().map(|c| c.name.clone()).collect())
        .unwrap_or_default()
}

fn works(lab: &Lab) {
    let seen = lab.tcp_names("172.30.0.10:80", 10);
    assert!(seen.iter().all(|n| n == "b0" || n == "b1"), "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kube_proxy_node_switches_without_stale_chains() {
    let lab = Lab::new("ksw", 2);
    // What kube-proxy left: upstream's golden ruleset (its nfacct matches removed: the
    // counters are not created here).
    let golden = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/compat/kube-proxy/overall-iptables.rules"
    ))
    .expect("shared/compat beside the checkout")
    .replace(" -m nfacct --nfacct-name ct_state_invalid_dropped_pkts", "")
    .replace(" -m nfacct --nfacct-name localhost_nps_accepted_pkts", "");
    lab.on_node(&["iptables-restore", "--noflush"], Some(golden.as_bytes()));
    let before = chains(&saved(&lab, "nat"), "nat");
    assert!(before.iter().any(|c| c == "KUBE-SVC-XPGD46QRK7WJZT7O"));

    let mut e = engine(&lab, Mode::Iptables);
    let r = e.sync(false).await.remove(0).unwrap();
    assert!(r.full);
    // Every per-service chain of the old ruleset is gone (19 of them: SVC, EXT, FW, SEP).
    assert_eq!(
        r.deleted_chains,
        before
            .iter()
            .filter(|c| proxy_rules::names::is_service_chain_name(c))
            .count()
    );
    let nat = saved(&lab, "nat");
    for c in chains(&nat, "nat") {
        if proxy_rules::names::is_service_chain_name(&c) {
            assert!(
                e.proxiers()[0].state().services.keys().any(|n| {
                    let names = proxy_rules::names::IptablesChainNames::of(n);
                    [names.cluster, names.local, names.external, names.firewall].contains(&c)
                }) || c.starts_with("KUBE-SEP-"),
                "stale chain {c} left"
            );
        }
    }
    assert!(
        !nat.to_restore().contains("ns1/svc1"),
        "nothing of the old services is left"
    );
    let filter = saved(&lab, "filter").to_restore();
    assert!(
        !filter.contains("ns6/svc6") && !filter.contains("ns2/svc2"),
        "{filter}"
    );
    works(&lab);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iptables_canary_notices_a_flush_and_the_next_sync_repairs() {
    let lab = Lab::new("kci", 2);
    let mut e = engine(&lab, Mode::Iptables);
    e.sync(false).await.remove(0).unwrap();
    works(&lab);
    assert!(e.check_canaries().await);
    // Someone flushes and deletes everything in nat and mangle (firewalld does this).
    for t in ["nat", "mangle"] {
        lab.on_node(&["iptables", "-t", t, "-F"], None);
        lab.on_node(&["iptables", "-t", t, "-X"], None);
    }
    let err = lab.tcp("172.30.0.10:80", Duration::from_millis(800));
    assert!(
        err.is_err(),
        "rules are gone, the ClusterIP does not answer"
    );
    assert!(!e.check_canaries().await, "the canary is gone");
    let r = e.sync(false).await.remove(0).unwrap();
    assert!(r.full, "a lost canary forces a full sync");
    works(&lab);
    assert!(e.check_canaries().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nftables_canary_notices_a_flush_and_the_next_sync_repairs() {
    let lab = Lab::new("kcn", 2);
    let mut e = engine(&lab, Mode::Nftables);
    e.sync(false).await.remove(0).unwrap();
    works(&lab);
    lab.on_node(&["nft", "flush", "ruleset"], None);
    assert!(!e.check_canaries().await);
    let r = e.sync(false).await.remove(0).unwrap();
    assert!(r.full);
    works(&lab);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switching_modes_removes_the_other_modes_rules() {
    let lab = Lab::new("kmo", 2);
    let mut ipt = engine(&lab, Mode::Iptables);
    ipt.sync(false).await.remove(0).unwrap();
    works(&lab);
    let mut nft = engine(&lab, Mode::Nftables);
    nft.sync(false).await.remove(0).unwrap();
    works(&lab);
    for t in ["nat", "filter", "mangle"] {
        let left: Vec<String> = chains(&saved(&lab, t), t)
            .into_iter()
            .filter(|c| c.starts_with("KUBE-"))
            .collect();
        // kube-proxy's cleanup leaves kubelet's chains (KUBE-MARK-MASQ, KUBE-FIREWALL).
        assert!(
            left.iter()
                .all(|c| c == "KUBE-MARK-MASQ" || c == "KUBE-FIREWALL"),
            "{t}: {left:?}"
        );
        let d = saved(&lab, t);
        for c in d
            .table(t)
            .into_iter()
            .flat_map(|t| t.chains.iter())
            .filter(|c| c.policy.is_some())
        {
            for r in &c.rules {
                let target = r.target().unwrap_or("");
                assert!(
                    ![
                        "KUBE-SERVICES",
                        "KUBE-POSTROUTING",
                        "KUBE-NODEPORTS",
                        "KUBE-FORWARD",
                        "KUBE-EXTERNAL-SERVICES",
                        "KUBE-PROXY-FIREWALL"
                    ]
                    .contains(&target),
                    "{t} {}: {}",
                    c.name,
                    r.text()
                );
            }
        }
    }
    let mut back = engine(&lab, Mode::Iptables);
    back.sync(false).await.remove(0).unwrap();
    let tables = lab.on_node(&["nft", "list", "tables"], None);
    assert!(!tables.contains("kube-proxy"), "{tables}");
    works(&lab);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_nft_apply_keeps_the_previous_rules_and_the_next_sync_is_full() {
    let lab = Lab::new("kfa", 2);
    let mut e = engine(&lab, Mode::Nftables);
    e.sync(false).await.remove(0).unwrap();
    works(&lab);
    // Someone deletes a map element behind our back; our next partial transaction
    // deletes it too, which the kernel refuses: the whole transaction fails.
    lab.on_node(
        &[
            "nft",
            "delete",
            "element",
            "ip",
            "kube-proxy",
            "service-ips",
            "{ 172.30.0.10 . tcp . 80 }",
        ],
        None,
    );
    let tampered = nft_table(&lab);
    e.apply(Event::Slice(EndpointSliceSpec {
        endpoints: Vec::new(),
        ..web().1
    }))
    .unwrap();
    let err = e
        .sync(false)
        .await
        .remove(0)
        .expect_err("the partial transaction must fail");
    let text = err.to_string();
    assert!(
        text.contains("nft -f -") && text.contains("delete element"),
        "the error shows the failing line: {text}"
    );
    assert_eq!(
        nft_table(&lab),
        tampered,
        "a failed transaction changes nothing"
    );
    assert!(e.proxiers()[0].needs_full_sync());
    // The next sync is full (maps flushed and refilled) and succeeds: the Service has
    // no endpoints now, so its ClusterIP rejects.
    let r = e.sync(false).await.remove(0).unwrap();
    assert!(r.full);
    let refused = lab
        .tcp("172.30.0.10:80", Duration::from_secs(5))
        .expect_err("no endpoints");
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_iptables_restore_keeps_the_previous_rules() {
    let lab = Lab::new("kfi", 2);
    let mut e = engine(&lab, Mode::Iptables);
    e.sync(false).await.remove(0).unwrap();
    // Another program's chain jumps to one of our endpoint chains, so the kernel refuses
    // to delete that chain.
    let nat = saved(&lab, "nat");
    let sep = chains(&nat, "nat")
        .into_iter()
        .find(|c| c.starts_with("KUBE-SEP-"))
        .unwrap();
    lab.on_node(&["iptables", "-t", "nat", "-N", "OTHER"], None);
    lab.on_node(&["iptables", "-t", "nat", "-A", "OTHER", "-j", &sep], None);
    let before = saved(&lab, "nat").to_restore();
    // Remove every endpoint: the partial restore deletes both SEP chains.
    e.apply(Event::Slice(EndpointSliceSpec {
        endpoints: Vec::new(),
        ..web().1
    }))
    .unwrap();
    let err = e
        .sync(false)
        .await
        .remove(0)
        .expect_err("deleting a referenced chain must fail");
    assert!(err.to_string().contains("iptables-restore"), "{err}");
    // Each table of a restore commits on its own (as with kube-proxy): the nat table,
    // where the failure was, is unchanged.
    assert_eq!(
        saved(&lab, "nat").to_restore(),
        before,
        "the nat table is unchanged"
    );
    works(&lab);
    assert!(e.proxiers()[0].needs_full_sync());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nftables_config_changes_rewrite_the_table_in_place() {
    let lab = Lab::new("kcc", 2);
    let mut e = engine(&lab, Mode::Nftables);
    e.sync(false).await.remove(0).unwrap();
    works(&lab);
    // A ServiceCIDR appears and the node gets a zone label: full syncs in place.
    e.apply(Event::ServiceCidrs(vec!["172.30.0.0/16".parse().unwrap()]))
        .unwrap();
    let labels = std::collections::BTreeMap::from([(
        "topology.kubernetes.io/zone".to_owned(),
        "z1".to_owned(),
    )]);
    e.apply(Event::NodeLabels(labels)).unwrap();
    let r = e.sync(false).await.remove(0).unwrap();
    assert!(r.full);
    works(&lab);
    let table = nft_table(&lab);
    assert!(table.contains("172.30.0.0/16"), "{table}");
    // An unallocated address in the service CIDR is now dropped, not forwarded.
    let dropped = lab.tcp("172.30.0.99:80", Duration::from_millis(800));
    assert!(matches!(
        dropped.map_err(|e| e.kind()),
        Err(std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock)
    ));
}
