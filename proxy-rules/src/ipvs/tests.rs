//! Unit tests of the planner, the diff and the applier (with the fakes).

use std::net::IpAddr;
use std::time::Duration;

use super::*;
use crate::config::{NodePortAddresses, ProxyConfig};
use crate::model::{Endpoint, IpFamily, Protocol, ProxyState, ServicePort, ServicePortName};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn ep(addr: &str, port: u16, node: Option<&str>) -> Endpoint {
    let mut e = Endpoint::ready(ip(addr), port);
    e.node_name = node.map(str::to_owned);
    e
}

fn name(svc: &str, proto: Protocol) -> ServicePortName {
    ServicePortName::new("ns1", svc, "p80", proto)
}

/// Node `node-a`, node IP 192.168.0.2, another address 10.20.0.2, loopback; pods in
/// 10.0.0.0/8.
fn config() -> ProxyConfig {
    let mut c = ProxyConfig::new("node-a")
        .node_ip(ip("192.168.0.2"))
        .cluster_cidr("10.0.0.0/8".parse().unwrap());
    c.host_addresses = vec![ip("10.20.0.2"), ip("127.0.0.1"), ip("fe80::1")];
    c
}

fn one(state: &mut ProxyState, port: ServicePort, eps: Vec<Endpoint>) {
    let n = port.name.clone();
    state.add_service(port);
    state.set_endpoints(n, eps);
}

fn plan_v4(state: &ProxyState) -> IpvsPlan {
    plan(state, &config(), IpFamily::V4, &IpvsOptions::default()).unwrap()
}

fn rs(p: &PlannedService) -> Vec<String> {
    p.real_servers.iter().map(RealServer::endpoint).collect()
}

fn entries(plan: &IpvsPlan, set: &str) -> Vec<String> {
    plan.ipset(set).unwrap().entries.iter().cloned().collect()
}

fn key(addr: &str, protocol: Protocol, port: u16) -> ServiceKey {
    ServiceKey {
        address: ip(addr),
        protocol,
        port,
    }
}

