//! Upstream's normalisation of nftables dumps (`sortNFTablesTransaction` in
//! kube-proxy's nftables tests), so a dump can be compared with upstream's golden text:
//! blank and `#` lines dropped, objects ordered by type (table, chains, rules, sets,
//! maps, elements), then by name; rules keep their order within a chain.

use std::cmp::Ordering;

fn rank(kind: &str) -> u8 {
    match kind {
        "table" => 10,
        "chain" => 9,
        "rule" => 8,
        "set" => 7,
        "map" => 6,
        "element" => 5,
        _ => 0,
    }
}

fn compare(a: &str, b: &str) -> Ordering {
    let wa: Vec<&str> = a.split(' ').collect();
    let wb: Vec<&str> = b.split(' ').collect();
    if wa.len() < 5 || wb.len() < 5 {
        return Ordering::Equal;
    }
    rank(wb[1])
        .cmp(&rank(wa[1]))
        .then_with(|| wa[4].cmp(wb[4]))
        .then_with(|| {
            if wa[1] == "rule" {
                Ordering::Equal
            } else {
                a.cmp(b)
            }
        })
}

/// The canonical form of a dump: lines normalised and sorted as upstream's test does,
/// joined with `\n` (no trailing newline).
pub fn canonical(dump: &str) -> String {
    let mut lines: Vec<&str> = dump
        .split('\n')
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    lines.sort_by(|a, b| compare(a, b));
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_by_type_then_name_keeping_rule_order() {
        let text = "add element ip t m { 1 }\n# c\n\nadd rule ip t b x\nadd rule ip t a y\nadd rule ip t b w\nadd chain ip t b\nadd table ip t { comment \"x\" ; }\n";
        assert_eq!(
            canonical(text),
            "add table ip t { comment \"x\" ; }\nadd chain ip t b\nadd rule ip t a y\nadd rule ip t b x\nadd rule ip t b w\nadd element ip t m { 1 }"
        );
    }
}
