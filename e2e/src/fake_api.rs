//! A fake Kubernetes API server for tests that watch objects: real HTTP/1.1, list
//! responses with a `resourceVersion`, and watches streamed as chunked JSON events
//! (`{"type":"ADDED","object":{...}}`), as kube-apiserver does. No kube-apiserver ships
//! for our machines, so code that watches (kube-runtime watchers) is tested against this.
//!
//! Supported: cluster-wide lists and watches of Services (`/api/v1/services`),
//! EndpointSlices (`/apis/discovery.k8s.io/v1/endpointslices`), ServiceCIDRs
//! (`/apis/networking.k8s.io/v1/servicecidrs`) and Nodes (`/api/v1/nodes`), with
//! `labelSelector` (`key`, `!key`, `key=value`, comma-separated) and `fieldSelector`
//! (`metadata.name=NAME`), `resourceVersion` and `timeoutSeconds`. Tests change objects
//! with [`FakeApiServer::apply`] and [`FakeApiServer::delete`]; open watches see the
//! change at once.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

const COLLECTIONS: &[(&str, &str, &str)] = &[
    ("Service", "v1", "/api/v1/services"),
    (
        "EndpointSlice",
        "discovery.k8s.io/v1",
        "/apis/discovery.k8s.io/v1/endpointslices",
    ),
    (
        "ServiceCIDR",
        "networking.k8s.io/v1",
        "/apis/networking.k8s.io/v1/servicecidrs",
    ),
    ("Node", "v1", "/api/v1/nodes"),
];

#[derive(Debug)]
struct Change {
    rv: u64,
    path: &'static str,
    kind: &'static str,
    object: Value,
    before: Option<Value>,
}

#[derive(Debug, Default)]
struct State {
    rv: u64,
    /// Objects by path, then by `namespace/name`.
    objects: BTreeMap<&'static str, BTreeMap<String, Value>>,
    /// Every change: (resourceVersion, path, type, object, the object before).
    events: Vec<Change>,
    /// Requests served, by path (lists and watches).
    requests: Vec<String>,
}

/// The fake API server; stopped when dropped.
#[derive(Debug)]
pub struct FakeApiServer {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    changed: watch::Sender<u64>,
    _runtime: std::thread::JoinHandle<()>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

fn path_of(kind: &str) -> &'static str {
    COLLECTIONS
        .iter()
        .find(|(k, _, _)| *k == kind)
        .map(|(_, _, p)| *p)
        .unwrap_or_else(|| panic!("the fake API server does not serve kind {kind}"))
}

fn key_of(obj: &Value) -> String {
    let md = &obj["metadata"];
    format!(
        "{}/{}",
        md["namespace"].as_str().unwrap_or(""),
        md["name"].as_str().unwrap_or("")
    )
}

