//! The client helpers against an in-process ImageService served on a real
//! Unix socket: the connector dials the socket, unary and server-streaming
//! calls work, and the 16 MiB message limit is in effect.

use std::path::PathBuf;
use std::pin::Pin;

use cri_client::tonic::{self, Request, Response, Status};
use cri_client::v1::image_service_client::ImageServiceClient;
use cri_client::v1::image_service_server::{ImageService, ImageServiceServer};
use cri_client::v1::{
    Image, ImageFsInfoRequest, ImageFsInfoResponse, ImageStatusRequest, ImageStatusResponse,
    ListImagesRequest, ListImagesResponse, PullImageRequest, PullImageResponse, RemoveImageRequest,
    RemoveImageResponse, StreamImagesRequest, StreamImagesResponse,
};
use cri_client::{MAX_MESSAGE_SIZE, image_client};
use tokio::net::UnixListener;
use tokio::sync::oneshot;
use tokio_stream::wrappers::UnixListenerStream;

/// Answers `ListImages` with one image whose tag is `tag_len` bytes long, so
/// that tests can choose the response size through the filter's image name.
struct SizedImages;

fn image_with_tag_len(tag_len: usize) -> Image {
    Image {
        id: "sha256:0123".to_owned(),
        repo_tags: vec!["x".repeat(tag_len)],
        size: 1,
        ..Image::default()
    }
}

#[tonic::async_trait]
impl ImageService for SizedImages {
    async fn list_images(
        &self,
        request: Request<ListImagesRequest>,
    ) -> Result<Response<ListImagesResponse>, Status> {
        let tag_len = request
            .into_inner()
            .filter
            .and_then(|f| f.image)
            .and_then(|spec| spec.image.parse().ok())
            .unwrap_or(4);
        Ok(Response::new(ListImagesResponse {
            images: vec![image_with_tag_len(tag_len)],
        }))
    }

    type StreamImagesStream =
        Pin<Box<dyn tokio_stream::Stream<Item = Result<StreamImagesResponse, Status>> + Send>>;

    async fn stream_images(
        &self,
        _request: Request<StreamImagesRequest>,
    ) -> Result<Response<Self::StreamImagesStream>, Status> {
        let chunks = (1..=3).map(|n| {
            Ok(StreamImagesResponse {
                images: vec![image_with_tag_len(n)],
            })
        });
        Ok(Response::new(Box::pin(tokio_stream::iter(chunks))))
    }

    async fn image_status(
        &self,
        _request: Request<ImageStatusRequest>,
    ) -> Result<Response<ImageStatusResponse>, Status> {
        Ok(Response::new(ImageStatusResponse::default()))
    }

    async fn pull_image(
        &self,
        _request: Request<PullImageRequest>,
    ) -> Result<Response<PullImageResponse>, Status> {
        Err(Status::unimplemented("not in this test"))
    }

    async fn remove_image(
        &self,
        _request: Request<RemoveImageRequest>,
    ) -> Result<Response<RemoveImageResponse>, Status> {
        Ok(Response::new(RemoveImageResponse {}))
    }

    async fn image_fs_info(
        &self,
        _request: Request<ImageFsInfoRequest>,
    ) -> Result<Response<ImageFsInfoResponse>, Status> {
        Ok(Response::new(ImageFsInfoResponse::default()))
    }
}

/// A running server; dropping it stops the server and removes the socket.
struct Server {
    socket: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Server {
    fn start(name: &str) -> Self {
        // Keep the path short: a socket address holds at most 107 bytes.
        let socket = std::env::temp_dir().join(format!("cri-{name}-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&socket);
        let listener = UnixListener::bind(&socket).expect("bind the test socket");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            tonic::transport::Server::builder()
                .serve_with_incoming_shutdown(
                    ImageServiceServer::new(SizedImages),
                    UnixListenerStream::new(listener),
                    async {
                        let _ = stopped.await;
                    },
                )
                .await
                .expect("test server");
        });
        Self {
            socket,
            stop: Some(stop),
            task: Some(task),
        }
    }

    fn endpoint(&self) -> String {
        format!("unix://{}", self.socket.display())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}

fn list_request(tag_len: usize) -> ListImagesRequest {
    ListImagesRequest {
        filter: Some(cri_client::v1::ImageFilter {
            image: Some(cri_client::v1::ImageSpec {
                image: tag_len.to_string(),
                ..Default::default()
            }),
        }),
    }
}

#[tokio::test]
async fn unary_and_streaming_calls_over_a_unix_socket() {
    let server = Server::start("calls");
    let channel = cri_client::connect(&server.endpoint()).await.unwrap();
    let mut images = image_client(channel);

    let listed = images
        .list_images(list_request(7))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.images, vec![image_with_tag_len(7)]);

    let status = images
        .image_status(ImageStatusRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.image, None);

    let mut stream = images
        .stream_images(StreamImagesRequest::default())
        .await
        .unwrap()
        .into_inner();
    let mut tag_lens = Vec::new();
    while let Some(chunk) = stream.message().await.unwrap() {
        tag_lens.extend(chunk.images.iter().map(|i| i.repo_tags[0].len()));
    }
    assert_eq!(tag_lens, vec![1, 2, 3]);

    let unimplemented = images
        .pull_image(PullImageRequest::default())
        .await
        .unwrap_err();
    assert_eq!(unimplemented.code(), tonic::Code::Unimplemented);
}

#[tokio::test]
async fn clients_accept_messages_up_to_16_mib() {
    let server = Server::start("limits");
    let channel = cri_client::connect(&server.endpoint()).await.unwrap();

    // Above tonic's 4 MiB default, below kubelet's 16 MiB.
    let six_mib = 6 * 1024 * 1024;
    let listed = image_client(channel.clone())
        .list_images(list_request(six_mib))
        .await
        .expect("a 6 MiB response is within the 16 MiB limit")
        .into_inner();
    assert_eq!(listed.images[0].repo_tags[0].len(), six_mib);

    // The bare generated client keeps tonic's 4 MiB default and refuses it.
    let refused = ImageServiceClient::new(channel.clone())
        .list_images(list_request(six_mib))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::OutOfRange, "{refused:?}");

    // Above 16 MiB is refused by our client too.
    let too_big = image_client(channel)
        .list_images(list_request(MAX_MESSAGE_SIZE + 1))
        .await
        .unwrap_err();
    assert_eq!(too_big.code(), tonic::Code::OutOfRange, "{too_big:?}");
}
