//! The tracer on what the kernel really holds: the golden case is loaded into a
//! throwaway network namespace (`iptables-restore`, `nft -f`), read back
//! (`iptables-save`, `nft -j list table ip kube-proxy`), and every packet of a grid of
//! sources and destinations must trace the same way through the kernel's copy as
//! through our rendered text.
//!
//! These tests need root and the `ip`, `iptables-restore`, `iptables-save` and `nft`
//! commands (`scripts/env.sh up` installs them). Each namespace is named
//! `nsdk-trace-<pid>-<n>` and deleted on drop.

mod golden;

use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use proxy_rules::config::NodePortAddresses;
use proxy_rules::iptables::dump::IptablesDump;
use proxy_rules::model::Protocol;
use proxy_rules::trace::{
    NftTable, Node, Origin, Packet, Trace, TraceMode, trace_iptables, trace_nftables,
};

const SETUP: &str = "run `scripts/env.sh up` as root (it installs iproute2, iptables and nftables)";

/// The absolute path of a command, or a failure that says how to get it.
fn require(cmd: &str) -> String {
    let path = std::env::var("PATH").unwrap_or_default();
    for dir in path
        .split(':')
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"])
    {
        let p = std::path::Path::new(dir).join(cmd);
        if p.is_file() {
            return p.to_string_lossy().into_owned();
        }
    }
    panic!("`{cmd}` is missing: {SETUP}");
}

/// A throwaway network namespace, deleted on drop.
struct Netns {
    name: String,
    ip: String,
}

