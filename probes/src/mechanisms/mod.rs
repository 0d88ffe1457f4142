//! The probe mechanisms (HTTP, TCP, gRPC, exec) behind [`DefaultProber`], with the
//! kubelet's semantics and messages.
//!
//! Each mechanism follows its upstream counterpart in `kubernetes/kubernetes`:
//! `pkg/probe/http` (with Go's `net/http` client behaviour for redirects and timeouts),
//! `pkg/probe/tcp`, `pkg/probe/grpc`, `pkg/probe/exec`, the dialer of
//! `pkg/probe/dialer_others.go` (`SO_LINGER` of 1 s) and the dispatch of
//! `pkg/kubelet/prober/prober.go`. The pure parts (URLs, headers, redirect decisions,
//! messages, port resolution) are plain functions with unit tests; the I/O is a thin
//! layer around them.
//!
//! # What each mechanism does
//!
//! | Mechanism | Success | Failure output (examples) |
//! |---|---|---|
//! | `httpGet` | 200-299 (Warning for an unfollowed 3xx: `Probe terminated redirects, Response body: ...`) | `HTTP probe failed with statuscode: 500`; `Get "http://10.0.0.5:8080/healthz": context deadline exceeded (Client.Timeout exceeded while awaiting headers)`; `Get "/loop": stopped after 10 redirects` |
//! | `tcpSocket` | the connect completes | `dial tcp 10.0.0.5:5432: connect: connection refused`; `dial tcp 10.0.0.5:5432: i/o timeout` |
//! | `grpc` | `SERVING` | `service unhealthy (responded with "NOT_SERVING")`; `timeout: failed to connect service "10.0.0.5:9090" within 1s: context deadline exceeded` |
//! | `exec` | exit 0 | the command's output; `command timed out: "sh -c sleep 5" timed out after 1s` |
//!
//! HTTP details: `User-Agent: kube-probe/x.y` and `Accept: */*` unless the probe sets
//! them (an empty value removes them), a `Host` header overrides the host, one
//! connection per attempt (`Connection: close`), no proxy, no compression, no
//! certificate verification for HTTPS (the kubelet's `InsecureSkipVerify`), same-host
//! redirects followed as Go's client does (nine; the tenth redirect fails the probe),
//! at most 10 KiB of body read. Errors that mean the probe could not run (no pod IP, an
//! unknown named port, no exec runner, a runtime error, a failed body read) are
//! [`ProbeError`]s, which the kubelet retries and never counts as failures.
//!
//! Where the output cannot be byte-for-byte Go's (an error text that comes from Rust's
//! TLS or HTTP stack rather than Go's), the message keeps Go's shape (`Get "<url>": ...`,
//! `dial tcp <addr>: ...`). Known differences: HTTPS offers ALPN `http/1.1` only (the
//! kubelet's transport also offers `h2`); TLS failures read `tls: <rustls error>`; the
//! gRPC `User-Agent` ends in tonic's name instead of grpc-go's.

mod exec;
mod grpc;
mod http;
mod tcp;

use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::outcome::{ProbeError, ProbeOutcome};
use crate::prober::{ExecRunner, Prober};
use crate::spec::{ContainerPort, PortRef, ProbeHandler, ProbeSpec, ProbeTarget};
use crate::timing::ProbeKind;

/// The Kubernetes minor release whose kubelet the defaults follow (`kube-probe/1.36`).
pub const DEFAULT_KUBELET_VERSION: (u32, u32) = (1, 36);

/// The most output kept from an HTTP body or an exec command: 10 KiB, as the
/// kubelet's `maxRespBodyLength` (`pkg/probe/http`) and `maxReadLength`
/// (`pkg/probe/exec`). Truncation is not an error.
pub const MAX_OUTPUT_BYTES: usize = 10 * 1024;

/// The default [`Prober`]: HTTP, TCP and gRPC probes from this process's network
/// namespace (as the kubelet probes from the node), and exec probes through an
/// [`ExecRunner`].
///
/// - The host of HTTP and TCP probes defaults to the pod IP; gRPC probes always use
///   the pod IP. No pod IP and no host is [`ProbeError::NoHost`].
/// - Named ports are resolved through [`ProbeTarget::ports`]; a missing name is
///   [`ProbeError::NamedPortNotFound`].
/// - Every attempt is bounded by `timing.timeout_seconds`.
/// - The `User-Agent` of HTTP and gRPC probes is `kube-probe/<major>.<minor>`
///   ([`DEFAULT_KUBELET_VERSION`] unless set with [`kubelet_version`](Self::kubelet_version)).
/// - Exec probes need an [`ExecRunner`] ([`exec_runner`](Self::exec_runner)); without one
///   they are [`ProbeError::Exec`].
///
/// ```
/// use pod_probes::mechanisms::DefaultProber;
///
/// let prober = DefaultProber::new().kubelet_version(1, 35);
/// assert_eq!(prober.user_agent(), "kube-probe/1.35");
/// assert_eq!(DefaultProber::default().user_agent(), "kube-probe/1.36");
/// ```
#[derive(Clone)]
pub struct DefaultProber {
    user_agent: String,
    exec_runner: Option<Arc<dyn ExecRunner>>,
    tls: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for DefaultProber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DefaultProber")
            .field("user_agent", &self.user_agent)
            .field(
                "exec_runner",
                &self.exec_runner.as_ref().map(|_| "ExecRunner"),
            )
            .finish_non_exhaustive()
    }
}

