//! The `cnitool` CLI end to end, as root, against Debian's real CNI plugins
//! (containernetworking-plugins 1.1.1 in /usr/lib/cni) in fresh network namespaces: a
//! bridge + host-local list of each test's own (bridge name, 10.252.X.0/24 subnet, IPAM
//! data dir in a temp dir), with and without portmap.
//!
//! Upstream `cnitool` cannot move libcni's cache (`/var/lib/cni`), so neither can this
//! one: the tests use the real cache directory, with container IDs unique to their netns,
//! and check that their entries are gone at the end.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

use node_sdk_e2e::{Netns, run, unique_name};
use node_sdk_examples::cnitool::container_id;
use serde_json::{Value, json};

const CNITOOL: &str = env!("CARGO_BIN_EXE_cnitool");

/// One test's network: its conflists in a temp NETCONFPATH, its bridge, subnet and netns.
struct Fixture {
    dir: PathBuf,
    bridge: String,
    /// The third octet of the 10.252.X.0/24 subnet.
    octet: u32,
    ns: Netns,
    /// Networks added, deleted again (best effort) on drop: (name, CAP_ARGS).
    added: Vec<(String, String)>,
}

impl Fixture {
    fn new(tag: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        node_sdk_e2e::require_root();
        let idx = N.fetch_add(1, Ordering::Relaxed);
        assert!(idx < 6, "at most six fixtures per test process");
        let pid = std::process::id();
        let dir = std::env::temp_dir().join(unique_name(&format!("cnitool-{tag}")));
        std::fs::create_dir_all(dir.join("net.d")).unwrap();
        Self {
            dir,
            // Bridge names are at most 15 characters.
            bridge: format!("cnt{}x{idx}", pid % 100_000),
            octet: (pid % 40) * 6 + idx,
            ns: Netns::new(tag),
            added: Vec::new(),
        }
    }

    /// Writes a conflist named `name` (bridge + host-local, then portmap if asked).
    fn write_list(&self, name: &str, portmap: bool) {
        let mut plugins = vec![json!({
            "type": "bridge", "bridge": self.bridge, "isGateway": true, "ipMasq": false,
            "ipam": {"type": "host-local",
                     "ranges": [[{"subnet": format!("10.252.{}.0/24", self.octet)}]],
                     "dataDir": self.dir.join("ipam").to_str().unwrap()}
        })];
        if portmap {
            plugins.push(json!({"type": "portmap", "capabilities": {"portMappings": true}}));
        }
        let list = json!({"cniVersion": "1.0.0", "name": name, "plugins": plugins});
        std::fs::write(
            self.dir.join("net.d").join(format!("10-{name}.conflist")),
            serde_json::to_vec_pretty(&list).unwrap(),
        )
        .unwrap();
    }

    fn cnitool(&self, args: &[&str], cap_args: Option<&str>) -> Output {
        let mut cmd = Command::new(CNITOOL);
        cmd.args(args)
            .env("NETCONFPATH", self.dir.join("net.d"))
            .env("CNI_PATH", "/usr/lib/cni")
            .env("CNI_ARGS", "IgnoreUnknown=1")
            .env_remove("CNI_IFNAME")
            .env_remove("CAP_ARGS");
        if let Some(c) = cap_args {
            cmd.env("CAP_ARGS", c);
        }
        cmd.output().unwrap()
    }

    /// `cnitool add`, which must succeed; returns the printed result and remembers the
    /// network for cleanup.
    fn add(&mut self, net: &str, cap_args: Option<&str>) -> (String, Value) {
        self.added
            .push((net.to_owned(), cap_args.unwrap_or_default().to_owned()));
        let out = self.cnitool(&["add", net, &self.ns.path()], cap_args);
        assert_ok(&out, "add");
        let text = String::from_utf8(out.stdout).unwrap();
        let value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        (text, value)
    }

    fn cache_file(&self, net: &str) -> PathBuf {
        Path::new("/var/lib/cni/results")
            .join(format!("{net}-{}-eth0", container_id(&self.ns.path())))
    }

