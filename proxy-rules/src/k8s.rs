//! Conversion from the Kubernetes API types (`core/v1` Service, `discovery/v1`
//! EndpointSlice, `networking.k8s.io/v1` ServiceCIDR) to the plain specs, with
//! kube-proxy's filtering and defaults, and a reader for the lists `kubectl get -o yaml`
//! prints.
//!
//! Every conversion error names the object and the field; a bad object is reported
//! and skipped, the others still convert.

use std::net::IpAddr;

use ipnetwork::IpNetwork;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::ServiceCIDR;

use crate::model::{IpFamily, Protocol, ServiceName};
use crate::store::{
    EndpointSliceSpec, LoadBalancerIngress, PortSpec, ServiceSpec, ServiceType, SliceEndpoint,
    SlicePort, affinity_timeout, check_name,
};
use crate::{Error, Result};

/// Services with this label belong to another service proxy and are ignored.
pub const SERVICE_PROXY_NAME_LABEL: &str = "service.kubernetes.io/service-proxy-name";
/// Services with this label are headless and ignored.
pub const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";
/// The label tying an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// The legacy annotation read when `spec.loadBalancerSourceRanges` is empty.
pub const SOURCE_RANGES_ANNOTATION: &str = "service.beta.kubernetes.io/load-balancer-source-ranges";

fn object_name(namespace: Option<&str>, name: Option<&str>) -> String {
    match namespace {
        Some(ns) => format!("{ns}/{}", name.unwrap_or("")),
        None => name.unwrap_or("").to_owned(),
    }
}

fn parse_ip(kind: &str, object: &str, field: &str, text: &str) -> Result<IpAddr> {
    text.trim().parse().map_err(|_| {
        Error::invalid_object(
            kind,
            object,
            field,
            format!("{text:?} is not an IP address"),
        )
    })
}

fn parse_port(kind: &str, object: &str, field: &str, value: i32) -> Result<u16> {
    u16::try_from(value)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| {
            Error::invalid_object(
                kind,
                object,
                field,
                format!("{value} is not a port (1-65535)"),
            )
        })
}

fn parse_protocol(kind: &str, object: &str, field: &str, value: Option<&str>) -> Result<Protocol> {
    match value {
        None => Ok(Protocol::Tcp),
        Some(p) => Protocol::parse(p).ok_or_else(|| {
            Error::invalid_object(kind, object, field, format!("unsupported protocol {p:?}"))
        }),
    }
}

