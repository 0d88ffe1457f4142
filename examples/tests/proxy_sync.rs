//! `proxy-sync` end to end in a network namespace: it applies a file, follows its
//! changes with partial syncs, survives a broken file, serves kube-proxy's metrics, and
//! leaves the rules in place on SIGTERM; `--once` and `--cleanup`. Needs root.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::Duration;

use node_sdk_e2e::Netns;

fn objects(endpoint: &str) -> String {
    format!(
        "apiVersion: v1\nkind: List\nitems:\n\
         - {{apiVersion: v1, kind: Service, metadata: {{name: web, namespace: demo}}, spec: {{clusterIP: 172.30.0.10, ports: [{{name: http, port: 80}}]}}}}\n\
         - {{apiVersion: v1, kind: Service, metadata: {{name: dns, namespace: demo}}, spec: {{clusterIP: 172.30.0.53, ports: [{{name: dns, port: 53, protocol: UDP}}]}}}}\n\
         - {{apiVersion: discovery.k8s.io/v1, kind: EndpointSlice, metadata: {{name: web-1, namespace: demo, labels: {{kubernetes.io/service-name: web}}}}, addressType: IPv4, ports: [{{name: http, port: 8080, protocol: TCP}}], endpoints: [{{addresses: [{endpoint}]}}]}}\n"
    )
}

struct Sync {
    child: Child,
    lines: Receiver<String>,
    errors: Receiver<String>,
}

impl Sync {
    fn start(args: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_proxy-sync"))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting proxy-sync");
        let (tx, lines) = channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(l);
            }
        });
        let (etx, errors) = channel();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for l in BufReader::new(err).lines().map_while(Result::ok) {
                let _ = etx.send(l);
            }
        });
        Self {
            child,
            lines,
            errors,
        }
    }

    fn next_line(&self) -> String {
        self.lines
            .recv_timeout(Duration::from_secs(60))
            .expect("proxy-sync printed nothing within 60 s")
    }

    fn next_error(&self, containing: &str) -> String {
        loop {
            let l = self
                .errors
                .recv_timeout(Duration::from_secs(60))
                .expect("no such message on stderr within 60 s");
            if l.contains(containing) {
                return l;
            }
        }
    }
}

