//! `runp`, `stopp`, `rmp`, `pods`, `inspectp`.

use std::collections::HashMap;
use std::fmt::Write as _;

use anyhow::{Context as _, anyhow};
use cri_client::v1::{self, PodSandboxState};
use jiff::Timestamp;

use super::super::client::Clients;
use super::super::errors::{CriResultExt as _, aggregate};
use super::super::files::load_pod_config;
use super::super::filter::{self, PodListOptions};
use super::super::json::{self, StatusData};
use super::super::log;
use super::super::table::Table;
use super::super::units::{ago, go_time_string, rfc3339_nano, truncate_id};
use super::{print_help, resolve_filter, resolve_pod, with_context};
use crate::crictl::cli::{IdsArgs, InspectpArgs, PodsArgs, RmpArgs, RunpArgs};

/// `crictl runp`.
pub(super) async fn runp(clients: &Clients, args: RunpArgs) -> anyhow::Result<()> {
    let client = clients.runtime_with_timeout(args.cancel_timeout).await?;
    let config = with_context(load_pod_config(&args.pod_config), "load podSandboxConfig")?;
    let handler = args.runtime.unwrap_or_default();
    log::debug(&format!(
        "RunPodSandboxRequest: config: {config:?} runtime_handler: {handler:?}"
    ));
    let id = client
        .run_pod_sandbox(config, &handler)
        .await
        .cri()
        .context("run pod sandbox")?;
    log::debug(&format!("RunPodSandboxResponse: {id}"));
    println!("{id}");
    Ok(())
}

async fn stop_pod(clients: &Clients, given: &str) -> anyhow::Result<()> {
    let id = resolve_pod(clients, given).await?;
    log::debug(&format!("Stopping pod sandbox: {id}"));
    clients.runtime().await?.stop_pod_sandbox(&id).await.cri()?;
    println!("Stopped sandbox {given}");
    Ok(())
}

/// `crictl stopp`.
pub(super) async fn stopp(clients: &Clients, args: IdsArgs) -> anyhow::Result<()> {
    clients.runtime().await?;
    for given in &args.ids {
        stop_pod(clients, given)
            .await
            .with_context(|| format!("stopping the pod sandbox {given:?}"))?;
    }
    Ok(())
}

/// `crictl rmp`.
pub(super) async fn rmp(clients: &Clients, args: RmpArgs) -> anyhow::Result<()> {
    let client = clients.runtime().await?;
    let ids = if args.all {
        client
            .list_pod_sandboxes(None)
            .await
            .cri()?
            .into_iter()
            .map(|p| p.id)
            .collect()
    } else {
        args.ids
    };
    if ids.is_empty() {
        if args.all {
            log::info("No pods to remove");
        } else {
            print_help("rmp");
        }
        return Ok(());
    }
    let mut errors = Vec::new();
    for given in &ids {
        if let Err(e) = remove_pod(clients, given, args.force).await {
            errors.push(e);
        }
    }
    aggregate(errors)
}

async fn remove_pod(clients: &Clients, given: &str, force: bool) -> anyhow::Result<()> {
    let id = resolve_pod(clients, given).await?;
    let client = clients.runtime().await?;
    let status = client
        .pod_sandbox_status(&id, false)
        .await
        .cri()
        .with_context(|| format!("getting sandbox status of pod {given:?}"))?;
    let ready =
        status.status.as_ref().map(|s| s.state) == Some(PodSandboxState::SandboxReady as i32);
    if ready {
        if !force {
            return Err(anyhow!(
                "pod sandbox {given:?} is running, please stop it first"
            ));
        }
        stop_pod(clients, given)
            .await
            .with_context(|| format!("stopping the pod sandbox {given:?} failed"))?;
    }
    log::debug(&format!("Removing pod sandbox: {id}"));
    client
        .remove_pod_sandbox(&id)
        .await
        .cri()
        .with_context(|| format!("removing the pod sandbox {given:?}"))?;
    println!("Removed sandbox {given}");
    Ok(())
}

/// Lists pods with the options (the filter on the runtime, the rest here).
async fn list_pods(
    clients: &Clients,
    opts: &PodListOptions,
) -> anyhow::Result<Vec<v1::PodSandbox>> {
    let filter = filter::pod_filter(opts).map_err(|e| anyhow!(e))?;
    log::debug(&format!("ListPodSandboxRequest: filter: {filter:?}"));
    let pods = clients
        .runtime()
        .await?
        .list_pod_sandboxes(Some(filter))
        .await
        .cri()
        .context("call list sandboxes RPC")?;
    Ok(filter::select_pods(pods, opts))
}

