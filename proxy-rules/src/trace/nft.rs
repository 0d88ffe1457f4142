//! The nftables tracer: one table as chains, rules and sets, read from the dump and
//! `nft -f` scripts our renderer writes (or from the kernel's JSON listing, see
//! `nft_json.rs`), and an interpreter of the rule expressions kube-proxy uses.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use super::{
    Chooser, Hook, HookEnd, HookRunner, Iface, MAX_DEPTH, Node, Packet, State, Step, Trace,
    TraceMode, Verdict, collect_paths, net_contains, parse_host_port, parse_net, parse_proto,
    parse_u32, walk_hooks,
};
use crate::model::IpFamily;
use crate::nftables::NftRuleset;
use crate::{Error, Result};

/// One nftables table, as the tracer reads it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NftTable {
    /// The family: `ip`, `ip6` or `inet`.
    pub family: String,
    /// The table's name (`kube-proxy`).
    pub name: String,
    /// Chains by name.
    pub chains: BTreeMap<String, NftTableChain>,
    /// Sets and maps by name.
    pub sets: BTreeMap<String, NftTableSet>,
}

/// A chain of an [`NftTable`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NftTableChain {
    /// The hook of a base chain; `None` for a regular chain.
    pub base: Option<NftBaseChain>,
    /// The rules, in order.
    pub rules: Vec<NftTableRule>,
}

/// A base chain's `{ type … hook … priority … ; policy … ; }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NftBaseChain {
    /// `filter`, `nat` or `route`.
    pub chain_type: String,
    /// `prerouting`, `input`, `forward`, `output` or `postrouting`.
    pub hook: String,
    /// The numeric priority (named priorities resolved: `dstnat` is -100, `filter` 0,
    /// `srcnat` 100, …).
    pub priority: i32,
    /// The policy: [`Verdict::Accepted`] (the default) or [`Verdict::Dropped`].
    pub policy: Verdict,
}

/// A rule of an [`NftTable`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NftTableRule {
    /// The rule's statements as nft syntax (from the script as written; synthesized in
    /// kube-proxy's style for rules read from JSON).
    pub text: String,
    /// The rule's comment.
    pub comment: Option<String>,
    /// The parsed statements; one the tracer does not know ends the list as
    /// [`Stmt::Unknown`], an error only when a packet gets that far.
    stmts: Vec<Stmt>,
}

impl NftTableRule {
    /// A rule from nft syntax (what follows `add rule FAMILY TABLE CHAIN`, without the
    /// comment).
    pub fn parse(text: &str, comment: Option<String>) -> Self {
        let stmts = match tokenize(text) {
            Ok(toks) => parse_stmts(&toks),
            Err(reason) => vec![Stmt::Unknown(reason, text.trim().to_owned())],
        };
        Self {
            text: text.trim().to_owned(),
            comment,
            stmts,
        }
    }

    pub(super) fn from_stmts(stmts: Vec<Stmt>, comment: Option<String>) -> Self {
        let text = stmts
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(" ");
        Self {
            text,
            comment,
            stmts,
        }
    }

    /// The rule as `add rule` prints it: the text, then the comment.
    pub fn full_text(&self) -> String {
        match &self.comment {
            Some(c) => format!(
                "{} comment {}",
                self.text,
                crate::nftables::quote_comment(c)
            ),
            None => self.text.clone(),
        }
    }
}

/// A set or a map of an [`NftTable`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NftTableSet {
    /// A map (elements have values) rather than a set.
    pub is_map: bool,
    /// A set with the `dynamic` or `timeout` flag: memory that packets fill with
    /// `update`/`add` (kube-proxy's `affinity-…` sets). The tracer looks nothing up in
    /// it: a new connection has no affinity yet, whatever entries a live table holds.
    pub dynamic: bool,
    /// The elements, in the order they were added.
    pub elements: Vec<NftElement>,
}

/// An element of a set or map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NftElement {
    /// The key, one part per concatenated field (`["172.30.0.41", "tcp", "80"]`).
    pub key: Vec<String>,
    /// The value of a map element (a verdict such as `goto service-…`).
    pub value: Option<String>,
    /// The element's comment.
    pub comment: Option<String>,
}

