//! `stats` and `statsp`: two samples `--seconds` apart give the CPU
//! percentage; `-o json|yaml` prints one sample as is; `-w` repeats.

use std::collections::HashMap;
use std::io::IsTerminal as _;
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use cri_client::v1::{self, UInt64Value};

use super::super::client::Clients;
use super::super::errors::CriResultExt as _;
use super::super::filter::parse_labels;
use super::super::json;
use super::super::log;
use super::super::table::Table;
use super::super::units::{human_size, truncate_id};
use super::{resolve_container, resolve_filter, resolve_pod};
use crate::crictl::cli::{StatsArgs, StatspArgs};

fn value(v: Option<&UInt64Value>) -> u64 {
    v.map_or(0, |v| v.value)
}

/// CPU use between two samples, in percent of one core.
fn cpu_percent(
    usage: u64,
    old_usage: u64,
    timestamp: i64,
    old_timestamp: i64,
) -> Result<f64, String> {
    if usage == 0 {
        return Ok(0.0);
    }
    let elapsed = timestamp - old_timestamp;
    if elapsed == 0 {
        return Err("cpu stat is not updated during sample".into());
    }
    #[allow(clippy::cast_precision_loss)]
    let percent = usage.wrapping_sub(old_usage) as f64 / elapsed as f64 * 100.0;
    Ok(percent)
}

#[allow(clippy::cast_precision_loss)]
fn size(bytes: u64) -> String {
    human_size(bytes as f64)
}

/// The `stats` table from two samples (crictl's `displayStats`).
fn container_stats_table(
    old: &[v1::ContainerStats],
    new: &[v1::ContainerStats],
    all: bool,
) -> Result<String, String> {
    let old: HashMap<&str, &v1::ContainerStats> = old
        .iter()
        .map(|s| (s.attributes.as_ref().map_or("", |a| a.id.as_str()), s))
        .collect();
    let mut table = Table::new();
    table.row([
        "CONTAINER",
        "NAME",
        "CPU %",
        "MEM",
        "DISK",
        "INODES",
        "SWAP",
    ]);
    for s in new {
        let attributes = s.attributes.clone().unwrap_or_default();
        let cpu = s.cpu.unwrap_or_default();
        let usage = value(cpu.usage_core_nano_seconds.as_ref());
        let memory = value(s.memory.as_ref().and_then(|m| m.working_set_bytes.as_ref()));
        let layer = s.writable_layer.clone().unwrap_or_default();
        let swap = value(s.swap.as_ref().and_then(|m| m.swap_usage_bytes.as_ref()));
        if !all && usage == 0 && memory == 0 {
            continue;
        }
        let Some(previous) = old.get(attributes.id.as_str()) else {
            continue;
        };
        let previous_cpu = previous.cpu.unwrap_or_default();
        let percent = cpu_percent(
            usage,
            value(previous_cpu.usage_core_nano_seconds.as_ref()),
            cpu.timestamp,
            previous_cpu.timestamp,
        )?;
        table.row([
            truncate_id(&attributes.id, "").to_owned(),
            attributes.metadata.map(|m| m.name).unwrap_or_default(),
            format!("{percent:.2}"),
            size(memory),
            size(value(layer.used_bytes.as_ref())),
            value(layer.inodes_used.as_ref()).to_string(),
            size(swap),
        ]);
    }
    Ok(table.render())
}

/// The CPU and memory of a pod's stats, Linux or Windows.
fn pod_usage(s: &v1::PodSandboxStats) -> Result<(u64, u64, i64), String> {
    match (&s.linux, &s.windows) {
        (Some(_), Some(_)) => Err(format!(
            "pod {:?} has both linux and windows stats which is not supported",
            truncate_id(s.attributes.as_ref().map_or("", |a| a.id.as_str()), "")
        )),
        (Some(linux), None) => {
            let cpu = linux.cpu.unwrap_or_default();
            Ok((
                value(cpu.usage_core_nano_seconds.as_ref()),
                value(
                    linux
                        .memory
                        .as_ref()
                        .and_then(|m| m.working_set_bytes.as_ref()),
                ),
                cpu.timestamp,
            ))
        }
        (None, Some(windows)) => {
            let cpu = windows.cpu.unwrap_or_default();
            Ok((
                value(cpu.usage_core_nano_seconds.as_ref()),
                value(
                    windows
                        .memory
                        .as_ref()
                        .and_then(|m| m.working_set_bytes.as_ref()),
                ),
                cpu.timestamp,
            ))
        }
        (None, None) => Ok((0, 0, 0)),
    }
}

