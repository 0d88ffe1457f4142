//! `httpGet` probes, as `pkg/probe/http/{http.go,request.go}` with Go's `net/http`
//! client behaviour.
//!
//! - The URL is `<scheme>://<host>:<port><path>` (`formatURL`): the path defaults to
//!   `/`, IPv6 hosts are bracketed, the path is escaped as Go's `url.URL` does.
//! - Headers: `User-Agent: kube-probe/x.y` and `Accept: */*` unless the probe sets them;
//!   a probe header with an empty value removes the default; a `Host` header sets the
//!   request's host; repeated headers are sent in order.
//! - Transport: a new connection per attempt (`Connection: close`), no proxy, no
//!   compression (no `Accept-Encoding`), `SO_LINGER` 1 s, and for HTTPS no certificate
//!   verification (the kubelet's `InsecureSkipVerify`: pods serve self-signed or
//!   cluster-internal certificates, so a probe checks liveness, not identity). The
//!   handshake signatures are still checked, as Go does.
//! - The timeout bounds the whole attempt, redirects and body read included (Go's
//!   `Client.Timeout`).
//! - Redirects (`RedirectChecker(followNonLocalRedirects=false)` in `http.go` on top of
//!   Go's `Client.Do`): 301/302/303/307/308 with a `Location` are followed while the
//!   target's host name equals the original's; a redirect to another host name is not
//!   followed and its 3xx response is the result. At the tenth redirect response the
//!   client stops with `stopped after 10 redirects` (Go's `len(via) >= 10`: nine
//!   redirects are followed, ten requests sent) and the probe fails.
//! - Result (`DoHTTPProbe`): 200-299 Success (output: the body), 300-399 Warning
//!   (`Probe terminated redirects, Response body: <body>`), anything else Failure
//!   (`HTTP probe failed with statuscode: N`, never the body, kubernetes #99425). At
//!   most 10 KiB of the body are read; truncation is not an error. A transport error or
//!   timeout is a Failure with Go's message shape: `Get "<url>": <reason>`.
//!
//! Deviations from the kubelet, all minor:
//! - HTTP/1.1 only: over TLS we offer ALPN `http/1.1` where Go's transport (configured
//!   for HTTP/2 by `SetTransportDefaults`) also offers `h2`.
//! - Reasons that come from the Rust stack are not Go's words: TLS failures read
//!   `tls: <rustls error>`, a connection closed before a response reads `EOF` (as Go),
//!   other HTTP-level errors carry hyper's text.
//! - A timeout while connecting reads as Go ≥ 1.23 reports it
//!   (`context deadline exceeded (Client.Timeout exceeded while awaiting headers)`);
//!   older Go printed the dial error before the parenthesis.
//! - Query strings keep their bytes except those that cannot appear in a request line
//!   (controls, space, `"`, `<`, `>`), which are percent-encoded; Go writes them raw.
//! - User information in a `Location` (`user:pass@host`) is dropped, not sent as basic
//!   authentication.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http_body_util::{BodyExt as _, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

use super::tcp::{self, os_error_text};
use super::{MAX_OUTPUT_BYTES, capped_text, go_quote, join_host_port};
use crate::outcome::{ProbeError, ProbeOutcome};
use crate::spec::Scheme;

/// Go's default redirect limit, kept by the kubelet's redirect checker.
const MAX_REDIRECTS: usize = 10;

/// The message of a timeout before the response headers (Go's `Client.Timeout`).
const TIMEOUT_AWAITING_HEADERS: &str =
    "context deadline exceeded (Client.Timeout exceeded while awaiting headers)";

/// The error of a timeout while reading the body (an error upstream, not a failure).
const TIMEOUT_READING_BODY: &str =
    "context deadline exceeded (Client.Timeout or context cancellation while reading body)";

// ---------------------------------------------------------------------------------
// URLs
// ---------------------------------------------------------------------------------

/// A request URL as Go's `url.URL` holds it: the authority as written (so an explicit
/// `:80` stays in the `Host` header, as in Go), the path already escaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ProbeUrl {
    /// Lowercase scheme (`http`, `https`, or whatever a `Location` said).
    scheme: String,
    /// `host[:port]`, IPv6 literals bracketed; no user information.
    authority: String,
    /// The escaped path: empty or starting with `/`.
    path: String,
    /// The raw query; `Some("")` for a lone `?`.
    query: Option<String>,
    /// The fragment (kept for messages, never sent).
    fragment: Option<String>,
}

impl std::fmt::Display for ProbeUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}{}", self.scheme, self.authority, self.path)?;
        if let Some(q) = &self.query {
            write!(f, "?{q}")?;
        }
        if let Some(frag) = &self.fragment {
            write!(f, "#{frag}")?;
        }
        Ok(())
    }
}

impl ProbeUrl {
    /// The URL of an `httpGet` probe, as `formatURL` in `request.go`: the path is
    /// parsed as a URL reference whose scheme and host are then replaced; a path that
    /// does not parse is used, escaped, as the path.
    pub(super) fn for_probe(scheme: Scheme, host: &str, port: u16, path: &str) -> Self {
        let scheme = match scheme {
            Scheme::Http => "http",
            Scheme::Https => "https",
        };
        let (path, query, fragment) = match parse_reference(path) {
            Ok(r) => (escaped_path(&r.path), r.query, r.fragment),
            Err(_) => (escape_path_bytes(path.as_bytes()), None, None),
        };
        let path = if path.is_empty() || path.starts_with('/') {
            path
        } else {
            format!("/{path}")
        };
        Self {
            scheme: scheme.to_owned(),
            authority: join_host_port(host, port),
            path,
            query: query.map(|q| escape_query(&q)),
            fragment: fragment.filter(|f| !f.is_empty()),
        }
    }

