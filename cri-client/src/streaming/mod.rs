//! Client side of the runtime's streaming server: the sessions behind the
//! CRI `Exec`, `Attach` and `PortForward` RPCs.
//!
//! Those RPCs do not stream anything themselves: they return a URL such as
//! `http://127.0.0.1:35711/exec/AbCdEfGh` served by the runtime's streaming
//! server. The URL is single use and expires about a minute after the RPC.
//! This module opens it as a WebSocket, the transport of crictl's
//! `--transport websocket` and of client-go's WebSocket executor, and speaks
//! the Kubernetes channel protocol over it:
//!
//! - [`exec`] and [`attach`] return a [`Session`]: the process's stdin as an
//!   [`AsyncWrite`](tokio::io::AsyncWrite), stdout and stderr as
//!   [`AsyncRead`](tokio::io::AsyncRead)s, terminal resizes, and
//!   [`Session::wait`] for the [`ExitStatus`]. [`exec_collect`] runs a command
//!   to the end and returns its output, like `ExecSync`.
//! - [`port_forward`] returns a [`PortForwardStream`], which carries the
//!   bytes of one TCP connection to a port in the pod sandbox.
//!
//! [`StreamClient`] does the same with a chosen set of [`Protocol`]s.
//!
//! # Protocol
//!
//! The client offers the subprotocols of [`StreamClient::protocols`] (by
//! default [`Protocol::PREFERENCE`]: `v4.channel.k8s.io`, `channel.k8s.io`,
//! `v4.base64.channel.k8s.io`, `base64.channel.k8s.io`) and the runtime picks
//! the first it supports. Every message carries one channel: 0 stdin,
//! 1 stdout, 2 stderr, 3 error (the status), 4 resize for exec and attach;
//! 0 data and 1 error for port-forward, where the runtime first sends the
//! port number (two bytes, little-endian) on both. Binary protocols put the
//! channel number in the first byte of a binary message; base64 ones send
//! text messages made of the channel digit and the data in base64.
//!
//! v4 protocols end an exec or attach with a JSON `metav1.Status` on the
//! error channel, which carries the exit code; older ones only send an error
//! text, so they cannot tell a non-zero exit code apart from other failures
//! (see [`ExitStatus`]).
//!
//! No WebSocket channel protocol before v5 can close stdin alone: see
//! [`SessionStdin`] for what closing it does. containerd 1.6 refuses v5,
//! and SPDY (the other transport) is not implemented here.
//!
//! The runtime takes the session's options (stdin, stdout, stderr, tty;
//! the port) from the RPC, not from the URL: give [`exec`], [`attach`] and
//! [`port_forward`] the same ones, so that the client expects the channels
//! the runtime opens.
//!
//! # Example
//!
//! Run a command in a container and print what it wrote, like
//! `crictl exec`:
//!
//! ```no_run
//! use cri_client::streaming::{self, ExecOptions};
//! use cri_client::v1::ExecRequest;
//!
//! # async fn run(container_id: String) -> Result<(), Box<dyn std::error::Error>> {
//! let channel = cri_client::connect("unix:///run/containerd/containerd.sock").await?;
//! let mut runtime = cri_client::runtime_client(channel);
//! let opts = ExecOptions::default(); // stdout and stderr
//! let url = runtime
//!     .exec(ExecRequest {
//!         container_id,
//!         cmd: vec!["uname".into(), "-a".into()],
//!         tty: opts.tty,
//!         stdin: opts.stdin,
//!         stdout: opts.stdout,
//!         stderr: opts.stderr,
//!     })
//!     .await?
//!     .into_inner()
//!     .url;
//! let output = streaming::exec_collect(&url, opts, b"").await?;
//! print!("{}", String::from_utf8_lossy(&output.stdout));
//! eprint!("{}", String::from_utf8_lossy(&output.stderr));
//! std::process::exit(output.status.code().unwrap_or(1));
//! # }
//! ```
//!
//! Copy an interactive session to and from a terminal (for example
//! `tokio::io::stdin()` and `tokio::io::stdout()`, with tokio's `io-std`
//! feature):
//!
//! ```no_run
//! use cri_client::streaming::{self, ExecOptions};
//! use tokio::io::{AsyncRead, AsyncWrite};
//!
//! async fn interact(
//!     url: &str,
//!     mut terminal_in: impl AsyncRead + Unpin + Send + 'static,
//!     mut terminal_out: impl AsyncWrite + Unpin + Send + 'static,
//! ) -> Result<(), Box<dyn std::error::Error>> {
//!     let opts = ExecOptions { stdin: true, stdout: true, stderr: false, tty: true };
//!     let mut session = streaming::exec(url, opts).await?;
//!     session.resize(80, 24).await?;
//!     let mut stdin = session.stdin.take().expect("stdin was requested");
//!     let mut stdout = session.stdout.take().expect("stdout was requested");
//!     tokio::spawn(async move { tokio::io::copy(&mut terminal_in, &mut stdin).await });
//!     let output = tokio::spawn(async move { tokio::io::copy(&mut stdout, &mut terminal_out).await });
//!     let status = session.wait().await?;
//!     output.await??;
//!     eprintln!("{status}");
//!     Ok(())
//! }
//! ```

