//! `proxy-trace`: follow a packet through the Service rules and say where it can go.
//!
//! ```text
//! proxy-trace --mode iptables|nftables [--netns NAME | --rules FILE | --objects FILE]
//!             --from pod|external|host --src IP --dst IP:PORT [--proto tcp|udp|sctp]
//! ```
//!
//! The rules come from the kernel (`iptables-save`, or `nft -j list table ip
//! kube-proxy`; in `--netns NAME` if given), from a file (`iptables-save` output or
//! restore input; an nft dump or script), or are rendered from a file of Services and
//! EndpointSlices with the node options (what `proxy-render` would apply). The node's
//! local addresses are read from the kernel (`ip -j addr`) when tracing the kernel's
//! rules, else taken from `--node-ip` / `--host-address`.
//!
//! It prints every path the packet can take: the endpoint it is DNATed to, whether it
//! is masqueraded, the verdict (accepted, dropped, rejected) and the rules that matched.

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::{Parser, ValueEnum};
use node_sdk_examples::proxy::{ModeArg, NodeArgs, read_objects};
use proxy_rules::exec::Target;
use proxy_rules::iptables::dump::IptablesDump;
use proxy_rules::model::{IpFamily, Protocol};
use proxy_rules::store::ServiceStore;
use proxy_rules::trace::{NftTable, Node, Origin, Packet, trace_iptables, trace_nftables};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum From {
    /// A pod on this node.
    Pod,
    /// Outside the node.
    External,
    /// The node itself (host network).
    Host,
}

#[derive(Debug, Parser)]
#[command(
    name = "proxy-trace",
    about = "Trace a packet through kube-proxy's rules",
    version
)]
struct Cli {
    /// The proxy mode.
    #[arg(long, alias = "proxy-mode", value_enum, default_value = "iptables")]
    mode: ModeArg,
    /// Read the kernel's rules inside this network namespace.
    #[arg(long, value_name = "NAME")]
    netns: Option<String>,
    /// Trace these rules instead of the kernel's (`-` for stdin).
    #[arg(long, value_name = "FILE", conflicts_with = "objects")]
    rules: Option<String>,
    /// Render these Services and EndpointSlices (with the node options) and trace that.
    #[arg(long, value_name = "FILE")]
    objects: Option<String>,
    #[command(flatten)]
    node: NodeArgs,
    /// Where the packet comes from.
    #[arg(long, value_enum, default_value = "external")]
    from: From,
    /// The source address.
    #[arg(long)]
    src: IpAddr,
    /// The source port (only needed if a rule matches on it).
    #[arg(long)]
    sport: Option<u16>,
    /// The destination, `IP:PORT` (`[IPv6]:PORT`).
    #[arg(long)]
    dst: SocketAddr,
    /// The protocol.
    #[arg(long, default_value = "tcp")]
    proto: String,
    /// The interface the packet arrives on (for `-i` / `iifname` rules).
    #[arg(long = "in-interface")]
    in_interface: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    match rt.block_on(run(&cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("proxy-trace: {e:#}");
            ExitCode::from(1)
        }
    }
}

async fn run(cli: &Cli) -> anyhow::Result<()> {
    let protocol = Protocol::parse(&cli.proto)
        .with_context(|| format!("--proto {:?}: tcp, udp or sctp", cli.proto))?;
    let family = IpFamily::of(&cli.dst.ip());
    let origin = match cli.from {
        From::Pod => Origin::Pod,
        From::External => Origin::External,
        From::Host => Origin::Host,
    };
    let mut packet = Packet::new(origin, protocol, cli.src, cli.dst);
    if let Some(p) = cli.sport {
        packet = packet.with_source_port(p);
    }
    if let Some(i) = &cli.in_interface {
        packet = packet.with_in_interface(i.clone());
    }
    let target = cli.netns.clone().map_or_else(Target::host, Target::netns);
    let mut addresses: Vec<IpAddr> = cli
        .node
        .node_ip
        .iter()
        .chain(cli.node.host_address.iter())
        .copied()
        .collect();
    let from_kernel = cli.rules.is_none() && cli.objects.is_none();
    if from_kernel {
        addresses.extend(node_sdk_examples::proxy::local_addresses(&target).await?);
    }
    let node = Node::new(addresses);

    let trace = match cli.mode {
        ModeArg::Iptables => {
            let (text, source) = if let Some(objects) = &cli.objects {
                let config = cli.node.config()?;
                let objs = read_objects(objects)?;
                let mut store = ServiceStore::new();
                store.replace_all(objs.services, objs.slices);
                let state = store.proxy_state(family, &config.node_name);
                (
                    proxy_rules::iptables::render(&state, &config, family)?
                        .complete_restore_input(),
                    objects.clone(),
                )
            } else if let Some(path) = &cli.rules {
                (read_text(path)?, path.clone())
            } else {
                let save = match family {
                    IpFamily::V4 => "iptables-save",
                    IpFamily::V6 => "ip6tables-save",
                };
                (target.run(save, &[], None).await?, save.to_owned())
            };
            let dump = IptablesDump::parse(&text, &source)?;
            trace_iptables(&dump, &packet, &node)?
        }
        ModeArg::Nftables => {
            let table = if let Some(objects) = &cli.objects {
                let mut config = cli.node.config()?;
                let objs = read_objects(objects)?;
                config.service_cidrs = objs.service_cidrs.clone();
                let mut store = ServiceStore::new();
                store.replace_all(objs.services, objs.slices);
                let state = store.proxy_state(family, &config.node_name);
                NftTable::from_ruleset(&proxy_rules::nftables::render(&state, &config, family)?)?
            } else if let Some(path) = &cli.rules {
                NftTable::parse(&read_text(path)?, path)?
            } else {
                let fam = proxy_rules::nftables::family_word(family);
                let json = target
                    .run(
                        "nft",
                        &["-j", "list", "table", fam, proxy_rules::nftables::TABLE],
                        None,
                    )
                    .await?;
                NftTable::from_json(&json, "nft -j list table")?
            };
            trace_nftables(&table, &packet, &node)?
        }
        ModeArg::Ipvs => bail!("IPVS mode has no tracer (the kernel here has no IPVS to read)"),
    };
    println!("{trace}");
    Ok(())
}

fn read_text(path: &str) -> anyhow::Result<String> {
    if path == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s).context("reading stdin")?;
        return Ok(s);
    }
    std::fs::read_to_string(path).with_context(|| format!("reading {path}"))
}