/// The `statsp` table from two samples (crictl's `displayPodStats`).
fn pod_stats_table(
    old: &[v1::PodSandboxStats],
    new: &[v1::PodSandboxStats],
) -> Result<String, String> {
    let old: HashMap<&str, &v1::PodSandboxStats> = old
        .iter()
        .map(|s| (s.attributes.as_ref().map_or("", |a| a.id.as_str()), s))
        .collect();
    let mut table = Table::new();
    table.row(["POD", "POD ID", "CPU %", "MEM"]);
    for s in new {
        let attributes = s.attributes.clone().unwrap_or_default();
        let (usage, memory, timestamp) = pod_usage(s)?;
        if usage == 0 && memory == 0 {
            continue;
        }
        let Some(previous) = old.get(attributes.id.as_str()) else {
            continue;
        };
        let (old_usage, _, old_timestamp) = pod_usage(previous)?;
        let percent = cpu_percent(usage, old_usage, timestamp, old_timestamp)?;
        table.row([
            attributes.metadata.map(|m| m.name).unwrap_or_default(),
            truncate_id(&attributes.id, "").to_owned(),
            format!("{percent:.2}"),
            size(memory),
        ]);
    }
    Ok(table.render())
}

/// Clears the terminal before a table when watching, as crictl does (only
/// on a terminal here, so piped output stays clean).
fn clear_screen() {
    if std::io::stdout().is_terminal() {
        print!("\x1b[2J\x1b[H");
    }
}

