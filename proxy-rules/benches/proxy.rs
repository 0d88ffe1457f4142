//! proxy-rules benchmark: render cost at scale, incremental updates, and real applies.
//!
//! ```sh
//! cargo bench -p proxy-rules --bench proxy                 # everything (root for the apply part)
//! PROXY_BENCH_SIZES=1000,5000 cargo bench -p proxy-rules --bench proxy
//! PROXY_BENCH_PARTS=render,incremental cargo bench -p proxy-rules --bench proxy
//! ```
//!
//! - render: a full render of S ClusterIP services × 10 endpoints (S = 1k, 5k, 10k,
//!   30k) in iptables and nftables mode: median time over repeated renders, the peak
//!   memory the render adds (VmHWM of a child process minus its RSS before rendering),
//!   rule and byte counts.
//! - incremental: at 10k services, one endpoint of one service changes: time to
//!   re-render and assemble the partial update, and the bytes handed to
//!   `iptables-restore` / `nft`.
//! - apply: real syncs in a fresh network namespace (root): full sync and one-endpoint
//!   partial sync at 1k, 5k, 10k services, split into our code (render) and the kernel
//!   tools (`iptables-restore` / `nft -f`).

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;
use std::time::{Duration, Instant};

use proxy_rules::config::ProxyConfig;
use proxy_rules::exec::Target;
use proxy_rules::iptables::IptablesRenderer;
use proxy_rules::model::{
    Endpoint, IpFamily, Protocol, ProxyState, ServiceName, ServicePort, ServicePortName,
};
use proxy_rules::nftables::NftRenderer;
use proxy_rules::store::{EndpointSliceSpec, ServiceSpec, SliceEndpoint, SlicePort};
use proxy_rules::sync::{Event, Execs, Mode, SyncEngine, SyncOptions};

const ENDPOINTS: usize = 10;

fn svc_ip(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(
        172,
        16 + (i >> 16) as u8,
        (i >> 8) as u8,
        i as u8,
    ))
}

fn ep_ip(i: usize, j: usize) -> IpAddr {
    let n = i * ENDPOINTS + j;
    IpAddr::V4(Ipv4Addr::new(10, (n >> 16) as u8, (n >> 8) as u8, n as u8))
}

fn name(i: usize) -> ServicePortName {
    ServicePortName::new(
        format!("ns{}", i / 100),
        format!("svc{i}"),
        "http",
        Protocol::Tcp,
    )
}

fn state(services: usize) -> ProxyState {
    let mut st = ProxyState::new();
    for i in 0..services {
        st.add_service(ServicePort::cluster_ip(name(i), svc_ip(i), 80));
        st.set_endpoints(
            name(i),
            (0..ENDPOINTS)
                .map(|j| Endpoint::ready(ep_ip(i, j), 8080))
                .collect(),
        );
    }
    st
}

fn objects(services: usize, shift: usize) -> (Vec<ServiceSpec>, Vec<EndpointSliceSpec>) {
    let mut svcs = Vec::new();
    let mut slices = Vec::new();
    for i in 0..services {
        let n = name(i);
        svcs.push(
            ServiceSpec::cluster_ip(n.service.clone(), svc_ip(i)).with_port(
                "http",
                Protocol::Tcp,
                80,
                None,
            ),
        );
        slices.push(EndpointSliceSpec {
            name: format!("svc{i}-abc"),
            service: n.service.clone(),
            address_type: Some(IpFamily::V4),
            ports: vec![SlicePort {
                name: "http".into(),
                protocol: Protocol::Tcp,
                port: Some(8080),
            }],
            endpoints: (0..ENDPOINTS)
                .map(|j| SliceEndpoint::ready(ep_ip(i, j + if i == 0 { shift } else { 0 })))
                .collect(),
        });
    }
    (svcs, slices)
}

fn config() -> ProxyConfig {
    ProxyConfig::new("bench-node")
        .node_ip("192.168.0.2".parse().unwrap())
        .cluster_cidr("10.0.0.0/8".parse().unwrap())
}

