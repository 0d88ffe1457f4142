//! The edge: running `iptables-restore`, `iptables-save`, `iptables`, `nft`, `conntrack`
//! and `sysctl`, on the host or inside a named network namespace (`ip netns exec`),
//! behind small traits with fakes beside them.
//!
//! Errors carry the command line, the exit status, stderr and, for a failed restore,
//! the input lines around the one the tool complained about.

use std::collections::VecDeque;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use crate::iptables::Table;
use crate::iptables::dump::IptablesDump;
use crate::model::IpFamily;
use crate::{Error, Result};

/// Where commands run: the host, or a named network namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Target {
    netns: Option<String>,
}

impl Target {
    /// The host's own network namespace.
    pub fn host() -> Self {
        Self::default()
    }

    /// A named network namespace (`/run/netns/NAME`): commands run under
    /// `ip netns exec NAME`.
    pub fn netns(name: impl Into<String>) -> Self {
        Self {
            netns: Some(name.into()),
        }
    }

    /// The namespace name, if any.
    pub fn netns_name(&self) -> Option<&str> {
        self.netns.as_deref()
    }

    fn argv(&self, program: &str, args: &[&str]) -> Vec<String> {
        let mut argv = Vec::new();
        if let Some(ns) = &self.netns {
            argv.extend(["ip", "netns", "exec", ns.as_str()].map(str::to_owned));
        }
        argv.push(program.to_owned());
        argv.extend(args.iter().map(|a| (*a).to_owned()));
        argv
    }

    /// Run a program with arguments and optional stdin; the output on success.
    pub async fn run(&self, program: &str, args: &[&str], stdin: Option<&str>) -> Result<String> {
        let argv = self.argv(program, args);
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..])
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|e| Error::Command {
            argv: argv.clone(),
            status: format!("could not start: {e}"),
            stderr: String::new(),
            context: Vec::new(),
        })?;
        if let Some(input) = stdin {
            let mut pipe = child.stdin.take().expect("stdin is piped");
            // A tool that exits early closes the pipe; its stderr says why.
            let _ = pipe.write_all(input.as_bytes()).await;
            drop(pipe);
        }
        let out = child
            .wait_with_output()
            .await
            .map_err(|e| Error::io(format!("waiting for `{}`", argv.join(" ")), e))?;
        if out.status.success() {
            return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
        }
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        let context = stdin.map(|s| failing_lines(&stderr, s)).unwrap_or_default();
        Err(Error::Command {
            argv,
            status: out.status.to_string(),
            stderr,
            context,
        })
    }
}

/// The input lines around the line number a tool's error names (`line 12 failed`,
/// `line 12:`, nft's `/dev/stdin:12:5-9:`), numbered.
fn failing_lines(stderr: &str, input: &str) -> Vec<String> {
    let number = stderr
        .split(|c: char| !c.is_ascii_alphanumeric())
        .collect::<Vec<_>>()
        .windows(2)
        .find_map(|w| {
            (w[0] == "line" || w[0] == "stdin")
                .then(|| w[1].parse::<usize>().ok())
                .flatten()
        });
    let Some(n) = number else {
        return Vec::new();
    };
    let lines: Vec<&str> = input.lines().collect();
    let from = n.saturating_sub(3).max(1);
    let to = (n + 2).min(lines.len());
    (from..=to)
        .filter_map(|i| {
            lines
                .get(i - 1)
                .map(|l| format!("{i}{} {l}", if i == n { ">" } else { ":" }))
        })
        .collect()
}

