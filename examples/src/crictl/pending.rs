//! The seam to `cri_client::streaming` (not in this build yet) and
//! `cri_client::logs`.
//!
//! `exec` (without `--sync`), `attach`, `port-forward` and `logs` do their
//! CRI part in `commands/streaming.rs` (argument checks, ID resolution, the
//! `Exec`/`Attach`/`PortForward` call for the streaming URL, the
//! `ContainerStatus` call for the log path, `ReopenContainerLog`) and then
//! hand one of the requests below to the matching function here. Each
//! function is the only place to change when the modules land: replace its
//! body with a call into the crate. Nothing else needs to move.

use std::net::{IpAddr, Ipv4Addr};

use anyhow::anyhow;
use cri_client::CriClient;
use jiff::Timestamp;

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

fn not_available(what: &str) -> anyhow::Error {
    anyhow!("{what} is not yet available in this build")
}

/// Runs an `exec` stream and returns the command's exit code.
pub(crate) async fn exec(request: StreamRequest) -> anyhow::Result<i32> {
    log::debug(&format!("Exec stream request: {request:?}"));
    Err(not_available(
        "exec over the runtime's streaming server (use -s/--sync to run the command through ExecSync)",
    ))
}

/// Attaches to a container's stream until it ends or is detached.
pub(crate) async fn attach(request: StreamRequest) -> anyhow::Result<()> {
    log::debug(&format!("Attach stream request: {request:?}"));
    Err(not_available("attach over the runtime's streaming server"))
}

/// Forwards the ports until interrupted, printing
/// `Forwarding from 127.0.0.1:LOCAL -> REMOTE` for each.
pub(crate) async fn port_forward(request: PortForwardRequest) -> anyhow::Result<()> {
    log::debug(&format!("Port forward request: {request:?}"));
    Err(not_available(
        "port forwarding over the runtime's streaming server",
    ))
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

    #[tokio::test]
    async fn every_placeholder_says_it_is_not_available_yet() {
        let stream = StreamRequest {
            url: "http://x/exec/t".into(),
            stdin: false,
            tty: false,
            transport: "websocket".into(),
        };
        let err = exec(stream.clone()).await.unwrap_err().to_string();
        assert!(err.contains("not yet available in this build"), "{err}");
        let err = attach(stream).await.unwrap_err().to_string();
        assert!(err.contains("not yet available in this build"), "{err}");
        let err = port_forward(PortForwardRequest {
            url: "http://x/portforward/t".into(),
            listen: LISTEN_ADDRESS,
            ports: vec![PortSpec {
                local: 0,
                remote: 80,
            }],
            transport: "websocket".into(),
        })
        .await
        .unwrap_err()
        .to_string();
        assert!(err.contains("not yet available in this build"), "{err}");
    }
}
