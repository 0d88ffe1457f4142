//! The iptables tracer: an interpreter of `iptables-save` rules for one new
//! connection.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnetwork::IpNetwork;

use super::{
    Chooser, Hook, HookEnd, HookRunner, MAX_DEPTH, Node, Packet, State, Step, Trace, TraceMode,
    Verdict, collect_paths, net_contains, parse_host_port, parse_net, parse_proto, parse_u32,
    walk_hooks,
};
use crate::iptables::dump::{DumpChain, IptablesDump};
use crate::{Error, Result};

/// Where the iptables tracer enters the rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IptablesEntry {
    /// [`Hooks`](IptablesEntry::Hooks) when any built-in chain has a rule, else
    /// [`KubeChains`](IptablesEntry::KubeChains).
    #[default]
    Auto,
    /// The built-in chains of each hook in the kernel's order (raw, mangle, nat,
    /// filter, security where they exist), with the routing decision after DNAT and
    /// the masquerade decided in nat `POSTROUTING`.
    Hooks,
    /// kube-proxy's chains directly, as upstream's test tracer does for restore input
    /// without jump rules: nat `KUBE-SERVICES` (as prerouting or output), then filter
    /// `KUBE-SERVICES`, `KUBE-EXTERNAL-SERVICES`, `KUBE-NODEPORTS`,
    /// `KUBE-PROXY-FIREWALL` (the first verdict ends the trace), then nat
    /// `KUBE-POSTROUTING` for the masquerade (or, without that chain, whether
    /// `KUBE-MARK-MASQ` was traversed).
    KubeChains,
}

/// Trace a packet through an iptables dump, entering as [`IptablesEntry::Auto`] says.
pub fn trace_iptables(dump: &IptablesDump, packet: &Packet, node: &Node) -> Result<Trace> {
    trace_iptables_with(dump, packet, node, IptablesEntry::Auto)
}

/// Trace a packet through an iptables dump, entering the rules as `entry` says.
///
/// Errors: a rule that decides the packet's way but cannot be evaluated (an unknown
/// match or target, a jump to a chain that does not exist, a test of an interface the
/// packet does not give), named by table, chain, rule number and text.
pub fn trace_iptables_with(
    dump: &IptablesDump,
    packet: &Packet,
    node: &Node,
    entry: IptablesEntry,
) -> Result<Trace> {
    let rules = Compiled::new(dump);
    let hooks = match entry {
        IptablesEntry::Auto => rules.has_builtin_rules(),
        IptablesEntry::Hooks => true,
        IptablesEntry::KubeChains => false,
    };
    let mut eng = Engine {
        rules: &rules,
        node,
    };
    let paths = if hooks {
        collect_paths(packet, |st, ch| walk_hooks(&mut eng, st, ch, packet, node))?
    } else {
        collect_paths(packet, |st, ch| eng.kube_chains(st, ch, packet))?
    };
    Ok(Trace {
        mode: if hooks {
            TraceMode::IptablesHooks
        } else {
            TraceMode::IptablesKubeChains
        },
        packet: packet.clone(),
        paths,
    })
}

const BUILTIN: [&str; 5] = ["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"];

