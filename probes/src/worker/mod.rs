//! The per-probe worker state machine, as pure data and functions.
//!
//! A [`WorkerState`] is one worker of the kubelet's prober (`pkg/kubelet/prober/worker.go`):
//! one per (pod, container, probe kind). It does no I/O and reads no clock: every period
//! the driver (the [`ProbeManager`](crate::manager::ProbeManager)'s task, or anything else)
//! shows it what the pod and container look like ([`PodObservation`]) and the time, and
//! it answers with a [`Step`]: wait, probe, or stop. After a probe the driver hands it the
//! attempt's result ([`WorkerState::record`]). Results it publishes go to a
//! [`ResultSink`], which plays the part of the kubelet's results cache.
//!
//! # Semantics (kubelet `worker.go` `doProbe`, checked in this order every tick)
//!
//! 1. No pod status yet: wait.
//! 2. Pod phase `Succeeded` or `Failed`: stop.
//! 3. Container not created (no container ID): wait.
//! 4. A container ID the worker has not seen: drop the result of the old ID, publish the
//!    initial result for the new one (readiness `Failure`, liveness `Success`, startup
//!    `Unknown`), leave the on-hold state and restart the run count. As in the kubelet
//!    (with `ChangeContainerStatusOnKubeletRestart` off, the default since 1.35), the
//!    initial result is *not* published for a container that was already running more
//!    than [`AGENT_RESTART_GRACE`] before the agent started, so an agent restart does not
//!    flip a ready container to not-ready.
//! 5. On hold: wait.
//! 6. Container not running: publish `Failure`; stop if it has terminated and will not
//!    be restarted, else wait.
//! 7. Pod being deleted: liveness and startup publish `Success` (a quiet shutdown) and
//!    stop; readiness goes on.
//! 8. Less than `initialDelaySeconds` (whole seconds, truncated) since the container's
//!    `startedAt`: wait.
//! 9. Startup gating: until the container counts as started only the startup probe
//!    runs; once started the startup worker waits (it stays for restarts).
//! 10. Otherwise probe.
//!
//! After a probe ([`WorkerState::record`]): an *error* ([`ProbeError`]: the probe could not
//! be run at all, after [`MAX_PROBE_RETRIES`] tries) is thrown away and counted nowhere.
//! Otherwise `Warning` counts as `Success` and `Unknown` as `Failure`; consecutive equal
//! results are counted and the result is published only once the run reaches
//! `failureThreshold` (failures) or `successThreshold` (successes). After publishing a
//! liveness `Failure`, or any startup result, the worker goes on hold until a new
//! container ID appears: the container is about to be killed (or has started) and
//! probing it again is pointless or harmful (kubernetes #21751, #117153).
//!
//! One deliberate difference from the kubelet's default (legacy) worker: on a new
//! container ID the run count is reset as well. The legacy worker keeps `resultRun`
//! across containers, so failures of a dead container count against its replacement;
//! the kubelet's newer worker (the `MutableContainerProbes` code path) resets it, as we do.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::clock::clamp_fraction;
use crate::outcome::{ProbeError, ProbeOutcome, ProbeResult};
use crate::timing::{ProbeKind, ProbeTiming};

/// How many times one probe attempt is tried when the prober returns an error
/// (kubelet `maxProbeRetries`). Ordinary failures are never retried.
pub const MAX_PROBE_RETRIES: u32 = 3;

/// A container that was running this long before the agent started is treated as
/// having survived an agent restart: its probes do not publish their initial result
/// (kubelet `kubeletRestartGracePeriod`, 10 s).
pub const AGENT_RESTART_GRACE: Duration = Duration::from_secs(10);

/// The published result of one probe for one container (the kubelet's
/// `results.Result`): what readiness, liveness and startup state are derived from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProbeState {
    /// The probe passes (or has not failed yet, for liveness).
    Success,
    /// The probe fails (or has not passed yet, for readiness).
    Failure,
    /// Not known yet (the startup probe's initial result).
    Unknown,
}