impl NftTable {
    /// Parse the table from our renderer's output: knftables' dump format
    /// ([`NftRuleset::dump`]) or an `nft -f` transaction (`add`/`create`/`insert`,
    /// `flush`, `delete`/`destroy` of tables, chains, sets, maps, rules and elements,
    /// applied in order). Every line must be about the same table. `source` names the
    /// input in errors.
    pub fn parse(text: &str, source: &str) -> Result<Self> {
        let mut t = NftTable::default();
        let mut seen = false;
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let err = |reason: String| Error::parse(source, i + 1, raw, reason);
            let toks = tokenize(line).map_err(&err)?;
            t.apply_line(line, &toks, &mut seen).map_err(&err)?;
        }
        if !seen {
            return Err(Error::parse(source, 0, "", "no table in the input"));
        }
        Ok(t)
    }

    /// The table a rendered ruleset describes (through its dump).
    pub fn from_ruleset(ruleset: &NftRuleset) -> Result<Self> {
        Self::parse(&ruleset.dump(), "rendered nftables ruleset")
    }

    /// Parse the kernel's JSON listing of one table (`nft -j list table ip
    /// kube-proxy`). Rules whose expressions the tracer does not know are kept, and are
    /// an error only when a packet reaches them.
    pub fn from_json(text: &str, source: &str) -> Result<Self> {
        super::nft_json::table_from_json(text, source)
    }

    /// The IP family the table sees, if it is a single-family table.
    pub fn ip_family(&self) -> Option<IpFamily> {
        match self.family.as_str() {
            "ip" => Some(IpFamily::V4),
            "ip6" => Some(IpFamily::V6),
            _ => None,
        }
    }

    pub(super) fn set_table(
        &mut self,
        family: &str,
        name: &str,
        seen: &mut bool,
    ) -> std::result::Result<(), String> {
        if !matches!(family, "ip" | "ip6" | "inet") {
            return Err(format!(
                "unsupported table family {family:?} (ip, ip6 or inet)"
            ));
        }
        if *seen {
            if self.family != family || self.name != name {
                return Err(format!(
                    "the input is about table {family} {name} besides {} {}: trace one table at a time",
                    self.family, self.name
                ));
            }
        } else {
            self.family = family.to_owned();
            self.name = name.to_owned();
            *seen = true;
        }
        Ok(())
    }

    fn apply_line(
        &mut self,
        line: &str,
        toks: &[Tok],
        seen: &mut bool,
    ) -> std::result::Result<(), String> {
        let w = |i: usize| toks.get(i).map(|t| t.text.as_str());
        let verb = w(0).unwrap_or("");
        if verb == "flush" && w(1) == Some("ruleset") {
            self.chains.clear();
            self.sets.clear();
            return Ok(());
        }
        if matches!(verb, "table" | "list") {
            return Err(
                "nft's block listing is not read here; use `nft -j list table …` (NftTable::from_json)"
                    .into(),
            );
        }
        let obj = w(1).ok_or("missing object type")?;
        let family = w(2).ok_or("missing family")?;
        let table = w(3).ok_or("missing table name")?;
        self.set_table(family, table, seen)?;
        let name = w(4);
        let need_name = || name.ok_or_else(|| format!("{verb} {obj} without a name"));
        let create = matches!(verb, "add" | "create");
        let remove = matches!(verb, "delete" | "destroy");
        match (obj, verb) {
            ("table", _) if create => {}
            ("table", _) if remove => {
                self.chains.clear();
                self.sets.clear();
            }
            ("table", "flush") => {
                for c in self.chains.values_mut() {
                    c.rules.clear();
                }
            }
            ("chain", _) if create => {
                let name = need_name()?;
                let base = parse_chain_spec(&toks[5..])?;
                let c = self.chains.entry(name.to_owned()).or_default();
                if base.is_some() {
                    c.base = base;
                }
            }
            ("chain", _) if remove => {
                self.chains.remove(need_name()?);
            }
            ("chain", "flush") => {
                if let Some(c) = self.chains.get_mut(need_name()?) {
                    c.rules.clear();
                }
            }
            ("set" | "map", _) if create => {
                let name = need_name()?;
                let s = self.sets.entry(name.to_owned()).or_default();
                s.is_map = obj == "map";
                s.dynamic |= set_spec_is_dynamic(&toks[5..]);
                s.elements.extend(parse_set_spec_elements(&toks[5..])?);
            }
            ("set" | "map", _) if remove => {
                self.sets.remove(need_name()?);
            }
            ("set" | "map", "flush") => {
                if let Some(s) = self.sets.get_mut(need_name()?) {
                    s.elements.clear();
                }
            }
            ("rule", "add" | "create" | "insert") => {
                let chain = need_name()?;
                if matches!(w(5), Some("position" | "handle" | "index")) {
                    return Err("rule positions and handles are not supported".into());
                }
                let body = &toks[5..];
                let (text_end, comment) = match body {
                    [.., c, q] if c.text == "comment" && q.quoted => {
                        (c.start, Some(q.text.clone()))
                    }
                    _ => (line.len(), None),
                };
                let start = toks[4].end;
                let text = line.get(start..text_end).unwrap_or("").trim();
                let rule = NftTableRule::parse(text, comment);
                let c = self
                    .chains
                    .get_mut(chain)
                    .ok_or_else(|| format!("rule for chain {chain}, which was not added"))?;
                if verb == "insert" {
                    c.rules.insert(0, rule);
                } else {
                    c.rules.push(rule);
                }
            }
            ("rule", _) => return Err(format!("`{verb} rule` is not supported")),
            ("element", _) if create || remove => {
                let set = need_name()?;
                let elements = parse_braced_elements(&toks[5..])?;
                let s = self
                    .sets
                    .get_mut(set)
                    .ok_or_else(|| format!("elements for {set}, which was not added"))?;
                if create {
                    for e in elements {
                        if !s.elements.iter().any(|x| x.key == e.key) {
                            s.elements.push(e);
                        }
                    }
                } else {
                    s.elements
                        .retain(|x| !elements.iter().any(|e| e.key == x.key));
                }
            }
            _ => return Err(format!("unsupported command `{verb} {obj}`")),
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------
// Tokens.

/// A word of an nft line, with its byte range in the line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Tok {
    pub(super) text: String,
    pub(super) quoted: bool,
    start: usize,
    end: usize,
}

/// Split a line into words: whitespace separates, double quotes group (with `\`
/// escapes), and `{`, `}`, `,`, `;` stand alone at the edges of a word.
fn tokenize(line: &str) -> std::result::Result<Vec<Tok>, String> {
    let mut out = Vec::new();
    let mut chars = line.char_indices().peekable();
    while let Some(&(i, c)) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        if c == '"' {
            chars.next();
            let mut s = String::new();
            let mut end = None;
            while let Some((j, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            s.push(n);
                        }
                    }
                    '"' => {
                        end = Some(j + 1);
                        break;
                    }
                    c => s.push(c),
                }
            }
            let end = end.ok_or("unterminated quote")?;
            out.push(Tok {
                text: s,
                quoted: true,
                start: i,
                end,
            });
            continue;
        }
        let mut end = i;
        while let Some(&(j, c)) = chars.peek() {
            if c.is_whitespace() || c == '"' {
                break;
            }
            end = j + c.len_utf8();
            chars.next();
        }
        let word = &line[i..end];
        // Peel braces and separators off the edges.
        let mut start = i;
        let mut w = word;
        while let Some(rest) = w.strip_prefix('{') {
            out.push(Tok {
                text: "{".into(),
                quoted: false,
                start,
                end: start + 1,
            });
            start += 1;
            w = rest;
        }
        let mut tail = Vec::new();
        while let Some(last) = w.chars().last().filter(|c| matches!(c, '}' | ',' | ';')) {
            w = &w[..w.len() - 1];
            let at = start + w.len();
            tail.push(Tok {
                text: last.to_string(),
                quoted: false,
                start: at,
                end: at + 1,
            });
        }
        if !w.is_empty() {
            out.push(Tok {
                text: w.to_owned(),
                quoted: false,
                start,
                end: start + w.len(),
            });
        }
        out.extend(tail.into_iter().rev());
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------
// Chain and set specs, elements.

fn parse_chain_spec(toks: &[Tok]) -> std::result::Result<Option<NftBaseChain>, String> {
    if toks.is_empty() {
        return Ok(None);
    }
    if toks[0].text != "{" || toks.last().map(|t| t.text.as_str()) != Some("}") {
        return Err("expected `{ … }` after the chain name".into());
    }
    let inner = &toks[1..toks.len() - 1];
    let mut chain_type = None;
    let mut hook = None;
    let mut priority = None;
    let mut policy = Verdict::Accepted;
    for part in inner.split(|t| t.text == ";" && !t.quoted) {
        let words: Vec<&str> = part.iter().map(|t| t.text.as_str()).collect();
        match words.as_slice() {
            [] => {}
            ["type", t, "hook", h, rest @ ..] => {
                chain_type = Some((*t).to_owned());
                hook = Some((*h).to_owned());
                let rest: Vec<&str> = match rest {
                    ["device", _, r @ ..] => r.to_vec(),
                    r => r.to_vec(),
                };
                match rest.as_slice() {
                    ["priority", p @ ..] => priority = Some(parse_priority(&p.join(" "))?),
                    [] => {}
                    _ => return Err(format!("unexpected {:?} in the chain spec", rest.join(" "))),
                }
            }
            ["priority", p @ ..] => priority = Some(parse_priority(&p.join(" "))?),
            ["policy", "accept"] => policy = Verdict::Accepted,
            ["policy", "drop"] => policy = Verdict::Dropped,
            ["comment", _] => {}
            other => {
                return Err(format!(
                    "unexpected {:?} in the chain spec",
                    other.join(" ")
                ));
            }
        }
    }
    match (chain_type, hook) {
        (Some(chain_type), Some(hook)) => Ok(Some(NftBaseChain {
            chain_type,
            hook,
            priority: priority.unwrap_or(0),
            policy,
        })),
        _ => Ok(None),
    }
}

/// A priority: a number, or a standard name with an optional `+ N` / `- N`.
pub(super) fn parse_priority(text: &str) -> std::result::Result<i32, String> {
    let t: String = text.split_whitespace().collect();
    if let Ok(n) = t.parse::<i32>() {
        return Ok(n);
    }
    let split = t.find(['+', '-']).unwrap_or(t.len());
    let (name, offset) = t.split_at(split);
    let base = match name {
        "raw" => -300,
        "mangle" => -150,
        "dstnat" => -100,
        "filter" => 0,
        "security" => 50,
        "srcnat" => 100,
        _ => return Err(format!("unknown priority {text:?}")),
    };
    let off = if offset.is_empty() {
        0
    } else {
        offset
            .parse::<i32>()
            .map_err(|_| format!("bad priority {text:?}"))?
    };
    Ok(base + off)
}