/// The iptables side effects the sync engine needs.
#[async_trait]
pub trait IptablesExec: Send + Sync {
    /// `iptables-restore --noflush` (or `ip6tables-restore`) of `input`.
    async fn restore(&self, family: IpFamily, input: &str) -> Result<()>;
    /// `iptables-save -t TABLE`.
    async fn save(&self, family: IpFamily, table: Table) -> Result<String>;
    /// Make sure a chain exists (`iptables -N`, tolerating "already exists").
    async fn ensure_chain(&self, family: IpFamily, table: Table, chain: &str) -> Result<()>;
    /// Whether a chain exists.
    async fn chain_exists(&self, family: IpFamily, table: Table, chain: &str) -> Result<bool>;
    /// Make sure a rule exists in a chain (`iptables -C`, else `-I CHAIN 1`).
    async fn ensure_rule_first(
        &self,
        family: IpFamily,
        table: Table,
        chain: &str,
        args: &[String],
    ) -> Result<()>;
    /// Delete a rule if present (`iptables -D`).
    async fn delete_rule(
        &self,
        family: IpFamily,
        table: Table,
        chain: &str,
        args: &[String],
    ) -> Result<()>;
}

/// The nft side effects the sync engine needs.
#[async_trait]
pub trait NftExec: Send + Sync {
    /// `nft -f -` of a script (one transaction).
    async fn apply(&self, script: &str) -> Result<()>;
    /// `nft list chain FAMILY TABLE CHAIN`, `None` when it does not exist.
    async fn list_chain(
        &self,
        family: IpFamily,
        table: &str,
        chain: &str,
    ) -> Result<Option<String>>;
    /// Whether a table exists.
    async fn table_exists(&self, family: IpFamily, table: &str) -> Result<bool>;
}

/// Conntrack side effects: list and delete UDP flows. [`Commands`] runs the `conntrack`
/// tool (each `conntrack -D` lists the whole table again: about 16 ms per flow at 2,000
/// flows, 51 ms at 20,000); [`crate::ctnetlink::NetlinkConntrack`] speaks netlink (about
/// 50-60 µs per flow) and is what [`crate::sync::Execs::commands`] uses.
#[async_trait]
pub trait ConntrackExec: Send + Sync {
    /// The UDP flows of a family.
    async fn list_udp(&self, family: IpFamily) -> Result<Vec<crate::conntrack::Flow>>;
    /// Delete one flow by its original tuple and reply source.
    async fn delete(&self, family: IpFamily, flow: &crate::conntrack::Flow) -> Result<()>;
}

/// Setting sysctls (`net.ipv4.conf.all.route_localnet` for localhost NodePorts).
#[async_trait]
pub trait SysctlExec: Send + Sync {
    /// Set `name` (dotted) to `value`.
    async fn set(&self, name: &str, value: &str) -> Result<()>;
}

/// The real commands, on a [`Target`].
#[derive(Debug, Clone, Default)]
pub struct Commands {
    target: Target,
}

impl Commands {
    /// Commands on this target.
    pub fn new(target: Target) -> Self {
        Self { target }
    }

    /// The target.
    pub fn target(&self) -> &Target {
        &self.target
    }
}

fn iptables_bin(family: IpFamily) -> &'static str {
    match family {
        IpFamily::V4 => "iptables",
        IpFamily::V6 => "ip6tables",
    }
}

#[async_trait]
impl IptablesExec for Commands {
    async fn restore(&self, family: IpFamily, input: &str) -> Result<()> {
        let bin = format!("{}-restore", iptables_bin(family));
        self.target
            .run(&bin, &["-w", "5", "--noflush"], Some(input))
            .await
            .map(drop)
    }

    async fn save(&self, family: IpFamily, table: Table) -> Result<String> {
        let bin = format!("{}-save", iptables_bin(family));
        self.target.run(&bin, &["-t", table.as_str()], None).await
    }

    async fn ensure_chain(&self, family: IpFamily, table: Table, chain: &str) -> Result<()> {
        let args = ["-w", "5", "-t", table.as_str(), "-N", chain];
        match self.target.run(iptables_bin(family), &args, None).await {
            Err(Error::Command { stderr, .. }) if stderr.contains("already exists") => Ok(()),
            other => other.map(drop),
        }
    }

