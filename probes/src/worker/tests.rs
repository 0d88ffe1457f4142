//! The worker state machine, rule by rule, without async or clocks.

use super::*;

const ALL_KINDS: [ProbeKind; 3] = [
    ProbeKind::Liveness,
    ProbeKind::Readiness,
    ProbeKind::Startup,
];

/// What the state machine published, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Event {
    Set(String, ProbeState, ResultCause, String),
    Remove(String),
}

#[derive(Debug, Default)]
struct Sink(Vec<Event>);

impl Sink {
    fn take(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.0)
    }
}

impl ResultSink for Sink {
    fn set(&mut self, id: &Arc<str>, state: ProbeState, cause: ResultCause, output: String) {
        self.0
            .push(Event::Set(id.to_string(), state, cause, output));
    }

    fn remove(&mut self, id: &Arc<str>) {
        self.0.push(Event::Remove(id.to_string()));
    }
}

fn set(id: &str, state: ProbeState, cause: ResultCause) -> Event {
    Event::Set(id.into(), state, cause, String::new())
}

fn probed(id: &str, state: ProbeState, output: &str) -> Event {
    Event::Set(id.into(), state, ResultCause::Probe, output.into())
}

/// A fixed "now" far from the epoch; everything is relative to it.
fn t0() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// `t0` shifted by a signed number of seconds.
fn at(offset: f64) -> SystemTime {
    if offset < 0.0 {
        t0() - secs(-offset)
    } else {
        t0() + secs(offset)
    }
}

/// An agent that started an hour before `t0` (no restart effects).
fn worker(kind: ProbeKind, timing: ProbeTiming) -> WorkerState {
    WorkerState::new(kind, timing, t0() - secs(3600.0))
}

fn default_worker(kind: ProbeKind) -> WorkerState {
    worker(kind, ProbeTiming::default())
}

/// A running container that started at `t0` and counts as started when `started`.
fn running<'a>(id: &'a Arc<str>, started: bool) -> PodObservation<'a> {
    PodObservation {
        phase: PodPhase::Running,
        deleting: false,
        container: Some(ContainerObservation {
            id,
            state: ContainerState::Running { started_at: t0() },
            may_restart: true,
            started,
        }),
    }
}

/// The observation under which `kind` probes: started unless it is the startup probe.
fn probing<'a>(id: &'a Arc<str>, kind: ProbeKind) -> PodObservation<'a> {
    running(id, kind != ProbeKind::Startup)
}

fn id(s: &str) -> Arc<str> {
    Arc::from(s)
}

fn fail(output: &str) -> Result<ProbeOutcome, ProbeError> {
    Ok(ProbeOutcome::failure(output))
}

fn pass(output: &str) -> Result<ProbeOutcome, ProbeError> {
    Ok(ProbeOutcome::success(output))
}

fn error() -> Result<ProbeOutcome, ProbeError> {
    Err(ProbeError::NoHost)
}

#[test]
fn attempt_mapping_and_initial_results() {
    assert_eq!(
        ProbeState::from_attempt(ProbeResult::Success),
        ProbeState::Success
    );
    assert_eq!(
        ProbeState::from_attempt(ProbeResult::Warning),
        ProbeState::Success
    );
    assert_eq!(
        ProbeState::from_attempt(ProbeResult::Failure),
        ProbeState::Failure
    );
    assert_eq!(
        ProbeState::from_attempt(ProbeResult::Unknown),
        ProbeState::Failure
    );
    assert_eq!(
        ProbeState::initial(ProbeKind::Readiness),
        ProbeState::Failure
    );
    assert_eq!(
        ProbeState::initial(ProbeKind::Liveness),
        ProbeState::Success
    );
    assert_eq!(ProbeState::initial(ProbeKind::Startup), ProbeState::Unknown);
    assert_eq!(ProbeState::Unknown.to_string(), "unknown");
}