    /// Go's `URL.Hostname()`: the host without port and brackets.
    pub(super) fn hostname(&self) -> &str {
        split_host_port(&self.authority).0
    }

    /// The port to dial: the explicit one, else the scheme's default.
    fn dial_port(&self) -> Result<u16, String> {
        let invalid = || format!("dial tcp: address {}: invalid port", self.authority);
        match split_host_port(&self.authority).1 {
            Some(p) if !p.is_empty() => p.parse::<u16>().map_err(|_| invalid()),
            _ => match self.scheme.as_str() {
                "https" => Ok(443),
                _ => Ok(80),
            },
        }
    }

    /// The request line's target: the path (`/` when empty) and the query.
    pub(super) fn request_target(&self) -> String {
        let mut target = if self.path.is_empty() {
            "/".to_owned()
        } else {
            self.path.clone()
        };
        if let Some(q) = &self.query {
            target.push('?');
            target.push_str(q);
        }
        target
    }

    /// Resolve a `Location` value against this URL (Go's `URL.Parse` of a reference,
    /// i.e. RFC 3986 section 5.2 with Go's dot-segment removal).
    pub(super) fn join(&self, location: &str) -> Result<(ProbeUrl, bool), String> {
        let r = parse_reference(location)?;
        let relative = r.scheme.is_none();
        let url = if r.scheme.is_some() || r.authority.is_some() {
            ProbeUrl {
                scheme: r.scheme.unwrap_or_else(|| self.scheme.clone()),
                authority: r.authority.unwrap_or_default(),
                path: resolve_path(&escaped_path(&r.path), ""),
                query: r.query.map(|q| escape_query(&q)),
                fragment: r.fragment.filter(|f| !f.is_empty()),
            }
        } else {
            let inherit = r.path.is_empty() && r.query.is_none();
            let (query, fragment) = if inherit {
                (
                    self.query.clone(),
                    r.fragment
                        .filter(|f| !f.is_empty())
                        .or_else(|| self.fragment.clone()),
                )
            } else {
                (
                    r.query.map(|q| escape_query(&q)),
                    r.fragment.filter(|f| !f.is_empty()),
                )
            };
            ProbeUrl {
                scheme: self.scheme.clone(),
                authority: self.authority.clone(),
                path: resolve_path(&self.path, &escaped_path(&r.path)),
                query,
                fragment,
            }
        };
        Ok((url, relative))
    }
}

/// Go's `splitHostPort` for `URL.Hostname()`/`URL.Port()`.
fn split_host_port(authority: &str) -> (&str, Option<&str>) {
    let (mut host, mut port) = (authority, None);
    if let Some(colon) = authority.rfind(':') {
        let candidate = &authority[colon + 1..];
        if candidate.bytes().all(|b| b.is_ascii_digit()) {
            host = &authority[..colon];
            port = Some(candidate);
        }
    }
    if host.len() >= 2 && host.starts_with('[') && host.ends_with(']') {
        host = &host[1..host.len() - 1];
    }
    (host, port)
}

/// A URL reference split as RFC 3986 (and Go's `url.Parse`) splits it.
#[derive(Debug, Default, PartialEq, Eq)]
struct Reference {
    scheme: Option<String>,
    authority: Option<String>,
    path: String,
    query: Option<String>,
    fragment: Option<String>,
}

/// Parse a URL reference with Go's checks: control characters, a leading `:`, and
/// invalid `%` escapes in the path or fragment are errors (with Go's texts).
fn parse_reference(s: &str) -> Result<Reference, String> {
    let fail = |what: String| format!("parse {}: {what}", go_quote(s));
    if s.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return Err(fail("net/url: invalid control character in URL".into()));
    }
    let (rest, fragment) = match s.split_once('#') {
        Some((r, f)) => (r, Some(f.to_owned())),
        None => (s, None),
    };
    let (scheme, rest) = split_scheme(rest).map_err(|e| fail(e.into()))?;
    let (rest, query) = match rest.split_once('?') {
        Some((r, q)) => (r, Some(q.to_owned())),
        None => (rest, None),
    };
    let (authority, path) =
        if rest.starts_with("//") && (scheme.is_some() || !rest.starts_with("///")) {
            let after = &rest[2..];
            let end = after.find('/').unwrap_or(after.len());
            let authority = &after[..end];
            // User information is not kept (Go would send it as basic authentication).
            let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            (Some(authority.to_owned()), &after[end..])
        } else {
            (None, rest)
        };
    for part in [Some(path), fragment.as_deref()].into_iter().flatten() {
        if let Some(bad) = invalid_escape(part) {
            return Err(fail(format!("invalid URL escape {}", go_quote(bad))));
        }
    }
    Ok(Reference {
        scheme: scheme.map(|s| s.to_ascii_lowercase()),
        authority,
        path: path.to_owned(),
        query,
        fragment,
    })
}

/// Go's `getScheme`: letters first, then letters, digits, `+`, `-`, `.` up to a `:`.
fn split_scheme(s: &str) -> Result<(Option<&str>, &str), &'static str> {
    for (i, c) in s.bytes().enumerate() {
        match c {
            b'a'..=b'z' | b'A'..=b'Z' => {}
            b'0'..=b'9' | b'+' | b'-' | b'.' if i > 0 => {}
            b':' if i == 0 => return Err("missing protocol scheme"),
            b':' => return Ok((Some(&s[..i]), &s[i + 1..])),
            _ => return Ok((None, s)),
        }
    }
    Ok((None, s))
}

/// The first `%` not followed by two hex digits, as Go reports it (up to 3 bytes).
fn invalid_escape(s: &str) -> Option<&str> {
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let ok = bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit);
            if !ok {
                let end = (i + 3).min(bytes.len());
                return Some(s.get(i..end).unwrap_or(&s[i..]));
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    None
}

