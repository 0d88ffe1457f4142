//! Builders for `PodSandboxConfig` and `ContainerConfig` with the kubelet's conventions.
//! (Being written.)