impl ProbeState {
    /// The result a probe has before its first publication on a new container:
    /// readiness `Failure`, liveness `Success`, startup `Unknown`.
    pub fn initial(kind: ProbeKind) -> Self {
        match kind {
            ProbeKind::Readiness => ProbeState::Failure,
            ProbeKind::Liveness => ProbeState::Success,
            ProbeKind::Startup => ProbeState::Unknown,
        }
    }

    /// How one attempt counts, as the kubelet's prober maps it: `Warning` counts as
    /// `Success`, `Unknown` as `Failure`.
    pub fn from_attempt(result: ProbeResult) -> Self {
        if result.is_passing() {
            ProbeState::Success
        } else {
            ProbeState::Failure
        }
    }
}

impl fmt::Display for ProbeState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProbeState::Success => "success",
            ProbeState::Failure => "failure",
            ProbeState::Unknown => "unknown",
        })
    }
}

/// Why a result was published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResultCause {
    /// The initial result for a container ID the worker had not seen.
    Initial,
    /// The container is not running (`Failure`).
    ContainerNotRunning,
    /// The pod is being deleted; liveness and startup report `Success` and stop.
    PodDeleting,
    /// Probe attempts reached the failure or success threshold.
    Probe,
}

/// A pod's phase (`status.phase`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum PodPhase {
    /// Accepted, not all containers running yet.
    #[default]
    Pending,
    /// Bound and at least one container running or restarting.
    Running,
    /// All containers terminated successfully and will not restart.
    Succeeded,
    /// All containers terminated, at least one in failure, and none will restart.
    Failed,
    /// The state could not be obtained.
    Unknown,
}

impl PodPhase {
    /// `Succeeded` or `Failed`: probe workers of such a pod stop.
    pub fn is_terminal(self) -> bool {
        matches!(self, PodPhase::Succeeded | PodPhase::Failed)
    }
}

/// A container's state (`status.containerStatuses[].state`), reduced to what probing needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ContainerState {
    /// Created but not running yet (or waiting to be restarted).
    Waiting,
    /// Running since `started_at` (the runtime's wall-clock start time).
    Running {
        /// When the container started (`state.running.startedAt`).
        started_at: SystemTime,
    },
    /// Exited.
    Terminated,
}

/// What a worker sees of its pod at one tick (`None` stands for "no pod status").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PodObservation<'a> {
    /// The pod's phase.
    pub phase: PodPhase,
    /// The pod has a deletion timestamp (graceful deletion under way).
    pub deleting: bool,
    /// The probed container, or `None` while it has no container ID (not created).
    pub container: Option<ContainerObservation<'a>>,
}

/// What a worker sees of its container at one tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContainerObservation<'a> {
    /// The runtime's container ID (`containerd://…`); a new ID is a new container.
    pub id: &'a Arc<str>,
    /// Running, waiting or terminated.
    pub state: ContainerState,
    /// Whether a terminated container will be restarted (restart policy, restart
    /// rules, sidecar): when not, its probe workers stop.
    pub may_restart: bool,
    /// Whether the container counts as started (`status.containerStatuses[].started`):
    /// its startup probe has succeeded, or it has none.
    pub started: bool,
}

/// What a worker does after a tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Step {
    /// Nothing to probe now; wait for the next period.
    Wait,
    /// Run one probe attempt, then hand the result to [`WorkerState::record`].
    Probe,
    /// The worker is done (terminal pod, container gone for good, pod deleting).
    Stop,
}

/// What [`WorkerState::record`] did with an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Recorded {
    /// The attempt errored and was thrown away (not counted).
    Discarded,
    /// Counted; the run is still below its threshold, nothing published.
    BelowThreshold,
    /// Counted and published (the sink decides whether it is a change).
    Published,
}

