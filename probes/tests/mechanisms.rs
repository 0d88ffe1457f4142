//! The probe mechanisms against real servers started by each test: a hand-written
//! HTTP/1.1 responder (plain and TLS with a self-signed certificate), tonic gRPC health
//! servers, TCP listeners on loopback, and busybox `httpd` inside a network namespace
//! (root) with a veth pair and an iptables DROP rule for the filtered case. Exec probes
//! use a fake `ExecRunner`.
//!
//! No test asserts on elapsed time; timeouts are observed through their messages.

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pod_probes::{
    ContainerPort, DefaultProber, ExecError, ExecOutput, ExecRunner, PortRef, ProbeError,
    ProbeHandler, ProbeKind, ProbeOutcome, ProbeResult, ProbeSpec, ProbeTarget, ProbeTiming,
    Prober, Scheme,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

// ---------------------------------------------------------------------------------
// Helpers: specs, targets, probing
// ---------------------------------------------------------------------------------

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn timing(timeout_seconds: i32) -> ProbeTiming {
    ProbeTiming {
        timeout_seconds,
        ..ProbeTiming::default()
    }
}

fn http_spec(port: u16, path: &str, headers: &[(&str, &str)], timeout: i32) -> ProbeSpec {
    http_spec_with(Scheme::Http, PortRef::Number(port), path, headers, timeout)
}

fn http_spec_with(
    scheme: Scheme,
    port: PortRef,
    path: &str,
    headers: &[(&str, &str)],
    timeout: i32,
) -> ProbeSpec {
    ProbeSpec {
        handler: ProbeHandler::HttpGet {
            scheme,
            host: None,
            port,
            path: path.to_owned(),
            headers: headers
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect(),
        },
        timing: timing(timeout),
    }
}

fn tcp_spec(port: u16, timeout: i32) -> ProbeSpec {
    ProbeSpec {
        handler: ProbeHandler::TcpSocket {
            host: None,
            port: PortRef::Number(port),
        },
        timing: timing(timeout),
    }
}

fn grpc_spec(port: u16, service: Option<&str>, timeout: i32) -> ProbeSpec {
    ProbeSpec {
        handler: ProbeHandler::Grpc {
            port,
            service: service.map(str::to_owned),
        },
        timing: timing(timeout),
    }
}

fn target(ip: IpAddr) -> ProbeTarget {
    ProbeTarget {
        pod_ip: Some(ip),
        container_id: "c0ffee".to_owned(),
        ports: vec![],
    }
}

async fn probe(spec: &ProbeSpec, target: &ProbeTarget) -> ProbeOutcome {
    DefaultProber::new()
        .probe(ProbeKind::Readiness, spec, target)
        .await
        .unwrap_or_else(|e| panic!("probe errored: {e}"))
}

/// A port with nothing listening: bind, note the port, close.
async fn closed_port(ip: IpAddr) -> u16 {
    let listener = TcpListener::bind(SocketAddr::new(ip, 0)).await.unwrap();
    listener.local_addr().unwrap().port()
}

// ---------------------------------------------------------------------------------
// A minimal HTTP/1.1 server
// ---------------------------------------------------------------------------------

/// A request as the server received it.
#[derive(Debug, Clone)]
struct Seen {
    target: String,
    /// Header names as sent on the wire (case kept), values trimmed.
    headers: Vec<(String, String)>,
}

impl Seen {
    fn header(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// What the server answers.
#[derive(Debug, Clone, Default)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// Wait this long before answering.
    delay: Option<Duration>,
    /// Close the connection without answering.
    hang_up: bool,
    /// Send the head and half the body, then stall.
    stall_body: bool,
}

impl Reply {
    fn status(status: u16, body: &str) -> Self {
        Reply {
            status,
            body: body.as_bytes().to_vec(),
            ..Reply::default()
        }
    }

    fn redirect(status: u16, location: &str) -> Self {
        Reply {
            status,
            headers: vec![("Location".to_owned(), location.to_owned())],
            body: b"moved".to_vec(),
            ..Reply::default()
        }
    }
}

type Handler = Arc<dyn Fn(&Seen) -> Reply + Send + Sync>;

/// An HTTP server on a loopback port, stopped (task aborted) when dropped.
struct HttpServer {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: JoinHandle<()>,
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl HttpServer {
    async fn start(handler: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> Self {
        Self::start_on(LOOPBACK, None, Arc::new(handler)).await
    }

    async fn start_tls(handler: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> Self {
        Self::start_on(LOOPBACK, Some(self_signed_acceptor()), Arc::new(handler)).await
    }

    async fn start_on(
        ip: IpAddr,
        tls: Option<tokio_rustls::TlsAcceptor>,
        handler: Handler,
    ) -> Self {
        let listener = TcpListener::bind(SocketAddr::new(ip, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&seen);
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (handler, record, tls) =
                    (Arc::clone(&handler), Arc::clone(&record), tls.clone());
                connections.spawn(async move {
                    match tls {
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(stream).await {
                                serve(stream, &*handler, &record).await;
                            }
                        }
                        None => serve(stream, &*handler, &record).await,
                    }
                });
            }
        });
        HttpServer { addr, seen, task }
    }

    fn port(&self) -> u16 {
        self.addr.port()
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// Serve one request on a connection, then close it.
async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    handler: &(dyn Fn(&Seen) -> Reply + Send + Sync),
    record: &Mutex<Vec<Seen>>,
) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
        if head.len() > 64 * 1024 {
            return;
        }
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let mut lines = text.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let target = request_line
        .split(' ')
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    let headers = lines
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.to_owned(), v.trim().to_owned()))
        .collect();
    let seen = Seen { target, headers };
    record.lock().unwrap().push(seen.clone());
    let reply = handler(&seen);
    if let Some(delay) = reply.delay {
        tokio::time::sleep(delay).await;
    }
    if reply.hang_up {
        return;
    }
    let mut out = format!(
        "HTTP/1.1 {} Test\r\nContent-Length: {}\r\nConnection: close\r\n",
        reply.status,
        reply.body.len()
    );
    for (n, v) in &reply.headers {
        out.push_str(&format!("{n}: {v}\r\n"));
    }
    out.push_str("\r\n");
    // The client may stop reading early (the body cap): write errors are expected.
    let _ = stream.write_all(out.as_bytes()).await;
    if reply.stall_body {
        let _ = stream.write_all(&reply.body[..reply.body.len() / 2]).await;
        let _ = stream.flush().await;
        tokio::time::sleep(Duration::from_secs(30)).await;
    }
    let _ = stream.write_all(&reply.body).await;
    let _ = stream.shutdown().await;
}

