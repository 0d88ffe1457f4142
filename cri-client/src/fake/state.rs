//! The state machine of the fake runtime: pod sandboxes, containers, images
//! and event subscribers, and what each CRI call does to them. Everything
//! here is synchronous and takes the current time as an argument; the
//! service layer holds the lock, reads the clock and handles the transport.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tonic::Status;

use crate::v1::{
    Container, ContainerAttributes, ContainerConfig, ContainerEventResponse, ContainerEventType,
    ContainerFilter, ContainerMetrics, ContainerResources, ContainerState, ContainerStats,
    ContainerStatsFilter, ContainerStatus, ContainerStatusResponse, ContainerUser, CpuUsage,
    CreateContainerRequest, FilesystemIdentifier, FilesystemUsage, ImageSpec,
    LinuxContainerResources, LinuxContainerUser, LinuxPodSandboxStats, LinuxPodSandboxStatus,
    MemoryUsage, Metric, MetricDescriptor, MetricType, Namespace, NamespaceMode,
    NetworkInterfaceUsage, NetworkUsage, PodSandbox, PodSandboxAttributes, PodSandboxConfig,
    PodSandboxFilter, PodSandboxMetrics, PodSandboxNetworkStatus, PodSandboxState, PodSandboxStats,
    PodSandboxStatsFilter, PodSandboxStatus, PodSandboxStatusResponse, ProcessUsage,
    RunPodSandboxRequest, SwapUsage, UInt64Value, UpdateContainerResourcesRequest,
};

use super::config::{ContainerExit, ExecResult, Settings};
use super::ids::{object_id, stream_token};
use super::images::{ImageStore, ResolvedImage, parse_reference};

/// Where the fake says its snapshots live (containerd's overlayfs
/// snapshotter directory).
pub(super) const SNAPSHOT_MOUNTPOINT: &str =
    "/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs";

/// Exit code and reason containerd reports for a container whose process
/// vanished (for example across a reboot).
const UNKNOWN_EXIT_CODE: i32 = 255;
const UNKNOWN_EXIT_REASON: &str = "Unknown";

pub(super) type EventSender = mpsc::UnboundedSender<Result<ContainerEventResponse, Status>>;

#[derive(Debug)]
struct Sandbox {
    seq: u64,
    id: String,
    config: PodSandboxConfig,
    runtime_handler: String,
    state: PodSandboxState,
    created_at: i64,
    ip: String,
    name_key: String,
}

#[derive(Debug)]
struct ContainerRecord {
    seq: u64,
    id: String,
    sandbox_id: String,
    config: ContainerConfig,
    image: ResolvedImage,
    state: ContainerState,
    created_at: i64,
    started_at: i64,
    finished_at: i64,
    exit_code: i32,
    reason: String,
    message: String,
    log_path: String,
    resources: Option<LinuxContainerResources>,
    name_key: String,
    /// Bumped on every start, so that a scheduled exit only hits the run it
    /// was scheduled for.
    generation: u64,
    exit_timer: Option<CancellationToken>,
}

impl ContainerRecord {
    fn cancel_exit_timer(&mut self) {
        if let Some(timer) = self.exit_timer.take() {
            timer.cancel();
        }
    }

    /// Moves a running container to `CONTAINER_EXITED`.
    fn exit(&mut self, exit_code: i32, reason: &str, message: &str, now: i64) {
        self.state = ContainerState::ContainerExited;
        self.finished_at = now;
        self.exit_code = exit_code;
        reason.clone_into(&mut self.reason);
        message.clone_into(&mut self.message);
        self.cancel_exit_timer();
    }
}

/// A container exit to schedule after a successful `StartContainer`.
#[derive(Debug)]
pub(super) struct PendingExit {
    pub(super) container_id: String,
    pub(super) generation: u64,
    pub(super) exit: ContainerExit,
    pub(super) cancel: CancellationToken,
}

/// Where a call that needs a running container or a ready sandbox is.
fn not_found(kind: &str, id: &str) -> Status {
    Status::not_found(format!("{kind} {id:?} not found"))
}

fn require_id(field: &str, id: &str) -> Result<(), Status> {
    if id.is_empty() {
        Err(Status::invalid_argument(format!("{field} is empty")))
    } else {
        Ok(())
    }
}

fn labels_match(labels: &HashMap<String, String>, selector: &HashMap<String, String>) -> bool {
    selector
        .iter()
        .all(|(key, value)| labels.get(key) == Some(value))
}

fn u64_value(value: u64) -> Option<UInt64Value> {
    Some(UInt64Value { value })
}

fn state_name(state: ContainerState) -> &'static str {
    state.as_str_name()
}