/// Where a worker publishes results: the kubelet's results cache.
///
/// `set` is called with every publication, including repeats of the current result;
/// the sink reports a change only when the result for that container ID differs (as
/// the kubelet's results manager does).
pub trait ResultSink {
    /// Publish `state` for `container_id`; `output` is the probe's output for
    /// [`ResultCause::Probe`], empty otherwise.
    fn set(
        &mut self,
        container_id: &Arc<str>,
        state: ProbeState,
        cause: ResultCause,
        output: String,
    );

    /// Forget the result of `container_id` (the worker moved to a new container).
    fn remove(&mut self, container_id: &Arc<str>);
}

/// The state of one probe worker: the kubelet's `worker` without its goroutine.
#[derive(Debug, Clone)]
pub struct WorkerState {
    kind: ProbeKind,
    timing: ProbeTiming,
    agent_started_at: SystemTime,
    container_id: Option<Arc<str>>,
    last_result: Option<ProbeState>,
    result_run: u32,
    on_hold: bool,
}

impl WorkerState {
    /// A worker for a `kind` probe with `timing` (assumed valid, see
    /// [`ProbeTiming::validate`]), in an agent that started at `agent_started_at`.
    pub fn new(kind: ProbeKind, timing: ProbeTiming, agent_started_at: SystemTime) -> Self {
        Self {
            kind,
            timing,
            agent_started_at,
            container_id: None,
            last_result: None,
            result_run: 0,
            on_hold: false,
        }
    }

    /// The probe kind.
    pub fn kind(&self) -> ProbeKind {
        self.kind
    }

    /// The probe timing.
    pub fn timing(&self) -> &ProbeTiming {
        &self.timing
    }

    /// The period between ticks (`periodSeconds`, at least 1 s).
    pub fn period(&self) -> Duration {
        Duration::from_secs(self.timing.period_seconds.max(1).unsigned_abs().into())
    }

    /// The container ID the worker last saw.
    pub fn container_id(&self) -> Option<&Arc<str>> {
        self.container_id.as_ref()
    }

    /// Whether the worker is on hold (after a liveness failure or a startup result)
    /// until a new container appears.
    pub fn is_on_hold(&self) -> bool {
        self.on_hold
    }

    /// The last counted result and how many times in a row it came.
    pub fn run(&self) -> (Option<ProbeState>, u32) {
        (self.last_result, self.result_run)
    }

    /// One tick: look at the pod and decide what to do, publishing the results that
    /// follow from what is seen (new container, not running, pod deleting).
    pub fn tick(
        &mut self,
        pod: Option<&PodObservation<'_>>,
        now: SystemTime,
        sink: &mut impl ResultSink,
    ) -> Step {
        let Some(pod) = pod else {
            return Step::Wait;
        };
        if pod.phase.is_terminal() {
            return Step::Stop;
        }
        let Some(container) = pod.container.as_ref() else {
            return Step::Wait;
        };

        if self.container_id.as_deref() != Some(&**container.id) {
            if let Some(old) = self.container_id.take() {
                sink.remove(&old);
            }
            self.container_id = Some(Arc::clone(container.id));
            if !self.survived_agent_restart(container.state) {
                sink.set(
                    container.id,
                    ProbeState::initial(self.kind),
                    ResultCause::Initial,
                    String::new(),
                );
            }
            self.on_hold = false;
            self.last_result = None;
            self.result_run = 0;
        }

        if self.on_hold {
            return Step::Wait;
        }

        let started_at = match container.state {
            ContainerState::Running { started_at } => started_at,
            ContainerState::Waiting | ContainerState::Terminated => {
                sink.set(
                    container.id,
                    ProbeState::Failure,
                    ResultCause::ContainerNotRunning,
                    String::new(),
                );
                let gone_for_good =
                    container.state == ContainerState::Terminated && !container.may_restart;
                return if gone_for_good {
                    Step::Stop
                } else {
                    Step::Wait
                };
            }
        };

        if pod.deleting && self.kind != ProbeKind::Readiness {
            sink.set(
                container.id,
                ProbeState::Success,
                ResultCause::PodDeleting,
                String::new(),
            );
            return Step::Stop;
        }

        if whole_seconds_since(now, started_at) < i64::from(self.timing.initial_delay_seconds) {
            return Step::Wait;
        }

        let is_startup = self.kind == ProbeKind::Startup;
        if container.started == is_startup {
            // Started: only the startup worker idles. Not started: everyone but it idles.
            return Step::Wait;
        }
        Step::Probe
    }