impl Default for DefaultProber {
    fn default() -> Self {
        Self::new()
    }
}

impl DefaultProber {
    /// A prober with the defaults: `kube-probe/1.36`, no exec runner.
    pub fn new() -> Self {
        let (major, minor) = DEFAULT_KUBELET_VERSION;
        Self {
            user_agent: user_agent(major, minor),
            exec_runner: None,
            tls: http::insecure_tls_config(),
        }
    }

    /// The kubelet version the `User-Agent` names: `kube-probe/<major>.<minor>`.
    #[must_use]
    pub fn kubelet_version(mut self, major: u32, minor: u32) -> Self {
        self.user_agent = user_agent(major, minor);
        self
    }

    /// The runner for exec probes (node-core backs it with CRI `ExecSync`).
    #[must_use]
    pub fn exec_runner(mut self, runner: Arc<dyn ExecRunner>) -> Self {
        self.exec_runner = Some(runner);
        self
    }

    /// The `User-Agent` sent by HTTP and gRPC probes.
    pub fn user_agent(&self) -> &str {
        &self.user_agent
    }
}

#[async_trait::async_trait]
impl Prober for DefaultProber {
    async fn probe(
        &self,
        kind: ProbeKind,
        spec: &ProbeSpec,
        target: &ProbeTarget,
    ) -> Result<ProbeOutcome, ProbeError> {
        let timeout = probe_timeout(spec.timing.timeout_seconds)?;
        let outcome = match &spec.handler {
            ProbeHandler::Exec { command } => {
                exec::probe(
                    self.exec_runner.as_deref(),
                    &target.container_id,
                    command,
                    timeout,
                )
                .await?
            }
            ProbeHandler::HttpGet {
                scheme,
                host,
                port,
                path,
                headers,
            } => {
                let port = resolve_port(port, &target.ports)?;
                let host = probe_host(host.as_deref(), target.pod_ip)?;
                let url = http::ProbeUrl::for_probe(*scheme, &host, port, path);
                http::probe(&self.tls, url, headers, &self.user_agent, timeout).await?
            }
            ProbeHandler::TcpSocket { host, port } => {
                let port = resolve_port(port, &target.ports)?;
                let host = probe_host(host.as_deref(), target.pod_ip)?;
                tcp::probe(&host, port, timeout).await
            }
            ProbeHandler::Grpc { port, service } => {
                let ip = target.pod_ip.ok_or(ProbeError::NoHost)?;
                grpc::probe(ip, *port, service.as_deref(), &self.user_agent, timeout).await
            }
        };
        tracing::debug!(
            probe = %kind,
            container = %target.container_id,
            result = %outcome.result,
            output = %outcome.output,
            "probe attempt"
        );
        Ok(outcome)
    }
}

/// `kube-probe/<major>.<minor>`, as `pkg/probe/http/request.go` `userAgent`.
fn user_agent(major: u32, minor: u32) -> String {
    format!("kube-probe/{major}.{minor}")
}

/// The attempt's time limit; the API requires `timeoutSeconds >= 1` (a zero would mean
/// "no limit" to Go's HTTP client, which we refuse rather than copy).
fn probe_timeout(timeout_seconds: i32) -> Result<Duration, ProbeError> {
    u64::try_from(timeout_seconds)
        .ok()
        .filter(|s| *s >= 1)
        .map(Duration::from_secs)
        .ok_or_else(|| {
            ProbeError::Invalid(format!(
                "timeoutSeconds must be at least 1 (got {timeout_seconds})"
            ))
        })
}

/// The probe's host: its own (`httpGet.host`, `tcpSocket.host`) when set and not
/// empty, else the pod IP.
fn probe_host(host: Option<&str>, pod_ip: Option<IpAddr>) -> Result<String, ProbeError> {
    match host.filter(|h| !h.is_empty()) {
        Some(h) => Ok(h.to_owned()),
        None => pod_ip.map(|ip| ip.to_string()).ok_or(ProbeError::NoHost),
    }
}