impl Drop for Sync {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Run `proxy-sync` to completion with `args`.
fn proxy_sync(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_proxy-sync"))
        .args(args)
        .output()
        .expect("running proxy-sync")
}

/// Run `proxy-sync` to completion with `args` and require success.
fn proxy_sync_ok(args: &[&str]) -> Output {
    let out = proxy_sync(args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `nft list table ip kube-proxy` in `ns`.
fn nft_table(ns: &Netns) -> String {
    String::from_utf8(
        ns.exec(&["nft", "list", "table", "ip", "kube-proxy"], None)
            .stdout,
    )
    .unwrap()
}

/// The nat table without iptables-save's timestamp comments.
fn nat(ns: &Netns) -> String {
    String::from_utf8(ns.exec(&["iptables-save", "-t", "nat"], None).stdout)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n")
}

fn http_get(addr: &str, path: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn follows_the_file_with_partial_syncs_and_serves_metrics() {
    let ns = Netns::new("psync");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("objects.yaml");
    std::fs::write(&file, objects("10.180.0.5")).unwrap();
    let sync = Sync::start(&[
        "--mode",
        "iptables",
        "--netns",
        ns.name(),
        "--hostname-override",
        "node-a",
        "--node-ip",
        "192.168.0.2",
        "--cluster-cidr",
        "10.0.0.0/8",
        "--iptables-min-sync-period",
        "100ms",
        "--file-check-period",
        "100ms",
        "--metrics-bind-address",
        "127.0.0.1:0",
        file.to_str().unwrap(),
    ]);
    let served = sync.next_error("serving metrics on");
    let addr = served
        .trim_start_matches("serving metrics on http://")
        .trim_end_matches("/metrics")
        .to_owned();
    let first = sync.next_line();
    assert!(first.contains("sync ipv4 iptables full:"), "{first}");
    assert!(nat(&ns).contains("--to-destination 10.180.0.5:8080"));
    assert!(
        nat(&ns).contains("demo/dns:dns has no endpoints")
            || String::from_utf8(ns.exec(&["iptables-save", "-t", "filter"], None).stdout)
                .unwrap()
                .contains("demo/dns:dns has no endpoints")
    );

    // The endpoint moves: a partial sync rewrites only that Service.
    std::fs::write(&file, objects("10.180.0.6")).unwrap();
    let line = sync.next_line();
    assert!(
        line.contains("iptables partial:") && line.contains("1 service ports changed"),
        "{line}"
    );
    let rules = nat(&ns);
    assert!(
        rules.contains("--to-destination 10.180.0.6:8080") && !rules.contains("10.180.0.5"),
        "{rules}"
    );

    // A broken file is reported and changes nothing.
    std::fs::write(&file, "kind: List\nitems: [\n  - {").unwrap();
    let err = sync.next_error("keeping the rules");
    assert!(
        err.contains("objects.yaml") && err.contains("invalid YAML"),
        "{err}"
    );
    assert_eq!(nat(&ns), rules);

    // Fixed again: synced.
    std::fs::write(&file, objects("10.180.0.7")).unwrap();
    let line = sync.next_line();
    assert!(line.contains("partial"), "{line}");
    assert!(nat(&ns).contains("10.180.0.7:8080"));

    // kube-proxy's metric names.
    let m = http_get(&addr, "/metrics");
    assert!(m.starts_with("HTTP/1.1 200"), "{m}");
    assert!(
        m.contains("kubeproxy_sync_proxy_rules_duration_seconds_count 3"),
        "{m}"
    );
    assert!(
        m.contains("kubeproxy_sync_partial_proxy_rules_duration_seconds_count 2"),
        "{m}"
    );
    assert!(
        m.contains("kubeproxy_sync_proxy_rules_iptables_total{table=\"nat\"}"),
        "{m}"
    );
    assert!(http_get(&addr, "/healthz").contains("\"syncs\": 3"));

    // SIGTERM: it stops and the rules stay.
    let mut sync = sync;
    Command::new("kill")
        .args(["-TERM", &sync.child.id().to_string()])
        .status()
        .unwrap();
    let status = sync.child.wait().unwrap();
    assert!(status.success(), "{status}");
    assert!(nat(&ns).contains("10.180.0.7:8080"));
}

#[test]
fn once_in_nftables_mode_then_cleanup() {
    let ns = Netns::new("ponce");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("o.yaml");
    std::fs::write(&file, objects("10.180.0.5")).unwrap();
    let out = proxy_sync_ok(&[
        "--mode",
        "nftables",
        "--once",
        "--netns",
        ns.name(),
        "--hostname-override",
        "n",
        "--node-ip",
        "192.168.0.2",
        "--metrics-bind-address",
        "",
        file.to_str().unwrap(),
    ]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("sync ipv4 nftables full:"));
    let table = nft_table(&ns);
    assert!(table.contains("10.180.0.5:8080"), "{table}");

    proxy_sync_ok(&["--cleanup", "--netns", ns.name()]);
    let tables = String::from_utf8(ns.exec(&["nft", "list", "tables"], None).stdout).unwrap();
    assert!(!tables.contains("kube-proxy"), "{tables}");
}

#[test]
fn a_broken_file_at_start_applies_nothing() {
    let ns = Netns::new("pbad");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("o.yaml");
    std::fs::write(&file, "{ not json").unwrap();
    let out = proxy_sync(&[
        "--once",
        "--netns",
        ns.name(),
        "--metrics-bind-address",
        "",
        file.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid JSON"));
    assert!(!nat(&ns).contains("KUBE-SERVICES"));
}

fn service(name: &str, ip: &str, labels: serde_json::Value) -> serde_json::Value {
    serde_json::json!({"kind": "Service", "apiVersion": "v1",
        "metadata": {"name": name, "namespace": "demo", "labels": labels},
        "spec": {"clusterIP": ip, "clusterIPs": [ip], "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}})
}

fn slice(service: &str, ip: &str) -> serde_json::Value {
    serde_json::json!({"kind": "EndpointSlice", "apiVersion": "discovery.k8s.io/v1",
        "metadata": {"name": format!("{service}-abc"), "namespace": "demo", "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": [{"addresses": [ip], "conditions": {"ready": true}}]})
}

#[test]
fn follows_an_api_server_with_watches() {
    use node_sdk_e2e::FakeApiServer;
    let api = FakeApiServer::start(vec![
        service("web", "172.30.0.10", serde_json::json!({})),
        slice("web", "10.180.0.5"),
        // Another proxy's Service and a headless-labelled one are not ours.
        service(
            "other",
            "172.30.0.11",
            serde_json::json!({"service.kubernetes.io/service-proxy-name": "cilium"}),
        ),
        service(
            "nohead",
            "172.30.0.12",
            serde_json::json!({"service.kubernetes.io/headless": ""}),
        ),
        serde_json::json!({"kind": "Node", "apiVersion": "v1", "metadata": {"name": "node-a", "labels": {"topology.kubernetes.io/zone": "z1"}}}),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, api.kubeconfig()).unwrap();
    let ns = Netns::new("papi");
    let sync = Sync::start(&[
        "--mode",
        "iptables",
        "--netns",
        ns.name(),
        "--hostname-override",
        "node-a",
        "--node-ip",
        "192.168.0.2",
        "--iptables-min-sync-period",
        "100ms",
        "--metrics-bind-address",
        "",
        "--kubeconfig",
        kubeconfig.to_str().unwrap(),
    ]);
    let first = sync.next_line();
    assert!(first.contains("iptables full:"), "{first}");
    let rules = nat(&ns);
    assert!(
        rules.contains("--to-destination 10.180.0.5:8080"),
        "{rules}"
    );
    assert!(
        !rules.contains("demo/other") && !rules.contains("demo/nohead"),
        "{rules}"
    );
    // The watchers used kube-proxy's selector and followed this node only.
    let requests = api.requests();
    assert!(
        requests
            .iter()
            .any(|r| r.contains("/api/v1/services") && r.contains("service-proxy-name")),
        "{requests:?}"
    );
    assert!(
        requests
            .iter()
            .any(|r| r.contains("/api/v1/nodes") && r.contains("node-a")),
        "{requests:?}"
    );

    // A watch event moves the endpoint: a partial sync.
    api.apply(slice("web", "10.180.0.6"));
    let line = sync.next_line();
    assert!(
        line.contains("partial") && line.contains("1 service ports changed"),
        "{line}"
    );
    let rules = nat(&ns);
    assert!(
        rules.contains("10.180.0.6:8080") && !rules.contains("10.180.0.5"),
        "{rules}"
    );

    // The Service is deleted: its chains go.
    api.delete("Service", "demo", "web");
    let line = sync.next_line();
    assert!(
        line.contains("partial") && line.contains("chains deleted"),
        "{line}"
    );
    let rules = nat(&ns);
    assert!(
        !rules.contains("KUBE-SVC-") && !rules.contains("demo/web"),
        "{rules}"
    );
}

#[test]
fn once_from_an_api_server_uses_servicecidrs_in_nftables_mode() {
    use node_sdk_e2e::FakeApiServer;
    let api = FakeApiServer::start(vec![
        service("web", "172.30.0.10", serde_json::json!({})),
        slice("web", "10.180.0.5"),
        serde_json::json!({"kind": "ServiceCIDR", "apiVersion": "networking.k8s.io/v1", "metadata": {"name": "kubernetes"}, "spec": {"cidrs": ["172.30.0.0/16"]}}),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, api.kubeconfig()).unwrap();
    let ns = Netns::new("papin");
    proxy_sync_ok(&[
        "--mode",
        "nftables",
        "--once",
        "--netns",
        ns.name(),
        "--hostname-override",
        "node-a",
        "--node-ip",
        "192.168.0.2",
        "--metrics-bind-address",
        "",
        "--kubeconfig",
        kubeconfig.to_str().unwrap(),
    ]);
    let table = nft_table(&ns);
    assert!(table.contains("10.180.0.5:8080"), "{table}");
    assert!(
        table.contains("172.30.0.0/16") && table.contains("Drop traffic to unallocated ClusterIPs"),
        "{table}"
    );
}

#[test]
fn an_unreachable_api_server_is_a_clear_error_with_once() {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n",
    )
    .unwrap();
    let out = proxy_sync(&[
        "--once",
        "--metrics-bind-address",
        "",
        "--kubeconfig",
        kubeconfig.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("kubeconfig"), "{err}");
}

#[test]
fn nodeport_addresses_match_the_nodes_interfaces() {
    let ns = Netns::new("pnpa");
    ns.exec(
        &[
            "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth1",
        ],
        None,
    );
    ns.exec(
        &["ip", "addr", "add", "192.168.7.7/24", "dev", "eth0"],
        None,
    );
    ns.exec(&["ip", "addr", "add", "10.20.0.1/24", "dev", "eth1"], None);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("o.yaml");
    std::fs::write(
        &file,
        "kind: Service\napiVersion: v1\nmetadata: {name: np, namespace: demo}\nspec: {type: NodePort, clusterIP: 172.30.0.20, ports: [{port: 80, nodePort: 30080}]}\n",
    )
    .unwrap();
    proxy_sync_ok(&[
        "--once",
        "--netns",
        ns.name(),
        "--hostname-override",
        "n",
        "--nodeport-addresses",
        "192.168.7.0/24",
        "--metrics-bind-address",
        "",
        file.to_str().unwrap(),
    ]);
    let rules = nat(&ns);
    assert!(rules.contains("-d 192.168.7.7/32 -m comment --comment \"kubernetes service nodeports; NOTE: this must be the last rule in this chain\" -j KUBE-NODEPORTS"), "{rules}");
    assert!(!rules.contains("10.20.0.1"), "{rules}");
}