/// Repeats `display` every 500 ms until Ctrl-C with `-w`, once otherwise.
async fn display_loop<F, Fut>(watch: bool, mut display: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    if !watch {
        return display().await;
    }
    let watching = async {
        loop {
            display().await?;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    };
    tokio::select! {
        result = watching => result,
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}

async fn container_stats(
    client: &cri_client::CriClient,
    filter: &v1::ContainerStatsFilter,
) -> anyhow::Result<Vec<v1::ContainerStats>> {
    log::debug(&format!("ListContainerStatsRequest: filter: {filter:?}"));
    let mut stats = client
        .list_container_stats(Some(filter.clone()))
        .await
        .cri()?;
    stats.sort_by(|a, b| {
        let id = |s: &v1::ContainerStats| s.attributes.as_ref().map(|a| a.id.clone());
        id(a).cmp(&id(b))
    });
    Ok(stats)
}

/// `crictl stats`.
pub(super) async fn stats(clients: &Clients, args: StatsArgs) -> anyhow::Result<()> {
    let client = clients.runtime().await?;
    let labels = parse_labels(&args.label).map_err(|e| anyhow!(e))?;
    let id = args
        .id
        .clone()
        .filter(|i| !i.is_empty())
        .or(args.id_arg.clone());
    let filter = v1::ContainerStatsFilter {
        id: resolve_filter(id.as_deref(), |id| resolve_container(clients, id)).await?,
        pod_sandbox_id: resolve_filter(args.pod.as_deref(), |id| resolve_pod(clients, id)).await?,
        label_selector: labels,
    };
    let sample = Duration::from_secs(args.seconds);
    let output = args.output.clone().unwrap_or_default();
    let display = || async {
        let first = container_stats(client, &filter).await?;
        match output.as_str() {
            "json" => {
                let response = v1::ListContainerStatsResponse { stats: first };
                println!("{}", json::message_json(&response)?);
                return Ok(());
            }
            "yaml" => {
                let response = v1::ListContainerStatsResponse { stats: first };
                println!("{}", json::message_yaml(&response)?);
                return Ok(());
            }
            _ => {}
        }
        tokio::time::sleep(sample).await;
        let second = container_stats(client, &filter).await?;
        let table = container_stats_table(&first, &second, args.all).map_err(|e| anyhow!(e))?;
        if args.watch {
            clear_screen();
        }
        print!("{table}");
        anyhow::Ok(())
    };
    display_loop(args.watch, display)
        .await
        .context("get container stats")
}

async fn pod_stats(
    client: &cri_client::CriClient,
    filter: &v1::PodSandboxStatsFilter,
) -> anyhow::Result<Vec<v1::PodSandboxStats>> {
    log::debug(&format!("PodSandboxStatsFilter: {filter:?}"));
    let mut stats = client
        .list_pod_sandbox_stats(Some(filter.clone()))
        .await
        .cri()
        .context("list pod sandbox stats")?;
    stats.sort_by(|a, b| {
        let id = |s: &v1::PodSandboxStats| s.attributes.as_ref().map(|a| a.id.clone());
        id(a).cmp(&id(b))
    });
    Ok(stats)
}

/// `crictl statsp`.
pub(super) async fn statsp(clients: &Clients, args: StatspArgs) -> anyhow::Result<()> {
    let client = clients.runtime().await.context("get runtime service")?;
    let labels = parse_labels(&args.label)
        .map_err(|e| anyhow!(e))
        .context("parse pod labels")?;
    let id = args
        .id
        .clone()
        .filter(|i| !i.is_empty())
        .or(args.id_arg.clone());
    let filter = v1::PodSandboxStatsFilter {
        id: resolve_filter(id.as_deref(), |id| resolve_pod(clients, id)).await?,
        label_selector: labels,
    };
    let sample = Duration::from_secs(args.seconds);
    let output = args.output.clone().unwrap_or_default();
    let display = || async {
        let first = pod_stats(client, &filter).await?;
        match output.as_str() {
            "json" => {
                let response = v1::ListPodSandboxStatsResponse { stats: first };
                println!("{}", json::message_json(&response)?);
                return Ok(());
            }
            "yaml" => {
                let response = v1::ListPodSandboxStatsResponse { stats: first };
                println!("{}", json::message_yaml(&response)?);
                return Ok(());
            }
            _ => {}
        }
        tokio::time::sleep(sample).await;
        let second = pod_stats(client, &filter).await?;
        let table = pod_stats_table(&first, &second).map_err(|e| anyhow!(e))?;
        if args.watch {
            clear_screen();
        }
        print!("{table}");
        anyhow::Ok(())
    };
    display_loop(args.watch, display)
        .await
        .context("get pod stats")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(value: u64) -> Option<UInt64Value> {
        Some(UInt64Value { value })
    }

    fn sample(id: &str, cpu: u64, at: i64, memory: u64) -> v1::ContainerStats {
        v1::ContainerStats {
            attributes: Some(v1::ContainerAttributes {
                id: id.into(),
                metadata: Some(v1::ContainerMetadata {
                    name: format!("name-{id}"),
                    attempt: 0,
                }),
                ..Default::default()
            }),
            cpu: Some(v1::CpuUsage {
                timestamp: at,
                usage_core_nano_seconds: u(cpu),
                ..Default::default()
            }),
            memory: Some(v1::MemoryUsage {
                working_set_bytes: u(memory),
                ..Default::default()
            }),
            writable_layer: Some(v1::FilesystemUsage {
                used_bytes: u(8_192),
                inodes_used: u(3),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn cpu_percent_is_usage_over_elapsed_time() {
        assert_eq!(cpu_percent(1_500, 1_000, 2_000, 1_000), Ok(50.0));
        assert_eq!(cpu_percent(0, 0, 5, 5), Ok(0.0));
        assert_eq!(
            cpu_percent(10, 5, 7, 7),
            Err("cpu stat is not updated during sample".into())
        );
    }

    #[test]
    fn the_stats_table_skips_stopped_and_new_containers() {
        let old = vec![
            sample("aaaaaaaaaaaaaaaaaa", 1_000_000_000, 1_000_000_000, 1),
            sample("bbbb", 0, 0, 0),
        ];
        let new = vec![
            sample(
                "aaaaaaaaaaaaaaaaaa",
                1_250_000_000,
                2_000_000_000,
                1_048_576,
            ),
            sample("bbbb", 0, 0, 0),
            sample("cccc", 5, 5, 5),
        ];
        let text = container_stats_table(&old, &new, false).unwrap();
        assert_eq!(
            text,
            "CONTAINER           NAME                      CPU %               MEM                 DISK                INODES              SWAP\n\
             aaaaaaaaaaaaa       name-aaaaaaaaaaaaaaaaaa   25.00               1.049MB             8.192kB             3                   0B\n"
        );
        let all = container_stats_table(&old, &new, true).unwrap();
        assert_eq!(all.lines().count(), 3, "{all}");
    }

    #[test]
    fn pod_stats_need_linux_or_windows_but_not_both() {
        let pod = |linux: bool, windows: bool| v1::PodSandboxStats {
            attributes: Some(v1::PodSandboxAttributes {
                id: "pod1".into(),
                metadata: Some(v1::PodSandboxMetadata {
                    name: "web".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            linux: linux.then(|| v1::LinuxPodSandboxStats {
                cpu: Some(v1::CpuUsage {
                    timestamp: 2_000,
                    usage_core_nano_seconds: u(2_000),
                    ..Default::default()
                }),
                memory: Some(v1::MemoryUsage {
                    working_set_bytes: u(2_000_000),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            windows: windows.then(v1::WindowsPodSandboxStats::default),
        };
        assert!(pod_usage(&pod(true, true)).is_err());
        assert_eq!(pod_usage(&pod(false, false)), Ok((0, 0, 0)));
        let mut older = pod(true, false);
        if let Some(linux) = older.linux.as_mut() {
            linux.cpu = Some(v1::CpuUsage {
                timestamp: 1_000,
                usage_core_nano_seconds: u(1_900),
                ..Default::default()
            });
        }
        let text = pod_stats_table(&[older], &[pod(true, false)]).unwrap();
        assert_eq!(
            text,
            "POD                 POD ID              CPU %               MEM\nweb                 pod1                10.00               2MB\n"
        );
    }
}
