//! The probe manager: one worker task per (pod, container, probe kind), fed with pod
//! status by the embedder, publishing results as a stream of changes and as a
//! current-state view (the kubelet's `prober_manager.go` and `results_manager.go`).
//!
//! # Use
//!
//! ```
//! # use std::sync::Arc;
//! # use std::time::{Duration, SystemTime};
//! use pod_probes::{
//!     ContainerProbes, ContainerStatus, PodPhase, PodProbes, PodStatus, ProbeError,
//!     ProbeHandler, ProbeKind, ProbeManager, ProbeOutcome, ProbeSpec, ProbeState,
//!     ProbeTarget, ProbeTiming, Prober,
//! };
//!
//! /// A prober that always passes (the real one speaks HTTP, TCP, gRPC and exec).
//! struct AlwaysUp;
//!
//! #[async_trait::async_trait]
//! impl Prober for AlwaysUp {
//!     async fn probe(
//!         &self,
//!         _kind: ProbeKind,
//!         _spec: &ProbeSpec,
//!         _target: &ProbeTarget,
//!     ) -> Result<ProbeOutcome, ProbeError> {
//!         Ok(ProbeOutcome::success("ok"))
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let (manager, mut updates) = ProbeManager::builder(Arc::new(AlwaysUp)).build()?;
//!
//! let readiness = ProbeSpec {
//!     handler: ProbeHandler::TcpSocket { host: None, port: pod_probes::PortRef::Number(8080) },
//!     timing: ProbeTiming::default(),
//! };
//! manager.add_pod(
//!     PodProbes::new("8c5f0e1e-uid").container(ContainerProbes::new("web").readiness(readiness)),
//! )?;
//! manager.set_pod_status(
//!     "8c5f0e1e-uid",
//!     PodStatus::new(PodPhase::Running).container(ContainerStatus::running(
//!         "web",
//!         "containerd://abc",
//!         SystemTime::now(),
//!     )),
//! );
//!
//! // Not ready until the first probe passes, then ready.
//! let first = updates.recv().await.unwrap();
//! assert_eq!((first.kind, first.result), (ProbeKind::Readiness, ProbeState::Failure));
//! let second = updates.recv().await.unwrap();
//! assert_eq!(second.result, ProbeState::Success);
//! assert_eq!(manager.readiness("8c5f0e1e-uid", "web"), Some(ProbeState::Success));
//!
//! manager.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! # Design (for many workers)
//!
//! - One tokio task per worker, as the kubelet has one goroutine per worker. Its state
//!   is the small [`WorkerState`](crate::worker::WorkerState) plus a cached
//!   [`ProbeTarget`]; the probe spec is shared with the pod, not copied.
//! - The tick path takes no global lock: a worker locks only its own pod's mutex, twice
//!   per probe (to look at the status and to record), never across an `.await`. The
//!   global pod map is locked only by the embedder's calls.
//! - No allocation per idle tick; a probe allocates only what the [`Prober`] does
//!   (its boxed future and output) and, on a change of result, the update.
//! - Updates go through a bounded channel: a slow consumer slows the workers that have
//!   something to publish (as the kubelet's blocking channel does) instead of growing
//!   memory. Dropping the [`ResultUpdates`] is fine; the current-state view still works.

mod pod;
mod task;

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::task::{Context, Poll};
use std::time::SystemTime;

use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use self::pod::{ContainerEntry, PodShared, kind_index};
use self::task::{LiveGuard, LiveWorkers, WorkerEnv, WorkerTask};
use crate::clock::{Clock, RandomSource, SeededRandom, SystemClock};
use crate::prober::Prober;
use crate::spec::{ContainerPort, ProbeSpec};
use crate::timing::{ProbeKind, ValidationError};
use crate::worker::{ContainerState, PodPhase, ProbeState, ResultCause};

#[cfg(doc)]
use crate::spec::ProbeTarget;

