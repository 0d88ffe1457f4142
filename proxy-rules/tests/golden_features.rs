//! Golden lines per feature, in both modes: each case renders a small state with one
//! option or Service feature and checks the exact rules kube-proxy writes for it (and
//! the ones it must not write). The expected texts follow kube-proxy's proxiers
//! (`pkg/proxy/iptables/proxier.go`, `pkg/proxy/nftables/proxier.go`) and the formats of
//! upstream's golden tests.

use proxy_rules::config::{LocalDetector, NodePortAddresses, ProxyConfig, ZONE_LABEL};
use proxy_rules::model::{Endpoint, IpFamily, Protocol, ProxyState, ServicePort, ServicePortName};
use proxy_rules::names::{
    IptablesChainNames, NftChainNames, iptables_endpoint_chain, nft_endpoint_base,
};

fn name(port: &str, proto: Protocol) -> ServicePortName {
    ServicePortName::new("ns", "s", port, proto)
}

fn ep(ip: &str, node: Option<&str>) -> Endpoint {
    let mut e = Endpoint::ready(ip.parse().unwrap(), 8080);
    e.node_name = node.map(str::to_owned);
    e
}

fn config() -> ProxyConfig {
    ProxyConfig::new("node-a")
        .node_ip("192.168.0.2".parse().unwrap())
        .cluster_cidr("10.0.0.0/8".parse().unwrap())
}

fn one(sp: ServicePort, eps: Vec<Endpoint>) -> ProxyState {
    let mut st = ProxyState::new();
    st.set_endpoints(sp.name.clone(), eps);
    st.add_service(sp);
    st
}

fn ipt(st: &ProxyState, c: &ProxyConfig, family: IpFamily) -> String {
    proxy_rules::iptables::render(st, c, family)
        .unwrap()
        .restore_input()
}

fn nft(st: &ProxyState, c: &ProxyConfig, family: IpFamily) -> String {
    proxy_rules::nftables::render(st, c, family).unwrap().dump()
}

#[track_caller]
fn has(text: &str, line: &str) {
    assert!(
        text.lines().any(|l| l == line),
        "missing line:\n{line}\nin:\n{text}"
    );
}

#[track_caller]
fn lacks(text: &str, fragment: &str) {
    assert!(
        !text.contains(fragment),
        "unexpected {fragment:?} in:\n{text}"
    );
}

fn cluster_ip(proto: Protocol) -> ServicePort {
    ServicePort::cluster_ip(name("p", proto), "172.30.0.10".parse().unwrap(), 80)
}

#[test]
fn masquerade_all() {
    let st = one(cluster_ip(Protocol::Tcp), vec![ep("10.1.0.1", None)]);
    let c = config().masquerade_all(true);
    let svc = IptablesChainNames::of(&name("p", Protocol::Tcp)).cluster;
    let i = ipt(&st, &c, IpFamily::V4);
    has(
        &i,
        &format!(
            "-A {svc} -m comment --comment \"ns/s:p cluster IP\" -m tcp -p tcp -d 172.30.0.10 --dport 80 -j KUBE-MARK-MASQ"
        ),
    );
    lacks(&i, "! -s 10.0.0.0/8");
    let n = nft(&st, &c, IpFamily::V4);
    let chain = NftChainNames::of(&name("p", Protocol::Tcp)).cluster;
    has(
        &n,
        &format!("add rule ip kube-proxy {chain} ip daddr 172.30.0.10 jump mark-for-masquerade"),
    );
}

