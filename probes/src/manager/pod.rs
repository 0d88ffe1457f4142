//! The state one pod's workers share: probe specs (read-only), the latest pod status
//! from the embedder, and the published results. One small mutex per pod; a worker
//! takes it twice per probe (tick, record) and never across an `.await`.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;

use super::{ContainerStatus, PodStatus, ResultUpdate};
use crate::outcome::{ProbeError, ProbeOutcome};
use crate::spec::{ContainerPort, ProbeSpec, ProbeTarget};
use crate::timing::ProbeKind;
use crate::worker::{
    ContainerObservation, ContainerState, PodObservation, PodPhase, ProbeState, Recorded,
    ResultCause, ResultSink, Step, WorkerState,
};

/// Index of a probe kind in per-container arrays.
pub(crate) fn kind_index(kind: ProbeKind) -> usize {
    match kind {
        ProbeKind::Liveness => 0,
        ProbeKind::Readiness => 1,
        ProbeKind::Startup => 2,
    }
}

/// A container's probes, as added.
#[derive(Debug)]
pub(crate) struct ContainerEntry {
    pub(crate) name: Arc<str>,
    pub(crate) ports: Vec<ContainerPort>,
    /// Indexed by [`kind_index`].
    pub(crate) probes: [Option<ProbeSpec>; 3],
    /// Index into [`PodShared::workers`] of this container's worker per kind.
    pub(crate) workers: [Option<usize>; 3],
}

/// One worker's handle inside its pod.
#[derive(Debug)]
pub(crate) struct WorkerSlot {
    pub(crate) container: usize,
    pub(crate) kind: ProbeKind,
    /// "Probe now" (a stored permit, like the kubelet's 1-buffered channel).
    pub(crate) trigger: Notify,
    pub(crate) alive: AtomicBool,
}

#[derive(Debug)]
struct Published {
    container_id: Arc<str>,
    state: ProbeState,
    cause: ResultCause,
    output: String,
    grace: Option<i64>,
}

#[derive(Debug)]
struct ContainerSnapshot {
    id: Arc<str>,
    state: ContainerState,
    may_restart: bool,
    started_hint: Option<bool>,
}

#[derive(Debug)]
struct StatusSnapshot {
    phase: PodPhase,
    deleting: bool,
    pod_ip: Option<IpAddr>,
    /// Aligned with [`PodShared::containers`]; `None`: not created (no container ID).
    containers: Box<[Option<ContainerSnapshot>]>,
}

#[derive(Debug)]
struct PodState {
    status: Option<StatusSnapshot>,
    /// Per container, per kind ([`kind_index`]).
    results: Box<[[Option<Published>; 3]]>,
}

/// Everything the workers of one pod share.
#[derive(Debug)]
pub(crate) struct PodShared {
    pub(crate) uid: Arc<str>,
    pub(crate) containers: Box<[ContainerEntry]>,
    pub(crate) workers: Box<[WorkerSlot]>,
    state: Mutex<PodState>,
}