#[test]
fn first_container_publishes_the_initial_result_then_probes() {
    for kind in ALL_KINDS {
        let c1 = id("c1");
        let mut w = default_worker(kind);
        let mut sink = Sink::default();
        let step = w.tick(Some(&probing(&c1, kind)), t0(), &mut sink);
        assert_eq!(step, Step::Probe, "{kind}");
        assert_eq!(
            sink.take(),
            [set("c1", ProbeState::initial(kind), ResultCause::Initial)],
            "{kind}"
        );
        assert_eq!(w.container_id().map(|s| &**s), Some("c1"));
        // The same container again publishes nothing new.
        assert_eq!(
            w.tick(Some(&probing(&c1, kind)), t0(), &mut sink),
            Step::Probe
        );
        assert!(sink.take().is_empty());
    }
}

#[test]
fn no_pod_status_or_no_container_waits_silently() {
    for kind in ALL_KINDS {
        let mut w = default_worker(kind);
        let mut sink = Sink::default();
        assert_eq!(w.tick(None, t0(), &mut sink), Step::Wait);
        let not_created = PodObservation {
            phase: PodPhase::Pending,
            deleting: false,
            container: None,
        };
        assert_eq!(w.tick(Some(&not_created), t0(), &mut sink), Step::Wait);
        assert!(sink.take().is_empty(), "{kind}");
        assert!(w.container_id().is_none());
    }
}

#[test]
fn terminal_pod_stops_before_anything_else() {
    for kind in ALL_KINDS {
        for phase in [PodPhase::Succeeded, PodPhase::Failed] {
            let c1 = id("c1");
            let mut w = default_worker(kind);
            let mut sink = Sink::default();
            let mut pod = probing(&c1, kind);
            pod.phase = phase;
            assert_eq!(w.tick(Some(&pod), t0(), &mut sink), Step::Stop);
            assert!(sink.take().is_empty(), "{kind} {phase:?}");
        }
        for phase in [PodPhase::Pending, PodPhase::Running, PodPhase::Unknown] {
            let c1 = id("c1");
            let mut w = default_worker(kind);
            let mut pod = probing(&c1, kind);
            pod.phase = phase;
            assert_eq!(
                w.tick(Some(&pod), t0(), &mut Sink::default()),
                Step::Probe,
                "{kind} {phase:?}"
            );
        }
    }
}

#[test]
fn liveness_failure_is_published_at_the_threshold_then_holds() {
    let c1 = id("c1");
    let mut w = default_worker(ProbeKind::Liveness); // failureThreshold 3
    let mut sink = Sink::default();
    let pod = probing(&c1, ProbeKind::Liveness);
    assert_eq!(w.tick(Some(&pod), t0(), &mut sink), Step::Probe);
    sink.take();
    assert_eq!(w.record(fail("f1"), &mut sink), Recorded::BelowThreshold);
    assert_eq!(w.tick(Some(&pod), t0(), &mut sink), Step::Probe);
    assert_eq!(w.record(fail("f2"), &mut sink), Recorded::BelowThreshold);
    assert!(sink.take().is_empty());
    assert_eq!(w.run(), (Some(ProbeState::Failure), 2));
    assert_eq!(w.tick(Some(&pod), t0(), &mut sink), Step::Probe);
    assert_eq!(w.record(fail("f3"), &mut sink), Recorded::Published);
    assert_eq!(sink.take(), [probed("c1", ProbeState::Failure, "f3")]);
    assert!(w.is_on_hold());
    assert_eq!(w.run(), (Some(ProbeState::Failure), 0));
    // On hold: no probe, nothing published, even when the container stops running.
    for _ in 0..5 {
        assert_eq!(w.tick(Some(&pod), t0(), &mut sink), Step::Wait);
    }
    let mut stopped = pod;
    stopped.container.as_mut().unwrap().state = ContainerState::Terminated;
    assert_eq!(w.tick(Some(&stopped), t0(), &mut sink), Step::Wait);
    assert!(sink.take().is_empty());
}