fn self_signed_acceptor() -> tokio_rustls::TlsAcceptor {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert = certified.cert.der().clone();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert], key)
    .unwrap();
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

// ---------------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn http_status_codes_decide_the_result() {
    let server = HttpServer::start(|seen| {
        let code = seen.target.trim_start_matches("/status/").parse().unwrap();
        Reply::status(code, "the body")
    })
    .await;
    let t = target(LOOPBACK);
    let cases = [
        (200, ProbeOutcome::success("the body")),
        // A 204 has no body whatever the server sends (Go and hyper alike).
        (204, ProbeOutcome::success("")),
        (
            399,
            ProbeOutcome::warning("Probe terminated redirects, Response body: the body"),
        ),
        // A 3xx Go does not follow is the result: a warning.
        (
            300,
            ProbeOutcome::warning("Probe terminated redirects, Response body: the body"),
        ),
        (
            400,
            ProbeOutcome::failure("HTTP probe failed with statuscode: 400"),
        ),
        (
            404,
            ProbeOutcome::failure("HTTP probe failed with statuscode: 404"),
        ),
        (
            500,
            ProbeOutcome::failure("HTTP probe failed with statuscode: 500"),
        ),
    ];
    for (code, want) in cases {
        let got = probe(
            &http_spec(server.port(), &format!("/status/{code}"), &[], 5),
            &t,
        )
        .await;
        assert_eq!(got, want, "status {code}");
    }
}

#[tokio::test]
async fn http_status_199_is_informational_and_then_a_failure() {
    // 1xx responses are informational for Go and hyper alike: the client waits for the
    // final response, and a server that closes instead makes the probe fail.
    let server = HttpServer::start(|_| Reply::status(199, "")).await;
    let got = probe(&http_spec(server.port(), "/", &[], 5), &target(LOOPBACK)).await;
    assert_eq!(got.result, ProbeResult::Failure, "{got:?}");
    assert_eq!(
        got.output,
        format!("Get \"http://127.0.0.1:{}/\": EOF", server.port())
    );
}

#[tokio::test]
async fn http_same_host_redirect_is_followed() {
    let server = HttpServer::start(|seen| match seen.target.as_str() {
        "/old" => Reply::redirect(302, "/new?x=1"),
        "/new?x=1" => Reply::status(200, "arrived"),
        other => Reply::status(404, other),
    })
    .await;
    let got = probe(&http_spec(server.port(), "/old", &[], 5), &target(LOOPBACK)).await;
    assert_eq!(got, ProbeOutcome::success("arrived"));
    let seen = server.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].target, "/new?x=1");
    // The second request keeps the probe's headers and names the first as Referer.
    assert_eq!(seen[1].header("User-Agent"), ["kube-probe/1.36"]);
    assert_eq!(seen[1].header("Accept"), ["*/*"]);
    assert_eq!(
        seen[1].header("Referer"),
        [format!("http://127.0.0.1:{}/old", server.port()).as_str()]
    );
}

