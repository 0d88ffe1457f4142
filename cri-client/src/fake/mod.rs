//! An in-memory CRI runtime for tests and harnesses: [`FakeRuntime`]
//! implements every RPC of `RuntimeService` and `ImageService` over a small,
//! realistic state machine, with fault injection and a call log.
//!
//! Enabled by the crate feature `fake`. It is a building block for testing
//! code that talks CRI (a kubelet-like agent, a CLI, a controller) without
//! root or containerd; it runs no processes, so it complements rather than
//! replaces tests against a real runtime.
//!
//! # Example
//!
//! Start the fake in-process (no socket), then run a pod sandbox and a
//! container through their lifecycle with the ordinary clients:
//!
//! ```
//! use cri_client::fake::FakeRuntime;
//! use cri_client::v1::{
//!     ContainerConfig, ContainerMetadata, ContainerState, ContainerStatusRequest,
//!     CreateContainerRequest, ImageSpec, ListContainersRequest, PodSandboxConfig,
//!     PodSandboxMetadata, PullImageRequest, RemovePodSandboxRequest, RunPodSandboxRequest,
//!     StartContainerRequest, StopContainerRequest, StopPodSandboxRequest,
//! };
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let fake = FakeRuntime::new();
//!     let channel = fake.in_process_channel().await?;
//!     let mut runtime = cri_client::runtime_client(channel.clone());
//!     let mut images = cri_client::image_client(channel);
//!
//!     // busybox is pullable by default; PullImage answers the image ID.
//!     let image_ref = images
//!         .pull_image(PullImageRequest {
//!             image: Some(ImageSpec { image: "busybox:1.36".to_owned(), ..Default::default() }),
//!             ..Default::default()
//!         })
//!         .await?
//!         .into_inner()
//!         .image_ref;
//!
//!     let pod = PodSandboxConfig {
//!         metadata: Some(PodSandboxMetadata {
//!             name: "web".to_owned(),
//!             uid: "6c1a".to_owned(),
//!             namespace: "default".to_owned(),
//!             attempt: 0,
//!         }),
//!         log_directory: "/var/log/pods/default_web_6c1a".to_owned(),
//!         ..Default::default()
//!     };
//!     let pod_id = runtime
//!         .run_pod_sandbox(RunPodSandboxRequest { config: Some(pod.clone()), ..Default::default() })
//!         .await?
//!         .into_inner()
//!         .pod_sandbox_id;
//!
//!     let container_id = runtime
//!         .create_container(CreateContainerRequest {
//!             pod_sandbox_id: pod_id.clone(),
//!             config: Some(ContainerConfig {
//!                 metadata: Some(ContainerMetadata { name: "app".to_owned(), attempt: 0 }),
//!                 image: Some(ImageSpec { image: image_ref, ..Default::default() }),
//!                 log_path: "app/0.log".to_owned(),
//!                 ..Default::default()
//!             }),
//!             sandbox_config: Some(pod),
//!         })
//!         .await?
//!         .into_inner()
//!         .container_id;
//!     runtime
//!         .start_container(StartContainerRequest { container_id: container_id.clone() })
//!         .await?;
//!
//!     let status = runtime
//!         .container_status(ContainerStatusRequest { container_id: container_id.clone(), verbose: false })
//!         .await?
//!         .into_inner()
//!         .status
//!         .expect("a status");
//!     assert_eq!(status.state(), ContainerState::ContainerRunning);
//!     assert_eq!(status.log_path, "/var/log/pods/default_web_6c1a/app/0.log");
//!
//!     runtime
//!         .stop_container(StopContainerRequest { container_id, timeout: 30 })
//!         .await?;
//!     runtime
//!         .stop_pod_sandbox(StopPodSandboxRequest { pod_sandbox_id: pod_id.clone() })
//!         .await?;
//!     runtime
//!         .remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: pod_id })
//!         .await?;
//!     let left = runtime.list_containers(ListContainersRequest::default()).await?.into_inner();
//!     assert!(left.containers.is_empty());
//!     Ok(())
//! }
//! ```
//!
//! # What it models
//!
//! - **Pod sandboxes**: `RunPodSandbox` makes a `SANDBOX_READY` sandbox with a
//!   fake IP from the pod network (none for host-network pods), its
//!   metadata, labels, annotations and runtime handler. `StopPodSandbox`
//!   kills its running containers (exit 137, `Error`) and makes it
//!   `SANDBOX_NOTREADY`; `RemovePodSandbox` stops it if needed and removes it
//!   with all of its containers.
//! - **Containers**: `CONTAINER_CREATED` → `CONTAINER_RUNNING` →
//!   `CONTAINER_EXITED`, with `created_at`, `started_at`, `finished_at`,
//!   exit code, reason, image, `image_ref` (the repository digest),
//!   `image_id`, `log_path` (the sandbox's log directory joined with the
//!   container's), labels, annotations, mounts and resources. `StopContainer`
//!   with a grace period exits 0 (`Completed`); with `timeout = 0` it kills
//!   (137, `Error`). `RemoveContainer` kills a running container first.
//! - **Images**: references are normalized like containerd's (`busybox` is
//!   `docker.io/library/busybox:latest`), images are found by tag, by
//!   `repository@digest` or by ID. See [`FakeRuntimeBuilder`] for the
//!   preloaded and pullable sets and [`FakeImage`] for adding more.
//! - **Events**: `GetContainerEvents` streams `CREATED`, `STARTED`, `STOPPED`
//!   and `DELETED` events with the sandbox status and the statuses of all the
//!   sandbox's containers. As containerd 1.7+ does, sandboxes produce events
//!   too, with the sandbox ID as `container_id`: `CREATED` and `STARTED` on
//!   `RunPodSandbox`, `STOPPED` and `DELETED` on stop and removal.
//! - **Lists**: the `List*` RPCs apply the CRI filters (ID or unique ID
//!   prefix, state, pod sandbox ID, label selector); the `Stream*` RPCs send
//!   the same items in chunks. Items come in creation order. IDs given to
//!   other RPCs may also be unique prefixes, as with containerd.
//! - **Status** reports `RuntimeReady` and `NetworkReady`
//!   ([`FakeRuntime::set_runtime_ready`], [`FakeRuntime::set_network_ready`]);
//!   while the network is not ready, `RunPodSandbox` fails for sandboxes that
//!   are not on the host network.
//! - **Stats and metrics** are plausible zeros with current timestamps.
//!
//! # Errors
//!
//! | situation | code |
//! |---|---|
//! | missing or empty required field (IDs, config, metadata name/uid/namespace, image, exec command), bad image reference, `tty` and `stderr` both set, no stream requested, ambiguous ID prefix | `InvalidArgument` |
//! | `PodSandboxStatus`, `ContainerStatus`, stats, exec, attach, port-forward, update and reopen of an absent object | `NotFound` |
//! | `CreateContainer` in an absent sandbox, or with an image that is not on the node; `PullImage` of an unknown image | `NotFound` (as containerd) |
//! | `CreateContainer` in a sandbox that is not ready; `StartContainer` of a container that is not `CREATED`; exec, attach, reopen or checkpoint of a container that is not running | `FailedPrecondition` (containerd answers `Unknown`) |
//! | a sandbox or container name already in use | `AlreadyExists` (containerd answers `Unknown`) |
//! | `ExecSync` running longer than its timeout | `DeadlineExceeded` |
//! | any call during a simulated restart | `Unavailable` |
//!
//! `StopPodSandbox`, `RemovePodSandbox`, `StopContainer`, `RemoveContainer`
//! and `RemoveImage` succeed for absent objects, as the CRI contract asks
//! (containerd 1.6 answers `NotFound` for `StopPodSandbox`; kubelet tolerates
//! both). `ImageStatus` of an absent image answers OK with `image = None`.
//!
//! # Fault injection
//!
//! ```
//! use std::time::Duration;
//! use cri_client::fake::{ContainerExit, ExecResult, Fault, FakeRuntime, Rpc};
//! use cri_client::tonic::Code;
//!
//! let fake = FakeRuntime::new();
//! // The 2nd StartContainer fails; every PullImage from the 3rd on fails.
//! fake.inject_fault(Rpc::StartContainer, Fault::on_call(2, Code::Unknown, "failed to create shim task"));
//! fake.inject_fault(Rpc::PullImage, Fault::from_call(3, Code::Unavailable, "registry down"));
//! // ListContainers takes 2 s.
//! fake.set_latency(Rpc::ListContainers, Duration::from_secs(2));
//! // Containers named "worker" are OOM-killed 30 s after each start.
//! fake.exit_on_start("worker", ContainerExit::oom_killed(Duration::from_secs(30)));
//! // A probe command that fails.
//! fake.set_exec_result(["cat", "/tmp/healthy"], ExecResult::new(1).with_stderr("No such file\n"));
//! // RuntimeConfig answers Unimplemented, like an old runtime.
//! fake.set_unimplemented(Rpc::RuntimeConfig);
//! ```
//!
//! [`FakeRuntime::containerd_1_6`] answers `Unimplemented` where containerd
//! 1.6 does. [`FakeRuntime::drop_event_streams`] ends the open event streams
//! with `Unavailable`. [`FakeRuntime::calls`] returns the call log (RPC,
//! request summary, code) for assertions.
//!
//! # Serving
//!
//! - [`FakeRuntime::in_process_channel`]: a [`tonic::transport::Channel`]
//!   connected through an in-memory pipe; no socket, no port.
//! - [`FakeRuntime::serve_unix`]: both services on a Unix socket, for code
//!   that takes an endpoint (`unix:///…`); the [`FakeServerHandle`] stops it
//!   when dropped or on [`FakeServerHandle::shutdown`].
//! - [`FakeRuntime::runtime_service`] and [`FakeRuntime::image_service`]: the
//!   tonic services, to mount in a server of your own.
//!
//! `Exec`, `Attach` and `PortForward` return URLs of the shape a real
//! runtime returns (`http://127.0.0.1:10010/exec/<token>`), but **no
//! streaming server listens there**.
//!
//! # Restarts
//!
//! [`FakeRuntime::begin_restart`] makes the fake stop serving, as if the
//! runtime process died: calls in flight and new calls fail with
//! `Unavailable`, event streams end, Unix sockets disappear and connections
//! close. [`FakeRuntime::finish_restart`] brings it back, optionally with the
//! containers exited ([`AfterRestart`]); a tonic channel reconnects on its
//! next call. [`FakeRuntime::restart`] does both with a pause in between.
//!
//! # Time
//!
//! Timestamps, latencies, exec durations and scheduled exits follow tokio's
//! clock (`tokio::time::Instant`, anchored to the wall clock when the fake is
//! built), so tests can run them instantly and deterministically with
//! `#[tokio::test(start_paused = true)]` on the in-process channel. Over a
//! Unix socket, use real time and bounded polling instead: paused time
//! advances whenever the runtime waits for I/O.

