//! The probe timing fields of a `core/v1` Probe, their API defaults and validation.

use std::fmt;

/// Which of the three container probes a probe is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProbeKind {
    /// `livenessProbe`: failing restarts the container.
    Liveness,
    /// `readinessProbe`: failing removes the pod from Service endpoints.
    Readiness,
    /// `startupProbe`: gates liveness and readiness until it first succeeds.
    Startup,
}

impl ProbeKind {
    /// The field name in a `core/v1` Container, as validation messages name it.
    pub fn field_name(self) -> &'static str {
        match self {
            ProbeKind::Liveness => "livenessProbe",
            ProbeKind::Readiness => "readinessProbe",
            ProbeKind::Startup => "startupProbe",
        }
    }
}

impl fmt::Display for ProbeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.field_name())
    }
}

/// The timing fields of a `core/v1` Probe, with the API server's defaults.
///
/// Defaults follow `SetDefaults_Probe` in Kubernetes: `timeoutSeconds=1`,
/// `periodSeconds=10`, `successThreshold=1`, `failureThreshold=3`,
/// `initialDelaySeconds=0`, and no per-probe termination grace period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeTiming {
    /// Seconds after the container started before the first probe (default 0).
    pub initial_delay_seconds: i32,
    /// Seconds after which one probe attempt times out (default 1).
    pub timeout_seconds: i32,
    /// Seconds between probe attempts (default 10).
    pub period_seconds: i32,
    /// Consecutive successes needed to count as passing after a failure (default 1).
    pub success_threshold: i32,
    /// Consecutive failures needed to count as failing (default 3).
    pub failure_threshold: i32,
    /// Grace period used when a liveness or startup failure kills the container
    /// (`terminationGracePeriodSeconds` on the probe; `None` uses the pod's).
    pub termination_grace_period_seconds: Option<i64>,
}

impl Default for ProbeTiming {
    fn default() -> Self {
        Self {
            initial_delay_seconds: 0,
            timeout_seconds: 1,
            period_seconds: 10,
            success_threshold: 1,
            failure_threshold: 3,
            termination_grace_period_seconds: None,
        }
    }
}

/// Why a probe's timing is invalid, as the API server's validation reports it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    /// A field is below its minimum.
    #[error("{kind}.{field}: must be greater than or equal to {min} (got {value})")]
    BelowMinimum {
        /// The probe the field belongs to.
        kind: ProbeKind,
        /// The API field name, e.g. `periodSeconds`.
        field: &'static str,
        /// The smallest allowed value.
        min: i64,
        /// The value given.
        value: i64,
    },
    /// Liveness and startup probes must use a success threshold of exactly 1.
    #[error("{kind}.successThreshold: must be 1 (got {value})")]
    SuccessThresholdMustBeOne {
        /// The probe (liveness or startup).
        kind: ProbeKind,
        /// The value given.
        value: i32,
    },
    /// A readiness probe cannot carry `terminationGracePeriodSeconds`.
    #[error("readinessProbe.terminationGracePeriodSeconds: must not be set")]
    GracePeriodOnReadiness,
}

impl ProbeTiming {
    /// Check the fields as the Kubernetes API validation does: minimum 1 for period,
    /// timeout, success and failure thresholds; minimum 0 for the initial delay;
    /// success threshold exactly 1 for liveness and startup probes;
    /// `terminationGracePeriodSeconds` at least 1 and not on readiness probes.
    pub fn validate(&self, kind: ProbeKind) -> Result<(), ValidationError> {
        let checks: [(&'static str, i64, i64); 5] = [
            ("initialDelaySeconds", self.initial_delay_seconds.into(), 0),
            ("timeoutSeconds", self.timeout_seconds.into(), 1),
            ("periodSeconds", self.period_seconds.into(), 1),
            ("successThreshold", self.success_threshold.into(), 1),
            ("failureThreshold", self.failure_threshold.into(), 1),
        ];
        for (field, value, min) in checks {
            if value < min {
                return Err(ValidationError::BelowMinimum {
                    kind,
                    field,
                    min,
                    value,
                });
            }
        }
        if kind != ProbeKind::Readiness && self.success_threshold != 1 {
            return Err(ValidationError::SuccessThresholdMustBeOne {
                kind,
                value: self.success_threshold,
            });
        }
        if let Some(grace) = self.termination_grace_period_seconds {
            if kind == ProbeKind::Readiness {
                return Err(ValidationError::GracePeriodOnReadiness);
            }
            if grace < 1 {
                return Err(ValidationError::BelowMinimum {
                    kind,
                    field: "terminationGracePeriodSeconds",
                    min: 1,
                    value: grace,
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [ProbeKind; 3] = [
        ProbeKind::Liveness,
        ProbeKind::Readiness,
        ProbeKind::Startup,
    ];

    #[test]
    fn defaults_are_the_api_defaults_and_valid_for_every_kind() {
        let t = ProbeTiming::default();
        assert_eq!(
            (t.initial_delay_seconds, t.timeout_seconds, t.period_seconds),
            (0, 1, 10)
        );
        assert_eq!((t.success_threshold, t.failure_threshold), (1, 3));
        for kind in ALL {
            assert_eq!(t.validate(kind), Ok(()), "{kind}");
        }
    }

    /// A field name, how to set it below its minimum, and the minimum.
    type MinimumCase = (&'static str, fn(&mut ProbeTiming), i64);

    #[test]
    fn minimums_are_enforced_per_field() {
        let cases: [MinimumCase; 5] = [
            ("initialDelaySeconds", |t| t.initial_delay_seconds = -1, 0),
            ("timeoutSeconds", |t| t.timeout_seconds = 0, 1),
            ("periodSeconds", |t| t.period_seconds = 0, 1),
            ("successThreshold", |t| t.success_threshold = 0, 1),
            ("failureThreshold", |t| t.failure_threshold = 0, 1),
        ];
        for (field, set, min) in cases {
            let mut t = ProbeTiming::default();
            set(&mut t);
            match t.validate(ProbeKind::Readiness) {
                Err(ValidationError::BelowMinimum {
                    field: f, min: m, ..
                }) => {
                    assert_eq!((f, m), (field, min));
                }
                other => panic!("{field}: expected BelowMinimum, got {other:?}"),
            }
        }
    }

    #[test]
    fn success_threshold_above_one_only_for_readiness() {
        let t = ProbeTiming {
            success_threshold: 3,
            ..ProbeTiming::default()
        };
        assert_eq!(t.validate(ProbeKind::Readiness), Ok(()));
        for kind in [ProbeKind::Liveness, ProbeKind::Startup] {
            assert_eq!(
                t.validate(kind),
                Err(ValidationError::SuccessThresholdMustBeOne { kind, value: 3 })
            );
        }
    }

    #[test]
    fn probe_grace_period_rules() {
        let with = |g| ProbeTiming {
            termination_grace_period_seconds: Some(g),
            ..ProbeTiming::default()
        };
        assert_eq!(with(30).validate(ProbeKind::Liveness), Ok(()));
        assert_eq!(with(30).validate(ProbeKind::Startup), Ok(()));
        assert_eq!(
            with(30).validate(ProbeKind::Readiness),
            Err(ValidationError::GracePeriodOnReadiness)
        );
        assert!(matches!(
            with(0).validate(ProbeKind::Liveness),
            Err(ValidationError::BelowMinimum {
                field: "terminationGracePeriodSeconds",
                ..
            })
        ));
    }
}