/// The tables of each hook, in the kernel's priority order.
fn hook_tables(hook: Hook) -> (&'static str, &'static [&'static str]) {
    match hook {
        Hook::Prerouting => ("PREROUTING", &["raw", "mangle", "nat"]),
        Hook::Input => ("INPUT", &["mangle", "filter", "security", "nat"]),
        Hook::Forward => ("FORWARD", &["mangle", "filter", "security"]),
        Hook::Output => ("OUTPUT", &["raw", "mangle", "nat", "filter", "security"]),
        Hook::Postrouting => ("POSTROUTING", &["mangle", "nat"]),
    }
}

// ---------------------------------------------------------------------------------
// Rules compiled into matches and a target.

#[derive(Debug, Clone, PartialEq)]
enum Match {
    Src(bool, Vec<IpNetwork>),
    Dst(bool, Vec<IpNetwork>),
    Proto(bool, Option<u8>),
    InIf(bool, String),
    OutIf(bool, String),
    SrcPort(bool, Vec<(u16, u16)>),
    DstPort(bool, Vec<(u16, u16)>),
    AnyPort(bool, Vec<(u16, u16)>),
    AddrType {
        source: bool,
        negate: bool,
        types: Vec<String>,
    },
    Mark(bool, u32, u32),
    CtState(bool, Vec<String>),
    State(bool, Vec<String>),
    Syn(bool),
    /// `-m recent --rcheck/--update/--remove`: never matches a new connection.
    RecentCheck(String),
    /// `-m recent --set`: always matches, records the source.
    RecentSet(String),
    /// `-m statistic --mode random --probability P`.
    Random(f64),
    /// Something the tracer cannot evaluate.
    Unknown(String),
}

#[derive(Debug, Clone, PartialEq)]
enum Target {
    None,
    Accept,
    Drop,
    Reject,
    Return,
    Dnat(IpAddr, Option<u16>),
    Snat,
    Masquerade,
    /// `mark = (mark & !mask) ^ value`, the kernel's MARK target.
    Mark {
        value: u32,
        mask: u32,
    },
    Jump(String),
    Goto(String),
    Unknown(String),
}

#[derive(Debug, Clone, PartialEq)]
struct ParsedRule {
    matches: Vec<Match>,
    target: Target,
}

const KNOWN_MODULES: [&str; 12] = [
    "tcp",
    "udp",
    "sctp",
    "multiport",
    "addrtype",
    "comment",
    "mark",
    "conntrack",
    "state",
    "statistic",
    "recent",
    "nfacct",
];

const KNOWN_TARGETS: [&str; 8] = [
    "ACCEPT",
    "DROP",
    "REJECT",
    "RETURN",
    "DNAT",
    "SNAT",
    "MASQUERADE",
    "MARK",
];

fn is_generic_option(w: &str) -> bool {
    matches!(
        w,
        "-s" | "--source"
            | "--src"
            | "-d"
            | "--destination"
            | "--dst"
            | "-p"
            | "--protocol"
            | "-i"
            | "--in-interface"
            | "-o"
            | "--out-interface"
            | "-m"
            | "--match"
            | "-j"
            | "--jump"
            | "-g"
            | "--goto"
            | "-c"
            | "--set-counters"
            | "-f"
            | "--fragment"
    )
}

/// What the options of a rule's matches and target add up to while parsing.
#[derive(Default)]
struct RuleParts {
    matches: Vec<Match>,
    target: Option<Target>,
    statistic_random: bool,
    probability: Option<f64>,
    recent: Option<&'static str>,
    recent_name: String,
}

/// Parse the words of a rule (after `-A CHAIN`).
fn parse_rule(args: &[String]) -> std::result::Result<ParsedRule, String> {
    let mut parts = RuleParts::default();
    let mut target = Target::None;
    let mut target_name: Option<String> = None;
    let mut negate = false;
    // Inside an unknown module or target: skip its options.
    let mut skipping = false;
    let mut i = 0;
    let value = |i: usize| -> std::result::Result<&String, String> {
        args.get(i + 1)
            .ok_or_else(|| format!("{} needs a value", args[i]))
    };
    while i < args.len() {
        let w = args[i].as_str();
        if skipping && !is_generic_option(w) {
            i += 1;
            continue;
        }
        skipping = false;
        if w == "!" {
            negate = true;
            i += 1;
            continue;
        }
        let neg = std::mem::take(&mut negate);
        let mut consumed = 2;
        match w {
            "-s" | "--source" | "--src" => {
                parts.matches.push(Match::Src(neg, parse_nets(value(i)?)?))
            }
            "-d" | "--destination" | "--dst" => {
                parts.matches.push(Match::Dst(neg, parse_nets(value(i)?)?))
            }
            "-p" | "--protocol" => {
                let v = value(i)?;
                let p = match v.as_str() {
                    "all" | "0" => None,
                    other => Some(parse_proto(other)?),
                };
                parts.matches.push(Match::Proto(neg, p));
            }
            "-i" | "--in-interface" => parts.matches.push(Match::InIf(neg, value(i)?.clone())),
            "-o" | "--out-interface" => parts.matches.push(Match::OutIf(neg, value(i)?.clone())),
            "-c" | "--set-counters" => consumed = 3,
            "-f" | "--fragment" => {
                parts.matches.push(Match::Unknown("-f (fragments)".into()));
                consumed = 1;
            }
            "-m" | "--match" => {
                let m = value(i)?;
                if !KNOWN_MODULES.contains(&m.as_str()) {
                    parts.matches.push(Match::Unknown(format!("-m {m}")));
                    skipping = true;
                }
            }
            "-j" | "--jump" | "-g" | "--goto" => {
                let t = value(i)?.clone();
                let goto = w == "-g" || w == "--goto";
                if target_name.is_some() {
                    return Err("more than one target".into());
                }
                target = match t.as_str() {
                    _ if goto => Target::Goto(t.clone()),
                    "ACCEPT" => Target::Accept,
                    "DROP" => Target::Drop,
                    "REJECT" => Target::Reject,
                    "RETURN" => Target::Return,
                    "MASQUERADE" => Target::Masquerade,
                    "SNAT" => Target::Snat,
                    "DNAT" => Target::Dnat("0.0.0.0".parse().expect("literal"), None),
                    "MARK" => Target::Mark { value: 0, mask: 0 },
                    other if is_builtin_target_name(other) => {
                        skipping = true;
                        Target::Unknown(format!("-j {other}"))
                    }
                    _ => Target::Jump(t.clone()),
                };
                if goto
                    && t.chars().all(|c| c.is_ascii_uppercase())
                    && KNOWN_TARGETS.contains(&t.as_str())
                {
                    return Err(format!("-g needs a user chain, not {t}"));
                }
                target_name = Some(t);
            }
            opt if opt.starts_with("--") => {
                consumed = parts.option(opt, neg, args, i)?;
                if let Some(t) = parts.target.take() {
                    target = t;
                }
            }
            _ => return Err(format!("unexpected word {w:?}")),
        }
        i += consumed;
    }
    if negate {
        return Err("`!` at the end of the rule".into());
    }
    let RuleParts {
        mut matches,
        statistic_random,
        probability,
        recent,
        recent_name,
        ..
    } = parts;
    if let Some(p) = probability {
        if !statistic_random {
            return Err("--probability without --mode random".into());
        }
        matches.push(Match::Random(p));
    } else if statistic_random {
        return Err("--mode random without --probability".into());
    }
    match recent {
        Some("set") => matches.push(Match::RecentSet(recent_name)),
        Some(_) => matches.push(Match::RecentCheck(recent_name)),
        None => {}
    }
    if let Target::Dnat(ip, _) = &target
        && ip.is_unspecified()
    {
        return Err("-j DNAT without --to-destination".into());
    }
    Ok(ParsedRule { matches, target })
}

/// Upper-case names that are kernel targets, not user chains.
fn is_builtin_target_name(name: &str) -> bool {
    matches!(
        name,
        "LOG"
            | "NFLOG"
            | "ULOG"
            | "TRACE"
            | "CT"
            | "NOTRACK"
            | "CONNMARK"
            | "TPROXY"
            | "REDIRECT"
            | "NETMAP"
            | "TCPMSS"
            | "CHECKSUM"
            | "CLASSIFY"
            | "DSCP"
            | "TOS"
            | "TTL"
            | "HL"
            | "NFQUEUE"
            | "QUEUE"
            | "AUDIT"
            | "SET"
            | "SECMARK"
            | "CONNSECMARK"
            | "IDLETIMER"
            | "LED"
            | "TEE"
            | "SYNPROXY"
            | "HMARK"
            | "CLUSTERIP"
            | "MIRROR"
    )
}

impl RuleParts {
    /// Parse a `--option` of a match or of the target; returns the words consumed.
    fn option(
        &mut self,
        opt: &str,
        neg: bool,
        args: &[String],
        i: usize,
    ) -> std::result::Result<usize, String> {
        let matches = &mut self.matches;
        let value = || -> std::result::Result<&String, String> {
            args.get(i + 1)
                .ok_or_else(|| format!("{opt} needs a value"))
        };
        match opt {
            "--dport" | "--destination-port" => {
                matches.push(Match::DstPort(neg, parse_ports(value()?)?))
            }
            "--sport" | "--source-port" => {
                matches.push(Match::SrcPort(neg, parse_ports(value()?)?))
            }
            "--dports" | "--destination-ports" => {
                matches.push(Match::DstPort(neg, parse_ports(value()?)?))
            }
            "--sports" | "--source-ports" => {
                matches.push(Match::SrcPort(neg, parse_ports(value()?)?))
            }
            "--ports" => matches.push(Match::AnyPort(neg, parse_ports(value()?)?)),
            "--syn" => {
                matches.push(Match::Syn(neg));
                return Ok(1);
            }
            "--src-type" | "--dst-type" => matches.push(Match::AddrType {
                source: opt == "--src-type",
                negate: neg,
                types: value()?.split(',').map(str::to_owned).collect(),
            }),
            "--comment" | "--nfacct-name" => {
                value()?;
            }
            "--mark" => {
                let (v, m) = parse_value_mask(value()?)?;
                matches.push(Match::Mark(neg, v, m));
            }
            "--ctstate" => matches.push(Match::CtState(
                neg,
                value()?.split(',').map(str::to_owned).collect(),
            )),
            "--state" => matches.push(Match::State(
                neg,
                value()?.split(',').map(str::to_owned).collect(),
            )),
            "--mode" => match value()?.as_str() {
                "random" => self.statistic_random = true,
                other => matches.push(Match::Unknown(format!("--mode {other}"))),
            },
            "--probability" => {
                let p: f64 = value()?.parse().map_err(|_| {
                    format!("bad probability {:?}", value().unwrap_or(&String::new()))
                })?;
                if neg {
                    self.probability = Some(1.0 - p);
                } else {
                    self.probability = Some(p);
                }
            }
            "--name" => self.recent_name = value()?.clone(),
            "--set" => {
                self.recent = Some("set");
                return Ok(1);
            }
            "--rcheck" | "--update" | "--remove" => {
                self.recent = Some("check");
                return Ok(1);
            }
            "--seconds" | "--hitcount" | "--mask" => {
                value()?;
            }
            "--reap" | "--rttl" | "--rsource" | "--rdest" => return Ok(1),
            // Targets.
            "--to-destination" => {
                let (ip, port) = parse_host_port(value()?)?;
                self.target = Some(Target::Dnat(ip, port));
            }
            "--to-source" => {
                parse_host_port(value()?)?;
                self.target = Some(Target::Snat);
            }
            "--to-ports" | "--reject-with" => {
                value()?;
            }
            "--random" | "--random-fully" | "--persistent" => return Ok(1),
            "--set-xmark" => {
                let (v, m) = parse_value_mask(value()?)?;
                self.target = Some(Target::Mark { value: v, mask: m });
            }
            "--set-mark" => {
                let (v, m) = parse_value_mask(value()?)?;
                self.target = Some(Target::Mark {
                    value: v,
                    mask: m | v,
                });
            }
            "--or-mark" => {
                let v = parse_u32(value()?)?;
                self.target = Some(Target::Mark { value: v, mask: v });
            }
            "--xor-mark" => {
                let v = parse_u32(value()?)?;
                self.target = Some(Target::Mark { value: v, mask: 0 });
            }
            "--and-mark" => {
                let v = parse_u32(value()?)?;
                self.target = Some(Target::Mark { value: 0, mask: !v });
            }
            other => {
                matches.push(Match::Unknown(other.to_owned()));
                let has_value = args
                    .get(i + 1)
                    .is_some_and(|v| !v.starts_with('-') && v != "!");
                return Ok(if has_value { 2 } else { 1 });
            }
        }
        Ok(2)
    }
}

fn parse_nets(text: &str) -> std::result::Result<Vec<IpNetwork>, String> {
    text.split(',').map(parse_net).collect()
}

fn parse_ports(text: &str) -> std::result::Result<Vec<(u16, u16)>, String> {
    text.split(',')
        .map(|p| {
            let bad = || format!("bad port {p:?}");
            match p.split_once(':') {
                Some((a, b)) => {
                    let lo = if a.is_empty() {
                        0
                    } else {
                        a.parse().map_err(|_| bad())?
                    };
                    let hi = if b.is_empty() {
                        u16::MAX
                    } else {
                        b.parse().map_err(|_| bad())?
                    };
                    Ok((lo, hi))
                }
                None => {
                    let v: u16 = p.parse().map_err(|_| bad())?;
                    Ok((v, v))
                }
            }
        })
        .collect()
}

fn parse_value_mask(text: &str) -> std::result::Result<(u32, u32), String> {
    match text.split_once('/') {
        Some((v, m)) => Ok((parse_u32(v)?, parse_u32(m)?)),
        None => Ok((parse_u32(text)?, u32::MAX)),
    }
}

struct CompiledRule {
    text: String,
    parsed: std::result::Result<ParsedRule, String>,
}

struct CompiledChain<'a> {
    chain: &'a DumpChain,
    rules: Vec<CompiledRule>,
}

