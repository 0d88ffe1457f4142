//! Kubernetes liveness, readiness and startup probes with the kubelet's semantics.
//!
//! For an edge agent, an operator's health checks or a test harness on its own, and for
//! `node-core`'s pods:
//!
//! - [`DefaultProber`]: the four mechanisms as the kubelet runs them: `httpGet` (HTTP and
//!   HTTPS without certificate checks, `kube-probe/<major>.<minor>` User-Agent, no
//!   keep-alive or proxy, 200-399, same-host redirects followed as Go's client does,
//!   10 KiB body cap), `tcpSocket`, `grpc` (`grpc.health.v1.Health/Check`, only `SERVING`
//!   passes) and `exec` through an [`ExecRunner`] (node-core backs it with CRI
//!   `ExecSync`); results and messages as the kubelet records them ([`ProbeOutcome`]).
//! - [`ProbeManager`]: one worker per (pod, container, probe kind) with the kubelet's
//!   worker semantics (initial delay from `startedAt`, period, thresholds, startup gating,
//!   hold after a liveness failure until a new container, error retries, jitter after an
//!   agent restart), results as a stream of transitions ([`ResultUpdates`]) and as a
//!   current-state view.
//! - The model: [`ProbeSpec`] (handler + [`ProbeTiming`] with the API defaults and
//!   validation), [`ProbeTarget`], and conversions from `k8s-openapi` types ([`k8s`]).
//! - The seams: [`Prober`] (put anything behind the workers) and [`ExecRunner`].
//!
//! # Example
//!
//! ```
//! use pod_probes::{ProbeKind, ProbeTiming};
//!
//! // A probe with no fields set gets the API defaults: 1 s timeout, 10 s period,
//! // success threshold 1, failure threshold 3, no initial delay.
//! let timing = ProbeTiming::default();
//! assert_eq!(timing.period_seconds, 10);
//! assert!(timing.validate(ProbeKind::Liveness).is_ok());
//!
//! // A liveness probe must have a success threshold of exactly 1.
//! let bad = ProbeTiming { success_threshold: 2, ..ProbeTiming::default() };
//! let err = bad.validate(ProbeKind::Liveness).unwrap_err();
//! assert_eq!(err.to_string(), "livenessProbe.successThreshold: must be 1 (got 2)");
//! ```

pub mod clock;
pub mod k8s;
pub mod manager;
pub mod mechanisms;
mod outcome;
mod prober;
mod spec;
mod timing;
pub mod worker;

pub use mechanisms::DefaultProber;
pub use outcome::{ProbeError, ProbeOutcome, ProbeResult};
pub use prober::{ExecError, ExecOutput, ExecRunner, Prober};
pub use spec::{ContainerPort, PortRef, ProbeHandler, ProbeSpec, ProbeTarget, Scheme};
pub use timing::{ProbeKind, ProbeTiming, ValidationError};

pub use clock::{Clock, SystemClock, TokioClock};
pub use manager::{
    ContainerProbes, ContainerStatus, ManagerError, PodProbes, PodStatus, ProbeManager,
    ProbeManagerBuilder, ResultUpdate, ResultUpdates,
};
pub use worker::{ContainerState, PodPhase, ProbeState, ResultCause};
