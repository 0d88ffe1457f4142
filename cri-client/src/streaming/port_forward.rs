//! Port-forward: one TCP connection to a port in the pod sandbox, carried on
//! the data channel of a WebSocket.

use std::collections::VecDeque;
use std::fmt;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use futures::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::tungstenite::{self, Message};

use super::frame::{self, PortPrefix, Wire, WireFrame};
use super::handshake::Ws;
use super::{FrameError, Protocol, StreamError};

/// Largest data frame sent: bigger writes are split.
const MAX_DATA_FRAME: usize = 32 * 1024;

/// The connection to a port in a pod sandbox, through the runtime's
/// streaming server; see [`port_forward`](super::port_forward).
///
/// Reading and writing carry the TCP bytes. Wrap it in
/// [`tokio::io::split`] to read and write from different tasks, or use
/// [`tokio::io::copy_bidirectional`] to serve a local socket with it.
///
/// - When the pod's side closes the connection, the runtime closes the
///   WebSocket and reads reach end of file.
/// - An error the runtime reports on the error channel (for example nothing
///   listening on the port: the runtime dials it only when the stream opens)
///   fails every later read and write with an [`io::Error`] of kind
///   [`Other`](io::ErrorKind::Other) whose inner error is
///   [`StreamError::PortForward`], carrying the runtime's text. Data received
///   before it is still read first.
/// - [`shutdown`](tokio::io::AsyncWriteExt::shutdown) flushes and stops
///   writing, but sends nothing: the v4 protocols cannot half-close, and
///   closing the WebSocket would lose the response. The pod's side sees the
///   end of the stream only when the stream is dropped or
///   [`close`](Self::close)d.
/// - Writes are buffered: [`flush`](tokio::io::AsyncWriteExt::flush) before
///   waiting for an answer (an opportunistic flush also happens on each
///   write and read).
pub struct PortForwardStream {
    ws: Ws,
    protocol: Protocol,
    url: String,
    port: u16,
    data_prefix: PortPrefix,
    error_prefix: PortPrefix,
    pending: VecDeque<Bytes>,
    error_text: Vec<u8>,
    eof: bool,
    write_shut: bool,
    needs_flush: bool,
}

impl fmt::Debug for PortForwardStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PortForwardStream")
            .field("url", &self.url)
            .field("port", &self.port)
            .field("protocol", &self.protocol)
            .field("eof", &self.eof)
            .finish_non_exhaustive()
    }
}

impl PortForwardStream {
    /// Wraps a negotiated WebSocket and waits for the runtime's port
    /// announcement on both channels.
    pub(crate) async fn start(
        ws: Ws,
        protocol: Protocol,
        url: &str,
        port: u16,
    ) -> Result<Self, StreamError> {
        let mut stream = Self {
            ws,
            protocol,
            url: url.to_owned(),
            port,
            data_prefix: PortPrefix::new(frame::PORT_DATA, port),
            error_prefix: PortPrefix::new(frame::PORT_ERROR, port),
            pending: VecDeque::new(),
            error_text: Vec::new(),
            eof: false,
            write_shut: false,
            needs_flush: false,
        };
        while !(stream.data_prefix.is_done() && stream.error_prefix.is_done()) {
            if let Some(error) = stream.remote_error() {
                return Err(error);
            }
            if stream.eof {
                let channel = if stream.data_prefix.is_done() {
                    frame::PORT_ERROR
                } else {
                    frame::PORT_DATA
                };
                return Err(stream.malformed(FrameError::MissingPortPrefix { channel }));
            }
            poll_fn(|cx| stream.poll_frame(cx)).await?;
        }
        tracing::debug!(url, port, %protocol, "port-forward open");
        Ok(stream)
    }

