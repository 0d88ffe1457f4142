//! Plugin conformance checks: runs a conflist's plugins through the CNI lifecycle on a
//! real network namespace and reports, check by check, what the specification asks of
//! them and what the plugins did.
//!
//! [`ConformanceCheck::run`] never panics and never stops at a failure: every check is
//! recorded in the [`Report`] as passed, failed or skipped, with its evidence (the
//! plugin's error, the `ip` output, the leftover file or rule). It needs root: it runs
//! the plugins for real, creates network namespaces (`ip netns add`) unless given one,
//! and reads `ip -j addr` (through `nsenter`) and `iptables-save`.
//!
//! The checks, in the order they run ([`check`] has their names):
//!
//! 1. [`check::ADD`]: ADD returns a result that validates, whose interface indexes point
//!    into its interface list.
//! 2. [`check::ADD_INTERFACES`]: every result interface with a `sandbox` exists in the
//!    netns with the reported MAC, and every IP given to it is on it.
//! 3. [`check::CHECK`]: CHECK succeeds (skipped with `disableCheck` or below 0.4.0).
//! 4. [`check::DEL`], [`check::DEL_AGAIN`], [`check::DEL_WITHOUT_NETNS`]: DEL succeeds,
//!    a second DEL succeeds (the spec's idempotence), and a DEL without `CNI_NETNS`.
//! 5. [`check::DEL_INTERFACES_GONE`], [`check::DEL_IPAM_RELEASED`],
//!    [`check::DEL_IPTABLES_CLEAN`], [`check::DEL_CACHE_GONE`]: after DEL no result
//!    interface is left in the netns, no host-local allocation file is left (skipped
//!    without host-local IPAM), no `iptables-save`/`ip6tables-save` line mentions the
//!    container ID, no cache entry is left.
//! 6. [`check::GC_REMOVES_STALE`], [`check::GC_KEEPS_VALID`]: two more containers are
//!    ADDed, GC runs with only the second as valid: the first's cache entry and
//!    interfaces are gone, the second's are there (skipped with `disableGC`).
//! 7. [`check::STATUS`]: STATUS succeeds; skipped below 1.1.0, which has no STATUS.
//!
//! Skipped checks count as passed in [`Report::passed`]; their evidence says why they
//! were skipped. A loopback interface (`lo`) cannot be deleted: after DEL it counts as
//! gone when it is down, which is what the loopback plugin's DEL does.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::{Map, Value};

use crate::config::{GcAttachment, NetworkConfigList, compare_versions};
use crate::network::{CniConfig, RuntimeConf};
use crate::result::Result100;

/// The names of the checks, as they appear in [`CheckResult::name`].
pub mod check {
    /// ADD returns a valid result.
    pub const ADD: &str = "add";
    /// The result's sandbox interfaces exist in the netns with their MAC and IPs.
    pub const ADD_INTERFACES: &str = "add.interfaces";
    /// CHECK succeeds.
    pub const CHECK: &str = "check";
    /// DEL succeeds.
    pub const DEL: &str = "del";
    /// A second DEL succeeds.
    pub const DEL_AGAIN: &str = "del.again";
    /// DEL without `CNI_NETNS` succeeds.
    pub const DEL_WITHOUT_NETNS: &str = "del.without_netns";
    /// After DEL, no result interface is left in the netns.
    pub const DEL_INTERFACES_GONE: &str = "del.interfaces_gone";
    /// After DEL, no host-local allocation is left.
    pub const DEL_IPAM_RELEASED: &str = "del.ipam_released";
    /// After DEL, no iptables chain or rule mentions the container ID.
    pub const DEL_IPTABLES_CLEAN: &str = "del.iptables_clean";
    /// After DEL, no cache entry is left.
    pub const DEL_CACHE_GONE: &str = "del.cache_gone";
    /// GC removes an attachment that is not in the valid list.
    pub const GC_REMOVES_STALE: &str = "gc.removes_stale";
    /// GC keeps an attachment that is in the valid list.
    pub const GC_KEEPS_VALID: &str = "gc.keeps_valid";
    /// STATUS succeeds.
    pub const STATUS: &str = "status";