/// Convert a Service. `Ok(None)` for the Services kube-proxy ignores: those labelled
/// with [`SERVICE_PROXY_NAME_LABEL`] or [`HEADLESS_LABEL`], headless ones (`clusterIP:
/// None`), ones without a ClusterIP, and ExternalName Services.
pub fn service_spec(svc: &Service) -> Result<Option<ServiceSpec>> {
    const KIND: &str = "Service";
    let meta = &svc.metadata;
    let object = object_name(meta.namespace.as_deref(), meta.name.as_deref());
    let namespace = meta
        .namespace
        .clone()
        .unwrap_or_else(|| "default".to_owned());
    let name = meta.name.clone().unwrap_or_default();
    check_name(KIND, &object, "metadata.namespace", &namespace, false)?;
    check_name(KIND, &object, "metadata.name", &name, false)?;
    if let Some(labels) = &meta.labels
        && (labels.contains_key(SERVICE_PROXY_NAME_LABEL) || labels.contains_key(HEADLESS_LABEL))
    {
        return Ok(None);
    }
    let Some(spec) = &svc.spec else {
        return Err(Error::invalid_object(KIND, &object, "spec", "missing"));
    };
    let service_type = match spec.type_.as_deref() {
        None | Some("ClusterIP") => ServiceType::ClusterIp,
        Some("NodePort") => ServiceType::NodePort,
        Some("LoadBalancer") => ServiceType::LoadBalancer,
        Some("ExternalName") => return Ok(None),
        Some(other) => {
            return Err(Error::invalid_object(
                KIND,
                &object,
                "spec.type",
                format!("unknown type {other:?}"),
            ));
        }
    };
    let ip_texts: Vec<&str> = match (&spec.cluster_ips, &spec.cluster_ip) {
        (Some(ips), _) if !ips.is_empty() => ips.iter().map(String::as_str).collect(),
        (_, Some(ip)) => vec![ip.as_str()],
        _ => Vec::new(),
    };
    if ip_texts.is_empty() || ip_texts.iter().any(|t| t.is_empty() || *t == "None") {
        return Ok(None);
    }
    let mut cluster_ips = Vec::new();
    for (i, text) in ip_texts.iter().enumerate() {
        cluster_ips.push(parse_ip(
            KIND,
            &object,
            &format!("spec.clusterIPs[{i}]"),
            text,
        )?);
    }
    let mut ports = Vec::new();
    for (i, p) in spec.ports.iter().flatten().enumerate() {
        let port_name = p.name.clone().unwrap_or_default();
        check_name(
            KIND,
            &object,
            &format!("spec.ports[{i}].name"),
            &port_name,
            true,
        )?;
        ports.push(PortSpec {
            name: port_name,
            protocol: parse_protocol(
                KIND,
                &object,
                &format!("spec.ports[{i}].protocol"),
                p.protocol.as_deref(),
            )?,
            port: parse_port(KIND, &object, &format!("spec.ports[{i}].port"), p.port)?,
            node_port: match p.node_port {
                None | Some(0) => None,
                Some(n) => Some(parse_port(
                    KIND,
                    &object,
                    &format!("spec.ports[{i}].nodePort"),
                    n,
                )?),
            },
        });
    }
    let mut external_ips = Vec::new();
    for (i, text) in spec.external_ips.iter().flatten().enumerate() {
        external_ips.push(parse_ip(
            KIND,
            &object,
            &format!("spec.externalIPs[{i}]"),
            text,
        )?);
    }
    let mut load_balancer_ingress = Vec::new();
    if let Some(ingress) = svc
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
    {
        for (i, ing) in ingress.iter().enumerate() {
            let Some(text) = ing.ip.as_deref().filter(|t| !t.is_empty()) else {
                continue; // hostname-only ingress: nothing to capture
            };
            load_balancer_ingress.push(LoadBalancerIngress {
                ip: parse_ip(
                    KIND,
                    &object,
                    &format!("status.loadBalancer.ingress[{i}].ip"),
                    text,
                )?,
                proxy_mode: ing.ip_mode.as_deref() == Some("Proxy"),
            });
        }
    }
    let mut range_texts: Vec<(String, String)> = spec
        .load_balancer_source_ranges
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, r)| (format!("spec.loadBalancerSourceRanges[{i}]"), r.clone()))
        .collect();
    if range_texts.is_empty()
        && let Some(annotation) = meta
            .annotations
            .as_ref()
            .and_then(|a| a.get(SOURCE_RANGES_ANNOTATION))
    {
        range_texts = annotation
            .split(',')
            .filter(|r| !r.trim().is_empty())
            .map(|r| {
                (
                    format!("metadata.annotations[{SOURCE_RANGES_ANNOTATION}]"),
                    r.to_owned(),
                )
            })
            .collect();
    }
    let mut load_balancer_source_ranges = Vec::new();
    for (field, text) in range_texts {
        // kube-proxy trims whitespace (upstream's golden test has " 203.0.113.0/25").
        let net: IpNetwork = text.trim().parse().map_err(|_| {
            Error::invalid_object(KIND, &object, &field, format!("{text:?} is not a CIDR"))
        })?;
        load_balancer_source_ranges
            .push(IpNetwork::new(net.network(), net.prefix()).unwrap_or(net));
    }
    let session_affinity_seconds =
        (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
            affinity_timeout(
                spec.session_affinity_config
                    .as_ref()
                    .and_then(|c| c.client_ip.as_ref())
                    .and_then(|c| c.timeout_seconds),
            )
        });
    let health_check_node_port = match spec.health_check_node_port {
        None | Some(0) => None,
        Some(n) => Some(parse_port(KIND, &object, "spec.healthCheckNodePort", n)?),
    };
    Ok(Some(ServiceSpec {
        name: ServiceName::new(namespace, name),
        service_type,
        cluster_ips,
        ports,
        external_ips,
        load_balancer_ingress,
        load_balancer_source_ranges,
        session_affinity_seconds,
        external_traffic_policy_local: spec.external_traffic_policy.as_deref() == Some("Local"),
        internal_traffic_policy_local: spec.internal_traffic_policy.as_deref() == Some("Local"),
        health_check_node_port,
    }))
}