#[test]
fn internal_traffic_policy_local() {
    let mut sp = cluster_ip(Protocol::Tcp);
    sp.internal_policy_local = true;
    let names = IptablesChainNames::of(&sp.name);
    let nft_names = NftChainNames::of(&sp.name);
    // With a local endpoint: the ClusterIP goes to KUBE-SVL, which has only it.
    let st = one(
        sp.clone(),
        vec![
            ep("10.1.0.1", Some("node-a")),
            ep("10.1.0.2", Some("node-b")),
        ],
    );
    let i = ipt(&st, &config(), IpFamily::V4);
    has(
        &i,
        &format!(
            "-A KUBE-SERVICES -m comment --comment \"ns/s:p cluster IP\" -m tcp -p tcp -d 172.30.0.10 --dport 80 -j {}",
            names.local
        ),
    );
    has(
        &i,
        &format!(
            "-A {} -m comment --comment \"ns/s:p cluster IP\" -m tcp -p tcp -d 172.30.0.10 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ",
            names.local
        ),
    );
    has(
        &i,
        &format!(
            "-A {} -m comment --comment \"ns/s:p -> 10.1.0.1:8080\" -j {}",
            names.local,
            iptables_endpoint_chain(&sp.name, &ep("10.1.0.1", None))
        ),
    );
    lacks(&i, "10.1.0.2:8080");
    lacks(&i, &names.cluster);
    let n = nft(&st, &config(), IpFamily::V4);
    has(
        &n,
        &format!(
            "add element ip kube-proxy service-ips {{ 172.30.0.10 . tcp . 80 : goto {} }}",
            nft_names.local
        ),
    );
    // Without one: DROP (the Service has endpoints elsewhere), not REJECT.
    let st = one(sp, vec![ep("10.1.0.2", Some("node-b"))]);
    let i = ipt(&st, &config(), IpFamily::V4);
    has(
        &i,
        "-A KUBE-SERVICES -m comment --comment \"ns/s:p has no local endpoints\" -m tcp -p tcp -d 172.30.0.10 --dport 80 -j DROP",
    );
    let n = nft(&st, &config(), IpFamily::V4);
    has(
        &n,
        "add element ip kube-proxy no-endpoint-services { 172.30.0.10 . tcp . 80 comment \"ns/s:p\" : drop }",
    );
}

#[test]
fn large_cluster_mode_drops_per_endpoint_comments() {
    let st = one(
        cluster_ip(Protocol::Tcp),
        vec![ep("10.1.0.1", None), ep("10.1.0.2", None)],
    );
    let mut c = config();
    c.large_cluster_threshold = 1;
    let sp = name("p", Protocol::Tcp);
    let sep = iptables_endpoint_chain(&sp, &ep("10.1.0.1", None));
    let svc = IptablesChainNames::of(&sp).cluster;
    let i = ipt(&st, &c, IpFamily::V4);
    has(&i, &format!("-A {sep} -s 10.1.0.1 -j KUBE-MARK-MASQ"));
    has(
        &i,
        &format!("-A {sep} -m tcp -p tcp -j DNAT --to-destination 10.1.0.1:8080"),
    );
    has(
        &i,
        &format!("-A {svc} -m statistic --mode random --probability 0.5000000000 -j {sep}"),
    );
    // The cluster-IP rule keeps its comment.
    has(
        &i,
        &format!(
            "-A {svc} -m comment --comment \"ns/s:p cluster IP\" -m tcp -p tcp -d 172.30.0.10 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ"
        ),
    );
}

#[test]
fn nodeport_addresses_and_localhost_nodeports() {
    let mut sp = cluster_ip(Protocol::Tcp);
    sp.node_port = Some(30080);
    let st = one(sp, vec![ep("10.1.0.1", None)]);
    let last = "-A KUBE-SERVICES -m comment --comment \"kubernetes service nodeports; NOTE: this must be the last rule in this chain\"";
    // Default: every local address, localhost NodePorts on.
    let i = ipt(&st, &config(), IpFamily::V4);
    has(
        &i,
        &format!("{last} -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS"),
    );
    has(&i, ":KUBE-FIREWALL - [0:0]");
    // Localhost NodePorts off: 127.0.0.0/8 excluded, no KUBE-FIREWALL.
    let mut c = config();
    c.localhost_nodeports = false;
    let i = ipt(&st, &c, IpFamily::V4);
    has(
        &i,
        &format!("{last} -m addrtype --dst-type LOCAL ! -d 127.0.0.0/8 -j KUBE-NODEPORTS"),
    );
    lacks(&i, "KUBE-FIREWALL");
    lacks(&i, "-d 127.0.0.0/8 --dport 30080");
    // Specific addresses: one rule per matching node address.
    let mut c = config().nodeport_addresses(NodePortAddresses::Cidrs(vec![
        "192.168.0.0/24".parse().unwrap(),
    ]));
    c.host_addresses = vec!["192.168.0.3".parse().unwrap(), "10.9.9.9".parse().unwrap()];
    let i = ipt(&st, &c, IpFamily::V4);
    has(&i, &format!("{last} -d 192.168.0.2 -j KUBE-NODEPORTS"));
    has(&i, &format!("{last} -d 192.168.0.3 -j KUBE-NODEPORTS"));
    lacks(&i, "-d 10.9.9.9 -j KUBE-NODEPORTS");
    let n = nft(&st, &c, IpFamily::V4);
    has(&n, "add element ip kube-proxy nodeport-ips { 192.168.0.2 }");
    has(&n, "add element ip kube-proxy nodeport-ips { 192.168.0.3 }");
    // nftables with every address: fib-based dispatch, no nodeport-ips set.
    let c =
        config().nodeport_addresses(NodePortAddresses::Cidrs(vec!["0.0.0.0/0".parse().unwrap()]));
    let n = nft(&st, &c, IpFamily::V4);
    has(
        &n,
        "add rule ip kube-proxy services fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @service-nodeports",
    );
    has(
        &n,
        "add rule ip kube-proxy nodeport-endpoints-check ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @no-endpoint-nodeports",
    );
    lacks(&n, "nodeport-ips");
}