struct Compiled<'a> {
    tables: BTreeMap<&'a str, BTreeMap<&'a str, CompiledChain<'a>>>,
}

impl<'a> Compiled<'a> {
    fn new(dump: &'a IptablesDump) -> Self {
        let mut tables = BTreeMap::new();
        for t in &dump.tables {
            let mut chains = BTreeMap::new();
            for c in &t.chains {
                let rules = c
                    .rules
                    .iter()
                    .map(|r| CompiledRule {
                        text: r.text(),
                        parsed: parse_rule(&r.args),
                    })
                    .collect();
                chains.insert(c.name.as_str(), CompiledChain { chain: c, rules });
            }
            tables.insert(t.name.as_str(), chains);
        }
        Self { tables }
    }

    fn chain(&self, table: &str, chain: &str) -> Option<&CompiledChain<'a>> {
        self.tables.get(table)?.get(chain)
    }

    fn has_builtin_rules(&self) -> bool {
        self.tables.values().any(|chains| {
            BUILTIN
                .iter()
                .any(|b| chains.get(b).is_some_and(|c| !c.rules.is_empty()))
        })
    }
}

// ---------------------------------------------------------------------------------
// Evaluation.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// Fell off the chain or hit RETURN.
    Return,
    Accept,
    Drop,
    Reject,
}

