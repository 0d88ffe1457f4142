//! The ipsets of IPVS mode: kube-proxy's names, types, comments and member texts, and
//! their `ipset restore` input.
//!
//! The iptables rules of IPVS mode are a fixed handful; which addresses and ports they
//! apply to lives in these sets (kube-proxy's `ipsetInfo` in `pkg/proxy/ipvs/proxier.go`
//! and the names in `pkg/proxy/ipvs/ipset.go`). IPv6 sets are named `KUBE-6-…`, cut to
//! ipset's 31 characters, as kube-proxy names them.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::process::{Command, Stdio};

use crate::exec::Target;
use crate::model::IpFamily;
use crate::{Error, Result};

/// An ipset type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum IpSetType {
    /// `hash:ip`.
    HashIp,
    /// `hash:ip,port`: members `10.0.0.1,tcp:80`.
    HashIpPort,
    /// `hash:ip,port,ip`: members `10.0.0.1,tcp:80,10.0.0.1`.
    HashIpPortIp,
    /// `hash:ip,port,net`: members `10.0.0.1,tcp:80,203.0.113.0/25`.
    HashIpPortNet,
    /// `bitmap:port` (range 0-65535): members `30080`.
    BitmapPort,
}

impl IpSetType {
    /// The type as ipset spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            IpSetType::HashIp => "hash:ip",
            IpSetType::HashIpPort => "hash:ip,port",
            IpSetType::HashIpPortIp => "hash:ip,port,ip",
            IpSetType::HashIpPortNet => "hash:ip,port,net",
            IpSetType::BitmapPort => "bitmap:port",
        }
    }
}

/// The base (IPv4) names of kube-proxy's ipsets.
pub mod names {
    /// Local endpoints `ip,proto:port,ip`, for hairpin masquerade.
    pub const LOOP_BACK: &str = "KUBE-LOOP-BACK";
    /// ClusterIP `ip,proto:port`.
    pub const CLUSTER_IP: &str = "KUBE-CLUSTER-IP";
    /// External IPs of Cluster-policy services.
    pub const EXTERNAL_IP: &str = "KUBE-EXTERNAL-IP";
    /// External IPs of Local-policy services.
    pub const EXTERNAL_IP_LOCAL: &str = "KUBE-EXTERNAL-IP-LOCAL";
    /// LoadBalancer IPs.
    pub const LOAD_BALANCER: &str = "KUBE-LOAD-BALANCER";
    /// LoadBalancer IPs with `loadBalancerSourceRanges`.
    pub const LOAD_BALANCER_FW: &str = "KUBE-LOAD-BALANCER-FW";
    /// LoadBalancer IPs of Local-policy services.
    pub const LOAD_BALANCER_LOCAL: &str = "KUBE-LOAD-BALANCER-LOCAL";
    /// LoadBalancer IP, port and allowed source IP (the LB IP itself).
    pub const LOAD_BALANCER_SOURCE_IP: &str = "KUBE-LOAD-BALANCER-SOURCE-IP";
    /// LoadBalancer IP, port and allowed source CIDR.
    pub const LOAD_BALANCER_SOURCE_CIDR: &str = "KUBE-LOAD-BALANCER-SOURCE-CIDR";
    /// TCP NodePorts.
    pub const NODE_PORT_TCP: &str = "KUBE-NODE-PORT-TCP";
    /// TCP NodePorts of Local-policy services.
    pub const NODE_PORT_LOCAL_TCP: &str = "KUBE-NODE-PORT-LOCAL-TCP";
    /// UDP NodePorts.
    pub const NODE_PORT_UDP: &str = "KUBE-NODE-PORT-UDP";
    /// UDP NodePorts of Local-policy services.
    pub const NODE_PORT_LOCAL_UDP: &str = "KUBE-NODE-PORT-LOCAL-UDP";
    /// SCTP NodePorts as `nodeIP,sctp:port` (`hash:ip,port`; bitmap:port cannot hold
    /// SCTP).
    pub const NODE_PORT_SCTP: &str = "KUBE-NODE-PORT-SCTP-HASH";
    /// SCTP NodePorts of Local-policy services.
    pub const NODE_PORT_LOCAL_SCTP: &str = "KUBE-NODE-PORT-LOCAL-SCTP-HASH";
    /// Health check node ports.
    pub const HEALTH_CHECK_NODE_PORT: &str = "KUBE-HEALTH-CHECK-NODE-PORT";
    /// Every address bound to the dummy interface.
    pub const IPVS_IPS: &str = "KUBE-IPVS-IPS";
}

/// One of kube-proxy's ipsets: base name, type and the comment its iptables rule
/// carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpSetSpec {
    /// The IPv4 name.
    pub base_name: &'static str,
    /// The type.
    pub kind: IpSetType,
    /// The comment (used on the iptables rule matching the set).
    pub comment: &'static str,
}