    /// Every check, in the order [`ConformanceCheck::run`](super::ConformanceCheck::run)
    /// records them.
    pub const ALL: [&str; 13] = [
        ADD,
        ADD_INTERFACES,
        CHECK,
        DEL,
        DEL_AGAIN,
        DEL_WITHOUT_NETNS,
        DEL_INTERFACES_GONE,
        DEL_IPAM_RELEASED,
        DEL_IPTABLES_CLEAN,
        DEL_CACHE_GONE,
        GC_REMOVES_STALE,
        GC_KEEPS_VALID,
        STATUS,
    ];
}

/// Where the containers' network namespaces come from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum NetnsSource {
    /// Create one namespace per container with `ip netns add` under a unique name and
    /// delete it with `ip netns del` at the end (the default; needs root).
    #[default]
    Create,
    /// Use this namespace path for every container; the GC containers then get their
    /// own interface names (`cgc0`, `cgc1`) so they do not collide with the first.
    Path(String),
}

/// Whether a check passed, failed or was skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The plugins did what the specification asks.
    Pass,
    /// They did not; the evidence says what happened.
    Fail,
    /// The check does not apply (for example STATUS below 1.1.0); counts as passed.
    Skip,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Outcome::Pass => "PASS",
            Outcome::Fail => "FAIL",
            Outcome::Skip => "SKIP",
        })
    }
}

/// One check's verdict and its evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckResult {
    /// The check's name, one of [`check::ALL`].
    pub name: &'static str,
    /// Whether it passed (true for skipped checks too).
    pub passed: bool,
    /// Whether it was skipped (then `passed` is true and `evidence` says why).
    pub skipped: bool,
    /// What was seen: the plugin's error, the leftover, or what was verified.
    pub evidence: String,
}

impl CheckResult {
    fn pass(name: &'static str, evidence: impl Into<String>) -> Self {
        Self {
            name,
            passed: true,
            skipped: false,
            evidence: evidence.into(),
        }
    }

    fn fail(name: &'static str, evidence: impl Into<String>) -> Self {
        Self {
            name,
            passed: false,
            skipped: false,
            evidence: evidence.into(),
        }
    }

    fn skip(name: &'static str, evidence: impl Into<String>) -> Self {
        Self {
            name,
            passed: true,
            skipped: true,
            evidence: evidence.into(),
        }
    }

    fn verdict(name: &'static str, ok: bool, evidence: impl Into<String>) -> Self {
        if ok {
            Self::pass(name, evidence)
        } else {
            Self::fail(name, evidence)
        }
    }

    /// Pass, fail or skip.
    pub fn outcome(&self) -> Outcome {
        match (self.passed, self.skipped) {
            (_, true) => Outcome::Skip,
            (true, false) => Outcome::Pass,
            (false, false) => Outcome::Fail,
        }
    }
}

/// The outcome of a [`ConformanceCheck`]: every check, in order, and what went wrong
/// while cleaning up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The network (conflist) name.
    pub network: String,
    /// The version the list was driven at, when it could be negotiated.
    pub version: Option<String>,
    /// The checks, in the order they ran.
    pub checks: Vec<CheckResult>,
    /// Failures of the final clean-up (DEL of the GC containers, `ip netns del`); they
    /// are not checks and do not change [`passed`](Self::passed).
    pub cleanup_errors: Vec<String>,
}