#[tokio::test]
async fn http_redirect_to_another_host_is_a_warning() {
    // "localhost" is another host name than the probe's 127.0.0.1: not followed.
    let server = HttpServer::start(|seen| match seen.target.as_str() {
        "/" => Reply::redirect(301, "http://localhost/elsewhere"),
        other => Reply::status(500, other),
    })
    .await;
    let got = probe(&http_spec(server.port(), "/", &[], 5), &target(LOOPBACK)).await;
    assert_eq!(
        got,
        ProbeOutcome::warning("Probe terminated redirects, Response body: moved")
    );
    assert!(got.result.is_passing());
    assert_eq!(server.seen().len(), 1);
}

/// `/hop/N` redirects to `/hop/N-1`; `/hop/0` answers 200.
async fn hop_server() -> HttpServer {
    HttpServer::start(|seen| {
        let n: u32 = seen.target.trim_start_matches("/hop/").parse().unwrap();
        if n == 0 {
            Reply::status(200, "landed")
        } else {
            Reply::redirect(302, &format!("/hop/{}", n - 1))
        }
    })
    .await
}

#[tokio::test]
async fn http_nine_redirects_are_followed() {
    let server = hop_server().await;
    let got = probe(
        &http_spec(server.port(), "/hop/9", &[], 5),
        &target(LOOPBACK),
    )
    .await;
    assert_eq!(got, ProbeOutcome::success("landed"));
    assert_eq!(server.seen().len(), 10);
}