/// Go's `URL.EscapedPath()` for a path with valid escapes: the path as written when
/// every byte may appear in a path, else the decoded path escaped again.
fn escaped_path(raw: &str) -> String {
    let valid = raw
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_.~$&+,/:;=@!'()*[]%".contains(&b));
    if valid {
        raw.to_owned()
    } else {
        escape_path_bytes(&percent_decode(raw))
    }
}

/// Go's `escape(s, encodePath)`: everything but unreserved characters and
/// `$&+,/:;=@` is percent-encoded (upper-case hex).
fn escape_path_bytes(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"-_.~$&+,/:;=@".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Percent-encode the query bytes that cannot appear in a request line.
fn escape_query(q: &str) -> String {
    let mut out = String::with_capacity(q.len());
    for c in q.chars() {
        match c {
            '\u{0}'..='\u{20}' | '"' | '<' | '>' | '\u{7f}' => {
                out.push_str(&format!("%{:02X}", c as u32));
            }
            c => out.push(c),
        }
    }
    out
}

/// Decode `%XX` escapes (the caller checked they are valid).
fn percent_decode(s: &str) -> Vec<u8> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(h), Some(l)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            )
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

/// Go's `resolvePath`: merge a reference path into a base path and remove dot
/// segments; a non-empty result always starts with `/`.
fn resolve_path(base: &str, reference: &str) -> String {
    let full = if reference.is_empty() {
        base.to_owned()
    } else if !reference.starts_with('/') {
        let keep = base.rfind('/').map_or(0, |i| i + 1);
        format!("{}{reference}", &base[..keep])
    } else {
        reference.to_owned()
    };
    if full.is_empty() {
        return String::new();
    }
    let relative = full.strip_prefix('/').unwrap_or(&full);
    let segments: Vec<&str> = relative.split('/').collect();
    let mut out: Vec<&str> = Vec::new();
    let mut trailing_slash = false;
    for (i, seg) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        match *seg {
            "." => trailing_slash = last,
            ".." => {
                out.pop();
                trailing_slash = last;
            }
            s => {
                out.push(s);
                trailing_slash = false;
            }
        }
    }
    let mut path = format!("/{}", out.join("/"));
    if trailing_slash && !path.ends_with('/') {
        path.push('/');
    }
    path
}

// ---------------------------------------------------------------------------------
// Headers
// ---------------------------------------------------------------------------------

/// The headers of a probe request, computed from the probe's `httpHeaders` as
/// `newProbeRequest` (request.go) and Go's `Request.write` do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct PlannedHeaders {
    /// The `Host` override: the first `Host` header's value, if not empty.
    pub(super) host: Option<String>,
    /// The header fields in send order: `User-Agent`, then the others sorted by name
    /// (values of one name in the order given), as Go writes them.
    pub(super) fields: Vec<(String, String)>,
    /// Whether the probe sets `Referer` itself (then redirects keep it).
    pub(super) has_referer: bool,
    /// Whether the probe's `Connection` header already asks to close.
    pub(super) wants_close: bool,
}

/// Headers Go's `Request.write` never copies from the header map.
const NOT_COPIED: [&str; 5] = [
    "host",
    "user-agent",
    "content-length",
    "transfer-encoding",
    "trailer",
];

pub(super) fn plan_headers(headers: &[(String, String)], user_agent: &str) -> PlannedHeaders {
    let first = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };

    let host = first("host").filter(|h| !h.is_empty()).map(str::to_owned);

    let mut fields = Vec::new();
    // Set when absent; a present header's first value is sent, an empty one removes it.
    match first("user-agent") {
        None => fields.push(("User-Agent".to_owned(), user_agent.to_owned())),
        Some("") => {}
        Some(v) => fields.push(("User-Agent".to_owned(), v.to_owned())),
    }

    let mut others: Vec<(String, String)> = headers
        .iter()
        .filter(|(n, _)| !NOT_COPIED.iter().any(|x| n.eq_ignore_ascii_case(x)))
        .filter(|(n, _)| !n.eq_ignore_ascii_case("accept"))
        .cloned()
        .collect();
    // `Accept: */*` when absent; an empty first value deletes every `Accept` value.
    match first("accept") {
        None => others.push(("Accept".to_owned(), "*/*".to_owned())),
        Some("") => {}
        Some(_) => others.extend(
            headers
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case("accept"))
                .cloned(),
        ),
    }
    others.sort_by_key(|(n, _)| n.to_ascii_lowercase());
    fields.extend(others);

    PlannedHeaders {
        host,
        fields,
        has_referer: first("referer").is_some(),
        wants_close: first("connection").is_some_and(|v| {
            v.split(',')
                .any(|token| token.trim().eq_ignore_ascii_case("close"))
        }),
    }
}

// ---------------------------------------------------------------------------------
// Redirects and results
// ---------------------------------------------------------------------------------

/// What to do with a response, as Go's `Client.Do` with the kubelet's redirect checker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum RedirectStep {
    /// This response is the result.
    Final,
    /// Send the next request.
    Follow {
        /// Its URL.
        next: ProbeUrl,
        /// Whether the `Location` had no scheme (then a `Host` override is kept).
        relative: bool,
    },
    /// The client stops with an error: a Failure `Get "<url>": <reason>`.
    Stop {
        /// The URL Go's `url.Error` names.
        url: String,
        /// The reason.
        reason: String,
    },
}

