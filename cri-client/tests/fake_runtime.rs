//! The fake runtime through the real clients: lifecycle over a Unix socket
//! and in-process, the CRI contract (idempotence, NotFound, preconditions),
//! filters, events, fault injection, restarts and the containerd 1.6
//! preset.
//!
//! Timing behaviours run on tokio's paused clock over the in-process
//! channel, so they are instant and exact; tests over a Unix socket use real
//! time and only bounded waits.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use cri_client::fake::{
    AfterRestart, ContainerExit, ExecResult, FakeImage, FakeRuntime, Fault, Rpc,
};
use cri_client::tonic::transport::Channel;
use cri_client::tonic::{Code, Response, Status};
use cri_client::v1::image_service_client::ImageServiceClient;
use cri_client::v1::runtime_service_client::RuntimeServiceClient;
use cri_client::v1::{
    AttachRequest, CgroupDriver, CheckpointContainerRequest, ContainerConfig,
    ContainerEventResponse, ContainerEventType, ContainerFilter, ContainerMetadata, ContainerState,
    ContainerStateValue, ContainerStatsFilter, ContainerStatsRequest, ContainerStatus,
    ContainerStatusRequest, CreateContainerRequest, ExecRequest, ExecSyncRequest, GetEventsRequest,
    ImageFilter, ImageFsInfoRequest, ImageSpec, ImageStatusRequest, LinuxContainerResources,
    LinuxPodSandboxConfig, LinuxSandboxSecurityContext, ListContainerStatsRequest,
    ListContainersRequest, ListImagesRequest, ListMetricDescriptorsRequest,
    ListPodSandboxMetricsRequest, ListPodSandboxRequest, ListPodSandboxStatsRequest, NamespaceMode,
    NamespaceOption, NetworkConfig, PodSandboxConfig, PodSandboxFilter, PodSandboxMetadata,
    PodSandboxState, PodSandboxStateValue, PodSandboxStatsRequest, PodSandboxStatus,
    PodSandboxStatusRequest, PortForwardRequest, PullImageRequest, RemoveContainerRequest,
    RemoveImageRequest, RemovePodSandboxRequest, ReopenContainerLogRequest, RunPodSandboxRequest,
    RuntimeConfig, RuntimeConfigRequest, StartContainerRequest, StatusRequest,
    StopContainerRequest, StopPodSandboxRequest, StreamContainersRequest, StreamImagesRequest,
    StreamPodSandboxesRequest, UpdateContainerResourcesRequest, UpdatePodSandboxResourcesRequest,
    UpdateRuntimeConfigRequest, VersionRequest,
};
use cri_client::{image_client, runtime_client};

type Runtime = RuntimeServiceClient<Channel>;
type Images = ImageServiceClient<Channel>;

/// An upper bound for waits that should finish at once; only a broken fake
/// reaches it.
const PATIENCE: Duration = Duration::from_secs(10);

async fn in_process(fake: &FakeRuntime) -> (Runtime, Images) {
    let channel = fake
        .in_process_channel()
        .await
        .expect("the fake accepts in-process connections");
    (runtime_client(channel.clone()), image_client(channel))
}

/// A fresh directory for sockets, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir =
            std::env::temp_dir().join(format!("cri-client-fake-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create a temporary directory");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn pod_config(name: &str) -> PodSandboxConfig {
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: name.to_owned(),
            uid: format!("uid-{name}"),
            namespace: "default".to_owned(),
            attempt: 0,
        }),
        hostname: name.to_owned(),
        log_directory: format!("/var/log/pods/default_{name}_uid-{name}"),
        labels: HashMap::from([
            ("app".to_owned(), name.to_owned()),
            ("io.kubernetes.pod.name".to_owned(), name.to_owned()),
            (
                "io.kubernetes.pod.namespace".to_owned(),
                "default".to_owned(),
            ),
        ]),
        annotations: HashMap::from([("owner".to_owned(), "fake-runtime-test".to_owned())]),
        ..PodSandboxConfig::default()
    }
}

fn container_config(name: &str, image: &str) -> ContainerConfig {
    ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: name.to_owned(),
            attempt: 0,
        }),
        image: Some(image_spec(image)),
        command: vec!["sleep".to_owned(), "3600".to_owned()],
        labels: HashMap::from([("io.kubernetes.container.name".to_owned(), name.to_owned())]),
        annotations: HashMap::from([(
            "io.kubernetes.container.restartCount".to_owned(),
            "0".to_owned(),
        )]),
        log_path: format!("{name}/0.log"),
        ..ContainerConfig::default()
    }
}

fn image_spec(image: &str) -> ImageSpec {
    ImageSpec {
        image: image.to_owned(),
        ..ImageSpec::default()
    }
}

async fn run_pod(runtime: &mut Runtime, name: &str) -> String {
    runtime
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(pod_config(name)),
            runtime_handler: String::new(),
        })
        .await
        .expect("RunPodSandbox")
        .into_inner()
        .pod_sandbox_id
}

async fn create(runtime: &mut Runtime, pod_id: &str, pod: &str, name: &str, image: &str) -> String {
    runtime
        .create_container(CreateContainerRequest {
            pod_sandbox_id: pod_id.to_owned(),
            config: Some(container_config(name, image)),
            sandbox_config: Some(pod_config(pod)),
        })
        .await
        .expect("CreateContainer")
        .into_inner()
        .container_id
}

async fn start(runtime: &mut Runtime, id: &str) {
    runtime
        .start_container(StartContainerRequest {
            container_id: id.to_owned(),
        })
        .await
        .expect("StartContainer");
}

async fn container_status(runtime: &mut Runtime, id: &str) -> ContainerStatus {
    runtime
        .container_status(ContainerStatusRequest {
            container_id: id.to_owned(),
            verbose: false,
        })
        .await
        .expect("ContainerStatus")
        .into_inner()
        .status
        .expect("ContainerStatus has a status")
}

async fn pod_status(runtime: &mut Runtime, id: &str) -> PodSandboxStatus {
    runtime
        .pod_sandbox_status(PodSandboxStatusRequest {
            pod_sandbox_id: id.to_owned(),
            verbose: false,
        })
        .await
        .expect("PodSandboxStatus")
        .into_inner()
        .status
        .expect("PodSandboxStatus has a status")
}

async fn version(
    runtime: &mut Runtime,
) -> Result<Response<cri_client::v1::VersionResponse>, Status> {
    runtime
        .version(VersionRequest {
            version: "v1".to_owned(),
        })
        .await
}

/// The error of `result`, which must have failed with `code`.
#[track_caller]
fn expect_code<T: std::fmt::Debug>(result: Result<T, Status>, code: Code) -> Status {
    match result {
        Ok(value) => panic!("expected {code:?}, got Ok({value:?})"),
        Err(status) => {
            assert_eq!(status.code(), code, "{status:?}");
            status
        }
    }
}

