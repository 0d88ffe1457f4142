//! Sync metrics with kube-proxy's names (subsystem `kubeproxy`), printed in the
//! Prometheus text format so a scraper configured for kube-proxy keeps working.

use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// kube-proxy's sync-duration buckets: `ExponentialBuckets(0.001, 2, 15)`, 1 ms to 16.384 s.
pub fn sync_buckets() -> Vec<f64> {
    (0..15).map(|i| 0.001 * f64::from(1u32 << i)).collect()
}

/// A histogram with fixed buckets.
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    buckets: Vec<f64>,
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    /// An empty histogram with these upper bounds.
    pub fn new(buckets: Vec<f64>) -> Self {
        let counts = vec![0; buckets.len()];
        Self {
            buckets,
            counts,
            sum: 0.0,
            count: 0,
        }
    }

    /// Record one observation.
    pub fn observe(&mut self, value: f64) {
        for (b, c) in self.buckets.iter().zip(self.counts.iter_mut()) {
            if value <= *b {
                *c += 1;
            }
        }
        self.sum += value;
        self.count += 1;
    }

    /// The number of observations.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The sum of observations.
    pub fn sum(&self) -> f64 {
        self.sum
    }

    fn write(&self, out: &mut String, name: &str, labels: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let sep = if labels.is_empty() { "" } else { "," };
        for (b, c) in self.buckets.iter().zip(&self.counts) {
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {c}");
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
            self.count
        );
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum);
        let _ = writeln!(out, "{name}_count{braces} {}", self.count);
    }
}

/// What one sync reports.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SyncRecord {
    /// Whether it was a full sync.
    pub full: bool,
    /// How long it took in total.
    pub duration: Duration,
    /// Whether it succeeded.
    pub ok: bool,
    /// Rules in the filter table after it (iptables mode).
    pub filter_rules: usize,
    /// Rules in the nat table after it (iptables mode).
    pub nat_rules: usize,
    /// Service ports with internal policy Local and no local endpoint.
    pub no_local_internal: usize,
    /// Service ports with external policy Local and no local endpoint.
    pub no_local_external: usize,
    /// UDP conntrack flows deleted after it.
    pub conntrack_deleted: usize,
}

#[derive(Debug)]
struct Inner {
    duration: Histogram,
    full_duration: Histogram,
    partial_duration: Histogram,
    last_timestamp: f64,
    last_queued_timestamp: f64,
    restore_failures: u64,
    partial_restore_failures: u64,
    nft_sync_failures: u64,
    iptables_total: [usize; 2],
    no_local: [usize; 2],
    service_changes_total: u64,
    endpoint_changes_total: u64,
    changes_pending: u64,
    conntrack_deleted_total: u64,
}

/// The proxier's metrics.
#[derive(Debug)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            inner: Mutex::new(Inner {
                duration: Histogram::new(sync_buckets()),
                full_duration: Histogram::new(sync_buckets()),
                partial_duration: Histogram::new(sync_buckets()),
                last_timestamp: 0.0,
                last_queued_timestamp: 0.0,
                restore_failures: 0,
                partial_restore_failures: 0,
                nft_sync_failures: 0,
                iptables_total: [0, 0],
                no_local: [0, 0],
                service_changes_total: 0,
                endpoint_changes_total: 0,
                changes_pending: 0,
                conntrack_deleted_total: 0,
            }),
        }
    }
}