    /// The subprotocol the runtime selected.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// The forwarded port in the pod sandbox.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL the stream was opened from.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Flushes and closes the WebSocket with a close frame, so the runtime
    /// closes its connection to the pod's port. Dropping the stream closes
    /// the TCP connection without one, which has the same effect.
    ///
    /// # Errors
    ///
    /// [`StreamError::Connection`] when the connection was already broken.
    pub async fn close(mut self) -> Result<(), StreamError> {
        match futures::SinkExt::close(&mut self.ws).await {
            Ok(())
            | Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                Ok(())
            }
            Err(e) => Err(self.connection(e)),
        }
    }

    fn malformed(&self, source: FrameError) -> StreamError {
        StreamError::Protocol {
            url: self.url.clone(),
            source,
        }
    }

    fn connection(&self, e: tungstenite::Error) -> StreamError {
        StreamError::Connection {
            url: self.url.clone(),
            source: Box::new(e),
        }
    }

    /// The runtime's error, once its error channel carried text.
    fn remote_error(&self) -> Option<StreamError> {
        if self.error_text.is_empty() {
            return None;
        }
        Some(StreamError::PortForward {
            url: self.url.clone(),
            port: self.port,
            message: String::from_utf8_lossy(&self.error_text).trim().to_owned(),
        })
    }

    fn write_error(&self, e: tungstenite::Error) -> io::Error {
        match e {
            tungstenite::Error::Io(e) => e,
            tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed => {
                io::Error::new(
                    io::ErrorKind::BrokenPipe,
                    "the port-forward connection is closed",
                )
            }
            e => io::Error::other(self.connection(e)),
        }
    }

    /// Receives and files one message: data into `pending`, error text into
    /// `error_text`; the end of the connection sets `eof`.
    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), StreamError>> {
        let msg = match ready!(Pin::new(&mut self.ws).poll_next(cx)) {
            Some(Ok(msg)) => msg,
            None
            | Some(Err(
                tungstenite::Error::ConnectionClosed
                | tungstenite::Error::AlreadyClosed
                | tungstenite::Error::Protocol(
                    tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
                ),
            )) => {
                self.eof = true;
                return Poll::Ready(Ok(()));
            }
            Some(Err(e)) => {
                self.eof = true;
                return Poll::Ready(Err(self.connection(e)));
            }
        };
        let codec = self.protocol.codec();
        let decoded = match msg {
            Message::Binary(bytes) => {
                frame::decode(codec, Wire::Binary(bytes), frame::PORT_FORWARD_CHANNELS)
            }
            Message::Text(text) => frame::decode(
                codec,
                Wire::Text(text.as_str()),
                frame::PORT_FORWARD_CHANNELS,
            ),
            Message::Close(_) => {
                self.eof = true;
                return Poll::Ready(Ok(()));
            }
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {
                return Poll::Ready(Ok(()));
            }
        };
        let result = decoded.and_then(|f| {
            if f.channel == frame::PORT_DATA {
                let data = self.data_prefix.feed(f.data)?;
                if !data.is_empty() {
                    self.pending.push_back(data);
                }
            } else {
                let text = self.error_prefix.feed(f.data)?;
                if self.error_text.len() + text.len() <= frame::MAX_STATUS_LEN {
                    self.error_text.extend_from_slice(&text);
                }
            }
            Ok(())
        });
        Poll::Ready(result.map_err(|e| {
            self.eof = true;
            self.malformed(e)
        }))
    }
}

impl AsyncRead for PortForwardStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if let Some(chunk) = this.pending.front_mut() {
                let n = chunk.len().min(buf.remaining());
                buf.put_slice(&chunk.split_to(n));
                if chunk.is_empty() {
                    this.pending.pop_front();
                }
                return Poll::Ready(Ok(()));
            }
            if let Some(error) = this.remote_error() {
                return Poll::Ready(Err(io::Error::other(error)));
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            if this.needs_flush
                && let Poll::Ready(Ok(())) = Pin::new(&mut this.ws).poll_flush(cx)
            {
                this.needs_flush = false;
            }
            ready!(this.poll_frame(cx)).map_err(io::Error::other)?;
        }
    }
}