impl Report {
    /// Whether no check failed (skipped checks count as passed).
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.passed)
    }

    /// The check of that name.
    pub fn get(&self, name: &str) -> Option<&CheckResult> {
        self.checks.iter().find(|c| c.name == name)
    }

    /// The checks that failed.
    pub fn failures(&self) -> impl Iterator<Item = &CheckResult> {
        self.checks.iter().filter(|c| !c.passed)
    }

    /// How many checks passed (not counting skipped ones).
    pub fn passed_count(&self) -> usize {
        self.count(Outcome::Pass)
    }

    /// How many checks failed.
    pub fn failed_count(&self) -> usize {
        self.count(Outcome::Fail)
    }

    /// How many checks were skipped.
    pub fn skipped_count(&self) -> usize {
        self.count(Outcome::Skip)
    }

    fn count(&self, outcome: Outcome) -> usize {
        self.checks
            .iter()
            .filter(|c| c.outcome() == outcome)
            .count()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "conformance of network {:?}", self.network)?;
        if let Some(v) = &self.version {
            write!(f, " (driven at {v})")?;
        }
        writeln!(
            f,
            ": {} passed, {} failed, {} skipped",
            self.passed_count(),
            self.failed_count(),
            self.skipped_count()
        )?;
        for c in &self.checks {
            writeln!(f, "{} {}: {}", c.outcome(), c.name, c.evidence)?;
        }
        for e in &self.cleanup_errors {
            writeln!(f, "cleanup: {e}")?;
        }
        Ok(())
    }
}

/// A conformance run of one conflist (see the [module docs](self)).
#[derive(Debug, Clone)]
pub struct ConformanceCheck {
    cni: CniConfig,
    list: NetworkConfigList,
    ifname: String,
    args: Vec<(String, String)>,
    capability_args: Map<String, Value>,
    netns: NetnsSource,
}

impl ConformanceCheck {
    /// Checks `list` with `cni` (its plugin paths and cache directory), on `eth0`, with
    /// `CNI_ARGS` `IgnoreUnknown=1` (as containerd sends), no capability arguments and
    /// namespaces of its own.
    pub fn new(cni: CniConfig, list: NetworkConfigList) -> Self {
        Self {
            cni,
            list,
            ifname: "eth0".into(),
            args: vec![("IgnoreUnknown".into(), "1".into())],
            capability_args: Map::new(),
            netns: NetnsSource::Create,
        }
    }

    /// Sets `CNI_IFNAME` (default `eth0`).
    #[must_use]
    pub fn ifname(mut self, ifname: impl Into<String>) -> Self {
        self.ifname = ifname.into();
        self
    }

    /// Sets the `CNI_ARGS` pairs (default `IgnoreUnknown=1`; Debian's plugins refuse
    /// unknown arguments without it).
    #[must_use]
    pub fn args(mut self, args: Vec<(String, String)>) -> Self {
        self.args = args;
        self
    }

    /// Sets the capability arguments (`portMappings`, ...), sent as `runtimeConfig`.
    #[must_use]
    pub fn capability_args(mut self, capability_args: Map<String, Value>) -> Self {
        self.capability_args = capability_args;
        self
    }

    /// Sets where the network namespaces come from (default [`NetnsSource::Create`]).
    #[must_use]
    pub fn netns(mut self, netns: NetnsSource) -> Self {
        self.netns = netns;
        self
    }

    /// Runs every check and returns the report; cleans up what it created (the GC
    /// containers are DELeted, its namespaces deleted) whatever happened.
    pub async fn run(self) -> Report {
        let mut owned = Vec::new();
        let mut report = Report {
            network: self.list.name.clone(),
            version: None,
            checks: Vec::new(),
            cleanup_errors: Vec::new(),
        };
        self.run_checks(&mut report, &mut owned).await;
        for name in owned {
            if let Err(e) = command(&["ip", "netns", "del", &name]).await {
                report.cleanup_errors.push(e);
            }
        }
        report
    }

