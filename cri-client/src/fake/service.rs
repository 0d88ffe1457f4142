//! The `RuntimeService` and `ImageService` implementations: each RPC goes
//! through [`FakeRuntime::call`] (restart gate, `Unimplemented`, latency,
//! faults, call log) and then through the state machine.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::stream::BoxStream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::v1::image_service_server::ImageService;
use crate::v1::runtime_service_server::RuntimeService;
use crate::v1::{
    AttachRequest, AttachResponse, CheckpointContainerRequest, CheckpointContainerResponse,
    ContainerEventResponse, ContainerStatsRequest, ContainerStatsResponse, ContainerStatusRequest,
    ContainerStatusResponse, CreateContainerRequest, CreateContainerResponse, ExecRequest,
    ExecResponse, ExecSyncRequest, ExecSyncResponse, FilesystemIdentifier, FilesystemUsage,
    GetEventsRequest, ImageFsInfoRequest, ImageFsInfoResponse, ImageSpec, ImageStatusRequest,
    ImageStatusResponse, LinuxRuntimeConfiguration, ListContainerStatsRequest,
    ListContainerStatsResponse, ListContainersRequest, ListContainersResponse, ListImagesRequest,
    ListImagesResponse, ListMetricDescriptorsRequest, ListMetricDescriptorsResponse,
    ListPodSandboxMetricsRequest, ListPodSandboxMetricsResponse, ListPodSandboxRequest,
    ListPodSandboxResponse, ListPodSandboxStatsRequest, ListPodSandboxStatsResponse,
    PodSandboxStatsRequest, PodSandboxStatsResponse, PodSandboxStatusRequest,
    PodSandboxStatusResponse, PortForwardRequest, PortForwardResponse, PullImageRequest,
    PullImageResponse, RemoveContainerRequest, RemoveContainerResponse, RemoveImageRequest,
    RemoveImageResponse, RemovePodSandboxRequest, RemovePodSandboxResponse,
    ReopenContainerLogRequest, ReopenContainerLogResponse, RunPodSandboxRequest,
    RunPodSandboxResponse, RuntimeCondition, RuntimeConfigRequest, RuntimeConfigResponse,
    RuntimeStatus, StartContainerRequest, StartContainerResponse, StatusRequest, StatusResponse,
    StopContainerRequest, StopContainerResponse, StopPodSandboxRequest, StopPodSandboxResponse,
    StreamContainerStatsRequest, StreamContainerStatsResponse, StreamContainersRequest,
    StreamContainersResponse, StreamImagesRequest, StreamImagesResponse,
    StreamPodSandboxMetricsRequest, StreamPodSandboxMetricsResponse, StreamPodSandboxStatsRequest,
    StreamPodSandboxStatsResponse, StreamPodSandboxesRequest, StreamPodSandboxesResponse,
    UInt64Value, UpdateContainerResourcesRequest, UpdateContainerResourcesResponse,
    UpdatePodSandboxResourcesRequest, UpdatePodSandboxResourcesResponse,
    UpdateRuntimeConfigRequest, UpdateRuntimeConfigResponse, VersionRequest, VersionResponse,
};

use super::FakeRuntime;
use super::images::{Reference, parse_reference};
use super::rpc::Rpc;
use super::serve::ConnectionClosing;
use super::state::{SNAPSHOT_MOUNTPOINT, metric_descriptors};

/// The boxed stream type of every server-streaming RPC of the fake.
type FakeStream<T> = BoxStream<'static, Result<T, Status>>;

/// Counts a call as in flight until dropped (also when the call is
/// cancelled by the client).
struct InFlight<'a>(&'a AtomicUsize);