/// A whole pod lifecycle as kubelet drives it; the same over any channel.
async fn lifecycle(channel: Channel) {
    let mut runtime = runtime_client(channel.clone());
    let mut images = image_client(channel);

    let version = version(&mut runtime).await.expect("Version").into_inner();
    assert_eq!(version.runtime_name, "fake-runtime");
    assert_eq!(version.runtime_api_version, "v1");
    assert!(!version.runtime_version.is_empty() && !version.version.is_empty());

    let status = runtime
        .status(StatusRequest { verbose: false })
        .await
        .expect("Status")
        .into_inner();
    let conditions = status.status.expect("runtime status").conditions;
    let kinds: Vec<_> = conditions
        .iter()
        .map(|c| (c.r#type.as_str(), c.status))
        .collect();
    assert_eq!(kinds, [("RuntimeReady", true), ("NetworkReady", true)]);

    let image_ref = images
        .pull_image(PullImageRequest {
            image: Some(image_spec("busybox:1.36")),
            ..PullImageRequest::default()
        })
        .await
        .expect("PullImage")
        .into_inner()
        .image_ref;
    assert!(image_ref.starts_with("sha256:"), "{image_ref}");

    let pod_id = run_pod(&mut runtime, "web").await;
    assert_eq!(pod_id.len(), 64);
    let pod = pod_status(&mut runtime, &pod_id).await;
    assert_eq!(pod.state(), PodSandboxState::SandboxReady);
    assert_eq!(pod.metadata, pod_config("web").metadata);
    assert_eq!(pod.labels["app"], "web");
    assert_eq!(pod.annotations["owner"], "fake-runtime-test");
    assert!(pod.created_at > 0);
    assert_eq!(pod.network.expect("network status").ip, "10.88.0.2");

    let id = create(&mut runtime, &pod_id, "web", "app", "busybox:1.36").await;
    let created = container_status(&mut runtime, &id).await;
    assert_eq!(created.state(), ContainerState::ContainerCreated);
    assert_eq!(
        created.metadata.as_ref().map(|m| m.name.as_str()),
        Some("app")
    );
    assert_eq!(
        created.image.as_ref().map(|i| i.image.as_str()),
        Some("docker.io/library/busybox:1.36")
    );
    assert!(
        created
            .image_ref
            .starts_with("docker.io/library/busybox@sha256:"),
        "{}",
        created.image_ref
    );
    assert_eq!(created.image_id, image_ref);
    assert_eq!(
        created.log_path,
        "/var/log/pods/default_web_uid-web/app/0.log"
    );
    assert_eq!(created.labels["io.kubernetes.container.name"], "app");
    assert_eq!(created.started_at, 0);

    start(&mut runtime, &id).await;
    let running = container_status(&mut runtime, &id).await;
    assert_eq!(running.state(), ContainerState::ContainerRunning);
    assert!(running.started_at >= running.created_at);

    let exec = runtime
        .exec_sync(ExecSyncRequest {
            container_id: id.clone(),
            cmd: vec!["true".to_owned()],
            timeout: 1,
        })
        .await
        .expect("ExecSync")
        .into_inner();
    assert_eq!(
        (exec.exit_code, exec.stdout.len(), exec.stderr.len()),
        (0, 0, 0)
    );

    runtime
        .stop_container(StopContainerRequest {
            container_id: id.clone(),
            timeout: 30,
        })
        .await
        .expect("StopContainer");
    let exited = container_status(&mut runtime, &id).await;
    assert_eq!(exited.state(), ContainerState::ContainerExited);
    assert_eq!((exited.exit_code, exited.reason.as_str()), (0, "Completed"));
    assert!(exited.finished_at >= exited.started_at);

    runtime
        .remove_container(RemoveContainerRequest {
            container_id: id.clone(),
        })
        .await
        .expect("RemoveContainer");
    runtime
        .stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: pod_id.clone(),
        })
        .await
        .expect("StopPodSandbox");
    assert_eq!(
        pod_status(&mut runtime, &pod_id).await.state(),
        PodSandboxState::SandboxNotready
    );
    runtime
        .remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: pod_id.clone(),
        })
        .await
        .expect("RemovePodSandbox");

    let pods = runtime
        .list_pod_sandbox(ListPodSandboxRequest::default())
        .await
        .expect("ListPodSandbox")
        .into_inner();
    assert!(pods.items.is_empty());
    let containers = runtime
        .list_containers(ListContainersRequest::default())
        .await
        .expect("ListContainers")
        .into_inner();
    assert!(containers.containers.is_empty());
}

#[tokio::test]
async fn lifecycle_in_process() {
    let fake = FakeRuntime::new();
    let channel = fake.in_process_channel().await.expect("connect");
    lifecycle(channel).await;
}

#[tokio::test]
async fn lifecycle_over_a_unix_socket() {
    let dir = TempDir::new("lifecycle");
    let fake = FakeRuntime::new();
    let server = fake
        .serve_unix(dir.0.join("cri.sock"))
        .await
        .expect("serve on a socket");
    assert!(server.path().exists());
    let channel = cri_client::connect(&server.endpoint())
        .await
        .expect("endpoint parses");
    lifecycle(channel.clone()).await;

    let path = server.path().to_owned();
    server.shutdown().await;
    assert!(!path.exists(), "the socket is removed on shutdown");
    let mut runtime = runtime_client(channel);
    expect_code(version(&mut runtime).await, Code::Unavailable);
}

#[tokio::test]
async fn dropping_the_server_handle_stops_serving() {
    let dir = TempDir::new("drop");
    let fake = FakeRuntime::new();
    let path = dir.0.join("cri.sock");
    let server = fake.serve_unix(&path).await.expect("serve");
    let mut runtime = runtime_client(
        cri_client::connect(&server.endpoint())
            .await
            .expect("parse"),
    );
    version(&mut runtime).await.expect("served");
    drop(server);
    assert!(!path.exists());
    expect_code(version(&mut runtime).await, Code::Unavailable);
    // Serving again on the same path works (the stale socket is gone).
    let _server = fake.serve_unix(&path).await.expect("serve again");
    let mut runtime = runtime_client(
        cri_client::connect(&format!("unix://{}", path.display()))
            .await
            .expect("parse"),
    );
    version(&mut runtime).await.expect("served again");
}

#[tokio::test]
async fn stop_and_remove_are_idempotent() {
    let fake = FakeRuntime::new();
    let (mut runtime, mut images) = in_process(&fake).await;
    let absent = "0".repeat(64);
    for _ in 0..2 {
        runtime
            .stop_pod_sandbox(StopPodSandboxRequest {
                pod_sandbox_id: absent.clone(),
            })
            .await
            .expect("StopPodSandbox of an absent sandbox");
        runtime
            .remove_pod_sandbox(RemovePodSandboxRequest {
                pod_sandbox_id: absent.clone(),
            })
            .await
            .expect("RemovePodSandbox of an absent sandbox");
        runtime
            .stop_container(StopContainerRequest {
                container_id: absent.clone(),
                timeout: 0,
            })
            .await
            .expect("StopContainer of an absent container");
        runtime
            .remove_container(RemoveContainerRequest {
                container_id: absent.clone(),
            })
            .await
            .expect("RemoveContainer of an absent container");
        images
            .remove_image(RemoveImageRequest {
                image: Some(image_spec("docker.io/library/absent:1")),
            })
            .await
            .expect("RemoveImage of an absent image");
    }

    // Twice on real objects: created, stopped twice, removed twice.
    let pod_id = run_pod(&mut runtime, "twice").await;
    let id = create(
        &mut runtime,
        &pod_id,
        "twice",
        "c",
        "registry.k8s.io/pause:3.10",
    )
    .await;
    start(&mut runtime, &id).await;
    for _ in 0..2 {
        runtime
            .stop_container(StopContainerRequest {
                container_id: id.clone(),
                timeout: 0,
            })
            .await
            .expect("StopContainer");
        let status = container_status(&mut runtime, &id).await;
        assert_eq!((status.exit_code, status.reason.as_str()), (137, "Error"));
    }
    for _ in 0..2 {
        runtime
            .stop_pod_sandbox(StopPodSandboxRequest {
                pod_sandbox_id: pod_id.clone(),
            })
            .await
            .expect("StopPodSandbox");
    }
    for _ in 0..2 {
        runtime
            .remove_pod_sandbox(RemovePodSandboxRequest {
                pod_sandbox_id: pod_id.clone(),
            })
            .await
            .expect("RemovePodSandbox");
    }
    // The sandbox took its container with it.
    expect_code(
        runtime
            .container_status(ContainerStatusRequest {
                container_id: id,
                verbose: false,
            })
            .await,
        Code::NotFound,
    );
}

