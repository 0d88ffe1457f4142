//! Exec and attach sessions: a task that owns the WebSocket, and the
//! handles ([`SessionStdin`], [`SessionOutput`], [`Resizer`]) that talk to
//! it through channels.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use futures::{SinkExt as _, StreamExt as _};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_util::sync::{CancellationToken, DropGuard, PollSender};

use super::frame::{self, Codec, Ending, StatusCollector, Wire, WireFrame};
use super::handshake::Ws;
use super::{ExecOptions, ExecOutput, ExitStatus, Protocol, StreamError};

/// Largest stdin frame: bigger writes are split. The runtime accepts up to
/// 32 MiB per message; small frames keep interactive latency low.
const MAX_STDIN_FRAME: usize = 32 * 1024;
/// Output chunks buffered per stream before the session waits for a reader.
const OUTPUT_QUEUE: usize = 16;
/// Stdin writes and resizes queued before writers wait.
const COMMAND_QUEUE: usize = 16;

/// What the handles ask the connection task to send.
#[derive(Debug)]
enum Command {
    Stdin(Bytes),
    Resize {
        width: u16,
        height: u16,
    },
    /// End the session: close the WebSocket (stdin shutdown).
    Close,
}

/// Cancels the connection task when the last handle that owns a share of it
/// is dropped.
type Owner = Arc<DropGuard>;

/// An exec or attach session.
///
/// Like [`tokio::process::Child`], its streams are public fields to
/// [`take`](Option::take): `stdin` is `Some` when the options set stdin,
/// `stdout` and `stderr` when they set those. A background task owns the
/// connection; it ends when the runtime closes the session, or when the
/// session and all its taken streams are dropped (which closes the
/// connection, so the runtime ends the process's streams).
///
/// Output is buffered only a little: read stdout and stderr concurrently
/// (or drop the one you do not need), as with pipes, or the session stalls
/// on the unread one. [`wait`](Self::wait) and [`collect`](Self::collect)
/// drop or drain the streams still in the session.
#[derive(Debug)]
pub struct Session {
    /// The process's stdin, if the options set stdin.
    pub stdin: Option<SessionStdin>,
    /// The process's stdout (the terminal's output with a TTY), if the
    /// options set stdout.
    pub stdout: Option<SessionOutput>,
    /// The process's stderr, if the options set stderr.
    pub stderr: Option<SessionOutput>,
    protocol: Protocol,
    url: Arc<str>,
    commands: mpsc::Sender<Command>,
    task: JoinHandle<Result<ExitStatus, StreamError>>,
    owner: Owner,
}

/// Starts the connection task of a negotiated session.
pub(crate) fn start(ws: Ws, protocol: Protocol, url: &str, opts: ExecOptions) -> Session {
    let url: Arc<str> = Arc::from(url);
    let cancel = CancellationToken::new();
    let owner: Owner = Arc::new(cancel.clone().drop_guard());
    let (commands, command_rx) = mpsc::channel(COMMAND_QUEUE);
    let output = |on: bool| {
        if on {
            let (tx, rx) = mpsc::channel(OUTPUT_QUEUE);
            (Some(tx), Some(SessionOutput::new(rx, owner.clone())))
        } else {
            (None, None)
        }
    };
    let (stdout_tx, stdout) = output(opts.stdout);
    let (stderr_tx, stderr) = output(opts.stderr);
    let stdin = opts.stdin.then(|| SessionStdin {
        sender: PollSender::new(commands.clone()),
        shut_down: false,
        _owner: owner.clone(),
    });
    let task = tokio::spawn(run(
        ws,
        protocol,
        url.clone(),
        command_rx,
        stdout_tx,
        stderr_tx,
        cancel,
    ));
    Session {
        stdin,
        stdout,
        stderr,
        protocol,
        url,
        commands,
        task,
        owner,
    }
}

impl Session {
    /// The subprotocol the runtime selected.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// The URL the session was opened from.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Sets the terminal size (columns, rows) of a TTY session. The runtime
    /// ignores it without a TTY.
    ///
    /// # Errors
    ///
    /// [`StreamError::Closed`] when the session has ended.
    pub async fn resize(&self, width: u16, height: u16) -> Result<(), StreamError> {
        send_resize(&self.commands, &self.url, width, height).await
    }