/// Decide on a response with `status` and `location`, the `requests_sent`-th request of
/// an attempt that began at `original`.
pub(super) fn redirect_step(
    status: u16,
    location: Option<&str>,
    current: &ProbeUrl,
    original: &ProbeUrl,
    requests_sent: usize,
) -> RedirectStep {
    // Go follows only these (`redirectBehavior`); 300, 304, 305, 306 are results.
    if !matches!(status, 301 | 302 | 303 | 307 | 308) {
        return RedirectStep::Final;
    }
    // A redirect without a `Location` is the result too (Go issues #17773, #49281).
    let Some(location) = location.filter(|l| !l.is_empty()) else {
        return RedirectStep::Final;
    };
    let (next, relative) = match current.join(location) {
        Ok(joined) => joined,
        Err(e) => {
            return RedirectStep::Stop {
                url: current.to_string(),
                reason: format!(
                    "failed to parse Location header {}: {e}",
                    go_quote(location)
                ),
            };
        }
    };
    // The kubelet's checker: another host name ends the chain with this response...
    if next.hostname() != original.hostname() {
        return RedirectStep::Final;
    }
    // ...and Go's limit stops it with an error naming the raw `Location`.
    if requests_sent >= MAX_REDIRECTS {
        return RedirectStep::Stop {
            url: location.to_owned(),
            reason: format!("stopped after {MAX_REDIRECTS} redirects"),
        };
    }
    RedirectStep::Follow { next, relative }
}

/// Go's `refererForURL`: the previous URL, except from HTTPS to HTTP.
pub(super) fn referer_for(last: &ProbeUrl, next: &ProbeUrl) -> Option<String> {
    if last.scheme == "https" && next.scheme == "http" {
        None
    } else {
        Some(last.to_string())
    }
}

/// `DoHTTPProbe`'s verdict on the final response.
pub(super) fn classify(status: u16, body: &str) -> ProbeOutcome {
    match status {
        200..=299 => ProbeOutcome::success(body),
        300..=399 => {
            ProbeOutcome::warning(format!("Probe terminated redirects, Response body: {body}"))
        }
        _ => ProbeOutcome::failure(format!("HTTP probe failed with statuscode: {status}")),
    }
}

// ---------------------------------------------------------------------------------
// I/O
// ---------------------------------------------------------------------------------

/// One `httpGet` attempt.
pub(super) async fn probe(
    tls: &Arc<rustls::ClientConfig>,
    url: ProbeUrl,
    headers: &[(String, String)],
    user_agent: &str,
    timeout: Duration,
) -> Result<ProbeOutcome, ProbeError> {
    let deadline = Instant::now() + timeout;
    let plan = plan_headers(headers, user_agent);
    let original = url.clone();
    let mut current = url;
    let exchanged =
        tokio::time::timeout_at(deadline, follow(tls, &plan, &original, &mut current)).await;
    let mut response = match exchanged {
        Err(_) => {
            return Ok(ProbeOutcome::failure(format!(
                "Get {}: {TIMEOUT_AWAITING_HEADERS}",
                go_quote(&current.to_string())
            )));
        }
        Ok(Err(message)) => return Ok(ProbeOutcome::failure(message)),
        Ok(Ok(response)) => response,
    };
    // Upstream returns a read error as an error (retried, then thrown away), not as a
    // failure.
    let body = match tokio::time::timeout_at(deadline, read_capped(&mut response.body)).await {
        Err(_) => {
            return Err(ProbeError::ResponseBody {
                url: current.to_string(),
                message: TIMEOUT_READING_BODY.to_owned(),
            });
        }
        Ok(Err(e)) => {
            return Err(ProbeError::ResponseBody {
                url: current.to_string(),
                message: hyper_error_text(&e),
            });
        }
        Ok(Ok(body)) => body,
    };
    Ok(classify(response.status, &capped_text(&body)))
}

/// Send requests until a response is the result; the error is the Failure message.
/// `current` always names the request in flight (for the timeout message).
async fn follow(
    tls: &Arc<rustls::ClientConfig>,
    plan: &PlannedHeaders,
    original: &ProbeUrl,
    current: &mut ProbeUrl,
) -> Result<Exchange, String> {
    let mut host = plan.host.clone();
    let mut referer: Option<String> = None;
    let mut sent = 0;
    loop {
        sent += 1;
        let exchange = send_one(tls, current, host.as_deref(), plan, referer.as_deref())
            .await
            .map_err(|reason| format!("Get {}: {reason}", go_quote(&current.to_string())))?;
        let location = exchange
            .headers
            .get(http::header::LOCATION)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        match redirect_step(
            exchange.status,
            location.as_deref(),
            current,
            original,
            sent,
        ) {
            RedirectStep::Final => return Ok(exchange),
            RedirectStep::Stop { url, reason } => {
                return Err(format!("Get {}: {reason}", go_quote(&url)));
            }
            RedirectStep::Follow { next, relative } => {
                drop(exchange);
                // Go keeps a custom Host only through relative redirects.
                let keep_host = relative && host.as_deref().is_some_and(|h| h != current.authority);
                if !keep_host {
                    host = None;
                }
                referer = if plan.has_referer {
                    None
                } else {
                    referer_for(current, &next)
                };
                *current = next;
            }
        }
    }
}

/// A response whose headers arrived; the connection lives as long as it does.
struct Exchange {
    status: u16,
    headers: http::HeaderMap,
    body: Incoming,
    _connection: AbortOnDrop,
}

/// Aborts the connection task when the exchange is dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn send_one(
    tls: &Arc<rustls::ClientConfig>,
    url: &ProbeUrl,
    host: Option<&str>,
    plan: &PlannedHeaders,
    referer: Option<&str>,
) -> Result<Exchange, String> {
    let secure = match url.scheme.as_str() {
        "http" => false,
        "https" => true,
        other => return Err(format!("unsupported protocol scheme {}", go_quote(other))),
    };
    let request = build_request(url, host, plan, referer)?;
    let hostname = url.hostname();
    if hostname.is_empty() {
        return Err("http: no Host in request URL".to_owned());
    }
    let port = url.dial_port()?;
    let stream = tcp::dial(hostname, port, None)
        .await
        .map_err(|e| e.to_string())?;
    if secure {
        let name = server_name(hostname)?;
        let stream = tokio_rustls::TlsConnector::from(Arc::clone(tls))
            .connect(name, stream)
            .await
            .map_err(|e| tls_error_text(&e))?;
        exchange(stream, request).await
    } else {
        exchange(stream, request).await
    }
}