fn now_seconds() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl Metrics {
    /// Fresh metrics.
    pub fn new() -> Self {
        Self::default()
    }

    /// Record a sync of the given mode (`nftables` mode counts failures separately).
    pub fn record_sync(&self, record: &SyncRecord, nftables: bool) {
        let mut m = self.inner.lock().expect("metrics lock");
        let secs = record.duration.as_secs_f64();
        m.duration.observe(secs);
        if record.full {
            m.full_duration.observe(secs);
        } else {
            m.partial_duration.observe(secs);
        }
        if record.ok {
            m.last_timestamp = now_seconds();
            m.iptables_total = [record.filter_rules, record.nat_rules];
            m.no_local = [record.no_local_internal, record.no_local_external];
            m.conntrack_deleted_total += record.conntrack_deleted as u64;
            m.changes_pending = 0;
        } else if nftables {
            m.nft_sync_failures += 1;
        } else {
            m.restore_failures += 1;
            if !record.full {
                m.partial_restore_failures += 1;
            }
        }
    }

    /// Record changes queued for the next sync.
    pub fn record_queued(&self, services: u64, endpoints: u64) {
        let mut m = self.inner.lock().expect("metrics lock");
        m.last_queued_timestamp = now_seconds();
        m.service_changes_total += services;
        m.endpoint_changes_total += endpoints;
        m.changes_pending += services + endpoints;
    }

    /// The number of syncs recorded (successful or not).
    pub fn sync_count(&self) -> u64 {
        self.inner.lock().expect("metrics lock").duration.count()
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let m = self.inner.lock().expect("metrics lock");
        let mut out = String::new();
        m.duration.write(
            &mut out,
            "kubeproxy_sync_proxy_rules_duration_seconds",
            "",
            "SyncProxyRules latency in seconds",
        );
        m.full_duration.write(
            &mut out,
            "kubeproxy_sync_full_proxy_rules_duration_seconds",
            "",
            "SyncProxyRules latency in seconds for full resyncs",
        );
        m.partial_duration.write(
            &mut out,
            "kubeproxy_sync_partial_proxy_rules_duration_seconds",
            "",
            "SyncProxyRules latency in seconds for partial resyncs",
        );
        let gauge =
            |out: &mut String, name: &str, help: &str, kind: &str, lines: &[(String, String)]| {
                let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
                for (labels, v) in lines {
                    let _ = writeln!(out, "{name}{labels} {v}");
                }
            };
        let one = |v: String| vec![(String::new(), v)];
        gauge(
            &mut out,
            "kubeproxy_sync_proxy_rules_last_timestamp_seconds",
            "The last time proxy rules were successfully synced",
            "gauge",
            &one(m.last_timestamp.to_string()),
        );
        gauge(
            &mut out,
            "kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds",
            "The last time a sync of proxy rules was queued",
            "gauge",
            &one(m.last_queued_timestamp.to_string()),
        );
        gauge(
            &mut out,
            "kubeproxy_sync_proxy_rules_iptables_restore_failures_total",
            "Cumulative proxy iptables restore failures",
            "counter",
            &one(m.restore_failures.to_string()),
        );
        gauge(
            &mut out,
            "kubeproxy_sync_proxy_rules_iptables_partial_restore_failures_total",
            "Cumulative proxy iptables partial restore failures",
            "counter",
            &one(m.partial_restore_failures.to_string()),
        );
        gauge(
            &mut out,
            "kubeproxy_sync_proxy_rules_nftables_sync_failures_total",
            "Total number of nftables sync failures",
            "counter",
            &one(m.nft_sync_failures.to_string()),
        );
        gauge(
            &mut out,
            "kubeproxy_sync_proxy_rules_iptables_total",
            "Total number of iptables rules owned by kube-proxy",
            "gauge",
            &[
                ("{table=\"filter\"}".into(), m.iptables_total[0].to_string()),
                ("{table=\"nat\"}".into(), m.iptables_total[1].to_string()),
            ],
        );
        gauge(
            &mut out,
            "kubeproxy_sync_proxy_rules_no_local_endpoints_total",
            "Number of services with a Local traffic policy and no endpoints",
            "gauge",
            &[
                (
                    "{traffic_policy=\"internal\"}".into(),
                    m.no_local[0].to_string(),
                ),
                (
                    "{traffic_policy=\"external\"}".into(),
                    m.no_local[1].to_string(),
                ),
            ],
        );
        gauge(
            &mut out,
            "kubeproxy_sync_proxy_rules_service_changes_total",
            "Cumulative proxy rules Service changes",
            "counter",
            &one(m.service_changes_total.to_string()),
        );
        gauge(
            &mut out,
            "kubeproxy_sync_proxy_rules_endpoint_changes_total",
            "Cumulative proxy rules Endpoint changes",
            "counter",
            &one(m.endpoint_changes_total.to_string()),
        );
        gauge(
            &mut out,
            "kubeproxy_sync_proxy_rules_endpoint_changes_pending",
            "Pending proxy rules Endpoint changes",
            "gauge",
            &one(m.changes_pending.to_string()),
        );
        gauge(
            &mut out,
            "kubeproxy_conntrack_reconciler_deleted_entries_total",
            "Cumulative conntrack flows deleted by conntrack reconciliation",
            "counter",
            &one(m.conntrack_deleted_total.to_string()),
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_kube_proxys() {
        let b = sync_buckets();
        assert_eq!(b.len(), 15);
        assert!((b[0] - 0.001).abs() < 1e-12);
        assert!((b[14] - 16.384).abs() < 1e-9);
    }

    #[test]
    fn render_has_the_upstream_names() {
        let m = Metrics::new();
        m.record_sync(
            &SyncRecord {
                full: true,
                duration: Duration::from_millis(3),
                ok: true,
                filter_rules: 10,
                nat_rules: 55,
                ..SyncRecord::default()
            },
            false,
        );
        m.record_sync(
            &SyncRecord {
                full: false,
                ok: false,
                ..SyncRecord::default()
            },
            false,
        );
        let text = m.render();
        assert!(
            text.contains("kubeproxy_sync_proxy_rules_duration_seconds_bucket{le=\"0.004\"} 2"),
            "{text}"
        );
        assert!(text.contains("kubeproxy_sync_proxy_rules_duration_seconds_count 2"));
        assert!(text.contains("kubeproxy_sync_full_proxy_rules_duration_seconds_count 1"));
        assert!(text.contains("kubeproxy_sync_proxy_rules_iptables_total{table=\"nat\"} 55"));
        assert!(
            text.contains("kubeproxy_sync_proxy_rules_iptables_partial_restore_failures_total 1")
        );
        assert!(!text.contains("kubeproxy_sync_proxy_rules_last_timestamp_seconds 0\n"));
    }
}