#[test]
fn cluster_ip_service_golden_text() {
    let mut state = ProxyState::new();
    one(
        &mut state,
        ServicePort::cluster_ip(name("svc1", Protocol::Tcp), ip("172.30.0.41"), 80),
        vec![
            ep("10.180.0.1", 8080, Some("node-a")),
            ep("10.180.0.2", 8080, Some("node-b")),
        ],
    );
    let p = plan_v4(&state);
    let want = "\
# IPVS plan (IPv4): 1 virtual servers, 2 real servers, scheduler rr
# virtual servers (ipvsadm -Ln)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
TCP  172.30.0.41:80 rr
  -> 10.180.0.1:8080              Masq    1      0          0
  -> 10.180.0.2:8080              Masq    1      0          0
# addresses on kube-ipvs0 (ip addr add ADDRESS dev kube-ipvs0)
172.30.0.41/32
# sysctls
net.ipv4.vs.conntrack=1
net.ipv4.vs.expire_nodest_conn=1
net.ipv4.vs.expire_quiescent_template=1
net.ipv4.ip_forward=1
# ipsets (ipset restore)
create KUBE-LOOP-BACK hash:ip,port,ip family inet hashsize 1024 maxelem 65536 -exist
create KUBE-CLUSTER-IP hash:ip,port family inet hashsize 1024 maxelem 65536 -exist
create KUBE-EXTERNAL-IP hash:ip,port family inet hashsize 1024 maxelem 65536 -exist
create KUBE-EXTERNAL-IP-LOCAL hash:ip,port family inet hashsize 1024 maxelem 65536 -exist
create KUBE-LOAD-BALANCER hash:ip,port family inet hashsize 1024 maxelem 65536 -exist
create KUBE-LOAD-BALANCER-FW hash:ip,port family inet hashsize 1024 maxelem 65536 -exist
create KUBE-LOAD-BALANCER-LOCAL hash:ip,port family inet hashsize 1024 maxelem 65536 -exist
create KUBE-LOAD-BALANCER-SOURCE-IP hash:ip,port,ip family inet hashsize 1024 maxelem 65536 -exist
create KUBE-LOAD-BALANCER-SOURCE-CIDR hash:ip,port,net family inet hashsize 1024 maxelem 65536 -exist
create KUBE-NODE-PORT-TCP bitmap:port range 0-65535 -exist
create KUBE-NODE-PORT-LOCAL-TCP bitmap:port range 0-65535 -exist
create KUBE-NODE-PORT-UDP bitmap:port range 0-65535 -exist
create KUBE-NODE-PORT-LOCAL-UDP bitmap:port range 0-65535 -exist
create KUBE-NODE-PORT-SCTP-HASH hash:ip,port family inet hashsize 1024 maxelem 65536 -exist
create KUBE-NODE-PORT-LOCAL-SCTP-HASH hash:ip,port family inet hashsize 1024 maxelem 65536 -exist
create KUBE-HEALTH-CHECK-NODE-PORT bitmap:port range 0-65535 -exist
create KUBE-IPVS-IPS hash:ip family inet hashsize 1024 maxelem 65536 -exist
flush KUBE-LOOP-BACK
add KUBE-LOOP-BACK 10.180.0.1,tcp:8080,10.180.0.1
flush KUBE-CLUSTER-IP
add KUBE-CLUSTER-IP 172.30.0.41,tcp:80
flush KUBE-EXTERNAL-IP
flush KUBE-EXTERNAL-IP-LOCAL
flush KUBE-LOAD-BALANCER
flush KUBE-LOAD-BALANCER-FW
flush KUBE-LOAD-BALANCER-LOCAL
flush KUBE-LOAD-BALANCER-SOURCE-IP
flush KUBE-LOAD-BALANCER-SOURCE-CIDR
flush KUBE-NODE-PORT-TCP
flush KUBE-NODE-PORT-LOCAL-TCP
flush KUBE-NODE-PORT-UDP
flush KUBE-NODE-PORT-LOCAL-UDP
flush KUBE-NODE-PORT-SCTP-HASH
flush KUBE-NODE-PORT-LOCAL-SCTP-HASH
flush KUBE-HEALTH-CHECK-NODE-PORT
flush KUBE-IPVS-IPS
add KUBE-IPVS-IPS 172.30.0.41
# iptables (iptables-restore --noflush)
*nat
:KUBE-SERVICES - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-NODE-PORT - [0:0]
:KUBE-LOAD-BALANCER - [0:0]
:KUBE-MARK-MASQ - [0:0]
-A KUBE-SERVICES -s 127.0.0.0/8 -j RETURN
-A KUBE-POSTROUTING -m comment --comment \"Kubernetes endpoints dst ip:port, source ip for solving hairpin purpose\" -m set --match-set KUBE-LOOP-BACK dst,dst,src -j MASQUERADE
-A KUBE-SERVICES -m comment --comment \"Kubernetes service cluster ip + port for masquerade purpose\" -m set --match-set KUBE-CLUSTER-IP dst,dst ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
-A KUBE-SERVICES -m addrtype --dst-type LOCAL -j KUBE-NODE-PORT
-A KUBE-LOAD-BALANCER -j KUBE-MARK-MASQ
-A KUBE-SERVICES -m set --match-set KUBE-CLUSTER-IP dst,dst -j ACCEPT
-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000
-A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE --random-fully
-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000
COMMIT
*filter
:KUBE-FORWARD - [0:0]
:KUBE-NODE-PORT - [0:0]
:KUBE-PROXY-FIREWALL - [0:0]
:KUBE-SOURCE-RANGES-FIREWALL - [0:0]
:KUBE-IPVS-FILTER - [0:0]
:KUBE-IPVS-OUT-FILTER - [0:0]
-A KUBE-SOURCE-RANGES-FIREWALL -j DROP
-A KUBE-FORWARD -m comment --comment \"kubernetes forwarding rules\" -m mark --mark 0x4000/0x4000 -j ACCEPT
-A KUBE-FORWARD -m comment --comment \"kubernetes forwarding conntrack rule\" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A KUBE-NODE-PORT -m comment --comment \"Kubernetes health check node port\" -m set --match-set KUBE-HEALTH-CHECK-NODE-PORT dst -j ACCEPT
-A KUBE-IPVS-FILTER -m set --match-set KUBE-LOAD-BALANCER dst,dst -j RETURN
-A KUBE-IPVS-FILTER -m set --match-set KUBE-CLUSTER-IP dst,dst -j RETURN
-A KUBE-IPVS-FILTER -m set --match-set KUBE-EXTERNAL-IP dst,dst -j RETURN
-A KUBE-IPVS-FILTER -m set --match-set KUBE-EXTERNAL-IP-LOCAL dst,dst -j RETURN
-A KUBE-IPVS-FILTER -m set --match-set KUBE-HEALTH-CHECK-NODE-PORT dst -j RETURN
-A KUBE-IPVS-FILTER -m conntrack --ctstate NEW -m set --match-set KUBE-IPVS-IPS dst -j REJECT
COMMIT
# jump rules from built-in chains (iptables -t TABLE -I ...)
-t nat -A OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES
-t nat -A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES
-t nat -A POSTROUTING -m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING
-t filter -A FORWARD -m comment --comment \"kubernetes forwarding rules\" -j KUBE-FORWARD
-t filter -A INPUT -m comment --comment \"kubernetes health check rules\" -j KUBE-NODE-PORT
-t filter -A INPUT -m comment --comment \"kube-proxy firewall rules\" -j KUBE-PROXY-FIREWALL
-t filter -A FORWARD -m comment --comment \"kube-proxy firewall rules\" -j KUBE-PROXY-FIREWALL
-t filter -A INPUT -m comment --comment \"kubernetes ipvs access filter\" -j KUBE-IPVS-FILTER
-t filter -A OUTPUT -m comment --comment \"kubernetes ipvs access filter\" -j KUBE-IPVS-OUT-FILTER
";
    let got = p.to_text();
    if got != want {
        for (i, (g, w)) in got.lines().zip(want.lines()).enumerate() {
            assert_eq!(g, w, "line {}", i + 1);
        }
        assert_eq!(got.lines().count(), want.lines().count());
    }
    assert_eq!(p.to_string(), got);
}

#[test]
fn masquerade_choice_follows_config() {
    let mut state = ProxyState::new();
    one(
        &mut state,
        ServicePort::cluster_ip(name("svc1", Protocol::Tcp), ip("172.30.0.41"), 80),
        vec![],
    );
    let cluster_rule = |c: &ProxyConfig| -> String {
        let p = plan(&state, c, IpFamily::V4, &IpvsOptions::default()).unwrap();
        p.iptables
            .nat
            .rules
            .iter()
            .find(|r| {
                r.contains("KUBE-CLUSTER-IP dst,dst") && r.contains("MARK-MASQ")
                    || r.contains("src,dst")
            })
            .cloned()
            .unwrap()
    };
    let mut c = config().masquerade_all(true);
    assert!(cluster_rule(&c).ends_with("--match-set KUBE-CLUSTER-IP dst,dst -j KUBE-MARK-MASQ"));
    c = ProxyConfig::new("node-a");
    // No local traffic detector: masquerade traffic whose source is itself a VIP.
    assert!(cluster_rule(&c).ends_with("--match-set KUBE-CLUSTER-IP src,dst -j KUBE-MARK-MASQ"));
    c.local_detector = crate::config::LocalDetector::InterfaceNamePrefix("veth".into());
    assert!(cluster_rule(&c).ends_with("dst,dst ! -i veth+ -j KUBE-MARK-MASQ"));
    c.random_fully = false;
    let p = plan(&state, &c, IpFamily::V4, &IpvsOptions::default()).unwrap();
    assert!(
        p.iptables
            .nat
            .rules
            .iter()
            .any(|r| r.ends_with("-j MASQUERADE"))
    );
}

