//! `CniConfig` against Debian's real CNI plugins (containernetworking-plugins 1.1.1 in
//! /usr/lib/cni) in a real network namespace, as root: the chain of bridge, host-local,
//! portmap and firewall, with the list declaring 1.1.0 (which those plugins reject) so
//! the version negotiation is exercised.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use cni_exec::config::NetworkConfigList;
use cni_exec::network::{CniConfig, RuntimeConf};
use node_sdk_e2e::{Netns, http_get, run, unique_name};
use serde_json::json;

struct Cleanup {
    bridge: String,
    server: Option<Child>,
    dir: PathBuf,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(mut s) = self.server.take() {
            let _ = s.kill();
            let _ = s.wait();
        }
        let _ = Command::new("ip")
            .args(["link", "delete", &self.bridge])
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test]
async fn bridge_portmap_firewall_chain_add_check_del() {
    node_sdk_e2e::require_root();
    let ns = Netns::new("cni");
    let tag = unique_name("cni");
    let dir = std::env::temp_dir().join(&tag);
    std::fs::create_dir_all(dir.join("www")).unwrap();
    std::fs::write(dir.join("www/index.html"), "hello from the netns\n").unwrap();
    // A /24 and a bridge name of this test's own (bridge names are at most 15 chars).
    let n = std::process::id() % 200 + 20;
    let bridge = format!("cnx{}", std::process::id() % 100_000);
    let mut cleanup = Cleanup {
        bridge: bridge.clone(),
        server: None,
        dir: dir.clone(),
    };
    let subnet = format!("10.251.{n}.0/24");
    let gateway = format!("10.251.{n}.1");
    let host_port = 20_000 + (std::process::id() % 20_000) as u16;
    let net_name = format!("nsdk-{n}");
    let conflist = json!({
        "cniVersion": "1.1.0",
        "name": net_name,
        "plugins": [
            {"type": "bridge", "bridge": bridge, "isGateway": true, "ipMasq": false,
             "ipam": {"type": "host-local", "ranges": [[{"subnet": subnet}]],
                      "dataDir": dir.join("ipam").to_str().unwrap()}},
            {"type": "portmap", "capabilities": {"portMappings": true}},
            {"type": "firewall"},
            {"type": "bandwidth", "capabilities": {"bandwidth": true}}
        ]
    });
    let list = NetworkConfigList::from_bytes(conflist.to_string().as_bytes()).unwrap();
    let cni = CniConfig::new(vec![PathBuf::from("/usr/lib/cni")], dir.join("cache"));

    // Debian's plugins support up to 1.0.0: the list is driven at 1.0.0.
    assert_eq!(cni.effective_version(&list).await.unwrap(), "1.0.0");
    assert_eq!(
        cni.validate(&list).await.unwrap(),
        vec!["bandwidth".to_owned(), "portMappings".to_owned()]
    );

    let container_id = tag.replace('-', "");
    let mut caps = serde_json::Map::new();
    caps.insert(
        "portMappings".into(),
        json!([{"hostPort": host_port, "containerPort": 8080, "protocol": "tcp"}]),
    );
    // 10 Mbit/s each way (rates in bit/s, bursts in bits).
    caps.insert(
        "bandwidth".into(),
        json!({"ingressRate": 10_000_000, "ingressBurst": 1_000_000, "egressRate": 10_000_000, "egressBurst": 1_000_000}),
    );
    let rt = RuntimeConf {
        container_id: container_id.clone(),
        netns: Some(ns.path()),
        ifname: "eth0".into(),
        // Plugins refuse unknown CNI_ARGS unless IgnoreUnknown=1 is among them, which is
        // why containerd always sends it.
        args: vec![
            ("IgnoreUnknown".into(), "1".into()),
            ("K8S_POD_NAME".into(), "cni-test".into()),
        ],
        capability_args: caps,
    };
    let result = cni.add(&list, &rt).await.expect("ADD of the chain");
    assert_eq!(result.cni_version(), "1.0.0");
    let value = result.to_value();
    let ip = value["ips"][0]["address"]
        .as_str()
        .expect("an IP")
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    assert!(ip.starts_with(&format!("10.251.{n}.")), "{value}");

    // bandwidth shapes with token buckets (tc tbf) on the host side: the host veth from
    // the result (an interface without a sandbox, other than the bridge).
    let host_veth = value["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["sandbox"].is_null() && i["name"] != bridge.as_str())
        .and_then(|i| i["name"].as_str())
        .expect("a host-side veth in the result")
        .to_owned();
    let qdisc =
        String::from_utf8(run(&["tc", "qdisc", "show", "dev", &host_veth], None).stdout).unwrap();
    assert!(qdisc.contains("tbf"), "a tbf qdisc on {host_veth}: {qdisc}");

    // The address is really on eth0 in the netns.
    let addrs =
        String::from_utf8(ns.exec(&["ip", "-o", "addr", "show", "eth0"], None).stdout).unwrap();
    assert!(addrs.contains(&format!("{ip}/24")), "{addrs}");

    // The cache file is libcni's: path, kind, 0600.
    let cache_file = dir
        .join("cache/results")
        .join(format!("{net_name}-{container_id}-eth0"));
    let cached: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&cache_file).unwrap()).unwrap();
    assert_eq!(cached["kind"], "cniCacheV1");
    assert_eq!(cached["containerId"], container_id.as_str());
    assert_eq!(cached["ifName"], "eth0");
    assert_eq!(
        cached["result"]["ips"][0]["address"],
        value["ips"][0]["address"]
    );
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&cache_file).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // A server in the netns answers the host on the pod IP, and on the mapped host port.
    cleanup.server = Some(
        Command::new("ip")
            .args([
                "netns",
                "exec",
                ns.name(),
                "/bin/busybox",
                "httpd",
                "-f",
                "-p",
                "8080",
                "-h",
            ])
            .arg(dir.join("www"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut direct = None;
    for _ in 0..100 {
        if let Ok(r) = http_get(&format!("{ip}:8080"), "/index.html", &[], None) {
            direct = Some(r);
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let direct = direct.expect("the pod IP answers from the host");
    assert_eq!(
        String::from_utf8_lossy(&direct.body),
        "hello from the netns\n"
    );
    let mapped = http_get(&format!("{gateway}:{host_port}"), "/index.html", &[], None)
        .expect("the mapped host port answers");
    assert_eq!(mapped.status, 200);

    // CHECK: Debian's portmap 1.1.1 fails CHECK on IPv4-only attachments
    // (containernetworking/plugins#819); the error is reported, with the plugin's code.
    let err = cni
        .check(&list, &rt)
        .await
        .expect_err("portmap 1.1.1 CHECK fails on IPv4-only");
    assert_eq!(err.code(), Some(cni_exec::ErrorCode::Internal), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("portmap") && text.contains("could not check ipv6 dnat"),
        "{text}"
    );

    // DEL removes everything, and DEL again succeeds (idempotent), also without a netns.
    cni.del(&list, &rt).await.expect("DEL");
    cni.del(&list, &rt).await.expect("second DEL");
    cni.del(
        &list,
        &RuntimeConf {
            netns: None,
            ..rt.clone()
        },
    )
    .await
    .expect("DEL without a netns");
    let links = String::from_utf8(ns.exec(&["ip", "-o", "link"], None).stdout).unwrap();
    assert!(!links.contains("eth0"), "eth0 removed: {links}");
    assert!(!cache_file.exists(), "cache entry removed");
    let ipam_files: Vec<_> = std::fs::read_dir(dir.join("ipam").join(&net_name))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        !ipam_files.iter().any(|f| f == &ip),
        "IPAM allocation released: {ipam_files:?}"
    );
    let nat = String::from_utf8(run(&["iptables-save", "-t", "nat"], None).stdout).unwrap();
    assert!(
        !nat.contains(&container_id),
        "no NAT rules left for the container"
    );
    drop(cleanup);
}

fn bridge_list(
    name: &str,
    bridge: &str,
    subnet: &str,
    data_dir: &std::path::Path,
) -> NetworkConfigList {
    let conflist = json!({
        "cniVersion": "1.0.0",
        "name": name,
        "plugins": [
            {"type": "bridge", "bridge": bridge, "isGateway": true,
             "ipam": {"type": "host-local", "ranges": [[{"subnet": subnet}]],
                      "dataDir": data_dir.to_str().unwrap()}}
        ]
    });
    NetworkConfigList::from_bytes(conflist.to_string().as_bytes()).unwrap()
}

fn rt(container_id: &str, netns: Option<String>) -> RuntimeConf {
    RuntimeConf {
        container_id: container_id.to_owned(),
        netns,
        ifname: "eth0".into(),
        args: vec![("IgnoreUnknown".into(), "1".into())],
        capability_args: serde_json::Map::new(),
    }
}

/// GC DELs the cached attachments of the network that are not in the valid list and
/// keeps the valid ones; STATUS is a no-op below 1.1.0; loopback works alone.
#[tokio::test]
async fn gc_removes_only_stale_attachments() {
    node_sdk_e2e::require_root();
    let tag = unique_name("cnigc");
    let dir = std::env::temp_dir().join(&tag);
    let n = std::process::id() % 200 + 20;
    let bridge = format!("cng{}", std::process::id() % 100_000);
    let cleanup = Cleanup {
        bridge: bridge.clone(),
        server: None,
        dir: dir.clone(),
    };
    let list = bridge_list(
        &format!("gc-{n}"),
        &bridge,
        &format!("10.254.{n}.0/24"),
        &dir.join("ipam"),
    );
    let cni = CniConfig::new(vec![PathBuf::from("/usr/lib/cni")], dir.join("cache"));
    let (keep_ns, stale_ns) = (Netns::new("gck"), Netns::new("gcs"));
    let keep = rt(
        &format!("keep{n}x{}", std::process::id()),
        Some(keep_ns.path()),
    );
    let stale = rt(
        &format!("stale{n}x{}", std::process::id()),
        Some(stale_ns.path()),
    );
    cni.add(&list, &keep).await.expect("ADD keep");
    cni.add(&list, &stale).await.expect("ADD stale");
    assert_eq!(cni.cache().cached_attachments("").unwrap().len(), 2);

    let valid = [cni_exec::config::GcAttachment {
        container_id: keep.container_id.clone(),
        ifname: "eth0".into(),
    }];
    cni.gc(&list, &valid).await.expect("GC");
    let left: Vec<String> = cni
        .cache()
        .cached_attachments("")
        .unwrap()
        .into_iter()
        .map(|a| a.container_id)
        .collect();
    assert_eq!(
        left,
        vec![keep.container_id.clone()],
        "only the valid attachment is left"
    );
    let stale_links = String::from_utf8(stale_ns.exec(&["ip", "-o", "link"], None).stdout).unwrap();
    assert!(
        !stale_links.contains("eth0"),
        "the stale attachment was DELeted: {stale_links}"
    );
    let keep_links = String::from_utf8(keep_ns.exec(&["ip", "-o", "link"], None).stdout).unwrap();
    assert!(
        keep_links.contains("eth0"),
        "the valid attachment is untouched: {keep_links}"
    );

    // Version 1.0.0 has no STATUS: it answers ready without calling the plugins.
    cni.status(&list)
        .await
        .expect("STATUS below 1.1.0 is ready");
    cni.del(&list, &keep).await.expect("DEL keep");

    // loopback alone.
    let lo = NetworkConfigList::from_bytes(
        br#"{"cniVersion":"0.3.1","name":"lo-test","plugins":[{"type":"loopback"}]}"#,
    )
    .unwrap();
    let lo_rt = RuntimeConf {
        ifname: "lo".into(),
        ..rt(
            &format!("lo{n}x{}", std::process::id()),
            Some(keep_ns.path()),
        )
    };
    let r = cni.add(&lo, &lo_rt).await.expect("ADD loopback");
    assert_eq!(r.cni_version(), "0.3.1");
    cni.del(&lo, &lo_rt).await.expect("DEL loopback");
    drop(cleanup);
}

/// 16 attachments ADDed at once on one bridge get 16 distinct addresses, and are all
/// DELeted cleanly (no shared-state races in the runtime side).
#[tokio::test]
async fn concurrent_adds_get_distinct_addresses() {
    node_sdk_e2e::require_root();
    let tag = unique_name("cnic");
    let dir = std::env::temp_dir().join(&tag);
    let n = std::process::id() % 200 + 20;
    let bridge = format!("cnc{}", std::process::id() % 100_000);
    let cleanup = Cleanup {
        bridge: bridge.clone(),
        server: None,
        dir: dir.clone(),
    };
    let list = std::sync::Arc::new(bridge_list(
        &format!("cc-{n}"),
        &bridge,
        &format!("10.249.{n}.0/24"),
        &dir.join("ipam"),
    ));
    let cni = CniConfig::new(vec![PathBuf::from("/usr/lib/cni")], dir.join("cache"));
    let namespaces: Vec<Netns> = (0..16).map(|_| Netns::new("cc")).collect();
    let mut tasks = Vec::new();
    for (i, ns) in namespaces.iter().enumerate() {
        let (cni, list, rt) = (
            cni.clone(),
            list.clone(),
            rt(&format!("c{i}x{n}x{}", std::process::id()), Some(ns.path())),
        );
        tasks.push(tokio::spawn(async move {
            cni.add(&list, &rt).await.map(|r| (rt, r))
        }));
    }
    let mut ips = std::collections::BTreeSet::new();
    let mut added = Vec::new();
    for t in tasks {
        let (rt, r) = t.await.unwrap().expect("concurrent ADD");
        ips.insert(
            r.to_value()["ips"][0]["address"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
        added.push(rt);
    }
    assert_eq!(ips.len(), 16, "distinct addresses: {ips:?}");
    let dels: Vec<_> = added
        .into_iter()
        .map(|rt| {
            let (cni, list) = (cni.clone(), list.clone());
            tokio::spawn(async move { cni.del(&list, &rt).await })
        })
        .collect();
    for d in dels {
        d.await.unwrap().expect("concurrent DEL");
    }
    assert!(cni.cache().cached_attachments("").unwrap().is_empty());
    drop(namespaces);
    drop(cleanup);
}