#[test]
fn a_success_in_between_restarts_the_failure_run() {
    let c1 = id("c1");
    let mut w = default_worker(ProbeKind::Liveness);
    let mut sink = Sink::default();
    w.tick(Some(&probing(&c1, ProbeKind::Liveness)), t0(), &mut sink);
    sink.take();
    w.record(fail("f"), &mut sink);
    w.record(fail("f"), &mut sink);
    // A success publishes (successThreshold 1, no change for the cache) and resets.
    assert_eq!(w.record(pass("ok"), &mut sink), Recorded::Published);
    assert_eq!(sink.take(), [probed("c1", ProbeState::Success, "ok")]);
    assert!(!w.is_on_hold());
    assert_eq!(w.record(fail("f"), &mut sink), Recorded::BelowThreshold);
    assert_eq!(w.record(fail("f"), &mut sink), Recorded::BelowThreshold);
    assert_eq!(w.record(fail("f"), &mut sink), Recorded::Published);
}

#[test]
fn readiness_success_threshold_and_no_hold_on_failure() {
    let c1 = id("c1");
    let timing = ProbeTiming {
        success_threshold: 3,
        failure_threshold: 2,
        ..ProbeTiming::default()
    };
    let mut w = worker(ProbeKind::Readiness, timing);
    let mut sink = Sink::default();
    let pod = probing(&c1, ProbeKind::Readiness);
    w.tick(Some(&pod), t0(), &mut sink);
    assert_eq!(
        sink.take(),
        [set("c1", ProbeState::Failure, ResultCause::Initial)]
    );
    assert_eq!(w.record(pass("1"), &mut sink), Recorded::BelowThreshold);
    assert_eq!(w.record(pass("2"), &mut sink), Recorded::BelowThreshold);
    assert_eq!(w.record(pass("3"), &mut sink), Recorded::Published);
    assert_eq!(sink.take(), [probed("c1", ProbeState::Success, "3")]);
    // Every further success at or above the threshold is published again (the cache
    // reports no change).
    assert_eq!(w.record(pass("4"), &mut sink), Recorded::Published);
    sink.take();
    // Failures: published at 2, and readiness never holds.
    assert_eq!(w.record(fail("a"), &mut sink), Recorded::BelowThreshold);
    assert_eq!(w.record(fail("b"), &mut sink), Recorded::Published);
    assert_eq!(sink.take(), [probed("c1", ProbeState::Failure, "b")]);
    assert!(!w.is_on_hold());
    assert_eq!(w.tick(Some(&pod), t0(), &mut sink), Step::Probe);
    // Back to passing takes three successes again.
    assert_eq!(w.record(pass("1"), &mut sink), Recorded::BelowThreshold);
    assert_eq!(w.record(pass("2"), &mut sink), Recorded::BelowThreshold);
    assert_eq!(w.record(pass("3"), &mut sink), Recorded::Published);
}

#[test]
fn warning_counts_as_success_and_unknown_as_failure() {
    let c1 = id("c1");
    let timing = ProbeTiming {
        success_threshold: 2,
        failure_threshold: 2,
        ..ProbeTiming::default()
    };
    let mut w = worker(ProbeKind::Readiness, timing);
    let mut sink = Sink::default();
    w.tick(Some(&probing(&c1, ProbeKind::Readiness)), t0(), &mut sink);
    sink.take();
    w.record(pass("ok"), &mut sink);
    assert_eq!(
        w.record(Ok(ProbeOutcome::warning("redirect")), &mut sink),
        Recorded::Published
    );
    assert_eq!(sink.take(), [probed("c1", ProbeState::Success, "redirect")]);
    let unknown = ProbeOutcome {
        result: ProbeResult::Unknown,
        output: "?".into(),
    };
    w.record(fail("f"), &mut sink);
    assert_eq!(w.record(Ok(unknown), &mut sink), Recorded::Published);
    assert_eq!(sink.take(), [probed("c1", ProbeState::Failure, "?")]);
}

