//! The pure parts of the `cnitool` example: command line, environment and container ID,
//! as upstream `cnitool` (containernetworking/cni) derives them.

use std::path::{Component, Path, PathBuf};

use cni_exec::config::{Map, Value};
use sha2::{Digest as _, Sha512};

/// `NETCONFPATH`'s default, as upstream.
pub const DEFAULT_NET_DIR: &str = "/etc/cni/net.d";
/// libcni's default cache directory (upstream `cnitool` cannot override it).
pub const DEFAULT_CACHE_DIR: &str = "/var/lib/cni";
/// `CNI_IFNAME`'s default, as upstream.
pub const DEFAULT_IFNAME: &str = "eth0";

/// The five verbs of upstream `cnitool`; every one takes `<net> <netns>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    /// ADD the attachment and print the result.
    Add,
    /// CHECK the attachment.
    Check,
    /// DEL the attachment.
    Del,
    /// GC with no valid attachments (everything of the network is collected), as upstream.
    Gc,
    /// STATUS of the network's plugins.
    Status,
    /// Our addition: run `cni_exec::conformance` checks on the network (the netns is
    /// optional; by default the checks make their own).
    Conformance,
}

impl Verb {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "add" => Verb::Add,
            "check" => Verb::Check,
            "del" => Verb::Del,
            "gc" => Verb::Gc,
            "status" => Verb::Status,
            "conformance" => Verb::Conformance,
            _ => return None,
        })
    }
}

/// A parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    /// The verb.
    pub verb: Verb,
    /// The network name (looked up in `NETCONFPATH`).
    pub net: String,
    /// The netns path as given (made absolute later).
    pub netns: String,
    /// `-i/--ifname` (newer upstream's flag), which wins over `CNI_IFNAME`.
    pub ifname: Option<String>,
}

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cli {
    /// Run a verb.
    Run(Invocation),
    /// `-h`/`--help`: usage on stdout, exit 0.
    Help,
    /// Bad arguments: usage on stderr, exit 1 (upstream's `usage()`).
    Usage,
}

/// Parses `cnitool <verb> <net> <netns>` (arguments after the program name). As upstream,
/// fewer than three arguments is a usage error and extra arguments are ignored. Unlike
/// the original single-file upstream (which exits 0 doing nothing), an unknown verb is a
/// usage error too, as in the cobra-based upstream.
pub fn parse_cli<I, S>(args: I) -> Cli
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let mut positional = Vec::new();
    let mut ifname = None;
    let mut iter = args.into_iter().map(Into::into);
    while let Some(arg) = iter.next() {
        match arg.as_str() {
            "-h" | "--help" => return Cli::Help,
            "-i" | "--ifname" => match iter.next() {
                Some(v) => ifname = Some(v),
                None => return Cli::Usage,
            },
            _ => {
                if let Some(v) = arg.strip_prefix("--ifname=") {
                    ifname = Some(v.to_owned());
                } else {
                    positional.push(arg);
                }
            }
        }
    }
    let conformance = positional.first().is_some_and(|v| v == "conformance");
    if positional.len() < 3 && !(conformance && positional.len() == 2) {
        return Cli::Usage;
    }
    let Some(verb) = Verb::parse(&positional[0]) else {
        return Cli::Usage;
    };
    Cli::Run(Invocation {
        verb,
        net: positional[1].clone(),
        netns: positional.get(2).cloned().unwrap_or_default(),
        ifname: ifname.filter(|s| !s.is_empty()),
    })
}

/// Upstream's usage text for the program `exe`.
pub fn usage(exe: &str) -> String {
    let mut s = format!(
        "{exe}: Add, check, remove, gc or status network interfaces from a network namespace\n"
    );
    for verb in ["add   ", "check ", "del   ", "gc    ", "status"] {
        s.push_str(&format!("  {exe} {verb} <net> <netns>\n"));
    }
    s.push_str(&format!(
        "  {exe} conformance <net> [<netns>]   (check the plugins against the CNI spec)\n"
    ));
    s
}