mod frame;
mod handshake;
mod port_forward;
mod session;
#[cfg(test)]
mod test_server;

use std::fmt;

pub use port_forward::PortForwardStream;
pub use session::{Resizer, Session, SessionOutput, SessionStdin};

/// A boxed error from the WebSocket library, kept opaque so that its
/// version is not part of this crate's API.
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A WebSocket subprotocol of the Kubernetes streaming API.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Protocol {
    /// `v4.channel.k8s.io`: binary frames; the error channel carries a
    /// JSON `metav1.Status` with the exit code.
    V4Channel,
    /// `channel.k8s.io`: binary frames; the error channel carries only a
    /// failure text.
    Channel,
    /// `v4.base64.channel.k8s.io`: like [`V4Channel`](Self::V4Channel), in
    /// base64 text frames.
    V4Base64Channel,
    /// `base64.channel.k8s.io`: like [`Channel`](Self::Channel), in base64
    /// text frames.
    Base64Channel,
}

impl Protocol {
    /// Every protocol, in the order offered by default: v4 first (it
    /// reports exit codes), binary before base64.
    pub const PREFERENCE: [Protocol; 4] = [
        Protocol::V4Channel,
        Protocol::Channel,
        Protocol::V4Base64Channel,
        Protocol::Base64Channel,
    ];

    /// The subprotocol name, as sent in `Sec-WebSocket-Protocol`.
    pub const fn name(self) -> &'static str {
        match self {
            Protocol::V4Channel => "v4.channel.k8s.io",
            Protocol::Channel => "channel.k8s.io",
            Protocol::V4Base64Channel => "v4.base64.channel.k8s.io",
            Protocol::Base64Channel => "base64.channel.k8s.io",
        }
    }

    /// The protocol of a subprotocol name, if it is one of these.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::PREFERENCE.into_iter().find(|p| p.name() == name)
    }

    /// Whether frames travel as base64 text rather than binary.
    pub const fn is_base64(self) -> bool {
        matches!(self, Protocol::V4Base64Channel | Protocol::Base64Channel)
    }

    /// Whether the runtime reports the session's status as a JSON
    /// `metav1.Status`, with the exit code (the v4 protocols).
    pub const fn reports_exit_code(self) -> bool {
        matches!(self, Protocol::V4Channel | Protocol::V4Base64Channel)
    }

    fn codec(self) -> frame::Codec {
        if self.is_base64() {
            frame::Codec::Base64
        } else {
            frame::Codec::Binary
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The streams of an exec or attach session.
///
/// They must be those of the `ExecRequest` or `AttachRequest` that made the
/// URL: the runtime opens the channels the RPC asked for. The default is
/// stdout and stderr, without stdin or a TTY.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExecOptions {
    /// Send the client's input to the process's stdin.
    pub stdin: bool,
    /// Receive the process's stdout (with `tty`, the terminal's output).
    pub stdout: bool,
    /// Receive the process's stderr. Not allowed with `tty`, which merges
    /// stderr into the terminal's output.
    pub stderr: bool,
    /// Run the process on a terminal; resize it with [`Session::resize`].
    pub tty: bool,
}

impl Default for ExecOptions {
    fn default() -> Self {
        Self {
            stdin: false,
            stdout: true,
            stderr: true,
            tty: false,
        }
    }
}

impl ExecOptions {
    /// Checks the options as the runtime checks the RPC's: `tty` and
    /// `stderr` are not both set, and at least one stream is.
    ///
    /// # Errors
    ///
    /// [`StreamError::InvalidOptions`], with containerd's wording.
    pub fn validate(&self) -> Result<(), StreamError> {
        if self.tty && self.stderr {
            return Err(StreamError::InvalidOptions {
                reason: "tty and stderr cannot both be true",
            });
        }
        if !self.stdin && !self.stdout && !self.stderr {
            return Err(StreamError::InvalidOptions {
                reason: "one of stdin, stdout, and stderr must be set",
            });
        }
        Ok(())
    }

    /// The query parameters that mirror these options in Kubernetes'
    /// exec and attach requests (`input`, `output`, `error`, `tty`).
    fn query(&self) -> Vec<(&'static str, String)> {
        [
            ("input", self.stdin),
            ("output", self.stdout),
            ("error", self.stderr),
            ("tty", self.tty),
        ]
        .into_iter()
        .filter(|(_, on)| *on)
        .map(|(name, _)| (name, "1".to_owned()))
        .collect()
    }
}

/// How an exec or attach session ended, as the runtime reported it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExitStatus {
    /// The runtime reported success: for exec, the command exited with 0;
    /// for attach, the attachment ended without error (attach never reports
    /// the container's exit code).
    Success,
    /// The command exited with this non-zero code (v4 protocols:
    /// a `Failure` status with reason `NonZeroExitCode`).
    ExitCode(i32),
    /// The runtime reported another failure. With v4 protocols, `reason` is
    /// the status's reason (such as `InternalError`) and `message` its
    /// message; older protocols send only a text, which is `message`, and
    /// this is also how they report a non-zero exit code.
    Failure {
        /// The `metav1.Status` reason, when the protocol has one.
        reason: Option<String>,
        /// The runtime's error text.
        message: String,
    },
    /// The session ended without a status: the client closed it (see
    /// [`SessionStdin`]), the connection ended without a close frame under
    /// a protocol before v4, or the runtime closed it without sending one
    /// under v4.
    Unknown,
}

