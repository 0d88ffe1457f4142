//! `tcpSocket` probes and the probe dialer shared by every network mechanism.
//!
//! Upstream: `pkg/probe/tcp/tcp.go` (a dial within the timeout is Success, even if the
//! peer closes at once; the dial error is the Failure message) and
//! `pkg/probe/dialer_others.go` (`ProbeDialer`: `SO_LINGER` on, 1 s, so that probe
//! sockets do not pile up in TIME-WAIT, kubernetes #89898).

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;

use super::join_host_port;
use crate::outcome::ProbeOutcome;

/// The linger time of every probe socket, as upstream's `ProbeDialer` (1 s rather than
/// 0, so that a close sends FIN rather than RST).
pub(super) const PROBE_LINGER: Duration = Duration::from_secs(1);

/// One TCP attempt to `host:port` within `timeout`.
pub(super) async fn probe(host: &str, port: u16, timeout: Duration) -> ProbeOutcome {
    match dial(host, port, Some(Instant::now() + timeout)).await {
        // Dropping the stream closes it at once, as upstream's `conn.Close()`.
        Ok(_stream) => ProbeOutcome::success(""),
        Err(e) => ProbeOutcome::failure(e.to_string()),
    }
}

/// Why a dial failed, formatted as Go's `net.OpError` for `dial tcp`.
#[derive(Debug)]
pub(super) enum DialError {
    /// The host name could not be resolved (`dial tcp: lookup <host>: <reason>`).
    Lookup {
        /// The name.
        host: String,
        /// The reason.
        reason: String,
    },
    /// The connect failed (`dial tcp <addr>: connect: <reason>`).
    Connect {
        /// The address dialled.
        addr: SocketAddr,
        /// The reason (Go's errno text).
        reason: String,
    },
    /// The deadline passed (`dial tcp <addr>: i/o timeout`; without an address when it
    /// passed during the name lookup).
    Timeout {
        /// The address being dialled, if resolution had finished.
        addr: Option<SocketAddr>,
        /// The name being resolved otherwise.
        host: String,
    },
    /// The socket could not be set up (`dial tcp <addr>: socket: <reason>`).
    Socket {
        /// The address.
        addr: SocketAddr,
        /// The reason.
        reason: String,
    },
}

impl fmt::Display for DialError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DialError::Lookup { host, reason } => write!(f, "dial tcp: lookup {host}: {reason}"),
            DialError::Connect { addr, reason } => write!(f, "dial tcp {addr}: connect: {reason}"),
            DialError::Timeout {
                addr: Some(addr), ..
            } => write!(f, "dial tcp {addr}: i/o timeout"),
            DialError::Timeout { addr: None, host } => {
                write!(f, "dial tcp: lookup {host}: i/o timeout")
            }
            DialError::Socket { addr, reason } => write!(f, "dial tcp {addr}: socket: {reason}"),
        }
    }
}

impl std::error::Error for DialError {}

/// Go's text for an OS error: the C library's message with a lowercase first letter
/// (Go's errno table is glibc's `strerror` in lower case: `connection refused`,
/// `no route to host`, `network is unreachable`), without Rust's ` (os error N)`.
pub(super) fn os_error_text(err: &io::Error) -> String {
    let text = err.to_string();
    let text = match (err.raw_os_error(), text.rfind(" (os error ")) {
        (Some(_), Some(at)) => &text[..at],
        _ => text.as_str(),
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Dial `host:port` (an IP literal, or a name resolved here) with `SO_LINGER` of
/// [`PROBE_LINGER`], giving up at `deadline` if one is given. Addresses of a name are
/// tried in order; the first error is reported, as Go's serial dialer does.
pub(super) async fn dial(
    host: &str,
    port: u16,
    deadline: Option<Instant>,
) -> Result<ProbeStream, DialError> {
    let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => {
            let lookup = tokio::net::lookup_host(join_host_port(host, port));
            let resolved = match deadline {
                Some(deadline) => {
                    tokio::time::timeout_at(deadline, lookup)
                        .await
                        .map_err(|_| DialError::Timeout {
                            addr: None,
                            host: host.to_owned(),
                        })?
                }
                None => lookup.await,
            };
            let addrs: Vec<SocketAddr> = resolved
                .map_err(|e| DialError::Lookup {
                    host: host.to_owned(),
                    reason: os_error_text(&e),
                })?
                .collect();
            if addrs.is_empty() {
                return Err(DialError::Lookup {
                    host: host.to_owned(),
                    reason: "no such host".to_owned(),
                });
            }
            addrs
        }
    };
    let mut first_error = None;
    for addr in addrs {
        match connect_one(addr, deadline).await {
            Ok(stream) => return Ok(stream),
            Err(e @ DialError::Timeout { .. }) => return Err(first_error.unwrap_or(e)),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    Err(first_error.expect("at least one address was dialled"))
}

async fn connect_one(
    addr: SocketAddr,
    deadline: Option<Instant>,
) -> Result<ProbeStream, DialError> {
    let socket_error = |e: io::Error| DialError::Socket {
        addr,
        reason: os_error_text(&e),
    };
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4(),
        SocketAddr::V6(_) => TcpSocket::new_v6(),
    }
    .map_err(socket_error)?;
    socket2::SockRef::from(&socket)
        .set_linger(Some(PROBE_LINGER))
        .map_err(socket_error)?;
    let connect = socket.connect(addr);
    let connected = match deadline {
        Some(deadline) => tokio::time::timeout_at(deadline, connect)
            .await
            .map_err(|_| DialError::Timeout {
                addr: Some(addr),
                host: addr.ip().to_string(),
            })?,
        None => connect.await,
    };
    let stream = connected.map_err(|e| DialError::Connect {
        addr,
        reason: os_error_text(&e),
    })?;
    // Go's dialer sets TCP_NODELAY on every TCP connection; without it the small
    // HTTP/2 frames of a gRPC health check wait on delayed ACKs (about 18 ms a probe
    // measured here instead of well under 1 ms).
    stream.set_nodelay(true).map_err(socket_error)?;
    Ok(ProbeStream {
        inner: Some(stream),
    })
}

/// A connected probe socket (`SO_LINGER` of 1 s).
///
/// With a non-zero linger time, Linux's `close(2)` waits until the FIN is acknowledged
/// or the linger time passes, even on a non-blocking socket: that wait would stall a
/// runtime worker thread (the reason Tokio deprecated its own `set_linger`). Dropping a
/// `ProbeStream` therefore hands the socket to Tokio's blocking pool to close; outside a
/// runtime it is closed in place.
#[derive(Debug)]
pub(super) struct ProbeStream {
    inner: Option<TcpStream>,
}

impl ProbeStream {
    fn stream(&mut self) -> io::Result<&mut TcpStream> {
        self.inner
            .as_mut()
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotConnected))
    }
}