/// Parses `CNI_ARGS` (`K=V;K=V`) as upstream: every pair must split on `=` into exactly
/// two non-empty parts (so a value cannot contain `=`). An empty string is no pairs.
pub fn parse_cni_args(s: &str) -> Result<Vec<(String, String)>, String> {
    if s.is_empty() {
        return Ok(Vec::new());
    }
    s.split(';')
        .map(|pair| {
            let kv: Vec<&str> = pair.split('=').collect();
            match kv.as_slice() {
                [k, v] if !k.is_empty() && !v.is_empty() => Ok(((*k).to_owned(), (*v).to_owned())),
                _ => Err(format!("invalid CNI_ARGS pair {pair:?}")),
            }
        })
        .collect()
}

/// Parses `CAP_ARGS` (a JSON object) as upstream; empty or `null` is no arguments.
pub fn parse_cap_args(s: &str) -> Result<Map<String, Value>, String> {
    if s.is_empty() {
        return Ok(Map::new());
    }
    match serde_json::from_str::<Value>(s).map_err(|e| format!("CAP_ARGS: {e}"))? {
        Value::Object(m) => Ok(m),
        Value::Null => Ok(Map::new()),
        other => Err(format!(
            "CAP_ARGS: expected a JSON object, got {}",
            match other {
                Value::Array(_) => "an array",
                Value::String(_) => "a string",
                Value::Number(_) => "a number",
                _ => "a boolean",
            }
        )),
    }
}

/// Splits `CNI_PATH` as Go's `filepath.SplitList`: empty is no directories, otherwise
/// every `:`-separated entry (empty ones included).
pub fn split_path_list(s: &str) -> Vec<PathBuf> {
    if s.is_empty() {
        return Vec::new();
    }
    s.split(':').map(PathBuf::from).collect()
}

