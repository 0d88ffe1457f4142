//! The kernel's view of a table: `nft -j list table FAMILY NAME` (libnftables JSON,
//! schema version 1) turned into an [`NftTable`].
//!
//! The shape, found by loading our rendered dump into a throwaway network namespace
//! with `nft -f` and listing it back with `nft -j` (nft 1.0.6):
//!
//! - `{"nftables": [{"metainfo": …}, {"table": {"family", "name", …}}, {"set": …},
//!   {"map": …}, {"chain": …}, {"rule": …}, …]}`;
//! - a base chain has `"type"`, `"hook"`, `"prio"` (a number) and `"policy"`;
//! - a set or map has `"elem"`: plain values (`"172.30.0.41"`), `{"concat": [..]}`,
//!   `{"prefix": {"addr", "len"}}`, `{"range": [a, b]}`, or
//!   `{"elem": {"val": …, "comment": …}}` when an element has a comment; map elements
//!   are `[key, verdict]` pairs with verdicts such as `{"goto": {"target": "…"}}`;
//! - a rule is `{"chain", "expr": [statements], "comment"?}`; statements are
//!   `{"match": {"op", "left", "right"}}` (`"in"` for `ct state new`),
//!   `{"vmap": {"key", "data"}}` (`"@map"` or `{"set": [[k, v], …]}`), verdicts,
//!   `{"mangle": {"key": {"meta": {"key": "mark"}}, "value": {"|": [meta mark, N]}}}`,
//!   `{"masquerade": {"flags": …}}`, `{"dnat": {"addr", "port"}}`,
//!   `{"set": {"op": "update", "elem", "set": "@…"}}`, `{"reject": {…}}`,
//!   `{"counter": …}`; left sides are `{"payload": {"protocol", "field"}}`,
//!   `{"meta": {"key"}}`, `{"fib": {"result": "type", "flags": ["daddr"]}}`,
//!   `{"ct": {"key": "state"}}`, `{"&": [{"meta": {"key": "mark"}}, N]}`,
//!   `{"concat": [..]}`, `{"numgen": {"mode": "random", "mod": N, "offset": M}}`.
//! - A one-element anonymous set (`ip daddr { 172.30.0.0/16 }`) comes back as a plain
//!   value (`ip daddr 172.30.0.0/16`), and numbers (marks) as decimals.

use serde_json::Value;

use super::nft::{
    Key, MapRef, MarkOp, NftBaseChain, NftElement, NftTable, NftTableChain, NftTableRule,
    NftTableSet, Rhs, Stmt, VerdictStmt, parse_priority,
};
use super::{Verdict, parse_host_port};
use crate::{Error, Result};

type R<T> = std::result::Result<T, String>;

