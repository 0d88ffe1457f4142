//! Reading `iptables-save` output and `iptables-restore` input into tables, chains and
//! rules, and printing them back, in their own order or in the canonical order
//! upstream's golden tests compare in.

use std::fmt::Write as _;

use super::quote_arg;
use crate::{Error, Result};

/// A parsed `iptables-save` dump (or restore input).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IptablesDump {
    /// The tables, in input order.
    pub tables: Vec<DumpTable>,
}

/// One table of a dump.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DumpTable {
    /// `filter`, `nat`, ...
    pub name: String,
    /// The chains, in declaration order (chains only appended to are added when first
    /// seen).
    pub chains: Vec<DumpChain>,
    /// Chains deleted with `-X` (restore input).
    pub deleted: Vec<String>,
}

/// One chain of a table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DumpChain {
    /// The chain's name.
    pub name: String,
    /// The policy of a built-in chain (`ACCEPT`, `DROP`); `None` for user chains (`-`).
    pub policy: Option<String>,
    /// The rules, in order.
    pub rules: Vec<DumpRule>,
}

/// One rule: its arguments after `-A CHAIN`, unquoted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct DumpRule {
    /// The words of the rule, quotes removed.
    pub args: Vec<String>,
}

impl DumpRule {
    /// The rule's text with arguments quoted as restore input needs.
    pub fn text(&self) -> String {
        self.args
            .iter()
            .map(|a| quote_arg(a))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The value following `option` (for example `-j`, `--comment`), if present.
    pub fn value_of(&self, option: &str) -> Option<&str> {
        self.args
            .iter()
            .position(|a| a == option)
            .and_then(|i| self.args.get(i + 1))
            .map(String::as_str)
    }

    /// The jump target (`-j` or `-g`).
    pub fn target(&self) -> Option<&str> {
        self.value_of("-j").or_else(|| self.value_of("-g"))
    }

    /// The rule's comment.
    pub fn comment(&self) -> Option<&str> {
        self.value_of("--comment")
    }
}

/// Split a line into words as `iptables-restore` does: whitespace separates words,
/// double quotes group (a backslash escapes the next character inside them).
pub fn split_words(line: &str) -> std::result::Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quoted = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '\\' => match chars.next() {
                    Some(n) => cur.push(n),
                    None => return Err("backslash at end of line".into()),
                },
                '"' => quoted = false,
                c => cur.push(c),
            }
            continue;
        }
        match c {
            '"' => {
                quoted = true;
                in_word = true;
            }
            c if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if quoted {
        return Err("unterminated quote".into());
    }
    if in_word {
        out.push(cur);
    }
    Ok(out)
}

impl DumpTable {
    /// A chain by name.
    pub fn chain(&self, name: &str) -> Option<&DumpChain> {
        self.chains.iter().find(|c| c.name == name)
    }

    fn chain_mut(&mut self, name: &str) -> &mut DumpChain {
        if let Some(i) = self.chains.iter().position(|c| c.name == name) {
            return &mut self.chains[i];
        }
        self.chains.push(DumpChain {
            name: name.to_owned(),
            ..DumpChain::default()
        });
        self.chains.last_mut().expect("just pushed")
    }
}