#[test]
fn no_endpoints_still_makes_the_virtual_server() {
    let mut state = ProxyState::new();
    state.add_service(ServicePort::cluster_ip(
        name("svc1", Protocol::Udp),
        ip("172.30.0.10"),
        53,
    ));
    let p = plan_v4(&state);
    assert_eq!(p.services.len(), 1);
    assert!(p.services[0].real_servers.is_empty());
    assert_eq!(p.services[0].kind, VirtualServerKind::ClusterIp);
    assert_eq!(
        entries(&p, ipset::names::CLUSTER_IP),
        ["172.30.0.10,udp:53"]
    );
    assert!(p.ipvsadm_text().ends_with("UDP  172.30.0.10:53 rr\n"));
}

#[test]
fn node_ports_on_every_node_address() {
    let mut state = ProxyState::new();
    let mut svc = ServicePort::cluster_ip(name("svc1", Protocol::Tcp), ip("172.30.0.41"), 80);
    svc.node_port = Some(30080);
    one(&mut state, svc, vec![ep("10.180.0.1", 80, None)]);
    let p = plan_v4(&state);
    let nodeports: Vec<String> = p
        .services
        .iter()
        .filter(|s| s.kind == VirtualServerKind::NodePort)
        .map(|s| s.service.to_string())
        .collect();
    // Loopback and the IPv6 link-local address are left out; node IPs are not bound.
    assert_eq!(nodeports, ["192.168.0.2:30080/tcp", "10.20.0.2:30080/tcp"]);
    assert_eq!(p.bound_addresses, [ip("172.30.0.41")]);
    assert_eq!(entries(&p, ipset::names::NODE_PORT_TCP), ["30080"]);
    assert!(p.iptables.nat.rules.contains(
        &"-A KUBE-NODE-PORT -p tcp -m comment --comment \"Kubernetes nodeport TCP port for masquerade purpose\" -m set --match-set KUBE-NODE-PORT-TCP dst -j KUBE-MARK-MASQ".to_owned()
    ));
    for s in p.services.iter() {
        assert_eq!(rs(s), ["10.180.0.1:80"]);
    }

    // --nodeport-addresses picks matching addresses.
    let c = config().nodeport_addresses(NodePortAddresses::Cidrs(vec![
        "10.20.0.0/16".parse().unwrap(),
    ]));
    let p = plan(&state, &c, IpFamily::V4, &IpvsOptions::default()).unwrap();
    let n: Vec<_> = p
        .services
        .iter()
        .filter(|s| s.kind == VirtualServerKind::NodePort)
        .collect();
    assert_eq!(n.len(), 1);
    assert_eq!(n[0].service.address, ip("10.20.0.2"));

    // No usable node address: the NodePort is left out, set and all.
    let c = ProxyConfig::new("node-a");
    let p = plan(&state, &c, IpFamily::V4, &IpvsOptions::default()).unwrap();
    assert_eq!(p.services.len(), 1);
    assert!(p.ipset(ipset::names::NODE_PORT_TCP).unwrap().is_empty());
}

#[test]
fn sctp_and_udp_node_ports_use_their_sets() {
    let mut state = ProxyState::new();
    let mut sctp = ServicePort::cluster_ip(name("sctp", Protocol::Sctp), ip("172.30.0.50"), 7777);
    sctp.node_port = Some(30777);
    sctp.external_policy_local = true;
    one(&mut state, sctp, vec![]);
    let mut udp = ServicePort::cluster_ip(name("udp", Protocol::Udp), ip("172.30.0.51"), 53);
    udp.node_port = Some(30053);
    one(&mut state, udp, vec![]);
    let p = plan_v4(&state);
    assert_eq!(
        entries(&p, ipset::names::NODE_PORT_SCTP),
        ["10.20.0.2,sctp:30777", "192.168.0.2,sctp:30777"]
    );
    assert_eq!(
        entries(&p, ipset::names::NODE_PORT_LOCAL_SCTP),
        ["10.20.0.2,sctp:30777", "192.168.0.2,sctp:30777"]
    );
    assert_eq!(entries(&p, ipset::names::NODE_PORT_UDP), ["30053"]);
    let nat = &p.iptables.nat.rules;
    let local_at = nat
        .iter()
        .position(|r| r.contains("KUBE-NODE-PORT-LOCAL-SCTP-HASH dst,dst -j RETURN"))
        .unwrap();
    let all_at = nat
        .iter()
        .position(|r| r.contains("KUBE-NODE-PORT-SCTP-HASH dst,dst -j KUBE-MARK-MASQ"))
        .unwrap();
    assert!(
        local_at < all_at,
        "Local must return before the masquerade rule"
    );
    assert!(nat[all_at].starts_with("-A KUBE-NODE-PORT -p sctp "));
}