    fn eth0_addrs(&self) -> String {
        let out = Command::new("ip")
            .args(["netns", "exec", self.ns.name(), "ip", "-o", "addr", "show"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.contains(" eth0 ") || l.contains(" eth0@"))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        for (net, cap) in std::mem::take(&mut self.added) {
            let cap = (!cap.is_empty()).then_some(cap.as_str());
            let _ = self.cnitool(&["del", &net, &self.ns.path()], cap);
        }
        // Cache entries of this netns's container ID a failed test may have left.
        let id = format!("-{}-", container_id(&self.ns.path()));
        if let Ok(rd) = std::fs::read_dir("/var/lib/cni/results") {
            for e in rd.flatten() {
                if e.file_name().to_string_lossy().contains(&id) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        let _ = Command::new("ip")
            .args(["link", "delete", &self.bridge])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
        // The netns goes with the `ns` field, after this.
    }
}

fn assert_ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what}: {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn nat_rules() -> String {
    String::from_utf8(run(&["iptables-save", "-t", "nat"], None).stdout).unwrap()
}

#[test]
fn add_check_gc_del_on_a_bridge() {
    let mut f = Fixture::new("plain");
    let net = format!("cnitool-plain-{}", f.octet);
    f.write_list(&net, false);
    let ns_path = f.ns.path();

    // ADD prints the result as upstream: Go's MarshalIndent with four spaces, no newline.
    let (text, result) = f.add(&net, None);
    assert!(
        text.starts_with("{\n    \"cniVersion\": \"1.0.0\",\n    \"interfaces\": ["),
        "{text}"
    );
    assert!(!text.ends_with('\n'), "{text:?}");
    let address = result["ips"][0]["address"].as_str().expect("an IP");
    assert!(
        address.starts_with(&format!("10.252.{}.", f.octet)) && address.ends_with("/24"),
        "{result}"
    );
    // The address is really on eth0 in the netns.
    let addrs = f.eth0_addrs();
    assert!(addrs.contains(&format!("inet {address}")), "{addrs}");
    assert!(
        result["interfaces"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["name"] == "eth0" && i["sandbox"] == ns_path.as_str()),
        "{result}"
    );

    // libcni's cache entry, under upstream's container ID for this netns.
    let cache = f.cache_file(&net);
    let cached: Value = serde_json::from_slice(&std::fs::read(&cache).unwrap()).unwrap();
    assert_eq!(cached["containerId"], container_id(&ns_path).as_str());
    assert_eq!(cached["netns"], ns_path.as_str());

    // CHECK passes on a list without portmap, and prints nothing.
    let out = f.cnitool(&["check", &net, &ns_path], None);
    assert_ok(&out, "check");
    assert!(out.stdout.is_empty());

    // STATUS: the list runs at 1.0.0 with these plugins, where STATUS is a no-op.
    assert_ok(&f.cnitool(&["status", &net, &ns_path], None), "status");

    // GC passes no valid attachments: the cached attachment is deleted.
    assert_ok(&f.cnitool(&["gc", &net, &ns_path], None), "gc");
    assert!(!cache.exists(), "gc removed the cache entry");
    assert_eq!(f.eth0_addrs(), "", "gc removed eth0");

    // Add again, then DEL twice: both succeed.
    let (_, again) = f.add(&net, None);
    assert!(again["ips"][0]["address"].is_string(), "{again}");
    assert!(cache.exists());
    assert_ok(&f.cnitool(&["del", &net, &ns_path], None), "del");
    assert_ok(&f.cnitool(&["del", &net, &ns_path], None), "second del");
    assert_eq!(f.eth0_addrs(), "", "del removed eth0");
    assert!(!cache.exists(), "del removed the cache entry");
}

#[test]
fn portmap_gets_cap_args_and_its_check_fails() {
    let mut f = Fixture::new("pm");
    let net = format!("cnitool-pm-{}", f.octet);
    f.write_list(&net, true);
    let ns_path = f.ns.path();
    let host_port = 21_000 + (std::process::id() % 20_000);
    let cap = json!({"portMappings": [
        {"hostPort": host_port, "containerPort": 8080, "protocol": "tcp"}
    ]})
    .to_string();
    let dport = format!("--dport {host_port} ");

    assert!(
        !nat_rules().contains(&dport),
        "port {host_port} already mapped"
    );
    let (_, result) = f.add(&net, Some(&cap));
    let ip = result["ips"][0]["address"]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    // CAP_ARGS reached portmap: a DNAT rule for the host port to the pod.
    let rules = nat_rules();
    assert!(
        rules
            .lines()
            .any(|l| l.contains(&dport) && l.contains(&format!("{ip}:8080"))),
        "{rules}"
    );

    // Debian's portmap 1.1.1 fails CHECK on IPv4-only attachments
    // (containernetworking/plugins#819): non-zero exit, the plugin's error on stderr.
    let out = f.cnitool(&["check", &net, &ns_path], Some(&cap));
    assert!(!out.status.success(), "check must fail");
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("portmap") && err.contains("could not check ipv6 dnat"),
        "{err}"
    );

    assert_ok(&f.cnitool(&["del", &net, &ns_path], Some(&cap)), "del");
    assert!(!nat_rules().contains(&dport), "the mapping is gone");
    assert_ok(
        &f.cnitool(&["del", &net, &ns_path], Some(&cap)),
        "second del",
    );
    assert!(!f.cache_file(&net).exists());
}

#[test]
fn unknown_network_is_a_clear_error() {
    let f = Fixture::new("unknown");
    f.write_list(&format!("cnitool-known-{}", f.octet), false);
    let out = f.cnitool(&["add", "no-such-net", &f.ns.path()], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let err = stderr(&out);
    assert!(
        err.contains("no-such-net") && err.contains("net.d"),
        "{err}"
    );
    assert_eq!(f.eth0_addrs(), "");
}

#[test]
fn bad_arguments_and_environment() {
    let f = Fixture::new("args");
    let net = format!("cnitool-args-{}", f.octet);
    f.write_list(&net, false);
    // Missing arguments and an unknown verb: the usage on stderr, exit 1.
    for args in [
        &[][..],
        &["add"],
        &["add", &net],
        &["frob", &net, "/run/netns/x"],
    ] {
        let out = f.cnitool(args, None);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
        let err = stderr(&out);
        assert!(
            err.starts_with("cnitool: Add, check, remove, gc or status network interfaces")
                && err.contains("  cnitool add    <net> <netns>\n"),
            "{args:?}: {err}"
        );
    }
    // --help: the usage on stdout, exit 0.
    let out = f.cnitool(&["--help"], None);
    assert_ok(&out, "--help");
    assert!(String::from_utf8_lossy(&out.stdout).contains("cnitool del    <net> <netns>"));

    // Malformed CNI_ARGS and CAP_ARGS fail before any plugin runs.
    let out = Command::new(CNITOOL)
        .args(["add", &net, &f.ns.path()])
        .env("NETCONFPATH", f.dir.join("net.d"))
        .env("CNI_PATH", "/usr/lib/cni")
        .env("CNI_ARGS", "IgnoreUnknown=1;oops")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr(&out), "invalid CNI_ARGS pair \"oops\"\n");
    let out = f.cnitool(&["add", &net, &f.ns.path()], Some("[1]"));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).starts_with("CAP_ARGS: "), "{}", stderr(&out));