mod config;
mod faults;
mod ids;
mod images;
mod rpc;
mod serve;
mod service;
mod state;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tonic::Status;

use crate::MAX_MESSAGE_SIZE;
use crate::v1::image_service_server::ImageServiceServer;
use crate::v1::runtime_service_server::RuntimeServiceServer;

pub use config::{AfterRestart, ContainerExit, ExecResult, FakeRuntimeBuilder};
pub use faults::{CallRecord, Fault};
pub use images::FakeImage;
pub use rpc::Rpc;
pub use serve::FakeServerHandle;

use config::Settings;
use faults::{FaultBook, unknown_method_message};
use images::ImageStore;
use state::{PendingExit, State};

/// Wall-clock nanoseconds that advance with tokio's clock.
#[derive(Debug)]
struct Clock {
    wall_at_start: i64,
    start: tokio::time::Instant,
}

impl Clock {
    fn new() -> Clock {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        Clock {
            wall_at_start: i64::try_from(wall).unwrap_or(i64::MAX),
            start: tokio::time::Instant::now(),
        }
    }

    /// Nanoseconds since the Unix epoch.
    fn now(&self) -> i64 {
        let elapsed = i64::try_from(self.start.elapsed().as_nanos()).unwrap_or(i64::MAX);
        self.wall_at_start.saturating_add(elapsed)
    }
}