#[test]
fn load_balancer_with_source_ranges() {
    let mut state = ProxyState::new();
    let mut svc = ServicePort::cluster_ip(name("lb", Protocol::Tcp), ip("172.30.0.42"), 80);
    svc.load_balancer_ips = vec![ip("1.2.3.4")];
    svc.load_balancer_source_ranges = vec![
        "203.0.113.0/25".parse().unwrap(),
        "192.168.0.0/24".parse().unwrap(),
    ];
    one(&mut state, svc.clone(), vec![ep("10.180.0.1", 80, None)]);
    let p = plan_v4(&state);
    assert_eq!(p.bound_addresses, [ip("1.2.3.4"), ip("172.30.0.42")]);
    assert_eq!(entries(&p, ipset::names::LOAD_BALANCER), ["1.2.3.4,tcp:80"]);
    assert_eq!(
        entries(&p, ipset::names::LOAD_BALANCER_FW),
        ["1.2.3.4,tcp:80"]
    );
    assert_eq!(
        entries(&p, ipset::names::LOAD_BALANCER_SOURCE_CIDR),
        [
            "1.2.3.4,tcp:80,192.168.0.0/24",
            "1.2.3.4,tcp:80,203.0.113.0/25"
        ]
    );
    // The node IP is in a range: the LB IP may reach itself from the node.
    assert_eq!(
        entries(&p, ipset::names::LOAD_BALANCER_SOURCE_IP),
        ["1.2.3.4,tcp:80,1.2.3.4"]
    );
    assert!(
        !p.iptables
            .filter
            .rules
            .iter()
            .any(|r| r.contains("KUBE-IPVS-OUT-FILTER -s"))
    );
    let filter = &p.iptables.filter.rules;
    assert_eq!(
        filter[..4],
        [
            "-A KUBE-PROXY-FIREWALL -m comment --comment \"Kubernetes service load balancer ip + port for load balancer with sourceRange\" -m set --match-set KUBE-LOAD-BALANCER-FW dst,dst -j KUBE-SOURCE-RANGES-FIREWALL",
            "-A KUBE-SOURCE-RANGES-FIREWALL -m comment --comment \"Kubernetes service load balancer ip + port + source cidr for packet filter purpose\" -m set --match-set KUBE-LOAD-BALANCER-SOURCE-CIDR dst,dst,src -j RETURN",
            "-A KUBE-SOURCE-RANGES-FIREWALL -m comment --comment \"Kubernetes service load balancer ip + port + source IP for packet filter purpose\" -m set --match-set KUBE-LOAD-BALANCER-SOURCE-IP dst,dst,src -j RETURN",
            "-A KUBE-SOURCE-RANGES-FIREWALL -j DROP",
        ]
    );
    let nat = &p.iptables.nat.rules;
    assert!(nat.contains(&"-A KUBE-SERVICES -m comment --comment \"Kubernetes service lb portal\" -m set --match-set KUBE-LOAD-BALANCER dst,dst -j KUBE-LOAD-BALANCER".to_owned()));
    assert!(nat.contains(
        &"-A KUBE-SERVICES -m set --match-set KUBE-LOAD-BALANCER dst,dst -j ACCEPT".to_owned()
    ));

    // Ranges without the node: the node's own traffic to the LB IP is dropped.
    svc.load_balancer_source_ranges = vec!["203.0.113.0/25".parse().unwrap()];
    let mut state = ProxyState::new();
    one(&mut state, svc, vec![]);
    let p = plan_v4(&state);
    assert!(
        p.ipset(ipset::names::LOAD_BALANCER_SOURCE_IP)
            .unwrap()
            .is_empty()
    );
    assert!(p.iptables.filter.rules.contains(
        &"-A KUBE-IPVS-OUT-FILTER -s 1.2.3.4 -m ipvs --vaddr 1.2.3.4 --vproto tcp --vport 80 -j DROP".to_owned()
    ));
}

#[test]
fn external_ips_on_a_node_address_are_not_bound() {
    let mut state = ProxyState::new();
    let mut svc = ServicePort::cluster_ip(name("ext", Protocol::Tcp), ip("172.30.0.43"), 80);
    svc.external_ips = vec![ip("192.168.0.2"), ip("198.51.100.7")];
    one(&mut state, svc, vec![ep("10.180.0.1", 80, None)]);
    let p = plan_v4(&state);
    assert_eq!(p.bound_addresses, [ip("172.30.0.43"), ip("198.51.100.7")]);
    assert_eq!(
        entries(&p, ipset::names::EXTERNAL_IP),
        ["192.168.0.2,tcp:80", "198.51.100.7,tcp:80"]
    );
    assert_eq!(
        entries(&p, ipset::names::IPVS_IPS),
        ["172.30.0.43", "198.51.100.7"]
    );
    let nat = &p.iptables.nat.rules;
    let c = "\"Kubernetes service external ip + port for masquerade and filter purpose\"";
    assert!(nat.contains(&format!("-A KUBE-SERVICES -m comment --comment {c} -m set --match-set KUBE-EXTERNAL-IP dst,dst -j KUBE-MARK-MASQ")));
    assert!(nat.contains(&format!("-A KUBE-SERVICES -m comment --comment {c} -m set --match-set KUBE-EXTERNAL-IP dst,dst -m physdev ! --physdev-is-in -m addrtype ! --src-type LOCAL -j ACCEPT")));
    assert!(nat.contains(&format!("-A KUBE-SERVICES -m comment --comment {c} -m set --match-set KUBE-EXTERNAL-IP dst,dst -m addrtype --dst-type LOCAL -j ACCEPT")));
    assert_eq!(
        p.services
            .iter()
            .filter(|s| s.kind == VirtualServerKind::ExternalIp)
            .count(),
        2
    );
}

