//! Probe workers end to end against a scripted prober, on tokio's paused clock: every
//! time below is virtual and exact, so no test depends on the machine's speed.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pod_probes::clock::FixedFraction;
use pod_probes::{
    ContainerProbes, ContainerStatus, ManagerError, PodPhase, PodProbes, PodStatus, ProbeError,
    ProbeHandler, ProbeKind, ProbeManager, ProbeManagerBuilder, ProbeOutcome, ProbeResult,
    ProbeSpec, ProbeState, ProbeTarget, ProbeTiming, Prober, ResultCause, ResultUpdate,
    ResultUpdates, TokioClock, ValidationError,
};
use tokio::time::Instant;

use ProbeKind::{Liveness, Readiness, Startup};

// ---------------------------------------------------------------------------------
// A scripted prober

/// One programmed answer.
#[derive(Debug, Clone)]
enum Answer {
    /// Return this outcome at once.
    Outcome(ProbeOutcome),
    /// Return this error at once (the probe could not run).
    Error(ProbeError),
    /// Take this long, then return the outcome.
    Slow(Duration, ProbeOutcome),
}

fn ok() -> Answer {
    Answer::Outcome(ProbeOutcome::success("ok"))
}

fn fail(output: &str) -> Answer {
    Answer::Outcome(ProbeOutcome::failure(output))
}

fn err() -> Answer {
    Answer::Error(ProbeError::Exec("runtime unavailable".into()))
}

/// A recorded call.
#[derive(Debug, Clone, PartialEq)]
struct Call {
    /// Seconds since the test started (virtual time).
    at: f64,
    kind: ProbeKind,
    container_id: String,
}

/// Answers each probe kind from its script, then with success; records every call.
#[derive(Debug)]
struct ScriptedProber {
    start: Instant,
    scripts: Mutex<HashMap<ProbeKind, VecDeque<Answer>>>,
    calls: Mutex<Vec<Call>>,
}

impl ScriptedProber {
    fn new(start: Instant) -> Arc<Self> {
        Arc::new(Self {
            start,
            scripts: Mutex::new(HashMap::new()),
            calls: Mutex::new(Vec::new()),
        })
    }

    fn script(&self, kind: ProbeKind, answers: impl IntoIterator<Item = Answer>) {
        self.scripts
            .lock()
            .unwrap()
            .entry(kind)
            .or_default()
            .extend(answers);
    }

    fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    /// When `kind` was called, in seconds since the start.
    fn times(&self, kind: ProbeKind) -> Vec<f64> {
        self.calls()
            .into_iter()
            .filter(|c| c.kind == kind)
            .map(|c| c.at)
            .collect()
    }
}

#[async_trait::async_trait]
impl Prober for ScriptedProber {
    async fn probe(
        &self,
        kind: ProbeKind,
        _spec: &ProbeSpec,
        target: &ProbeTarget,
    ) -> Result<ProbeOutcome, ProbeError> {
        self.calls.lock().unwrap().push(Call {
            at: self.start.elapsed().as_secs_f64(),
            kind,
            container_id: target.container_id.clone(),
        });
        let answer = self
            .scripts
            .lock()
            .unwrap()
            .get_mut(&kind)
            .and_then(VecDeque::pop_front)
            .unwrap_or_else(ok);
        match answer {
            Answer::Outcome(outcome) => Ok(outcome),
            Answer::Error(error) => Err(error),
            Answer::Slow(duration, outcome) => {
                tokio::time::sleep(duration).await;
                Ok(outcome)
            }
        }
    }
}

// ---------------------------------------------------------------------------------
// Harness

/// The wall-clock time at virtual t = 0.
fn base() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_750_000_000)
}

/// The wall-clock time at virtual t = `secs`.
fn wall(secs: f64) -> SystemTime {
    if secs < 0.0 {
        base() - Duration::from_secs_f64(-secs)
    } else {
        base() + Duration::from_secs_f64(secs)
    }
}

const POD: &str = "pod-1";
const CTR: &str = "app";

fn timing(period: i32) -> ProbeTiming {
    ProbeTiming {
        period_seconds: period,
        ..ProbeTiming::default()
    }
}

fn spec(timing: ProbeTiming) -> ProbeSpec {
    ProbeSpec {
        handler: ProbeHandler::Exec {
            command: vec!["/bin/check".into()],
        },
        timing,
    }
}

fn running(id: &str, started_at: f64) -> PodStatus {
    PodStatus::new(PodPhase::Running).container(ContainerStatus::running(CTR, id, wall(started_at)))
}

struct Harness {
    start: Instant,
    prober: Arc<ScriptedProber>,
    manager: ProbeManager,
    updates: ResultUpdates,
}

impl Harness {
    /// An agent that started an hour ago (no first-probe jitter).
    fn new() -> Self {
        Self::with(|b| b.agent_started_at(wall(-3600.0)))
    }

    fn with(configure: impl FnOnce(ProbeManagerBuilder) -> ProbeManagerBuilder) -> Self {
        let start = Instant::now();
        let prober = ScriptedProber::new(start);
        let builder = ProbeManager::builder(prober.clone())
            .clock(Arc::new(TokioClock::starting_at(base())))
            .jitter_seed(1);
        let (manager, updates) = configure(builder).build().unwrap();
        Self {
            start,
            prober,
            manager,
            updates,
        }
    }

