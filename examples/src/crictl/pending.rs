//! The hand-over from crictl's CRI calls to `cri_client::streaming` (exec,
//! attach, port-forward) and `cri_client::logs`.
//!
//! `exec` (without `--sync`), `attach`, `port-forward` and `logs` do their
//! CRI part in `commands/streaming.rs` (argument checks, ID resolution, the
//! `Exec`/`Attach`/`PortForward` call for the streaming URL, the
//! `ContainerStatus` call for the log path, `ReopenContainerLog`) and then
//! hand one of the requests below to the matching function here. Each
//! function is the only place to change when the modules land: replace its
//! body with a call into the crate. Nothing else needs to move.

use std::net::{IpAddr, Ipv4Addr};

use std::io::IsTerminal as _;

use anyhow::{Context as _, anyhow};
use cri_client::CriClient;
use cri_client::streaming::{self, ExecOptions, ExitStatus, Session};
use jiff::Timestamp;
use tokio::io::AsyncWriteExt as _;
use tokio::signal::unix::{SignalKind, signal};

use super::log;

/// An `exec` or `attach` stream to open on the runtime's streaming server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StreamRequest {
    /// The URL the runtime returned (see [`streaming_url`]).
    pub(crate) url: String,
    /// Send our stdin (`-i`).
    pub(crate) stdin: bool,
    /// A terminal (`-t`): raw mode, resize events, no separate stderr.
    pub(crate) tty: bool,
    /// `spdy` or `websocket` (`--transport`); the WebSocket channel protocol
    /// (`v4.channel.k8s.io`) is what containerd 1.6 accepts without SPDY.
    pub(crate) transport: String,
}

/// A `port-forward` session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PortForwardRequest {
    /// The URL the runtime returned (see [`streaming_url`]).
    pub(crate) url: String,
    /// Local address to listen on (crictl listens on localhost).
    pub(crate) listen: IpAddr,
    /// The ports to forward.
    pub(crate) ports: Vec<PortSpec>,
    /// `spdy` or `websocket`.
    pub(crate) transport: String,
    /// The pod, for fresh URLs (one per forwarded connection).
    pub(crate) pod_sandbox_id: String,
}

/// What `logs` reads: the container's CRI log file and kubectl-like options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LogRequest {
    /// The log file, from `ContainerStatus.log_path` (or the previous
    /// attempt's file with `--previous`).
    pub(crate) path: String,
    /// The container's full ID (to reopen the log when following it).
    pub(crate) container_id: String,
    /// `-f`: keep reading as the runtime appends, until interrupted.
    pub(crate) follow: bool,
    /// `--tail`: the last N lines; `None` for all.
    pub(crate) tail: Option<u64>,
    /// `--limit-bytes`: stop after N bytes; `None` for no limit.
    pub(crate) limit_bytes: Option<u64>,
    /// `--since`: only lines at or after this time.
    pub(crate) since: Option<Timestamp>,
    /// `-t`: print each line's timestamp.
    pub(crate) timestamps: bool,
    /// Print the container's stdout lines (to our stdout).
    pub(crate) stdout: bool,
    /// Print the container's stderr lines (to our stderr).
    pub(crate) stderr: bool,
}

/// A `[LOCAL_PORT:]REMOTE_PORT` of `port-forward`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PortSpec {
    /// The local port; 0 picks a free one.
    pub(crate) local: u16,
    /// The port in the pod.
    pub(crate) remote: u16,
}

/// The stream options of an exec or attach request, as crictl sets them: stdout
/// always, stderr unless a terminal merges it.
fn exec_options(request: &StreamRequest) -> ExecOptions {
    ExecOptions {
        stdin: request.stdin,
        stdout: true,
        stderr: !request.tty,
        tty: request.tty,
    }
}

/// Our streaming client speaks the WebSocket channel protocols only (what
/// containerd serves without SPDY): `spdy`, crictl's default, is served the
/// same way; anything else is refused.
fn check_transport(transport: &str) -> anyhow::Result<()> {
    match transport {
        "" | "spdy" | "websocket" => Ok(()),
        other => Err(anyhow!(
            "unknown transport {other:?}: use websocket or spdy"
        )),
    }
}