#[test]
fn client_ip_affinity_makes_services_persistent() {
    let mut state = ProxyState::new();
    let mut svc = ServicePort::cluster_ip(name("sticky", Protocol::Tcp), ip("172.30.0.44"), 80);
    svc.session_affinity_seconds = Some(10_800);
    svc.node_port = Some(30044);
    one(&mut state, svc, vec![ep("10.180.0.3", 80, None)]);
    let p = plan_v4(&state);
    for s in &p.services {
        assert_eq!(s.service.flags, ServiceFlags::PERSISTENT);
        assert_eq!(s.service.timeout, 10_800);
        assert_eq!(s.service.netmask, 0xffff_ffff);
    }
    assert!(
        p.ipvsadm_text()
            .contains("TCP  172.30.0.44:80 rr persistent 10800\n")
    );

    let mh = IpvsOptions::new().scheduler("mh").build().unwrap();
    let p = plan(&state, &config(), IpFamily::V4, &mh).unwrap();
    assert_eq!(
        p.services[0].service.flags,
        ServiceFlags::PERSISTENT.with(ServiceFlags::SOURCE_HASH)
    );
    assert!(
        p.ipvsadm_text()
            .contains("TCP  172.30.0.44:80 mh persistent 10800 mh-port\n")
    );
}

#[test]
fn local_policies_use_local_endpoints_and_fall_back() {
    let eps = vec![
        ep("10.180.0.1", 80, Some("node-a")),
        ep("10.180.0.2", 80, Some("node-b")),
    ];
    let mut svc = ServicePort::cluster_ip(name("local", Protocol::Tcp), ip("172.30.0.45"), 80);
    svc.node_port = Some(30045);
    svc.external_ips = vec![ip("198.51.100.8")];
    svc.load_balancer_ips = vec![ip("1.2.3.5")];
    svc.external_policy_local = true;
    svc.health_check_node_port = Some(32000);
    let mut state = ProxyState::new();
    one(&mut state, svc.clone(), eps);
    let p = plan_v4(&state);
    for s in &p.services {
        let want: &[&str] = match s.kind {
            // externalTrafficPolicy does not touch the ClusterIP.
            VirtualServerKind::ClusterIp => &["10.180.0.1:80", "10.180.0.2:80"],
            _ => &["10.180.0.1:80"],
        };
        assert_eq!(rs(s), want, "{}", s.service);
    }
    assert_eq!(entries(&p, ipset::names::NODE_PORT_LOCAL_TCP), ["30045"]);
    assert_eq!(entries(&p, ipset::names::NODE_PORT_TCP), ["30045"]);
    assert_eq!(
        entries(&p, ipset::names::LOAD_BALANCER_LOCAL),
        ["1.2.3.5,tcp:80"]
    );
    assert_eq!(
        entries(&p, ipset::names::EXTERNAL_IP_LOCAL),
        ["198.51.100.8,tcp:80"]
    );
    assert!(entries(&p, ipset::names::EXTERNAL_IP).is_empty());
    assert_eq!(entries(&p, ipset::names::HEALTH_CHECK_NODE_PORT), ["32000"]);
    assert_eq!(
        entries(&p, ipset::names::LOOP_BACK),
        ["10.180.0.1,tcp:80,10.180.0.1"]
    );
    assert!(p.no_local_external.is_empty());
    // Local external IPs get the accept rules but no masquerade.
    assert!(
        !p.iptables
            .nat
            .rules
            .iter()
            .any(|r| r.contains("KUBE-EXTERNAL-IP-LOCAL dst,dst -j KUBE-MARK-MASQ"))
    );
    assert!(p.iptables.nat.rules.iter().any(|r| {
        r.contains("KUBE-EXTERNAL-IP-LOCAL dst,dst -m addrtype --dst-type LOCAL -j ACCEPT")
    }));

    // No local endpoint: IPVS mode falls back to every endpoint (PR 97081).
    let mut state = ProxyState::new();
    one(&mut state, svc, vec![ep("10.180.0.2", 80, Some("node-b"))]);
    let p = plan_v4(&state);
    for s in &p.services {
        assert_eq!(rs(s), ["10.180.0.2:80"], "{}", s.service);
    }
    assert_eq!(p.no_local_external.len(), 1);
    assert!(entries(&p, ipset::names::LOOP_BACK).is_empty());
}

#[test]
fn internal_local_only_service_has_nothing_to_fall_back_to() {
    let mut svc = ServicePort::cluster_ip(name("itp", Protocol::Tcp), ip("172.30.0.46"), 80);
    svc.internal_policy_local = true;
    let mut state = ProxyState::new();
    one(
        &mut state,
        svc.clone(),
        vec![ep("10.180.0.2", 80, Some("node-b"))],
    );
    let p = plan_v4(&state);
    assert!(p.services[0].real_servers.is_empty());
    assert_eq!(p.no_local_internal.len(), 1);
    let mut state = ProxyState::new();
    one(
        &mut state,
        svc,
        vec![
            ep("10.180.0.1", 80, Some("node-a")),
            ep("10.180.0.2", 80, Some("node-b")),
        ],
    );
    assert_eq!(rs(&plan_v4(&state).services[0]), ["10.180.0.1:80"]);
}

