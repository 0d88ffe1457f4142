//! The high-level CRI client: every RPC of `RuntimeService` and `ImageService`
//! with the kubelet's deadlines, response validation and error mapping.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::{Stream, StreamExt, TryStreamExt};
use tonic::codegen::{Body, Bytes, StdError};
use tonic::transport::Channel;

use crate::connect::{connect_endpoint, image_client, runtime_client};
use crate::endpoint::Endpoint;
use crate::error::{Error, Result};
use crate::v1;
use crate::v1::image_service_client::ImageServiceClient;
use crate::v1::runtime_service_client::RuntimeServiceClient;

/// The CRI API version this client speaks.
pub const CRI_API_VERSION: &str = "v1";

/// Settings of a [`CriClient`]. Defaults are the kubelet's.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientConfig {
    /// Deadline of most calls: the kubelet's `--runtime-request-timeout`,
    /// default 2 minutes. `RunPodSandbox` gets twice this; `StopContainer` this
    /// plus its grace period; `ExecSync` this plus the command's timeout;
    /// `PullImage` and `GetContainerEvents` have none.
    pub request_timeout: Duration,
    /// Use the `Stream*` list RPCs (kubelet feature gate `CRIListStreaming`,
    /// off by default). When the runtime answers `Unimplemented`, the client
    /// falls back to the unary `List*` RPCs for good.
    pub use_streaming_lists: bool,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(120),
            use_streaming_lists: false,
        }
    }
}

impl ClientConfig {
    /// Sets [`request_timeout`](Self::request_timeout).
    #[must_use]
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Sets [`use_streaming_lists`](Self::use_streaming_lists).
    #[must_use]
    pub fn use_streaming_lists(mut self, on: bool) -> Self {
        self.use_streaming_lists = on;
        self
    }
}

/// The bounds a tonic transport needs to carry a [`CriClient`]: a
/// [`Channel`], or any cloneable tower service speaking gRPC (for example an
/// in-process server in tests).
pub trait Transport:
    tonic::client::GrpcService<
        tonic::body::Body,
        Error: Into<StdError>,
        ResponseBody: Body<Data = Bytes, Error: Into<StdError> + Send> + Send + 'static,
        Future: Send,
    > + Clone
    + Send
    + Sync
    + 'static
{
}

impl<T> Transport for T where
    T: tonic::client::GrpcService<
            tonic::body::Body,
            Error: Into<StdError>,
            ResponseBody: Body<Data = Bytes, Error: Into<StdError> + Send> + Send + 'static,
            Future: Send,
        > + Clone
        + Send
        + Sync
        + 'static
{
}

/// A CRI v1 client for both `RuntimeService` and `ImageService`, with the
/// kubelet's remote runtime client behaviour:
///
/// - lazy connection and transparent reconnection: a runtime restart needs no
///   new client; calls during the outage fail with
///   [`is_unavailable`](Error::is_unavailable);
/// - per-RPC deadlines as the kubelet sets them (see [`ClientConfig`]),
///   overridable with [`with_timeout`](Self::with_timeout);
/// - 16 MiB message limits;
/// - response validation (IDs, URLs, image refs, required status fields);
/// - [`ensure_*`](Self::ensure_pod_sandbox_removed) helpers that treat
///   `NotFound` as done, as the kubelet does for stop and remove;
/// - fallbacks where a runtime answers `Unimplemented`.
///
/// Cloning is cheap; clones share the connection.
///
/// ```no_run
/// # async fn demo() -> Result<(), cri_client::Error> {
/// use cri_client::CriClient;
///
/// let client = CriClient::connect("unix:///run/containerd/containerd.sock")?;
/// let version = client.version().await?;
/// println!("{} {}", version.runtime_name, version.runtime_version);
/// for pod in client.list_pod_sandboxes(None).await? {
///     println!("{} {:?}", pod.id, pod.metadata.map(|m| m.name));
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct CriClient<T = Channel> {
    runtime: RuntimeServiceClient<T>,
    image: ImageServiceClient<T>,
    config: ClientConfig,
    /// A deadline for every call of this handle, set by [`Self::with_timeout`].
    override_timeout: Option<Duration>,
    /// Set once the runtime answered `Unimplemented` to a `Stream*` list RPC.
    streaming_unsupported: Arc<AtomicBool>,
}

impl CriClient<Channel> {
    /// A client for the runtime at `endpoint` (`unix:///path` or an absolute
    /// path), with the kubelet's defaults. Nothing is dialled until the first
    /// call. Needs a Tokio runtime.
    ///
    /// # Errors
    ///
    /// When the endpoint does not parse.
    pub fn connect(endpoint: &str) -> Result<Self> {
        Self::connect_with(endpoint, ClientConfig::default())
    }

    /// Like [`connect`](Self::connect), with settings.
    ///
    /// # Errors
    ///
    /// When the endpoint does not parse.
    pub fn connect_with(endpoint: &str, config: ClientConfig) -> Result<Self> {
        let endpoint = Endpoint::parse(endpoint)?;
        Ok(Self::with_transport(connect_endpoint(&endpoint), config))
    }

    /// Connects, then checks the runtime serves CRI v1 (a `Version` call
    /// within `connection_timeout`), as the kubelet does at start-up.
    ///
    /// # Errors
    ///
    /// When the endpoint does not parse, the runtime does not answer in time,
    /// or does not speak CRI v1 ([`Error::UnsupportedApiVersion`]).
    pub async fn connect_checked(
        endpoint: &str,
        config: ClientConfig,
        connection_timeout: Duration,
    ) -> Result<(Self, v1::VersionResponse)> {
        let client = Self::connect_with(endpoint, config)?;
        let version = client.with_timeout(connection_timeout).version().await?;
        Ok((client, version))
    }
}