/// Whether a set spec has the `dynamic` or `timeout` flag or a default timeout.
fn set_spec_is_dynamic(toks: &[Tok]) -> bool {
    toks.windows(2).any(|w| {
        !w[0].quoted
            && ((w[0].text == "flags"
                && w[1]
                    .text
                    .split(',')
                    .any(|f| f == "dynamic" || f == "timeout"))
                || w[0].text == "timeout")
    })
}

fn parse_set_spec_elements(toks: &[Tok]) -> std::result::Result<Vec<NftElement>, String> {
    // `{ type … ; flags … ; elements = { … } ; }`: only the elements matter.
    let Some(pos) = toks.iter().position(|t| t.text == "elements" && !t.quoted) else {
        return Ok(Vec::new());
    };
    let rest = &toks[pos + 1..];
    let rest = match rest.first() {
        Some(t) if t.text == "=" => &rest[1..],
        _ => rest,
    };
    let close = matching_brace(rest)?;
    parse_braced_elements(&rest[..=close])
}

/// The index of the `}` closing the `{` at `toks[0]`.
fn matching_brace(toks: &[Tok]) -> std::result::Result<usize, String> {
    if toks.first().map(|t| t.text.as_str()) != Some("{") {
        return Err("expected `{`".into());
    }
    let mut depth = 0;
    for (i, t) in toks.iter().enumerate() {
        if t.quoted {
            continue;
        }
        match t.text.as_str() {
            "{" => depth += 1,
            "}" => {
                depth -= 1;
                if depth == 0 {
                    return Ok(i);
                }
            }
            _ => {}
        }
    }
    Err("unbalanced `{`".into())
}

/// Elements written `{ KEY [comment "…"] [: VALUE] , … }`.
fn parse_braced_elements(toks: &[Tok]) -> std::result::Result<Vec<NftElement>, String> {
    let close = matching_brace(toks)?;
    if close + 1 != toks.len() {
        return Err("unexpected words after the elements".into());
    }
    let inner = &toks[1..close];
    let mut out = Vec::new();
    for part in inner.split(|t| t.text == "," && !t.quoted) {
        if part.is_empty() {
            continue;
        }
        out.push(parse_element(part)?);
    }
    Ok(out)
}

fn parse_element(toks: &[Tok]) -> std::result::Result<NftElement, String> {
    let mut key = Vec::new();
    let mut comment = None;
    let mut value = None;
    let mut i = 0;
    let mut expect_part = true;
    while i < toks.len() {
        let t = &toks[i];
        match t.text.as_str() {
            _ if t.quoted => return Err(format!("unexpected string {:?} in an element", t.text)),
            "." if !expect_part => expect_part = true,
            "comment" => {
                let c = toks
                    .get(i + 1)
                    .filter(|t| t.quoted)
                    .ok_or("comment needs a string")?;
                comment = Some(c.text.clone());
                i += 1;
            }
            "timeout" | "expires" => i += 1,
            ":" => {
                let v: Vec<&str> = toks[i + 1..].iter().map(|t| t.text.as_str()).collect();
                if v.is_empty() {
                    return Err("`:` without a value".into());
                }
                value = Some(v.join(" "));
                break;
            }
            w if expect_part => {
                key.push(w.to_owned());
                expect_part = false;
            }
            w => return Err(format!("unexpected {w:?} in an element")),
        }
        i += 1;
    }
    if key.is_empty() || expect_part {
        return Err("element without a complete key".into());
    }
    Ok(NftElement {
        key,
        value,
        comment,
    })
}

// ---------------------------------------------------------------------------------
// Statements.

/// What an expression reads from the packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Key {
    /// `ip saddr` / `ip6 saddr`.
    Saddr { v6: bool },
    /// `ip daddr` / `ip6 daddr`.
    Daddr { v6: bool },
    /// `meta l4proto`, `ip protocol`, `ip6 nexthdr`.
    L4proto,
    /// `th dport`, `tcp dport` (`proto` is the protocol the header implies).
    Port { dst: bool, proto: Option<u8> },
    /// `meta mark` / `mark`.
    Mark,
    /// `mark and MASK`.
    MarkAnd(u32),
    /// `iifname` / `oifname`.
    Ifname { input: bool },
    /// `fib saddr type` / `fib daddr type`.
    FibType { source: bool },
    /// `ct state`.
    CtState,
    /// `ct status`.
    CtStatus,
    /// `numgen random mod N [offset M]`.
    Numgen { modulus: u32, offset: u32 },
    /// `a . b . c`.
    Concat(Vec<Key>),
}

/// A set reference or literal values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Rhs {
    /// `@name`.
    Set(String),
    /// A value or an anonymous set; each value has one part per concatenated field.
    Values {
        values: Vec<Vec<String>>,
        braced: bool,
    },
}

/// Where a verdict map lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum MapRef {
    Named(String),
    Inline(Vec<NftElement>),
}

/// A verdict statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum VerdictStmt {
    Accept,
    Drop,
    Return,
    Continue,
    Jump(String),
    Goto(String),
}

/// How `mark set` changes the mark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum MarkOp {
    Or,
    Xor,
    And,
    Set,
}

/// One statement of a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Stmt {
    Match {
        key: Key,
        negate: bool,
        explicit_eq: bool,
        rhs: Rhs,
    },
    Vmap {
        key: Key,
        map: MapRef,
    },
    Verdict(VerdictStmt),
    Reject(Option<String>),
    SetMark(MarkOp, u32),
    Masquerade(Vec<String>),
    Snat(String),
    Dnat(IpAddr, Option<u16>),
    SetUpdate {
        op: String,
        set: String,
        key: Key,
    },
    Counter,
    /// Something the tracer does not know: why, and the text from there on.
    Unknown(String, String),
}

impl Stmt {
    /// Whether the statement ends the rule's evaluation.
    fn is_terminal(&self) -> bool {
        matches!(
            self,
            Stmt::Verdict(_)
                | Stmt::Reject(_)
                | Stmt::Masquerade(_)
                | Stmt::Snat(_)
                | Stmt::Dnat(..)
        )
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ip = |v6: bool| if v6 { "ip6" } else { "ip" };
        match self {
            Key::Saddr { v6 } => write!(f, "{} saddr", ip(*v6)),
            Key::Daddr { v6 } => write!(f, "{} daddr", ip(*v6)),
            Key::L4proto => f.write_str("meta l4proto"),
            Key::Port { dst, proto } => {
                let p = match proto {
                    None => "th",
                    Some(6) => "tcp",
                    Some(17) => "udp",
                    Some(132) => "sctp",
                    Some(_) => "th",
                };
                write!(f, "{p} {}", if *dst { "dport" } else { "sport" })
            }
            Key::Mark => f.write_str("mark"),
            Key::MarkAnd(m) => write!(f, "mark and {m:#x}"),
            Key::Ifname { input } => f.write_str(if *input { "iifname" } else { "oifname" }),
            Key::FibType { source } => {
                write!(f, "fib {} type", if *source { "saddr" } else { "daddr" })
            }
            Key::CtState => f.write_str("ct state"),
            Key::CtStatus => f.write_str("ct status"),
            Key::Numgen { modulus, offset } => {
                write!(f, "numgen random mod {modulus}")?;
                if *offset != 0 {
                    write!(f, " offset {offset}")?;
                }
                Ok(())
            }
            Key::Concat(parts) => {
                let s: Vec<String> = parts.iter().map(ToString::to_string).collect();
                f.write_str(&s.join(" . "))
            }
        }
    }
}