struct Engine<'r, 'a> {
    rules: &'r Compiled<'a>,
    node: &'r Node,
}

impl HookRunner for Engine<'_, '_> {
    fn run_hook(
        &mut self,
        st: &mut State,
        ch: &mut Chooser,
        hook: Hook,
        with_nat: bool,
    ) -> Result<HookEnd> {
        let (chain, tables) = hook_tables(hook);
        for table in tables {
            if *table == "nat" && !with_nat {
                continue;
            }
            let Some(c) = self.rules.chain(table, chain) else {
                continue;
            };
            let end = self.run_chain(st, ch, table, chain, 0)?;
            let end = match end {
                End::Return => match c.chain.policy.as_deref() {
                    Some("DROP") => End::Drop,
                    _ => End::Accept,
                },
                e => e,
            };
            match end {
                End::Accept | End::Return => {}
                End::Drop => return Ok(HookEnd::Final(Verdict::Dropped)),
                End::Reject => return Ok(HookEnd::Final(Verdict::Rejected)),
            }
        }
        Ok(HookEnd::Continue)
    }
}

impl Engine<'_, '_> {
    /// Upstream's way, for restore input without jump rules.
    fn kube_chains(
        &mut self,
        st: &mut State,
        ch: &mut Chooser,
        packet: &Packet,
    ) -> Result<Verdict> {
        st.in_if = match packet.origin {
            super::Origin::Host => super::Iface::None,
            _ => super::Iface::from_option(&packet.in_interface),
        };
        st.out_if = super::Iface::from_option(&packet.out_interface);
        if self.rules.chain("nat", "KUBE-SERVICES").is_some() {
            match self.run_chain(st, ch, "nat", "KUBE-SERVICES", 0)? {
                End::Drop => return Ok(Verdict::Dropped),
                End::Reject => return Ok(Verdict::Rejected),
                End::Accept | End::Return => {}
            }
        }
        for chain in [
            "KUBE-SERVICES",
            "KUBE-EXTERNAL-SERVICES",
            "KUBE-NODEPORTS",
            "KUBE-PROXY-FIREWALL",
        ] {
            if self.rules.chain("filter", chain).is_none() {
                continue;
            }
            match self.run_chain(st, ch, "filter", chain, 0)? {
                End::Return => {}
                End::Accept => break,
                End::Drop => return Ok(Verdict::Dropped),
                End::Reject => return Ok(Verdict::Rejected),
            }
        }
        if self.rules.chain("nat", "KUBE-POSTROUTING").is_some() {
            self.run_chain(st, ch, "nat", "KUBE-POSTROUTING", 0)?;
        } else if st.traversed.iter().any(|c| c == "KUBE-MARK-MASQ") {
            st.snat = true;
        }
        Ok(Verdict::Accepted)
    }