/// Convert an EndpointSlice. `Ok(None)` for slices without the
/// `kubernetes.io/service-name` label (they belong to no Service).
pub fn endpoint_slice_spec(slice: &EndpointSlice) -> Result<Option<EndpointSliceSpec>> {
    const KIND: &str = "EndpointSlice";
    let meta = &slice.metadata;
    let object = object_name(meta.namespace.as_deref(), meta.name.as_deref());
    let namespace = meta
        .namespace
        .clone()
        .unwrap_or_else(|| "default".to_owned());
    let Some(service) = meta.labels.as_ref().and_then(|l| l.get(SERVICE_NAME_LABEL)) else {
        return Ok(None);
    };
    check_name(KIND, &object, "metadata.namespace", &namespace, false)?;
    check_name(
        KIND,
        &object,
        &format!("metadata.labels[{SERVICE_NAME_LABEL}]"),
        service,
        false,
    )?;
    let name = meta.name.clone().unwrap_or_default();
    let address_type = match slice.address_type.as_str() {
        "IPv4" => Some(IpFamily::V4),
        "IPv6" => Some(IpFamily::V6),
        "FQDN" => None,
        other => {
            return Err(Error::invalid_object(
                KIND,
                &object,
                "addressType",
                format!("unknown address type {other:?}"),
            ));
        }
    };
    let mut ports = Vec::new();
    for (i, p) in slice.ports.iter().flatten().enumerate() {
        let port_name = p.name.clone().unwrap_or_default();
        check_name(KIND, &object, &format!("ports[{i}].name"), &port_name, true)?;
        ports.push(SlicePort {
            name: port_name,
            protocol: parse_protocol(
                KIND,
                &object,
                &format!("ports[{i}].protocol"),
                p.protocol.as_deref(),
            )?,
            port: match p.port {
                None => None,
                Some(n) => Some(parse_port(KIND, &object, &format!("ports[{i}].port"), n)?),
            },
        });
    }
    let mut endpoints = Vec::new();
    for (i, ep) in slice.endpoints.iter().flatten().enumerate() {
        let mut addresses = Vec::new();
        if address_type.is_some() {
            for (j, a) in ep.addresses.iter().enumerate() {
                addresses.push(parse_ip(
                    KIND,
                    &object,
                    &format!("endpoints[{i}].addresses[{j}]"),
                    a,
                )?);
            }
        }
        let conditions = ep.conditions.as_ref();
        let hints = ep.hints.as_ref();
        endpoints.push(SliceEndpoint {
            addresses,
            ready: conditions.and_then(|c| c.ready),
            serving: conditions.and_then(|c| c.serving),
            terminating: conditions.and_then(|c| c.terminating),
            node_name: ep.node_name.clone(),
            zone_hints: hints
                .and_then(|h| h.for_zones.as_ref())
                .map(|z| z.iter().map(|z| z.name.clone()).collect())
                .unwrap_or_default(),
            node_hints: hints
                .and_then(|h| h.for_nodes.as_ref())
                .map(|n| n.iter().map(|n| n.name.clone()).collect())
                .unwrap_or_default(),
        });
    }
    Ok(Some(EndpointSliceSpec {
        name,
        service: ServiceName::new(namespace, service.clone()),
        address_type,
        ports,
        endpoints,
    }))
}

/// The CIDRs of a ServiceCIDR object.
pub fn service_cidrs(obj: &ServiceCIDR) -> Result<Vec<IpNetwork>> {
    let name = obj.metadata.name.clone().unwrap_or_default();
    let mut out = Vec::new();
    for (i, text) in obj
        .spec
        .iter()
        .flat_map(|s| s.cidrs.iter().flatten())
        .enumerate()
    {
        let net: IpNetwork = text.trim().parse().map_err(|_| {
            Error::invalid_object(
                "ServiceCIDR",
                &name,
                format!("spec.cidrs[{i}]"),
                format!("{text:?} is not a CIDR"),
            )
        })?;
        out.push(net);
    }
    Ok(out)
}