#[tokio::test]
async fn http_the_tenth_redirect_stops_the_probe_with_a_failure() {
    // Go's client checks len(via) >= 10 when the tenth redirect arrives: ten requests
    // were sent, the eleventh is not, and Client.Do fails naming the raw Location.
    let server = hop_server().await;
    let got = probe(
        &http_spec(server.port(), "/hop/10", &[], 5),
        &target(LOOPBACK),
    )
    .await;
    assert_eq!(
        got,
        ProbeOutcome::failure(r#"Get "/hop/0": stopped after 10 redirects"#)
    );
    let seen = server.seen();
    assert_eq!(seen.len(), 10);
    assert_eq!(seen.last().unwrap().target, "/hop/1");
}

#[tokio::test]
async fn http_redirect_loop_fails_at_the_limit() {
    let server = HttpServer::start(|_| Reply::redirect(307, "/loop")).await;
    let got = probe(
        &http_spec(server.port(), "/loop", &[], 5),
        &target(LOOPBACK),
    )
    .await;
    assert_eq!(
        got,
        ProbeOutcome::failure(r#"Get "/loop": stopped after 10 redirects"#)
    );
    assert_eq!(server.seen().len(), 10);
}

#[tokio::test]
async fn http_slow_server_times_out_as_a_failure() {
    let server = HttpServer::start(|_| Reply {
        delay: Some(Duration::from_secs(30)),
        ..Reply::status(200, "too late")
    })
    .await;
    let got = probe(
        &http_spec(server.port(), "/slow", &[], 1),
        &target(LOOPBACK),
    )
    .await;
    assert_eq!(
        got,
        ProbeOutcome::failure(format!(
            "Get \"http://127.0.0.1:{}/slow\": context deadline exceeded \
             (Client.Timeout exceeded while awaiting headers)",
            server.port()
        ))
    );
}

#[tokio::test]
async fn http_redirect_to_another_port_of_the_same_host_is_followed() {
    // The kubelet's checker compares host names only (Go's URL.Hostname()).
    let target_server = HttpServer::start(|_| Reply::status(200, "other port")).await;
    let location = format!("http://127.0.0.1:{}/there", target_server.port());
    let server = HttpServer::start(move |_| Reply::redirect(308, &location)).await;
    let got = probe(&http_spec(server.port(), "/", &[], 5), &target(LOOPBACK)).await;
    assert_eq!(got, ProbeOutcome::success("other port"));
    assert_eq!(target_server.seen()[0].target, "/there");
}

#[tokio::test]
async fn http_timeout_while_reading_the_body_is_a_probe_error() {
    // Upstream returns the body read error as an error (retried, then discarded), not
    // as a failure.
    let server = HttpServer::start(|_| Reply {
        stall_body: true,
        ..Reply::status(200, "0123456789")
    })
    .await;
    let err = DefaultProber::new()
        .probe(
            ProbeKind::Liveness,
            &http_spec(server.port(), "/stall", &[], 1),
            &target(LOOPBACK),
        )
        .await
        .unwrap_err();
    assert_eq!(
        err,
        ProbeError::ResponseBody {
            url: format!("http://127.0.0.1:{}/stall", server.port()),
            message: "context deadline exceeded \
                      (Client.Timeout or context cancellation while reading body)"
                .into()
        }
    );
}

#[tokio::test]
async fn http_large_body_is_read_up_to_ten_kib_and_still_passes() {
    let server = HttpServer::start(|_| Reply {
        status: 200,
        body: vec![b'a'; 1024 * 1024],
        ..Reply::default()
    })
    .await;
    let got = probe(&http_spec(server.port(), "/big", &[], 5), &target(LOOPBACK)).await;
    assert_eq!(got.result, ProbeResult::Success);
    assert_eq!(got.output.len(), 10 * 1024);
}

#[tokio::test]
async fn https_with_a_self_signed_certificate_passes() {
    let server =
        HttpServer::start_tls(|seen| Reply::status(200, &format!("tls {}", seen.target))).await;
    let spec = http_spec_with(
        Scheme::Https,
        PortRef::Number(server.port()),
        "/secure",
        &[],
        5,
    );
    let got = probe(&spec, &target(LOOPBACK)).await;
    assert_eq!(got, ProbeOutcome::success("tls /secure"));
}

#[tokio::test]
async fn https_against_a_plain_server_fails_with_a_tls_error() {
    let server = HttpServer::start(|_| Reply::status(200, "plain")).await;
    let spec = http_spec_with(Scheme::Https, PortRef::Number(server.port()), "/", &[], 5);
    let got = probe(&spec, &target(LOOPBACK)).await;
    assert_eq!(got.result, ProbeResult::Failure);
    let prefix = format!("Get \"https://127.0.0.1:{}/\": ", server.port());
    assert!(got.output.starts_with(&prefix), "{}", got.output);
}

#[tokio::test]
async fn http_default_headers_are_observed_by_the_server() {
    let server = HttpServer::start(|_| Reply::status(200, "")).await;
    probe(&http_spec(server.port(), "/h", &[], 5), &target(LOOPBACK)).await;
    let seen = &server.seen()[0];
    assert_eq!(seen.target, "/h");
    assert_eq!(
        seen.header("Host"),
        [format!("127.0.0.1:{}", server.port()).as_str()]
    );
    assert_eq!(seen.header("User-Agent"), ["kube-probe/1.36"]);
    assert_eq!(seen.header("Accept"), ["*/*"]);
    assert_eq!(seen.header("Connection"), ["close"]);
    assert!(seen.header("Accept-Encoding").is_empty(), "{seen:?}");
    // Header names go out in canonical case, as Go writes them.
    assert!(
        seen.headers.iter().any(|(n, _)| n == "User-Agent"),
        "{seen:?}"
    );
}

#[tokio::test]
async fn http_custom_headers_and_host_override_are_observed() {
    let server = HttpServer::start(|seen| match seen.target.as_str() {
        "/start" => Reply::redirect(302, "/next"),
        _ => Reply::status(200, ""),
    })
    .await;
    let headers = [
        ("X-Custom", "one"),
        ("x-custom", "two"),
        ("Host", "probe.example.test"),
        ("Accept", "application/json"),
        ("User-Agent", "my-agent/2"),
    ];
    let got = probe(
        &http_spec(server.port(), "/start", &headers, 5),
        &target(LOOPBACK),
    )
    .await;
    assert_eq!(got, ProbeOutcome::success(""));
    let seen = server.seen();
    assert_eq!(seen.len(), 2);
    for request in &seen {
        assert_eq!(request.header("X-Custom"), ["one", "two"]);
        assert_eq!(request.header("Accept"), ["application/json"]);
        assert_eq!(request.header("User-Agent"), ["my-agent/2"]);
        // The Host override survives a relative redirect, as in Go.
        assert_eq!(request.header("Host"), ["probe.example.test"]);
    }
}

#[tokio::test]
async fn http_empty_header_values_remove_the_defaults() {
    let server = HttpServer::start(|_| Reply::status(200, "")).await;
    let headers = [("User-Agent", ""), ("Accept", ""), ("X-Empty", "")];
    probe(
        &http_spec(server.port(), "/", &headers, 5),
        &target(LOOPBACK),
    )
    .await;
    let seen = &server.seen()[0];
    assert!(seen.header("User-Agent").is_empty(), "{seen:?}");
    assert!(seen.header("Accept").is_empty(), "{seen:?}");
    // Other empty headers are sent empty.
    assert_eq!(seen.header("X-Empty"), [""]);
}

#[tokio::test]
async fn http_configured_kubelet_version_is_the_user_agent() {
    let server = HttpServer::start(|_| Reply::status(200, "")).await;
    DefaultProber::new()
        .kubelet_version(1, 33)
        .probe(
            ProbeKind::Liveness,
            &http_spec(server.port(), "/", &[], 5),
            &target(LOOPBACK),
        )
        .await
        .unwrap();
    assert_eq!(server.seen()[0].header("User-Agent"), ["kube-probe/1.33"]);
}

#[tokio::test]
async fn http_connection_refused_is_a_failure() {
    let port = closed_port(LOOPBACK).await;
    let got = probe(&http_spec(port, "/healthz", &[], 5), &target(LOOPBACK)).await;
    assert_eq!(
        got,
        ProbeOutcome::failure(format!(
            "Get \"http://127.0.0.1:{port}/healthz\": dial tcp 127.0.0.1:{port}: connect: connection refused"
        ))
    );
}

#[tokio::test]
async fn http_server_hanging_up_is_an_eof_failure() {
    let server = HttpServer::start(|_| Reply {
        hang_up: true,
        ..Reply::default()
    })
    .await;
    let got = probe(&http_spec(server.port(), "/", &[], 5), &target(LOOPBACK)).await;
    assert_eq!(
        got,
        ProbeOutcome::failure(format!("Get \"http://127.0.0.1:{}/\": EOF", server.port()))
    );
}

#[tokio::test]
async fn http_over_ipv6_loopback_brackets_the_host() {
    let ip: IpAddr = "::1".parse().unwrap();
    let server =
        HttpServer::start_on(ip, None, Arc::new(|_: &Seen| Reply::status(200, "v6"))).await;
    let got = probe(&http_spec(server.port(), "/", &[], 5), &target(ip)).await;
    assert_eq!(got, ProbeOutcome::success("v6"));
    assert_eq!(
        server.seen()[0].header("Host"),
        [format!("[::1]:{}", server.port()).as_str()]
    );
}

#[tokio::test]
async fn named_ports_resolve_and_missing_ones_are_errors() {
    let server = HttpServer::start(|_| Reply::status(200, "named")).await;
    let mut t = target(LOOPBACK);
    t.ports = vec![ContainerPort {
        name: Some("web".to_owned()),
        port: server.port(),
    }];
    let spec = http_spec_with(Scheme::Http, PortRef::Name("web".into()), "/", &[], 5);
    assert_eq!(probe(&spec, &t).await, ProbeOutcome::success("named"));

    let missing = http_spec_with(Scheme::Http, PortRef::Name("admin".into()), "/", &[], 5);
    let err = DefaultProber::new()
        .probe(ProbeKind::Liveness, &missing, &t)
        .await
        .unwrap_err();
    assert_eq!(
        err,
        ProbeError::NamedPortNotFound {
            name: "admin".into()
        }
    );
}

#[tokio::test]
async fn probes_without_a_host_or_pod_ip_are_errors() {
    let no_ip = ProbeTarget::default();
    for spec in [
        http_spec(80, "/", &[], 1),
        tcp_spec(80, 1),
        grpc_spec(9090, None, 1),
    ] {
        let err = DefaultProber::new()
            .probe(ProbeKind::Readiness, &spec, &no_ip)
            .await
            .unwrap_err();
        assert_eq!(err, ProbeError::NoHost, "{spec:?}");
    }
}

#[tokio::test]
async fn an_explicit_host_is_used_instead_of_the_pod_ip() {
    let server = HttpServer::start(|_| Reply::status(200, "by host")).await;
    let spec = ProbeSpec {
        handler: ProbeHandler::HttpGet {
            scheme: Scheme::Http,
            host: Some("127.0.0.1".into()),
            port: PortRef::Number(server.port()),
            path: "/".into(),
            headers: vec![],
        },
        timing: timing(5),
    };
    // The pod IP is unroutable TEST-NET; the probe must not use it.
    let got = probe(&spec, &target("192.0.2.1".parse().unwrap())).await;
    assert_eq!(got, ProbeOutcome::success("by host"));
}

// ---------------------------------------------------------------------------------
// TCP
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn tcp_open_port_passes_and_closed_port_fails() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let open = listener.local_addr().unwrap().port();
    let got = probe(&tcp_spec(open, 5), &target(LOOPBACK)).await;
    assert_eq!(got, ProbeOutcome::success(""));

    let closed = closed_port(LOOPBACK).await;
    let got = probe(&tcp_spec(closed, 5), &target(LOOPBACK)).await;
    assert_eq!(
        got,
        ProbeOutcome::failure(format!(
            "dial tcp 127.0.0.1:{closed}: connect: connection refused"
        ))
    );
    drop(listener);
}

#[tokio::test]
async fn tcp_peer_closing_at_once_still_passes() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let acceptor = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        drop(stream);
    });
    let got = probe(&tcp_spec(port, 5), &target(LOOPBACK)).await;
    assert_eq!(got, ProbeOutcome::success(""));
    acceptor.await.unwrap();
}