    fn run_chain(
        &mut self,
        st: &mut State,
        ch: &mut Chooser,
        table: &str,
        chain: &str,
        depth: usize,
    ) -> Result<End> {
        let Some(c) = self.rules.chain(table, chain) else {
            return Ok(End::Return);
        };
        st.traversed.push(chain.to_owned());
        for (n, rule) in c.rules.iter().enumerate() {
            let err = |reason: String| {
                Error::parse(
                    format!("iptables {table} {chain}"),
                    n + 1,
                    rule.text.clone(),
                    reason,
                )
            };
            let parsed = rule.parsed.as_ref().map_err(|e| err(e.clone()))?;
            let Some(note) = self.matches(st, ch, parsed).map_err(&err)? else {
                continue;
            };
            let step = Step {
                table: table.to_owned(),
                chain: chain.to_owned(),
                rule: rule.text.clone(),
                note,
            };
            st.steps.push(step.clone());
            match &parsed.target {
                Target::None => {}
                Target::Accept => {
                    st.verdict_rule = Some(step);
                    return Ok(End::Accept);
                }
                Target::Drop => {
                    st.verdict_rule = Some(step);
                    return Ok(End::Drop);
                }
                Target::Reject => {
                    st.verdict_rule = Some(step);
                    return Ok(End::Reject);
                }
                Target::Return => return Ok(End::Return),
                Target::Dnat(ip, port) => {
                    st.apply_dnat(*ip, *port);
                    return Ok(End::Accept);
                }
                Target::Snat | Target::Masquerade => {
                    st.snat = true;
                    return Ok(End::Accept);
                }
                Target::Mark { value, mask } => st.mark = (st.mark & !mask) ^ value,
                Target::Jump(to) | Target::Goto(to) => {
                    if self.rules.chain(table, to).is_none() {
                        return Err(err(format!(
                            "jump to chain {to} which {table} does not have"
                        )));
                    }
                    if BUILTIN.contains(&to.as_str()) {
                        return Err(err(format!("jump to built-in chain {to}")));
                    }
                    if depth >= MAX_DEPTH {
                        return Err(err(format!(
                            "chains nest deeper than {MAX_DEPTH} (a loop?)"
                        )));
                    }
                    let end = self.run_chain(st, ch, table, to, depth + 1)?;
                    if end != End::Return || matches!(parsed.target, Target::Goto(_)) {
                        return Ok(end);
                    }
                }
                Target::Unknown(t) => return Err(err(format!("unsupported target {t}"))),
            }
        }
        Ok(End::Return)
    }