pub(super) fn table_from_json(text: &str, source: &str) -> Result<NftTable> {
    let root: Value = serde_json::from_str(text)
        .map_err(|e| Error::parse(source, e.line(), "", format!("not JSON: {e}")))?;
    let items = root
        .get("nftables")
        .and_then(Value::as_array)
        .ok_or_else(|| Error::parse(source, 1, "", "no \"nftables\" array at the top"))?;
    let mut t = NftTable::default();
    let mut seen = false;
    let mut rules: Vec<(usize, &Value)> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let err = |reason: String| Error::parse(source, i + 1, snippet(item), reason);
        let Some((kind, body)) = item.as_object().and_then(|o| o.iter().next()) else {
            return Err(err("not an object".into()));
        };
        match kind.as_str() {
            "metainfo" => {}
            "table" => {
                let (family, name) = family_and_name(body, "name").map_err(&err)?;
                t.set_table(family, name, &mut seen).map_err(&err)?;
            }
            "chain" => {
                let (family, table) = family_and_name(body, "table").map_err(&err)?;
                t.set_table(family, table, &mut seen).map_err(&err)?;
                let name = str_field(body, "name").map_err(&err)?;
                let base = match body.get("hook") {
                    None => None,
                    Some(h) => Some(NftBaseChain {
                        chain_type: str_field(body, "type").map_err(&err)?.to_owned(),
                        hook: h
                            .as_str()
                            .ok_or_else(|| err("hook is not a string".into()))?
                            .to_owned(),
                        priority: match body.get("prio") {
                            Some(Value::Number(n)) => n
                                .as_i64()
                                .and_then(|n| i32::try_from(n).ok())
                                .ok_or_else(|| err("bad priority".into()))?,
                            Some(Value::String(s)) => parse_priority(s).map_err(&err)?,
                            _ => 0,
                        },
                        policy: match body.get("policy").and_then(Value::as_str) {
                            Some("drop") => Verdict::Dropped,
                            _ => Verdict::Accepted,
                        },
                    }),
                };
                let c = t
                    .chains
                    .entry(name.to_owned())
                    .or_insert_with(NftTableChain::default);
                c.base = base;
            }
            "set" | "map" => {
                let (family, table) = family_and_name(body, "table").map_err(&err)?;
                t.set_table(family, table, &mut seen).map_err(&err)?;
                let name = str_field(body, "name").map_err(&err)?;
                let elements = match body.get("elem") {
                    Some(Value::Array(els)) => els
                        .iter()
                        .map(|e| element(e, kind == "map"))
                        .collect::<R<Vec<_>>>()
                        .map_err(&err)?,
                    Some(_) => return Err(err("elem is not an array".into())),
                    None => Vec::new(),
                };
                t.sets.insert(
                    name.to_owned(),
                    NftTableSet {
                        is_map: kind == "map",
                        dynamic: body.get("timeout").is_some()
                            || body
                                .get("flags")
                                .and_then(Value::as_array)
                                .is_some_and(|f| {
                                    f.iter().any(|x| {
                                        x.as_str().is_some_and(|x| x == "dynamic" || x == "timeout")
                                    })
                                }),
                        elements,
                    },
                );
            }
            "element" => {
                let (family, table) = family_and_name(body, "table").map_err(&err)?;
                t.set_table(family, table, &mut seen).map_err(&err)?;
                let name = str_field(body, "name").map_err(&err)?;
                let set = t
                    .sets
                    .get_mut(name)
                    .ok_or_else(|| err(format!("elements for unknown set {name}")))?;
                let is_map = set.is_map;
                for e in body
                    .get("elem")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    set.elements.push(element(e, is_map).map_err(&err)?);
                }
            }
            "rule" => {
                let (family, table) = family_and_name(body, "table").map_err(&err)?;
                t.set_table(family, table, &mut seen).map_err(&err)?;
                rules.push((i, body));
            }
            // Counters, quotas, flowtables and the like hold no rules.
            _ => {}
        }
    }
    if !seen {
        return Err(Error::parse(source, 0, "", "no table in the JSON"));
    }
    for (i, body) in rules {
        let item = &items[i];
        let err = |reason: String| Error::parse(source, i + 1, snippet(item), reason);
        let chain = str_field(body, "chain").map_err(&err)?;
        let exprs = body
            .get("expr")
            .and_then(Value::as_array)
            .ok_or_else(|| err("a rule without \"expr\"".into()))?;
        let mut stmts = Vec::new();
        for e in exprs {
            match stmt(e) {
                Ok(Some(s)) => stmts.push(s),
                Ok(None) => {}
                Err(reason) => {
                    stmts.push(Stmt::Unknown(reason, snippet(e)));
                    break;
                }
            }
        }
        let comment = body
            .get("comment")
            .and_then(Value::as_str)
            .map(str::to_owned);
        t.chains
            .get_mut(chain)
            .ok_or_else(|| err(format!("a rule for unknown chain {chain}")))?
            .rules
            .push(NftTableRule::from_stmts(stmts, comment));
    }
    Ok(t)
}

fn snippet(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 300 {
        let mut end = 300;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…", &s[..end])
    } else {
        s
    }
}

fn str_field<'a>(v: &'a Value, field: &str) -> R<&'a str> {
    v.get(field)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("missing string field {field:?}"))
}