    async fn run_checks(&self, report: &mut Report, owned: &mut Vec<String>) {
        // A failed negotiation shows up again, as the plugin's error, in the ADD check.
        let version = self.cni.effective_version(&self.list).await.ok();
        report.version.clone_from(&version);
        let checks = &mut report.checks;
        let netns = match self.netns_for(0, owned).await {
            Ok(ns) => ns,
            Err(e) => {
                for name in check::ALL {
                    checks.push(CheckResult::fail(
                        name,
                        format!("not run: no network namespace: {e}"),
                    ));
                }
                return;
            }
        };
        let rt = RuntimeConf {
            container_id: container_id(),
            netns: Some(netns.clone()),
            ifname: self.ifname.clone(),
            args: self.args.clone(),
            capability_args: self.capability_args.clone(),
        };

        // ADD and the interfaces it reports.
        let result = match self.cni.add(&self.list, &rt).await {
            Ok(r) => match r.validate().and_then(|()| r.to_current()) {
                Ok(cur) => match index_problem(&cur) {
                    None => {
                        checks.push(CheckResult::pass(check::ADD, r.to_value().to_string()));
                        Some(cur)
                    }
                    Some(p) => {
                        checks.push(CheckResult::fail(
                            check::ADD,
                            format!("{p}: {}", r.to_value()),
                        ));
                        Some(cur)
                    }
                },
                Err(e) => {
                    checks.push(CheckResult::fail(
                        check::ADD,
                        format!("invalid result: {e}: {}", r.to_value()),
                    ));
                    None
                }
            },
            Err(e) => {
                checks.push(CheckResult::fail(check::ADD, format!("ADD failed: {e}")));
                None
            }
        };
        let added = result.is_some();
        let rules_after_add = iptables_lines(&rt.container_id).await.ok().map(|l| l.len());
        checks.push(match &result {
            Some(cur) => interfaces_present(cur, &netns).await,
            None => CheckResult::skip(check::ADD_INTERFACES, "not run: no valid ADD result"),
        });

        // CHECK.
        checks.push(if !added {
            CheckResult::skip(check::CHECK, "not run: no valid ADD result")
        } else if self.list.disable_check {
            CheckResult::skip(check::CHECK, "disableCheck is set")
        } else if version
            .as_deref()
            .is_some_and(|v| compare_versions(v, "0.4.0").is_ok_and(|o| o.is_lt()))
        {
            CheckResult::skip(
                check::CHECK,
                format!("version {} has no CHECK", version.as_deref().unwrap_or("")),
            )
        } else {
            match self.cni.check(&self.list, &rt).await {
                Ok(()) => CheckResult::pass(check::CHECK, "CHECK succeeded"),
                Err(e) => CheckResult::fail(check::CHECK, e.to_string()),
            }
        });

        // DEL, DEL again, DEL without a netns (run even after a failed ADD, as the
        // spec asks of runtimes).
        let del = self.cni.del(&self.list, &rt).await;
        checks.push(verdict_of(check::DEL, del, "DEL succeeded"));
        let del = self.cni.del(&self.list, &rt).await;
        checks.push(verdict_of(check::DEL_AGAIN, del, "second DEL succeeded"));
        let rt_no_ns = RuntimeConf {
            netns: None,
            ..rt.clone()
        };
        let del = self.cni.del(&self.list, &rt_no_ns).await;
        checks.push(verdict_of(
            check::DEL_WITHOUT_NETNS,
            del,
            "DEL without CNI_NETNS succeeded",
        ));

        // What DEL must have removed.
        checks.push(match &result {
            Some(cur) => interfaces_gone(check::DEL_INTERFACES_GONE, cur, &netns).await,
            None => CheckResult::skip(check::DEL_INTERFACES_GONE, "not run: no valid ADD result"),
        });
        checks.push(ipam_released(&self.list, result.as_ref()));
        checks.push(iptables_clean(&rt.container_id, rules_after_add).await);
        let cache_path = self
            .cni
            .cache()
            .path_for(&self.list.name, &rt.container_id, &rt.ifname);
        checks.push(CheckResult::verdict(
            check::DEL_CACHE_GONE,
            !cache_path.exists(),
            if cache_path.exists() {
                format!("cache entry left: {}", cache_path.display())
            } else {
                format!("no cache entry at {}", cache_path.display())
            },
        ));

        // GC.
        let (stale, valid) = self.gc_checks(&mut report.cleanup_errors, owned).await;
        report.checks.push(stale);
        report.checks.push(valid);

        // STATUS.
        let checks = &mut report.checks;
        checks.push(match version.as_deref() {
            Some(v) if compare_versions(v, "1.1.0").is_ok_and(|o| o.is_lt()) => {
                CheckResult::skip(check::STATUS, format!("version {v} has no STATUS"))
            }
            _ => match self.cni.status(&self.list).await {
                Ok(()) => CheckResult::pass(check::STATUS, "STATUS succeeded"),
                Err(e) => CheckResult::fail(check::STATUS, e.to_string()),
            },
        });
    }