impl ExitStatus {
    /// The exit code: 0 for [`Success`](Self::Success), N for
    /// [`ExitCode`](Self::ExitCode), and `None` where the protocol cannot
    /// say.
    pub fn code(&self) -> Option<i32> {
        match self {
            ExitStatus::Success => Some(0),
            ExitStatus::ExitCode(code) => Some(*code),
            ExitStatus::Failure { .. } | ExitStatus::Unknown => None,
        }
    }

    /// Whether the exit code is known to be 0.
    pub fn success(&self) -> bool {
        self.code() == Some(0)
    }

    /// The runtime's error text of a [`Failure`](Self::Failure).
    pub fn message(&self) -> Option<&str> {
        match self {
            ExitStatus::Failure { message, .. } => Some(message),
            _ => None,
        }
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitStatus::Success => f.write_str("success"),
            ExitStatus::ExitCode(code) => write!(f, "exit code {code}"),
            ExitStatus::Failure {
                reason: Some(reason),
                message,
            } => write!(f, "failure ({reason}): {message}"),
            ExitStatus::Failure {
                reason: None,
                message,
            } => write!(f, "failure: {message}"),
            ExitStatus::Unknown => f.write_str("unknown (the session ended without a status)"),
        }
    }
}

/// Everything an exec wrote, and how it ended; see [`exec_collect`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecOutput {
    /// Everything received on stdout (with a TTY, the terminal's output).
    pub stdout: Vec<u8>,
    /// Everything received on stderr.
    pub stderr: Vec<u8>,
    /// How the command ended.
    pub status: ExitStatus,
}

