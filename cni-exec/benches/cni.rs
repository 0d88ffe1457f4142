//! cni-exec benchmarks against Debian's real plugins, as root (prints markdown):
//!
//! 1. the floor: running a trivial plugin (`/bin/true`) through `RawExec`, and VERSION of
//!    the Go `bridge` plugin;
//! 2. cni-exec's overhead on ADD and DEL of the bridge + host-local + portmap chain: the
//!    operation's wall time against the time spent inside plugin executions (measured by
//!    a timing wrapper around the executor), as a ratio;
//! 3. 16 ADDs (and DELs) at once on one bridge against 16 one after another.
//!
//! Run: `cargo bench -p cni-exec --bench cni`. `CNI_BENCH_N` (default 30) chains per
//! measurement.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cni_exec::config::NetworkConfigList;
use cni_exec::exec::{ExecControl, PluginExec, RawExec};
use cni_exec::network::{CniConfig, RuntimeConf};
use node_sdk_e2e::Netns;
use serde_json::json;

/// Delegates to `RawExec` and adds up the time spent inside plugin executions.
struct Timed {
    inner: RawExec,
    spent: Mutex<Duration>,
}

#[async_trait::async_trait]
impl PluginExec for Timed {
    fn find(&self, plugin: &str, paths: &[PathBuf]) -> cni_exec::Result<PathBuf> {
        self.inner.find(plugin, paths)
    }

    async fn exec(
        &self,
        path: &Path,
        env: &[(String, String)],
        stdin: &[u8],
        ctl: &ExecControl,
    ) -> cni_exec::Result<Vec<u8>> {
        let t = Instant::now();
        let out = self.inner.exec(path, env, stdin, ctl).await;
        *self.spent.lock().unwrap() += t.elapsed();
        out
    }
}

impl Timed {
    fn take(&self) -> Duration {
        std::mem::take(&mut *self.spent.lock().unwrap())
    }
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

fn row(name: &str, mut samples: Vec<Duration>) -> String {
    samples.sort();
    format!(
        "| {name} | {} | {:.2} | {:.2} |",
        samples.len(),
        pct(&samples, 0.5),
        pct(&samples, 0.9)
    )
}

fn list(name: &str, bridge: &str, subnet: &str, data: &Path) -> NetworkConfigList {
    let conflist = json!({
        "cniVersion": "1.0.0",
        "name": name,
        "plugins": [
            {"type": "bridge", "bridge": bridge, "isGateway": true,
             "ipam": {"type": "host-local", "ranges": [[{"subnet": subnet}]], "dataDir": data.to_str().unwrap()}},
            {"type": "portmap", "capabilities": {"portMappings": true}}
        ]
    });
    NetworkConfigList::from_bytes(conflist.to_string().as_bytes()).unwrap()
}

fn rt(id: String, ns: &Netns, port: u16) -> RuntimeConf {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "portMappings".into(),
        json!([{"hostPort": port, "containerPort": 80, "protocol": "tcp"}]),
    );
    RuntimeConf {
        container_id: id,
        netns: Some(ns.path()),
        ifname: "eth0".into(),
        args: vec![("IgnoreUnknown".into(), "1".into())],
        capability_args: caps,
    }
}

