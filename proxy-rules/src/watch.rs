//! Watching an API server (feature `kube`): kube-runtime watchers on Services,
//! EndpointSlices, ServiceCIDRs and this node, turned into [`Event`]s for the sync
//! engine, as kube-proxy's informers feed its proxier.
//!
//! - Services are watched with kube-proxy's label selector
//!   (`!service.kubernetes.io/service-proxy-name,!service.kubernetes.io/headless`),
//!   EndpointSlices with `kubernetes.io/service-name` (those of no Service are useless).
//! - Each (re)list replaces that kind's objects whole ([`Event::ReplaceServices`],
//!   [`Event::ReplaceSlices`]); watch events update them one by one.
//! - [`Event::Synced`] is sent once Services, EndpointSlices, ServiceCIDRs and the Node
//!   were listed (a kind whose API fails counts as listed, so a missing API never
//!   blocks): kube-proxy does not sync before its informers are synced either.
//! - ServiceCIDRs give nftables mode its service CIDRs; an API server without the
//!   `networking.k8s.io/v1` ServiceCIDR API is tolerated (logged once, no CIDRs).
//! - The node's labels (zone topology) come from watching the Node named like the
//!   proxier's node.
//!
//! An object that cannot be used is logged with its name and field and skipped; the
//! watchers retry with back-off when the API server is unreachable.

use std::collections::BTreeMap;

use futures::{Stream, TryStreamExt};
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::ServiceCIDR;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event as WatchEvent};
use kube::{Api, Client};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::k8s::{self, SERVICE_NAME_LABEL};
use crate::model::ServiceName;
use crate::sync::Event;

pub use kube;

/// kube-proxy's label selector for Services.
pub const SERVICE_SELECTOR: &str =
    "!service.kubernetes.io/service-proxy-name,!service.kubernetes.io/headless";

/// Watch the API server until `cancel` fires (or the engine's channel closes), sending
/// events for the sync engine. `node_name` selects the Node whose labels are followed.
pub async fn watch(
    client: Client,
    node_name: String,
    tx: mpsc::Sender<Event>,
    cancel: CancellationToken,
) {
    let (listed_tx, mut listed_rx) = mpsc::channel::<&'static str>(4);
    let services = run(
        Kind {
            name: "Service",
            item: k8s::service_spec,
            event: service_event,
            replace: Event::ReplaceServices,
        },
        watcher::watcher(
            Api::<Service>::all(client.clone()),
            watcher::Config::default().labels(SERVICE_SELECTOR),
        ),
        tx.clone(),
        listed_tx.clone(),
    );
    let slices = run(
        Kind {
            name: "EndpointSlice",
            item: k8s::endpoint_slice_spec,
            event: slice_event,
            replace: Event::ReplaceSlices,
        },
        watcher::watcher(
            Api::<EndpointSlice>::all(client.clone()),
            watcher::Config::default().labels(SERVICE_NAME_LABEL),
        ),
        tx.clone(),
        listed_tx.clone(),
    );
    let cidrs = run_cidrs(client.clone(), tx.clone(), listed_tx.clone());
    let node = run_node(client, node_name, tx.clone(), listed_tx);
    let synced = async {
        let mut seen = Vec::new();
        while let Some(kind) = listed_rx.recv().await {
            if !seen.contains(&kind) {
                seen.push(kind);
            }
            if seen.len() == 4 {
                let _ = tx.send(Event::Synced).await;
                return;
            }
        }
    };
    tokio::select! {
        _ = cancel.cancelled() => {}
        _ = futures::future::join5(services, slices, cidrs, node, synced) => {}
    }
}

/// How one kind of object becomes events.
struct Kind<K, T> {
    name: &'static str,
    /// A listed object, as a spec (`None`: ignored).
    item: fn(&K) -> crate::Result<Option<T>>,
    /// A watched change (`true`: deleted).
    event: fn(&K, bool) -> crate::Result<Option<Event>>,
    /// A whole list.
    replace: fn(Vec<T>) -> Event,
}

/// One kind's watch: a (re)list becomes one replacing event, watch events become
/// per-object ones. An object that cannot be used is logged and skipped.
async fn run<K: kube::Resource, T>(
    kind: Kind<K, T>,
    stream: impl Stream<Item = Result<WatchEvent<K>, watcher::Error>> + Send,
    tx: mpsc::Sender<Event>,
    listed: mpsc::Sender<&'static str>,
) {
    let skip = |obj: &K, e: crate::Error| {
        let name = obj.meta().name.clone().unwrap_or_default();
        tracing::warn!(kind = kind.name, name, error = %e, "skipping an object that cannot be used");
    };
    let mut buffer: Vec<T> = Vec::new();
    let mut stream = std::pin::pin!(stream.default_backoff());
    loop {
        let ev = match stream.try_next().await {
            Ok(Some(ev)) => ev,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(kind = kind.name, error = %e, "watch failed; retrying");
                continue;
            }
        };
        let out = match ev {
            WatchEvent::Init => {
                buffer.clear();
                None
            }
            WatchEvent::InitApply(obj) => {
                match (kind.item)(&obj) {
                    Ok(Some(item)) => buffer.push(item),
                    Ok(None) => {}
                    Err(e) => skip(&obj, e),
                }
                None
            }
            WatchEvent::InitDone => {
                let _ = listed.send(kind.name).await;
                Some((kind.replace)(std::mem::take(&mut buffer)))
            }
            WatchEvent::Apply(obj) => (kind.event)(&obj, false).unwrap_or_else(|e| {
                skip(&obj, e);
                None
            }),
            WatchEvent::Delete(obj) => (kind.event)(&obj, true).unwrap_or_else(|e| {
                skip(&obj, e);
                None
            }),
        };
        if let Some(event) = out
            && tx.send(event).await.is_err()
        {
            return;
        }
    }
}