fn family_and_name<'a>(v: &'a Value, name_field: &str) -> R<(&'a str, &'a str)> {
    Ok((str_field(v, "family")?, str_field(v, name_field)?))
}

/// A value as nft syntax: addresses, names and numbers as they are, prefixes as
/// `a/len`, ranges as `a-b`.
fn value_text(v: &Value) -> R<String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Object(o) => {
            if let Some(p) = o.get("prefix") {
                let addr = str_field(p, "addr")?;
                let len = p
                    .get("len")
                    .and_then(Value::as_u64)
                    .ok_or("a prefix without len")?;
                return Ok(format!("{addr}/{len}"));
            }
            if let Some(Value::Array(r)) = o.get("range")
                && r.len() == 2
            {
                return Ok(format!("{}-{}", value_text(&r[0])?, value_text(&r[1])?));
            }
            Err(format!("unsupported value {}", snippet(v)))
        }
        _ => Err(format!("unsupported value {}", snippet(v))),
    }
}

/// An element key: one part per concatenated field.
fn key_parts(v: &Value) -> R<Vec<String>> {
    match v.get("concat").and_then(Value::as_array) {
        Some(parts) => parts.iter().map(value_text).collect(),
        None => Ok(vec![value_text(v)?]),
    }
}

fn verdict_text(v: &Value) -> R<String> {
    let (k, body) = v
        .as_object()
        .and_then(|o| o.iter().next())
        .ok_or_else(|| format!("not a verdict: {}", snippet(v)))?;
    match k.as_str() {
        "accept" | "drop" | "return" | "continue" => Ok(k.clone()),
        "jump" | "goto" => Ok(format!("{k} {}", str_field(body, "target")?)),
        _ => Err(format!("not a verdict: {}", snippet(v))),
    }
}

fn element(e: &Value, is_map: bool) -> R<NftElement> {
    let (key, value) = if is_map {
        match e.as_array().map(Vec::as_slice) {
            Some([k, v]) => (k, Some(verdict_text(v)?)),
            _ => {
                return Err(format!(
                    "a map element that is not [key, value]: {}",
                    snippet(e)
                ));
            }
        }
    } else {
        (e, None)
    };
    let (key, comment) = match key.get("elem") {
        Some(inner) => (
            inner.get("val").ok_or("an elem without val")?,
            inner
                .get("comment")
                .and_then(Value::as_str)
                .map(str::to_owned),
        ),
        None => (key, None),
    };
    Ok(NftElement {
        key: key_parts(key)?,
        value,
        comment,
    })
}

fn key(v: &Value) -> R<Key> {
    let (k, body) = v
        .as_object()
        .and_then(|o| o.iter().next())
        .ok_or_else(|| format!("unsupported expression {}", snippet(v)))?;
    Ok(match k.as_str() {
        "payload" => {
            let proto = str_field(body, "protocol")?;
            let field = str_field(body, "field")?;
            match (proto, field) {
                ("ip", "saddr") => Key::Saddr { v6: false },
                ("ip", "daddr") => Key::Daddr { v6: false },
                ("ip6", "saddr") => Key::Saddr { v6: true },
                ("ip6", "daddr") => Key::Daddr { v6: true },
                ("ip", "protocol") | ("ip6", "nexthdr") => Key::L4proto,
                (p @ ("th" | "tcp" | "udp" | "sctp"), f @ ("dport" | "sport")) => Key::Port {
                    dst: f == "dport",
                    proto: match p {
                        "th" => None,
                        p => Some(super::parse_proto(p)?),
                    },
                },
                _ => return Err(format!("unsupported payload {proto} {field}")),
            }
        }
        "meta" => match str_field(body, "key")? {
            "l4proto" => Key::L4proto,
            "mark" => Key::Mark,
            "iifname" => Key::Ifname { input: true },
            "oifname" => Key::Ifname { input: false },
            other => return Err(format!("unsupported meta {other}")),
        },
        "fib" => {
            if str_field(body, "result")? != "type" {
                return Err(format!("unsupported fib {}", snippet(body)));
            }
            let flags: Vec<&str> = body
                .get("flags")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            match flags.as_slice() {
                ["saddr"] => Key::FibType { source: true },
                ["daddr"] => Key::FibType { source: false },
                _ => return Err(format!("unsupported fib flags {flags:?}")),
            }
        }
        "ct" => match str_field(body, "key")? {
            "state" => Key::CtState,
            "status" => Key::CtStatus,
            other => return Err(format!("unsupported ct {other}")),
        },
        "&" => match body.as_array().map(Vec::as_slice) {
            Some([m, Value::Number(n)]) if key(m)? == Key::Mark => Key::MarkAnd(
                n.as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or("bad mask")?,
            ),
            _ => return Err(format!("unsupported expression {}", snippet(v))),
        },
        "concat" => Key::Concat(
            body.as_array()
                .ok_or("concat is not an array")?
                .iter()
                .map(key)
                .collect::<R<Vec<_>>>()?,
        ),
        "numgen" => {
            if str_field(body, "mode")? != "random" {
                return Err(format!("unsupported numgen {}", snippet(body)));
            }
            let num = |f: &str| -> R<u32> {
                Ok(body
                    .get(f)
                    .and_then(Value::as_u64)
                    .map(|n| u32::try_from(n).map_err(|_| format!("bad numgen {f}")))
                    .transpose()?
                    .unwrap_or(0))
            };
            let modulus = num("mod")?;
            if modulus == 0 {
                return Err("numgen mod 0".into());
            }
            Key::Numgen {
                modulus,
                offset: num("offset")?,
            }
        }
        _ => return Err(format!("unsupported expression {}", snippet(v))),
    })
}