// ---------------------------------------------------------------------------------
// gRPC
// ---------------------------------------------------------------------------------

struct GrpcServer {
    port: u16,
    task: JoinHandle<()>,
}

impl Drop for GrpcServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A tonic health server: the overall health ("") is SERVING, `ready` SERVING,
/// `draining` NOT_SERVING.
async fn health_server() -> GrpcServer {
    let (reporter, service) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("ready", tonic_health::ServingStatus::Serving)
        .await;
    reporter
        .set_service_status("draining", tonic_health::ServingStatus::NotServing)
        .await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    let task = tokio::spawn(async move {
        let _keep = reporter;
        let _ = tonic::transport::Server::builder()
            .serve_with_incoming(service, incoming)
            .await;
    });
    GrpcServer { port, task }
}

/// A gRPC server without the health service: every call is Unimplemented. Records
/// the `user-agent` of calls.
async fn server_without_health(user_agents: Arc<Mutex<Vec<String>>>) -> GrpcServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    let service = tower::service_fn(move |request: http::Request<tonic::body::Body>| {
        let user_agents = Arc::clone(&user_agents);
        async move {
            if let Some(ua) = request.headers().get("user-agent") {
                user_agents
                    .lock()
                    .unwrap()
                    .push(ua.to_str().unwrap().to_owned());
            }
            let path = request.uri().path().to_owned();
            let service = path
                .trim_start_matches('/')
                .split('/')
                .next()
                .unwrap_or_default()
                .to_owned();
            Ok::<_, std::convert::Infallible>(
                tonic::Status::unimplemented(format!("unknown service {service}"))
                    .into_http::<tonic::body::Body>(),
            )
        }
    });
    let task = tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .serve_with_incoming(service, incoming)
            .await;
    });
    GrpcServer { port, task }
}

