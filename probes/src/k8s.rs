//! Conversions from the Kubernetes API types (`k8s_openapi::api::core::v1`) into the
//! probe model, applying the API server's defaults to unset fields.
//!
//! - Timing: `SetDefaults_Probe` sets `timeoutSeconds=1`, `periodSeconds=10`,
//!   `successThreshold=1`, `failureThreshold=3` when a field is zero, so an unset field
//!   and an explicit `0` both get the default (see [`ProbeTiming::default`]).
//! - `httpGet`: `SetDefaults_HTTPGetAction` sets `path: /` and `scheme: HTTP`.
//! - Exactly one handler (`exec`, `httpGet`, `tcpSocket`, `grpc`), as the API's
//!   validation requires; zero or two are a [`ConversionError`] naming the field.
//! - Ports: `IntOrString` numbers must be 1-65535; strings are port names, resolved
//!   against the container's ports when the probe runs ([`ProbeTarget::ports`]).
//!   `grpc.port` is a plain integer in the API, so a named gRPC port cannot even be
//!   written; its range is checked.
//!
//! ```
//! use k8s_openapi::api::core::v1::{Container, ContainerPort, HTTPGetAction, Probe};
//! use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
//! use pod_probes::{ProbeHandler, ProbeKind, k8s};
//!
//! let container = Container {
//!     name: "web".into(),
//!     ports: Some(vec![ContainerPort {
//!         name: Some("http".into()),
//!         container_port: 8080,
//!         ..Default::default()
//!     }]),
//!     liveness_probe: Some(Probe {
//!         http_get: Some(HTTPGetAction {
//!             port: IntOrString::String("http".into()),
//!             ..Default::default()
//!         }),
//!         ..Default::default()
//!     }),
//!     ..Default::default()
//! };
//! let probes = k8s::container_probes(&container).unwrap();
//! let liveness = probes.liveness.unwrap();
//! assert!(matches!(&liveness.handler, ProbeHandler::HttpGet { path, .. } if path == "/"));
//! assert_eq!(liveness.timing.period_seconds, 10);
//! assert_eq!(probes.ports[0].port, 8080);
//!
//! let err = k8s::probe_spec(ProbeKind::Readiness, &Probe::default()).unwrap_err();
//! assert_eq!(
//!     err.to_string(),
//!     "readinessProbe: must specify a handler type (one of exec, httpGet, tcpSocket, grpc)"
//! );
//! ```

use std::net::IpAddr;

use k8s_openapi::api::core::v1 as core;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::spec::{ContainerPort, PortRef, ProbeHandler, ProbeSpec, ProbeTarget, Scheme};
use crate::timing::{ProbeKind, ProbeTiming};

/// Why an API object cannot become a probe. Messages name the field as the API
/// server's validation does (`livenessProbe.httpGet.port: ...`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConversionError {
    /// The probe has no handler.
    #[error("{field}: must specify a handler type (one of exec, httpGet, tcpSocket, grpc)")]
    NoHandler {
        /// The probe's field, e.g. `livenessProbe`.
        field: String,
    },
    /// The probe has more than one handler.
    #[error("{field}: may not specify more than 1 handler type (found {})", .handlers.join(", "))]
    MultipleHandlers {
        /// The probe's field.
        field: String,
        /// The handlers set, in API order.
        handlers: Vec<&'static str>,
    },
    /// A required field is missing or empty.
    #[error("{field}: required value")]
    Required {
        /// The field.
        field: String,
    },
    /// A port number outside 1-65535.
    #[error("{field}: must be between 1 and 65535, inclusive (got {value})")]
    InvalidPort {
        /// The field.
        field: String,
        /// The value given.
        value: i64,
    },
    /// A value outside the field's enumeration.
    #[error("{field}: unsupported value {value:?}: supported values: {supported}")]
    Unsupported {
        /// The field.
        field: String,
        /// The value given.
        value: String,
        /// The values allowed.
        supported: &'static str,
    },
}

/// Convert all probes of a container, and its ports, into the manager's
/// [`ContainerProbes`](crate::manager::ContainerProbes) (named after the container).
pub fn container_probes(
    container: &core::Container,
) -> Result<crate::manager::ContainerProbes, ConversionError> {
    let convert = |kind: ProbeKind, probe: Option<&core::Probe>| {
        probe.map(|p| probe_spec(kind, p)).transpose()
    };
    let mut probes = crate::manager::ContainerProbes::new(container.name.clone()).ports(
        container_ports(container.ports.as_deref().unwrap_or_default())?,
    );
    probes.liveness = convert(ProbeKind::Liveness, container.liveness_probe.as_ref())?;
    probes.readiness = convert(ProbeKind::Readiness, container.readiness_probe.as_ref())?;
    probes.startup = convert(ProbeKind::Startup, container.startup_probe.as_ref())?;
    Ok(probes)
}

