//! [`PodSandboxConfigBuilder`].

use std::collections::{BTreeMap, HashMap};

use crate::v1::security_profile::ProfileType;
use crate::v1::{
    DnsConfig, Int64Value, LinuxPodSandboxConfig, LinuxSandboxSecurityContext, NamespaceMode,
    NamespaceOption, PodSandboxConfig, PodSandboxMetadata, PortMapping, Protocol, SecurityProfile,
};

use super::{
    BuildError, DEFAULT_POD_LOGS_ROOT, POD_NAME_LABEL, POD_NAMESPACE_LABEL, POD_UID_LABEL,
    pod_log_directory, validate,
};

/// Builds the [`PodSandboxConfig`] kubelet would send for a pod
/// (`generatePodSandboxConfig` in `pkg/kubelet/kuberuntime/kuberuntime_sandbox.go`).
///
/// See the [module documentation](super) for what is set by default.
#[derive(Debug, Clone)]
#[must_use]
pub struct PodSandboxConfigBuilder {
    name: String,
    namespace: String,
    uid: String,
    attempt: u32,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    hostname: Option<String>,
    log_root: String,
    dns: Option<DnsConfig>,
    port_mappings: Vec<PortMapping>,
    cgroup_parent: String,
    host_network: bool,
    host_pid: bool,
    host_ipc: bool,
    share_process_namespace: bool,
    sysctls: BTreeMap<String, String>,
    privileged: bool,
    run_as_user: Option<i64>,
    run_as_group: Option<i64>,
    supplemental_groups: Vec<i64>,
    seccomp: SecurityProfile,
}

impl PodSandboxConfigBuilder {
    /// A sandbox for pod `name` in `namespace` with UID `uid`.
    pub fn new(
        name: impl Into<String>,
        namespace: impl Into<String>,
        uid: impl Into<String>,
    ) -> Self {
        Self {
            name: name.into(),
            namespace: namespace.into(),
            uid: uid.into(),
            attempt: 0,
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            hostname: None,
            log_root: DEFAULT_POD_LOGS_ROOT.to_owned(),
            dns: None,
            port_mappings: Vec::new(),
            cgroup_parent: String::new(),
            host_network: false,
            host_pid: false,
            host_ipc: false,
            share_process_namespace: false,
            sysctls: BTreeMap::new(),
            privileged: false,
            run_as_user: None,
            run_as_group: None,
            supplemental_groups: Vec::new(),
            seccomp: SecurityProfile {
                profile_type: ProfileType::RuntimeDefault as i32,
                localhost_ref: String::new(),
            },
        }
    }

    /// The sandbox attempt: 0 for the pod's first sandbox, one more for each
    /// sandbox kubelet had to recreate.
    pub fn attempt(mut self, attempt: u32) -> Self {
        self.attempt = attempt;
        self
    }

    /// A pod label. kubelet's `io.kubernetes.pod.*` labels override pod
    /// labels of the same key, as in kubelet.
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// Pod labels (see [`label`](Self::label)).
    pub fn labels<K: Into<String>, V: Into<String>>(
        mut self,
        labels: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        self.labels
            .extend(labels.into_iter().map(|(k, v)| (k.into(), v.into())));
        self
    }

    /// A pod annotation, passed through unchanged.
    pub fn annotation(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.annotations.insert(key.into(), value.into());
        self
    }

    /// Pod annotations, passed through unchanged.
    pub fn annotations<K: Into<String>, V: Into<String>>(
        mut self,
        annotations: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        self.annotations
            .extend(annotations.into_iter().map(|(k, v)| (k.into(), v.into())));
        self
    }

    /// The hostname (`spec.hostname`, an RFC 1123 label). Default: the pod
    /// name cut to 63 characters, or none with host network.
    pub fn hostname(mut self, hostname: impl Into<String>) -> Self {
        self.hostname = Some(hostname.into());
        self
    }

    /// The root of the pod log directories (kubelet's `podLogsDirectory`,
    /// default [`DEFAULT_POD_LOGS_ROOT`]); must be absolute.
    pub fn log_root(mut self, root: impl Into<String>) -> Self {
        self.log_root = root.into();
        self
    }