/// Go's `filepath.Abs`: joined with `cwd` when relative, then cleaned lexically
/// (`.`, `..` and repeated or trailing slashes; symlinks are not resolved).
pub fn absolute(path: &str, cwd: &Path) -> PathBuf {
    let joined = if Path::new(path).is_absolute() {
        PathBuf::from(path)
    } else {
        cwd.join(path)
    };
    let mut out = PathBuf::from("/");
    for c in joined.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

/// Upstream's container ID: `cnitool-` and the first 10 bytes (20 hex digits) of the
/// SHA-512 of the absolute netns path.
pub fn container_id(abs_netns: &str) -> String {
    let digest = Sha512::digest(abs_netns.as_bytes());
    let mut id = String::from("cnitool-");
    for b in &digest[..10] {
        id.push_str(&format!("{b:02x}"));
    }
    id
}

/// The interface name: `-i/--ifname`, else `CNI_IFNAME` when set and non-empty, else eth0.
pub fn ifname(flag: Option<&str>, env: Option<&str>) -> String {
    flag.or(env)
        .filter(|s| !s.is_empty())
        .unwrap_or(DEFAULT_IFNAME)
        .to_owned()
}

/// Formats a result as upstream's `result.Print()`: Go's `json.MarshalIndent` with four
/// spaces, fields in the spec's order, no trailing newline. Go never omits the (struct)
/// `dns` field of a result, so an empty one is printed as `{}`; and Go escapes `<`, `>`,
/// `&`, U+2028 and U+2029 in strings.
pub fn format_result(result: &cni_exec::result::VersionedResult) -> String {
    use cni_exec::result::VersionedResult as R;
    let (text, dns_empty) = match result {
        R::V100(r) => (pretty(r), r.dns.is_empty()),
        R::V040(r) => (pretty(r), r.dns.is_empty()),
        R::V020(r) => (pretty(r), r.dns.is_empty()),
    };
    let text = go_escape(&text);
    if dns_empty && let Some(body) = text.strip_suffix("\n}") {
        return format!("{body},\n    \"dns\": {{}}\n}}");
    }
    text
}

/// Go's `encoding/json` HTML-safe escaping. Outside strings JSON holds none of these
/// characters, so replacing them everywhere only touches strings.
fn go_escape(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

fn pretty<T: serde::Serialize>(value: &T) -> String {
    let mut out = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
    // Serializing the result types cannot fail: all keys are strings.
    let _ = value.serialize(&mut ser);
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Invocation {
        match parse_cli(args.iter().copied()) {
            Cli::Run(i) => i,
            other => panic!("{args:?}: {other:?}"),
        }
    }

    #[test]
    fn cli_verbs_and_usage() {
        let i = run(&["add", "mynet", "/run/netns/x"]);
        assert_eq!(i.verb, Verb::Add);
        assert_eq!(i.net, "mynet");
        assert_eq!(i.netns, "/run/netns/x");
        assert_eq!(i.ifname, None);
        for (s, v) in [
            ("check", Verb::Check),
            ("del", Verb::Del),
            ("gc", Verb::Gc),
            ("status", Verb::Status),
        ] {
            assert_eq!(run(&[s, "n", "ns"]).verb, v);
        }
        // Extra arguments are ignored, as upstream.
        assert_eq!(run(&["del", "n", "ns", "extra"]).netns, "ns");
        assert_eq!(parse_cli(Vec::<String>::new()), Cli::Usage);
        assert_eq!(parse_cli(["add", "n"]), Cli::Usage);
        assert_eq!(parse_cli(["bogus", "n", "ns"]), Cli::Usage);
        assert_eq!(parse_cli(["-h"]), Cli::Help);
        assert_eq!(parse_cli(["add", "--help"]), Cli::Help);
        assert_eq!(parse_cli(["add", "n", "ns", "-i"]), Cli::Usage);
    }

    #[test]
    fn cli_ifname_flag() {
        assert_eq!(
            run(&["-i", "net1", "add", "n", "ns"]).ifname.as_deref(),
            Some("net1")
        );
        assert_eq!(
            run(&["add", "n", "ns", "--ifname=net2"]).ifname.as_deref(),
            Some("net2")
        );
        assert_eq!(run(&["add", "--ifname", "", "n", "ns"]).ifname, None);
    }

    #[test]
    fn ifname_precedence() {
        assert_eq!(ifname(None, None), "eth0");
        assert_eq!(ifname(None, Some("")), "eth0");
        assert_eq!(ifname(None, Some("net0")), "net0");
        assert_eq!(ifname(Some("net1"), Some("net0")), "net1");
    }

    #[test]
    fn usage_text() {
        let u = usage("cnitool");
        assert!(u.starts_with("cnitool: Add, check, remove, gc or status network"));
        assert!(u.contains("  cnitool add    <net> <netns>\n"));
        assert!(u.contains("  cnitool status <net> <netns>\n"));
        // Upstream's five lines plus our `conformance` line.
        assert!(u.contains("  cnitool conformance <net> [<netns>]"));
        assert_eq!(u.lines().count(), 7);
    }

    #[test]
    fn cni_args() {
        assert_eq!(parse_cni_args("").unwrap(), vec![]);
        assert_eq!(
            parse_cni_args("IgnoreUnknown=1;K8S_POD_NAME=p").unwrap(),
            vec![
                ("IgnoreUnknown".to_owned(), "1".to_owned()),
                ("K8S_POD_NAME".to_owned(), "p".to_owned())
            ]
        );
        for bad in ["A", "A=", "=b", "A=b=c", "A=1;", "A=1;;B=2"] {
            let e = parse_cni_args(bad).unwrap_err();
            assert!(e.starts_with("invalid CNI_ARGS pair \""), "{bad}: {e}");
        }
        assert_eq!(
            parse_cni_args("A=1;B").unwrap_err(),
            "invalid CNI_ARGS pair \"B\""
        );
    }

    #[test]
    fn cap_args() {
        assert!(parse_cap_args("").unwrap().is_empty());
        assert!(parse_cap_args("null").unwrap().is_empty());
        let m = parse_cap_args(r#"{"portMappings":[{"hostPort":8080}]}"#).unwrap();
        assert_eq!(m["portMappings"][0]["hostPort"], 8080);
        assert!(parse_cap_args("[1]").unwrap_err().contains("an array"));
        assert!(parse_cap_args("{").unwrap_err().starts_with("CAP_ARGS: "));
    }

    #[test]
    fn path_list() {
        assert!(split_path_list("").is_empty());
        assert_eq!(
            split_path_list("/a:/b"),
            vec![PathBuf::from("/a"), PathBuf::from("/b")]
        );
        assert_eq!(split_path_list("/a::/b").len(), 3);
    }

    #[test]
    fn absolute_is_lexical() {
        let cwd = Path::new("/home/u");
        assert_eq!(absolute("/run/netns/x", cwd), PathBuf::from("/run/netns/x"));
        assert_eq!(absolute("ns", cwd), PathBuf::from("/home/u/ns"));
        assert_eq!(absolute("../ns/./a/", cwd), PathBuf::from("/home/ns/a"));
        assert_eq!(
            absolute("//run//netns/x", cwd),
            PathBuf::from("/run/netns/x")
        );
        assert_eq!(absolute("/../..", cwd), PathBuf::from("/"));
    }

    #[test]
    fn container_id_is_upstreams() {
        // `printf /var/run/netns/testing | sha512sum` starts 77383ca0a0715733ca6f.
        let id = container_id("/var/run/netns/testing");
        assert_eq!(id, "cnitool-77383ca0a0715733ca6f");
        assert_ne!(id, container_id("/var/run/netns/other"));
        assert_eq!(id, container_id("/var/run/netns/testing"));
    }

    #[test]
    fn result_printed_as_go_does() {
        let r = cni_exec::result::VersionedResult::from_slice(
            br#"{"cniVersion":"1.0.0","interfaces":[{"name":"eth0","sandbox":"/run/netns/x"}],
                "ips":[{"interface":0,"address":"10.1.2.3/24","gateway":"10.1.2.1"}]}"#,
        )
        .unwrap();
        let text = format_result(&r);
        assert!(
            text.starts_with("{\n    \"cniVersion\": \"1.0.0\",\n    \"interfaces\": [\n        {"),
            "{text}"
        );
        assert!(text.ends_with(",\n    \"dns\": {}\n}"), "{text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["ips"][0]["address"], "10.1.2.3/24");
        let order: Vec<usize> = ["cniVersion", "interfaces", "ips", "dns"]
            .iter()
            .map(|k| text.find(&format!("\"{k}\"")).unwrap())
            .collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{text}");
    }

    #[test]
    fn result_strings_escaped_as_go_does() {
        let r = cni_exec::result::VersionedResult::from_slice(
            br#"{"cniVersion":"1.0.0","dns":{"domain":"a<b>&c"}}"#,
        )
        .unwrap();
        let text = format_result(&r);
        assert!(
            text.contains(r#""domain": "a\u003cb\u003e\u0026c""#),
            "{text}"
        );
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["dns"]["domain"], "a<b>&c");
    }

    #[test]
    fn result_020_keeps_dns() {
        let r = cni_exec::result::VersionedResult::from_slice(
            br#"{"cniVersion":"0.2.0","ip4":{"ip":"10.1.2.3/24"}}"#,
        )
        .unwrap();
        let text = format_result(&r);
        assert!(
            text.starts_with("{\n    \"cniVersion\": \"0.2.0\",\n    \"ip4\": {"),
            "{text}"
        );
        assert!(text.ends_with("\n    },\n    \"dns\": {}\n}"), "{text}");
    }
}