/// The default capacity of the updates channel.
pub const DEFAULT_UPDATES_CAPACITY: usize = 1024;

/// Why the manager refused a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ManagerError {
    /// A probe's timing is invalid (the message names the probe kind and field).
    #[error("pod {pod_uid}, container {container:?}: {error}")]
    InvalidProbe {
        /// The pod's UID.
        pod_uid: String,
        /// The container's name.
        container: String,
        /// Which probe.
        kind: ProbeKind,
        /// What is wrong with it.
        error: ValidationError,
    },
    /// Two containers of a pod have the same name.
    #[error("pod {pod_uid}: container name {container:?} is used more than once")]
    DuplicateContainer {
        /// The pod's UID.
        pod_uid: String,
        /// The repeated name.
        container: String,
    },
    /// The manager has been shut down.
    #[error("the probe manager has been shut down")]
    ShutDown,
    /// [`ProbeManagerBuilder::build`] was called outside a tokio runtime.
    #[error("the probe manager must be built inside a tokio runtime")]
    NoRuntime,
}

/// The probes of one pod, as the embedder adds them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodProbes {
    /// The pod's UID (`metadata.uid`).
    pub pod_uid: String,
    /// Its containers (and restartable init containers) with probes.
    pub containers: Vec<ContainerProbes>,
}

impl PodProbes {
    /// A pod with no containers yet.
    pub fn new(pod_uid: impl Into<String>) -> Self {
        Self {
            pod_uid: pod_uid.into(),
            containers: Vec::new(),
        }
    }

    /// Add a container.
    #[must_use]
    pub fn container(mut self, container: ContainerProbes) -> Self {
        self.containers.push(container);
        self
    }
}

/// One container's probes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerProbes {
    /// The container's name.
    pub name: String,
    /// Its ports (for probes that use named ports).
    pub ports: Vec<ContainerPort>,
    /// `livenessProbe`.
    pub liveness: Option<ProbeSpec>,
    /// `readinessProbe`.
    pub readiness: Option<ProbeSpec>,
    /// `startupProbe`.
    pub startup: Option<ProbeSpec>,
}

impl ContainerProbes {
    /// A container with no probes yet.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ports: Vec::new(),
            liveness: None,
            readiness: None,
            startup: None,
        }
    }

    /// Set the container's ports.
    #[must_use]
    pub fn ports(mut self, ports: Vec<ContainerPort>) -> Self {
        self.ports = ports;
        self
    }

    /// Set the liveness probe.
    #[must_use]
    pub fn liveness(mut self, spec: ProbeSpec) -> Self {
        self.liveness = Some(spec);
        self
    }

    /// Set the readiness probe.
    #[must_use]
    pub fn readiness(mut self, spec: ProbeSpec) -> Self {
        self.readiness = Some(spec);
        self
    }

    /// Set the startup probe.
    #[must_use]
    pub fn startup(mut self, spec: ProbeSpec) -> Self {
        self.startup = Some(spec);
        self
    }

    /// The probe of `kind`, if set.
    pub fn probe(&self, kind: ProbeKind) -> Option<&ProbeSpec> {
        match kind {
            ProbeKind::Liveness => self.liveness.as_ref(),
            ProbeKind::Readiness => self.readiness.as_ref(),
            ProbeKind::Startup => self.startup.as_ref(),
        }
    }
}

/// What the workers need of a pod's status; the embedder sends a new one whenever
/// it changes ([`ProbeManager::set_pod_status`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PodStatus {
    /// `status.phase`; `Succeeded` and `Failed` stop the pod's workers.
    pub phase: PodPhase,
    /// `metadata.deletionTimestamp` is set: liveness and startup report success and stop.
    pub deleting: bool,
    /// `status.podIP`, the default host of HTTP, TCP and gRPC probes.
    pub pod_ip: Option<IpAddr>,
    /// The containers' statuses; containers not listed count as not created.
    pub containers: Vec<ContainerStatus>,
}