    /// A handle that resizes the terminal from another task (for example on
    /// `SIGWINCH`). It does not keep the session open.
    pub fn resizer(&self) -> Resizer {
        Resizer {
            commands: self.commands.clone(),
            url: self.url.clone(),
        }
    }

    /// Waits until the session ends and returns how.
    ///
    /// Streams still in the session are dropped first (their data is
    /// discarded); streams taken out keep working until the end. Stdin is
    /// not closed: see [`SessionStdin`].
    ///
    /// # Errors
    ///
    /// [`StreamError::Protocol`] when the runtime broke the protocol,
    /// [`StreamError::Connection`] when the connection failed.
    pub async fn wait(self) -> Result<ExitStatus, StreamError> {
        let Session {
            stdin,
            stdout,
            stderr,
            url,
            task,
            owner,
            ..
        } = self;
        drop((stdin, stdout, stderr));
        let result = match task.await {
            Ok(result) => result,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => Err(StreamError::Closed {
                url: url.to_string(),
            }),
        };
        drop(owner);
        result
    }

    /// Writes `stdin` to the session's stdin (if any; it is left open, see
    /// [`SessionStdin`]), reads stdout and stderr to the end, and waits for
    /// the session's status; streams taken out before are not read.
    ///
    /// # Errors
    ///
    /// As [`wait`](Self::wait). A failure to write stdin because the session
    /// ended is not an error: the status tells how it ended.
    pub async fn collect(mut self, stdin: &[u8]) -> Result<ExecOutput, StreamError> {
        let input = self.stdin.take();
        let write = async move {
            if let Some(mut input) = input
                && !stdin.is_empty()
                && let Err(e) = input.write_all(stdin).await
            {
                tracing::debug!(error = %e, "stdin not fully written: the session ended");
            }
        };
        let (_, stdout, stderr) = tokio::join!(
            write,
            read_all(self.stdout.take()),
            read_all(self.stderr.take())
        );
        let status = self.wait().await?;
        Ok(ExecOutput {
            stdout,
            stderr,
            status,
        })
    }
}

async fn read_all(output: Option<SessionOutput>) -> Vec<u8> {
    let mut buf = Vec::new();
    if let Some(mut output) = output {
        // SessionOutput never fails: it ends when the session does.
        let _ = output.read_to_end(&mut buf).await;
    }
    buf
}

async fn send_resize(
    commands: &mpsc::Sender<Command>,
    url: &str,
    width: u16,
    height: u16,
) -> Result<(), StreamError> {
    commands
        .send(Command::Resize { width, height })
        .await
        .map_err(|_| StreamError::Closed {
            url: url.to_owned(),
        })
}

/// Resizes the terminal of a TTY session; see [`Session::resizer`].
#[derive(Clone, Debug)]
pub struct Resizer {
    commands: mpsc::Sender<Command>,
    url: Arc<str>,
}

impl Resizer {
    /// Sets the terminal size (columns, rows); see [`Session::resize`].
    ///
    /// # Errors
    ///
    /// [`StreamError::Closed`] when the session has ended.
    pub async fn resize(&self, width: u16, height: u16) -> Result<(), StreamError> {
        send_resize(&self.commands, &self.url, width, height).await
    }
}

/// The stdin of a session, as an [`AsyncWrite`].
///
/// Writes are queued to the session's connection task, in order with
/// resizes; [`flush`](tokio::io::AsyncWriteExt::flush) returns once they are
/// queued. Writes fail with [`io::ErrorKind::BrokenPipe`] once the session
/// has ended.
///
/// # Closing stdin
///
/// The WebSocket protocols before v5 (all that containerd 1.6 accepts) have
/// no signal that closes stdin alone. So
/// [`shutdown`](tokio::io::AsyncWriteExt::shutdown) closes the whole
/// WebSocket: the runtime then closes the process's stdin, stdout and stderr
/// together. Output the runtime sent before it saw the close still arrives;
/// anything later is lost, and so, usually, is the exit status:
/// [`Session::wait`] then returns [`ExitStatus::Unknown`].
///
/// Dropping the stdin without shutting it down leaves the process's stdin
/// open until the session ends.
#[derive(Debug)]
pub struct SessionStdin {
    sender: PollSender<Command>,
    shut_down: bool,
    _owner: Owner,
}

fn session_ended() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "the streaming session has ended")
}