    /// DNS servers, search domains and resolver options for the pod's
    /// `resolv.conf`. Without it the runtime uses the node's.
    pub fn dns_config(mut self, dns: DnsConfig) -> Self {
        self.dns = Some(dns);
        self
    }

    /// A host port mapped to a container port (a container's `hostPort`),
    /// on all host addresses.
    pub fn port(self, protocol: Protocol, container_port: u16, host_port: u16) -> Self {
        self.port_mapping(PortMapping {
            protocol: protocol as i32,
            container_port: i32::from(container_port),
            host_port: i32::from(host_port),
            host_ip: String::new(),
        })
    }

    /// A port mapping as CRI takes it; checked by [`build`](Self::build).
    pub fn port_mapping(mut self, mapping: PortMapping) -> Self {
        self.port_mappings.push(mapping);
        self
    }

    /// The pod's cgroup parent (kubelet's pod cgroup, for example
    /// `/kubepods/burstable/pod<uid>`). Default: empty, the runtime's choice.
    pub fn cgroup_parent(mut self, cgroup_parent: impl Into<String>) -> Self {
        self.cgroup_parent = cgroup_parent.into();
        self
    }

    /// Use the node's network namespace (`hostNetwork`).
    pub fn host_network(mut self, yes: bool) -> Self {
        self.host_network = yes;
        self
    }

    /// Use the node's PID namespace (`hostPID`).
    pub fn host_pid(mut self, yes: bool) -> Self {
        self.host_pid = yes;
        self
    }

    /// Use the node's IPC namespace (`hostIPC`).
    pub fn host_ipc(mut self, yes: bool) -> Self {
        self.host_ipc = yes;
        self
    }

    /// One PID namespace for all containers of the pod
    /// (`shareProcessNamespace`); by default each container has its own.
    pub fn share_process_namespace(mut self, yes: bool) -> Self {
        self.share_process_namespace = yes;
        self
    }

    /// A namespaced sysctl for the pod (`securityContext.sysctls`).
    pub fn sysctl(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.sysctls.insert(name.into(), value.into());
        self
    }

    /// Run the sandbox privileged; kubelet does when any container of the
    /// pod is privileged.
    pub fn privileged(mut self, yes: bool) -> Self {
        self.privileged = yes;
        self
    }

    /// The pod's `runAsUser`.
    pub fn run_as_user(mut self, uid: i64) -> Self {
        self.run_as_user = Some(uid);
        self
    }

    /// The pod's `runAsGroup`.
    pub fn run_as_group(mut self, gid: i64) -> Self {
        self.run_as_group = Some(gid);
        self
    }

    /// A supplemental group (`supplementalGroups`, `fsGroup`).
    pub fn supplemental_group(mut self, gid: i64) -> Self {
        self.supplemental_groups.push(gid);
        self
    }

    /// The sandbox's seccomp profile. Default `RuntimeDefault`, which kubelet
    /// always uses for the sandbox.
    pub fn seccomp(mut self, profile: SecurityProfile) -> Self {
        self.seccomp = profile;
        self
    }

    /// The namespace modes kubelet would choose (`NamespacesForPod` in
    /// `pkg/kubelet/kuberuntime/util/util.go`).
    fn namespace_options(&self) -> NamespaceOption {
        let node_or = |node: bool, otherwise: NamespaceMode| {
            if node { NamespaceMode::Node } else { otherwise }
        };
        let pid = if self.host_pid {
            NamespaceMode::Node
        } else if self.share_process_namespace {
            NamespaceMode::Pod
        } else {
            NamespaceMode::Container
        };
        NamespaceOption {
            network: node_or(self.host_network, NamespaceMode::Pod) as i32,
            pid: pid as i32,
            ipc: node_or(self.host_ipc, NamespaceMode::Pod) as i32,
            target_id: String::new(),
            userns_options: None,
        }
    }