    /// Add the one test container with `probes`, running as `c1` since t = 0.
    fn add(&self, probes: ContainerProbes) {
        self.manager
            .add_pod(PodProbes::new(POD).container(probes))
            .unwrap();
    }

    fn status(&self, status: PodStatus) {
        assert!(self.manager.set_pod_status(POD, status));
    }

    /// Let virtual time run to t = `secs`.
    async fn until(&self, secs: f64) {
        tokio::time::sleep_until(self.start + Duration::from_secs_f64(secs)).await;
    }

    fn updates(&mut self) -> Vec<ResultUpdate> {
        std::iter::from_fn(|| self.updates.try_recv()).collect()
    }

    /// The updates as (kind, container ID, result, cause).
    fn changes(&mut self) -> Vec<(ProbeKind, String, ProbeState, ResultCause)> {
        self.updates()
            .into_iter()
            .map(|u| (u.kind, u.container_id.to_string(), u.result, u.cause))
            .collect()
    }
}

fn probe(
    kind: ProbeKind,
    id: &str,
    state: ProbeState,
) -> (ProbeKind, String, ProbeState, ResultCause) {
    (kind, id.into(), state, ResultCause::Probe)
}

fn initial(kind: ProbeKind, id: &str) -> (ProbeKind, String, ProbeState, ResultCause) {
    (
        kind,
        id.into(),
        ProbeState::initial(kind),
        ResultCause::Initial,
    )
}

// ---------------------------------------------------------------------------------
// Thresholds and timing

#[tokio::test(start_paused = true)]
async fn liveness_failure_is_published_at_the_third_failure() {
    let mut h = Harness::new();
    h.prober
        .script(Liveness, [fail("f1"), fail("f2"), fail("f3")]);
    h.add(ContainerProbes::new(CTR).liveness(spec(timing(10))));
    h.status(running("c1", 0.0));

    h.until(0.5).await;
    assert_eq!(h.changes(), [initial(Liveness, "c1")]);
    h.until(10.5).await;
    assert!(
        h.changes().is_empty(),
        "two failures are below the threshold"
    );
    assert_eq!(h.manager.liveness(POD, CTR), Some(ProbeState::Success));
    h.until(20.5).await;
    let updates = h.updates();
    assert_eq!(updates.len(), 1);
    assert_eq!(updates[0].result, ProbeState::Failure);
    assert_eq!(updates[0].output, "f3");
    assert_eq!(&*updates[0].container_name, CTR);
    assert_eq!(&*updates[0].pod_uid, POD);
    assert_eq!(h.prober.times(Liveness), [0.0, 10.0, 20.0]);
    assert_eq!(h.manager.liveness(POD, CTR), Some(ProbeState::Failure));
}

#[tokio::test(start_paused = true)]
async fn readiness_needs_success_threshold_successes_in_a_row() {
    let mut h = Harness::new();
    let t = ProbeTiming {
        success_threshold: 3,
        ..timing(5)
    };
    h.prober
        .script(Readiness, [ok(), ok(), fail("blip"), ok(), ok(), ok()]);
    h.add(ContainerProbes::new(CTR).readiness(spec(t)));
    h.status(running("c1", 0.0));

    h.until(22.0).await; // probes at 0, 5, 10, 15, 20
    assert_eq!(h.changes(), [initial(Readiness, "c1")]);
    assert_eq!(h.manager.readiness(POD, CTR), Some(ProbeState::Failure));
    h.until(26.0).await; // the third success in a row after the blip, at 25
    assert_eq!(h.changes(), [probe(Readiness, "c1", ProbeState::Success)]);
    assert_eq!(h.manager.readiness(POD, CTR), Some(ProbeState::Success));
    assert_eq!(
        h.prober.times(Readiness),
        [0.0, 5.0, 10.0, 15.0, 20.0, 25.0]
    );
}

#[tokio::test(start_paused = true)]
async fn probes_are_spaced_by_the_period() {
    let h = Harness::new();
    h.add(ContainerProbes::new(CTR).readiness(spec(timing(7))));
    h.status(running("c1", 0.0));
    h.until(50.0).await;
    assert_eq!(
        h.prober.times(Readiness),
        [0.0, 7.0, 14.0, 21.0, 28.0, 35.0, 42.0, 49.0]
    );
}

#[tokio::test(start_paused = true)]
async fn a_slow_probe_delays_one_tick_and_the_grid_resumes() {
    let h = Harness::new();
    // The first attempt takes 25 s: the ticks at 10 and 20 collapse into one at 25.
    h.prober.script(
        Readiness,
        [Answer::Slow(
            Duration::from_secs(25),
            ProbeOutcome::success(""),
        )],
    );
    h.add(ContainerProbes::new(CTR).readiness(spec(timing(10))));
    h.status(running("c1", 0.0));
    h.until(45.0).await;
    assert_eq!(h.prober.times(Readiness), [0.0, 25.0, 30.0, 40.0]);
}