/// The request, with Go's validation of header names and values.
fn build_request(
    url: &ProbeUrl,
    host: Option<&str>,
    plan: &PlannedHeaders,
    referer: Option<&str>,
) -> Result<http::Request<Empty<Bytes>>, String> {
    let target = url.request_target();
    let uri = http::Uri::builder()
        .path_and_query(target.as_str())
        .build()
        .map_err(|_| format!("net/http: invalid request URI {}", go_quote(&target)))?;
    let mut request = http::Request::new(Empty::<Bytes>::new());
    *request.uri_mut() = uri;
    let headers = request.headers_mut();
    let host = host.unwrap_or(&url.authority);
    let host = HeaderValue::from_str(host).map_err(|_| "http: invalid Host header".to_owned())?;
    headers.insert(http::header::HOST, host);
    for (name, value) in &plan.fields {
        let header = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("net/http: invalid header field name {}", go_quote(name)))?;
        // Go trims the value's surrounding white space when writing it.
        let value =
            HeaderValue::from_bytes(value.trim_matches([' ', '\t']).as_bytes()).map_err(|_| {
                format!(
                    "net/http: invalid header field value for {}",
                    go_quote(name)
                )
            })?;
        headers.append(header, value);
    }
    if let Some(referer) = referer
        && let Ok(value) = HeaderValue::from_str(referer)
    {
        headers.insert(http::header::REFERER, value);
    }
    if !plan.wants_close {
        headers.append(http::header::CONNECTION, HeaderValue::from_static("close"));
    }
    Ok(request)
}

async fn exchange<IO>(io: IO, request: http::Request<Empty<Bytes>>) -> Result<Exchange, String>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::Builder::new()
        .title_case_headers(true)
        .handshake(TokioIo::new(io))
        .await
        .map_err(|e| hyper_error_text(&e))?;
    let connection = AbortOnDrop(tokio::spawn(async move {
        let _ = connection.await;
    }));
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| hyper_error_text(&e))?;
    let (parts, body) = response.into_parts();
    Ok(Exchange {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body,
        _connection: connection,
    })
}

/// Read at most [`MAX_OUTPUT_BYTES`] of the body (Go's `ReadAtMost`); the rest is
/// never read.
async fn read_capped(body: &mut Incoming) -> Result<Vec<u8>, hyper::Error> {
    let mut out = Vec::new();
    while out.len() < MAX_OUTPUT_BYTES {
        match body.frame().await {
            None => break,
            Some(Err(e)) => return Err(e),
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    let take = data.len().min(MAX_OUTPUT_BYTES - out.len());
                    out.extend_from_slice(&data[..take]);
                }
            }
        }
    }
    Ok(out)
}

/// A hyper error in Go's words where they are known (`EOF` for a connection closed
/// before a response), else hyper's text with its cause.
fn hyper_error_text(e: &hyper::Error) -> String {
    if e.is_incomplete_message() {
        return "EOF".to_owned();
    }
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        let part = match cause.downcast_ref::<std::io::Error>() {
            Some(io) => os_error_text(io),
            None => cause.to_string(),
        };
        text.push_str(": ");
        text.push_str(&part);
        source = cause.source();
    }
    text
}

/// A TLS handshake failure: `tls: <rustls error>`, or the OS error text.
fn tls_error_text(e: &std::io::Error) -> String {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(tls) => format!("tls: {tls}"),
        None => os_error_text(e),
    }
}

fn server_name(host: &str) -> Result<ServerName<'static>, String> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(ServerName::IpAddress(ip.into()));
    }
    ServerName::try_from(host.to_owned())
        .map_err(|_| format!("tls: invalid server name {}", go_quote(host)))
}

// ---------------------------------------------------------------------------------
// TLS without certificate verification
// ---------------------------------------------------------------------------------

