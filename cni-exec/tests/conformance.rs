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
    /// `k` tells the tests of this process apart (0..5).
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