    async fn gc_checks(
        &self,
        cleanup: &mut Vec<String>,
        owned: &mut Vec<String>,
    ) -> (CheckResult, CheckResult) {
        if self.list.disable_gc {
            return (
                CheckResult::skip(check::GC_REMOVES_STALE, "disableGC is set"),
                CheckResult::skip(check::GC_KEEPS_VALID, "disableGC is set"),
            );
        }
        let mut rts = Vec::new();
        for i in 1..=2 {
            let ns = match self.netns_for(i, owned).await {
                Ok(ns) => ns,
                Err(e) => {
                    let why = format!("not run: no network namespace: {e}");
                    return (
                        CheckResult::fail(check::GC_REMOVES_STALE, why.clone()),
                        CheckResult::fail(check::GC_KEEPS_VALID, why),
                    );
                }
            };
            let ifname = match self.netns {
                NetnsSource::Path(_) => format!("cgc{}", i - 1),
                NetnsSource::Create => self.ifname.clone(),
            };
            rts.push(RuntimeConf {
                container_id: container_id(),
                netns: Some(ns),
                ifname,
                args: self.args.clone(),
                capability_args: self.capability_args.clone(),
            });
        }
        let (stale_rt, valid_rt) = (&rts[0], &rts[1]);
        let stale = self.cni.add(&self.list, stale_rt).await;
        let valid = self.cni.add(&self.list, valid_rt).await;
        let result = match (&stale, &valid) {
            (Ok(s), Ok(v)) => match (s.to_current(), v.to_current()) {
                (Ok(s), Ok(v)) => Ok((s, v)),
                (Err(e), _) | (_, Err(e)) => Err(format!("invalid ADD result: {e}")),
            },
            (Err(e), _) | (_, Err(e)) => Err(format!("ADD failed: {e}")),
        };
        let verdicts = match result {
            Err(why) => {
                let why = format!("not run: {why}");
                (
                    CheckResult::fail(check::GC_REMOVES_STALE, why.clone()),
                    CheckResult::fail(check::GC_KEEPS_VALID, why),
                )
            }
            Ok((stale_res, valid_res)) => {
                let keep = [GcAttachment {
                    container_id: valid_rt.container_id.clone(),
                    ifname: valid_rt.ifname.clone(),
                }];
                let gc = self.cni.gc(&self.list, &keep).await;
                let gc_note = match &gc {
                    Ok(()) => "GC succeeded".to_owned(),
                    Err(e) => format!("GC failed: {e}"),
                };
                let cache = self.cni.cache();
                let stale_path =
                    cache.path_for(&self.list.name, &stale_rt.container_id, &stale_rt.ifname);
                let valid_path =
                    cache.path_for(&self.list.name, &valid_rt.container_id, &valid_rt.ifname);
                let stale_ns = stale_rt.netns.clone().unwrap_or_default();
                let valid_ns = valid_rt.netns.clone().unwrap_or_default();
                let gone = interfaces_gone(check::GC_REMOVES_STALE, &stale_res, &stale_ns).await;
                let present = interfaces_present(&valid_res, &valid_ns).await;
                let removes = CheckResult::verdict(
                    check::GC_REMOVES_STALE,
                    gc.is_ok() && !stale_path.exists() && gone.passed,
                    format!(
                        "{gc_note}; cache entry {}: {}; {}",
                        stale_path.display(),
                        if stale_path.exists() { "left" } else { "gone" },
                        gone.evidence
                    ),
                );
                let keeps = CheckResult::verdict(
                    check::GC_KEEPS_VALID,
                    valid_path.exists() && present.passed,
                    format!(
                        "{gc_note}; cache entry {}: {}; {}",
                        valid_path.display(),
                        if valid_path.exists() {
                            "kept"
                        } else {
                            "removed"
                        },
                        present.evidence
                    ),
                );
                (removes, keeps)
            }
        };
        // Clean up both (DEL is idempotent, so the stale one again too).
        for rt in [valid_rt, stale_rt] {
            if let Err(e) = self.cni.del(&self.list, rt).await {
                cleanup.push(format!("DEL of {}: {e}", rt.container_id));
            }
        }
        verdicts
    }