#[tokio::test(start_paused = true)]
async fn initial_delay_is_measured_from_the_container_start() {
    let h = Harness::new();
    let t = ProbeTiming {
        initial_delay_seconds: 10,
        ..timing(5)
    };
    h.add(ContainerProbes::new(CTR).liveness(spec(t)));
    // Started 3 s before the worker's first tick: 3, 8 s are too early; 13 s is not.
    h.status(running("c1", -3.0));
    h.until(16.0).await;
    assert_eq!(h.prober.times(Liveness), [10.0, 15.0]);

    // A container that starts later waits its own delay, on the worker's tick grid.
    let h = Harness::new();
    h.add(ContainerProbes::new(CTR).liveness(spec(t)));
    h.until(12.0).await;
    h.status(running("c1", 12.0));
    h.until(31.0).await;
    // Ticks at 15 (3 s), 20 (8 s), 25 (13 s): first probe at 25.
    assert_eq!(h.prober.times(Liveness), [25.0, 30.0]);
}

#[tokio::test(start_paused = true)]
async fn nothing_is_probed_without_a_status_or_a_container() {
    let h = Harness::new();
    h.add(ContainerProbes::new(CTR).liveness(spec(timing(1))));
    h.until(5.5).await;
    h.status(PodStatus::new(PodPhase::Pending));
    h.until(10.5).await;
    assert!(h.prober.calls().is_empty());
    assert_eq!(h.manager.worker_count(), 1);
    h.status(running("c1", 10.5));
    h.until(11.5).await;
    assert_eq!(h.prober.times(Liveness), [11.0]);
}

// ---------------------------------------------------------------------------------
// Startup gating