/// How long a command may run on after the end of our stdin before the
/// session is closed to signal EOF (see [`run_session`]).
const STDIN_EOF_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// Puts the local terminal into raw mode for `-t`, and back when dropped.
struct RawTerminal(bool);

impl RawTerminal {
    fn enable(tty: bool) -> Self {
        let on =
            tty && std::io::stdin().is_terminal() && crossterm::terminal::enable_raw_mode().is_ok();
        RawTerminal(on)
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        if self.0 {
            let _ = crossterm::terminal::disable_raw_mode();
        }
    }
}

/// Copies our stdin to the session and its output to ours until the session
/// ends; sends the terminal size (and every change) with `-t`.
async fn run_session(mut session: Session, tty: bool) -> anyhow::Result<ExitStatus> {
    let _raw = RawTerminal::enable(tty);
    if tty && let Ok((cols, rows)) = crossterm::terminal::size() {
        let resizer = session.resizer();
        let _ = resizer.resize(cols, rows).await;
        tokio::spawn(async move {
            let Ok(mut changes) = signal(SignalKind::window_change()) else {
                return;
            };
            while changes.recv().await.is_some() {
                if let Ok((cols, rows)) = crossterm::terminal::size()
                    && resizer.resize(cols, rows).await.is_err()
                {
                    return;
                }
            }
        });
    }
    let mut feeder = None;
    if let Some(mut input) = session.stdin.take() {
        // The v4 channel protocol has no half-close: the only way to send EOF is
        // to close the session. After the end of our stdin the command gets
        // STDIN_EOF_GRACE to finish on its own (commands that stop reading by
        // themselves, such as `head -c N`, keep all their output); then the
        // session is closed so a command reading until EOF (`cat`) cannot hang.
        feeder = Some(tokio::spawn(async move {
            let _ = tokio::io::copy(&mut tokio::io::stdin(), &mut input).await;
            let _ = input.flush().await;
            tokio::time::sleep(STDIN_EOF_GRACE).await;
            let _ = input.shutdown().await;
        }));
    }
    let out = session.stdout.take();
    let err = session.stderr.take();
    let copy_out = async {
        if let Some(mut out) = out {
            tokio::io::copy(&mut out, &mut tokio::io::stdout()).await?;
        }
        tokio::io::stdout().flush().await
    };
    let copy_err = async {
        if let Some(mut err) = err {
            tokio::io::copy(&mut err, &mut tokio::io::stderr()).await?;
        }
        tokio::io::stderr().flush().await
    };
    let (o, e) = tokio::join!(copy_out, copy_err);
    if let Some(feeder) = feeder {
        feeder.abort();
    }
    o?;
    e?;
    Ok(session.wait().await?)
}

/// Runs an `exec` stream and returns the command's exit code.
pub(crate) async fn exec(request: StreamRequest) -> anyhow::Result<i32> {
    log::debug(&format!("Exec stream request: {request:?}"));
    check_transport(&request.transport)?;
    let session = streaming::exec(&request.url, exec_options(&request)).await?;
    match run_session(session, request.tty).await? {
        ExitStatus::Success => Ok(0),
        ExitStatus::ExitCode(code) => Ok(code),
        ExitStatus::Unknown => Err(anyhow!(
            "the session ended before the runtime reported an exit status"
        )),
        failure => Err(anyhow!("{failure}")),
    }
}

/// Attaches to a container's stream until it ends or is detached.
pub(crate) async fn attach(request: StreamRequest) -> anyhow::Result<()> {
    log::debug(&format!("Attach stream request: {request:?}"));
    check_transport(&request.transport)?;
    let session = streaming::attach(&request.url, exec_options(&request)).await?;
    match run_session(session, request.tty).await? {
        ExitStatus::Failure { message, .. } => Err(anyhow!("{message}")),
        _ => Ok(()),
    }
}

