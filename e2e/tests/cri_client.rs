//! `cri_client::CriClient` against the real containerd: the full sandbox and container
//! lifecycle, NotFound paths and the idempotent helpers, the Unimplemented fallbacks of
//! containerd 1.6, exec timeouts, image pulls, and a containerd restart in the middle of
//! a sequence of calls (on a private containerd, so the shared one is never disturbed).

use std::time::Duration;

use cri_client::v1::{
    AuthConfig, ContainerConfig, ContainerFilter, ContainerMetadata, ContainerState,
    ContainerStateValue, ImageSpec, PodSandboxConfig, PodSandboxFilter, PodSandboxState,
    PodSandboxStateValue,
};
use cri_client::{ClientConfig, CriClient, Error};
use node_sdk_e2e::{PrivateContainerd, TestEnv, test_pod_config, with_sandbox};

fn image(name: &str) -> ImageSpec {
    ImageSpec {
        image: name.to_owned(),
        ..Default::default()
    }
}

fn container_config(name: &str, image_name: &str, command: &[&str]) -> ContainerConfig {
    ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: name.to_owned(),
            attempt: 0,
        }),
        image: Some(image(image_name)),
        command: command.iter().map(|s| (*s).to_owned()).collect(),
        log_path: format!("{name}.log"),
        ..Default::default()
    }
}

/// Runs `body` with a fresh pod; the pod is removed afterwards even when `body` panics.
async fn with_pod<F, Fut>(client: &CriClient, tag: &str, body: F)
where
    F: FnOnce(CriClient, String, PodSandboxConfig) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let config = test_pod_config(tag);
    let (c, cfg) = (client.clone(), config.clone());
    with_sandbox(client, config, move |pod_id| body(c, pod_id, cfg)).await;
}