#[derive(Debug)]
struct Inner {
    settings: Settings,
    clock: Clock,
    state: Mutex<State>,
    faults: Mutex<FaultBook>,
    serving: Mutex<serve::Serving>,
    /// Calls that have arrived and not been answered yet.
    in_flight: AtomicUsize,
}

/// An in-memory CRI runtime: implements
/// [`RuntimeService`](crate::v1::runtime_service_server::RuntimeService) and
/// [`ImageService`](crate::v1::image_service_server::ImageService); see the
/// [module documentation](self) for what it models and how to serve it.
///
/// Cheap to clone; clones share the state. Build one with
/// [`FakeRuntime::new`], [`FakeRuntime::containerd_1_6`] or
/// [`FakeRuntime::builder`].
#[derive(Clone, Debug)]
pub struct FakeRuntime {
    inner: Arc<Inner>,
}

impl Default for FakeRuntime {
    fn default() -> Self {
        FakeRuntime::new()
    }
}

impl FakeRuntime {
    /// A fake with the defaults listed at [`FakeRuntimeBuilder`].
    pub fn new() -> FakeRuntime {
        FakeRuntime::builder().build()
    }

    /// A fake that answers `Unimplemented` where containerd 1.6 does; see
    /// [`FakeRuntimeBuilder::containerd_1_6`].
    pub fn containerd_1_6() -> FakeRuntime {
        FakeRuntime::builder().containerd_1_6().build()
    }

