//! The sync engine: kube-proxy's `syncProxyRules` loop.
//!
//! - A [`Proxier`] per IP family applies one mode (iptables or nftables): it renders
//!   only the Services that changed, applies a partial update (only their chains, or
//!   only the changed map elements), runs a full sync when due (first sync, every
//!   [`SyncOptions::full_sync_period`], after any failure, after its canary was lost),
//!   removes stale chains and another mode's leftovers, and cleans up UDP conntrack
//!   flows of removed endpoints.
//! - A [`SyncEngine`] owns the [`ServiceStore`] and the proxiers of both families, takes
//!   the store's changes once per sync, and [`SyncEngine::run`] drives it from events
//!   with kube-proxy's timing: no sync before the initial state is complete, at most
//!   one sync per [`SyncOptions::min_sync_period`], one at least every
//!   [`SyncOptions::sync_period`], with a canary check at that period.
//!
//! On a failed apply the kernel keeps the previous rules (both tools apply a
//! transaction), the failure is counted, and the next sync is a full one.
//!
//! # Example
//!
//! ```no_run
//! use proxy_rules::exec::Target;
//! use proxy_rules::sync::{Event, Execs, Mode, SyncEngine, SyncOptions};
//! # async fn demo(
//! #     config: proxy_rules::config::ProxyConfig,
//! #     services: Vec<proxy_rules::store::ServiceSpec>,
//! #     slices: Vec<proxy_rules::store::EndpointSliceSpec>,
//! # ) -> proxy_rules::Result<()> {
//! let mut engine = SyncEngine::new(
//!     Mode::Nftables,
//!     &[proxy_rules::model::IpFamily::V4],
//!     config,
//!     SyncOptions::default(),
//!     Execs::commands(Target::host()), // or Target::netns("name")
//! )?;
//! engine.apply(Event::Replace { services, slices })?;
//! for report in engine.sync(false).await {
//!     println!("{:?}", report?);
//! }
//! # Ok(())
//! # }
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnetwork::IpNetwork;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::Result;
use crate::config::ProxyConfig;
use crate::conntrack::{self, CleanupReport};
use crate::exec::{ConntrackExec, IptablesExec, NftExec, SysctlExec};
use crate::iptables::dump::IptablesDump;
use crate::iptables::{IptablesRenderer, Table};
use crate::metrics::{Metrics, SyncRecord};
use crate::model::{IpFamily, ProxyState, ServiceName};
use crate::names::{chains, is_service_chain_name};
use crate::nftables::{NftRenderer, TABLE};
use crate::store::{EndpointSliceSpec, ServiceSpec, ServiceStore};

/// The proxy mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// iptables (kube-proxy's default on Linux).
    Iptables,
    /// nftables.
    Nftables,
}

impl Mode {
    /// `iptables` or `nftables`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Iptables => "iptables",
            Mode::Nftables => "nftables",
        }
    }
}

/// Timing and behaviour of the sync loop. Defaults are kube-proxy's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncOptions {
    /// Minimum time between syncs (`--iptables-min-sync-period`, 1 s).
    pub min_sync_period: Duration,
    /// Maximum time between syncs, the canary check period and the retry delay after
    /// a failure (`--iptables-sync-period`, 30 s).
    pub sync_period: Duration,
    /// A full sync at least this often (kube-proxy's `FullSyncPeriod`, 1 h).
    pub full_sync_period: Duration,
    /// nftables: stale chains are flushed at once and deleted this long after (1 s).
    pub stale_chain_delay: Duration,
    /// Delete UDP conntrack flows of removed endpoints after each sync (true).
    pub conntrack_cleanup: bool,
    /// On the first sync, remove the other mode's rules (true).
    pub cleanup_other_modes: bool,
    /// Split an apply that writes more per-service chains than this into several
    /// `iptables-restore` / `nft -f` calls (2000; 0: never, as kube-proxy). See
    /// [`IptablesRenderer::restore_inputs`] and [`NftRenderer::replace_scripts`] for
    /// the measurements behind it.
    pub max_chains_per_call: usize,
}

impl Default for SyncOptions {
    fn default() -> Self {
        Self {
            min_sync_period: Duration::from_secs(1),
            sync_period: Duration::from_secs(30),
            full_sync_period: Duration::from_secs(3600),
            stale_chain_delay: Duration::from_secs(1),
            conntrack_cleanup: true,
            cleanup_other_modes: true,
            max_chains_per_call: 2000,
        }
    }
}

/// The side effects a proxier uses.
#[derive(Clone)]
pub struct Execs {
    /// iptables (the iptables mode's rules; in nftables mode only to remove leftovers).
    pub iptables: Arc<dyn IptablesExec>,
    /// nft (the nftables mode's rules; in iptables mode only to remove leftovers).
    pub nft: Arc<dyn NftExec>,
    /// conntrack, for UDP cleanup (`None`: no cleanup).
    pub conntrack: Option<Arc<dyn ConntrackExec>>,
    /// sysctl, for `route_localnet` with localhost NodePorts (`None`: not set).
    pub sysctl: Option<Arc<dyn SysctlExec>>,
}