#[test]
fn ipv6() {
    let sp = ServicePort::cluster_ip(name("p", Protocol::Tcp), "fd00::10".parse().unwrap(), 80);
    let st = one(sp.clone(), vec![ep("fd00:1::5", None)]);
    let c = ProxyConfig::new("node-a")
        .node_ip("2001:db8::2".parse().unwrap())
        .cluster_cidr("fd00:1::/64".parse().unwrap());
    let sep = iptables_endpoint_chain(&sp.name, &ep("fd00:1::5", None));
    let i = ipt(&st, &c, IpFamily::V6);
    has(
        &i,
        &format!(
            "-A {sep} -m comment --comment ns/s:p -m tcp -p tcp -j DNAT --to-destination [fd00:1::5]:8080"
        ),
    );
    has(
        &i,
        "-A KUBE-SERVICES -m comment --comment \"kubernetes service nodeports; NOTE: this must be the last rule in this chain\" -m addrtype --dst-type LOCAL ! -d ::1/128 -j KUBE-NODEPORTS",
    );
    lacks(&i, "KUBE-FIREWALL");
    let n = nft(&st, &c, IpFamily::V6);
    let chain = format!(
        "endpoint-{}",
        nft_endpoint_base(&sp.name, &ep("fd00:1::5", None))
    );
    assert!(chain.ends_with("__fd00.1..5/8080"), "{chain}");
    has(
        &n,
        &format!("add rule ip6 kube-proxy {chain} ip6 saddr fd00:1::5 jump mark-for-masquerade"),
    );
    has(
        &n,
        &format!("add rule ip6 kube-proxy {chain} meta l4proto tcp dnat to [fd00:1::5]:8080"),
    );
    has(
        &n,
        "add rule ip6 kube-proxy nodeport-endpoints-check ip6 daddr @nodeport-ips meta l4proto . th dport vmap @no-endpoint-nodeports",
    );
}

#[test]
fn terminating_fallback_and_topology() {
    let mut term = ep("10.1.0.7", None);
    term.ready = false;
    term.terminating = true;
    let st = one(cluster_ip(Protocol::Tcp), vec![term.clone()]);
    let sp = name("p", Protocol::Tcp);
    let i = ipt(&st, &config(), IpFamily::V4);
    has(
        &i,
        &format!(
            "-A {} -m comment --comment \"ns/s:p -> 10.1.0.7:8080\" -j {}",
            IptablesChainNames::of(&sp).cluster,
            iptables_endpoint_chain(&sp, &term)
        ),
    );
    // Zone hints: only the endpoint hinted for our zone.
    let mut a = ep("10.1.0.1", None);
    a.zone_hints = vec!["z1".into()];
    let mut b = ep("10.1.0.2", None);
    b.zone_hints = vec!["z2".into()];
    let st = one(cluster_ip(Protocol::Tcp), vec![a, b]);
    let mut c = config();
    c.node_labels.insert(ZONE_LABEL.into(), "z1".into());
    let i = ipt(&st, &c, IpFamily::V4);
    assert!(
        i.contains("10.1.0.1:8080") && !i.contains("10.1.0.2:8080"),
        "{i}"
    );
    let n = nft(&st, &c, IpFamily::V4);
    assert!(
        n.contains("numgen random mod 1 vmap") && !n.contains("10.1.0.2/8080"),
        "{n}"
    );
}