/// The objects read from a Kubernetes List or a multi-document YAML stream.
#[derive(Debug, Default)]
pub struct Objects {
    /// Services kube-proxy proxies.
    pub services: Vec<ServiceSpec>,
    /// EndpointSlices that belong to a Service.
    pub slices: Vec<EndpointSliceSpec>,
    /// CIDRs of the ServiceCIDR objects.
    pub service_cidrs: Vec<IpNetwork>,
    /// Objects of other kinds, and Services or slices kube-proxy ignores, counted.
    pub ignored: usize,
    /// Objects that could not be used, each naming the object and field. The others
    /// were read.
    pub errors: Vec<Error>,
}

/// Read Services, EndpointSlices and ServiceCIDRs from text as `kubectl get
/// svc,endpointslices,servicecidrs -A -o yaml` (or `-o json`) prints: a `List` (or
/// `ServiceList`, ...), a single object, or a stream of YAML documents of those.
/// `source` names the input in errors.
///
/// A document that is not YAML/JSON at all is an error (nothing can be trusted); a bad
/// object inside is reported in [`Objects::errors`] and the rest is kept.
pub fn parse_objects(text: &str, source: &str) -> Result<Objects> {
    let mut docs: Vec<serde_json::Value> = Vec::new();
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| {
            Error::parse(
                source,
                e.line(),
                text.lines().nth(e.line().saturating_sub(1)).unwrap_or(""),
                format!("invalid JSON: {e}"),
            )
        })?;
        docs.push(value);
    } else {
        for (i, doc) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
            use serde::Deserialize as _;
            let value = serde_json::Value::deserialize(doc).map_err(|e| {
                let line = e.location().map(|l| l.line()).unwrap_or(0);
                Error::parse(
                    source,
                    line,
                    text.lines().nth(line.saturating_sub(1)).unwrap_or(""),
                    format!("invalid YAML in document {}: {e}", i + 1),
                )
            })?;
            if !value.is_null() {
                docs.push(value);
            }
        }
    }
    let mut out = Objects::default();
    for doc in docs {
        collect(doc, source, &mut out);
    }
    Ok(out)
}