impl Execs {
    /// The real commands on a target (host or netns); conntrack over netlink
    /// ([`crate::ctnetlink::NetlinkConntrack`], one request per stale flow instead of a
    /// `conntrack` run that lists the whole table each time).
    /// If the netlink socket cannot be opened, the `conntrack` tool is used.
    pub fn commands(target: crate::exec::Target) -> Self {
        let netlink = crate::ctnetlink::NetlinkConntrack::for_target(&target);
        let c = Arc::new(crate::exec::Commands::new(target));
        let conntrack: Arc<dyn ConntrackExec> = match netlink {
            Ok(n) => Arc::new(n),
            Err(e) => {
                tracing::warn!(error = %e, "conntrack over netlink is unavailable; using the conntrack tool");
                c.clone()
            }
        };
        Self {
            iptables: c.clone(),
            nft: c.clone(),
            conntrack: Some(conntrack),
            sysctl: Some(c),
        }
    }
}

impl std::fmt::Debug for Execs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Execs")
            .field("conntrack", &self.conntrack.is_some())
            .field("sysctl", &self.sysctl.is_some())
            .finish_non_exhaustive()
    }
}

/// What one sync did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncReport {
    /// The family.
    pub family: IpFamily,
    /// The mode.
    pub mode: Mode,
    /// Whether it was a full sync.
    pub full: bool,
    /// Total time.
    pub duration: Duration,
    /// Time spent computing the update (our code).
    pub render: Duration,
    /// Time spent in the kernel tools (`iptables-restore`, `nft`), the canary and jump
    /// rule checks included.
    pub apply: Duration,
    /// Bytes handed to `iptables-restore` / `nft`.
    pub bytes: usize,
    /// Calls of `iptables-restore` / `nft -f` (more than one when the apply was split).
    pub apply_calls: usize,
    /// Service ports whose rules changed.
    pub changed_service_ports: usize,
    /// Chains deleted.
    pub deleted_chains: usize,
    /// UDP conntrack cleanup.
    pub conntrack: CleanupReport,
}

enum Backend {
    Iptables {
        renderer: IptablesRenderer,
    },
    Nft {
        renderer: NftRenderer,
        /// Whether the kernel holds what the renderer last committed.
        applied: bool,
        /// After a configuration change: what the kernel has, for the new renderer.
        prior_kernel: Option<Box<crate::nftables::NftRuleset>>,
        stale: BTreeMap<String, Instant>,
    },
}

/// One family's proxier in one mode.
pub struct Proxier {
    family: IpFamily,
    mode: Mode,
    config: ProxyConfig,
    options: SyncOptions,
    execs: Execs,
    backend: Backend,
    state: ProxyState,
    needs_full: bool,
    last_full: Option<Instant>,
    first: bool,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Proxier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxier")
            .field("family", &self.family)
            .field("mode", &self.mode)
            .field("needs_full", &self.needs_full)
            .finish_non_exhaustive()
    }
}

/// kube-proxy's own filter/nat chains that a cleanup removes (not kubelet's
/// `KUBE-FIREWALL`, `KUBE-MARK-MASQ`, `KUBE-KUBELET-CANARY`).
const CLEANUP_NAT: &[&str] = &[chains::SERVICES, chains::NODEPORTS, chains::POSTROUTING];
const CLEANUP_FILTER: &[&str] = &[
    chains::SERVICES,
    chains::EXTERNAL_SERVICES,
    chains::FORWARD,
    chains::NODEPORTS,
    chains::PROXY_FIREWALL,
];

impl Proxier {
    /// A proxier for one family and mode.
    pub fn new(
        mode: Mode,
        family: IpFamily,
        config: ProxyConfig,
        options: SyncOptions,
        execs: Execs,
        metrics: Arc<Metrics>,
    ) -> Result<Self> {
        let backend = Self::backend(mode, &config, family)?;
        Ok(Self {
            family,
            mode,
            config,
            options,
            execs,
            backend,
            state: ProxyState::new(),
            needs_full: true,
            last_full: None,
            first: true,
            metrics,
        })
    }

    fn backend(mode: Mode, config: &ProxyConfig, family: IpFamily) -> Result<Backend> {
        Ok(match mode {
            Mode::Iptables => Backend::Iptables {
                renderer: IptablesRenderer::new(config, family)?,
            },
            Mode::Nftables => Backend::Nft {
                renderer: NftRenderer::new(config, family)?,
                applied: false,
                prior_kernel: None,
                stale: BTreeMap::new(),
            },
        })
    }

    /// The family.
    pub fn family(&self) -> IpFamily {
        self.family
    }

    /// The mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The configuration.
    pub fn config(&self) -> &ProxyConfig {
        &self.config
    }

    /// The state last synced (or being synced).
    pub fn state(&self) -> &ProxyState {
        &self.state
    }

    /// Replace the configuration (node labels, service CIDRs, ...): everything is
    /// re-rendered and the next sync is full.
    pub fn set_config(&mut self, config: ProxyConfig) -> Result<()> {
        let mut backend = Self::backend(self.mode, &config, self.family)?;
        // nftables: keep what the kernel has, so the next (full) sync rewrites the table
        // in place, as kube-proxy does on a node label change, instead of replacing it.
        if let (
            Backend::Nft {
                renderer: old,
                applied: true,
                stale,
                ..
            },
            Backend::Nft {
                prior_kernel,
                applied,
                stale: new_stale,
                ..
            },
        ) = (&self.backend, &mut backend)
        {
            *prior_kernel = Some(Box::new(old.kernel_view()));
            *applied = true;
            *new_stale = stale.clone();
        }
        self.backend = backend;
        self.config = config;
        self.needs_full = true;
        Ok(())
    }