/// The whole state of the fake runtime.
#[derive(Debug)]
pub(super) struct State {
    next_seq: u64,
    next_token: u64,
    pod_network: (Ipv4Addr, u8),
    next_host: u32,
    sandboxes: HashMap<String, Sandbox>,
    containers: HashMap<String, ContainerRecord>,
    /// Reserved names (`name_namespace_uid_attempt` for sandboxes) → ID.
    names: HashMap<String, String>,
    pub(super) images: ImageStore,
    subscribers: Vec<EventSender>,
    pub(super) exec_results: HashMap<Vec<String>, ExecResult>,
    pub(super) exits_on_start: HashMap<String, ContainerExit>,
    pub(super) runtime_ready: bool,
    pub(super) network_ready: bool,
    pub(super) pod_cidr: String,
}

impl State {
    pub(super) fn new(images: ImageStore, pod_network: (Ipv4Addr, u8)) -> State {
        State {
            next_seq: 0,
            next_token: 0,
            pod_network,
            next_host: 2,
            sandboxes: HashMap::new(),
            containers: HashMap::new(),
            names: HashMap::new(),
            images,
            subscribers: Vec::new(),
            exec_results: HashMap::new(),
            exits_on_start: HashMap::new(),
            runtime_ready: true,
            network_ready: true,
            pod_cidr: String::new(),
        }
    }

