//! `crictl`: crictl v1.36's command line over [`cri_client`].
//!
//! The same commands, flags, config file (`/etc/crictl.yaml`, `-c`,
//! `CRI_CONFIG_FILE`), environment variables, output formats (tables, `-o
//! json|yaml` in the protobuf JSON mapping) and error texts as crictl, plus
//! ID prefixes everywhere an ID is taken. Run it with
//! `cargo run -p node-sdk-examples --bin crictl -- -r unix:///run/containerd/containerd.sock ps`.
//!
//! Layout: `cli` is the command line; `commands/` runs each command;
//! the pure parts (config file, filters, ID prefixes, tables, units, JSON
//! output, error texts) are modules of their own with unit tests. `exec`
//! without `--sync`, `attach`, `port-forward` and `logs` hand their streams to
//! `pending`, the one seam left for the streaming and log modules of
//! `cri-client`.

mod cli;
mod client;
mod commands;
mod config;
mod errors;
mod files;
mod filter;
mod json;
mod log;
mod pending;
mod resolve;
mod table;
mod units;

use std::process::ExitCode;

use clap::Parser as _;

use self::cli::Cli;
use self::client::Clients;
use self::config::{
    DEFAULT_CONFIG_PATH, FileConfig, GlobalFlags, fallback_config_path, parse_config,
    resolve_settings,
};
use self::errors::Exit;

/// Runs crictl with the process's arguments and returns its exit status:
/// 0 on success, 1 when the command failed (after a `FATA` log line), the
/// command's own status for `exec --sync`, 2 for a bad command line.
pub fn main() -> ExitCode {
    log::init();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let flags = GlobalFlags {
        config: cli.config.clone(),
        runtime_endpoint: cli.runtime_endpoint.clone(),
        image_endpoint: cli.image_endpoint.clone(),
        timeout: cli.timeout,
        debug: cli.debug,
    };
    let file = match load_config(flags.config.as_deref()) {
        Ok(file) => file,
        Err(message) => {
            log::fatal(&message);
            return ExitCode::FAILURE;
        }
    };
    let settings = resolve_settings(&flags, file.as_ref());
    log::set_debug(settings.debug);
    log::debug(&format!("Settings: {settings:?}"));
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            log::fatal(&format!("starting the async runtime: {e}"));
            return ExitCode::FAILURE;
        }
    };
    let clients = Clients::new(settings);
    let result = runtime.block_on(commands::run(cli.command, &clients));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => match e.downcast_ref::<Exit>() {
            Some(exit) => {
                if !exit.message.is_empty() {
                    eprintln!("{}", exit.message);
                }
                ExitCode::from(u8::try_from(exit.code.clamp(1, 255)).unwrap_or(1))
            }
            None => {
                log::fatal(&format!("{e:#}"));
                ExitCode::FAILURE
            }
        },
    }
}

/// Loads the config file as crictl does: `-c`/`CRI_CONFIG_FILE` or
/// `/etc/crictl.yaml`, then `crictl.yaml` beside the binary. A problem with a
/// file the user named is fatal; with the default one it only means no file.
fn load_config(explicit: Option<&str>) -> Result<Option<FileConfig>, String> {
    let path = explicit.unwrap_or(DEFAULT_CONFIG_PATH);
    let loaded = read_config(path);
    match (loaded, explicit) {
        (Ok(file), _) => Ok(file),
        (Err(message), Some(_)) => Err(message),
        (Err(message), None) => {
            log::warn(&format!("Ignoring the default config: {message}"));
            Ok(None)
        }
    }
}

fn read_config(path: &str) -> Result<Option<FileConfig>, String> {
    let mut chosen = std::path::PathBuf::from(path);
    if !chosen.exists() {
        let executable = std::env::current_exe().unwrap_or_default();
        let next = fallback_config_path(&executable);
        log::warn(&format!(
            "Config {path:?} does not exist, trying next: {:?}",
            next.display().to_string()
        ));
        if !next.exists() {
            return if path == DEFAULT_CONFIG_PATH {
                Ok(None)
            } else {
                Err(format!(
                    "load config file: stat {path}: no such file or directory"
                ))
            };
        }
        chosen = next;
    }
    let text = std::fs::read_to_string(&chosen)
        .map_err(|e| format!("load config file: {}: {e}", chosen.display()))?;
    parse_config(&text)
        .map(Some)
        .map_err(|e| format!("load config file: {}: {e}", chosen.display()))
}