    /// Whether the next sync will be full.
    pub fn needs_full_sync(&self) -> bool {
        self.needs_full
            || self
                .last_full
                .is_none_or(|t| t.elapsed() >= self.options.full_sync_period)
    }

    /// Check the canary: iptables mode, the `KUBE-PROXY-CANARY` chains in mangle, nat
    /// and filter; nftables mode, our table's `masquerading` chain. Returns whether it
    /// is intact; when not, the next sync is a full one that recreates everything.
    pub async fn check_canary(&mut self) -> Result<bool> {
        let intact = match &self.backend {
            Backend::Iptables { .. } => {
                let mut ok = true;
                for table in [Table::Mangle, Table::Nat, Table::Filter] {
                    ok &= self
                        .execs
                        .iptables
                        .chain_exists(self.family, table, chains::PROXY_CANARY)
                        .await?;
                }
                ok
            }
            Backend::Nft { applied: false, .. } => true,
            Backend::Nft { .. } => self
                .execs
                .nft
                .list_chain(self.family, TABLE, crate::nftables::objects::MASQUERADING)
                .await?
                .is_some_and(|text| text.contains("masquerade")),
        };
        if !intact {
            tracing::warn!(family = %self.family, mode = self.mode.as_str(), "proxy rules were flushed by someone else; a full sync follows");
            self.needs_full = true;
            if let Backend::Nft { applied, .. } = &mut self.backend {
                *applied = false;
            }
        }
        Ok(intact)
    }

    /// Sync: bring the kernel in line with `store`. `changed` are the Services changed
    /// since the last sync (the engine takes them from the store once for all
    /// proxiers); `force_full` asks for a full sync.
    pub async fn sync(
        &mut self,
        store: &ServiceStore,
        changed: &BTreeSet<ServiceName>,
        force_full: bool,
    ) -> Result<SyncReport> {
        let start = Instant::now();
        let full = force_full || self.needs_full_sync();
        let result = self.sync_inner(store, changed, full, start).await;
        let mut record = SyncRecord {
            full,
            duration: start.elapsed(),
            ok: result.is_ok(),
            ..SyncRecord::default()
        };
        match &result {
            Ok(report) => {
                self.needs_full = false;
                if full {
                    self.last_full = Some(start);
                }
                self.first = false;
                record.conntrack_deleted = report.conntrack.deleted;
                match &self.backend {
                    Backend::Iptables { renderer } => {
                        let c = renderer.counts();
                        record.filter_rules = c.filter;
                        record.nat_rules = c.nat;
                        record.no_local_internal = c.no_local_internal;
                        record.no_local_external = c.no_local_external;
                    }
                    Backend::Nft { renderer, .. } => {
                        let (i, e) = renderer.no_local_counts();
                        record.no_local_internal = i;
                        record.no_local_external = e;
                    }
                }
            }
            Err(e) => {
                tracing::error!(error = %e, family = %self.family, mode = self.mode.as_str(), full, "sync failed; the previous rules stay and the next sync is full");
                self.needs_full = true;
            }
        }
        self.metrics
            .record_sync(&record, self.mode == Mode::Nftables);
        result
    }

