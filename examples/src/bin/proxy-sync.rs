//! `proxy-sync`: keep a node's Service rules in sync, as kube-proxy does.
//!
//! ```text
//! proxy-sync --mode iptables|nftables [node options] [--netns NAME] <file>
//! proxy-sync --mode iptables|nftables [node options] [--netns NAME] --kubeconfig PATH
//! proxy-sync --cleanup [--netns NAME]
//! ```
//!
//! It reads the Services, EndpointSlices and ServiceCIDRs of `<file>` (a Kubernetes
//! List or a YAML stream, as for `proxy-render`), or watches them on the API server of
//! `--kubeconfig` (and this node's labels, for topology hints), applies them, and keeps
//! applying as they change: only the Services that changed are rewritten (partial syncs), a
//! full sync runs at least hourly and after any failure, the canary is checked every
//! `--iptables-sync-period`, and UDP conntrack flows of removed endpoints are deleted.
//! Each sync's duration is printed. The `healthCheckNodePort`s of LoadBalancer Services
//! with `externalTrafficPolicy: Local` are served (200 with local endpoints, else 503).
//! A file that stops parsing is reported and the
//! rules stay as they are. Metrics with kube-proxy's names are served on
//! `--metrics-bind-address` (`/metrics`; `/healthz` says when the rules were last
//! synced). SIGINT/SIGTERM stop it and leave the rules in place, as kube-proxy does.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Parser;
use node_sdk_examples::proxy::{ModeArg, NodeArgs, read_objects};
use proxy_rules::exec::{Commands, Target};
use proxy_rules::health::ServiceHealthServer;
use proxy_rules::metrics::Metrics;
use proxy_rules::model::IpFamily;
use proxy_rules::sync::{Event, Execs, Mode, SyncEngine, SyncOptions, SyncReport};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Parser)]
#[command(
    name = "proxy-sync",
    about = "Keep a node's Service rules in sync with Services and EndpointSlices",
    version
)]
struct Cli {
    /// The proxy mode.
    #[arg(long, alias = "proxy-mode", value_enum, default_value = "iptables")]
    mode: ModeArg,
    #[command(flatten)]
    node: NodeArgs,
    /// Apply the rules inside this network namespace (`ip netns exec NAME`).
    #[arg(long, value_name = "NAME")]
    netns: Option<String>,
    /// The minimum time between syncs.
    #[arg(long = "iptables-min-sync-period", value_parser = humantime, default_value = "1s")]
    min_sync_period: Duration,
    /// The longest time between syncs, and the canary check period.
    #[arg(long = "iptables-sync-period", value_parser = humantime, default_value = "30s")]
    sync_period: Duration,
    /// How often the input file is checked for changes.
    #[arg(long = "file-check-period", value_parser = humantime, default_value = "1s")]
    file_check_period: Duration,
    /// Serve `/metrics` and `/healthz` here (empty: do not serve).
    #[arg(long = "metrics-bind-address", default_value = "127.0.0.1:10249")]
    metrics_bind_address: String,
    /// Sync once and exit (status 1 if the sync failed).
    #[arg(long)]
    once: bool,
    /// Remove the rules of every mode (iptables chains, nftables tables) and exit.
    #[arg(long)]
    cleanup: bool,
    /// Watch the API server of this kubeconfig instead of reading a file.
    #[arg(long, value_name = "PATH", conflicts_with = "file")]
    kubeconfig: Option<PathBuf>,
    /// The input file.
    #[arg(required_unless_present_any = ["cleanup", "kubeconfig"])]
    file: Option<PathBuf>,
}