    /// The namespace path for the `i`-th container.
    async fn netns_for(&self, i: u32, owned: &mut Vec<String>) -> Result<String, String> {
        match &self.netns {
            NetnsSource::Path(p) => Ok(p.clone()),
            NetnsSource::Create => {
                static COUNTER: AtomicU32 = AtomicU32::new(0);
                let n = COUNTER.fetch_add(1, Ordering::Relaxed);
                let name = format!("cniconf-{}-{n}-{i}", std::process::id());
                command(&["ip", "netns", "add", &name]).await?;
                owned.push(name.clone());
                Ok(format!("/run/netns/{name}"))
            }
        }
    }
}

fn verdict_of(name: &'static str, r: crate::Result<()>, ok: &str) -> CheckResult {
    match r {
        Ok(()) => CheckResult::pass(name, ok),
        Err(e) => CheckResult::fail(name, e.to_string()),
    }
}

/// A container ID unique to this process and call (libcni's allowed characters).
fn container_id() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("cniconf{}x{n}x{nanos:x}", std::process::id())
}

/// The first IP whose interface index is out of range, described.
fn index_problem(r: &Result100) -> Option<String> {
    r.ips.iter().find_map(|ip| match ip.interface {
        Some(i) if i >= r.interfaces.len() => Some(format!(
            "IP {} names interface {i}, but the result has {} interfaces",
            ip.address,
            r.interfaces.len()
        )),
        _ => None,
    })
}

/// One link of `ip -j addr`: name, MAC, flags and addresses.
#[derive(Debug, Default)]
struct Link {
    name: String,
    mac: String,
    up: bool,
    addrs: Vec<(IpAddr, u8)>,
}

/// Parses `ip -j addr show` output.
fn parse_ip_addr(json: &str) -> Result<Vec<Link>, String> {
    let v: Value = serde_json::from_str(json).map_err(|e| format!("bad `ip -j` JSON: {e}"))?;
    let links = v.as_array().ok_or("`ip -j` output is not an array")?;
    Ok(links
        .iter()
        .map(|l| Link {
            name: l["ifname"].as_str().unwrap_or_default().to_owned(),
            mac: l["address"].as_str().unwrap_or_default().to_lowercase(),
            up: l["flags"]
                .as_array()
                .is_some_and(|f| f.iter().any(|x| x == "UP")),
            addrs: l["addr_info"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|i| {
                            let ip = i["local"].as_str()?.parse().ok()?;
                            let len = u8::try_from(i["prefixlen"].as_u64()?).ok()?;
                            Some((ip, len))
                        })
                        .collect()
                })
                .unwrap_or_default(),
        })
        .collect())
}

async fn links_in(netns: &str) -> Result<Vec<Link>, String> {
    let net = format!("--net={netns}");
    let out = command(&["nsenter", &net, "ip", "-j", "addr", "show"]).await?;
    parse_ip_addr(&out)
}