impl<T: Transport> CriClient<T> {
    /// A client over any tonic transport, for example an in-process server.
    pub fn with_transport(transport: T, config: ClientConfig) -> Self {
        Self {
            runtime: runtime_client(transport.clone()),
            image: image_client(transport),
            config,
            override_timeout: None,
            streaming_unsupported: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The client's settings.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// A handle whose calls all use `timeout` as their deadline instead of the
    /// per-RPC defaults (`Duration::ZERO` is not special: it fails at once).
    #[must_use]
    pub fn with_timeout(&self, timeout: Duration) -> Self {
        Self {
            override_timeout: Some(timeout),
            ..self.clone()
        }
    }

    /// The generated `RuntimeService` client, for anything this type does not
    /// wrap. It carries no deadlines.
    pub fn runtime_service(&self) -> RuntimeServiceClient<T> {
        self.runtime.clone()
    }

    /// The generated `ImageService` client. It carries no deadlines.
    pub fn image_service(&self) -> ImageServiceClient<T> {
        self.image.clone()
    }

    /// Whether the client stopped using the `Stream*` list RPCs because the
    /// runtime answered `Unimplemented`.
    pub fn streaming_lists_unsupported(&self) -> bool {
        self.streaming_unsupported.load(Ordering::Relaxed)
    }

    fn deadline(&self, default: Option<Duration>) -> Option<Duration> {
        self.override_timeout.or(default)
    }

    fn default_deadline(&self) -> Option<Duration> {
        self.deadline(Some(self.config.request_timeout))
    }

    /// Runs one call with a deadline (sent to the runtime as `grpc-timeout`
    /// and enforced here) and maps its status to [`Error::Rpc`].
    async fn call<Req, Resp, Fut>(
        method: &'static str,
        deadline: Option<Duration>,
        message: Req,
        send: impl FnOnce(tonic::Request<Req>) -> Fut,
    ) -> Result<Resp>
    where
        Fut: Future<Output = std::result::Result<tonic::Response<Resp>, tonic::Status>>,
    {
        let mut request = tonic::Request::new(message);
        let answer = match deadline {
            Some(limit) => {
                request.set_timeout(limit);
                let started = tokio::time::Instant::now();
                match tokio::time::timeout(limit, send(request)).await {
                    // A server that enforces the grpc-timeout we sent may answer
                    // first: tonic servers say `Cancelled: Timeout expired`,
                    // grpc-go ones `DeadlineExceeded`. Past our deadline, any
                    // failure is the deadline.
                    Ok(Err(status)) if started.elapsed() >= limit => {
                        Err(tonic::Status::deadline_exceeded(format!(
                            "no answer within {limit:?} ({:?}: {})",
                            status.code(),
                            status.message()
                        )))
                    }
                    Ok(answer) => answer,
                    Err(_) => Err(tonic::Status::deadline_exceeded(format!(
                        "no answer within {limit:?}"
                    ))),
                }
            }
            None => send(request).await,
        };
        answer
            .map(tonic::Response::into_inner)
            .map_err(|status| Error::Rpc {
                method,
                status: transport_failure_as_unavailable(status),
            })
    }

    fn invalid(method: &'static str, reason: impl Into<String>) -> Error {
        Error::InvalidResponse {
            method,
            reason: reason.into(),
        }
    }

    // ----- runtime information -------------------------------------------

    /// `Version`, asking for the v1 API; fails with
    /// [`Error::UnsupportedApiVersion`] unless the runtime answers v1 with all
    /// four fields set.
    pub async fn version(&self) -> Result<v1::VersionResponse> {
        let mut c = self.runtime.clone();
        let request = v1::VersionRequest {
            version: CRI_API_VERSION.to_owned(),
        };
        let v = Self::call(
            "Version",
            self.default_deadline(),
            request,
            |r| async move { c.version(r).await },
        )
        .await?;
        check_version(&v)?;
        Ok(v)
    }

    /// `Status`: the runtime's conditions (at least `RuntimeReady` and
    /// `NetworkReady`, which the kubelet requires), plus `info` when `verbose`.
    pub async fn status(&self, verbose: bool) -> Result<v1::StatusResponse> {
        let mut c = self.runtime.clone();
        let r = Self::call(
            "Status",
            self.default_deadline(),
            v1::StatusRequest { verbose },
            |r| async move { c.status(r).await },
        )
        .await?;
        let conditions = r.status.as_ref().map_or(0, |s| s.conditions.len());
        if conditions < 2 {
            return Err(Self::invalid(
                "Status",
                format!(
                    "RuntimeReady or NetworkReady condition are not set ({conditions} conditions)"
                ),
            ));
        }
        Ok(r)
    }

    /// `RuntimeConfig` (the runtime's cgroup driver); `None` when the runtime
    /// does not implement it (containerd 1.6), in which case the kubelet keeps
    /// its own configured driver.
    pub async fn runtime_config(&self) -> Result<Option<v1::RuntimeConfigResponse>> {
        let mut c = self.runtime.clone();
        let answer = Self::call(
            "RuntimeConfig",
            self.default_deadline(),
            v1::RuntimeConfigRequest {},
            |r| async move { c.runtime_config(r).await },
        )
        .await;
        unimplemented_as_none(answer)
    }

    /// `UpdateRuntimeConfig`, for example the node's pod CIDR.
    pub async fn update_runtime_config(&self, config: v1::RuntimeConfig) -> Result<()> {
        let mut c = self.runtime.clone();
        let request = v1::UpdateRuntimeConfigRequest {
            runtime_config: Some(config),
        };
        Self::call(
            "UpdateRuntimeConfig",
            self.default_deadline(),
            request,
            |r| async move { c.update_runtime_config(r).await },
        )
        .await
        .map(drop)
    }

    // ----- pod sandboxes --------------------------------------------------

    /// `RunPodSandbox`; returns the new sandbox's ID. Deadline: twice the
    /// request timeout (4 minutes by default), as the kubelet.
    pub async fn run_pod_sandbox(
        &self,
        config: v1::PodSandboxConfig,
        runtime_handler: &str,
    ) -> Result<String> {
        let mut c = self.runtime.clone();
        let request = v1::RunPodSandboxRequest {
            config: Some(config),
            runtime_handler: runtime_handler.to_owned(),
        };
        let deadline = self.deadline(Some(self.config.request_timeout * 2));
        let r = Self::call("RunPodSandbox", deadline, request, |r| async move {
            c.run_pod_sandbox(r).await
        })
        .await?;
        non_empty("RunPodSandbox", "pod_sandbox_id", r.pod_sandbox_id)
    }

    /// `StopPodSandbox`. The CRI contract says stopping a stopped or absent
    /// sandbox succeeds, but containerd 1.6 answers `NotFound` for an absent
    /// one: use [`ensure_pod_sandbox_stopped`](Self::ensure_pod_sandbox_stopped)
    /// to treat that as done.
    pub async fn stop_pod_sandbox(&self, pod_sandbox_id: &str) -> Result<()> {
        let mut c = self.runtime.clone();
        let request = v1::StopPodSandboxRequest {
            pod_sandbox_id: pod_sandbox_id.to_owned(),
        };
        Self::call(
            "StopPodSandbox",
            self.default_deadline(),
            request,
            |r| async move { c.stop_pod_sandbox(r).await },
        )
        .await
        .map(drop)
    }

    /// `RemovePodSandbox` (removes its containers too).
    pub async fn remove_pod_sandbox(&self, pod_sandbox_id: &str) -> Result<()> {
        let mut c = self.runtime.clone();
        let request = v1::RemovePodSandboxRequest {
            pod_sandbox_id: pod_sandbox_id.to_owned(),
        };
        Self::call(
            "RemovePodSandbox",
            self.default_deadline(),
            request,
            |r| async move { c.remove_pod_sandbox(r).await },
        )
        .await
        .map(drop)
    }

    /// `PodSandboxStatus`; the status must carry an ID, metadata (name,
    /// namespace, uid) and a creation time, as the kubelet checks.
    pub async fn pod_sandbox_status(
        &self,
        pod_sandbox_id: &str,
        verbose: bool,
    ) -> Result<v1::PodSandboxStatusResponse> {
        let mut c = self.runtime.clone();
        let request = v1::PodSandboxStatusRequest {
            pod_sandbox_id: pod_sandbox_id.to_owned(),
            verbose,
        };
        let r = Self::call(
            "PodSandboxStatus",
            self.default_deadline(),
            request,
            |r| async move { c.pod_sandbox_status(r).await },
        )
        .await?;
        let status = r
            .status
            .as_ref()
            .ok_or_else(|| Self::invalid("PodSandboxStatus", "no status"))?;
        check_sandbox_status(status).map_err(|reason| Self::invalid("PodSandboxStatus", reason))?;
        Ok(r)
    }

    /// `ListPodSandbox` (or `StreamPodSandboxes` when enabled and supported).
    pub async fn list_pod_sandboxes(
        &self,
        filter: Option<v1::PodSandboxFilter>,
    ) -> Result<Vec<v1::PodSandbox>> {
        let (mut s, mut u) = (self.runtime.clone(), self.runtime.clone());
        let streamed = self.collect_stream(
            "StreamPodSandboxes",
            v1::StreamPodSandboxesRequest {
                filter: filter.clone(),
            },
            |r| async move { s.stream_pod_sandboxes(r).await },
            |m: v1::StreamPodSandboxesResponse| m.pod_sandboxes,
        );
        let request = v1::ListPodSandboxRequest { filter };
        let unary = Self::call(
            "ListPodSandbox",
            self.default_deadline(),
            request,
            |r| async move { u.list_pod_sandbox(r).await },
        );
        self.list_with_fallback(streamed, async { unary.await.map(|r| r.items) })
            .await
    }

    /// `UpdatePodSandboxResources` (in-place pod resize, CRI 1.33+).
    pub async fn update_pod_sandbox_resources(
        &self,
        request: v1::UpdatePodSandboxResourcesRequest,
    ) -> Result<()> {
        let mut c = self.runtime.clone();
        Self::call(
            "UpdatePodSandboxResources",
            self.default_deadline(),
            request,
            |r| async move { c.update_pod_sandbox_resources(r).await },
        )
        .await
        .map(drop)
    }

    // ----- containers -----------------------------------------------------

    /// `CreateContainer` in a sandbox; returns the new container's ID.
    pub async fn create_container(
        &self,
        pod_sandbox_id: &str,
        config: v1::ContainerConfig,
        sandbox_config: v1::PodSandboxConfig,
    ) -> Result<String> {
        let mut c = self.runtime.clone();
        let request = v1::CreateContainerRequest {
            pod_sandbox_id: pod_sandbox_id.to_owned(),
            config: Some(config),
            sandbox_config: Some(sandbox_config),
        };
        let r = Self::call(
            "CreateContainer",
            self.default_deadline(),
            request,
            |r| async move { c.create_container(r).await },
        )
        .await?;
        non_empty("CreateContainer", "container_id", r.container_id)
    }

    /// `StartContainer`.
    pub async fn start_container(&self, container_id: &str) -> Result<()> {
        let mut c = self.runtime.clone();
        let request = v1::StartContainerRequest {
            container_id: container_id.to_owned(),
        };
        Self::call(
            "StartContainer",
            self.default_deadline(),
            request,
            |r| async move { c.start_container(r).await },
        )
        .await
        .map(drop)
    }

    /// `StopContainer` with a grace period in seconds (0 kills at once).
    /// Deadline: the request timeout plus the grace period, as the kubelet.
    pub async fn stop_container(&self, container_id: &str, grace_seconds: i64) -> Result<()> {
        let mut c = self.runtime.clone();
        let request = v1::StopContainerRequest {
            container_id: container_id.to_owned(),
            timeout: grace_seconds,
        };
        let grace = Duration::from_secs(u64::try_from(grace_seconds).unwrap_or(0));
        let deadline = self.deadline(Some(self.config.request_timeout + grace));
        Self::call("StopContainer", deadline, request, |r| async move {
            c.stop_container(r).await
        })
        .await
        .map(drop)
    }

    /// `RemoveContainer`.
    pub async fn remove_container(&self, container_id: &str) -> Result<()> {
        let mut c = self.runtime.clone();
        let request = v1::RemoveContainerRequest {
            container_id: container_id.to_owned(),
        };
        Self::call(
            "RemoveContainer",
            self.default_deadline(),
            request,
            |r| async move { c.remove_container(r).await },
        )
        .await
        .map(drop)
    }

    /// `ListContainers` (or `StreamContainers` when enabled and supported).
    pub async fn list_containers(
        &self,
        filter: Option<v1::ContainerFilter>,
    ) -> Result<Vec<v1::Container>> {
        let (mut s, mut u) = (self.runtime.clone(), self.runtime.clone());
        let streamed = self.collect_stream(
            "StreamContainers",
            v1::StreamContainersRequest {
                filter: filter.clone(),
            },
            |r| async move { s.stream_containers(r).await },
            |m: v1::StreamContainersResponse| m.containers,
        );
        let request = v1::ListContainersRequest { filter };
        let unary = Self::call(
            "ListContainers",
            self.default_deadline(),
            request,
            |r| async move { u.list_containers(r).await },
        );
        self.list_with_fallback(streamed, async { unary.await.map(|r| r.containers) })
            .await
    }

    /// `ContainerStatus`; the status must carry an ID, metadata name, creation
    /// time, image and image ref, as the kubelet checks.
    pub async fn container_status(
        &self,
        container_id: &str,
        verbose: bool,
    ) -> Result<v1::ContainerStatusResponse> {
        let mut c = self.runtime.clone();
        let request = v1::ContainerStatusRequest {
            container_id: container_id.to_owned(),
            verbose,
        };
        let r = Self::call(
            "ContainerStatus",
            self.default_deadline(),
            request,
            |r| async move { c.container_status(r).await },
        )
        .await?;
        let status = r
            .status
            .as_ref()
            .ok_or_else(|| Self::invalid("ContainerStatus", "no status"))?;
        check_container_status(status)
            .map_err(|reason| Self::invalid("ContainerStatus", reason))?;
        Ok(r)
    }

    /// `UpdateContainerResources`.
    pub async fn update_container_resources(
        &self,
        request: v1::UpdateContainerResourcesRequest,
    ) -> Result<()> {
        let mut c = self.runtime.clone();
        Self::call(
            "UpdateContainerResources",
            self.default_deadline(),
            request,
            |r| async move { c.update_container_resources(r).await },
        )
        .await
        .map(drop)
    }

    /// `ReopenContainerLog` (after the log file was rotated).
    pub async fn reopen_container_log(&self, container_id: &str) -> Result<()> {
        let mut c = self.runtime.clone();
        let request = v1::ReopenContainerLogRequest {
            container_id: container_id.to_owned(),
        };
        Self::call(
            "ReopenContainerLog",
            self.default_deadline(),
            request,
            |r| async move { c.reopen_container_log(r).await },
        )
        .await
        .map(drop)
    }

    /// `ExecSync`: runs `command` in the container and returns its output and
    /// exit code (a non-zero exit code is not an error). `timeout_seconds` 0
    /// means no limit. When the command runs out of time the error is
    /// [`Error::CommandTimedOut`] (deadline: request timeout + command
    /// timeout, as the kubelet; none when the command has no timeout).
    pub async fn exec_sync(
        &self,
        container_id: &str,
        command: Vec<String>,
        timeout_seconds: i64,
    ) -> Result<v1::ExecSyncResponse> {
        let mut c = self.runtime.clone();
        let request = v1::ExecSyncRequest {
            container_id: container_id.to_owned(),
            cmd: command.clone(),
            timeout: timeout_seconds,
        };
        let deadline = match u64::try_from(timeout_seconds) {
            Ok(secs) if secs > 0 => self.deadline(Some(
                self.config.request_timeout + Duration::from_secs(secs),
            )),
            _ => self.override_timeout,
        };
        match Self::call("ExecSync", deadline, request, |r| async move {
            c.exec_sync(r).await
        })
        .await
        {
            Err(e) if e.is_deadline_exceeded() && timeout_seconds > 0 => {
                Err(Error::CommandTimedOut {
                    command,
                    timeout_seconds,
                })
            }
            other => other,
        }
    }

    /// `Exec`: returns the streaming URL (see [`crate::streaming`]).
    pub async fn exec(&self, request: v1::ExecRequest) -> Result<String> {
        let mut c = self.runtime.clone();
        let r = Self::call("Exec", self.default_deadline(), request, |r| async move {
            c.exec(r).await
        })
        .await?;
        non_empty("Exec", "url", r.url)
    }

    /// `Attach`: returns the streaming URL (see [`crate::streaming`]).
    pub async fn attach(&self, request: v1::AttachRequest) -> Result<String> {
        let mut c = self.runtime.clone();
        let r = Self::call("Attach", self.default_deadline(), request, |r| async move {
            c.attach(r).await
        })
        .await?;
        non_empty("Attach", "url", r.url)
    }

    /// `PortForward`: returns the streaming URL (see [`crate::streaming`]).
    pub async fn port_forward(&self, pod_sandbox_id: &str, ports: Vec<i32>) -> Result<String> {
        let mut c = self.runtime.clone();
        let request = v1::PortForwardRequest {
            pod_sandbox_id: pod_sandbox_id.to_owned(),
            port: ports,
        };
        let r = Self::call(
            "PortForward",
            self.default_deadline(),
            request,
            |r| async move { c.port_forward(r).await },
        )
        .await?;
        non_empty("PortForward", "url", r.url)
    }

    /// `CheckpointContainer`; the deadline is the larger of the request's own
    /// timeout and the default, as the kubelet.
    pub async fn checkpoint_container(
        &self,
        request: v1::CheckpointContainerRequest,
    ) -> Result<()> {
        let mut c = self.runtime.clone();
        let requested = Duration::from_secs(u64::try_from(request.timeout).unwrap_or(0));
        let deadline = self.deadline(Some(requested.max(self.config.request_timeout)));
        Self::call("CheckpointContainer", deadline, request, |r| async move {
            c.checkpoint_container(r).await
        })
        .await
        .map(drop)
    }

    /// `GetContainerEvents`: a long-lived stream of container lifecycle
    /// events, with no deadline. `None` when the runtime does not implement it
    /// (containerd 1.6): relist instead, as the kubelet's generic PLEG does.
    pub async fn container_events(
        &self,
    ) -> Result<Option<impl Stream<Item = Result<v1::ContainerEventResponse>> + use<T>>> {
        let mut c = self.runtime.clone();
        let opened = Self::call(
            "GetContainerEvents",
            self.override_timeout,
            v1::GetEventsRequest {},
            |r| async move { c.get_container_events(r).await },
        )
        .await;
        Ok(unimplemented_as_none(opened)?.map(|stream| {
            stream.map_err(|status| Error::Rpc {
                method: "GetContainerEvents",
                status: transport_failure_as_unavailable(status),
            })
        }))
    }

    // ----- stats and metrics ---------------------------------------------

    /// `ContainerStats`.
    pub async fn container_stats(&self, container_id: &str) -> Result<v1::ContainerStatsResponse> {
        let mut c = self.runtime.clone();
        let request = v1::ContainerStatsRequest {
            container_id: container_id.to_owned(),
        };
        Self::call(
            "ContainerStats",
            self.default_deadline(),
            request,
            |r| async move { c.container_stats(r).await },
        )
        .await
    }

    /// `ListContainerStats` (or `StreamContainerStats` when enabled and supported).
    pub async fn list_container_stats(
        &self,
        filter: Option<v1::ContainerStatsFilter>,
    ) -> Result<Vec<v1::ContainerStats>> {
        let (mut s, mut u) = (self.runtime.clone(), self.runtime.clone());
        let streamed = self.collect_stream(
            "StreamContainerStats",
            v1::StreamContainerStatsRequest {
                filter: filter.clone(),
            },
            |r| async move { s.stream_container_stats(r).await },
            |m: v1::StreamContainerStatsResponse| m.container_stats,
        );
        let request = v1::ListContainerStatsRequest { filter };
        let unary = Self::call(
            "ListContainerStats",
            self.default_deadline(),
            request,
            |r| async move { u.list_container_stats(r).await },
        );
        self.list_with_fallback(streamed, async { unary.await.map(|r| r.stats) })
            .await
    }

    /// `PodSandboxStats`.
    pub async fn pod_sandbox_stats(
        &self,
        pod_sandbox_id: &str,
    ) -> Result<v1::PodSandboxStatsResponse> {
        let mut c = self.runtime.clone();
        let request = v1::PodSandboxStatsRequest {
            pod_sandbox_id: pod_sandbox_id.to_owned(),
        };
        Self::call(
            "PodSandboxStats",
            self.default_deadline(),
            request,
            |r| async move { c.pod_sandbox_stats(r).await },
        )
        .await
    }

    /// `ListPodSandboxStats` (or `StreamPodSandboxStats` when enabled and supported).
    pub async fn list_pod_sandbox_stats(
        &self,
        filter: Option<v1::PodSandboxStatsFilter>,
    ) -> Result<Vec<v1::PodSandboxStats>> {
        let (mut s, mut u) = (self.runtime.clone(), self.runtime.clone());
        let streamed = self.collect_stream(
            "StreamPodSandboxStats",
            v1::StreamPodSandboxStatsRequest {
                filter: filter.clone(),
            },
            |r| async move { s.stream_pod_sandbox_stats(r).await },
            |m: v1::StreamPodSandboxStatsResponse| m.pod_sandbox_stats,
        );
        let request = v1::ListPodSandboxStatsRequest { filter };
        let unary = Self::call(
            "ListPodSandboxStats",
            self.default_deadline(),
            request,
            |r| async move { u.list_pod_sandbox_stats(r).await },
        );
        self.list_with_fallback(streamed, async { unary.await.map(|r| r.stats) })
            .await
    }

    /// `ListMetricDescriptors`; `None` when the runtime does not implement it
    /// (containerd 1.6).
    pub async fn list_metric_descriptors(&self) -> Result<Option<Vec<v1::MetricDescriptor>>> {
        let mut c = self.runtime.clone();
        let answer = Self::call(
            "ListMetricDescriptors",
            self.default_deadline(),
            v1::ListMetricDescriptorsRequest {},
            |r| async move { c.list_metric_descriptors(r).await },
        )
        .await;
        Ok(unimplemented_as_none(answer)?.map(|r| r.descriptors))
    }

    /// `ListPodSandboxMetrics` (or `StreamPodSandboxMetrics` when enabled and
    /// supported).
    pub async fn list_pod_sandbox_metrics(&self) -> Result<Vec<v1::PodSandboxMetrics>> {
        let (mut s, mut u) = (self.runtime.clone(), self.runtime.clone());
        let streamed = self.collect_stream(
            "StreamPodSandboxMetrics",
            v1::StreamPodSandboxMetricsRequest {},
            |r| async move { s.stream_pod_sandbox_metrics(r).await },
            |m: v1::StreamPodSandboxMetricsResponse| m.pod_sandbox_metrics,
        );
        let request = v1::ListPodSandboxMetricsRequest {};
        let unary = Self::call(
            "ListPodSandboxMetrics",
            self.default_deadline(),
            request,
            |r| async move { u.list_pod_sandbox_metrics(r).await },
        );
        self.list_with_fallback(streamed, async { unary.await.map(|r| r.pod_metrics) })
            .await
    }

    // ----- images ----------------------------------------------------------

    /// `ListImages` (or `StreamImages` when enabled and supported).
    pub async fn list_images(&self, filter: Option<v1::ImageFilter>) -> Result<Vec<v1::Image>> {
        let (mut s, mut u) = (self.image.clone(), self.image.clone());
        let streamed = self.collect_stream(
            "StreamImages",
            v1::StreamImagesRequest {
                filter: filter.clone(),
            },
            |r| async move { s.stream_images(r).await },
            |m: v1::StreamImagesResponse| m.images,
        );
        let request = v1::ListImagesRequest { filter };
        let unary = Self::call(
            "ListImages",
            self.default_deadline(),
            request,
            |r| async move { u.list_images(r).await },
        );
        self.list_with_fallback(streamed, async { unary.await.map(|r| r.images) })
            .await
    }

    /// `ImageStatus`; `Ok(None)` inside the response when the image is absent,
    /// as the CRI contract says.
    pub async fn image_status(
        &self,
        image: v1::ImageSpec,
        verbose: bool,
    ) -> Result<v1::ImageStatusResponse> {
        let mut c = self.image.clone();
        let request = v1::ImageStatusRequest {
            image: Some(image),
            verbose,
        };
        Self::call(
            "ImageStatus",
            self.default_deadline(),
            request,
            |r| async move { c.image_status(r).await },
        )
        .await
    }

    /// `PullImage` with optional credentials and the sandbox it is for;
    /// returns the image ref. No deadline (only cancellation), as the kubelet:
    /// drop the future to cancel.
    pub async fn pull_image(
        &self,
        image: v1::ImageSpec,
        auth: Option<v1::AuthConfig>,
        sandbox_config: Option<v1::PodSandboxConfig>,
    ) -> Result<String> {
        let mut c = self.image.clone();
        let request = v1::PullImageRequest {
            image: Some(image),
            auth,
            sandbox_config,
        };
        let r = Self::call(
            "PullImage",
            self.override_timeout,
            request,
            |r| async move { c.pull_image(r).await },
        )
        .await?;
        non_empty("PullImage", "image_ref", r.image_ref)
    }

    /// `RemoveImage` (removing one tag removes every tag of the image).
    pub async fn remove_image(&self, image: v1::ImageSpec) -> Result<()> {
        let mut c = self.image.clone();
        let request = v1::RemoveImageRequest { image: Some(image) };
        Self::call(
            "RemoveImage",
            self.default_deadline(),
            request,
            |r| async move { c.remove_image(r).await },
        )
        .await
        .map(drop)
    }

    /// `ImageFsInfo`: usage of the filesystems that hold images and containers.
    pub async fn image_fs_info(&self) -> Result<v1::ImageFsInfoResponse> {
        let mut c = self.image.clone();
        Self::call(
            "ImageFsInfo",
            self.default_deadline(),
            v1::ImageFsInfoRequest {},
            |r| async move { c.image_fs_info(r).await },
        )
        .await
    }

    // ----- idempotent helpers ------------------------------------------------

    /// Stops a sandbox; an absent one counts as stopped (`NotFound` is done).
    pub async fn ensure_pod_sandbox_stopped(&self, pod_sandbox_id: &str) -> Result<()> {
        not_found_is_done(self.stop_pod_sandbox(pod_sandbox_id).await)
    }

    /// Stops then removes a sandbox, as the kubelet does; absent is done.
    pub async fn ensure_pod_sandbox_removed(&self, pod_sandbox_id: &str) -> Result<()> {
        self.ensure_pod_sandbox_stopped(pod_sandbox_id).await?;
        not_found_is_done(self.remove_pod_sandbox(pod_sandbox_id).await)
    }

    /// Stops a container with a grace period; absent counts as stopped.
    pub async fn ensure_container_stopped(
        &self,
        container_id: &str,
        grace_seconds: i64,
    ) -> Result<()> {
        not_found_is_done(self.stop_container(container_id, grace_seconds).await)
    }

    /// Removes a container; absent is done.
    pub async fn ensure_container_removed(&self, container_id: &str) -> Result<()> {
        not_found_is_done(self.remove_container(container_id).await)
    }

    /// Removes an image; absent is done.
    pub async fn ensure_image_removed(&self, image: v1::ImageSpec) -> Result<()> {
        not_found_is_done(self.remove_image(image).await)
    }

    // ----- Stream* list support -----------------------------------------------

    fn streaming_enabled(&self) -> bool {
        self.config.use_streaming_lists && !self.streaming_lists_unsupported()
    }

    /// Opens a `Stream*` list RPC and gathers its batches (the whole stream
    /// under one deadline).
    async fn collect_stream<Req, Msg, Item, Fut>(
        &self,
        method: &'static str,
        message: Req,
        open: impl FnOnce(tonic::Request<Req>) -> Fut,
        items: impl Fn(Msg) -> Vec<Item>,
    ) -> Result<Vec<Item>>
    where
        Fut: Future<
            Output = std::result::Result<
                tonic::Response<tonic::codec::Streaming<Msg>>,
                tonic::Status,
            >,
        >,
    {
        let deadline = self.default_deadline();
        let gather = async {
            let mut stream = Self::call(method, None, message, open).await?;
            let mut all = Vec::new();
            while let Some(batch) = stream.next().await {
                let batch = batch.map_err(|status| Error::Rpc {
                    method,
                    status: transport_failure_as_unavailable(status),
                })?;
                all.extend(items(batch));
            }
            Ok(all)
        };
        match deadline {
            Some(limit) => tokio::time::timeout(limit, gather)
                .await
                .unwrap_or_else(|_| {
                    Err(Error::Rpc {
                        method,
                        status: tonic::Status::deadline_exceeded(format!(
                            "no answer within {limit:?}"
                        )),
                    })
                }),
            None => gather.await,
        }
    }

    /// The `Stream*` form of a list when streaming is on and supported, else
    /// the unary `List*` form. `Unimplemented` from the stream (on open or on
    /// the first receive) switches streaming off for good and falls back.
    /// Futures are lazy: the one not chosen never runs.
    async fn list_with_fallback<Item>(
        &self,
        streamed: impl Future<Output = Result<Vec<Item>>>,
        unary: impl Future<Output = Result<Vec<Item>>>,
    ) -> Result<Vec<Item>> {
        if self.streaming_enabled() {
            match streamed.await {
                Ok(items) => return Ok(items),
                Err(e) if e.is_unimplemented() => {
                    tracing::info!(error = %e, "runtime lacks Stream* list RPCs; using List* from now on");
                    self.streaming_unsupported.store(true, Ordering::Relaxed);
                }
                Err(e) => return Err(e),
            }
        }
        unary.await
    }
}

/// A connection that broke under a call (the runtime crashed or restarted)
/// reaches us from tonic as `Unknown` with the transport error as its source;
/// grpc-go, and so the kubelet, report it as `Unavailable`. Statuses the
/// runtime sent never carry a source, so only local transport failures change.
fn transport_failure_as_unavailable(status: tonic::Status) -> tonic::Status {
    use std::error::Error as _;
    if status.code() != tonic::Code::Unknown || status.source().is_none() {
        return status;
    }
    let mut detail = status.message().to_owned();
    let mut cause = status.source();
    while let Some(e) = cause {
        detail.push_str(": ");
        detail.push_str(&e.to_string());
        cause = e.source();
    }
    tonic::Status::unavailable(format!("connection to the runtime failed: {detail}"))
}

/// `Unimplemented` becomes `Ok(None)`; other errors stay errors.
fn unimplemented_as_none<R>(answer: Result<R>) -> Result<Option<R>> {
    match answer {
        Ok(r) => Ok(Some(r)),
        Err(e) if e.is_unimplemented() => Ok(None),
        Err(e) => Err(e),
    }
}

/// `NotFound` becomes success, as the kubelet treats it for stop and remove.
fn not_found_is_done(answer: Result<()>) -> Result<()> {
    match answer {
        Err(e) if e.is_not_found() => Ok(()),
        other => other,
    }
}

fn non_empty(method: &'static str, field: &str, value: String) -> Result<String> {
    if value.is_empty() {
        return Err(Error::InvalidResponse {
            method,
            reason: format!("{field} is empty"),
        });
    }
    Ok(value)
}

/// The kubelet's `versionV1` check: every field set and the API is v1.
fn check_version(v: &v1::VersionResponse) -> Result<()> {
    let missing: Vec<&str> = [
        ("version", &v.version),
        ("runtime_name", &v.runtime_name),
        ("runtime_version", &v.runtime_version),
        ("runtime_api_version", &v.runtime_api_version),
    ]
    .into_iter()
    .filter(|(_, value)| value.is_empty())
    .map(|(name, _)| name)
    .collect();
    if missing.is_empty() && v.runtime_api_version == CRI_API_VERSION {
        return Ok(());
    }
    Err(Error::UnsupportedApiVersion {
        runtime_name: v.runtime_name.clone(),
        runtime_version: v.runtime_version.clone(),
        runtime_api_version: v.runtime_api_version.clone(),
        missing: if missing.is_empty() {
            String::new()
        } else {
            format!(" (not all fields are set: missing {})", missing.join(", "))
        },
    })
}

/// The kubelet's `verifySandboxStatus`.
fn check_sandbox_status(s: &v1::PodSandboxStatus) -> std::result::Result<(), String> {
    if s.id.is_empty() {
        return Err("status.id is not set".into());
    }
    let Some(m) = &s.metadata else {
        return Err("status.metadata is not set".into());
    };
    for (field, value) in [
        ("name", &m.name),
        ("namespace", &m.namespace),
        ("uid", &m.uid),
    ] {
        if value.is_empty() {
            return Err(format!("metadata.{field} is not set"));
        }
    }
    if s.created_at == 0 {
        return Err("status.created_at is not set".into());
    }
    Ok(())
}

/// The kubelet's `verifyContainerStatus`.
fn check_container_status(s: &v1::ContainerStatus) -> std::result::Result<(), String> {
    if s.id.is_empty() {
        return Err("status.id is not set".into());
    }
    if s.metadata.as_ref().is_none_or(|m| m.name.is_empty()) {
        return Err("status.metadata.name is not set".into());
    }
    if s.created_at == 0 {
        return Err("status.created_at is not set".into());
    }
    if s.image.as_ref().is_none_or(|i| i.image.is_empty()) {
        return Err("status.image is not set".into());
    }
    if s.image_ref.is_empty() {
        return Err("status.image_ref is not set".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(api: &str) -> v1::VersionResponse {
        v1::VersionResponse {
            version: "0.1.0".into(),
            runtime_name: "containerd".into(),
            runtime_version: "1.6.20".into(),
            runtime_api_version: api.into(),
        }
    }

    #[test]
    fn version_must_be_v1_with_every_field() {
        assert!(check_version(&version("v1")).is_ok());
        let err = check_version(&version("v1alpha2")).unwrap_err();
        assert!(
            err.to_string()
                .contains("\"v1alpha2\", but the v1 API is required"),
            "{err}"
        );
        let mut partial = version("v1");
        partial.runtime_name.clear();
        partial.version.clear();
        let err = check_version(&partial).unwrap_err().to_string();
        assert!(
            err.ends_with("(not all fields are set: missing version, runtime_name)"),
            "{err}"
        );
    }

    #[test]
    fn sandbox_status_needs_id_metadata_and_creation_time() {
        let good = v1::PodSandboxStatus {
            id: "abc".into(),
            metadata: Some(v1::PodSandboxMetadata {
                name: "p".into(),
                uid: "u".into(),
                namespace: "ns".into(),
                attempt: 0,
            }),
            created_at: 1,
            ..Default::default()
        };
        assert_eq!(check_sandbox_status(&good), Ok(()));
        let mut no_uid = good.clone();
        no_uid.metadata.as_mut().unwrap().uid.clear();
        assert_eq!(
            check_sandbox_status(&no_uid),
            Err("metadata.uid is not set".into())
        );
        let mut no_time = good.clone();
        no_time.created_at = 0;
        assert_eq!(
            check_sandbox_status(&no_time),
            Err("status.created_at is not set".into())
        );
        assert_eq!(
            check_sandbox_status(&v1::PodSandboxStatus {
                metadata: None,
                ..good
            }),
            Err("status.metadata is not set".into())
        );
    }

    #[test]
    fn container_status_needs_image_and_image_ref() {
        let good = v1::ContainerStatus {
            id: "c".into(),
            metadata: Some(v1::ContainerMetadata {
                name: "app".into(),
                attempt: 0,
            }),
            created_at: 5,
            image: Some(v1::ImageSpec {
                image: "busybox".into(),
                ..Default::default()
            }),
            image_ref: "sha256:1".into(),
            ..Default::default()
        };
        assert_eq!(check_container_status(&good), Ok(()));
        let no_ref = v1::ContainerStatus {
            image_ref: String::new(),
            ..good.clone()
        };
        assert_eq!(
            check_container_status(&no_ref),
            Err("status.image_ref is not set".into())
        );
        let no_image = v1::ContainerStatus {
            image: None,
            ..good
        };
        assert_eq!(
            check_container_status(&no_image),
            Err("status.image is not set".into())
        );
    }

    #[test]
    fn error_helpers_classify_codes() {
        let rpc = |code| Error::Rpc {
            method: "X",
            status: tonic::Status::new(code, "m"),
        };
        assert!(rpc(tonic::Code::NotFound).is_not_found());
        assert!(rpc(tonic::Code::Unimplemented).is_unimplemented());
        assert!(rpc(tonic::Code::Unavailable).is_unavailable());
        assert!(rpc(tonic::Code::DeadlineExceeded).is_deadline_exceeded());
        let timed_out = Error::CommandTimedOut {
            command: vec!["sleep".into()],
            timeout_seconds: 1,
        };
        assert!(timed_out.is_deadline_exceeded());
        assert_eq!(
            rpc(tonic::Code::NotFound).to_string(),
            "CRI X failed: NotFound: m"
        );
        assert!(not_found_is_done(Err(rpc(tonic::Code::NotFound))).is_ok());
        assert!(not_found_is_done(Err(rpc(tonic::Code::Internal))).is_err());
        assert!(matches!(
            unimplemented_as_none::<()>(Err(rpc(tonic::Code::Unimplemented))),
            Ok(None)
        ));
    }

    #[test]
    fn local_transport_failures_become_unavailable() {
        let io = std::io::Error::new(std::io::ErrorKind::BrokenPipe, "broken pipe");
        let local = tonic::Status::from_error(Box::new(io));
        assert_eq!(local.code(), tonic::Code::Unknown);
        let mapped = transport_failure_as_unavailable(local);
        assert_eq!(mapped.code(), tonic::Code::Unavailable);
        assert!(
            mapped.message().contains("broken pipe"),
            "{}",
            mapped.message()
        );
        // A status the runtime sent is left alone, Unknown included.
        let remote = tonic::Status::unknown("runtime said so");
        assert_eq!(
            transport_failure_as_unavailable(remote).code(),
            tonic::Code::Unknown
        );
        let not_found = tonic::Status::not_found("x");
        assert_eq!(
            transport_failure_as_unavailable(not_found).code(),
            tonic::Code::NotFound
        );
    }

    #[test]
    fn kubelet_default_timeouts() {
        let c = ClientConfig::default();
        assert_eq!(c.request_timeout, Duration::from_secs(120));
        assert!(!c.use_streaming_lists);
    }
}
