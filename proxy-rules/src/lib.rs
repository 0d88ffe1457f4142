//! kube-proxy compatible Service routing: Services and EndpointSlices turned into
//! iptables, nftables and IPVS rules with kube-proxy's names, layout and semantics.
//!
//! - [`model`]: the plain model (service ports, endpoints) one family's proxier renders
//!   from; [`store`] keeps Services and EndpointSlices and tracks what changed;
//!   [`k8s`] converts the Kubernetes API objects and reads `kubectl get -o yaml` lists.
//! - [`config`]: node facts and options, with kube-proxy's defaults.
//! - [`topology`]: endpoint selection (ready, serving-terminating fallback, topology
//!   hints, traffic policies).
//! - [`iptables`]: the iptables-mode renderer (`iptables-restore` input, partial
//!   restores) and an `iptables-save` parser.
//! - [`nftables`]: the nftables-mode renderer (`nft -f` scripts, element-level partial
//!   updates) and upstream's dump normalisation.
//! - [`ipvs`]: IPVS planning (virtual and real servers, ipsets, companion iptables
//!   rules), the generic-netlink codec and appliers.
//! - [`sync`]: the sync engine (partial and full syncs, canary, stale chains, the other
//!   mode's leftovers, UDP [`conntrack`] cleanup, [`metrics`] with kube-proxy's names)
//!   over the command runners of [`exec`], which have fakes beside them.
//! - [`ctnetlink`]: conntrack over netlink, a [`exec::ConntrackExec`] that lists and
//!   deletes UDP flows without running the `conntrack` tool per flow.
//! - [`health`]: kube-proxy's service health server on `healthCheckNodePort`s.
//! - [`trace`]: the packet tracer over `iptables-save` output and nftables tables.
//! - `watch` (feature `kube`): kube-runtime watchers on an API server feeding the sync
//!   engine.
//! - [`names`]: kube-proxy's chain and object names and hashes.
//!
//! Every error is an [`Error`] naming what was wrong and where: the object and field,
//! the input line, the command with its stderr and the failing input lines.
//!
//! # Example
//!
//! ```
//! use proxy_rules::config::ProxyConfig;
//! use proxy_rules::model::{Endpoint, IpFamily, Protocol, ProxyState, ServicePort, ServicePortName};
//!
//! let name = ServicePortName::new("ns1", "svc1", "p80", Protocol::Tcp);
//! let mut state = ProxyState::new();
//! state.add_service(ServicePort::cluster_ip(name.clone(), "172.30.0.41".parse()?, 80));
//! state.set_endpoints(name, vec![Endpoint::ready("10.180.0.1".parse()?, 80)]);
//!
//! let config = ProxyConfig::new("test-node").cluster_cidr("10.0.0.0/8".parse()?);
//! let rules = proxy_rules::iptables::render(&state, &config, IpFamily::V4)?;
//! let text = rules.restore_input();
//! assert!(text.contains(
//!     "-A KUBE-SERVICES -m comment --comment \"ns1/svc1:p80 cluster IP\" -m tcp -p tcp \
//!      -d 172.30.0.41 --dport 80 -j KUBE-SVC-XPGD46QRK7WJZT7O"
//! ));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod config;
pub mod conntrack;
pub mod ctnetlink;
mod error;
pub mod exec;
pub mod health;
pub mod iptables;
pub mod ipvs;
pub mod k8s;
pub mod metrics;
pub mod model;
pub mod names;
mod netns;
pub mod nftables;
pub mod store;
pub mod sync;
pub mod topology;
pub mod trace;
#[cfg(feature = "kube")]
pub mod watch;

pub use error::{Error, Result};
pub use ipnetwork;
pub use k8s_openapi;
