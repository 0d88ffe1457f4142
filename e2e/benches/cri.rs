//! CRI client benchmarks against the real containerd of the test environment
//! (`scripts/env.sh up`, as root):
//!
//! 1. per-RPC overhead of `CriClient` over the bare generated tonic client on the same
//!    socket: `Version`, and `ListContainers` with 100 containers (p50, p99, ratio);
//! 2. lifecycle throughput: N parallel workers each running a sandbox + container through
//!    run/create/start/stop/remove, with the client-observed time per RPC set against the
//!    server-side handling time containerd reports in its own metrics.
//!
//! Run: `cargo bench -p node-sdk-e2e --bench cri` (prints markdown tables).
//! Options by environment: `CRI_BENCH_N` (unary samples, default 2000),
//! `CRI_BENCH_PODS` (pods per lifecycle run, default 24).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use cri_client::v1::{
    ContainerConfig, ContainerFilter, ContainerMetadata, ImageSpec, ListContainersRequest,
    PodSandboxConfig, PodSandboxMetadata, VersionRequest,
};
use cri_client::{ClientConfig, CriClient};
use node_sdk_e2e::{TestEnv, unique_name};

fn env_usize(key: &str, default: usize) -> usize {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

struct Samples {
    bare: Vec<Duration>,
    ours: Vec<Duration>,
}

impl Samples {
    fn row(mut self, name: &str) -> String {
        self.bare.sort();
        self.ours.sort();
        let (b50, b99) = (percentile(&self.bare, 0.5), percentile(&self.bare, 0.99));
        let (o50, o99) = (percentile(&self.ours, 0.5), percentile(&self.ours, 0.99));
        format!(
            "| {name} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.3} | {:.3} |",
            self.bare.len(),
            micros(b50),
            micros(b99),
            micros(o50),
            micros(o99),
            micros(o50) / micros(b50),
            micros(o99) / micros(b99),
        )
    }
}

fn pod_config(name: &str) -> PodSandboxConfig {
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: name.to_owned(),
            namespace: "node-sdk-bench".into(),
            uid: format!("uid-{name}"),
            attempt: 0,
        }),
        log_directory: format!("/var/lib/node-sdk/pod-logs/{name}"),
        ..Default::default()
    }
}

fn container_config(name: &str, image: &str, command: &[&str]) -> ContainerConfig {
    ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: name.to_owned(),
            attempt: 0,
        }),
        image: Some(ImageSpec {
            image: image.to_owned(),
            ..Default::default()
        }),
        command: command.iter().map(|s| (*s).to_owned()).collect(),
        log_path: format!("{name}.log"),
        ..Default::default()
    }
}

/// Server-side handling time containerd reports: `grpc_server_handling_seconds`
/// sum and count per `runtime.v1` method.
async fn containerd_handling(metrics_addr: &str) -> BTreeMap<String, (f64, f64)> {
    let resp = node_sdk_e2e::http_get(metrics_addr, "/v1/metrics", &[], None)
        .expect("containerd metrics endpoint");
    let text = String::from_utf8_lossy(&resp.body).into_owned();
    let mut out: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    for line in text.lines() {
        let (is_sum, rest) = if let Some(r) = line.strip_prefix("grpc_server_handling_seconds_sum{")
        {
            (true, r)
        } else if let Some(r) = line.strip_prefix("grpc_server_handling_seconds_count{") {
            (false, r)
        } else {
            continue;
        };
        if !rest.contains("grpc_service=\"runtime.v1.") {
            continue;
        }
        let Some(method) = rest
            .split("grpc_method=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
        else {
            continue;
        };
        let Some(value) = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) else {
            continue;
        };
        let entry = out.entry(method.to_owned()).or_default();
        if is_sum {
            entry.0 = value;
        } else {
            entry.1 = value;
        }
    }
    out
}

