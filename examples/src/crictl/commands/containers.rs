//! `create`, `run`, `start`, `stop`, `rm`, `ps`, `inspect`.

use std::collections::HashMap;
use std::fmt::Write as _;

use anyhow::{Context as _, anyhow};
use cri_client::v1::{self, ContainerState};
use jiff::Timestamp;

use super::super::client::Clients;
use super::super::errors::{CriResultExt as _, Exit, aggregate};
use super::super::files::{load_container_config, load_pod_config};
use super::super::filter::{
    self, ContainerListOptions, POD_NAME_LABEL, POD_NAMESPACE_LABEL, label_or_unknown,
};
use super::super::json::{self, StatusData};
use super::super::log;
use super::super::table::Table;
use super::super::units::{GO_ZERO_TIME_RFC3339, ago, rfc3339_nano, truncate_id};
use super::images::{get_auth, pull_with_sandbox};
use super::pods::{go_map_text, key_values};
use super::{print_help, resolve_container, resolve_filter, resolve_pod, with_context};
use crate::crictl::cli::{
    ContainerFilterArgs, CreateArgs, CreatePullArgs, IdsArgs, InspectArgs, PsArgs, RmArgs, RunArgs,
    StopArgs,
};

/// Whether `create`/`run` pull the image: `--with-pull` always, `--no-pull`
/// never, otherwise the config file's default for the command.
fn pull_decision(pull: &CreatePullArgs, default_pull: bool) -> anyhow::Result<bool> {
    if pull.no_pull && pull.with_pull {
        return Err(anyhow!("conflict: no-pull and with-pull are both set"));
    }
    Ok((!pull.no_pull && default_pull) || pull.with_pull)
}

/// crictl's `CreateContainer`: loads both configs, pulls when asked, creates.
async fn create_container(
    clients: &Clients,
    client: &cri_client::CriClient,
    pod_id: &str,
    container_config: &str,
    pod_config: &str,
    pull: &CreatePullArgs,
    with_pull: bool,
) -> anyhow::Result<String> {
    let mut config = load_container_config(container_config).map_err(|e| anyhow!(e))?;
    let pod_config = load_pod_config(pod_config).map_err(|e| anyhow!(e))?;
    let image = config.image.get_or_insert_with(Default::default);
    if image.user_specified_image.is_empty() {
        image.user_specified_image = image.image.clone();
    }
    if with_pull {
        let auth = get_auth(&pull.auth, None)?;
        let image_client = clients.image().await?;
        let spec = config.image.clone().unwrap_or_default();
        log::info(&format!("Pulling container image: {}", spec.image));
        let mut images = vec![spec.image.clone()];
        for mount in &config.mounts {
            if let Some(mounted) = mount.image.as_ref().filter(|i| !i.image.is_empty()) {
                log::info(&format!(
                    "Pulling image {} to be mounted to container path: {}",
                    mounted.image, mount.container_path
                ));
                images.push(mounted.image.clone());
            }
        }
        for name in images {
            pull_with_sandbox(
                image_client,
                &name,
                auth.clone(),
                Some(pod_config.clone()),
                spec.annotations.clone(),
                pull.pull_timeout,
            )
            .await?;
        }
    }
    log::debug(&format!(
        "CreateContainerRequest: pod_sandbox_id: {pod_id:?} config: {config:?}"
    ));
    let id = client
        .create_container(pod_id, config, pod_config)
        .await
        .cri()?;
    log::debug(&format!("CreateContainerResponse: {id}"));
    Ok(id)
}

/// `crictl create`.
pub(super) async fn create(clients: &Clients, args: CreateArgs) -> anyhow::Result<()> {
    let with_pull = pull_decision(&args.pull, clients.settings().pull_image_on_create)?;
    let client = clients
        .runtime_with_timeout(args.pull.cancel_timeout)
        .await?;
    let pod_id = resolve_pod(clients, &args.pod).await?;
    let id = create_container(
        clients,
        &client,
        &pod_id,
        &args.container_config,
        &args.pod_config,
        &args.pull,
        with_pull,
    )
    .await
    .context("creating container")?;
    println!("{id}");
    Ok(())
}