/// Polls (bounded) until the container reaches `state`.
async fn wait_for_state(client: &CriClient, id: &str, state: ContainerState) {
    for _ in 0..200 {
        let status = client
            .container_status(id, false)
            .await
            .expect("ContainerStatus");
        if status.status.as_ref().map(|s| s.state) == Some(state as i32) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("container {id} never reached {state:?}");
}

#[tokio::test]
async fn full_sandbox_and_container_lifecycle() {
    let env = TestEnv::require();
    let client = CriClient::connect(env.cri_endpoint()).unwrap();
    let busybox = env.get("BUSYBOX_IMAGE").to_owned();
    client
        .pull_image(image(&busybox), None, None)
        .await
        .expect("PullImage");

    with_pod(
        &client,
        "lifecycle",
        move |client, pod_id, pod| async move {
            // The sandbox is listed, READY, with its metadata.
            let status = client
                .pod_sandbox_status(&pod_id, false)
                .await
                .unwrap()
                .status
                .unwrap();
            assert_eq!(status.state, PodSandboxState::SandboxReady as i32);
            assert_eq!(
                status.metadata.as_ref().unwrap().name,
                pod.metadata.as_ref().unwrap().name
            );
            let ready = client
                .list_pod_sandboxes(Some(PodSandboxFilter {
                    id: pod_id.clone(),
                    state: Some(PodSandboxStateValue {
                        state: PodSandboxState::SandboxReady as i32,
                    }),
                    ..Default::default()
                }))
                .await
                .unwrap();
            assert_eq!(ready.len(), 1);

            // A container that exits on its own with code 3, and one that runs until stopped.
            let quits = client
                .create_container(
                    &pod_id,
                    container_config("quits", &busybox, &["sh", "-c", "exit 3"]),
                    pod.clone(),
                )
                .await
                .unwrap();
            let runs = client
                .create_container(
                    &pod_id,
                    container_config("runs", &busybox, &["sleep", "3600"]),
                    pod.clone(),
                )
                .await
                .unwrap();
            let created = client
                .list_containers(Some(ContainerFilter {
                    pod_sandbox_id: pod_id.clone(),
                    state: Some(ContainerStateValue {
                        state: ContainerState::ContainerCreated as i32,
                    }),
                    ..Default::default()
                }))
                .await
                .unwrap();
            assert_eq!(created.len(), 2, "both containers listed as CREATED");

            client.start_container(&quits).await.unwrap();
            client.start_container(&runs).await.unwrap();
            wait_for_state(&client, &runs, ContainerState::ContainerRunning).await;
            wait_for_state(&client, &quits, ContainerState::ContainerExited).await;
            let exited = client
                .container_status(&quits, false)
                .await
                .unwrap()
                .status
                .unwrap();
            assert_eq!(exited.exit_code, 3);
            assert_eq!(exited.reason, "Error");
            // Both times are set. (containerd 1.6 records started_at after the task start
            // returns and finished_at from the exit event, so for a process that exits at
            // once finished_at can be earlier than started_at: seen here, not asserted.)
            assert!(exited.started_at > 0 && exited.finished_at > 0);

            // Stop with no grace: SIGKILL, exit code 137.
            client.stop_container(&runs, 0).await.unwrap();
            let stopped = client
                .container_status(&runs, false)
                .await
                .unwrap()
                .status
                .unwrap();
            assert_eq!(stopped.state, ContainerState::ContainerExited as i32);
            assert_eq!(stopped.exit_code, 137);

            client.remove_container(&quits).await.unwrap();
            client.remove_container(&runs).await.unwrap();
            let left = client
                .list_containers(Some(ContainerFilter {
                    pod_sandbox_id: pod_id.clone(),
                    ..Default::default()
                }))
                .await
                .unwrap();
            assert!(left.is_empty(), "containers removed: {left:?}");

            client.stop_pod_sandbox(&pod_id).await.unwrap();
            let status = client
                .pod_sandbox_status(&pod_id, false)
                .await
                .unwrap()
                .status
                .unwrap();
            assert_eq!(status.state, PodSandboxState::SandboxNotready as i32);
            client.remove_pod_sandbox(&pod_id).await.unwrap();
            let gone = client
                .list_pod_sandboxes(Some(PodSandboxFilter {
                    id: pod_id.clone(),
                    ..Default::default()
                }))
                .await
                .unwrap();
            assert!(gone.is_empty());
        },
    )
    .await;
}

#[tokio::test]
async fn not_found_paths_and_idempotent_helpers() {
    let env = TestEnv::require();
    let client = CriClient::connect(env.cri_endpoint()).unwrap();
    let missing = "0000000000000000000000000000000000000000000000000000000000000000";

    let err = client.pod_sandbox_status(missing, false).await.unwrap_err();
    assert!(err.is_not_found(), "{err}");
    assert!(
        err.to_string()
            .starts_with("CRI PodSandboxStatus failed: NotFound"),
        "{err}"
    );
    let err = client.container_status(missing, false).await.unwrap_err();
    assert!(err.is_not_found(), "{err}");

    // containerd 1.6 answers NotFound to StopPodSandbox of an absent sandbox (against
    // the CRI idempotence comment); the ensure_* helpers treat it as done, as kubelet.
    let stop = client.stop_pod_sandbox(missing).await;
    assert!(
        stop.is_ok() || stop.as_ref().is_err_and(Error::is_not_found),
        "{stop:?}"
    );
    client
        .ensure_pod_sandbox_stopped(missing)
        .await
        .expect("absent sandbox counts as stopped");
    client
        .ensure_pod_sandbox_removed(missing)
        .await
        .expect("absent sandbox counts as removed");
    client
        .ensure_container_stopped(missing, 0)
        .await
        .expect("absent container counts as stopped");
    client
        .ensure_container_removed(missing)
        .await
        .expect("absent container counts as removed");
    let absent_image = format!("{}/node-sdk/never-pulled:1", env.get("REGISTRY"));
    client
        .ensure_image_removed(image(&absent_image))
        .await
        .expect("absent image counts as removed");

    // ImageStatus of an absent image is OK with no image, per the CRI contract.
    let status = client
        .image_status(image(&absent_image), false)
        .await
        .unwrap();
    assert!(status.image.is_none());
}

#[tokio::test]
async fn containerd_1_6_unimplemented_methods_fall_back() {
    let env = TestEnv::require();
    let client = CriClient::connect(env.cri_endpoint()).unwrap();
    let version = client.version().await.unwrap();
    assert_eq!(version.runtime_api_version, "v1");

    // containerd 1.6 implements none of these; newer runtimes do.
    if version.runtime_version.starts_with("1.6") {
        assert!(
            client.runtime_config().await.unwrap().is_none(),
            "RuntimeConfig -> None"
        );
        assert!(
            client.list_metric_descriptors().await.unwrap().is_none(),
            "ListMetricDescriptors -> None"
        );
        assert!(
            client.container_events().await.unwrap().is_none(),
            "GetContainerEvents -> None"
        );
    }

    // With streaming lists on, Unimplemented switches the client to List* for good.
    let streaming = CriClient::connect_with(
        env.cri_endpoint(),
        ClientConfig::default().use_streaming_lists(true),
    )
    .unwrap();
    streaming
        .list_pod_sandboxes(None)
        .await
        .expect("list with fallback");
    if version.runtime_version.starts_with("1.6") {
        assert!(
            streaming.streaming_lists_unsupported(),
            "StreamPodSandboxes is Unimplemented in 1.6"
        );
    }
    streaming
        .list_containers(None)
        .await
        .expect("containers with fallback");
    streaming
        .list_images(None)
        .await
        .expect("images with fallback");
    streaming
        .list_container_stats(None)
        .await
        .expect("container stats with fallback");
}

#[tokio::test]
async fn exec_sync_output_exit_code_and_timeout() {
    let env = TestEnv::require();
    let client = CriClient::connect(env.cri_endpoint()).unwrap();
    let busybox = env.get("BUSYBOX_IMAGE").to_owned();
    client
        .pull_image(image(&busybox), None, None)
        .await
        .unwrap();

    with_pod(&client, "execsync", move |client, pod_id, pod| async move {
        let id = client
            .create_container(
                &pod_id,
                container_config("sleeper", &busybox, &["sleep", "3600"]),
                pod,
            )
            .await
            .unwrap();
        client.start_container(&id).await.unwrap();

        let r = client
            .exec_sync(
                &id,
                vec![
                    "sh".into(),
                    "-c".into(),
                    "echo out; echo err >&2; exit 4".into(),
                ],
                10,
            )
            .await
            .unwrap();
        assert_eq!(
            (r.stdout.as_slice(), r.stderr.as_slice(), r.exit_code),
            (&b"out\n"[..], &b"err\n"[..], 4)
        );

        let err = client
            .exec_sync(&id, vec!["sleep".into(), "30".into()], 1)
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::CommandTimedOut {
                    timeout_seconds: 1,
                    ..
                }
            ) || err.is_deadline_exceeded(),
            "a command past its timeout: {err:?}"
        );
        assert!(err.is_deadline_exceeded(), "{err}");
    })
    .await;
}