async fn unary_overhead(env: &TestEnv, n: usize) {
    let channel = cri_client::connect(env.cri_endpoint()).await.unwrap();
    let mut bare = cri_client::runtime_client(channel.clone());
    let ours = CriClient::with_transport(channel, ClientConfig::default());
    let busybox = env.get("BUSYBOX_IMAGE").to_owned();
    ours.pull_image(
        ImageSpec {
            image: busybox.clone(),
            ..Default::default()
        },
        None,
        None,
    )
    .await
    .unwrap();

    // Warm up the connection and both code paths.
    for _ in 0..200 {
        bare.version(VersionRequest {
            version: "v1".into(),
        })
        .await
        .unwrap();
        ours.version().await.unwrap();
    }
    let mut version = Samples {
        bare: Vec::with_capacity(n),
        ours: Vec::with_capacity(n),
    };
    for _ in 0..n {
        // Interleaved, so drift on the machine hits both alike.
        let t = Instant::now();
        bare.version(VersionRequest {
            version: "v1".into(),
        })
        .await
        .unwrap();
        version.bare.push(t.elapsed());
        let t = Instant::now();
        ours.version().await.unwrap();
        version.ours.push(t.elapsed());
    }

    // One pod with 100 created containers.
    let name = unique_name("bench-list");
    let pod = pod_config(&name);
    let pod_id = ours.run_pod_sandbox(pod.clone(), "").await.unwrap();
    for i in 0..100 {
        ours.create_container(
            &pod_id,
            container_config(&format!("c{i}"), &busybox, &["sleep", "1"]),
            pod.clone(),
        )
        .await
        .unwrap();
    }
    let filter = ContainerFilter {
        pod_sandbox_id: pod_id.clone(),
        ..Default::default()
    };
    let list_n = n / 4;
    let mut list = Samples {
        bare: Vec::with_capacity(list_n),
        ours: Vec::with_capacity(list_n),
    };
    for _ in 0..list_n {
        let t = Instant::now();
        let got = bare
            .list_containers(ListContainersRequest {
                filter: Some(filter.clone()),
            })
            .await
            .unwrap()
            .into_inner()
            .containers;
        list.bare.push(t.elapsed());
        assert_eq!(got.len(), 100);
        let t = Instant::now();
        let got = ours.list_containers(Some(filter.clone())).await.unwrap();
        list.ours.push(t.elapsed());
        assert_eq!(got.len(), 100);
    }
    ours.ensure_pod_sandbox_removed(&pod_id).await.unwrap();

    println!("### Per-RPC overhead of CriClient over the bare tonic client (same socket)\n");
    println!(
        "| RPC | samples | bare p50 µs | bare p99 µs | CriClient p50 µs | CriClient p99 µs | ratio p50 | ratio p99 |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    println!("{}", version.row("Version"));
    println!("{}", list.row("ListContainers (100 containers)"));
    println!();
}

/// One worker's pod: run sandbox, create + start a container, stop it, remove all.
async fn one_lifecycle(
    client: &CriClient,
    image: &str,
    timings: &mut BTreeMap<&'static str, Vec<Duration>>,
) {
    let name = unique_name("bench-life");
    let pod = pod_config(&name);
    let mut timed = |method: &'static str, d: Duration| timings.entry(method).or_default().push(d);

    let t = Instant::now();
    let pod_id = client.run_pod_sandbox(pod.clone(), "").await.unwrap();
    timed("RunPodSandbox", t.elapsed());
    let t = Instant::now();
    let id = client
        .create_container(
            &pod_id,
            container_config("app", image, &["sleep", "3600"]),
            pod,
        )
        .await
        .unwrap();
    timed("CreateContainer", t.elapsed());
    let t = Instant::now();
    client.start_container(&id).await.unwrap();
    timed("StartContainer", t.elapsed());
    let t = Instant::now();
    client.stop_container(&id, 0).await.unwrap();
    timed("StopContainer", t.elapsed());
    let t = Instant::now();
    client.remove_container(&id).await.unwrap();
    timed("RemoveContainer", t.elapsed());
    let t = Instant::now();
    client.stop_pod_sandbox(&pod_id).await.unwrap();
    timed("StopPodSandbox", t.elapsed());
    let t = Instant::now();
    client.remove_pod_sandbox(&pod_id).await.unwrap();
    timed("RemovePodSandbox", t.elapsed());
}

async fn lifecycle(env: &TestEnv, pods: usize) {
    let client = CriClient::connect(env.cri_endpoint()).unwrap();
    let busybox = env.get("BUSYBOX_IMAGE").to_owned();
    let metrics = env.get("CONTAINERD_METRICS").to_owned();
    // Warm-up pod (first use of the image's snapshot, CNI plugin binaries in cache).
    one_lifecycle(&client, &busybox, &mut BTreeMap::new()).await;

    println!("### Lifecycle throughput (sandbox + container: run, create, start, stop, remove)\n");
    println!(
        "| parallel | pods | wall s | pods/s | client mean ms per pod (7 RPCs) | containerd-reported mean ms per pod |"
    );
    println!("|---|---|---|---|---|---|");
    let mut detail = String::new();
    for parallel in [1usize, 4, 8] {
        let before = containerd_handling(&metrics).await;
        let started = Instant::now();
        let mut tasks = Vec::new();
        for w in 0..parallel {
            let client = client.clone();
            let image = busybox.clone();
            let share = pods / parallel + usize::from(w < pods % parallel);
            tasks.push(tokio::spawn(async move {
                let mut timings = BTreeMap::new();
                for _ in 0..share {
                    one_lifecycle(&client, &image, &mut timings).await;
                }
                timings
            }));
        }
        let mut all: BTreeMap<&'static str, Vec<Duration>> = BTreeMap::new();
        for t in tasks {
            for (k, v) in t.await.unwrap() {
                all.entry(k).or_default().extend(v);
            }
        }
        let wall = started.elapsed();
        let after = containerd_handling(&metrics).await;

        let mut client_total = 0.0;
        let mut server_total = 0.0;
        let _ = std::fmt::Write::write_fmt(
            &mut detail,
            format_args!(
                "\nparallel {parallel}:\n\n| RPC | client mean ms | containerd mean ms | client − containerd ms |\n|---|---|---|---|\n"
            ),
        );
        for (method, samples) in &all {
            let client_mean =
                samples.iter().map(Duration::as_secs_f64).sum::<f64>() / samples.len() as f64;
            let (s1, c1) = after.get(*method).copied().unwrap_or_default();
            let (s0, c0) = before.get(*method).copied().unwrap_or_default();
            let server_mean = if c1 > c0 {
                (s1 - s0) / (c1 - c0)
            } else {
                f64::NAN
            };
            client_total += client_mean;
            server_total += server_mean;
            let _ = std::fmt::Write::write_fmt(
                &mut detail,
                format_args!(
                    "| {method} | {:.2} | {:.2} | {:.2} |\n",
                    client_mean * 1e3,
                    server_mean * 1e3,
                    (client_mean - server_mean) * 1e3
                ),
            );
        }
        println!(
            "| {parallel} | {pods} | {:.2} | {:.1} | {:.1} | {:.1} |",
            wall.as_secs_f64(),
            pods as f64 / wall.as_secs_f64(),
            client_total * 1e3,
            server_total * 1e3
        );
    }
    println!("\nPer RPC:\n{detail}");
}

fn main() {
    let env = TestEnv::require();
    let n = env_usize("CRI_BENCH_N", 2000);
    let pods = env_usize("CRI_BENCH_PODS", 24);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        unary_overhead(&env, n).await;
        lifecycle(&env, pods).await;
    });
}
