//! Checks that the real node environment (`scripts/env.sh up`) is what the rest of the
//! test suite stands on: the registries serve the pushed images, every Debian CNI plugin
//! answers `VERSION`, and `iptables-restore` / `nft -f` work inside a throwaway netns.

use node_sdk_e2e::{Netns, TestEnv, http_get, netns_exists, run, run_unchecked};
use sha2::{Digest, Sha256};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// Split `HOST:PORT/REPO:TAG` into the registry address, repository and tag.
fn split_ref(image: &str) -> (&str, &str, &str) {
    let (registry, rest) = image.split_once('/').expect("image ref has a registry");
    let (repo, tag) = rest.rsplit_once(':').expect("image ref has a tag");
    (registry, repo, tag)
}

#[test]
fn registry_serves_the_pushed_manifests_with_their_digests() {
    let env = TestEnv::require();
    for (image, digest) in [
        (env.get("PAUSE_IMAGE"), env.get("PAUSE_DIGEST")),
        (env.get("BUSYBOX_IMAGE"), env.get("BUSYBOX_DIGEST")),
    ] {
        let (registry, repo, tag) = split_ref(image);
        let resp = http_get(
            registry,
            &format!("/v2/{repo}/manifests/{tag}"),
            &[("Accept", OCI_MANIFEST)],
            None,
        )
        .unwrap_or_else(|e| panic!("registry {registry} unreachable: {e}"));
        assert_eq!(
            resp.status,
            200,
            "GET manifest of {image}: {}",
            String::from_utf8_lossy(&resp.body)
        );
        assert_eq!(
            resp.headers
                .get("docker-content-digest")
                .map(String::as_str),
            Some(digest),
            "{image}"
        );
        let body_digest = format!("sha256:{:x}", Sha256::digest(&resp.body));
        assert_eq!(
            body_digest, digest,
            "the manifest body of {image} hashes to its digest"
        );
        let manifest: serde_json::Value =
            serde_json::from_slice(&resp.body).expect("manifest is JSON");
        assert_eq!(manifest["mediaType"], OCI_MANIFEST);
        assert_eq!(
            manifest["layers"].as_array().map(Vec::len),
            Some(1),
            "one layer in {image}"
        );
    }
}

#[test]
fn registry_answers_not_found_for_a_missing_tag() {
    let env = TestEnv::require();
    let (registry, repo, _) = split_ref(env.get("BUSYBOX_IMAGE"));
    let resp = http_get(
        registry,
        &format!("/v2/{repo}/manifests/no-such-tag"),
        &[("Accept", OCI_MANIFEST)],
        None,
    )
    .expect("registry reachable");
    assert_eq!(resp.status, 404);
}

#[test]
fn auth_registry_requires_and_accepts_credentials() {
    let env = TestEnv::require();
    let (registry, repo, tag) = split_ref(env.get("AUTH_BUSYBOX_IMAGE"));
    let path = format!("/v2/{repo}/manifests/{tag}");
    let accept = [("Accept", OCI_MANIFEST)];

    let anonymous = http_get(registry, &path, &accept, None).expect("auth registry reachable");
    assert_eq!(anonymous.status, 401, "anonymous pull must be refused");
    let challenge = anonymous
        .headers
        .get("www-authenticate")
        .cloned()
        .unwrap_or_default();
    assert!(
        challenge.starts_with("Basic"),
        "basic auth challenge, got {challenge:?}"
    );

    let wrong = http_get(
        registry,
        &path,
        &accept,
        Some((env.get("AUTH_REGISTRY_USER"), "wrong")),
    )
    .unwrap();
    assert_eq!(wrong.status, 401, "a wrong password must be refused");

    let creds = (
        env.get("AUTH_REGISTRY_USER"),
        env.get("AUTH_REGISTRY_PASSWORD"),
    );
    let ok = http_get(registry, &path, &accept, Some(creds)).unwrap();
    assert_eq!(ok.status, 200);
    assert_eq!(
        ok.headers.get("docker-content-digest").map(String::as_str),
        Some(env.get("BUSYBOX_DIGEST")),
        "the same image as on the plain registry"
    );
}

/// The plugins TESTENV.md lists for Debian's containernetworking-plugins 1.1.1.
const PLUGINS: &[&str] = &[
    "bandwidth",
    "bridge",
    "dhcp",
    "firewall",
    "host-device",
    "host-local",
    "ipvlan",
    "loopback",
    "macvlan",
    "portmap",
    "ptp",
    "sbr",
    "static",
    "tuning",
    "vlan",
    "vrf",
];

