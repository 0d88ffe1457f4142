//! The shared pod state without tasks: the results cache, the started derivation and
//! status mapping, driven by a [`WorkerState`] by hand.

use std::time::{Duration, UNIX_EPOCH};

use super::*;
use crate::outcome::ProbeOutcome;
use crate::spec::{ProbeHandler, ProbeTarget};
use crate::timing::ProbeTiming;
use crate::worker::{Step, WorkerState};

fn t0() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

fn spec() -> ProbeSpec {
    ProbeSpec {
        handler: ProbeHandler::Exec {
            command: vec!["true".into()],
        },
        timing: ProbeTiming {
            failure_threshold: 1,
            termination_grace_period_seconds: None,
            ..ProbeTiming::default()
        },
    }
}

/// A pod with container "app" having the given probe kinds.
fn pod(kinds: &[ProbeKind]) -> PodShared {
    let mut probes: [Option<ProbeSpec>; 3] = Default::default();
    for &kind in kinds {
        probes[kind_index(kind)] = Some(spec());
    }
    PodShared::new(
        Arc::from("uid"),
        vec![ContainerEntry {
            name: Arc::from("app"),
            ports: Vec::new(),
            probes,
            workers: [None; 3],
        }],
    )
}

fn running(id: &str) -> PodStatus {
    PodStatus::new(PodPhase::Running).container(ContainerStatus::running("app", id, t0()))
}

/// A worker for `kind` in `pod`, with the slot index.
fn worker(pod: &PodShared, kind: ProbeKind) -> (usize, WorkerState) {
    let slot = pod.worker_index(0, kind).unwrap();
    let timing = pod.containers[0].probes[kind_index(kind)]
        .as_ref()
        .unwrap()
        .timing;
    (
        slot,
        WorkerState::new(kind, timing, t0() - Duration::from_secs(3600)),
    )
}

struct Driver<'a> {
    pod: &'a PodShared,
    slot: usize,
    worker: WorkerState,
    target: ProbeTarget,
    pending: Vec<ResultUpdate>,
}

impl<'a> Driver<'a> {
    fn new(pod: &'a PodShared, kind: ProbeKind) -> Self {
        let (slot, worker) = worker(pod, kind);
        Self {
            pod,
            slot,
            worker,
            target: ProbeTarget::default(),
            pending: Vec::new(),
        }
    }

    fn tick(&mut self) -> Step {
        self.pod.tick(
            self.slot,
            &mut self.worker,
            t0() + Duration::from_secs(60),
            &mut self.target,
            &mut self.pending,
        )
    }

    fn record(&mut self, outcome: ProbeOutcome) {
        self.pod
            .record(self.slot, &mut self.worker, Ok(outcome), &mut self.pending);
    }

    fn sent(&mut self) -> Vec<(ProbeState, ResultCause)> {
        self.pending
            .drain(..)
            .map(|u| (u.result, u.cause))
            .collect()
    }
}

#[test]
fn worker_slots_follow_the_kubelet_start_order() {
    let p = pod(&[
        ProbeKind::Liveness,
        ProbeKind::Readiness,
        ProbeKind::Startup,
    ]);
    let kinds: Vec<ProbeKind> = p.workers.iter().map(|w| w.kind).collect();
    assert_eq!(
        kinds,
        [
            ProbeKind::Startup,
            ProbeKind::Readiness,
            ProbeKind::Liveness
        ]
    );
    assert_eq!(p.live_workers(), 3);
    let p = pod(&[ProbeKind::Liveness]);
    assert_eq!(p.worker_index(0, ProbeKind::Readiness), None);
    assert_eq!(p.container_index("app"), Some(0));
    assert_eq!(p.container_index("other"), None);
}