    async fn sync_inner(
        &mut self,
        store: &ServiceStore,
        changed: &BTreeSet<ServiceName>,
        full: bool,
        start: Instant,
    ) -> Result<SyncReport> {
        let node = self.config.node_name.clone();
        if full {
            self.state = store.proxy_state(self.family, &node);
        } else {
            store.refresh(&mut self.state, changed, self.family, &node);
        }
        let mut report = SyncReport {
            family: self.family,
            mode: self.mode,
            full,
            duration: Duration::ZERO,
            render: Duration::ZERO,
            apply: Duration::ZERO,
            bytes: 0,
            apply_calls: 0,
            changed_service_ports: 0,
            deleted_chains: 0,
            conntrack: CleanupReport::default(),
        };
        if self.first && self.options.cleanup_other_modes {
            let t = Instant::now();
            self.cleanup_other_mode().await;
            report.apply += t.elapsed();
        }
        let family = self.family;
        let services = (!full).then_some(changed);
        match &mut self.backend {
            Backend::Iptables { renderer } => {
                let mut existing = None;
                if full {
                    // Jump rules, canaries and sysctls only on full syncs, as kube-proxy.
                    let t = Instant::now();
                    for table in [Table::Mangle, Table::Nat, Table::Filter] {
                        self.execs
                            .iptables
                            .ensure_chain(family, table, chains::PROXY_CANARY)
                            .await?;
                    }
                    let mut ensured = BTreeSet::new();
                    for jump in renderer.jump_rules() {
                        let target = jump.args.last().cloned().unwrap_or_default();
                        if ensured.insert((jump.table, target.clone())) {
                            self.execs
                                .iptables
                                .ensure_chain(family, jump.table, &target)
                                .await?;
                        }
                        self.execs
                            .iptables
                            .ensure_rule_first(family, jump.table, jump.chain, &jump.args)
                            .await?;
                    }
                    if let Some(sysctl) = self
                        .execs
                        .sysctl
                        .as_ref()
                        .filter(|_| renderer.localhost_nodeports())
                    {
                        sysctl.set("net.ipv4.conf.all.route_localnet", "1").await?;
                    }
                    let saved = self.execs.iptables.save(family, Table::Nat).await?;
                    existing = Some(IptablesDump::parse(&saved, "iptables-save -t nat")?);
                    report.apply += t.elapsed();
                }
                let t = Instant::now();
                let upd = renderer.update(&self.state, services);
                report.changed_service_ports = upd.changed.len();
                let stale: Vec<String> = match existing.as_ref().and_then(|d| d.table("nat")) {
                    // A full sync deletes every service chain in the kernel we do not own.
                    Some(nat) => {
                        let owned = renderer.owned_chains();
                        nat.chains
                            .iter()
                            .map(|c| c.name.clone())
                            .filter(|c| is_service_chain_name(c) && !owned.contains(c))
                            .collect()
                    }
                    None => upd.removed_chains.iter().cloned().collect(),
                };
                // Partial: only the changed service ports' chains (unless the
                // large-cluster mode flipped and everything was re-rendered).
                let only = (!full && !upd.full).then_some(&upd.changed);
                let inputs =
                    renderer.restore_inputs(only, &stale, self.options.max_chains_per_call);
                report.render += t.elapsed();
                report.bytes = inputs.iter().map(String::len).sum();
                report.apply_calls = inputs.len();
                report.deleted_chains = stale.len();
                let t = Instant::now();
                for input in &inputs {
                    self.execs.iptables.restore(family, input).await?;
                }
                report.apply += t.elapsed();
            }
            Backend::Nft {
                renderer,
                applied,
                prior_kernel,
                stale,
            } => {
                let t = Instant::now();
                let changed_ports = renderer.update(&self.state, services);
                if let Some(kernel) = prior_kernel.take() {
                    renderer.assume_kernel(&kernel);
                }
                report.changed_service_ports = changed_ports.len();
                let now = Instant::now();
                let due: Vec<String> = stale
                    .iter()
                    .filter(|(name, since)| {
                        now.duration_since(**since) >= self.options.stale_chain_delay
                            && !renderer.ruleset().chains.contains_key(*name)
                    })
                    .map(|(name, _)| name.clone())
                    .collect();
                let max = self.options.max_chains_per_call;
                let scripts = if !*applied {
                    renderer.replace_scripts(max)
                } else if full {
                    renderer.full_scripts(&due, max)
                } else {
                    vec![renderer.partial_script(&due)]
                };
                report.render += t.elapsed();
                report.bytes = scripts.iter().map(String::len).sum();
                report.apply_calls = scripts.len();
                let t = Instant::now();
                for script in &scripts {
                    self.execs.nft.apply(script).await?;
                }
                report.apply += t.elapsed();
                if *applied {
                    report.deleted_chains = due.len();
                    for name in &due {
                        stale.remove(name);
                    }
                    for name in renderer.stale_chains() {
                        stale.entry(name).or_insert(now);
                    }
                } else {
                    // The table was replaced: no stale chain survives.
                    stale.clear();
                }
                stale.retain(|name, _| !renderer.ruleset().chains.contains_key(name));
                renderer.commit();
                *applied = true;
            }
        }
        self.finish(report, start).await
    }

    async fn finish(&mut self, mut report: SyncReport, start: Instant) -> Result<SyncReport> {
        if let Some(ct) = self
            .execs
            .conntrack
            .as_ref()
            .filter(|_| self.options.conntrack_cleanup)
        {
            let node_ips: Vec<IpAddr> = self.config.addresses(self.family);
            match conntrack::cleanup(ct.as_ref(), self.family, &self.state, &node_ips).await {
                Ok(r) => report.conntrack = r,
                // The rules are in; a failed cleanup is retried by the next sync's
                // reconciliation, as upstream's reconciler does.
                Err(e) => tracing::warn!(error = %e, "UDP conntrack cleanup failed"),
            }
        }
        report.duration = start.elapsed();
        Ok(report)
    }

    async fn cleanup_other_mode(&self) {
        let result = match self.mode {
            Mode::Iptables => cleanup_nftables(self.execs.nft.as_ref(), self.family)
                .await
                .map(drop),
            Mode::Nftables => cleanup_iptables(self.execs.iptables.as_ref(), self.family)
                .await
                .map(drop),
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "removing the other proxy mode's leftovers failed");
        }
    }
}

/// Remove nftables mode's table of a family, if present (what iptables mode does on
/// start).
pub async fn cleanup_nftables(nft: &dyn NftExec, family: IpFamily) -> Result<bool> {
    if !nft.table_exists(family, TABLE).await? {
        return Ok(false);
    }
    let fam = crate::nftables::family_word(family);
    nft.apply(&format!("delete table {fam} {TABLE}\n")).await?;
    Ok(true)
}