impl FakeApiServer {
    /// Start on 127.0.0.1 (a free port) with these objects.
    pub fn start(objects: Vec<Value>) -> Self {
        let std_listener =
            std::net::TcpListener::bind("127.0.0.1:0").expect("binding the fake API server");
        std_listener.set_nonblocking(true).unwrap();
        let addr = std_listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State::default()));
        let (changed, _) = watch::channel(0u64);
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
        let (st, ch) = (state.clone(), changed.clone());
        let runtime = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = TcpListener::from_std(std_listener).unwrap();
                let accept = async {
                    loop {
                        let Ok((conn, _)) = listener.accept().await else {
                            continue;
                        };
                        tokio::spawn(serve(conn, st.clone(), ch.subscribe()));
                    }
                };
                tokio::select! {
                    _ = accept => {}
                    _ = stop_rx => {}
                }
            });
        });
        let server = Self {
            addr,
            state,
            changed,
            _runtime: runtime,
            stop: Some(stop_tx),
        };
        for o in objects {
            server.apply(o);
        }
        server
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kubeconfig pointing at this server (no credentials).
    pub fn kubeconfig(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\ncurrent-context: fake\nusers:\n- name: fake\n  user: {{}}\n",
            self.url()
        )
    }

    /// Create or replace an object (its `kind` picks the collection); open watches get
    /// ADDED or MODIFIED.
    pub fn apply(&self, mut obj: Value) {
        let kind = obj["kind"]
            .as_str()
            .expect("objects need a kind")
            .to_owned();
        let path = path_of(&kind);
        let mut st = self.state.lock().unwrap();
        st.rv += 1;
        let rv = st.rv;
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        let key = key_of(&obj);
        let before = st.objects.entry(path).or_default().insert(key, obj.clone());
        let kind = if before.is_some() {
            "MODIFIED"
        } else {
            "ADDED"
        };
        st.events.push(Change {
            rv,
            path,
            kind,
            object: obj,
            before,
        });
        drop(st);
        self.changed.send_replace(rv);
    }

    /// Delete an object; open watches get DELETED.
    pub fn delete(&self, kind: &str, namespace: &str, name: &str) {
        let path = path_of(kind);
        let mut st = self.state.lock().unwrap();
        let Some(mut obj) = st
            .objects
            .entry(path)
            .or_default()
            .remove(&format!("{namespace}/{name}"))
        else {
            return;
        };
        st.rv += 1;
        let rv = st.rv;
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        st.events.push(Change {
            rv,
            path,
            kind: "DELETED",
            object: obj,
            before: None,
        });
        drop(st);
        self.changed.send_replace(rv);
    }

    /// The requests served so far (method, path and query).
    pub fn requests(&self) -> Vec<String> {
        self.state.lock().unwrap().requests.clone()
    }
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn query_param(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether an object matches `labelSelector` and `fieldSelector`.
fn selected(obj: &Value, labels: Option<&str>, fields: Option<&str>) -> bool {
    let obj_labels = &obj["metadata"]["labels"];
    for term in labels.unwrap_or("").split(',').filter(|t| !t.is_empty()) {
        let ok = if let Some(key) = term.strip_prefix('!') {
            obj_labels.get(key).is_none()
        } else if let Some((k, v)) = term.split_once('=') {
            obj_labels.get(k).and_then(|x| x.as_str()) == Some(v.trim_start_matches('='))
        } else {
            obj_labels.get(term).is_some()
        };
        if !ok {
            return false;
        }
    }
    for term in fields.unwrap_or("").split(',').filter(|t| !t.is_empty()) {
        if let Some(name) = term.strip_prefix("metadata.name=")
            && obj["metadata"]["name"].as_str() != Some(name)
        {
            return false;
        }
    }
    true
}

async fn serve(conn: TcpStream, state: Arc<Mutex<State>>, mut changed: watch::Receiver<u64>) {
    let (read, mut write) = conn.into_split();
    let mut reader = BufReader::new(read);
    loop {
        // Request line and headers.
        let mut line = String::new();
        if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
            return;
        }
        let request_line = line.trim().to_owned();
        let mut content_length = 0usize;
        let mut close = false;
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).await.unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    content_length = v.trim().parse().unwrap_or(0);
                } else if k.eq_ignore_ascii_case("connection")
                    && v.trim().eq_ignore_ascii_case("close")
                {
                    close = true;
                }
            }
        }
        if content_length > 0 {
            let mut body = vec![0u8; content_length];
            let _ = reader.read_exact(&mut body).await;
        }
        let mut parts = request_line.split_whitespace();
        let method = parts.next().unwrap_or("").to_owned();
        let target = parts.next().unwrap_or("/").to_owned();
        let (path, query) = target.split_once('?').unwrap_or((target.as_str(), ""));
        state
            .lock()
            .unwrap()
            .requests
            .push(format!("{method} {target}"));
        let Some(&(kind, api_version, path)) = COLLECTIONS.iter().find(|(_, _, p)| *p == path)
        else {
            let body = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": format!("the server could not find the requested resource ({path})")}).to_string();
            let resp = format!(
                "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            if write.write_all(resp.as_bytes()).await.is_err() {
                return;
            }
            continue;
        };
        let labels = query_param(query, "labelSelector");
        let fields = query_param(query, "fieldSelector");
        if query_param(query, "watch").as_deref() == Some("true")
            || query_param(query, "watch").as_deref() == Some("1")
        {
            let from: u64 = query_param(query, "resourceVersion")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let timeout = query_param(query, "timeoutSeconds")
                .and_then(|v| v.parse().ok())
                .unwrap_or(290u64);
            let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
            if write.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
            let mut sent = from;
            loop {
                // As kube-apiserver: an object that leaves a watch's selection is sent
                // as DELETED, one that enters it as ADDED.
                let pending: Vec<(u64, &'static str, Value)> = {
                    let st = state.lock().unwrap();
                    let sel = |o: &Value| selected(o, labels.as_deref(), fields.as_deref());
                    st.events
                        .iter()
                        .filter(|c| c.rv > sent && c.path == path)
                        .filter_map(|c| {
                            let now = sel(&c.object);
                            let was = c.before.as_ref().is_some_and(sel);
                            let t = match (c.kind, was, now) {
                                ("MODIFIED", true, true) => "MODIFIED",
                                ("MODIFIED", true, false) => "DELETED",
                                ("MODIFIED", false, true) => "ADDED",
                                ("MODIFIED", false, false) => return None,
                                (t, _, true) => t,
                                _ => return None,
                            };
                            Some((c.rv, t, c.object.clone()))
                        })
                        .collect()
                };
                for (rv, t, o) in pending {
                    let line = format!("{}\n", json!({"type": t, "object": o}));
                    let chunk = format!("{:x}\r\n{line}\r\n", line.len());
                    if write.write_all(chunk.as_bytes()).await.is_err() {
                        return;
                    }
                    sent = rv;
                }
                let _ = write.flush().await;
                tokio::select! {
                    r = changed.changed() => if r.is_err() { return },
                    _ = tokio::time::sleep_until(deadline) => {
                        let _ = write.write_all(b"0\r\n\r\n").await;
                        return;
                    }
                }
            }
        }
        let (items, rv) = {
            let st = state.lock().unwrap();
            let items: Vec<Value> = st
                .objects
                .get(path)
                .into_iter()
                .flat_map(|m| m.values())
                .filter(|o| selected(o, labels.as_deref(), fields.as_deref()))
                .cloned()
                .collect();
            (items, st.rv)
        };
        let body = json!({
            "kind": format!("{kind}List"),
            "apiVersion": api_version,
            "metadata": {"resourceVersion": rv.to_string()},
            "items": items,
        })
        .to_string();
        let resp = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        if write.write_all(resp.as_bytes()).await.is_err() || close {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors() {
        let o = json!({"metadata": {"name": "n1", "labels": {"a": "1"}}});
        assert!(selected(&o, Some("a"), None));
        assert!(selected(&o, Some("a=1"), None));
        assert!(!selected(&o, Some("!a"), None));
        assert!(selected(&o, Some("!b,a"), Some("metadata.name=n1")));
        assert!(!selected(&o, None, Some("metadata.name=n2")));
        assert_eq!(
            percent_decode("%21service.kubernetes.io%2Fheadless"),
            "!service.kubernetes.io/headless"
        );
    }

    #[test]
    fn list_and_watch_over_http() {
        let server = FakeApiServer::start(vec![
            json!({"kind": "Service", "apiVersion": "v1", "metadata": {"name": "a", "namespace": "n"}}),
        ]);
        let addr = server.addr;
        let list = crate::http_get(&addr.to_string(), "/api/v1/services", &[], None).unwrap();
        let v: Value = serde_json::from_slice(&list.body).unwrap();
        assert_eq!(v["kind"], "ServiceList");
        assert_eq!(v["items"][0]["metadata"]["name"], "a");
        assert_eq!(v["metadata"]["resourceVersion"], "1");
        // A watch from that version sees a later change, then ends at its timeout.
        let srv = std::sync::Arc::new(server);
        let s2 = srv.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            s2.apply(json!({"kind": "Service", "apiVersion": "v1", "metadata": {"name": "b", "namespace": "n"}}));
        });
        let w = crate::http_get(
            &addr.to_string(),
            "/api/v1/services?watch=true&resourceVersion=1&timeoutSeconds=1",
            &[],
            None,
        )
        .unwrap();
        let text = String::from_utf8_lossy(&w.body);
        assert!(
            text.contains("\"type\":\"ADDED\"") && text.contains("\"name\":\"b\""),
            "{text}"
        );
        assert!(!text.contains("\"name\":\"a\""), "{text}");
    }
}
