//! Checks that the project-owned containerd answers CRI v1 as the rest of the suite
//! needs: Version, Status, the sandbox image, pulls from both local registries, and a
//! real pod (our pause + busybox httpd on the CNI bridge) reachable from the host.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use cri_client::tonic::Code;
use cri_client::v1::{
    AuthConfig, ContainerConfig, ContainerMetadata, CreateContainerRequest, ExecSyncRequest,
    ImageSpec, ImageStatusRequest, PodSandboxConfig, PodSandboxMetadata, PodSandboxStatusRequest,
    PullImageRequest, RemovePodSandboxRequest, RunPodSandboxRequest, StartContainerRequest,
    StatusRequest, StopPodSandboxRequest, VersionRequest,
};
use node_sdk_e2e::{TestEnv, http_get};

fn image(name: &str) -> Option<ImageSpec> {
    Some(ImageSpec {
        image: name.to_owned(),
        ..Default::default()
    })
}

async fn clients(
    env: &TestEnv,
) -> (
    cri_client::v1::runtime_service_client::RuntimeServiceClient<
        cri_client::tonic::transport::Channel,
    >,
    cri_client::v1::image_service_client::ImageServiceClient<cri_client::tonic::transport::Channel>,
) {
    let channel = cri_client::connect(env.cri_endpoint())
        .await
        .unwrap_or_else(|e| panic!("connecting to {}: {e}", env.cri_endpoint()));
    (
        cri_client::runtime_client(channel.clone()),
        cri_client::image_client(channel),
    )
}

#[tokio::test]
async fn runtime_answers_version_with_the_v1_api() {
    let env = TestEnv::require();
    let (mut runtime, _) = clients(&env).await;
    let v = runtime
        .version(VersionRequest {
            version: "v1".into(),
        })
        .await
        .expect("Version")
        .into_inner();
    assert_eq!(v.runtime_name, "containerd");
    assert_eq!(v.runtime_api_version, "v1");
    assert!(!v.runtime_version.is_empty());
}