fn write_elements(f: &mut fmt::Formatter<'_>, els: &[NftElement]) -> fmt::Result {
    let s: Vec<String> = els
        .iter()
        .map(|e| {
            let mut t = e.key.join(" . ");
            if let Some(v) = &e.value {
                t.push_str(" : ");
                t.push_str(v);
            }
            t
        })
        .collect();
    write!(f, "{{ {} }}", s.join(" , "))
}

fn quote_if_needed(key: &Key, v: &str) -> String {
    if matches!(key, Key::Ifname { .. }) {
        crate::nftables::quote_comment(v)
    } else {
        v.to_owned()
    }
}

impl fmt::Display for Stmt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stmt::Match {
                key,
                negate,
                explicit_eq,
                rhs,
            } => {
                write!(f, "{key} ")?;
                if *negate {
                    f.write_str("!= ")?;
                } else if *explicit_eq {
                    f.write_str("== ")?;
                }
                match rhs {
                    Rhs::Set(s) => write!(f, "@{s}"),
                    Rhs::Values { values, braced } => {
                        let vs: Vec<String> = values
                            .iter()
                            .map(|v| {
                                v.iter()
                                    .map(|p| quote_if_needed(key, p))
                                    .collect::<Vec<_>>()
                                    .join(" . ")
                            })
                            .collect();
                        if *braced || vs.len() != 1 {
                            write!(f, "{{ {} }}", vs.join(" , "))
                        } else {
                            f.write_str(&vs[0])
                        }
                    }
                }
            }
            Stmt::Vmap { key, map } => {
                write!(f, "{key} vmap ")?;
                match map {
                    MapRef::Named(n) => write!(f, "@{n}"),
                    MapRef::Inline(els) => write_elements(f, els),
                }
            }
            Stmt::Verdict(v) => match v {
                VerdictStmt::Accept => f.write_str("accept"),
                VerdictStmt::Drop => f.write_str("drop"),
                VerdictStmt::Return => f.write_str("return"),
                VerdictStmt::Continue => f.write_str("continue"),
                VerdictStmt::Jump(c) => write!(f, "jump {c}"),
                VerdictStmt::Goto(c) => write!(f, "goto {c}"),
            },
            Stmt::Reject(None) => f.write_str("reject"),
            Stmt::Reject(Some(w)) => write!(f, "reject with {w}"),
            Stmt::SetMark(op, v) => match op {
                MarkOp::Or => write!(f, "mark set mark or {v:#x}"),
                MarkOp::Xor => write!(f, "mark set mark xor {v:#x}"),
                MarkOp::And => write!(f, "mark set mark and {v:#x}"),
                MarkOp::Set => write!(f, "mark set {v:#x}"),
            },
            Stmt::Masquerade(flags) if flags.is_empty() => f.write_str("masquerade"),
            Stmt::Masquerade(flags) => write!(f, "masquerade {}", flags.join(",")),
            Stmt::Snat(to) => write!(f, "snat to {to}"),
            Stmt::Dnat(ip, port) => match (ip, port) {
                (IpAddr::V6(v6), Some(p)) => write!(f, "dnat to [{v6}]:{p}"),
                (ip, Some(p)) => write!(f, "dnat to {ip}:{p}"),
                (ip, None) => write!(f, "dnat to {ip}"),
            },
            Stmt::SetUpdate { op, set, key } => write!(f, "{op} @{set} {{ {key} }}"),
            Stmt::Counter => f.write_str("counter"),
            Stmt::Unknown(_, text) => f.write_str(text),
        }
    }
}

/// A cursor over a rule's words.
struct Cursor<'t> {
    toks: &'t [Tok],
    pos: usize,
}

impl<'t> Cursor<'t> {
    fn peek(&self) -> Option<&'t str> {
        self.toks.get(self.pos).map(|t| t.text.as_str())
    }

    fn peek_at(&self, n: usize) -> Option<&'t str> {
        self.toks.get(self.pos + n).map(|t| t.text.as_str())
    }

    fn next(&mut self) -> Option<&'t Tok> {
        let t = self.toks.get(self.pos);
        self.pos += usize::from(t.is_some());
        t
    }

    fn word(&mut self, what: &str) -> std::result::Result<&'t str, String> {
        self.next()
            .map(|t| t.text.as_str())
            .ok_or_else(|| format!("{what} expected at the end of the rule"))
    }

    fn expect(&mut self, w: &str) -> std::result::Result<(), String> {
        match self.next() {
            Some(t) if t.text == w && !t.quoted => Ok(()),
            Some(t) => Err(format!("expected {w:?}, found {:?}", t.text)),
            None => Err(format!("expected {w:?} at the end of the rule")),
        }
    }
}

/// Parse a rule's statements; parsing stops at the first one the tracer does not
/// know, which becomes [`Stmt::Unknown`].
fn parse_stmts(toks: &[Tok]) -> Vec<Stmt> {
    let mut c = Cursor { toks, pos: 0 };
    let mut out = Vec::new();
    let mut starts = Vec::new();
    while c.peek().is_some() {
        let mut start = c.pos;
        match parse_stmt(&mut c) {
            Ok(s) => {
                out.push(s);
                starts.push(start);
            }
            Err(reason) => {
                // Words a terminal statement does not know are its own arguments
                // (`masquerade to :1000`): it must not run without them.
                if out.last().is_some_and(Stmt::is_terminal) {
                    out.pop();
                    start = starts.pop().unwrap_or(start);
                }
                let rest: Vec<String> = toks[start..]
                    .iter()
                    .map(|t| {
                        if t.quoted {
                            crate::nftables::quote_comment(&t.text)
                        } else {
                            t.text.clone()
                        }
                    })
                    .collect();
                out.push(Stmt::Unknown(reason, rest.join(" ")));
                break;
            }
        }
    }
    out
}