/// Every sandbox interface of the result is in the netns with its MAC and IPs.
async fn interfaces_present(r: &Result100, netns: &str) -> CheckResult {
    const NAME: &str = check::ADD_INTERFACES;
    let links = match links_in(netns).await {
        Ok(l) => l,
        Err(e) => return CheckResult::fail(NAME, e),
    };
    let mut problems = Vec::new();
    let mut seen = Vec::new();
    for (idx, iface) in r.interfaces.iter().enumerate() {
        if iface.sandbox.is_empty() {
            continue;
        }
        let Some(link) = links.iter().find(|l| l.name == iface.name) else {
            problems.push(format!("interface {:?} not in {netns}", iface.name));
            continue;
        };
        if !iface.mac.is_empty() && link.mac != iface.mac.to_lowercase() {
            problems.push(format!(
                "{}: MAC is {}, the result says {}",
                iface.name, link.mac, iface.mac
            ));
        }
        for ip in r.ips.iter().filter(|ip| ip.interface == Some(idx)) {
            let want = (ip.address.ip(), ip.address.prefix());
            if !link.addrs.contains(&want) {
                problems.push(format!(
                    "{}: {} is not on it (it has {:?})",
                    iface.name, ip.address, link.addrs
                ));
            }
        }
        seen.push(format!("{} {}", iface.name, link.mac));
    }
    if problems.is_empty() {
        CheckResult::pass(
            NAME,
            if seen.is_empty() {
                "the result has no sandbox interface".to_owned()
            } else {
                format!("in {netns} with MAC and IPs: {}", seen.join(", "))
            },
        )
    } else {
        CheckResult::fail(NAME, problems.join("; "))
    }
}

/// No sandbox interface of the result is left in the netns (`lo` counts when down).
async fn interfaces_gone(name: &'static str, r: &Result100, netns: &str) -> CheckResult {
    let links = match links_in(netns).await {
        Ok(l) => l,
        Err(e) => return CheckResult::fail(name, e),
    };
    let mut left = Vec::new();
    let mut notes = Vec::new();
    for iface in r.interfaces.iter().filter(|i| !i.sandbox.is_empty()) {
        if let Some(link) = links.iter().find(|l| l.name == iface.name) {
            if link.name == "lo" && !link.up {
                notes.push("lo (cannot be deleted) is down".to_owned());
            } else {
                left.push(format!(
                    "{} ({})",
                    link.name,
                    if link.up { "up" } else { "down" }
                ));
            }
        }
    }
    if left.is_empty() {
        let mut ev = format!("no result interface left in {netns}");
        for n in notes {
            ev.push_str("; ");
            ev.push_str(&n);
        }
        CheckResult::pass(name, ev)
    } else {
        CheckResult::fail(name, format!("left in {netns}: {}", left.join(", ")))
    }
}

/// The host-local data directories of the list: `ipam.dataDir` (default
/// `/var/lib/cni/networks`) joined with the network name.
fn host_local_dirs(list: &NetworkConfigList) -> Vec<PathBuf> {
    list.plugins
        .iter()
        .filter_map(|p| p.raw.get("ipam"))
        .filter(|ipam| ipam["type"] == "host-local")
        .map(|ipam| {
            let base = ipam["dataDir"].as_str().unwrap_or("/var/lib/cni/networks");
            PathBuf::from(base).join(&list.name)
        })
        .collect()
}