fn service_name(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> ServiceName {
    ServiceName::new(
        meta.namespace.clone().unwrap_or_else(|| "default".into()),
        meta.name.clone().unwrap_or_default(),
    )
}

fn service_event(svc: &Service, deleted: bool) -> crate::Result<Option<Event>> {
    if deleted {
        return Ok(Some(Event::ServiceDeleted(service_name(&svc.metadata))));
    }
    // A Service that became headless or moved to another proxy is gone for us.
    Ok(Some(match k8s::service_spec(svc)? {
        Some(spec) => Event::Service(spec),
        None => Event::ServiceDeleted(service_name(&svc.metadata)),
    }))
}

fn slice_event(slice: &EndpointSlice, deleted: bool) -> crate::Result<Option<Event>> {
    let Some(service) = slice
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(SERVICE_NAME_LABEL))
    else {
        return Ok(None);
    };
    if deleted {
        return Ok(Some(Event::SliceDeleted {
            service: ServiceName::new(
                slice
                    .metadata
                    .namespace
                    .clone()
                    .unwrap_or_else(|| "default".into()),
                service.clone(),
            ),
            name: slice.metadata.name.clone().unwrap_or_default(),
        }));
    }
    Ok(k8s::endpoint_slice_spec(slice)?.map(Event::Slice))
}

/// ServiceCIDRs: every change resends the whole list.
async fn run_cidrs(client: Client, tx: mpsc::Sender<Event>, listed: mpsc::Sender<&'static str>) {
    let api = Api::<ServiceCIDR>::all(client);
    let stream = watcher::watcher(api, watcher::Config::default()).default_backoff();
    let mut stream = std::pin::pin!(stream);
    let mut objects: BTreeMap<String, ServiceCIDR> = BTreeMap::new();
    let mut listing: BTreeMap<String, ServiceCIDR> = BTreeMap::new();
    let mut warned = false;
    let mut first_list_sent = false;
    loop {
        let ev = match stream.try_next().await {
            Ok(Some(ev)) => ev,
            Ok(None) => return,
            Err(e) => {
                if !warned {
                    tracing::warn!(error = %e, "cannot watch ServiceCIDRs (an API server before 1.33?); no service CIDRs");
                    warned = true;
                    let _ = listed.send("ServiceCIDR").await;
                }
                continue;
            }
        };
        let name = |o: &ServiceCIDR| o.metadata.name.clone().unwrap_or_default();
        let objects_listed = matches!(ev, WatchEvent::InitDone);
        match ev {
            WatchEvent::Init => listing.clear(),
            WatchEvent::InitApply(o) => {
                listing.insert(name(&o), o);
            }
            WatchEvent::InitDone => objects = std::mem::take(&mut listing),
            WatchEvent::Apply(o) => {
                objects.insert(name(&o), o);
            }
            WatchEvent::Delete(o) => {
                objects.remove(&name(&o));
            }
        }
        let mut cidrs = Vec::new();
        for o in objects.values() {
            match k8s::service_cidrs(o) {
                Ok(c) => cidrs.extend(c),
                Err(e) => tracing::warn!(error = %e, "skipping a ServiceCIDR that cannot be used"),
            }
        }
        if tx.send(Event::ServiceCidrs(cidrs)).await.is_err() {
            return;
        }
        if objects_listed && !std::mem::replace(&mut first_list_sent, true) {
            let _ = listed.send("ServiceCIDR").await;
        }
    }
}

/// This node's labels.
async fn run_node(
    client: Client,
    node_name: String,
    tx: mpsc::Sender<Event>,
    listed: mpsc::Sender<&'static str>,
) {
    let api = Api::<Node>::all(client);
    let config = watcher::Config::default().fields(&format!("metadata.name={node_name}"));
    let mut stream = std::pin::pin!(watcher::watcher(api, config).default_backoff());
    let mut reported = false;
    loop {
        let ev = match stream.try_next().await {
            Ok(Some(ev)) => ev,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, node = %node_name, "watching the node failed; retrying");
                if !std::mem::replace(&mut reported, true) {
                    let _ = listed.send("Node").await;
                }
                continue;
            }
        };
        let node = match ev {
            WatchEvent::Apply(n) | WatchEvent::InitApply(n) => n,
            WatchEvent::InitDone => {
                if !std::mem::replace(&mut reported, true) {
                    let _ = listed.send("Node").await;
                }
                continue;
            }
            WatchEvent::Init | WatchEvent::Delete(_) => continue,
        };
        let labels = node
            .metadata
            .labels
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect();
        if tx.send(Event::NodeLabels(labels)).await.is_err() {
            return;
        }
    }
}