impl<'a> InFlight<'a> {
    fn enter(counter: &'a AtomicUsize) -> InFlight<'a> {
        counter.fetch_add(1, Ordering::SeqCst);
        InFlight(counter)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn restarting() -> Status {
    Status::unavailable("fake runtime is restarting")
}

/// The events of one subscriber, ending with `Unavailable` when the
/// connection closes (if the call came over one of the fake's transports) or
/// when the fake ends the stream (restart, [`FakeRuntime::drop_event_streams`]).
fn event_stream(
    events: mpsc::UnboundedReceiver<Result<ContainerEventResponse, Status>>,
    closing: Option<CancellationToken>,
) -> FakeStream<ContainerEventResponse> {
    let stream = futures::stream::unfold(
        (events, closing, false),
        |(mut events, closing, ended)| async move {
            if ended {
                return None;
            }
            let item = match &closing {
                Some(closing) => tokio::select! {
                    biased;
                    item = events.recv() => item,
                    () = closing.cancelled() => Some(Err(Status::unavailable(
                        "the connection to the fake runtime is closing",
                    ))),
                },
                None => events.recv().await,
            };
            let ended = matches!(item, Some(Err(_)));
            item.map(|item| (item, (events, closing, ended)))
        },
    );
    Box::pin(stream)
}

/// Splits `items` into messages of at most `size` items; no items, no
/// messages.
fn chunked<I, R>(items: Vec<I>, size: usize, wrap: impl Fn(Vec<I>) -> R) -> FakeStream<R>
where
    I: Send + 'static,
    R: Send + 'static,
{
    let mut messages = Vec::new();
    let mut items = items.into_iter().peekable();
    while items.peek().is_some() {
        messages.push(Ok(wrap(items.by_ref().take(size).collect())));
    }
    Box::pin(futures::stream::iter(messages))
}

fn image_reference(spec: Option<&ImageSpec>) -> Result<Reference, Status> {
    let image = spec.map(|spec| spec.image.as_str()).unwrap_or_default();
    if image.is_empty() {
        return Err(Status::invalid_argument("image.image is empty"));
    }
    parse_reference(image).map_err(Status::invalid_argument)
}

fn image_summary(spec: Option<&ImageSpec>) -> String {
    format!(
        "image={}",
        spec.map(|s| s.image.as_str()).unwrap_or_default()
    )
}

fn filter_summary(id: &str, extra: &[(&str, String)], labels: &HashMap<String, String>) -> String {
    let mut parts = Vec::new();
    if !id.is_empty() {
        parts.push(format!("id={id}"));
    }
    parts.extend(
        extra
            .iter()
            .filter(|(_, value)| !value.is_empty())
            .map(|(key, value)| format!("{key}={value}")),
    );
    let mut labels: Vec<_> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    labels.sort();
    if !labels.is_empty() {
        parts.push(format!("labels={}", labels.join(",")));
    }
    parts.join(" ")
}

/// Exec and attach need at least one stream, and a TTY merges stderr into
/// stdout (kubelet's streaming server rejects both set).
fn check_streams(tty: bool, stdin: bool, stdout: bool, stderr: bool) -> Result<(), Status> {
    if tty && stderr {
        return Err(Status::invalid_argument(
            "tty and stderr cannot both be true",
        ));
    }
    if !stdin && !stdout && !stderr {
        return Err(Status::invalid_argument(
            "one of stdin, stdout, or stderr must be set",
        ));
    }
    Ok(())
}

impl FakeRuntime {
    /// Runs one call: refuses it while restarting, answers `Unimplemented`
    /// or an injected fault, waits the added latency, runs `work` (cut short
    /// by a restart), and records the outcome in the call log.
    async fn call<T>(
        &self,
        rpc: Rpc,
        request: String,
        work: impl Future<Output = Result<T, Status>>,
    ) -> Result<Response<T>, Status> {
        let result = {
            let _in_flight = InFlight::enter(&self.inner.in_flight);
            self.gate(rpc, work).await
        };
        self.faults()
            .record(rpc, request, result.as_ref().map(|_| ()));
        result.map(Response::new)
    }

    async fn gate<T>(
        &self,
        rpc: Rpc,
        work: impl Future<Output = Result<T, Status>>,
    ) -> Result<T, Status> {
        let Some(serving) = self.serving_token() else {
            return Err(restarting());
        };
        let (unimplemented, latency) = {
            let faults = self.faults();
            (faults.unimplemented(rpc), faults.latency(rpc))
        };
        if let Some(status) = unimplemented {
            return Err(status);
        }
        if let Some(latency) = latency {
            tokio::select! {
                () = serving.cancelled() => return Err(restarting()),
                () = tokio::time::sleep(latency) => {}
            }
        }
        if let Some(status) = self.faults().take_fault(rpc) {
            return Err(status);
        }
        tokio::select! {
            biased;
            () = serving.cancelled() => Err(restarting()),
            result = work => result,
        }
    }

    fn chunk_size(&self) -> usize {
        self.inner.settings.stream_chunk_size
    }

    fn streaming_url(&self, kind: &str) -> String {
        let base = &self.inner.settings.streaming_url;
        self.state().streaming_url(base, kind)
    }
}

#[tonic::async_trait]
impl RuntimeService for FakeRuntime {
    async fn version(
        &self,
        request: Request<VersionRequest>,
    ) -> Result<Response<VersionResponse>, Status> {
        let request = request.into_inner();
        let settings = &self.inner.settings;
        self.call(
            Rpc::Version,
            format!("version={}", request.version),
            async {
                Ok(VersionResponse {
                    version: "0.1.0".to_owned(),
                    runtime_name: settings.runtime_name.clone(),
                    runtime_version: settings.runtime_version.clone(),
                    runtime_api_version: "v1".to_owned(),
                })
            },
        )
        .await
    }

    async fn run_pod_sandbox(
        &self,
        request: Request<RunPodSandboxRequest>,
    ) -> Result<Response<RunPodSandboxResponse>, Status> {
        let request = request.into_inner();
        let metadata = request
            .config
            .as_ref()
            .and_then(|c| c.metadata.clone())
            .unwrap_or_default();
        let summary = format!(
            "pod={}/{} uid={} attempt={}",
            metadata.namespace, metadata.name, metadata.uid, metadata.attempt
        );
        self.call(Rpc::RunPodSandbox, summary, async {
            let now = self.now();
            let id = self
                .state()
                .run_pod_sandbox(request, &self.inner.settings, now)?;
            Ok(RunPodSandboxResponse { pod_sandbox_id: id })
        })
        .await
    }

    async fn stop_pod_sandbox(
        &self,
        request: Request<StopPodSandboxRequest>,
    ) -> Result<Response<StopPodSandboxResponse>, Status> {
        let id = request.into_inner().pod_sandbox_id;
        self.call(Rpc::StopPodSandbox, format!("pod_sandbox_id={id}"), async {
            let now = self.now();
            self.state().stop_pod_sandbox(&id, now)?;
            Ok(StopPodSandboxResponse {})
        })
        .await
    }

    async fn remove_pod_sandbox(
        &self,
        request: Request<RemovePodSandboxRequest>,
    ) -> Result<Response<RemovePodSandboxResponse>, Status> {
        let id = request.into_inner().pod_sandbox_id;
        self.call(
            Rpc::RemovePodSandbox,
            format!("pod_sandbox_id={id}"),
            async {
                let now = self.now();
                self.state().remove_pod_sandbox(&id, now)?;
                Ok(RemovePodSandboxResponse {})
            },
        )
        .await
    }

    async fn pod_sandbox_status(
        &self,
        request: Request<PodSandboxStatusRequest>,
    ) -> Result<Response<PodSandboxStatusResponse>, Status> {
        let request = request.into_inner();
        let summary = format!("pod_sandbox_id={}", request.pod_sandbox_id);
        self.call(Rpc::PodSandboxStatus, summary, async {
            let now = self.now();
            self.state()
                .pod_sandbox_status(&request.pod_sandbox_id, request.verbose, now)
        })
        .await
    }

    async fn list_pod_sandbox(
        &self,
        request: Request<ListPodSandboxRequest>,
    ) -> Result<Response<ListPodSandboxResponse>, Status> {
        let filter = request.into_inner().filter;
        let summary = filter.as_ref().map_or_else(String::new, |f| {
            let state = f.state.map(|s| s.state().as_str_name().to_owned());
            filter_summary(
                &f.id,
                &[("state", state.unwrap_or_default())],
                &f.label_selector,
            )
        });
        self.call(Rpc::ListPodSandbox, summary, async {
            Ok(ListPodSandboxResponse {
                items: self.state().list_pod_sandbox(filter.as_ref()),
            })
        })
        .await
    }

    type StreamPodSandboxesStream = FakeStream<StreamPodSandboxesResponse>;

    async fn stream_pod_sandboxes(
        &self,
        request: Request<StreamPodSandboxesRequest>,
    ) -> Result<Response<Self::StreamPodSandboxesStream>, Status> {
        let filter = request.into_inner().filter;
        let summary = filter.as_ref().map_or_else(String::new, |f| {
            let state = f.state.map(|s| s.state().as_str_name().to_owned());
            filter_summary(
                &f.id,
                &[("state", state.unwrap_or_default())],
                &f.label_selector,
            )
        });
        self.call(Rpc::StreamPodSandboxes, summary, async {
            let items = self.state().list_pod_sandbox(filter.as_ref());
            Ok(chunked(items, self.chunk_size(), |pod_sandboxes| {
                StreamPodSandboxesResponse { pod_sandboxes }
            }))
        })
        .await
    }

    async fn create_container(
        &self,
        request: Request<CreateContainerRequest>,
    ) -> Result<Response<CreateContainerResponse>, Status> {
        let request = request.into_inner();
        let config = request.config.as_ref();
        let summary = format!(
            "pod_sandbox_id={} name={} {}",
            request.pod_sandbox_id,
            config
                .and_then(|c| c.metadata.as_ref())
                .map(|m| m.name.as_str())
                .unwrap_or_default(),
            image_summary(config.and_then(|c| c.image.as_ref())),
        );
        self.call(Rpc::CreateContainer, summary, async {
            let now = self.now();
            let id = self.state().create_container(request, now)?;
            Ok(CreateContainerResponse { container_id: id })
        })
        .await
    }

    async fn start_container(
        &self,
        request: Request<StartContainerRequest>,
    ) -> Result<Response<StartContainerResponse>, Status> {
        let id = request.into_inner().container_id;
        self.call(Rpc::StartContainer, format!("container_id={id}"), async {
            let now = self.now();
            let pending = self.state().start_container(&id, now)?;
            if let Some(pending) = pending {
                self.schedule_exit(pending);
            }
            Ok(StartContainerResponse {})
        })
        .await
    }

    async fn stop_container(
        &self,
        request: Request<StopContainerRequest>,
    ) -> Result<Response<StopContainerResponse>, Status> {
        let request = request.into_inner();
        let summary = format!(
            "container_id={} timeout={}",
            request.container_id, request.timeout
        );
        self.call(Rpc::StopContainer, summary, async {
            let now = self.now();
            self.state()
                .stop_container(&request.container_id, request.timeout, now)?;
            Ok(StopContainerResponse {})
        })
        .await
    }

    async fn remove_container(
        &self,
        request: Request<RemoveContainerRequest>,
    ) -> Result<Response<RemoveContainerResponse>, Status> {
        let id = request.into_inner().container_id;
        self.call(Rpc::RemoveContainer, format!("container_id={id}"), async {
            let now = self.now();
            self.state().remove_container(&id, now)?;
            Ok(RemoveContainerResponse {})
        })
        .await
    }

    async fn list_containers(
        &self,
        request: Request<ListContainersRequest>,
    ) -> Result<Response<ListContainersResponse>, Status> {
        let filter = request.into_inner().filter;
        let summary = filter.as_ref().map_or_else(String::new, |f| {
            let state = f.state.map(|s| s.state().as_str_name().to_owned());
            filter_summary(
                &f.id,
                &[
                    ("pod_sandbox_id", f.pod_sandbox_id.clone()),
                    ("state", state.unwrap_or_default()),
                ],
                &f.label_selector,
            )
        });
        self.call(Rpc::ListContainers, summary, async {
            Ok(ListContainersResponse {
                containers: self.state().list_containers(filter.as_ref()),
            })
        })
        .await
    }

    type StreamContainersStream = FakeStream<StreamContainersResponse>;

    async fn stream_containers(
        &self,
        request: Request<StreamContainersRequest>,
    ) -> Result<Response<Self::StreamContainersStream>, Status> {
        let filter = request.into_inner().filter;
        let summary = filter.as_ref().map_or_else(String::new, |f| {
            let state = f.state.map(|s| s.state().as_str_name().to_owned());
            filter_summary(
                &f.id,
                &[
                    ("pod_sandbox_id", f.pod_sandbox_id.clone()),
                    ("state", state.unwrap_or_default()),
                ],
                &f.label_selector,
            )
        });
        self.call(Rpc::StreamContainers, summary, async {
            let items = self.state().list_containers(filter.as_ref());
            Ok(chunked(items, self.chunk_size(), |containers| {
                StreamContainersResponse { containers }
            }))
        })
        .await
    }

    async fn container_status(
        &self,
        request: Request<ContainerStatusRequest>,
    ) -> Result<Response<ContainerStatusResponse>, Status> {
        let request = request.into_inner();
        let summary = format!("container_id={}", request.container_id);
        self.call(Rpc::ContainerStatus, summary, async {
            self.state()
                .container_status(&request.container_id, request.verbose)
        })
        .await
    }

    async fn update_container_resources(
        &self,
        request: Request<UpdateContainerResourcesRequest>,
    ) -> Result<Response<UpdateContainerResourcesResponse>, Status> {
        let request = request.into_inner();
        let summary = format!("container_id={}", request.container_id);
        self.call(Rpc::UpdateContainerResources, summary, async {
            self.state().update_container_resources(request)?;
            Ok(UpdateContainerResourcesResponse {})
        })
        .await
    }

    async fn reopen_container_log(
        &self,
        request: Request<ReopenContainerLogRequest>,
    ) -> Result<Response<ReopenContainerLogResponse>, Status> {
        let id = request.into_inner().container_id;
        self.call(
            Rpc::ReopenContainerLog,
            format!("container_id={id}"),
            async {
                self.state().check_running(&id)?;
                Ok(ReopenContainerLogResponse {})
            },
        )
        .await
    }

    async fn exec_sync(
        &self,
        request: Request<ExecSyncRequest>,
    ) -> Result<Response<ExecSyncResponse>, Status> {
        let request = request.into_inner();
        let summary = format!(
            "container_id={} cmd={:?} timeout={}",
            request.container_id, request.cmd, request.timeout
        );
        self.call(Rpc::ExecSync, summary, async {
            let result = {
                let state = self.state();
                state.check_running(&request.container_id)?;
                if request.cmd.is_empty() {
                    return Err(Status::invalid_argument("cmd is empty"));
                }
                state.exec_result(&request.cmd)
            };
            let timeout = u64::try_from(request.timeout)
                .ok()
                .filter(|seconds| *seconds > 0)
                .map(Duration::from_secs);
            match timeout {
                Some(timeout) if timeout < result.duration => {
                    tokio::time::sleep(timeout).await;
                    return Err(Status::deadline_exceeded(format!(
                        "command {:?} timed out after {}s",
                        request.cmd, request.timeout
                    )));
                }
                _ if !result.duration.is_zero() => tokio::time::sleep(result.duration).await,
                _ => {}
            }
            Ok(ExecSyncResponse {
                stdout: result.stdout,
                stderr: result.stderr,
                exit_code: result.exit_code,
            })
        })
        .await
    }

    async fn exec(&self, request: Request<ExecRequest>) -> Result<Response<ExecResponse>, Status> {
        let request = request.into_inner();
        let summary = format!(
            "container_id={} cmd={:?}",
            request.container_id, request.cmd
        );
        self.call(Rpc::Exec, summary, async {
            self.state().check_running(&request.container_id)?;
            if request.cmd.is_empty() {
                return Err(Status::invalid_argument("cmd is empty"));
            }
            check_streams(request.tty, request.stdin, request.stdout, request.stderr)?;
            Ok(ExecResponse {
                url: self.streaming_url("exec"),
            })
        })
        .await
    }

    async fn attach(
        &self,
        request: Request<AttachRequest>,
    ) -> Result<Response<AttachResponse>, Status> {
        let request = request.into_inner();
        let summary = format!("container_id={}", request.container_id);
        self.call(Rpc::Attach, summary, async {
            self.state().check_running(&request.container_id)?;
            check_streams(request.tty, request.stdin, request.stdout, request.stderr)?;
            Ok(AttachResponse {
                url: self.streaming_url("attach"),
            })
        })
        .await
    }

    async fn port_forward(
        &self,
        request: Request<PortForwardRequest>,
    ) -> Result<Response<PortForwardResponse>, Status> {
        let request = request.into_inner();
        let summary = format!(
            "pod_sandbox_id={} port={:?}",
            request.pod_sandbox_id, request.port
        );
        self.call(Rpc::PortForward, summary, async {
            self.state().check_port_forward(&request.pod_sandbox_id)?;
            Ok(PortForwardResponse {
                url: self.streaming_url("portforward"),
            })
        })
        .await
    }

    async fn container_stats(
        &self,
        request: Request<ContainerStatsRequest>,
    ) -> Result<Response<ContainerStatsResponse>, Status> {
        let id = request.into_inner().container_id;
        self.call(Rpc::ContainerStats, format!("container_id={id}"), async {
            let now = self.now();
            Ok(ContainerStatsResponse {
                stats: Some(self.state().container_stats(&id, now)?),
            })
        })
        .await
    }

    async fn list_container_stats(
        &self,
        request: Request<ListContainerStatsRequest>,
    ) -> Result<Response<ListContainerStatsResponse>, Status> {
        let filter = request.into_inner().filter;
        let summary = filter.as_ref().map_or_else(String::new, |f| {
            filter_summary(
                &f.id,
                &[("pod_sandbox_id", f.pod_sandbox_id.clone())],
                &f.label_selector,
            )
        });
        self.call(Rpc::ListContainerStats, summary, async {
            let now = self.now();
            Ok(ListContainerStatsResponse {
                stats: self.state().list_container_stats(filter.as_ref(), now),
            })
        })
        .await
    }

    type StreamContainerStatsStream = FakeStream<StreamContainerStatsResponse>;

    async fn stream_container_stats(
        &self,
        request: Request<StreamContainerStatsRequest>,
    ) -> Result<Response<Self::StreamContainerStatsStream>, Status> {
        let filter = request.into_inner().filter;
        let summary = filter.as_ref().map_or_else(String::new, |f| {
            filter_summary(
                &f.id,
                &[("pod_sandbox_id", f.pod_sandbox_id.clone())],
                &f.label_selector,
            )
        });
        self.call(Rpc::StreamContainerStats, summary, async {
            let now = self.now();
            let items = self.state().list_container_stats(filter.as_ref(), now);
            Ok(chunked(items, self.chunk_size(), |container_stats| {
                StreamContainerStatsResponse { container_stats }
            }))
        })
        .await
    }

    async fn pod_sandbox_stats(
        &self,
        request: Request<PodSandboxStatsRequest>,
    ) -> Result<Response<PodSandboxStatsResponse>, Status> {
        let id = request.into_inner().pod_sandbox_id;
        self.call(
            Rpc::PodSandboxStats,
            format!("pod_sandbox_id={id}"),
            async {
                let now = self.now();
                Ok(PodSandboxStatsResponse {
                    stats: Some(self.state().pod_sandbox_stats(&id, now)?),
                })
            },
        )
        .await
    }

    async fn list_pod_sandbox_stats(
        &self,
        request: Request<ListPodSandboxStatsRequest>,
    ) -> Result<Response<ListPodSandboxStatsResponse>, Status> {
        let filter = request.into_inner().filter;
        let summary = filter.as_ref().map_or_else(String::new, |f| {
            filter_summary(&f.id, &[], &f.label_selector)
        });
        self.call(Rpc::ListPodSandboxStats, summary, async {
            let now = self.now();
            Ok(ListPodSandboxStatsResponse {
                stats: self.state().list_pod_sandbox_stats(filter.as_ref(), now),
            })
        })
        .await
    }

    type StreamPodSandboxStatsStream = FakeStream<StreamPodSandboxStatsResponse>;

    async fn stream_pod_sandbox_stats(
        &self,
        request: Request<StreamPodSandboxStatsRequest>,
    ) -> Result<Response<Self::StreamPodSandboxStatsStream>, Status> {
        let filter = request.into_inner().filter;
        let summary = filter.as_ref().map_or_else(String::new, |f| {
            filter_summary(&f.id, &[], &f.label_selector)
        });
        self.call(Rpc::StreamPodSandboxStats, summary, async {
            let now = self.now();
            let items = self.state().list_pod_sandbox_stats(filter.as_ref(), now);
            Ok(chunked(items, self.chunk_size(), |pod_sandbox_stats| {
                StreamPodSandboxStatsResponse { pod_sandbox_stats }
            }))
        })
        .await
    }

    async fn update_runtime_config(
        &self,
        request: Request<UpdateRuntimeConfigRequest>,
    ) -> Result<Response<UpdateRuntimeConfigResponse>, Status> {
        let pod_cidr = request
            .into_inner()
            .runtime_config
            .and_then(|c| c.network_config)
            .map(|n| n.pod_cidr)
            .unwrap_or_default();
        self.call(
            Rpc::UpdateRuntimeConfig,
            format!("pod_cidr={pod_cidr}"),
            async {
                if !pod_cidr.is_empty() {
                    self.state().set_pod_cidr(&pod_cidr);
                }
                Ok(UpdateRuntimeConfigResponse {})
            },
        )
        .await
    }

    async fn status(
        &self,
        request: Request<StatusRequest>,
    ) -> Result<Response<StatusResponse>, Status> {
        let verbose = request.into_inner().verbose;
        self.call(Rpc::Status, format!("verbose={verbose}"), async {
            let settings = &self.inner.settings;
            let (runtime_ready, network_ready, pod_cidr) = {
                let state = self.state();
                (
                    state.runtime_ready,
                    state.network_ready,
                    state.pod_cidr.clone(),
                )
            };
            let condition =
                |kind: &str, ready: bool, reason: &str, message: &str| RuntimeCondition {
                    r#type: kind.to_owned(),
                    status: ready,
                    reason: if ready {
                        String::new()
                    } else {
                        reason.to_owned()
                    },
                    message: if ready {
                        String::new()
                    } else {
                        message.to_owned()
                    },
                };
            let info = if verbose {
                let config = serde_json::json!({
                    "runtimeName": settings.runtime_name,
                    "runtimeVersion": settings.runtime_version,
                    "podCIDR": pod_cidr,
                    "streamServerURL": settings.streaming_url,
                });
                HashMap::from([("config".to_owned(), config.to_string())])
            } else {
                HashMap::new()
            };
            Ok(StatusResponse {
                status: Some(RuntimeStatus {
                    conditions: vec![
                        condition(
                            "RuntimeReady",
                            runtime_ready,
                            "RuntimeNotReady",
                            "fake runtime is not ready",
                        ),
                        condition(
                            "NetworkReady",
                            network_ready,
                            "NetworkPluginNotReady",
                            "Network plugin returns error: cni plugin not initialized",
                        ),
                    ],
                }),
                info,
                runtime_handlers: settings.runtime_handlers.clone(),
                features: settings.features,
            })
        })
        .await
    }

    async fn checkpoint_container(
        &self,
        request: Request<CheckpointContainerRequest>,
    ) -> Result<Response<CheckpointContainerResponse>, Status> {
        let request = request.into_inner();
        let summary = format!(
            "container_id={} location={}",
            request.container_id, request.location
        );
        self.call(Rpc::CheckpointContainer, summary, async {
            self.state().check_running(&request.container_id)?;
            if request.location.is_empty() {
                return Err(Status::invalid_argument("location is empty"));
            }
            // No archive is written: the fake has nothing to checkpoint.
            Ok(CheckpointContainerResponse {})
        })
        .await
    }

    type GetContainerEventsStream = FakeStream<ContainerEventResponse>;

    async fn get_container_events(
        &self,
        request: Request<GetEventsRequest>,
    ) -> Result<Response<Self::GetContainerEventsStream>, Status> {
        let closing = request
            .extensions()
            .get::<ConnectionClosing>()
            .map(|closing| closing.0.clone());
        self.call(Rpc::GetContainerEvents, String::new(), async {
            let events = self.state().subscribe();
            Ok(event_stream(events, closing))
        })
        .await
    }

    async fn list_metric_descriptors(
        &self,
        _request: Request<ListMetricDescriptorsRequest>,
    ) -> Result<Response<ListMetricDescriptorsResponse>, Status> {
        self.call(Rpc::ListMetricDescriptors, String::new(), async {
            Ok(ListMetricDescriptorsResponse {
                descriptors: metric_descriptors(),
            })
        })
        .await
    }

    async fn list_pod_sandbox_metrics(
        &self,
        _request: Request<ListPodSandboxMetricsRequest>,
    ) -> Result<Response<ListPodSandboxMetricsResponse>, Status> {
        self.call(Rpc::ListPodSandboxMetrics, String::new(), async {
            let now = self.now();
            Ok(ListPodSandboxMetricsResponse {
                pod_metrics: self.state().list_pod_sandbox_metrics(now),
            })
        })
        .await
    }

    type StreamPodSandboxMetricsStream = FakeStream<StreamPodSandboxMetricsResponse>;

    async fn stream_pod_sandbox_metrics(
        &self,
        _request: Request<StreamPodSandboxMetricsRequest>,
    ) -> Result<Response<Self::StreamPodSandboxMetricsStream>, Status> {
        self.call(Rpc::StreamPodSandboxMetrics, String::new(), async {
            let now = self.now();
            let items = self.state().list_pod_sandbox_metrics(now);
            Ok(chunked(items, self.chunk_size(), |pod_sandbox_metrics| {
                StreamPodSandboxMetricsResponse {
                    pod_sandbox_metrics,
                }
            }))
        })
        .await
    }

    async fn runtime_config(
        &self,
        _request: Request<RuntimeConfigRequest>,
    ) -> Result<Response<RuntimeConfigResponse>, Status> {
        self.call(Rpc::RuntimeConfig, String::new(), async {
            Ok(RuntimeConfigResponse {
                linux: Some(LinuxRuntimeConfiguration {
                    cgroup_driver: self.inner.settings.cgroup_driver as i32,
                }),
            })
        })
        .await
    }

    async fn update_pod_sandbox_resources(
        &self,
        request: Request<UpdatePodSandboxResourcesRequest>,
    ) -> Result<Response<UpdatePodSandboxResourcesResponse>, Status> {
        let request = request.into_inner();
        let summary = format!("pod_sandbox_id={}", request.pod_sandbox_id);
        self.call(Rpc::UpdatePodSandboxResources, summary, async {
            self.state().update_pod_sandbox_resources(
                &request.pod_sandbox_id,
                request.overhead,
                request.resources,
            )?;
            Ok(UpdatePodSandboxResourcesResponse {})
        })
        .await
    }
}

#[tonic::async_trait]
impl ImageService for FakeRuntime {
    async fn list_images(
        &self,
        request: Request<ListImagesRequest>,
    ) -> Result<Response<ListImagesResponse>, Status> {
        let spec = request.into_inner().filter.and_then(|f| f.image);
        let summary = spec
            .as_ref()
            .filter(|s| !s.image.is_empty())
            .map_or_else(String::new, |s| image_summary(Some(s)));
        self.call(Rpc::ListImages, summary, async {
            Ok(ListImagesResponse {
                images: self.list_images_matching(spec.as_ref())?,
            })
        })
        .await
    }

    type StreamImagesStream = FakeStream<StreamImagesResponse>;

    async fn stream_images(
        &self,
        request: Request<StreamImagesRequest>,
    ) -> Result<Response<Self::StreamImagesStream>, Status> {
        let spec = request.into_inner().filter.and_then(|f| f.image);
        let summary = spec
            .as_ref()
            .filter(|s| !s.image.is_empty())
            .map_or_else(String::new, |s| image_summary(Some(s)));
        self.call(Rpc::StreamImages, summary, async {
            let images = self.list_images_matching(spec.as_ref())?;
            Ok(chunked(images, self.chunk_size(), |images| {
                StreamImagesResponse { images }
            }))
        })
        .await
    }

    async fn image_status(
        &self,
        request: Request<ImageStatusRequest>,
    ) -> Result<Response<ImageStatusResponse>, Status> {
        let request = request.into_inner();
        let summary = image_summary(request.image.as_ref());
        self.call(Rpc::ImageStatus, summary, async {
            let reference = image_reference(request.image.as_ref())?;
            let image = self.state().images.status(&reference);
            let info = match &image {
                Some(image) if request.verbose => {
                    let info = serde_json::json!({
                        "imageSpec": { "config": {}, "os": "linux", "architecture": std::env::consts::ARCH },
                        "id": image.id,
                        "fake": true,
                    });
                    HashMap::from([("info".to_owned(), info.to_string())])
                }
                _ => HashMap::new(),
            };
            Ok(ImageStatusResponse { image, info })
        })
        .await
    }

    async fn pull_image(
        &self,
        request: Request<PullImageRequest>,
    ) -> Result<Response<PullImageResponse>, Status> {
        let request = request.into_inner();
        let summary = image_summary(request.image.as_ref());
        self.call(Rpc::PullImage, summary, async {
            let reference = image_reference(request.image.as_ref())?;
            let pulled = self.state().images.pull(&reference);
            let name = match &reference {
                Reference::Id(id) | Reference::Tag(id) => id.clone(),
                Reference::Digest { repository, digest } => format!("{repository}@{digest}"),
            };
            match pulled {
                Some(image_ref) => Ok(PullImageResponse { image_ref }),
                // containerd's wording for a reference the registry does not have.
                None => Err(Status::not_found(format!(
                    "failed to pull and unpack image {name:?}: failed to resolve reference \
                     {name:?}: {name}: not found"
                ))),
            }
        })
        .await
    }

    async fn remove_image(
        &self,
        request: Request<RemoveImageRequest>,
    ) -> Result<Response<RemoveImageResponse>, Status> {
        let request = request.into_inner();
        let summary = image_summary(request.image.as_ref());
        self.call(Rpc::RemoveImage, summary, async {
            let reference = image_reference(request.image.as_ref())?;
            // Absent images are fine: RemoveImage is idempotent.
            self.state().images.remove(&reference);
            Ok(RemoveImageResponse {})
        })
        .await
    }

    async fn image_fs_info(
        &self,
        _request: Request<ImageFsInfoRequest>,
    ) -> Result<Response<ImageFsInfoResponse>, Status> {
        self.call(Rpc::ImageFsInfo, String::new(), async {
            let now = self.now();
            let (bytes, count) = self.state().images.usage();
            Ok(ImageFsInfoResponse {
                image_filesystems: vec![FilesystemUsage {
                    timestamp: now,
                    fs_id: Some(FilesystemIdentifier {
                        mountpoint: SNAPSHOT_MOUNTPOINT.to_owned(),
                    }),
                    used_bytes: Some(UInt64Value { value: bytes }),
                    // A plausible number of files per image.
                    inodes_used: Some(UInt64Value { value: count * 500 }),
                }],
                // Like containerd without a separate container filesystem.
                container_filesystems: Vec::new(),
            })
        })
        .await
    }
}

impl FakeRuntime {
    fn list_images_matching(
        &self,
        spec: Option<&ImageSpec>,
    ) -> Result<Vec<crate::v1::Image>, Status> {
        match spec.filter(|s| !s.image.is_empty()) {
            None => Ok(self.state().images.list()),
            Some(spec) => {
                let reference = image_reference(Some(spec))?;
                Ok(self.state().images.status(&reference).into_iter().collect())
            }
        }
    }
}