/// Remove iptables mode's rules of a family: the jump rules from the built-in chains,
/// then kube-proxy's own chains and every per-service chain, and the canaries (what
/// nftables mode does on start). kubelet's chains are left alone. Returns the number of
/// chains removed.
pub async fn cleanup_iptables(ipt: &dyn IptablesExec, family: IpFamily) -> Result<usize> {
    let mut removed = 0;
    for (table, fixed) in [
        (Table::Nat, CLEANUP_NAT),
        (Table::Filter, CLEANUP_FILTER),
        (Table::Mangle, &[][..]),
    ] {
        let saved = ipt.save(family, table).await?;
        let dump = IptablesDump::parse(&saved, &format!("iptables-save -t {}", table.as_str()))?;
        let Some(t) = dump.table(table.as_str()) else {
            continue;
        };
        let ours = |name: &str| {
            fixed.contains(&name) || is_service_chain_name(name) || name == chains::PROXY_CANARY
        };
        for chain in t.chains.iter().filter(|c| c.policy.is_some()) {
            for rule in &chain.rules {
                if rule.target().is_some_and(ours) {
                    ipt.delete_rule(family, table, &chain.name, &rule.args)
                        .await?;
                }
            }
        }
        let doomed: Vec<&str> = t
            .chains
            .iter()
            .map(|c| c.name.as_str())
            .filter(|n| ours(n))
            .collect();
        if doomed.is_empty() {
            continue;
        }
        let mut input = format!("*{}\n", table.as_str());
        for c in &doomed {
            input.push_str(&format!(":{c} - [0:0]\n"));
        }
        for c in &doomed {
            input.push_str(&format!("-X {c}\n"));
        }
        input.push_str("COMMIT\n");
        ipt.restore(family, &input).await?;
        removed += doomed.len();
    }
    Ok(removed)
}

/// An input to the engine.
#[derive(Debug, Clone)]
pub enum Event {
    /// A Service was added or changed.
    Service(ServiceSpec),
    /// A Service was deleted.
    ServiceDeleted(ServiceName),
    /// An EndpointSlice was added or changed.
    Slice(EndpointSliceSpec),
    /// An EndpointSlice was deleted.
    SliceDeleted {
        /// Its Service.
        service: ServiceName,
        /// The slice's name.
        name: String,
    },
    /// Everything replaced (a changed input file, a relist).
    Replace {
        /// All Services.
        services: Vec<ServiceSpec>,
        /// All EndpointSlices.
        slices: Vec<EndpointSliceSpec>,
    },
    /// Every Service replaced (a relist of Services only).
    ReplaceServices(Vec<ServiceSpec>),
    /// Every EndpointSlice replaced (a relist of EndpointSlices only).
    ReplaceSlices(Vec<EndpointSliceSpec>),
    /// The service CIDRs changed (ServiceCIDR objects).
    ServiceCidrs(Vec<IpNetwork>),
    /// The node's labels changed (topology): a full sync follows.
    NodeLabels(BTreeMap<String, String>),
    /// The initial lists are complete: syncing may start.
    Synced,
}

/// The store and the proxiers of both families.
pub struct SyncEngine {
    store: ServiceStore,
    proxiers: Vec<Proxier>,
    options: SyncOptions,
    metrics: Arc<Metrics>,
    health: Option<crate::health::ServiceHealthServer>,
}

impl std::fmt::Debug for SyncEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncEngine")
            .field("proxiers", &self.proxiers)
            .finish_non_exhaustive()
    }
}

impl SyncEngine {
    /// An engine with one proxier per family in `families`, all in `mode`.
    pub fn new(
        mode: Mode,
        families: &[IpFamily],
        config: ProxyConfig,
        options: SyncOptions,
        execs: Execs,
    ) -> Result<Self> {
        let metrics = Arc::new(Metrics::new());
        let proxiers = families
            .iter()
            .map(|f| {
                Proxier::new(
                    mode,
                    *f,
                    config.clone(),
                    options.clone(),
                    execs.clone(),
                    metrics.clone(),
                )
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            store: ServiceStore::new(),
            proxiers,
            options,
            metrics,
            health: None,
        })
    }

    /// Serve the `healthCheckNodePort`s of the Services after every sync (kube-proxy's
    /// service health server).
    pub fn set_health_server(&mut self, server: crate::health::ServiceHealthServer) {
        self.health = Some(server);
    }

    /// The store (apply changes here, then [`SyncEngine::sync`]).
    pub fn store_mut(&mut self) -> &mut ServiceStore {
        &mut self.store
    }

    /// The store.
    pub fn store(&self) -> &ServiceStore {
        &self.store
    }

    /// The proxiers.
    pub fn proxiers(&self) -> &[Proxier] {
        &self.proxiers
    }

    /// The metrics shared by the proxiers.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// Apply an event to the store or the configuration; returns whether a sync is
    /// needed.
    pub fn apply(&mut self, event: Event) -> Result<bool> {
        let mut counts = (0u64, 0u64);
        let changed = match event {
            Event::Service(s) => {
                counts.0 += 1;
                self.store.upsert_service(s)
            }
            Event::ServiceDeleted(n) => {
                counts.0 += 1;
                self.store.delete_service(&n)
            }
            Event::Slice(s) => {
                counts.1 += 1;
                self.store.upsert_slice(s)
            }
            Event::SliceDeleted { service, name } => {
                counts.1 += 1;
                self.store.delete_slice(&service, &name)
            }
            Event::Replace { services, slices } => {
                self.store.replace_all(services, slices);
                counts.0 += 1;
                self.store.has_changes()
            }
            Event::ReplaceServices(services) => {
                counts.0 += 1;
                self.store.replace_services(services);
                self.store.has_changes()
            }
            Event::ReplaceSlices(slices) => {
                counts.1 += 1;
                self.store.replace_slices(slices);
                self.store.has_changes()
            }
            Event::ServiceCidrs(cidrs) => {
                self.update_config(|c| c.service_cidrs = cidrs.clone())?
            }
            Event::NodeLabels(labels) => self.update_config(|c| c.node_labels = labels.clone())?,
            Event::Synced => true,
        };
        if changed {
            self.metrics.record_queued(counts.0, counts.1);
        }
        Ok(changed)
    }