/// kube-proxy's ipsets in its own order (`ipsetInfo`).
pub const IPSETS: [IpSetSpec; 17] = [
    spec(
        names::LOOP_BACK,
        IpSetType::HashIpPortIp,
        "Kubernetes endpoints dst ip:port, source ip for solving hairpin purpose",
    ),
    spec(
        names::CLUSTER_IP,
        IpSetType::HashIpPort,
        "Kubernetes service cluster ip + port for masquerade purpose",
    ),
    spec(
        names::EXTERNAL_IP,
        IpSetType::HashIpPort,
        "Kubernetes service external ip + port for masquerade and filter purpose",
    ),
    spec(
        names::EXTERNAL_IP_LOCAL,
        IpSetType::HashIpPort,
        "Kubernetes service external ip + port with externalTrafficPolicy=local",
    ),
    spec(
        names::LOAD_BALANCER,
        IpSetType::HashIpPort,
        "Kubernetes service lb portal",
    ),
    spec(
        names::LOAD_BALANCER_FW,
        IpSetType::HashIpPort,
        "Kubernetes service load balancer ip + port for load balancer with sourceRange",
    ),
    spec(
        names::LOAD_BALANCER_LOCAL,
        IpSetType::HashIpPort,
        "Kubernetes service load balancer ip + port with externalTrafficPolicy=local",
    ),
    spec(
        names::LOAD_BALANCER_SOURCE_IP,
        IpSetType::HashIpPortIp,
        "Kubernetes service load balancer ip + port + source IP for packet filter purpose",
    ),
    spec(
        names::LOAD_BALANCER_SOURCE_CIDR,
        IpSetType::HashIpPortNet,
        "Kubernetes service load balancer ip + port + source cidr for packet filter purpose",
    ),
    spec(
        names::NODE_PORT_TCP,
        IpSetType::BitmapPort,
        "Kubernetes nodeport TCP port for masquerade purpose",
    ),
    spec(
        names::NODE_PORT_LOCAL_TCP,
        IpSetType::BitmapPort,
        "Kubernetes nodeport TCP port with externalTrafficPolicy=local",
    ),
    spec(
        names::NODE_PORT_UDP,
        IpSetType::BitmapPort,
        "Kubernetes nodeport UDP port for masquerade purpose",
    ),
    spec(
        names::NODE_PORT_LOCAL_UDP,
        IpSetType::BitmapPort,
        "Kubernetes nodeport UDP port with externalTrafficPolicy=local",
    ),
    spec(
        names::NODE_PORT_SCTP,
        IpSetType::HashIpPort,
        "Kubernetes nodeport SCTP port for masquerade purpose with type 'hash ip:port'",
    ),
    spec(
        names::NODE_PORT_LOCAL_SCTP,
        IpSetType::HashIpPort,
        "Kubernetes nodeport SCTP port with externalTrafficPolicy=local with type 'hash ip:port'",
    ),
    spec(
        names::HEALTH_CHECK_NODE_PORT,
        IpSetType::BitmapPort,
        "Kubernetes health check node port",
    ),
    spec(
        names::IPVS_IPS,
        IpSetType::HashIp,
        "Addresses on the ipvs interface",
    ),
];

const fn spec(base_name: &'static str, kind: IpSetType, comment: &'static str) -> IpSetSpec {
    IpSetSpec {
        base_name,
        kind,
        comment,
    }
}

/// The longest ipset name (`IPSET_MAXNAMELEN` - 1).
pub const MAX_NAME_LEN: usize = 31;

/// The name of a set for a family: the base name for IPv4; for IPv6 `KUBE-` becomes
/// `KUBE-6-` and the result is cut to 31 characters
/// (`KUBE-6-LOAD-BALANCER-SOURCE-CID`), as kube-proxy names them.
pub fn set_name(base: &str, family: IpFamily) -> String {
    match family {
        IpFamily::V4 => base.to_owned(),
        IpFamily::V6 => {
            let mut name = match base.strip_prefix("KUBE-") {
                Some(rest) => format!("KUBE-6-{rest}"),
                None => base.to_owned(),
            };
            name.truncate(MAX_NAME_LEN);
            name
        }
    }
}

/// One ipset with the members a plan wants in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpSet {
    /// The name (family-specific).
    pub name: String,
    /// The IPv4 name it derives from.
    pub base_name: &'static str,
    /// The type.
    pub kind: IpSetType,
    /// The family of its addresses.
    pub family: IpFamily,
    /// The comment of its iptables rule.
    pub comment: &'static str,
    /// The members, as `ipset add` takes them, sorted.
    pub entries: BTreeSet<String>,
}

