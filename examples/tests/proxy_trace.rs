//! `proxy-trace` end to end: a packet traced through rules rendered from objects, read
//! from a file, and read back from the kernel (a network namespace loaded with
//! `proxy-render`'s output), in both modes. The kernel part needs root.

use std::path::PathBuf;
use std::process::{Command, Output};

use node_sdk_e2e::Netns;

fn golden() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/compat/kube-proxy/overall-iptables.yaml")
}

const NODE: &[&str] = &[
    "--hostname-override",
    "test-node",
    "--node-ip",
    "192.168.0.2",
    "--cluster-cidr",
    "10.0.0.0/8",
];

fn trace(args: &[&str]) -> String {
    let out: Output = Command::new(env!("CARGO_BIN_EXE_proxy-trace"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "proxy-trace {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn summary(out: &str) -> &str {
    out.lines()
        .find(|l| l.starts_with("summary:"))
        .unwrap_or_else(|| panic!("no summary in:\n{out}"))
}

#[test]
fn traces_rendered_objects_in_both_modes() {
    let file = golden();
    for mode in ["iptables", "nftables"] {
        let mut args = vec!["--mode", mode, "--objects", file.to_str().unwrap()];
        args.extend_from_slice(NODE);
        // A pod to svc4's ClusterIP: both endpoints, no masquerade.
        let mut a = args.clone();
        a.extend([
            "--from",
            "pod",
            "--src",
            "10.0.0.5",
            "--dst",
            "172.30.0.44:80",
        ]);
        let out = trace(&a);
        assert_eq!(
            summary(&out),
            "summary: endpoints [10.180.0.4:80, 10.180.0.5:80], masquerade no, verdict accepted",
            "{mode}\n{out}"
        );
        // From outside a source range to svc5's LoadBalancer IP: dropped by the firewall.
        let mut a = args.clone();
        a.extend([
            "--from",
            "external",
            "--src",
            "203.0.113.200",
            "--dst",
            "5.6.7.8:80",
        ]);
        let out = trace(&a);
        assert!(summary(&out).ends_with("verdict dropped"), "{mode}\n{out}");
        // The host to svc1: masqueraded (the host is outside the pod network).
        let mut a = args.clone();
        a.extend([
            "--from",
            "host",
            "--src",
            "192.168.0.2",
            "--dst",
            "172.30.0.41:80",
        ]);
        let out = trace(&a);
        assert_eq!(
            summary(&out),
            "summary: endpoints [10.180.0.1:80], masquerade yes, verdict accepted",
            "{mode}\n{out}"
        );
        // No endpoints: rejected.
        let mut a = args.clone();
        a.extend([
            "--from",
            "pod",
            "--src",
            "10.0.0.5",
            "--dst",
            "172.30.0.46:80",
        ]);
        assert!(summary(&trace(&a)).ends_with("verdict rejected"));
    }
}

#[test]
fn traces_the_kernels_rules_in_a_netns() {
    let file = golden();
    for (mode, loader) in [
        ("iptables", vec!["iptables-restore"]),
        ("nftables", vec!["nft", "-f", "-"]),
    ] {
        let ns = Netns::new("ptrace");
        ns.exec(
            &[
                "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth1",
            ],
            None,
        );
        ns.exec(
            &["ip", "addr", "add", "192.168.0.2/24", "dev", "eth0"],
            None,
        );
        let mut args = vec!["--mode", mode];
        args.extend_from_slice(NODE);
        args.push(file.to_str().unwrap());
        let rendered = Command::new(env!("CARGO_BIN_EXE_proxy-render"))
            .args(&args)
            .output()
            .unwrap();
        assert!(rendered.status.success());
        ns.exec(&loader, Some(&rendered.stdout));
        let out = trace(&[
            "--mode",
            mode,
            "--netns",
            ns.name(),
            "--from",
            "pod",
            "--src",
            "10.0.0.5",
            "--dst",
            "172.30.0.44:80",
        ]);
        assert_eq!(
            summary(&out),
            "summary: endpoints [10.180.0.4:80, 10.180.0.5:80], masquerade no, verdict accepted",
            "{mode}\n{out}"
        );
        // NodePort 3003 on the node's address (read from the kernel) from outside.
        let out = trace(&[
            "--mode",
            mode,
            "--netns",
            ns.name(),
            "--from",
            "external",
            "--src",
            "203.0.113.9",
            "--dst",
            "192.168.0.2:3003",
        ]);
        assert_eq!(
            summary(&out),
            "summary: endpoints [10.180.0.3:80], masquerade yes, verdict accepted",
            "{mode}\n{out}"
        );
    }
}

#[test]
fn bad_arguments_are_clear() {
    let out = Command::new(env!("CARGO_BIN_EXE_proxy-trace"))
        .args([
            "--rules",
            "/nonexistent",
            "--src",
            "1.2.3.4",
            "--dst",
            "5.6.7.8:80",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("reading /nonexistent"));
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("rules");
    std::fs::write(&f, "*nat\n-A KUBE-SERVICES -m bogus --x -j KUBE-SVC-X\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_proxy-trace"))
        .args([
            "--rules",
            f.to_str().unwrap(),
            "--src",
            "1.2.3.4",
            "--dst",
            "5.6.7.8:80",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no COMMIT"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