/// Resolve a probe port as `pkg/probe/util.go` `ResolveContainerPort`: a number is
/// used as is; a name is looked up among the container's ports and, failing that,
/// read as a number ("maybe it was an int stored as string"). The result must be in
/// 1..=65535.
pub(crate) fn resolve_port(port: &PortRef, ports: &[ContainerPort]) -> Result<u16, ProbeError> {
    let number = match port {
        PortRef::Number(n) => *n,
        PortRef::Name(name) => {
            match ports
                .iter()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
            {
                Some(p) => p.port,
                None => match name.parse::<i64>() {
                    Ok(n) => u16::try_from(n).map_err(|_| invalid_port(n))?,
                    Err(_) => return Err(ProbeError::NamedPortNotFound { name: name.clone() }),
                },
            }
        }
    };
    if number == 0 {
        return Err(invalid_port(0));
    }
    Ok(number)
}

fn invalid_port(n: i64) -> ProbeError {
    ProbeError::Invalid(format!("invalid port number: {n}"))
}

/// `net.JoinHostPort`: IPv6 literals (anything with a colon) are bracketed.
pub(crate) fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Go's `%q` for a string: double quotes, with `"` and `\` escaped and control
/// characters written as escapes.
pub(crate) fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Go's `time.Duration.String()`: `1s`, `1m30s`, `2h0m0s`, `1.5s`, `500ms`, `0s`.
pub(crate) fn go_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".to_owned();
    }
    if nanos < 1_000 {
        return format!("{nanos}ns");
    }
    if nanos < 1_000_000 {
        return format!("{}µs", fraction(nanos, 1_000));
    }
    if nanos < 1_000_000_000 {
        return format!("{}ms", fraction(nanos, 1_000_000));
    }
    let total_secs = d.as_secs();
    let sub = d.subsec_nanos();
    let hours = total_secs / 3600;
    let minutes = (total_secs % 3600) / 60;
    let secs = total_secs % 60;
    let secs = fraction(
        u128::from(secs) * 1_000_000_000 + u128::from(sub),
        1_000_000_000,
    );
    if hours > 0 {
        format!("{hours}h{minutes}m{secs}s")
    } else if minutes > 0 {
        format!("{minutes}m{secs}s")
    } else {
        format!("{secs}s")
    }
}