impl IpSet {
    /// An empty set of a spec for a family.
    pub fn new(spec: &IpSetSpec, family: IpFamily) -> Self {
        Self {
            name: set_name(spec.base_name, family),
            base_name: spec.base_name,
            kind: spec.kind,
            family,
            comment: spec.comment,
            entries: BTreeSet::new(),
        }
    }

    /// The `create` line, as kube-proxy's `ipset create` arguments: hash types get
    /// `family inet|inet6 hashsize 1024 maxelem 65536`, `bitmap:port` gets
    /// `range 0-65535`; `-exist` makes it idempotent.
    pub fn create_line(&self) -> String {
        match self.kind {
            IpSetType::BitmapPort => {
                format!(
                    "create {} {} range 0-65535 -exist",
                    self.name,
                    self.kind.as_str()
                )
            }
            _ => format!(
                "create {} {} family {} hashsize 1024 maxelem 65536 -exist",
                self.name,
                self.kind.as_str(),
                match self.family {
                    IpFamily::V4 => "inet",
                    IpFamily::V6 => "inet6",
                }
            ),
        }
    }

    /// Whether the set has no member.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The `--match-set` direction flags kube-proxy uses for this type's single-rule
    /// matches: `dst` for `bitmap:port` and `hash:ip`, `dst,dst` otherwise.
    pub fn dst_match(&self) -> &'static str {
        match self.kind {
            IpSetType::BitmapPort | IpSetType::HashIp => "dst",
            _ => "dst,dst",
        }
    }
}

/// `ipset restore` input: every set created (`-exist`), then each one flushed and
/// filled. One restore replaces the members of every set.
pub fn restore_input(sets: &[IpSet]) -> String {
    let mut out = String::new();
    for set in sets {
        out.push_str(&set.create_line());
        out.push('\n');
    }
    for set in sets {
        let _ = writeln!(out, "flush {}", set.name);
        for entry in &set.entries {
            let _ = writeln!(out, "add {} {}", set.name, entry);
        }
    }
    out
}

/// Run `ipset restore` with `input` on stdin on a target: the host, or a named network
/// namespace (`ip netns exec NAME ipset restore`; ipsets are per namespace). Blocking,
/// like the rest of IPVS mode's side effects.
///
/// Errors: [`Error::Unsupported`] when the `ipset` command is not installed (Debian
/// package `ipset`) or the kernel has no ip_set support; [`Error::Command`] with the
/// argv, exit status, stderr and the input lines around the one ipset names otherwise.
pub fn load(input: &str, target: &Target) -> Result<()> {
    let argv = netns_argv(target.netns_name(), &["ipset", "restore"]);
    match run(&argv, Some(input)) {
        Ok(_) => Ok(()),
        Err(RunError::NotFound(program)) if program == "ip" => Err(Error::Unsupported(
            "the `ip` command is not installed (Debian package `iproute2`)".into(),
        )),
        Err(RunError::NotFound(_)) => Err(Error::Unsupported(
            "the `ipset` command is not installed (Debian package `ipset`); IPVS mode needs it \
             to load its sets"
                .into(),
        )),
        Err(RunError::Failed(err)) => {
            if let Error::Command { stderr, .. } = &err
                && (stderr.contains("Cannot open session to kernel")
                    || stderr.contains("Kernel support protocol versions"))
            {
                return Err(Error::Unsupported(format!(
                    "the kernel has no ip_set support (CONFIG_IP_SET): {stderr}"
                )));
            }
            Err(err)
        }
    }
}

/// `argv` prefixed with `ip netns exec NAME` when a namespace is given.
pub(crate) fn netns_argv(netns: Option<&str>, argv: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    if let Some(ns) = netns {
        out.extend(["ip", "netns", "exec", ns].map(str::to_owned));
    }
    out.extend(argv.iter().map(|s| (*s).to_owned()));
    out
}

/// Why [`run`] failed.
pub(crate) enum RunError {
    /// The program does not exist: the first word of the argv (`ip` for a namespace),
    /// or, under `ip netns exec`, the program after it.
    NotFound(String),
    /// It ran and failed, or could not be started for another reason.
    Failed(Error),
}