fn humantime(s: &str) -> Result<Duration, String> {
    let (num, unit) = s.trim().split_at(
        s.trim()
            .find(|c: char| c.is_ascii_alphabetic())
            .unwrap_or(s.len()),
    );
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 500ms, 1s, 2m"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" | "" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (ms, s, m, h)")),
    };
    Ok(Duration::from_secs_f64(secs))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("proxy-sync: starting the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("proxy-sync: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn print_report(r: &Result<SyncReport, String>) {
    let now = jiff::Timestamp::now()
        .round(jiff::Unit::Millisecond)
        .unwrap_or(jiff::Timestamp::now());
    match r {
        Ok(r) => println!(
            "{now} sync {} {} {}: {:.1} ms (our code {:.1} ms, kernel tools {:.1} ms), {} bytes, {} service ports changed, {} chains deleted, {} UDP conntrack flows deleted",
            match r.family {
                IpFamily::V4 => "ipv4",
                IpFamily::V6 => "ipv6",
            },
            r.mode.as_str(),
            if r.full { "full" } else { "partial" },
            r.duration.as_secs_f64() * 1000.0,
            r.duration.saturating_sub(r.apply).as_secs_f64() * 1000.0,
            r.apply.as_secs_f64() * 1000.0,
            r.bytes,
            r.changed_service_ports,
            r.deleted_chains,
            r.conntrack.deleted,
        ),
        Err(e) => {
            println!("{now} sync failed (the previous rules stay; the next sync is full): {e}")
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let target = match &cli.netns {
        Some(ns) => Target::netns(ns.clone()),
        None => Target::host(),
    };
    if cli.cleanup {
        let c = Commands::new(target);
        for family in [IpFamily::V4, IpFamily::V6] {
            let chains = proxy_rules::sync::cleanup_iptables(&c, family).await?;
            let table = proxy_rules::sync::cleanup_nftables(&c, family).await?;
            println!(
                "{family}: removed {chains} iptables chains{}",
                if table { " and the nftables table" } else { "" }
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mode = match cli.mode {
        ModeArg::Iptables => Mode::Iptables,
        ModeArg::Nftables => Mode::Nftables,
        ModeArg::Ipvs => bail!(
            "IPVS mode is not synced by this CLI (our kernels have no IP_VS): `proxy-render --mode ipvs` prints the plan, proxy_rules::ipvs has the applier"
        ),
    };
    let mut config = cli.node.config()?;
    // As kube-proxy: `--nodeport-addresses` CIDRs match the node's interface addresses.
    if cli.node.host_address.is_empty() {
        config.host_addresses = node_sdk_examples::proxy::local_addresses(&target).await?;
    }
    let options = SyncOptions {
        min_sync_period: cli.min_sync_period,
        sync_period: cli.sync_period,
        ..SyncOptions::default()
    };
    let node_name = config.node_name.clone();
    let mut engine = SyncEngine::new(
        mode,
        &cli.node.families(),
        config,
        options,
        Execs::commands(target),
    )?;
    // kube-proxy's service health server on the healthCheckNodePorts.
    engine.set_health_server(match &cli.netns {
        Some(ns) => ServiceHealthServer::in_netns(format!("/run/netns/{ns}")),
        None => ServiceHealthServer::new(),
    });
    let metrics = engine.metrics();
    let cancel = CancellationToken::new();
    let (tx, mut rx) = mpsc::channel(256);

    // The source: an API server, or a file (whose first read must succeed: nothing is
    // applied from a broken file).
    if let Some(path) = &cli.kubeconfig {
        let kubeconfig = kube::config::Kubeconfig::read_from(path)
            .with_context(|| format!("reading {}", path.display()))?;
        let kc = kube::Config::from_custom_kubeconfig(
            kubeconfig,
            &kube::config::KubeConfigOptions::default(),
        )
        .await
        .with_context(|| format!("using {}", path.display()))?;
        let client = kube::Client::try_from(kc).context("creating the API client")?;
        eprintln!(
            "watching Services and EndpointSlices on the API server of {}",
            path.display()
        );
        tokio::spawn(proxy_rules::watch::watch(
            client,
            node_name,
            tx.clone(),
            cancel.clone(),
        ));
    } else {
        let file = cli
            .file
            .clone()
            .context("an input file or --kubeconfig is needed")?;
        let path = file.to_string_lossy().into_owned();
        let (text, objects) = read(&path)?;
        tx.send(Event::ServiceCidrs(objects.service_cidrs.clone()))
            .await?;
        tx.send(Event::Replace {
            services: objects.services,
            slices: objects.slices,
        })
        .await?;
        tx.send(Event::Synced).await?;
        tokio::spawn(watch_file(
            path,
            text,
            cli.file_check_period,
            tx.clone(),
            cancel.clone(),
        ));
    }

    if !cli.metrics_bind_address.is_empty() {
        let addr: SocketAddr = cli
            .metrics_bind_address
            .parse()
            .with_context(|| format!("--metrics-bind-address {:?}", cli.metrics_bind_address))?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding {addr}"))?;
        eprintln!(
            "serving metrics on http://{}/metrics",
            listener.local_addr()?
        );
        tokio::spawn(serve_metrics(listener, metrics.clone(), cancel.clone()));
    }

    if cli.once {
        // Everything up to the initial lists, then one sync.
        let mut engine = engine;
        let deadline = tokio::time::sleep(Duration::from_secs(60));
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                ev = rx.recv() => match ev {
                    Some(Event::Synced) => break,
                    Some(ev) => { engine.apply(ev)?; }
                    None => bail!("the source ended before the initial lists were complete"),
                },
                _ = &mut deadline => bail!("the initial lists were not complete within 60 s"),
            }
        }
        cancel.cancel();
        let mut failed = false;
        for r in engine.sync(false).await {
            let r = r.map_err(|e| e.to_string());
            failed |= r.is_err();
            print_report(&r);
        }
        return Ok(if failed {
            ExitCode::from(1)
        } else {
            ExitCode::SUCCESS
        });
    }

    drop(tx);
    let (report_tx, mut report_rx) = mpsc::channel(64);
    let runner = tokio::spawn(engine.run(rx, cancel.clone(), Some(report_tx)));
    tokio::spawn(async move {
        while let Some(r) = report_rx.recv().await {
            print_report(&r);
        }
    });

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term.recv() => {},
    }
    eprintln!("stopping; the rules stay in place");
    cancel.cancel();
    let _ = runner.await;
    Ok(ExitCode::SUCCESS)
}

fn read(path: &str) -> anyhow::Result<(String, proxy_rules::k8s::Objects)> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    let objects = read_objects(path)?;
    Ok((text, objects))
}

/// Re-read the file when its content changes; a file that does not parse is reported
/// and ignored (the rules stay as they are).
async fn watch_file(
    path: String,
    mut last: String,
    period: Duration,
    tx: mpsc::Sender<Event>,
    cancel: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(period) => {}
        }
        let Ok(text) = tokio::fs::read_to_string(&path).await else {
            continue;
        };
        if text == last {
            continue;
        }
        last = text.clone();
        match proxy_rules::k8s::parse_objects(&text, &path) {
            Ok(objects) => {
                for e in &objects.errors {
                    eprintln!("warning: skipped: {e}");
                }
                let _ = tx.send(Event::ServiceCidrs(objects.service_cidrs)).await;
                let _ = tx
                    .send(Event::Replace {
                        services: objects.services,
                        slices: objects.slices,
                    })
                    .await;
            }
            Err(e) => {
                eprintln!("error: {e}; keeping the rules from the last good version of {path}")
            }
        }
    }
}

/// A minimal HTTP/1.1 server: `/metrics` (Prometheus text), `/healthz`.
async fn serve_metrics(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    cancel: CancellationToken,
) {
    loop {
        let conn = tokio::select! {
            _ = cancel.cancelled() => return,
            c = listener.accept() => c,
        };
        let Ok((mut stream, _)) = conn else { continue };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            // Read the request head (up to the blank line), at most 8 KiB.
            let mut buf = Vec::new();
            let mut chunk = [0u8; 1024];
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 8192 {
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            let request = String::from_utf8_lossy(&buf);
            let path = request.split_whitespace().nth(1).unwrap_or("/");
            let (status, body) = match path {
                "/metrics" => ("200 OK", metrics.render()),
                "/healthz" => (
                    "200 OK",
                    format!("{{\"syncs\": {}}}\n", metrics.sync_count()),
                ),
                _ => ("404 Not Found", "not found\n".to_owned()),
            };
            let response = format!(
                "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
        });
    }
}
