//! Probe benchmarks (a bench binary; prints markdown):
//!
//! 1. **Scale**: N probe workers (default 10,000) at a 1 s period on this machine's
//!    cores, through `ProbeManager`: process CPU share, missed deadlines (attempts more
//!    than 100 ms later than one period after the previous one), and resident memory per
//!    worker. Once with an in-memory prober (the cost of the worker machinery alone),
//!    once with real TCP probes against local listeners.
//! 2. **Single-core throughput** of HTTP, TCP and gRPC probes (`DefaultProber`) run one
//!    after another on a current-thread runtime against servers in a separate process:
//!    probes per second and CPU time per probe of the probing process.
//!
//! Run: `cargo bench -p pod-probes --bench probes`. Environment: `PROBE_BENCH_WORKERS`
//! (default 10000), `PROBE_BENCH_SECONDS` (measured window, default 30),
//! `PROBE_BENCH_N` (sequential probes per type, default 5000).

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use pod_probes::manager::{ContainerProbes, PodProbes};
use pod_probes::{
    ContainerStatus, PodPhase, PodStatus, PortRef, ProbeError, ProbeHandler, ProbeKind,
    ProbeManager, ProbeOutcome, ProbeSpec, ProbeTarget, ProbeTiming, Prober,
};

fn env_usize(key: &str, default: usize) -> usize {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Process CPU time (user + system) from /proc/self/stat.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    let after_comm = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // USER_HZ is 100 on Linux.
    Duration::from_millis(ticks * 10)
}

/// Resident set size in bytes from /proc/self/status.
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Records lateness of every attempt per worker: the gap to the previous attempt of
/// the same worker beyond one period.
struct Lateness {
    last: Vec<AtomicU64>,
    attempts: AtomicU64,
    missed: AtomicU64,
    worst_micros: AtomicU64,
    origin: Instant,
}

impl Lateness {
    fn new(workers: usize) -> Self {
        Self {
            last: (0..workers).map(|_| AtomicU64::new(0)).collect(),
            attempts: AtomicU64::new(0),
            missed: AtomicU64::new(0),
            worst_micros: AtomicU64::new(0),
            origin: Instant::now(),
        }
    }