#[test]
fn errors_are_thrown_away_and_do_not_break_a_run() {
    let c1 = id("c1");
    let mut w = default_worker(ProbeKind::Liveness);
    let mut sink = Sink::default();
    w.tick(Some(&probing(&c1, ProbeKind::Liveness)), t0(), &mut sink);
    sink.take();
    w.record(fail("f1"), &mut sink);
    assert_eq!(w.record(error(), &mut sink), Recorded::Discarded);
    assert_eq!(w.run(), (Some(ProbeState::Failure), 1));
    w.record(fail("f2"), &mut sink);
    assert_eq!(w.record(error(), &mut sink), Recorded::Discarded);
    assert!(sink.take().is_empty());
    assert_eq!(w.record(fail("f3"), &mut sink), Recorded::Published);
    // An error before any container was seen is discarded as well.
    let mut fresh = default_worker(ProbeKind::Liveness);
    assert_eq!(fresh.record(fail("x"), &mut sink), Recorded::Discarded);
}

#[test]
fn new_container_id_resets_result_hold_and_run() {
    let (c1, c2) = (id("c1"), id("c2"));
    let mut w = default_worker(ProbeKind::Liveness);
    let mut sink = Sink::default();
    w.tick(Some(&probing(&c1, ProbeKind::Liveness)), t0(), &mut sink);
    for _ in 0..3 {
        w.record(fail("f"), &mut sink);
    }
    assert!(w.is_on_hold());
    sink.take();
    assert_eq!(
        w.tick(Some(&probing(&c2, ProbeKind::Liveness)), t0(), &mut sink),
        Step::Probe
    );
    assert_eq!(
        sink.take(),
        [
            Event::Remove("c1".into()),
            set("c2", ProbeState::Success, ResultCause::Initial),
        ]
    );
    assert!(!w.is_on_hold());
    assert_eq!(w.run(), (None, 0));
    // Failures of the old container do not count against the new one.
    let mut w = default_worker(ProbeKind::Liveness);
    w.tick(Some(&probing(&c1, ProbeKind::Liveness)), t0(), &mut sink);
    w.record(fail("f"), &mut sink);
    w.record(fail("f"), &mut sink);
    w.tick(Some(&probing(&c2, ProbeKind::Liveness)), t0(), &mut sink);
    sink.take();
    assert_eq!(w.record(fail("f"), &mut sink), Recorded::BelowThreshold);
    assert_eq!(w.record(fail("f"), &mut sink), Recorded::BelowThreshold);
    assert_eq!(w.record(fail("f"), &mut sink), Recorded::Published);
}

#[test]
fn startup_holds_after_any_published_result() {
    for (outcome, state) in [
        (pass("up"), ProbeState::Success),
        (fail("down"), ProbeState::Failure),
    ] {
        let c1 = id("c1");
        let timing = ProbeTiming {
            failure_threshold: 1,
            ..ProbeTiming::default()
        };
        let mut w = worker(ProbeKind::Startup, timing);
        let mut sink = Sink::default();
        let pod = running(&c1, false);
        assert_eq!(w.tick(Some(&pod), t0(), &mut sink), Step::Probe);
        sink.take();
        assert_eq!(w.record(outcome, &mut sink), Recorded::Published);
        assert_eq!(sink.take().len(), 1);
        assert_eq!(w.run().0, Some(state));
        assert!(w.is_on_hold());
        assert_eq!(w.tick(Some(&pod), t0(), &mut sink), Step::Wait);
        // A restarted container is probed from scratch, with a fresh Unknown.
        let c2 = id("c2");
        assert_eq!(
            w.tick(Some(&running(&c2, false)), t0(), &mut sink),
            Step::Probe
        );
        assert_eq!(
            sink.take(),
            [
                Event::Remove("c1".into()),
                set("c2", ProbeState::Unknown, ResultCause::Initial),
            ]
        );
    }
}

#[test]
fn startup_gating() {
    let c1 = id("c1");
    let mut sink = Sink::default();
    for kind in [ProbeKind::Liveness, ProbeKind::Readiness] {
        let mut w = default_worker(kind);
        assert_eq!(
            w.tick(Some(&running(&c1, false)), t0(), &mut sink),
            Step::Wait
        );
        assert_eq!(
            w.tick(Some(&running(&c1, true)), t0(), &mut sink),
            Step::Probe
        );
    }
    let mut w = default_worker(ProbeKind::Startup);
    assert_eq!(
        w.tick(Some(&running(&c1, false)), t0(), &mut sink),
        Step::Probe
    );
    // Once started the startup worker idles but keeps running.
    assert_eq!(
        w.tick(Some(&running(&c1, true)), t0(), &mut sink),
        Step::Wait
    );
    assert_eq!(
        w.tick(Some(&running(&c1, true)), t0(), &mut sink),
        Step::Wait
    );
}