impl PodStatus {
    /// A status in `phase` with no containers.
    pub fn new(phase: PodPhase) -> Self {
        Self {
            phase,
            ..Self::default()
        }
    }

    /// Set the pod IP.
    #[must_use]
    pub fn pod_ip(mut self, ip: IpAddr) -> Self {
        self.pod_ip = Some(ip);
        self
    }

    /// Mark the pod as being deleted.
    #[must_use]
    pub fn deleting(mut self, deleting: bool) -> Self {
        self.deleting = deleting;
        self
    }

    /// Add a container's status.
    #[must_use]
    pub fn container(mut self, status: ContainerStatus) -> Self {
        self.containers.push(status);
        self
    }
}

/// What the workers need of one container's status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerStatus {
    /// The container's name.
    pub name: String,
    /// The runtime's container ID; `None` (or empty) while not created. A new ID is a
    /// new container: results reset and a hold is lifted.
    pub container_id: Option<String>,
    /// Running (since when), waiting or terminated.
    pub state: ContainerState,
    /// Whether the container is restarted if it exits (restart policy, restart rules,
    /// sidecar); when it has terminated and will not be, its workers stop.
    pub may_restart: bool,
    /// `started` as last reported to the API server, when known. Only consulted while
    /// there is no startup result for the container (after an agent restart).
    pub started: Option<bool>,
}

impl ContainerStatus {
    /// A running container.
    pub fn running(
        name: impl Into<String>,
        container_id: impl Into<String>,
        started_at: SystemTime,
    ) -> Self {
        Self {
            name: name.into(),
            container_id: Some(container_id.into()),
            state: ContainerState::Running { started_at },
            may_restart: true,
            started: None,
        }
    }

    /// A created container that is not running yet.
    pub fn waiting(name: impl Into<String>, container_id: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            container_id: Some(container_id.into()),
            state: ContainerState::Waiting,
            may_restart: true,
            started: None,
        }
    }

    /// An exited container.
    pub fn terminated(name: impl Into<String>, container_id: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            container_id: Some(container_id.into()),
            state: ContainerState::Terminated,
            may_restart: true,
            started: None,
        }
    }

    /// Whether it will be restarted if it exits (default `true`).
    #[must_use]
    pub fn may_restart(mut self, may_restart: bool) -> Self {
        self.may_restart = may_restart;
        self
    }

    /// The `started` value last reported to the API server.
    #[must_use]
    pub fn started(mut self, started: bool) -> Self {
        self.started = Some(started);
        self
    }
}

/// A change of a probe's result for a container (sent only when the result changes,
/// as the kubelet's results manager does), also used for the current-state view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultUpdate {
    /// The pod's UID.
    pub pod_uid: Arc<str>,
    /// The container's name.
    pub container_name: Arc<str>,
    /// The container the result is about.
    pub container_id: Arc<str>,
    /// Which probe.
    pub kind: ProbeKind,
    /// The new result.
    pub result: ProbeState,
    /// Why it was published.
    pub cause: ResultCause,
    /// The output of the attempt that published it ([`ResultCause::Probe`]); empty
    /// otherwise.
    pub output: String,
    /// For a liveness or startup `Failure`: the probe's
    /// `terminationGracePeriodSeconds`, to use when killing the container instead of
    /// the pod's. `None` otherwise, or when the probe sets none.
    pub termination_grace_period_seconds: Option<i64>,
}

/// The stream of [`ResultUpdate`]s of a manager. Ends when the manager is dropped (or
/// shut down) and all its workers have exited.
#[derive(Debug)]
pub struct ResultUpdates {
    rx: mpsc::Receiver<ResultUpdate>,
}

impl ResultUpdates {
    /// The next update; `None` once the stream has ended.
    pub async fn recv(&mut self) -> Option<ResultUpdate> {
        self.rx.recv().await
    }

    /// The next update if one is waiting.
    pub fn try_recv(&mut self) -> Option<ResultUpdate> {
        self.rx.try_recv().ok()
    }
}