    /// The config, or what is wrong with the input.
    pub fn build(self) -> Result<PodSandboxConfig, BuildError> {
        validate::dns_subdomain("pod name", &self.name)?;
        validate::dns_label("pod namespace", &self.namespace)?;
        validate::uid(&self.uid)?;
        validate::absolute("pod log root", &self.log_root)?;
        if let Some(hostname) = &self.hostname {
            validate::dns_label("pod hostname", hostname)?;
        }
        for p in &self.port_mappings {
            if !(1..=65535).contains(&p.container_port) {
                return Err(BuildError::invalid(
                    "container port",
                    p.container_port,
                    "must be between 1 and 65535",
                ));
            }
            if !(0..=65535).contains(&p.host_port) {
                return Err(BuildError::invalid(
                    "host port",
                    p.host_port,
                    "must be between 0 (none) and 65535",
                ));
            }
            if Protocol::try_from(p.protocol).is_err() {
                return Err(BuildError::invalid(
                    "port protocol",
                    p.protocol,
                    "must be TCP, UDP or SCTP",
                ));
            }
        }
        if let Some(name) = self
            .sysctls
            .keys()
            .find(|k| k.is_empty() || k.contains(char::is_whitespace))
        {
            return Err(BuildError::invalid(
                "sysctl name",
                name,
                "must be non-empty and without spaces",
            ));
        }
        if let Some(key) = self.labels.keys().find(|k| k.is_empty()) {
            return Err(BuildError::invalid(
                "pod label key",
                key,
                "must not be empty",
            ));
        }

        let hostname = match (&self.hostname, self.host_network) {
            (Some(h), _) => h.clone(),
            (None, true) => String::new(),
            (None, false) => default_hostname(&self.name),
        };
        let mut labels: HashMap<String, String> = self.labels.clone().into_iter().collect();
        labels.insert(POD_NAME_LABEL.to_owned(), self.name.clone());
        labels.insert(POD_NAMESPACE_LABEL.to_owned(), self.namespace.clone());
        labels.insert(POD_UID_LABEL.to_owned(), self.uid.clone());
        let log_directory =
            pod_log_directory(&self.log_root, &self.namespace, &self.name, &self.uid)
                .to_string_lossy()
                .into_owned();
        let linux = LinuxPodSandboxConfig {
            cgroup_parent: self.cgroup_parent.clone(),
            security_context: Some(LinuxSandboxSecurityContext {
                namespace_options: Some(self.namespace_options()),
                run_as_user: self.run_as_user.map(|value| Int64Value { value }),
                run_as_group: self.run_as_group.map(|value| Int64Value { value }),
                supplemental_groups: self.supplemental_groups.clone(),
                privileged: self.privileged,
                seccomp: Some(self.seccomp.clone()),
                ..Default::default()
            }),
            sysctls: self.sysctls.clone().into_iter().collect(),
            overhead: None,
            resources: None,
        };
        Ok(PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: self.name,
                uid: self.uid,
                namespace: self.namespace,
                attempt: self.attempt,
            }),
            hostname,
            log_directory,
            dns_config: self.dns,
            port_mappings: self.port_mappings,
            labels,
            annotations: self.annotations.into_iter().collect(),
            linux: Some(linux),
            windows: None,
        })
    }
}