impl PodShared {
    pub(crate) fn new(uid: Arc<str>, containers: Vec<ContainerEntry>) -> Self {
        let mut containers = containers.into_boxed_slice();
        let mut workers = Vec::new();
        for (index, entry) in containers.iter_mut().enumerate() {
            // Start order as in the kubelet: startup, readiness, liveness.
            for kind in [
                ProbeKind::Startup,
                ProbeKind::Readiness,
                ProbeKind::Liveness,
            ] {
                if entry.probes[kind_index(kind)].is_some() {
                    entry.workers[kind_index(kind)] = Some(workers.len());
                    workers.push(WorkerSlot {
                        container: index,
                        kind,
                        trigger: Notify::new(),
                        alive: AtomicBool::new(true),
                    });
                }
            }
        }
        let results = containers.iter().map(|_| Default::default()).collect();
        Self {
            uid,
            containers,
            workers: workers.into_boxed_slice(),
            state: Mutex::new(PodState {
                status: None,
                results,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, PodState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn container_index(&self, name: &str) -> Option<usize> {
        self.containers.iter().position(|c| &*c.name == name)
    }

    pub(crate) fn worker_index(&self, container: usize, kind: ProbeKind) -> Option<usize> {
        self.containers[container].workers[kind_index(kind)]
    }

    pub(crate) fn live_workers(&self) -> usize {
        self.workers
            .iter()
            .filter(|w| w.alive.load(Ordering::Acquire))
            .count()
    }

    /// Replace the pod status; wake the readiness worker of every container that has
    /// just become started (the kubelet probes readiness at once then, instead of
    /// waiting up to a period).
    pub(crate) fn set_status(&self, status: PodStatus) {
        let mut snapshots: Box<[Option<ContainerSnapshot>]> =
            self.containers.iter().map(|_| None).collect();
        for c in status.containers {
            let ContainerStatus {
                name,
                container_id,
                state,
                may_restart,
                started,
            } = c;
            let Some(index) = self.container_index(&name) else {
                continue;
            };
            let Some(id) = container_id.filter(|id| !id.is_empty()) else {
                continue;
            };
            snapshots[index] = Some(ContainerSnapshot {
                id: Arc::from(id),
                state,
                may_restart,
                started_hint: started,
            });
        }
        let new = StatusSnapshot {
            phase: status.phase,
            deleting: status.deleting,
            pod_ip: status.pod_ip,
            containers: snapshots,
        };
        let mut guard = self.lock();
        let state = &mut *guard;
        let before: Vec<Option<Arc<str>>> = (0..self.containers.len())
            .map(|c| self.started_container(state, c).cloned())
            .collect();
        state.status = Some(new);
        for (c, before) in before.into_iter().enumerate() {
            let now = self.started_container(state, c);
            if now.is_some() && now != before.as_ref() {
                self.trigger_readiness(c);
            }
        }
    }

    /// The ID of container `c` if it is running and counts as started.
    fn started_container<'a>(&self, state: &'a PodState, c: usize) -> Option<&'a Arc<str>> {
        let snapshot = state.status.as_ref()?.containers[c].as_ref()?;
        self.is_started(state, c, snapshot).then_some(&snapshot.id)
    }

    /// The kubelet's `isContainerStarted`: running, and the startup probe's result for
    /// this container is `Success`; with no startup result yet, started when the status
    /// says so (it survived an agent restart) or when there is no (live) startup worker.
    fn is_started(&self, state: &PodState, c: usize, snapshot: &ContainerSnapshot) -> bool {
        if !matches!(snapshot.state, ContainerState::Running { .. }) {
            return false;
        }
        let startup = kind_index(ProbeKind::Startup);
        if let Some(p) = &state.results[c][startup]
            && p.container_id == snapshot.id
        {
            return p.state == ProbeState::Success;
        }
        if snapshot.started_hint == Some(true) {
            return true;
        }
        match self.containers[c].workers[startup] {
            Some(w) => !self.workers[w].alive.load(Ordering::Acquire),
            None => true,
        }
    }

    fn trigger_readiness(&self, c: usize) {
        if let Some(w) = self.containers[c].workers[kind_index(ProbeKind::Readiness)] {
            self.workers[w].trigger.notify_one();
        }
    }

    /// One tick of worker `slot`, under the pod lock. Publications are appended to
    /// `pending`; on [`Step::Probe`] `target` is brought up to date.
    pub(crate) fn tick(
        &self,
        slot: usize,
        worker: &mut WorkerState,
        now: std::time::SystemTime,
        target: &mut ProbeTarget,
        pending: &mut Vec<ResultUpdate>,
    ) -> Step {
        let c = self.workers[slot].container;
        let mut guard = self.lock();
        let started = match guard.status.as_ref().and_then(|s| s.containers[c].as_ref()) {
            Some(snapshot) => self.is_started(&guard, c, snapshot),
            None => false,
        };
        let PodState { status, results } = &mut *guard;
        let observation = status.as_ref().map(|s| observe(s, c, started));
        let mut sink = Sink {
            pod: self,
            container: c,
            kind: self.workers[slot].kind,
            grace: worker.timing().termination_grace_period_seconds,
            results: &mut results[c],
            pending,
        };
        let step = worker.tick(observation.as_ref(), now, &mut sink);
        if step == Step::Probe {
            let pod_ip = status.as_ref().and_then(|s| s.pod_ip);
            if target.pod_ip != pod_ip {
                target.pod_ip = pod_ip;
            }
            if let Some(id) = worker.container_id()
                && target.container_id != **id
            {
                target.container_id.clear();
                target.container_id.push_str(id);
            }
        }
        step
    }

    /// Record an attempt of worker `slot`, under the pod lock; dropped when the pod or
    /// container changed while it ran.
    pub(crate) fn record(
        &self,
        slot: usize,
        worker: &mut WorkerState,
        attempt: Result<ProbeOutcome, ProbeError>,
        pending: &mut Vec<ResultUpdate>,
    ) -> Recorded {
        let c = self.workers[slot].container;
        let mut guard = self.lock();
        let PodState { status, results } = &mut *guard;
        let observation = status.as_ref().map(|s| observe(s, c, false));
        if !worker.is_attempt_current(observation.as_ref()) {
            return Recorded::Discarded;
        }
        let mut sink = Sink {
            pod: self,
            container: c,
            kind: self.workers[slot].kind,
            grace: worker.timing().termination_grace_period_seconds,
            results: &mut results[c],
            pending,
        };
        worker.record(attempt, &mut sink)
    }

    /// The worker `slot` has exited: forget its result (as the kubelet's worker does on
    /// exit) and mark it dead.
    pub(crate) fn retire(&self, slot: usize, container_id: Option<&Arc<str>>) {
        let w = &self.workers[slot];
        let mut guard = self.lock();
        let entry = &mut guard.results[w.container][kind_index(w.kind)];
        if let (Some(p), Some(id)) = (entry.as_ref(), container_id)
            && p.container_id == *id
        {
            *entry = None;
        }
        w.alive.store(false, Ordering::Release);
    }

    /// The current result of `kind` for container `c`: only a result for the
    /// container ID in the latest status counts (as the kubelet looks results up by ID).
    pub(crate) fn result(&self, c: usize, kind: ProbeKind) -> Option<ResultUpdate> {
        let guard = self.lock();
        let snapshot = guard.status.as_ref()?.containers[c].as_ref()?;
        let p = guard.results[c][kind_index(kind)].as_ref()?;
        (p.container_id == snapshot.id).then(|| ResultUpdate {
            pod_uid: Arc::clone(&self.uid),
            container_name: Arc::clone(&self.containers[c].name),
            container_id: Arc::clone(&p.container_id),
            kind,
            result: p.state,
            cause: p.cause,
            output: p.output.clone(),
            termination_grace_period_seconds: p.grace,
        })
    }

    /// Whether container `c` counts as started (see [`Self::is_started`]).
    pub(crate) fn started(&self, c: usize) -> bool {
        let guard = self.lock();
        self.started_container(&guard, c).is_some()
    }
}

fn observe(status: &StatusSnapshot, c: usize, started: bool) -> PodObservation<'_> {
    PodObservation {
        phase: status.phase,
        deleting: status.deleting,
        container: status.containers[c].as_ref().map(|s| ContainerObservation {
            id: &s.id,
            state: s.state,
            may_restart: s.may_restart,
            started,
        }),
    }
}

/// The results cache of one container and kind: stores a publication and queues an
/// update only when the result for the container ID changes.
struct Sink<'a> {
    pod: &'a PodShared,
    container: usize,
    kind: ProbeKind,
    grace: Option<i64>,
    results: &'a mut [Option<Published>; 3],
    pending: &'a mut Vec<ResultUpdate>,
}