fn parse_stmt(c: &mut Cursor<'_>) -> std::result::Result<Stmt, String> {
    let toks = c.toks;
    let w = c.peek().expect("checked by the caller");
    {
        let stmt = match w {
            "jump" | "goto" => {
                c.next();
                let to = c.word("a chain")?.to_owned();
                Stmt::Verdict(if w == "jump" {
                    VerdictStmt::Jump(to)
                } else {
                    VerdictStmt::Goto(to)
                })
            }
            "accept" | "drop" | "return" | "continue" => {
                c.next();
                Stmt::Verdict(match w {
                    "accept" => VerdictStmt::Accept,
                    "drop" => VerdictStmt::Drop,
                    "return" => VerdictStmt::Return,
                    _ => VerdictStmt::Continue,
                })
            }
            "reject" => {
                c.next();
                let rest: Vec<&str> =
                    std::iter::from_fn(|| c.next().map(|t| t.text.as_str())).collect();
                match rest.as_slice() {
                    [] => Stmt::Reject(None),
                    ["with", how @ ..] if !how.is_empty() => Stmt::Reject(Some(how.join(" "))),
                    _ => return Err(format!("unexpected {:?} after reject", rest.join(" "))),
                }
            }
            "masquerade" => {
                c.next();
                let mut flags = Vec::new();
                while let Some(f) = c.peek() {
                    if f.split(',')
                        .all(|x| matches!(x, "fully-random" | "random" | "persistent"))
                    {
                        flags.extend(f.split(',').map(str::to_owned));
                        c.next();
                    } else {
                        break;
                    }
                }
                Stmt::Masquerade(flags)
            }
            "snat" | "dnat" => {
                c.next();
                if matches!(c.peek(), Some("ip" | "ip6")) {
                    c.next();
                }
                c.expect("to")?;
                let to = c.word("an address")?;
                while c.peek().is_some_and(|f| {
                    f.split(',')
                        .all(|x| matches!(x, "fully-random" | "random" | "persistent"))
                }) {
                    c.next();
                }
                if w == "dnat" {
                    let (ip, port) = parse_host_port(to)?;
                    Stmt::Dnat(ip, port)
                } else {
                    parse_host_port(to)?;
                    Stmt::Snat(to.to_owned())
                }
            }
            "update" | "add" if c.peek_at(1).is_some_and(|s| s.starts_with('@')) => {
                c.next();
                let set = c.word("a set")?[1..].to_owned();
                c.expect("{")?;
                let key = parse_key(c)?;
                c.expect("}")?;
                Stmt::SetUpdate {
                    op: w.to_owned(),
                    set,
                    key,
                }
            }
            "counter" => {
                c.next();
                if c.peek() == Some("packets") {
                    c.next();
                    c.next();
                    c.expect("bytes")?;
                    c.next();
                }
                Stmt::Counter
            }
            "mark" if c.peek_at(1) == Some("set") => {
                c.next();
                c.next();
                parse_mark_set(c)?
            }
            "meta" if c.peek_at(1) == Some("mark") && c.peek_at(2) == Some("set") => {
                c.pos += 3;
                parse_mark_set(c)?
            }
            _ => {
                let key = parse_key(c)?;
                if c.peek() == Some("vmap") {
                    c.next();
                    let map = match c.peek() {
                        Some(s) if s.starts_with('@') => {
                            c.next();
                            MapRef::Named(s[1..].to_owned())
                        }
                        Some("{") => {
                            let close = matching_brace(&toks[c.pos..])?;
                            let els = parse_braced_elements(&toks[c.pos..=c.pos + close])?;
                            c.pos += close + 1;
                            MapRef::Inline(els)
                        }
                        _ => return Err("vmap needs @map or { … }".into()),
                    };
                    Stmt::Vmap { key, map }
                } else {
                    let (negate, explicit_eq) = match c.peek() {
                        Some("!=") => {
                            c.next();
                            (true, false)
                        }
                        Some("==") => {
                            c.next();
                            (false, true)
                        }
                        _ => (false, false),
                    };
                    let rhs = match c.peek() {
                        Some(s) if s.starts_with('@') => {
                            c.next();
                            Rhs::Set(s[1..].to_owned())
                        }
                        Some("{") => {
                            let close = matching_brace(&toks[c.pos..])?;
                            let els = parse_braced_elements(&toks[c.pos..=c.pos + close])?;
                            c.pos += close + 1;
                            if els.iter().any(|e| e.value.is_some()) {
                                return Err("a map where a set was expected".into());
                            }
                            Rhs::Values {
                                values: els.into_iter().map(|e| e.key).collect(),
                                braced: true,
                            }
                        }
                        Some(_) => {
                            let mut parts = vec![c.word("a value")?.to_owned()];
                            while c.peek() == Some(".") {
                                c.next();
                                parts.push(c.word("a value")?.to_owned());
                            }
                            Rhs::Values {
                                values: vec![parts],
                                braced: false,
                            }
                        }
                        None => return Err(format!("`{key}` needs a value to compare with")),
                    };
                    Stmt::Match {
                        key,
                        negate,
                        explicit_eq,
                        rhs,
                    }
                }
            }
        };
        Ok(stmt)
    }
}

fn parse_mark_set(c: &mut Cursor<'_>) -> std::result::Result<Stmt, String> {
    let w = c.word("a mark value")?;
    if w == "mark" || (w == "meta" && c.peek() == Some("mark")) {
        if w == "meta" {
            c.next();
        }
        let op = match c.word("an operator")? {
            "or" | "|" => MarkOp::Or,
            "xor" | "^" => MarkOp::Xor,
            "and" | "&" => MarkOp::And,
            other => return Err(format!("unsupported mark operator {other:?}")),
        };
        let v = parse_u32(c.word("a mark value")?)?;
        return Ok(Stmt::SetMark(op, v));
    }
    Ok(Stmt::SetMark(MarkOp::Set, parse_u32(w)?))
}

fn parse_key(c: &mut Cursor<'_>) -> std::result::Result<Key, String> {
    let mut parts = vec![parse_single_key(c)?];
    while c.peek() == Some(".") {
        c.next();
        parts.push(parse_single_key(c)?);
    }
    Ok(if parts.len() == 1 {
        parts.pop().expect("one part")
    } else {
        Key::Concat(parts)
    })
}

fn parse_single_key(c: &mut Cursor<'_>) -> std::result::Result<Key, String> {
    let w = c.word("an expression")?;
    let key = match w {
        "ip" | "ip6" => {
            let v6 = w == "ip6";
            match c.word("a field")? {
                "saddr" => Key::Saddr { v6 },
                "daddr" => Key::Daddr { v6 },
                "protocol" if !v6 => Key::L4proto,
                "nexthdr" if v6 => Key::L4proto,
                other => return Err(format!("unsupported expression `{w} {other}`")),
            }
        }
        "th" | "tcp" | "udp" | "sctp" => {
            let proto = match w {
                "th" => None,
                p => Some(parse_proto(p)?),
            };
            match c.word("a field")? {
                "dport" => Key::Port { dst: true, proto },
                "sport" => Key::Port { dst: false, proto },
                other => return Err(format!("unsupported expression `{w} {other}`")),
            }
        }
        "meta" => match c.word("a meta key")? {
            "l4proto" => Key::L4proto,
            "mark" => Key::Mark,
            "iifname" => Key::Ifname { input: true },
            "oifname" => Key::Ifname { input: false },
            other => return Err(format!("unsupported expression `meta {other}`")),
        },
        "mark" => Key::Mark,
        "iifname" => Key::Ifname { input: true },
        "oifname" => Key::Ifname { input: false },
        "fib" => {
            let source = match c.word("saddr or daddr")? {
                "saddr" => true,
                "daddr" => false,
                other => return Err(format!("unsupported expression `fib {other}`")),
            };
            c.expect("type")?;
            Key::FibType { source }
        }
        "ct" => match c.word("a conntrack key")? {
            "state" => Key::CtState,
            "status" => Key::CtStatus,
            other => return Err(format!("unsupported expression `ct {other}`")),
        },
        "numgen" => {
            c.expect("random")?;
            c.expect("mod")?;
            let modulus = parse_u32(c.word("a modulus")?)?;
            if modulus == 0 {
                return Err("numgen mod 0".into());
            }
            let mut offset = 0;
            if c.peek() == Some("offset") {
                c.next();
                offset = parse_u32(c.word("an offset")?)?;
            }
            Key::Numgen { modulus, offset }
        }
        other => return Err(format!("unsupported expression starting with {other:?}")),
    };
    if key == Key::Mark && matches!(c.peek(), Some("and" | "&")) {
        c.next();
        return Ok(Key::MarkAnd(parse_u32(c.word("a mask")?)?));
    }
    Ok(key)
}

// ---------------------------------------------------------------------------------
// Evaluation.