    fn record(&self, worker: usize, counting: bool) {
        let now = self.origin.elapsed().as_micros() as u64 + 1;
        let prev = self.last[worker].swap(now, Ordering::Relaxed);
        if !counting || prev == 0 {
            return;
        }
        self.attempts.fetch_add(1, Ordering::Relaxed);
        let late = (now - prev).saturating_sub(1_000_000);
        self.worst_micros.fetch_max(late, Ordering::Relaxed);
        if late > 100_000 {
            self.missed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A prober that answers at once (or delegates), and records when it was called.
struct Measuring {
    lateness: Arc<Lateness>,
    counting: Arc<std::sync::atomic::AtomicBool>,
    inner: Option<Arc<dyn Prober>>,
}

#[async_trait::async_trait]
impl Prober for Measuring {
    async fn probe(
        &self,
        kind: ProbeKind,
        spec: &ProbeSpec,
        target: &ProbeTarget,
    ) -> Result<ProbeOutcome, ProbeError> {
        // The container ID carries the worker's index.
        let worker: usize = target.container_id.parse().unwrap_or(0);
        self.lateness
            .record(worker, self.counting.load(Ordering::Relaxed));
        match &self.inner {
            Some(inner) => inner.probe(kind, spec, target).await,
            None => Ok(ProbeOutcome::success("")),
        }
    }
}

async fn scale(
    label: &str,
    workers: usize,
    seconds: u64,
    inner: Option<Arc<dyn Prober>>,
    ports: &[u16],
    measure_memory: bool,
) -> String {
    let lateness = Arc::new(Lateness::new(workers));
    let counting = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let prober = Arc::new(Measuring {
        lateness: lateness.clone(),
        counting: counting.clone(),
        inner,
    });
    let rss_before = rss_bytes();
    let (manager, mut updates) = ProbeManager::builder(prober).build().expect("manager");
    tokio::spawn(async move { while updates.recv().await.is_some() {} });
    let now = SystemTime::now();
    for i in 0..workers {
        let port = ports.get(i % ports.len().max(1)).copied().unwrap_or(1);
        let spec = ProbeSpec {
            handler: ProbeHandler::TcpSocket {
                host: None,
                port: PortRef::Number(port),
            },
            timing: ProbeTiming {
                period_seconds: 1,
                ..ProbeTiming::default()
            },
        };
        let uid = format!("pod-{i}");
        manager
            .add_pod(
                PodProbes::new(uid.clone()).container(ContainerProbes::new("c").readiness(spec)),
            )
            .expect("add_pod");
        manager.set_pod_status(
            &uid,
            PodStatus::new(PodPhase::Running)
                .pod_ip(IpAddr::V4(Ipv4Addr::LOCALHOST))
                .container(ContainerStatus::running("c", i.to_string(), now)),
        );
    }
    // Let the workers spread out over a few periods, then measure a window.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss = rss_bytes().saturating_sub(rss_before);
    counting.store(true, Ordering::Relaxed);
    let cpu0 = cpu_time();
    let wall0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let cpu = cpu_time() - cpu0;
    let wall = wall0.elapsed();
    counting.store(false, Ordering::Relaxed);
    let attempts = lateness.attempts.load(Ordering::Relaxed);
    let missed = lateness.missed.load(Ordering::Relaxed);
    let worst = Duration::from_micros(lateness.worst_micros.load(Ordering::Relaxed));
    manager.shutdown().await;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    format!(
        "| {label} | {workers} | {:.1} | {attempts} | {:.1} | {:.2} % | {missed} ({:.3} %) | {:.0} | {} |",
        wall.as_secs_f64(),
        attempts as f64 / wall.as_secs_f64(),
        100.0 * cpu.as_secs_f64() / (wall.as_secs_f64() * cores),
        100.0 * missed as f64 / attempts.max(1) as f64,
        worst.as_secs_f64() * 1e3,
        if measure_memory {
            format!("{:.0}", rss as f64 / workers as f64)
        } else {
            "-".to_owned()
        },
    )
}

/// Server mode (`--serve`, run in a child process): an HTTP server answering 200, 16
/// TCP listeners that accept and close, and a gRPC health server (SERVING). Prints
/// `PORTS <http> <grpc> <tcp>...` and serves until its stdin closes.
fn serve() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http_port = http.local_addr().unwrap().port();
        tokio::spawn(async move {
            loop {
                let Ok((mut conn, _)) = http.accept().await else {
                    continue;
                };
                tokio::spawn(async move {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    let mut buf = [0u8; 2048];
                    let _ = conn.read(&mut buf).await;
                    let _ = conn
                        .write_all(
                            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                        )
                        .await;
                });
            }
        });
        let mut tcp_ports = Vec::new();
        for _ in 0..16 {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tcp_ports.push(l.local_addr().unwrap().port());
            tokio::spawn(async move {
                loop {
                    if let Ok((conn, _)) = l.accept().await {
                        drop(conn);
                    }
                }
            });
        }
        let (reporter, service) = tonic_health::server::health_reporter();
        reporter
            .set_service_status("", tonic_health::ServingStatus::Serving)
            .await;
        let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let grpc_port = grpc.local_addr().unwrap().port();
        tokio::spawn(async move {
            let _keep = reporter;
            let incoming =
                tonic::transport::server::TcpIncoming::from(grpc).with_nodelay(Some(true));
            let _ = tonic::transport::Server::builder()
                .serve_with_incoming(service, incoming)
                .await;
        });
        let tcp: Vec<String> = tcp_ports.iter().map(u16::to_string).collect();
        println!("PORTS {http_port} {grpc_port} {}", tcp.join(" "));
        // Serve until the parent closes our stdin.
        let mut sink = Vec::new();
        let _ = tokio::io::AsyncReadExt::read_to_end(&mut tokio::io::stdin(), &mut sink).await;
    });
}

