//! The fake's configuration ([`FakeRuntimeBuilder`]) and the behaviours that
//! tests script: exec results, container exits, restarts.

use std::net::Ipv4Addr;
use std::time::Duration;

use crate::v1::{CgroupDriver, RuntimeFeatures, RuntimeHandler, RuntimeHandlerFeatures};

use super::FakeRuntime;
use super::faults::{not_implemented_message, unknown_method_message};
use super::images::FakeImage;
use super::rpc::Rpc;

/// What `ExecSync` answers for one command; see
/// [`FakeRuntime::set_exec_result`](super::FakeRuntime::set_exec_result).
///
/// The default is exit code 0 with empty output, answered at once.
///
/// ```
/// use std::time::Duration;
/// use cri_client::fake::ExecResult;
///
/// let healthy = ExecResult::new(0).with_stdout("ok\n");
/// let failing = ExecResult::new(1).with_stderr("connection refused\n");
/// // Takes 10 s: an ExecSync with a timeout below that fails with
/// // DeadlineExceeded, like a runtime whose command timed out.
/// let slow = ExecResult::new(0).with_duration(Duration::from_secs(10));
/// # let _ = (healthy, failing, slow);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecResult {
    pub(super) stdout: Vec<u8>,
    pub(super) stderr: Vec<u8>,
    pub(super) exit_code: i32,
    pub(super) duration: Duration,
}

impl ExecResult {
    /// A command that exits with `exit_code` and prints nothing.
    pub fn new(exit_code: i32) -> ExecResult {
        ExecResult {
            exit_code,
            ..ExecResult::default()
        }
    }

    /// Sets what the command prints on standard output.
    #[must_use]
    pub fn with_stdout(mut self, stdout: impl Into<Vec<u8>>) -> ExecResult {
        self.stdout = stdout.into();
        self
    }

    /// Sets what the command prints on standard error.
    #[must_use]
    pub fn with_stderr(mut self, stderr: impl Into<Vec<u8>>) -> ExecResult {
        self.stderr = stderr.into();
        self
    }

    /// Sets how long the command runs (on tokio's clock). When the request's
    /// timeout is non-zero and shorter, the call fails with
    /// `DeadlineExceeded` once the timeout has passed.
    #[must_use]
    pub fn with_duration(mut self, duration: Duration) -> ExecResult {
        self.duration = duration;
        self
    }
}

/// How a started container exits on its own; see
/// [`FakeRuntime::exit_on_start`](super::FakeRuntime::exit_on_start).
///
/// ```
/// use std::time::Duration;
/// use cri_client::fake::ContainerExit;
///
/// let oom = ContainerExit::oom_killed(Duration::from_secs(30));
/// assert_eq!((oom.exit_code(), oom.reason()), (137, "OOMKilled"));
/// let job = ContainerExit::completed(Duration::from_secs(5));
/// assert_eq!((job.exit_code(), job.reason()), (0, "Completed"));
/// let crash = ContainerExit::error(Duration::from_millis(100), 2).with_message("panic: boom");
/// assert_eq!(crash.reason(), "Error");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerExit {
    pub(super) after: Duration,
    pub(super) exit_code: i32,
    pub(super) reason: String,
    pub(super) message: String,
}

impl ContainerExit {
    /// Exits `after` the start with `exit_code` and `reason` (the
    /// `ContainerStatus.reason`; containerd uses `Completed`, `Error` and
    /// `OOMKilled`).
    pub fn new(after: Duration, exit_code: i32, reason: impl Into<String>) -> ContainerExit {
        ContainerExit {
            after,
            exit_code,
            reason: reason.into(),
            message: String::new(),
        }
    }

    /// Exits with code 0, reason `Completed`.
    pub fn completed(after: Duration) -> ContainerExit {
        ContainerExit::new(after, 0, "Completed")
    }

    /// Exits with `exit_code`, reason `Error`.
    pub fn error(after: Duration, exit_code: i32) -> ContainerExit {
        ContainerExit::new(after, exit_code, "Error")
    }

    /// Killed by the kernel's OOM killer: code 137 (128 + SIGKILL), reason
    /// `OOMKilled`.
    pub fn oom_killed(after: Duration) -> ContainerExit {
        ContainerExit::new(after, 137, "OOMKilled")
    }

    /// Sets `ContainerStatus.message`.
    #[must_use]
    pub fn with_message(mut self, message: impl Into<String>) -> ContainerExit {
        self.message = message.into();
        self
    }

    /// How long after the start the container exits.
    pub fn after(&self) -> Duration {
        self.after
    }

    /// The exit code.
    pub fn exit_code(&self) -> i32 {
        self.exit_code
    }