    fn seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }

    fn allocate_ip(&mut self) -> String {
        let (network, prefix_len) = self.pod_network;
        let size = 1u32 << (32 - u32::from(prefix_len));
        // Skip the network address, the gateway (.1) and the broadcast
        // address; wrap around in the unlikely case of exhaustion.
        if self.next_host >= size - 1 {
            self.next_host = 2;
        }
        let ip = Ipv4Addr::from(u32::from(network) + self.next_host);
        self.next_host += 1;
        ip.to_string()
    }

    /// Records the pod CIDR from `UpdateRuntimeConfig`; an IPv4 CIDR also
    /// becomes the network later sandboxes get their IPs from.
    pub(super) fn set_pod_cidr(&mut self, cidr: &str) {
        cidr.clone_into(&mut self.pod_cidr);
        let parsed = cidr.split_once('/').and_then(|(ip, len)| {
            let ip: Ipv4Addr = ip.parse().ok()?;
            let len: u8 = len.parse().ok().filter(|len| *len <= 30)?;
            let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            Some((Ipv4Addr::from(u32::from(ip) & mask), len))
        });
        if let Some(network) = parsed
            && network != self.pod_network
        {
            self.pod_network = network;
            self.next_host = 2;
        }
    }

    /// Finds an object by full ID or unique ID prefix, like containerd's
    /// truncated-ID index.
    fn resolve<'a, T>(
        map: &'a HashMap<String, T>,
        kind: &str,
        id: &str,
    ) -> Result<Option<&'a str>, Status> {
        if let Some((key, _)) = map.get_key_value(id) {
            return Ok(Some(key));
        }
        let mut matches = map.keys().filter(|key| key.starts_with(id));
        match (matches.next(), matches.next()) {
            (Some(key), None) => Ok(Some(key)),
            (None, _) => Ok(None),
            (Some(_), Some(_)) => Err(Status::invalid_argument(format!(
                "{kind} ID prefix {id:?} is ambiguous"
            ))),
        }
    }

    fn sandbox_id(&self, id: &str) -> Result<Option<String>, Status> {
        require_id("pod_sandbox_id", id)?;
        Ok(Self::resolve(&self.sandboxes, "pod sandbox", id)?.map(str::to_owned))
    }

    fn container_id(&self, id: &str) -> Result<Option<String>, Status> {
        require_id("container_id", id)?;
        Ok(Self::resolve(&self.containers, "container", id)?.map(str::to_owned))
    }

    fn existing_sandbox(&self, id: &str) -> Result<&Sandbox, Status> {
        let full = self
            .sandbox_id(id)?
            .ok_or_else(|| not_found("pod sandbox", id))?;
        Ok(&self.sandboxes[&full])
    }

    fn existing_container(&self, id: &str) -> Result<&ContainerRecord, Status> {
        let full = self
            .container_id(id)?
            .ok_or_else(|| not_found("container", id))?;
        Ok(&self.containers[&full])
    }

    fn running_container(&self, id: &str) -> Result<&ContainerRecord, Status> {
        let container = self.existing_container(id)?;
        if container.state != ContainerState::ContainerRunning {
            return Err(Status::failed_precondition(format!(
                "container {:?} is in {} state, not running",
                container.id,
                state_name(container.state)
            )));
        }
        Ok(container)
    }

    // ----- events -----

    pub(super) fn subscribe(
        &mut self,
    ) -> mpsc::UnboundedReceiver<Result<ContainerEventResponse, Status>> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.subscribers.push(tx);
        rx
    }

    pub(super) fn event_subscribers(&mut self) -> usize {
        self.subscribers.retain(|tx| !tx.is_closed());
        self.subscribers.len()
    }

    /// Ends every open event stream with `status`.
    pub(super) fn end_event_streams(&mut self, status: &Status) {
        for tx in self.subscribers.drain(..) {
            // A closed receiver needs no goodbye.
            let _ = tx.send(Err(Status::new(status.code(), status.message())));
        }
    }

    fn emit(&mut self, object_id: &str, sandbox_id: &str, kind: ContainerEventType, now: i64) {
        if self.subscribers.is_empty() {
            return;
        }
        let Some(sandbox) = self.sandboxes.get(sandbox_id) else {
            return;
        };
        let event = ContainerEventResponse {
            container_id: object_id.to_owned(),
            container_event_type: kind as i32,
            created_at: now,
            pod_sandbox_status: Some(sandbox_status(sandbox)),
            containers_statuses: self.container_statuses_of(sandbox_id),
        };
        self.subscribers
            .retain(|tx| tx.send(Ok(event.clone())).is_ok());
    }

    fn container_statuses_of(&self, sandbox_id: &str) -> Vec<ContainerStatus> {
        let mut containers: Vec<_> = self
            .containers
            .values()
            .filter(|c| c.sandbox_id == sandbox_id)
            .collect();
        containers.sort_by_key(|c| c.seq);
        containers.into_iter().map(container_status).collect()
    }

    // ----- pod sandboxes -----

    pub(super) fn run_pod_sandbox(
        &mut self,
        request: RunPodSandboxRequest,
        settings: &Settings,
        now: i64,
    ) -> Result<String, Status> {
        let config = request
            .config
            .ok_or_else(|| Status::invalid_argument("pod sandbox config is missing"))?;
        let metadata = config
            .metadata
            .as_ref()
            .ok_or_else(|| Status::invalid_argument("pod sandbox config.metadata is missing"))?;
        for (field, value) in [
            ("name", &metadata.name),
            ("uid", &metadata.uid),
            ("namespace", &metadata.namespace),
        ] {
            if value.is_empty() {
                return Err(Status::invalid_argument(format!(
                    "pod sandbox config.metadata.{field} is empty"
                )));
            }
        }
        let handler = request.runtime_handler;
        if !handler.is_empty()
            && !settings.runtime_handlers.is_empty()
            && !settings.runtime_handlers.iter().any(|h| h.name == handler)
        {
            return Err(Status::invalid_argument(format!(
                "no runtime for {handler:?} is configured"
            )));
        }
        let host_network = config
            .linux
            .as_ref()
            .and_then(|linux| linux.security_context.as_ref())
            .and_then(|sc| sc.namespace_options.as_ref())
            .is_some_and(|ns| ns.network == NamespaceMode::Node as i32);
        if !host_network && !self.network_ready {
            return Err(Status::failed_precondition(
                "failed to setup network for sandbox: cni plugin not initialized",
            ));
        }
        let name_key = format!(
            "{}_{}_{}_{}",
            metadata.name, metadata.namespace, metadata.uid, metadata.attempt
        );
        if let Some(owner) = self.names.get(&name_key) {
            return Err(Status::already_exists(format!(
                "failed to reserve sandbox name {name_key:?}: name is reserved for {owner:?}"
            )));
        }
        let seq = self.seq();
        let id = object_id("sandbox", seq);
        let ip = if host_network {
            String::new()
        } else {
            self.allocate_ip()
        };
        self.names.insert(name_key.clone(), id.clone());
        self.sandboxes.insert(
            id.clone(),
            Sandbox {
                seq,
                id: id.clone(),
                config,
                runtime_handler: handler,
                state: PodSandboxState::SandboxReady,
                created_at: now,
                ip,
                name_key,
            },
        );
        self.emit(&id, &id, ContainerEventType::ContainerCreatedEvent, now);
        self.emit(&id, &id, ContainerEventType::ContainerStartedEvent, now);
        Ok(id)
    }

    /// Kills the running containers of the sandbox and marks it not ready;
    /// a sandbox that is absent or already stopped is fine.
    pub(super) fn stop_pod_sandbox(&mut self, id: &str, now: i64) -> Result<(), Status> {
        let Some(id) = self.sandbox_id(id)? else {
            return Ok(());
        };
        let mut running: Vec<_> = self
            .containers
            .values()
            .filter(|c| c.sandbox_id == id && c.state == ContainerState::ContainerRunning)
            .map(|c| (c.seq, c.id.clone()))
            .collect();
        running.sort();
        for (_, container_id) in running {
            self.kill_container(&container_id, now);
        }
        let sandbox = self.sandboxes.get_mut(&id).expect("resolved above");
        if sandbox.state == PodSandboxState::SandboxReady {
            sandbox.state = PodSandboxState::SandboxNotready;
            self.emit(&id, &id, ContainerEventType::ContainerStoppedEvent, now);
        }
        Ok(())
    }

    /// Stops the sandbox if needed, removes it and all of its containers; an
    /// absent sandbox is fine.
    pub(super) fn remove_pod_sandbox(&mut self, id: &str, now: i64) -> Result<(), Status> {
        let Some(id) = self.sandbox_id(id)? else {
            return Ok(());
        };
        self.stop_pod_sandbox(&id, now)?;
        let mut containers: Vec<_> = self
            .containers
            .values()
            .filter(|c| c.sandbox_id == id)
            .map(|c| (c.seq, c.id.clone()))
            .collect();
        containers.sort();
        for (_, container_id) in containers {
            self.remove_container(&container_id, now)?;
        }
        self.emit(&id, &id, ContainerEventType::ContainerDeletedEvent, now);
        if let Some(sandbox) = self.sandboxes.remove(&id) {
            self.names.remove(&sandbox.name_key);
        }
        Ok(())
    }

    pub(super) fn pod_sandbox_status(
        &self,
        id: &str,
        verbose: bool,
        now: i64,
    ) -> Result<PodSandboxStatusResponse, Status> {
        let sandbox = self.existing_sandbox(id)?;
        let info = if verbose {
            let info = serde_json::json!({
                "pid": 4000 + sandbox.seq,
                "runtimeHandler": sandbox.runtime_handler,
                "runtimeType": "io.containerd.runc.v2",
                "fake": true,
            });
            HashMap::from([("info".to_owned(), info.to_string())])
        } else {
            HashMap::new()
        };
        Ok(PodSandboxStatusResponse {
            status: Some(sandbox_status(sandbox)),
            info,
            containers_statuses: self.container_statuses_of(&sandbox.id),
            timestamp: now,
        })
    }

    fn sorted_sandboxes(&self) -> Vec<&Sandbox> {
        let mut sandboxes: Vec<_> = self.sandboxes.values().collect();
        sandboxes.sort_by_key(|s| s.seq);
        sandboxes
    }

    pub(super) fn list_pod_sandbox(&self, filter: Option<&PodSandboxFilter>) -> Vec<PodSandbox> {
        self.sorted_sandboxes()
            .into_iter()
            .filter(|s| {
                filter.is_none_or(|f| {
                    s.id.starts_with(&f.id)
                        && f.state.as_ref().is_none_or(|v| v.state == s.state as i32)
                        && labels_match(&s.config.labels, &f.label_selector)
                })
            })
            .map(|s| PodSandbox {
                id: s.id.clone(),
                metadata: s.config.metadata.clone(),
                state: s.state as i32,
                created_at: s.created_at,
                labels: s.config.labels.clone(),
                annotations: s.config.annotations.clone(),
                runtime_handler: s.runtime_handler.clone(),
            })
            .collect()
    }

    pub(super) fn check_port_forward(&self, id: &str) -> Result<(), Status> {
        let sandbox = self.existing_sandbox(id)?;
        if sandbox.state != PodSandboxState::SandboxReady {
            return Err(Status::failed_precondition(format!(
                "pod sandbox {:?} is not ready",
                sandbox.id
            )));
        }
        Ok(())
    }

    pub(super) fn update_pod_sandbox_resources(
        &mut self,
        id: &str,
        overhead: Option<LinuxContainerResources>,
        resources: Option<LinuxContainerResources>,
    ) -> Result<(), Status> {
        let id = self.existing_sandbox(id)?.id.clone();
        let sandbox = self.sandboxes.get_mut(&id).expect("resolved above");
        let linux = sandbox.config.linux.get_or_insert_default();
        if overhead.is_some() {
            linux.overhead = overhead;
        }
        if resources.is_some() {
            linux.resources = resources;
        }
        Ok(())
    }

    // ----- containers -----

    /// Creates a container in a ready sandbox.
    ///
    /// An absent sandbox is `NotFound` (what containerd answers); a sandbox
    /// that is not ready is `FailedPrecondition`, the gRPC code for "the
    /// system is not in the state the operation needs" (containerd answers
    /// `Unknown` with a similar message).
    pub(super) fn create_container(
        &mut self,
        request: CreateContainerRequest,
        now: i64,
    ) -> Result<String, Status> {
        let config = request
            .config
            .ok_or_else(|| Status::invalid_argument("container config is missing"))?;
        let name = match &config.metadata {
            None => {
                return Err(Status::invalid_argument(
                    "container config.metadata is missing",
                ));
            }
            Some(metadata) if metadata.name.is_empty() => {
                return Err(Status::invalid_argument(
                    "container config.metadata.name is empty",
                ));
            }
            Some(metadata) => metadata.clone(),
        };
        let image_name = config
            .image
            .as_ref()
            .map(|image| image.image.as_str())
            .unwrap_or_default();
        if image_name.is_empty() {
            return Err(Status::invalid_argument(
                "container config.image.image is empty",
            ));
        }
        let reference = parse_reference(image_name).map_err(Status::invalid_argument)?;
        let sandbox = self.existing_sandbox(&request.pod_sandbox_id)?;
        if sandbox.state != PodSandboxState::SandboxReady {
            return Err(Status::failed_precondition(format!(
                "pod sandbox {:?} is not ready",
                sandbox.id
            )));
        }
        let sandbox_metadata = sandbox.config.metadata.clone().unwrap_or_default();
        let name_key = format!(
            "{}_{}_{}_{}_{}",
            name.name,
            sandbox_metadata.name,
            sandbox_metadata.namespace,
            sandbox_metadata.uid,
            name.attempt
        );
        if let Some(owner) = self.names.get(&name_key) {
            return Err(Status::already_exists(format!(
                "failed to reserve container name {name_key:?}: name is reserved for {owner:?}"
            )));
        }
        let image = self.images.resolve(&reference).ok_or_else(|| {
            Status::not_found(format!("failed to resolve image {image_name:?}: not found"))
        })?;
        let log_path = if config.log_path.is_empty() || sandbox.config.log_directory.is_empty() {
            config.log_path.clone()
        } else {
            format!(
                "{}/{}",
                sandbox.config.log_directory.trim_end_matches('/'),
                config.log_path
            )
        };
        let sandbox_id = sandbox.id.clone();
        let seq = self.seq();
        let id = object_id("container", seq);
        let resources = config
            .linux
            .as_ref()
            .and_then(|linux| linux.resources.clone());
        self.names.insert(name_key.clone(), id.clone());
        self.containers.insert(
            id.clone(),
            ContainerRecord {
                seq,
                id: id.clone(),
                sandbox_id: sandbox_id.clone(),
                config,
                image,
                state: ContainerState::ContainerCreated,
                created_at: now,
                started_at: 0,
                finished_at: 0,
                exit_code: 0,
                reason: String::new(),
                message: String::new(),
                log_path,
                resources,
                name_key,
                generation: 0,
                exit_timer: None,
            },
        );
        self.emit(
            &id,
            &sandbox_id,
            ContainerEventType::ContainerCreatedEvent,
            now,
        );
        Ok(id)
    }

    /// Starts a created container; returns the exit to schedule, if one is
    /// configured for its name.
    pub(super) fn start_container(
        &mut self,
        id: &str,
        now: i64,
    ) -> Result<Option<PendingExit>, Status> {
        let container = self.existing_container(id)?;
        if container.state != ContainerState::ContainerCreated {
            return Err(Status::failed_precondition(format!(
                "container {:?} is in {} state; only a created container can be started",
                container.id,
                state_name(container.state)
            )));
        }
        let sandbox_ready = self
            .sandboxes
            .get(&container.sandbox_id)
            .is_some_and(|s| s.state == PodSandboxState::SandboxReady);
        if !sandbox_ready {
            return Err(Status::failed_precondition(format!(
                "pod sandbox {:?} of container {:?} is not ready",
                container.sandbox_id, container.id
            )));
        }
        let id = container.id.clone();
        let sandbox_id = container.sandbox_id.clone();
        let name = container
            .config
            .metadata
            .as_ref()
            .map(|m| m.name.clone())
            .unwrap_or_default();
        let scheduled = self.exits_on_start.get(&name).cloned();
        let container = self.containers.get_mut(&id).expect("resolved above");
        container.state = ContainerState::ContainerRunning;
        container.started_at = now;
        container.generation += 1;
        let pending = scheduled.map(|exit| {
            let cancel = CancellationToken::new();
            container.exit_timer = Some(cancel.clone());
            PendingExit {
                container_id: id.clone(),
                generation: container.generation,
                exit,
                cancel,
            }
        });
        self.emit(
            &id,
            &sandbox_id,
            ContainerEventType::ContainerStartedEvent,
            now,
        );
        Ok(pending)
    }

    /// The exit a scheduled [`PendingExit`] makes, if the container is still
    /// in the run it was scheduled for.
    pub(super) fn scheduled_exit(&mut self, pending: &PendingExit, now: i64) {
        let Some(container) = self.containers.get_mut(&pending.container_id) else {
            return;
        };
        if container.generation != pending.generation
            || container.state != ContainerState::ContainerRunning
        {
            return;
        }
        let exit = &pending.exit;
        container.exit(exit.exit_code, &exit.reason, &exit.message, now);
        let sandbox_id = container.sandbox_id.clone();
        self.emit(
            &pending.container_id,
            &sandbox_id,
            ContainerEventType::ContainerStoppedEvent,
            now,
        );
    }

    /// Makes a running container exit now. Returns whether it was running.
    pub(super) fn exit_container(
        &mut self,
        id: &str,
        exit_code: i32,
        reason: &str,
        message: &str,
        now: i64,
    ) -> bool {
        let Ok(Some(id)) = self.container_id(id) else {
            return false;
        };
        let container = self.containers.get_mut(&id).expect("resolved above");
        if container.state != ContainerState::ContainerRunning {
            return false;
        }
        container.exit(exit_code, reason, message, now);
        let sandbox_id = container.sandbox_id.clone();
        self.emit(
            &id,
            &sandbox_id,
            ContainerEventType::ContainerStoppedEvent,
            now,
        );
        true
    }

    /// SIGKILL: exit code 137, reason `Error`.
    fn kill_container(&mut self, id: &str, now: i64) {
        self.exit_container(id, 137, "Error", "", now);
    }

    /// Stops a running container: with a grace period (`timeout > 0`) the
    /// fake process honours SIGTERM and exits 0 (`Completed`); with
    /// `timeout == 0` it is killed (137, `Error`). Absent, created and exited
    /// containers are fine and stay as they are.
    pub(super) fn stop_container(
        &mut self,
        id: &str,
        timeout: i64,
        now: i64,
    ) -> Result<(), Status> {
        let Some(id) = self.container_id(id)? else {
            return Ok(());
        };
        if timeout > 0 {
            self.exit_container(&id, 0, "Completed", "", now);
        } else {
            self.kill_container(&id, now);
        }
        Ok(())
    }

    /// Removes a container, killing it first if it runs; an absent container
    /// is fine.
    pub(super) fn remove_container(&mut self, id: &str, now: i64) -> Result<(), Status> {
        let Some(id) = self.container_id(id)? else {
            return Ok(());
        };
        self.kill_container(&id, now);
        let sandbox_id = self.containers[&id].sandbox_id.clone();
        let mut container = self.containers.remove(&id).expect("resolved above");
        container.cancel_exit_timer();
        self.names.remove(&container.name_key);
        self.emit(
            &id,
            &sandbox_id,
            ContainerEventType::ContainerDeletedEvent,
            now,
        );
        Ok(())
    }

    fn sorted_containers(&self) -> Vec<&ContainerRecord> {
        let mut containers: Vec<_> = self.containers.values().collect();
        containers.sort_by_key(|c| c.seq);
        containers
    }

    pub(super) fn list_containers(&self, filter: Option<&ContainerFilter>) -> Vec<Container> {
        self.sorted_containers()
            .into_iter()
            .filter(|c| {
                filter.is_none_or(|f| {
                    c.id.starts_with(&f.id)
                        && c.sandbox_id.starts_with(&f.pod_sandbox_id)
                        && f.state.as_ref().is_none_or(|v| v.state == c.state as i32)
                        && labels_match(&c.config.labels, &f.label_selector)
                })
            })
            .map(|c| Container {
                id: c.id.clone(),
                pod_sandbox_id: c.sandbox_id.clone(),
                metadata: c.config.metadata.clone(),
                image: c.config.image.clone(),
                image_ref: c.image.id.clone(),
                state: c.state as i32,
                created_at: c.created_at,
                labels: c.config.labels.clone(),
                annotations: c.config.annotations.clone(),
                image_id: c.image.id.clone(),
            })
            .collect()
    }

    pub(super) fn container_status(
        &self,
        id: &str,
        verbose: bool,
    ) -> Result<ContainerStatusResponse, Status> {
        let container = self.existing_container(id)?;
        let info = if verbose {
            let info = serde_json::json!({
                "sandboxID": container.sandbox_id,
                "pid": if container.state == ContainerState::ContainerRunning {
                    5000 + container.seq
                } else {
                    0
                },
                "runtimeType": "io.containerd.runc.v2",
                "fake": true,
            });
            HashMap::from([("info".to_owned(), info.to_string())])
        } else {
            HashMap::new()
        };
        Ok(ContainerStatusResponse {
            status: Some(container_status(container)),
            info,
        })
    }

    /// Updates the recorded resources of a created or running container.
    pub(super) fn update_container_resources(
        &mut self,
        request: UpdateContainerResourcesRequest,
    ) -> Result<(), Status> {
        let container = self.existing_container(&request.container_id)?;
        if container.state == ContainerState::ContainerExited {
            return Err(Status::failed_precondition(format!(
                "container {:?} has exited; its resources cannot be updated",
                container.id
            )));
        }
        let id = container.id.clone();
        let container = self.containers.get_mut(&id).expect("resolved above");
        if let Some(linux) = request.linux {
            container.resources = Some(linux);
        }
        container.config.annotations.extend(request.annotations);
        Ok(())
    }

    pub(super) fn check_running(&self, id: &str) -> Result<(), Status> {
        self.running_container(id).map(|_| ())
    }

    pub(super) fn exec_result(&self, cmd: &[String]) -> ExecResult {
        self.exec_results.get(cmd).cloned().unwrap_or_default()
    }

    pub(super) fn streaming_url(&mut self, base: &str, kind: &str) -> String {
        self.next_token += 1;
        format!("{base}/{kind}/{}", stream_token(self.next_token))
    }

    /// After a restart that lost the processes: running containers exit
    /// with 255/`Unknown`, sandboxes become not ready. Emits nothing: event
    /// streams do not survive a restart.
    pub(super) fn lose_processes(&mut self, now: i64) {
        for container in self.containers.values_mut() {
            if container.state == ContainerState::ContainerRunning {
                container.exit(UNKNOWN_EXIT_CODE, UNKNOWN_EXIT_REASON, "", now);
            }
        }
        for sandbox in self.sandboxes.values_mut() {
            sandbox.state = PodSandboxState::SandboxNotready;
        }
    }

    // ----- stats and metrics -----

    pub(super) fn container_stats(&self, id: &str, now: i64) -> Result<ContainerStats, Status> {
        Ok(container_stats(self.existing_container(id)?, now))
    }

    pub(super) fn list_container_stats(
        &self,
        filter: Option<&ContainerStatsFilter>,
        now: i64,
    ) -> Vec<ContainerStats> {
        self.sorted_containers()
            .into_iter()
            .filter(|c| {
                filter.is_none_or(|f| {
                    c.id.starts_with(&f.id)
                        && c.sandbox_id.starts_with(&f.pod_sandbox_id)
                        && labels_match(&c.config.labels, &f.label_selector)
                })
            })
            .map(|c| container_stats(c, now))
            .collect()
    }

    fn sandbox_stats(&self, sandbox: &Sandbox, now: i64) -> PodSandboxStats {
        let containers: Vec<_> = self
            .sorted_containers()
            .into_iter()
            .filter(|c| c.sandbox_id == sandbox.id)
            .collect();
        let running = containers
            .iter()
            .filter(|c| c.state == ContainerState::ContainerRunning)
            .count() as u64;
        let interface = NetworkInterfaceUsage {
            name: "eth0".to_owned(),
            rx_bytes: u64_value(0),
            rx_errors: u64_value(0),
            tx_bytes: u64_value(0),
            tx_errors: u64_value(0),
        };
        PodSandboxStats {
            attributes: Some(PodSandboxAttributes {
                id: sandbox.id.clone(),
                metadata: sandbox.config.metadata.clone(),
                labels: sandbox.config.labels.clone(),
                annotations: sandbox.config.annotations.clone(),
            }),
            linux: Some(LinuxPodSandboxStats {
                cpu: Some(cpu_usage(now)),
                memory: Some(memory_usage(now)),
                network: Some(NetworkUsage {
                    timestamp: now,
                    default_interface: Some(interface.clone()),
                    interfaces: vec![interface],
                }),
                process: Some(ProcessUsage {
                    timestamp: now,
                    // The pause process plus one per running container.
                    process_count: u64_value(
                        running + u64::from(sandbox.state == PodSandboxState::SandboxReady),
                    ),
                }),
                containers: containers.iter().map(|c| container_stats(c, now)).collect(),
                io: None,
            }),
            windows: None,
        }
    }

    pub(super) fn pod_sandbox_stats(&self, id: &str, now: i64) -> Result<PodSandboxStats, Status> {
        Ok(self.sandbox_stats(self.existing_sandbox(id)?, now))
    }

    /// Stats of the ready sandboxes that match (containerd skips sandboxes
    /// that are not ready).
    pub(super) fn list_pod_sandbox_stats(
        &self,
        filter: Option<&PodSandboxStatsFilter>,
        now: i64,
    ) -> Vec<PodSandboxStats> {
        self.sorted_sandboxes()
            .into_iter()
            .filter(|s| s.state == PodSandboxState::SandboxReady)
            .filter(|s| {
                filter.is_none_or(|f| {
                    s.id.starts_with(&f.id) && labels_match(&s.config.labels, &f.label_selector)
                })
            })
            .map(|s| self.sandbox_stats(s, now))
            .collect()
    }

    /// Metrics of the running containers of every ready sandbox, all zero.
    pub(super) fn list_pod_sandbox_metrics(&self, now: i64) -> Vec<PodSandboxMetrics> {
        self.sorted_sandboxes()
            .into_iter()
            .filter(|s| s.state == PodSandboxState::SandboxReady)
            .map(|s| {
                let metadata = s.config.metadata.clone().unwrap_or_default();
                let container_metrics = self
                    .sorted_containers()
                    .into_iter()
                    .filter(|c| c.sandbox_id == s.id && c.state == ContainerState::ContainerRunning)
                    .map(|c| {
                        let name = c
                            .config
                            .metadata
                            .as_ref()
                            .map(|m| m.name.clone())
                            .unwrap_or_default();
                        let labels = vec![name, metadata.name.clone(), metadata.namespace.clone()];
                        ContainerMetrics {
                            container_id: c.id.clone(),
                            metrics: metric_descriptors()
                                .into_iter()
                                .zip([MetricType::Counter, MetricType::Gauge])
                                .map(|(descriptor, metric_type)| Metric {
                                    name: descriptor.name,
                                    timestamp: now,
                                    metric_type: metric_type as i32,
                                    label_values: labels.clone(),
                                    value: u64_value(0),
                                })
                                .collect(),
                        }
                    })
                    .collect();
                PodSandboxMetrics {
                    pod_sandbox_id: s.id.clone(),
                    metrics: Vec::new(),
                    container_metrics,
                }
            })
            .collect()
    }
}