impl ResultSink for Sink<'_> {
    fn set(
        &mut self,
        container_id: &Arc<str>,
        state: ProbeState,
        cause: ResultCause,
        output: String,
    ) {
        let entry = &mut self.results[kind_index(self.kind)];
        if let Some(p) = entry.as_ref()
            && p.container_id == *container_id
            && p.state == state
        {
            return;
        }
        let grace = if state == ProbeState::Failure && self.kind != ProbeKind::Readiness {
            self.grace
        } else {
            None
        };
        self.pending.push(ResultUpdate {
            pod_uid: Arc::clone(&self.pod.uid),
            container_name: Arc::clone(&self.pod.containers[self.container].name),
            container_id: Arc::clone(container_id),
            kind: self.kind,
            result: state,
            cause,
            output: output.clone(),
            termination_grace_period_seconds: grace,
        });
        *entry = Some(Published {
            container_id: Arc::clone(container_id),
            state,
            cause,
            output,
            grace,
        });
        if self.kind == ProbeKind::Startup && state == ProbeState::Success {
            // The container has just started: readiness need not wait for its period.
            self.pod.trigger_readiness(self.container);
        }
    }

    fn remove(&mut self, container_id: &Arc<str>) {
        let entry = &mut self.results[kind_index(self.kind)];
        if entry
            .as_ref()
            .is_some_and(|p| p.container_id == *container_id)
        {
            *entry = None;
        }
    }
}
