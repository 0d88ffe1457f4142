//! Builders for [`PodSandboxConfig`] and [`ContainerConfig`] with kubelet's
//! conventions, so that pods and containers made with this crate look
//! familiar in `crictl pods`, `crictl ps`, `crictl inspect` and to log
//! shippers reading `/var/log/pods`.
//!
//! What kubelet puts in the configs it sends, and these builders reproduce
//! (from `pkg/kubelet/kuberuntime/labels.go`, `kuberuntime_sandbox.go`,
//! `kuberuntime_container.go`, `helpers.go`, `util/util.go` and
//! `pkg/kubelet/container/helpers.go` in kubernetes):
//!
//! - sandbox labels: the pod's labels plus [`POD_NAME_LABEL`],
//!   [`POD_NAMESPACE_LABEL`] and [`POD_UID_LABEL`] (kubelet's win over the
//!   pod's); sandbox annotations: the pod's annotations, nothing added;
//! - sandbox log directory `<root>/<namespace>_<name>_<uid>`, root
//!   [`DEFAULT_POD_LOGS_ROOT`];
//! - hostname: the pod name cut to 63 characters (none with host network);
//! - Linux: seccomp `RuntimeDefault` for the sandbox, namespaces network
//!   `POD`, IPC `POD`, PID `CONTAINER` (the host's or the pod's when asked);
//! - container labels: [`CONTAINER_NAME_LABEL`] and the pod's three
//!   identifying labels, nothing else;
//! - container annotations: [`CONTAINER_HASH_ANNOTATION`] (kubelet's own hash
//!   of name and image), [`CONTAINER_RESTART_COUNT_ANNOTATION`],
//!   [`CONTAINER_TERMINATION_MESSAGE_PATH_ANNOTATION`] and
//!   [`CONTAINER_TERMINATION_MESSAGE_POLICY_ANNOTATION`] (defaults
//!   `/dev/termination-log` and `File`),
//!   [`POD_TERMINATION_GRACE_PERIOD_ANNOTATION`] (default 30, the API
//!   default), and, when set, [`POD_DELETION_GRACE_PERIOD_ANNOTATION`],
//!   [`CONTAINER_PRE_STOP_HANDLER_ANNOTATION`] and
//!   [`CONTAINER_PORTS_ANNOTATION`];
//! - container metadata attempt = restart count, log path
//!   `<container>/<restart count>.log` relative to the sandbox's log
//!   directory;
//! - container security context: the pod's namespaces, seccomp `Unconfined`
//!   (kubelet's default while its `seccompDefault` setting is off), the
//!   default masked and read-only `/proc` paths.
//!
//! kubelet creates the directories itself: the sandbox's `log_directory`
//! before `RunPodSandbox` and the container's log directory (the parent of
//! [`container_log_path`]) before `CreateContainer`. Do the same rather than
//! rely on the runtime to.
//!
//! What they do not do: compute resources from a pod's QoS class (set them
//! with [`ContainerConfigBuilder::cpu_request_millis`] and friends or
//! [`ContainerConfigBuilder::resources`]), cluster DNS (set
//! [`PodSandboxConfigBuilder::dns_config`]; without it the runtime uses the
//! node's `resolv.conf`), user namespaces, device plugins, volumes (give
//! [`Mount`](crate::v1::Mount)s).
//!
//! # Example
//!
//! ```
//! use cri_client::builders::{ContainerConfigBuilder, PodSandboxConfigBuilder, container_log_path};
//!
//! let pod = PodSandboxConfigBuilder::new("web", "default", "6f1c0a4e-0000-4000-8000-000000000001")
//!     .label("app", "web")
//!     .build()?;
//! assert_eq!(pod.log_directory, "/var/log/pods/default_web_6f1c0a4e-0000-4000-8000-000000000001");
//! assert_eq!(pod.labels["io.kubernetes.pod.name"], "web");
//!
//! let container = ContainerConfigBuilder::new("nginx", "nginx:1.27")
//!     .for_pod(&pod)
//!     .restart_count(2)
//!     .env("PORT", "8080")
//!     .build()?;
//! assert_eq!(container.log_path, "nginx/2.log");
//! assert_eq!(container.labels["io.kubernetes.pod.namespace"], "default");
//! assert_eq!(container.annotations["io.kubernetes.container.restartCount"], "2");
//! assert_eq!(
//!     container_log_path(&pod, &container).unwrap(),
//!     std::path::Path::new("/var/log/pods/default_web_6f1c0a4e-0000-4000-8000-000000000001/nginx/2.log"),
//! );
//! # Ok::<(), cri_client::builders::BuildError>(())
//! ```

use std::path::PathBuf;

use crate::v1::{ContainerConfig, PodSandboxConfig};

mod container;
mod hash;
mod sandbox;
mod validate;