/// The metrics `ListPodSandboxMetrics` reports (cAdvisor names).
pub(super) fn metric_descriptors() -> Vec<MetricDescriptor> {
    let label_keys = || {
        ["container", "pod", "namespace"]
            .map(str::to_owned)
            .to_vec()
    };
    vec![
        MetricDescriptor {
            name: "container_cpu_usage_seconds_total".to_owned(),
            help: "Cumulative cpu time consumed in seconds.".to_owned(),
            label_keys: label_keys(),
        },
        MetricDescriptor {
            name: "container_memory_working_set_bytes".to_owned(),
            help: "Current working set in bytes.".to_owned(),
            label_keys: label_keys(),
        },
    ]
}

fn sandbox_status(sandbox: &Sandbox) -> PodSandboxStatus {
    let namespace_options = sandbox
        .config
        .linux
        .as_ref()
        .and_then(|linux| linux.security_context.as_ref())
        .and_then(|sc| sc.namespace_options.clone())
        .unwrap_or_default();
    PodSandboxStatus {
        id: sandbox.id.clone(),
        metadata: sandbox.config.metadata.clone(),
        state: sandbox.state as i32,
        created_at: sandbox.created_at,
        network: Some(PodSandboxNetworkStatus {
            ip: sandbox.ip.clone(),
            additional_ips: Vec::new(),
        }),
        linux: Some(LinuxPodSandboxStatus {
            namespaces: Some(Namespace {
                options: Some(namespace_options),
            }),
        }),
        labels: sandbox.config.labels.clone(),
        annotations: sandbox.config.annotations.clone(),
        runtime_handler: sandbox.runtime_handler.clone(),
    }
}

