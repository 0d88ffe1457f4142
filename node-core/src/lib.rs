//! Building blocks of a Kubernetes node agent: pod lifecycle, pod status, node status
//! and lease.
//!
//! **Status:** this crate is at its start. What exists today are the kubelet's timing
//! defaults for node status and the node lease ([`NodeTimings`]) and the container restart
//! back-off schedule ([`RestartBackoff`]), both pure and tested. Pod workers, pod actions,
//! pod status, PLEG, static pods, registration and eviction are being built; see the
//! README.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use node_core::{NodeTimings, RestartBackoff};
//!
//! let timings = NodeTimings::default();
//! assert_eq!(timings.lease_renew_interval(), Duration::from_secs(10));
//!
//! // CrashLoopBackOff: 10 s, doubled per restart, capped at 300 s.
//! let backoff = RestartBackoff::default();
//! let delays: Vec<u64> = (0..7).map(|n| backoff.delay(n).as_secs()).collect();
//! assert_eq!(delays, [10, 20, 40, 80, 160, 300, 300]);
//! ```

use std::time::Duration;

/// The namespace that holds node leases (`coordination.k8s.io/v1` Lease per node).
pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";

/// How often a node agent computes, reports and heartbeats its node's state.
///
/// Defaults are the kubelet's (`pkg/kubelet/apis/config/v1beta1/defaults.go`):
/// `nodeStatusUpdateFrequency` 10 s, `nodeStatusReportFrequency` 5 min,
/// `nodeLeaseDurationSeconds` 40, and the lease renewed every quarter of its duration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeTimings {
    /// How often node status is computed (kubelet `nodeStatusUpdateFrequency`, 10 s).
    pub status_update_frequency: Duration,
    /// How often an unchanged node status is still patched (kubelet
    /// `nodeStatusReportFrequency`, 5 min). A changed status is patched at once.
    pub status_report_frequency: Duration,
    /// The lease's `leaseDurationSeconds` (kubelet `nodeLeaseDurationSeconds`, 40).
    pub lease_duration_seconds: i32,
}

impl Default for NodeTimings {
    fn default() -> Self {
        Self {
            status_update_frequency: Duration::from_secs(10),
            status_report_frequency: Duration::from_secs(5 * 60),
            lease_duration_seconds: 40,
        }
    }
}

impl NodeTimings {
    /// How often the lease's `renewTime` is refreshed: a quarter of its duration, as
    /// the kubelet's lease controller does (10 s by default).
    pub fn lease_renew_interval(&self) -> Duration {
        Duration::from_secs(u64::try_from(self.lease_duration_seconds).unwrap_or(0)) / 4
    }

    /// Whether a node status should be patched now: when it changed, or when the
    /// last patch is at least [`status_report_frequency`](Self::status_report_frequency) old.
    pub fn should_report_status(&self, changed: bool, since_last_report: Duration) -> bool {
        changed || since_last_report >= self.status_report_frequency
    }
}

/// The back-off between restarts of a failing container (CrashLoopBackOff).
///
/// The kubelet starts at 10 s, doubles the delay at every restart and caps it at 300 s;
/// an entry that was not touched for twice the cap (10 min) starts over. The first
/// restart after a crash has no delay at all: there is no entry yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartBackoff {
    /// The first delay (kubelet: 10 s).
    pub initial: Duration,
    /// The cap (kubelet `MaxContainerBackOff`: 300 s).
    pub max: Duration,
}

impl Default for RestartBackoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(10),
            max: Duration::from_secs(300),
        }
    }
}

impl RestartBackoff {
    /// The delay after `n` earlier back-offs: `initial × 2^n`, capped at `max`.
    pub fn delay(&self, n: u32) -> Duration {
        let factor = 1u32.checked_shl(n).unwrap_or(u32::MAX);
        self.initial
            .checked_mul(factor)
            .map_or(self.max, |d| d.min(self.max))
    }

    /// Whether an entry last updated `since_last_update` ago has expired and the next
    /// back-off starts again at `initial` (more than twice `max` has passed).
    pub fn is_expired(&self, since_last_update: Duration) -> bool {
        since_last_update > self.max * 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubelet_defaults() {
        let t = NodeTimings::default();
        assert_eq!(t.status_update_frequency, Duration::from_secs(10));
        assert_eq!(t.status_report_frequency, Duration::from_secs(300));
        assert_eq!(t.lease_duration_seconds, 40);
        assert_eq!(t.lease_renew_interval(), Duration::from_secs(10));
    }

    #[test]
    fn status_is_reported_on_change_or_after_the_report_frequency() {
        let t = NodeTimings::default();
        assert!(t.should_report_status(true, Duration::ZERO));
        assert!(!t.should_report_status(false, Duration::from_secs(299)));
        assert!(t.should_report_status(false, Duration::from_secs(300)));
    }

    #[test]
    fn renew_interval_of_a_negative_duration_is_zero() {
        let t = NodeTimings {
            lease_duration_seconds: -5,
            ..NodeTimings::default()
        };
        assert_eq!(t.lease_renew_interval(), Duration::ZERO);
    }

    #[test]
    fn backoff_doubles_and_caps_without_overflow() {
        let b = RestartBackoff::default();
        assert_eq!(b.delay(0), Duration::from_secs(10));
        assert_eq!(b.delay(4), Duration::from_secs(160));
        assert_eq!(b.delay(5), Duration::from_secs(300));
        assert_eq!(b.delay(31), Duration::from_secs(300));
        assert_eq!(b.delay(u32::MAX), Duration::from_secs(300));
    }

    #[test]
    fn backoff_expires_after_twice_the_cap() {
        let b = RestartBackoff::default();
        assert!(!b.is_expired(Duration::from_secs(600)));
        assert!(b.is_expired(Duration::from_secs(601)));
    }

    #[test]
    fn reduced_decay_knob() {
        // ReduceDefaultCrashLoopBackOffDecay: 1 s initial, 60 s cap.
        let b = RestartBackoff {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
        };
        let delays: Vec<u64> = (0..8).map(|n| b.delay(n).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 60, 60]);
    }
}
