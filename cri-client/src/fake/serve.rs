//! Serving the fake: an in-process transport, Unix sockets, and the
//! simulated restart that takes both down and brings them back.
//!
//! While the fake serves, it has an *incarnation*: a token that is cancelled
//! when a restart begins (calls in flight answer `Unavailable`, connections
//! shut down gracefully), a second token that cuts connections that do not
//! close in time, and a wait group that tells when every connection of the
//! incarnation is gone.

use std::io;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures::future::{Either, Ready, ready};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream};
use tokio::net::UnixListener;
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;
use tonic::Status;
use tonic::service::Routes;
use tonic::transport::{Channel, Uri};

use super::FakeRuntime;
use super::config::AfterRestart;

/// How long a restart waits for connections to finish their calls and close
/// before it cuts them.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Buffer of each direction of an in-process connection.
const DUPLEX_BUFFER: usize = 256 * 1024;

/// One serving period of the fake, from start or restart to the next restart.
#[derive(Debug)]
struct Incarnation {
    /// Cancelled when a restart begins.
    graceful: CancellationToken,
    /// Cancelled when the restart stops waiting for connections.
    kill: CancellationToken,
    /// Cloned into every task that serves this incarnation; dropped by the
    /// restart so that `done` reports when the last task ended.
    guard: Mutex<Option<mpsc::Sender<()>>>,
    done: Mutex<Option<mpsc::Receiver<()>>>,
}

impl Incarnation {
    fn new() -> Arc<Incarnation> {
        let (guard, done) = mpsc::channel(1);
        Arc::new(Incarnation {
            graceful: CancellationToken::new(),
            kill: CancellationToken::new(),
            guard: Mutex::new(Some(guard)),
            done: Mutex::new(Some(done)),
        })
    }

    fn guard(&self) -> Option<mpsc::Sender<()>> {
        self.guard
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// A Unix socket the fake serves on, across restarts.
#[derive(Debug)]
struct UnixSlot {
    path: PathBuf,
    stop: CancellationToken,
    /// The accept loop of the current incarnation, and the token that
    /// closes its connections.
    accept_loop: Mutex<Option<(JoinHandle<()>, CancellationToken)>>,
}

impl UnixSlot {
    fn set_accept_loop(&self, task: JoinHandle<()>, closing: CancellationToken) {
        *self
            .accept_loop
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some((task, closing));
    }

    fn take_accept_loop(&self) -> Option<(JoinHandle<()>, CancellationToken)> {
        self.accept_loop
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

/// The serving state of a fake.
#[derive(Debug)]
pub(super) struct Serving {
    /// `None` while restarting.
    current: Option<Arc<Incarnation>>,
    unix: Vec<Arc<UnixSlot>>,
}

impl Serving {
    pub(super) fn new() -> Serving {
        Serving {
            current: Some(Incarnation::new()),
            unix: Vec::new(),
        }
    }
}

/// Removes the socket at `path` if there is one; anything else at `path` is
/// an error.
fn remove_socket(path: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(metadata) if metadata.file_type().is_socket() => std::fs::remove_file(path),
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} exists and is not a socket", path.display()),
        )),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(error),
    }
}

fn not_serving() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionRefused,
        "fake runtime is not serving (restarting)",
    )
}

/// Put into the extensions of every request: cancelled when the connection
/// the request came on starts closing, so that server streams (container
/// events) can end instead of holding the connection open.
#[derive(Debug, Clone)]
pub(super) struct ConnectionClosing(pub(super) CancellationToken);

/// Adds [`ConnectionClosing`] to each request, and answers `Unavailable`
/// without calling the service once the connection is closing: the runtime
/// is going away, so no new call may start.
#[derive(Debug, Clone)]
struct WithClosing<S> {
    inner: S,
    closing: CancellationToken,
}

type HttpResponse = http::Response<tonic::body::Body>;