impl futures::Stream for ResultUpdates {
    type Item = ResultUpdate;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<ResultUpdate>> {
        self.rx.poll_recv(cx)
    }
}

/// Builds a [`ProbeManager`]; from [`ProbeManager::builder`].
pub struct ProbeManagerBuilder {
    prober: Arc<dyn Prober>,
    clock: Arc<dyn Clock>,
    random: Option<Arc<dyn RandomSource>>,
    agent_started_at: Option<SystemTime>,
    updates_capacity: usize,
}

impl fmt::Debug for ProbeManagerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProbeManagerBuilder")
            .field("clock", &self.clock)
            .field("random", &self.random)
            .field("agent_started_at", &self.agent_started_at)
            .field("updates_capacity", &self.updates_capacity)
            .finish_non_exhaustive()
    }
}

impl ProbeManagerBuilder {
    /// The wall clock (default [`SystemClock`]; tests use
    /// [`TokioClock`](crate::clock::TokioClock) with paused tokio time).
    #[must_use]
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Where first-probe jitter comes from (default: [`SeededRandom`] seeded from the
    /// wall clock).
    #[must_use]
    pub fn random_source(mut self, random: Arc<dyn RandomSource>) -> Self {
        self.random = Some(random);
        self
    }

    /// Seed the default jitter source, for reproducible runs.
    #[must_use]
    pub fn jitter_seed(mut self, seed: u64) -> Self {
        self.random = Some(Arc::new(SeededRandom::new(seed)));
        self
    }

    /// When the agent started (default: when [`build`](Self::build) runs, by the
    /// clock). Workers created within one period of it jitter their first probe, and
    /// containers running since before it keep their results.
    #[must_use]
    pub fn agent_started_at(mut self, at: SystemTime) -> Self {
        self.agent_started_at = Some(at);
        self
    }

    /// The capacity of the updates channel (default [`DEFAULT_UPDATES_CAPACITY`];
    /// at least 1).
    #[must_use]
    pub fn updates_capacity(mut self, capacity: usize) -> Self {
        self.updates_capacity = capacity.max(1);
        self
    }

    /// Build the manager and its update stream. Must run inside a tokio runtime,
    /// which the workers are spawned on.
    pub fn build(self) -> Result<(ProbeManager, ResultUpdates), ManagerError> {
        let runtime = Handle::try_current().map_err(|_| ManagerError::NoRuntime)?;
        let (tx, rx) = mpsc::channel(self.updates_capacity);
        let agent_started_at = self.agent_started_at.unwrap_or_else(|| self.clock.now());
        let env = Arc::new(WorkerEnv {
            prober: self.prober,
            clock: self.clock,
            random: self
                .random
                .unwrap_or_else(|| Arc::new(SeededRandom::from_time())),
            agent_started_at,
            updates: tx,
            live: LiveWorkers::default(),
        });
        let inner = Arc::new(Inner {
            env,
            pods: RwLock::new(HashMap::new()),
            root: CancellationToken::new(),
            closed: AtomicBool::new(false),
            runtime,
        });
        Ok((ProbeManager { inner }, ResultUpdates { rx }))
    }
}

/// Runs liveness, readiness and startup probes with the kubelet's semantics.
///
/// Cloning gives another handle to the same manager. When the last handle is dropped
/// every worker is cancelled; [`shutdown`](Self::shutdown) does the same and waits
/// for them to finish.
#[derive(Debug, Clone)]
pub struct ProbeManager {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    env: Arc<WorkerEnv>,
    pods: RwLock<HashMap<Arc<str>, PodEntry>>,
    root: CancellationToken,
    closed: AtomicBool,
    runtime: Handle,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.root.cancel();
    }
}

#[derive(Debug)]
struct PodEntry {
    shared: Arc<PodShared>,
    cancel: CancellationToken,
}