impl AsyncWrite for PortForwardStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Some(error) = this.remote_error() {
            return Poll::Ready(Err(io::Error::other(error)));
        }
        if this.write_shut {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the port-forward stream was shut down for writing",
            )));
        }
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        ready!(Pin::new(&mut this.ws).poll_ready(cx)).map_err(|e| this.write_error(e))?;
        let n = buf.len().min(MAX_DATA_FRAME);
        let msg = match frame::encode(this.protocol.codec(), frame::PORT_DATA, &buf[..n]) {
            WireFrame::Binary(b) => Message::binary(b),
            WireFrame::Text(t) => Message::text(t),
        };
        Pin::new(&mut this.ws)
            .start_send(msg)
            .map_err(|e| this.write_error(e))?;
        this.needs_flush = true;
        if let Poll::Ready(Ok(())) = Pin::new(&mut this.ws).poll_flush(cx) {
            this.needs_flush = false;
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(Pin::new(&mut this.ws).poll_flush(cx)).map_err(|e| this.write_error(e))?;
        this.needs_flush = false;
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.write_shut {
            ready!(Pin::new(&mut *this).poll_flush(cx))?;
            this.write_shut = true;
        }
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::super::test_server::{Server, ServerConn};
    use super::super::{StreamClient, port_forward};
    use super::*;

    const V4: [Protocol; 2] = [Protocol::V4Channel, Protocol::V4Base64Channel];

    async fn announce(conn: &mut ServerConn, port: u16) {
        conn.send(0, &port.to_le_bytes()).await;
        conn.send(1, &port.to_le_bytes()).await;
    }

    #[tokio::test]
    async fn bytes_flow_both_ways_in_both_v4_codecs() {
        for protocol in V4 {
            let server = Server::start_with(&V4, move |mut conn: ServerConn| async move {
                assert_eq!(conn.protocol, protocol.name());
                assert_eq!(conn.query, "port=8080&ports=8080");
                announce(&mut conn, 8080).await;
                let (channel, data) = conn.recv().await.unwrap();
                assert_eq!((channel, &data[..]), (0, &b"GET / HTTP/1.0\r\n\r\n"[..]));
                conn.send(0, b"HTTP/1.0 200 OK\r\n\r\n").await;
                conn.send(0, b"hello").await;
                conn.close().await;
            })
            .await;
            let mut pf = StreamClient::new()
                .protocols([protocol])
                .port_forward(&server.url("portforward"), 8080)
                .await
                .unwrap();
            assert_eq!((pf.protocol(), pf.port()), (protocol, 8080));
            pf.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
            pf.flush().await.unwrap();
            let mut response = Vec::new();
            pf.read_to_end(&mut response).await.unwrap();
            assert_eq!(response, b"HTTP/1.0 200 OK\r\n\r\nhello");
            server.join().await;
        }
    }

    #[tokio::test]
    async fn the_runtime_error_text_surfaces_as_an_io_error() {
        let server = Server::start_with(&V4, |mut conn: ServerConn| async move {
            announce(&mut conn, 9).await;
            conn.send(0, b"partial").await;
            conn.send(
                1,
                b"error forwarding port 9 to pod abc, uid : connection refused",
            )
            .await;
            conn.close().await;
        })
        .await;
        let mut pf = port_forward(&server.url("portforward"), 9).await.unwrap();
        let mut buf = [0; 7];
        pf.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"partial");
        let err = pf.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::Other);
        let inner = err
            .get_ref()
            .unwrap()
            .downcast_ref::<StreamError>()
            .unwrap();
        assert!(matches!(inner, StreamError::PortForward { port: 9, .. }));
        assert!(
            err.to_string()
                .ends_with("failed: error forwarding port 9 to pod abc, uid : connection refused"),
            "{err}"
        );
        assert_eq!(
            pf.write(b"x").await.unwrap_err().to_string(),
            err.to_string()
        );
        server.join().await;
    }

    #[tokio::test]
    async fn a_url_for_another_port_fails_at_open() {
        let server = Server::start_with(&V4, |mut conn: ServerConn| async move {
            announce(&mut conn, 8081).await;
            conn.close().await;
        })
        .await;
        let err = port_forward(&server.url("portforward"), 8080)
            .await
            .unwrap_err();
        let StreamError::Protocol { source, .. } = &err else {
            panic!("{err}");
        };
        assert_eq!(
            *source,
            FrameError::PortMismatch {
                channel: 0,
                expected: 8080,
                got: 8081
            }
        );
        server.join().await;
    }

    #[tokio::test]
    async fn a_connection_closed_before_the_announcement_is_an_error() {
        let server = Server::start_with(&V4, |mut conn: ServerConn| async move {
            conn.send(0, &80u16.to_le_bytes()).await;
            conn.close().await;
        })
        .await;
        let err = port_forward(&server.url("portforward"), 80)
            .await
            .unwrap_err();
        assert!(
            err.source_text()
                .contains("before the runtime announced the port on channel 1"),
            "{err}"
        );
        server.join().await;
    }

    #[tokio::test]
    async fn shutdown_stops_writes_but_keeps_reading() {
        let server = Server::start_with(&V4, |mut conn: ServerConn| async move {
            announce(&mut conn, 80).await;
            assert_eq!(conn.recv().await.unwrap(), (0, b"req".to_vec()));
            conn.send(0, b"resp").await;
            conn.close().await;
        })
        .await;
        let mut pf = port_forward(&server.url("portforward"), 80).await.unwrap();
        pf.write_all(b"req").await.unwrap();
        pf.shutdown().await.unwrap();
        assert_eq!(
            pf.write(b"more").await.unwrap_err().kind(),
            io::ErrorKind::BrokenPipe
        );
        let mut response = String::new();
        pf.read_to_string(&mut response).await.unwrap();
        assert_eq!(response, "resp");
        server.join().await;
    }

    #[tokio::test]
    async fn pre_v4_only_offers_are_refused_like_the_runtime_does() {
        let server = Server::start_with(&V4, |_conn: ServerConn| async move {}).await;
        let err = StreamClient::new()
            .protocols([Protocol::Channel, Protocol::Base64Channel])
            .port_forward(&server.url("portforward"), 80)
            .await
            .unwrap_err();
        assert!(
            matches!(err, StreamError::Refused { status: 403, .. }),
            "{err}"
        );
        server.join().await;
    }

    trait SourceText {
        fn source_text(&self) -> String;
    }

    impl SourceText for StreamError {
        fn source_text(&self) -> String {
            let mut text = self.to_string();
            let mut source = std::error::Error::source(self);
            while let Some(s) = source {
                text.push_str(": ");
                text.push_str(&s.to_string());
                source = s.source();
            }
            text
        }
    }
}