fn main() {
    node_sdk_e2e::require_root();
    let n: usize = std::env::var("CNI_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let rt_ = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = std::env::temp_dir().join(node_sdk_e2e::unique_name("cnibench"));
    let bridge = format!("cnb{}", std::process::id() % 100_000);
    let subnet = format!("10.248.{}.0/24", std::process::id() % 200 + 20);
    rt_.block_on(async {
        // 1. The floor.
        let raw = RawExec::new();
        let mut floor = Vec::new();
        for _ in 0..300 {
            let t = Instant::now();
            raw.exec(Path::new("/bin/true"), &[], b"{}", &ExecControl::new())
                .await
                .unwrap();
            floor.push(t.elapsed());
        }
        let mut version = Vec::new();
        for _ in 0..100 {
            let t = Instant::now();
            cni_exec::exec::version(
                &raw,
                "bridge",
                &[PathBuf::from("/usr/lib/cni")],
                &ExecControl::new(),
            )
            .await
            .unwrap();
            version.push(t.elapsed());
        }
        println!("### Floor\n\n| what | n | p50 ms | p90 ms |\n|---|---|---|---|");
        println!("{}", row("exec of `/bin/true` through RawExec", floor));
        println!("{}", row("VERSION of `bridge` (Go plugin)", version));

        // 2. Overhead of ADD and DEL over the plugins' own execution.
        let timed = Arc::new(Timed {
            inner: RawExec::new(),
            spent: Mutex::new(Duration::ZERO),
        });
        let cni = CniConfig::with_exec(
            vec![PathBuf::from("/usr/lib/cni")],
            dir.join("cache"),
            timed.clone(),
        );
        let l = Arc::new(list("bench", &bridge, &subnet, &dir.join("ipam")));
        cni.effective_version(&l).await.unwrap(); // VERSION answers cached before measuring
        timed.take();
        let (mut add_total, mut add_plugins, mut del_total, mut del_plugins) =
            (vec![], vec![], vec![], vec![]);
        for i in 0..n {
            let ns = Netns::new("cb");
            let r = rt(
                format!("bench{i}x{}", std::process::id()),
                &ns,
                30_000 + i as u16,
            );
            let t = Instant::now();
            cni.add(&l, &r).await.expect("ADD");
            add_total.push(t.elapsed());
            add_plugins.push(timed.take());
            let t = Instant::now();
            cni.del(&l, &r).await.expect("DEL");
            del_total.push(t.elapsed());
            del_plugins.push(timed.take());
        }
        let sum = |v: &[Duration]| v.iter().sum::<Duration>().as_secs_f64();
        println!("\n### ADD and DEL of bridge + host-local + portmap (n = {n})\n");
        println!("| op | op p50 ms | plugins p50 ms | cni-exec overhead mean ms | op / plugins |");
        println!("|---|---|---|---|---|");
        for (name, total, plugins) in [
            ("ADD", &add_total, &add_plugins),
            ("DEL", &del_total, &del_plugins),
        ] {
            let (mut t, mut p) = (total.clone(), plugins.clone());
            t.sort();
            p.sort();
            println!(
                "| {name} | {:.2} | {:.2} | {:.3} | {:.4} |",
                pct(&t, 0.5),
                pct(&p, 0.5),
                (sum(total) - sum(plugins)) * 1e3 / n as f64,
                sum(total) / sum(plugins)
            );
        }

        // 3. 16 at once against 16 in sequence.
        let plain = CniConfig::new(vec![PathBuf::from("/usr/lib/cni")], dir.join("cache2"));
        let namespaces: Vec<Netns> = (0..16).map(|_| Netns::new("cc")).collect();
        let runtimes: Vec<RuntimeConf> = namespaces
            .iter()
            .enumerate()
            .map(|(i, ns)| {
                rt(
                    format!("conc{i}x{}", std::process::id()),
                    ns,
                    31_000 + i as u16,
                )
            })
            .collect();
        let t = Instant::now();
        for r in &runtimes {
            plain.add(&l, r).await.unwrap();
        }
        let seq_add = t.elapsed();
        let t = Instant::now();
        for r in &runtimes {
            plain.del(&l, r).await.unwrap();
        }
        let seq_del = t.elapsed();
        let t = Instant::now();
        let adds: Vec<_> = runtimes
            .iter()
            .map(|r| {
                let (c, l, r) = (plain.clone(), l.clone(), r.clone());
                tokio::spawn(async move { c.add(&l, &r).await })
            })
            .collect();
        for a in adds {
            a.await.unwrap().unwrap();
        }
        let par_add = t.elapsed();
        let t = Instant::now();
        let dels: Vec<_> = runtimes
            .iter()
            .map(|r| {
                let (c, l, r) = (plain.clone(), l.clone(), r.clone());
                tokio::spawn(async move { c.del(&l, &r).await })
            })
            .collect();
        for d in dels {
            d.await.unwrap().unwrap();
        }
        let par_del = t.elapsed();
        println!("\n### 16 attachments: concurrent against sequential (wall ms)\n");
        println!("| op | sequential | concurrent | speed-up |\n|---|---|---|---|");
        for (name, s, p) in [("ADD", seq_add, par_add), ("DEL", seq_del, par_del)] {
            println!(
                "| {name} x16 | {:.0} | {:.0} | {:.2} |",
                s.as_secs_f64() * 1e3,
                p.as_secs_f64() * 1e3,
                s.as_secs_f64() / p.as_secs_f64()
            );
        }
        drop(namespaces);
    });
    let _ = std::process::Command::new("ip")
        .args(["link", "delete", &bridge])
        .status();
    let _ = std::fs::remove_dir_all(&dir);
}