#[test]
fn terminating_endpoints_are_a_fallback() {
    let mut term = ep("10.180.0.9", 80, None);
    term.ready = false;
    term.terminating = true;
    let mut state = ProxyState::new();
    one(
        &mut state,
        ServicePort::cluster_ip(name("t", Protocol::Tcp), ip("172.30.0.47"), 80),
        vec![term.clone(), ep("10.180.0.1", 80, None)],
    );
    assert_eq!(rs(&plan_v4(&state).services[0]), ["10.180.0.1:80"]);
    let mut state = ProxyState::new();
    one(
        &mut state,
        ServicePort::cluster_ip(name("t", Protocol::Tcp), ip("172.30.0.47"), 80),
        vec![term],
    );
    assert_eq!(rs(&plan_v4(&state).services[0]), ["10.180.0.9:80"]);
}

#[test]
fn ipv6_plan() {
    let mut c = ProxyConfig::new("node-a")
        .node_ip(ip("fd00:1::2"))
        .cluster_cidr("fd00:10::/64".parse().unwrap());
    c.host_addresses = vec![ip("::1"), ip("fe80::2")];
    let mut svc = ServicePort::cluster_ip(name("v6", Protocol::Tcp), ip("fd00:30::41"), 80);
    svc.node_port = Some(30080);
    svc.load_balancer_ips = vec![ip("2001:db8::5")];
    svc.load_balancer_source_ranges = vec!["2001:db8:1::/48".parse().unwrap()];
    let mut state = ProxyState::new();
    one(
        &mut state,
        svc,
        vec![ep("fd00:10::5", 8080, Some("node-a"))],
    );
    let p = plan(&state, &c, IpFamily::V6, &IpvsOptions::default()).unwrap();
    let all: Vec<String> = p.services.iter().map(|s| s.service.to_string()).collect();
    assert_eq!(
        all,
        [
            "[fd00:30::41]:80/tcp",
            "[2001:db8::5]:80/tcp",
            "[fd00:1::2]:30080/tcp"
        ]
    );
    assert!(p.services.iter().all(|s| s.service.netmask == 128));
    assert_eq!(rs(&p.services[0]), ["[fd00:10::5]:8080"]);
    assert_eq!(p.ipsets[0].name, "KUBE-6-LOOP-BACK");
    assert_eq!(
        entries(&p, ipset::names::LOOP_BACK),
        ["fd00:10::5,tcp:8080,fd00:10::5"]
    );
    assert_eq!(
        entries(&p, ipset::names::LOAD_BALANCER_SOURCE_CIDR),
        ["2001:db8::5,tcp:80,2001:db8:1::/48"]
    );
    let text = p.to_text();
    assert!(text.contains("TCP  [fd00:30::41]:80 rr\n  -> [fd00:10::5]:8080"));
    assert!(text.contains("\nfd00:30::41/128\n"));
    assert!(text.contains("create KUBE-6-LOAD-BALANCER-SOURCE-CID hash:ip,port,net family inet6 hashsize 1024 maxelem 65536 -exist\n"));
    assert!(text.contains("# iptables (ip6tables-restore --noflush)"));
    assert_eq!(
        p.iptables.nat.rules[0],
        "-A KUBE-SERVICES -s ::1/128 -j RETURN"
    );
    assert!(p.iptables.nat.rules.iter().any(|r| {
        r.contains("--match-set KUBE-6-CLUSTER-IP dst,dst ! -s fd00:10::/64 -j KUBE-MARK-MASQ")
    }));
    // The node IP is outside the source range: the node may not use the LB IP.
    assert!(p.iptables.filter.rules.contains(
        &"-A KUBE-IPVS-OUT-FILTER -s 2001:db8::5 -m ipvs --vaddr 2001:db8::5 --vproto tcp --vport 80 -j DROP".to_owned()
    ));
    // IPv4 objects in an IPv6 plan are left out.
    let p4 = plan(&state, &c, IpFamily::V4, &IpvsOptions::default()).unwrap();
    assert!(p4.services.is_empty());
}

#[test]
fn options_are_checked_and_named() {
    assert_eq!(
        IpvsOptions::new().scheduler("").build().unwrap().scheduler,
        "rr"
    );
    let e = IpvsOptions::new().scheduler("fastest").build().unwrap_err();
    assert!(
        e.to_string()
            .contains("ipvs scheduler \"fastest\" is not one of rr, wrr"),
        "{e}"
    );
    let e = IpvsOptions::new()
        .dummy_device("a very long device name")
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("dummy device"), "{e}");
    let t = IpvsTimeouts {
        tcp: Some(Duration::from_secs(900)),
        ..IpvsTimeouts::default()
    };
    let o = IpvsOptions::new()
        .timeouts(t)
        .strict_arp(true)
        .exclude_cidr("10.99.0.0/16".parse().unwrap())
        .build()
        .unwrap();
    assert_eq!(o.timeouts.seconds(), (900, 0, 0));
    let p = plan(&ProxyState::new(), &config(), IpFamily::V4, &o).unwrap();
    assert!(
        p.sysctls
            .contains(&("net/ipv4/conf/all/arp_announce".into(), "2".into()))
    );
    let bad = IpvsOptions {
        scheduler: "bogus".into(),
        ..IpvsOptions::default()
    };
    assert!(plan(&ProxyState::new(), &config(), IpFamily::V4, &bad).is_err());
}

#[test]
fn duplicate_virtual_servers_keep_the_first() {
    let mut state = ProxyState::new();
    let mut a = ServicePort::cluster_ip(name("a", Protocol::Tcp), ip("172.30.0.1"), 80);
    a.external_ips = vec![ip("198.51.100.1")];
    let mut b = ServicePort::cluster_ip(name("b", Protocol::Tcp), ip("172.30.0.2"), 80);
    b.external_ips = vec![ip("198.51.100.1")];
    one(&mut state, a, vec![ep("10.180.0.1", 80, None)]);
    one(&mut state, b, vec![ep("10.180.0.2", 80, None)]);
    let p = plan_v4(&state);
    let ext = p.service(&key("198.51.100.1", Protocol::Tcp, 80)).unwrap();
    assert_eq!(ext.service_port.service.name, "a");
    assert_eq!(p.services.len(), 3);
}