fn ipam_released(list: &NetworkConfigList, r: Option<&Result100>) -> CheckResult {
    const NAME: &str = check::DEL_IPAM_RELEASED;
    let dirs = host_local_dirs(list);
    if dirs.is_empty() {
        return CheckResult::skip(NAME, "no host-local IPAM in the list");
    }
    let Some(r) = r else {
        return CheckResult::skip(NAME, "not run: no valid ADD result");
    };
    let mut left = Vec::new();
    for dir in &dirs {
        for ip in &r.ips {
            let file = dir.join(ip.address.ip().to_string());
            if file.exists() {
                left.push(file.display().to_string());
            }
        }
    }
    let ips: Vec<String> = r.ips.iter().map(|i| i.address.ip().to_string()).collect();
    CheckResult::verdict(
        NAME,
        left.is_empty(),
        if left.is_empty() {
            format!(
                "no allocation file for {} in {}",
                ips.join(", "),
                dirs.iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        } else {
            format!("allocation files left: {}", left.join(", "))
        },
    )
}

/// The `iptables-save` and `ip6tables-save` lines that mention the container ID.
async fn iptables_lines(container_id: &str) -> Result<Vec<String>, String> {
    let mut lines = Vec::new();
    for tool in ["iptables-save", "ip6tables-save"] {
        let out = command(&[tool]).await?;
        lines.extend(
            out.lines()
                .filter(|l| l.contains(container_id))
                .map(|l| format!("{tool}: {l}")),
        );
    }
    Ok(lines)
}

/// `after_add`: how many lines mentioned the container after ADD (evidence that the
/// check looked at something).
async fn iptables_clean(container_id: &str, after_add: Option<usize>) -> CheckResult {
    const NAME: &str = check::DEL_IPTABLES_CLEAN;
    let left = match iptables_lines(container_id).await {
        Ok(l) => l,
        Err(e) => return CheckResult::fail(NAME, e),
    };
    let before = after_add.map_or_else(|| "unknown".to_owned(), |n| n.to_string());
    CheckResult::verdict(
        NAME,
        left.is_empty(),
        if left.is_empty() {
            format!(
                "no iptables-save/ip6tables-save line mentions {container_id} \
                 ({before} did after ADD)"
            )
        } else {
            format!("{} lines left: {}", left.len(), left.join("\n"))
        },
    )
}

/// Runs a command; its stdout, or an error naming the argv, status and stderr.
async fn command(argv: &[&str]) -> Result<String, String> {
    let out = tokio::process::Command::new(argv[0])
        .args(&argv[1..])
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| format!("cannot run `{}`: {e}", argv.join(" ")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "`{}` failed ({}): {}",
            argv.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ip_json() {
        let json = r#"[{"ifindex":1,"ifname":"lo","flags":["LOOPBACK","UP","LOWER_UP"],
            "address":"00:00:00:00:00:00","addr_info":[{"family":"inet","local":"127.0.0.1",
            "prefixlen":8},{"family":"inet6","local":"::1","prefixlen":128}]},
            {"ifindex":3,"ifname":"eth0","flags":["BROADCAST"],"address":"AA:bb:cc:00:11:22",
            "addr_info":[]}]"#;
        let links = parse_ip_addr(json).unwrap();
        assert_eq!(links.len(), 2);
        assert!(links[0].up);
        assert_eq!(
            links[0].addrs,
            vec![
                ("127.0.0.1".parse().unwrap(), 8),
                ("::1".parse().unwrap(), 128)
            ]
        );
        assert_eq!(links[1].mac, "aa:bb:cc:00:11:22");
        assert!(!links[1].up);
        assert!(parse_ip_addr("{}").is_err());
        assert!(parse_ip_addr("not json").is_err());
    }

    #[test]
    fn report_counts_and_renders() {
        let report = Report {
            network: "net".into(),
            version: Some("1.0.0".into()),
            checks: vec![
                CheckResult::pass(check::ADD, "ok"),
                CheckResult::fail(check::CHECK, "boom"),
                CheckResult::skip(check::STATUS, "version 1.0.0 has no STATUS"),
            ],
            cleanup_errors: vec![],
        };
        assert!(!report.passed());
        assert_eq!(
            (
                report.passed_count(),
                report.failed_count(),
                report.skipped_count()
            ),
            (1, 1, 1)
        );
        assert_eq!(report.failures().count(), 1);
        assert_eq!(report.get(check::STATUS).unwrap().outcome(), Outcome::Skip);
        assert_eq!(
            report.to_string(),
            "conformance of network \"net\" (driven at 1.0.0): 1 passed, 1 failed, 1 skipped\n\
             PASS add: ok\nFAIL check: boom\nSKIP status: version 1.0.0 has no STATUS\n"
        );
    }

    #[test]
    fn host_local_dirs_default_and_explicit() {
        let list = NetworkConfigList::from_bytes(
            br#"{"cniVersion":"1.0.0","name":"n","plugins":[
                {"type":"bridge","ipam":{"type":"host-local","dataDir":"/tmp/x"}},
                {"type":"ptp","ipam":{"type":"host-local"}},
                {"type":"portmap"}]}"#,
        )
        .unwrap();
        assert_eq!(
            host_local_dirs(&list),
            vec![
                PathBuf::from("/tmp/x/n"),
                PathBuf::from("/var/lib/cni/networks/n")
            ]
        );
        assert_eq!(
            ipam_released(&list, None).outcome(),
            Outcome::Skip,
            "no ADD result"
        );
    }
}