pub use container::{ContainerConfigBuilder, ContainerPort, TerminationMessagePolicy};
pub use hash::container_hash;
pub use sandbox::PodSandboxConfigBuilder;

/// Sandbox and container label: the pod's name.
pub const POD_NAME_LABEL: &str = "io.kubernetes.pod.name";
/// Sandbox and container label: the pod's namespace.
pub const POD_NAMESPACE_LABEL: &str = "io.kubernetes.pod.namespace";
/// Sandbox and container label: the pod's UID.
pub const POD_UID_LABEL: &str = "io.kubernetes.pod.uid";
/// Container label: the container's name in the pod.
pub const CONTAINER_NAME_LABEL: &str = "io.kubernetes.container.name";

/// Container annotation: kubelet's hash of the container spec, lower-case
/// hexadecimal ([`container_hash`]).
pub const CONTAINER_HASH_ANNOTATION: &str = "io.kubernetes.container.hash";
/// Container annotation: the restart count, decimal.
pub const CONTAINER_RESTART_COUNT_ANNOTATION: &str = "io.kubernetes.container.restartCount";
/// Container annotation: where the container writes its termination message.
pub const CONTAINER_TERMINATION_MESSAGE_PATH_ANNOTATION: &str =
    "io.kubernetes.container.terminationMessagePath";
/// Container annotation: `File` or `FallbackToLogsOnError`.
pub const CONTAINER_TERMINATION_MESSAGE_POLICY_ANNOTATION: &str =
    "io.kubernetes.container.terminationMessagePolicy";
/// Container annotation: the pre-stop lifecycle handler as JSON.
pub const CONTAINER_PRE_STOP_HANDLER_ANNOTATION: &str = "io.kubernetes.container.preStopHandler";
/// Container annotation: the container's ports as JSON.
pub const CONTAINER_PORTS_ANNOTATION: &str = "io.kubernetes.container.ports";
/// Container annotation: the pod's `terminationGracePeriodSeconds`.
pub const POD_TERMINATION_GRACE_PERIOD_ANNOTATION: &str =
    "io.kubernetes.pod.terminationGracePeriod";
/// Container annotation: the pod's `deletionGracePeriodSeconds`, once the
/// pod is being deleted.
pub const POD_DELETION_GRACE_PERIOD_ANNOTATION: &str = "io.kubernetes.pod.deletionGracePeriod";

/// kubelet's default `--pod-logs-dir` (`podLogsDirectory`).
pub const DEFAULT_POD_LOGS_ROOT: &str = "/var/log/pods";
/// The API default of `terminationMessagePath`.
pub const DEFAULT_TERMINATION_MESSAGE_PATH: &str = "/dev/termination-log";
/// The API default of `terminationGracePeriodSeconds`.
pub const DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS: i64 = 30;

/// The `/proc` and `/sys` paths kubelet asks the runtime to mask in every
/// container (`pkg/securitycontext/util.go`, unless `procMount: Unmasked`).
pub const DEFAULT_MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// The `/proc` paths kubelet asks the runtime to make read-only in every
/// container.
pub const DEFAULT_READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Input a builder refuses, with the field and the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// A field's value is not valid.
    #[error("invalid {field} {value:?}: {reason}")]
    Invalid {
        /// The field, in Kubernetes words (`pod name`, `container port`).
        field: &'static str,
        /// The value given (cut to 100 characters).
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

impl BuildError {
    pub(crate) fn invalid(field: &'static str, value: impl ToString, reason: &'static str) -> Self {
        let mut value = value.to_string();
        if value.len() > 100 {
            let mut cut = 100;
            while !value.is_char_boundary(cut) {
                cut -= 1;
            }
            value.truncate(cut);
        }
        BuildError::Invalid {
            field,
            value,
            reason,
        }
    }
}

/// A pod's log directory as kubelet names it:
/// `<root>/<namespace>_<name>_<uid>`.
pub fn pod_log_directory(root: &str, namespace: &str, name: &str, uid: &str) -> PathBuf {
    PathBuf::from(root).join(format!("{namespace}_{name}_{uid}"))
}

/// A container's log path relative to its pod's log directory:
/// `<container>/<restart count>.log`.
pub fn container_log_relative_path(container: &str, restart_count: u32) -> String {
    format!("{container}/{restart_count}.log")
}

/// The file the runtime writes the container's output to: the sandbox's
/// `log_directory` joined with the container's `log_path`. `None` when
/// either is empty (the runtime then keeps no log file).
pub fn container_log_path(
    sandbox: &PodSandboxConfig,
    container: &ContainerConfig,
) -> Option<PathBuf> {
    if sandbox.log_directory.is_empty() || container.log_path.is_empty() {
        return None;
    }
    Some(PathBuf::from(&sandbox.log_directory).join(&container.log_path))
}
