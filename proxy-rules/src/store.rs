//! The desired objects (Services and EndpointSlices, in a plain form) and the change
//! tracking the sync engine needs: which Services changed since the last sync.
//!
//! [`ServiceSpec`] and [`EndpointSliceSpec`] carry what kube-proxy reads of a `v1`
//! Service and a `discovery/v1` EndpointSlice. [`crate::k8s`] fills them from the API
//! types; users without an API server fill them directly.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use ipnetwork::IpNetwork;

use crate::model::{
    DEFAULT_AFFINITY_TIMEOUT_SECONDS, Endpoint, IpFamily, Protocol, ProxyState, ServiceName,
    ServicePort, ServicePortName, normalize_endpoints,
};
use crate::{Error, Result};

/// A Service's `spec.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ServiceType {
    /// `ClusterIP` (the default).
    #[default]
    ClusterIp,
    /// `NodePort`.
    NodePort,
    /// `LoadBalancer`.
    LoadBalancer,
    /// `ExternalName`: not proxied.
    ExternalName,
}

/// One entry of `spec.ports`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortSpec {
    /// The port's name (may be empty for a single port).
    pub name: String,
    /// The protocol (TCP by default).
    pub protocol: Protocol,
    /// The Service port.
    pub port: u16,
    /// The NodePort, when allocated.
    pub node_port: Option<u16>,
}

/// One `status.loadBalancer.ingress` IP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadBalancerIngress {
    /// The IP.
    pub ip: IpAddr,
    /// `ipMode: Proxy`: the load balancer proxies, so the node must not capture the IP.
    pub proxy_mode: bool,
}

/// What kube-proxy reads of a Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSpec {
    /// Namespace and name.
    pub name: ServiceName,
    /// `spec.type`.
    pub service_type: ServiceType,
    /// `spec.clusterIPs` (or `spec.clusterIP`), at most one per family.
    pub cluster_ips: Vec<IpAddr>,
    /// `spec.ports`.
    pub ports: Vec<PortSpec>,
    /// `spec.externalIPs`.
    pub external_ips: Vec<IpAddr>,
    /// `status.loadBalancer.ingress` IPs.
    pub load_balancer_ingress: Vec<LoadBalancerIngress>,
    /// `spec.loadBalancerSourceRanges`.
    pub load_balancer_source_ranges: Vec<IpNetwork>,
    /// ClientIP affinity timeout, when `sessionAffinity: ClientIP`.
    pub session_affinity_seconds: Option<u32>,
    /// `spec.externalTrafficPolicy: Local`.
    pub external_traffic_policy_local: bool,
    /// `spec.internalTrafficPolicy: Local`.
    pub internal_traffic_policy_local: bool,
    /// `spec.healthCheckNodePort`.
    pub health_check_node_port: Option<u16>,
}

impl ServiceSpec {
    /// A ClusterIP Service with one IP and no ports yet.
    pub fn cluster_ip(name: ServiceName, cluster_ip: IpAddr) -> Self {
        Self {
            name,
            service_type: ServiceType::ClusterIp,
            cluster_ips: vec![cluster_ip],
            ports: Vec::new(),
            external_ips: Vec::new(),
            load_balancer_ingress: Vec::new(),
            load_balancer_source_ranges: Vec::new(),
            session_affinity_seconds: None,
            external_traffic_policy_local: false,
            internal_traffic_policy_local: false,
            health_check_node_port: None,
        }
    }

    /// Add a port.
    #[must_use]
    pub fn with_port(
        mut self,
        name: &str,
        protocol: Protocol,
        port: u16,
        node_port: Option<u16>,
    ) -> Self {
        self.ports.push(PortSpec {
            name: name.to_owned(),
            protocol,
            port,
            node_port,
        });
        if node_port.is_some() && self.service_type == ServiceType::ClusterIp {
            self.service_type = ServiceType::NodePort;
        }
        self
    }