/// A malformed message from the streaming server.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// A message without even a channel byte.
    #[error("empty frame (no channel byte)")]
    Empty,
    /// A channel number the protocol does not have.
    #[error("unknown channel {channel} (the protocol has channels 0 to {})", channels.saturating_sub(1))]
    UnknownChannel {
        /// The channel number received.
        channel: u8,
        /// How many channels the protocol has.
        channels: u8,
    },
    /// A base64 message that does not start with a channel digit.
    #[error("base64 frame starts with {0:?}, not a channel digit")]
    BadChannelChar(char),
    /// A base64 message whose data is not valid base64.
    #[error("invalid base64 on channel {channel}: {reason}")]
    Base64 {
        /// The message's channel.
        channel: u8,
        /// What the decoder said.
        reason: String,
    },
    /// A text message under a binary protocol.
    #[error("text frame under a binary protocol")]
    UnexpectedText,
    /// A binary message under a base64 protocol.
    #[error("binary frame under a base64 protocol")]
    UnexpectedBinary,
    /// The error channel's content is not a status this client understands.
    #[error("invalid status on the error channel: {reason} (received {text:?})")]
    BadStatus {
        /// What is wrong with it.
        reason: String,
        /// The start of the text received.
        text: String,
    },
    /// The error channel carried more than any status needs.
    #[error("the error channel carried more than {limit} bytes")]
    StatusTooLong {
        /// The limit, in bytes.
        limit: usize,
    },
    /// The connection ended before the runtime announced the port on a
    /// port-forward channel.
    #[error("the connection ended before the runtime announced the port on channel {channel}")]
    MissingPortPrefix {
        /// The channel (0 data, 1 error).
        channel: u8,
    },
    /// A port-forward channel announced another port than the one asked for.
    #[error("channel {channel} is for port {got}, not the requested port {expected}")]
    PortMismatch {
        /// The channel (0 data, 1 error).
        channel: u8,
        /// The port given to [`port_forward`].
        expected: u16,
        /// The port the runtime announced.
        got: u16,
    },
}

/// Errors of the streaming client.
///
/// Messages are lowercase, name the URL, and do not repeat their
/// [`source`](std::error::Error::source).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StreamError {
    /// The options cannot describe a session (checked before connecting).
    #[error("invalid stream options: {reason}")]
    InvalidOptions {
        /// What is wrong, in the runtime's words.
        reason: &'static str,
    },
    /// The URL is not one this client can open.
    #[error("invalid streaming url {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The client was configured with no protocol to offer.
    #[error("no streaming protocol to offer to {url}")]
    NoProtocols {
        /// The URL.
        url: String,
    },
    /// The TCP connection to the streaming server failed.
    #[error("cannot connect to the streaming server of {url}")]
    Connect {
        /// The URL.
        url: String,
        /// The connect error.
        #[source]
        source: std::io::Error,
    },
    /// The streaming server answered the upgrade with an HTTP error: 404 for
    /// a token that is unknown, already used or expired; 403 when it
    /// supports none of the offered protocols.
    #[error(
        "the streaming server refused {url} with HTTP {status}{}{}",
        body_suffix(body),
        refusal_hint(*status, offered)
    )]
    Refused {
        /// The URL.
        url: String,
        /// The HTTP status code.
        status: u16,
        /// The response body, trimmed (often empty).
        body: String,
        /// The subprotocols that were offered, comma-separated.
        offered: String,
    },
    /// The WebSocket handshake failed for another reason.
    #[error("websocket handshake with {url} failed")]
    Handshake {
        /// The URL.
        url: String,
        /// The WebSocket library's error.
        #[source]
        source: BoxError,
    },
    /// The server accepted the upgrade without selecting one of the offered
    /// subprotocols.
    #[error(
        "the streaming server of {url} selected {selected:?}, not one of the offered {offered}"
    )]
    Negotiation {
        /// The URL.
        url: String,
        /// The subprotocol it selected, if any.
        selected: Option<String>,
        /// The subprotocols that were offered, comma-separated.
        offered: String,
    },
    /// The server sent a message that breaks the protocol.
    #[error("malformed stream from {url}")]
    Protocol {
        /// The URL.
        url: String,
        /// What is malformed.
        #[source]
        source: FrameError,
    },
    /// The WebSocket connection broke during the session.
    #[error("streaming connection to {url} failed")]
    Connection {
        /// The URL.
        url: String,
        /// The WebSocket library's error.
        #[source]
        source: BoxError,
    },
    /// The runtime reported an error on a port-forward's error channel, such
    /// as nothing listening on the port in the pod.
    #[error("port-forward to port {port} through {url} failed: {message}")]
    PortForward {
        /// The URL.
        url: String,
        /// The forwarded port.
        port: u16,
        /// The runtime's error text.
        message: String,
    },
    /// The session has ended, so the request (such as a resize) cannot be
    /// sent.
    #[error("the session of {url} has ended")]
    Closed {
        /// The URL.
        url: String,
    },
}

impl StreamError {
    /// Whether the streaming server did not know the URL's token: it was
    /// never issued, was already used, or expired (HTTP 404).
    pub fn is_not_found(&self) -> bool {
        matches!(self, StreamError::Refused { status: 404, .. })
    }
}

fn body_suffix(body: &str) -> String {
    if body.is_empty() {
        String::new()
    } else {
        format!(": {body}")
    }
}

