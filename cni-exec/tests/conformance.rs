//! `ConformanceCheck` against Debian's real CNI plugins (containernetworking-plugins
//! 1.1.1 in /usr/lib/cni), as root: each test has its own bridge name, subnet
//! (10.253.X.0/24), IPAM data directory and cache directory, and asserts the exact
//! outcome of every check.

use std::path::PathBuf;
use std::process::Command;

use cni_exec::config::NetworkConfigList;
use cni_exec::conformance::{ConformanceCheck, NetnsSource, Outcome, Report, check};
use cni_exec::network::CniConfig;
use node_sdk_e2e::Netns;
use serde_json::{Value, json};

/// One test's names and directories; deletes its bridge (if any) when dropped.
struct Env {
    dir: tempfile::TempDir,
    subnet: String,
    bridge: String,
}

impl Env {
    /// `k` tells the tests of this process apart (0..=5).
    fn new(k: u32) -> Self {
        node_sdk_e2e::require_root();
        let pid = std::process::id();
        Self {
            dir: tempfile::tempdir().unwrap(),
            subnet: format!("10.253.{}.0/24", (pid % 50) * 5 + k),
            bridge: format!("cfb{}x{k}", pid % 100_000),
        }
    }

    fn net_name(&self, tag: &str) -> String {
        format!("conf-{tag}-{}", std::process::id())
    }

    fn ipam(&self) -> Value {
        json!({"type": "host-local", "ranges": [[{"subnet": self.subnet}]],
               "dataDir": self.dir.path().join("ipam").to_str().unwrap()})
    }

    fn cni(&self) -> CniConfig {
        CniConfig::new(
            vec![PathBuf::from("/usr/lib/cni")],
            self.dir.path().join("cache"),
        )
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "delete", &self.bridge])
            .output();
    }
}

fn list(value: &Value) -> NetworkConfigList {
    NetworkConfigList::from_bytes(value.to_string().as_bytes()).unwrap()
}

/// Every check has the outcome given (`Pass` unless listed in `others`).
fn assert_outcomes(report: &Report, others: &[(&str, Outcome)]) {
    let got: Vec<(&str, Outcome)> = report
        .checks
        .iter()
        .map(|c| (c.name, c.outcome()))
        .collect();
    let want: Vec<(&str, Outcome)> = check::ALL
        .iter()
        .map(|&n| {
            let o = others
                .iter()
                .find(|(name, _)| *name == n)
                .map_or(Outcome::Pass, |(_, o)| *o);
            (n, o)
        })
        .collect();
    assert_eq!(got, want, "{report}");
    assert!(report.cleanup_errors.is_empty(), "{report}");
}

#[tokio::test]
async fn bridge_host_local_passes_everything() {
    let env = Env::new(0);
    let conf = json!({
        "cniVersion": "1.0.0",
        "name": env.net_name("br"),
        "plugins": [{"type": "bridge", "bridge": env.bridge, "isGateway": true,
                     "ipMasq": true, "ipam": env.ipam()}]
    });
    let report = ConformanceCheck::new(env.cni(), list(&conf)).run().await;
    eprintln!("{report}");
    assert_outcomes(&report, &[(check::STATUS, Outcome::Skip)]);
    assert!(report.passed(), "{report}");
    assert_eq!(report.version.as_deref(), Some("1.0.0"));
    assert_eq!(
        report.get(check::STATUS).unwrap().evidence,
        "version 1.0.0 has no STATUS"
    );
    let text = report.to_string();
    assert!(text.contains("PASS del.ipam_released: "), "{text}");
    // ipMasq added rules naming the container, and DEL removed them.
    let rules = &report.get(check::DEL_IPTABLES_CLEAN).unwrap().evidence;
    assert!(!rules.ends_with("(0 did after ADD)"), "{rules}");
    // The namespaces the check created are gone.
    let add: Value = serde_json::from_str(&report.get(check::ADD).unwrap().evidence).unwrap();
    let sandbox = add["interfaces"][2]["sandbox"].as_str().unwrap();
    assert!(sandbox.starts_with("/run/netns/cniconf-"), "{sandbox}");
    assert!(!std::path::Path::new(sandbox).exists(), "{sandbox} deleted");
    assert!(text.contains("SKIP status: "), "{text}");
}