/// Run a command with optional stdin; its stdout on success. A failure carries the
/// argv, exit status, stderr and, when stderr names an input line (`line 3:`), the
/// input lines around it.
pub(crate) fn run(argv: &[String], stdin: Option<&str>) -> std::result::Result<String, RunError> {
    use std::io::Write as _;
    let Some((program, args)) = argv.split_first() else {
        return Err(RunError::Failed(Error::Unsupported("empty command".into())));
    };
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(RunError::NotFound(program.clone()));
        }
        Err(e) => {
            return Err(RunError::Failed(Error::Command {
                argv: argv.to_vec(),
                status: format!("not started: {e}"),
                stderr: String::new(),
                context: Vec::new(),
            }));
        }
    };
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // A command that exits early closes the pipe; its status tells why.
        let _ = pipe.write_all(input.as_bytes());
    }
    let out = child.wait_with_output().map_err(|e| {
        RunError::Failed(Error::Command {
            argv: argv.to_vec(),
            status: format!("not waited for: {e}"),
            stderr: String::new(),
            context: Vec::new(),
        })
    })?;
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    // `ip netns exec` exits 255 with "exec of "ipset" failed: No such file or directory"
    // when the program is missing.
    if stderr.contains("exec of") && stderr.contains("No such file or directory") {
        return Err(RunError::NotFound(argv.get(4).cloned().unwrap_or_default()));
    }
    let context = stdin
        .and_then(|input| failing_line(&stderr).map(|n| context_lines(input, n)))
        .unwrap_or_default();
    Err(RunError::Failed(Error::Command {
        argv: argv.to_vec(),
        status: out.status.to_string(),
        stderr,
        context,
    }))
}

/// The 1-based input line a restore command complains about (`line 12:`, or ipset's
/// `Error in line 12:`).
fn failing_line(stderr: &str) -> Option<usize> {
    let lower = stderr.to_ascii_lowercase();
    let at = lower.find("line ")?;
    let digits: String = lower[at + 5..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// The input lines around line `n` (1-based), numbered, `n>` marking line `n` (the
/// format of [`crate::exec`]'s errors).
fn context_lines(input: &str, n: usize) -> Vec<String> {
    let lines: Vec<&str> = input.lines().collect();
    let lo = n.saturating_sub(3).max(1);
    let hi = (n + 2).min(lines.len());
    (lo..=hi)
        .filter_map(|i| {
            lines
                .get(i - 1)
                .map(|l| format!("{i}{} {l}", if i == n { ">" } else { ":" }))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_names_are_prefixed_and_cut() {
        assert_eq!(
            set_name(names::CLUSTER_IP, IpFamily::V6),
            "KUBE-6-CLUSTER-IP"
        );
        assert_eq!(
            set_name(names::LOAD_BALANCER_SOURCE_CIDR, IpFamily::V6),
            "KUBE-6-LOAD-BALANCER-SOURCE-CID"
        );
        assert_eq!(
            set_name(names::NODE_PORT_LOCAL_SCTP, IpFamily::V6),
            "KUBE-6-NODE-PORT-LOCAL-SCTP-HAS"
        );
        for spec in IPSETS {
            assert!(set_name(spec.base_name, IpFamily::V6).len() <= MAX_NAME_LEN);
            assert_eq!(set_name(spec.base_name, IpFamily::V4), spec.base_name);
        }
    }

    #[test]
    fn create_lines_match_kube_proxys_arguments() {
        let cluster = IpSet::new(&IPSETS[1], IpFamily::V4);
        assert_eq!(
            cluster.create_line(),
            "create KUBE-CLUSTER-IP hash:ip,port family inet hashsize 1024 maxelem 65536 -exist"
        );
        let np = IpSet::new(&IPSETS[9], IpFamily::V6);
        assert_eq!(
            np.create_line(),
            "create KUBE-6-NODE-PORT-TCP bitmap:port range 0-65535 -exist"
        );
    }

    #[test]
    fn restore_creates_then_flushes_and_fills() {
        let mut a = IpSet::new(&IPSETS[1], IpFamily::V4);
        a.entries.insert("10.96.0.1,tcp:443".into());
        let b = IpSet::new(&IPSETS[16], IpFamily::V4);
        assert_eq!(
            restore_input(&[a, b]),
            "create KUBE-CLUSTER-IP hash:ip,port family inet hashsize 1024 maxelem 65536 -exist\n\
             create KUBE-IPVS-IPS hash:ip family inet hashsize 1024 maxelem 65536 -exist\n\
             flush KUBE-CLUSTER-IP\n\
             add KUBE-CLUSTER-IP 10.96.0.1,tcp:443\n\
             flush KUBE-IPVS-IPS\n"
        );
    }

    #[test]
    fn failing_lines_are_found() {
        assert_eq!(failing_line("iptables-restore: line 3 failed"), Some(3));
        assert_eq!(failing_line("ipset v7.17: Error in line 12: x"), Some(12));
        assert_eq!(failing_line("nothing"), None);
        assert_eq!(
            context_lines("a\nb\nc\nd\ne\nf\ng", 4),
            ["1: a", "2: b", "3: c", "4> d", "5: e", "6: f"]
        );
    }
}