fn refusal_hint(status: u16, offered: &str) -> String {
    match status {
        404 => " (the token is unknown, already used or expired; \
                each URL is single use and valid for about a minute)"
            .to_owned(),
        403 => format!(" (the server supports none of the offered subprotocols: {offered})"),
        _ => String::new(),
    }
}

/// Opens exec, attach and port-forward URLs with a chosen set of protocols.
///
/// The free functions [`exec`], [`attach`], [`exec_collect`] and
/// [`port_forward`] use the default client, which offers
/// [`Protocol::PREFERENCE`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamClient {
    protocols: Vec<Protocol>,
}

impl Default for StreamClient {
    fn default() -> Self {
        Self {
            protocols: Protocol::PREFERENCE.to_vec(),
        }
    }
}

impl StreamClient {
    /// A client offering [`Protocol::PREFERENCE`].
    pub fn new() -> Self {
        Self::default()
    }

    /// Offers exactly these protocols, in this order of preference
    /// (duplicates are dropped). The runtime picks the first one it
    /// supports; offering one alone forces it or fails the upgrade.
    ///
    /// Port-forward exists only in the v4 protocols: Kubernetes'
    /// streaming server (and containerd's copy of it) refuses a
    /// port-forward offered only `channel.k8s.io` or
    /// `base64.channel.k8s.io`.
    #[must_use]
    pub fn protocols(mut self, protocols: impl IntoIterator<Item = Protocol>) -> Self {
        self.protocols.clear();
        for p in protocols {
            if !self.protocols.contains(&p) {
                self.protocols.push(p);
            }
        }
        self
    }

    /// The protocols offered, in order of preference.
    pub fn offered_protocols(&self) -> &[Protocol] {
        &self.protocols
    }

    /// Opens an exec URL (from `ExecResponse.url`); see [`exec`].
    ///
    /// # Errors
    ///
    /// See [`exec`].
    pub async fn exec(&self, url: &str, opts: ExecOptions) -> Result<Session, StreamError> {
        self.remote_command(url, opts).await
    }

    /// Opens an attach URL (from `AttachResponse.url`); see [`attach`].
    ///
    /// # Errors
    ///
    /// See [`exec`].
    pub async fn attach(&self, url: &str, opts: ExecOptions) -> Result<Session, StreamError> {
        self.remote_command(url, opts).await
    }

    /// Runs an exec URL to the end; see [`exec_collect`].
    ///
    /// # Errors
    ///
    /// See [`exec_collect`].
    pub async fn exec_collect(
        &self,
        url: &str,
        opts: ExecOptions,
        stdin: &[u8],
    ) -> Result<ExecOutput, StreamError> {
        if !stdin.is_empty() && !opts.stdin {
            return Err(StreamError::InvalidOptions {
                reason: "stdin data was given but stdin is not set",
            });
        }
        self.exec(url, opts).await?.collect(stdin).await
    }

    /// Opens a port-forward URL (from `PortForwardResponse.url`); see
    /// [`port_forward`].
    ///
    /// # Errors
    ///
    /// See [`port_forward`].
    pub async fn port_forward(
        &self,
        url: &str,
        port: u16,
    ) -> Result<PortForwardStream, StreamError> {
        let p = port.to_string();
        // containerd takes the port from the RPC; Kubernetes' streaming
        // library reads `port` when it takes it from the request, and the
        // API server's port-forward takes `ports`.
        let query = [("port", p.clone()), ("ports", p)];
        let (ws, protocol) = handshake::open(url, &query, &self.protocols).await?;
        port_forward::PortForwardStream::start(ws, protocol, url, port).await
    }

    async fn remote_command(&self, url: &str, opts: ExecOptions) -> Result<Session, StreamError> {
        opts.validate()?;
        let (ws, protocol) = handshake::open(url, &opts.query(), &self.protocols).await?;
        Ok(session::start(ws, protocol, url, opts))
    }
}

/// Opens an exec URL (from `ExecResponse.url`) as a [`Session`].
///
/// `opts` must be the streams of the `ExecRequest`. The command starts when
/// the runtime accepts the connection. Offers [`Protocol::PREFERENCE`]; use
/// [`StreamClient`] to choose.
///
/// # Errors
///
/// [`StreamError::InvalidOptions`] before connecting;
/// [`StreamError::InvalidUrl`], [`StreamError::Connect`],
/// [`StreamError::Refused`] (404 for a used or expired URL: see
/// [`StreamError::is_not_found`]), [`StreamError::Handshake`] or
/// [`StreamError::Negotiation`] when the session cannot be opened.
pub async fn exec(url: &str, opts: ExecOptions) -> Result<Session, StreamError> {
    StreamClient::default().exec(url, opts).await
}

