//! [`ContainerConfigBuilder`].

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use crate::v1::security_profile::ProfileType;
use crate::v1::{
    Capability, ContainerConfig, ContainerMetadata, Device, ImageSpec, Int64Value, KeyValue,
    LinuxContainerConfig, LinuxContainerResources, LinuxContainerSecurityContext, Mount,
    NamespaceMode, NamespaceOption, PodSandboxConfig, Protocol, SecurityProfile,
};

use super::{
    BuildError, CONTAINER_HASH_ANNOTATION, CONTAINER_NAME_LABEL, CONTAINER_PORTS_ANNOTATION,
    CONTAINER_PRE_STOP_HANDLER_ANNOTATION, CONTAINER_RESTART_COUNT_ANNOTATION,
    CONTAINER_TERMINATION_MESSAGE_PATH_ANNOTATION, CONTAINER_TERMINATION_MESSAGE_POLICY_ANNOTATION,
    DEFAULT_MASKED_PATHS, DEFAULT_READONLY_PATHS, DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS,
    DEFAULT_TERMINATION_MESSAGE_PATH, POD_DELETION_GRACE_PERIOD_ANNOTATION, POD_NAME_LABEL,
    POD_NAMESPACE_LABEL, POD_TERMINATION_GRACE_PERIOD_ANNOTATION, POD_UID_LABEL, container_hash,
    container_log_relative_path, validate,
};

/// How the termination message is found (`terminationMessagePolicy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TerminationMessagePolicy {
    /// Only the file at the termination message path (the API default).
    #[default]
    File,
    /// The file, or the end of the log when the file is empty and the
    /// container failed.
    FallbackToLogsOnError,
}

impl TerminationMessagePolicy {
    /// The value as the API and the annotation write it.
    pub fn as_str(self) -> &'static str {
        match self {
            TerminationMessagePolicy::File => "File",
            TerminationMessagePolicy::FallbackToLogsOnError => "FallbackToLogsOnError",
        }
    }
}

impl fmt::Display for TerminationMessagePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A container port, for the [`CONTAINER_PORTS_ANNOTATION`] kubelet writes
/// (the JSON of the pod spec's `ports`). Host ports are mapped on the
/// sandbox ([`PodSandboxConfigBuilder::port`](super::PodSandboxConfigBuilder::port)).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerPort {
    /// The port's name (an IANA service name), or empty.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// The host port, 0 for none.
    #[serde(skip_serializing_if = "is_zero")]
    pub host_port: u16,
    /// The port in the container.
    pub container_port: u16,
    /// `TCP`, `UDP` or `SCTP`.
    #[serde(serialize_with = "protocol_name")]
    pub protocol: Protocol,
    /// The host address of the host port, or empty.
    #[serde(rename = "hostIP", skip_serializing_if = "String::is_empty")]
    pub host_ip: String,
}

impl ContainerPort {
    /// A named TCP port without a host port.
    pub fn tcp(name: impl Into<String>, container_port: u16) -> Self {
        Self {
            name: name.into(),
            host_port: 0,
            container_port,
            protocol: Protocol::Tcp,
            host_ip: String::new(),
        }
    }
}

fn is_zero(n: &u16) -> bool {
    *n == 0
}

fn protocol_name<S: serde::Serializer>(p: &Protocol, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(p.as_str_name())
}

/// The sandbox facts a container takes from its pod.
#[derive(Debug, Clone, Default)]
struct PodFacts {
    name: String,
    namespace: String,
    uid: String,
    namespaces: Option<NamespaceOption>,
}

/// Builds the [`ContainerConfig`] kubelet would send for a container of a
/// pod (`generateContainerConfig` in
/// `pkg/kubelet/kuberuntime/kuberuntime_container.go`).
///
/// Call [`for_pod`](Self::for_pod) with the pod's sandbox config so that the
/// container carries the pod's labels and namespaces. See the
/// [module documentation](super) for what is set by default.
#[derive(Debug, Clone)]
#[must_use]
pub struct ContainerConfigBuilder {
    name: String,
    image: String,
    image_ref: Option<String>,
    restart_count: u32,
    pod: Option<PodFacts>,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    hash: Option<u64>,
    termination_message_path: String,
    termination_message_policy: TerminationMessagePolicy,
    termination_grace_period: Option<i64>,
    deletion_grace_period: Option<i64>,
    pre_stop_handler: Option<String>,
    ports: Vec<ContainerPort>,
    command: Vec<String>,
    args: Vec<String>,
    working_dir: String,
    envs: Vec<(String, String)>,
    mounts: Vec<Mount>,
    devices: Vec<Device>,
    stdin: bool,
    stdin_once: bool,
    tty: bool,
    resources: Option<LinuxContainerResources>,
    cpu_request_millis: Option<u64>,
    cpu_limit_millis: Option<u64>,
    memory_limit_bytes: Option<i64>,
    security: LinuxContainerSecurityContext,
}