/// Values to compare with: one or a set of them.
fn rhs(v: &Value, key: &Key) -> R<Rhs> {
    if let Value::String(s) = v
        && let Some(name) = s.strip_prefix('@')
    {
        return Ok(Rhs::Set(name.to_owned()));
    }
    let one = |v: &Value| -> R<Vec<String>> {
        if matches!(key, Key::Mark)
            && let Value::Number(n) = v
        {
            return Ok(vec![format!("{:#x}", n.as_u64().unwrap_or(0))]);
        }
        key_parts(v)
    };
    match v {
        Value::Object(o) if o.contains_key("set") => {
            let items = o["set"].as_array().ok_or("set is not an array")?;
            Ok(Rhs::Values {
                values: items.iter().map(one).collect::<R<Vec<_>>>()?,
                braced: true,
            })
        }
        // `ct state established,related`.
        Value::Array(items) => {
            let words: Vec<String> = items.iter().map(value_text).collect::<R<_>>()?;
            Ok(Rhs::Values {
                values: vec![vec![words.join(",")]],
                braced: false,
            })
        }
        v => Ok(Rhs::Values {
            values: vec![one(v)?],
            braced: false,
        }),
    }
}

fn u32_of(v: &Value) -> R<u32> {
    v.as_u64()
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| format!("not a 32-bit number: {}", snippet(v)))
}