    fn update_config(&mut self, f: impl Fn(&mut ProxyConfig)) -> Result<bool> {
        let mut any = false;
        for p in &mut self.proxiers {
            let mut c = p.config().clone();
            f(&mut c);
            if c != *p.config() {
                p.set_config(c)?;
                any = true;
            }
        }
        Ok(any)
    }

    /// Sync every proxier once with the changes taken from the store.
    pub async fn sync(&mut self, force_full: bool) -> Vec<Result<SyncReport>> {
        let changed = self.store.take_changes();
        let mut out = Vec::new();
        for p in &mut self.proxiers {
            out.push(p.sync(&self.store, &changed, force_full).await);
        }
        if let Some(health) = &mut self.health {
            // One server for both families: a Service's count is its larger one.
            let mut checks = BTreeMap::new();
            for p in &self.proxiers {
                for (port, c) in crate::health::health_checks(p.state(), &p.config().node_name) {
                    checks
                        .entry(port)
                        .and_modify(|old: &mut crate::health::HealthCheck| {
                            old.local_endpoints = old.local_endpoints.max(c.local_endpoints)
                        })
                        .or_insert(c);
                }
            }
            for e in health.sync(checks).await {
                tracing::error!(error = %e, "service health check server");
            }
        }
        out
    }

    /// Check every proxier's canary; returns whether all were intact.
    pub async fn check_canaries(&mut self) -> bool {
        let mut all = true;
        for p in &mut self.proxiers {
            match p.check_canary().await {
                Ok(ok) => all &= ok,
                Err(e) => {
                    tracing::warn!(error = %e, "canary check failed");
                    all = false;
                }
            }
        }
        all
    }