impl AsyncWrite for SessionStdin {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.shut_down {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "stdin of the streaming session was shut down",
            )));
        }
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        ready!(self.sender.poll_reserve(cx)).map_err(|_| session_ended())?;
        let n = buf.len().min(MAX_STDIN_FRAME);
        self.sender
            .send_item(Command::Stdin(Bytes::copy_from_slice(&buf[..n])))
            .map_err(|_| session_ended())?;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.shut_down {
            return Poll::Ready(Ok(()));
        }
        match ready!(self.sender.poll_reserve(cx)) {
            Ok(()) => {
                // An error here means the session ended meanwhile: closed
                // either way.
                let _ = self.sender.send_item(Command::Close);
            }
            Err(_) => tracing::debug!("stdin shut down after the session ended"),
        }
        self.shut_down = true;
        self.sender.close();
        Poll::Ready(Ok(()))
    }
}

/// The stdout or stderr of a session, as an [`AsyncRead`].
///
/// It reaches end of file when the session ends, whether it ended well or
/// not: [`Session::wait`] tells which. Reads never fail.
#[derive(Debug)]
pub struct SessionOutput {
    receiver: mpsc::Receiver<Bytes>,
    chunk: Bytes,
    _owner: Owner,
}

impl SessionOutput {
    fn new(receiver: mpsc::Receiver<Bytes>, owner: Owner) -> Self {
        Self {
            receiver,
            chunk: Bytes::new(),
            _owner: owner,
        }
    }
}

impl AsyncRead for SessionOutput {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            if !self.chunk.is_empty() {
                let n = self.chunk.len().min(buf.remaining());
                let part = self.chunk.split_to(n);
                buf.put_slice(&part);
                return Poll::Ready(Ok(()));
            }
            match ready!(self.receiver.poll_recv(cx)) {
                Some(chunk) => self.chunk = chunk,
                None => return Poll::Ready(Ok(())),
            }
        }
    }
}

/// The connection task: runs the session until the runtime ends it, or
/// until every owner is dropped.
async fn run(
    ws: Ws,
    protocol: Protocol,
    url: Arc<str>,
    commands: mpsc::Receiver<Command>,
    stdout: Option<mpsc::Sender<Bytes>>,
    stderr: Option<mpsc::Sender<Bytes>>,
    cancel: CancellationToken,
) -> Result<ExitStatus, StreamError> {
    tokio::select! {
        biased;
        () = cancel.cancelled() => {
            tracing::debug!(url = &*url, "streaming session dropped by its owner");
            Ok(ExitStatus::Unknown)
        }
        result = drive(ws, protocol, &url, commands, stdout, stderr) => result,
    }
}

/// Sends and receives concurrently, so that a runtime blocked on sending
/// output never stops the client from sending input, and the reverse.
async fn drive(
    ws: Ws,
    protocol: Protocol,
    url: &str,
    commands: mpsc::Receiver<Command>,
    stdout: Option<mpsc::Sender<Bytes>>,
    stderr: Option<mpsc::Sender<Bytes>>,
) -> Result<ExitStatus, StreamError> {
    let (sink, stream) = ws.split();
    let client_closed = AtomicBool::new(false);
    let writer = write_loop(sink, commands, protocol.codec(), &client_closed);
    let reader = read_loop(stream, protocol, url, stdout, stderr, &client_closed);
    tokio::pin!(writer, reader);
    let mut writer_done = false;
    loop {
        tokio::select! {
            result = &mut reader => return result,
            result = &mut writer, if !writer_done => {
                writer_done = true;
                if let Err(e) = result {
                    // The reader sees the broken connection too and ends.
                    tracing::debug!(url, error = %e, "sending to the streaming server failed");
                }
            }
        }
    }
}

fn message(frame: WireFrame) -> Message {
    match frame {
        WireFrame::Binary(b) => Message::binary(b),
        WireFrame::Text(t) => Message::text(t),
    }
}

async fn write_loop(
    mut sink: futures::stream::SplitSink<Ws, Message>,
    mut commands: mpsc::Receiver<Command>,
    codec: Codec,
    client_closed: &AtomicBool,
) -> Result<(), tungstenite::Error> {
    while let Some(command) = commands.recv().await {
        match command {
            Command::Stdin(data) => {
                sink.send(message(frame::encode(codec, frame::STDIN, &data)))
                    .await?;
            }
            Command::Resize { width, height } => {
                let json = frame::encode_resize(width, height);
                sink.send(message(frame::encode(codec, frame::RESIZE, &json)))
                    .await?;
            }
            Command::Close => {
                client_closed.store(true, Ordering::SeqCst);
                return sink.close().await;
            }
        }
    }
    Ok(())
}