/// `crictl run`: a new pod, a container in it, started.
pub(super) async fn run(clients: &Clients, args: RunArgs) -> anyhow::Result<()> {
    let with_pull = pull_decision(&args.pull, !clients.settings().disable_pull_on_run)?;
    let client = clients
        .runtime_with_timeout(args.pull.cancel_timeout)
        .await?;
    let result = async {
        let pod_config = with_context(load_pod_config(&args.pod_config), "load podSandboxConfig")?;
        let handler = args.runtime.clone().unwrap_or_default();
        let pod_id = client
            .run_pod_sandbox(pod_config, &handler)
            .await
            .cri()
            .context("run pod sandbox")?;
        let id = create_container(
            clients,
            &client,
            &pod_id,
            &args.container_config,
            &args.pod_config,
            &args.pull,
            with_pull,
        )
        .await
        .context("creating container failed")?;
        client
            .start_container(&id)
            .await
            .cri()
            .with_context(|| format!("starting the container {id:?}"))?;
        println!("{id}");
        anyhow::Ok(())
    }
    .await;
    result.context("running container")
}

/// `crictl start`.
pub(super) async fn start(clients: &Clients, args: IdsArgs) -> anyhow::Result<()> {
    let client = clients.runtime().await?;
    for given in &args.ids {
        let started = async {
            let id = resolve_container(clients, given).await?;
            client.start_container(&id).await.cri()
        };
        started
            .await
            .with_context(|| format!("starting the container {given:?}"))?;
        println!("{given}");
    }
    Ok(())
}

async fn stop_one(clients: &Clients, given: &str, grace: i64) -> anyhow::Result<()> {
    let id = resolve_container(clients, given).await?;
    log::debug(&format!("Stopping container: {id} (timeout = {grace})"));
    clients
        .runtime()
        .await?
        .stop_container(&id, grace)
        .await
        .cri()?;
    println!("{given}");
    Ok(())
}

/// `crictl stop`.
pub(super) async fn stop(clients: &Clients, args: StopArgs) -> anyhow::Result<()> {
    clients.runtime().await?;
    if args.all && !args.ids.is_empty() {
        return Err(anyhow::Error::new(Exit {
            code: 1,
            message: "cannot specify CONTAINER-ID(s) when using --all".into(),
        }));
    }
    let ids = if args.all {
        let opts = ContainerListOptions {
            state: Some("running".into()),
            ..Default::default()
        };
        let running = list_containers(clients, &opts)
            .await
            .context("listing containers")?;
        if running.is_empty() {
            println!("No running containers found.");
            return Ok(());
        }
        running.into_iter().map(|c| c.id).collect()
    } else {
        if args.ids.is_empty() {
            return Err(anyhow::Error::new(Exit {
                code: 1,
                message: "you must specify at least one CONTAINER-ID or use --all".into(),
            }));
        }
        args.ids
    };
    for given in &ids {
        stop_one(clients, given, args.timeout)
            .await
            .with_context(|| format!("stopping the container {given:?}"))?;
    }
    Ok(())
}

/// `crictl rm`.
pub(super) async fn rm(clients: &Clients, args: RmArgs) -> anyhow::Result<()> {
    let client = clients.runtime().await?;
    let ids = if args.all {
        client
            .list_containers(None)
            .await
            .cri()?
            .into_iter()
            .map(|c| c.id)
            .collect()
    } else {
        args.ids
    };
    if ids.is_empty() {
        if args.all {
            log::info("No containers to remove");
        } else {
            print_help("rm");
        }
        return Ok(());
    }
    let mut errors = Vec::new();
    for given in &ids {
        if let Err(e) = remove_one(clients, given, args.force, args.keep_logs).await {
            errors.push(e);
        }
    }
    aggregate(errors)
}