    /// Whether an attempt that began at the last [`Step::Probe`] still applies to what
    /// is seen now: same container, pod not terminal. A stale attempt should be dropped
    /// rather than recorded (the next tick deals with the new state).
    pub fn is_attempt_current(&self, pod: Option<&PodObservation<'_>>) -> bool {
        let Some(pod) = pod else {
            return false;
        };
        let Some(container) = pod.container.as_ref() else {
            return false;
        };
        !pod.phase.is_terminal() && self.container_id.as_deref() == Some(&**container.id)
    }

    /// Count one attempt (after retries) and publish when a threshold is reached.
    pub fn record(
        &mut self,
        attempt: Result<ProbeOutcome, ProbeError>,
        sink: &mut impl ResultSink,
    ) -> Recorded {
        let Ok(outcome) = attempt else {
            return Recorded::Discarded;
        };
        let Some(id) = self.container_id.as_ref() else {
            return Recorded::Discarded;
        };
        let state = ProbeState::from_attempt(outcome.result);
        if self.last_result == Some(state) {
            self.result_run = self.result_run.saturating_add(1);
        } else {
            self.last_result = Some(state);
            self.result_run = 1;
        }
        let threshold = match state {
            ProbeState::Success => self.timing.success_threshold,
            ProbeState::Failure | ProbeState::Unknown => self.timing.failure_threshold,
        };
        if self.result_run < threshold.max(1).unsigned_abs() {
            return Recorded::BelowThreshold;
        }
        sink.set(id, state, ResultCause::Probe, outcome.output);
        let hold = match self.kind {
            ProbeKind::Liveness => state == ProbeState::Failure,
            ProbeKind::Startup => true,
            ProbeKind::Readiness => false,
        };
        if hold {
            self.on_hold = true;
            self.result_run = 0;
        }
        Recorded::Published
    }

    fn survived_agent_restart(&self, state: ContainerState) -> bool {
        let ContainerState::Running { started_at } = state else {
            return false;
        };
        // The Unix epoch stands for "unknown" (a zero timestamp from the runtime).
        if started_at <= UNIX_EPOCH {
            return false;
        }
        match self.agent_started_at.checked_sub(AGENT_RESTART_GRACE) {
            Some(limit) => started_at < limit,
            None => false,
        }
    }
}

/// How long a worker waits before its first probe: after an agent (re)start, workers
/// created within one period of it wait `fraction × period` (`fraction` in `[0, 1)`, from
/// a [`RandomSource`](crate::clock::RandomSource)) so that thousands of probes do not
/// fire at once; later workers start at once (kubelet `worker.run`).
pub fn first_probe_delay(
    period: Duration,
    now: SystemTime,
    agent_started_at: SystemTime,
    fraction: f64,
) -> Duration {
    let since_start = now
        .duration_since(agent_started_at)
        .unwrap_or(Duration::ZERO);
    if period > since_start {
        // Strictly less than a period, whatever the rounding.
        let latest = period.saturating_sub(Duration::from_nanos(1));
        period.mul_f64(clamp_fraction(fraction)).min(latest)
    } else {
        Duration::ZERO
    }
}

/// Whole seconds from `then` to `now`, truncated toward zero (negative when `then` is
/// in the future), as the kubelet's `int32(time.Since(t).Seconds())`.
fn whole_seconds_since(now: SystemTime, then: SystemTime) -> i64 {
    match now.duration_since(then) {
        Ok(elapsed) => i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX),
        Err(ahead) => -i64::try_from(ahead.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

#[cfg(test)]
mod tests;