impl ContainerConfigBuilder {
    /// Container `name` (an RFC 1123 label) running `image`, as written in
    /// the pod spec.
    pub fn new(name: impl Into<String>, image: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            image: image.into(),
            image_ref: None,
            restart_count: 0,
            pod: None,
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            hash: None,
            termination_message_path: DEFAULT_TERMINATION_MESSAGE_PATH.to_owned(),
            termination_message_policy: TerminationMessagePolicy::File,
            termination_grace_period: Some(DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS),
            deletion_grace_period: None,
            pre_stop_handler: None,
            ports: Vec::new(),
            command: Vec::new(),
            args: Vec::new(),
            working_dir: String::new(),
            envs: Vec::new(),
            mounts: Vec::new(),
            devices: Vec::new(),
            stdin: false,
            stdin_once: false,
            tty: false,
            resources: None,
            cpu_request_millis: None,
            cpu_limit_millis: None,
            memory_limit_bytes: None,
            security: LinuxContainerSecurityContext {
                masked_paths: DEFAULT_MASKED_PATHS.iter().map(|&p| p.to_owned()).collect(),
                readonly_paths: DEFAULT_READONLY_PATHS
                    .iter()
                    .map(|&p| p.to_owned())
                    .collect(),
                seccomp: Some(SecurityProfile {
                    profile_type: ProfileType::Unconfined as i32,
                    localhost_ref: String::new(),
                }),
                ..Default::default()
            },
        }
    }

    /// Take the pod's name, namespace and UID (for the labels kubelet copies:
    /// [`POD_NAME_LABEL`], [`POD_NAMESPACE_LABEL`], [`POD_UID_LABEL`]) and its
    /// namespace modes from the sandbox config, as kubelet derives both from
    /// the same pod.
    pub fn for_pod(mut self, sandbox: &PodSandboxConfig) -> Self {
        let meta = sandbox.metadata.clone().unwrap_or_default();
        let label_or =
            |label: &str, fallback: String| sandbox.labels.get(label).cloned().unwrap_or(fallback);
        self.pod = Some(PodFacts {
            name: label_or(POD_NAME_LABEL, meta.name),
            namespace: label_or(POD_NAMESPACE_LABEL, meta.namespace),
            uid: label_or(POD_UID_LABEL, meta.uid),
            namespaces: sandbox
                .linux
                .as_ref()
                .and_then(|l| l.security_context.as_ref())
                .and_then(|s| s.namespace_options.clone()),
        });
        self
    }

    /// The restart count: the metadata attempt, the
    /// [`CONTAINER_RESTART_COUNT_ANNOTATION`] and the log file name.
    pub fn restart_count(mut self, restart_count: u32) -> Self {
        self.restart_count = restart_count;
        self
    }

    /// The resolved image (an image ID or digest reference, as kubelet passes
    /// after pulling); the image given to [`new`](Self::new) stays the
    /// user-specified image. Default: the image as given.
    pub fn image_ref(mut self, image_ref: impl Into<String>) -> Self {
        self.image_ref = Some(image_ref.into());
        self
    }

    /// An extra container label. kubelet sets none besides its own four,
    /// which win over extra labels of the same key.
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// A container annotation (kubelet passes device plugins' annotations
    /// this way); kubelet's own annotations win over ones of the same key.
    pub fn annotation(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.annotations.insert(key.into(), value.into());
        self
    }

    /// Override the [`CONTAINER_HASH_ANNOTATION`]; default
    /// [`container_hash`] of name and image.
    pub fn hash(mut self, hash: u64) -> Self {
        self.hash = Some(hash);
        self
    }

    /// `terminationMessagePath` (absolute); default
    /// [`DEFAULT_TERMINATION_MESSAGE_PATH`].
    pub fn termination_message_path(mut self, path: impl Into<String>) -> Self {
        self.termination_message_path = path.into();
        self
    }

    /// `terminationMessagePolicy`; default `File`.
    pub fn termination_message_policy(mut self, policy: TerminationMessagePolicy) -> Self {
        self.termination_message_policy = policy;
        self
    }

    /// The pod's `terminationGracePeriodSeconds`; default 30. `None` leaves
    /// the annotation out.
    pub fn termination_grace_period_seconds(mut self, seconds: Option<i64>) -> Self {
        self.termination_grace_period = seconds;
        self
    }

    /// The pod's `deletionGracePeriodSeconds` (set once the pod is being
    /// deleted); default none.
    pub fn deletion_grace_period_seconds(mut self, seconds: i64) -> Self {
        self.deletion_grace_period = Some(seconds);
        self
    }

    /// The pre-stop handler as the JSON of a Kubernetes `LifecycleHandler`,
    /// for example `{"exec":{"command":["nginx","-s","quit"]}}`; checked to
    /// be JSON by [`build`](Self::build).
    pub fn pre_stop_handler_json(mut self, json: impl Into<String>) -> Self {
        self.pre_stop_handler = Some(json.into());
        self
    }

    /// A container port, recorded in the [`CONTAINER_PORTS_ANNOTATION`].
    pub fn port(mut self, port: ContainerPort) -> Self {
        self.ports.push(port);
        self
    }

    /// The command (the image's entrypoint is used when empty).
    pub fn command<S: Into<String>>(mut self, command: impl IntoIterator<Item = S>) -> Self {
        self.command = command.into_iter().map(Into::into).collect();
        self
    }

    /// The arguments (the image's command is used when empty).
    pub fn args<S: Into<String>>(mut self, args: impl IntoIterator<Item = S>) -> Self {
        self.args = args.into_iter().map(Into::into).collect();
        self
    }

    /// The working directory (absolute); default the image's.
    pub fn working_dir(mut self, dir: impl Into<String>) -> Self {
        self.working_dir = dir.into();
        self
    }

    /// An environment variable, in order.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.envs.push((key.into(), value.into()));
        self
    }

    /// A mount as CRI takes it.
    pub fn mount(mut self, mount: Mount) -> Self {
        self.mounts.push(mount);
        self
    }

    /// A bind mount of `host_path` at `container_path`.
    pub fn bind_mount(
        self,
        host_path: impl Into<String>,
        container_path: impl Into<String>,
        readonly: bool,
    ) -> Self {
        self.mount(Mount {
            host_path: host_path.into(),
            container_path: container_path.into(),
            readonly,
            ..Default::default()
        })
    }

    /// A device node to expose in the container.
    pub fn device(mut self, device: Device) -> Self {
        self.devices.push(device);
        self
    }

    /// Keep stdin open (`stdin`).
    pub fn stdin(mut self, yes: bool) -> Self {
        self.stdin = yes;
        self
    }

    /// Close stdin after the first attach ends (`stdinOnce`).
    pub fn stdin_once(mut self, yes: bool) -> Self {
        self.stdin_once = yes;
        self
    }

    /// Allocate a TTY (`tty`). With a TTY the runtime logs everything as
    /// stdout.
    pub fn tty(mut self, yes: bool) -> Self {
        self.tty = yes;
        self
    }

    /// Linux resources as CRI takes them; overrides the CPU and memory
    /// setters.
    pub fn resources(mut self, resources: LinuxContainerResources) -> Self {
        self.resources = Some(resources);
        self
    }

    /// The CPU request in millicores, turned into CPU shares as kubelet does
    /// (`1024 * millis / 1000`, at least 2).
    pub fn cpu_request_millis(mut self, millis: u64) -> Self {
        self.cpu_request_millis = Some(millis);
        self
    }

    /// The CPU limit in millicores, turned into a CFS quota over kubelet's
    /// 100 ms period (at least 1 ms).
    pub fn cpu_limit_millis(mut self, millis: u64) -> Self {
        self.cpu_limit_millis = Some(millis);
        self
    }

    /// The memory limit in bytes.
    pub fn memory_limit_bytes(mut self, bytes: i64) -> Self {
        self.memory_limit_bytes = Some(bytes);
        self
    }

    /// Run privileged (`securityContext.privileged`); give the sandbox
    /// [`privileged`](super::PodSandboxConfigBuilder::privileged) too.
    pub fn privileged(mut self, yes: bool) -> Self {
        self.security.privileged = yes;
        self
    }

    /// `securityContext.runAsUser`.
    pub fn run_as_user(mut self, uid: i64) -> Self {
        self.security.run_as_user = Some(Int64Value { value: uid });
        self
    }

    /// `securityContext.runAsGroup`.
    pub fn run_as_group(mut self, gid: i64) -> Self {
        self.security.run_as_group = Some(Int64Value { value: gid });
        self
    }

    /// `securityContext.readOnlyRootFilesystem`.
    pub fn readonly_rootfs(mut self, yes: bool) -> Self {
        self.security.readonly_rootfs = yes;
        self
    }

    /// Capabilities to add and drop (`securityContext.capabilities`), names
    /// as in the API (`NET_ADMIN`, `ALL`).
    pub fn capabilities<A: Into<String>, D: Into<String>>(
        mut self,
        add: impl IntoIterator<Item = A>,
        drop: impl IntoIterator<Item = D>,
    ) -> Self {
        self.security.capabilities = Some(Capability {
            add_capabilities: add.into_iter().map(Into::into).collect(),
            drop_capabilities: drop.into_iter().map(Into::into).collect(),
            add_ambient_capabilities: Vec::new(),
        });
        self
    }

    /// `allowPrivilegeEscalation: false` sets no-new-privileges.
    pub fn no_new_privs(mut self, yes: bool) -> Self {
        self.security.no_new_privs = yes;
        self
    }

    /// The seccomp profile; default `Unconfined`, kubelet's while its
    /// `seccompDefault` setting is off.
    pub fn seccomp(mut self, profile: SecurityProfile) -> Self {
        self.security.seccomp = Some(profile);
        self
    }

    /// `procMount: Unmasked`: no masked or read-only `/proc` paths.
    pub fn unmasked_proc_mount(mut self) -> Self {
        self.security.masked_paths.clear();
        self.security.readonly_paths.clear();
        self
    }

    /// The whole Linux security context, replacing what the setters above
    /// built. Namespaces left unset are still filled from the pod.
    pub fn security_context(mut self, security: LinuxContainerSecurityContext) -> Self {
        self.security = security;
        self
    }

    fn validate(&self) -> Result<(), BuildError> {
        validate::dns_label("container name", &self.name)?;
        if self.image.trim().is_empty() || self.image.contains(char::is_whitespace) {
            return Err(BuildError::invalid(
                "container image",
                &self.image,
                "must be non-empty and without spaces",
            ));
        }
        if !self.working_dir.is_empty() {
            validate::absolute("container working dir", &self.working_dir)?;
        }
        validate::absolute("termination message path", &self.termination_message_path)?;
        for (key, _) in &self.envs {
            if key.is_empty() || key.contains('=') {
                return Err(BuildError::invalid(
                    "environment variable name",
                    key,
                    "must be non-empty and without '='",
                ));
            }
        }
        for m in &self.mounts {
            validate::absolute("mount container path", &m.container_path)?;
        }
        for p in &self.ports {
            if p.container_port == 0 {
                return Err(BuildError::invalid(
                    "container port",
                    p.container_port,
                    "must be between 1 and 65535",
                ));
            }
        }
        for (field, value) in [
            ("termination grace period", self.termination_grace_period),
            ("deletion grace period", self.deletion_grace_period),
        ] {
            if let Some(v) = value.filter(|v| *v < 0) {
                return Err(BuildError::invalid(field, v, "must not be negative"));
            }
        }
        if let Some(json) = &self.pre_stop_handler
            && serde_json::from_str::<serde_json::Value>(json).is_err()
        {
            return Err(BuildError::invalid(
                "pre-stop handler",
                json,
                "must be JSON",
            ));
        }
        if self.memory_limit_bytes.is_some_and(|b| b < 0) {
            return Err(BuildError::invalid(
                "memory limit",
                self.memory_limit_bytes.unwrap_or_default(),
                "must not be negative",
            ));
        }
        Ok(())
    }

    /// Resources from the CPU and memory setters, with kubelet's
    /// conversions (`calculateLinuxResources`).
    fn computed_resources(&self) -> Option<LinuxContainerResources> {
        if let Some(r) = &self.resources {
            return Some(r.clone());
        }
        if self.cpu_request_millis.is_none()
            && self.cpu_limit_millis.is_none()
            && self.memory_limit_bytes.is_none()
        {
            return None;
        }
        let limit = self.cpu_limit_millis.unwrap_or(0);
        // The request defaults to the limit when only a limit is given.
        let request = self.cpu_request_millis.unwrap_or(limit);
        Some(LinuxContainerResources {
            cpu_period: CPU_PERIOD_USEC,
            cpu_quota: cpu_quota(limit),
            cpu_shares: cpu_shares(request),
            memory_limit_in_bytes: self.memory_limit_bytes.unwrap_or(0),
            ..Default::default()
        })
    }

    /// The config, or what is wrong with the input.
    pub fn build(self) -> Result<ContainerConfig, BuildError> {
        self.validate()?;
        let resources = self.computed_resources();

        let mut labels: HashMap<String, String> = self.labels.into_iter().collect();
        if let Some(pod) = &self.pod {
            labels.insert(POD_NAME_LABEL.to_owned(), pod.name.clone());
            labels.insert(POD_NAMESPACE_LABEL.to_owned(), pod.namespace.clone());
            labels.insert(POD_UID_LABEL.to_owned(), pod.uid.clone());
        }
        labels.insert(CONTAINER_NAME_LABEL.to_owned(), self.name.clone());

        let mut annotations: HashMap<String, String> = self.annotations.into_iter().collect();
        let hash = self
            .hash
            .unwrap_or_else(|| container_hash(&self.name, &self.image));
        let mut put = |k: &str, v: String| {
            annotations.insert(k.to_owned(), v);
        };
        put(CONTAINER_HASH_ANNOTATION, format!("{hash:x}"));
        put(
            CONTAINER_RESTART_COUNT_ANNOTATION,
            self.restart_count.to_string(),
        );
        put(
            CONTAINER_TERMINATION_MESSAGE_PATH_ANNOTATION,
            self.termination_message_path,
        );
        put(
            CONTAINER_TERMINATION_MESSAGE_POLICY_ANNOTATION,
            self.termination_message_policy.as_str().to_owned(),
        );
        if let Some(s) = self.deletion_grace_period {
            put(POD_DELETION_GRACE_PERIOD_ANNOTATION, s.to_string());
        }
        if let Some(s) = self.termination_grace_period {
            put(POD_TERMINATION_GRACE_PERIOD_ANNOTATION, s.to_string());
        }
        if let Some(json) = self.pre_stop_handler {
            put(CONTAINER_PRE_STOP_HANDLER_ANNOTATION, json);
        }
        if !self.ports.is_empty() {
            // Serializing plain structs of strings and numbers cannot fail.
            let json = serde_json::to_string(&self.ports).unwrap_or_default();
            put(CONTAINER_PORTS_ANNOTATION, json);
        }

        let mut security = self.security;
        if security.namespace_options.is_none() {
            security.namespace_options = Some(
                self.pod
                    .as_ref()
                    .and_then(|p| p.namespaces.clone())
                    .unwrap_or_else(default_namespaces),
            );
        }

        Ok(ContainerConfig {
            metadata: Some(ContainerMetadata {
                name: self.name.clone(),
                attempt: self.restart_count,
            }),
            image: Some(ImageSpec {
                image: self.image_ref.unwrap_or_else(|| self.image.clone()),
                user_specified_image: self.image,
                ..Default::default()
            }),
            command: self.command,
            args: self.args,
            working_dir: self.working_dir,
            envs: self
                .envs
                .into_iter()
                .map(|(key, value)| KeyValue { key, value })
                .collect(),
            mounts: self.mounts,
            devices: self.devices,
            labels,
            annotations,
            log_path: container_log_relative_path(&self.name, self.restart_count),
            stdin: self.stdin,
            stdin_once: self.stdin_once,
            tty: self.tty,
            linux: Some(LinuxContainerConfig {
                resources,
                security_context: Some(security),
            }),
            ..Default::default()
        })
    }
}