    /// The reason.
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// What a simulated restart does to the containers; see
/// [`FakeRuntime::finish_restart`](super::FakeRuntime::finish_restart).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AfterRestart {
    /// Containers keep running, as with containerd, whose shims outlive it.
    #[default]
    KeepContainers,
    /// Like a restart that lost the container processes (a node reboot, or a
    /// runtime without shims): running containers become `CONTAINER_EXITED`
    /// with exit code 255 and reason `Unknown`, as containerd reports
    /// containers whose task vanished, and every sandbox becomes
    /// `SANDBOX_NOTREADY`.
    ExitContainers,
}

/// Settings fixed when the fake is built.
#[derive(Debug, Clone)]
pub(super) struct Settings {
    pub(super) runtime_name: String,
    pub(super) runtime_version: String,
    pub(super) runtime_handlers: Vec<RuntimeHandler>,
    pub(super) features: Option<RuntimeFeatures>,
    pub(super) cgroup_driver: CgroupDriver,
    pub(super) streaming_url: String,
    pub(super) stream_chunk_size: usize,
}

/// Builds a [`FakeRuntime`]; [`FakeRuntime::builder`] starts one with the
/// defaults below.
///
/// | setting | default |
/// |---|---|
/// | `Version` | `runtime_name` `fake-runtime`, `runtime_version` this crate's version, `runtime_api_version` `v1` |
/// | runtime handlers (`Status`) | `""` (the default) and `runc`, both with recursive read-only mounts and user namespaces |
/// | runtime features (`Status`) | `supplemental_groups_policy` |
/// | cgroup driver (`RuntimeConfig`) | `SYSTEMD` |
/// | pod network | `10.88.0.0/16` (the CNI bridge default); sandboxes get `10.88.0.2`, `10.88.0.3`, … |
/// | images on the node | `registry.k8s.io/pause:3.10` (pinned) |
/// | images `PullImage` can fetch | those, plus `docker.io/library/busybox:1.36` (also tagged `latest`) and `docker.io/library/nginx:1.27` |
/// | streaming URLs | `http://127.0.0.1:10010/{exec,attach,portforward}/<token>` |
/// | `Stream*` chunk size | 100 items per message |
///
/// ```
/// use cri_client::fake::{FakeImage, FakeRuntime, Rpc};
///
/// let fake = FakeRuntime::builder()
///     .runtime_version("2.1.0")
///     .preload_image(FakeImage::new("127.0.0.1:5000/node-sdk/busybox:1.35"))
///     .unimplemented([Rpc::CheckpointContainer])
///     .build();
/// # let _ = fake;
/// ```
#[derive(Debug, Clone)]
pub struct FakeRuntimeBuilder {
    settings: Settings,
    pod_network: (Ipv4Addr, u8),
    preloaded: Vec<FakeImage>,
    pullable: Vec<FakeImage>,
    unimplemented: Vec<(Rpc, String)>,
}

impl Default for FakeRuntimeBuilder {
    fn default() -> Self {
        let handler_features = Some(RuntimeHandlerFeatures {
            recursive_read_only_mounts: true,
            user_namespaces: true,
        });
        FakeRuntimeBuilder {
            settings: Settings {
                runtime_name: "fake-runtime".to_owned(),
                runtime_version: env!("CARGO_PKG_VERSION").to_owned(),
                runtime_handlers: ["", "runc"]
                    .into_iter()
                    .map(|name| RuntimeHandler {
                        name: name.to_owned(),
                        features: handler_features,
                    })
                    .collect(),
                features: Some(RuntimeFeatures {
                    supplemental_groups_policy: true,
                    user_namespaces_host_network: false,
                }),
                cgroup_driver: CgroupDriver::Systemd,
                streaming_url: "http://127.0.0.1:10010".to_owned(),
                stream_chunk_size: 100,
            },
            pod_network: (Ipv4Addr::new(10, 88, 0, 0), 16),
            preloaded: vec![
                FakeImage::new("registry.k8s.io/pause:3.10")
                    .with_size(320_368)
                    .pinned(true),
            ],
            pullable: vec![
                FakeImage::new("docker.io/library/busybox:1.36")
                    .tag("docker.io/library/busybox:latest")
                    .with_size(2_155_000),
                FakeImage::new("docker.io/library/nginx:1.27").with_size(72_950_000),
            ],
            unimplemented: Vec::new(),
        }
    }
}

impl FakeRuntimeBuilder {
    /// Sets `VersionResponse.runtime_name`.
    #[must_use]
    pub fn runtime_name(mut self, name: impl Into<String>) -> Self {
        self.settings.runtime_name = name.into();
        self
    }

    /// Sets `VersionResponse.runtime_version`.
    #[must_use]
    pub fn runtime_version(mut self, version: impl Into<String>) -> Self {
        self.settings.runtime_version = version.into();
        self
    }