async fn remove_one(
    clients: &Clients,
    given: &str,
    force: bool,
    keep_logs: bool,
) -> anyhow::Result<()> {
    let id = resolve_container(clients, given).await?;
    let client = clients.runtime().await?;
    let status = client
        .container_status(&id, false)
        .await
        .cri()
        .with_context(|| format!("getting container status {given:?}"))?
        .status
        .unwrap_or_default();
    if status.state == ContainerState::ContainerRunning as i32 {
        if !force {
            return Err(anyhow!(
                "container {given:?} is running, please stop it first"
            ));
        }
        stop_one(clients, given, 0)
            .await
            .with_context(|| format!("stopping the container {given:?}"))?;
    }
    log::debug(&format!("Removing container: {id}"));
    client
        .remove_container(&id)
        .await
        .cri()
        .with_context(|| format!("removing container {given:?}"))?;
    println!("{given}");
    if !keep_logs && !status.log_path.is_empty() {
        for file in log_files(&status.log_path) {
            if let Err(e) = std::fs::remove_file(&file)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                log::error(&format!(
                    "removing log file {file} for container {given:?} failed: {e}"
                ));
            }
        }
    }
    Ok(())
}

/// A container's log file and its rotations (`<path>.*`).
fn log_files(log_path: &str) -> Vec<String> {
    let path = std::path::Path::new(log_path);
    let mut files = Vec::new();
    if let (Some(dir), Some(name)) = (path.parent(), path.file_name()) {
        let rotated_prefix = format!("{}.", name.to_string_lossy());
        if let Ok(entries) = std::fs::read_dir(dir) {
            for entry in entries.flatten() {
                if entry
                    .file_name()
                    .to_string_lossy()
                    .starts_with(&rotated_prefix)
                {
                    files.push(entry.path().to_string_lossy().into_owned());
                }
            }
        }
    }
    files.sort();
    files.push(log_path.to_owned());
    files
}

/// Whether a container's image matches `--image`: both resolve to the same
/// image ID (crictl's `matchesImage`).
async fn image_matches(
    clients: &Clients,
    wanted_id: &mut Option<Option<String>>,
    wanted: &str,
    container_image: &str,
) -> anyhow::Result<bool> {
    if wanted.is_empty() {
        return Ok(true);
    }
    let image_client = clients.image().await?;
    if wanted_id.is_none() {
        let status = image_client
            .image_status(image_spec(wanted), false)
            .await
            .cri()?;
        *wanted_id = Some(status.image.map(|i| i.id));
    }
    let Some(Some(wanted_id)) = wanted_id.as_ref() else {
        return Ok(false);
    };
    let status = image_client
        .image_status(image_spec(container_image), false)
        .await
        .cri()?;
    Ok(status.image.is_some_and(|i| &i.id == wanted_id))
}

fn image_spec(image: &str) -> v1::ImageSpec {
    v1::ImageSpec {
        image: image.to_owned(),
        ..Default::default()
    }
}

/// crictl's `ListContainers`: the runtime's filter, then image, name and
/// namespace matching, newest first, `--latest`/`--last`.
pub(super) async fn list_containers(
    clients: &Clients,
    opts: &ContainerListOptions,
) -> anyhow::Result<Vec<v1::Container>> {
    let filter = filter::container_filter(opts).map_err(|e| anyhow!(e))?;
    log::debug(&format!("ListContainersRequest: filter: {filter:?}"));
    let containers = clients
        .runtime()
        .await?
        .list_containers(Some(filter))
        .await
        .cri()
        .context("call list containers RPC")?;
    let mut wanted_id = None;
    let mut matching = Vec::new();
    for container in filter::filter_containers(containers, opts) {
        let image = container
            .image
            .as_ref()
            .map(|i| i.image.clone())
            .unwrap_or_default();
        if image_matches(clients, &mut wanted_id, &opts.image, &image)
            .await
            .context("check image match")?
        {
            matching.push(container);
        }
    }
    Ok(filter::newest_first(
        matching,
        |c| c.created_at,
        opts.latest,
        opts.last,
    ))
}