/// `crictl pods`.
pub(super) async fn pods(clients: &Clients, args: PodsArgs) -> anyhow::Result<()> {
    let labels = filter::parse_labels(&args.label).map_err(|e| anyhow!(e))?;
    // A bad --state fails before anything is listed, as crictl's log.Fatalf.
    if let Some(state) = args.state.as_deref().filter(|s| !s.is_empty()) {
        filter::pod_state(state).map_err(|e| anyhow!(e))?;
    }
    clients.runtime().await?;
    let id = resolve_filter(args.id.as_deref(), |id| resolve_pod(clients, id)).await?;
    let opts = PodListOptions {
        id,
        name: args.name.unwrap_or_default(),
        namespace: args.namespace.unwrap_or_default(),
        state: args.state,
        labels,
        latest: args.latest,
        last: args.last,
    };
    let pods = list_pods(clients, &opts)
        .await
        .context("list pod sandboxes")
        .context("listing pod sandboxes")?;
    let text = match args.output.as_str() {
        "json" => {
            let response = v1::ListPodSandboxResponse { items: pods };
            format!("{}\n", json::message_json(&response)?)
        }
        "yaml" => {
            let response = v1::ListPodSandboxResponse { items: pods };
            format!("{}\n", json::message_yaml(&response)?)
        }
        "table" => pods_text(
            &pods,
            args.quiet,
            args.verbose,
            args.no_trunc,
            Timestamp::now(),
        ),
        other => {
            return Err(anyhow!("unsupported output format {other:?}"))
                .context("listing pod sandboxes");
        }
    };
    print!("{text}");
    Ok(())
}

/// crictl's name of a pod state in tables.
fn pod_state_text(state: i32) -> String {
    match PodSandboxState::try_from(state) {
        Ok(PodSandboxState::SandboxReady) => "Ready".into(),
        Ok(PodSandboxState::SandboxNotready) => "NotReady".into(),
        Err(_) => format!("Unknown({state})"),
    }
}

fn runtime_handler_text(pod: &v1::PodSandbox) -> &str {
    if pod.runtime_handler.is_empty() {
        "(default)"
    } else {
        &pod.runtime_handler
    }
}

/// Labels or annotations in crictl's verbose layout, sorted by key.
pub(super) fn key_values(title: &str, map: &HashMap<String, String>) -> String {
    if map.is_empty() {
        return String::new();
    }
    let mut keys: Vec<&String> = map.keys().collect();
    keys.sort();
    let mut out = format!("{title}:\n");
    for key in keys {
        let _ = writeln!(out, "\t{key} -> {}", map[key]);
    }
    out
}

/// The `pods` table, `-q` IDs or `-v` blocks.
fn pods_text(
    pods: &[v1::PodSandbox],
    quiet: bool,
    verbose: bool,
    no_trunc: bool,
    now: Timestamp,
) -> String {
    let mut table = Table::new();
    let mut out = String::new();
    if !verbose && !quiet {
        table.row([
            "POD ID",
            "CREATED",
            "STATE",
            "NAME",
            "NAMESPACE",
            "ATTEMPT",
            "RUNTIME",
        ]);
    }
    for pod in pods {
        if quiet {
            let _ = writeln!(out, "{}", pod.id);
            continue;
        }
        let metadata = pod.metadata.clone().unwrap_or_default();
        if !verbose {
            let id = if no_trunc {
                pod.id.as_str()
            } else {
                truncate_id(&pod.id, "")
            };
            table.row([
                id.to_owned(),
                ago(pod.created_at, now),
                pod_state_text(pod.state),
                metadata.name,
                metadata.namespace,
                metadata.attempt.to_string(),
                runtime_handler_text(pod).to_owned(),
            ]);
            continue;
        }
        let _ = writeln!(out, "ID: {}", pod.id);
        if !metadata.name.is_empty() {
            let _ = writeln!(out, "Name: {}", metadata.name);
        }
        if !metadata.uid.is_empty() {
            let _ = writeln!(out, "UID: {}", metadata.uid);
        }
        if !metadata.namespace.is_empty() {
            let _ = writeln!(out, "Namespace: {}", metadata.namespace);
        }
        if metadata.attempt != 0 {
            let _ = writeln!(out, "Attempt: {}", metadata.attempt);
        }
        let _ = writeln!(out, "Status: {}", pod_state_text(pod.state));
        let _ = writeln!(out, "Created: {}", go_time_string(pod.created_at));
        out.push_str(&key_values("Labels", &pod.labels));
        out.push_str(&key_values("Annotations", &pod.annotations));
        let _ = writeln!(out, "Runtime: {}", runtime_handler_text(pod));
        out.push('\n');
    }
    out.push_str(&table.render());
    out
}