/// kubelet's hostname for a pod without `spec.hostname`: the name, cut to 63
/// characters, without a trailing `-` or `.` (`truncatePodHostnameIfNeeded`).
fn default_hostname(pod_name: &str) -> String {
    if pod_name.len() <= 63 {
        return pod_name.to_owned();
    }
    // Pod names are ASCII (validated), so any byte index is a char boundary.
    pod_name[..63].trim_end_matches(['-', '.']).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const UID: &str = "6f1c0a4e-0000-4000-8000-000000000001";

    fn ns(config: &PodSandboxConfig) -> NamespaceOption {
        config
            .linux
            .as_ref()
            .and_then(|l| l.security_context.as_ref())
            .and_then(|s| s.namespace_options.clone())
            .unwrap()
    }

    #[test]
    fn defaults_are_kubelets() {
        let c = PodSandboxConfigBuilder::new("web", "default", UID)
            .build()
            .unwrap();
        assert_eq!(
            c.metadata,
            Some(PodSandboxMetadata {
                name: "web".into(),
                uid: UID.into(),
                namespace: "default".into(),
                attempt: 0,
            })
        );
        assert_eq!(c.hostname, "web");
        assert_eq!(
            c.log_directory,
            "/var/log/pods/default_web_6f1c0a4e-0000-4000-8000-000000000001"
        );
        let want_labels: HashMap<String, String> = [
            ("io.kubernetes.pod.name", "web"),
            ("io.kubernetes.pod.namespace", "default"),
            ("io.kubernetes.pod.uid", UID),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(c.labels, want_labels);
        assert!(c.annotations.is_empty());
        assert_eq!(c.dns_config, None);
        assert!(c.port_mappings.is_empty());
        let linux = c.linux.clone().unwrap();
        assert_eq!(linux.cgroup_parent, "");
        assert!(linux.sysctls.is_empty());
        let sc = linux.security_context.unwrap();
        assert!(!sc.privileged);
        assert_eq!(
            sc.seccomp,
            Some(SecurityProfile {
                profile_type: ProfileType::RuntimeDefault as i32,
                localhost_ref: String::new(),
            })
        );
        assert_eq!(sc.run_as_user, None);
        let ns = ns(&c);
        assert_eq!(ns.network, NamespaceMode::Pod as i32);
        assert_eq!(ns.pid, NamespaceMode::Container as i32);
        assert_eq!(ns.ipc, NamespaceMode::Pod as i32);
        assert_eq!(ns.userns_options, None);
        assert_eq!(c.windows, None);
    }

    #[test]
    fn user_labels_merge_and_kubelets_win() {
        let c = PodSandboxConfigBuilder::new("web", "prod", "u1")
            .label("app", "web")
            .labels([("tier", "front"), (POD_NAME_LABEL, "spoofed")])
            .annotation("a", "1")
            .annotations([("b", "2")])
            .build()
            .unwrap();
        assert_eq!(c.labels["app"], "web");
        assert_eq!(c.labels["tier"], "front");
        assert_eq!(c.labels[POD_NAME_LABEL], "web");
        assert_eq!(c.labels[POD_NAMESPACE_LABEL], "prod");
        assert_eq!(c.labels[POD_UID_LABEL], "u1");
        assert_eq!(c.labels.len(), 5);
        assert_eq!(c.annotations.len(), 2);
        assert_eq!(c.annotations["b"], "2");
    }

    #[test]
    fn log_root_hostname_and_attempt() {
        let c = PodSandboxConfigBuilder::new("web", "default", "u1")
            .log_root("/var/lib/test/pod-logs")
            .hostname("box")
            .attempt(3)
            .build()
            .unwrap();
        assert_eq!(c.log_directory, "/var/lib/test/pod-logs/default_web_u1");
        assert_eq!(c.hostname, "box");
        assert_eq!(c.metadata.unwrap().attempt, 3);
        // A long pod name is cut to a 63-character hostname without a
        // trailing '-' or '.'.
        let long = format!("{}-{}", "a".repeat(62), "b".repeat(10));
        let c = PodSandboxConfigBuilder::new(long, "default", "u1")
            .build()
            .unwrap();
        assert_eq!(c.hostname, "a".repeat(62));
        // No hostname with host network unless asked for.
        let c = PodSandboxConfigBuilder::new("web", "default", "u1")
            .host_network(true)
            .build()
            .unwrap();
        assert_eq!(c.hostname, "");
    }

    #[test]
    fn namespaces_follow_host_and_share_settings() {
        let c = PodSandboxConfigBuilder::new("web", "default", "u1")
            .host_network(true)
            .host_ipc(true)
            .share_process_namespace(true)
            .build()
            .unwrap();
        let n = ns(&c);
        assert_eq!(
            (n.network, n.pid, n.ipc),
            (
                NamespaceMode::Node as i32,
                NamespaceMode::Pod as i32,
                NamespaceMode::Node as i32
            )
        );
        let c = PodSandboxConfigBuilder::new("web", "default", "u1")
            .host_pid(true)
            .share_process_namespace(true)
            .build()
            .unwrap();
        assert_eq!(ns(&c).pid, NamespaceMode::Node as i32);
    }

    #[test]
    fn ports_dns_and_linux_options() {
        let dns = DnsConfig {
            servers: vec!["10.96.0.10".into()],
            searches: vec!["default.svc.cluster.local".into()],
            options: vec!["ndots:5".into()],
        };
        let c = PodSandboxConfigBuilder::new("web", "default", "u1")
            .port(Protocol::Udp, 53, 5353)
            .port_mapping(PortMapping {
                protocol: Protocol::Tcp as i32,
                container_port: 80,
                host_port: 8080,
                host_ip: "127.0.0.1".into(),
            })
            .dns_config(dns.clone())
            .cgroup_parent("/kubepods/podu1")
            .sysctl("net.ipv4.ip_unprivileged_port_start", "0")
            .privileged(true)
            .run_as_user(1000)
            .run_as_group(2000)
            .supplemental_group(3000)
            .build()
            .unwrap();
        assert_eq!(c.port_mappings.len(), 2);
        assert_eq!(c.port_mappings[0].protocol, Protocol::Udp as i32);
        assert_eq!(c.port_mappings[0].container_port, 53);
        assert_eq!(c.port_mappings[0].host_port, 5353);
        assert_eq!(c.port_mappings[1].host_ip, "127.0.0.1");
        assert_eq!(c.dns_config, Some(dns));
        let linux = c.linux.unwrap();
        assert_eq!(linux.cgroup_parent, "/kubepods/podu1");
        assert_eq!(linux.sysctls["net.ipv4.ip_unprivileged_port_start"], "0");
        let sc = linux.security_context.unwrap();
        assert!(sc.privileged);
        assert_eq!(sc.run_as_user, Some(Int64Value { value: 1000 }));
        assert_eq!(sc.run_as_group, Some(Int64Value { value: 2000 }));
        assert_eq!(sc.supplemental_groups, vec![3000]);
    }

    #[test]
    fn invalid_input_is_refused_with_the_field() {
        let cases: Vec<(PodSandboxConfigBuilder, &str)> = vec![
            (
                PodSandboxConfigBuilder::new("Web", "default", "u1"),
                "pod name",
            ),
            (
                PodSandboxConfigBuilder::new("", "default", "u1"),
                "pod name",
            ),
            (
                PodSandboxConfigBuilder::new("web", "a.b", "u1"),
                "pod namespace",
            ),
            (
                PodSandboxConfigBuilder::new("web", "default", ""),
                "pod uid",
            ),
            (
                PodSandboxConfigBuilder::new("web", "default", "a_b"),
                "pod uid",
            ),
            (
                PodSandboxConfigBuilder::new("web", "default", "u1").log_root("logs"),
                "pod log root",
            ),
            (
                PodSandboxConfigBuilder::new("web", "default", "u1").hostname("a.b"),
                "pod hostname",
            ),
            (
                PodSandboxConfigBuilder::new("web", "default", "u1").port(Protocol::Tcp, 0, 80),
                "container port",
            ),
            (
                PodSandboxConfigBuilder::new("web", "default", "u1").port_mapping(PortMapping {
                    protocol: 9,
                    container_port: 80,
                    host_port: 0,
                    host_ip: String::new(),
                }),
                "port protocol",
            ),
            (
                PodSandboxConfigBuilder::new("web", "default", "u1").sysctl("", "1"),
                "sysctl name",
            ),
            (
                PodSandboxConfigBuilder::new("web", "default", "u1").label("", "x"),
                "pod label key",
            ),
        ];
        for (builder, field) in cases {
            let err = builder.build().unwrap_err();
            let BuildError::Invalid { field: got, .. } = &err;
            assert_eq!(*got, field, "{err}");
        }
    }
}
