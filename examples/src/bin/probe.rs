//! `probe`: run one Kubernetes probe (a `core/v1` Probe, as in a pod spec) with the
//! kubelet's semantics and print the verdict.
//!
//! ```text
//! probe --probe <FILE | inline JSON/YAML> --pod-ip <IP> [--port NAME=NUMBER]...
//!       [--kind liveness|readiness|startup] [--watch]
//!       [--runtime-endpoint unix:///run/containerd/containerd.sock --container-id ID]
//! ```
//!
//! One-shot: one attempt (probe errors retried up to 3 times, as the kubelet does),
//! prints `<result>: <message>`, exits 0 when it passes and 1 otherwise. `--watch` runs
//! the full worker semantics (initial delay, period, thresholds, startup gating) and
//! prints every transition with a timestamp until interrupted. Exec probes run through
//! CRI `ExecSync` in `--container-id` on `--runtime-endpoint`.

use std::net::IpAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{Context as _, anyhow, bail};
use clap::Parser;
use cri_client::CriClient;
use pod_probes::manager::ContainerProbes;
use pod_probes::{
    ContainerPort, ContainerStatus, DefaultProber, ExecError, ExecOutput, ExecRunner, PodPhase,
    PodProbes, PodStatus, ProbeKind, ProbeManager, ProbeSpec, ProbeTarget, Prober,
};

#[derive(Debug, Parser)]
#[command(
    name = "probe",
    version,
    about = "Run a Kubernetes probe with the kubelet's semantics"
)]
struct Args {
    /// A core/v1 Probe: a file path, or the probe inline as JSON or YAML.
    #[arg(long)]
    probe: String,
    /// The pod IP: the host of HTTP, TCP and gRPC probes that set none.
    #[arg(long)]
    pod_ip: Option<IpAddr>,
    /// A named container port, NAME=NUMBER (repeatable), for probes that name ports.
    #[arg(long = "port", value_name = "NAME=NUMBER")]
    ports: Vec<String>,
    /// Which probe this is (liveness and startup require successThreshold 1).
    #[arg(long, default_value = "readiness")]
    kind: String,
    /// Run the worker semantics and print each transition until interrupted.
    #[arg(long)]
    watch: bool,
    /// CRI endpoint for exec probes.
    #[arg(long, env = "CONTAINER_RUNTIME_ENDPOINT")]
    runtime_endpoint: Option<String>,
    /// The container exec probes run in (its runtime ID).
    #[arg(long, default_value = "")]
    container_id: String,
    /// Kubelet version for the User-Agent (`kube-probe/MAJOR.MINOR`).
    #[arg(long, default_value = "1.36")]
    kubelet_version: String,
}

/// Exec probes through CRI `ExecSync`, as the kubelet runs them.
struct CriExec(CriClient);

#[async_trait::async_trait]
impl ExecRunner for CriExec {
    async fn exec(
        &self,
        container_id: &str,
        command: &[String],
        timeout: Duration,
    ) -> Result<ExecOutput, ExecError> {
        let seconds = i64::try_from(timeout.as_secs().max(1)).unwrap_or(i64::MAX);
        match self
            .0
            .exec_sync(container_id, command.to_vec(), seconds)
            .await
        {
            Ok(r) => {
                let mut output = r.stdout;
                output.extend_from_slice(&r.stderr);
                Ok(ExecOutput {
                    exit_code: r.exit_code,
                    output,
                })
            }
            Err(e) if e.is_deadline_exceeded() => Err(ExecError::Timeout(timeout)),
            Err(e) => Err(ExecError::Runtime(e.to_string())),
        }
    }
}

fn parse_kind(kind: &str) -> anyhow::Result<ProbeKind> {
    match kind {
        "liveness" => Ok(ProbeKind::Liveness),
        "readiness" => Ok(ProbeKind::Readiness),
        "startup" => Ok(ProbeKind::Startup),
        other => bail!("--kind {other:?}: use liveness, readiness or startup"),
    }
}

