//! The RPCs of CRI v1, as values that fault injection and the call log name.

use std::fmt;

/// One RPC of CRI v1: the 35 of `RuntimeService` and the 6 of `ImageService`.
///
/// Fault injection ([`FakeRuntime::inject_fault`](super::FakeRuntime::inject_fault),
/// [`FakeRuntime::set_latency`](super::FakeRuntime::set_latency),
/// [`FakeRuntime::set_unimplemented`](super::FakeRuntime::set_unimplemented))
/// and the [call log](super::FakeRuntime::calls) name RPCs with it.
/// [`Display`](fmt::Display) prints the gRPC method name (`RunPodSandbox`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Rpc {
    /// `RuntimeService/Version`.
    Version,
    /// `RuntimeService/RunPodSandbox`.
    RunPodSandbox,
    /// `RuntimeService/StopPodSandbox`.
    StopPodSandbox,
    /// `RuntimeService/RemovePodSandbox`.
    RemovePodSandbox,
    /// `RuntimeService/PodSandboxStatus`.
    PodSandboxStatus,
    /// `RuntimeService/ListPodSandbox`.
    ListPodSandbox,
    /// `RuntimeService/StreamPodSandboxes` (server stream).
    StreamPodSandboxes,
    /// `RuntimeService/CreateContainer`.
    CreateContainer,
    /// `RuntimeService/StartContainer`.
    StartContainer,
    /// `RuntimeService/StopContainer`.
    StopContainer,
    /// `RuntimeService/RemoveContainer`.
    RemoveContainer,
    /// `RuntimeService/ListContainers`.
    ListContainers,
    /// `RuntimeService/StreamContainers` (server stream).
    StreamContainers,
    /// `RuntimeService/ContainerStatus`.
    ContainerStatus,
    /// `RuntimeService/UpdateContainerResources`.
    UpdateContainerResources,
    /// `RuntimeService/ReopenContainerLog`.
    ReopenContainerLog,
    /// `RuntimeService/ExecSync`.
    ExecSync,
    /// `RuntimeService/Exec`.
    Exec,
    /// `RuntimeService/Attach`.
    Attach,
    /// `RuntimeService/PortForward`.
    PortForward,
    /// `RuntimeService/ContainerStats`.
    ContainerStats,
    /// `RuntimeService/ListContainerStats`.
    ListContainerStats,
    /// `RuntimeService/StreamContainerStats` (server stream).
    StreamContainerStats,
    /// `RuntimeService/PodSandboxStats`.
    PodSandboxStats,
    /// `RuntimeService/ListPodSandboxStats`.
    ListPodSandboxStats,
    /// `RuntimeService/StreamPodSandboxStats` (server stream).
    StreamPodSandboxStats,
    /// `RuntimeService/UpdateRuntimeConfig`.
    UpdateRuntimeConfig,
    /// `RuntimeService/Status`.
    Status,
    /// `RuntimeService/CheckpointContainer`.
    CheckpointContainer,
    /// `RuntimeService/GetContainerEvents` (server stream).
    GetContainerEvents,
    /// `RuntimeService/ListMetricDescriptors`.
    ListMetricDescriptors,
    /// `RuntimeService/ListPodSandboxMetrics`.
    ListPodSandboxMetrics,
    /// `RuntimeService/StreamPodSandboxMetrics` (server stream).
    StreamPodSandboxMetrics,
    /// `RuntimeService/RuntimeConfig`.
    RuntimeConfig,
    /// `RuntimeService/UpdatePodSandboxResources`.
    UpdatePodSandboxResources,
    /// `ImageService/ListImages`.
    ListImages,
    /// `ImageService/StreamImages` (server stream).
    StreamImages,
    /// `ImageService/ImageStatus`.
    ImageStatus,
    /// `ImageService/PullImage`.
    PullImage,
    /// `ImageService/RemoveImage`.
    RemoveImage,
    /// `ImageService/ImageFsInfo`.
    ImageFsInfo,
}

impl Rpc {
    /// Every RPC, `RuntimeService` first, in schema order.
    pub const ALL: [Rpc; 41] = [
        Rpc::Version,
        Rpc::RunPodSandbox,
        Rpc::StopPodSandbox,
        Rpc::RemovePodSandbox,
        Rpc::PodSandboxStatus,
        Rpc::ListPodSandbox,
        Rpc::StreamPodSandboxes,
        Rpc::CreateContainer,
        Rpc::StartContainer,
        Rpc::StopContainer,
        Rpc::RemoveContainer,
        Rpc::ListContainers,
        Rpc::StreamContainers,
        Rpc::ContainerStatus,
        Rpc::UpdateContainerResources,
        Rpc::ReopenContainerLog,
        Rpc::ExecSync,
        Rpc::Exec,
        Rpc::Attach,
        Rpc::PortForward,
        Rpc::ContainerStats,
        Rpc::ListContainerStats,
        Rpc::StreamContainerStats,
        Rpc::PodSandboxStats,
        Rpc::ListPodSandboxStats,
        Rpc::StreamPodSandboxStats,
        Rpc::UpdateRuntimeConfig,
        Rpc::Status,
        Rpc::CheckpointContainer,
        Rpc::GetContainerEvents,
        Rpc::ListMetricDescriptors,
        Rpc::ListPodSandboxMetrics,
        Rpc::StreamPodSandboxMetrics,
        Rpc::RuntimeConfig,
        Rpc::UpdatePodSandboxResources,
        Rpc::ListImages,
        Rpc::StreamImages,
        Rpc::ImageStatus,
        Rpc::PullImage,
        Rpc::RemoveImage,
        Rpc::ImageFsInfo,
    ];

