//! `CriClient` behaviours the real runtime cannot be made to show on demand, checked
//! against the fake runtime: per-RPC deadlines (on tokio's paused clock, so they are
//! exact and instant), the Stream* list path and its one-time fallback, injected
//! faults, version validation, and a runtime restart.

use std::time::Duration;

use cri_client::fake::{AfterRestart, ExecResult, FakeRuntime, Fault, Rpc};
use cri_client::tonic::Code;
use cri_client::tonic::transport::Channel;
use cri_client::v1::{
    ContainerConfig, ContainerMetadata, ImageSpec, PodSandboxConfig, PodSandboxMetadata,
};
use cri_client::{ClientConfig, CriClient, Error};

async fn client(fake: &FakeRuntime, config: ClientConfig) -> CriClient<Channel> {
    let channel = fake.in_process_channel().await.expect("in-process channel");
    CriClient::with_transport(channel, config)
}

fn pod(name: &str) -> PodSandboxConfig {
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: name.into(),
            uid: format!("uid-{name}"),
            namespace: "default".into(),
            attempt: 0,
        }),
        ..Default::default()
    }
}

fn container(name: &str) -> ContainerConfig {
    ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        image: Some(ImageSpec {
            image: "docker.io/library/busybox:1.36".into(),
            ..Default::default()
        }),
        command: vec!["sleep".into(), "3600".into()],
        ..Default::default()
    }
}

/// A running container in a fresh pod.
async fn running_container(c: &CriClient<Channel>) -> (String, String) {
    c.pull_image(
        ImageSpec {
            image: "docker.io/library/busybox:1.36".into(),
            ..Default::default()
        },
        None,
        None,
    )
    .await
    .unwrap();
    let pod_id = c.run_pod_sandbox(pod("p"), "").await.unwrap();
    let id = c
        .create_container(&pod_id, container("app"), pod("p"))
        .await
        .unwrap();
    c.start_container(&id).await.unwrap();
    (pod_id, id)
}

#[tokio::test(start_paused = true)]
async fn default_deadline_applies_and_is_overridable() {
    let fake = FakeRuntime::new();
    let c = client(
        &fake,
        ClientConfig::default().request_timeout(Duration::from_secs(2)),
    )
    .await;
    fake.set_latency(Rpc::Version, Duration::from_secs(3));

    let err = c.version().await.unwrap_err();
    assert!(err.is_deadline_exceeded(), "{err}");
    assert!(err.to_string().contains("no answer within 2s"), "{err}");

    // A longer per-handle deadline lets the same call through.
    c.with_timeout(Duration::from_secs(4))
        .version()
        .await
        .expect("within the override");
}

#[tokio::test(start_paused = true)]
async fn run_pod_sandbox_gets_twice_the_timeout() {
    let fake = FakeRuntime::new();
    let c = client(
        &fake,
        ClientConfig::default().request_timeout(Duration::from_secs(2)),
    )
    .await;
    fake.set_latency(Rpc::RunPodSandbox, Duration::from_secs(3));
    c.run_pod_sandbox(pod("slow"), "")
        .await
        .expect("3 s is within 2 x 2 s");
    fake.set_latency(Rpc::RunPodSandbox, Duration::from_secs(5));
    let err = c.run_pod_sandbox(pod("slower"), "").await.unwrap_err();
    assert!(err.is_deadline_exceeded(), "5 s is past 2 x 2 s: {err}");
}

#[tokio::test(start_paused = true)]
async fn stop_container_deadline_includes_the_grace_period() {
    let fake = FakeRuntime::new();
    let c = client(
        &fake,
        ClientConfig::default().request_timeout(Duration::from_secs(2)),
    )
    .await;
    let (_, id) = running_container(&c).await;
    fake.set_latency(Rpc::StopContainer, Duration::from_secs(10));
    c.stop_container(&id, 30)
        .await
        .expect("10 s is within 2 s + 30 s grace");
}

#[tokio::test(start_paused = true)]
async fn pull_image_has_no_deadline() {
    let fake = FakeRuntime::new();
    let c = client(
        &fake,
        ClientConfig::default().request_timeout(Duration::from_secs(1)),
    )
    .await;
    fake.set_latency(Rpc::PullImage, Duration::from_secs(600));
    let image = ImageSpec {
        image: "docker.io/library/busybox:1.36".into(),
        ..Default::default()
    };
    let image_ref = c
        .pull_image(image, None, None)
        .await
        .expect("a 10 minute pull is not cut short");
    assert!(!image_ref.is_empty());
}