impl IptablesDump {
    /// Parse `iptables-save` output or `iptables-restore` input. `source` names the
    /// input in errors, which carry the line number and text.
    pub fn parse(text: &str, source: &str) -> Result<Self> {
        let mut dump = IptablesDump::default();
        let mut current: Option<DumpTable> = None;
        for (i, raw) in text.lines().enumerate() {
            let n = i + 1;
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let err = |reason: &str| Error::parse(source, n, raw, reason);
            if let Some(name) = line.strip_prefix('*') {
                if current.is_some() {
                    return Err(err("table started before the previous one's COMMIT"));
                }
                current = Some(DumpTable {
                    name: name.trim().to_owned(),
                    ..DumpTable::default()
                });
                continue;
            }
            if line == "COMMIT" {
                match current.take() {
                    Some(t) => dump.tables.push(t),
                    None => return Err(err("COMMIT outside a table")),
                }
                continue;
            }
            let Some(table) = current.as_mut() else {
                return Err(err("rule outside a table (no *table line before it)"));
            };
            if let Some(decl) = line.strip_prefix(':') {
                let mut parts = decl.split_whitespace();
                let name = parts
                    .next()
                    .ok_or_else(|| err("chain declaration without a name"))?;
                let policy = parts.next().filter(|p| *p != "-").map(str::to_owned);
                table.chain_mut(name).policy = policy;
                continue;
            }
            // `iptables-save -c` prefixes rules with [packets:bytes].
            let body = if line.starts_with('[') {
                line.split_once(']')
                    .map(|(_, r)| r.trim_start())
                    .unwrap_or(line)
            } else {
                line
            };
            let words = split_words(body).map_err(|e| err(&e))?;
            match words.first().map(String::as_str) {
                Some("-A") | Some("--append") => {
                    let chain = words.get(1).ok_or_else(|| err("-A without a chain"))?;
                    let rule = DumpRule {
                        args: words[2..].to_vec(),
                    };
                    table.chain_mut(chain).rules.push(rule);
                }
                Some("-I") | Some("--insert") => {
                    let chain = words.get(1).ok_or_else(|| err("-I without a chain"))?;
                    let (pos, rest) = match words.get(2).and_then(|w| w.parse::<usize>().ok()) {
                        Some(p) => (p.max(1) - 1, &words[3..]),
                        None => (0, &words[2..]),
                    };
                    let c = table.chain_mut(chain);
                    let pos = pos.min(c.rules.len());
                    c.rules.insert(
                        pos,
                        DumpRule {
                            args: rest.to_vec(),
                        },
                    );
                }
                Some("-N") | Some("--new-chain") => {
                    let chain = words.get(1).ok_or_else(|| err("-N without a chain"))?;
                    table.chain_mut(chain);
                }
                Some("-X") | Some("--delete-chain") => {
                    let chain = words
                        .get(1)
                        .ok_or_else(|| err("-X without a chain"))?
                        .clone();
                    table.chains.retain(|c| c.name != chain);
                    table.deleted.push(chain);
                }
                Some("-F") | Some("--flush") => {
                    if let Some(chain) = words.get(1) {
                        table.chain_mut(chain).rules.clear();
                    } else {
                        for c in &mut table.chains {
                            c.rules.clear();
                        }
                    }
                }
                _ => return Err(err("not a table, chain, rule or COMMIT line")),
            }
        }
        if let Some(t) = current {
            return Err(Error::parse(
                source,
                text.lines().count(),
                "",
                format!("table {} has no COMMIT", t.name),
            ));
        }
        Ok(dump)
    }

    /// A table by name.
    pub fn table(&self, name: &str) -> Option<&DumpTable> {
        self.tables.iter().find(|t| t.name == name)
    }

    /// A mutable table by name.
    pub fn table_mut(&mut self, name: &str) -> Option<&mut DumpTable> {
        self.tables.iter_mut().find(|t| t.name == name)
    }

    /// The number of rules in a table.
    pub fn rule_count(&self, table: &str) -> usize {
        self.table(table)
            .map_or(0, |t| t.chains.iter().map(|c| c.rules.len()).sum())
    }

    /// Print as `iptables-restore` input, in the dump's own order.
    pub fn to_restore(&self) -> String {
        let mut out = String::new();
        for t in &self.tables {
            let _ = writeln!(out, "*{}", t.name);
            for c in &t.chains {
                let _ = writeln!(
                    out,
                    ":{} {} [0:0]",
                    c.name,
                    c.policy.as_deref().unwrap_or("-")
                );
            }
            for c in &t.chains {
                for r in &c.rules {
                    let _ = writeln!(out, "-A {} {}", c.name, r.text());
                }
            }
            for d in &t.deleted {
                let _ = writeln!(out, "-X {d}");
            }
            out.push_str("COMMIT\n");
        }
        out
    }

    /// Print in the canonical order upstream's `sortIPTablesRules` compares in: tables
    /// by name; chains `KUBE-NODEPORTS`, `KUBE-SERVICES`, the other `KUBE-*` chains,
    /// then the rest, each group by name; rules chain by chain in their order, except
    /// that `KUBE-NODEPORTS` and `KUBE-SERVICES` are stable-sorted by the service name
    /// in their comments (a rule without one sorts as an empty name), with the
    /// "must be the last rule" NodePort jump kept last.
    pub fn canonical(&self) -> String {
        let mut tables: Vec<&DumpTable> = self.tables.iter().collect();
        tables.sort_by(|a, b| a.name.cmp(&b.name));
        let mut out = String::new();
        for t in tables {
            let mut chains: Vec<&DumpChain> = t.chains.iter().collect();
            chains.sort_by_key(|c| chain_rank(&c.name));
            let _ = writeln!(out, "*{}", t.name);
            for c in &chains {
                let _ = writeln!(
                    out,
                    ":{} {} [0:0]",
                    c.name,
                    c.policy.as_deref().unwrap_or("-")
                );
            }
            for c in &chains {
                let mut rules: Vec<&DumpRule> = c.rules.iter().collect();
                if c.name == "KUBE-NODEPORTS" || c.name == "KUBE-SERVICES" {
                    let (mut last, mut rest): (Vec<&DumpRule>, Vec<&DumpRule>) =
                        rules.into_iter().partition(|r| {
                            r.comment()
                                .is_some_and(|m| m.contains("must be the last rule"))
                        });
                    rest.sort_by_key(|r| comment_service_name(r));
                    rest.append(&mut last);
                    rules = rest;
                }
                for r in rules {
                    let _ = writeln!(out, "-A {} {}", c.name, r.text());
                }
            }
            let mut deleted = t.deleted.clone();
            deleted.sort();
            for d in deleted {
                let _ = writeln!(out, "-X {d}");
            }
            out.push_str("COMMIT\n");
        }
        out
    }
}