    /// Run until `cancel` fires or `events` closes: apply events, sync with
    /// kube-proxy's timing, and send each sync's report (or error text) to `reports`.
    pub async fn run(
        mut self,
        mut events: mpsc::Receiver<Event>,
        cancel: CancellationToken,
        reports: Option<mpsc::Sender<std::result::Result<SyncReport, String>>>,
    ) -> Self {
        let opts = self.options.clone();
        let mut initialized = false;
        let mut dirty = false;
        let mut last_sync: Option<tokio::time::Instant> = None;
        let mut next_periodic = tokio::time::Instant::now() + opts.sync_period;
        let mut retry_at: Option<tokio::time::Instant> = None;
        loop {
            let now = tokio::time::Instant::now();
            let mut wake = next_periodic;
            if dirty && initialized {
                let earliest = last_sync.map_or(now, |t| t + opts.min_sync_period);
                wake = wake.min(earliest.max(now));
            }
            if let Some(r) = retry_at {
                wake = wake.min(r);
            }
            tokio::select! {
                _ = cancel.cancelled() => break,
                ev = events.recv() => {
                    let Some(ev) = ev else { break };
                    let synced = matches!(ev, Event::Synced);
                    match self.apply(ev) {
                        Ok(changed) => dirty |= changed,
                        Err(e) => tracing::error!(error = %e, "event refused"),
                    }
                    if synced {
                        initialized = true;
                        dirty = true;
                    }
                }
                _ = tokio::time::sleep_until(wake) => {
                    let now = tokio::time::Instant::now();
                    if now >= next_periodic {
                        next_periodic = now + opts.sync_period;
                        if initialized {
                            self.check_canaries().await;
                            dirty = true;
                        }
                    }
                    if retry_at.is_some_and(|r| now >= r) {
                        retry_at = None;
                        dirty = true;
                    }
                    let allowed = last_sync.is_none_or(|t| now >= t + opts.min_sync_period);
                    if dirty && initialized && allowed {
                        dirty = false;
                        last_sync = Some(now);
                        let results = self.sync(false).await;
                        for r in results {
                            if r.is_err() {
                                retry_at = Some(tokio::time::Instant::now() + opts.sync_period);
                            }
                            if let Some(tx) = &reports {
                                let _ = tx.send(r.map_err(|e| e.to_string())).await;
                            }
                        }
                    }
                }
            }
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::{FakeIptables, FakeNft};
    use crate::model::Protocol;
    use crate::store::{SliceEndpoint, SlicePort};

    fn execs(ipt: &FakeIptables, nft: &FakeNft) -> Execs {
        Execs {
            iptables: Arc::new(ipt.clone()),
            nft: Arc::new(nft.clone()),
            conntrack: None,
            sysctl: None,
        }
    }

    /// An IPv4 engine over the fakes.
    fn engine(mode: Mode, ipt: &FakeIptables, nft: &FakeNft, options: SyncOptions) -> SyncEngine {
        SyncEngine::new(mode, &[IpFamily::V4], config(), options, execs(ipt, nft)).unwrap()
    }

    fn svc(name: &str, ip: &str) -> ServiceSpec {
        ServiceSpec::cluster_ip(ServiceName::new("ns", name), ip.parse().unwrap()).with_port(
            "p",
            Protocol::Tcp,
            80,
            None,
        )
    }

    fn slice(svc: &str, ips: &[&str]) -> EndpointSliceSpec {
        EndpointSliceSpec {
            name: format!("{svc}-1"),
            service: ServiceName::new("ns", svc),
            address_type: Some(IpFamily::V4),
            ports: vec![SlicePort {
                name: "p".into(),
                protocol: Protocol::Tcp,
                port: Some(8080),
            }],
            endpoints: ips
                .iter()
                .map(|i| SliceEndpoint::ready(i.parse().unwrap()))
                .collect(),
        }
    }

    fn config() -> ProxyConfig {
        ProxyConfig::new("n")
            .node_ip("192.168.0.2".parse().unwrap())
            .cluster_cidr("10.0.0.0/8".parse().unwrap())
    }

    #[tokio::test]
    async fn iptables_partial_sync_writes_only_the_changed_service() {
        let (ipt, nft) = (FakeIptables::new(), FakeNft::new());
        let mut e = engine(Mode::Iptables, &ipt, &nft, SyncOptions::default());
        e.apply(Event::Service(svc("a", "172.30.0.1"))).unwrap();
        e.apply(Event::Service(svc("b", "172.30.0.2"))).unwrap();
        e.apply(Event::Slice(slice("a", &["10.1.0.1"]))).unwrap();
        e.apply(Event::Slice(slice("b", &["10.1.0.2", "10.1.0.3"])))
            .unwrap();
        let r = e.sync(false).await.remove(0).unwrap();
        assert!(r.full);
        // Jump rules and canaries are in place.
        let dump = ipt.dump(IpFamily::V4);
        assert!(
            dump.table("nat")
                .unwrap()
                .chain("PREROUTING")
                .unwrap()
                .rules
                .iter()
                .any(|r| r.target() == Some("KUBE-SERVICES"))
        );
        assert!(
            dump.table("mangle")
                .unwrap()
                .chain(chains::PROXY_CANARY)
                .is_some()
        );
        // Remove one endpoint of b: only b's chains are written, its removed SEP deleted.
        e.apply(Event::Slice(slice("b", &["10.1.0.2"]))).unwrap();
        let r = e.sync(false).await.remove(0).unwrap();
        assert!(!r.full);
        assert_eq!(r.changed_service_ports, 1);
        assert_eq!(r.deleted_chains, 1);
        let last = ipt.restores().last().unwrap().clone();
        let b_chain = crate::names::IptablesChainNames::of(&crate::model::ServicePortName::new(
            "ns",
            "b",
            "p",
            Protocol::Tcp,
        ))
        .cluster;
        let a_chain = crate::names::IptablesChainNames::of(&crate::model::ServicePortName::new(
            "ns",
            "a",
            "p",
            Protocol::Tcp,
        ))
        .cluster;
        assert!(last.contains(&format!(":{b_chain} - [0:0]")));
        assert!(
            !last.contains(&format!(":{a_chain} - [0:0]")),
            "a's chain must not be rewritten:\n{last}"
        );
        assert!(
            last.contains("-A KUBE-SERVICES -m comment --comment \"ns/a:p cluster IP\""),
            "top-level chains are whole"
        );
        assert!(last.lines().any(|l| l.starts_with("-X KUBE-SEP-")));
        // The kernel (fake) state equals a full render.
        let full =
            crate::iptables::render(e.proxiers()[0].state(), &config(), IpFamily::V4).unwrap();
        let want = IptablesDump::parse(&full.restore_input(), "full").unwrap();
        let got = ipt.dump(IpFamily::V4);
        for t in ["nat", "filter"] {
            let kube = |d: &IptablesDump| {
                let mut v: Vec<(String, Vec<String>)> = d
                    .table(t)
                    .unwrap()
                    .chains
                    .iter()
                    .filter(|c| c.name.starts_with("KUBE-") && c.name != chains::PROXY_CANARY)
                    .map(|c| (c.name.clone(), c.rules.iter().map(|r| r.text()).collect()))
                    .collect();
                v.sort();
                v
            };
            assert_eq!(kube(&got), kube(&want), "table {t}");
        }
    }

    #[tokio::test]
    async fn failed_restore_keeps_rules_and_forces_full_sync() {
        let (ipt, nft) = (FakeIptables::new(), FakeNft::new());
        let mut e = engine(Mode::Iptables, &ipt, &nft, SyncOptions::default());
        e.apply(Event::Service(svc("a", "172.30.0.1"))).unwrap();
        e.apply(Event::Slice(slice("a", &["10.1.0.1"]))).unwrap();
        e.sync(false).await.remove(0).unwrap();
        let before = ipt.dump(IpFamily::V4);
        e.apply(Event::Slice(slice("a", &["10.1.0.9"]))).unwrap();
        ipt.fail_next_restore("iptables-restore: line 7 failed");
        let err = e.sync(false).await.remove(0).unwrap_err();
        assert!(err.to_string().contains("line 7 failed"), "{err}");
        assert_eq!(
            ipt.dump(IpFamily::V4),
            before,
            "a failed restore changes nothing"
        );
        assert!(e.proxiers()[0].needs_full_sync());
        let r = e.sync(false).await.remove(0).unwrap();
        assert!(r.full, "the sync after a failure is full");
        let text = ipt.dump(IpFamily::V4).to_restore();
        assert!(
            text.contains("10.1.0.9:8080") && !text.contains("10.1.0.1:8080"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn canary_loss_forces_a_full_sync() {
        let (ipt, nft) = (FakeIptables::new(), FakeNft::new());
        let mut e = engine(Mode::Iptables, &ipt, &nft, SyncOptions::default());
        e.apply(Event::Service(svc("a", "172.30.0.1"))).unwrap();
        e.sync(false).await.remove(0).unwrap();
        assert!(e.check_canaries().await);
        assert!(!e.proxiers()[0].needs_full_sync());
        ipt.delete_chain(IpFamily::V4, Table::Nat, chains::PROXY_CANARY);
        assert!(!e.check_canaries().await);
        assert!(e.proxiers()[0].needs_full_sync());
        assert!(e.sync(false).await.remove(0).unwrap().full);
        assert!(
            e.check_canaries().await,
            "the full sync recreated the canary"
        );
    }

    #[tokio::test]
    async fn nftables_partial_sync_changes_elements_and_defers_chain_deletion() {
        let (ipt, nft) = (FakeIptables::new(), FakeNft::new());
        let opts = SyncOptions {
            stale_chain_delay: Duration::ZERO,
            ..SyncOptions::default()
        };
        let mut e = engine(Mode::Nftables, &ipt, &nft, opts);
        e.apply(Event::Service(svc("a", "172.30.0.1"))).unwrap();
        e.apply(Event::Slice(slice("a", &["10.1.0.1", "10.1.0.2"])))
            .unwrap();
        let r = e.sync(false).await.remove(0).unwrap();
        assert!(r.full);
        assert!(
            nft.scripts()[0].starts_with("add table ip kube-proxy\ndelete table ip kube-proxy\n")
        );
        e.apply(Event::Slice(slice("a", &["10.1.0.1"]))).unwrap();
        let r = e.sync(false).await.remove(0).unwrap();
        assert!(!r.full);
        let s = nft.scripts().last().unwrap().clone();
        assert!(
            s.contains("flush chain ip kube-proxy endpoint-") && !s.contains("delete chain"),
            "{s}"
        );
        // The next sync deletes the chain flushed before.
        e.apply(Event::Service(svc("b", "172.30.0.2"))).unwrap();
        let r = e.sync(false).await.remove(0).unwrap();
        assert_eq!(r.deleted_chains, 1);
        let s = nft.scripts().last().unwrap().clone();
        assert!(
            s.contains("delete chain ip kube-proxy endpoint-") && s.contains("__10.1.0.2/8080"),
            "{s}"
        );
        assert!(
            s.contains("add element ip kube-proxy no-endpoint-services { 172.30.0.2 . tcp . 80"),
            "{s}"
        );
    }

    #[tokio::test]
    async fn nftables_config_change_rewrites_in_place() {
        let (ipt, nft) = (FakeIptables::new(), FakeNft::new());
        let mut e = engine(Mode::Nftables, &ipt, &nft, SyncOptions::default());
        e.apply(Event::Service(svc("a", "172.30.0.1"))).unwrap();
        e.apply(Event::Slice(slice("a", &["10.1.0.1"]))).unwrap();
        e.sync(false).await.remove(0).unwrap();
        // A node label change (topology) is a full sync against what the kernel has:
        // the table is rewritten in place, never deleted (no window without rules).
        let labels = BTreeMap::from([(crate::config::ZONE_LABEL.to_owned(), "z1".to_owned())]);
        assert!(e.apply(Event::NodeLabels(labels)).unwrap());
        let r = e.sync(false).await.remove(0).unwrap();
        assert!(r.full);
        let s = nft.scripts().last().unwrap().clone();
        assert!(!s.contains("delete table"), "{s}");
        assert!(s.contains("flush map ip kube-proxy service-ips"), "{s}");
        // A service CIDR change adds the drop rule the same way.
        e.apply(Event::ServiceCidrs(vec!["172.30.0.0/16".parse().unwrap()]))
            .unwrap();
        e.sync(false).await.remove(0).unwrap();
        let s = nft.scripts().last().unwrap().clone();
        assert!(
            !s.contains("delete table") && s.contains("ip daddr { 172.30.0.0/16 } drop"),
            "{s}"
        );
    }

    #[tokio::test]
    async fn other_modes_leftovers_are_removed_on_start() {
        let (ipt, nft) = (FakeIptables::new(), FakeNft::new());
        // An earlier iptables-mode run left its rules.
        let mut e = engine(Mode::Iptables, &ipt, &nft, SyncOptions::default());
        e.apply(Event::Service(svc("a", "172.30.0.1"))).unwrap();
        e.apply(Event::Slice(slice("a", &["10.1.0.1"]))).unwrap();
        e.sync(false).await.remove(0).unwrap();
        assert!(ipt.dump(IpFamily::V4).to_restore().contains("KUBE-SVC-"));
        // Now the node switches to nftables mode.
        let mut n = engine(Mode::Nftables, &ipt, &nft, SyncOptions::default());
        n.apply(Event::Service(svc("a", "172.30.0.1"))).unwrap();
        n.sync(false).await.remove(0).unwrap();
        let left = ipt.dump(IpFamily::V4).to_restore();
        assert!(
            !left.contains("KUBE-SVC-")
                && !left.contains("KUBE-SERVICES")
                && !left.contains("KUBE-PROXY-CANARY"),
            "{left}"
        );
        // And back to iptables: the nftables table goes.
        let mut i = engine(Mode::Iptables, &ipt, &nft, SyncOptions::default());
        i.sync(false).await.remove(0).unwrap();
        assert!(
            nft.scripts()
                .last()
                .unwrap()
                .contains("delete table ip kube-proxy")
        );
    }
}