/// Forwards the ports until interrupted, printing
/// `Forwarding from 127.0.0.1:LOCAL -> REMOTE` for each.
///
/// A WebSocket port-forward session carries one TCP stream and its URL is
/// single-use, so each accepted connection gets a fresh URL from the runtime
/// (`PortForward`); the first one uses the URL already fetched.
pub(crate) async fn port_forward(
    request: PortForwardRequest,
    client: &CriClient,
) -> anyhow::Result<()> {
    log::debug(&format!("Port forward request: {request:?}"));
    check_transport(&request.transport)?;
    let first_url = std::sync::Arc::new(std::sync::Mutex::new(Some(request.url.clone())));
    let mut listeners = Vec::new();
    for spec in &request.ports {
        let listener = tokio::net::TcpListener::bind((request.listen, spec.local))
            .await
            .with_context(|| format!("unable to listen on port {}", spec.local))?;
        let local = listener.local_addr()?.port();
        println!(
            "Forwarding from {}:{local} -> {}",
            request.listen, spec.remote
        );
        listeners.push((listener, spec.remote));
    }
    let mut tasks = tokio::task::JoinSet::new();
    for (listener, remote) in listeners {
        let client = client.clone();
        let pod = request.pod_sandbox_id.clone();
        let first_url = first_url.clone();
        tasks.spawn(async move {
            loop {
                let Ok((mut conn, peer)) = listener.accept().await else {
                    return;
                };
                log::debug(&format!("Handling connection for {remote} from {peer}"));
                let reuse = first_url.lock().ok().and_then(|mut u| u.take());
                let client = client.clone();
                let pod = pod.clone();
                tokio::spawn(async move {
                    let url = match reuse {
                        Some(url) => url,
                        None => match client.port_forward(&pod, vec![i32::from(remote)]).await {
                            Ok(url) => streaming_url(&url),
                            Err(e) => {
                                eprintln!("port forward: {e}");
                                return;
                            }
                        },
                    };
                    match streaming::port_forward(&url, remote).await {
                        Ok(mut stream) => {
                            if let Err(e) =
                                tokio::io::copy_bidirectional(&mut conn, &mut stream).await
                            {
                                eprintln!("an error occurred forwarding {remote}: {e}");
                            }
                        }
                        Err(e) => eprintln!("an error occurred forwarding {remote}: {e}"),
                    }
                });
            }
        });
    }
    tokio::select! {
        _ = tokio::signal::ctrl_c() => Ok(()),
        _ = async { while tasks.join_next().await.is_some() {} } => Ok(()),
    }
}