/// The client TLS configuration of HTTPS probes: any certificate is accepted (the
/// kubelet's `InsecureSkipVerify: true`), but the handshake signatures are verified
/// against the presented certificate, as Go does.
pub(super) fn insecure_tls_config() -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(AcceptAnyCertificate {
        algorithms: provider.signature_verification_algorithms,
    });
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("the ring provider supports rustls' default protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

#[derive(Debug)]
struct AcceptAnyCertificate {
    algorithms: rustls::crypto::WebPkiSupportedAlgorithms,
}

impl rustls::client::danger::ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(scheme: Scheme, host: &str, port: u16, path: &str) -> ProbeUrl {
        ProbeUrl::for_probe(scheme, host, port, path)
    }

    fn base() -> ProbeUrl {
        url(Scheme::Http, "10.0.0.1", 8080, "/a/b/c?q=1")
    }

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn probe_urls_are_built_as_format_url() {
        let cases = [
            (
                Scheme::Http,
                "10.0.0.1",
                80,
                "/healthz",
                "http://10.0.0.1:80/healthz",
            ),
            (
                Scheme::Https,
                "10.0.0.1",
                8443,
                "/",
                "https://10.0.0.1:8443/",
            ),
            (Scheme::Http, "10.0.0.1", 80, "", "http://10.0.0.1:80"),
            (
                Scheme::Http,
                "10.0.0.1",
                80,
                "healthz",
                "http://10.0.0.1:80/healthz",
            ),
            (Scheme::Http, "::1", 8080, "/", "http://[::1]:8080/"),
            (Scheme::Http, "fd00::2", 80, "/x", "http://[fd00::2]:80/x"),
            (
                Scheme::Http,
                "pod.local",
                80,
                "/ready?full=1",
                "http://pod.local:80/ready?full=1",
            ),
            (Scheme::Http, "h", 80, "/a?", "http://h:80/a?"),
            (Scheme::Http, "h", 80, "/a#frag", "http://h:80/a#frag"),
            (Scheme::Http, "h", 80, "/a b", "http://h:80/a%20b"),
            (
                Scheme::Http,
                "h",
                80,
                "/h\u{e9}llo",
                "http://h:80/h%C3%A9llo",
            ),
            (Scheme::Http, "h", 80, "/%41", "http://h:80/%41"),
            (Scheme::Http, "h", 80, "/%41 b", "http://h:80/A%20b"),
            (
                Scheme::Http,
                "h",
                80,
                "/ok/!$&'()*+,;=:@[]~",
                "http://h:80/ok/!$&'()*+,;=:@[]~",
            ),
            // A path that does not parse is the literal path, escaped (Go's fallback).
            (Scheme::Http, "h", 80, "/100%", "http://h:80/100%25"),
            (
                Scheme::Http,
                "h",
                80,
                "/bad%zz?x=1",
                "http://h:80/bad%25zz%3Fx=1",
            ),
            (Scheme::Http, "h", 80, "/a\nb", "http://h:80/a%0Ab"),
            // Scheme and host in the path are replaced, as formatURL does.
            (Scheme::Http, "h", 80, "//other/x", "http://h:80/x"),
            (
                Scheme::Https,
                "h",
                443,
                "http://other:1/y?z",
                "https://h:443/y?z",
            ),
            // Query bytes that cannot be sent raw are escaped.
            (
                Scheme::Http,
                "h",
                80,
                "/q?a b\"<>",
                "http://h:80/q?a%20b%22%3C%3E",
            ),
        ];
        for (scheme, host, port, path, want) in cases {
            assert_eq!(url(scheme, host, port, path).to_string(), want, "{path:?}");
        }
    }

    #[test]
    fn request_targets_and_host_parts() {
        let u = url(Scheme::Http, "::1", 8080, "");
        assert_eq!(u.request_target(), "/");
        assert_eq!(u.hostname(), "::1");
        assert_eq!(u.dial_port(), Ok(8080));
        let u = url(Scheme::Http, "h", 80, "/a?b=c#d");
        assert_eq!(u.request_target(), "/a?b=c");
        let u = url(Scheme::Http, "h", 80, "/a?");
        assert_eq!(u.request_target(), "/a?");
        let (u, _) = base().join("https://other/x").unwrap();
        assert_eq!((u.hostname(), u.dial_port()), ("other", Ok(443)));
        let (u, _) = base().join("http://other/x").unwrap();
        assert_eq!(u.dial_port(), Ok(80));
        let (u, _) = base().join("http://other:99999/x").unwrap();
        assert_eq!(
            u.dial_port(),
            Err("dial tcp: address other:99999: invalid port".to_owned())
        );
    }

    #[test]
    fn split_host_port_is_gos() {
        assert_eq!(split_host_port("h:80"), ("h", Some("80")));
        assert_eq!(split_host_port("h"), ("h", None));
        assert_eq!(split_host_port("h:"), ("h", Some("")));
        assert_eq!(split_host_port("[::1]:80"), ("::1", Some("80")));
        assert_eq!(split_host_port("[::1]"), ("::1", None));
    }

    #[test]
    fn locations_resolve_as_rfc3986_with_gos_rules() {
        // Base http://10.0.0.1:8080/a/b/c?q=1 (RFC 3986 section 5.4 style).
        let cases = [
            ("g", "http://10.0.0.1:8080/a/b/g", true),
            ("./g", "http://10.0.0.1:8080/a/b/g", true),
            ("g/", "http://10.0.0.1:8080/a/b/g/", true),
            ("/g", "http://10.0.0.1:8080/g", true),
            ("//g", "http://g", true),
            ("?y", "http://10.0.0.1:8080/a/b/c?y", true),
            ("g?y", "http://10.0.0.1:8080/a/b/g?y", true),
            ("#s", "http://10.0.0.1:8080/a/b/c?q=1#s", true),
            ("g#s", "http://10.0.0.1:8080/a/b/g#s", true),
            (".", "http://10.0.0.1:8080/a/b/", true),
            ("./", "http://10.0.0.1:8080/a/b/", true),
            ("..", "http://10.0.0.1:8080/a/", true),
            ("../", "http://10.0.0.1:8080/a/", true),
            ("../g", "http://10.0.0.1:8080/a/g", true),
            ("../..", "http://10.0.0.1:8080/", true),
            ("../../g", "http://10.0.0.1:8080/g", true),
            ("../../../g", "http://10.0.0.1:8080/g", true),
            ("/./g", "http://10.0.0.1:8080/g", true),
            ("/../g", "http://10.0.0.1:8080/g", true),
            ("g.", "http://10.0.0.1:8080/a/b/g.", true),
            ("..g", "http://10.0.0.1:8080/a/b/..g", true),
            ("./../g", "http://10.0.0.1:8080/a/g", true),
            ("g/./h", "http://10.0.0.1:8080/a/b/g/h", true),
            ("g/../h", "http://10.0.0.1:8080/a/b/h", true),
            ("/a//b", "http://10.0.0.1:8080/a//b", true),
            ("https://10.0.0.1:8443/x", "https://10.0.0.1:8443/x", false),
            ("HTTP://Other/x/../y", "http://Other/y", false),
            ("http://u:p@other:81/z", "http://other:81/z", false),
            ("http://other", "http://other", false),
            ("/sp ace", "http://10.0.0.1:8080/sp%20ace", true),
        ];
        for (location, want, relative) in cases {
            let (got, rel) = base().join(location).unwrap();
            assert_eq!(
                (got.to_string(), rel),
                (want.to_owned(), relative),
                "{location:?}"
            );
        }
    }

    #[test]
    fn bad_locations_fail_with_gos_parse_errors() {
        assert_eq!(
            base().join("/a%zzb").unwrap_err(),
            r#"parse "/a%zzb": invalid URL escape "%zz""#
        );
        assert_eq!(
            base().join("/a%4").unwrap_err(),
            r#"parse "/a%4": invalid URL escape "%4""#
        );
        assert_eq!(
            base().join(":foo").unwrap_err(),
            r#"parse ":foo": missing protocol scheme"#
        );
        assert_eq!(
            base().join("/a\r\nb").unwrap_err(),
            r#"parse "/a\r\nb": net/url: invalid control character in URL"#
        );
    }

    #[test]
    fn resolve_path_matches_go() {
        let cases = [
            ("", "", ""),
            ("/a/b", "", "/a/b"),
            ("", "x", "/x"),
            ("/a/b", "c", "/a/c"),
            ("/a/b/", "c", "/a/b/c"),
            ("/a/b", "/c/../d", "/d"),
            ("/a/b", "..", "/"),
            ("/a/b/c", "..", "/a/"),
            ("/a/b", ".", "/a/"),
            ("/", "../../x", "/x"),
        ];
        for (base, reference, want) in cases {
            assert_eq!(
                resolve_path(base, reference),
                want,
                "{base:?} + {reference:?}"
            );
        }
    }

    #[test]
    fn default_headers_are_user_agent_and_accept() {
        let plan = plan_headers(&[], "kube-probe/1.36");
        assert_eq!(
            plan.fields,
            h(&[("User-Agent", "kube-probe/1.36"), ("Accept", "*/*")])
        );
        assert_eq!(plan.host, None);
        assert!(!plan.has_referer && !plan.wants_close);
    }

    #[test]
    fn probe_headers_override_and_are_sent_sorted_with_repeats() {
        let plan = plan_headers(
            &h(&[
                ("X-Custom", "one"),
                ("accept", "application/json"),
                ("user-agent", "my-agent"),
                ("X-Custom", "two"),
                ("Authorization", "Bearer t"),
                ("X-Empty", ""),
            ]),
            "kube-probe/1.36",
        );
        assert_eq!(
            plan.fields,
            h(&[
                ("User-Agent", "my-agent"),
                ("accept", "application/json"),
                ("Authorization", "Bearer t"),
                ("X-Custom", "one"),
                ("X-Custom", "two"),
                ("X-Empty", ""),
            ])
        );
    }

    #[test]
    fn empty_values_remove_the_defaults() {
        let plan = plan_headers(&h(&[("User-Agent", ""), ("Accept", "")]), "kube-probe/1.36");
        assert!(plan.fields.is_empty(), "{:?}", plan.fields);
        // An empty first Accept deletes every Accept value, as Go's Header.Del.
        let plan = plan_headers(
            &h(&[("Accept", ""), ("Accept", "text/plain")]),
            "kube-probe/1.36",
        );
        assert_eq!(plan.fields, h(&[("User-Agent", "kube-probe/1.36")]));
        // A later User-Agent value is ignored (Go writes Header.Get, the first).
        let plan = plan_headers(
            &h(&[("User-Agent", "first"), ("User-Agent", "second")]),
            "kube-probe/1.36",
        );
        assert_eq!(
            plan.fields[0],
            ("User-Agent".to_owned(), "first".to_owned())
        );
        assert_eq!(plan.fields.len(), 2);
    }

    #[test]
    fn host_header_sets_the_host_and_is_not_a_field() {
        let plan = plan_headers(
            &h(&[("Host", "example.test"), ("host", "ignored.test")]),
            "ua",
        );
        assert_eq!(plan.host.as_deref(), Some("example.test"));
        assert!(
            plan.fields
                .iter()
                .all(|(n, _)| !n.eq_ignore_ascii_case("host"))
        );
        let plan = plan_headers(&h(&[("Host", "")]), "ua");
        assert_eq!(plan.host, None);
    }

    #[test]
    fn headers_go_never_copies_are_dropped() {
        let plan = plan_headers(
            &h(&[
                ("Content-Length", "5"),
                ("Transfer-Encoding", "chunked"),
                ("Trailer", "x"),
                ("Referer", "http://r/"),
                ("Connection", "keep-alive, Close"),
            ]),
            "ua",
        );
        assert_eq!(
            plan.fields,
            h(&[
                ("User-Agent", "ua"),
                ("Accept", "*/*"),
                ("Connection", "keep-alive, Close"),
                ("Referer", "http://r/"),
            ])
        );
        assert!(plan.has_referer && plan.wants_close);
    }

    #[test]
    fn requests_carry_host_fields_and_connection_close() {
        let plan = plan_headers(&h(&[("X-A", "  padded\t")]), "ua");
        let u = url(Scheme::Http, "10.0.0.1", 80, "/x?y");
        let req = build_request(&u, None, &plan, Some("http://10.0.0.1:80/prev")).unwrap();
        assert_eq!(req.uri().to_string(), "/x?y");
        let hdr = |n: &str| {
            req.headers()
                .get_all(n)
                .iter()
                .map(|v| v.to_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(hdr("host"), ["10.0.0.1:80"]);
        assert_eq!(hdr("user-agent"), ["ua"]);
        assert_eq!(hdr("accept"), ["*/*"]);
        assert_eq!(hdr("x-a"), ["padded"]);
        assert_eq!(hdr("referer"), ["http://10.0.0.1:80/prev"]);
        assert_eq!(hdr("connection"), ["close"]);
        assert!(req.headers().get("accept-encoding").is_none());
        let req = build_request(&u, Some("example.test"), &plan, None).unwrap();
        assert_eq!(req.headers()["host"], "example.test");
    }

    #[test]
    fn invalid_headers_fail_with_gos_messages() {
        let u = url(Scheme::Http, "h", 80, "/");
        let bad_name = plan_headers(&h(&[("Bad Name", "x")]), "ua");
        assert_eq!(
            build_request(&u, None, &bad_name, None).unwrap_err(),
            r#"net/http: invalid header field name "Bad Name""#
        );
        let bad_value = plan_headers(&h(&[("X-A", "a\r\nb")]), "ua");
        assert_eq!(
            build_request(&u, None, &bad_value, None).unwrap_err(),
            r#"net/http: invalid header field value for "X-A""#
        );
        let plan = plan_headers(&[], "ua");
        assert_eq!(
            build_request(&u, Some("bad\nhost"), &plan, None).unwrap_err(),
            "http: invalid Host header"
        );
    }

    #[test]
    fn same_host_redirects_are_followed_until_the_tenth() {
        let original = base();
        for sent in 1..MAX_REDIRECTS {
            match redirect_step(302, Some("/next"), &original, &original, sent) {
                RedirectStep::Follow { next, relative } => {
                    assert_eq!(next.to_string(), "http://10.0.0.1:8080/next");
                    assert!(relative);
                }
                other => panic!("request {sent}: {other:?}"),
            }
        }
        assert_eq!(
            redirect_step(302, Some("/next"), &original, &original, MAX_REDIRECTS),
            RedirectStep::Stop {
                url: "/next".into(),
                reason: "stopped after 10 redirects".into()
            }
        );
    }

    #[test]
    fn only_the_five_redirect_codes_are_followed() {
        let original = base();
        for status in [301, 302, 303, 307, 308] {
            assert!(
                matches!(
                    redirect_step(status, Some("/x"), &original, &original, 1),
                    RedirectStep::Follow { .. }
                ),
                "{status}"
            );
        }
        for status in [200, 300, 304, 305, 306, 399, 404, 500] {
            assert_eq!(
                redirect_step(status, Some("/x"), &original, &original, 1),
                RedirectStep::Final,
                "{status}"
            );
        }
        assert_eq!(
            redirect_step(302, None, &original, &original, 1),
            RedirectStep::Final
        );
        assert_eq!(
            redirect_step(302, Some(""), &original, &original, 1),
            RedirectStep::Final
        );
    }

    #[test]
    fn another_host_name_ends_the_chain_with_the_redirect() {
        let original = base();
        for location in ["http://localhost:8080/x", "//other/x", "https://10.0.0.2/"] {
            assert_eq!(
                redirect_step(302, Some(location), &original, &original, 1),
                RedirectStep::Final,
                "{location}"
            );
        }
        // Same host name, other port or scheme: followed (Go compares Hostname()).
        for location in ["http://10.0.0.1:9090/x", "https://10.0.0.1/x"] {
            assert!(matches!(
                redirect_step(302, Some(location), &original, &original, 1),
                RedirectStep::Follow {
                    relative: false,
                    ..
                }
            ));
        }
        // The host check comes before the limit: a foreign tenth redirect is a result.
        assert_eq!(
            redirect_step(
                302,
                Some("http://other/"),
                &original,
                &original,
                MAX_REDIRECTS
            ),
            RedirectStep::Final
        );
    }

    #[test]
    fn an_unparsable_location_stops_naming_the_current_url() {
        let original = base();
        assert_eq!(
            redirect_step(302, Some("/%zz"), &original, &original, 1),
            RedirectStep::Stop {
                url: "http://10.0.0.1:8080/a/b/c?q=1".into(),
                reason: r#"failed to parse Location header "/%zz": parse "/%zz": invalid URL escape "%zz""#.into()
            }
        );
    }

    #[test]
    fn referer_is_the_previous_url_except_https_to_http() {
        let http = url(Scheme::Http, "h", 80, "/a");
        let https = url(Scheme::Https, "h", 443, "/b");
        assert_eq!(referer_for(&http, &https).as_deref(), Some("http://h:80/a"));
        assert_eq!(referer_for(&http, &http).as_deref(), Some("http://h:80/a"));
        assert_eq!(referer_for(&https, &http), None);
    }

    #[test]
    fn results_follow_do_http_probe() {
        assert_eq!(classify(200, "ok"), ProbeOutcome::success("ok"));
        assert_eq!(classify(204, ""), ProbeOutcome::success(""));
        assert_eq!(classify(299, "x"), ProbeOutcome::success("x"));
        assert_eq!(
            classify(302, "moved"),
            ProbeOutcome::warning("Probe terminated redirects, Response body: moved")
        );
        assert_eq!(
            classify(399, ""),
            ProbeOutcome::warning("Probe terminated redirects, Response body: ")
        );
        for status in [100, 199, 400, 404, 500, 503] {
            assert_eq!(
                classify(status, "secret body"),
                ProbeOutcome::failure(format!("HTTP probe failed with statuscode: {status}"))
            );
        }
    }

    #[test]
    fn server_names_are_ips_or_dns_names() {
        assert!(matches!(
            server_name("10.0.0.1"),
            Ok(ServerName::IpAddress(_))
        ));
        assert!(matches!(server_name("::1"), Ok(ServerName::IpAddress(_))));
        assert!(matches!(
            server_name("pod.example"),
            Ok(ServerName::DnsName(_))
        ));
        assert!(server_name("bad name").is_err());
    }

    #[test]
    fn the_tls_config_offers_http1_only() {
        let config = insecure_tls_config();
        assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
    }
}