    /// Sets the runtime handlers that `Status` reports and that
    /// `RunPodSandbox` accepts (`""` is always accepted). An empty list
    /// reports none and accepts any handler, like containerd 1.6.
    #[must_use]
    pub fn runtime_handlers(mut self, handlers: Vec<RuntimeHandler>) -> Self {
        self.settings.runtime_handlers = handlers;
        self
    }

    /// Sets `StatusResponse.features`; `None` reports none, like runtimes
    /// older than Kubernetes 1.31's CRI.
    #[must_use]
    pub fn runtime_features(mut self, features: Option<RuntimeFeatures>) -> Self {
        self.settings.features = features;
        self
    }

    /// Sets the cgroup driver that `RuntimeConfig` reports.
    #[must_use]
    pub fn cgroup_driver(mut self, driver: CgroupDriver) -> Self {
        self.settings.cgroup_driver = driver;
        self
    }

    /// Sets the pod network sandboxes get their IPs from; the first address
    /// handed out is the network address + 2. `UpdateRuntimeConfig` with an
    /// IPv4 pod CIDR changes it for later sandboxes.
    #[must_use]
    pub fn pod_network(mut self, network: Ipv4Addr, prefix_len: u8) -> Self {
        self.pod_network = (network, prefix_len.min(30));
        self
    }

    /// Sets the base of the URLs that `Exec`, `Attach` and `PortForward`
    /// return (no server listens there).
    #[must_use]
    pub fn streaming_url(mut self, base: impl Into<String>) -> Self {
        self.settings.streaming_url = base.into().trim_end_matches('/').to_owned();
        self
    }

    /// Sets how many items each message of a `Stream*` RPC carries (at
    /// least 1).
    #[must_use]
    pub fn stream_chunk_size(mut self, items: usize) -> Self {
        self.settings.stream_chunk_size = items.max(1);
        self
    }

    /// Forgets the default images: none on the node, none pullable.
    #[must_use]
    pub fn no_default_images(mut self) -> Self {
        self.preloaded.clear();
        self.pullable.clear();
        self
    }

    /// Puts an image on the node from the start (it is also pullable).
    #[must_use]
    pub fn preload_image(mut self, image: FakeImage) -> Self {
        self.preloaded.push(image);
        self
    }

    /// Adds an image that `PullImage` can fetch by any of its tags or by
    /// `<repository>@<manifest digest>`.
    #[must_use]
    pub fn pullable_image(mut self, image: FakeImage) -> Self {
        self.pullable.push(image);
        self
    }

    /// Makes the given RPCs answer `Unimplemented` with grpc-go's message for
    /// an unknown method (`unknown method X for service runtime.v1.…`), like
    /// a runtime built against an older CRI schema.
    #[must_use]
    pub fn unimplemented(mut self, rpcs: impl IntoIterator<Item = Rpc>) -> Self {
        self.unimplemented.extend(
            rpcs.into_iter()
                .map(|rpc| (rpc, unknown_method_message(rpc))),
        );
        self
    }

    /// Mimics containerd 1.6 (the version measured in the reference notes):
    ///
    /// - `GetContainerEvents` and `CheckpointContainer` answer `Unimplemented`
    ///   with `method X not implemented` (1.6 knows them but does not
    ///   implement them);
    /// - `RuntimeConfig`, `ListMetricDescriptors`, `ListPodSandboxMetrics`,
    ///   `UpdatePodSandboxResources` and the seven `Stream*` RPCs answer
    ///   `Unimplemented` with `unknown method X for service …` (newer than
    ///   its schema);
    /// - `Status` reports no runtime handlers and no features.
    ///
    /// `GetContainerEvents`, `RuntimeConfig` and `ListMetricDescriptors` are
    /// measured answers of containerd 1.6.20; the others follow from the age
    /// of its schema.
    #[must_use]
    pub fn containerd_1_6(mut self) -> Self {
        for rpc in [Rpc::GetContainerEvents, Rpc::CheckpointContainer] {
            self.unimplemented.push((rpc, not_implemented_message(rpc)));
        }
        self = self.unimplemented(Rpc::ALL.into_iter().filter(|rpc| {
            matches!(
                rpc,
                Rpc::RuntimeConfig
                    | Rpc::ListMetricDescriptors
                    | Rpc::ListPodSandboxMetrics
                    | Rpc::UpdatePodSandboxResources
            ) || (rpc.is_server_streaming() && *rpc != Rpc::GetContainerEvents)
        }));
        self.settings.runtime_handlers.clear();
        self.settings.features = None;
        self
    }

    /// Builds the fake. It starts serving at once (calls through
    /// [`FakeRuntime::in_process_channel`], the service wrappers or the trait
    /// methods work); [`FakeRuntime::serve_unix`] adds a socket.
    pub fn build(self) -> FakeRuntime {
        FakeRuntime::from_builder(
            self.settings,
            self.pod_network,
            self.preloaded,
            self.pullable,
            self.unimplemented,
        )
    }
}