    // Without CNI_PATH (upstream requires it) no plugin can be found; libcni's message
    // is "no paths provided" too.
    let out = Command::new(CNITOOL)
        .args(["add", &net, &f.ns.path()])
        .env("NETCONFPATH", f.dir.join("net.d"))
        .env_remove("CNI_PATH")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("\"bridge\"") && err.contains("no paths provided"),
        "{err}"
    );
    assert_eq!(f.eth0_addrs(), "", "nothing was added");
}

#[test]
fn ifname_from_env_and_flag() {
    let f = Fixture::new("ifname");
    let net = format!("cnitool-if-{}", f.octet);
    f.write_list(&net, false);
    let ns_path = f.ns.path();
    let tool = |args: &[&str], ifname: &str| {
        Command::new(CNITOOL)
            .args(args)
            .env("NETCONFPATH", f.dir.join("net.d"))
            .env("CNI_PATH", "/usr/lib/cni")
            .env("CNI_ARGS", "IgnoreUnknown=1")
            .env("CNI_IFNAME", ifname)
            .output()
            .unwrap()
    };
    let links = || String::from_utf8(f.ns.exec(&["ip", "-o", "link"], None).stdout).unwrap();
    let id = container_id(&ns_path);
    let cache =
        |ifname: &str| Path::new("/var/lib/cni/results").join(format!("{net}-{id}-{ifname}"));

    // CNI_IFNAME names the interface (and the cache entry).
    assert_ok(&tool(&["add", &net, &ns_path], "net1"), "add net1");
    assert!(links().contains(" net1@"), "{}", links());
    assert!(cache("net1").exists());
    // -i/--ifname wins over CNI_IFNAME, as in newer upstream.
    assert_ok(
        &tool(&["add", "-i", "net2", &net, &ns_path], "net1"),
        "add -i net2",
    );
    assert!(links().contains(" net2@"), "{}", links());
    assert!(cache("net2").exists());

    assert_ok(
        &tool(&["del", "--ifname=net2", &net, &ns_path], "x"),
        "del net2",
    );
    assert_ok(&tool(&["del", &net, &ns_path], "net1"), "del net1");
    let after = links();
    assert!(
        !after.contains("net1") && !after.contains("net2"),
        "{after}"
    );
    assert!(!cache("net1").exists() && !cache("net2").exists());
}

/// Our addition: `cnitool conformance <net>` runs the spec checks on the real plugins and
/// prints the report; the Debian portmap CHECK bug makes it exit 1, naming the check.
#[test]
fn conformance_subcommand_reports_each_check() {
    let fx = Fixture::new("conf");
    let clean = format!("conf-{}", fx.octet);
    fx.write_list(&clean, false);
    let out = fx.cnitool(&["conformance", &clean], None);
    assert_ok(&out, "conformance on bridge + host-local");
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(report.contains("PASS add"), "{report}");
    assert!(report.contains("PASS del.again"), "{report}");
    assert!(report.contains("PASS gc.removes_stale"), "{report}");

    let with_portmap = format!("confpm-{}", fx.octet);
    fx.write_list(&with_portmap, true);
    let out = fx.cnitool(
        &["conformance", &with_portmap],
        Some(r#"{"portMappings":[{"hostPort":18099,"containerPort":80,"protocol":"tcp"}]}"#),
    );
    assert_eq!(out.status.code(), Some(1), "a failed check exits 1");
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        report.contains("FAIL check") && report.contains("could not check ipv6 dnat"),
        "{report}"
    );
    assert!(
        stderr(&out).contains("1 conformance check(s) failed"),
        "{}",
        stderr(&out)
    );
}