#[test]
fn container_not_running_publishes_failure_and_stops_only_if_gone_for_good() {
    for kind in ALL_KINDS {
        let cases = [
            (ContainerState::Waiting, false, Step::Wait),
            (ContainerState::Waiting, true, Step::Wait),
            (ContainerState::Terminated, true, Step::Wait),
            (ContainerState::Terminated, false, Step::Stop),
        ];
        for (state, may_restart, expected) in cases {
            let c1 = id("c1");
            let mut w = default_worker(kind);
            let mut sink = Sink::default();
            w.tick(Some(&probing(&c1, kind)), t0(), &mut sink);
            sink.take();
            let pod = PodObservation {
                phase: PodPhase::Running,
                deleting: false,
                container: Some(ContainerObservation {
                    id: &c1,
                    state,
                    may_restart,
                    started: false,
                }),
            };
            assert_eq!(
                w.tick(Some(&pod), t0(), &mut sink),
                expected,
                "{kind} {state:?} may_restart={may_restart}"
            );
            assert_eq!(
                sink.take(),
                [set(
                    "c1",
                    ProbeState::Failure,
                    ResultCause::ContainerNotRunning
                )]
            );
        }
    }
}

#[test]
fn a_new_container_that_is_not_running_publishes_initial_then_failure() {
    let c1 = id("c1");
    let mut w = default_worker(ProbeKind::Liveness);
    let mut sink = Sink::default();
    let pod = PodObservation {
        phase: PodPhase::Pending,
        deleting: false,
        container: Some(ContainerObservation {
            id: &c1,
            state: ContainerState::Waiting,
            may_restart: true,
            started: false,
        }),
    };
    assert_eq!(w.tick(Some(&pod), t0(), &mut sink), Step::Wait);
    assert_eq!(
        sink.take(),
        [
            set("c1", ProbeState::Success, ResultCause::Initial),
            set("c1", ProbeState::Failure, ResultCause::ContainerNotRunning),
        ]
    );
}

#[test]
fn deleting_pod_sets_liveness_and_startup_success_and_stops() {
    for kind in ALL_KINDS {
        let c1 = id("c1");
        let mut w = default_worker(kind);
        let mut sink = Sink::default();
        w.tick(Some(&probing(&c1, kind)), t0(), &mut sink);
        sink.take();
        let mut pod = probing(&c1, kind);
        pod.deleting = true;
        let step = w.tick(Some(&pod), t0(), &mut sink);
        if kind == ProbeKind::Readiness {
            assert_eq!(step, Step::Probe);
            assert!(sink.take().is_empty());
        } else {
            assert_eq!(step, Step::Stop, "{kind}");
            assert_eq!(
                sink.take(),
                [set("c1", ProbeState::Success, ResultCause::PodDeleting)]
            );
        }
    }
}

#[test]
fn initial_delay_is_measured_from_started_at_in_whole_seconds() {
    let c1 = id("c1");
    let timing = ProbeTiming {
        initial_delay_seconds: 5,
        ..ProbeTiming::default()
    };
    let pod = probing(&c1, ProbeKind::Readiness); // started at t0
    let cases = [
        (-2.0, Step::Wait),
        (0.0, Step::Wait),
        (4.0, Step::Wait),
        (4.999, Step::Wait),
        (5.0, Step::Probe),
        (5.5, Step::Probe),
        (600.0, Step::Probe),
    ];
    for (offset, expected) in cases {
        let mut w = worker(ProbeKind::Readiness, timing);
        assert_eq!(
            w.tick(Some(&pod), at(offset), &mut Sink::default()),
            expected,
            "{offset}"
        );
    }
    // A start time less than a second in the future truncates to 0 s, as in Go.
    let mut w = default_worker(ProbeKind::Readiness);
    assert_eq!(
        w.tick(Some(&pod), t0() - secs(0.5), &mut Sink::default()),
        Step::Probe
    );
    let mut w = default_worker(ProbeKind::Readiness);
    assert_eq!(
        w.tick(Some(&pod), t0() - secs(1.5), &mut Sink::default()),
        Step::Wait
    );
}