/// The [`ProbeTarget`] of a container: its runtime ID, its ports, and the pod's IP.
pub fn probe_target(
    container: &core::Container,
    container_id: impl Into<String>,
    pod_ip: Option<IpAddr>,
) -> Result<ProbeTarget, ConversionError> {
    Ok(ProbeTarget {
        pod_ip,
        container_id: container_id.into(),
        ports: container_ports(container.ports.as_deref().unwrap_or_default())?,
    })
}

/// Convert a container's `ports` (`containerPort` must be 1-65535).
pub fn container_ports(
    ports: &[core::ContainerPort],
) -> Result<Vec<ContainerPort>, ConversionError> {
    ports
        .iter()
        .enumerate()
        .map(|(i, p)| {
            Ok(ContainerPort {
                name: p.name.clone().filter(|n| !n.is_empty()),
                port: port_number(
                    &format!("ports[{i}].containerPort"),
                    p.container_port.into(),
                )?,
            })
        })
        .collect()
}

/// Convert one probe, with the API defaults for unset fields; `kind` names the field in
/// errors.
pub fn probe_spec(kind: ProbeKind, probe: &core::Probe) -> Result<ProbeSpec, ConversionError> {
    Ok(ProbeSpec {
        handler: probe_handler(kind.field_name(), probe)?,
        timing: probe_timing(probe),
    })
}

/// The timing fields with `SetDefaults_Probe` applied (a zero is "unset").
pub fn probe_timing(probe: &core::Probe) -> ProbeTiming {
    let defaults = ProbeTiming::default();
    let or = |value: Option<i32>, default: i32| value.filter(|v| *v != 0).unwrap_or(default);
    ProbeTiming {
        initial_delay_seconds: probe
            .initial_delay_seconds
            .unwrap_or(defaults.initial_delay_seconds),
        timeout_seconds: or(probe.timeout_seconds, defaults.timeout_seconds),
        period_seconds: or(probe.period_seconds, defaults.period_seconds),
        success_threshold: or(probe.success_threshold, defaults.success_threshold),
        failure_threshold: or(probe.failure_threshold, defaults.failure_threshold),
        termination_grace_period_seconds: probe.termination_grace_period_seconds,
    }
}

/// The probe's one handler; `field` (e.g. `livenessProbe`) prefixes error fields.
pub fn probe_handler(field: &str, probe: &core::Probe) -> Result<ProbeHandler, ConversionError> {
    let set: Vec<&'static str> = [
        ("exec", probe.exec.is_some()),
        ("httpGet", probe.http_get.is_some()),
        ("tcpSocket", probe.tcp_socket.is_some()),
        ("grpc", probe.grpc.is_some()),
    ]
    .into_iter()
    .filter_map(|(name, present)| present.then_some(name))
    .collect();
    if set.len() > 1 {
        return Err(ConversionError::MultipleHandlers {
            field: field.to_owned(),
            handlers: set,
        });
    }
    if let Some(exec) = &probe.exec {
        let command = exec.command.clone().unwrap_or_default();
        if command.is_empty() {
            return Err(ConversionError::Required {
                field: format!("{field}.exec.command"),
            });
        }
        return Ok(ProbeHandler::Exec { command });
    }
    if let Some(http) = &probe.http_get {
        let scheme = match http.scheme.as_deref().unwrap_or("") {
            "" => Scheme::Http,
            s if s.eq_ignore_ascii_case("http") => Scheme::Http,
            s if s.eq_ignore_ascii_case("https") => Scheme::Https,
            other => {
                return Err(ConversionError::Unsupported {
                    field: format!("{field}.httpGet.scheme"),
                    value: other.to_owned(),
                    supported: "\"HTTP\", \"HTTPS\"",
                });
            }
        };
        let path = http
            .path
            .clone()
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| "/".to_owned());
        let headers = http
            .http_headers
            .iter()
            .flatten()
            .map(|h| (h.name.clone(), h.value.clone()))
            .collect();
        return Ok(ProbeHandler::HttpGet {
            scheme,
            host: non_empty(http.host.as_deref()),
            port: port_ref(&format!("{field}.httpGet.port"), &http.port)?,
            path,
            headers,
        });
    }
    if let Some(tcp) = &probe.tcp_socket {
        return Ok(ProbeHandler::TcpSocket {
            host: non_empty(tcp.host.as_deref()),
            port: port_ref(&format!("{field}.tcpSocket.port"), &tcp.port)?,
        });
    }
    if let Some(grpc) = &probe.grpc {
        return Ok(ProbeHandler::Grpc {
            port: port_number(&format!("{field}.grpc.port"), grpc.port.into())?,
            service: grpc.service.clone(),
        });
    }
    Err(ConversionError::NoHandler {
        field: field.to_owned(),
    })
}

