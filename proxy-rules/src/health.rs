//! kube-proxy's service health server: for every LoadBalancer Service with
//! `externalTrafficPolicy: Local`, an HTTP server on its `healthCheckNodePort` that
//! answers 200 while this node has a ready endpoint of the Service and 503 otherwise, so
//! the load balancer sends traffic only to nodes that can serve it locally.
//!
//! The answer is kube-proxy's, body and headers included (the body is indented with
//! tabs, shown here as spaces):
//!
//! ```text
//! HTTP/1.1 200 OK
//! Content-Type: application/json
//! X-Content-Type-Options: nosniff
//! X-Load-Balancing-Endpoint-Weight: 1
//!
//! {
//!     "service": {
//!         "namespace": "ns2",
//!         "name": "svc2"
//!     },
//!     "localEndpoints": 1,
//!     "serviceProxyHealthy": true
//! }
//! ```
//!
//! [`health_checks`] decides (pure); [`ServiceHealthServer`] listens.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use crate::model::{ProxyState, ServiceName};
use crate::{Error, Result};

/// One Service's health check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    /// The Service.
    pub service: ServiceName,
    /// Its `healthCheckNodePort`.
    pub port: u16,
    /// Ready endpoints on this node (distinct IPs, as kube-proxy counts them).
    pub local_endpoints: usize,
}

/// The health checks of a state, by port: Services with a health check node port, and
/// their ready endpoints on node `node_name` (an IP serving several ports counts once).
pub fn health_checks(state: &ProxyState, node_name: &str) -> BTreeMap<u16, HealthCheck> {
    let mut ips: BTreeMap<(u16, &ServiceName), BTreeSet<IpAddr>> = BTreeMap::new();
    for (name, svc) in &state.services {
        let Some(port) = svc.health_check_node_port else {
            continue;
        };
        let set = ips.entry((port, &name.service)).or_default();
        for ep in state.endpoints_of(name) {
            if ep.ready && ep.is_local(node_name) {
                set.insert(ep.ip);
            }
        }
    }
    ips.into_iter()
        .map(|((port, service), ips)| {
            (
                port,
                HealthCheck {
                    service: service.clone(),
                    port,
                    local_endpoints: ips.len(),
                },
            )
        })
        .collect()
}

/// The HTTP status and body kube-proxy answers for a health check.
pub fn response(check: &HealthCheck, proxy_healthy: bool) -> (u16, String) {
    let status = if check.local_endpoints != 0 && proxy_healthy {
        200
    } else {
        503
    };
    let body = format!(
        "{{\n\t\"service\": {{\n\t\t\"namespace\": {:?},\n\t\t\"name\": {:?}\n\t}},\n\t\"localEndpoints\": {},\n\t\"serviceProxyHealthy\": {}\n}}",
        check.service.namespace, check.service.name, check.local_endpoints, proxy_healthy
    );
    (status, body)
}

struct Listener {
    check: Arc<Mutex<HealthCheck>>,
    stop: CancellationToken,
}

/// Listeners on the health check node ports, kept in line with [`health_checks`] by
/// [`ServiceHealthServer::sync`].
pub struct ServiceHealthServer {
    netns: Option<PathBuf>,
    listeners: BTreeMap<u16, Listener>,
}