// ---- diff and apply ----

fn two_endpoint_state(proto: Protocol) -> ProxyState {
    let mut state = ProxyState::new();
    let mut svc = ServicePort::cluster_ip(name("svc1", proto), ip("172.30.0.41"), 80);
    svc.node_port = Some(30080);
    one(
        &mut state,
        svc,
        vec![ep("10.180.0.1", 80, None), ep("10.180.0.2", 80, None)],
    );
    state
}

fn without_second_endpoint(mut state: ProxyState, proto: Protocol) -> ProxyState {
    state.set_endpoints(name("svc1", proto), vec![ep("10.180.0.1", 80, None)]);
    state
}

#[test]
fn first_sync_adds_everything() {
    let p = plan_v4(&two_endpoint_state(Protocol::Tcp));
    let d = diff(&IpvsTable::new(), &[], &p);
    assert_eq!(d.bind, [ip("172.30.0.41")]);
    assert!(d.unbind.is_empty());
    assert_eq!(
        d.to_text(),
        "bind 172.30.0.41 dev kube-ipvs0\n\
         add service 10.20.0.2:30080/tcp rr\n\
         add destination 10.20.0.2:30080/tcp -> 10.180.0.1:80 weight 1\n\
         add destination 10.20.0.2:30080/tcp -> 10.180.0.2:80 weight 1\n\
         add service 172.30.0.41:80/tcp rr\n\
         add destination 172.30.0.41:80/tcp -> 10.180.0.1:80 weight 1\n\
         add destination 172.30.0.41:80/tcp -> 10.180.0.2:80 weight 1\n\
         add service 192.168.0.2:30080/tcp rr\n\
         add destination 192.168.0.2:30080/tcp -> 10.180.0.1:80 weight 1\n\
         add destination 192.168.0.2:30080/tcp -> 10.180.0.2:80 weight 1\n"
    );
    assert!(p.diff_from(&p).is_empty());
}

#[test]
fn removed_tcp_endpoints_drain_and_udp_ones_go() {
    for (proto, graceful) in [
        (Protocol::Tcp, true),
        (Protocol::Udp, false),
        (Protocol::Sctp, false),
    ] {
        let old = plan_v4(&two_endpoint_state(proto));
        let new = plan_v4(&without_second_endpoint(two_endpoint_state(proto), proto));
        let d = new.diff_from(&old);
        assert_eq!(d.ops.len(), 3, "{proto}: {d}");
        for op in &d.ops {
            match op {
                IpvsOp::DrainDestination(_, r) if graceful => {
                    assert_eq!(r.weight, 0);
                    assert_eq!(r.endpoint(), "10.180.0.2:80");
                }
                IpvsOp::DeleteDestination(_, r) if !graceful => {
                    assert_eq!(r.endpoint(), "10.180.0.2:80");
                }
                other => panic!("{proto}: unexpected {other}"),
            }
        }
    }
}

#[test]
fn drained_destinations_are_deleted_once_idle() {
    let old = plan_v4(&two_endpoint_state(Protocol::Tcp));
    let new = plan_v4(&without_second_endpoint(
        two_endpoint_state(Protocol::Tcp),
        Protocol::Tcp,
    ));
    let (mut kernel, mut dummy) = (FakeIpvs::new(), FakeBinder::new());
    apply(&diff(&IpvsTable::new(), &[], &old), &mut kernel, &mut dummy)
        .into_result()
        .unwrap();
    let cip = key("172.30.0.41", Protocol::Tcp, 80);
    kernel.set_connections(&cip, (ip("10.180.0.2"), 80), 3, 1);

    // Sync 1: drain (the kernel table says there are connections).
    let current = IpvsTable::read(&mut kernel).unwrap();
    let d = diff(&current, &dummy.addresses(), &new);
    assert_eq!(d.ops.len(), 3, "{d}");
    assert!(d.ops.iter().all(|o| matches!(
        o,
        IpvsOp::DrainDestination(..) | IpvsOp::DeleteDestination(..)
    )));
    // The NodePort services had no connections on that endpoint: deleted at once.
    assert_eq!(
        d.ops
            .iter()
            .filter(|o| matches!(o, IpvsOp::DeleteDestination(..)))
            .count(),
        2
    );
    apply(&d, &mut kernel, &mut dummy).into_result().unwrap();
    let dests = kernel.destinations(&cip);
    assert_eq!(dests.len(), 2);
    assert_eq!(dests[1].server.weight, 0);

    // Sync 2: still busy, nothing to do.
    let d = diff(
        &IpvsTable::read(&mut kernel).unwrap(),
        &dummy.addresses(),
        &new,
    );
    assert!(d.is_empty(), "{d}");

    // Sync 3: idle, deleted.
    kernel.set_connections(&cip, (ip("10.180.0.2"), 80), 0, 0);
    let d = diff(
        &IpvsTable::read(&mut kernel).unwrap(),
        &dummy.addresses(),
        &new,
    );
    assert_eq!(
        d.to_text(),
        "delete destination 172.30.0.41:80/tcp -> 10.180.0.2:80\n"
    );
    apply(&d, &mut kernel, &mut dummy).into_result().unwrap();
    assert_eq!(
        IpvsTable::read(&mut kernel).unwrap(),
        new.table().with_connections(0)
    );

    // A drained endpoint that comes back is re-weighted.
    let mut current = IpvsTable::read(&mut kernel).unwrap();
    current.services.get_mut(&cip).unwrap().destinations.insert(
        (ip("10.180.0.2"), 80),
        TableDestination {
            server: RealServer::masquerade(ip("10.180.0.2"), 80).with_weight(0),
            connections: Some(2),
        },
    );
    let d = diff(&current, &dummy.addresses(), &old);
    assert!(
        d.to_text()
            .contains("update destination 172.30.0.41:80/tcp -> 10.180.0.2:80 weight 1\n"),
        "{d}"
    );
}

