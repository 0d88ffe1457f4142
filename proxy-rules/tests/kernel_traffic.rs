//! Real traffic through real rules, in both modes: the sync engine programs a node
//! network namespace with `iptables-restore` / `nft -f`, a client in another namespace
//! reaches ClusterIPs and NodePorts over TCP and UDP, and backend pods in their own
//! namespaces answer. Needs root (`scripts/env.sh up` installs iptables, nftables,
//! conntrack).

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{CLIENT_IP, Lab, NODE_IP, NODE_NAME};
use proxy_rules::config::ProxyConfig;
use proxy_rules::exec::Target;
use proxy_rules::health::ServiceHealthServer;
use proxy_rules::model::{IpFamily, Protocol, ServiceName};
use proxy_rules::store::{EndpointSliceSpec, ServiceSpec, ServiceType, SliceEndpoint, SlicePort};
use proxy_rules::sync::{Event, Execs, Mode, SyncEngine, SyncOptions, SyncReport};

fn service(
    name: &str,
    ip: &str,
    proto: Protocol,
    port: u16,
    node_port: Option<u16>,
) -> ServiceSpec {
    ServiceSpec::cluster_ip(ServiceName::new("lab", name), ip.parse().unwrap())
        .with_port("p", proto, port, node_port)
}

fn endpoint(ip: &str, node: Option<&str>) -> SliceEndpoint {
    let mut e = SliceEndpoint::ready(ip.parse().unwrap());
    e.node_name = node.map(str::to_owned);
    e
}

fn slice(
    svc: &str,
    proto: Protocol,
    port: u16,
    endpoints: Vec<SliceEndpoint>,
) -> EndpointSliceSpec {
    EndpointSliceSpec {
        name: format!("{svc}-abc"),
        service: ServiceName::new("lab", svc),
        address_type: Some(IpFamily::V4),
        ports: vec![SlicePort {
            name: "p".into(),
            protocol: proto,
            port: Some(port),
        }],
        endpoints,
    }
}

const B: [&str; 3] = ["10.180.0.10", "10.180.0.11", "10.180.0.12"];

fn all_backends() -> Vec<SliceEndpoint> {
    B.iter().map(|ip| endpoint(ip, Some("node-b"))).collect()
}

fn lab_objects() -> (Vec<ServiceSpec>, Vec<EndpointSliceSpec>) {
    let mut services = Vec::new();
    let mut slices = Vec::new();
    // web: TCP ClusterIP + NodePort, three endpoints on another node, Cluster policy.
    services.push(service(
        "web",
        "172.30.0.10",
        Protocol::Tcp,
        80,
        Some(30080),
    ));
    slices.push(slice("web", Protocol::Tcp, 8080, all_backends()));
    // dns: UDP ClusterIP + NodePort.
    services.push(service(
        "dns",
        "172.30.0.53",
        Protocol::Udp,
        53,
        Some(30053),
    ));
    slices.push(slice("dns", Protocol::Udp, 5353, all_backends()));
    // sticky: ClientIP affinity.
    let mut sticky = service("sticky", "172.30.0.11", Protocol::Tcp, 80, None);
    sticky.session_affinity_seconds = Some(10800);
    services.push(sticky);
    slices.push(slice("sticky", Protocol::Tcp, 8080, all_backends()));
    // remote-only: NodePort with externalTrafficPolicy Local, no endpoint on this node.
    let mut remote = service("remote", "172.30.0.12", Protocol::Tcp, 80, Some(30081));
    remote.external_traffic_policy_local = true;
    services.push(remote);
    slices.push(slice(
        "remote",
        Protocol::Tcp,
        8080,
        vec![endpoint(B[0], Some("node-b"))],
    ));
    // local-here: NodePort with externalTrafficPolicy Local and an endpoint on this node.
    let mut here = service("here", "172.30.0.15", Protocol::Tcp, 80, Some(30082));
    here.external_traffic_policy_local = true;
    services.push(here);
    slices.push(slice(
        "here",
        Protocol::Tcp,
        8080,
        vec![endpoint(B[1], Some(NODE_NAME))],
    ));
    // empty: no endpoints at all.
    services.push(service(
        "empty",
        "172.30.0.13",
        Protocol::Tcp,
        80,
        Some(30083),
    ));
    // draining: only terminating-but-serving endpoints (and one not serving).
    services.push(service("draining", "172.30.0.14", Protocol::Tcp, 80, None));
    let mut serving = endpoint(B[2], Some("node-b"));
    serving.ready = Some(false);
    serving.terminating = Some(true);
    let mut gone = endpoint(B[0], Some("node-b"));
    gone.ready = Some(false);
    gone.serving = Some(false);
    gone.terminating = Some(true);
    slices.push(slice("draining", Protocol::Tcp, 8080, vec![serving, gone]));
    for s in &mut services {
        if s.ports.iter().any(|p| p.node_port.is_some()) {
            s.service_type = ServiceType::NodePort;
        }
        // The two Local-policy Services are LoadBalancers with health check node ports.
        let hc = match s.name.name.as_str() {
            "remote" => Some(30101),
            "here" => Some(30102),
            _ => None,
        };
        if hc.is_some() {
            s.service_type = ServiceType::LoadBalancer;
            s.health_check_node_port = hc;
        }
    }
    (services, slices)
}