async fn read_loop(
    mut stream: futures::stream::SplitStream<Ws>,
    protocol: Protocol,
    url: &str,
    mut stdout: Option<mpsc::Sender<Bytes>>,
    mut stderr: Option<mpsc::Sender<Bytes>>,
    client_closed: &AtomicBool,
) -> Result<ExitStatus, StreamError> {
    let codec = protocol.codec();
    let mut status = StatusCollector::new(protocol);
    let malformed = |source| StreamError::Protocol {
        url: url.to_owned(),
        source,
    };
    let ending = loop {
        let msg = match stream.next().await {
            Some(Ok(msg)) => msg,
            None => break Ending::Dropped,
            Some(Err(e)) => {
                if client_closed.load(Ordering::SeqCst) || status.has_status() {
                    // The session is over either way.
                    break Ending::Dropped;
                }
                match e {
                    tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed => {
                        break Ending::Dropped;
                    }
                    e => {
                        return Err(StreamError::Connection {
                            url: url.to_owned(),
                            source: Box::new(e),
                        });
                    }
                }
            }
        };
        let frame = match msg {
            Message::Binary(bytes) => {
                frame::decode(codec, Wire::Binary(bytes), frame::REMOTE_COMMAND_CHANNELS)
            }
            Message::Text(text) => frame::decode(
                codec,
                Wire::Text(text.as_str()),
                frame::REMOTE_COMMAND_CHANNELS,
            ),
            Message::Close(_) => break Ending::Closed,
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
        }
        .map_err(malformed)?;
        match frame.channel {
            frame::STDOUT => forward(&mut stdout, frame.data).await,
            frame::STDERR => forward(&mut stderr, frame.data).await,
            frame::ERROR => status.push(&frame.data).map_err(malformed)?,
            channel => {
                // Stdin and resize only go the other way.
                tracing::debug!(
                    url,
                    channel,
                    "ignoring a frame on a client-to-runtime channel"
                );
            }
        }
    };
    let ending = if client_closed.load(Ordering::SeqCst) {
        Ending::ClientClosed
    } else {
        ending
    };
    let result = status.finish(ending).map_err(malformed);
    tracing::debug!(url, ?ending, ?result, "streaming session ended");
    result
}