    async fn chain_exists(&self, family: IpFamily, table: Table, chain: &str) -> Result<bool> {
        let args = ["-w", "5", "-t", table.as_str(), "-S", chain, "1"];
        match self.target.run(iptables_bin(family), &args, None).await {
            Ok(_) => Ok(true),
            // iptables-legacy says "No chain/target/match by that name"; iptables-nft
            // 1.8.9 says a missing chain "is incompatible, use 'nft' tool".
            Err(Error::Command { stderr, .. })
                if stderr.contains("No chain/target/match")
                    || stderr.contains("does not exist")
                    || stderr.contains("is incompatible") =>
            {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    async fn ensure_rule_first(
        &self,
        family: IpFamily,
        table: Table,
        chain: &str,
        args: &[String],
    ) -> Result<()> {
        let mut check = vec!["-w", "5", "-t", table.as_str(), "-C", chain];
        check.extend(args.iter().map(String::as_str));
        if self
            .target
            .run(iptables_bin(family), &check, None)
            .await
            .is_ok()
        {
            return Ok(());
        }
        let mut insert = vec!["-w", "5", "-t", table.as_str(), "-I", chain, "1"];
        insert.extend(args.iter().map(String::as_str));
        self.target
            .run(iptables_bin(family), &insert, None)
            .await
            .map(drop)
    }

    async fn delete_rule(
        &self,
        family: IpFamily,
        table: Table,
        chain: &str,
        args: &[String],
    ) -> Result<()> {
        let mut del = vec!["-w", "5", "-t", table.as_str(), "-D", chain];
        del.extend(args.iter().map(String::as_str));
        match self.target.run(iptables_bin(family), &del, None).await {
            Err(Error::Command { stderr, .. })
                if stderr.contains("does a matching rule exist")
                    || stderr.contains("No chain")
                    || stderr.contains("Bad rule") =>
            {
                Ok(())
            }
            other => other.map(drop),
        }
    }
}

#[async_trait]
impl NftExec for Commands {
    async fn apply(&self, script: &str) -> Result<()> {
        self.target
            .run("nft", &["-f", "-"], Some(script))
            .await
            .map(drop)
    }

    async fn list_chain(
        &self,
        family: IpFamily,
        table: &str,
        chain: &str,
    ) -> Result<Option<String>> {
        let fam = crate::nftables::family_word(family);
        match self
            .target
            .run("nft", &["list", "chain", fam, table, chain], None)
            .await
        {
            Ok(out) => Ok(Some(out)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn table_exists(&self, family: IpFamily, table: &str) -> Result<bool> {
        let fam = crate::nftables::family_word(family);
        let out = self
            .target
            .run("nft", &["list", "tables", fam], None)
            .await?;
        Ok(out
            .lines()
            .any(|l| l.trim() == format!("table {fam} {table}")))
    }
}

#[async_trait]
impl ConntrackExec for Commands {
    async fn list_udp(&self, family: IpFamily) -> Result<Vec<crate::conntrack::Flow>> {
        let fam = match family {
            IpFamily::V4 => "ipv4",
            IpFamily::V6 => "ipv6",
        };
        // conntrack prints a summary line on stderr; the flows on stdout.
        let text = self
            .target
            .run("conntrack", &["-L", "-f", fam, "-p", "udp"], None)
            .await?;
        Ok(crate::conntrack::parse_flows(&text))
    }

    async fn delete(&self, family: IpFamily, flow: &crate::conntrack::Flow) -> Result<()> {
        let fam = match family {
            IpFamily::V4 => "ipv4",
            IpFamily::V6 => "ipv6",
        };
        let (src, dst, sport, dport, rsrc, rsport) = (
            flow.orig_src.to_string(),
            flow.orig_dst.to_string(),
            flow.orig_sport.to_string(),
            flow.orig_dport.to_string(),
            flow.reply_src.to_string(),
            flow.reply_sport.to_string(),
        );
        let args = [
            "-D",
            "-f",
            fam,
            "-p",
            "udp",
            "--orig-src",
            &src,
            "--orig-dst",
            &dst,
            "--sport",
            &sport,
            "--dport",
            &dport,
            "--reply-src",
            &rsrc,
            "--reply-port-src",
            &rsport,
        ];
        match self.target.run("conntrack", &args, None).await {
            // Already gone (expired between listing and deleting).
            Err(Error::Command { stderr, .. }) if stderr.contains("0 flow entries") => Ok(()),
            other => other.map(drop),
        }
    }
}

#[async_trait]
impl SysctlExec for Commands {
    async fn set(&self, name: &str, value: &str) -> Result<()> {
        self.target
            .run("sysctl", &["-q", "-w", &format!("{name}={value}")], None)
            .await
            .map(drop)
    }
}

/// A failure plan for fakes: fail calls number `n` (1-based, counting every call of
/// the fake), with a message.
#[derive(Debug, Clone, Default)]
pub struct FailurePlan {
    failures: VecDeque<(usize, String)>,
    calls: usize,
}

impl FailurePlan {
    /// Fail the `n`th call (1-based) with `stderr`.
    pub fn fail_call(&mut self, n: usize, stderr: impl Into<String>) {
        self.failures.push_back((n, stderr.into()));
    }

    fn next(&mut self, argv: &str) -> Result<()> {
        self.calls += 1;
        if let Some(pos) = self.failures.iter().position(|(n, _)| *n == self.calls) {
            let (_, stderr) = self.failures.remove(pos).expect("found above");
            return Err(Error::Command {
                argv: vec![argv.to_owned()],
                status: "exit status: 1".into(),
                stderr,
                context: Vec::new(),
            });
        }
        Ok(())
    }
}

/// An in-memory iptables: applies restore input (`--noflush` semantics) to dumps of
/// both families, records every call, and fails calls on demand.
#[derive(Debug, Clone, Default)]
pub struct FakeIptables {
    inner: Arc<Mutex<FakeIptablesState>>,
}

#[derive(Debug, Default)]
struct FakeIptablesState {
    tables: [IptablesDump; 2],
    restores: Vec<String>,
    failures: FailurePlan,
    restore_failures: VecDeque<String>,
}

fn family_index(family: IpFamily) -> usize {
    match family {
        IpFamily::V4 => 0,
        IpFamily::V6 => 1,
    }
}

impl FakeIptables {
    /// An empty fake (built-in chains only, implicitly).
    pub fn new() -> Self {
        Self::default()
    }

    /// Fail the `n`th call (1-based, any method) with `stderr`.
    pub fn fail_call(&self, n: usize, stderr: &str) {
        self.inner
            .lock()
            .expect("fake lock")
            .failures
            .fail_call(n, stderr);
    }

    /// Fail the next `iptables-restore` with `stderr` (the state stays as it was).
    pub fn fail_next_restore(&self, stderr: &str) {
        self.inner
            .lock()
            .expect("fake lock")
            .restore_failures
            .push_back(stderr.to_owned());
    }

    /// The current state of a family as a dump.
    pub fn dump(&self, family: IpFamily) -> IptablesDump {
        self.inner.lock().expect("fake lock").tables[family_index(family)].clone()
    }

    /// Every restore input received, in order.
    pub fn restores(&self) -> Vec<String> {
        self.inner.lock().expect("fake lock").restores.clone()
    }

    /// Remove a chain as someone flushing rules would (for canary tests).
    pub fn delete_chain(&self, family: IpFamily, table: Table, chain: &str) {
        let mut st = self.inner.lock().expect("fake lock");
        if let Some(t) = st.tables[family_index(family)].table_mut(table.as_str()) {
            t.chains.retain(|c| c.name != chain);
        }
    }

    fn with_table<R>(
        &self,
        family: IpFamily,
        table: Table,
        f: impl FnOnce(&mut crate::iptables::dump::DumpTable) -> R,
    ) -> R {
        let mut st = self.inner.lock().expect("fake lock");
        let dump = &mut st.tables[family_index(family)];
        if dump.table(table.as_str()).is_none() {
            dump.tables.push(crate::iptables::dump::DumpTable {
                name: table.as_str().to_owned(),
                ..Default::default()
            });
        }
        f(dump.table_mut(table.as_str()).expect("just added"))
    }
}

fn apply_noflush(current: &mut IptablesDump, input: &IptablesDump) {
    for t in &input.tables {
        if current.table(&t.name).is_none() {
            current.tables.push(crate::iptables::dump::DumpTable {
                name: t.name.clone(),
                ..Default::default()
            });
        }
        let cur = current.table_mut(&t.name).expect("just added");
        for c in &t.chains {
            // A declared chain is flushed and gets the input's rules; others are kept.
            match cur.chains.iter_mut().find(|x| x.name == c.name) {
                Some(existing) => existing.rules = c.rules.clone(),
                None => cur.chains.push(c.clone()),
            }
        }
        for d in &t.deleted {
            cur.chains.retain(|c| c.name != *d);
        }
    }
}

#[async_trait]
impl IptablesExec for FakeIptables {
    async fn restore(&self, family: IpFamily, input: &str) -> Result<()> {
        let mut st = self.inner.lock().expect("fake lock");
        st.failures.next("iptables-restore")?;
        if let Some(stderr) = st.restore_failures.pop_front() {
            return Err(Error::Command {
                argv: vec!["iptables-restore".into(), "--noflush".into()],
                status: "exit status: 1".into(),
                stderr,
                context: Vec::new(),
            });
        }
        let parsed = IptablesDump::parse(input, "iptables-restore input")?;
        // Every chain a rule jumps to must exist, as iptables-restore checks.
        let dump = &mut st.tables[family_index(family)];
        let mut next = dump.clone();
        apply_noflush(&mut next, &parsed);
        for t in &next.tables {
            for c in &t.chains {
                for r in &c.rules {
                    if let Some(target) = r.target() {
                        let builtin = [
                            "ACCEPT",
                            "DROP",
                            "REJECT",
                            "RETURN",
                            "DNAT",
                            "SNAT",
                            "MASQUERADE",
                            "MARK",
                            "LOG",
                        ];
                        if !builtin.contains(&target) && t.chain(target).is_none() {
                            return Err(Error::Command {
                                argv: vec!["iptables-restore".into()],
                                status: "exit status: 2".into(),
                                stderr: format!(
                                    "Couldn't load target `{target}':No such file or directory"
                                ),
                                context: Vec::new(),
                            });
                        }
                    }
                }
            }
        }
        *dump = next;
        st.restores.push(input.to_owned());
        Ok(())
    }

    async fn save(&self, family: IpFamily, table: Table) -> Result<String> {
        let mut st = self.inner.lock().expect("fake lock");
        st.failures.next("iptables-save")?;
        let dump = &st.tables[family_index(family)];
        let only = IptablesDump {
            tables: dump.table(table.as_str()).cloned().into_iter().collect(),
        };
        Ok(only.to_restore())
    }

    async fn ensure_chain(&self, family: IpFamily, table: Table, chain: &str) -> Result<()> {
        self.inner
            .lock()
            .expect("fake lock")
            .failures
            .next("iptables -N")?;
        self.with_table(family, table, |t| {
            if t.chain(chain).is_none() {
                t.chains.push(crate::iptables::dump::DumpChain {
                    name: chain.to_owned(),
                    ..Default::default()
                });
            }
        });
        Ok(())
    }

    async fn chain_exists(&self, family: IpFamily, table: Table, chain: &str) -> Result<bool> {
        self.inner
            .lock()
            .expect("fake lock")
            .failures
            .next("iptables -S")?;
        Ok(self.with_table(family, table, |t| t.chain(chain).is_some()))
    }

    async fn ensure_rule_first(
        &self,
        family: IpFamily,
        table: Table,
        chain: &str,
        args: &[String],
    ) -> Result<()> {
        self.inner
            .lock()
            .expect("fake lock")
            .failures
            .next("iptables -I")?;
        self.with_table(family, table, |t| {
            let rule = crate::iptables::dump::DumpRule {
                args: args.to_vec(),
            };
            let c = match t.chains.iter_mut().position(|c| c.name == chain) {
                Some(i) => &mut t.chains[i],
                None => {
                    t.chains.push(crate::iptables::dump::DumpChain {
                        name: chain.to_owned(),
                        policy: Some("ACCEPT".into()),
                        rules: Vec::new(),
                    });
                    t.chains.last_mut().expect("just pushed")
                }
            };
            if !c.rules.contains(&rule) {
                c.rules.insert(0, rule);
            }
        });
        Ok(())
    }

    async fn delete_rule(
        &self,
        family: IpFamily,
        table: Table,
        chain: &str,
        args: &[String],
    ) -> Result<()> {
        self.inner
            .lock()
            .expect("fake lock")
            .failures
            .next("iptables -D")?;
        self.with_table(family, table, |t| {
            if let Some(c) = t.chains.iter_mut().find(|c| c.name == chain)
                && let Some(i) = c.rules.iter().position(|r| r.args == args)
            {
                c.rules.remove(i);
            }
        });
        Ok(())
    }
}

/// An in-memory nft: records scripts, keeps whether each family's table exists, and
/// fails calls on demand. It does not interpret scripts beyond `add table` and
/// `delete table` (use a real netns for that).
#[derive(Debug, Clone, Default)]
pub struct FakeNft {
    inner: Arc<Mutex<FakeNftState>>,
}

#[derive(Debug, Default)]
struct FakeNftState {
    scripts: Vec<String>,
    tables: Vec<String>,
    failures: FailurePlan,
}

impl FakeNft {
    /// An empty fake.
    pub fn new() -> Self {
        Self::default()
    }

    /// Fail the `n`th call (1-based, any method) with `stderr`.
    pub fn fail_call(&self, n: usize, stderr: &str) {
        self.inner
            .lock()
            .expect("fake lock")
            .failures
            .fail_call(n, stderr);
    }

    /// Every script applied, in order.
    pub fn scripts(&self) -> Vec<String> {
        self.inner.lock().expect("fake lock").scripts.clone()
    }

    /// Forget a table, as `nft flush ruleset` would.
    pub fn drop_tables(&self) {
        self.inner.lock().expect("fake lock").tables.clear();
    }
}

#[async_trait]
impl NftExec for FakeNft {
    async fn apply(&self, script: &str) -> Result<()> {
        let mut st = self.inner.lock().expect("fake lock");
        st.failures.next("nft -f -")?;
        for line in script.lines() {
            let words: Vec<&str> = line.split_whitespace().collect();
            if let ["add", "table", fam, name, ..] = words.as_slice() {
                let t = format!("{fam} {name}");
                if !st.tables.contains(&t) {
                    st.tables.push(t);
                }
            } else if let ["delete", "table", fam, name] = words.as_slice() {
                let t = format!("{fam} {name}");
                st.tables.retain(|x| *x != t);
            }
        }
        st.scripts.push(script.to_owned());
        Ok(())
    }

    async fn list_chain(
        &self,
        family: IpFamily,
        table: &str,
        _chain: &str,
    ) -> Result<Option<String>> {
        let exists = self.table_exists(family, table).await?;
        Ok(exists.then(|| "masquerade".to_owned()))
    }

    async fn table_exists(&self, family: IpFamily, table: &str) -> Result<bool> {
        let mut st = self.inner.lock().expect("fake lock");
        st.failures.next("nft list tables")?;
        let t = format!("{} {table}", crate::nftables::family_word(family));
        Ok(st.tables.contains(&t))
    }
}

/// An in-memory conntrack table for tests and harnesses.
#[derive(Debug, Clone, Default)]
pub struct FakeConntrack {
    inner: Arc<Mutex<(Vec<crate::conntrack::Flow>, FailurePlan)>>,
}

impl FakeConntrack {
    /// A fake with these flows.
    pub fn with_flows(flows: Vec<crate::conntrack::Flow>) -> Self {
        Self {
            inner: Arc::new(Mutex::new((flows, FailurePlan::default()))),
        }
    }

    /// The flows left.
    pub fn flows(&self) -> Vec<crate::conntrack::Flow> {
        self.inner.lock().expect("fake lock").0.clone()
    }

    /// Fail the `n`th call (1-based) with `stderr`.
    pub fn fail_call(&self, n: usize, stderr: &str) {
        self.inner.lock().expect("fake lock").1.fail_call(n, stderr);
    }
}

#[async_trait]
impl ConntrackExec for FakeConntrack {
    async fn list_udp(&self, family: IpFamily) -> Result<Vec<crate::conntrack::Flow>> {
        let mut st = self.inner.lock().expect("fake lock");
        st.1.next("conntrack -L")?;
        Ok(st
            .0
            .iter()
            .filter(|f| family.contains(&f.orig_dst))
            .cloned()
            .collect())
    }

    async fn delete(&self, _family: IpFamily, flow: &crate::conntrack::Flow) -> Result<()> {
        let mut st = self.inner.lock().expect("fake lock");
        st.1.next("conntrack -D")?;
        st.0.retain(|f| f != flow);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failing_line_context_is_numbered() {
        let input = "*nat\n:A - [0:0]\n-A A -j B\n-A A -j C\nCOMMIT\n";
        let lines = failing_lines("iptables-restore: line 3 failed", input);
        assert_eq!(
            lines,
            [
                "1: *nat",
                "2: :A - [0:0]",
                "3> -A A -j B",
                "4: -A A -j C",
                "5: COMMIT"
            ]
        );
        let nft = failing_lines(
            "/dev/stdin:2:1-5: Error: Could not process rule",
            "a\nb\nc\n",
        );
        assert_eq!(nft, ["1: a", "2> b", "3: c"]);
        assert!(failing_lines("no number here", input).is_empty());
    }

    #[tokio::test]
    async fn missing_program_is_a_clear_error() {
        let err = Target::host()
            .run("/nonexistent/iptables-restore", &[], None)
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("/nonexistent/iptables-restore") && text.contains("could not start"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn fake_iptables_applies_noflush_and_refuses_dangling_jumps() {
        let fake = FakeIptables::new();
        fake.restore(
            IpFamily::V4,
            "*nat\n:KUBE-A - [0:0]\n:KUBE-B - [0:0]\n-A KUBE-A -j KUBE-B\nCOMMIT\n",
        )
        .await
        .unwrap();
        assert_eq!(fake.dump(IpFamily::V4).rule_count("nat"), 1);
        let err = fake
            .restore(
                IpFamily::V4,
                "*nat\n:KUBE-A - [0:0]\n-A KUBE-A -j KUBE-NOPE\nCOMMIT\n",
            )
            .await;
        assert!(err.unwrap_err().to_string().contains("KUBE-NOPE"));
        // The failed restore changed nothing.
        assert_eq!(fake.dump(IpFamily::V4).rule_count("nat"), 1);
        fake.restore(
            IpFamily::V4,
            "*nat\n:KUBE-B - [0:0]\n-X KUBE-B\n:KUBE-A - [0:0]\nCOMMIT\n",
        )
        .await
        .unwrap();
        assert!(
            fake.dump(IpFamily::V4)
                .table("nat")
                .unwrap()
                .chain("KUBE-B")
                .is_none()
        );
        fake.fail_call(4, "boom");
        assert!(
            fake.save(IpFamily::V4, Table::Nat)
                .await
                .unwrap_err()
                .to_string()
                .contains("boom")
        );
    }
}