/// kubelet's namespaces for a pod without host namespaces or process
/// sharing.
fn default_namespaces() -> NamespaceOption {
    NamespaceOption {
        network: NamespaceMode::Pod as i32,
        pid: NamespaceMode::Container as i32,
        ipc: NamespaceMode::Pod as i32,
        target_id: String::new(),
        userns_options: None,
    }
}

/// kubelet's CFS period (`quotaPeriod`, 100 ms in microseconds).
const CPU_PERIOD_USEC: i64 = 100_000;

/// `MilliCPUToShares` (`pkg/kubelet/cm/helpers_linux.go`): 2 to 262144.
fn cpu_shares(millis: u64) -> i64 {
    const MIN: u64 = 2;
    const MAX: u64 = 262_144;
    let shares = millis.saturating_mul(1024) / 1000;
    shares.clamp(MIN, MAX) as i64
}

/// `milliCPUToQuota`: 0 (no limit) for no limit, else at least 1 ms.
fn cpu_quota(millis: u64) -> i64 {
    const MIN_QUOTA: u64 = 1000;
    if millis == 0 {
        return 0;
    }
    let quota = millis.saturating_mul(CPU_PERIOD_USEC as u64) / 1000;
    i64::try_from(quota.max(MIN_QUOTA)).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builders::PodSandboxConfigBuilder;

    fn pod() -> PodSandboxConfig {
        PodSandboxConfigBuilder::new("web", "prod", "u1")
            .label("app", "web")
            .share_process_namespace(true)
            .build()
            .unwrap()
    }

    fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn labels_annotations_and_paths_are_kubelets() {
        let c = ContainerConfigBuilder::new("nginx", "nginx:1.27")
            .for_pod(&pod())
            .build()
            .unwrap();
        assert_eq!(
            c.metadata,
            Some(ContainerMetadata {
                name: "nginx".into(),
                attempt: 0
            })
        );
        // Only the pod's identifying labels are copied, not its own labels.
        assert_eq!(
            c.labels,
            map(&[
                ("io.kubernetes.container.name", "nginx"),
                ("io.kubernetes.pod.name", "web"),
                ("io.kubernetes.pod.namespace", "prod"),
                ("io.kubernetes.pod.uid", "u1"),
            ])
        );
        let hash = format!("{:x}", container_hash("nginx", "nginx:1.27"));
        assert_eq!(
            c.annotations,
            map(&[
                ("io.kubernetes.container.hash", &hash),
                ("io.kubernetes.container.restartCount", "0"),
                (
                    "io.kubernetes.container.terminationMessagePath",
                    "/dev/termination-log"
                ),
                ("io.kubernetes.container.terminationMessagePolicy", "File"),
                ("io.kubernetes.pod.terminationGracePeriod", "30"),
            ])
        );
        assert_eq!(c.log_path, "nginx/0.log");
        assert_eq!(
            c.image,
            Some(ImageSpec {
                image: "nginx:1.27".into(),
                user_specified_image: "nginx:1.27".into(),
                ..Default::default()
            })
        );
        assert!(!c.stdin && !c.stdin_once && !c.tty);
        let linux = c.linux.unwrap();
        assert_eq!(linux.resources, None);
        let sc = linux.security_context.unwrap();
        assert!(!sc.privileged);
        assert_eq!(sc.masked_paths, DEFAULT_MASKED_PATHS);
        assert_eq!(sc.readonly_paths, DEFAULT_READONLY_PATHS);
        assert_eq!(
            sc.seccomp.map(|s| s.profile_type),
            Some(ProfileType::Unconfined as i32)
        );
        // The pod's namespaces (here a shared PID namespace).
        let ns = sc.namespace_options.unwrap();
        assert_eq!(
            (ns.network, ns.pid, ns.ipc),
            (
                NamespaceMode::Pod as i32,
                NamespaceMode::Pod as i32,
                NamespaceMode::Pod as i32
            )
        );
    }

    #[test]
    fn restart_count_sets_attempt_annotation_and_log_file() {
        let c = ContainerConfigBuilder::new("app", "busybox")
            .for_pod(&pod())
            .restart_count(4)
            .build()
            .unwrap();
        assert_eq!(c.metadata.unwrap().attempt, 4);
        assert_eq!(c.annotations[CONTAINER_RESTART_COUNT_ANNOTATION], "4");
        assert_eq!(c.log_path, "app/4.log");
    }

    #[test]
    fn without_a_pod_only_the_container_label_and_default_namespaces() {
        let c = ContainerConfigBuilder::new("app", "busybox")
            .build()
            .unwrap();
        assert_eq!(c.labels, map(&[("io.kubernetes.container.name", "app")]));
        let ns = c
            .linux
            .unwrap()
            .security_context
            .unwrap()
            .namespace_options
            .unwrap();
        assert_eq!(ns, default_namespaces());
    }

    #[test]
    fn optional_annotations_and_overrides() {
        let c = ContainerConfigBuilder::new("app", "busybox")
            .for_pod(&pod())
            .annotation("device.plugin/x", "1")
            .annotation(CONTAINER_RESTART_COUNT_ANNOTATION, "99")
            .label("extra", "yes")
            .label(CONTAINER_NAME_LABEL, "spoofed")
            .hash(0xabc)
            .termination_message_path("/tmp/msg")
            .termination_message_policy(TerminationMessagePolicy::FallbackToLogsOnError)
            .termination_grace_period_seconds(Some(5))
            .deletion_grace_period_seconds(0)
            .pre_stop_handler_json(r#"{"exec":{"command":["sleep","1"]}}"#)
            .port(ContainerPort::tcp("http", 8080))
            .port(ContainerPort {
                name: String::new(),
                host_port: 5353,
                container_port: 53,
                protocol: Protocol::Udp,
                host_ip: "127.0.0.1".into(),
            })
            .build()
            .unwrap();
        let a = &c.annotations;
        assert_eq!(a["device.plugin/x"], "1");
        assert_eq!(a[CONTAINER_RESTART_COUNT_ANNOTATION], "0");
        assert_eq!(a[CONTAINER_HASH_ANNOTATION], "abc");
        assert_eq!(a[CONTAINER_TERMINATION_MESSAGE_PATH_ANNOTATION], "/tmp/msg");
        assert_eq!(
            a[CONTAINER_TERMINATION_MESSAGE_POLICY_ANNOTATION],
            "FallbackToLogsOnError"
        );
        assert_eq!(a[POD_TERMINATION_GRACE_PERIOD_ANNOTATION], "5");
        assert_eq!(a[POD_DELETION_GRACE_PERIOD_ANNOTATION], "0");
        assert_eq!(
            a[CONTAINER_PRE_STOP_HANDLER_ANNOTATION],
            r#"{"exec":{"command":["sleep","1"]}}"#
        );
        assert_eq!(
            a[CONTAINER_PORTS_ANNOTATION],
            r#"[{"name":"http","containerPort":8080,"protocol":"TCP"},{"hostPort":5353,"containerPort":53,"protocol":"UDP","hostIP":"127.0.0.1"}]"#
        );
        assert_eq!(c.labels["extra"], "yes");
        assert_eq!(c.labels[CONTAINER_NAME_LABEL], "app");
        let c = ContainerConfigBuilder::new("app", "busybox")
            .termination_grace_period_seconds(None)
            .build()
            .unwrap();
        assert!(
            !c.annotations
                .contains_key(POD_TERMINATION_GRACE_PERIOD_ANNOTATION)
        );
    }

    #[test]
    fn process_fields() {
        let c = ContainerConfigBuilder::new("app", "127.0.0.1:5000/busybox:1.35")
            .image_ref("sha256:0123")
            .command(["sh", "-c"])
            .args(["echo hi"])
            .working_dir("/tmp")
            .env("A", "1")
            .env("B", "two words")
            .bind_mount("/host/data", "/data", true)
            .device(Device {
                container_path: "/dev/fuse".into(),
                host_path: "/dev/fuse".into(),
                permissions: "rwm".into(),
            })
            .stdin(true)
            .stdin_once(true)
            .tty(true)
            .build()
            .unwrap();
        let image = c.image.unwrap();
        assert_eq!(image.image, "sha256:0123");
        assert_eq!(image.user_specified_image, "127.0.0.1:5000/busybox:1.35");
        assert_eq!(c.command, ["sh", "-c"]);
        assert_eq!(c.args, ["echo hi"]);
        assert_eq!(c.working_dir, "/tmp");
        assert_eq!(
            c.envs,
            [
                KeyValue {
                    key: "A".into(),
                    value: "1".into()
                },
                KeyValue {
                    key: "B".into(),
                    value: "two words".into()
                }
            ]
        );
        assert_eq!(c.mounts.len(), 1);
        assert_eq!(c.mounts[0].host_path, "/host/data");
        assert_eq!(c.mounts[0].container_path, "/data");
        assert!(c.mounts[0].readonly);
        assert_eq!(c.devices.len(), 1);
        assert!(c.stdin && c.stdin_once && c.tty);
    }

    #[test]
    fn resources_use_kubelets_conversions() {
        let r = |b: ContainerConfigBuilder| b.build().unwrap().linux.unwrap().resources.unwrap();
        let res = r(ContainerConfigBuilder::new("a", "i")
            .cpu_request_millis(250)
            .cpu_limit_millis(500)
            .memory_limit_bytes(64 << 20));
        assert_eq!(res.cpu_shares, 256);
        assert_eq!(res.cpu_quota, 50_000);
        assert_eq!(res.cpu_period, 100_000);
        assert_eq!(res.memory_limit_in_bytes, 64 << 20);
        // Only a limit: the request defaults to it.
        let res = r(ContainerConfigBuilder::new("a", "i").cpu_limit_millis(2000));
        assert_eq!((res.cpu_shares, res.cpu_quota), (2048, 200_000));
        // Minimums: 2 shares, 1 ms of quota; no limit is quota 0.
        let res = r(ContainerConfigBuilder::new("a", "i")
            .cpu_request_millis(1)
            .cpu_limit_millis(1));
        assert_eq!((res.cpu_shares, res.cpu_quota), (2, 1000));
        let res = r(ContainerConfigBuilder::new("a", "i").memory_limit_bytes(1));
        assert_eq!((res.cpu_shares, res.cpu_quota), (2, 0));
        // Raw resources win.
        let raw = LinuxContainerResources {
            cpuset_cpus: "0".into(),
            ..Default::default()
        };
        let res = r(ContainerConfigBuilder::new("a", "i")
            .cpu_request_millis(100)
            .resources(raw.clone()));
        assert_eq!(res, raw);
    }

    #[test]
    fn security_setters() {
        let sc = ContainerConfigBuilder::new("a", "i")
            .privileged(true)
            .run_as_user(1000)
            .run_as_group(1001)
            .readonly_rootfs(true)
            .capabilities(["NET_ADMIN"], ["ALL"])
            .no_new_privs(true)
            .unmasked_proc_mount()
            .seccomp(SecurityProfile {
                profile_type: ProfileType::RuntimeDefault as i32,
                localhost_ref: String::new(),
            })
            .build()
            .unwrap()
            .linux
            .unwrap()
            .security_context
            .unwrap();
        assert!(sc.privileged && sc.readonly_rootfs && sc.no_new_privs);
        assert_eq!(sc.run_as_user, Some(Int64Value { value: 1000 }));
        assert_eq!(sc.run_as_group, Some(Int64Value { value: 1001 }));
        let caps = sc.capabilities.unwrap();
        assert_eq!(caps.add_capabilities, ["NET_ADMIN"]);
        assert_eq!(caps.drop_capabilities, ["ALL"]);
        assert!(sc.masked_paths.is_empty() && sc.readonly_paths.is_empty());
        assert_eq!(
            sc.seccomp.map(|s| s.profile_type),
            Some(ProfileType::RuntimeDefault as i32)
        );
    }

    #[test]
    fn invalid_input_is_refused_with_the_field() {
        let cases: Vec<(ContainerConfigBuilder, &str)> = vec![
            (
                ContainerConfigBuilder::new("Bad_Name", "i"),
                "container name",
            ),
            (ContainerConfigBuilder::new("a", ""), "container image"),
            (
                ContainerConfigBuilder::new("a", "two words"),
                "container image",
            ),
            (
                ContainerConfigBuilder::new("a", "i").working_dir("tmp"),
                "container working dir",
            ),
            (
                ContainerConfigBuilder::new("a", "i").termination_message_path("log"),
                "termination message path",
            ),
            (
                ContainerConfigBuilder::new("a", "i").env("A=B", "1"),
                "environment variable name",
            ),
            (
                ContainerConfigBuilder::new("a", "i").bind_mount("/h", "rel", false),
                "mount container path",
            ),
            (
                ContainerConfigBuilder::new("a", "i").port(ContainerPort::tcp("x", 0)),
                "container port",
            ),
            (
                ContainerConfigBuilder::new("a", "i").termination_grace_period_seconds(Some(-1)),
                "termination grace period",
            ),
            (
                ContainerConfigBuilder::new("a", "i").pre_stop_handler_json("{not json"),
                "pre-stop handler",
            ),
            (
                ContainerConfigBuilder::new("a", "i").memory_limit_bytes(-1),
                "memory limit",
            ),
        ];
        for (builder, field) in cases {
            let err = builder.build().unwrap_err();
            let BuildError::Invalid { field: got, .. } = &err;
            assert_eq!(*got, field, "{err}");
        }
    }
}
