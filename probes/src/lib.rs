//! Kubernetes liveness, readiness and startup probes with the kubelet's semantics.
//!
//! **Status:** being built. What exists today: the probe model ([`ProbeSpec`],
//! [`ProbeHandler`], [`ProbeTarget`]), the timing model with the API defaults and
//! validation ([`ProbeTiming`]), probe results ([`ProbeOutcome`]), the seams
//! ([`Prober`], [`ExecRunner`]), the HTTP, TCP, gRPC and exec mechanisms behind
//! [`DefaultProber`], and conversions from the API types ([`k8s`]).
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