#[tokio::test(start_paused = true)]
async fn exec_sync_timeout_is_command_timed_out() {
    let fake = FakeRuntime::new();
    let c = client(&fake, ClientConfig::default()).await;
    let (_, id) = running_container(&c).await;
    fake.set_exec_result(
        ["sleep", "60"],
        ExecResult::new(0).with_duration(Duration::from_secs(60)),
    );
    let err = c
        .exec_sync(&id, vec!["sleep".into(), "60".into()], 5)
        .await
        .unwrap_err();
    match &err {
        Error::CommandTimedOut {
            command,
            timeout_seconds,
        } => {
            assert_eq!(command, &["sleep", "60"]);
            assert_eq!(*timeout_seconds, 5);
        }
        other => panic!("expected CommandTimedOut, got {other:?}"),
    }
    assert_eq!(
        err.to_string(),
        "command [\"sleep\", \"60\"] timed out after 5s"
    );

    fake.set_exec_result(["true"], ExecResult::new(3).with_stdout("out"));
    let r = c.exec_sync(&id, vec!["true".into()], 5).await.unwrap();
    assert_eq!(
        (r.exit_code, r.stdout.as_slice()),
        (3, &b"out"[..]),
        "non-zero exit is not an error"
    );
}

#[tokio::test]
async fn streaming_lists_are_used_when_the_runtime_has_them() {
    let fake = FakeRuntime::new();
    let c = client(&fake, ClientConfig::default().use_streaming_lists(true)).await;
    running_container(&c).await;
    fake.clear_calls();
    assert_eq!(c.list_containers(None).await.unwrap().len(), 1);
    assert_eq!(c.list_pod_sandboxes(None).await.unwrap().len(), 1);
    assert_eq!(fake.calls_to(Rpc::StreamContainers).len(), 1);
    assert_eq!(fake.calls_to(Rpc::StreamPodSandboxes).len(), 1);
    assert!(
        fake.calls_to(Rpc::ListContainers).is_empty(),
        "no unary list when streaming works"
    );
    assert!(!c.streaming_lists_unsupported());
}

#[tokio::test]
async fn unimplemented_streaming_falls_back_once_and_for_good() {
    let fake = FakeRuntime::containerd_1_6();
    let c = client(&fake, ClientConfig::default().use_streaming_lists(true)).await;
    running_container(&c).await;
    fake.clear_calls();
    assert_eq!(c.list_containers(None).await.unwrap().len(), 1);
    assert!(c.streaming_lists_unsupported());
    assert_eq!(c.list_containers(None).await.unwrap().len(), 1);
    assert_eq!(
        c.list_images(None).await.unwrap().len(),
        fake_image_count(&c).await
    );
    assert_eq!(fake.calls_to(Rpc::StreamContainers).len(), 1, "tried once");
    assert!(
        fake.calls_to(Rpc::StreamImages).is_empty(),
        "not tried again after the fallback"
    );
    assert_eq!(fake.calls_to(Rpc::ListContainers).len(), 2);

    // The other containerd 1.6 gaps become None.
    assert!(c.runtime_config().await.unwrap().is_none());
    assert!(c.list_metric_descriptors().await.unwrap().is_none());
    assert!(c.container_events().await.unwrap().is_none());
}

async fn fake_image_count(c: &CriClient<Channel>) -> usize {
    c.image_service()
        .list_images(cri_client::v1::ListImagesRequest { filter: None })
        .await
        .unwrap()
        .into_inner()
        .images
        .len()
}

#[tokio::test]
async fn injected_faults_surface_with_their_code_and_helpers_classify_them() {
    let fake = FakeRuntime::new();
    let c = client(&fake, ClientConfig::default()).await;
    fake.inject_fault(
        Rpc::ListPodSandbox,
        Fault::on_call(2, Code::Unavailable, "runtime busy"),
    );
    c.list_pod_sandboxes(None).await.expect("first call passes");
    let err = c.list_pod_sandboxes(None).await.unwrap_err();
    assert!(err.is_unavailable());
    assert_eq!(
        err.to_string(),
        "CRI ListPodSandbox failed: Unavailable: runtime busy"
    );
    c.list_pod_sandboxes(None).await.expect("third call passes");

    // NotFound from stop is "done" for the ensure helpers, any other error is not.
    fake.inject_fault(
        Rpc::StopPodSandbox,
        Fault::on_call(1, Code::NotFound, "gone"),
    );
    c.ensure_pod_sandbox_stopped("x")
        .await
        .expect("NotFound counts as stopped");
    fake.inject_fault(
        Rpc::StopPodSandbox,
        Fault::always(Code::Internal, "disk full"),
    );
    let err = c.ensure_pod_sandbox_removed("x").await.unwrap_err();
    assert_eq!(err.code(), Some(Code::Internal));
}

#[tokio::test]
async fn a_runtime_without_the_v1_api_fields_is_refused() {
    let fake = FakeRuntime::builder().runtime_name("").build();
    let c = client(&fake, ClientConfig::default()).await;
    let err = c.version().await.unwrap_err();
    assert!(
        matches!(err, Error::UnsupportedApiVersion { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("missing runtime_name"), "{err}");
}

#[tokio::test]
async fn calls_fail_unavailable_during_a_restart_and_work_after() {
    let fake = FakeRuntime::new();
    let c = client(&fake, ClientConfig::default()).await;
    c.version().await.unwrap();
    fake.begin_restart().await;
    let err = c.version().await.unwrap_err();
    assert!(err.is_unavailable(), "{err}");
    fake.finish_restart(AfterRestart::KeepContainers)
        .await
        .unwrap();
    let mut ok = false;
    for _ in 0..100 {
        if c.version().await.is_ok() {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(ok, "the same client works after the restart");
}
