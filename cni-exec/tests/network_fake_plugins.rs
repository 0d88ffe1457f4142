//! `CniConfig` with fake plugins (shell scripts) for what the Debian 1.1.1 plugins cannot
//! show: STATUS and GC at version 1.1.0 (codes 50/51, both GC keys), a chain whose
//! plugins share no version, and a failing plugin in the middle of an ADD chain.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use cni_exec::ErrorCode;
use cni_exec::config::{GcAttachment, NetworkConfigList};
use cni_exec::network::{CniConfig, RuntimeConf};

/// A plugin script: answers VERSION with `versions`, logs every call's command and stdin
/// to `<dir>/<name>.log`, and runs `body` for other commands.
fn plugin(dir: &Path, name: &str, versions: &str, body: &str) {
    let script = format!(
        "#!/bin/sh\nin=$(cat)\nprintf '%s %s\\n' \"$CNI_COMMAND\" \"$in\" >> {log}\n\
         if [ \"$CNI_COMMAND\" = VERSION ]; then echo '{{\"cniVersion\":\"1.1.0\",\"supportedVersions\":{versions}}}'; exit 0; fi\n{body}\n",
        log = dir.join(format!("{name}.log")).display()
    );
    let path = dir.join(name);
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn setup(tag: &str) -> (PathBuf, CniConfig) {
    let dir = std::env::temp_dir().join(format!("cni-fake-net-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let cni = CniConfig::new(vec![dir.clone()], dir.join("cache"));
    (dir, cni)
}

fn list(json: &str) -> NetworkConfigList {
    NetworkConfigList::from_bytes(json.as_bytes()).unwrap()
}

const RESULT: &str = r#"echo '{"cniVersion":"1.1.0","ips":[{"address":"10.9.0.2/24"}]}'"#;

#[tokio::test]
async fn status_codes_50_and_51_surface_with_their_code() {
    let (dir, cni) = setup("status");
    plugin(&dir, "ready", r#"["1.0.0","1.1.0"]"#, "exit 0");
    plugin(
        &dir,
        "down",
        r#"["1.0.0","1.1.0"]"#,
        r#"echo '{"cniVersion":"1.1.0","code":50,"msg":"not ready yet"}'; exit 1"#,
    );
    let ok = list(r#"{"cniVersion":"1.1.0","name":"n","plugins":[{"type":"ready"}]}"#);
    cni.status(&ok).await.expect("STATUS passes");
    let bad =
        list(r#"{"cniVersion":"1.1.0","name":"n","plugins":[{"type":"ready"},{"type":"down"}]}"#);
    let err = cni.status(&bad).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::PluginNotAvailable), "{err}");
    assert!(err.to_string().contains("not ready yet"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn gc_at_1_1_0_sends_both_attachment_keys_to_every_plugin() {
    let (dir, cni) = setup("gc");
    plugin(&dir, "p", r#"["1.1.0"]"#, "exit 0");
    let l = list(r#"{"cniVersion":"1.1.0","name":"net","plugins":[{"type":"p"}]}"#);
    let valid = [GcAttachment {
        container_id: "c1".into(),
        ifname: "eth0".into(),
    }];
    cni.gc(&l, &valid).await.expect("GC");
    let log = std::fs::read_to_string(dir.join("p.log")).unwrap();
    let gc_line = log
        .lines()
        .find(|l| l.starts_with("GC "))
        .expect("GC was sent");
    let stdin: serde_json::Value = serde_json::from_str(&gc_line[3..]).unwrap();
    let expected = serde_json::json!([{"containerID": "c1", "ifname": "eth0"}]);
    assert_eq!(stdin["cni.dev/valid-attachments"], expected);
    assert_eq!(stdin["cni.dev/attachments"], expected);

    // disableGC: nothing is sent.
    let off =
        list(r#"{"cniVersion":"1.1.0","name":"net","disableGC":true,"plugins":[{"type":"p"}]}"#);
    std::fs::remove_file(dir.join("p.log")).unwrap();
    cni.gc(&off, &valid).await.unwrap();
    assert!(!dir.join("p.log").exists(), "no call at all with disableGC");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn plugins_without_a_common_version_are_refused_before_any_add() {
    let (dir, cni) = setup("noversion");
    plugin(&dir, "old", r#"["0.1.0","0.2.0"]"#, RESULT);
    plugin(&dir, "new", r#"["1.0.0"]"#, RESULT);
    let l =
        list(r#"{"cniVersion":"1.0.0","name":"net","plugins":[{"type":"old"},{"type":"new"}]}"#);
    let rt = RuntimeConf {
        container_id: "c1".into(),
        ifname: "eth0".into(),
        netns: Some("/x".into()),
        ..Default::default()
    };
    let err = cni.add(&l, &rt).await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("old: [0.1.0, 0.2.0]") && text.contains("new: [1.0.0]"),
        "{text}"
    );
    let log = std::fs::read_to_string(dir.join("old.log")).unwrap_or_default();
    assert!(!log.contains("ADD"), "no plugin was ADDed: {log}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_failing_plugin_mid_chain_leaves_no_cache_and_names_itself() {
    let (dir, cni) = setup("midchain");
    plugin(&dir, "first", r#"["1.0.0"]"#, RESULT);
    plugin(
        &dir,
        "second",
        r#"["1.0.0"]"#,
        r#"echo '{"cniVersion":"1.0.0","code":7,"msg":"bad config","details":"field x"}'; exit 1"#,
    );
    let l = list(
        r#"{"cniVersion":"1.0.0","name":"net","plugins":[{"type":"first"},{"type":"second"}]}"#,
    );
    let rt = RuntimeConf {
        container_id: "c1".into(),
        ifname: "eth0".into(),
        netns: Some("/x".into()),
        ..Default::default()
    };
    let err = cni.add(&l, &rt).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::InvalidNetworkConfig));
    let text = err.to_string();
    assert!(
        text.contains("second") && text.contains("bad config"),
        "{text}"
    );
    assert!(
        cni.cache().cached_attachments("").unwrap().is_empty(),
        "no cache after a failed ADD"
    );
    // The second plugin got the first one's result as prevResult.
    let log = std::fs::read_to_string(dir.join("second.log")).unwrap();
    let add: serde_json::Value =
        serde_json::from_str(&log.lines().find(|l| l.starts_with("ADD ")).unwrap()[4..]).unwrap();
    assert_eq!(add["prevResult"]["ips"][0]["address"], "10.9.0.2/24");
    assert_eq!(add["cniVersion"], "1.0.0");
    let _ = std::fs::remove_dir_all(&dir);
}