#[tokio::test(start_paused = true)]
async fn startup_gates_liveness_and_readiness() {
    let mut h = Harness::new();
    let startup = ProbeTiming {
        failure_threshold: 30,
        ..timing(5)
    };
    h.prober.script(Startup, [fail("s1"), fail("s2"), ok()]);
    h.add(
        ContainerProbes::new(CTR)
            .startup(spec(startup))
            .liveness(spec(timing(3)))
            .readiness(spec(timing(4))),
    );
    h.status(running("c1", 0.0));

    h.until(9.0).await;
    assert_eq!(h.prober.times(Startup), [0.0, 5.0]);
    assert!(h.prober.times(Liveness).is_empty());
    assert!(h.prober.times(Readiness).is_empty());
    assert_eq!(h.manager.is_started(POD, CTR), Some(false));
    assert_eq!(h.manager.startup(POD, CTR), Some(ProbeState::Unknown));

    h.until(29.5).await;
    // Started at 10: readiness is probed at once, liveness at its next tick (12).
    assert_eq!(h.prober.times(Startup), [0.0, 5.0, 10.0]);
    assert_eq!(h.prober.times(Readiness), [10.0, 14.0, 18.0, 22.0, 26.0]);
    assert_eq!(
        h.prober.times(Liveness),
        [12.0, 15.0, 18.0, 21.0, 24.0, 27.0]
    );
    assert_eq!(h.manager.is_started(POD, CTR), Some(true));
    assert_eq!(h.manager.startup(POD, CTR), Some(ProbeState::Success));
    let changes = h.changes();
    assert!(changes.contains(&probe(Startup, "c1", ProbeState::Success)));
    assert!(changes.contains(&probe(Readiness, "c1", ProbeState::Success)));
    // The startup worker idles but stays for restarts.
    assert_eq!(h.manager.worker_count(), 3);

    // A new container is gated again until its startup probe passes.
    h.prober.script(Startup, [fail("s"), ok()]);
    h.status(running("c2", 29.5));
    assert_eq!(h.manager.is_started(POD, CTR), Some(false));
    h.until(41.0).await;
    let after = |kind| -> Vec<Call> {
        h.prober
            .calls()
            .into_iter()
            .filter(|c| c.kind == kind && c.container_id == "c2")
            .collect()
    };
    let startup_c2: Vec<f64> = after(Startup).iter().map(|c| c.at).collect();
    assert_eq!(startup_c2, [30.0, 35.0]);
    assert!(after(Liveness).iter().all(|c| c.at >= 35.0));
    assert!(after(Readiness).iter().all(|c| c.at >= 35.0));
    assert!(!after(Liveness).is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_failed_startup_probe_holds_until_the_next_container() {
    let mut h = Harness::new();
    let t = ProbeTiming {
        failure_threshold: 2,
        termination_grace_period_seconds: Some(5),
        ..timing(5)
    };
    h.prober.script(Startup, [fail("a"), fail("b")]);
    h.add(
        ContainerProbes::new(CTR)
            .startup(spec(t))
            .liveness(spec(timing(5))),
    );
    h.status(running("c1", 0.0));
    h.until(29.5).await;
    assert_eq!(h.prober.times(Startup), [0.0, 5.0]);
    assert!(h.prober.times(Liveness).is_empty());
    let failure = h
        .updates()
        .into_iter()
        .find(|u| u.kind == Startup && u.result == ProbeState::Failure)
        .unwrap();
    assert_eq!(failure.termination_grace_period_seconds, Some(5));
    assert_eq!(failure.output, "b");
    assert_eq!(h.manager.is_started(POD, CTR), Some(false));
}

// ---------------------------------------------------------------------------------
// Hold and container restarts

#[tokio::test(start_paused = true)]
async fn liveness_failure_holds_until_a_new_container_id() {
    let mut h = Harness::new();
    let t = ProbeTiming {
        failure_threshold: 1,
        termination_grace_period_seconds: Some(3),
        ..timing(10)
    };
    h.prober.script(Liveness, [fail("dead")]);
    h.add(ContainerProbes::new(CTR).liveness(spec(t)));
    h.status(running("c1", 0.0));

    h.until(34.0).await;
    // No probes while on hold.
    assert_eq!(h.prober.times(Liveness), [0.0]);
    let updates = h.updates();
    assert_eq!(updates.len(), 2);
    assert_eq!(updates[1].result, ProbeState::Failure);
    assert_eq!(updates[1].termination_grace_period_seconds, Some(3));
    assert_eq!(updates[1].output, "dead");

    // The runtime restarts the container: a new ID.
    h.status(running("c2", 34.0));
    // Until the worker sees it, the old container's result does not apply.
    assert_eq!(h.manager.liveness(POD, CTR), None);
    h.until(41.0).await;
    assert_eq!(h.changes(), [initial(Liveness, "c2")]);
    let calls = h.prober.calls();
    assert_eq!(calls.len(), 2);
    assert_eq!((calls[1].at, calls[1].container_id.as_str()), (40.0, "c2"));
    assert_eq!(h.manager.liveness(POD, CTR), Some(ProbeState::Success));
}

#[tokio::test(start_paused = true)]
async fn readiness_resets_to_not_ready_on_a_new_container() {
    let mut h = Harness::new();
    h.prober.script(Readiness, [ok(), ok(), fail("x"), ok()]);
    h.add(ContainerProbes::new(CTR).readiness(spec(timing(10))));
    h.status(running("c1", 0.0));
    h.until(15.0).await;
    assert_eq!(
        h.changes(),
        [
            initial(Readiness, "c1"),
            probe(Readiness, "c1", ProbeState::Success)
        ]
    );
    h.status(running("c2", 15.0));
    // A new container that has just become started gets a readiness probe at once;
    // one failure is below the threshold, and it is not ready anyway.
    h.until(16.0).await;
    assert_eq!(h.changes(), [initial(Readiness, "c2")]);
    assert_eq!(h.manager.readiness(POD, CTR), Some(ProbeState::Failure));
    h.until(26.0).await;
    assert_eq!(h.changes(), [probe(Readiness, "c2", ProbeState::Success)]);
    // The period restarted at the triggered probe.
    assert_eq!(h.prober.times(Readiness), [0.0, 10.0, 15.0, 25.0]);
}

#[tokio::test(start_paused = true)]
async fn a_container_that_stops_fails_and_its_workers_stop_if_it_will_not_restart() {
    let mut h = Harness::new();
    h.add(
        ContainerProbes::new(CTR)
            .liveness(spec(timing(10)))
            .readiness(spec(timing(10))),
    );
    h.status(running("c1", 0.0));
    h.until(5.0).await;
    h.updates();
    // Exited, will be restarted: Failure, the workers wait.
    h.status(PodStatus::new(PodPhase::Running).container(ContainerStatus::terminated(CTR, "c1")));
    h.until(15.0).await;
    // Both were Success: both change to Failure (in either order: same instant).
    let mut changes = h.changes();
    changes.sort_by_key(|c| format!("{c:?}"));
    let not_running = |kind| {
        (
            kind,
            "c1".to_string(),
            ProbeState::Failure,
            ResultCause::ContainerNotRunning,
        )
    };
    assert_eq!(changes, [not_running(Liveness), not_running(Readiness)]);
    assert_eq!(h.manager.worker_count(), 2);
    // Will not be restarted: the workers stop.
    h.status(
        PodStatus::new(PodPhase::Running)
            .container(ContainerStatus::terminated(CTR, "c1").may_restart(false)),
    );
    h.until(25.0).await;
    assert_eq!(h.manager.worker_count(), 0);
    assert_eq!(h.manager.pod_worker_count(POD), Some(0));
    assert_eq!(h.prober.times(Liveness), [0.0]);
}

// ---------------------------------------------------------------------------------
// Errors and result mapping

#[tokio::test(start_paused = true)]
async fn errors_are_retried_three_times_then_the_attempt_is_thrown_away() {
    let mut h = Harness::new();
    let t = ProbeTiming {
        failure_threshold: 2,
        ..timing(10)
    };
    h.prober.script(
        Liveness,
        [
            err(),
            err(),
            err(), // attempt at 0: thrown away
            err(),
            fail("f1"), // attempt at 10: the retry fails normally (run 1)
            fail("f2"), // attempt at 20: run 2, published
        ],
    );
    h.add(ContainerProbes::new(CTR).liveness(spec(t)));
    h.status(running("c1", 0.0));
    h.until(15.0).await;
    assert_eq!(h.changes(), [initial(Liveness, "c1")]);
    h.until(25.0).await;
    assert_eq!(h.prober.times(Liveness), [0.0, 0.0, 0.0, 10.0, 10.0, 20.0]);
    let updates = h.updates();
    assert_eq!(updates.len(), 1);
    assert_eq!(
        (updates[0].result, updates[0].output.as_str()),
        (ProbeState::Failure, "f2")
    );
}

#[tokio::test(start_paused = true)]
async fn errors_never_publish_anything() {
    let mut h = Harness::new();
    h.prober.script(Readiness, std::iter::repeat_n(err(), 30));
    h.add(ContainerProbes::new(CTR).readiness(spec(timing(1))));
    h.status(running("c1", 0.0));
    h.until(9.5).await;
    assert_eq!(h.prober.times(Readiness).len(), 30);
    assert_eq!(h.changes(), [initial(Readiness, "c1")]);
}

#[tokio::test(start_paused = true)]
async fn warning_counts_as_success_and_unknown_as_failure() {
    let mut h = Harness::new();
    let t = ProbeTiming {
        failure_threshold: 1,
        ..timing(10)
    };
    h.prober.script(
        Readiness,
        [
            Answer::Outcome(ProbeOutcome::warning("redirect to other host")),
            Answer::Outcome(ProbeOutcome {
                result: ProbeResult::Unknown,
                output: "?".into(),
            }),
        ],
    );
    h.add(ContainerProbes::new(CTR).readiness(spec(t)));
    h.status(running("c1", 0.0));
    h.until(15.0).await;
    let updates = h.updates();
    assert_eq!(updates.len(), 3);
    assert_eq!(updates[1].result, ProbeState::Success);
    assert_eq!(updates[1].output, "redirect to other host");
    assert_eq!(updates[2].result, ProbeState::Failure);
    assert_eq!(updates[2].output, "?");
}

#[tokio::test(start_paused = true)]
async fn the_grace_period_rides_only_on_liveness_and_startup_failures() {
    let mut h = Harness::new();
    let grace = ProbeTiming {
        failure_threshold: 1,
        termination_grace_period_seconds: Some(42),
        ..timing(10)
    };
    let readiness = ProbeTiming {
        failure_threshold: 1,
        ..timing(10)
    };
    h.prober.script(Liveness, [ok(), fail("l")]);
    h.prober.script(Readiness, [fail("r")]);
    h.add(
        ContainerProbes::new(CTR)
            .liveness(spec(grace))
            .readiness(spec(readiness)),
    );
    h.status(running("c1", 0.0));
    h.until(15.0).await;
    for u in h.updates() {
        let expected = (u.kind == Liveness && u.result == ProbeState::Failure).then_some(42);
        assert_eq!(u.termination_grace_period_seconds, expected, "{u:?}");
    }
    let current = h.manager.result(POD, CTR, Liveness).unwrap();
    assert_eq!(current.termination_grace_period_seconds, Some(42));
    assert_eq!(current.cause, ResultCause::Probe);
}

// ---------------------------------------------------------------------------------
// Pod lifecycle

#[tokio::test(start_paused = true)]
async fn a_terminal_pod_stops_its_workers() {
    let h = Harness::new();
    h.add(
        ContainerProbes::new(CTR)
            .liveness(spec(timing(10)))
            .readiness(spec(timing(10))),
    );
    h.status(running("c1", 0.0));
    h.until(12.0).await;
    assert_eq!(h.manager.worker_count(), 2);
    let mut done = running("c1", 0.0);
    done.phase = PodPhase::Succeeded;
    h.status(done);
    h.until(21.0).await;
    assert_eq!(h.manager.worker_count(), 0);
    // Stopped workers leave no results behind.
    assert_eq!(h.manager.readiness(POD, CTR), None);
    h.until(60.0).await;
    assert_eq!(h.prober.times(Readiness), [0.0, 10.0]);
}

#[tokio::test(start_paused = true)]
async fn a_deleting_pod_sets_liveness_and_startup_to_success() {
    let mut h = Harness::new();
    let startup = ProbeTiming {
        failure_threshold: 100,
        ..timing(10)
    };
    h.prober
        .script(Startup, std::iter::repeat_n(fail("not yet"), 100));
    h.add(
        ContainerProbes::new(CTR)
            .startup(spec(startup))
            .liveness(spec(timing(10)))
            .readiness(spec(timing(10))),
    );
    h.status(running("c1", 0.0));
    h.until(15.0).await;
    h.updates();
    assert_eq!(h.manager.worker_count(), 3);

    h.status(running("c1", 0.0).deleting(true));
    h.until(21.0).await;
    let changes = h.changes();
    assert!(
        changes.contains(&(
            Startup,
            "c1".into(),
            ProbeState::Success,
            ResultCause::PodDeleting
        )),
        "{changes:?}"
    );
    // Liveness was Success already: nothing changed, nothing sent.
    assert!(changes.iter().all(|c| c.0 != Liveness), "{changes:?}");
    // Liveness and startup stop; readiness goes on through the graceful termination,
    // and with the startup worker gone the container counts as started.
    assert_eq!(h.manager.worker_count(), 1);
    h.until(41.0).await;
    assert_eq!(h.prober.times(Readiness), [20.0, 30.0, 40.0]);
    assert!(h.prober.times(Liveness).is_empty());
}

#[tokio::test(start_paused = true)]
async fn removing_pods_stops_their_workers_without_leaks() {
    let h = Harness::new();
    for i in 0..50 {
        let probes = ContainerProbes::new(CTR)
            .startup(spec(timing(1)))
            .liveness(spec(timing(2)))
            .readiness(spec(timing(3)));
        h.manager
            .add_pod(PodProbes::new(format!("pod-{i}")).container(probes))
            .unwrap();
        h.manager
            .set_pod_status(&format!("pod-{i}"), running(&format!("c{i}"), 0.0));
    }
    assert_eq!(h.manager.worker_count(), 150);
    assert_eq!(h.manager.pod_count(), 50);
    h.until(10.5).await;
    assert!(!h.prober.calls().is_empty());

    for i in 0..25 {
        assert!(h.manager.remove_pod(&format!("pod-{i}")));
    }
    assert!(!h.manager.remove_pod("pod-0"));
    h.until(11.0).await;
    assert_eq!(h.manager.worker_count(), 75);
    assert_eq!(h.manager.pod_count(), 25);
    assert_eq!(h.manager.readiness("pod-0", CTR), None);
    assert!(!h.manager.probe_now("pod-0", CTR, Readiness));

    let before = h.prober.calls().len();
    h.until(20.0).await;
    let removed_probed = h.prober.calls()[before..].iter().any(|c| {
        c.container_id
            .trim_start_matches('c')
            .parse::<u32>()
            .unwrap()
            < 25
    });
    assert!(!removed_probed);

    for i in 25..50 {
        h.manager.remove_pod(&format!("pod-{i}"));
    }
    h.until(20.5).await;
    assert_eq!(h.manager.worker_count(), 0);
}

#[tokio::test(start_paused = true)]
async fn removing_a_pod_cancels_a_probe_in_flight() {
    let h = Harness::new();
    h.prober.script(
        Liveness,
        [Answer::Slow(
            Duration::from_secs(3600),
            ProbeOutcome::success(""),
        )],
    );
    h.add(ContainerProbes::new(CTR).liveness(spec(timing(10))));
    h.status(running("c1", 0.0));
    h.until(1.0).await;
    assert_eq!(h.prober.times(Liveness), [0.0]);
    assert!(h.manager.remove_pod(POD));
    h.until(1.001).await;
    assert_eq!(h.manager.worker_count(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_stale_attempt_is_dropped_when_the_container_changes_meanwhile() {
    let mut h = Harness::new();
    let t = ProbeTiming {
        failure_threshold: 1,
        ..timing(10)
    };
    h.prober.script(
        Liveness,
        [Answer::Slow(
            Duration::from_secs(5),
            ProbeOutcome::failure("old"),
        )],
    );
    h.add(ContainerProbes::new(CTR).liveness(spec(t)));
    h.status(running("c1", 0.0));
    h.until(2.0).await;
    h.status(running("c2", 2.0));
    h.until(12.0).await;
    // The failure of c1 (finished at 5, when c2 already ran) was not published.
    let changes = h.changes();
    assert!(
        changes.iter().all(|c| c.2 != ProbeState::Failure),
        "{changes:?}"
    );
    assert_eq!(h.manager.liveness(POD, CTR), Some(ProbeState::Success));
}

// ---------------------------------------------------------------------------------
// Manual trigger, jitter, agent restart

#[tokio::test(start_paused = true)]
async fn probe_now_probes_at_once_and_restarts_the_period() {
    let h = Harness::new();
    h.add(ContainerProbes::new(CTR).liveness(spec(timing(60))));
    h.status(running("c1", 0.0));
    h.until(5.0).await;
    assert!(h.manager.probe_now(POD, CTR, Liveness));
    assert!(!h.manager.probe_now(POD, CTR, Readiness));
    assert!(!h.manager.probe_now(POD, "other", Liveness));
    h.until(70.0).await;
    assert_eq!(h.prober.times(Liveness), [0.0, 5.0, 65.0]);
}

#[tokio::test(start_paused = true)]
async fn first_probe_is_jittered_only_right_after_an_agent_start() {
    // The agent has just started: the first probe waits fraction × period.
    let h = Harness::with(|b| {
        b.agent_started_at(wall(0.0))
            .random_source(Arc::new(FixedFraction(0.5)))
    });
    h.add(ContainerProbes::new(CTR).liveness(spec(timing(10))));
    h.status(running("c1", 0.0));
    h.until(26.0).await;
    assert_eq!(h.prober.times(Liveness), [5.0, 15.0, 25.0]);

    // Started 4 s ago: still within a 10 s period, but not a 2 s one.
    let h = Harness::with(|b| {
        b.agent_started_at(wall(-4.0))
            .random_source(Arc::new(FixedFraction(0.25)))
    });
    h.add(
        ContainerProbes::new(CTR)
            .liveness(spec(timing(10)))
            .readiness(spec(timing(2))),
    );
    h.status(running("c1", 0.0));
    h.until(13.0).await;
    assert_eq!(h.prober.times(Liveness), [2.5, 12.5]);
    assert_eq!(h.prober.times(Readiness)[..3], [0.0, 2.0, 4.0]);

    // Long after the agent started: no jitter.
    let h = Harness::with(|b| {
        b.agent_started_at(wall(-3600.0))
            .random_source(Arc::new(FixedFraction(0.9)))
    });
    h.add(ContainerProbes::new(CTR).liveness(spec(timing(10))));
    h.status(running("c1", 0.0));
    h.until(11.0).await;
    assert_eq!(h.prober.times(Liveness), [0.0, 10.0]);
}

#[tokio::test(start_paused = true)]
async fn seeded_jitter_is_reproducible_and_spreads_first_probes() {
    async fn first_probes(seed: u64) -> Vec<f64> {
        let h = Harness::with(|b| b.agent_started_at(wall(0.0)).jitter_seed(seed));
        for i in 0..20 {
            let pod = format!("pod-{i}");
            h.manager
                .add_pod(
                    PodProbes::new(&pod)
                        .container(ContainerProbes::new(CTR).liveness(spec(timing(10)))),
                )
                .unwrap();
            h.manager
                .set_pod_status(&pod, running(&format!("c{i}"), 0.0));
        }
        h.until(9.99).await;
        let mut times = h.prober.times(Liveness);
        times.sort_by(f64::total_cmp);
        h.manager.shutdown().await;
        times
    }
    let a = first_probes(7).await;
    let b = first_probes(7).await;
    assert_eq!(a.len(), 20);
    assert_eq!(a, b);
    assert!(a.iter().all(|t| (0.0..10.0).contains(t)));
    assert!(a.first() != a.last(), "first probes are spread: {a:?}");
}

#[tokio::test(start_paused = true)]
async fn containers_running_since_before_the_agent_keep_their_state() {
    let mut h = Harness::with(|b| {
        b.agent_started_at(wall(0.0))
            .random_source(Arc::new(FixedFraction(0.0)))
    });
    h.prober.script(Readiness, [fail("x")]);
    let t = ProbeTiming {
        failure_threshold: 1,
        ..timing(10)
    };
    h.add(ContainerProbes::new(CTR).readiness(spec(t)));
    // Running for an hour, reported ready before the agent restarted.
    h.status(
        PodStatus::new(PodPhase::Running)
            .container(ContainerStatus::running(CTR, "c1", wall(-3600.0)).started(true)),
    );
    // No result until probed: the embedder keeps the state it reported.
    assert_eq!(h.manager.readiness(POD, CTR), None);
    h.until(1.0).await;
    // No initial Failure was published, only the probe's.
    assert_eq!(h.changes(), [probe(Readiness, "c1", ProbeState::Failure)]);
}

// ---------------------------------------------------------------------------------
// Validation, shutdown, cancellation

#[tokio::test(start_paused = true)]
async fn invalid_probes_are_rejected_with_pod_container_and_kind() {
    let h = Harness::new();
    let bad = ProbeTiming {
        success_threshold: 2,
        ..ProbeTiming::default()
    };
    let err = h
        .manager
        .add_pod(
            PodProbes::new("uid-9")
                .container(ContainerProbes::new("ok").readiness(spec(timing(1))))
                .container(ContainerProbes::new("web").liveness(spec(bad))),
        )
        .unwrap_err();
    assert_eq!(
        err,
        ManagerError::InvalidProbe {
            pod_uid: "uid-9".into(),
            container: "web".into(),
            kind: Liveness,
            error: ValidationError::SuccessThresholdMustBeOne {
                kind: Liveness,
                value: 2
            },
        }
    );
    assert_eq!(
        err.to_string(),
        "pod uid-9, container \"web\": livenessProbe.successThreshold: must be 1 (got 2)"
    );
    // Nothing was started.
    assert_eq!(h.manager.worker_count(), 0);
    assert_eq!(h.manager.pod_count(), 0);

    let dup = h
        .manager
        .add_pod(
            PodProbes::new("uid-9")
                .container(ContainerProbes::new("a"))
                .container(ContainerProbes::new("a")),
        )
        .unwrap_err();
    assert!(matches!(dup, ManagerError::DuplicateContainer { .. }));
}

#[tokio::test(start_paused = true)]
async fn adding_a_pod_twice_changes_nothing() {
    let h = Harness::new();
    h.add(ContainerProbes::new(CTR).liveness(spec(timing(10))));
    h.add(
        ContainerProbes::new(CTR)
            .liveness(spec(timing(1)))
            .readiness(spec(timing(1))),
    );
    assert_eq!(h.manager.worker_count(), 1);
    assert!(!h.manager.set_pod_status("unknown", running("c1", 0.0)));
}

#[tokio::test(start_paused = true)]
async fn shutdown_stops_everything_and_ends_the_stream() {
    let Harness {
        prober,
        manager,
        mut updates,
        ..
    } = Harness::new();
    prober.script(
        Readiness,
        [Answer::Slow(
            Duration::from_secs(3600),
            ProbeOutcome::success(""),
        )],
    );
    manager
        .add_pod(
            PodProbes::new(POD).container(
                ContainerProbes::new(CTR)
                    .readiness(spec(timing(10)))
                    .liveness(spec(timing(10))),
            ),
        )
        .unwrap();
    manager.set_pod_status(POD, running("c1", 0.0));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(manager.worker_count(), 2);
    let clone = manager.clone();
    manager.shutdown().await;
    assert_eq!(clone.worker_count(), 0);
    assert_eq!(
        clone.add_pod(PodProbes::new("late")),
        Err(ManagerError::ShutDown)
    );
    drop((manager, clone));
    // Buffered updates are still delivered, then the stream ends.
    while updates.recv().await.is_some() {}
}

#[tokio::test(start_paused = true)]
async fn dropping_the_manager_cancels_its_workers() {
    let Harness {
        prober, manager, ..
    } = Harness::new();
    manager
        .add_pod(PodProbes::new(POD).container(ContainerProbes::new(CTR).liveness(spec(timing(1)))))
        .unwrap();
    manager.set_pod_status(POD, running("c1", 0.0));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let calls = prober.calls().len();
    assert_eq!(calls, 3);
    drop(manager);
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(prober.calls().len(), calls);
    // The prober is no longer shared with any worker.
    assert_eq!(Arc::strong_count(&prober), 1);
}

#[test]
fn building_outside_a_runtime_is_an_error() {
    let prober = ScriptedProber::new(Instant::now());
    let err = ProbeManager::builder(prober).build().unwrap_err();
    assert_eq!(err, ManagerError::NoRuntime);
}

// ---------------------------------------------------------------------------------
// Cost of an idle tick

#[test]
fn idle_ticks_do_not_allocate() {
    // A paused current-thread runtime runs every worker on this thread, which is the
    // thread `allocation_counter` counts (other tests running in parallel don't count).
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    let h = rt.block_on(async {
        let h = Harness::new();
        // Liveness and readiness gated behind a startup probe that is on hold after
        // failing: three workers tick every second and never probe.
        let t = ProbeTiming {
            failure_threshold: 1,
            ..timing(1)
        };
        h.prober.script(Startup, [fail("no")]);
        h.add(
            ContainerProbes::new(CTR)
                .startup(spec(t))
                .liveness(spec(timing(1)))
                .readiness(spec(timing(1))),
        );
        h.status(running("c1", 0.0));
        h.until(10.5).await;
        h
    });
    assert_eq!(h.prober.calls().len(), 1);
    let info = allocation_counter::measure(|| rt.block_on(h.until(1010.5))); // 3 000 ticks
    assert_eq!(h.prober.calls().len(), 1);
    assert_eq!(h.manager.worker_count(), 3);
    assert_eq!(info.count_total, 0, "allocations during 3 000 idle ticks");
}

#[test]
fn a_probing_tick_allocates_only_the_probers_boxed_future() {
    /// Passes without allocating anything itself.
    #[derive(Debug, Default)]
    struct Quiet(std::sync::atomic::AtomicUsize);

    #[async_trait::async_trait]
    impl Prober for Quiet {
        async fn probe(
            &self,
            _: ProbeKind,
            _: &ProbeSpec,
            _: &ProbeTarget,
        ) -> Result<ProbeOutcome, ProbeError> {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Ok(ProbeOutcome::success(String::new()))
        }
    }

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    let prober = Arc::new(Quiet::default());
    let (start, manager, _updates) = rt.block_on(async {
        let start = Instant::now();
        let (manager, updates) = ProbeManager::builder(prober.clone())
            .clock(Arc::new(TokioClock::starting_at(base())))
            .agent_started_at(wall(-3600.0))
            .build()
            .unwrap();
        manager
            .add_pod(
                PodProbes::new(POD).container(
                    ContainerProbes::new(CTR)
                        .liveness(spec(timing(1)))
                        .readiness(spec(timing(1))),
                ),
            )
            .unwrap();
        manager.set_pod_status(POD, running("c1", 0.0));
        tokio::time::sleep_until(start + Duration::from_millis(10_500)).await;
        (start, manager, updates)
    });
    let before = prober.0.load(std::sync::atomic::Ordering::Relaxed);
    let info = allocation_counter::measure(|| {
        rt.block_on(async {
            tokio::time::sleep_until(start + Duration::from_millis(1_010_500)).await;
        });
    });
    let probes = prober.0.load(std::sync::atomic::Ordering::Relaxed) - before;
    assert_eq!(probes, 2000);
    assert_eq!(manager.worker_count(), 2);
    // One allocation per probe: the boxed future of the `async_trait` Prober.
    assert_eq!(info.count_total, 2000);
}

// ---------------------------------------------------------------------------------
// Real threads (no timing asserted; the timeout only turns a hang into a failure)

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_pods_on_a_multi_thread_runtime() {
    let prober = ScriptedProber::new(Instant::now());
    let (manager, mut updates) = ProbeManager::builder(prober.clone())
        .agent_started_at(SystemTime::now() - Duration::from_secs(3600))
        .build()
        .unwrap();
    let t = ProbeTiming {
        failure_threshold: 1,
        ..timing(1)
    };
    prober.script(Liveness, std::iter::repeat_n(fail("down"), 200));
    for i in 0..200 {
        let pod = format!("pod-{i}");
        manager
            .add_pod(
                PodProbes::new(&pod).container(
                    ContainerProbes::new(CTR)
                        .liveness(spec(t))
                        .readiness(spec(timing(1))),
                ),
            )
            .unwrap();
        manager.set_pod_status(
            &pod,
            PodStatus::new(PodPhase::Running).container(ContainerStatus::running(
                CTR,
                format!("c{i}"),
                SystemTime::now(),
            )),
        );
    }
    let failures = async {
        let mut seen = std::collections::HashSet::new();
        while seen.len() < 200 {
            let u = updates.recv().await.unwrap();
            if u.kind == Liveness && u.result == ProbeState::Failure {
                seen.insert(u.pod_uid);
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), failures)
        .await
        .expect("every pod's liveness failure is delivered");
    for i in 0..200 {
        assert_eq!(
            manager.liveness(&format!("pod-{i}"), CTR),
            Some(ProbeState::Failure)
        );
    }
    for i in 0..100 {
        manager.remove_pod(&format!("pod-{i}"));
    }
    tokio::time::timeout(Duration::from_secs(60), manager.shutdown())
        .await
        .expect("shutdown completes");
    assert_eq!(manager.worker_count(), 0);
}