/// One statement; `None` for statements without effect on the trace (counters).
fn stmt(v: &Value) -> R<Option<Stmt>> {
    let (k, body) = v
        .as_object()
        .and_then(|o| o.iter().next())
        .ok_or_else(|| format!("unsupported statement {}", snippet(v)))?;
    Ok(Some(match k.as_str() {
        "match" => {
            let key = key(body.get("left").ok_or("a match without left")?)?;
            let (negate, explicit_eq) = match str_field(body, "op")? {
                "==" => (false, matches!(key, Key::MarkAnd(_))),
                "in" => (false, false),
                "!=" => (true, false),
                other => return Err(format!("unsupported operator {other}")),
            };
            let rhs = rhs(body.get("right").ok_or("a match without right")?, &key)?;
            Stmt::Match {
                key,
                negate,
                explicit_eq,
                rhs,
            }
        }
        "vmap" => {
            let key = key(body.get("key").ok_or("a vmap without key")?)?;
            let map = match body.get("data") {
                Some(Value::String(s)) if s.starts_with('@') => MapRef::Named(s[1..].to_owned()),
                Some(Value::Object(o)) if o.contains_key("set") => MapRef::Inline(
                    o["set"]
                        .as_array()
                        .ok_or("set is not an array")?
                        .iter()
                        .map(|e| element(e, true))
                        .collect::<R<Vec<_>>>()?,
                ),
                _ => return Err(format!("unsupported vmap data {}", snippet(body))),
            };
            Stmt::Vmap { key, map }
        }
        "accept" => Stmt::Verdict(VerdictStmt::Accept),
        "drop" => Stmt::Verdict(VerdictStmt::Drop),
        "return" => Stmt::Verdict(VerdictStmt::Return),
        "continue" => Stmt::Verdict(VerdictStmt::Continue),
        "jump" => Stmt::Verdict(VerdictStmt::Jump(str_field(body, "target")?.to_owned())),
        "goto" => Stmt::Verdict(VerdictStmt::Goto(str_field(body, "target")?.to_owned())),
        "reject" => {
            let ty = body.get("type").and_then(Value::as_str);
            let expr = body.get("expr").and_then(Value::as_str);
            match (ty, expr) {
                (None, None) | (Some("icmp" | "icmpx" | "icmpv6"), Some("port-unreachable")) => {
                    Stmt::Reject(None)
                }
                (Some("tcp reset"), _) => Stmt::Reject(Some("tcp reset".into())),
                (Some(t), Some(e)) => Stmt::Reject(Some(format!("{t} type {e}"))),
                _ => Stmt::Reject(None),
            }
        }
        "mangle" => {
            if key(body.get("key").ok_or("a mangle without key")?)? != Key::Mark {
                return Err(format!("unsupported mangle {}", snippet(body)));
            }
            let value = body.get("value").ok_or("a mangle without value")?;
            match value {
                Value::Number(_) => Stmt::SetMark(MarkOp::Set, u32_of(value)?),
                Value::Object(o) => {
                    let (op, args) = o.iter().next().ok_or("empty mangle value")?;
                    let op = match op.as_str() {
                        "|" => MarkOp::Or,
                        "^" => MarkOp::Xor,
                        "&" => MarkOp::And,
                        other => return Err(format!("unsupported mark operator {other}")),
                    };
                    match args.as_array().map(Vec::as_slice) {
                        Some([m, n]) if key(m)? == Key::Mark => Stmt::SetMark(op, u32_of(n)?),
                        _ => return Err(format!("unsupported mangle {}", snippet(body))),
                    }
                }
                _ => return Err(format!("unsupported mangle {}", snippet(body))),
            }
        }
        "masquerade" => {
            if body.get("port").is_some() {
                return Err("masquerade to ports is not supported".into());
            }
            let flags = match body.get("flags") {
                None => Vec::new(),
                Some(Value::String(s)) => vec![s.clone()],
                Some(Value::Array(a)) => a
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect(),
                Some(_) => return Err("bad masquerade flags".into()),
            };
            Stmt::Masquerade(flags)
        }
        "snat" | "dnat" => {
            let addr = str_field(body, "addr")?;
            let port = body.get("port").map(u32_of).transpose()?;
            let port = port
                .map(|p| u16::try_from(p).map_err(|_| format!("bad port {p}")))
                .transpose()?;
            let ip: std::net::IpAddr = addr.parse().map_err(|_| format!("bad address {addr:?}"))?;
            if k == "dnat" {
                Stmt::Dnat(ip, port)
            } else {
                let text = match (ip, port) {
                    (std::net::IpAddr::V6(v6), Some(p)) => format!("[{v6}]:{p}"),
                    (ip, Some(p)) => format!("{ip}:{p}"),
                    (ip, None) => ip.to_string(),
                };
                parse_host_port(&text)?;
                Stmt::Snat(text)
            }
        }
        "set" => {
            let op = str_field(body, "op")?;
            if !matches!(op, "update" | "add") {
                return Err(format!("unsupported set operation {op}"));
            }
            let set = str_field(body, "set")?;
            Stmt::SetUpdate {
                op: op.to_owned(),
                set: set.strip_prefix('@').unwrap_or(set).to_owned(),
                key: key(body.get("elem").ok_or("a set statement without elem")?)?,
            }
        }
        "counter" => return Ok(None),
        _ => return Err(format!("unsupported statement {}", snippet(v))),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_forms_convert_to_kube_proxy_text() {
        let json = r#"{"nftables": [
            {"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
            {"table": {"family": "ip", "name": "kube-proxy", "handle": 1}},
            {"set": {"family": "ip", "name": "cluster-ips", "table": "kube-proxy", "type": "ipv4_addr", "elem": ["172.30.0.41"]}},
            {"map": {"family": "ip", "name": "no-endpoint-services", "table": "kube-proxy", "type": ["ipv4_addr", "inet_proto", "inet_service"], "map": "verdict",
              "elem": [[{"elem": {"val": {"concat": ["172.30.0.46", "tcp", 80]}, "comment": "ns6/svc6:p80"}}, {"goto": {"target": "reject-chain"}}]]}},
            {"chain": {"family": "ip", "table": "kube-proxy", "name": "masquerading", "handle": 20}},
            {"chain": {"family": "ip", "table": "kube-proxy", "name": "nat-postrouting", "handle": 22, "type": "nat", "hook": "postrouting", "prio": 100, "policy": "accept"}},
            {"chain": {"family": "ip", "table": "kube-proxy", "name": "reject-chain", "handle": 25}},
            {"rule": {"family": "ip", "table": "kube-proxy", "chain": "nat-postrouting", "expr": [{"jump": {"target": "masquerading"}}]}},
            {"rule": {"family": "ip", "table": "kube-proxy", "chain": "masquerading", "expr": [{"match": {"op": "==", "left": {"&": [{"meta": {"key": "mark"}}, 16384]}, "right": 0}}, {"return": null}]}},
            {"rule": {"family": "ip", "table": "kube-proxy", "chain": "masquerading", "expr": [{"mangle": {"key": {"meta": {"key": "mark"}}, "value": {"^": [{"meta": {"key": "mark"}}, 16384]}}}]}},
            {"rule": {"family": "ip", "table": "kube-proxy", "chain": "masquerading", "expr": [{"masquerade": {"flags": "fully-random"}}]}},
            {"rule": {"family": "ip", "table": "kube-proxy", "chain": "reject-chain", "expr": [{"reject": {"type": "icmp", "expr": "port-unreachable"}}]}},
            {"rule": {"family": "ip", "table": "kube-proxy", "chain": "reject-chain", "expr": [{"match": {"op": "!=", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": {"set": ["1.2.3.4", {"prefix": {"addr": "10.0.0.0", "len": 8}}]}}}, {"counter": {"packets": 0, "bytes": 0}}, {"log": null}], "comment": "x"}}
        ]}"#;
        let t = table_from_json(json, "j").unwrap();
        assert_eq!(t.family, "ip");
        let texts: Vec<String> = t.chains["masquerading"]
            .rules
            .iter()
            .map(|r| r.text.clone())
            .collect();
        assert_eq!(
            texts,
            [
                "mark and 0x4000 == 0 return",
                "mark set mark xor 0x4000",
                "masquerade fully-random"
            ]
        );
        assert_eq!(t.chains["reject-chain"].rules[0].text, "reject");
        assert_eq!(
            t.chains["reject-chain"].rules[1].full_text(),
            "ip saddr != { 1.2.3.4 , 10.0.0.0/8 } {\"log\":null} comment \"x\""
        );
        let el = &t.sets["no-endpoint-services"].elements[0];
        assert_eq!(el.key, ["172.30.0.46", "tcp", "80"]);
        assert_eq!(el.value.as_deref(), Some("goto reject-chain"));
        assert_eq!(el.comment.as_deref(), Some("ns6/svc6:p80"));
        let base = t.chains["nat-postrouting"].base.as_ref().unwrap();
        assert_eq!((base.hook.as_str(), base.priority), ("postrouting", 100));
        assert!(table_from_json("{}", "j").is_err());
        assert!(table_from_json("[", "j").is_err());
    }
}