impl<S, B> tower::Service<http::Request<B>> for WithClosing<S>
where
    S: tower::Service<http::Request<B>, Response = HttpResponse>,
{
    type Response = HttpResponse;
    type Error = S::Error;
    type Future = Either<Ready<Result<HttpResponse, S::Error>>, S::Future>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        if self.closing.is_cancelled() {
            let status = Status::unavailable("the fake runtime is not serving this connection");
            return Either::Left(ready(Ok(status.into_http())));
        }
        request
            .extensions_mut()
            .insert(ConnectionClosing(self.closing.clone()));
        Either::Right(self.inner.call(request))
    }
}

/// Serves one connection until it closes. When `graceful` fires (a restart,
/// or the server handle stopping) it finishes the calls in flight and closes
/// the connection with HTTP/2 GOAWAY, so clients see `Unavailable` and
/// reconnect; when `kill` fires, it drops the connection.
async fn serve_connection<IO>(
    io: IO,
    fake: FakeRuntime,
    graceful: CancellationToken,
    kill: CancellationToken,
    _guard: mpsc::Sender<()>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let routes = Routes::new(fake.runtime_service())
        .add_service(fake.image_service())
        .prepare();
    let service = TowerToHyperService::new(WithClosing {
        inner: routes,
        closing: graceful.clone(),
    });
    let builder = auto::Builder::new(TokioExecutor::new()).http2_only();
    let connection = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => return,
        () = kill.cancelled() => return,
        () = graceful.cancelled() => connection.as_mut().graceful_shutdown(),
    }
    tokio::select! {
        _ = connection => {}
        () = kill.cancelled() => {}
    }
}

/// Accepts connections on `listener` until a restart or the handle (`stop`)
/// ends it; then closes the connections gracefully, cutting those still
/// open after [`DRAIN_TIMEOUT`].
///
/// `graceful` is a child of the incarnation's token that the handle also
/// cancels when it stops.
async fn accept_loop(
    listener: UnixListener,
    fake: FakeRuntime,
    graceful: CancellationToken,
    kill: CancellationToken,
    stop: CancellationToken,
    guard: mpsc::Sender<()>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            biased;
            () = stop.cancelled() => break,
            () = graceful.cancelled() => break,
            Some(_) = connections.join_next() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(serve_connection(
                        stream,
                        fake.clone(),
                        graceful.clone(),
                        kill.clone(),
                        guard.clone(),
                    ));
                }
                Err(error) => {
                    tracing::warn!(%error, "fake runtime: accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
        }
    }
    drop(listener);
    graceful.cancel();
    tokio::select! {
        () = async { while connections.join_next().await.is_some() {} } => {}
        // A restart bounds the wait itself.
        () = kill.cancelled() => {}
        () = async {
            stop.cancelled().await;
            tokio::time::sleep(DRAIN_TIMEOUT).await;
        } => {}
    }
    // Dropping `connections` cuts whatever is left.
}

impl FakeRuntime {
    fn serving(&self) -> MutexGuard<'_, Serving> {
        self.inner
            .serving
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The restart token of the current incarnation, or `None` while
    /// restarting.
    pub(super) fn serving_token(&self) -> Option<CancellationToken> {
        self.serving()
            .current
            .as_ref()
            .map(|incarnation| incarnation.graceful.clone())
    }

    /// Whether the fake serves now (`false` between
    /// [`begin_restart`](Self::begin_restart) and
    /// [`finish_restart`](Self::finish_restart)).
    pub fn is_serving(&self) -> bool {
        self.serving().current.is_some()
    }

    fn open_in_process(&self) -> io::Result<TokioIo<DuplexStream>> {
        let incarnation = self.serving().current.clone().ok_or_else(not_serving)?;
        let guard = incarnation.guard().ok_or_else(not_serving)?;
        let (client, server) = tokio::io::duplex(DUPLEX_BUFFER);
        // The task ends when the client side closes, or with the
        // incarnation.
        tokio::spawn(serve_connection(
            server,
            self.clone(),
            incarnation.graceful.clone(),
            incarnation.kill.clone(),
            guard,
        ));
        Ok(TokioIo::new(client))
    }

