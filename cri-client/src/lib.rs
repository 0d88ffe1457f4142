//! Kubernetes CRI v1 client: the `RuntimeService` and `ImageService` gRPC
//! APIs that kubelet uses to drive a container runtime such as containerd or
//! CRI-O.
//!
//! What this crate has today:
//!
//! - [`v1`]: every message, enum and service of CRI v1, generated from our own
//!   schema (`proto/runtime/v1/api.proto`), which is wire-identical to
//!   kubernetes/cri-api v0.36.3. Both client and server stubs are included.
//!   The generated code is committed, so building needs no `protoc`.
//! - [`Endpoint`]: endpoint parsing as kubelet's `--container-runtime-endpoint`
//!   takes it (`unix:///path/to.sock` or an absolute path).
//! - [`connect`]: a lazy [`tonic`] channel over the runtime's Unix socket, and
//!   [`runtime_client`] / [`image_client`], the generated clients with
//!   kubelet's 16 MiB message limit ([`MAX_MESSAGE_SIZE`]).
//!
//! A higher-level client (kubelet's timeouts, reconnect and version checks,
//! error mapping, request builders), a log reader, the streaming
//! (exec/attach/port-forward) client and a fake runtime are not written yet.
//!
//! # Example
//!
//! Ask the runtime for its version, like `crictl version`:
//!
//! ```no_run
//! use cri_client::v1::VersionRequest;
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let channel = cri_client::connect("unix:///run/containerd/containerd.sock").await?;
//!     let mut runtime = cri_client::runtime_client(channel);
//!     let version = runtime
//!         .version(VersionRequest {
//!             version: "v1".to_owned(),
//!         })
//!         .await?
//!         .into_inner();
//!     println!(
//!         "{} {} (CRI {})",
//!         version.runtime_name, version.runtime_version, version.runtime_api_version
//!     );
//!     Ok(())
//! }
//! ```
//!
//! # Features
//!
//! - `serde`: `serde::Serialize` and `serde::Deserialize` for every [`v1`]
//!   message and enum in the protobuf JSON mapping (camelCase names on output,
//!   proto or camelCase names on input, unknown fields skipped), as `crictl`
//!   reads pod and container configs and prints `-o json`.
//!
//! # Versions
//!
//! [`tonic`] and [`prost`] types appear in the public API (channels, clients,
//! status codes, messages), so both crates are re-exported: use
//! `cri_client::tonic` and `cri_client::prost` to stay on matching versions.

pub use prost;
pub use tonic;

pub mod builders;
mod client;
mod connect;
mod endpoint;
mod error;
#[cfg(feature = "fake")]
pub mod fake;
pub mod logs;
pub mod streaming;

pub use client::{CRI_API_VERSION, ClientConfig, CriClient, Transport};
pub use connect::{MAX_MESSAGE_SIZE, connect, connect_endpoint, image_client, runtime_client};
pub use endpoint::Endpoint;
pub use error::{Error, Result};

/// CRI v1 (protobuf package `runtime.v1`): messages, enums, and the
/// `RuntimeService` and `ImageService` client and server stubs.
///
/// Generated from `proto/runtime/v1/api.proto` by `protox` and
/// `tonic-prost-build`; the documentation comes from the comments in that
/// schema. To change it, edit the schema and run
/// `cargo run -p cri-client --example regenerate`.
///
/// The clients live in [`runtime_service_client`](v1::runtime_service_client)
/// and [`image_service_client`](v1::image_service_client), the server traits
/// in [`runtime_service_server`](v1::runtime_service_server) and
/// [`image_service_server`](v1::image_service_server).
pub mod v1 {
    include!("generated/runtime.v1.rs");
    #[cfg(feature = "serde")]
    include!("generated/runtime.v1.serde.rs");
}