struct Servers {
    child: std::process::Child,
    http: u16,
    grpc: u16,
    tcp: Vec<u16>,
}

impl Servers {
    fn start() -> Self {
        use std::io::BufRead;
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .arg("--serve")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("starting the server process");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let ports: Vec<u16> = line
            .trim()
            .strip_prefix("PORTS ")
            .unwrap()
            .split(' ')
            .map(|p| p.parse().unwrap())
            .collect();
        Self {
            child,
            http: ports[0],
            grpc: ports[1],
            tcp: ports[2..].to_vec(),
        }
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sequential probes of one kind on a current-thread runtime: probes/s and CPU per probe.
fn throughput(label: &str, handler: ProbeHandler, n: usize) -> String {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let prober = pod_probes::DefaultProber::new();
        let spec = ProbeSpec {
            handler,
            timing: ProbeTiming::default(),
        };
        let target = ProbeTarget {
            pod_ip: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            ..ProbeTarget::default()
        };
        for _ in 0..100 {
            let o = prober
                .probe(ProbeKind::Readiness, &spec, &target)
                .await
                .expect("probe runs");
            assert!(o.result.is_passing(), "{label}: {}", o.output);
        }
        let cpu0 = cpu_time();
        let t0 = Instant::now();
        for _ in 0..n {
            let o = prober
                .probe(ProbeKind::Readiness, &spec, &target)
                .await
                .expect("probe runs");
            assert!(o.result.is_passing(), "{label}: {}", o.output);
        }
        let wall = t0.elapsed();
        let cpu = cpu_time() - cpu0;
        format!(
            "| {label} | {n} | {:.0} | {:.1} | {:.1} |",
            n as f64 / wall.as_secs_f64(),
            wall.as_secs_f64() * 1e6 / n as f64,
            cpu.as_secs_f64() * 1e6 / n as f64,
        )
    })
}

fn main() {
    if std::env::args().any(|a| a == "--serve") {
        serve();
        return;
    }
    let workers = env_usize("PROBE_BENCH_WORKERS", 10_000);
    let seconds = env_usize("PROBE_BENCH_SECONDS", 30) as u64;
    let n = env_usize("PROBE_BENCH_N", 5000);
    let servers = Servers::start();

    println!(
        "### Single-core throughput (sequential probes, current-thread runtime; servers in another process)\n"
    );
    println!("| probe | probes | probes/s | wall µs per probe | CPU µs per probe |");
    println!("|---|---|---|---|---|");
    let http = ProbeHandler::HttpGet {
        scheme: pod_probes::Scheme::Http,
        host: None,
        port: PortRef::Number(servers.http),
        path: "/".into(),
        headers: Vec::new(),
    };
    println!("{}", throughput("httpGet", http, n));
    let tcp = ProbeHandler::TcpSocket {
        host: None,
        port: PortRef::Number(servers.tcp[0]),
    };
    println!("{}", throughput("tcpSocket", tcp, n));
    let grpc = ProbeHandler::Grpc {
        port: servers.grpc,
        service: None,
    };
    println!("{}", throughput("grpc", grpc, n));

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut rows = Vec::new();
    rt.block_on(async {
        rows.push(scale("in-memory prober", workers, seconds, None, &[], true).await);
        // Memory per worker is measured on the first run only (the process has grown by
        // then), so later rows print it as "-".
        let real: Arc<dyn Prober> = Arc::new(pod_probes::DefaultProber::new());
        rows.push(
            scale(
                "tcpSocket (DefaultProber)",
                workers,
                seconds,
                Some(real),
                &servers.tcp,
                false,
            )
            .await,
        );
    });
    println!("\n### {workers} probe workers at a 1 s period\n");
    println!(
        "| prober | workers | window s | attempts | attempts/s | CPU share (all cores) | missed deadlines (>100 ms late) | worst lateness ms | RSS bytes per worker |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for row in rows {
        println!("{row}");
    }
}