impl ProbeManager {
    /// Start building a manager around `prober`.
    pub fn builder(prober: Arc<dyn Prober>) -> ProbeManagerBuilder {
        ProbeManagerBuilder {
            prober,
            clock: Arc::new(SystemClock),
            random: None,
            agent_started_at: None,
            updates_capacity: DEFAULT_UPDATES_CAPACITY,
        }
    }

    /// When the agent started, as configured.
    pub fn agent_started_at(&self) -> SystemTime {
        self.inner.env.agent_started_at
    }

    /// Start a worker for every probe of the pod. Every probe is validated first
    /// ([`ProbeTiming::validate`](crate::ProbeTiming::validate)); on error nothing is
    /// started. Adding a pod that is already present does nothing (probes of a pod
    /// cannot change, as in the API).
    pub fn add_pod(&self, pod: PodProbes) -> Result<(), ManagerError> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(ManagerError::ShutDown);
        }
        let PodProbes {
            pod_uid,
            containers,
        } = pod;
        let mut entries: Vec<ContainerEntry> = Vec::with_capacity(containers.len());
        for (i, container) in containers.iter().enumerate() {
            if containers[..i].iter().any(|c| c.name == container.name) {
                return Err(ManagerError::DuplicateContainer {
                    pod_uid,
                    container: container.name.clone(),
                });
            }
            for kind in [
                ProbeKind::Startup,
                ProbeKind::Liveness,
                ProbeKind::Readiness,
            ] {
                if let Some(spec) = container.probe(kind)
                    && let Err(error) = spec.timing.validate(kind)
                {
                    return Err(ManagerError::InvalidProbe {
                        pod_uid,
                        container: container.name.clone(),
                        kind,
                        error,
                    });
                }
            }
        }
        for container in containers {
            let ContainerProbes {
                name,
                ports,
                liveness,
                readiness,
                startup,
            } = container;
            if liveness.is_none() && readiness.is_none() && startup.is_none() {
                continue;
            }
            let mut probes: [Option<ProbeSpec>; 3] = Default::default();
            probes[kind_index(ProbeKind::Liveness)] = liveness;
            probes[kind_index(ProbeKind::Readiness)] = readiness;
            probes[kind_index(ProbeKind::Startup)] = startup;
            entries.push(ContainerEntry {
                name: Arc::from(name),
                ports,
                probes,
                workers: [None; 3],
            });
        }

        let uid: Arc<str> = Arc::from(pod_uid);
        let shared = Arc::new(PodShared::new(Arc::clone(&uid), entries));
        let cancel = {
            let mut pods = self.write_pods();
            // Checked again under the lock so that shutdown cannot miss this pod.
            if self.inner.closed.load(Ordering::Acquire) {
                return Err(ManagerError::ShutDown);
            }
            match pods.entry(uid) {
                Entry::Occupied(_) => return Ok(()),
                Entry::Vacant(vacant) => {
                    let cancel = self.inner.root.child_token();
                    vacant.insert(PodEntry {
                        shared: Arc::clone(&shared),
                        cancel: cancel.clone(),
                    });
                    cancel
                }
            }
        };
        for slot in 0..shared.workers.len() {
            let task = WorkerTask {
                guard: LiveGuard::new(Arc::clone(&self.inner.env)),
                pod: Arc::clone(&shared),
                slot,
                cancel: cancel.clone(),
            };
            self.inner.runtime.spawn(task.run());
        }
        Ok(())
    }

    /// Give the workers of a pod its latest status. Returns `false` when the pod is
    /// not known (add it first). A container that has just become started (running,
    /// and its startup probe passed or it has none) gets a readiness probe at once.
    pub fn set_pod_status(&self, pod_uid: &str, status: PodStatus) -> bool {
        match self.pod(pod_uid) {
            Some(pod) => {
                pod.set_status(status);
                true
            }
            None => false,
        }
    }

    /// Stop the pod's workers and forget the pod; `false` when it was not known.
    /// Workers stop at once, also in the middle of a probe.
    pub fn remove_pod(&self, pod_uid: &str) -> bool {
        let entry = self.write_pods().remove(pod_uid);
        match entry {
            Some(entry) => {
                entry.cancel.cancel();
                true
            }
            None => false,
        }
    }

    /// Ask a worker to probe now instead of at its next period (the kubelet's manual
    /// trigger); the period restarts from then. Returns `false` when there is no such
    /// worker. A request made while a probe is running gets one more probe after it.
    pub fn probe_now(&self, pod_uid: &str, container: &str, kind: ProbeKind) -> bool {
        let Some(pod) = self.pod(pod_uid) else {
            return false;
        };
        let Some(c) = pod.container_index(container) else {
            return false;
        };
        match pod.worker_index(c, kind) {
            Some(w) if pod.workers[w].alive.load(Ordering::Acquire) => {
                pod.workers[w].trigger.notify_one();
                true
            }
            _ => false,
        }
    }

    /// The readiness result of the container's current instance; `None` when there is
    /// none (no readiness probe, no container yet, worker stopped, or a container that
    /// survived an agent restart and has not been probed since).
    pub fn readiness(&self, pod_uid: &str, container: &str) -> Option<ProbeState> {
        self.result(pod_uid, container, ProbeKind::Readiness)
            .map(|r| r.result)
    }

    /// The liveness result of the container's current instance (see [`Self::readiness`]).
    pub fn liveness(&self, pod_uid: &str, container: &str) -> Option<ProbeState> {
        self.result(pod_uid, container, ProbeKind::Liveness)
            .map(|r| r.result)
    }

    /// The startup result of the container's current instance (see [`Self::readiness`]).
    pub fn startup(&self, pod_uid: &str, container: &str) -> Option<ProbeState> {
        self.result(pod_uid, container, ProbeKind::Startup)
            .map(|r| r.result)
    }

    /// The current result of one probe with its details, in the shape of the update
    /// that published it.
    pub fn result(&self, pod_uid: &str, container: &str, kind: ProbeKind) -> Option<ResultUpdate> {
        let pod = self.pod(pod_uid)?;
        let c = pod.container_index(container)?;
        pod.result(c, kind)
    }

    /// Whether the container counts as started (`containerStatuses[].started`): it is
    /// running and its startup probe has passed, or it has no startup probe. `None`
    /// when the pod or container (with probes) is not known.
    pub fn is_started(&self, pod_uid: &str, container: &str) -> Option<bool> {
        let pod = self.pod(pod_uid)?;
        let c = pod.container_index(container)?;
        Some(pod.started(c))
    }

    /// How many worker tasks are alive, over all pods (removed pods' workers count
    /// until they have exited).
    pub fn worker_count(&self) -> usize {
        self.inner.env.live.get()
    }

    /// How many workers of a pod are alive; `None` when the pod is not known.
    pub fn pod_worker_count(&self, pod_uid: &str) -> Option<usize> {
        self.pod(pod_uid).map(|p| p.live_workers())
    }

    /// How many pods are known.
    pub fn pod_count(&self) -> usize {
        self.read_pods().len()
    }

    /// Stop every worker and wait until all have exited. Further
    /// [`add_pod`](Self::add_pod)s fail with [`ManagerError::ShutDown`].
    pub async fn shutdown(&self) {
        {
            let mut pods = self.write_pods();
            self.inner.closed.store(true, Ordering::Release);
            pods.clear();
        }
        self.inner.root.cancel();
        self.inner.env.live.wait_idle().await;
    }

    fn pod(&self, pod_uid: &str) -> Option<Arc<PodShared>> {
        self.read_pods()
            .get(pod_uid)
            .map(|entry| Arc::clone(&entry.shared))
    }

    fn read_pods(&self) -> std::sync::RwLockReadGuard<'_, HashMap<Arc<str>, PodEntry>> {
        self.inner
            .pods
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn write_pods(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<Arc<str>, PodEntry>> {
        self.inner
            .pods
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests;