/// Hands `data` to a reader; a reader that was dropped gets nothing more.
async fn forward(output: &mut Option<mpsc::Sender<Bytes>>, data: Bytes) {
    if data.is_empty() {
        // The runtime's "session is up" frame; an empty read would be EOF.
        return;
    }
    if let Some(sender) = output
        && sender.send(data).await.is_err()
    {
        *output = None;
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_server::{Server, ServerConn};
    use super::super::{StreamClient, exec};
    use super::*;

    fn all_streams() -> ExecOptions {
        ExecOptions {
            stdin: true,
            stdout: true,
            stderr: true,
            tty: false,
        }
    }

    #[tokio::test]
    async fn output_is_routed_and_the_v4_status_gives_the_exit_code() {
        let server = Server::start(|mut conn: ServerConn| async move {
            assert_eq!(conn.protocol, "v4.channel.k8s.io");
            assert_eq!(conn.query, "output=1&error=1");
            conn.send(1, b"").await;
            conn.send(1, b"out1 ").await;
            conn.send(2, b"err").await;
            conn.send(1, b"out2").await;
            conn.send(3, br#"{"metadata":{},"status":"Failure","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"7"}]}}"#).await;
            conn.close().await;
        })
        .await;
        let out = super::super::exec_collect(&server.url("exec"), ExecOptions::default(), b"")
            .await
            .unwrap();
        assert_eq!(out.stdout, b"out1 out2");
        assert_eq!(out.stderr, b"err");
        assert_eq!(out.status, ExitStatus::ExitCode(7));
        server.join().await;
    }

    #[tokio::test]
    async fn every_protocol_carries_stdin_output_and_status() {
        for protocol in Protocol::PREFERENCE {
            let server = Server::start(move |mut conn: ServerConn| async move {
                assert_eq!(conn.protocol, protocol.name());
                let (channel, data) = conn.recv().await.expect("stdin frame");
                assert_eq!((channel, &data[..]), (0, &b"ping"[..]));
                conn.send(1, b"pong").await;
                conn.send(2, b"warn").await;
                if protocol.reports_exit_code() {
                    conn.send(3, br#"{"metadata":{},"status":"Success"}"#).await;
                }
                conn.close().await;
            })
            .await;
            let session = StreamClient::new()
                .protocols([protocol])
                .exec(&server.url("exec"), all_streams())
                .await
                .unwrap();
            assert_eq!(session.protocol(), protocol);
            let out = session.collect(b"ping").await.unwrap();
            assert_eq!(out.stdout, b"pong", "{protocol}");
            assert_eq!(out.stderr, b"warn", "{protocol}");
            assert_eq!(out.status, ExitStatus::Success, "{protocol}");
            server.join().await;
        }
    }

    #[tokio::test]
    async fn pre_v4_error_text_is_a_failure_without_exit_code() {
        let server = Server::start(|mut conn: ServerConn| async move {
            conn.send(
                3,
                b"command terminated with non-zero exit code: exit code 3",
            )
            .await;
            conn.close().await;
        })
        .await;
        let out = StreamClient::new()
            .protocols([Protocol::Channel])
            .exec_collect(&server.url("exec"), ExecOptions::default(), b"")
            .await
            .unwrap();
        assert_eq!(out.status.code(), None);
        assert_eq!(
            out.status.message(),
            Some("command terminated with non-zero exit code: exit code 3")
        );
        server.join().await;
    }

    #[tokio::test]
    async fn resize_frames_carry_the_json_and_follow_stdin_order() {
        let server = Server::start(|mut conn: ServerConn| async move {
            assert_eq!(conn.query, "input=1&output=1&tty=1");
            assert_eq!(conn.recv().await.unwrap(), (0, b"a".to_vec()));
            assert_eq!(
                conn.recv().await.unwrap(),
                (4, br#"{"Width":100,"Height":40}"#.to_vec())
            );
            assert_eq!(
                conn.recv().await.unwrap(),
                (4, br#"{"Width":1,"Height":2}"#.to_vec())
            );
            conn.send(3, br#"{"status":"Success"}"#).await;
            conn.close().await;
        })
        .await;
        let opts = ExecOptions {
            stdin: true,
            stdout: true,
            stderr: false,
            tty: true,
        };
        let mut session = exec(&server.url("exec"), opts).await.unwrap();
        let mut stdin = session.stdin.take().unwrap();
        stdin.write_all(b"a").await.unwrap();
        session.resize(100, 40).await.unwrap();
        let resizer = session.resizer();
        resizer.resize(1, 2).await.unwrap();
        assert_eq!(session.wait().await.unwrap(), ExitStatus::Success);
        assert!(matches!(
            resizer.resize(3, 4).await,
            Err(StreamError::Closed { .. })
        ));
        assert_eq!(
            stdin.write_all(b"late").await.unwrap_err().kind(),
            io::ErrorKind::BrokenPipe
        );
        server.join().await;
    }

    #[tokio::test]
    async fn stdin_shutdown_closes_the_websocket_and_the_status_is_unknown() {
        let server = Server::start(|mut conn: ServerConn| async move {
            assert_eq!(conn.recv().await.unwrap(), (0, b"last words".to_vec()));
            conn.send(1, b"echo").await;
            // The client's close frame ends the stream of frames.
            assert_eq!(conn.recv().await, None);
        })
        .await;
        let mut session = exec(&server.url("exec"), all_streams()).await.unwrap();
        let mut stdin = session.stdin.take().unwrap();
        let mut stdout = session.stdout.take().unwrap();
        stdin.write_all(b"last words").await.unwrap();
        let mut echo = [0; 4];
        stdout.read_exact(&mut echo).await.unwrap();
        assert_eq!(&echo, b"echo");
        stdin.shutdown().await.unwrap();
        assert_eq!(
            stdin.write(b"x").await.unwrap_err().kind(),
            io::ErrorKind::BrokenPipe
        );
        assert_eq!(session.wait().await.unwrap(), ExitStatus::Unknown);
        let mut rest = Vec::new();
        stdout.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
        server.join().await;
    }

    #[tokio::test]
    async fn large_stdin_is_split_into_frames() {
        let total = MAX_STDIN_FRAME * 3 + 5;
        let server = Server::start(move |mut conn: ServerConn| async move {
            let mut got = Vec::new();
            while got.len() < total {
                let (channel, data) = conn.recv().await.unwrap();
                assert_eq!(channel, 0);
                assert!(data.len() <= MAX_STDIN_FRAME);
                got.extend_from_slice(&data);
            }
            assert!(got.iter().enumerate().all(|(i, b)| *b == (i % 251) as u8));
            conn.send(1, &got.len().to_string().into_bytes()).await;
            conn.send(3, br#"{"status":"Success"}"#).await;
            conn.close().await;
        })
        .await;
        let data: Vec<u8> = (0..total).map(|i| (i % 251) as u8).collect();
        let out = super::super::exec_collect(&server.url("exec"), all_streams(), &data)
            .await
            .unwrap();
        assert_eq!(out.stdout, total.to_string().as_bytes());
        server.join().await;
    }

    #[tokio::test]
    async fn malformed_frames_end_the_session_with_a_clear_error() {
        let cases: [(&[u8], &str); 3] = [
            (b"", "empty frame (no channel byte)"),
            (
                b"\x09x",
                "unknown channel 9 (the protocol has channels 0 to 4)",
            ),
            (b"\x03{not json", "invalid status on the error channel"),
        ];
        for (raw, want) in cases {
            let server = Server::start(move |mut conn: ServerConn| async move {
                conn.send_raw(Message::binary(raw.to_vec())).await;
                conn.close().await;
            })
            .await;
            let err = super::super::exec_collect(&server.url("exec"), ExecOptions::default(), b"")
                .await
                .unwrap_err();
            let StreamError::Protocol { source, .. } = &err else {
                panic!("{raw:?}: {err}");
            };
            assert!(source.to_string().contains(want), "{source}");
            assert!(
                err.to_string()
                    .starts_with("malformed stream from http://127.0.0.1:")
            );
            server.join().await;
        }
        // A text frame under a binary protocol.
        let server = Server::start(|mut conn: ServerConn| async move {
            conn.send_raw(Message::text("1aGk=")).await;
            conn.close().await;
        })
        .await;
        let err = super::super::exec_collect(&server.url("exec"), ExecOptions::default(), b"")
            .await
            .unwrap_err();
        assert!(matches!(err, StreamError::Protocol { .. }), "{err}");
        server.join().await;
    }

    #[tokio::test]
    async fn a_dropped_session_closes_the_connection() {
        let server = Server::start(|mut conn: ServerConn| async move {
            // The client goes away without a status: the server sees the
            // connection end.
            assert_eq!(conn.recv().await, None);
        })
        .await;
        let session = exec(&server.url("exec"), ExecOptions::default())
            .await
            .unwrap();
        drop(session);
        server.join().await;
    }

    #[tokio::test]
    async fn an_unread_stream_does_not_block_the_status() {
        // Far more stderr than the queue holds; the caller only reads
        // stdout, and wait() discards what nobody takes.
        let server = Server::start(|mut conn: ServerConn| async move {
            for _ in 0..(OUTPUT_QUEUE * 4) {
                conn.send(2, b"noise").await;
            }
            conn.send(1, b"signal").await;
            conn.send(3, br#"{"status":"Success"}"#).await;
            conn.close().await;
        })
        .await;
        let mut session = exec(&server.url("exec"), ExecOptions::default())
            .await
            .unwrap();
        let mut stdout = session.stdout.take().unwrap();
        let status = session.wait().await.unwrap();
        assert_eq!(status, ExitStatus::Success);
        let mut out = Vec::new();
        stdout.read_to_end(&mut out).await.unwrap();
        assert_eq!(out, b"signal");
        server.join().await;
    }

    #[tokio::test]
    async fn refusals_and_missing_subprotocols_are_reported() {
        let server = Server::refuse(404, "404 page not found\n").await;
        let err = exec(&server.url("exec"), ExecOptions::default())
            .await
            .unwrap_err();
        assert!(err.is_not_found(), "{err}");
        assert!(
            err.to_string()
                .contains("HTTP 404: 404 page not found (the token"),
            "{err}"
        );

        let server = Server::refuse(403, "").await;
        let err = exec(&server.url("exec"), ExecOptions::default())
            .await
            .unwrap_err();
        assert!(
            matches!(err, StreamError::Refused { status: 403, .. }),
            "{err}"
        );

        let server = Server::start_without_subprotocol().await;
        let err = exec(&server.url("exec"), ExecOptions::default())
            .await
            .unwrap_err();
        assert!(
            matches!(err, StreamError::Negotiation { selected: None, .. }),
            "{err}"
        );
    }
}