#[test]
fn the_cache_sends_only_changes() {
    let p = pod(&[ProbeKind::Readiness]);
    p.set_status(running("c1"));
    let mut d = Driver::new(&p, ProbeKind::Readiness);
    assert_eq!(d.tick(), Step::Probe);
    assert_eq!(d.target.container_id, "c1");
    assert_eq!(d.sent(), [(ProbeState::Failure, ResultCause::Initial)]);
    // A failure while already failing: published, not sent.
    d.record(ProbeOutcome::failure("no"));
    assert!(d.sent().is_empty());
    d.record(ProbeOutcome::success("yes"));
    assert_eq!(d.sent(), [(ProbeState::Success, ResultCause::Probe)]);
    d.record(ProbeOutcome::success("yes again"));
    assert!(d.sent().is_empty());
    // The view keeps the output of the publication that changed the result.
    let current = p.result(0, ProbeKind::Readiness).unwrap();
    assert_eq!(current.output, "yes");
    assert_eq!(&*current.container_id, "c1");
}

#[test]
fn results_count_only_for_the_current_container() {
    let p = pod(&[ProbeKind::Liveness]);
    p.set_status(running("c1"));
    let mut d = Driver::new(&p, ProbeKind::Liveness);
    d.tick();
    assert_eq!(
        p.result(0, ProbeKind::Liveness).map(|r| r.result),
        Some(ProbeState::Success)
    );
    // The status moved on; the worker has not seen it yet.
    p.set_status(running("c2"));
    assert_eq!(p.result(0, ProbeKind::Liveness), None);
    d.tick();
    assert_eq!(d.target.container_id, "c2");
    assert_eq!(
        p.result(0, ProbeKind::Liveness).map(|r| r.result),
        Some(ProbeState::Success)
    );
    // A retired worker leaves nothing behind.
    p.retire(d.slot, d.worker.container_id());
    assert_eq!(p.result(0, ProbeKind::Liveness), None);
    assert_eq!(p.live_workers(), 0);
}

#[test]
fn started_follows_the_startup_result() {
    let p = pod(&[ProbeKind::Startup, ProbeKind::Readiness]);
    assert!(!p.started(0), "no status");
    p.set_status(running("c1"));
    assert!(!p.started(0), "startup probe not passed yet");
    let mut d = Driver::new(&p, ProbeKind::Startup);
    d.tick();
    assert!(!p.started(0), "startup Unknown");
    d.record(ProbeOutcome::success("up"));
    assert!(p.started(0));
    // A new container is not started until its own startup probe passes...
    p.set_status(running("c2"));
    assert!(!p.started(0));
    // ...unless the API said so before an agent restart (and no result exists yet).
    p.set_status(
        PodStatus::new(PodPhase::Running)
            .container(ContainerStatus::running("app", "c2", t0()).started(true)),
    );
    assert!(p.started(0));
    // A result for the current container wins over that hint.
    d.tick();
    assert!(
        !p.started(0),
        "the new container's startup result is Unknown"
    );
    // Without a live startup worker, a running container is started.
    p.retire(d.slot, d.worker.container_id());
    p.set_status(running("c3"));
    assert!(p.started(0));
    // Never when not running.
    p.set_status(
        PodStatus::new(PodPhase::Running).container(ContainerStatus::waiting("app", "c3")),
    );
    assert!(!p.started(0));
    // No startup probe at all: started when running.
    let p = pod(&[ProbeKind::Liveness]);
    p.set_status(running("c1"));
    assert!(p.started(0));
}

#[test]
fn status_mapping_ignores_unknown_containers_and_empty_ids() {
    let p = pod(&[ProbeKind::Liveness]);
    let mut empty = ContainerStatus::running("app", "", t0());
    empty.container_id = Some(String::new());
    p.set_status(
        PodStatus::new(PodPhase::Running)
            .container(ContainerStatus::running(
                "sidecar-without-probes",
                "x",
                t0(),
            ))
            .container(empty),
    );
    let mut d = Driver::new(&p, ProbeKind::Liveness);
    assert_eq!(d.tick(), Step::Wait);
    assert!(d.sent().is_empty());
    p.set_status(running("c1").pod_ip("10.1.2.3".parse().unwrap()));
    assert_eq!(d.tick(), Step::Probe);
    assert_eq!(d.target.pod_ip, Some("10.1.2.3".parse().unwrap()));
}

#[test]
fn becoming_started_triggers_readiness_once() {
    use futures::FutureExt;
    let p = pod(&[ProbeKind::Readiness]);
    let slot = p.worker_index(0, ProbeKind::Readiness).unwrap();
    let triggered = || p.workers[slot].trigger.notified().now_or_never().is_some();
    p.set_status(PodStatus::new(PodPhase::Pending));
    assert!(!triggered());
    p.set_status(running("c1"));
    assert!(triggered());
    // The same started container again: no new trigger.
    p.set_status(running("c1"));
    assert!(!triggered());
    // A restarted container: triggered again.
    p.set_status(running("c2"));
    assert!(triggered());
}