fn non_empty(s: Option<&str>) -> Option<String> {
    s.filter(|s| !s.is_empty()).map(str::to_owned)
}

fn port_ref(field: &str, port: &IntOrString) -> Result<PortRef, ConversionError> {
    match port {
        IntOrString::Int(n) => Ok(PortRef::Number(port_number(field, (*n).into())?)),
        IntOrString::String(name) if name.is_empty() => Err(ConversionError::Required {
            field: field.to_owned(),
        }),
        IntOrString::String(name) => Ok(PortRef::Name(name.clone())),
    }
}

fn port_number(field: &str, value: i64) -> Result<u16, ConversionError> {
    u16::try_from(value)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| ConversionError::InvalidPort {
            field: field.to_owned(),
            value,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http_probe(port: IntOrString) -> core::Probe {
        core::Probe {
            http_get: Some(core::HTTPGetAction {
                port,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn unset_and_zero_timing_fields_get_the_api_defaults() {
        let unset = probe_timing(&core::Probe::default());
        assert_eq!(unset, ProbeTiming::default());
        let zeros = probe_timing(&core::Probe {
            timeout_seconds: Some(0),
            period_seconds: Some(0),
            success_threshold: Some(0),
            failure_threshold: Some(0),
            initial_delay_seconds: Some(0),
            ..Default::default()
        });
        assert_eq!(zeros, ProbeTiming::default());
        let set = probe_timing(&core::Probe {
            timeout_seconds: Some(5),
            period_seconds: Some(7),
            success_threshold: Some(2),
            failure_threshold: Some(9),
            initial_delay_seconds: Some(30),
            termination_grace_period_seconds: Some(12),
            ..Default::default()
        });
        assert_eq!(
            set,
            ProbeTiming {
                initial_delay_seconds: 30,
                timeout_seconds: 5,
                period_seconds: 7,
                success_threshold: 2,
                failure_threshold: 9,
                termination_grace_period_seconds: Some(12),
            }
        );
    }

    #[test]
    fn http_get_gets_path_and_scheme_defaults() {
        let spec = probe_spec(ProbeKind::Liveness, &http_probe(IntOrString::Int(8080))).unwrap();
        assert_eq!(
            spec.handler,
            ProbeHandler::HttpGet {
                scheme: Scheme::Http,
                host: None,
                port: PortRef::Number(8080),
                path: "/".into(),
                headers: vec![],
            }
        );
    }

    #[test]
    fn http_get_fields_are_carried_over() {
        let probe = core::Probe {
            http_get: Some(core::HTTPGetAction {
                host: Some("example.test".into()),
                path: Some("/healthz".into()),
                port: IntOrString::String("web".into()),
                scheme: Some("HTTPS".into()),
                http_headers: Some(vec![
                    core::HTTPHeader {
                        name: "X-A".into(),
                        value: "1".into(),
                    },
                    core::HTTPHeader {
                        name: "X-A".into(),
                        value: "2".into(),
                    },
                ]),
            }),
            ..Default::default()
        };
        assert_eq!(
            probe_handler("readinessProbe", &probe).unwrap(),
            ProbeHandler::HttpGet {
                scheme: Scheme::Https,
                host: Some("example.test".into()),
                port: PortRef::Name("web".into()),
                path: "/healthz".into(),
                headers: vec![("X-A".into(), "1".into()), ("X-A".into(), "2".into())],
            }
        );
    }

    #[test]
    fn schemes_are_http_or_https() {
        let with = |s: &str| core::Probe {
            http_get: Some(core::HTTPGetAction {
                port: IntOrString::Int(80),
                scheme: Some(s.into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(matches!(
            probe_handler("p", &with("https")),
            Ok(ProbeHandler::HttpGet {
                scheme: Scheme::Https,
                ..
            })
        ));
        assert_eq!(
            probe_handler("livenessProbe", &with("FTP"))
                .unwrap_err()
                .to_string(),
            r#"livenessProbe.httpGet.scheme: unsupported value "FTP": supported values: "HTTP", "HTTPS""#
        );
    }

    #[test]
    fn tcp_and_grpc_and_exec_convert() {
        let tcp = core::Probe {
            tcp_socket: Some(core::TCPSocketAction {
                host: Some(String::new()),
                port: IntOrString::Int(5432),
            }),
            ..Default::default()
        };
        assert_eq!(
            probe_handler("p", &tcp).unwrap(),
            ProbeHandler::TcpSocket {
                host: None,
                port: PortRef::Number(5432)
            }
        );
        let grpc = core::Probe {
            grpc: Some(core::GRPCAction {
                port: 9090,
                service: Some("liveness".into()),
            }),
            ..Default::default()
        };
        assert_eq!(
            probe_handler("p", &grpc).unwrap(),
            ProbeHandler::Grpc {
                port: 9090,
                service: Some("liveness".into())
            }
        );
        let exec = core::Probe {
            exec: Some(core::ExecAction {
                command: Some(vec!["cat".into(), "/tmp/healthy".into()]),
            }),
            ..Default::default()
        };
        assert_eq!(
            probe_handler("p", &exec).unwrap(),
            ProbeHandler::Exec {
                command: vec!["cat".into(), "/tmp/healthy".into()]
            }
        );
    }

    #[test]
    fn exactly_one_handler() {
        assert_eq!(
            probe_spec(ProbeKind::Startup, &core::Probe::default()).unwrap_err(),
            ConversionError::NoHandler {
                field: "startupProbe".into()
            }
        );
        let two = core::Probe {
            http_get: Some(core::HTTPGetAction {
                port: IntOrString::Int(80),
                ..Default::default()
            }),
            tcp_socket: Some(core::TCPSocketAction {
                port: IntOrString::Int(80),
                ..Default::default()
            }),
            ..Default::default()
        };
        let err = probe_spec(ProbeKind::Liveness, &two).unwrap_err();
        assert_eq!(
            err.to_string(),
            "livenessProbe: may not specify more than 1 handler type (found httpGet, tcpSocket)"
        );
    }

    #[test]
    fn ports_are_checked() {
        for bad in [0, -1, 65536] {
            assert_eq!(
                probe_handler("livenessProbe", &http_probe(IntOrString::Int(bad))).unwrap_err(),
                ConversionError::InvalidPort {
                    field: "livenessProbe.httpGet.port".into(),
                    value: bad.into()
                }
            );
        }
        assert_eq!(
            probe_handler("p", &http_probe(IntOrString::String(String::new()))).unwrap_err(),
            ConversionError::Required {
                field: "p.httpGet.port".into()
            }
        );
        let grpc = core::Probe {
            grpc: Some(core::GRPCAction {
                port: 70000,
                service: None,
            }),
            ..Default::default()
        };
        assert_eq!(
            probe_handler("readinessProbe", &grpc)
                .unwrap_err()
                .to_string(),
            "readinessProbe.grpc.port: must be between 1 and 65535, inclusive (got 70000)"
        );
    }

    #[test]
    fn exec_needs_a_command() {
        for command in [None, Some(vec![])] {
            let probe = core::Probe {
                exec: Some(core::ExecAction { command }),
                ..Default::default()
            };
            assert_eq!(
                probe_handler("livenessProbe", &probe)
                    .unwrap_err()
                    .to_string(),
                "livenessProbe.exec.command: required value"
            );
        }
    }

    #[test]
    fn containers_convert_with_their_ports() {
        let container = core::Container {
            name: "app".into(),
            ports: Some(vec![
                core::ContainerPort {
                    name: Some("http".into()),
                    container_port: 8080,
                    ..Default::default()
                },
                core::ContainerPort {
                    name: Some(String::new()),
                    container_port: 9000,
                    ..Default::default()
                },
            ]),
            readiness_probe: Some(http_probe(IntOrString::String("http".into()))),
            startup_probe: Some(core::Probe::default()),
            ..Default::default()
        };
        assert_eq!(
            container_probes(&container).unwrap_err(),
            ConversionError::NoHandler {
                field: "startupProbe".into()
            }
        );
        let container = core::Container {
            startup_probe: None,
            ..container
        };
        let probes = container_probes(&container).unwrap();
        assert!(probes.liveness.is_none() && probes.startup.is_none());
        assert!(probes.readiness.is_some());
        assert_eq!(
            probes.ports,
            vec![
                ContainerPort {
                    name: Some("http".into()),
                    port: 8080
                },
                ContainerPort {
                    name: None,
                    port: 9000
                },
            ]
        );
        let ip: IpAddr = "10.1.0.4".parse().unwrap();
        let target = probe_target(&container, "abc123", Some(ip)).unwrap();
        assert_eq!(target.pod_ip, Some(ip));
        assert_eq!(target.container_id, "abc123");
        assert_eq!(target.ports, probes.ports);
    }

    #[test]
    fn container_ports_must_be_valid_numbers() {
        let ports = [core::ContainerPort {
            container_port: 0,
            ..Default::default()
        }];
        assert_eq!(
            container_ports(&ports).unwrap_err().to_string(),
            "ports[0].containerPort: must be between 1 and 65535, inclusive (got 0)"
        );
    }
}