#[test]
fn source_ranges_containing_the_node_allow_the_lb_ip_itself() {
    let mut sp = cluster_ip(Protocol::Tcp);
    sp.load_balancer_ips = vec!["5.6.7.8".parse().unwrap()];
    sp.load_balancer_source_ranges = vec!["192.168.0.0/16".parse().unwrap()];
    let st = one(sp.clone(), vec![ep("10.1.0.1", None)]);
    let names = IptablesChainNames::of(&sp.name);
    let i = ipt(&st, &config(), IpFamily::V4);
    has(
        &i,
        &format!(
            "-A {} -m comment --comment \"ns/s:p loadbalancer IP\" -s 192.168.0.0/16 -j {}",
            names.firewall, names.external
        ),
    );
    has(
        &i,
        &format!(
            "-A {} -m comment --comment \"ns/s:p loadbalancer IP\" -s 5.6.7.8 -j {}",
            names.firewall, names.external
        ),
    );
    has(
        &i,
        &format!(
            "-A KUBE-PROXY-FIREWALL -m comment --comment \"ns/s:p traffic not accepted by {}\" -m tcp -p tcp -d 5.6.7.8 --dport 80 -j DROP",
            names.firewall
        ),
    );
    let n = nft(&st, &config(), IpFamily::V4);
    has(
        &n,
        &format!(
            "add rule ip kube-proxy {} ip saddr != {{ 192.168.0.0/16 , 5.6.7.8 }} drop",
            NftChainNames::of(&sp.name).firewall
        ),
    );
}

#[test]
fn udp_sctp_and_unnamed_ports() {
    let udp = ServicePort::cluster_ip(name("", Protocol::Udp), "172.30.0.53".parse().unwrap(), 53);
    let st = one(udp.clone(), vec![ep("10.1.0.1", None)]);
    let i = ipt(&st, &config(), IpFamily::V4);
    // An unnamed port: the comment is just ns/name.
    has(
        &i,
        &format!(
            "-A KUBE-SERVICES -m comment --comment \"ns/s cluster IP\" -m udp -p udp -d 172.30.0.53 --dport 53 -j {}",
            IptablesChainNames::of(&udp.name).cluster
        ),
    );
    let n = nft(&st, &config(), IpFamily::V4);
    has(
        &n,
        &format!(
            "add element ip kube-proxy service-ips {{ 172.30.0.53 . udp . 53 : goto {} }}",
            NftChainNames::of(&udp.name).cluster
        ),
    );
    assert!(
        NftChainNames::of(&udp.name).cluster.ends_with("-ns/s/udp/"),
        "an unnamed port leaves the last part empty"
    );
    let sctp = ServicePort::cluster_ip(
        name("p", Protocol::Sctp),
        "172.30.0.54".parse().unwrap(),
        9000,
    );
    let st = one(sctp.clone(), vec![ep("10.1.0.1", None)]);
    let i = ipt(&st, &config(), IpFamily::V4);
    has(
        &i,
        &format!(
            "-A {} -m comment --comment ns/s:p -m sctp -p sctp -j DNAT --to-destination 10.1.0.1:8080",
            iptables_endpoint_chain(&sctp.name, &ep("10.1.0.1", None))
        ),
    );
    let n = nft(&st, &config(), IpFamily::V4);
    assert!(n.contains("meta l4proto sctp dnat to 10.1.0.1:8080"), "{n}");
}

#[test]
fn bridge_interface_detection() {
    let mut sp = cluster_ip(Protocol::Tcp);
    sp.node_port = Some(30080);
    sp.external_policy_local = true;
    let st = one(sp.clone(), vec![ep("10.1.0.1", Some("node-a"))]);
    let mut c = config();
    c.local_detector = LocalDetector::BridgeInterface("cbr0".into());
    let names = IptablesChainNames::of(&sp.name);
    let i = ipt(&st, &c, IpFamily::V4);
    has(
        &i,
        &format!(
            "-A {} -m comment --comment \"ns/s:p cluster IP\" -m tcp -p tcp -d 172.30.0.10 --dport 80 ! -i cbr0 -j KUBE-MARK-MASQ",
            names.cluster
        ),
    );
    has(
        &i,
        &format!(
            "-A {} -m comment --comment \"pod traffic for ns/s:p external destinations\" -i cbr0 -j {}",
            names.external, names.cluster
        ),
    );
    has(&i, &format!("-A {} -j {}", names.external, names.local));
    let n = nft(&st, &c, IpFamily::V4);
    let nn = NftChainNames::of(&sp.name);
    has(
        &n,
        &format!(
            "add rule ip kube-proxy {} iifname \"cbr0\" goto {} comment \"short-circuit pod traffic\"",
            nn.external, nn.cluster
        ),
    );
    has(
        &n,
        &format!(
            "add rule ip kube-proxy {} ip daddr 172.30.0.10 iifname != \"cbr0\" jump mark-for-masquerade",
            nn.cluster
        ),
    );
    has(
        &n,
        &format!("add rule ip kube-proxy {} goto {}", nn.external, nn.local),
    );
}
