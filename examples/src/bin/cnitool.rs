//! `cnitool`: a drop-in for upstream `cnitool` (containernetworking/cni): run a network
//! configuration's plugins against an existing network namespace.
//!
//! ```text
//! cnitool add|check|del|gc|status <net> <netns>   [-i|--ifname IFNAME]
//! ```
//!
//! As upstream:
//! - `NETCONFPATH` (default `/etc/cni/net.d`): where `<net>` is found by name, with
//!   libcni's rules (`*.conflist` first, then `*.conf`/`*.json`).
//! - `CNI_PATH`: the plugin directories, `:`-separated; unset means none (every plugin
//!   is then "not found", as upstream).
//! - `CNI_ARGS` (`K=V;K=V`), `CAP_ARGS` (a JSON object of capability arguments),
//!   `CNI_IFNAME` (default `eth0`; `-i/--ifname` wins, as in newer upstream).
//! - The container ID is `cnitool-` and the first 20 hex digits of the SHA-512 of the
//!   absolute netns path, so `add` and `del` of one netns meet in libcni's cache under
//!   `/var/lib/cni` (which upstream cannot move either).
//! - `add` prints the result as JSON indented by four spaces (no trailing newline);
//!   `gc` collects everything of the network (no valid attachments are passed); `status`
//!   takes a netns too, unused. Every verb takes `<net> <netns>`.
//! - Errors go to stderr with exit 1; fewer than three arguments print the usage to
//!   stderr and exit 1. An unknown verb is a usage error too (the single-file upstream
//!   silently exits 0 there; the cobra-based one fails).

use std::io::Write as _;
use std::process::ExitCode;

use cni_exec::network::{CniConfig, RuntimeConf};
use node_sdk_examples::cnitool::{self, Cli, DEFAULT_CACHE_DIR, DEFAULT_NET_DIR, Invocation, Verb};

fn main() -> ExitCode {
    let mut argv = std::env::args();
    let exe = argv
        .next()
        .as_deref()
        .map(|p| {
            std::path::Path::new(p)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| p.to_owned())
        })
        .unwrap_or_else(|| "cnitool".to_owned());
    match cnitool::parse_cli(argv) {
        Cli::Help => {
            print!("{}", cnitool::usage(&exe));
            ExitCode::SUCCESS
        }
        Cli::Usage => {
            eprint!("{}", cnitool::usage(&exe));
            ExitCode::from(1)
        }
        Cli::Run(inv) => match run(inv) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(1)
            }
        },
    }
}

/// An error and its sources, joined as Go's wrapped errors read.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

fn env(key: &str) -> String {
    std::env::var(key).unwrap_or_default()
}

/// `cnitool conformance <net> [<netns>]`: runs the spec conformance checks and prints
/// the report; exits 1 when a check failed.
fn conformance(
    inv: Invocation,
    list: cni_exec::config::NetworkConfigList,
    capability_args: serde_json::Map<String, serde_json::Value>,
    args: Vec<(String, String)>,
    ifname: String,
) -> Result<(), String> {
    use cni_exec::conformance::{ConformanceCheck, NetnsSource};
    let cni = CniConfig::new(
        cnitool::split_path_list(&env("CNI_PATH")),
        DEFAULT_CACHE_DIR,
    );
    let mut check = ConformanceCheck::new(cni, list)
        .ifname(ifname)
        .capability_args(capability_args);
    if !args.is_empty() {
        check = check.args(args);
    }
    if !inv.netns.is_empty() {
        check = check.netns(NetnsSource::Path(inv.netns));
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    let report = runtime.block_on(check.run());
    print!("{report}");
    if report.passed() {
        Ok(())
    } else {
        Err(format!(
            "{} conformance check(s) failed",
            report.failed_count()
        ))
    }
}

fn run(inv: Invocation) -> Result<(), String> {
    // Upstream's order: the network first, then CAP_ARGS, CNI_ARGS, the ifname and netns.
    let net_dir = match env("NETCONFPATH") {
        d if d.is_empty() => DEFAULT_NET_DIR.to_owned(),
        d => d,
    };
    let list = cni_exec::config::load_network(&net_dir, &inv.net).map_err(|e| chain(&e))?;
    let capability_args = cnitool::parse_cap_args(&env("CAP_ARGS"))?;
    let args = cnitool::parse_cni_args(&env("CNI_ARGS"))?;
    let ifname = cnitool::ifname(
        inv.ifname.as_deref(),
        std::env::var("CNI_IFNAME").ok().as_deref(),
    );
    if inv.verb == Verb::Conformance {
        return conformance(inv, list, capability_args, args, ifname);
    }
    let cwd = std::env::current_dir().map_err(|e| format!("current directory: {e}"))?;
    let netns = cnitool::absolute(&inv.netns, &cwd)
        .to_string_lossy()
        .into_owned();
    let rt = RuntimeConf {
        container_id: cnitool::container_id(&netns),
        netns: Some(netns),
        ifname,
        args,
        capability_args,
    };
    let cni = CniConfig::new(
        cnitool::split_path_list(&env("CNI_PATH")),
        DEFAULT_CACHE_DIR,
    );

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    runtime.block_on(async {
        match inv.verb {
            Verb::Add => {
                let result = cni.add(&list, &rt).await.map_err(|e| chain(&e))?;
                let mut out = std::io::stdout().lock();
                // As upstream, a failure to print is not the command's failure.
                let _ = out.write_all(cnitool::format_result(&result).as_bytes());
                let _ = out.flush();
                Ok(())
            }
            Verb::Check => cni.check(&list, &rt).await.map_err(|e| chain(&e)),
            Verb::Del => cni.del(&list, &rt).await.map_err(|e| chain(&e)),
            Verb::Gc => cni.gc(&list, &[]).await.map_err(|e| chain(&e)),
            Verb::Status => cni.status(&list).await.map_err(|e| chain(&e)),
            Verb::Conformance => unreachable!("handled before"),
        }
    })
}