fn parse_port(spec: &str) -> anyhow::Result<ContainerPort> {
    let (name, number) = spec
        .split_once('=')
        .ok_or_else(|| anyhow!("--port {spec:?}: expected NAME=NUMBER"))?;
    let port: u16 = number
        .parse()
        .with_context(|| format!("--port {spec:?}: bad port number"))?;
    if name.is_empty() || port == 0 {
        bail!("--port {spec:?}: expected NAME=NUMBER with a name and a port 1-65535");
    }
    Ok(ContainerPort {
        name: Some(name.to_owned()),
        port,
    })
}

/// The probe from a file or inline text (JSON is YAML too).
fn load_probe(arg: &str) -> anyhow::Result<k8s_openapi::api::core::v1::Probe> {
    let path = std::path::Path::new(arg);
    let (text, origin) = if path.is_file() {
        (
            std::fs::read_to_string(path).with_context(|| format!("reading {arg}"))?,
            arg.to_owned(),
        )
    } else {
        (arg.to_owned(), "the inline --probe".to_owned())
    };
    serde_yaml_ng::from_str(&text).with_context(|| format!("{origin} is not a core/v1 Probe"))
}

fn timestamp() -> String {
    jiff::Timestamp::now().to_string()
}

async fn run(args: Args) -> anyhow::Result<bool> {
    let kind = parse_kind(&args.kind)?;
    let probe = load_probe(&args.probe)?;
    let spec: ProbeSpec = pod_probes::k8s::probe_spec(kind, &probe)?;
    spec.timing.validate(kind)?;
    let ports = args
        .ports
        .iter()
        .map(|p| parse_port(p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let (major, minor) = args
        .kubelet_version
        .split_once('.')
        .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
        .ok_or_else(|| {
            anyhow!(
                "--kubelet-version {:?}: expected MAJOR.MINOR",
                args.kubelet_version
            )
        })?;
    let mut prober = DefaultProber::new().kubelet_version(major, minor);
    if let Some(endpoint) = &args.runtime_endpoint {
        prober = prober.exec_runner(Arc::new(CriExec(CriClient::connect(endpoint)?)));
    }
    let prober: Arc<dyn Prober> = Arc::new(prober);

    if !args.watch {
        let target = ProbeTarget {
            pod_ip: args.pod_ip,
            container_id: args.container_id.clone(),
            ports,
        };
        // Errors (the probe could not run) are retried up to 3 times, as the kubelet.
        let mut last_error = None;
        for _ in 0..3 {
            match prober.probe(kind, &spec, &target).await {
                Ok(outcome) => {
                    println!(
                        "{}: {}",
                        outcome.result,
                        outcome.output.trim_end_matches('\n')
                    );
                    return Ok(outcome.result.is_passing());
                }
                Err(e) => last_error = Some(e),
            }
        }
        let e = last_error.expect("three attempts");
        println!("error: {e}");
        return Ok(false);
    }

    let (manager, mut updates) = ProbeManager::builder(prober).build()?;
    let container = ContainerProbes::new("probe").ports(ports);
    let container = match kind {
        ProbeKind::Liveness => container.liveness(spec),
        ProbeKind::Readiness => container.readiness(spec),
        ProbeKind::Startup => container.startup(spec),
    };
    manager.add_pod(PodProbes::new("probe-cli").container(container))?;
    let mut status = PodStatus::new(PodPhase::Running);
    if let Some(ip) = args.pod_ip {
        status = status.pod_ip(ip);
    }
    let container_id = if args.container_id.is_empty() {
        "probe-cli".to_owned()
    } else {
        args.container_id
    };
    manager.set_pod_status(
        "probe-cli",
        status.container(ContainerStatus::running(
            "probe",
            container_id,
            SystemTime::now(),
        )),
    );
    println!("{} watching {} probe", timestamp(), kind.field_name());
    loop {
        tokio::select! {
            update = updates.recv() => {
                let Some(u) = update else { return Ok(true) };
                println!(
                    "{} {} {:?}: {}",
                    timestamp(),
                    u.kind.field_name(),
                    u.result,
                    u.output.trim_end_matches('\n')
                );
            }
            _ = tokio::signal::ctrl_c() => {
                manager.shutdown().await;
                return Ok(true);
            }
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Args::parse()).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("probe: {e:#}");
            ExitCode::from(1)
        }
    }
}