    /// A channel to this fake through an in-memory pipe
    /// (`tokio::io::duplex`), with no socket; wrap it with
    /// [`runtime_client`](crate::runtime_client) and
    /// [`image_client`](crate::image_client).
    ///
    /// The channel connects now and reconnects after a
    /// [restart](Self::begin_restart), like one to a real socket: while the
    /// fake is restarting, connecting fails and calls answer `Unavailable`.
    ///
    /// # Errors
    ///
    /// When the fake is restarting.
    pub async fn in_process_channel(&self) -> Result<Channel, tonic::transport::Error> {
        let fake = self.clone();
        let connector = tower::service_fn(move |_: Uri| {
            let fake = fake.clone();
            async move { fake.open_in_process() }
        });
        tonic::transport::Endpoint::from_static("http://localhost")
            .connect_with_connector(connector)
            .await
    }

    /// Binds `path` and starts accepting, as part of `incarnation`.
    fn start_unix(&self, slot: &UnixSlot, incarnation: &Arc<Incarnation>) -> io::Result<()> {
        let guard = incarnation.guard().ok_or_else(not_serving)?;
        remove_socket(&slot.path)?;
        let listener = UnixListener::bind(&slot.path)?;
        let closing = incarnation.graceful.child_token();
        let task = tokio::spawn(accept_loop(
            listener,
            self.clone(),
            closing.clone(),
            incarnation.kill.child_token(),
            slot.stop.clone(),
            guard,
        ));
        slot.set_accept_loop(task, closing);
        Ok(())
    }

    /// Serves both services on a Unix socket at `path` until the returned
    /// handle is dropped or shut down. A stale socket at `path` is replaced;
    /// the parent directory must exist. After a
    /// [restart](Self::begin_restart) the socket comes back at the same
    /// path.
    ///
    /// Use `unix://` + `path` (see [`FakeServerHandle::endpoint`]) with
    /// [`connect`](crate::connect).
    ///
    /// # Errors
    ///
    /// When `path` exists and is not a socket, or binding fails.
    ///
    /// # Panics
    ///
    /// When called outside a Tokio runtime.
    pub async fn serve_unix(&self, path: impl AsRef<Path>) -> io::Result<FakeServerHandle> {
        let slot = Arc::new(UnixSlot {
            path: path.as_ref().to_owned(),
            stop: CancellationToken::new(),
            accept_loop: Mutex::new(None),
        });
        let mut serving = self.serving();
        if let Some(incarnation) = serving.current.clone() {
            self.start_unix(&slot, &incarnation)?;
        }
        serving.unix.push(Arc::clone(&slot));
        Ok(FakeServerHandle {
            fake: self.clone(),
            slot,
        })
    }

