//! The `probe` CLI end to end: HTTP probes against servers on loopback, named ports,
//! probes from files, clear errors, `--watch` transitions, and exec probes run through
//! CRI `ExecSync` in a container of the real containerd.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Command, Stdio};

use node_sdk_e2e::{TestEnv, cri_with_busybox, test_pod_config, with_sandbox};

/// A loopback HTTP server answering every request with `status`; returns its port.
fn http_server(status: u16) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf);
            let reply =
                format!("HTTP/1.1 {status} X\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
            let _ = conn.write_all(reply.as_bytes());
        }
    });
    port
}

fn probe(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_probe"))
        .args(args)
        .env_remove("CONTAINER_RUNTIME_ENDPOINT")
        .stdin(Stdio::null())
        .output()
        .expect("running probe");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn http_probe_verdicts_and_exit_codes() {
    let ok = http_server(200);
    let spec = format!(r#"{{"httpGet":{{"path":"/healthz","port":{ok}}}}}"#);
    let (code, out, err) = probe(&["--probe", &spec, "--pod-ip", "127.0.0.1"]);
    // As the kubelet, a passing HTTP probe's output is the (capped) body.
    assert_eq!((code, out.as_str()), (0, "success: ok\n"), "stderr: {err}");

    let bad = http_server(500);
    let spec = format!(r#"{{"httpGet":{{"path":"/","port":{bad}}}}}"#);
    let (code, out, _) = probe(&["--probe", &spec, "--pod-ip", "127.0.0.1"]);
    assert_eq!(
        (code, out.as_str()),
        (1, "failure: HTTP probe failed with statuscode: 500\n")
    );
}

#[test]
fn named_ports_yaml_files_and_bad_input() {
    let port = http_server(204);
    let dir = std::env::temp_dir().join(node_sdk_e2e::unique_name("probe-cli"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("probe.yaml");
    std::fs::write(&file, "tcpSocket:\n  port: web\nperiodSeconds: 5\n").unwrap();
    let (code, out, err) = probe(&[
        "--probe",
        file.to_str().unwrap(),
        "--pod-ip",
        "127.0.0.1",
        "--port",
        &format!("web={port}"),
        "--kind",
        "liveness",
    ]);
    assert_eq!((code, out.as_str()), (0, "success: \n"), "stderr: {err}");

    // A named port the container does not have: the probe cannot run (error).
    let (code, out, _) = probe(&["--probe", file.to_str().unwrap(), "--pod-ip", "127.0.0.1"]);
    assert_eq!(code, 1);
    assert!(
        out.starts_with("error: couldn't find port \"web\""),
        "{out}"
    );

    // Two handlers: rejected, naming the field.
    let (code, _, err) = probe(&[
        "--probe",
        r#"{"tcpSocket":{"port":1},"httpGet":{"port":1}}"#,
        "--pod-ip",
        "127.0.0.1",
        "--kind",
        "startup",
    ]);
    assert_eq!(code, 1);
    assert!(
        err.contains("startupProbe: may not specify more than 1 handler type"),
        "{err}"
    );

    // Liveness with successThreshold 2 fails validation as the API server would.
    let (code, _, err) = probe(&[
        "--probe",
        r#"{"tcpSocket":{"port":1},"successThreshold":2}"#,
        "--kind",
        "liveness",
    ]);
    assert_eq!(code, 1);
    assert!(
        err.contains("livenessProbe.successThreshold: must be 1 (got 2)"),
        "{err}"
    );

    let (code, _, err) = probe(&["--probe", "{not yaml: [", "--pod-ip", "127.0.0.1"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("the inline --probe is not a core/v1 Probe"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn watch_prints_the_readiness_transition() {
    let port = http_server(200);
    let spec = format!(r#"{{"httpGet":{{"port":{port}}},"periodSeconds":1}}"#);
    let mut child = Command::new(env!("CARGO_BIN_EXE_probe"))
        .args(["--probe", &spec, "--pod-ip", "127.0.0.1", "--watch"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("running probe --watch");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().expect("a first line").unwrap();
    assert!(first.ends_with("watching readinessProbe probe"), "{first}");
    // Readiness starts as failure (published first); the first successful probe is
    // the transition to Success, with the body as its output.
    let initial = lines.next().expect("the initial state").unwrap();
    let transition = lines.next().expect("a transition line").unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(initial.contains(" readinessProbe Failure"), "{initial}");
    assert!(
        transition.contains(" readinessProbe Success: ok"),
        "{transition}"
    );
    let stamp = transition.split(' ').next().unwrap();
    assert!(
        stamp.parse::<jiff::Timestamp>().is_ok(),
        "RFC 3339 timestamp: {stamp}"
    );
}

#[tokio::test]
async fn exec_probes_run_through_cri_exec_sync() {
    let env = TestEnv::require();
    let (client, busybox) = cri_with_busybox(&env).await;
    let endpoint = env.cri_endpoint().to_owned();
    let config = test_pod_config("probe-exec");
    let cfg = config.clone();
    let c = client.clone();
    with_sandbox(&client, config, move |pod_id| async move {
        let container = cri_client::v1::ContainerConfig {
            metadata: Some(cri_client::v1::ContainerMetadata {
                name: "app".into(),
                attempt: 0,
            }),
            image: Some(cri_client::v1::ImageSpec {
                image: busybox,
                ..Default::default()
            }),
            command: vec!["sleep".into(), "3600".into()],
            log_path: "app.log".into(),
            ..Default::default()
        };
        let id = c.create_container(&pod_id, container, cfg).await.unwrap();
        c.start_container(&id).await.unwrap();
        let run = |script: &'static str| {
            let endpoint = endpoint.clone();
            let id = id.clone();
            tokio::task::spawn_blocking(move || {
                let spec = format!(r#"{{"exec":{{"command":["sh","-c",{script:?}]}}}}"#);
                probe(&[
                    "--probe",
                    &spec,
                    "--runtime-endpoint",
                    &endpoint,
                    "--container-id",
                    &id,
                ])
            })
        };
        let (code, out, err) = run("echo fine").await.unwrap();
        assert_eq!(
            (code, out.as_str()),
            (0, "success: fine\n"),
            "stderr: {err}"
        );
        let (code, out, _) = run("echo broken >&2; exit 3").await.unwrap();
        assert_eq!((code, out.as_str()), (1, "failure: broken\n"));
    })
    .await;
}