/// `crictl inspectp`.
pub(super) async fn inspectp(clients: &Clients, args: InspectpArgs) -> anyhow::Result<()> {
    clients.runtime().await?;
    let mut ids = Vec::new();
    for given in &args.ids {
        ids.push(resolve_pod(clients, given).await?);
    }
    if ids.is_empty() {
        let opts = PodListOptions {
            name: args.name.unwrap_or_default(),
            namespace: args.namespace.unwrap_or_default(),
            state: args.state,
            labels: filter::parse_labels(&args.label)
                .map_err(|e| anyhow!(e))
                .context("parse label string slice")?,
            latest: args.latest,
            last: args.last,
            ..Default::default()
        };
        ids = list_pods(clients, &opts)
            .await
            .context("listing pod sandboxes")?
            .into_iter()
            .map(|p| p.id)
            .collect();
    }
    if ids.is_empty() {
        log::error("No IDs provided or nothing found per filter");
        print_help("inspectp");
        return Ok(());
    }
    let output = args.output.output.unwrap_or_else(|| "json".into());
    if output == "go-template" {
        super::check_format(&output, &[])?;
    }
    let verbose = !args.quiet;
    let client = clients.runtime().await?;
    let mut statuses = Vec::new();
    let mut tables = String::new();
    for id in &ids {
        log::debug(&format!(
            "PodSandboxStatusRequest: pod_sandbox_id: {id:?} verbose: {verbose}"
        ));
        let response = client
            .pod_sandbox_status(id, verbose)
            .await
            .cri()
            .context("get pod sandbox status")
            .context("get the status of pod sandboxes")?;
        log::debug(&format!("PodSandboxStatusResponse: {response:?}"));
        if output == "table" {
            tables.push_str(&pod_status_table(&response, verbose));
        } else {
            statuses.push(pod_status_data(&response)?);
        }
    }
    if output == "table" {
        print!("{tables}");
        return Ok(());
    }
    let text = json::status_output(statuses, &output)
        .map_err(|e| anyhow!(e))
        .context("get the status of pod sandboxes")?;
    print!("{text}");
    Ok(())
}

/// The status object with `createdAt` as RFC 3339 text, as crictl's
/// `marshalPodSandboxStatus`, plus the verbose info.
fn pod_status_data(response: &v1::PodSandboxStatusResponse) -> anyhow::Result<StatusData> {
    let status = response.status.clone().unwrap_or_default();
    let mut value = json::to_value(&status).context("marshal pod sandbox status")?;
    value.set(
        "createdAt",
        json::Value::String(rfc3339_nano(status.created_at)),
    );
    let mut info: Vec<(String, String)> = response
        .info
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    info.sort();
    Ok(StatusData {
        status: Some(value),
        info,
        ..Default::default()
    })
}

/// Go's `%v` of a `map[string]string`: `map[k:v k2:v2]`, sorted.
pub(super) fn go_map_text(map: &HashMap<String, String>) -> String {
    let mut entries: Vec<(&String, &String)> = map.iter().collect();
    entries.sort();
    let inner: Vec<String> = entries.iter().map(|(k, v)| format!("{k}:{v}")).collect();
    format!("map[{}]", inner.join(" "))
}