#[tokio::test]
async fn absent_objects_are_not_found() {
    let fake = FakeRuntime::new();
    let (mut runtime, mut images) = in_process(&fake).await;
    let absent = "f".repeat(64);
    expect_code(
        runtime
            .pod_sandbox_status(PodSandboxStatusRequest {
                pod_sandbox_id: absent.clone(),
                verbose: false,
            })
            .await,
        Code::NotFound,
    );
    expect_code(
        runtime
            .container_status(ContainerStatusRequest {
                container_id: absent.clone(),
                verbose: false,
            })
            .await,
        Code::NotFound,
    );
    expect_code(
        runtime
            .start_container(StartContainerRequest {
                container_id: absent.clone(),
            })
            .await,
        Code::NotFound,
    );
    expect_code(
        runtime
            .container_stats(ContainerStatsRequest {
                container_id: absent.clone(),
            })
            .await,
        Code::NotFound,
    );
    expect_code(
        runtime
            .pod_sandbox_stats(PodSandboxStatsRequest {
                pod_sandbox_id: absent.clone(),
            })
            .await,
        Code::NotFound,
    );
    expect_code(
        runtime
            .port_forward(PortForwardRequest {
                pod_sandbox_id: absent.clone(),
                port: vec![80],
            })
            .await,
        Code::NotFound,
    );
    // A container in an absent sandbox: NotFound, as containerd answers.
    let status = expect_code(
        runtime
            .create_container(CreateContainerRequest {
                pod_sandbox_id: absent.clone(),
                config: Some(container_config("c", "registry.k8s.io/pause:3.10")),
                sandbox_config: None,
            })
            .await,
        Code::NotFound,
    );
    assert!(status.message().contains("pod sandbox"), "{status:?}");
    // A container whose image is not on the node.
    let pod_id = run_pod(&mut runtime, "noimage").await;
    let status = expect_code(
        runtime
            .create_container(CreateContainerRequest {
                pod_sandbox_id: pod_id,
                config: Some(container_config("c", "nginx:1.27")),
                sandbox_config: None,
            })
            .await,
        Code::NotFound,
    );
    assert!(status.message().contains("nginx"), "{status:?}");
    // Pulling an image the registry does not have.
    let status = expect_code(
        images
            .pull_image(PullImageRequest {
                image: Some(image_spec("example.com/nope:1")),
                ..PullImageRequest::default()
            })
            .await,
        Code::NotFound,
    );
    assert!(
        status.message().contains("example.com/nope:1: not found"),
        "{status:?}"
    );
    // ImageStatus of an absent image is OK with no image.
    let answer = images
        .image_status(ImageStatusRequest {
            image: Some(image_spec("example.com/nope:1")),
            verbose: false,
        })
        .await
        .expect("ImageStatus of an absent image succeeds")
        .into_inner();
    assert!(answer.image.is_none());
}

#[tokio::test]
async fn preconditions_and_validation() {
    let fake = FakeRuntime::new();
    let (mut runtime, _) = in_process(&fake).await;

    let status = expect_code(
        runtime
            .run_pod_sandbox(RunPodSandboxRequest {
                config: Some(PodSandboxConfig::default()),
                runtime_handler: String::new(),
            })
            .await,
        Code::InvalidArgument,
    );
    assert!(status.message().contains("metadata"), "{status:?}");
    let mut no_uid = pod_config("x");
    if let Some(metadata) = no_uid.metadata.as_mut() {
        metadata.uid.clear();
    }
    let status = expect_code(
        runtime
            .run_pod_sandbox(RunPodSandboxRequest {
                config: Some(no_uid),
                runtime_handler: String::new(),
            })
            .await,
        Code::InvalidArgument,
    );
    assert!(status.message().contains("uid is empty"), "{status:?}");
    expect_code(
        runtime
            .run_pod_sandbox(RunPodSandboxRequest {
                config: Some(pod_config("x")),
                runtime_handler: "kata".to_owned(),
            })
            .await,
        Code::InvalidArgument,
    );
    let status = expect_code(
        runtime
            .container_status(ContainerStatusRequest::default())
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(status.message(), "container_id is empty");

    let pod_id = run_pod(&mut runtime, "pre").await;
    // The same pod again: its name is taken.
    expect_code(
        runtime
            .run_pod_sandbox(RunPodSandboxRequest {
                config: Some(pod_config("pre")),
                runtime_handler: String::new(),
            })
            .await,
        Code::AlreadyExists,
    );
    let status = expect_code(
        runtime
            .create_container(CreateContainerRequest {
                pod_sandbox_id: pod_id.clone(),
                config: Some(ContainerConfig {
                    image: None,
                    ..container_config("c", "")
                }),
                sandbox_config: None,
            })
            .await,
        Code::InvalidArgument,
    );
    assert!(status.message().contains("image"), "{status:?}");

    let id = create(
        &mut runtime,
        &pod_id,
        "pre",
        "c",
        "registry.k8s.io/pause:3.10",
    )
    .await;
    expect_code(
        runtime
            .create_container(CreateContainerRequest {
                pod_sandbox_id: pod_id.clone(),
                config: Some(container_config("c", "registry.k8s.io/pause:3.10")),
                sandbox_config: None,
            })
            .await,
        Code::AlreadyExists,
    );
    // Exec needs a running container.
    expect_code(
        runtime
            .exec_sync(ExecSyncRequest {
                container_id: id.clone(),
                cmd: vec!["true".to_owned()],
                timeout: 0,
            })
            .await,
        Code::FailedPrecondition,
    );
    start(&mut runtime, &id).await;
    // Only a created container can be started.
    let status = expect_code(
        runtime
            .start_container(StartContainerRequest {
                container_id: id.clone(),
            })
            .await,
        Code::FailedPrecondition,
    );
    assert!(status.message().contains("CONTAINER_RUNNING"), "{status:?}");
    let status = expect_code(
        runtime
            .exec(ExecRequest {
                container_id: id.clone(),
                cmd: vec!["sh".to_owned()],
                tty: true,
                stdin: true,
                stdout: true,
                stderr: true,
            })
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(status.message(), "tty and stderr cannot both be true");
    expect_code(
        runtime
            .attach(AttachRequest {
                container_id: id.clone(),
                ..AttachRequest::default()
            })
            .await,
        Code::InvalidArgument,
    );

    // A sandbox that is not ready takes no new containers.
    runtime
        .stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: pod_id.clone(),
        })
        .await
        .expect("StopPodSandbox");
    let killed = container_status(&mut runtime, &id).await;
    assert_eq!((killed.exit_code, killed.reason.as_str()), (137, "Error"));
    let status = expect_code(
        runtime
            .create_container(CreateContainerRequest {
                pod_sandbox_id: pod_id,
                config: Some(container_config("late", "registry.k8s.io/pause:3.10")),
                sandbox_config: None,
            })
            .await,
        Code::FailedPrecondition,
    );
    assert!(status.message().contains("not ready"), "{status:?}");
}