/// Prints the container's log as kubectl does (the CRI log format decoded,
/// partial lines joined), following it with `-f` until the container stops
/// running or the user interrupts.
pub(crate) async fn read_logs(request: LogRequest, client: &CriClient) -> anyhow::Result<()> {
    use cri_client::logs::{LogOptions, Stream, read_logs_until};
    use cri_client::v1::ContainerState;

    log::debug(&format!("Log request: {request:?}"));
    let mut opts = LogOptions::default()
        .follow(request.follow)
        .timestamps(request.timestamps);
    if let Some(tail) = request.tail {
        opts = opts.tail(usize::try_from(tail).unwrap_or(usize::MAX));
    }
    if let Some(since) = request.since {
        opts = opts.since(since);
    }
    if let Some(limit) = request.limit_bytes {
        opts = opts.limit_bytes(limit);
    }
    match (request.stdout, request.stderr) {
        (true, false) => opts = opts.stream(Stream::Stdout),
        (false, true) => opts = opts.stream(Stream::Stderr),
        _ => {}
    }
    // Following ends like kubelet's: once the container no longer runs (checked
    // every second), or on Ctrl-C.
    let container_id = request.container_id.clone();
    let stop = async move {
        let running = async {
            loop {
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                let state = client
                    .container_status(&container_id, false)
                    .await
                    .ok()
                    .and_then(|r| r.status)
                    .map(|s| s.state);
                if state != Some(ContainerState::ContainerRunning as i32) {
                    return;
                }
            }
        };
        tokio::select! {
            () = running => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    };
    read_logs_until(
        &request.path,
        &opts,
        tokio::io::stdout(),
        tokio::io::stderr(),
        stop,
    )
    .await
    .map_err(|e| anyhow!("failed to read log file {:?}: {e}", request.path))?;
    Ok(())
}

/// The streaming URL as crictl uses it: a URL without scheme or host (a
/// kubelet-relative path) gets `http://127.0.0.1:10250`, as in crictl.
pub(crate) fn streaming_url(url: &str) -> String {
    if url.starts_with('/') {
        return format!("http://127.0.0.1:10250{url}");
    }
    if url.contains("://") {
        url.to_owned()
    } else {
        format!("http://{url}")
    }
}

/// The address `port-forward` listens on.
pub(crate) const LISTEN_ADDRESS: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// Parses a `[LOCAL_PORT:]REMOTE_PORT` as client-go's port forwarder does:
/// `8080`, `8888:8080`, or `:8080` for a random local port.
pub(crate) fn parse_port_spec(spec: &str) -> Result<PortSpec, String> {
    let (local, remote) = match spec.split_once(':') {
        Some((local, remote)) => (local, remote),
        None => (spec, spec),
    };
    let remote_port: u16 = remote
        .parse()
        .map_err(|e| format!("Error parsing remote port '{remote}': {e}"))?;
    if remote_port == 0 {
        return Err(format!("remote port must be > 0: {spec}"));
    }
    let local_port: u16 = if local.is_empty() {
        0
    } else {
        local
            .parse()
            .map_err(|e| format!("Error parsing local port '{local}': {e}"))?
    };
    Ok(PortSpec {
        local: local_port,
        remote: remote_port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_specs_parse_like_client_go() {
        assert_eq!(
            parse_port_spec("8080"),
            Ok(PortSpec {
                local: 8080,
                remote: 8080
            })
        );
        assert_eq!(
            parse_port_spec("8888:80"),
            Ok(PortSpec {
                local: 8888,
                remote: 80
            })
        );
        assert_eq!(
            parse_port_spec(":80"),
            Ok(PortSpec {
                local: 0,
                remote: 80
            })
        );
        assert!(
            parse_port_spec("x:80")
                .unwrap_err()
                .starts_with("Error parsing local port 'x'")
        );
        assert!(
            parse_port_spec("99999")
                .unwrap_err()
                .starts_with("Error parsing remote port")
        );
        assert_eq!(
            parse_port_spec("0"),
            Err("remote port must be > 0: 0".into())
        );
    }

    #[test]
    fn relative_streaming_urls_get_the_kubelet_address() {
        assert_eq!(
            streaming_url("http://127.0.0.1:39251/exec/abcdefgh"),
            "http://127.0.0.1:39251/exec/abcdefgh"
        );
        assert_eq!(
            streaming_url("/exec/abcdefgh"),
            "http://127.0.0.1:10250/exec/abcdefgh"
        );
        assert_eq!(
            streaming_url("10.0.0.1:10010/attach/x"),
            "http://10.0.0.1:10010/attach/x"
        );
    }

    #[test]
    fn transports_map_to_websocket_or_are_refused() {
        for ok in ["", "spdy", "websocket"] {
            assert!(check_transport(ok).is_ok(), "{ok}");
        }
        let err = check_transport("quic").unwrap_err().to_string();
        assert_eq!(err, "unknown transport \"quic\": use websocket or spdy");
    }

    #[test]
    fn a_terminal_merges_stderr_into_stdout() {
        let request = |tty| StreamRequest {
            url: "http://x/exec/t".into(),
            stdin: true,
            tty,
            transport: "websocket".into(),
        };
        let tty = exec_options(&request(true));
        assert!(tty.stdin && tty.stdout && tty.tty && !tty.stderr);
        let plain = exec_options(&request(false));
        assert!(plain.stdin && plain.stdout && plain.stderr && !plain.tty);
    }
}
