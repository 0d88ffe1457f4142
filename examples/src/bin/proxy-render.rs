//! `proxy-render`: print the rules kube-proxy would program for a set of Services and
//! EndpointSlices.
//!
//! ```text
//! proxy-render --mode iptables|nftables|ipvs [node options] <file|->
//! ```
//!
//! The input is a Kubernetes List in YAML or JSON, as `kubectl get
//! svc,endpointslices,servicecidrs -A -o yaml` prints it, or a multi-document YAML stream
//! of the same objects. The node options are kube-proxy's flags (`--hostname-override`,
//! `--node-ip`, `--cluster-cidr`, `--nodeport-addresses`, `--masquerade-all`, ...; see
//! `--help`).
//!
//! - iptables: complete `iptables-restore` input (or `ip6tables-restore` with
//!   `--ip-family ipv6`), including the jump rules from the built-in chains: piped into
//!   a plain `iptables-restore` (which replaces the filter and nat tables, as on a fresh
//!   node) it makes the Services work. `--without-jumps` prints only kube-proxy's
//!   chains, for `iptables-restore --noflush` next to other rules.
//! - nftables: an `nft -f` script that replaces `table ip kube-proxy` (and
//!   `table ip6 kube-proxy` with `--ip-family ipv6|both`).
//! - ipvs: a readable plan: virtual and real servers as `ipvsadm -Ln` shows them, the
//!   addresses for `kube-ipvs0`, the ipsets and the companion iptables rules.
//!
//! Objects that cannot be used are reported on stderr (naming the object and field)
//! and skipped; with `--strict` they make the exit status 1 after the output.

use std::io::Write as _;
use std::process::ExitCode;

use clap::Parser;
use node_sdk_examples::proxy::{ModeArg, NodeArgs, read_objects};
use proxy_rules::store::ServiceStore;

#[derive(Debug, Parser)]
#[command(
    name = "proxy-render",
    about = "Print kube-proxy's rules for Services and EndpointSlices",
    version
)]
struct Cli {
    /// The proxy mode.
    #[arg(long, alias = "proxy-mode", value_enum)]
    mode: ModeArg,
    #[command(flatten)]
    node: NodeArgs,
    /// iptables mode: leave out the jump rules from the built-in chains.
    #[arg(long)]
    without_jumps: bool,
    /// IPVS mode: the scheduler.
    #[arg(long = "ipvs-scheduler", default_value = "rr")]
    ipvs_scheduler: String,
    /// Exit 1 if any object had to be skipped.
    #[arg(long)]
    strict: bool,
    /// The input file (`-` for stdin).
    file: String,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(skipped) if skipped > 0 && cli.strict => ExitCode::from(1),
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("proxy-render: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(cli: &Cli) -> anyhow::Result<usize> {
    let mut config = cli.node.config()?;
    let objects = read_objects(&cli.file)?;
    config.service_cidrs = objects.service_cidrs.clone();
    let skipped = objects.errors.len();
    let mut store = ServiceStore::new();
    store.replace_all(objects.services, objects.slices);
    let mut out = String::new();
    for family in cli.node.families() {
        let state = store.proxy_state(family, &config.node_name);
        match cli.mode {
            ModeArg::Iptables => {
                let rules = proxy_rules::iptables::render(&state, &config, family)?;
                out.push_str(&if cli.without_jumps {
                    rules.restore_input()
                } else {
                    rules.complete_restore_input()
                });
            }
            ModeArg::Nftables => {
                out.push_str(
                    &proxy_rules::nftables::render(&state, &config, family)?.replace_script(),
                );
            }
            ModeArg::Ipvs => {
                out.push_str(&node_sdk_examples::proxy::ipvs_plan_text(
                    &state,
                    &config,
                    family,
                    &cli.ipvs_scheduler,
                )?);
            }
        }
    }
    std::io::stdout().write_all(out.as_bytes())?;
    Ok(skipped)
}
