//! Connecting to a runtime over its Unix socket, and the generated clients
//! with kubelet's message size limits.

use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::codegen::{Body, Bytes, StdError};
use tonic::transport::Channel;

use crate::endpoint::Endpoint;
use crate::error::Result;
use crate::v1::image_service_client::ImageServiceClient;
use crate::v1::runtime_service_client::RuntimeServiceClient;

/// Largest gRPC message the clients send or accept: 16 MiB, kubelet's limit
/// (`maxMsgSize` in k8s.io/cri-client) and containerd's default.
///
/// tonic's own default is 4 MiB for received messages, which a node with many
/// containers or images exceeds in `ListContainers` or `ListImages`.
pub const MAX_MESSAGE_SIZE: usize = 16 * 1024 * 1024;

/// Authority of the requests: gRPC over a Unix socket has no host, and
/// kubelet sends `localhost` too.
const AUTHORITY_URI: &str = "http://localhost";

/// Parses `endpoint` (see [`Endpoint`]) and returns a channel to the runtime
/// listening on it.
///
/// The channel is lazy: nothing is dialled until the first call, so this
/// succeeds even when the runtime is not up yet, and a call made while the
/// socket is missing fails with [`tonic::Code::Unavailable`]. After a broken
/// connection the channel dials again on the next call. It is cheap to clone;
/// clones share the connection.
///
/// Wrap the channel with [`runtime_client`] and [`image_client`] so that
/// kubelet's 16 MiB message limit applies.
///
/// Must be called within a Tokio runtime: the channel runs a background task.
///
/// # Errors
///
/// [`Error::UnsupportedScheme`](crate::Error::UnsupportedScheme) or
/// [`Error::InvalidEndpoint`](crate::Error::InvalidEndpoint) when the endpoint
/// does not parse.
pub async fn connect(endpoint: &str) -> Result<Channel> {
    let endpoint = Endpoint::parse(endpoint)?;
    Ok(connect_endpoint(&endpoint))
}

/// Returns a lazy channel to the runtime at an already parsed [`Endpoint`];
/// see [`connect`].
///
/// # Panics
///
/// When called outside a Tokio runtime.
pub fn connect_endpoint(endpoint: &Endpoint) -> Channel {
    let path = endpoint.path().to_owned();
    let connector = tower::service_fn(move |_: tonic::transport::Uri| {
        let path = path.clone();
        async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
    });
    tonic::transport::Endpoint::from_static(AUTHORITY_URI).connect_with_connector_lazy(connector)
}

/// Wraps a transport (usually the [`Channel`] from [`connect`]) in the
/// generated `RuntimeService` client, with [`MAX_MESSAGE_SIZE`] as the limit
/// for sent and received messages.
///
/// Any tonic transport works, for example an in-process service in tests.
pub fn runtime_client<T>(transport: T) -> RuntimeServiceClient<T>
where
    T: tonic::client::GrpcService<tonic::body::Body>,
    T::Error: Into<StdError>,
    T::ResponseBody: Body<Data = Bytes> + Send + 'static,
    <T::ResponseBody as Body>::Error: Into<StdError> + Send,
{
    RuntimeServiceClient::new(transport)
        .max_decoding_message_size(MAX_MESSAGE_SIZE)
        .max_encoding_message_size(MAX_MESSAGE_SIZE)
}

/// Wraps a transport (usually the [`Channel`] from [`connect`]) in the
/// generated `ImageService` client, with [`MAX_MESSAGE_SIZE`] as the limit for
/// sent and received messages.
///
/// Any tonic transport works, for example an in-process service in tests.
pub fn image_client<T>(transport: T) -> ImageServiceClient<T>
where
    T: tonic::client::GrpcService<tonic::body::Body>,
    T::Error: Into<StdError>,
    T::ResponseBody: Body<Data = Bytes> + Send + 'static,
    <T::ResponseBody as Body>::Error: Into<StdError> + Send,
{
    ImageServiceClient::new(transport)
        .max_decoding_message_size(MAX_MESSAGE_SIZE)
        .max_encoding_message_size(MAX_MESSAGE_SIZE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn connect_is_lazy_and_fails_calls_with_unavailable() {
        let channel = connect("unix:///nonexistent/node-sdk-cri-client-test.sock")
            .await
            .expect("a lazy channel to a missing socket is still a channel");
        let status = runtime_client(channel)
            .version(crate::v1::VersionRequest {
                version: "v1".to_owned(),
            })
            .await
            .expect_err("nothing listens on the socket");
        assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    }

    #[tokio::test]
    async fn connect_rejects_bad_endpoints() {
        assert!(matches!(
            connect("tcp://127.0.0.1:1234").await,
            Err(crate::Error::UnsupportedScheme { .. })
        ));
        assert!(matches!(
            connect("relative.sock").await,
            Err(crate::Error::InvalidEndpoint { .. })
        ));
    }
}