#[tokio::test]
async fn pulls_with_credentials_and_reports_missing_images() {
    let env = TestEnv::require();
    let client = CriClient::connect(env.cri_endpoint()).unwrap();
    let authed = env.get("AUTH_BUSYBOX_IMAGE");
    let err = client
        .pull_image(image(authed), None, None)
        .await
        .unwrap_err();
    assert!(
        !err.is_not_found(),
        "refused credentials are not NotFound: {err}"
    );
    let auth = AuthConfig {
        username: env.get("AUTH_REGISTRY_USER").into(),
        password: env.get("AUTH_REGISTRY_PASSWORD").into(),
        ..Default::default()
    };
    let image_ref = client
        .pull_image(image(authed), Some(auth), None)
        .await
        .expect("pull with credentials");
    assert!(image_ref.starts_with("sha256:"), "{image_ref}");

    let missing = format!("{}/node-sdk/busybox:no-such-tag", env.get("REGISTRY"));
    let err = client
        .pull_image(image(&missing), None, None)
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err}");

    let listed = client.list_images(None).await.unwrap();
    assert!(
        listed
            .iter()
            .any(|i| i.repo_tags.iter().any(|t| t == authed)),
        "pulled image listed"
    );
    let fs = client.image_fs_info().await.unwrap();
    assert!(!fs.image_filesystems.is_empty());
}

/// The client survives a runtime crash and restart: calls during the outage fail with
/// Unavailable, and the same client works again once the runtime is back.
#[tokio::test]
async fn the_same_client_survives_a_containerd_restart() {
    let _env = TestEnv::require();
    let mut runtime = PrivateContainerd::start("restart");
    let client = CriClient::connect(&runtime.endpoint()).unwrap();

    let before = client.version().await.expect("Version before the restart");
    client
        .status(false)
        .await
        .expect("Status before the restart");

    runtime.kill();
    let err = client
        .version()
        .await
        .expect_err("no runtime while it is down");
    assert!(
        err.is_unavailable(),
        "calls during the outage are Unavailable: {err}"
    );
    let err = client
        .list_pod_sandboxes(None)
        .await
        .expect_err("still down");
    assert!(err.is_unavailable(), "{err}");

    runtime.restart();
    // The channel redials on the next call; allow for its reconnect back-off (bounded).
    let mut after = None;
    for _ in 0..100 {
        match client.version().await {
            Ok(v) => {
                after = Some(v);
                break;
            }
            Err(e) if e.is_unavailable() => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(e) => panic!("unexpected error after the restart: {e}"),
        }
    }
    let after = after.expect("the same client answers again after the restart");
    assert_eq!(after.runtime_version, before.runtime_version);
    client
        .list_pod_sandboxes(None)
        .await
        .expect("lists work after the restart");
}