#[test]
fn containers_that_survived_an_agent_restart_keep_their_result() {
    let c1 = id("c1");
    // The container started at t0; the agent at t0 + `agent_after`.
    let cases = [
        (11.0, false), // started well before the agent: no initial result
        (10.5, false),
        (10.0, true), // within the grace period: initial result
        (3.0, true),
        (-60.0, true), // started after the agent
    ];
    for kind in ALL_KINDS {
        for (agent_after, publishes) in cases {
            let mut w = WorkerState::new(kind, ProbeTiming::default(), at(agent_after));
            let mut sink = Sink::default();
            let step = w.tick(Some(&probing(&c1, kind)), t0() + secs(3600.0), &mut sink);
            assert_eq!(step, Step::Probe);
            assert_eq!(!sink.take().is_empty(), publishes, "{kind} {agent_after}");
        }
    }
    // An unknown (zero) start time never counts as a survivor.
    let mut w = WorkerState::new(ProbeKind::Readiness, ProbeTiming::default(), t0());
    let pod = PodObservation {
        phase: PodPhase::Running,
        deleting: false,
        container: Some(ContainerObservation {
            id: &c1,
            state: ContainerState::Running {
                started_at: UNIX_EPOCH,
            },
            may_restart: true,
            started: true,
        }),
    };
    let mut sink = Sink::default();
    w.tick(Some(&pod), t0(), &mut sink);
    assert_eq!(
        sink.take(),
        [set("c1", ProbeState::Failure, ResultCause::Initial)]
    );
}

#[test]
fn attempt_currency() {
    let (c1, c2) = (id("c1"), id("c2"));
    let mut w = default_worker(ProbeKind::Readiness);
    assert!(!w.is_attempt_current(Some(&probing(&c1, ProbeKind::Readiness))));
    w.tick(
        Some(&probing(&c1, ProbeKind::Readiness)),
        t0(),
        &mut Sink::default(),
    );
    assert!(w.is_attempt_current(Some(&probing(&c1, ProbeKind::Readiness))));
    assert!(!w.is_attempt_current(Some(&probing(&c2, ProbeKind::Readiness))));
    assert!(!w.is_attempt_current(None));
    let mut terminal = probing(&c1, ProbeKind::Readiness);
    terminal.phase = PodPhase::Failed;
    assert!(!w.is_attempt_current(Some(&terminal)));
    terminal.phase = PodPhase::Running;
    terminal.container = None;
    assert!(!w.is_attempt_current(Some(&terminal)));
}

#[test]
fn jitter_only_within_one_period_of_the_agent_start() {
    let period = secs(10.0);
    let start = t0();
    assert_eq!(first_probe_delay(period, start, start, 0.5), secs(5.0));
    assert_eq!(
        first_probe_delay(period, start + secs(9.9), start, 0.25),
        secs(2.5)
    );
    assert_eq!(
        first_probe_delay(period, start + secs(10.0), start, 0.5),
        Duration::ZERO
    );
    assert_eq!(
        first_probe_delay(period, start + secs(3600.0), start, 0.9),
        Duration::ZERO
    );
    // A start time in the future counts as "just started".
    assert_eq!(
        first_probe_delay(period, start - secs(5.0), start, 0.5),
        secs(5.0)
    );
    // Out-of-range fractions are clamped.
    assert!(first_probe_delay(period, start, start, 3.0) < period);
    assert_eq!(
        first_probe_delay(period, start, start, -1.0),
        Duration::ZERO
    );
}

#[test]
fn period_is_whole_seconds() {
    let w = worker(
        ProbeKind::Liveness,
        ProbeTiming {
            period_seconds: 7,
            ..ProbeTiming::default()
        },
    );
    assert_eq!(w.period(), secs(7.0));
    assert_eq!(w.kind(), ProbeKind::Liveness);
    assert_eq!(w.timing().period_seconds, 7);
}