/// The list options of the selection flags, IDs resolved from prefixes.
async fn container_options(
    clients: &Clients,
    id: Option<&str>,
    flags: &ContainerFilterArgs,
) -> anyhow::Result<ContainerListOptions> {
    let labels = filter::parse_labels(&flags.label).map_err(|e| anyhow!(e))?;
    if let Some(state) = flags.state.as_deref().filter(|s| !s.is_empty()) {
        filter::container_state(state).map_err(|e| anyhow!(e))?;
    }
    Ok(ContainerListOptions {
        id: resolve_filter(id, |id| resolve_container(clients, id)).await?,
        pod_id: resolve_filter(flags.pod.as_deref(), |id| resolve_pod(clients, id)).await?,
        name: flags.name.clone().unwrap_or_default(),
        namespace: flags.namespace.clone().unwrap_or_default(),
        state: flags.state.clone(),
        labels,
        all: flags.all,
        latest: flags.latest,
        last: flags.last,
        image: flags.image.clone().unwrap_or_default(),
    })
}

/// `crictl ps`.
pub(super) async fn ps(clients: &Clients, args: PsArgs) -> anyhow::Result<()> {
    clients.runtime().await?;
    let opts = container_options(clients, args.id.as_deref(), &args.filter).await?;
    let containers = list_containers(clients, &opts)
        .await
        .context("list containers")
        .context("listing containers")?;
    let text = match args.output.as_str() {
        "json" => {
            let response = v1::ListContainersResponse { containers };
            format!("{}\n", json::message_json(&response)?)
        }
        "yaml" => {
            let response = v1::ListContainersResponse { containers };
            format!("{}\n", json::message_yaml(&response)?)
        }
        "table" => {
            let mut repo_images = HashMap::new();
            if args.resolve_image_path && !args.quiet && !args.verbose {
                for container in &containers {
                    let image = container
                        .image
                        .as_ref()
                        .map(|i| i.image.clone())
                        .unwrap_or_default();
                    if repo_images.contains_key(&image) {
                        continue;
                    }
                    let status = clients
                        .image()
                        .await?
                        .image_status(image_spec(&image), false)
                        .await
                        .cri()
                        .context("failed to fetch repo image")
                        .context("listing containers")?;
                    let repo = status
                        .image
                        .and_then(|i| i.repo_tags.into_iter().next())
                        .unwrap_or_else(|| image.clone());
                    repo_images.insert(image, repo);
                }
            }
            let view = ContainersView {
                quiet: args.quiet,
                verbose: args.verbose,
                no_trunc: args.no_trunc,
                repo_images,
            };
            containers_text(&containers, &view, Timestamp::now())
        }
        other => {
            return Err(anyhow!("unsupported output format {other:?}"))
                .context("listing containers");
        }
    };
    print!("{text}");
    Ok(())
}

/// How `ps` shows the list.
struct ContainersView {
    quiet: bool,
    verbose: bool,
    no_trunc: bool,
    /// `--resolve-image-path`: image → its first repo tag.
    repo_images: HashMap<String, String>,
}

/// crictl's name of a container state in tables.
fn container_state_text(state: i32) -> String {
    match ContainerState::try_from(state) {
        Ok(ContainerState::ContainerCreated) => "Created".into(),
        Ok(ContainerState::ContainerRunning) => "Running".into(),
        Ok(ContainerState::ContainerExited) => "Exited".into(),
        Ok(ContainerState::ContainerUnknown) => "Unknown".into(),
        Err(_) => format!("Unknown({state})"),
    }
}