/// Opens an attach URL (from `AttachResponse.url`) as a [`Session`].
///
/// `opts` must be the streams of the `AttachRequest`. Attaching never
/// reports the container's exit code: the session ends with
/// [`ExitStatus::Success`] when the container's process exits or the
/// attachment ends.
///
/// # Errors
///
/// As [`exec`].
pub async fn attach(url: &str, opts: ExecOptions) -> Result<Session, StreamError> {
    StreamClient::default().attach(url, opts).await
}

/// Runs an exec URL to the end and returns everything the command wrote,
/// with its [`ExitStatus`], like the `ExecSync` RPC but through the
/// streaming server.
///
/// `stdin` is written to the command's stdin (it must be empty unless
/// `opts.stdin` is set). Stdin is then left open, not closed: the protocols
/// containerd speaks cannot close stdin without ending the session (see
/// [`SessionStdin`]), so a command given stdin must stop reading by itself
/// (`head -c N`, `read`), or it runs until the runtime's stream idle
/// timeout.
///
/// # Errors
///
/// As [`exec`]; also [`StreamError::InvalidOptions`] for stdin data without
/// `opts.stdin`, and [`StreamError::Protocol`] or
/// [`StreamError::Connection`] when the session breaks.
pub async fn exec_collect(
    url: &str,
    opts: ExecOptions,
    stdin: &[u8],
) -> Result<ExecOutput, StreamError> {
    StreamClient::default().exec_collect(url, opts, stdin).await
}

