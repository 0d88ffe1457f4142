//! A tiny in-process streaming server for the unit tests: it negotiates a
//! subprotocol like the runtime's and hands the connection to a test script.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use futures::{SinkExt as _, StreamExt as _};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::HeaderValue;

use super::Protocol;
use super::frame::{self, Codec, Wire, WireFrame};

/// A server for one connection.
pub(crate) struct Server {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

/// The accepted connection, as the test script sees it.
pub(crate) struct ServerConn {
    ws: WebSocketStream<TcpStream>,
    /// The subprotocol selected.
    pub(crate) protocol: String,
    /// The request's query string.
    pub(crate) query: String,
    codec: Codec,
}

impl Server {
    /// Accepts one upgrade, selecting the client's first protocol among all
    /// four, and runs `script` on it.
    pub(crate) async fn start<F, Fut>(script: F) -> Self
    where
        F: FnOnce(ServerConn) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send,
    {
        Self::start_with(&Protocol::PREFERENCE, script).await
    }

    /// Like [`start`](Self::start), supporting only `supported`; an upgrade
    /// offering none of them is refused with 403, as the runtime does.
    pub(crate) async fn start_with<F, Fut>(supported: &[Protocol], script: F) -> Self
    where
        F: FnOnce(ServerConn) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let supported = supported.to_vec();
        let task = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let seen = Arc::new(Mutex::new((String::new(), String::new())));
            let slot = seen.clone();
            // The error type is tungstenite's; its size is not ours to choose.
            #[allow(clippy::result_large_err)]
            let callback = move |req: &Request, mut resp: Response| {
                let offered = req
                    .headers()
                    .get("Sec-WebSocket-Protocol")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                let chosen = offered
                    .split(',')
                    .map(str::trim)
                    .find(|o| supported.iter().any(|p| p.name() == *o));
                let Some(chosen) = chosen else {
                    let mut refusal = ErrorResponse::new(None);
                    *refusal.status_mut() =
                        tokio_tungstenite::tungstenite::http::StatusCode::FORBIDDEN;
                    return Err(refusal);
                };
                resp.headers_mut().insert(
                    "Sec-WebSocket-Protocol",
                    HeaderValue::from_str(chosen).unwrap(),
                );
                *slot.lock().unwrap() = (
                    chosen.to_owned(),
                    req.uri().query().unwrap_or_default().to_owned(),
                );
                Ok(resp)
            };
            let Ok(ws) = tokio_tungstenite::accept_hdr_async(tcp, callback).await else {
                return;
            };
            let (protocol, query) = seen.lock().unwrap().clone();
            let codec = Protocol::from_name(&protocol).unwrap().codec();
            script(ServerConn {
                ws,
                protocol,
                query,
                codec,
            })
            .await;
        });
        Self { addr, task }
    }

    /// Answers the upgrade with a plain HTTP error.
    pub(crate) async fn refuse(status: u16, body: &'static str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let (mut tcp, _) = listener.accept().await.unwrap();
            read_request(&mut tcp).await;
            let response = format!(
                "HTTP/1.1 {status} Refused\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            tcp.write_all(response.as_bytes()).await.unwrap();
            let _ = tcp.shutdown().await;
        });
        Self { addr, task }
    }

    /// Accepts the upgrade without selecting a subprotocol.
    pub(crate) async fn start_without_subprotocol() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let _ = tokio_tungstenite::accept_async(tcp).await;
        });
        Self { addr, task }
    }

    /// A URL of the runtime's shape for this server.
    pub(crate) fn url(&self, kind: &str) -> String {
        format!("http://{}/{kind}/AbCdEfGh", self.addr)
    }

    /// Waits for the script, failing the test if it panicked.
    pub(crate) async fn join(self) {
        if let Err(e) = self.task.await
            && e.is_panic()
        {
            std::panic::resume_unwind(e.into_panic());
        }
    }
}

async fn read_request(tcp: &mut TcpStream) {
    let mut request = Vec::new();
    let mut buf = [0; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tcp.read(&mut buf).await.unwrap();
        if n == 0 {
            return;
        }
        request.extend_from_slice(&buf[..n]);
    }
}

impl ServerConn {
    /// Sends `data` on `channel` in the negotiated codec.
    pub(crate) async fn send(&mut self, channel: u8, data: &[u8]) {
        let msg = match frame::encode(self.codec, channel, data) {
            WireFrame::Binary(b) => Message::binary(b),
            WireFrame::Text(t) => Message::text(t),
        };
        self.send_raw(msg).await;
    }

    /// Sends a message as is.
    pub(crate) async fn send_raw(&mut self, msg: Message) {
        self.ws.send(msg).await.unwrap();
    }

    /// The next data frame from the client, or `None` once it closed.
    pub(crate) async fn recv(&mut self) -> Option<(u8, Vec<u8>)> {
        loop {
            let wire = match self.ws.next().await? {
                Ok(Message::Binary(b)) => Wire::Binary(b),
                Ok(Message::Text(t)) => {
                    let f = frame::decode(self.codec, Wire::Text(t.as_str()), 10).unwrap();
                    return Some((f.channel, f.data.to_vec()));
                }
                Ok(Message::Close(_)) | Err(_) => return None,
                Ok(_) => continue,
            };
            let f = frame::decode(self.codec, wire, 10).unwrap();
            return Some((f.channel, f.data.to_vec()));
        }
    }

    /// Closes the WebSocket like the runtime does at the end of a session:
    /// a close frame, then the TCP connection, without waiting for the
    /// client's reply.
    pub(crate) async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}