fn engine(lab: &Lab, mode: Mode) -> SyncEngine {
    let config = ProxyConfig::new(NODE_NAME)
        .node_ip(NODE_IP.parse().unwrap())
        .cluster_cidr("10.180.0.0/16".parse().unwrap());
    // Small restore chunks, so the full syncs here go through split restores too.
    let options = SyncOptions {
        max_chains_per_call: 4,
        ..SyncOptions::default()
    };
    let mut e = SyncEngine::new(
        mode,
        &[IpFamily::V4],
        config,
        options,
        Execs::commands(Target::netns(lab.node.name())),
    )
    .unwrap();
    e.set_health_server(ServiceHealthServer::in_netns(lab.node.path()));
    e
}

async fn sync(e: &mut SyncEngine) -> SyncReport {
    e.sync(false)
        .await
        .remove(0)
        .unwrap_or_else(|err| panic!("sync failed: {err}"))
}

fn names(replies: &[String]) -> BTreeSet<&str> {
    replies.iter().map(String::as_str).collect()
}

async fn services_work(mode: Mode, tag: &str) {
    let lab = Lab::new(tag, 3);
    let mut e = engine(&lab, mode);
    let (services, slices) = lab_objects();
    e.apply(Event::Replace { services, slices }).unwrap();
    let r = sync(&mut e).await;
    assert!(r.full);
    assert!(
        r.apply_calls > 2,
        "the first sync was split into several calls: {r:?}"
    );

    // ClusterIP and NodePort over TCP: traffic spreads over all endpoints.
    let seen = lab.tcp_names("172.30.0.10:80", 30);
    assert_eq!(
        names(&seen),
        BTreeSet::from(["b0", "b1", "b2"]),
        "ClusterIP spread: {seen:?}"
    );
    let seen = lab.tcp_names(&format!("{NODE_IP}:30080"), 30);
    assert_eq!(
        names(&seen),
        BTreeSet::from(["b0", "b1", "b2"]),
        "NodePort spread: {seen:?}"
    );
    // The client is outside the pod network: its ClusterIP and NodePort traffic is
    // masqueraded to the node's address on the pod bridge.
    let reply = lab.tcp("172.30.0.10:80", Duration::from_secs(5)).unwrap();
    assert!(
        reply.ends_with(" 10.180.0.1"),
        "masqueraded source: {reply}"
    );

    // UDP, ClusterIP and NodePort, each datagram from a new source port.
    let mut udp = BTreeSet::new();
    for _ in 0..30 {
        let r = lab
            .udp("172.30.0.53:53", 0, Duration::from_secs(5))
            .unwrap();
        udp.insert(r.split_whitespace().next().unwrap().to_owned());
    }
    assert_eq!(udp.len(), 3, "UDP ClusterIP spread: {udp:?}");
    let r = lab
        .udp(&format!("{NODE_IP}:30053"), 0, Duration::from_secs(5))
        .unwrap();
    assert!(r.starts_with('b'), "UDP NodePort: {r}");

    // Session affinity sticks: every new connection from the client hits one backend.
    let seen = lab.tcp_names("172.30.0.11:80", 15);
    assert_eq!(names(&seen).len(), 1, "affinity: {seen:?}");

    // externalTrafficPolicy Local without a local endpoint: the NodePort drops, the
    // ClusterIP still works.
    let dropped = lab.tcp(&format!("{NODE_IP}:30081"), Duration::from_millis(1500));
    let err =
        dropped.expect_err("the NodePort of a Local service without local endpoints must drop");
    assert!(
        matches!(
            err.kind(),
            std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
        ),
        "dropped, not refused: {err}"
    );
    assert_eq!(lab.tcp_names("172.30.0.12:80", 1), ["b0"]);
    // ...and with a local endpoint, the client's source IP is preserved.
    let reply = lab
        .tcp(&format!("{NODE_IP}:30082"), Duration::from_secs(5))
        .unwrap();
    assert_eq!(reply, format!("b1 {CLIENT_IP}"));

    // The health check node ports answer as kube-proxy's: 200 with a local endpoint,
    // 503 without.
    let ok = lab.http_get(&format!("{NODE_IP}:30102")).unwrap();
    assert!(
        ok.starts_with("HTTP/1.1 200 OK") && ok.contains("\"localEndpoints\": 1"),
        "{ok}"
    );
    assert!(ok.contains("\"name\": \"here\""), "{ok}");
    let unavailable = lab.http_get(&format!("{NODE_IP}:30101")).unwrap();
    assert!(
        unavailable.starts_with("HTTP/1.1 503") && unavailable.contains("\"localEndpoints\": 0"),
        "{unavailable}"
    );

    // No endpoints: rejected at once, on the ClusterIP and on the NodePort.
    for addr in ["172.30.0.13:80".to_owned(), format!("{NODE_IP}:30083")] {
        let err = lab
            .tcp(&addr, Duration::from_secs(5))
            .expect_err("no endpoints");
        assert_eq!(
            err.kind(),
            std::io::ErrorKind::ConnectionRefused,
            "{addr}: {err}"
        );
    }

    // Only serving-terminating endpoints: they are used.
    assert_eq!(
        names(&lab.tcp_names("172.30.0.14:80", 5)),
        BTreeSet::from(["b2"])
    );

    // A second full sync changes nothing and traffic still flows.
    let r = e.sync(true).await.remove(0).unwrap();
    assert!(r.full);
    assert!(
        r.apply_calls > 2,
        "the forced full sync was split too: {r:?}"
    );
    assert_eq!(lab.tcp_names("172.30.0.10:80", 1).len(), 1);
}