/// Opens a port-forward URL (from `PortForwardResponse.url`) and returns the
/// connection to `port` in the pod sandbox.
///
/// `port` must be the port of the `PortForwardRequest` (one port per URL).
/// The runtime dials the port when the connection opens; this waits for its
/// port announcement on both channels, so a mismatch fails here. Offers
/// [`Protocol::PREFERENCE`]; the runtime picks a v4 protocol.
///
/// # Errors
///
/// As [`exec`]; also [`StreamError::Protocol`] with
/// [`FrameError::PortMismatch`] when the URL is for another port, and
/// [`StreamError::PortForward`] when the runtime reports an error first.
pub async fn port_forward(url: &str, port: u16) -> Result<PortForwardStream, StreamError> {
    StreamClient::default().port_forward(url, port).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_and_errors_can_move_between_tasks() {
        fn send_sync<T: Send + Sync + 'static>() {}
        send_sync::<StreamError>();
        send_sync::<FrameError>();
        send_sync::<Session>();
        send_sync::<SessionStdin>();
        send_sync::<SessionOutput>();
        send_sync::<Resizer>();
        send_sync::<PortForwardStream>();
        send_sync::<StreamClient>();
    }

    #[test]
    fn protocol_names_round_trip_and_default_order() {
        assert_eq!(
            Protocol::PREFERENCE.map(Protocol::name),
            [
                "v4.channel.k8s.io",
                "channel.k8s.io",
                "v4.base64.channel.k8s.io",
                "base64.channel.k8s.io"
            ]
        );
        for p in Protocol::PREFERENCE {
            assert_eq!(Protocol::from_name(p.name()), Some(p));
            assert_eq!(p.to_string(), p.name());
        }
        assert_eq!(Protocol::from_name("v5.channel.k8s.io"), None);
        assert_eq!(Protocol::from_name(""), None);
        assert!(Protocol::V4Channel.reports_exit_code() && !Protocol::V4Channel.is_base64());
        assert!(Protocol::V4Base64Channel.reports_exit_code());
        assert!(Protocol::V4Base64Channel.is_base64());
        assert!(!Protocol::Channel.reports_exit_code() && !Protocol::Channel.is_base64());
        assert!(
            !Protocol::Base64Channel.reports_exit_code() && Protocol::Base64Channel.is_base64()
        );
    }

    #[test]
    fn exec_options_are_validated_like_the_runtime() {
        assert_eq!(
            ExecOptions::default(),
            ExecOptions {
                stdin: false,
                stdout: true,
                stderr: true,
                tty: false
            }
        );
        ExecOptions::default().validate().unwrap();
        let tty_stderr = ExecOptions {
            tty: true,
            ..Default::default()
        };
        assert_eq!(
            tty_stderr.validate().unwrap_err().to_string(),
            "invalid stream options: tty and stderr cannot both be true"
        );
        let nothing = ExecOptions {
            stdin: false,
            stdout: false,
            stderr: false,
            tty: false,
        };
        assert_eq!(
            nothing.validate().unwrap_err().to_string(),
            "invalid stream options: one of stdin, stdout, and stderr must be set"
        );
        for (stdin, stdout) in [(true, false), (false, true), (true, true)] {
            let opts = ExecOptions {
                stdin,
                stdout,
                stderr: false,
                tty: true,
            };
            opts.validate().unwrap();
        }
    }

    #[test]
    fn exec_options_query_names_the_set_streams() {
        assert_eq!(
            ExecOptions::default().query(),
            [("output", "1".to_owned()), ("error", "1".to_owned())]
        );
        let opts = ExecOptions {
            stdin: true,
            stdout: true,
            stderr: false,
            tty: true,
        };
        assert_eq!(
            opts.query(),
            [
                ("input", "1".to_owned()),
                ("output", "1".to_owned()),
                ("tty", "1".to_owned())
            ]
        );
    }

    #[test]
    fn exit_status_codes_and_text() {
        assert_eq!(ExitStatus::Success.code(), Some(0));
        assert!(ExitStatus::Success.success());
        assert_eq!(ExitStatus::ExitCode(7).code(), Some(7));
        assert!(!ExitStatus::ExitCode(7).success());
        let failure = ExitStatus::Failure {
            reason: Some("InternalError".into()),
            message: "boom".into(),
        };
        assert_eq!(failure.code(), None);
        assert_eq!(failure.message(), Some("boom"));
        assert_eq!(failure.to_string(), "failure (InternalError): boom");
        assert_eq!(ExitStatus::Unknown.code(), None);
        assert_eq!(ExitStatus::ExitCode(7).to_string(), "exit code 7");
        assert_eq!(ExitStatus::Success.message(), None);
    }

    #[test]
    fn client_protocols_keep_order_and_drop_duplicates() {
        assert_eq!(
            StreamClient::new().offered_protocols(),
            Protocol::PREFERENCE
        );
        let c = StreamClient::new().protocols([
            Protocol::Base64Channel,
            Protocol::Channel,
            Protocol::Base64Channel,
        ]);
        assert_eq!(
            c.offered_protocols(),
            [Protocol::Base64Channel, Protocol::Channel]
        );
    }

    #[tokio::test]
    async fn invalid_options_fail_before_connecting() {
        // Nothing listens on port 1: a connect attempt would fail otherwise.
        let url = "http://127.0.0.1:1/exec/token";
        let opts = ExecOptions {
            tty: true,
            ..Default::default()
        };
        assert!(matches!(
            exec(url, opts).await,
            Err(StreamError::InvalidOptions { .. })
        ));
        assert!(matches!(
            exec_collect(url, ExecOptions::default(), b"data").await,
            Err(StreamError::InvalidOptions { .. })
        ));
        assert!(matches!(
            StreamClient::new()
                .protocols([])
                .exec(url, ExecOptions::default())
                .await,
            Err(StreamError::NoProtocols { .. })
        ));
    }

    #[test]
    fn refusals_explain_themselves() {
        let refused = |status: u16, body: &str| StreamError::Refused {
            url: "http://127.0.0.1:1/exec/abc".into(),
            status,
            body: body.into(),
            offered: "v5.channel.k8s.io".into(),
        };
        let e = refused(404, "404 page not found");
        assert!(e.is_not_found());
        assert_eq!(
            e.to_string(),
            "the streaming server refused http://127.0.0.1:1/exec/abc with HTTP 404: \
             404 page not found (the token is unknown, already used or expired; \
             each URL is single use and valid for about a minute)"
        );
        let e = refused(403, "");
        assert!(!e.is_not_found());
        assert_eq!(
            e.to_string(),
            "the streaming server refused http://127.0.0.1:1/exec/abc with HTTP 403 \
             (the server supports none of the offered subprotocols: v5.channel.k8s.io)"
        );
        assert_eq!(
            refused(500, "").to_string(),
            "the streaming server refused http://127.0.0.1:1/exec/abc with HTTP 500"
        );
    }
}