fn collect(value: serde_json::Value, source: &str, out: &mut Objects) {
    if let serde_json::Value::Array(items) = value {
        for item in items {
            collect(item, source, out);
        }
        return;
    }
    let kind = value
        .get("kind")
        .and_then(|k| k.as_str())
        .unwrap_or("")
        .to_owned();
    if kind == "List" || kind.ends_with("List") {
        if let Some(serde_json::Value::Array(items)) = value.get("items").cloned() {
            for item in items {
                collect(item, source, out);
            }
        }
        return;
    }
    let describe = |v: &serde_json::Value| {
        let md = v.get("metadata");
        let ns = md.and_then(|m| m.get("namespace")).and_then(|n| n.as_str());
        let name = md.and_then(|m| m.get("name")).and_then(|n| n.as_str());
        object_name(ns, name)
    };
    match kind.as_str() {
        "Service" => match serde_json::from_value::<Service>(value.clone()) {
            Ok(svc) => match service_spec(&svc) {
                Ok(Some(spec)) => out.services.push(spec),
                Ok(None) => out.ignored += 1,
                Err(e) => out.errors.push(e),
            },
            Err(e) => out.errors.push(Error::invalid_object(
                "Service",
                describe(&value),
                source,
                e.to_string(),
            )),
        },
        "EndpointSlice" => match serde_json::from_value::<EndpointSlice>(value.clone()) {
            Ok(slice) => match endpoint_slice_spec(&slice) {
                Ok(Some(spec)) => out.slices.push(spec),
                Ok(None) => out.ignored += 1,
                Err(e) => out.errors.push(e),
            },
            Err(e) => out.errors.push(Error::invalid_object(
                "EndpointSlice",
                describe(&value),
                source,
                e.to_string(),
            )),
        },
        "ServiceCIDR" => match serde_json::from_value::<ServiceCIDR>(value.clone()) {
            Ok(obj) => match service_cidrs(&obj) {
                Ok(cidrs) => out.service_cidrs.extend(cidrs),
                Err(e) => out.errors.push(e),
            },
            Err(e) => out.errors.push(Error::invalid_object(
                "ServiceCIDR",
                describe(&value),
                source,
                e.to_string(),
            )),
        },
        _ => out.ignored += 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIST: &str = r#"
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Service
  metadata: {name: web, namespace: app}
  spec:
    clusterIP: 10.96.0.10
    ports: [{name: http, port: 80, targetPort: web}]
    sessionAffinity: ClientIP
- apiVersion: v1
  kind: Service
  metadata: {name: other, namespace: app, labels: {service.kubernetes.io/service-proxy-name: cilium}}
  spec: {clusterIP: 10.96.0.11, ports: [{port: 80}]}
- apiVersion: v1
  kind: Service
  metadata: {name: headless, namespace: app}
  spec: {clusterIP: None, ports: [{port: 80}]}
- apiVersion: v1
  kind: Service
  metadata: {name: bad, namespace: app}
  spec: {clusterIP: 10.96.0.12, ports: [{port: 80, protocol: ICMP}]}
- apiVersion: discovery.k8s.io/v1
  kind: EndpointSlice
  metadata: {name: web-abc, namespace: app, labels: {kubernetes.io/service-name: web}}
  addressType: IPv4
  ports: [{name: http, port: 8080, protocol: TCP}]
  endpoints:
  - addresses: [10.244.1.5]
    conditions: {ready: false, serving: true, terminating: true}
    nodeName: node-a
    hints: {forZones: [{name: z1}]}
- apiVersion: networking.k8s.io/v1
  kind: ServiceCIDR
  metadata: {name: kubernetes}
  spec: {cidrs: [10.96.0.0/12, "fd00::/108"]}
- apiVersion: v1
  kind: Pod
  metadata: {name: p, namespace: app}
"#;

    #[test]
    fn list_is_read_with_errors_named_and_others_kept() {
        let objs = parse_objects(LIST, "in.yaml").unwrap();
        assert_eq!(objs.services.len(), 1);
        let web = &objs.services[0];
        assert_eq!(web.session_affinity_seconds, Some(10800));
        assert_eq!(web.ports[0].protocol, Protocol::Tcp);
        assert_eq!(objs.slices.len(), 1);
        let ep = &objs.slices[0].endpoints[0];
        assert_eq!(
            (ep.ready, ep.serving, ep.terminating),
            (Some(false), Some(true), Some(true))
        );
        assert_eq!(ep.zone_hints, ["z1"]);
        assert_eq!(objs.service_cidrs.len(), 2);
        assert_eq!(objs.ignored, 3, "proxy-name label, headless, Pod");
        assert_eq!(objs.errors.len(), 1);
        let msg = objs.errors[0].to_string();
        assert!(
            msg.contains("app/bad")
                && msg.contains("spec.ports[0].protocol")
                && msg.contains("ICMP"),
            "{msg}"
        );
    }

    #[test]
    fn multi_document_yaml_and_json_are_read() {
        let yaml = "kind: Service\napiVersion: v1\nmetadata: {name: a, namespace: n}\nspec: {clusterIP: 10.0.0.1, ports: [{port: 53, protocol: UDP}]}\n---\n---\nkind: Service\napiVersion: v1\nmetadata: {name: b, namespace: n}\nspec: {clusterIP: 10.0.0.2, ports: [{port: 80}]}\n";
        let objs = parse_objects(yaml, "s.yaml").unwrap();
        assert_eq!(objs.services.len(), 2);
        let json = r#"{"kind":"List","items":[{"kind":"Service","apiVersion":"v1","metadata":{"name":"a","namespace":"n"},"spec":{"clusterIP":"10.0.0.1","ports":[{"port":80}]}}]}"#;
        assert_eq!(parse_objects(json, "s.json").unwrap().services.len(), 1);
    }

    #[test]
    fn broken_text_is_an_error_naming_the_line() {
        let err = parse_objects("kind: List\nitems: [\n  - {", "broken.yaml").unwrap_err();
        assert!(err.to_string().starts_with("broken.yaml:"), "{err}");
        let err = parse_objects("{\"kind\": ", "broken.json").unwrap_err();
        assert!(err.to_string().contains("invalid JSON"), "{err}");
    }

    #[test]
    fn injection_attempts_in_names_are_refused() {
        let yaml = "kind: Service\napiVersion: v1\nmetadata: {name: \"x\\\" -j ACCEPT\", namespace: n}\nspec: {clusterIP: 10.0.0.1, ports: [{port: 80}]}\n";
        let objs = parse_objects(yaml, "s.yaml").unwrap();
        assert!(objs.services.is_empty());
        assert!(objs.errors[0].to_string().contains("metadata.name"));
    }
}
