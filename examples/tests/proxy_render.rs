//! `proxy-render` end to end: upstream kube-proxy's golden cases loaded into the real
//! kernel (each in its own network namespace) next to our output, both read back with
//! `iptables-save` / `nft -j list`, and compared; plus the CLI's input handling.
//!
//! Needs root, iptables and nftables (`scripts/env.sh up` installs them).

use std::path::PathBuf;
use std::process::{Command, Output};

use node_sdk_e2e::{Netns, SETUP_HINT, require_root};
use proxy_rules::iptables::dump::IptablesDump;
use serde_json::Value;

fn compat(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/compat/kube-proxy")
        .join(file)
}

fn read(file: &str) -> String {
    let p = compat(file);
    std::fs::read_to_string(&p).unwrap_or_else(|e| {
        panic!(
            "{}: {e}: the shared/ folder must sit beside the checkout",
            p.display()
        )
    })
}

fn proxy_render(args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_proxy-render"));
    cmd.args(args);
    if let Some(input) = stdin {
        use std::io::Write as _;
        cmd.stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().expect("running proxy-render");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        return child.wait_with_output().unwrap();
    }
    cmd.output().expect("running proxy-render")
}

fn ok(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn require_tools() {
    require_root();
    for tool in ["iptables-restore", "iptables-save", "nft"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .unwrap();
        assert!(found.status.success(), "{tool} is missing: {SETUP_HINT}");
    }
}

/// The kube-proxy part of an `iptables-save` dump, in upstream's canonical order,
/// without what the compatibility notes list as fixture-only: the jump rules from the
/// built-in chains (and the built-in chains), `--random-fully`, nfacct matches.
fn kube_part(saved: &str) -> String {
    let mut dump = IptablesDump::parse(saved, "iptables-save").unwrap();
    for t in &mut dump.tables {
        t.chains.retain(|c| c.policy.is_none());
        for c in &mut t.chains {
            for r in &mut c.rules {
                r.args.retain(|a| a != "--random-fully");
                if let Some(i) = r.args.iter().position(|a| a == "nfacct") {
                    // "-m nfacct --nfacct-name NAME"
                    r.args.drain(i - 1..i + 3);
                }
            }
        }
    }
    dump.tables.retain(|t| !t.chains.is_empty());
    dump.canonical()
}

const IPTABLES_NODE: &[&str] = &[
    "--hostname-override",
    "test-node",
    "--node-ip",
    "192.168.0.2",
    "--cluster-cidr",
    "10.0.0.0/8",
];

#[test]
fn iptables_output_equals_upstream_golden_rules_in_the_kernel() {
    require_tools();
    // Upstream's expected text, as kube-proxy hands it to iptables-restore; its nfacct
    // matches need counter objects, which are fixture-only: they are left out.
    let golden = read("overall-iptables.rules")
        .lines()
        .map(|l| {
            l.replace(" -m nfacct --nfacct-name ct_state_invalid_dropped_pkts", "")
                .replace(" -m nfacct --nfacct-name localhost_nps_accepted_pkts", "")
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n";
    let upstream = Netns::new("prgold");
    upstream.exec(&["iptables-restore", "--noflush"], Some(golden.as_bytes()));
    let want = String::from_utf8(upstream.exec(&["iptables-save"], None).stdout).unwrap();

    let file = compat("overall-iptables.yaml");
    let mut args = vec!["--mode", "iptables"];
    args.extend_from_slice(IPTABLES_NODE);
    args.push(file.to_str().unwrap());
    let ours_text = ok(&proxy_render(&args, None), "proxy-render");
    let ours = Netns::new("prours");
    // A plain iptables-restore, as on a fresh node: the output is complete.
    ours.exec(&["iptables-restore"], Some(ours_text.as_bytes()));
    let got = String::from_utf8(ours.exec(&["iptables-save"], None).stdout).unwrap();

    let (w, g) = (kube_part(&want), kube_part(&got));
    assert_eq!(
        g, w,
        "kernel dumps differ (ours vs upstream's golden rules)"
    );
    assert_eq!(IptablesDump::parse(&w, "x").unwrap().rule_count("nat"), 55);

    // The jump rules from the built-in chains are there, as kube-proxy installs them.
    let dump = IptablesDump::parse(&got, "iptables-save").unwrap();
    let nat = dump.table("nat").unwrap();
    for (chain, target) in [
        ("PREROUTING", "KUBE-SERVICES"),
        ("OUTPUT", "KUBE-SERVICES"),
        ("POSTROUTING", "KUBE-POSTROUTING"),
    ] {
        assert!(
            nat.chain(chain)
                .unwrap()
                .rules
                .iter()
                .any(|r| r.target() == Some(target)),
            "nat {chain} -> {target}"
        );
    }
    let filter = dump.table("filter").unwrap();
    for (chain, target) in [
        ("INPUT", "KUBE-EXTERNAL-SERVICES"),
        ("INPUT", "KUBE-NODEPORTS"),
        ("INPUT", "KUBE-PROXY-FIREWALL"),
        ("INPUT", "KUBE-FIREWALL"),
        ("FORWARD", "KUBE-SERVICES"),
        ("FORWARD", "KUBE-FORWARD"),
        ("OUTPUT", "KUBE-SERVICES"),
    ] {
        assert!(
            filter
                .chain(chain)
                .unwrap()
                .rules
                .iter()
                .any(|r| r.target() == Some(target)),
            "filter {chain} -> {target}"
        );
    }
    // MASQUERADE is fully random (the golden fixture's fake iptables lacks it).
    assert!(got.contains("-j MASQUERADE --random-fully"), "{got}");
}

/// `nft -j list table` without handles, each set's elements sorted, objects grouped by
/// kind and name (rules kept in chain order).
fn nft_listing(ns: &Netns, family: &str) -> Vec<String> {
    let out = String::from_utf8(
        ns.exec(&["nft", "-j", "list", "table", family, "kube-proxy"], None)
            .stdout,
    )
    .unwrap();
    let v: Value = serde_json::from_str(&out).unwrap();
    fn strip(v: &mut Value) {
        match v {
            Value::Object(m) => {
                m.remove("handle");
                for x in m.values_mut() {
                    strip(x);
                }
            }
            Value::Array(a) => a.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let mut lines = Vec::new();
    for mut item in v["nftables"].as_array().unwrap().clone() {
        if item.get("metainfo").is_some() {
            continue;
        }
        strip(&mut item);
        for kind in ["set", "map"] {
            if let Some(Value::Array(elems)) = item.get_mut(kind).and_then(|s| s.get_mut("elem")) {
                elems.sort_by_key(|e| e.to_string());
            }
        }
        let (kind, obj) = item
            .as_object()
            .unwrap()
            .iter()
            .next()
            .map(|(k, v)| (k.clone(), v.clone()))
            .unwrap();
        let name = obj
            .get("chain")
            .or_else(|| obj.get("name"))
            .map(|n| n.to_string())
            .unwrap_or_default();
        lines.push(format!("{kind}\t{name}\t{obj}"));
    }
    // Stable sort by kind and name keeps rule order inside each chain.
    lines.sort_by(|a, b| {
        let key = |l: &str| l.splitn(3, '\t').take(2).collect::<Vec<_>>().join("\t");
        key(a).cmp(&key(b))
    });
    lines
}

#[test]
fn nftables_output_equals_upstream_golden_table_in_the_kernel() {
    require_tools();
    let upstream = Netns::new("prngold");
    upstream.exec(
        &[
            "nft",
            "-f",
            compat("overall-nftables.loadable.nft").to_str().unwrap(),
        ],
        None,
    );
    let want = nft_listing(&upstream, "ip");

    // The service CIDR comes in as a ServiceCIDR object, as the API server provides it.
    let input = format!(
        "{}\n---\napiVersion: networking.k8s.io/v1\nkind: ServiceCIDR\nmetadata: {{name: kubernetes}}\nspec: {{cidrs: [172.30.0.0/16]}}\n",
        read("overall-nftables.yaml")
    );
    let mut args = vec!["--mode", "nftables"];
    args.extend_from_slice(IPTABLES_NODE);
    args.extend([
        "--nodeport-addresses",
        "192.168.0.2/32,2001:db8::1/128",
        "-",
    ]);
    let script = ok(&proxy_render(&args, Some(&input)), "proxy-render");
    let ours = Netns::new("prnours");
    ours.exec(&["nft", "-f", "-"], Some(script.as_bytes()));
    // Applying the same script again replaces the table (idempotent).
    ours.exec(&["nft", "-f", "-"], Some(script.as_bytes()));
    let got = nft_listing(&ours, "ip");
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g, w);
    }
    assert_eq!(got.iter().filter(|l| l.starts_with("rule\t")).count(), 57);
    assert_eq!(got.iter().filter(|l| l.starts_with("chain\t")).count(), 32);
}

#[test]
fn bad_objects_are_named_and_the_rest_is_rendered() {
    let input = "apiVersion: v1\nkind: List\nitems:\n\
        - {apiVersion: v1, kind: Service, metadata: {name: good, namespace: ns}, spec: {clusterIP: 10.96.0.1, ports: [{port: 80}]}}\n\
        - {apiVersion: v1, kind: Service, metadata: {name: bad, namespace: ns}, spec: {clusterIP: not-an-ip, ports: [{port: 80}]}}\n";
    let out = proxy_render(
        &["--mode", "iptables", "--hostname-override", "n", "-"],
        Some(input),
    );
    let stdout = ok(&out, "proxy-render");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("Service ns/bad: spec.clusterIPs[0]") && stderr.contains("not-an-ip"),
        "{stderr}"
    );
    assert!(stdout.contains("ns/good has no endpoints"), "{stdout}");
    assert!(!stdout.contains("ns/bad"));
    // --strict: same output, exit status 1.
    let strict = proxy_render(
        &[
            "--mode",
            "iptables",
            "--hostname-override",
            "n",
            "--strict",
            "-",
        ],
        Some(input),
    );
    assert_eq!(strict.status.code(), Some(1));
    // Not YAML at all: an error naming the input and line, no output.
    let broken = proxy_render(
        &["--mode", "nftables", "-"],
        Some("kind: List\nitems: [\n  - {"),
    );
    assert_eq!(broken.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&broken.stderr);
    assert!(
        stderr.contains("<stdin>:") && stderr.contains("invalid YAML"),
        "{stderr}"
    );
    assert!(broken.stdout.is_empty());
    // A missing file.
    let missing = proxy_render(&["--mode", "iptables", "/nonexistent/x.yaml"], None);
    assert!(String::from_utf8_lossy(&missing.stderr).contains("reading /nonexistent/x.yaml"));
    // Bad node options.
    let bad = proxy_render(
        &["--mode", "iptables", "--nodeport-addresses", "nope", "-"],
        Some(""),
    );
    assert!(
        String::from_utf8_lossy(&bad.stderr)
            .contains("--nodeport-addresses: \"nope\" is not a CIDR")
    );
}

#[test]
fn ipv6_renders_for_ip6tables_and_ip6_table() {
    let input = "apiVersion: v1\nkind: List\nitems:\n\
        - {apiVersion: v1, kind: Service, metadata: {name: s, namespace: ns}, spec: {clusterIPs: [10.96.0.1, 'fd00::1'], ipFamilies: [IPv4, IPv6], ports: [{name: p, port: 80}]}}\n\
        - {apiVersion: discovery.k8s.io/v1, kind: EndpointSlice, metadata: {name: s-6, namespace: ns, labels: {kubernetes.io/service-name: s}}, addressType: IPv6, ports: [{name: p, port: 8080, protocol: TCP}], endpoints: [{addresses: ['fd00:10::5']}]}\n";
    let v6 = ok(
        &proxy_render(
            &[
                "--mode",
                "iptables",
                "--node-ip",
                "2001:db8::2",
                "--cluster-cidr",
                "fd00:10::/64",
                "-",
            ],
            Some(input),
        ),
        "proxy-render v6",
    );
    assert!(v6.contains("-d fd00::1 --dport 80"), "{v6}");
    assert!(v6.contains("--to-destination [fd00:10::5]:8080"), "{v6}");
    assert!(v6.contains("! -d ::1/128 -j KUBE-NODEPORTS"), "{v6}");
    let both = ok(
        &proxy_render(
            &[
                "--mode",
                "nftables",
                "--ip-family",
                "both",
                "--node-ip",
                "192.168.0.2",
                "--node-ip",
                "2001:db8::2",
                "-",
            ],
            Some(input),
        ),
        "proxy-render both",
    );
    assert!(both.contains("add table ip kube-proxy") && both.contains("add table ip6 kube-proxy"));
    if Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout == b"0\n")
        .unwrap_or(false)
    {
        let ns = Netns::new("pr6");
        ns.exec(&["ip6tables-restore"], Some(v6.as_bytes()));
        ns.exec(&["nft", "-f", "-"], Some(both.as_bytes()));
    } else {
        panic!("this test loads the rules and needs root: {SETUP_HINT}");
    }
}

#[test]
fn ipvs_mode_prints_a_readable_plan() {
    let file = compat("overall-iptables.yaml");
    let mut args = vec!["--mode", "ipvs"];
    args.extend_from_slice(IPTABLES_NODE);
    args.push(file.to_str().unwrap());
    let out = ok(&proxy_render(&args, None), "proxy-render --mode ipvs");
    // ipvsadm -Ln style: the ClusterIP of ns1/svc1 with its real server.
    assert!(out.contains("TCP  172.30.0.41:80 rr"), "{out}");
    assert!(out.contains("-> 10.180.0.1:80"), "{out}");
    // Affinity shows as persistence, as ipvsadm prints it.
    assert!(out.contains("persistent 10800"), "{out}");
    assert!(out.contains("kube-ipvs0"), "{out}");
    assert!(out.contains("KUBE-CLUSTER-IP"), "{out}");
    let bad = proxy_render(
        &[
            "--mode",
            "ipvs",
            "--ipvs-scheduler",
            "nope",
            file.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("nope"));
}