#[test]
fn readiness_is_triggered_when_the_startup_probe_passes() {
    use futures::FutureExt;
    let p = pod(&[ProbeKind::Startup, ProbeKind::Readiness]);
    let readiness = p.worker_index(0, ProbeKind::Readiness).unwrap();
    let triggered = || {
        p.workers[readiness]
            .trigger
            .notified()
            .now_or_never()
            .is_some()
    };
    p.set_status(running("c1"));
    assert!(!triggered(), "not started: startup probe pending");
    let mut d = Driver::new(&p, ProbeKind::Startup);
    d.tick();
    d.record(ProbeOutcome::success("up"));
    assert!(triggered());
}

#[test]
fn stale_attempts_are_not_recorded() {
    let p = pod(&[ProbeKind::Liveness]);
    p.set_status(running("c1"));
    let mut d = Driver::new(&p, ProbeKind::Liveness);
    d.tick();
    d.sent();
    p.set_status(running("c2"));
    d.record(ProbeOutcome::failure("old container"));
    assert!(d.sent().is_empty());
    assert_eq!(d.worker.run(), (None, 0));
}

#[tokio::test]
async fn updates_are_a_stream() {
    use futures::StreamExt;
    let (tx, rx) = mpsc::channel(4);
    let mut updates = ResultUpdates { rx };
    let update = ResultUpdate {
        pod_uid: Arc::from("uid"),
        container_name: Arc::from("app"),
        container_id: Arc::from("c1"),
        kind: ProbeKind::Liveness,
        result: ProbeState::Failure,
        cause: ResultCause::Probe,
        output: "boom".into(),
        termination_grace_period_seconds: Some(5),
    };
    tx.send(update.clone()).await.unwrap();
    assert!(updates.try_recv().is_some());
    tx.send(update.clone()).await.unwrap();
    drop(tx);
    assert_eq!(updates.next().await, Some(update));
    assert_eq!(updates.next().await, None);
}

#[test]
fn builder_options() {
    struct Never;
    #[async_trait::async_trait]
    impl Prober for Never {
        async fn probe(
            &self,
            _: ProbeKind,
            _: &ProbeSpec,
            _: &ProbeTarget,
        ) -> Result<ProbeOutcome, crate::ProbeError> {
            std::future::pending().await
        }
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let builder = ProbeManager::builder(Arc::new(Never))
        .updates_capacity(0)
        .agent_started_at(t0());
    assert_eq!(builder.updates_capacity, 1);
    assert!(format!("{builder:?}").contains("ProbeManagerBuilder"));
    let (manager, _updates) = builder.build().unwrap();
    assert_eq!(manager.agent_started_at(), t0());
    assert_eq!(manager.pod_worker_count("nope"), None);
    assert_eq!(manager.is_started("nope", "app"), None);
}

#[test]
fn a_worker_future_stays_small() {
    // Tens of thousands of workers must stay cheap: guard the task's size (about 1 KiB
    // with tokio 1.5x) against accidental growth.
    struct Never;
    #[async_trait::async_trait]
    impl Prober for Never {
        async fn probe(
            &self,
            _: ProbeKind,
            _: &ProbeSpec,
            _: &ProbeTarget,
        ) -> Result<ProbeOutcome, crate::ProbeError> {
            std::future::pending().await
        }
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let (manager, _updates) = ProbeManager::builder(Arc::new(Never)).build().unwrap();
    let task = task::WorkerTask {
        guard: task::LiveGuard::new(Arc::clone(&manager.inner.env)),
        pod: Arc::new(pod(&[ProbeKind::Liveness])),
        slot: 0,
        cancel: CancellationToken::new(),
    };
    let future = task.run();
    assert!(
        std::mem::size_of_val(&future) <= 2048,
        "{}",
        std::mem::size_of_val(&future)
    );
    assert!(std::mem::size_of::<WorkerState>() <= 96);
}