#[tokio::test]
async fn images_pull_list_status_and_remove_all_tags() {
    let fake = FakeRuntime::new();
    let (_, mut images) = in_process(&fake).await;
    let pull = |image: &str| PullImageRequest {
        image: Some(image_spec(image)),
        ..PullImageRequest::default()
    };
    let by_tag = images
        .pull_image(pull("busybox:1.36"))
        .await
        .expect("pull")
        .into_inner()
        .image_ref;
    let latest = images
        .pull_image(pull("busybox"))
        .await
        .expect("pull")
        .into_inner()
        .image_ref;
    assert_eq!(by_tag, latest, "one image, two tags");

    let listed = images
        .list_images(ListImagesRequest::default())
        .await
        .expect("ListImages")
        .into_inner()
        .images;
    let busybox = listed
        .iter()
        .find(|i| i.id == by_tag)
        .expect("busybox is listed");
    assert_eq!(
        busybox.repo_tags,
        [
            "docker.io/library/busybox:1.36",
            "docker.io/library/busybox:latest"
        ]
    );
    assert!(
        listed
            .iter()
            .any(|i| i.repo_tags == ["registry.k8s.io/pause:3.10"] && i.pinned)
    );

    let filtered = images
        .list_images(ListImagesRequest {
            filter: Some(ImageFilter {
                image: Some(image_spec("docker.io/library/busybox:latest")),
            }),
        })
        .await
        .expect("ListImages with a filter")
        .into_inner()
        .images;
    assert_eq!(filtered.len(), 1);
    let streamed = images
        .stream_images(StreamImagesRequest::default())
        .await
        .expect("StreamImages");
    let mut stream = streamed.into_inner();
    let mut streamed_ids = Vec::new();
    while let Some(chunk) = stream.message().await.expect("a chunk") {
        streamed_ids.extend(chunk.images.into_iter().map(|i| i.id));
    }
    assert_eq!(
        streamed_ids,
        listed.iter().map(|i| i.id.clone()).collect::<Vec<_>>()
    );

    let by_id = images
        .image_status(ImageStatusRequest {
            image: Some(image_spec(&by_tag)),
            verbose: true,
        })
        .await
        .expect("ImageStatus by ID")
        .into_inner();
    assert_eq!(by_id.image.expect("present").id, by_tag);
    assert!(by_id.info.contains_key("info"));

    let fs = images
        .image_fs_info(ImageFsInfoRequest {})
        .await
        .expect("ImageFsInfo")
        .into_inner();
    let used = fs.image_filesystems[0]
        .used_bytes
        .expect("used bytes")
        .value;
    assert_eq!(used, listed.iter().map(|i| i.size).sum::<u64>());

    // Removing one tag removes the image with all its tags.
    images
        .remove_image(RemoveImageRequest {
            image: Some(image_spec("busybox:latest")),
        })
        .await
        .expect("RemoveImage");
    for tag in ["busybox:1.36", "busybox:latest", by_tag.as_str()] {
        let status = images
            .image_status(ImageStatusRequest {
                image: Some(image_spec(tag)),
                verbose: false,
            })
            .await
            .expect("ImageStatus")
            .into_inner();
        assert!(status.image.is_none(), "{tag} is gone");
    }

    // Images added at run time.
    fake.add_pullable_image(FakeImage::new("127.0.0.1:5000/node-sdk/busybox:1.35"));
    images
        .pull_image(pull("127.0.0.1:5000/node-sdk/busybox:1.35"))
        .await
        .expect("a pullable image added at run time");
    expect_code(
        images.pull_image(pull("Not A Reference")).await,
        Code::InvalidArgument,
    );
}

#[tokio::test]
async fn list_filters_and_streams() {
    let fake = FakeRuntime::builder().stream_chunk_size(1).build();
    let (mut runtime, _) = in_process(&fake).await;
    let web = run_pod(&mut runtime, "web").await;
    let db = run_pod(&mut runtime, "db").await;
    let web_app = create(
        &mut runtime,
        &web,
        "web",
        "app",
        "registry.k8s.io/pause:3.10",
    )
    .await;
    let web_side = create(
        &mut runtime,
        &web,
        "web",
        "sidecar",
        "registry.k8s.io/pause:3.10",
    )
    .await;
    let db_app = create(&mut runtime, &db, "db", "app", "registry.k8s.io/pause:3.10").await;
    start(&mut runtime, &web_app).await;
    runtime
        .stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: db.clone(),
        })
        .await
        .expect("stop db");

    let pods = |filter: PodSandboxFilter| ListPodSandboxRequest {
        filter: Some(filter),
    };
    let ids = |items: Vec<cri_client::v1::PodSandbox>| -> Vec<String> {
        items.into_iter().map(|p| p.id).collect()
    };
    let all = runtime
        .list_pod_sandbox(ListPodSandboxRequest::default())
        .await
        .expect("list")
        .into_inner()
        .items;
    assert_eq!(ids(all), [web.clone(), db.clone()], "creation order");
    let by_prefix = runtime
        .list_pod_sandbox(pods(PodSandboxFilter {
            id: web[..12].to_owned(),
            ..PodSandboxFilter::default()
        }))
        .await
        .expect("list")
        .into_inner()
        .items;
    assert_eq!(ids(by_prefix), [web.as_str()]);
    let ready = runtime
        .list_pod_sandbox(pods(PodSandboxFilter {
            state: Some(PodSandboxStateValue {
                state: PodSandboxState::SandboxReady as i32,
            }),
            ..PodSandboxFilter::default()
        }))
        .await
        .expect("list")
        .into_inner()
        .items;
    assert_eq!(ids(ready), [web.as_str()]);
    let labelled = runtime
        .list_pod_sandbox(pods(PodSandboxFilter {
            label_selector: HashMap::from([("app".to_owned(), "db".to_owned())]),
            ..PodSandboxFilter::default()
        }))
        .await
        .expect("list")
        .into_inner()
        .items;
    assert_eq!(ids(labelled), [db.as_str()]);

    let containers = |filter: ContainerFilter| ListContainersRequest {
        filter: Some(filter),
    };
    let container_ids = |items: Vec<cri_client::v1::Container>| -> Vec<String> {
        items.into_iter().map(|c| c.id).collect()
    };
    let in_web = runtime
        .list_containers(containers(ContainerFilter {
            pod_sandbox_id: web.clone(),
            ..ContainerFilter::default()
        }))
        .await
        .expect("list")
        .into_inner()
        .containers;
    assert_eq!(container_ids(in_web), [web_app.clone(), web_side.clone()]);
    let running = runtime
        .list_containers(containers(ContainerFilter {
            state: Some(ContainerStateValue {
                state: ContainerState::ContainerRunning as i32,
            }),
            ..ContainerFilter::default()
        }))
        .await
        .expect("list")
        .into_inner()
        .containers;
    assert_eq!(container_ids(running), [web_app.as_str()]);
    let created = runtime
        .list_containers(containers(ContainerFilter {
            state: Some(ContainerStateValue {
                state: ContainerState::ContainerCreated as i32,
            }),
            ..ContainerFilter::default()
        }))
        .await
        .expect("list")
        .into_inner()
        .containers;
    assert_eq!(container_ids(created), [web_side.clone(), db_app.clone()]);
    let named_app = runtime
        .list_containers(containers(ContainerFilter {
            label_selector: HashMap::from([(
                "io.kubernetes.container.name".to_owned(),
                "app".to_owned(),
            )]),
            ..ContainerFilter::default()
        }))
        .await
        .expect("list")
        .into_inner()
        .containers;
    assert_eq!(container_ids(named_app), [web_app.clone(), db_app.clone()]);
    let by_id = runtime
        .list_containers(containers(ContainerFilter {
            id: db_app.clone(),
            pod_sandbox_id: web.clone(),
            ..ContainerFilter::default()
        }))
        .await
        .expect("list")
        .into_inner()
        .containers;
    assert!(by_id.is_empty(), "filters combine with AND");

    // The Stream* variants send the same items, here one per message.
    let mut stream = runtime
        .stream_containers(StreamContainersRequest {
            filter: Some(ContainerFilter {
                pod_sandbox_id: web.clone(),
                ..ContainerFilter::default()
            }),
        })
        .await
        .expect("StreamContainers")
        .into_inner();
    let mut chunks = Vec::new();
    while let Some(chunk) = stream.message().await.expect("a chunk") {
        chunks.push(container_ids(chunk.containers));
    }
    assert_eq!(chunks, [vec![web_app.clone()], vec![web_side.clone()]]);
    let mut stream = runtime
        .stream_pod_sandboxes(StreamPodSandboxesRequest::default())
        .await
        .expect("StreamPodSandboxes")
        .into_inner();
    let mut streamed = Vec::new();
    while let Some(chunk) = stream.message().await.expect("a chunk") {
        assert_eq!(chunk.pod_sandboxes.len(), 1);
        streamed.extend(ids(chunk.pod_sandboxes));
    }
    assert_eq!(streamed, [web.clone(), db.clone()]);

    // Stats follow the same filters; sandbox stats only cover ready ones.
    let stats = runtime
        .list_container_stats(ListContainerStatsRequest {
            filter: Some(ContainerStatsFilter {
                pod_sandbox_id: web.clone(),
                ..ContainerStatsFilter::default()
            }),
        })
        .await
        .expect("ListContainerStats")
        .into_inner()
        .stats;
    assert_eq!(stats.len(), 2);
    let pod_stats = runtime
        .list_pod_sandbox_stats(ListPodSandboxStatsRequest::default())
        .await
        .expect("ListPodSandboxStats")
        .into_inner()
        .stats;
    assert_eq!(pod_stats.len(), 1);
    assert_eq!(
        pod_stats[0].attributes.as_ref().map(|a| a.id.as_str()),
        Some(web.as_str())
    );
}