    /// Starts building a fake with non-default settings.
    pub fn builder() -> FakeRuntimeBuilder {
        FakeRuntimeBuilder::default()
    }

    fn from_builder(
        settings: Settings,
        pod_network: (std::net::Ipv4Addr, u8),
        preloaded: Vec<FakeImage>,
        pullable: Vec<FakeImage>,
        unimplemented: Vec<(Rpc, String)>,
    ) -> FakeRuntime {
        let mut images = ImageStore::default();
        for image in pullable {
            images.add_pullable(image);
        }
        for image in preloaded {
            images.preload(image);
        }
        let mut faults = FaultBook::default();
        for (rpc, message) in unimplemented {
            faults.set_unimplemented(rpc, message);
        }
        FakeRuntime {
            inner: Arc::new(Inner {
                settings,
                clock: Clock::new(),
                state: Mutex::new(State::new(images, pod_network)),
                faults: Mutex::new(faults),
                serving: Mutex::new(serve::Serving::new()),
                in_flight: AtomicUsize::new(0),
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn faults(&self) -> MutexGuard<'_, FaultBook> {
        self.inner
            .faults
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn now(&self) -> i64 {
        self.inner.clock.now()
    }

    /// The `RuntimeService` of this fake as a tonic service, with kubelet's
    /// 16 MiB message limits, to mount in a server of your own.
    pub fn runtime_service(&self) -> RuntimeServiceServer<FakeRuntime> {
        RuntimeServiceServer::new(self.clone())
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE)
    }

    /// The `ImageService` of this fake as a tonic service, with kubelet's
    /// 16 MiB message limits, to mount in a server of your own.
    pub fn image_service(&self) -> ImageServiceServer<FakeRuntime> {
        ImageServiceServer::new(self.clone())
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE)
    }

    // ----- fault injection -----

    /// Installs a fault on `rpc`; see [`Fault`] for how calls are counted.
    pub fn inject_fault(&self, rpc: Rpc, fault: Fault) {
        self.faults().inject(rpc, fault);
    }

    /// Removes the faults of `rpc`.
    pub fn clear_faults(&self, rpc: Rpc) {
        self.faults().clear_faults(Some(rpc));
    }

    /// Removes every fault.
    pub fn clear_all_faults(&self) {
        self.faults().clear_faults(None);
    }

    /// Delays every call of `rpc` by `latency` (on tokio's clock) before it
    /// is answered; `Duration::ZERO` removes the delay. A restart cuts the
    /// delay short with `Unavailable`.
    pub fn set_latency(&self, rpc: Rpc, latency: Duration) {
        self.faults().set_latency(rpc, latency);
    }

    /// Removes every added latency.
    pub fn clear_latencies(&self) {
        self.faults().clear_latencies();
    }

    /// Makes `rpc` answer `Unimplemented` with grpc-go's message for an
    /// unknown method, as a runtime with an older CRI schema does.
    pub fn set_unimplemented(&self, rpc: Rpc) {
        self.faults()
            .set_unimplemented(rpc, unknown_method_message(rpc));
    }

    /// Makes `rpc` work again after [`set_unimplemented`](Self::set_unimplemented)
    /// or a preset.
    pub fn set_implemented(&self, rpc: Rpc) {
        self.faults().set_implemented(rpc);
    }

    /// Every call answered so far, oldest first.
    pub fn calls(&self) -> Vec<CallRecord> {
        self.faults().calls()
    }

    /// The calls of one RPC, oldest first.
    pub fn calls_to(&self, rpc: Rpc) -> Vec<CallRecord> {
        let mut calls = self.calls();
        calls.retain(|call| call.rpc == rpc);
        calls
    }

    /// How many calls have arrived and are not answered yet (for example
    /// waiting out an injected latency); lets a test wait until a call is
    /// in flight before it [restarts](Self::begin_restart) the fake.
    pub fn calls_in_flight(&self) -> usize {
        self.inner.in_flight.load(Ordering::SeqCst)
    }

    /// Forgets the call log.
    pub fn clear_calls(&self) {
        self.faults().clear_calls();
    }

    // ----- scripted behaviour -----

    /// Sets what `ExecSync` answers for exactly this command line (in any
    /// running container). Other commands exit 0 with no output.
    pub fn set_exec_result<I, S>(&self, cmd: I, result: ExecResult)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let cmd = cmd.into_iter().map(Into::into).collect();
        self.state().exec_results.insert(cmd, result);
    }

    /// Forgets every result set with [`set_exec_result`](Self::set_exec_result).
    pub fn clear_exec_results(&self) {
        self.state().exec_results.clear();
    }

    /// Makes every container named `container_name` (its
    /// `ContainerMetadata.name`, in any sandbox) exit as `exit` says after
    /// each later start. The exit emits a `STOPPED` event. Stopping or
    /// removing the container first cancels it.
    pub fn exit_on_start(&self, container_name: &str, exit: ContainerExit) {
        self.state()
            .exits_on_start
            .insert(container_name.to_owned(), exit);
    }

    /// Cancels [`exit_on_start`](Self::exit_on_start) for later starts of
    /// `container_name`.
    pub fn clear_exit_on_start(&self, container_name: &str) {
        self.state().exits_on_start.remove(container_name);
    }

    /// Makes a running container exit now with `exit_code` and `reason`, as
    /// if its process ended; emits a `STOPPED` event. Returns `false` when no
    /// running container has this ID (or unique ID prefix).
    pub fn exit_container(&self, container_id: &str, exit_code: i32, reason: &str) -> bool {
        let now = self.now();
        self.state()
            .exit_container(container_id, exit_code, reason, "", now)
    }

    /// Sets the `RuntimeReady` condition of `Status` (reason
    /// `RuntimeNotReady` when false).
    pub fn set_runtime_ready(&self, ready: bool) {
        self.state().runtime_ready = ready;
    }

    /// Sets the `NetworkReady` condition of `Status` (reason
    /// `NetworkPluginNotReady` when false, as containerd and CRI-O report).
    /// While it is false, `RunPodSandbox` fails with `FailedPrecondition`
    /// for sandboxes not on the host network.
    pub fn set_network_ready(&self, ready: bool) {
        self.state().network_ready = ready;
    }

    /// Puts an image on the node now, as if pulled out of band.
    pub fn preload_image(&self, image: FakeImage) {
        self.state().images.preload(image);
    }

    /// Makes an image pullable from now on.
    pub fn add_pullable_image(&self, image: FakeImage) {
        self.state().images.add_pullable(image);
    }

    /// The pod CIDR last set by `UpdateRuntimeConfig` (empty before).
    pub fn pod_cidr(&self) -> String {
        self.state().pod_cidr.clone()
    }

    /// Ends every open `GetContainerEvents` stream with `Unavailable`, as
    /// when the connection to the runtime breaks; clients must call again.
    pub fn drop_event_streams(&self) {
        self.state().end_event_streams(&Status::unavailable(
            "fake runtime dropped the event stream",
        ));
    }

    /// How many `GetContainerEvents` streams are open.
    pub fn event_subscribers(&self) -> usize {
        self.state().event_subscribers()
    }

    /// Spawns the timer of a scheduled container exit. The task holds no
    /// strong reference to the fake and ends when the exit happens, or when
    /// the container is stopped, removed or restarted first.
    fn schedule_exit(&self, pending: PendingExit) {
        let inner = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            tokio::select! {
                () = pending.cancel.cancelled() => {}
                () = tokio::time::sleep(pending.exit.after) => {
                    if let Some(inner) = inner.upgrade() {
                        let fake = FakeRuntime { inner };
                        let now = fake.now();
                        fake.state().scheduled_exit(&pending, now);
                    }
                }
            }
        });
    }
}