    /// The Service's ports for one family, as kube-proxy's service change tracker builds
    /// them (`newBaseServiceInfo`). Empty when the Service has no ClusterIP of the
    /// family or is an ExternalName Service.
    pub fn service_ports(&self, family: IpFamily) -> Vec<ServicePort> {
        if self.service_type == ServiceType::ExternalName {
            return Vec::new();
        }
        let Some(cluster_ip) = self
            .cluster_ips
            .iter()
            .copied()
            .find(|ip| family.contains(ip))
        else {
            return Vec::new();
        };
        let external_ips: Vec<IpAddr> = self
            .external_ips
            .iter()
            .copied()
            .filter(|ip| family.contains(ip))
            .collect();
        let external_capable = matches!(
            self.service_type,
            ServiceType::NodePort | ServiceType::LoadBalancer
        ) || !self.external_ips.is_empty();
        let external_policy_local = external_capable && self.external_traffic_policy_local;
        let health_check_node_port = if self.service_type == ServiceType::LoadBalancer
            && self.external_traffic_policy_local
        {
            self.health_check_node_port
        } else {
            None
        };
        let load_balancer_ips: Vec<IpAddr> = if self.service_type == ServiceType::LoadBalancer {
            self.load_balancer_ingress
                .iter()
                .filter(|i| !i.proxy_mode && family.contains(&i.ip))
                .map(|i| i.ip)
                .collect()
        } else {
            Vec::new()
        };
        let ranges: Vec<IpNetwork> = self
            .load_balancer_source_ranges
            .iter()
            .copied()
            .filter(|n| IpFamily::of_net(n) == family)
            .collect();
        self.ports
            .iter()
            .map(|p| ServicePort {
                name: ServicePortName {
                    service: self.name.clone(),
                    port: p.name.clone(),
                    protocol: p.protocol,
                },
                cluster_ip,
                port: p.port,
                node_port: p.node_port.filter(|n| *n != 0),
                external_ips: external_ips.clone(),
                load_balancer_ips: load_balancer_ips.clone(),
                load_balancer_source_ranges: ranges.clone(),
                session_affinity_seconds: self.session_affinity_seconds,
                external_policy_local,
                internal_policy_local: self.internal_traffic_policy_local,
                health_check_node_port,
            })
            .collect()
    }
}

/// One port of an EndpointSlice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlicePort {
    /// The port's name: matches the Service port of the same name.
    pub name: String,
    /// The protocol.
    pub protocol: Protocol,
    /// The (resolved) target port; a port without a number is ignored.
    pub port: Option<u16>,
}

/// One endpoint of an EndpointSlice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SliceEndpoint {
    /// The endpoint's addresses; kube-proxy uses the first.
    pub addresses: Vec<IpAddr>,
    /// `conditions.ready` (unset means ready).
    pub ready: Option<bool>,
    /// `conditions.serving` (unset means serving).
    pub serving: Option<bool>,
    /// `conditions.terminating` (unset means not terminating).
    pub terminating: Option<bool>,
    /// `nodeName`.
    pub node_name: Option<String>,
    /// `hints.forZones[].name`.
    pub zone_hints: Vec<String>,
    /// `hints.forNodes[].name`.
    pub node_hints: Vec<String>,
}

impl SliceEndpoint {
    /// A ready endpoint with one address.
    pub fn ready(ip: IpAddr) -> Self {
        Self {
            addresses: vec![ip],
            ready: None,
            serving: None,
            terminating: None,
            node_name: None,
            zone_hints: Vec::new(),
            node_hints: Vec::new(),
        }
    }
}

/// What kube-proxy reads of an EndpointSlice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointSliceSpec {
    /// The slice's own name.
    pub name: String,
    /// The Service it belongs to (label `kubernetes.io/service-name`).
    pub service: ServiceName,
    /// `addressType`: IPv4 or IPv6 (`None` for FQDN slices, which are ignored).
    pub address_type: Option<IpFamily>,
    /// `ports`.
    pub ports: Vec<SlicePort>,
    /// `endpoints`.
    pub endpoints: Vec<SliceEndpoint>,
}