async fn next_event(
    events: &mut cri_client::tonic::Streaming<ContainerEventResponse>,
) -> ContainerEventResponse {
    tokio::time::timeout(PATIENCE, events.message())
        .await
        .expect("an event arrives")
        .expect("the stream is healthy")
        .expect("the stream is open")
}

#[tokio::test]
async fn events_arrive_in_order_with_statuses() {
    let fake = FakeRuntime::new();
    let (mut runtime, _) = in_process(&fake).await;
    let mut events = runtime
        .get_container_events(GetEventsRequest {})
        .await
        .expect("GetContainerEvents")
        .into_inner();
    assert_eq!(fake.event_subscribers(), 1);

    let pod = run_pod(&mut runtime, "ev").await;
    let id = create(&mut runtime, &pod, "ev", "c", "registry.k8s.io/pause:3.10").await;
    start(&mut runtime, &id).await;
    runtime
        .remove_container(RemoveContainerRequest {
            container_id: id.clone(),
        })
        .await
        .expect("remove a running container");
    runtime
        .remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await
        .expect("remove a ready sandbox");

    use ContainerEventType::*;
    let expected = [
        (&pod, ContainerCreatedEvent),
        (&pod, ContainerStartedEvent),
        (&id, ContainerCreatedEvent),
        (&id, ContainerStartedEvent),
        (&id, ContainerStoppedEvent),
        (&id, ContainerDeletedEvent),
        (&pod, ContainerStoppedEvent),
        (&pod, ContainerDeletedEvent),
    ];
    let mut last_time = 0;
    for (n, (object, kind)) in expected.into_iter().enumerate() {
        let event = next_event(&mut events).await;
        assert_eq!(
            (&event.container_id, event.container_event_type()),
            (object, kind),
            "event {n}"
        );
        assert!(event.created_at >= last_time);
        last_time = event.created_at;
        let sandbox = event.pod_sandbox_status.expect("sandbox status");
        assert_eq!(sandbox.id, pod);
        match (n, kind) {
            (3, _) => {
                assert_eq!(event.containers_statuses.len(), 1);
                assert_eq!(
                    event.containers_statuses[0].state(),
                    ContainerState::ContainerRunning
                );
            }
            (4, _) => assert_eq!(
                event.containers_statuses[0].state(),
                ContainerState::ContainerExited
            ),
            (5, _) => assert!(event.containers_statuses.is_empty()),
            (6, _) => assert_eq!(sandbox.state(), PodSandboxState::SandboxNotready),
            _ => {}
        }
    }
}

#[tokio::test]
async fn faults_fail_the_chosen_calls_and_change_nothing() {
    let fake = FakeRuntime::new();
    let (mut runtime, _) = in_process(&fake).await;

    fake.inject_fault(Rpc::Version, Fault::on_call(2, Code::Internal, "boom"));
    version(&mut runtime).await.expect("1st call");
    let status = expect_code(version(&mut runtime).await, Code::Internal);
    assert_eq!(status.message(), "boom");
    version(&mut runtime).await.expect("3rd call");

    fake.inject_fault(Rpc::Status, Fault::from_call(2, Code::Unavailable, "down"));
    let status_call = || StatusRequest { verbose: false };
    runtime.status(status_call()).await.expect("1st call");
    for _ in 0..3 {
        expect_code(runtime.status(status_call()).await, Code::Unavailable);
    }
    fake.clear_faults(Rpc::Status);
    runtime.status(status_call()).await.expect("fault cleared");

    // A failed call has no effect.
    fake.inject_fault(
        Rpc::RunPodSandbox,
        Fault::on_call(1, Code::ResourceExhausted, "no IPs left"),
    );
    expect_code(
        runtime
            .run_pod_sandbox(RunPodSandboxRequest {
                config: Some(pod_config("f")),
                runtime_handler: String::new(),
            })
            .await,
        Code::ResourceExhausted,
    );
    let pods = runtime
        .list_pod_sandbox(ListPodSandboxRequest::default())
        .await
        .expect("list")
        .into_inner()
        .items;
    assert!(pods.is_empty());
    run_pod(&mut runtime, "f").await;

    fake.inject_fault(Rpc::ListImages, Fault::calls(1, 2, Code::Unknown, "flaky"));
    let (_, mut images) = in_process(&fake).await;
    for expect_ok in [false, false, true] {
        let result = images.list_images(ListImagesRequest::default()).await;
        assert_eq!(result.is_ok(), expect_ok, "{result:?}");
    }
    fake.clear_all_faults();
}

#[tokio::test]
async fn the_call_log_records_rpc_request_and_code() {
    let fake = FakeRuntime::new();
    let (mut runtime, _) = in_process(&fake).await;
    let pod = run_pod(&mut runtime, "log").await;
    let _ = runtime
        .container_status(ContainerStatusRequest {
            container_id: "nope".to_owned(),
            verbose: false,
        })
        .await;
    let calls = fake.calls();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].rpc, Rpc::RunPodSandbox);
    assert_eq!(calls[0].request, "pod=default/log uid=uid-log attempt=0");
    assert_eq!(calls[0].code, Code::Ok);
    assert_eq!(calls[1].rpc, Rpc::ContainerStatus);
    assert_eq!(calls[1].request, "container_id=nope");
    assert_eq!(calls[1].code, Code::NotFound);
    assert!(!calls[1].message.is_empty());
    runtime
        .stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await
        .expect("stop");
    let stops = fake.calls_to(Rpc::StopPodSandbox);
    assert_eq!(stops.len(), 1);
    assert_eq!(stops[0].request, format!("pod_sandbox_id={pod}"));
    fake.clear_calls();
    assert!(fake.calls().is_empty());
}