#[tokio::test]
async fn bridge_portmap_fails_only_check() {
    let env = Env::new(1);
    let conf = json!({
        "cniVersion": "1.0.0",
        "name": env.net_name("pm"),
        "plugins": [
            {"type": "bridge", "bridge": env.bridge, "isGateway": true, "ipMasq": true,
             "ipam": env.ipam()},
            {"type": "portmap", "capabilities": {"portMappings": true}}
        ]
    });
    let mut caps = serde_json::Map::new();
    let host_port = 20_000 + (std::process::id() % 20_000);
    caps.insert(
        "portMappings".into(),
        json!([{"hostPort": host_port, "containerPort": 8080, "protocol": "tcp"}]),
    );
    let report = ConformanceCheck::new(env.cni(), list(&conf))
        .capability_args(caps)
        .run()
        .await;
    eprintln!("{report}");
    assert_outcomes(
        &report,
        &[
            (check::CHECK, Outcome::Fail),
            (check::STATUS, Outcome::Skip),
        ],
    );
    assert!(!report.passed());
    assert_eq!(report.failed_count(), 1);
    // containernetworking/plugins#819, with the plugin's message as the evidence.
    let evidence = &report.get(check::CHECK).unwrap().evidence;
    assert!(
        evidence.contains("portmap") && evidence.contains("could not check ipv6 dnat"),
        "{evidence}"
    );
    assert!(report.to_string().contains("FAIL check: "), "{report}");
}

#[tokio::test]
async fn loopback_alone() {
    let env = Env::new(2);
    let conf = json!({
        "cniVersion": "1.0.0",
        "name": env.net_name("lo"),
        "plugins": [{"type": "loopback"}]
    });
    let report = ConformanceCheck::new(env.cni(), list(&conf))
        .ifname("lo")
        .run()
        .await;
    eprintln!("{report}");
    assert_outcomes(
        &report,
        &[
            (check::DEL_IPAM_RELEASED, Outcome::Skip),
            (check::STATUS, Outcome::Skip),
        ],
    );
    assert!(report.passed(), "{report}");
    let gone = &report.get(check::DEL_INTERFACES_GONE).unwrap().evidence;
    assert!(gone.contains("lo (cannot be deleted) is down"), "{gone}");
}

#[tokio::test]
async fn ptp_host_local() {
    let env = Env::new(3);
    let conf = json!({
        "cniVersion": "1.0.0",
        "name": env.net_name("ptp"),
        "plugins": [{"type": "ptp", "ipMasq": true, "ipam": env.ipam()}]
    });
    let report = ConformanceCheck::new(env.cni(), list(&conf)).run().await;
    eprintln!("{report}");
    assert_outcomes(&report, &[(check::STATUS, Outcome::Skip)]);
    assert!(report.passed(), "{report}");
}

#[tokio::test]
async fn given_netns_path_and_disable_check() {
    let env = Env::new(4);
    let ns = Netns::new("conf");
    // No gateway: the GC containers share the netns under their own interface names,
    // and a second default route would collide.
    let conf = json!({
        "cniVersion": "1.0.0",
        "name": env.net_name("path"),
        "disableCheck": true,
        "plugins": [{"type": "bridge", "bridge": env.bridge, "ipam": env.ipam()}]
    });
    let report = ConformanceCheck::new(env.cni(), list(&conf))
        .netns(NetnsSource::Path(ns.path()))
        .run()
        .await;
    eprintln!("{report}");
    assert_outcomes(
        &report,
        &[
            (check::CHECK, Outcome::Skip),
            (check::STATUS, Outcome::Skip),
        ],
    );
    assert_eq!(
        report.get(check::CHECK).unwrap().evidence,
        "disableCheck is set"
    );
    let links = String::from_utf8(ns.exec(&["ip", "-o", "link"], None).stdout).unwrap();
    assert!(!links.contains("eth0") && !links.contains("cgc"), "{links}");
}