#[tokio::test]
async fn runtime_and_network_are_ready() {
    let env = TestEnv::require();
    let (mut runtime, _) = clients(&env).await;
    let status = runtime
        .status(StatusRequest { verbose: false })
        .await
        .expect("Status")
        .into_inner()
        .status
        .expect("a RuntimeStatus");
    let conditions: HashMap<&str, bool> = status
        .conditions
        .iter()
        .map(|c| (c.r#type.as_str(), c.status))
        .collect();
    assert_eq!(
        conditions.get("RuntimeReady"),
        Some(&true),
        "{:?}",
        status.conditions
    );
    assert_eq!(
        conditions.get("NetworkReady"),
        Some(&true),
        "a conflist in the project's CNI conf dir makes the network ready: {:?}",
        status.conditions
    );
}

#[tokio::test]
async fn sandbox_image_is_present_without_a_pull() {
    let env = TestEnv::require();
    let (_, mut images) = clients(&env).await;
    let pause = env.get("PAUSE_IMAGE");
    let found = images
        .image_status(ImageStatusRequest {
            image: image(pause),
            verbose: false,
        })
        .await
        .expect("ImageStatus")
        .into_inner()
        .image
        .unwrap_or_else(|| panic!("{pause} was not imported into containerd's k8s.io namespace"));
    assert!(
        found.repo_tags.iter().any(|t| t == pause),
        "{:?}",
        found.repo_tags
    );
}

#[tokio::test]
async fn pulls_from_the_plain_and_the_authenticated_registry() {
    let env = TestEnv::require();
    let (_, mut images) = clients(&env).await;

    let plain = images
        .pull_image(PullImageRequest {
            image: image(env.get("BUSYBOX_IMAGE")),
            ..Default::default()
        })
        .await
        .expect("PullImage from the plain registry")
        .into_inner();
    assert!(!plain.image_ref.is_empty());

    let authed = env.get("AUTH_BUSYBOX_IMAGE");
    let anonymous = images
        .pull_image(PullImageRequest {
            image: image(authed),
            ..Default::default()
        })
        .await;
    assert!(
        anonymous.is_err(),
        "anonymous pull from the auth registry must fail"
    );

    let with_creds = images
        .pull_image(PullImageRequest {
            image: image(authed),
            auth: Some(AuthConfig {
                username: env.get("AUTH_REGISTRY_USER").into(),
                password: env.get("AUTH_REGISTRY_PASSWORD").into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .expect("PullImage with credentials")
        .into_inner();
    assert!(!with_creds.image_ref.is_empty());

    let missing = format!("{}/node-sdk/busybox:no-such-tag", env.get("REGISTRY"));
    let err = images
        .pull_image(PullImageRequest {
            image: image(&missing),
            ..Default::default()
        })
        .await
        .expect_err("a missing tag cannot be pulled");
    assert_eq!(err.code(), Code::NotFound, "{err}");
}

/// A pod with a busybox httpd, reached from the host over the CNI bridge, then an
/// ExecSync; the pod is removed even when an assertion fails.
#[tokio::test]
async fn pod_serves_http_to_the_host_over_the_cni_bridge() {
    let env = TestEnv::require();
    let (mut runtime, mut images) = clients(&env).await;
    let busybox = env.get("BUSYBOX_IMAGE").to_owned();
    images
        .pull_image(PullImageRequest {
            image: image(&busybox),
            ..Default::default()
        })
        .await
        .expect("PullImage busybox");

    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let name = format!("env-check-{}-{nanos}", std::process::id());
    let pod_config = PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: name.clone(),
            namespace: "node-sdk-e2e".into(),
            uid: format!("uid-{name}"),
            attempt: 0,
        }),
        hostname: "env-check".into(),
        log_directory: format!("/var/lib/node-sdk/pod-logs/{name}"),
        ..Default::default()
    };
    let pod_id = runtime
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(pod_config.clone()),
            runtime_handler: String::new(),
        })
        .await
        .expect("RunPodSandbox (pause image, CNI bridge)")
        .into_inner()
        .pod_sandbox_id;

    let mut body_runtime = runtime.clone();
    let id = pod_id.clone();
    let body = tokio::spawn(async move {
        let container_id = body_runtime
            .create_container(CreateContainerRequest {
                pod_sandbox_id: id.clone(),
                config: Some(ContainerConfig {
                    metadata: Some(ContainerMetadata {
                        name: "httpd".into(),
                        attempt: 0,
                    }),
                    image: image(&busybox),
                    command: vec!["httpd".into()],
                    args: vec![
                        "-f".into(),
                        "-p".into(),
                        "8080".into(),
                        "-h".into(),
                        "/var/www".into(),
                    ],
                    log_path: "httpd.log".into(),
                    ..Default::default()
                }),
                sandbox_config: Some(pod_config),
            })
            .await
            .expect("CreateContainer")
            .into_inner()
            .container_id;
        body_runtime
            .start_container(StartContainerRequest {
                container_id: container_id.clone(),
            })
            .await
            .expect("StartContainer");

        let ip = body_runtime
            .pod_sandbox_status(PodSandboxStatusRequest {
                pod_sandbox_id: id,
                verbose: false,
            })
            .await
            .expect("PodSandboxStatus")
            .into_inner()
            .status
            .and_then(|s| s.network)
            .map(|n| n.ip)
            .expect("the pod has a network status");
        assert!(
            ip.starts_with("10.88."),
            "pod IP {ip} from the node-sdk bridge subnet"
        );

        // httpd needs a moment to bind after StartContainer returns; poll (bounded).
        let addr = format!("{ip}:8080");
        let mut last = String::new();
        let mut served = None;
        for _ in 0..100 {
            match http_get(&addr, "/index.html", &[], None) {
                Ok(resp) => {
                    served = Some(resp);
                    break;
                }
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let resp = served.unwrap_or_else(|| panic!("no HTTP answer from {addr}: {last}"));
        assert_eq!(resp.status, 200);
        assert_eq!(
            String::from_utf8_lossy(&resp.body),
            "node-sdk busybox test image\n"
        );

        let exec = body_runtime
            .exec_sync(ExecSyncRequest {
                container_id,
                cmd: vec![
                    "sh".into(),
                    "-c".into(),
                    "echo hi; echo err >&2; exit 3".into(),
                ],
                timeout: 10,
            })
            .await
            .expect("ExecSync")
            .into_inner();
        assert_eq!(exec.stdout, b"hi\n");
        assert_eq!(exec.stderr, b"err\n");
        assert_eq!(exec.exit_code, 3);
    })
    .await;

    runtime
        .stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: pod_id.clone(),
        })
        .await
        .expect("StopPodSandbox");
    runtime
        .remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: pod_id,
        })
        .await
        .expect("RemovePodSandbox");
    if let Err(e) = body {
        std::panic::resume_unwind(e.into_panic());
    }
}