impl std::fmt::Debug for ServiceHealthServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceHealthServer")
            .field("netns", &self.netns)
            .field("ports", &self.listeners.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl ServiceHealthServer {
    /// A server listening in this process's network namespace.
    pub fn new() -> Self {
        Self {
            netns: None,
            listeners: BTreeMap::new(),
        }
    }

    /// A server listening inside the network namespace at `path` (`/run/netns/NAME`).
    pub fn in_netns(path: impl Into<PathBuf>) -> Self {
        Self {
            netns: Some(path.into()),
            listeners: BTreeMap::new(),
        }
    }

    /// The ports listened on.
    pub fn ports(&self) -> Vec<u16> {
        self.listeners.keys().copied().collect()
    }

    /// Listen on the ports of `checks` (all addresses), stop listening on the others,
    /// and answer with the new counts. A port that cannot be bound is reported; the
    /// others are served.
    pub async fn sync(&mut self, checks: BTreeMap<u16, HealthCheck>) -> Vec<Error> {
        let mut errors = Vec::new();
        self.listeners.retain(|port, l| {
            let keep = checks.contains_key(port);
            if !keep {
                l.stop.cancel();
            }
            keep
        });
        for (port, check) in checks {
            if let Some(l) = self.listeners.get(&port) {
                *l.check.lock().expect("health lock") = check;
                continue;
            }
            match bind(self.netns.clone(), port).await {
                Ok(listener) => {
                    let check = Arc::new(Mutex::new(check));
                    let stop = CancellationToken::new();
                    tokio::spawn(serve(listener, check.clone(), stop.clone()));
                    self.listeners.insert(port, Listener { check, stop });
                }
                Err(e) => errors.push(e),
            }
        }
        errors
    }
}

impl Default for ServiceHealthServer {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for ServiceHealthServer {
    fn drop(&mut self) {
        for l in self.listeners.values() {
            l.stop.cancel();
        }
    }
}

async fn bind(netns: Option<PathBuf>, port: u16) -> Result<tokio::net::TcpListener> {
    let context = format!("listening on health check node port {port}");
    let what = context.clone();
    // A throwaway thread enters the namespace (never a runtime thread, which would stay
    // there for whatever runs on it next).
    let std_listener = tokio::task::spawn_blocking(move || {
        crate::netns::within(netns.as_deref(), "binding a health check port", || {
            let l = std::net::TcpListener::bind(("0.0.0.0", port))
                .map_err(|e| Error::io(what.clone(), e))?;
            l.set_nonblocking(true)
                .map_err(|e| Error::io(what.clone(), e))?;
            Ok(l)
        })
    })
    .await
    .map_err(|e| Error::io(context.clone(), std::io::Error::other(e)))??;
    tokio::net::TcpListener::from_std(std_listener).map_err(|e| Error::io(context, e))
}

async fn serve(
    listener: tokio::net::TcpListener,
    check: Arc<Mutex<HealthCheck>>,
    stop: CancellationToken,
) {
    loop {
        let conn = tokio::select! {
            _ = stop.cancelled() => return,
            c = listener.accept() => c,
        };
        let Ok((mut stream, _)) = conn else { continue };
        let check = check.lock().expect("health lock").clone();
        tokio::spawn(async move {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 1024];
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 8192 {
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            let (status, body) = response(&check, true);
            let reason = if status == 200 {
                "OK"
            } else {
                "Service Unavailable"
            };
            let head = format!(
                "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nX-Content-Type-Options: nosniff\r\nX-Load-Balancing-Endpoint-Weight: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                check.local_endpoints,
                body.len()
            );
            let _ = stream.write_all(head.as_bytes()).await;
            let _ = stream.write_all(body.as_bytes()).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Endpoint, Protocol, ServicePort, ServicePortName};

    fn state() -> ProxyState {
        let mut st = ProxyState::new();
        for port in ["http", "https"] {
            let name = ServicePortName::new("ns2", "svc2", port, Protocol::Tcp);
            let mut sp = ServicePort::cluster_ip(name.clone(), "172.30.0.42".parse().unwrap(), 80);
            sp.health_check_node_port = Some(30000);
            st.add_service(sp);
            let mut here = Endpoint::ready("10.180.0.2".parse().unwrap(), 8080);
            here.node_name = Some("node-a".into());
            let mut there = Endpoint::ready("10.180.0.3".parse().unwrap(), 8080);
            there.node_name = Some("node-b".into());
            st.set_endpoints(name, vec![here, there]);
        }
        st
    }

    #[test]
    fn local_ready_ips_are_counted_once_per_service() {
        let checks = health_checks(&state(), "node-a");
        assert_eq!(checks.len(), 1);
        assert_eq!(checks[&30000].local_endpoints, 1);
        assert_eq!(health_checks(&state(), "node-c")[&30000].local_endpoints, 0);
    }

    #[test]
    fn response_is_kube_proxys() {
        let check = HealthCheck {
            service: ServiceName::new("ns2", "svc2"),
            port: 30000,
            local_endpoints: 1,
        };
        let (status, body) = response(&check, true);
        assert_eq!(status, 200);
        assert_eq!(
            body,
            "{\n\t\"service\": {\n\t\t\"namespace\": \"ns2\",\n\t\t\"name\": \"svc2\"\n\t},\n\t\"localEndpoints\": 1,\n\t\"serviceProxyHealthy\": true\n}"
        );
        let none = HealthCheck {
            local_endpoints: 0,
            ..check
        };
        assert_eq!(response(&none, true).0, 503);
    }

    #[tokio::test]
    async fn serves_and_follows_changes() {
        let mut server = ServiceHealthServer::new();
        // Find a free port.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut checks = BTreeMap::new();
        checks.insert(
            port,
            HealthCheck {
                service: ServiceName::new("ns", "s"),
                port,
                local_endpoints: 2,
            },
        );
        assert!(server.sync(checks.clone()).await.is_empty());
        let get = || async move {
            let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .unwrap();
            s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                .await
                .unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).await.unwrap();
            out
        };
        let r = get().await;
        assert!(
            r.starts_with("HTTP/1.1 200 OK") && r.contains("X-Load-Balancing-Endpoint-Weight: 2"),
            "{r}"
        );
        checks.get_mut(&port).unwrap().local_endpoints = 0;
        server.sync(checks).await;
        assert!(get().await.starts_with("HTTP/1.1 503 Service Unavailable"));
        server.sync(BTreeMap::new()).await;
        assert!(server.ports().is_empty());
        // A port already taken is reported, the others still served.
        let taken = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
        let taken_port = taken.local_addr().unwrap().port();
        let mut checks = BTreeMap::new();
        checks.insert(
            taken_port,
            HealthCheck {
                service: ServiceName::new("ns", "x"),
                port: taken_port,
                local_endpoints: 1,
            },
        );
        let errors = server.sync(checks).await;
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0]
                .to_string()
                .contains(&format!("health check node port {taken_port}")),
            "{}",
            errors[0]
        );
    }
}