    /// The gRPC method name, as in the schema: `"RunPodSandbox"`.
    pub fn name(self) -> &'static str {
        match self {
            Rpc::Version => "Version",
            Rpc::RunPodSandbox => "RunPodSandbox",
            Rpc::StopPodSandbox => "StopPodSandbox",
            Rpc::RemovePodSandbox => "RemovePodSandbox",
            Rpc::PodSandboxStatus => "PodSandboxStatus",
            Rpc::ListPodSandbox => "ListPodSandbox",
            Rpc::StreamPodSandboxes => "StreamPodSandboxes",
            Rpc::CreateContainer => "CreateContainer",
            Rpc::StartContainer => "StartContainer",
            Rpc::StopContainer => "StopContainer",
            Rpc::RemoveContainer => "RemoveContainer",
            Rpc::ListContainers => "ListContainers",
            Rpc::StreamContainers => "StreamContainers",
            Rpc::ContainerStatus => "ContainerStatus",
            Rpc::UpdateContainerResources => "UpdateContainerResources",
            Rpc::ReopenContainerLog => "ReopenContainerLog",
            Rpc::ExecSync => "ExecSync",
            Rpc::Exec => "Exec",
            Rpc::Attach => "Attach",
            Rpc::PortForward => "PortForward",
            Rpc::ContainerStats => "ContainerStats",
            Rpc::ListContainerStats => "ListContainerStats",
            Rpc::StreamContainerStats => "StreamContainerStats",
            Rpc::PodSandboxStats => "PodSandboxStats",
            Rpc::ListPodSandboxStats => "ListPodSandboxStats",
            Rpc::StreamPodSandboxStats => "StreamPodSandboxStats",
            Rpc::UpdateRuntimeConfig => "UpdateRuntimeConfig",
            Rpc::Status => "Status",
            Rpc::CheckpointContainer => "CheckpointContainer",
            Rpc::GetContainerEvents => "GetContainerEvents",
            Rpc::ListMetricDescriptors => "ListMetricDescriptors",
            Rpc::ListPodSandboxMetrics => "ListPodSandboxMetrics",
            Rpc::StreamPodSandboxMetrics => "StreamPodSandboxMetrics",
            Rpc::RuntimeConfig => "RuntimeConfig",
            Rpc::UpdatePodSandboxResources => "UpdatePodSandboxResources",
            Rpc::ListImages => "ListImages",
            Rpc::StreamImages => "StreamImages",
            Rpc::ImageStatus => "ImageStatus",
            Rpc::PullImage => "PullImage",
            Rpc::RemoveImage => "RemoveImage",
            Rpc::ImageFsInfo => "ImageFsInfo",
        }
    }

    /// The fully qualified gRPC service: `"runtime.v1.RuntimeService"` or
    /// `"runtime.v1.ImageService"`.
    pub fn service(self) -> &'static str {
        if self.is_image_service() {
            crate::v1::image_service_server::SERVICE_NAME
        } else {
            crate::v1::runtime_service_server::SERVICE_NAME
        }
    }

    /// Whether the RPC belongs to `ImageService`.
    pub fn is_image_service(self) -> bool {
        matches!(
            self,
            Rpc::ListImages
                | Rpc::StreamImages
                | Rpc::ImageStatus
                | Rpc::PullImage
                | Rpc::RemoveImage
                | Rpc::ImageFsInfo
        )
    }

    /// Whether the RPC answers with a server stream (`GetContainerEvents` and
    /// the `Stream*` list RPCs).
    pub fn is_server_streaming(self) -> bool {
        matches!(
            self,
            Rpc::StreamPodSandboxes
                | Rpc::StreamContainers
                | Rpc::StreamContainerStats
                | Rpc::StreamPodSandboxStats
                | Rpc::GetContainerEvents
                | Rpc::StreamPodSandboxMetrics
                | Rpc::StreamImages
        )
    }

    /// The HTTP/2 path of the RPC: `"/runtime.v1.RuntimeService/RunPodSandbox"`.
    pub fn path(self) -> String {
        format!("/{}/{}", self.service(), self.name())
    }

    /// Looks an RPC up by its gRPC method name (`"RunPodSandbox"`).
    pub fn from_name(name: &str) -> Option<Rpc> {
        Rpc::ALL.into_iter().find(|rpc| rpc.name() == name)
    }
}

impl fmt::Display for Rpc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_round_trip() {
        let mut names: Vec<_> = Rpc::ALL.iter().map(|rpc| rpc.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Rpc::ALL.len());
        for rpc in Rpc::ALL {
            assert_eq!(Rpc::from_name(rpc.name()), Some(rpc));
        }
        assert_eq!(
            Rpc::PullImage.path(),
            "/runtime.v1.ImageService/PullImage".to_owned()
        );
        assert_eq!(Rpc::ALL.iter().filter(|r| r.is_image_service()).count(), 6);
    }
}