    /// Whether a rule matches: `None` if not, `Some(note)` if it does. Deterministic
    /// matches are checked first; an unknown one is an error only when all the known
    /// ones match; a random one branches last.
    fn matches(
        &self,
        st: &mut State,
        ch: &mut Chooser,
        rule: &ParsedRule,
    ) -> std::result::Result<Option<Option<String>>, String> {
        let mut unknown: Option<&str> = None;
        let mut random: Option<f64> = None;
        let mut recent_set: Option<&str> = None;
        for m in &rule.matches {
            let ok = match m {
                Match::Src(neg, nets) => nets.iter().any(|n| net_contains(n, &st.src)) != *neg,
                Match::Dst(neg, nets) => nets.iter().any(|n| net_contains(n, &st.dst)) != *neg,
                Match::Proto(neg, p) => p.is_none_or(|p| p == st.proto.number()) != *neg,
                Match::InIf(neg, name) => st.in_if.matches(name, '+', "in")? != *neg,
                Match::OutIf(neg, name) => st.out_if.matches(name, '+', "out")? != *neg,
                Match::DstPort(neg, ranges) => in_ranges(ranges, st.dport) != *neg,
                Match::SrcPort(neg, ranges) => {
                    let sport = st.sport.ok_or(
                        "the rule tests the source port, which the packet does not give (set Packet::source_port)",
                    )?;
                    in_ranges(ranges, sport) != *neg
                }
                Match::AnyPort(neg, ranges) => {
                    let s = st.sport.is_some_and(|p| in_ranges(ranges, p));
                    (s || in_ranges(ranges, st.dport)) != *neg
                }
                Match::AddrType {
                    source,
                    negate,
                    types,
                } => {
                    let ip = if *source { st.src } else { st.dst };
                    let local = self.node.is_local(&ip);
                    let mut any = false;
                    for t in types {
                        any |= match t.as_str() {
                            "LOCAL" => local,
                            "UNICAST" => !local && !ip.is_multicast() && !is_broadcast(&ip),
                            "MULTICAST" => ip.is_multicast(),
                            "BROADCAST" => is_broadcast(&ip),
                            other => return Err(format!("unsupported address type {other}")),
                        };
                    }
                    any != *negate
                }
                Match::Mark(neg, v, m) => (st.mark & m == *v) != *neg,
                Match::CtState(neg, states) | Match::State(neg, states) => {
                    let mut any = false;
                    for s in states {
                        any |= match s.as_str() {
                            "NEW" => true,
                            "DNAT" => matches!(m, Match::CtState(..)) && st.dnat.is_some(),
                            "SNAT" => matches!(m, Match::CtState(..)) && st.snat,
                            "ESTABLISHED" | "RELATED" | "INVALID" | "UNTRACKED" => false,
                            other => return Err(format!("unknown conntrack state {other}")),
                        };
                    }
                    any != *neg
                }
                // The first packet of a new TCP connection is a SYN.
                Match::Syn(neg) => (st.proto == crate::model::Protocol::Tcp) != *neg,
                Match::RecentCheck(_) => false,
                Match::RecentSet(name) => {
                    recent_set = Some(name);
                    true
                }
                Match::Random(p) => {
                    random = Some(*p);
                    true
                }
                Match::Unknown(what) => {
                    unknown.get_or_insert(what);
                    true
                }
            };
            if !ok {
                return Ok(None);
            }
        }
        if let Some(what) = unknown {
            return Err(format!("unsupported match {what}"));
        }
        if let Target::Unknown(t) = &rule.target {
            return Err(format!("unsupported target {t}"));
        }
        let mut note = None;
        if let Some(p) = random {
            if p <= 0.0 {
                return Ok(None);
            }
            if p < 1.0 {
                if ch.choose(&[p, 1.0 - p]) == 1 {
                    return Ok(None);
                }
                note = Some(format!("random: taken, p={p:.4}"));
            }
        }
        if let Some(name) = recent_set {
            let n = format!("recent {name}: source recorded");
            note = Some(match note {
                Some(prev) => format!("{prev}; {n}"),
                None => n,
            });
        }
        Ok(Some(note))
    }
}