impl Drop for ProbeStream {
    fn drop(&mut self) {
        let Some(stream) = self.inner.take() else {
            return;
        };
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if let Ok(std_stream) = stream.into_std() {
            handle.spawn_blocking(move || drop(std_stream));
        }
    }
}

impl AsyncRead for ProbeStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut().stream() {
            Ok(s) => Pin::new(s).poll_read(cx, buf),
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

impl AsyncWrite for ProbeStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut().stream() {
            Ok(s) => Pin::new(s).poll_write(cx, buf),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut().stream() {
            Ok(s) => Pin::new(s).poll_flush(cx),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut().stream() {
            Ok(s) => Pin::new(s).poll_shutdown(cx),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut().stream() {
            Ok(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.as_ref().is_some_and(|s| s.is_write_vectored())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dial_errors_read_like_go() {
        let v4: SocketAddr = "10.0.0.7:8080".parse().unwrap();
        let v6: SocketAddr = "[fd00::7]:80".parse().unwrap();
        let cases = [
            (
                DialError::Connect {
                    addr: v4,
                    reason: "connection refused".into(),
                },
                "dial tcp 10.0.0.7:8080: connect: connection refused",
            ),
            (
                DialError::Timeout {
                    addr: Some(v6),
                    host: "fd00::7".into(),
                },
                "dial tcp [fd00::7]:80: i/o timeout",
            ),
            (
                DialError::Timeout {
                    addr: None,
                    host: "db.example".into(),
                },
                "dial tcp: lookup db.example: i/o timeout",
            ),
            (
                DialError::Lookup {
                    host: "nope.invalid".into(),
                    reason: "no such host".into(),
                },
                "dial tcp: lookup nope.invalid: no such host",
            ),
            (
                DialError::Socket {
                    addr: v4,
                    reason: "too many open files".into(),
                },
                "dial tcp 10.0.0.7:8080: socket: too many open files",
            ),
        ];
        for (err, want) in cases {
            assert_eq!(err.to_string(), want);
        }
    }

    #[tokio::test]
    async fn probe_sockets_linger_one_second() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let stream = dial("127.0.0.1", port, None).await.unwrap();
        let tcp = stream.inner.as_ref().unwrap();
        assert_eq!(
            socket2::SockRef::from(tcp).linger().unwrap(),
            Some(Duration::from_secs(1))
        );
        // Dropping hands the close to the blocking pool; the peer sees an orderly EOF.
        drop(stream);
        let (mut accepted, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 1];
        let n = tokio::io::AsyncReadExt::read(&mut accepted, &mut buf)
            .await
            .unwrap();
        assert_eq!(n, 0);
    }

    #[tokio::test]
    async fn names_are_resolved_before_dialling() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        // `localhost` may list ::1 first: the addresses are tried in order.
        dial("localhost", port, None).await.unwrap();
        let err = dial("no-such-host.invalid", port, None).await.unwrap_err();
        assert!(
            err.to_string()
                .starts_with("dial tcp: lookup no-such-host.invalid: "),
            "{err}"
        );
    }

    #[test]
    fn os_errors_use_gos_lowercase_errno_text() {
        let cases = [
            (111, "connection refused"),
            (113, "no route to host"),
            (101, "network is unreachable"),
            (110, "connection timed out"),
            (104, "connection reset by peer"),
        ];
        for (errno, want) in cases {
            assert_eq!(os_error_text(&io::Error::from_raw_os_error(errno)), want);
        }
        let custom = io::Error::other("Something odd");
        assert_eq!(os_error_text(&custom), "something odd");
    }
}