fn pod_status_table(response: &v1::PodSandboxStatusResponse, verbose: bool) -> String {
    let status = response.status.clone().unwrap_or_default();
    let mut out = String::new();
    let _ = writeln!(out, "ID: {}", status.id);
    if let Some(metadata) = &status.metadata {
        if !metadata.name.is_empty() {
            let _ = writeln!(out, "Name: {}", metadata.name);
        }
        if !metadata.uid.is_empty() {
            let _ = writeln!(out, "UID: {}", metadata.uid);
        }
        if !metadata.namespace.is_empty() {
            let _ = writeln!(out, "Namespace: {}", metadata.namespace);
        }
        let _ = writeln!(out, "Attempt: {}", metadata.attempt);
    }
    let state = PodSandboxState::try_from(status.state)
        .map_or_else(|_| status.state.to_string(), |s| s.as_str_name().to_owned());
    let _ = writeln!(out, "Status: {state}");
    let _ = writeln!(out, "Created: {}", go_time_string(status.created_at));
    if let Some(network) = &status.network {
        let _ = writeln!(out, "IP Addresses: {}", network.ip);
        for ip in &network.additional_ips {
            let _ = writeln!(out, "Additional IP: {}", ip.ip);
        }
    }
    out.push_str(&key_values("Labels", &status.labels));
    out.push_str(&key_values("Annotations", &status.annotations));
    if verbose {
        let _ = writeln!(out, "Info: {}", go_map_text(&response.info));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> v1::PodSandbox {
        v1::PodSandbox {
            id: "0123456789abcdef0123456789abcdef".into(),
            metadata: Some(v1::PodSandboxMetadata {
                name: "web".into(),
                uid: "u-1".into(),
                namespace: "default".into(),
                attempt: 1,
            }),
            state: PodSandboxState::SandboxReady as i32,
            created_at: 1_700_000_000_000_000_000,
            labels: [("app".to_owned(), "web".to_owned())].into(),
            ..Default::default()
        }
    }

    #[test]
    fn the_pods_table_has_crictls_columns_and_truncated_ids() {
        let now = Timestamp::from_second(1_700_000_030).unwrap();
        let text = pods_text(&[pod()], false, false, false, now);
        assert_eq!(
            text,
            "POD ID              CREATED             STATE               NAME                NAMESPACE           ATTEMPT             RUNTIME\n\
             0123456789abc       30 seconds ago      Ready               web                 default             1                   (default)\n"
        );
        let full = pods_text(&[pod()], false, false, true, now);
        assert!(
            full.contains("0123456789abcdef0123456789abcdef   30 seconds ago"),
            "{full}"
        );
        assert_eq!(
            pods_text(&[pod()], true, false, false, now),
            "0123456789abcdef0123456789abcdef\n"
        );
    }

    #[test]
    fn verbose_pods_list_fields_and_labels() {
        let now = Timestamp::from_second(1_700_000_030).unwrap();
        let text = pods_text(&[pod()], false, true, false, now);
        assert!(text.starts_with("ID: 0123456789abcdef0123456789abcdef\nName: web\nUID: u-1\nNamespace: default\nAttempt: 1\nStatus: Ready\nCreated: "), "{text}");
        assert!(
            text.ends_with("Labels:\n\tapp -> web\nRuntime: (default)\n\n"),
            "{text}"
        );
    }

    #[test]
    fn status_json_has_readable_created_at_and_sorted_info() {
        let response = v1::PodSandboxStatusResponse {
            status: Some(v1::PodSandboxStatus {
                id: "p".into(),
                created_at: 0,
                ..Default::default()
            }),
            info: [("info".to_owned(), r#"{"pid":7}"#.to_owned())].into(),
            ..Default::default()
        };
        let data = pod_status_data(&response).unwrap();
        let text = json::status_output(vec![data], "json").unwrap();
        let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed["info"]["pid"], 7);
        assert_eq!(parsed["status"]["id"], "p");
        assert_eq!(parsed["status"]["state"], "SANDBOX_READY");
        let created = parsed["status"]["createdAt"].as_str().unwrap();
        assert!(created.starts_with("1970-01-01T"), "{created}");
    }

    #[test]
    fn status_table_and_go_maps() {
        let response = v1::PodSandboxStatusResponse {
            status: Some(v1::PodSandboxStatus {
                id: "p".into(),
                metadata: Some(v1::PodSandboxMetadata {
                    name: "web".into(),
                    ..Default::default()
                }),
                network: Some(v1::PodSandboxNetworkStatus {
                    ip: "10.88.0.5".into(),
                    additional_ips: vec![v1::PodIp {
                        ip: "fd00::5".into(),
                    }],
                }),
                ..Default::default()
            }),
            info: [
                ("b".to_owned(), "2".to_owned()),
                ("a".to_owned(), "1".to_owned()),
            ]
            .into(),
            ..Default::default()
        };
        let text = pod_status_table(&response, true);
        assert!(
            text.starts_with("ID: p\nName: web\nAttempt: 0\nStatus: SANDBOX_READY\nCreated: "),
            "{text}"
        );
        assert!(
            text.ends_with("IP Addresses: 10.88.0.5\nAdditional IP: fd00::5\nInfo: map[a:1 b:2]\n"),
            "{text}"
        );
    }
}