/// The endpoints of a Service's ports for one family, from its slices, as kube-proxy's
/// endpoint slice cache merges them: the first address of each endpoint, unset
/// conditions read as ready/serving/not terminating, duplicates across slices merged
/// (a local copy wins), sorted by `ip:port` text.
pub fn endpoints_from_slices<'a>(
    slices: impl IntoIterator<Item = &'a EndpointSliceSpec>,
    family: IpFamily,
    node_name: &str,
) -> BTreeMap<ServicePortName, Vec<Endpoint>> {
    let mut out: BTreeMap<ServicePortName, Vec<Endpoint>> = BTreeMap::new();
    for slice in slices {
        if slice.address_type != Some(family) {
            continue;
        }
        for port in &slice.ports {
            let Some(port_num) = port.port else { continue };
            let name = ServicePortName {
                service: slice.service.clone(),
                port: port.name.clone(),
                protocol: port.protocol,
            };
            let list = out.entry(name).or_default();
            for ep in &slice.endpoints {
                let Some(ip) = ep.addresses.first() else {
                    continue;
                };
                if !family.contains(ip) {
                    continue;
                }
                list.push(Endpoint {
                    ip: *ip,
                    port: port_num,
                    ready: ep.ready.unwrap_or(true),
                    serving: ep.serving.unwrap_or(true),
                    terminating: ep.terminating.unwrap_or(false),
                    node_name: ep.node_name.clone(),
                    zone_hints: ep.zone_hints.clone(),
                    node_hints: ep.node_hints.clone(),
                });
            }
        }
    }
    for list in out.values_mut() {
        *list = normalize_endpoints(std::mem::take(list), Some(node_name));
    }
    out.retain(|_, v| !v.is_empty());
    out
}

/// The desired Services and EndpointSlices, with the names of the Services changed
/// since the changes were last taken (kube-proxy's service and endpoints change
/// trackers).
#[derive(Debug, Clone, Default)]
pub struct ServiceStore {
    services: HashMap<ServiceName, ServiceSpec>,
    slices: HashMap<ServiceName, BTreeMap<String, EndpointSliceSpec>>,
    changed: BTreeSet<ServiceName>,
}

impl ServiceStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add or replace a Service; returns whether anything changed.
    pub fn upsert_service(&mut self, spec: ServiceSpec) -> bool {
        if self.services.get(&spec.name) == Some(&spec) {
            return false;
        }
        self.changed.insert(spec.name.clone());
        self.services.insert(spec.name.clone(), spec);
        true
    }

    /// Remove a Service; returns whether it was there.
    pub fn delete_service(&mut self, name: &ServiceName) -> bool {
        let removed = self.services.remove(name).is_some();
        if removed {
            self.changed.insert(name.clone());
        }
        removed
    }

    /// Add or replace an EndpointSlice; returns whether anything changed.
    pub fn upsert_slice(&mut self, slice: EndpointSliceSpec) -> bool {
        let per_service = self.slices.entry(slice.service.clone()).or_default();
        if per_service.get(&slice.name) == Some(&slice) {
            return false;
        }
        self.changed.insert(slice.service.clone());
        per_service.insert(slice.name.clone(), slice);
        true
    }

    /// Remove an EndpointSlice of a Service; returns whether it was there.
    pub fn delete_slice(&mut self, service: &ServiceName, slice_name: &str) -> bool {
        let Some(per_service) = self.slices.get_mut(service) else {
            return false;
        };
        let removed = per_service.remove(slice_name).is_some();
        if per_service.is_empty() {
            self.slices.remove(service);
        }
        if removed {
            self.changed.insert(service.clone());
        }
        removed
    }

    /// Replace everything with these objects (a changed input file, a relist); only
    /// Services whose objects differ are marked changed.
    pub fn replace_all(
        &mut self,
        services: impl IntoIterator<Item = ServiceSpec>,
        slices: impl IntoIterator<Item = EndpointSliceSpec>,
    ) {
        let new_services: HashMap<ServiceName, ServiceSpec> =
            services.into_iter().map(|s| (s.name.clone(), s)).collect();
        let mut new_slices: HashMap<ServiceName, BTreeMap<String, EndpointSliceSpec>> =
            HashMap::new();
        for slice in slices {
            new_slices
                .entry(slice.service.clone())
                .or_default()
                .insert(slice.name.clone(), slice);
        }
        let names: BTreeSet<ServiceName> = self
            .services
            .keys()
            .chain(new_services.keys())
            .chain(self.slices.keys())
            .chain(new_slices.keys())
            .cloned()
            .collect();
        for name in names {
            if self.services.get(&name) != new_services.get(&name)
                || self.slices.get(&name) != new_slices.get(&name)
            {
                self.changed.insert(name);
            }
        }
        self.services = new_services;
        self.slices = new_slices;
    }

    /// Replace every Service, keeping the EndpointSlices (a relist of Services).
    pub fn replace_services(&mut self, services: impl IntoIterator<Item = ServiceSpec>) {
        let slices: Vec<EndpointSliceSpec> = self
            .slices
            .values()
            .flat_map(|m| m.values().cloned())
            .collect();
        self.replace_all(services, slices);
    }

    /// Replace every EndpointSlice, keeping the Services (a relist of EndpointSlices).
    pub fn replace_slices(&mut self, slices: impl IntoIterator<Item = EndpointSliceSpec>) {
        let services: Vec<ServiceSpec> = self.services.values().cloned().collect();
        self.replace_all(services, slices);
    }

    /// The Services changed since the last call, cleared.
    pub fn take_changes(&mut self) -> BTreeSet<ServiceName> {
        std::mem::take(&mut self.changed)
    }

    /// Whether changes are pending.
    pub fn has_changes(&self) -> bool {
        !self.changed.is_empty()
    }

    /// The number of Services.
    pub fn service_count(&self) -> usize {
        self.services.len()
    }

    /// A Service by name.
    pub fn service(&self, name: &ServiceName) -> Option<&ServiceSpec> {
        self.services.get(name)
    }

    /// The whole state of one family, for node `node_name`.
    pub fn proxy_state(&self, family: IpFamily, node_name: &str) -> ProxyState {
        let mut state = ProxyState::new();
        let names: Vec<ServiceName> = self.services.keys().cloned().collect();
        self.refresh(&mut state, &names, family, node_name);
        state
    }

    /// Bring `state` up to date for these Services only: their ports and endpoints are
    /// removed and rebuilt from the store.
    pub fn refresh<'a>(
        &self,
        state: &mut ProxyState,
        names: impl IntoIterator<Item = &'a ServiceName>,
        family: IpFamily,
        node_name: &str,
    ) {
        for name in names {
            state.services.retain(|k, _| k.service != *name);
            state.endpoints.retain(|k, _| k.service != *name);
            let Some(spec) = self.services.get(name) else {
                continue;
            };
            let ports = spec.service_ports(family);
            if ports.is_empty() {
                continue;
            }
            let eps = endpoints_from_slices(
                self.slices.get(name).into_iter().flat_map(|m| m.values()),
                family,
                node_name,
            );
            for port in ports {
                if let Some(list) = eps.get(&port.name) {
                    state.endpoints.insert(port.name.clone(), list.clone());
                }
                state.services.insert(port.name.clone(), port);
            }
        }
    }
}