fn status_kib(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

/// Child: render once for memory, then `reps` more times for time; print one line.
fn child_render(mode: &str, services: usize, reps: usize) {
    let st = state(services);
    let rss_before = status_kib("VmRSS:");
    let t = Instant::now();
    let (bytes, rules, extra) = render_once(mode, &st);
    let first = t.elapsed();
    let hwm = status_kib("VmHWM:");
    let mut times = vec![first];
    for _ in 0..reps {
        let t = Instant::now();
        let _ = render_once(mode, &st);
        times.push(t.elapsed());
    }
    println!(
        "{} {} {} {} {} {}",
        median(times).as_nanos(),
        hwm.saturating_sub(rss_before),
        bytes,
        rules,
        extra,
        rss_before
    );
}

/// A first sync's render, as the sync engine does it: the renderer fed the whole
/// state, then the apply text (split as the engine splits it).
fn render_once(mode: &str, st: &ProxyState) -> (usize, usize, usize) {
    match mode {
        "iptables" => {
            let mut r = IptablesRenderer::new(&config(), IpFamily::V4).unwrap();
            r.update(st, None);
            let bytes = r
                .restore_inputs(None, &[], 2000)
                .iter()
                .map(String::len)
                .sum();
            let c = r.counts();
            (bytes, c.nat + c.filter, r.owned_chains().len() + 10)
        }
        _ => {
            let mut r = NftRenderer::new(&config(), IpFamily::V4).unwrap();
            r.update(st, None);
            let bytes = r.replace_scripts(2000).iter().map(String::len).sum();
            let c = r.ruleset().counts();
            (bytes, c.rules, c.elements)
        }
    }
}

fn part_render(sizes: &[usize]) {
    println!("\n## Full render, S ClusterIP services x {ENDPOINTS} endpoints\n");
    println!(
        "| mode | services | median ms | peak memory added MiB | input state RSS MiB | rules | chains (iptables) / map elements (nft) | output MiB |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let exe = std::env::current_exe().unwrap();
    for &s in sizes {
        for mode in ["iptables", "nftables"] {
            let reps = if s >= 30_000 { 3 } else { 5 };
            let out = Command::new(&exe)
                .args(["--child-render", mode, &s.to_string(), &reps.to_string()])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let line = String::from_utf8_lossy(&out.stdout);
            let f: Vec<u64> = line
                .split_whitespace()
                .map(|x| x.parse().unwrap())
                .collect();
            println!(
                "| {mode} | {s} | {:.1} | {:.1} | {:.1} | {} | {} | {:.1} |",
                f[0] as f64 / 1e6,
                f[1] as f64 / 1024.0,
                f[5] as f64 / 1024.0,
                f[3],
                f[4],
                f[2] as f64 / (1024.0 * 1024.0)
            );
        }
    }
}

fn part_incremental(services: usize) {
    println!(
        "\n## One endpoint of one service changes, {services} services x {ENDPOINTS} endpoints\n"
    );
    println!(
        "| mode | samples | median ms (re-render + assemble) | bytes handed to the tool | full-sync bytes |"
    );
    println!("|---|---|---|---|---|");
    let mut st = state(services);
    let cfg = config();
    // iptables
    let mut r = IptablesRenderer::new(&cfg, IpFamily::V4).unwrap();
    r.update(&st, None);
    let full_bytes = r.ruleset(None, &[]).restore_input().len();
    let mut times = Vec::new();
    let mut bytes = 0;
    let target = name(services / 2);
    let changed: BTreeSet<ServiceName> = BTreeSet::from([target.service.clone()]);
    for k in 0..21 {
        let mut eps = st.endpoints_of(&target).to_vec();
        eps[0].ip = ep_ip(services + k, 0);
        st.set_endpoints(target.clone(), eps);
        let t = Instant::now();
        let upd = r.update(&st, Some(&changed));
        let removed: Vec<String> = upd.removed_chains.iter().cloned().collect();
        let text = r.ruleset(Some(&upd.changed), &removed).restore_input();
        times.push(t.elapsed());
        bytes = text.len();
    }
    println!(
        "| iptables | {} | {} | {bytes} | {full_bytes} |",
        times.len(),
        ms(median(times))
    );
    // nftables
    let mut n = NftRenderer::new(&cfg, IpFamily::V4).unwrap();
    n.update(&st, None);
    n.commit();
    let full_bytes = n.replace_script().len();
    let mut times = Vec::new();
    for k in 0..21 {
        let mut eps = st.endpoints_of(&target).to_vec();
        eps[0].ip = ep_ip(services + 100 + k, 0);
        st.set_endpoints(target.clone(), eps);
        let t = Instant::now();
        n.update(&st, Some(&changed));
        let script = n.partial_script(&[]);
        times.push(t.elapsed());
        bytes = script.len();
        n.commit();
    }
    println!(
        "| nftables | {} | {} | {bytes} | {full_bytes} |",
        times.len(),
        ms(median(times))
    );
}

fn part_apply(sizes: &[usize]) {
    if Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout != b"0\n")
        .unwrap_or(true)
    {
        println!("\n(apply part skipped: needs root)");
        return;
    }
    println!(
        "\n## Real apply in a network namespace (SyncEngine, `iptables-restore --noflush` / `nft -f -`)\n"
    );
    println!(
        "| mode | services | sync | total ms | our code ms | kernel tools ms | our share | bytes | calls |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for &s in sizes {
        for mode in [Mode::Iptables, Mode::Nftables] {
            let ns = format!("nsdk-bench-{}-{s}-{}", std::process::id(), mode.as_str());
            let ok = Command::new("ip")
                .args(["netns", "add", &ns])
                .status()
                .unwrap()
                .success();
            assert!(ok, "ip netns add {ns}");
            let opts = SyncOptions {
                conntrack_cleanup: false,
                ..SyncOptions::default()
            };
            let mut e = SyncEngine::new(
                mode,
                &[IpFamily::V4],
                config(),
                opts,
                Execs::commands(Target::netns(&ns)),
            )
            .unwrap();
            let (svcs, slices) = objects(s, 0);
            e.apply(Event::Replace {
                services: svcs,
                slices,
            })
            .unwrap();
            let full = rt.block_on(e.sync(false)).remove(0).unwrap();
            // One endpoint of service 0 changes.
            let (_, slices) = objects(s, ENDPOINTS);
            e.apply(Event::Slice(slices[0].clone())).unwrap();
            let partial = rt.block_on(e.sync(false)).remove(0).unwrap();
            for (kind, r) in [("full", &full), ("partial", &partial)] {
                let ours = r.duration.saturating_sub(r.apply);
                println!(
                    "| {} | {s} | {kind} | {} | {} | {} | {:.0}% | {} | {} |",
                    mode.as_str(),
                    ms(r.duration),
                    ms(ours),
                    ms(r.apply),
                    100.0 * ours.as_secs_f64() / r.duration.as_secs_f64(),
                    r.bytes,
                    r.apply_calls
                );
            }
            let _ = Command::new("ip").args(["netns", "delete", &ns]).status();
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--child-render") {
        child_render(&args[2], args[3].parse().unwrap(), args[4].parse().unwrap());
        return;
    }
    let sizes: Vec<usize> = std::env::var("PROXY_BENCH_SIZES")
        .unwrap_or_else(|_| "1000,5000,10000,30000".into())
        .split(',')
        .map(|s| s.trim().parse().unwrap())
        .collect();
    let parts =
        std::env::var("PROXY_BENCH_PARTS").unwrap_or_else(|_| "render,incremental,apply".into());
    println!(
        "# proxy-rules benchmark ({} endpoints per service)",
        ENDPOINTS
    );
    if parts.contains("render") {
        part_render(&sizes);
    }
    if parts.contains("incremental") {
        part_incremental(10_000);
    }
    if parts.contains("apply") {
        let apply_sizes: Vec<usize> = sizes.iter().copied().filter(|s| *s <= 10_000).collect();
        part_apply(&apply_sizes);
    }
}