    /// Stops serving, as if the runtime process died: calls in flight
    /// (including those waiting out an injected latency) and new calls fail
    /// with `Unavailable`, `GetContainerEvents` streams end with
    /// `Unavailable`, Unix sockets are removed, and in-process connects are
    /// refused. Returns once the open connections have closed (after at most
    /// 5 s they are cut). Does nothing if a restart is already under way.
    ///
    /// State is kept; [`finish_restart`](Self::finish_restart) serves again.
    pub async fn begin_restart(&self) {
        let (incarnation, paths) = {
            let mut serving = self.serving();
            let Some(incarnation) = serving.current.take() else {
                return;
            };
            let paths: Vec<_> = serving.unix.iter().map(|s| s.path.clone()).collect();
            (incarnation, paths)
        };
        incarnation.graceful.cancel();
        self.state()
            .end_event_streams(&Status::unavailable("fake runtime is restarting"));
        for path in paths {
            if let Err(error) = remove_socket(&path) {
                tracing::warn!(%error, path = %path.display(), "fake runtime: removing the socket failed");
            }
        }
        drop(
            incarnation
                .guard
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
        let done = incarnation
            .done
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(mut done) = done {
            // `recv` answers `None` once every guard is dropped.
            let _ = tokio::time::timeout(DRAIN_TIMEOUT, done.recv()).await;
        }
        incarnation.kill.cancel();
    }

    /// Serves again after [`begin_restart`](Self::begin_restart): the Unix
    /// sockets are bound again and in-process channels reconnect. With
    /// [`AfterRestart::ExitContainers`], running containers are first marked
    /// exited (255, `Unknown`) and sandboxes not ready. Does nothing if the
    /// fake is serving.
    ///
    /// # Errors
    ///
    /// When a socket cannot be bound again; the others are served anyway.
    ///
    /// # Panics
    ///
    /// When called outside a Tokio runtime.
    pub async fn finish_restart(&self, after: AfterRestart) -> io::Result<()> {
        let mut serving = self.serving();
        if serving.current.is_some() {
            return Ok(());
        }
        if after == AfterRestart::ExitContainers {
            let now = self.now();
            self.state().lose_processes(now);
        }
        let incarnation = Incarnation::new();
        serving.current = Some(Arc::clone(&incarnation));
        let mut result = Ok(());
        for slot in &serving.unix {
            if let Err(error) = self.start_unix(slot, &incarnation) {
                tracing::warn!(%error, path = %slot.path.display(), "fake runtime: binding the socket again failed");
                if result.is_ok() {
                    result = Err(error);
                }
            }
        }
        result
    }

    /// [`begin_restart`](Self::begin_restart), a pause of `down_for` (on
    /// tokio's clock), then [`finish_restart`](Self::finish_restart).
    ///
    /// # Errors
    ///
    /// As [`finish_restart`](Self::finish_restart).
    pub async fn restart(&self, down_for: Duration, after: AfterRestart) -> io::Result<()> {
        self.begin_restart().await;
        tokio::time::sleep(down_for).await;
        self.finish_restart(after).await
    }
}

/// A Unix socket served by [`FakeRuntime::serve_unix`]. Dropping the handle
/// stops serving on it: the socket file is removed, calls in flight are
/// answered, event streams end with `Unavailable` and the connections close
/// (those still open after 5 s are cut). [`shutdown`](Self::shutdown) does
/// the same and waits until all of that is done.
#[derive(Debug)]
#[must_use = "dropping the handle stops serving"]
pub struct FakeServerHandle {
    fake: FakeRuntime,
    slot: Arc<UnixSlot>,
}

impl FakeServerHandle {
    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.slot.path
    }

    /// The endpoint of the socket as kubelet and crictl take it:
    /// `unix:///path/to.sock`.
    pub fn endpoint(&self) -> String {
        format!("unix://{}", self.slot.path.display())
    }

    /// The fake this handle serves.
    pub fn runtime(&self) -> &FakeRuntime {
        &self.fake
    }

    /// Stops serving and waits until the connections are closed.
    pub async fn shutdown(self) {
        if let Some(task) = self.stop() {
            // A panic in the accept loop would be a bug; surface it.
            if let Err(error) = task.await
                && error.is_panic()
            {
                std::panic::resume_unwind(error.into_panic());
            }
        }
    }

    fn stop(&self) -> Option<JoinHandle<()>> {
        self.slot.stop.cancel();
        let accept_loop = self.slot.take_accept_loop();
        if let Some((_, closing)) = &accept_loop {
            // From now on the connections refuse new calls.
            closing.cancel();
        }
        self.fake
            .serving()
            .unix
            .retain(|slot| !Arc::ptr_eq(slot, &self.slot));
        if let Err(error) = remove_socket(&self.slot.path) {
            tracing::debug!(%error, "fake runtime: removing the socket failed");
        }
        accept_loop.map(|(task, _)| task)
    }
}

impl Drop for FakeServerHandle {
    fn drop(&mut self) {
        // The task ends by itself now that `stop` is cancelled.
        drop(self.stop());
    }
}