#[test]
fn every_cni_plugin_answers_version() {
    let env = TestEnv::require();
    let bin_dir = env.get("CNI_BIN_DIR");
    let mut failures = Vec::new();
    for plugin in PLUGINS {
        let path = format!("{bin_dir}/{plugin}");
        let out = std::process::Command::new(&path)
            .env_clear()
            .env("CNI_COMMAND", "VERSION")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                use std::io::Write as _;
                child
                    .stdin
                    .take()
                    .unwrap()
                    .write_all(br#"{"cniVersion":"1.0.0"}"#)?;
                child.wait_with_output()
            });
        let out = match out {
            Ok(out) => out,
            Err(e) => {
                failures.push(format!("{path}: cannot run: {e}"));
                continue;
            }
        };
        let parsed: Result<serde_json::Value, _> = serde_json::from_slice(&out.stdout);
        let ok = out.status.success()
            && parsed.as_ref().is_ok_and(|v| {
                let versions: Vec<&str> = v["supportedVersions"]
                    .as_array()
                    .map(|a| a.iter().filter_map(|x| x.as_str()).collect())
                    .unwrap_or_default();
                v["cniVersion"].is_string()
                    && versions.contains(&"0.4.0")
                    && versions.contains(&"1.0.0")
            });
        if !ok {
            failures.push(format!(
                "{path}: exit {}, stdout {:?}, stderr {:?}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "CNI plugins failing VERSION:\n{}",
        failures.join("\n")
    );
}

#[test]
fn iptables_restore_and_save_work_in_a_throwaway_netns() {
    let _env = TestEnv::require();
    let name;
    {
        let ns = Netns::new("ipt");
        name = ns.name().to_owned();
        let rules = "*nat\n\
            :NSDK-TEST-SVC - [0:0]\n\
            :NSDK-TEST-SEP - [0:0]\n\
            -A NSDK-TEST-SVC -m comment --comment \"ns1/svc1:p80 -> 10.1.0.2:8080\" -m statistic --mode random --probability 0.50000000000 -j NSDK-TEST-SEP\n\
            -A NSDK-TEST-SEP -p tcp -m tcp -j DNAT --to-destination 10.1.0.2:8080\n\
            COMMIT\n";
        ns.exec(&["iptables-restore", "--noflush"], Some(rules.as_bytes()));
        let saved =
            String::from_utf8(ns.exec(&["iptables-save", "-t", "nat"], None).stdout).unwrap();
        assert!(
            saved.contains(":NSDK-TEST-SVC - [0:0]"),
            "chain restored:\n{saved}"
        );
        assert!(
            saved.contains("--probability 0.50000000000 -j NSDK-TEST-SEP"),
            "statistic rule restored as written:\n{saved}"
        );
        assert!(
            saved.contains("--to-destination 10.1.0.2:8080"),
            "DNAT restored:\n{saved}"
        );

        // The host's own tables never see the namespace's chains.
        let host = String::from_utf8(run(&["iptables-save", "-t", "nat"], None).stdout).unwrap();
        assert!(
            !host.contains("NSDK-TEST-SVC"),
            "the netns rules leaked into the host"
        );

        // A failing restore reports an error and leaves the previous rules in place.
        let bad = run_unchecked(
            &[
                "ip",
                "netns",
                "exec",
                ns.name(),
                "iptables-restore",
                "--noflush",
            ],
            Some(b"*nat\n-A NO-SUCH-CHAIN -j ACCEPT\nCOMMIT\n"),
        );
        assert!(
            !bad.status.success(),
            "restoring into a missing chain must fail"
        );
        let after =
            String::from_utf8(ns.exec(&["iptables-save", "-t", "nat"], None).stdout).unwrap();
        assert!(
            after.contains(":NSDK-TEST-SVC"),
            "rules survive a failed restore"
        );
    }
    assert!(
        !netns_exists(&name),
        "the throwaway netns {name} was removed on drop"
    );
}

#[test]
fn nft_script_loads_and_lists_in_a_throwaway_netns() {
    let _env = TestEnv::require();
    let name;
    {
        let ns = Netns::new("nft");
        name = ns.name().to_owned();
        let script = r#"
table ip nsdk-test {
    map service-ips {
        type ipv4_addr . inet_proto . inet_service : verdict
        elements = { 172.30.0.41 . tcp . 80 : goto service-abc }
    }
    chain service-abc {
        numgen random mod 2 vmap { 0 : goto endpoint-a, 1 : goto endpoint-b }
    }
    chain endpoint-a {
        meta l4proto tcp dnat to 10.180.0.1:80
    }
    chain endpoint-b {
        meta l4proto tcp dnat to 10.180.0.2:80
    }
    chain services {
        type nat hook prerouting priority dstnat; policy accept;
        ip daddr . meta l4proto . th dport vmap @service-ips
    }
}
"#;
        ns.exec(&["nft", "-f", "-"], Some(script.as_bytes()));
        let listed = String::from_utf8(
            ns.exec(&["nft", "list", "table", "ip", "nsdk-test"], None)
                .stdout,
        )
        .unwrap();
        assert!(
            listed.contains("172.30.0.41 . tcp . 80 : goto service-abc"),
            "map element listed:\n{listed}"
        );
        assert!(
            listed.contains("numgen random mod 2"),
            "numgen listed:\n{listed}"
        );

        let host = run(&["nft", "list", "tables"], None);
        assert!(
            !String::from_utf8_lossy(&host.stdout).contains("nsdk-test"),
            "table leaked into the host"
        );

        let bad = run_unchecked(
            &["ip", "netns", "exec", ns.name(), "nft", "-f", "-"],
            Some(b"table ip nsdk-test { chain x { nonsense } }\n"),
        );
        assert!(!bad.status.success(), "a malformed script must fail");
        assert!(!bad.stderr.is_empty(), "nft explains what was wrong");
        let still = String::from_utf8(
            ns.exec(&["nft", "list", "table", "ip", "nsdk-test"], None)
                .stdout,
        )
        .unwrap();
        assert!(
            still.contains("service-ips"),
            "the table survives a failed load"
        );
    }
    assert!(
        !netns_exists(&name),
        "the throwaway netns {name} was removed on drop"
    );
}