#[tokio::test]
async fn grpc_serving_passes() {
    let server = health_server().await;
    for service in [None, Some("ready")] {
        // A generous timeout: this checks the verdict, not speed (once, under the full
        // parallel suite on 2 cores, connecting took more than 5 s).
        let got = probe(&grpc_spec(server.port, service, 30), &target(LOOPBACK)).await;
        assert_eq!(got, ProbeOutcome::success("service healthy"), "{service:?}");
    }
}

#[tokio::test]
async fn grpc_not_serving_fails() {
    let server = health_server().await;
    let got = probe(
        &grpc_spec(server.port, Some("draining"), 5),
        &target(LOOPBACK),
    )
    .await;
    assert_eq!(
        got,
        ProbeOutcome::failure(r#"service unhealthy (responded with "NOT_SERVING")"#)
    );
}

#[tokio::test]
async fn grpc_unknown_service_fails_with_not_found() {
    let server = health_server().await;
    let got = probe(&grpc_spec(server.port, Some("nope"), 5), &target(LOOPBACK)).await;
    assert_eq!(
        got,
        ProbeOutcome::failure(
            "error: health rpc probe failed: rpc error: code = NotFound desc = service not registered"
        )
    );
}

#[tokio::test]
async fn grpc_server_without_health_service_is_unimplemented() {
    let user_agents = Arc::new(Mutex::new(Vec::new()));
    let server = server_without_health(Arc::clone(&user_agents)).await;
    let got = probe(&grpc_spec(server.port, None, 5), &target(LOOPBACK)).await;
    assert_eq!(
        got,
        ProbeOutcome::failure(
            "error: this server does not implement the grpc health protocol \
             (grpc.health.v1.Health): unknown service grpc.health.v1.Health"
        )
    );
    let agents = user_agents.lock().unwrap().clone();
    assert_eq!(agents.len(), 1);
    assert!(agents[0].starts_with("kube-probe/1.36 "), "{agents:?}");
}

#[tokio::test]
async fn grpc_nothing_listening_fails_after_the_timeout() {
    // Upstream dials with WithBlock: refused connections are retried until the
    // deadline, and the message is always the connect timeout.
    let port = closed_port(LOOPBACK).await;
    let got = probe(&grpc_spec(port, None, 1), &target(LOOPBACK)).await;
    assert_eq!(
        got,
        ProbeOutcome::failure(format!(
            "timeout: failed to connect service \"127.0.0.1:{port}\" within 1s: context deadline exceeded"
        ))
    );
}

#[tokio::test]
async fn grpc_slow_health_check_times_out() {
    // A server that accepts HTTP/2 but never answers the call.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    let service = tower::service_fn(|_request: http::Request<tonic::body::Body>| async {
        tokio::time::sleep(Duration::from_secs(30)).await;
        Ok::<_, std::convert::Infallible>(
            tonic::Status::ok("late").into_http::<tonic::body::Body>(),
        )
    });
    let task = tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .serve_with_incoming(service, incoming)
            .await;
    });
    let server = GrpcServer { port, task };
    let got = probe(&grpc_spec(server.port, None, 1), &target(LOOPBACK)).await;
    assert_eq!(
        got,
        ProbeOutcome::failure("timeout: health rpc did not complete within 1s")
    );
}

// ---------------------------------------------------------------------------------
// Exec
// ---------------------------------------------------------------------------------

/// Answers exec calls from a script and records them.
#[derive(Default)]
struct FakeRunner {
    replies: Mutex<VecDeque<Result<ExecOutput, ExecError>>>,
    calls: Mutex<Vec<(String, Vec<String>, Duration)>>,
}

#[async_trait::async_trait]
impl ExecRunner for FakeRunner {
    async fn exec(
        &self,
        container_id: &str,
        command: &[String],
        timeout: Duration,
    ) -> Result<ExecOutput, ExecError> {
        self.calls
            .lock()
            .unwrap()
            .push((container_id.to_owned(), command.to_vec(), timeout));
        self.replies
            .lock()
            .unwrap()
            .pop_front()
            .expect("a scripted reply")
    }
}