/// A digest `algorithm:hex` as go-digest validates it.
fn digest_algorithm(text: &str) -> Option<&str> {
    let (algorithm, hex) = text.split_once(':')?;
    let length = match algorithm {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => return None,
    };
    (hex.len() == length && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
        .then_some(algorithm)
}

/// The `IMAGE` cell: digests truncated unless `--no-trunc`, or the repo tag
/// with `--resolve-image-path`.
fn image_cell(image: &str, view: &ContainersView) -> String {
    if let Some(repo) = view.repo_images.get(image) {
        return repo.clone();
    }
    if !view.no_trunc
        && let Some(algorithm) = digest_algorithm(image)
    {
        return truncate_id(image, &format!("{algorithm}:")).to_owned();
    }
    image.to_owned()
}

fn containers_text(containers: &[v1::Container], view: &ContainersView, now: Timestamp) -> String {
    let mut table = Table::new();
    let mut out = String::new();
    if !view.verbose && !view.quiet {
        table.row([
            "CONTAINER",
            "IMAGE",
            "CREATED",
            "STATE",
            "NAME",
            "ATTEMPT",
            "POD ID",
            "POD",
            "NAMESPACE",
        ]);
    }
    for c in containers {
        if view.quiet {
            let _ = writeln!(out, "{}", c.id);
            continue;
        }
        let created = ago(c.created_at, now);
        let namespace = label_or_unknown(&c.labels, POD_NAMESPACE_LABEL);
        let metadata = c.metadata.clone().unwrap_or_default();
        let image = c
            .image
            .as_ref()
            .map(|i| i.image.clone())
            .unwrap_or_default();
        if !view.verbose {
            let (id, pod_id) = if view.no_trunc {
                (c.id.as_str(), c.pod_sandbox_id.as_str())
            } else {
                (truncate_id(&c.id, ""), truncate_id(&c.pod_sandbox_id, ""))
            };
            table.row([
                id.to_owned(),
                image_cell(&image, view),
                created,
                container_state_text(c.state),
                metadata.name,
                metadata.attempt.to_string(),
                pod_id.to_owned(),
                label_or_unknown(&c.labels, POD_NAME_LABEL).to_owned(),
                namespace.to_owned(),
            ]);
            continue;
        }
        let _ = writeln!(out, "ID: {}", c.id);
        let _ = writeln!(out, "PodID: {}", c.pod_sandbox_id);
        let _ = writeln!(out, "Namespace: {namespace}");
        if let Some(metadata) = &c.metadata {
            if !metadata.name.is_empty() {
                let _ = writeln!(out, "Name: {}", metadata.name);
            }
            let _ = writeln!(out, "Attempt: {}", metadata.attempt);
        }
        let _ = writeln!(out, "State: {}", container_state_text(c.state));
        if c.image.is_some() {
            let _ = writeln!(out, "Image: {image}");
        }
        let _ = writeln!(out, "Created: {created}");
        out.push_str(&key_values("Labels", &c.labels));
        out.push_str(&key_values("Annotations", &c.annotations));
        out.push('\n');
    }
    out.push_str(&table.render());
    out
}

/// `crictl inspect`.
pub(super) async fn inspect(clients: &Clients, args: InspectArgs) -> anyhow::Result<()> {
    clients.runtime().await?;
    let mut ids = Vec::new();
    for given in &args.ids {
        ids.push(resolve_container(clients, given).await?);
    }
    if ids.is_empty() {
        let opts = container_options(clients, None, &args.filter).await?;
        ids = list_containers(clients, &opts)
            .await
            .context("listing containers")?
            .into_iter()
            .map(|c| c.id)
            .collect();
    }
    if ids.is_empty() {
        log::error("No IDs provided or nothing found per filter");
        print_help("inspect");
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
    let now = Timestamp::now();
    for id in &ids {
        log::debug(&format!(
            "ContainerStatusRequest: container_id: {id:?} verbose: {verbose}"
        ));
        let response = client
            .container_status(id, verbose)
            .await
            .cri()
            .context("get container status")
            .context("get the status of containers")?;
        log::debug(&format!("ContainerStatusResponse: {response:?}"));
        if output == "table" {
            tables.push_str(&container_status_table(&response, verbose, now));
        } else {
            statuses.push(container_status_data(&response)?);
        }
    }
    if output == "table" {
        print!("{tables}");
        return Ok(());
    }
    let text = json::status_output(statuses, &output)
        .map_err(|e| anyhow!(e))
        .context("get the status of containers")?;
    print!("{text}");
    Ok(())
}

/// The status object with readable times, as crictl's
/// `marshalContainerStatus`: `startedAt` only once started, `finishedAt`
/// only once exited (Go's zero time otherwise).
fn container_status_data(response: &v1::ContainerStatusResponse) -> anyhow::Result<StatusData> {
    let status = response.status.clone().unwrap_or_default();
    let mut value = json::to_value(&status).context("marshal container status")?;
    let state = ContainerState::try_from(status.state).ok();
    let started = if state == Some(ContainerState::ContainerCreated) {
        GO_ZERO_TIME_RFC3339.to_owned()
    } else {
        rfc3339_nano(status.started_at)
    };
    let finished = if state == Some(ContainerState::ContainerExited)
        || (state == Some(ContainerState::ContainerUnknown) && status.finished_at > 0)
    {
        rfc3339_nano(status.finished_at)
    } else {
        GO_ZERO_TIME_RFC3339.to_owned()
    };
    value.set(
        "createdAt",
        json::Value::String(rfc3339_nano(status.created_at)),
    );
    value.set("startedAt", json::Value::String(started));
    value.set("finishedAt", json::Value::String(finished));
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

fn container_status_table(
    response: &v1::ContainerStatusResponse,
    verbose: bool,
    now: Timestamp,
) -> String {
    let status = response.status.clone().unwrap_or_default();
    let mut out = String::new();
    let _ = writeln!(out, "ID: {}", status.id);
    if let Some(metadata) = &status.metadata {
        if !metadata.name.is_empty() {
            let _ = writeln!(out, "Name: {}", metadata.name);
        }
        if metadata.attempt != 0 {
            let _ = writeln!(out, "Attempt: {}", metadata.attempt);
        }
    }
    let state = ContainerState::try_from(status.state).ok();
    let state_name = state.map_or_else(|| status.state.to_string(), |s| s.as_str_name().to_owned());
    let _ = writeln!(out, "State: {state_name}");
    let _ = writeln!(out, "Created: {}", ago(status.created_at, now));
    if state != Some(ContainerState::ContainerCreated) {
        let _ = writeln!(out, "Started: {}", ago(status.started_at, now));
    }
    if state == Some(ContainerState::ContainerExited) {
        if status.finished_at > 0 {
            let _ = writeln!(out, "Finished: {}", ago(status.finished_at, now));
        }
        let _ = writeln!(out, "Exit Code: {}", status.exit_code);
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

    const ID: &str = "85262e6d58038868b77b8891778aab7a872ed0b32ee1d0439622ad072eea56f1";

    fn view() -> ContainersView {
        ContainersView {
            quiet: false,
            verbose: false,
            no_trunc: false,
            repo_images: HashMap::new(),
        }
    }

    fn container() -> v1::Container {
        v1::Container {
            id: "c0ffee0123456789c0ffee".into(),
            pod_sandbox_id: "beef0123456789beef".into(),
            metadata: Some(v1::ContainerMetadata {
                name: "app".into(),
                attempt: 0,
            }),
            image: Some(v1::ImageSpec {
                image: format!("sha256:{ID}"),
                ..Default::default()
            }),
            state: ContainerState::ContainerRunning as i32,
            created_at: 1_700_000_000_000_000_000,
            labels: [(POD_NAME_LABEL.to_owned(), "web".to_owned())].into(),
            ..Default::default()
        }
    }

    #[test]
    fn pull_flags_and_config_defaults() {
        let flags = |no_pull, with_pull| CreatePullArgs {
            no_pull,
            with_pull,
            auth: Default::default(),
            cancel_timeout: None,
            pull_timeout: None,
        };
        assert!(!pull_decision(&flags(false, false), false).unwrap());
        assert!(pull_decision(&flags(false, false), true).unwrap());
        assert!(!pull_decision(&flags(true, false), true).unwrap());
        assert!(pull_decision(&flags(false, true), false).unwrap());
        assert_eq!(
            pull_decision(&flags(true, true), false)
                .unwrap_err()
                .to_string(),
            "conflict: no-pull and with-pull are both set"
        );
    }

    #[test]
    fn the_ps_table_truncates_ids_and_image_digests() {
        let now = Timestamp::from_second(1_700_000_120).unwrap();
        let text = containers_text(&[container()], &view(), now);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "CONTAINER           IMAGE               CREATED             STATE               NAME                ATTEMPT             POD ID              POD                 NAMESPACE"
        );
        assert_eq!(
            lines[1],
            "c0ffee0123456       85262e6d58038       2 minutes ago       Running             app                 0                   beef012345678       web                 unknown"
        );
        let untruncated = containers_text(
            &[container()],
            &ContainersView {
                no_trunc: true,
                ..view()
            },
            now,
        );
        assert!(untruncated.contains(&format!("sha256:{ID}")));
        let resolved = containers_text(
            &[container()],
            &ContainersView {
                repo_images: [(format!("sha256:{ID}"), "busybox:1.35".to_owned())].into(),
                ..view()
            },
            now,
        );
        assert!(resolved.contains("busybox:1.35"), "{resolved}");
    }

    #[test]
    fn verbose_and_quiet_ps() {
        let now = Timestamp::from_second(1_700_000_001).unwrap();
        let quiet = containers_text(
            &[container()],
            &ContainersView {
                quiet: true,
                ..view()
            },
            now,
        );
        assert_eq!(quiet, "c0ffee0123456789c0ffee\n");
        let verbose = containers_text(
            &[container()],
            &ContainersView {
                verbose: true,
                ..view()
            },
            now,
        );
        assert_eq!(
            verbose,
            format!(
                "ID: c0ffee0123456789c0ffee\nPodID: beef0123456789beef\nNamespace: unknown\nName: app\nAttempt: 0\nState: Running\nImage: sha256:{ID}\nCreated: 1 second ago\nLabels:\n\tio.kubernetes.pod.name -> web\n\n"
            )
        );
    }

    #[test]
    fn digests_are_validated_like_go_digest() {
        assert_eq!(digest_algorithm(&format!("sha256:{ID}")), Some("sha256"));
        assert_eq!(digest_algorithm("sha256:abc"), None);
        assert_eq!(digest_algorithm("busybox:1.35"), None);
        assert_eq!(
            digest_algorithm(&format!("sha256:{}", ID.to_uppercase())),
            None
        );
    }

    #[test]
    fn status_times_follow_the_state() {
        let created = v1::ContainerStatusResponse {
            status: Some(v1::ContainerStatus {
                id: "c".into(),
                state: ContainerState::ContainerCreated as i32,
                created_at: 1,
                started_at: 0,
                ..Default::default()
            }),
            ..Default::default()
        };
        let data = container_status_data(&created).unwrap();
        let status = data.status.unwrap();
        assert_eq!(
            status.get("startedAt"),
            Some(&json::Value::String(GO_ZERO_TIME_RFC3339.into()))
        );
        assert_eq!(
            status.get("finishedAt"),
            Some(&json::Value::String(GO_ZERO_TIME_RFC3339.into()))
        );
        let exited = v1::ContainerStatusResponse {
            status: Some(v1::ContainerStatus {
                state: ContainerState::ContainerExited as i32,
                exit_code: 3,
                started_at: 1_000_000_000,
                finished_at: 2_000_000_000,
                ..Default::default()
            }),
            ..Default::default()
        };
        let status = container_status_data(&exited).unwrap().status.unwrap();
        let finished = status.get("finishedAt").unwrap();
        assert!(
            matches!(finished, json::Value::String(s) if s.starts_with("1970-01-01T") && s != GO_ZERO_TIME_RFC3339),
            "{finished:?}"
        );
        assert_eq!(status.get("exitCode"), Some(&json::Value::Number(3.into())));
        let now = Timestamp::from_second(10).unwrap();
        let table = container_status_table(&exited, false, now);
        assert!(table.contains("State: CONTAINER_EXITED\n"), "{table}");
        assert!(
            table.contains("Finished: 8 seconds ago\nExit Code: 3\n"),
            "{table}"
        );
    }

    #[test]
    fn log_files_include_rotations() {
        let dir = std::env::temp_dir().join(format!("crictl-logs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for name in ["app.log", "app.log.1", "app.log.20240101", "other.log"] {
            std::fs::write(dir.join(name), "x").unwrap();
        }
        let log = dir.join("app.log").to_string_lossy().into_owned();
        let files = log_files(&log);
        let names: Vec<String> = files
            .iter()
            .map(|f| f.rsplit('/').next().unwrap().to_owned())
            .collect();
        assert_eq!(names, ["app.log.1", "app.log.20240101", "app.log"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
