//! The commands: each reads its flags, talks to the runtime through
//! [`Clients`], and prints what crictl prints.

mod containers;
mod images;
mod pods;
mod runtime;
mod stats;
mod streaming;

use anyhow::{Context as _, anyhow};
use clap::CommandFactory;
use cri_client::v1::ImageFilter;

use super::cli::{Cli, Command};
use super::client::Clients;
use super::log;
use super::resolve::{self, Kind, is_full_id};

/// Runs one command.
pub(crate) async fn run(command: Command, clients: &Clients) -> anyhow::Result<()> {
    match command {
        Command::Version => runtime::version(clients).await,
        Command::Info(args) => runtime::info(clients, args).await,
        Command::RuntimeConfig => runtime::runtime_config(clients).await,
        Command::Events(args) => runtime::events(clients, args).await,
        Command::Runp(args) => pods::runp(clients, args).await,
        Command::Stopp(args) => pods::stopp(clients, args).await,
        Command::Rmp(args) => pods::rmp(clients, args).await,
        Command::Pods(args) => pods::pods(clients, args).await,
        Command::Inspectp(args) => pods::inspectp(clients, args).await,
        Command::Create(args) => containers::create(clients, args).await,
        Command::Run(args) => containers::run(clients, args).await,
        Command::Start(args) => containers::start(clients, args).await,
        Command::Stop(args) => containers::stop(clients, args).await,
        Command::Rm(args) => containers::rm(clients, args).await,
        Command::Ps(args) => containers::ps(clients, args).await,
        Command::Inspect(args) => containers::inspect(clients, args).await,
        Command::Exec(args) => streaming::exec(clients, args).await,
        Command::Attach(args) => streaming::attach(clients, args).await,
        Command::PortForward(args) => streaming::port_forward(clients, args).await,
        Command::Logs(args) => streaming::logs(clients, args).await,
        Command::Pull(args) => images::pull(clients, args).await,
        Command::Images(args) => images::images(clients, args).await,
        Command::Inspecti(args) => images::inspecti(clients, args).await,
        Command::Rmi(args) => images::rmi(clients, args).await,
        Command::Imagefsinfo(args) => images::imagefsinfo(clients, args).await,
        Command::Stats(args) => stats::stats(clients, args).await,
        Command::Statsp(args) => stats::statsp(clients, args).await,
    }
}

/// Prints a command's help, as crictl does when it has nothing to act on.
pub(crate) fn print_help(name: &str) {
    let mut cli = Cli::command();
    if let Some(sub) = cli.find_subcommand_mut(name) {
        let _ = sub.print_help();
    }
}

/// The full pod sandbox ID a prefix names (the prefix itself when it names
/// none, so the runtime's own "not found" is reported).
pub(crate) async fn resolve_pod(clients: &Clients, given: &str) -> anyhow::Result<String> {
    if given.is_empty() || is_full_id(given) {
        return Ok(given.to_owned());
    }
    let client = clients.runtime().await?;
    let ids: Vec<String> = match client.list_pod_sandboxes(None).await {
        Ok(pods) => pods.into_iter().map(|p| p.id).collect(),
        Err(e) => {
            log::debug(&format!("Listing pods to resolve {given:?}: {e}"));
            return Ok(given.to_owned());
        }
    };
    finish(resolve::resolve(Kind::PodSandbox, given, &ids), given)
}

/// The full container ID a prefix names (see [`resolve_pod`]).
pub(crate) async fn resolve_container(clients: &Clients, given: &str) -> anyhow::Result<String> {
    if given.is_empty() || is_full_id(given) {
        return Ok(given.to_owned());
    }
    let client = clients.runtime().await?;
    let ids: Vec<String> = match client.list_containers(None).await {
        Ok(containers) => containers.into_iter().map(|c| c.id).collect(),
        Err(e) => {
            log::debug(&format!("Listing containers to resolve {given:?}: {e}"));
            return Ok(given.to_owned());
        }
    };
    finish(resolve::resolve(Kind::Container, given, &ids), given)
}

/// The full image ID an ID prefix names; references (`busybox:1.35`) and
/// prefixes that name nothing are returned as given.
pub(crate) async fn resolve_image(clients: &Clients, given: &str) -> anyhow::Result<String> {
    if !resolve::looks_like_image_id(given) || is_full_id(given) {
        return Ok(given.to_owned());
    }
    let client = clients.image().await?;
    let ids: Vec<String> = match client.list_images(Some(ImageFilter::default())).await {
        Ok(images) => images.into_iter().map(|i| i.id).collect(),
        Err(e) => {
            log::debug(&format!("Listing images to resolve {given:?}: {e}"));
            return Ok(given.to_owned());
        }
    };
    finish(resolve::resolve(Kind::Image, given, &ids), given)
}

fn finish(resolved: Result<Option<String>, String>, given: &str) -> anyhow::Result<String> {
    match resolved {
        Ok(Some(id)) => {
            if id != given {
                log::debug(&format!("Resolved ID prefix {given:?} to {id}"));
            }
            Ok(id)
        }
        Ok(None) => Ok(given.to_owned()),
        Err(e) => Err(anyhow!(e)),
    }
}

/// Resolves an optional filter ID (`--id`, `--pod`) with `resolve`.
pub(crate) async fn resolve_filter<'a, F, Fut>(
    given: Option<&'a str>,
    resolve: F,
) -> anyhow::Result<String>
where
    F: FnOnce(&'a str) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<String>>,
{
    match given.filter(|g| !g.is_empty()) {
        Some(id) => resolve(id).await,
        None => Ok(String::new()),
    }
}

/// Adds crictl's context to a message error.
pub(crate) fn with_context<T>(
    result: Result<T, String>,
    context: &'static str,
) -> anyhow::Result<T> {
    result.map_err(|e| anyhow!(e)).context(context)
}

/// Refuses go-template output, which this crictl does not implement.
pub(crate) fn check_format(output: &str, allowed: &[&str]) -> anyhow::Result<()> {
    if output == "go-template" {
        return Err(anyhow!(
            "go-template output is not supported by this crictl; use -o json and a JSON tool"
        ));
    }
    if allowed.contains(&output) {
        Ok(())
    } else {
        Err(anyhow!("unsupported format: {output:?}"))
    }
}