fn exec_spec(command: &[&str], timeout: i32) -> ProbeSpec {
    ProbeSpec {
        handler: ProbeHandler::Exec {
            command: command.iter().map(|s| (*s).to_owned()).collect(),
        },
        timing: timing(timeout),
    }
}

async fn exec_probe(
    reply: Result<ExecOutput, ExecError>,
    spec: &ProbeSpec,
) -> (Result<ProbeOutcome, ProbeError>, Arc<FakeRunner>) {
    let runner = Arc::new(FakeRunner::default());
    runner.replies.lock().unwrap().push_back(reply);
    let prober = DefaultProber::new().exec_runner(Arc::clone(&runner) as Arc<dyn ExecRunner>);
    let got = prober
        .probe(ProbeKind::Liveness, spec, &target(LOOPBACK))
        .await;
    (got, runner)
}

#[tokio::test]
async fn exec_exit_zero_passes_with_its_output() {
    let spec = exec_spec(&["cat", "/tmp/healthy"], 3);
    let (got, runner) = exec_probe(
        Ok(ExecOutput {
            exit_code: 0,
            output: b"ok\n".to_vec(),
        }),
        &spec,
    )
    .await;
    assert_eq!(got, Ok(ProbeOutcome::success("ok\n")));
    let calls = runner.calls.lock().unwrap().clone();
    assert_eq!(
        calls,
        [(
            "c0ffee".to_owned(),
            vec!["cat".to_owned(), "/tmp/healthy".to_owned()],
            Duration::from_secs(3)
        )]
    );
}

#[tokio::test]
async fn exec_non_zero_exit_fails_with_the_combined_output() {
    let (got, _) = exec_probe(
        Ok(ExecOutput {
            exit_code: 1,
            output: b"out\nerr: not ready\n".to_vec(),
        }),
        &exec_spec(&["check"], 1),
    )
    .await;
    assert_eq!(got, Ok(ProbeOutcome::failure("out\nerr: not ready\n")));
}

#[tokio::test]
async fn exec_output_is_capped_at_ten_kib() {
    let (got, _) = exec_probe(
        Ok(ExecOutput {
            exit_code: 2,
            output: vec![b'e'; 64 * 1024],
        }),
        &exec_spec(&["noisy"], 1),
    )
    .await;
    assert_eq!(got.unwrap().output.len(), 10 * 1024);
}

#[tokio::test]
async fn exec_timeout_is_a_failure_with_upstreams_text() {
    let (got, _) = exec_probe(
        Err(ExecError::Timeout(Duration::from_secs(2))),
        &exec_spec(&["sh", "-c", "sleep 60"], 2),
    )
    .await;
    assert_eq!(
        got,
        Ok(ProbeOutcome::failure(
            r#"command timed out: "sh -c sleep 60" timed out after 2s"#
        ))
    );
}

#[tokio::test]
async fn exec_runtime_error_is_a_probe_error() {
    let (got, _) = exec_probe(
        Err(ExecError::Runtime("container is not running".into())),
        &exec_spec(&["true"], 1),
    )
    .await;
    assert_eq!(
        got,
        Err(ProbeError::Exec("container is not running".into()))
    );
}