/// A plugin that lies: its ADD reports an interface it never creates and "allocates" a
/// host-local file it never frees; CHECK and DEL fail. Every check that can see it fails.
#[tokio::test]
async fn misbehaving_plugin_fails_with_evidence() {
    use std::os::unix::fs::PermissionsExt as _;
    let env = Env::new(5);
    let net = env.net_name("liar");
    let bin = env.dir.path().join("bin");
    let alloc = env.dir.path().join("ipam").join(&net);
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::create_dir_all(&alloc).unwrap();
    let ip = format!("{}9", env.subnet.trim_end_matches("0/24"));
    let script = format!(
        r#"#!/bin/sh
cat >/dev/null
case "$CNI_COMMAND" in
VERSION) echo '{{"cniVersion":"1.0.0","supportedVersions":["0.4.0","1.0.0"]}}' ;;
ADD) touch '{alloc}/{ip}'
     echo '{{"cniVersion":"1.0.0","interfaces":[{{"name":"'"$CNI_IFNAME"'","mac":"02:00:00:00:00:01","sandbox":"'"$CNI_NETNS"'"}}],"ips":[{{"address":"{ip}/24","interface":0}}]}}' ;;
*) echo '{{"cniVersion":"1.0.0","code":999,"msg":"liar refuses '"$CNI_COMMAND"'"}}'; exit 1 ;;
esac
"#,
        alloc = alloc.display()
    );
    let plugin = bin.join("liar");
    std::fs::write(&plugin, script).unwrap();
    std::fs::set_permissions(&plugin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let conf = json!({
        "cniVersion": "1.0.0",
        "name": net,
        "plugins": [{"type": "liar", "ipam": {"type": "host-local",
                     "dataDir": env.dir.path().join("ipam").to_str().unwrap()}}]
    });
    let cni = CniConfig::new(vec![bin], env.dir.path().join("cache"));
    let report = ConformanceCheck::new(cni, list(&conf)).run().await;
    eprintln!("{report}");
    let got: Vec<(&str, Outcome)> = report
        .checks
        .iter()
        .map(|c| (c.name, c.outcome()))
        .collect();
    assert_eq!(
        got,
        vec![
            (check::ADD, Outcome::Pass),
            (check::ADD_INTERFACES, Outcome::Fail),
            (check::CHECK, Outcome::Fail),
            (check::DEL, Outcome::Fail),
            (check::DEL_AGAIN, Outcome::Fail),
            (check::DEL_WITHOUT_NETNS, Outcome::Fail),
            (check::DEL_INTERFACES_GONE, Outcome::Pass),
            (check::DEL_IPAM_RELEASED, Outcome::Fail),
            (check::DEL_IPTABLES_CLEAN, Outcome::Pass),
            (check::DEL_CACHE_GONE, Outcome::Fail),
            (check::GC_REMOVES_STALE, Outcome::Fail),
            (check::GC_KEEPS_VALID, Outcome::Fail),
            (check::STATUS, Outcome::Skip),
        ],
        "{report}"
    );
    let evidence = |name| report.get(name).unwrap().evidence.clone();
    assert!(evidence(check::ADD_INTERFACES).contains("interface \"eth0\" not in"));
    assert!(evidence(check::CHECK).contains("liar refuses CHECK"));
    assert!(evidence(check::DEL_AGAIN).contains("liar refuses DEL"));
    assert!(evidence(check::DEL_IPAM_RELEASED).contains(&ip));
    assert!(evidence(check::DEL_CACHE_GONE).starts_with("cache entry left: "));
    assert!(evidence(check::GC_REMOVES_STALE).contains("GC failed: "));
    // The GC containers could not be DELeted either: reported, not hidden.
    assert_eq!(report.cleanup_errors.len(), 2, "{report}");
    assert_eq!(report.failed_count(), 9);
}