fn container_status(c: &ContainerRecord) -> ContainerStatus {
    let security = c
        .config
        .linux
        .as_ref()
        .and_then(|linux| linux.security_context.as_ref());
    let user = LinuxContainerUser {
        uid: security
            .and_then(|sc| sc.run_as_user.as_ref())
            .map_or(0, |v| v.value),
        gid: security
            .and_then(|sc| sc.run_as_group.as_ref())
            .map_or(0, |v| v.value),
        supplemental_groups: security
            .map(|sc| sc.supplemental_groups.clone())
            .unwrap_or_default(),
    };
    let requested = c.config.image.clone().unwrap_or_default();
    ContainerStatus {
        id: c.id.clone(),
        metadata: c.config.metadata.clone(),
        state: c.state as i32,
        created_at: c.created_at,
        started_at: c.started_at,
        finished_at: c.finished_at,
        exit_code: c.exit_code,
        image: Some(ImageSpec {
            image: c.image.display.clone(),
            annotations: requested.annotations,
            user_specified_image: requested.user_specified_image,
            runtime_handler: requested.runtime_handler,
            image_ref: String::new(),
        }),
        image_ref: c.image.repo_digest.clone(),
        reason: c.reason.clone(),
        message: c.message.clone(),
        labels: c.config.labels.clone(),
        annotations: c.config.annotations.clone(),
        mounts: c.config.mounts.clone(),
        log_path: c.log_path.clone(),
        resources: c.resources.clone().map(|linux| ContainerResources {
            linux: Some(linux),
            windows: None,
        }),
        image_id: c.image.id.clone(),
        user: Some(ContainerUser { linux: Some(user) }),
        stop_signal: c.config.stop_signal,
    }
}