/// The values a key reads from the packet, and a note for a random choice.
type KeyRead = (Vec<Datum>, Option<String>);

/// A value read from the packet.
#[derive(Debug, Clone)]
enum Datum {
    Addr(IpAddr),
    Proto(u8),
    Num(u32),
    Iface(Iface, &'static str),
    CtState,
    CtStatus { dnat: bool, snat: bool },
    Fib(bool),
}

fn value_matches(d: &Datum, text: &str) -> std::result::Result<bool, String> {
    match d {
        Datum::Addr(ip) => {
            if let Some((a, b)) = text.split_once('-') {
                let a: IpAddr = a
                    .parse()
                    .map_err(|_| format!("bad address range {text:?}"))?;
                let b: IpAddr = b
                    .parse()
                    .map_err(|_| format!("bad address range {text:?}"))?;
                return Ok(match (a, b, ip) {
                    (IpAddr::V4(a), IpAddr::V4(b), IpAddr::V4(x)) => a <= *x && *x <= b,
                    (IpAddr::V6(a), IpAddr::V6(b), IpAddr::V6(x)) => a <= *x && *x <= b,
                    _ => false,
                });
            }
            Ok(net_contains(&parse_net(text)?, ip))
        }
        Datum::Proto(p) => Ok(parse_proto(text)? == *p),
        Datum::Num(n) => {
            if let Some((a, b)) = text.split_once('-') {
                return Ok(parse_u32(a)? <= *n && *n <= parse_u32(b)?);
            }
            Ok(parse_u32(text)? == *n)
        }
        Datum::Iface(iface, side) => iface.matches(text, '*', side),
        Datum::CtState => {
            let mut any = false;
            for s in text.split(',') {
                any |= match s.trim() {
                    "new" => true,
                    "established" | "related" | "invalid" | "untracked" => false,
                    other => return Err(format!("unknown conntrack state {other:?}")),
                };
            }
            Ok(any)
        }
        Datum::CtStatus { dnat, snat } => {
            let mut any = false;
            for s in text.split(',') {
                any |= match s.trim() {
                    "dnat" => *dnat,
                    "snat" => *snat,
                    "expected" | "seen-reply" | "assured" | "confirmed" | "dying" => false,
                    other => return Err(format!("unknown conntrack status {other:?}")),
                };
            }
            Ok(any)
        }
        Datum::Fib(local) => match text {
            "local" => Ok(*local),
            "unicast" => Ok(!*local),
            "broadcast" | "multicast" | "anycast" | "blackhole" | "unreachable" | "prohibit" => {
                Ok(false)
            }
            other => Err(format!("unknown address type {other:?}")),
        },
    }
}

fn parts_match(data: &[Datum], parts: &[String]) -> std::result::Result<bool, String> {
    if data.len() != parts.len() {
        return Err(format!(
            "a key of {} fields compared with {:?}",
            data.len(),
            parts.join(" . ")
        ));
    }
    for (d, p) in data.iter().zip(parts) {
        if !value_matches(d, p)? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Parse a verdict written as a map value.
fn parse_verdict(text: &str) -> std::result::Result<VerdictStmt, String> {
    let words: Vec<&str> = text.split_whitespace().collect();
    Ok(match words.as_slice() {
        ["accept"] => VerdictStmt::Accept,
        ["drop"] => VerdictStmt::Drop,
        ["return"] => VerdictStmt::Return,
        ["continue"] => VerdictStmt::Continue,
        ["jump", c] => VerdictStmt::Jump((*c).to_owned()),
        ["goto", c] => VerdictStmt::Goto((*c).to_owned()),
        _ => return Err(format!("not a verdict: {text:?}")),
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Return,
    Accept,
    Drop,
    Reject,
}

enum Flow {
    Next,
    End(End),
}

/// A failure inside a rule: a reason (located by the caller) or an error already
/// located deeper down.
enum Fail {
    Here(String),
    Inner(Error),
}

impl From<String> for Fail {
    fn from(s: String) -> Self {
        Fail::Here(s)
    }
}

/// Trace a packet through one nftables table.
///
/// Errors: a rule that decides the packet's way but cannot be evaluated (an unknown
/// expression, a jump to a missing chain or set, a test of an interface the packet does
/// not give), named by table, chain, rule number and text.
pub fn trace_nftables(table: &NftTable, packet: &Packet, node: &Node) -> Result<Trace> {
    let mut eng = Engine {
        table,
        node,
        label: format!("{} {}", table.family, table.name),
    };
    let paths = collect_paths(packet, |st, ch| walk_hooks(&mut eng, st, ch, packet, node))?;
    Ok(Trace {
        mode: TraceMode::Nftables,
        packet: packet.clone(),
        paths,
    })
}

struct Engine<'a> {
    table: &'a NftTable,
    node: &'a Node,
    label: String,
}

impl HookRunner for Engine<'_> {
    fn run_hook(
        &mut self,
        st: &mut State,
        ch: &mut Chooser,
        hook: Hook,
        with_nat: bool,
    ) -> Result<HookEnd> {
        let family_ok = match self.table.family.as_str() {
            "ip" => st.dst.is_ipv4(),
            "ip6" => st.dst.is_ipv6(),
            _ => true,
        };
        if !family_ok {
            return Ok(HookEnd::Continue);
        }
        let mut bases: Vec<(&String, &NftBaseChain)> = self
            .table
            .chains
            .iter()
            .filter_map(|(n, c)| c.base.as_ref().map(|b| (n, b)))
            .filter(|(_, b)| b.hook == hook.name())
            .collect();
        bases.sort_by_key(|(n, b)| (b.priority, n.as_str()));
        for (name, base) in bases {
            if base.chain_type == "nat" && !with_nat {
                continue;
            }
            let end = match self.run_chain(st, ch, name, 0)? {
                End::Return => match base.policy {
                    Verdict::Dropped => End::Drop,
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

impl Engine<'_> {
    fn run_chain(
        &mut self,
        st: &mut State,
        ch: &mut Chooser,
        name: &str,
        depth: usize,
    ) -> Result<End> {
        let chain = self.table.chains.get(name).ok_or_else(|| {
            Error::parse(format!("nftables {}", self.label), 0, name, "no such chain")
        })?;
        let label = self.label.clone();
        for (n, rule) in chain.rules.iter().enumerate() {
            let locate = |reason: String| {
                Error::parse(
                    format!("nftables {label} chain {name}"),
                    n + 1,
                    rule.full_text(),
                    reason,
                )
            };
            match self.run_rule(st, ch, name, rule, &rule.stmts, depth) {
                Ok(Flow::Next) => {}
                Ok(Flow::End(e)) => return Ok(e),
                Err(Fail::Here(reason)) => return Err(locate(reason)),
                Err(Fail::Inner(e)) => return Err(e),
            }
        }
        Ok(End::Return)
    }

    fn run_rule(
        &mut self,
        st: &mut State,
        ch: &mut Chooser,
        chain: &str,
        rule: &NftTableRule,
        stmts: &[Stmt],
        depth: usize,
    ) -> std::result::Result<Flow, Fail> {
        let mut step: Option<usize> = None;
        let record = |st: &mut State, step: &mut Option<usize>, note: Option<String>| match step {
            Some(i) => {
                if let Some(n) = note {
                    let s = &mut st.steps[*i];
                    s.note = Some(match s.note.take() {
                        Some(prev) => format!("{prev}; {n}"),
                        None => n,
                    });
                }
            }
            None => {
                st.steps.push(Step {
                    table: self.label.clone(),
                    chain: chain.to_owned(),
                    rule: rule.full_text(),
                    note,
                });
                *step = Some(st.steps.len() - 1);
            }
        };
        for stmt in stmts {
            match stmt {
                Stmt::Match {
                    key, negate, rhs, ..
                } => {
                    let (data, note) = match self.eval_key(st, ch, key)? {
                        Some(d) => d,
                        None => return Ok(Flow::Next),
                    };
                    let found = match rhs {
                        Rhs::Set(name) => self.lookup(name, &data)?.is_some(),
                        Rhs::Values { values, .. } => {
                            let mut any = false;
                            for v in values {
                                if parts_match(&data, v)? {
                                    any = true;
                                    break;
                                }
                            }
                            any
                        }
                    };
                    if found == *negate {
                        return Ok(Flow::Next);
                    }
                    if note.is_some() {
                        record(st, &mut step, note);
                    }
                }
                Stmt::Vmap { key, map } => {
                    let (data, note) = match self.eval_key(st, ch, key)? {
                        Some(d) => d,
                        None => return Ok(Flow::Next),
                    };
                    let value = match map {
                        MapRef::Named(name) => match self.lookup(name, &data)? {
                            Some(el) => el.value.clone(),
                            None => return Ok(Flow::Next),
                        },
                        MapRef::Inline(els) => {
                            let mut found = None;
                            for el in els {
                                if parts_match(&data, &el.key)? {
                                    found = Some(el.value.clone());
                                    break;
                                }
                            }
                            match found {
                                Some(v) => v,
                                None => return Ok(Flow::Next),
                            }
                        }
                    };
                    let v = value.ok_or_else(|| "a set used as a verdict map".to_owned())?;
                    let verdict = parse_verdict(&v)?;
                    record(st, &mut step, note);
                    return self.verdict(
                        st,
                        ch,
                        &verdict,
                        depth,
                        step.map(|i| st.steps[i].clone()),
                    );
                }
                other => {
                    record(st, &mut step, None);
                    let this = step.map(|i| st.steps[i].clone());
                    match other {
                        Stmt::Verdict(v) => return self.verdict(st, ch, v, depth, this),
                        Stmt::Reject(_) => {
                            st.verdict_rule = this;
                            return Ok(Flow::End(End::Reject));
                        }
                        Stmt::SetMark(op, v) => {
                            st.mark = match op {
                                MarkOp::Or => st.mark | v,
                                MarkOp::Xor => st.mark ^ v,
                                MarkOp::And => st.mark & v,
                                MarkOp::Set => *v,
                            };
                        }
                        Stmt::Masquerade(_) | Stmt::Snat(_) => {
                            st.snat = true;
                            return Ok(Flow::End(End::Accept));
                        }
                        Stmt::Dnat(ip, port) => {
                            st.apply_dnat(*ip, *port);
                            return Ok(Flow::End(End::Accept));
                        }
                        Stmt::SetUpdate { set, .. } => {
                            if !self.table.sets.contains_key(set) {
                                return Err(format!("set {set} does not exist").into());
                            }
                            record(st, &mut step, Some(format!("source recorded in @{set}")));
                        }
                        Stmt::Counter => {}
                        Stmt::Unknown(reason, text) => {
                            return Err(format!("unsupported: {reason} (at `{text}`)").into());
                        }
                        Stmt::Match { .. } | Stmt::Vmap { .. } => unreachable!("handled above"),
                    }
                }
            }
        }
        Ok(Flow::Next)
    }

    fn verdict(
        &mut self,
        st: &mut State,
        ch: &mut Chooser,
        v: &VerdictStmt,
        depth: usize,
        this: Option<Step>,
    ) -> std::result::Result<Flow, Fail> {
        Ok(match v {
            VerdictStmt::Accept => {
                st.verdict_rule = this;
                Flow::End(End::Accept)
            }
            VerdictStmt::Drop => {
                st.verdict_rule = this;
                Flow::End(End::Drop)
            }
            VerdictStmt::Return => Flow::End(End::Return),
            VerdictStmt::Continue => Flow::Next,
            VerdictStmt::Jump(to) | VerdictStmt::Goto(to) => {
                match self.table.chains.get(to) {
                    None => {
                        return Err(
                            format!("jump to chain {to}, which the table does not have").into()
                        );
                    }
                    Some(c) if c.base.is_some() => {
                        return Err(format!("jump to base chain {to}").into());
                    }
                    Some(_) => {}
                }
                if depth >= MAX_DEPTH {
                    return Err(format!("chains nest deeper than {MAX_DEPTH} (a loop?)").into());
                }
                let end = self.run_chain(st, ch, to, depth + 1).map_err(Fail::Inner)?;
                match (v, end) {
                    (VerdictStmt::Jump(_), End::Return) => Flow::Next,
                    (_, e) => Flow::End(e),
                }
            }
        })
    }

    fn lookup(
        &self,
        name: &str,
        data: &[Datum],
    ) -> std::result::Result<Option<&NftElement>, String> {
        let set = self
            .table
            .sets
            .get(name)
            .ok_or_else(|| format!("set or map @{name} does not exist"))?;
        if set.dynamic {
            return Ok(None);
        }
        for el in &set.elements {
            if parts_match(data, &el.key)? {
                return Ok(Some(el));
            }
        }
        Ok(None)
    }

    /// Read a key from the packet: `None` when the packet does not have it (wrong
    /// family or protocol: the rule does not match); the note is for random choices.
    fn eval_key(
        &self,
        st: &State,
        ch: &mut Chooser,
        key: &Key,
    ) -> std::result::Result<Option<KeyRead>, String> {
        let mut note = None;
        let mut out = Vec::new();
        let keys: &[Key] = match key {
            Key::Concat(parts) => parts,
            k => std::slice::from_ref(k),
        };
        for k in keys {
            let d = match k {
                Key::Saddr { v6 } | Key::Daddr { v6 } => {
                    let ip = if matches!(k, Key::Saddr { .. }) {
                        st.src
                    } else {
                        st.dst
                    };
                    if ip.is_ipv6() != *v6 {
                        return Ok(None);
                    }
                    Datum::Addr(ip)
                }
                Key::L4proto => Datum::Proto(st.proto.number()),
                Key::Port { dst, proto } => {
                    if proto.is_some_and(|p| p != st.proto.number()) {
                        return Ok(None);
                    }
                    if *dst {
                        Datum::Num(u32::from(st.dport))
                    } else {
                        let p = st.sport.ok_or(
                            "the rule tests the source port, which the packet does not give (set Packet::source_port)",
                        )?;
                        Datum::Num(u32::from(p))
                    }
                }
                Key::Mark => Datum::Num(st.mark),
                Key::MarkAnd(m) => Datum::Num(st.mark & m),
                Key::Ifname { input } => {
                    if *input {
                        Datum::Iface(st.in_if.clone(), "in")
                    } else {
                        Datum::Iface(st.out_if.clone(), "out")
                    }
                }
                Key::FibType { source } => {
                    let ip = if *source { st.src } else { st.dst };
                    Datum::Fib(self.node.is_local(&ip))
                }
                Key::CtState => Datum::CtState,
                Key::CtStatus => Datum::CtStatus {
                    dnat: st.dnat.is_some(),
                    snat: st.snat,
                },
                Key::Numgen { modulus, offset } => {
                    let n = *modulus as usize;
                    let v = if n > 1 {
                        ch.choose(&vec![1.0 / n as f64; n]) as u32
                    } else {
                        0
                    };
                    note = Some(format!("numgen: {} of {modulus}", v));
                    Datum::Num(v + offset)
                }
                Key::Concat(_) => return Err("nested concatenation".into()),
            };
            out.push(d);
        }
        Ok(Some((out, note)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::Origin;

    fn rule(text: &str) -> Vec<Stmt> {
        let stmts = NftTableRule::parse(text, None).stmts;
        assert!(
            !stmts.iter().any(|s| matches!(s, Stmt::Unknown(..))),
            "{text}: {stmts:?}"
        );
        stmts
    }

    fn has_unknown(text: &str) -> bool {
        NftTableRule::parse(text, None)
            .stmts
            .iter()
            .any(|s| matches!(s, Stmt::Unknown(..)))
    }

    #[test]
    fn tokens_peel_braces_and_keep_quotes() {
        let t: Vec<String> = tokenize("ip daddr {172.30.0.0/16, 10.0.0.1} iifname \"a b\";")
            .unwrap()
            .into_iter()
            .map(|t| t.text)
            .collect();
        assert_eq!(
            t,
            [
                "ip",
                "daddr",
                "{",
                "172.30.0.0/16",
                ",",
                "10.0.0.1",
                "}",
                "iifname",
                "a b",
                ";"
            ]
        );
    }

    #[test]
    fn kube_proxy_rules_parse_and_print_back() {
        for text in [
            "ip daddr . meta l4proto . th dport vmap @service-ips",
            "ip daddr @nodeport-ips meta l4proto . th dport vmap @service-nodeports",
            "fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @service-nodeports",
            "ip daddr 172.30.0.44 ip saddr != 10.0.0.0/8 jump mark-for-masquerade",
            "numgen random mod 2 vmap { 0 : goto endpoint-A , 1 : goto endpoint-B }",
            "ip saddr @affinity-X goto endpoint-X",
            "update @affinity-X { ip saddr }",
            "meta l4proto tcp dnat to 10.180.0.3:80",
            "meta l4proto tcp dnat to [fd00::1]:80",
            "mark and 0x4000 == 0 return",
            "mark set mark xor 0x4000",
            "masquerade fully-random",
            "ct state new jump firewall-check",
            "ip saddr != { 203.0.113.0/25 , 1.2.3.4 } drop",
            "iifname != \"cbr0\" goto x",
            "fib saddr type local jump mark-for-masquerade",
            "reject",
        ] {
            let stmts = rule(text);
            let printed: Vec<String> = stmts.iter().map(ToString::to_string).collect();
            assert_eq!(printed.join(" "), text);
        }
        assert!(has_unknown("log prefix \"x\""));
        assert!(has_unknown("ip daddr"));
    }

    #[test]
    fn priorities() {
        assert_eq!(parse_priority("-110").unwrap(), -110);
        assert_eq!(parse_priority("dstnat - 10").unwrap(), -110);
        assert_eq!(parse_priority("srcnat").unwrap(), 100);
        assert_eq!(parse_priority("filter+5").unwrap(), 5);
        assert!(parse_priority("bogus").is_err());
    }

    #[test]
    fn transactions_apply_in_order() {
        let script = "add table ip t\ndelete table ip t\nadd table ip t\n\
            add chain ip t c { type filter hook forward priority filter ; policy drop ; }\n\
            add chain ip t d\n\
            add map ip t m { type ipv4_addr : verdict ; }\n\
            add element ip t m { 10.0.0.1 : goto d , 10.0.0.2 comment \"two\" : drop }\n\
            add rule ip t c ip daddr vmap @m\n\
            add rule ip t c accept comment \"fallback\"\n\
            add rule ip t d ip saddr 10.0.0.9 accept\n\
            delete element ip t m { 10.0.0.1 }\n\
            flush chain ip t d\n";
        let t = NftTable::parse(script, "s").unwrap();
        assert_eq!(t.chains["c"].rules.len(), 2);
        assert_eq!(t.chains["c"].rules[1].comment.as_deref(), Some("fallback"));
        assert_eq!(
            t.chains["c"].base.as_ref().unwrap().policy,
            Verdict::Dropped
        );
        assert!(t.chains["d"].rules.is_empty());
        assert_eq!(t.sets["m"].elements.len(), 1);
        assert_eq!(t.sets["m"].elements[0].comment.as_deref(), Some("two"));
        let node = Node::new([]);
        let to = |d: &str| {
            let p = Packet::tcp(Origin::Pod, "10.0.0.9".parse().unwrap(), d.parse().unwrap());
            trace_nftables(&t, &p, &node).unwrap()
        };
        assert_eq!(to("10.0.0.2:80").verdict(), Some(Verdict::Dropped));
        assert_eq!(to("10.0.0.3:80").verdict(), Some(Verdict::Accepted));
        let e = NftTable::parse("add table ip a\nadd table ip b\n", "s").unwrap_err();
        assert!(e.to_string().contains("one table at a time"), "{e}");
        let e = NftTable::parse("add table ip a\nadd rule ip a nochain accept\n", "s").unwrap_err();
        assert!(e.to_string().starts_with("s:2:"), "{e}");
    }

    #[test]
    fn dynamic_sets_are_empty_for_a_new_connection() {
        let script = "add table ip t\n\
            add chain ip t c { type nat hook prerouting priority dstnat ; }\n\
            add chain ip t e\n\
            add set ip t aff { type ipv4_addr ; flags dynamic,timeout ; timeout 10800s ; }\n\
            add set ip t plain { type ipv4_addr ; }\n\
            add element ip t aff { 10.0.0.9 }\n\
            add element ip t plain { 10.0.0.9 }\n\
            add rule ip t c ip saddr @aff goto e\n\
            add rule ip t c ip saddr @plain update @aff { ip saddr } meta l4proto tcp dnat to 10.1.1.1:80\n\
            add rule ip t e meta l4proto tcp dnat to 10.2.2.2:80\n";
        let t = NftTable::parse(script, "s").unwrap();
        assert!(t.sets["aff"].dynamic && !t.sets["plain"].dynamic);
        let p = Packet::tcp(
            Origin::Pod,
            "10.0.0.9".parse().unwrap(),
            "10.0.0.1:80".parse().unwrap(),
        );
        let tr = trace_nftables(&t, &p, &Node::default()).unwrap();
        assert_eq!(tr.upstream_output(), "10.1.1.1:80", "{tr}");
        assert_eq!(
            tr.paths[0].steps[0].note.as_deref(),
            Some("source recorded in @aff")
        );
    }

    #[test]
    fn unknown_expressions_fail_where_reached() {
        let script = "add table ip t\n\
            add chain ip t c { type filter hook prerouting priority 0 ; }\n\
            add rule ip t c ip daddr 10.0.0.1 log prefix \"x\"\n";
        let t = NftTable::parse(script, "s").unwrap();
        // The rule does not match this packet before the unknown statement: fine.
        let p = Packet::tcp(
            Origin::Pod,
            "10.0.0.9".parse().unwrap(),
            "10.0.0.2:80".parse().unwrap(),
        );
        assert!(trace_nftables(&t, &p, &Node::default()).is_ok());
        let p = Packet::tcp(
            Origin::Pod,
            "10.0.0.9".parse().unwrap(),
            "10.0.0.1:80".parse().unwrap(),
        );
        let e = trace_nftables(&t, &p, &Node::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("nftables ip t chain c:1") && e.contains("log"),
            "{e}"
        );
    }
}
