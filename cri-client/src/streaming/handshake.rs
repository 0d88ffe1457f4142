//! Opening a streaming URL as a WebSocket with a negotiated subprotocol.

use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::error::{ProtocolError, SubProtocolError};
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{self, http::Uri};

use super::{Protocol, StreamError};

/// The WebSocket of a session: plain TCP, as the runtime's streaming server
/// listens on localhost without TLS by default.
pub(crate) type Ws = WebSocketStream<TcpStream>;

/// Largest part of an HTTP error body kept in [`StreamError::Refused`].
const MAX_BODY: usize = 1024;

/// Where to connect and what to ask for.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Target {
    /// The `ws://` URI of the upgrade request, query included.
    pub(crate) ws_uri: String,
    /// `host:port` to dial.
    pub(crate) addr: String,
}

/// Turns a streaming URL (`http://host:port/exec/<token>`) into the
/// WebSocket URI with `query` appended, and the address to dial.
///
/// # Errors
///
/// [`StreamError::InvalidUrl`] for anything but an absolute `http` (or
/// `ws`) URL with a host.
pub(crate) fn target(url: &str, query: &[(&str, String)]) -> Result<Target, StreamError> {
    let invalid = |reason: &str| StreamError::InvalidUrl {
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    let uri: Uri = url
        .parse()
        .map_err(|e: tungstenite::http::uri::InvalidUri| invalid(&format!("not a URL ({e})")))?;
    match uri.scheme_str() {
        Some("http" | "ws") => {}
        Some("https" | "wss") => {
            return Err(invalid(
                "TLS streaming servers are not supported (containerd serves plain HTTP on \
                 localhost unless enable_tls_streaming is set)",
            ));
        }
        Some(other) => return Err(invalid(&format!("unsupported scheme {other:?}"))),
        None => return Err(invalid("not an absolute http:// URL")),
    }
    let authority = uri
        .authority()
        .ok_or_else(|| invalid("the URL has no host"))?;
    let host = authority.host();
    if host.is_empty() {
        return Err(invalid("the URL has no host"));
    }
    let port = authority.port_u16().unwrap_or(80);
    let host_port = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };

    let mut pairs: Vec<String> = uri
        .query()
        .filter(|q| !q.is_empty())
        .map(|q| vec![q.to_owned()])
        .unwrap_or_default();
    pairs.extend(query.iter().map(|(k, v)| format!("{k}={v}")));
    let query = if pairs.is_empty() {
        String::new()
    } else {
        format!("?{}", pairs.join("&"))
    };
    Ok(Target {
        ws_uri: format!("ws://{host_port}{}{query}", uri.path()),
        addr: host_port,
    })
}

/// Connects to `url`, upgrades to a WebSocket offering `protocols` in order,
/// and returns the socket with the protocol the server selected.
///
/// Like other non-browser clients (crictl, client-go), it sends no `Origin`
/// header and adds only the WebSocket headers and the subprotocol offer.
///
/// # Errors
///
/// [`StreamError::NoProtocols`], [`StreamError::InvalidUrl`],
/// [`StreamError::Connect`], [`StreamError::Refused`],
/// [`StreamError::Negotiation`] or [`StreamError::Handshake`].
pub(crate) async fn open(
    url: &str,
    query: &[(&str, String)],
    protocols: &[Protocol],
) -> Result<(Ws, Protocol), StreamError> {
    if protocols.is_empty() {
        return Err(StreamError::NoProtocols {
            url: url.to_owned(),
        });
    }
    let target = target(url, query)?;
    let offered = protocols
        .iter()
        .map(|p| p.name())
        .collect::<Vec<_>>()
        .join(", ");

    let tcp = TcpStream::connect(&target.addr)
        .await
        .map_err(|source| StreamError::Connect {
            url: url.to_owned(),
            source,
        })?;
    // Interactive sessions send keystrokes one frame at a time.
    let _ = tcp.set_nodelay(true);

    let handshake_error = |source: tungstenite::Error| StreamError::Handshake {
        url: url.to_owned(),
        source: Box::new(source),
    };
    let mut request = target
        .ws_uri
        .as_str()
        .into_client_request()
        .map_err(handshake_error)?;
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_str(&offered)
            .map_err(|e| handshake_error(tungstenite::Error::HttpFormat(e.into())))?,
    );

    let (ws, response) = tokio_tungstenite::client_async(request, tcp)
        .await
        .map_err(|e| upgrade_error(url, &offered, e))?;
    let selected = response
        .headers()
        .get("Sec-WebSocket-Protocol")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let protocol = selected
        .as_deref()
        .and_then(Protocol::from_name)
        .filter(|p| protocols.contains(p))
        .ok_or_else(|| StreamError::Negotiation {
            url: url.to_owned(),
            selected: selected.clone(),
            offered: offered.clone(),
        })?;
    tracing::debug!(url, %protocol, "streaming session open");
    Ok((ws, protocol))
}