#[test]
fn services_are_updated_deleted_or_kept() {
    let old = plan_v4(&two_endpoint_state(Protocol::Tcp));
    // Affinity on: every service is updated in place.
    let mut state = two_endpoint_state(Protocol::Tcp);
    state
        .services
        .get_mut(&name("svc1", Protocol::Tcp))
        .unwrap()
        .session_affinity_seconds = Some(60);
    let d = plan_v4(&state).diff_from(&old);
    assert_eq!(d.ops.len(), 3);
    assert!(
        d.ops
            .iter()
            .all(|o| matches!(o, IpvsOp::UpdateService(s) if s.timeout == 60))
    );

    // Service gone: its virtual servers and address go, except excluded ones.
    let empty = plan(
        &ProxyState::new(),
        &config(),
        IpFamily::V4,
        &IpvsOptions::default(),
    )
    .unwrap();
    let d = empty.diff_from(&old);
    assert_eq!(d.unbind, [ip("172.30.0.41")]);
    assert_eq!(d.ops.len(), 3);
    assert!(d.ops.iter().all(|o| matches!(o, IpvsOp::DeleteService(_))));
    let keep = IpvsOptions::new().exclude_cidr("172.30.0.0/16".parse().unwrap());
    let empty = plan(&ProxyState::new(), &config(), IpFamily::V4, &keep).unwrap();
    let d = empty.diff_from(&old);
    assert_eq!(d.ops.len(), 2, "{d}");
    assert!(!d.to_text().contains("172.30.0.41:80"));

    // Virtual servers of the other family are not ours to delete.
    let mut current = old.table();
    current.insert(
        VirtualServer::new(ip("fd00::1"), Protocol::Tcp, 80, "rr"),
        std::iter::empty(),
    );
    let d = diff(&current, &[ip("fd00::1"), ip("172.30.0.41")], &old);
    assert!(d.is_empty(), "{d}");
}

#[test]
fn apply_reports_failures_and_skips_dependents() {
    let p = plan_v4(&two_endpoint_state(Protocol::Tcp));
    let d = diff(&IpvsTable::new(), &[], &p);
    let mut kernel = FakeIpvs::new();
    let mut dummy = FakeBinder::new();
    // Fail the creation of the first virtual server (the first IPVS call).
    kernel.fail_call(1, 17);
    let out = apply(&d, &mut kernel, &mut dummy);
    assert!(!out.is_ok());
    assert_eq!(out.failures.len(), 1);
    assert_eq!(out.failures[0].action, "add service 10.20.0.2:30080/tcp rr");
    assert_eq!(out.skipped, 2);
    // ensure_device + bind + 2 services with 2 destinations each.
    assert_eq!(out.applied, 2 + 6);
    let e = out.into_result().unwrap_err();
    assert!(matches!(e, crate::Error::Netlink { errno: 17, .. }), "{e}");
    assert_eq!(kernel.services().len(), 2);
    // The next sync repairs it.
    let d = diff(
        &IpvsTable::read(&mut kernel).unwrap(),
        &dummy.addresses(),
        &p,
    );
    assert_eq!(d.ops.len(), 3);
    apply(&d, &mut kernel, &mut dummy).into_result().unwrap();
    assert_eq!(
        IpvsTable::read(&mut kernel).unwrap(),
        p.table().with_connections(0)
    );

    // A device that cannot be made: its addresses are skipped, IPVS still applied.
    let mut kernel = FakeIpvs::new();
    let mut dummy = FakeBinder::new();
    dummy.fail_call(1);
    let out = apply(&d_first(&p), &mut kernel, &mut dummy);
    assert_eq!(out.failures.len(), 1);
    assert_eq!(out.failures[0].action, "ensure device kube-ipvs0");
    assert_eq!(out.skipped, 1);
    assert_eq!(kernel.services().len(), 3);
    assert!(dummy.addresses().is_empty());
}

fn d_first(p: &IpvsPlan) -> IpvsDiff {
    diff(&IpvsTable::new(), &[], p)
}

#[test]
fn addresses_follow_the_plan() {
    let p = plan_v4(&two_endpoint_state(Protocol::Tcp));
    let (mut kernel, mut dummy) = (FakeIpvs::new(), FakeBinder::new());
    apply(&d_first(&p), &mut kernel, &mut dummy)
        .into_result()
        .unwrap();
    assert_eq!(dummy.addresses(), [ip("172.30.0.41")]);
    let d = diff(&p.table(), &[ip("172.30.0.41"), ip("172.30.9.9")], &p);
    assert_eq!(d.to_text(), "unbind 172.30.9.9 dev kube-ipvs0\n");
    let mut t = FakeIpvs::new();
    configure_timeouts(&mut t, &IpvsTimeouts::default()).unwrap();
    assert!(t.calls().is_empty());
    let timeouts = IpvsTimeouts {
        udp: Some(Duration::from_secs(300)),
        ..IpvsTimeouts::default()
    };
    configure_timeouts(&mut t, &timeouts).unwrap();
    assert_eq!(t.timeouts(), Some(&timeouts));
}