#[tokio::test(start_paused = true)]
async fn latency_delays_the_answer() {
    let fake = FakeRuntime::new();
    let (mut runtime, _) = in_process(&fake).await;
    fake.set_latency(Rpc::Version, Duration::from_secs(5));
    let started = tokio::time::Instant::now();
    version(&mut runtime).await.expect("slow but fine");
    assert!(started.elapsed() >= Duration::from_secs(5));
    // Other RPCs are not delayed.
    let started = tokio::time::Instant::now();
    runtime
        .status(StatusRequest { verbose: false })
        .await
        .expect("Status");
    assert!(started.elapsed() < Duration::from_secs(5));
    fake.set_latency(Rpc::Version, Duration::ZERO);
    let started = tokio::time::Instant::now();
    version(&mut runtime).await.expect("fast again");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test(start_paused = true)]
async fn a_container_is_oom_killed_after_the_scripted_time() {
    let fake = FakeRuntime::new();
    fake.exit_on_start("worker", ContainerExit::oom_killed(Duration::from_secs(30)));
    let (mut runtime, _) = in_process(&fake).await;
    let mut events = runtime
        .get_container_events(GetEventsRequest {})
        .await
        .expect("events")
        .into_inner();
    let pod = run_pod(&mut runtime, "oom").await;
    let worker = create(
        &mut runtime,
        &pod,
        "oom",
        "worker",
        "registry.k8s.io/pause:3.10",
    )
    .await;
    let other = create(
        &mut runtime,
        &pod,
        "oom",
        "other",
        "registry.k8s.io/pause:3.10",
    )
    .await;
    start(&mut runtime, &worker).await;
    start(&mut runtime, &other).await;
    for _ in 0..6 {
        next_event(&mut events).await; // sandbox and container creation and starts
    }

    tokio::time::sleep(Duration::from_secs(29)).await;
    assert_eq!(
        container_status(&mut runtime, &worker).await.state(),
        ContainerState::ContainerRunning
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let status = container_status(&mut runtime, &worker).await;
    assert_eq!(status.state(), ContainerState::ContainerExited);
    assert_eq!(
        (status.exit_code, status.reason.as_str()),
        (137, "OOMKilled")
    );
    assert_eq!(
        Duration::from_nanos((status.finished_at - status.started_at) as u64),
        Duration::from_secs(30),
        "exits exactly 30 s after the start on the paused clock"
    );
    let event = next_event(&mut events).await;
    assert_eq!(event.container_id, worker);
    assert_eq!(
        event.container_event_type(),
        ContainerEventType::ContainerStoppedEvent
    );
    // Containers with other names keep running.
    assert_eq!(
        container_status(&mut runtime, &other).await.state(),
        ContainerState::ContainerRunning
    );

    // A test can end a container by hand too.
    assert!(fake.exit_container(&other, 1, "Error"));
    assert!(
        !fake.exit_container(&other, 1, "Error"),
        "no longer running"
    );
    let other_status = container_status(&mut runtime, &other).await;
    assert_eq!(
        (other_status.exit_code, other_status.reason.as_str()),
        (1, "Error")
    );
}

#[tokio::test(start_paused = true)]
async fn stopping_cancels_a_scripted_exit() {
    let fake = FakeRuntime::new();
    fake.exit_on_start("job", ContainerExit::completed(Duration::from_secs(10)));
    let (mut runtime, _) = in_process(&fake).await;
    let pod = run_pod(&mut runtime, "job").await;
    let id = create(
        &mut runtime,
        &pod,
        "job",
        "job",
        "registry.k8s.io/pause:3.10",
    )
    .await;
    start(&mut runtime, &id).await;
    runtime
        .stop_container(StopContainerRequest {
            container_id: id.clone(),
            timeout: 0,
        })
        .await
        .expect("stop");
    tokio::time::sleep(Duration::from_secs(20)).await;
    let status = container_status(&mut runtime, &id).await;
    assert_eq!((status.exit_code, status.reason.as_str()), (137, "Error"));
}

#[tokio::test(start_paused = true)]
async fn exec_sync_answers_the_configured_results() {
    let fake = FakeRuntime::new();
    fake.set_exec_result(
        ["cat", "/tmp/healthy"],
        ExecResult::new(1).with_stderr("cat: /tmp/healthy: No such file or directory\n"),
    );
    fake.set_exec_result(["hostname"], ExecResult::new(0).with_stdout("web\n"));
    fake.set_exec_result(
        ["sleep", "60"],
        ExecResult::new(0).with_duration(Duration::from_secs(60)),
    );
    let (mut runtime, _) = in_process(&fake).await;
    let pod = run_pod(&mut runtime, "exec").await;
    let id = create(
        &mut runtime,
        &pod,
        "exec",
        "c",
        "registry.k8s.io/pause:3.10",
    )
    .await;
    start(&mut runtime, &id).await;
    let exec = |cmd: &[&str], timeout: i64| ExecSyncRequest {
        container_id: id.clone(),
        cmd: cmd.iter().map(|s| (*s).to_owned()).collect(),
        timeout,
    };

    let probe = runtime
        .exec_sync(exec(&["cat", "/tmp/healthy"], 1))
        .await
        .expect("exec")
        .into_inner();
    assert_eq!(probe.exit_code, 1);
    assert_eq!(
        probe.stderr,
        b"cat: /tmp/healthy: No such file or directory\n"
    );
    let hostname = runtime
        .exec_sync(exec(&["hostname"], 0))
        .await
        .expect("exec")
        .into_inner();
    assert_eq!(
        (hostname.exit_code, hostname.stdout.as_slice()),
        (0, &b"web\n"[..])
    );
    let other = runtime
        .exec_sync(exec(&["ls"], 0))
        .await
        .expect("exec")
        .into_inner();
    assert_eq!(other.exit_code, 0);

    let started = tokio::time::Instant::now();
    let status = expect_code(
        runtime.exec_sync(exec(&["sleep", "60"], 5)).await,
        Code::DeadlineExceeded,
    );
    assert!(status.message().contains("timed out"), "{status:?}");
    assert_eq!(started.elapsed(), Duration::from_secs(5));
    let started = tokio::time::Instant::now();
    runtime
        .exec_sync(exec(&["sleep", "60"], 0))
        .await
        .expect("no timeout");
    assert_eq!(started.elapsed(), Duration::from_secs(60));

    expect_code(runtime.exec_sync(exec(&[], 0)).await, Code::InvalidArgument);
}

#[tokio::test]
async fn containerd_1_6_preset_answers_unimplemented() {
    let fake = FakeRuntime::containerd_1_6();
    let (mut runtime, mut images) = in_process(&fake).await;

    let status = expect_code(
        runtime.runtime_config(RuntimeConfigRequest {}).await,
        Code::Unimplemented,
    );
    assert_eq!(
        status.message(),
        "unknown method RuntimeConfig for service runtime.v1.RuntimeService"
    );
    expect_code(
        runtime
            .list_metric_descriptors(ListMetricDescriptorsRequest {})
            .await,
        Code::Unimplemented,
    );
    let status = expect_code(
        runtime.get_container_events(GetEventsRequest {}).await,
        Code::Unimplemented,
    );
    assert_eq!(
        status.message(),
        "method GetContainerEvents not implemented"
    );
    expect_code(
        runtime
            .stream_containers(StreamContainersRequest::default())
            .await,
        Code::Unimplemented,
    );
    let status = expect_code(
        images.stream_images(StreamImagesRequest::default()).await,
        Code::Unimplemented,
    );
    assert_eq!(
        status.message(),
        "unknown method StreamImages for service runtime.v1.ImageService"
    );
    expect_code(
        runtime
            .update_pod_sandbox_resources(UpdatePodSandboxResourcesRequest::default())
            .await,
        Code::Unimplemented,
    );

    // What 1.6 does implement works, and Status has no handlers or features.
    version(&mut runtime).await.expect("Version");
    let status = runtime
        .status(StatusRequest { verbose: false })
        .await
        .expect("Status")
        .into_inner();
    assert!(status.runtime_handlers.is_empty());
    assert!(status.features.is_none());
    runtime
        .list_containers(ListContainersRequest::default())
        .await
        .expect("the unary list works");

    fake.set_implemented(Rpc::RuntimeConfig);
    runtime
        .runtime_config(RuntimeConfigRequest {})
        .await
        .expect("implemented again");
    let log = fake.calls_to(Rpc::GetContainerEvents);
    assert_eq!(log[0].code, Code::Unimplemented);

    // Any RPC can be switched off.
    let fake = FakeRuntime::builder()
        .unimplemented([Rpc::ImageFsInfo])
        .build();
    let (_, mut images) = in_process(&fake).await;
    expect_code(
        images.image_fs_info(ImageFsInfoRequest {}).await,
        Code::Unimplemented,
    );
    fake.set_unimplemented(Rpc::ListImages);
    expect_code(
        images.list_images(ListImagesRequest::default()).await,
        Code::Unimplemented,
    );
}

#[tokio::test]
async fn dropped_event_streams_end_with_unavailable() {
    let fake = FakeRuntime::new();
    let (mut runtime, _) = in_process(&fake).await;
    let mut events = runtime
        .get_container_events(GetEventsRequest {})
        .await
        .expect("events")
        .into_inner();
    fake.drop_event_streams();
    let status = tokio::time::timeout(PATIENCE, events.message())
        .await
        .expect("the stream ends at once")
        .expect_err("it ends with an error");
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(fake.event_subscribers(), 0);

    // A new stream gets the later events.
    let mut events = runtime
        .get_container_events(GetEventsRequest {})
        .await
        .expect("events again")
        .into_inner();
    let pod = run_pod(&mut runtime, "again").await;
    assert_eq!(next_event(&mut events).await.container_id, pod);
}

/// Waits (bounded) until `fake` has a call in flight.
async fn until_in_flight(fake: &FakeRuntime) {
    tokio::time::timeout(PATIENCE, async {
        while fake.calls_in_flight() == 0 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the call arrives");
}

#[tokio::test(start_paused = true)]
async fn restart_in_process_fails_calls_then_reconnects() {
    let fake = FakeRuntime::new();
    let (mut runtime, _) = in_process(&fake).await;
    let pod = run_pod(&mut runtime, "r").await;
    let id = create(&mut runtime, &pod, "r", "c", "registry.k8s.io/pause:3.10").await;
    start(&mut runtime, &id).await;
    let mut events = runtime
        .get_container_events(GetEventsRequest {})
        .await
        .expect("events")
        .into_inner();

    // A call in flight when the runtime goes away fails with Unavailable.
    fake.set_latency(Rpc::ListContainers, Duration::from_secs(3600));
    let mut slow = runtime.clone();
    let in_flight =
        tokio::spawn(async move { slow.list_containers(ListContainersRequest::default()).await });
    until_in_flight(&fake).await;
    fake.begin_restart().await;
    assert!(!fake.is_serving());
    let status = expect_code(in_flight.await.expect("no panic"), Code::Unavailable);
    assert!(status.message().contains("restarting"), "{status:?}");
    let status = events.message().await.expect_err("the event stream ends");
    assert_eq!(status.code(), Code::Unavailable);
    fake.set_latency(Rpc::ListContainers, Duration::ZERO);

    // New calls fail too, on the old channel and on new connections.
    expect_code(version(&mut runtime).await, Code::Unavailable);
    assert!(fake.in_process_channel().await.is_err());

    // Back, with the processes lost: the same channel reconnects.
    fake.finish_restart(AfterRestart::ExitContainers)
        .await
        .expect("serve again");
    version(&mut runtime).await.expect("the channel reconnects");
    let status = container_status(&mut runtime, &id).await;
    assert_eq!(status.state(), ContainerState::ContainerExited);
    assert_eq!((status.exit_code, status.reason.as_str()), (255, "Unknown"));
    assert_eq!(
        pod_status(&mut runtime, &pod).await.state(),
        PodSandboxState::SandboxNotready
    );

    // restart() with the containers kept.
    let pod2 = run_pod(&mut runtime, "r2").await;
    let id2 = create(&mut runtime, &pod2, "r2", "c", "registry.k8s.io/pause:3.10").await;
    start(&mut runtime, &id2).await;
    fake.restart(Duration::from_secs(1), AfterRestart::KeepContainers)
        .await
        .expect("restart");
    let kept = runtime
        .list_containers(ListContainersRequest::default())
        .await
        .expect("reconnected")
        .into_inner();
    assert_eq!(kept.containers.len(), 2);
    assert_eq!(
        container_status(&mut runtime, &id2).await.state(),
        ContainerState::ContainerRunning
    );
}

#[tokio::test]
async fn restart_over_a_unix_socket_and_reconnect() {
    let dir = TempDir::new("restart");
    let fake = FakeRuntime::new();
    let server = fake
        .serve_unix(dir.0.join("cri.sock"))
        .await
        .expect("serve");
    let channel = cri_client::connect(&server.endpoint())
        .await
        .expect("parse");
    let mut runtime = runtime_client(channel);
    let pod = run_pod(&mut runtime, "u").await;
    let id = create(&mut runtime, &pod, "u", "c", "registry.k8s.io/pause:3.10").await;
    start(&mut runtime, &id).await;

    fake.set_latency(Rpc::ListPodSandbox, Duration::from_secs(3600));
    let mut slow = runtime.clone();
    let in_flight = tokio::spawn(async move {
        slow.list_pod_sandbox(ListPodSandboxRequest::default())
            .await
    });
    until_in_flight(&fake).await;
    fake.begin_restart().await;
    expect_code(in_flight.await.expect("no panic"), Code::Unavailable);
    assert!(
        !server.path().exists(),
        "the socket is gone while restarting"
    );
    expect_code(version(&mut runtime).await, Code::Unavailable);
    fake.clear_latencies();

    fake.finish_restart(AfterRestart::KeepContainers)
        .await
        .expect("bind again");
    assert!(server.path().exists());
    version(&mut runtime)
        .await
        .expect("the lazy channel reconnects to the new socket");
    assert_eq!(
        container_status(&mut runtime, &id).await.state(),
        ContainerState::ContainerRunning
    );
    server.shutdown().await;
}

#[tokio::test]
async fn readiness_conditions_and_network() {
    let fake = FakeRuntime::new();
    let (mut runtime, _) = in_process(&fake).await;
    fake.set_network_ready(false);
    fake.set_runtime_ready(false);
    let status = runtime
        .status(StatusRequest { verbose: true })
        .await
        .expect("Status")
        .into_inner();
    assert!(status.info.contains_key("config"));
    let conditions = status.status.expect("conditions").conditions;
    assert!(conditions.iter().all(|c| !c.status));
    assert_eq!(conditions[1].reason, "NetworkPluginNotReady");
    expect_code(
        runtime
            .run_pod_sandbox(RunPodSandboxRequest {
                config: Some(pod_config("nonet")),
                runtime_handler: String::new(),
            })
            .await,
        Code::FailedPrecondition,
    );
    // Host-network pods need no pod network, and get no pod IP.
    let host = PodSandboxConfig {
        linux: Some(LinuxPodSandboxConfig {
            security_context: Some(LinuxSandboxSecurityContext {
                namespace_options: Some(NamespaceOption {
                    network: NamespaceMode::Node as i32,
                    ..NamespaceOption::default()
                }),
                ..LinuxSandboxSecurityContext::default()
            }),
            ..LinuxPodSandboxConfig::default()
        }),
        ..pod_config("host")
    };
    let host_id = runtime
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(host),
            runtime_handler: "runc".to_owned(),
        })
        .await
        .expect("host network pod")
        .into_inner()
        .pod_sandbox_id;
    let host_status = pod_status(&mut runtime, &host_id).await;
    assert_eq!(host_status.network.expect("network").ip, "");
    assert_eq!(host_status.runtime_handler, "runc");
    fake.set_network_ready(true);

    // UpdateRuntimeConfig moves later sandboxes to the new pod CIDR.
    runtime
        .update_runtime_config(UpdateRuntimeConfigRequest {
            runtime_config: Some(RuntimeConfig {
                network_config: Some(NetworkConfig {
                    pod_cidr: "10.244.1.0/24".to_owned(),
                }),
            }),
        })
        .await
        .expect("UpdateRuntimeConfig");
    assert_eq!(fake.pod_cidr(), "10.244.1.0/24");
    let pod = run_pod(&mut runtime, "cidr").await;
    assert_eq!(
        pod_status(&mut runtime, &pod)
            .await
            .network
            .expect("network")
            .ip,
        "10.244.1.2"
    );
}

#[tokio::test]
async fn the_remaining_rpcs() {
    let fake = FakeRuntime::builder()
        .cgroup_driver(CgroupDriver::Cgroupfs)
        .streaming_url("http://127.0.0.1:4242/")
        .build();
    let (mut runtime, _) = in_process(&fake).await;
    let pod = run_pod(&mut runtime, "misc").await;
    let id = create(
        &mut runtime,
        &pod,
        "misc",
        "c",
        "registry.k8s.io/pause:3.10",
    )
    .await;
    // By a unique ID prefix, as containerd allows.
    start(&mut runtime, &id[..10]).await;

    let config = runtime
        .runtime_config(RuntimeConfigRequest {})
        .await
        .expect("RuntimeConfig")
        .into_inner();
    assert_eq!(
        config.linux.expect("linux").cgroup_driver(),
        CgroupDriver::Cgroupfs
    );

    let exec = runtime
        .exec(ExecRequest {
            container_id: id.clone(),
            cmd: vec!["sh".to_owned()],
            tty: true,
            stdin: true,
            stdout: true,
            stderr: false,
        })
        .await
        .expect("Exec")
        .into_inner();
    let token = exec
        .url
        .strip_prefix("http://127.0.0.1:4242/exec/")
        .expect("exec URL");
    assert_eq!(token.len(), 8);
    let attach = runtime
        .attach(AttachRequest {
            container_id: id.clone(),
            stdout: true,
            ..AttachRequest::default()
        })
        .await
        .expect("Attach")
        .into_inner();
    assert!(attach.url.starts_with("http://127.0.0.1:4242/attach/"));
    let forward = runtime
        .port_forward(PortForwardRequest {
            pod_sandbox_id: pod.clone(),
            port: vec![8080],
        })
        .await
        .expect("PortForward")
        .into_inner();
    assert!(
        forward
            .url
            .starts_with("http://127.0.0.1:4242/portforward/")
    );

    let resources = LinuxContainerResources {
        cpu_shares: 512,
        memory_limit_in_bytes: 64 << 20,
        ..LinuxContainerResources::default()
    };
    runtime
        .update_container_resources(UpdateContainerResourcesRequest {
            container_id: id.clone(),
            linux: Some(resources.clone()),
            ..UpdateContainerResourcesRequest::default()
        })
        .await
        .expect("UpdateContainerResources");
    let status = container_status(&mut runtime, &id).await;
    assert_eq!(
        status.resources.expect("resources").linux,
        Some(resources.clone())
    );
    runtime
        .update_pod_sandbox_resources(UpdatePodSandboxResourcesRequest {
            pod_sandbox_id: pod.clone(),
            resources: Some(resources),
            ..UpdatePodSandboxResourcesRequest::default()
        })
        .await
        .expect("UpdatePodSandboxResources");
    runtime
        .reopen_container_log(ReopenContainerLogRequest {
            container_id: id.clone(),
        })
        .await
        .expect("ReopenContainerLog");
    runtime
        .checkpoint_container(CheckpointContainerRequest {
            container_id: id.clone(),
            location: "/tmp/checkpoint.tar".to_owned(),
            timeout: 0,
        })
        .await
        .expect("CheckpointContainer");

    let stats = runtime
        .container_stats(ContainerStatsRequest {
            container_id: id.clone(),
        })
        .await
        .expect("ContainerStats")
        .into_inner()
        .stats
        .expect("stats");
    assert_eq!(stats.attributes.expect("attributes").id, id);
    assert_eq!(
        stats
            .memory
            .expect("memory")
            .working_set_bytes
            .expect("set")
            .value,
        0
    );
    let pod_stats = runtime
        .pod_sandbox_stats(PodSandboxStatsRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await
        .expect("PodSandboxStats")
        .into_inner()
        .stats
        .expect("stats")
        .linux
        .expect("linux");
    assert_eq!(pod_stats.containers.len(), 1);
    assert_eq!(
        pod_stats
            .process
            .expect("process")
            .process_count
            .expect("count")
            .value,
        2
    );

    let descriptors = runtime
        .list_metric_descriptors(ListMetricDescriptorsRequest {})
        .await
        .expect("ListMetricDescriptors")
        .into_inner()
        .descriptors;
    assert!(!descriptors.is_empty());
    let metrics = runtime
        .list_pod_sandbox_metrics(ListPodSandboxMetricsRequest {})
        .await
        .expect("ListPodSandboxMetrics")
        .into_inner()
        .pod_metrics;
    assert_eq!(metrics.len(), 1);
    let container_metrics = &metrics[0].container_metrics[0];
    assert_eq!(container_metrics.container_id, id);
    assert_eq!(container_metrics.metrics.len(), descriptors.len());
    for metric in &container_metrics.metrics {
        let descriptor = descriptors
            .iter()
            .find(|d| d.name == metric.name)
            .expect("described");
        assert_eq!(metric.label_values.len(), descriptor.label_keys.len());
    }

    let verbose = runtime
        .container_status(ContainerStatusRequest {
            container_id: id.clone(),
            verbose: true,
        })
        .await
        .expect("verbose status")
        .into_inner();
    assert!(verbose.info["info"].contains(&pod));
}

#[tokio::test]
async fn the_services_mount_in_a_server_of_ones_own() {
    let fake = FakeRuntime::new();
    let runtime_service = fake.runtime_service();
    let image_service = fake.image_service();
    let _router =
        cri_client::tonic::service::Routes::new(runtime_service).add_service(image_service);
    // And the trait methods can be called directly.
    use cri_client::v1::runtime_service_server::RuntimeService;
    let answer = RuntimeService::version(
        &fake,
        cri_client::tonic::Request::new(VersionRequest::default()),
    )
    .await
    .expect("Version");
    assert_eq!(answer.into_inner().runtime_name, "fake-runtime");
    assert_eq!(fake.calls_to(Rpc::Version).len(), 1);
}
