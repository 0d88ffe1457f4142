//! The async side of a worker: one tokio task per probe, driving a [`WorkerState`].

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::FutureExt;
use tokio::sync::{Notify, mpsc};
use tokio::time::{Instant, MissedTickBehavior, interval_at, sleep};
use tokio_util::sync::CancellationToken;

use super::ResultUpdate;
use super::pod::{PodShared, kind_index};
use crate::clock::{Clock, RandomSource};
use crate::outcome::{ProbeError, ProbeOutcome};
use crate::prober::Prober;
use crate::spec::{ProbeSpec, ProbeTarget};
use crate::timing::ProbeKind;
use crate::worker::{MAX_PROBE_RETRIES, Step, WorkerState, first_probe_delay};

/// What every worker of a manager shares.
pub(crate) struct WorkerEnv {
    pub(crate) prober: Arc<dyn Prober>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) random: Arc<dyn RandomSource>,
    pub(crate) agent_started_at: std::time::SystemTime,
    pub(crate) updates: mpsc::Sender<ResultUpdate>,
    pub(crate) live: LiveWorkers,
}

impl std::fmt::Debug for WorkerEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerEnv")
            .field("clock", &self.clock)
            .field("random", &self.random)
            .field("agent_started_at", &self.agent_started_at)
            .field("live", &self.live)
            .finish_non_exhaustive()
    }
}

/// Counts live worker tasks so that leaks are visible and shutdown can wait for all.
#[derive(Debug, Default)]
pub(crate) struct LiveWorkers {
    count: AtomicUsize,
    idle: Notify,
}

impl LiveWorkers {
    pub(crate) fn get(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    /// Wait until no worker task is alive.
    pub(crate) async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.get() == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// Held by a worker task; dropping it (the task ended, or was dropped with its
/// runtime) marks the worker dead.
#[derive(Debug)]
pub(crate) struct LiveGuard {
    env: Arc<WorkerEnv>,
}

impl LiveGuard {
    pub(crate) fn new(env: Arc<WorkerEnv>) -> Self {
        env.live.count.fetch_add(1, Ordering::AcqRel);
        Self { env }
    }
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        if self.env.live.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.env.live.idle.notify_waiters();
        }
    }
}

/// One worker task: probes one (pod, container, kind) until stopped.
#[derive(Debug)]
pub(crate) struct WorkerTask {
    pub(crate) guard: LiveGuard,
    pub(crate) pod: Arc<PodShared>,
    pub(crate) slot: usize,
    pub(crate) cancel: CancellationToken,
}

/// Owns the worker's state and retires it on drop: when the task ends, and also when
/// its future is dropped mid-way (runtime shutdown).
struct Retiring<'a> {
    pod: &'a PodShared,
    slot: usize,
    worker: WorkerState,
}

impl Drop for Retiring<'_> {
    fn drop(&mut self) {
        self.pod.retire(self.slot, self.worker.container_id());
    }
}

impl WorkerTask {
    pub(crate) async fn run(self) {
        let env = &self.guard.env;
        let pod = &*self.pod;
        let slot = &pod.workers[self.slot];
        let entry = &pod.containers[slot.container];
        let Some(spec) = entry.probes[kind_index(slot.kind)].as_ref() else {
            pod.retire(self.slot, None);
            return;
        };
        let mut retiring = Retiring {
            pod,
            slot: self.slot,
            worker: WorkerState::new(slot.kind, spec.timing, env.agent_started_at),
        };
        let mut run = Run {
            env,
            pod,
            slot: self.slot,
            spec,
            cancel: &self.cancel,
            target: ProbeTarget {
                pod_ip: None,
                container_id: String::new(),
                ports: entry.ports.clone(),
            },
            pending: Vec::with_capacity(2),
        };
        run.run(&mut retiring.worker).await;
    }
}

struct Run<'a> {
    env: &'a WorkerEnv,
    pod: &'a PodShared,
    slot: usize,
    spec: &'a ProbeSpec,
    cancel: &'a CancellationToken,
    target: ProbeTarget,
    pending: Vec<ResultUpdate>,
}

impl Run<'_> {
    async fn run(&mut self, worker: &mut WorkerState) {
        let period = worker.period();
        let delay = first_probe_delay(
            period,
            self.env.clock.now(),
            self.env.agent_started_at,
            self.env.random.next_fraction(),
        );
        if !delay.is_zero() {
            tokio::select! {
                biased;
                () = self.cancel.cancelled() => return,
                () = sleep(delay) => {}
            }
        }
        // Like Go's `time.Ticker`: first tick one period from now, late ticks are
        // collapsed into one that fires at once, then the grid resumes.
        let mut ticker = interval_at(Instant::now() + period, period);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
        let trigger = &self.pod.workers[self.slot].trigger;
        loop {
            if !self.probe_once(worker).await {
                return;
            }
            tokio::select! {
                biased;
                () = self.cancel.cancelled() => return,
                _ = ticker.tick() => {}
                () = trigger.notified() => ticker.reset(),
            }
        }
    }

    /// One tick (and, if due, one attempt); `false` when the worker should exit.
    async fn probe_once(&mut self, worker: &mut WorkerState) -> bool {
        let now = self.env.clock.now();
        let step = self
            .pod
            .tick(self.slot, worker, now, &mut self.target, &mut self.pending);
        if !self.flush().await {
            return false;
        }
        match step {
            Step::Wait => true,
            Step::Stop => false,
            Step::Probe => {
                // This attempt answers any "probe now" raised before it started.
                let _ = self.pod.workers[self.slot]
                    .trigger
                    .notified()
                    .now_or_never();
                let attempt = tokio::select! {
                    biased;
                    () = self.cancel.cancelled() => return false,
                    attempt = self.attempt(worker.kind()) => attempt,
                };
                self.pod
                    .record(self.slot, worker, attempt, &mut self.pending);
                self.flush().await
            }
        }
    }

    /// One attempt: the prober is asked up to [`MAX_PROBE_RETRIES`] times while it
    /// returns errors (kubelet `runProbeWithRetries`); failures are not retried.
    async fn attempt(&self, kind: ProbeKind) -> Result<ProbeOutcome, ProbeError> {
        let mut tries = 0;
        loop {
            tries += 1;
            match self.env.prober.probe(kind, self.spec, &self.target).await {
                Ok(outcome) => return Ok(outcome),
                Err(error) if tries >= MAX_PROBE_RETRIES => {
                    tracing::debug!(
                        pod_uid = %self.pod.uid,
                        container = %self.pod.containers[self.pod.workers[self.slot].container].name,
                        probe = %kind,
                        %error,
                        "probe errored; attempt discarded"
                    );
                    return Err(error);
                }
                Err(_) => {}
            }
        }
    }

    /// Deliver queued updates; `false` if cancelled while the channel was full.
    async fn flush(&mut self) -> bool {
        for update in self.pending.drain(..) {
            tokio::select! {
                biased;
                // A dropped receiver is fine: the current-state view still works.
                _ = self.env.updates.send(update) => {}
                () = self.cancel.cancelled() => return false,
            }
        }
        true
    }
}