/// Maps a failed upgrade to the error that says why.
fn upgrade_error(url: &str, offered: &str, error: tungstenite::Error) -> StreamError {
    match error {
        tungstenite::Error::Http(response) => {
            let body = response
                .body()
                .as_deref()
                .map(|b| {
                    String::from_utf8_lossy(&b[..b.len().min(MAX_BODY)])
                        .trim()
                        .to_owned()
                })
                .unwrap_or_default();
            StreamError::Refused {
                url: url.to_owned(),
                status: response.status().as_u16(),
                body,
                offered: offered.to_owned(),
            }
        }
        tungstenite::Error::Protocol(ProtocolError::SecWebSocketSubProtocolError(
            SubProtocolError::NoSubProtocol,
        )) => StreamError::Negotiation {
            url: url.to_owned(),
            selected: None,
            offered: offered.to_owned(),
        },
        other => StreamError::Handshake {
            url: url.to_owned(),
            source: Box::new(other),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
        pairs.iter().map(|(k, v)| (*k, (*v).to_owned())).collect()
    }

    #[test]
    fn containerd_urls_become_websocket_uris() {
        let t = target(
            "http://127.0.0.1:35711/exec/AbCd-_12",
            &q(&[("output", "1"), ("error", "1")]),
        )
        .unwrap();
        assert_eq!(
            t,
            Target {
                ws_uri: "ws://127.0.0.1:35711/exec/AbCd-_12?output=1&error=1".into(),
                addr: "127.0.0.1:35711".into(),
            }
        );
        let t = target("http://127.0.0.1:35711/portforward/tok", &[]).unwrap();
        assert_eq!(t.ws_uri, "ws://127.0.0.1:35711/portforward/tok");
    }

    #[test]
    fn existing_query_default_port_ipv6_and_ws_scheme() {
        let t = target("http://node/attach/t?a=b", &q(&[("tty", "1")])).unwrap();
        assert_eq!(t.ws_uri, "ws://node:80/attach/t?a=b&tty=1");
        assert_eq!(t.addr, "node:80");
        let t = target("http://[::1]:10010/exec/t", &[]).unwrap();
        assert_eq!(t.addr, "[::1]:10010");
        assert_eq!(t.ws_uri, "ws://[::1]:10010/exec/t");
        let t = target("ws://127.0.0.1:1/exec/t", &[]).unwrap();
        assert_eq!(t.addr, "127.0.0.1:1");
    }

    #[test]
    fn unusable_urls_are_rejected_with_a_reason() {
        for (url, reason) in [
            ("", "not a URL"),
            ("/exec/token", "not an absolute http:// URL"),
            (
                "https://127.0.0.1:1/exec/t",
                "TLS streaming servers are not supported",
            ),
            ("ftp://127.0.0.1/exec/t", "unsupported scheme \"ftp\""),
            ("http://exa mple/", "not a URL"),
        ] {
            let err = target(url, &[]).unwrap_err();
            let msg = err.to_string();
            assert!(
                matches!(err, StreamError::InvalidUrl { .. }) && msg.contains(reason),
                "{url:?}: {msg}"
            );
            assert!(
                msg.starts_with(&format!("invalid streaming url {url:?}: ")),
                "{msg}"
            );
        }
    }

    #[tokio::test]
    async fn connect_errors_name_the_url() {
        // Port 1 on localhost: nothing listens there.
        let err = open("http://127.0.0.1:1/exec/t", &[], &Protocol::PREFERENCE)
            .await
            .unwrap_err();
        assert!(matches!(err, StreamError::Connect { .. }), "{err}");
        assert_eq!(
            err.to_string(),
            "cannot connect to the streaming server of http://127.0.0.1:1/exec/t"
        );
    }
}
