//! A probe as plain data: what to probe (the handler), how often (the timing),
//! and where (the target: pod IP, container, ports).

use std::net::IpAddr;

use crate::timing::ProbeTiming;

/// `httpGet.scheme`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Scheme {
    /// Plain HTTP (the default).
    #[default]
    Http,
    /// HTTPS; as the kubelet, the certificate is not verified.
    Https,
}

/// A port given by number or by the name of a container port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PortRef {
    /// A port number.
    Number(u16),
    /// The `name` of one of the container's ports.
    Name(String),
}

/// One probe mechanism (exactly one per probe, as the API requires).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeHandler {
    /// `exec`: run a command in the container; exit 0 passes.
    Exec {
        /// The command and its arguments.
        command: Vec<String>,
    },
    /// `httpGet`: a GET request; 200-399 passes.
    HttpGet {
        /// HTTP or HTTPS.
        scheme: Scheme,
        /// The host; `None` means the pod IP.
        host: Option<String>,
        /// The port.
        port: PortRef,
        /// The path (default `/`).
        path: String,
        /// Extra headers, in order; repeated names allowed.
        headers: Vec<(String, String)>,
    },
    /// `tcpSocket`: a TCP connect within the timeout passes.
    TcpSocket {
        /// The host; `None` means the pod IP.
        host: Option<String>,
        /// The port.
        port: PortRef,
    },
    /// `grpc`: `grpc.health.v1.Health/Check`; only `SERVING` passes.
    Grpc {
        /// The port (numbers only, as the API requires).
        port: u16,
        /// The service name sent in the request (`None` for the server's overall health).
        service: Option<String>,
    },
}

/// A complete probe: the mechanism and its timing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeSpec {
    /// What to probe.
    pub handler: ProbeHandler,
    /// How often, with what thresholds.
    pub timing: ProbeTiming,
}

/// A container port, for resolving named probe ports.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ContainerPort {
    /// The port's name, if it has one.
    pub name: Option<String>,
    /// The port number.
    pub port: u16,
}

/// Where a probe runs: the pod's IP, the container (for exec) and its ports.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProbeTarget {
    /// The pod IP (the default host of HTTP, TCP and gRPC probes).
    pub pod_ip: Option<IpAddr>,
    /// The container's runtime ID (for exec probes).
    pub container_id: String,
    /// The container's ports (for named ports).
    pub ports: Vec<ContainerPort>,
}
