//! `watch` (feature `kube`) against a fake API server that speaks the real list and
//! watch protocol: the events the sync engine gets.
#![cfg(feature = "kube")]

use std::time::Duration;

use node_sdk_e2e::FakeApiServer;
use proxy_rules::model::ServiceName;
use proxy_rules::sync::Event;
use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

fn service(name: &str, labels: serde_json::Value) -> serde_json::Value {
    json!({"kind": "Service", "apiVersion": "v1", "metadata": {"name": name, "namespace": "ns", "labels": labels},
        "spec": {"clusterIP": "10.96.0.10", "ports": [{"name": "p", "port": 80}]}})
}

fn slice(ip: &str) -> serde_json::Value {
    json!({"kind": "EndpointSlice", "apiVersion": "discovery.k8s.io/v1",
        "metadata": {"name": "web-1", "namespace": "ns", "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4", "ports": [{"name": "p", "port": 8080, "protocol": "TCP"}], "endpoints": [{"addresses": [ip]}]})
}

async fn next(rx: &mut mpsc::Receiver<Event>) -> Event {
    tokio::time::timeout(Duration::from_secs(30), rx.recv())
        .await
        .expect("an event within 30 s")
        .expect("channel open")
}

#[tokio::test]
async fn lists_then_watch_events_reach_the_engine() {
    let api = FakeApiServer::start(vec![
        service("web", json!({})),
        service(
            "other",
            json!({"service.kubernetes.io/service-proxy-name": "x"}),
        ),
        slice("10.1.0.1"),
        json!({"kind": "Node", "apiVersion": "v1", "metadata": {"name": "n1", "labels": {"topology.kubernetes.io/zone": "z1"}}}),
        json!({"kind": "Node", "apiVersion": "v1", "metadata": {"name": "n2", "labels": {"topology.kubernetes.io/zone": "z2"}}}),
        json!({"kind": "ServiceCIDR", "apiVersion": "networking.k8s.io/v1", "metadata": {"name": "kubernetes"}, "spec": {"cidrs": ["10.96.0.0/12"]}}),
    ]);
    let client = kube::Client::try_from(kube::Config::new(api.url().parse().unwrap())).unwrap();
    let (tx, mut rx) = mpsc::channel(64);
    let cancel = CancellationToken::new();
    let task = tokio::spawn(proxy_rules::watch::watch(
        client,
        "n1".into(),
        tx,
        cancel.clone(),
    ));

    let (mut services, mut slices, mut synced, mut labels, mut cidrs) =
        (None, None, false, None, None);
    while !(synced && labels.is_some() && cidrs.is_some()) {
        match next(&mut rx).await {
            Event::ReplaceServices(s) => services = Some(s),
            Event::ReplaceSlices(s) => slices = Some(s),
            Event::Synced => {
                assert!(
                    services.is_some() && slices.is_some(),
                    "Synced only after both lists"
                );
                synced = true;
            }
            Event::NodeLabels(l) => labels = Some(l),
            Event::ServiceCidrs(c) => cidrs = Some(c),
            other => panic!("unexpected {other:?}"),
        }
    }
    let services = services.unwrap();
    assert_eq!(
        services.len(),
        1,
        "the other proxy's Service is filtered out"
    );
    assert_eq!(services[0].name, ServiceName::new("ns", "web"));
    assert_eq!(
        slices.unwrap()[0].endpoints[0].addresses[0].to_string(),
        "10.1.0.1"
    );
    assert_eq!(
        labels.unwrap()["topology.kubernetes.io/zone"],
        "z1",
        "this node's labels, not n2's"
    );
    assert_eq!(cidrs.unwrap()[0].to_string(), "10.96.0.0/12");

    api.apply(slice("10.1.0.2"));
    match next(&mut rx).await {
        Event::Slice(s) => assert_eq!(s.endpoints[0].addresses[0].to_string(), "10.1.0.2"),
        other => panic!("expected a slice update, got {other:?}"),
    }
    api.delete("EndpointSlice", "ns", "web-1");
    match next(&mut rx).await {
        Event::SliceDeleted { service, name } => {
            assert_eq!(service, ServiceName::new("ns", "web"));
            assert_eq!(name, "web-1");
        }
        other => panic!("expected a slice deletion, got {other:?}"),
    }
    // A Service that gets the other proxy's label leaves the watch's selection: the API
    // server sends it as DELETED, and it is gone for us.
    api.apply(service(
        "web",
        json!({"service.kubernetes.io/service-proxy-name": "x"}),
    ));
    match next(&mut rx).await {
        Event::ServiceDeleted(n) => assert_eq!(n, ServiceName::new("ns", "web")),
        other => panic!("expected the Service deleted, got {other:?}"),
    }
    api.apply(service("api", json!({})));
    match next(&mut rx).await {
        Event::Service(s) => assert_eq!(s.name.name, "api"),
        other => panic!("expected a Service, got {other:?}"),
    }
    cancel.cancel();
    task.await.unwrap();
}