impl Netns {
    fn new() -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let ip = require("ip");
        let name = format!(
            "nsdk-trace-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        let out = Command::new(&ip)
            .args(["netns", "add", &name])
            .output()
            .unwrap_or_else(|e| panic!("`ip netns add {name}`: {e}: {SETUP}"));
        assert!(
            out.status.success(),
            "`ip netns add {name}` failed ({}): {}; these tests need root: {SETUP}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Self { name, ip }
    }

    /// Run a command in the namespace, feeding `stdin`; its standard output.
    fn run(&self, argv: &[&str], stdin: &str) -> String {
        let cmd = require(argv[0]);
        let mut child = Command::new(&self.ip)
            .args(["netns", "exec", &self.name, &cmd])
            .args(&argv[1..])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{argv:?}: {e}: {SETUP}"));
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{argv:?} in {} failed ({}): {}",
            self.name,
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new(&self.ip)
            .args(["netns", "del", &self.name])
            .status();
    }
}

fn upstream_node() -> Node {
    Node::new(["192.168.0.2", "192.168.1.2", "192.168.99.11"].map(|s| s.parse::<IpAddr>().unwrap()))
}

/// The golden iptables case, but without `-m nfacct` (the kernel refuses the rule
/// unless the nfacct object exists, and nothing here creates it; the tracer ignores
/// nfacct matches anyway).
fn iptables_ruleset() -> proxy_rules::iptables::IptablesRuleset {
    let mut c = golden::config();
    c.random_fully = false;
    golden::render_iptables(golden::objects("overall-iptables.yaml", false), &c)
}

fn nftables_ruleset() -> proxy_rules::nftables::NftRuleset {
    let config = golden::config().nodeport_addresses(NodePortAddresses::Cidrs(vec![
        "192.168.0.2/32".parse().unwrap(),
    ]));
    golden::render_nftables(golden::objects("overall-nftables.yaml", true), config)
}

/// Every source against every service destination of the golden case, TCP and UDP.
fn packets() -> Vec<Packet> {
    let dests = [
        "172.30.0.41:80",
        "172.30.0.41:443",
        "172.30.0.42:80",
        "172.30.0.43:80",
        "172.30.0.44:80",
        "172.30.0.45:80",
        "172.30.0.46:80",
        "172.30.0.50:80",
        "192.168.99.22:80",
        "192.168.99.33:80",
        "1.2.3.4:80",
        "5.6.7.8:80",
        "192.168.0.2:3001",
        "192.168.0.2:3002",
        "192.168.0.2:3003",
        "192.168.0.2:30000",
        "192.168.0.2:4444",
        "192.168.1.2:3003",
        "10.0.0.3:80",
    ];
    let sources = [
        (Origin::Pod, "10.0.0.2"),
        (Origin::Pod, "10.180.0.1"),
        (Origin::Pod, "10.180.0.3"),
        (Origin::External, "203.0.113.2"),
        (Origin::External, "203.0.113.130"),
        (Origin::Host, "192.168.0.2"),
    ];
    let mut out = Vec::new();
    for proto in [Protocol::Tcp, Protocol::Udp] {
        for d in dests {
            let d: SocketAddr = d.parse().unwrap();
            for (origin, s) in sources {
                out.push(Packet::new(origin, proto, s.parse().unwrap(), d));
            }
        }
        out.push(Packet::new(
            Origin::Host,
            proto,
            "127.0.0.1".parse().unwrap(),
            "127.0.0.1:3003".parse().unwrap(),
        ));
    }
    out
}

/// The two traces describe the same paths: DNAT, masquerade, verdict, probability and
/// the chains passed (rule texts differ in form between rendered and saved rules).
fn assert_same(what: &str, ours: &Trace, kernel: &Trace) {
    let shape = |t: &Trace| -> Vec<String> {
        t.paths
            .iter()
            .map(|p| {
                let chains: Vec<String> = p
                    .steps
                    .iter()
                    .map(|s| format!("{} {}", s.table, s.chain))
                    .collect();
                format!(
                    "p={:.6} dnat={:?} masq={} {} by {:?} via [{}]",
                    p.probability,
                    p.dnat,
                    p.masqueraded,
                    p.verdict,
                    p.verdict_rule.as_ref().map(|s| &s.chain),
                    chains.join(", ")
                )
            })
            .collect()
    };
    assert_eq!(ours.mode, kernel.mode, "{what}");
    assert_eq!(
        shape(ours),
        shape(kernel),
        "{what}: {}\nours:\n{ours}\nkernel:\n{kernel}",
        ours.packet
    );
}

/// `{ X }` written as `X`, as nft lists a one-element anonymous set.
fn unbrace_single(text: &str) -> String {
    let words: Vec<&str> = text.split(' ').collect();
    let mut out: Vec<&str> = Vec::new();
    let mut i = 0;
    while i < words.len() {
        if words[i] == "{" && words.get(i + 2) == Some(&"}") {
            out.push(words[i + 1]);
            i += 3;
        } else {
            out.push(words[i]);
            i += 1;
        }
    }
    out.join(" ")
}

fn iptables_round_trip(text: &str, mode: TraceMode) {
    let ns = Netns::new();
    ns.run(&["iptables-restore"], text);
    let saved = ns.run(&["iptables-save"], "");
    let ours = IptablesDump::parse(text, "rendered").unwrap();
    let kernel = IptablesDump::parse(&saved, "iptables-save").unwrap();
    assert_eq!(ours.rule_count("nat"), kernel.rule_count("nat"));
    assert_eq!(ours.rule_count("filter"), kernel.rule_count("filter"));
    let node = upstream_node();
    let mut reached = 0;
    for p in packets() {
        let a = trace_iptables(&ours, &p, &node).unwrap_or_else(|e| panic!("{p}: {e}"));
        let b = trace_iptables(&kernel, &p, &node).unwrap_or_else(|e| panic!("{p}: {e}"));
        assert_eq!(a.mode, mode);
        assert_same("iptables", &a, &b);
        reached += usize::from(!a.endpoints().is_empty());
    }
    assert!(reached > 30, "only {reached} packets reached an endpoint");
}

#[test]
fn iptables_kernel_round_trip_with_jump_rules() {
    iptables_round_trip(
        &iptables_ruleset().complete_restore_input(),
        TraceMode::IptablesHooks,
    );
}

#[test]
fn iptables_kernel_round_trip_of_restore_input() {
    iptables_round_trip(
        &iptables_ruleset().restore_input(),
        TraceMode::IptablesKubeChains,
    );
}

#[test]
fn nftables_kernel_round_trip() {
    let rules = nftables_ruleset();
    let ns = Netns::new();
    ns.run(&["nft", "-f", "-"], &rules.dump());
    let json = ns.run(&["nft", "-j", "list", "table", "ip", "kube-proxy"], "");
    let ours = NftTable::from_ruleset(&rules).unwrap();
    let kernel = NftTable::from_json(&json, "nft -j list").unwrap();
    // The same objects; the rule texts read back from JSON are kube-proxy's, except that
    // nft prints a one-element anonymous set as a plain value.
    assert_eq!(
        ours.chains.keys().collect::<Vec<_>>(),
        kernel.chains.keys().collect::<Vec<_>>()
    );
    assert_eq!(
        ours.sets.keys().collect::<Vec<_>>(),
        kernel.sets.keys().collect::<Vec<_>>()
    );
    for (name, c) in &ours.chains {
        let k = &kernel.chains[name];
        assert_eq!(c.base, k.base, "{name}");
        let texts = |c: &proxy_rules::trace::NftTableChain| -> Vec<String> {
            c.rules
                .iter()
                .map(|r| unbrace_single(&r.full_text()))
                .collect()
        };
        assert_eq!(texts(c), texts(k), "{name}");
    }
    for (name, s) in &ours.sets {
        let mut a = s.elements.clone();
        let mut b = kernel.sets[name].elements.clone();
        a.sort_by(|x, y| x.key.cmp(&y.key));
        b.sort_by(|x, y| x.key.cmp(&y.key));
        assert_eq!(a, b, "{name}");
    }
    let node = upstream_node();
    let mut reached = 0;
    for p in packets() {
        let a = trace_nftables(&ours, &p, &node).unwrap_or_else(|e| panic!("{p}: {e}"));
        let b = trace_nftables(&kernel, &p, &node).unwrap_or_else(|e| panic!("{p}: {e}"));
        assert_same("nftables", &a, &b);
        reached += usize::from(!a.endpoints().is_empty());
    }
    assert!(reached > 30, "only {reached} packets reached an endpoint");
}