async fn partial_sync_removes_an_endpoint(mode: Mode, tag: &str) {
    let lab = Lab::new(tag, 3);
    let mut e = engine(&lab, mode);
    let (services, slices) = lab_objects();
    e.apply(Event::Replace { services, slices }).unwrap();
    assert!(sync(&mut e).await.full);

    // A UDP flow from a fixed source port: conntrack pins it to one backend.
    const PORT: u16 = 41000;
    let first = lab
        .udp("172.30.0.53:53", PORT, Duration::from_secs(5))
        .unwrap();
    let victim = first.split_whitespace().next().unwrap().to_owned();
    let again = lab
        .udp("172.30.0.53:53", PORT, Duration::from_secs(5))
        .unwrap();
    assert_eq!(
        again.split_whitespace().next().unwrap(),
        victim,
        "the flow is pinned by conntrack"
    );
    let victim_ip = lab.backend(&victim).ip.to_string();
    assert!(
        lab.conntrack_udp().contains(&format!("src={victim_ip} ")),
        "{}",
        lab.conntrack_udp()
    );

    // Remove the victim from both services' slices: a partial sync.
    let remaining: Vec<SliceEndpoint> = B
        .iter()
        .filter(|ip| **ip != victim_ip)
        .map(|ip| endpoint(ip, Some("node-b")))
        .collect();
    e.apply(Event::Slice(slice(
        "dns",
        Protocol::Udp,
        5353,
        remaining.clone(),
    )))
    .unwrap();
    e.apply(Event::Slice(slice("web", Protocol::Tcp, 8080, remaining)))
        .unwrap();
    let r = sync(&mut e).await;
    assert!(!r.full, "an endpoint change is a partial sync");
    assert_eq!(r.changed_service_ports, 2);
    assert!(
        r.conntrack.deleted >= 1,
        "the stale UDP flow was deleted: {r:?}"
    );
    assert!(
        !lab.conntrack_udp().contains(&format!("src={victim_ip} ")),
        "{}",
        lab.conntrack_udp()
    );

    // The same client flow now reaches a remaining backend...
    let after = lab
        .udp("172.30.0.53:53", PORT, Duration::from_secs(5))
        .unwrap();
    assert_ne!(after.split_whitespace().next().unwrap(), victim);
    // ...and the removed endpoint receives nothing more over TCP or UDP.
    let (tcp_before, udp_before) = (
        lab.backend(&victim)
            .tcp_count
            .load(std::sync::atomic::Ordering::SeqCst),
        lab.backend(&victim)
            .udp_count
            .load(std::sync::atomic::Ordering::SeqCst),
    );
    let seen = lab.tcp_names("172.30.0.10:80", 20);
    assert!(!seen.contains(&victim), "{seen:?}");
    assert_eq!(names(&seen).len(), 2);
    for _ in 0..20 {
        lab.udp("172.30.0.53:53", 0, Duration::from_secs(5))
            .unwrap();
    }
    let b = lab.backend(&victim);
    assert_eq!(
        b.tcp_count.load(std::sync::atomic::Ordering::SeqCst),
        tcp_before
    );
    assert_eq!(
        b.udp_count.load(std::sync::atomic::Ordering::SeqCst),
        udp_before
    );

    // Services with unchanged endpoints were not rewritten and still work.
    assert_eq!(lab.tcp_names("172.30.0.12:80", 1), ["b0"]);

    // The UDP Service drops to zero endpoints: every flow to it goes, and new datagrams
    // are rejected at once.
    lab.udp("172.30.0.53:53", PORT, Duration::from_secs(5))
        .unwrap();
    assert!(
        lab.conntrack_udp().contains("dst=172.30.0.53"),
        "{}",
        lab.conntrack_udp()
    );
    e.apply(Event::Slice(slice("dns", Protocol::Udp, 5353, Vec::new())))
        .unwrap();
    let r = sync(&mut e).await;
    assert!(!r.full && r.conntrack.deleted >= 1, "{r:?}");
    assert!(
        !lab.conntrack_udp().contains("dst=172.30.0.53"),
        "{}",
        lab.conntrack_udp()
    );
    let err = lab
        .udp("172.30.0.53:53", PORT, Duration::from_secs(5))
        .expect_err("no endpoints: rejected");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iptables_services_work() {
    services_work(Mode::Iptables, "kti").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nftables_services_work() {
    services_work(Mode::Nftables, "ktn").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iptables_partial_sync_removes_an_endpoint_and_its_udp_flows() {
    partial_sync_removes_an_endpoint(Mode::Iptables, "kpi").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nftables_partial_sync_removes_an_endpoint_and_its_udp_flows() {
    partial_sync_removes_an_endpoint(Mode::Nftables, "kpn").await;
}