fn chain_rank(name: &str) -> (u8, String) {
    let group = match name {
        "KUBE-NODEPORTS" => 0,
        "KUBE-SERVICES" => 1,
        n if n.starts_with("KUBE-") => 2,
        _ => 3,
    };
    (group, name.to_owned())
}

fn comment_service_name(rule: &DumpRule) -> String {
    rule.comment()
        .map(|c| c.split([' ', ':']).next().unwrap_or("").to_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_split_with_quotes_and_escapes() {
        assert_eq!(
            split_words(r#"-A X -m comment --comment "a b \"c\"" -j Y"#).unwrap(),
            [
                "-A",
                "X",
                "-m",
                "comment",
                "--comment",
                "a b \"c\"",
                "-j",
                "Y"
            ]
        );
        assert_eq!(split_words(r#"--comment """#).unwrap(), ["--comment", ""]);
        assert!(split_words(r#"--comment "open"#).is_err());
    }

    #[test]
    fn save_output_parses() {
        let text = "# Generated by iptables-nft-save\n*nat\n:PREROUTING ACCEPT [0:0]\n:KUBE-SVC-X - [0:0]\n[5:300] -A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n-A KUBE-SVC-X -j KUBE-SEP-Y\nCOMMIT\n*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n";
        let d = IptablesDump::parse(text, "save").unwrap();
        assert_eq!(d.tables.len(), 2);
        let nat = d.table("nat").unwrap();
        assert_eq!(
            nat.chain("PREROUTING").unwrap().policy.as_deref(),
            Some("ACCEPT")
        );
        let rule = &nat.chain("PREROUTING").unwrap().rules[0];
        assert_eq!(rule.comment(), Some("kubernetes service portals"));
        assert_eq!(rule.target(), Some("KUBE-SERVICES"));
        assert_eq!(d.rule_count("nat"), 2);
        // Round trip.
        assert_eq!(IptablesDump::parse(&d.to_restore(), "again").unwrap(), d);
    }

    #[test]
    fn errors_name_the_line() {
        let e =
            IptablesDump::parse("*nat\n-A X -j Y\nbogus line\nCOMMIT\n", "in.rules").unwrap_err();
        assert!(e.to_string().starts_with("in.rules:3:"), "{e}");
        let e = IptablesDump::parse("*nat\n-A X -j Y\n", "in.rules").unwrap_err();
        assert!(e.to_string().contains("no COMMIT"), "{e}");
    }

    #[test]
    fn canonical_order_sorts_services_by_comment() {
        let text = "*nat\n:KUBE-SERVICES - [0:0]\n:KUBE-NODEPORTS - [0:0]\n:OTHER - [0:0]\n\
            -A KUBE-SERVICES -m comment --comment \"ns2/b:p cluster IP\" -j A\n\
            -A KUBE-SERVICES -m comment --comment \"kubernetes service nodeports; NOTE: this must be the last rule in this chain\" -j KUBE-NODEPORTS\n\
            -A KUBE-SERVICES -m comment --comment \"ns1/a:p cluster IP\" -j B\nCOMMIT\n";
        let c = IptablesDump::parse(text, "x").unwrap().canonical();
        let lines: Vec<&str> = c.lines().collect();
        assert_eq!(lines[1], ":KUBE-NODEPORTS - [0:0]");
        assert_eq!(lines[3], ":OTHER - [0:0]");
        assert!(lines[4].contains("ns1/a"));
        assert!(lines[5].contains("ns2/b"));
        assert!(lines[6].contains("must be the last rule"));
    }
}