/// The affinity timeout kube-proxy uses for `sessionAffinity: ClientIP` when the
/// config leaves it unset.
pub fn affinity_timeout(configured: Option<i32>) -> u32 {
    match configured {
        Some(s) if s > 0 => s as u32,
        _ => DEFAULT_AFFINITY_TIMEOUT_SECONDS,
    }
}

/// Check a name used in rule text and comments: lower-case letters, digits, `-` and
/// `.` (DNS labels and subdomains, IANA service names), at most 253 characters.
/// Anything else could not come from a valid object and is refused, so no object name
/// reaches a rule as anything but an inert token.
pub(crate) fn check_name(
    kind: &str,
    object: &str,
    field: &str,
    value: &str,
    allow_empty: bool,
) -> Result<()> {
    if value.is_empty() {
        return if allow_empty {
            Ok(())
        } else {
            Err(Error::invalid_object(
                kind,
                object,
                field,
                "must not be empty",
            ))
        };
    }
    let ok = value.len() <= 253
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && value.as_bytes()[0].is_ascii_alphanumeric()
        && value.as_bytes()[value.len() - 1].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(Error::invalid_object(
            kind,
            object,
            field,
            format!("{value:?} is not a valid name (lower-case alphanumerics, '-', '.')"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn slice(name: &str, svc: &str, eps: Vec<SliceEndpoint>) -> EndpointSliceSpec {
        EndpointSliceSpec {
            name: name.into(),
            service: ServiceName::new("ns", svc),
            address_type: Some(IpFamily::V4),
            ports: vec![SlicePort {
                name: "p".into(),
                protocol: Protocol::Tcp,
                port: Some(8080),
            }],
            endpoints: eps,
        }
    }

    #[test]
    fn service_ports_per_family_and_type() {
        let mut s = ServiceSpec::cluster_ip(ServiceName::new("ns", "s"), ip("10.96.0.1"))
            .with_port("p", Protocol::Tcp, 80, None);
        s.cluster_ips.push(ip("fd00::1"));
        s.external_ips = vec![ip("1.1.1.1"), ip("2001:db8::9")];
        s.external_traffic_policy_local = true;
        s.health_check_node_port = Some(30000);
        let v4 = s.service_ports(IpFamily::V4);
        assert_eq!(v4.len(), 1);
        assert_eq!(v4[0].external_ips, vec![ip("1.1.1.1")]);
        // External IPs make the Service external; the health check needs a LoadBalancer.
        assert!(v4[0].external_policy_local);
        assert_eq!(v4[0].health_check_node_port, None);
        let v6 = s.service_ports(IpFamily::V6);
        assert_eq!(v6[0].cluster_ip, ip("fd00::1"));
        s.service_type = ServiceType::ExternalName;
        assert!(s.service_ports(IpFamily::V4).is_empty());
    }

    #[test]
    fn proxy_mode_ingress_is_not_captured() {
        let mut s = ServiceSpec::cluster_ip(ServiceName::new("ns", "lb"), ip("10.96.0.2"))
            .with_port("", Protocol::Tcp, 80, Some(30080));
        s.service_type = ServiceType::LoadBalancer;
        s.load_balancer_ingress = vec![
            LoadBalancerIngress {
                ip: ip("5.6.7.8"),
                proxy_mode: false,
            },
            LoadBalancerIngress {
                ip: ip("5.6.7.9"),
                proxy_mode: true,
            },
        ];
        assert_eq!(
            s.service_ports(IpFamily::V4)[0].load_balancer_ips,
            vec![ip("5.6.7.8")]
        );
    }

    #[test]
    fn slices_merge_and_conditions_default() {
        let mut term = SliceEndpoint::ready(ip("10.0.0.2"));
        term.ready = Some(false);
        term.terminating = Some(true);
        let a = slice("s-1", "s", vec![SliceEndpoint::ready(ip("10.0.0.1")), term]);
        let b = slice("s-2", "s", vec![SliceEndpoint::ready(ip("10.0.0.1"))]);
        let eps = endpoints_from_slices([&a, &b], IpFamily::V4, "n");
        let list = &eps[&ServicePortName::new("ns", "s", "p", Protocol::Tcp)];
        assert_eq!(list.len(), 2);
        assert!(list[0].ready && list[0].serving && !list[0].terminating);
        assert!(!list[1].ready && list[1].serving && list[1].terminating);
        assert!(endpoints_from_slices([&a], IpFamily::V6, "n").is_empty());
    }

    #[test]
    fn store_tracks_changed_services_only() {
        let mut st = ServiceStore::new();
        let svc = ServiceSpec::cluster_ip(ServiceName::new("ns", "s"), ip("10.96.0.1")).with_port(
            "p",
            Protocol::Tcp,
            80,
            None,
        );
        assert!(st.upsert_service(svc.clone()));
        assert!(!st.upsert_service(svc.clone()));
        assert!(st.upsert_slice(slice(
            "s-1",
            "s",
            vec![SliceEndpoint::ready(ip("10.0.0.1"))]
        )));
        assert_eq!(st.take_changes().len(), 1);
        assert!(!st.has_changes());
        let state = st.proxy_state(IpFamily::V4, "n");
        assert_eq!(state.services.len(), 1);
        assert_eq!(state.total_endpoints(), 1);
        // Replacing with the same objects marks nothing.
        st.replace_all(
            vec![svc.clone()],
            vec![slice(
                "s-1",
                "s",
                vec![SliceEndpoint::ready(ip("10.0.0.1"))],
            )],
        );
        assert!(!st.has_changes());
        st.replace_all(vec![svc], vec![]);
        assert_eq!(st.take_changes().into_iter().next().unwrap().name, "s");
        let mut state2 = state.clone();
        st.refresh(
            &mut state2,
            [&ServiceName::new("ns", "s")],
            IpFamily::V4,
            "n",
        );
        assert_eq!(state2.total_endpoints(), 0);
        assert_eq!(state2.services.len(), 1);
    }

    #[test]
    fn names_are_checked() {
        assert!(check_name("Service", "ns/x", "metadata.name", "svc-1", false).is_ok());
        let e = check_name("Service", "ns/x", "metadata.name", "a\" -j ACCEPT", false).unwrap_err();
        assert!(e.to_string().contains("metadata.name"), "{e}");
        assert!(check_name("Service", "x", "spec.ports[0].name", "", true).is_ok());
    }
}