fn in_ranges(ranges: &[(u16, u16)], port: u16) -> bool {
    ranges.iter().any(|(lo, hi)| *lo <= port && port <= *hi)
}

fn is_broadcast(ip: &IpAddr) -> bool {
    matches!(ip, IpAddr::V4(v4) if v4.is_broadcast())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Protocol;
    use crate::trace::Origin;

    fn words(s: &str) -> Vec<String> {
        crate::iptables::dump::split_words(s).unwrap()
    }

    #[test]
    fn parses_kube_proxy_and_save_forms() {
        let r = parse_rule(&words(
            "-m comment --comment \"ns4/svc4:p80 cluster IP\" -m tcp -p tcp -d 172.30.0.44 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ",
        ))
        .unwrap();
        assert_eq!(r.target, Target::Jump("KUBE-MARK-MASQ".into()));
        assert_eq!(r.matches.len(), 4);
        assert!(matches!(&r.matches[3], Match::Src(true, _)));
        let r = parse_rule(&words(
            "-p tcp -m comment --comment ns5 -m recent --set --name KUBE-SEP-X --mask 255.255.255.255 --rsource -m tcp -j DNAT --to-destination 10.180.0.3:80",
        ))
        .unwrap();
        assert_eq!(
            r.target,
            Target::Dnat("10.180.0.3".parse().unwrap(), Some(80))
        );
        assert!(r.matches.contains(&Match::RecentSet("KUBE-SEP-X".into())));
        let r = parse_rule(&words("-j MARK --set-xmark 0x4000/0x0")).unwrap();
        assert_eq!(
            r.target,
            Target::Mark {
                value: 0x4000,
                mask: 0
            }
        );
        let r = parse_rule(&words(
            "-m statistic --mode random --probability 0.50000000000 -j X",
        ))
        .unwrap();
        assert_eq!(r.matches, [Match::Random(0.5)]);
        let r = parse_rule(&words("-m set --match-set foo src,dst -j ACCEPT")).unwrap();
        assert_eq!(r.matches, [Match::Unknown("-m set".into())]);
        let r = parse_rule(&words("-j LOG --log-prefix \"x y\"")).unwrap();
        assert_eq!(r.target, Target::Unknown("-j LOG".into()));
        assert!(parse_rule(&words("-s 10.0.0.300 -j ACCEPT")).is_err());
        assert!(parse_rule(&words("-j DNAT")).is_err());
    }

    fn trace(rules: &str, packet: &Packet) -> Result<Trace> {
        let dump = IptablesDump::parse(rules, "test").unwrap();
        trace_iptables(&dump, packet, &Node::new(["192.168.0.2".parse().unwrap()]))
    }

    #[test]
    fn unknown_matches_only_fail_when_they_decide() {
        let rules = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n\
            -A FORWARD -d 1.1.1.1 -m set --match-set foo src -j DROP\n\
            -A FORWARD -d 10.0.0.9 -m set --match-set foo src -j DROP\nCOMMIT\n";
        let p = Packet::tcp(
            Origin::Pod,
            "10.0.0.2".parse().unwrap(),
            "10.0.0.3:80".parse().unwrap(),
        );
        assert_eq!(trace(rules, &p).unwrap().verdict(), Some(Verdict::Accepted));
        let p = Packet::tcp(
            Origin::Pod,
            "10.0.0.2".parse().unwrap(),
            "10.0.0.9:80".parse().unwrap(),
        );
        let e = trace(rules, &p).unwrap_err().to_string();
        assert!(
            e.contains("iptables filter FORWARD:2") && e.contains("-m set"),
            "{e}"
        );
    }

    #[test]
    fn marks_interfaces_and_policies() {
        let rules = "*mangle\n:PREROUTING ACCEPT [0:0]\n\
            -A PREROUTING -i eth+ -j MARK --set-xmark 0x1/0xff\nCOMMIT\n\
            *filter\n:FORWARD DROP [0:0]\n\
            -A FORWARD -m mark --mark 0x1/0xff -o cbr0 -j ACCEPT\nCOMMIT\n";
        let p = Packet::tcp(
            Origin::External,
            "203.0.113.2".parse().unwrap(),
            "10.0.0.3:80".parse().unwrap(),
        )
        .with_in_interface("eth0")
        .with_out_interface("cbr0");
        let t = trace(rules, &p).unwrap();
        assert_eq!(t.verdict(), Some(Verdict::Accepted));
        assert_eq!(t.paths[0].steps.len(), 2);
        let t = trace(rules, &p.clone().with_in_interface("ens3")).unwrap();
        assert_eq!(t.verdict(), Some(Verdict::Dropped));
        assert!(
            trace(rules, &p.with_out_interface("x").with_in_interface("eth0"))
                .unwrap()
                .verdict()
                == Some(Verdict::Dropped)
        );
        let mut no_out = Packet::tcp(
            Origin::External,
            "203.0.113.2".parse().unwrap(),
            "10.0.0.3:80".parse().unwrap(),
        )
        .with_in_interface("eth0");
        no_out.protocol = Protocol::Tcp;
        let e = trace(rules, &no_out).unwrap_err().to_string();
        assert!(e.contains("out interface"), "{e}");
    }

    #[test]
    fn statistic_branches_with_probabilities() {
        let rules = "*nat\n:PREROUTING ACCEPT [0:0]\n:S - [0:0]\n:A - [0:0]\n:B - [0:0]\n:C - [0:0]\n\
            -A PREROUTING -j S\n\
            -A S -m statistic --mode random --probability 0.3333333333 -j A\n\
            -A S -m statistic --mode random --probability 0.5000000000 -j B\n\
            -A S -j C\n\
            -A A -p tcp -j DNAT --to-destination 10.0.0.1:80\n\
            -A B -p tcp -j DNAT --to-destination 10.0.0.2:80\n\
            -A C -p tcp -j DNAT --to-destination 10.0.0.3\nCOMMIT\n";
        let p = Packet::tcp(
            Origin::Pod,
            "10.0.0.9".parse().unwrap(),
            "172.30.0.1:8080".parse().unwrap(),
        );
        let t = trace(rules, &p).unwrap();
        assert_eq!(
            t.upstream_output(),
            "10.0.0.1:80, 10.0.0.2:80, 10.0.0.3:8080"
        );
        for (_, prob) in t.endpoint_probabilities() {
            assert!((prob - 1.0 / 3.0).abs() < 1e-6);
        }
    }
}