/// `value / unit` with the fraction's trailing zeros removed (`1500, 1000` -> `1.5`).
fn fraction(value: u128, unit: u128) -> String {
    let whole = value / unit;
    let rest = value % unit;
    if rest == 0 {
        return whole.to_string();
    }
    let width = unit.ilog10() as usize;
    let digits = format!("{rest:0width$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

/// At most [`MAX_OUTPUT_BYTES`] of `bytes`, as text (invalid UTF-8 replaced).
pub(crate) fn capped_text(bytes: &[u8]) -> String {
    let end = bytes.len().min(MAX_OUTPUT_BYTES);
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(name: Option<&str>, port: u16) -> ContainerPort {
        ContainerPort {
            name: name.map(str::to_owned),
            port,
        }
    }

    #[test]
    fn numbers_resolve_to_themselves_and_zero_is_invalid() {
        assert_eq!(resolve_port(&PortRef::Number(8080), &[]), Ok(8080));
        assert_eq!(
            resolve_port(&PortRef::Number(0), &[]),
            Err(ProbeError::Invalid("invalid port number: 0".into()))
        );
    }

    #[test]
    fn names_resolve_through_the_container_ports() {
        let ports = [
            port(None, 9000),
            port(Some("http"), 8080),
            port(Some("grpc"), 9090),
        ];
        assert_eq!(
            resolve_port(&PortRef::Name("http".into()), &ports),
            Ok(8080)
        );
        assert_eq!(
            resolve_port(&PortRef::Name("grpc".into()), &ports),
            Ok(9090)
        );
        assert_eq!(
            resolve_port(&PortRef::Name("metrics".into()), &ports),
            Err(ProbeError::NamedPortNotFound {
                name: "metrics".into()
            })
        );
    }

    #[test]
    fn a_named_port_with_number_zero_is_invalid() {
        let ports = [port(Some("zero"), 0)];
        assert_eq!(
            resolve_port(&PortRef::Name("zero".into()), &ports),
            Err(ProbeError::Invalid("invalid port number: 0".into()))
        );
    }

    #[test]
    fn an_unknown_numeric_name_is_read_as_a_number_as_upstream() {
        assert_eq!(resolve_port(&PortRef::Name("8443".into()), &[]), Ok(8443));
        for bad in ["0", "-1", "70000"] {
            let n: i64 = bad.parse().unwrap();
            assert_eq!(
                resolve_port(&PortRef::Name(bad.into()), &[]),
                Err(ProbeError::Invalid(format!("invalid port number: {n}"))),
                "{bad}"
            );
        }
        // A real name wins over the numeric reading.
        let ports = [port(Some("8443"), 1234)];
        assert_eq!(
            resolve_port(&PortRef::Name("8443".into()), &ports),
            Ok(1234)
        );
    }

    #[test]
    fn host_defaults_to_the_pod_ip() {
        let ip: IpAddr = "10.1.2.3".parse().unwrap();
        assert_eq!(probe_host(None, Some(ip)).unwrap(), "10.1.2.3");
        assert_eq!(probe_host(Some(""), Some(ip)).unwrap(), "10.1.2.3");
        assert_eq!(
            probe_host(Some("example.test"), Some(ip)).unwrap(),
            "example.test"
        );
        assert_eq!(
            probe_host(Some("example.test"), None).unwrap(),
            "example.test"
        );
        assert_eq!(probe_host(None, None), Err(ProbeError::NoHost));
        assert_eq!(probe_host(Some(""), None), Err(ProbeError::NoHost));
        let v6: IpAddr = "fd00::5".parse().unwrap();
        assert_eq!(probe_host(None, Some(v6)).unwrap(), "fd00::5");
    }

    #[test]
    fn timeout_must_be_at_least_one_second() {
        assert_eq!(probe_timeout(1), Ok(Duration::from_secs(1)));
        assert_eq!(probe_timeout(30), Ok(Duration::from_secs(30)));
        for bad in [0, -1] {
            assert!(
                matches!(probe_timeout(bad), Err(ProbeError::Invalid(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn join_host_port_brackets_ipv6() {
        assert_eq!(join_host_port("10.0.0.1", 80), "10.0.0.1:80");
        assert_eq!(join_host_port("example.test", 8080), "example.test:8080");
        assert_eq!(join_host_port("::1", 80), "[::1]:80");
        assert_eq!(join_host_port("fd00::1:2", 443), "[fd00::1:2]:443");
    }

    #[test]
    fn go_quote_matches_go() {
        assert_eq!(go_quote("http://a/b"), r#""http://a/b""#);
        assert_eq!(go_quote(r#"say "hi" \o/"#), r#""say \"hi\" \\o/""#);
        assert_eq!(go_quote("a\nb\tc\r"), r#""a\nb\tc\r""#);
        assert_eq!(go_quote("\u{1}\u{7f}"), r#""\x01\x7f""#);
        assert_eq!(go_quote("\u{85}"), r#""\u0085""#);
        assert_eq!(go_quote("héllo ✓"), "\"héllo ✓\"");
        assert_eq!(go_quote(""), r#""""#);
    }

    #[test]
    fn go_duration_matches_go() {
        let cases = [
            (Duration::ZERO, "0s"),
            (Duration::from_nanos(1), "1ns"),
            (Duration::from_nanos(1_500), "1.5µs"),
            (Duration::from_millis(500), "500ms"),
            (Duration::from_micros(1_250), "1.25ms"),
            (Duration::from_secs(1), "1s"),
            (Duration::from_secs(10), "10s"),
            (Duration::from_millis(1_500), "1.5s"),
            (Duration::from_secs(60), "1m0s"),
            (Duration::from_secs(90), "1m30s"),
            (Duration::from_secs(3600), "1h0m0s"),
            (Duration::from_secs(3661), "1h1m1s"),
            (Duration::from_millis(61_050), "1m1.05s"),
        ];
        for (d, want) in cases {
            assert_eq!(go_duration(d), want, "{d:?}");
        }
    }

    #[test]
    fn capped_text_keeps_at_most_ten_kib() {
        assert_eq!(capped_text(b"ok"), "ok");
        let big = vec![b'x'; MAX_OUTPUT_BYTES + 100];
        assert_eq!(capped_text(&big).len(), MAX_OUTPUT_BYTES);
        let exact = vec![b'y'; MAX_OUTPUT_BYTES];
        assert_eq!(capped_text(&exact).len(), MAX_OUTPUT_BYTES);
        // A multi-byte character cut at the limit becomes a replacement character.
        let mut cut = vec![b'z'; MAX_OUTPUT_BYTES - 1];
        cut.extend_from_slice("é".as_bytes());
        assert!(capped_text(&cut).ends_with('\u{fffd}'));
    }

    #[test]
    fn user_agent_names_the_kubelet_version() {
        assert_eq!(DefaultProber::new().user_agent(), "kube-probe/1.36");
        assert_eq!(
            DefaultProber::new().kubelet_version(1, 29).user_agent(),
            "kube-probe/1.29"
        );
        let debug = format!("{:?}", DefaultProber::new());
        assert!(debug.contains("kube-probe/1.36"), "{debug}");
    }
}