fn cpu_usage(now: i64) -> CpuUsage {
    CpuUsage {
        timestamp: now,
        usage_core_nano_seconds: u64_value(0),
        usage_nano_cores: u64_value(0),
        psi: None,
    }
}

fn memory_usage(now: i64) -> MemoryUsage {
    MemoryUsage {
        timestamp: now,
        working_set_bytes: u64_value(0),
        available_bytes: u64_value(0),
        usage_bytes: u64_value(0),
        rss_bytes: u64_value(0),
        page_faults: u64_value(0),
        major_page_faults: u64_value(0),
        psi: None,
    }
}

fn container_stats(c: &ContainerRecord, now: i64) -> ContainerStats {
    ContainerStats {
        attributes: Some(ContainerAttributes {
            id: c.id.clone(),
            metadata: c.config.metadata.clone(),
            labels: c.config.labels.clone(),
            annotations: c.config.annotations.clone(),
        }),
        cpu: Some(cpu_usage(now)),
        memory: Some(memory_usage(now)),
        writable_layer: Some(FilesystemUsage {
            timestamp: now,
            fs_id: Some(FilesystemIdentifier {
                mountpoint: SNAPSHOT_MOUNTPOINT.to_owned(),
            }),
            used_bytes: u64_value(0),
            inodes_used: u64_value(0),
        }),
        swap: Some(SwapUsage {
            timestamp: now,
            swap_available_bytes: u64_value(0),
            swap_usage_bytes: u64_value(0),
        }),
        io: None,
    }
}