#[tokio::test]
async fn exec_without_a_runner_is_a_clear_error() {
    let err = DefaultProber::new()
        .probe(
            ProbeKind::Startup,
            &exec_spec(&["true"], 1),
            &target(LOOPBACK),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ProbeError::Exec(m) if m.contains("no exec runner")),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------
// Inside a network namespace (root)
// ---------------------------------------------------------------------------------

/// A network namespace joined to this one by a veth pair with a /30 from 10.250.0.0/16
/// not in use on this host. Removed on drop.
struct NetnsLink {
    ns: node_sdk_e2e::Netns,
    host_if: String,
    ns_ip: Ipv4Addr,
}

impl NetnsLink {
    fn new(tag: &str) -> Self {
        use std::sync::atomic::{AtomicU32, Ordering};
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        node_sdk_e2e::require_root();
        let ns = node_sdk_e2e::Netns::new(tag);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let host_if = format!("vp{}x{n}", pid % 100_000);
        let peer = format!("{host_if}n");
        let (host_ip, ns_ip) = free_block(pid, n);
        let run = |argv: &[&str]| node_sdk_e2e::run(argv, None);
        run(&[
            "ip",
            "link",
            "add",
            &host_if,
            "type",
            "veth",
            "peer",
            "name",
            &peer,
            "netns",
            ns.name(),
        ]);
        let link = NetnsLink { ns, host_if, ns_ip };
        run(&[
            "ip",
            "addr",
            "add",
            &format!("{host_ip}/30"),
            "dev",
            &link.host_if,
        ]);
        run(&["ip", "link", "set", &link.host_if, "up"]);
        link.ns.exec(
            &["ip", "addr", "add", &format!("{ns_ip}/30"), "dev", &peer],
            None,
        );
        link.ns.exec(&["ip", "link", "set", &peer, "up"], None);
        link
    }
}

impl Drop for NetnsLink {
    fn drop(&mut self) {
        let _ = node_sdk_e2e::run_unchecked(&["ip", "link", "del", &self.host_if], None);
    }
}

/// A /30 in 10.250.0.0/16 whose addresses no interface here uses: `.1` for the host
/// side, `.2` for the namespace.
fn free_block(pid: u32, n: u32) -> (Ipv4Addr, Ipv4Addr) {
    let used = String::from_utf8_lossy(
        &node_sdk_e2e::run(&["ip", "-o", "-4", "addr", "show"], None).stdout,
    )
    .into_owned();
    for attempt in 0..4096u32 {
        let block = (pid.wrapping_mul(31) + n * 7 + attempt) % 4096;
        let (third, fourth) = ((block / 64) as u8 + 100, ((block % 64) * 4) as u8);
        let host = Ipv4Addr::new(10, 250, third, fourth + 1);
        let ns = Ipv4Addr::new(10, 250, third, fourth + 2);
        let taken = |ip: Ipv4Addr| used.contains(&format!("inet {ip}/"));
        let net = Ipv4Addr::new(10, 250, third, fourth);
        if !taken(host) && !taken(ns) && !used.contains(&format!("inet {net}/")) {
            return (host, ns);
        }
    }
    panic!("no free /30 in 10.250.100.0-10.250.163.255");
}

/// busybox `httpd` serving a directory inside the namespace; killed on drop.
struct NsHttpd {
    child: std::process::Child,
    dir: std::path::PathBuf,
}

impl NsHttpd {
    fn start(link: &NetnsLink, port: u16) -> Self {
        let dir = std::env::temp_dir().join(node_sdk_e2e::unique_name("probe-httpd"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("index.html"), "hello from the netns\n").unwrap();
        let child = std::process::Command::new("ip")
            .args([
                "netns",
                "exec",
                link.ns.name(),
                "/bin/busybox",
                "httpd",
                "-f",
                "-p",
            ])
            .arg(format!("{}:{port}", link.ns_ip))
            .arg("-h")
            .arg(&dir)
            .stdin(std::process::Stdio::null())
            .spawn()
            .expect("starting busybox httpd in the namespace");
        let httpd = NsHttpd { child, dir };
        // Wait (bounded) until it accepts connections.
        let addr = SocketAddr::new(IpAddr::V4(link.ns_ip), port);
        for _ in 0..200 {
            if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
                return httpd;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("busybox httpd did not listen on {addr}");
    }
}

impl Drop for NsHttpd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test]
async fn netns_http_and_tcp_against_busybox_httpd() {
    let link = NetnsLink::new("probe-http");
    let _httpd = NsHttpd::start(&link, 8080);
    let pod = target(IpAddr::V4(link.ns_ip));

    let got = probe(&http_spec(8080, "/index.html", &[], 5), &pod).await;
    assert_eq!(got, ProbeOutcome::success("hello from the netns\n"));
    let got = probe(&http_spec(8080, "/missing", &[], 5), &pod).await;
    assert_eq!(
        got,
        ProbeOutcome::failure("HTTP probe failed with statuscode: 404")
    );

    assert_eq!(
        probe(&tcp_spec(8080, 5), &pod).await,
        ProbeOutcome::success("")
    );
    let got = probe(&tcp_spec(8081, 5), &pod).await;
    assert_eq!(
        got,
        ProbeOutcome::failure(format!(
            "dial tcp {}:8081: connect: connection refused",
            link.ns_ip
        ))
    );
}

#[tokio::test]
async fn netns_filtered_port_times_out() {
    let link = NetnsLink::new("probe-drop");
    // A blackhole inside the namespace only: SYNs to port 9 are dropped.
    link.ns.exec(
        &[
            "iptables", "-A", "INPUT", "-p", "tcp", "--dport", "9", "-j", "DROP",
        ],
        None,
    );
    let pod = target(IpAddr::V4(link.ns_ip));

    let got = probe(&tcp_spec(9, 1), &pod).await;
    assert_eq!(
        got,
        ProbeOutcome::failure(format!("dial tcp {}:9: i/o timeout", link.ns_ip))
    );

    let got = probe(&http_spec(9, "/healthz", &[], 1), &pod).await;
    assert_eq!(
        got,
        ProbeOutcome::failure(format!(
            "Get \"http://{}:9/healthz\": context deadline exceeded \
             (Client.Timeout exceeded while awaiting headers)",
            link.ns_ip
        ))
    );

    let got = probe(&grpc_spec(9, None, 1), &pod).await;
    assert_eq!(
        got,
        ProbeOutcome::failure(format!(
            "timeout: failed to connect service \"{}:9\" within 1s: context deadline exceeded",
            link.ns_ip
        ))
    );
}
