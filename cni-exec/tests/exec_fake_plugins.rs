//! `RawExec` against fake plugins written as shell scripts in a temporary directory,
//! plus one real VERSION call to Debian's `bridge` plugin.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use cni_exec::exec::{ExecControl, PluginExec, RawExec, RuntimeArgs, exec_plugin, version};
use cni_exec::{Error, ErrorCode};
use tokio_util::sync::CancellationToken;

/// Writes an executable `#!/bin/sh` script named `name` into `dir`.
fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// Short "text file busy" pauses: another test thread forking while a script is open
/// for writing makes exec fail with ETXTBSY for a moment.
fn raw() -> RawExec {
    RawExec::new().text_file_busy_retry(20, Duration::from_millis(50))
}

fn add_args(paths: Vec<PathBuf>) -> RuntimeArgs {
    RuntimeArgs {
        command: "ADD".into(),
        container_id: "c0ffee".into(),
        netns: Some("/var/run/netns/test".into()),
        ifname: "eth0".into(),
        args: vec![
            ("IgnoreUnknown".into(), "1".into()),
            ("K8S_POD_NAME".into(), "web".into()),
        ],
        paths,
    }
}

fn env_of(file: &Path) -> Vec<String> {
    fs::read_to_string(file)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

fn process_gone(pid: u32) -> bool {
    !Path::new(&format!("/proc/{pid}")).exists()
}

async fn wait_for_file(path: &Path) -> String {
    loop {
        if let Ok(s) = fs::read_to_string(path)
            && s.ends_with('\n')
        {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn success_passes_env_and_stdin() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("out");
    fs::create_dir(&out).unwrap();
    let body = format!(
        "cat > {o}/stdin\nenv > {o}/env\necho '{{\"cniVersion\":\"1.0.0\",\"ips\":[]}}'",
        o = out.display()
    );
    let path = script(d.path(), "fake", &body);
    let args = add_args(vec![d.path().to_path_buf(), "/usr/lib/cni".into()]);
    let conf = br#"{"cniVersion":"1.0.0","name":"n","type":"fake"}"#;
    let v = exec_plugin(&raw(), &path, &args, conf, &ExecControl::new())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(v["cniVersion"], "1.0.0");
    assert_eq!(fs::read(out.join("stdin")).unwrap(), conf);
    let env = env_of(&out.join("env"));
    for want in [
        "CNI_COMMAND=ADD".to_string(),
        "CNI_CONTAINERID=c0ffee".into(),
        "CNI_NETNS=/var/run/netns/test".into(),
        "CNI_IFNAME=eth0".into(),
        "CNI_ARGS=IgnoreUnknown=1;K8S_POD_NAME=web".into(),
        format!("CNI_PATH={}:/usr/lib/cni", d.path().display()),
    ] {
        assert!(env.contains(&want), "{want} missing from {env:?}");
    }
    // The parent environment is passed on.
    let parent_path = std::env::var("PATH").unwrap();
    assert!(env.contains(&format!("PATH={parent_path}")));
}

#[tokio::test]
async fn env_last_value_wins_and_all_six_set() {
    let d = tempfile::tempdir().unwrap();
    let envfile = d.path().join("env");
    let path = script(d.path(), "fake", &format!("env > {}", envfile.display()));
    let env = vec![
        ("CNI_COMMAND".to_string(), "ADD".to_string()),
        ("HOME".into(), "/overridden".into()),
        ("CNI_COMMAND".into(), "DEL".into()),
    ];
    let out = raw()
        .exec(&path, &env, b"{}", &ExecControl::new())
        .await
        .unwrap();
    assert!(out.is_empty());
    let got = env_of(&envfile);
    assert!(got.contains(&"CNI_COMMAND=DEL".to_string()));
    assert!(!got.contains(&"CNI_COMMAND=ADD".to_string()));
    assert!(got.contains(&"HOME=/overridden".to_string()));

    // Through RuntimeArgs all six are set even when empty (DEL without netns).
    let args = RuntimeArgs {
        command: "DEL".into(),
        ..Default::default()
    };
    let none = exec_plugin(&raw(), &path, &args, b"{}", &ExecControl::new())
        .await
        .unwrap();
    assert_eq!(none, None);
    let got = env_of(&envfile);
    for k in [
        "CNI_CONTAINERID=",
        "CNI_NETNS=",
        "CNI_IFNAME=",
        "CNI_ARGS=",
        "CNI_PATH=",
    ] {
        assert!(got.iter().any(|l| l == k), "{k} missing");
    }
}

#[tokio::test]
async fn error_json_codes() {
    let d = tempfile::tempdir().unwrap();
    for code in [1u32, 3, 7, 11, 120, 999] {
        let body = format!(
            "echo 'some diagnostics' >&2\necho '{{\"cniVersion\":\"1.0.0\",\"code\":{code},\"msg\":\"failed {code}\",\"details\":\"more\"}}'\nexit 1"
        );
        let path = script(d.path(), &format!("err{code}"), &body);
        let args = add_args(vec![d.path().to_path_buf()]);
        let err = exec_plugin(&raw(), &path, &args, b"{}", &ExecControl::new())
            .await
            .unwrap_err();
        match &err {
            Error::Plugin {
                plugin,
                verb,
                code: c,
                msg,
                details,
                stderr,
                ..
            } => {
                assert_eq!(plugin, &format!("err{code}"));
                assert_eq!(verb, "ADD");
                assert_eq!(c.code(), code);
                assert_eq!(msg, &format!("failed {code}"));
                assert_eq!(details, "more");
                assert_eq!(stderr, "some diagnostics\n");
            }
            other => panic!("code {code}: {other:?}"),
        }
        assert_eq!(err.code(), Some(ErrorCode::from(code)));
        assert_eq!(err.is_transient(), code == 11);
        assert_eq!(err.is_not_found_like(), code == 3);
    }
}

#[tokio::test]
async fn failure_without_error_json_uses_libcni_texts() {
    let d = tempfile::tempdir().unwrap();
    let ctl = ExecControl::new();
    let env = RuntimeArgs {
        command: "DEL".into(),
        ..Default::default()
    }
    .to_env();

    let silent = script(d.path(), "silent", "exit 2");
    let err = raw().exec(&silent, &env, b"{}", &ctl).await.unwrap_err();
    let Error::PluginFailed {
        msg, status, verb, ..
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!(msg, "netplugin failed with no error message: exit status 2");
    assert_eq!(status.code(), Some(2));
    assert_eq!(verb, "DEL");

    let noisy = script(d.path(), "noisy", "echo oops >&2\nexit 3");
    let err = raw().exec(&noisy, &env, b"{}", &ctl).await.unwrap_err();
    let Error::PluginFailed { msg, stderr, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(msg, r#"netplugin failed: "oops\n": exit status 3"#);
    assert_eq!(stderr, "oops\n");

    let garbled = script(d.path(), "garbled", "echo 'not json'\nexit 1");
    let err = raw().exec(&garbled, &env, b"{}", &ctl).await.unwrap_err();
    let Error::PluginFailed { msg, stdout, .. } = &err else {
        panic!("{err:?}")
    };
    assert!(
        msg.starts_with(
            r#"netplugin failed but error parsing its diagnostic message "not json\n": "#
        ),
        "{msg}"
    );
    assert_eq!(stdout, b"not json\n");
    assert_eq!(err.code(), None);
}

#[tokio::test]
async fn invalid_json_on_success() {
    let d = tempfile::tempdir().unwrap();
    let path = script(d.path(), "bad", "echo '{not json'");
    let args = add_args(vec![d.path().to_path_buf()]);
    let err = exec_plugin(&raw(), &path, &args, b"{}", &ExecControl::new())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidOutput { .. }), "{err:?}");
    assert!(std::error::Error::source(&err).is_some());
}

#[tokio::test]
async fn timeout_kills_and_reaps() {
    let d = tempfile::tempdir().unwrap();
    let pidfile = d.path().join("pid");
    let path = script(
        d.path(),
        "hang",
        &format!("echo $$ > {}\nexec sleep 1000", pidfile.display()),
    );
    let env = add_args(vec![]).to_env();
    let ctl = ExecControl::new().with_timeout(Duration::from_secs(2));
    let err = raw().exec(&path, &env, b"{}", &ctl).await.unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    let pid: u32 = fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(process_gone(pid), "pid {pid} still there");

    // The executor's own timeout works the same way.
    let exec = raw().timeout(Duration::from_secs(1));
    let err = exec
        .exec(&path, &env, b"{}", &ExecControl::new())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    let pid: u32 = fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(process_gone(pid), "pid {pid} still there");
}

#[tokio::test]
async fn cancellation_kills_and_reaps() {
    let d = tempfile::tempdir().unwrap();
    let pidfile = d.path().join("pid");
    let path = script(
        d.path(),
        "hang",
        &format!("echo $$ > {}\nexec sleep 1000", pidfile.display()),
    );
    let env = add_args(vec![]).to_env();
    let token = CancellationToken::new();
    let ctl = ExecControl::new().with_cancel(token.clone());
    let exec = raw();
    let call = exec.exec(&path, &env, b"{}", &ctl);
    let cancel = async {
        let pid = wait_for_file(&pidfile).await;
        token.cancel();
        pid
    };
    let (res, pid) = tokio::join!(call, cancel);
    let err = res.unwrap_err();
    assert!(matches!(err, Error::Cancelled { .. }), "{err:?}");
    let pid: u32 = pid.trim().parse().unwrap();
    assert!(process_gone(pid), "pid {pid} still there");
}

#[tokio::test]
async fn stdout_is_capped() {
    let d = tempfile::tempdir().unwrap();
    // Writes forever: the cap must stop it, not EOF.
    let path = script(d.path(), "chatty", "exec yes");
    let env = add_args(vec![]).to_env();
    let exec = raw().max_stdout(64 << 10);
    let err = exec
        .exec(&path, &env, b"{}", &ExecControl::new())
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::OutputTooLarge { limit, .. } if limit == 64 << 10),
        "{err:?}"
    );

    // Just under the cap is fine.
    let path = script(d.path(), "big", "head -c 65536 /dev/zero");
    let out = exec
        .exec(&path, &env, b"{}", &ExecControl::new())
        .await
        .unwrap();
    assert_eq!(out.len(), 64 << 10);
}

#[tokio::test]
async fn stderr_is_capped_and_drained() {
    let d = tempfile::tempdir().unwrap();
    let path = script(d.path(), "loud", "head -c 1000000 /dev/zero >&2\nexit 1");
    let env = add_args(vec![]).to_env();
    let err = raw()
        .max_stderr(1000)
        .exec(&path, &env, b"{}", &ExecControl::new())
        .await
        .unwrap_err();
    let Error::PluginFailed { stderr, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(stderr.len(), 1000);
}

#[tokio::test]
async fn cni_path_lookup_order() {
    let d1 = tempfile::tempdir().unwrap();
    let d2 = tempfile::tempdir().unwrap();
    let d3 = tempfile::tempdir().unwrap();
    fs::create_dir(d1.path().join("p")).unwrap(); // a directory: skipped
    script(d2.path(), "p", "echo '{\"from\":\"d2\"}'");
    script(d3.path(), "p", "echo '{\"from\":\"d3\"}'");
    let paths = vec![
        d1.path().to_path_buf(),
        d2.path().to_path_buf(),
        d3.path().to_path_buf(),
    ];
    let exec = raw();
    let found = exec.find("p", &paths).unwrap();
    assert_eq!(found, d2.path().join("p"));
    let v = exec_plugin(
        &exec,
        &found,
        &add_args(paths.clone()),
        b"{}",
        &ExecControl::new(),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(v["from"], "d2");
    let err = exec.find("missing", &paths).unwrap_err();
    assert!(err.is_not_found_like());
    assert!(matches!(err, Error::PluginNotFound { paths: p, .. } if p == paths));
}

/// Opens `path` for writing and keeps it open: exec of it fails with ETXTBSY.
fn hold_for_writing(path: &Path) -> fs::File {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o755)
        .open(path)
        .unwrap();
    f.write_all(b"#!/bin/sh\necho '{\"ok\":true}'\n").unwrap();
    f.flush().unwrap();
    f
}

#[tokio::test(flavor = "current_thread")]
async fn text_file_busy_is_retried() {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("busy");
    let writer = hold_for_writing(&path);
    let env = add_args(vec![]).to_env();

    // One attempt only: the busy error surfaces as I/O.
    let once = RawExec::new().text_file_busy_retry(1, Duration::from_millis(10));
    let err = once
        .exec(&path, &env, b"{}", &ExecControl::new())
        .await
        .unwrap_err();
    let Error::Io { source, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(source.kind(), std::io::ErrorKind::ExecutableFileBusy);

    // With retries: the first attempt runs (and fails busy) before we release the file,
    // because this runtime is single-threaded and the call runs until its first pause.
    let retrying = RawExec::new().text_file_busy_retry(6, Duration::from_millis(200));
    let call = tokio::spawn({
        let path = path.clone();
        let env = env.clone();
        async move { retrying.exec(&path, &env, b"{}", &ExecControl::new()).await }
    });
    tokio::task::yield_now().await;
    drop(writer);
    let out = call.await.unwrap().unwrap();
    assert_eq!(out, b"{\"ok\":true}\n");
}

#[tokio::test]
async fn version_fallback_and_env() {
    let d = tempfile::tempdir().unwrap();
    let envfile = d.path().join("env");
    let stdinfile = d.path().join("stdin");
    script(
        d.path(),
        "old",
        "echo '{\"code\":4,\"msg\":\"unknown CNI_COMMAND: VERSION\"}'\nexit 1",
    );
    script(
        d.path(),
        "new",
        &format!(
            "env > {}\ncat > {}\necho '{{\"cniVersion\":\"1.1.0\",\"supportedVersions\":[\"1.0.0\",\"1.1.0\"]}}'",
            envfile.display(),
            stdinfile.display()
        ),
    );
    let paths = [d.path().to_path_buf()];
    let ctl = ExecControl::new();
    let old = version(&raw(), "old", &paths, &ctl).await.unwrap();
    assert_eq!(old.supported_versions, ["0.1.0"]);
    let new = version(&raw(), "new", &paths, &ctl).await.unwrap();
    assert!(new.supports("1.1.0"));
    assert_eq!(
        fs::read_to_string(&stdinfile).unwrap(),
        r#"{"cniVersion":"1.1.0"}"#
    );
    let env = env_of(&envfile);
    for k in [
        "CNI_COMMAND=VERSION",
        "CNI_NETNS=dummy",
        "CNI_IFNAME=dummy",
        "CNI_PATH=dummy",
    ] {
        assert!(env.iter().any(|l| l == k), "{k} missing");
    }
}

#[tokio::test]
async fn version_of_debian_bridge() {
    let dir = PathBuf::from("/usr/lib/cni");
    if !dir.join("bridge").is_file() {
        eprintln!("skipped: /usr/lib/cni/bridge is not installed");
        return;
    }
    let ctl = ExecControl::new().with_timeout(Duration::from_secs(30));
    let info = version(&RawExec::new(), "bridge", &[dir], &ctl)
        .await
        .unwrap();
    // Debian's 1.1.1 plugins stop at 1.0.0 (and answer "1.0.0" to a 1.1.0 query).
    assert!(info.supports("1.0.0"), "{info:?}");
    assert!(info.supports("0.4.0"), "{info:?}");
    assert!(!info.supports("1.1.0"), "{info:?}");
}
