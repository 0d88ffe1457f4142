//! IPVS mode against the real kernel, as root, each test in its own throwaway network
//! namespace (`nsdk-ipvs-<pid>-<n>`, deleted on drop).
//!
//! Our kernel has no IP_VS and no `dummy` link driver; ip_set is built in. For those
//! kernel facts, which no setup script can change, the tests assert the exact clear
//! error and go on with what the kernel does have (a down bridge holds the service
//! addresses in place of the dummy device). On a kernel that has them, the same tests
//! exercise them for real.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use proxy_rules::Error;
use proxy_rules::config::ProxyConfig;
use proxy_rules::exec::{Commands, IptablesExec, Target};
use proxy_rules::iptables::Table;
use proxy_rules::iptables::dump::IptablesDump;
use proxy_rules::ipvs::{
    self, AddressBinder, FakeIpvs, IpCommandBinder, IpvsHandle, IpvsOptions, IpvsPlan, IpvsTable,
    LinkKind, NetlinkIpvs, VirtualServer,
};
use proxy_rules::model::{Endpoint, IpFamily, Protocol, ProxyState, ServicePort, ServicePortName};

fn require_root() {
    assert!(
        rustix::process::geteuid().is_root(),
        "the IPVS kernel tests need root (network namespaces, netlink, ipset, iptables): run \
         `cargo test` as root, as CI does (`scripts/test.sh`)"
    );
}

/// A throwaway network namespace.
struct Netns {
    name: String,
}

impl Netns {
    fn new() -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        require_root();
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("nsdk-ipvs-{}-{n}", std::process::id());
        run(&["ip", "netns", "add", &name]);
        let ns = Self { name };
        run(&["ip", "-n", &ns.name, "link", "set", "lo", "up"]);
        ns
    }

    fn path(&self) -> PathBuf {
        PathBuf::from(format!("/run/netns/{}", self.name))
    }

    fn target(&self) -> Target {
        Target::netns(self.name.clone())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.name])
            .status();
    }
}

/// Run a command, failing the test with its stderr if it fails; its stdout.
fn run(argv: &[&str]) -> String {
    let out = Command::new(argv[0])
        .args(&argv[1..])
        .output()
        .unwrap_or_else(|e| panic!("`{}` could not start: {e}", argv.join(" ")));
    assert!(
        out.status.success(),
        "`{}` failed: {}",
        argv.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn ep(addr: &str, port: u16, node: &str) -> Endpoint {
    let mut e = Endpoint::ready(ip(addr), port);
    e.node_name = Some(node.to_owned());
    e
}

fn config(family: IpFamily) -> ProxyConfig {
    match family {
        IpFamily::V4 => ProxyConfig::new("node-a")
            .node_ip(ip("192.168.0.2"))
            .cluster_cidr("10.0.0.0/8".parse().unwrap()),
        IpFamily::V6 => ProxyConfig::new("node-a")
            .node_ip(ip("fd00:1::2"))
            .cluster_cidr("fd00:10::/64".parse().unwrap()),
    }
}

/// Services of every kind: ClusterIP with affinity, NodePorts of each protocol, an
/// external IP, a Local-policy LoadBalancer with source ranges (`node_in_ranges`: the
/// node's IP is in them, so no `-m ipvs` rule is needed) and a health check port.
fn state(family: IpFamily, node_in_ranges: bool) -> ProxyState {
    let v4 = family == IpFamily::V4;
    let a = |v4s: &str, v6s: &str| ip(if v4 { v4s } else { v6s });
    let mut state = ProxyState::new();
    let mut add = |svc: ServicePort, eps: Vec<Endpoint>| {
        let n = svc.name.clone();
        state.add_service(svc);
        state.set_endpoints(n, eps);
    };
    let name = |s: &str, p: Protocol| ServicePortName::new("ns1", s, "p", p);
    let (e1, e2) = if v4 {
        ("10.180.0.1", "10.180.0.2")
    } else {
        ("fd00:10::1", "fd00:10::2")
    };

    let mut web = ServicePort::cluster_ip(
        name("web", Protocol::Tcp),
        a("172.30.0.41", "fd00:30::41"),
        80,
    );
    web.session_affinity_seconds = Some(10_800);
    web.node_port = Some(30080);
    web.external_ips = vec![a("198.51.100.7", "2001:db8:7::7")];
    add(web, vec![ep(e1, 8080, "node-a"), ep(e2, 8080, "node-b")]);

    let mut dns = ServicePort::cluster_ip(
        name("dns", Protocol::Udp),
        a("172.30.0.10", "fd00:30::10"),
        53,
    );
    dns.node_port = Some(30053);
    add(dns, vec![ep(e2, 53, "node-b")]);

    let mut sctp = ServicePort::cluster_ip(
        name("sctp", Protocol::Sctp),
        a("172.30.0.50", "fd00:30::50"),
        7777,
    );
    sctp.node_port = Some(30777);
    add(sctp, vec![]);

    let mut lb = ServicePort::cluster_ip(
        name("lb", Protocol::Tcp),
        a("172.30.0.42", "fd00:30::42"),
        443,
    );
    lb.node_port = Some(30443);
    lb.load_balancer_ips = vec![a("1.2.3.4", "2001:db8:4::4")];
    lb.load_balancer_source_ranges = if node_in_ranges {
        vec![
            (if v4 { "192.168.0.0/16" } else { "fd00:1::/64" })
                .parse()
                .unwrap(),
            (if v4 {
                "203.0.113.0/25"
            } else {
                "2001:db8:1::/48"
            })
            .parse()
            .unwrap(),
        ]
    } else {
        vec![
            (if v4 {
                "203.0.113.0/25"
            } else {
                "2001:db8:1::/48"
            })
            .parse()
            .unwrap(),
        ]
    };
    lb.external_policy_local = true;
    lb.health_check_node_port = Some(32000);
    add(lb, vec![ep(e1, 8443, "node-a")]);
    state
}

fn plan(family: IpFamily, node_in_ranges: bool) -> IpvsPlan {
    ipvs::plan(
        &state(family, node_in_ranges),
        &config(family),
        family,
        &IpvsOptions::default(),
    )
    .unwrap()
}

fn no_ipvs_in_kernel() -> bool {
    !std::path::Path::new("/proc/net/ip_vs").exists()
}

#[test]
fn generic_netlink_is_real_and_a_missing_ipvs_is_said_clearly() {
    let ns = Netns::new();
    let path = ns.path();

    // The generic netlink code talks to the real kernel: the controller resolves itself.
    assert_eq!(ipvs::resolve_family(Some(&path), "nlctrl").unwrap(), 0x10);

    let svc = VirtualServer::new(ip("10.96.0.1"), Protocol::Tcp, 443, "rr");
    match NetlinkIpvs::open_in(Some(&path)) {
        Err(Error::Unsupported(msg)) => {
            assert_eq!(
                msg,
                format!(
                    "the kernel has no IPVS: the generic netlink family \"IPVS\" is not \
                     registered in network namespace {} (the ip_vs module is not loaded, or \
                     the kernel was built without CONFIG_IP_VS); kube-proxy's IPVS mode \
                     cannot run on this kernel",
                    path.display()
                )
            );
        }
        Ok(mut handle) => {
            // A kernel with IPVS: the plan goes in for real, and comes back out.
            assert!(!no_ipvs_in_kernel());
            let p = plan(IpFamily::V4, true);
            let out = ipvs::apply(
                &ipvs::diff(&IpvsTable::new(), &[], &p),
                &mut handle,
                &mut ipvs::FakeBinder::new(),
            );
            out.into_result().unwrap();
            let table = IpvsTable::read(&mut handle).unwrap();
            assert_eq!(table, p.table().with_connections(0));
            handle.flush().unwrap();
            assert!(handle.list_services().unwrap().is_empty());
        }
        Err(e) => panic!("unexpected error opening IPVS: {e}"),
    }

    // Sending an IPVS message to a family id the kernel does not have: a clean netlink
    // error naming the operation, not a hang.
    let mut bogus = NetlinkIpvs::with_family_id(Some(&path), 0x7ff0).unwrap();
    let e = bogus.add_service(&svc).unwrap_err();
    assert_eq!(
        e.to_string(),
        "netlink IPVS_CMD_NEW_SERVICE 10.96.0.1:443/tcp: No such file or directory (errno 2)"
    );
    assert!(e.is_not_found());
    let e = bogus.list_services().unwrap_err();
    assert!(matches!(e, Error::Netlink { errno: 2, .. }), "{e}");

    // A whole apply through it reports each virtual server's failure and skips their
    // real servers.
    let p = plan(IpFamily::V4, true);
    let out = ipvs::apply(
        &ipvs::diff(&IpvsTable::new(), &[], &p),
        &mut bogus,
        &mut ipvs::FakeBinder::new(),
    );
    assert_eq!(out.failures.len(), p.services.len());
    assert_eq!(out.skipped, p.real_server_count());
    assert!(
        out.failures
            .iter()
            .all(|f| f.action.starts_with("add service ") && f.error.is_not_found())
    );
}

/// `ip -j addr show dev DEV` in a namespace: the addresses, the link's state and flags.
fn addresses_on(ns: &Netns, dev: &str) -> (BTreeSet<IpAddr>, String, Vec<String>) {
    let out = run(&["ip", "-n", &ns.name, "-j", "addr", "show", "dev", dev]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let link = &v[0];
    let addrs = link["addr_info"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["local"].as_str().unwrap().parse().unwrap())
        .collect();
    let flags = link["flags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap().to_owned())
        .collect();
    (
        addrs,
        link["operstate"].as_str().unwrap_or("").to_owned(),
        flags,
    )
}

#[test]
fn service_addresses_bind_to_the_dummy_device_and_go_again() {
    let ns = Netns::new();
    let mut binder = IpCommandBinder::new("kube-ipvs0").netns(ns.name.clone());
    match binder.ensure_device() {
        Ok(()) => {}
        Err(Error::Unsupported(msg)) => {
            // Our kernel has no dummy driver (CONFIG_DUMMY unset): a kernel fact.
            assert_eq!(
                msg,
                format!(
                    "the kernel has no dummy network device driver (CONFIG_DUMMY): `ip -n {} \
                     link add kube-ipvs0 type dummy` said \"Error: Unknown device type.\"",
                    ns.name
                )
            );
            binder = binder.link_kind(LinkKind::Bridge);
            binder.ensure_device().unwrap();
        }
        Err(e) => panic!("unexpected error creating kube-ipvs0: {e}"),
    }
    // Twice is fine.
    binder.ensure_device().unwrap();

    let mut kernel = FakeIpvs::new();
    for family in [IpFamily::V4, IpFamily::V6] {
        let p = plan(family, true);
        let out = ipvs::apply(
            &ipvs::diff(&IpvsTable::new(), &[], &p),
            &mut kernel,
            &mut binder,
        );
        out.into_result().unwrap();
        let (on_device, state, flags) = addresses_on(&ns, "kube-ipvs0");
        let ours: BTreeSet<IpAddr> = on_device
            .iter()
            .copied()
            .filter(|a| IpFamily::of(a) == family)
            .collect();
        assert_eq!(ours, p.bound_addresses.iter().copied().collect());
        assert_eq!(state, "DOWN", "kube-proxy leaves the device down");
        assert!(flags.iter().any(|f| f == "NOARP"), "{flags:?}");
        let mut listed = binder.bound_addresses().unwrap();
        listed.retain(|a| IpFamily::of(a) == family);
        listed.sort();
        assert_eq!(listed, p.bound_addresses);
        // The addresses are local: what IPVS (on LOCAL_IN) needs.
        let flag = if family == IpFamily::V4 { "-4" } else { "-6" };
        let local = run(&[
            "ip", "-n", &ns.name, flag, "route", "show", "table", "local",
        ]);
        for a in &p.bound_addresses {
            assert!(
                local.contains(&format!("local {a} dev kube-ipvs0")),
                "{a} is not local:\n{local}"
            );
        }
    }

    // Binding again is a no-op; the services going away unbinds their addresses.
    let p4 = plan(IpFamily::V4, true);
    binder.bind(p4.bound_addresses[0]).unwrap();
    for family in [IpFamily::V4, IpFamily::V6] {
        let empty = ipvs::plan(
            &ProxyState::new(),
            &config(family),
            family,
            &IpvsOptions::default(),
        )
        .unwrap();
        let bound = binder.bound_addresses().unwrap();
        let current = IpvsTable::read(&mut kernel).unwrap();
        let d = ipvs::diff(&current, &bound, &empty);
        assert_eq!(d.unbind.len(), plan(family, true).bound_addresses.len());
        ipvs::apply(&d, &mut kernel, &mut binder)
            .into_result()
            .unwrap();
    }
    assert!(addresses_on(&ns, "kube-ipvs0").0.is_empty());
    assert!(kernel.services().is_empty());
    binder.unbind(ip("172.30.0.41")).unwrap();
    binder.delete_device().unwrap();
    binder.delete_device().unwrap();
    let links = run(&["ip", "-n", &ns.name, "link", "show"]);
    assert!(!links.contains("kube-ipvs0"), "{links}");
}

fn ipset_installed() -> bool {
    Command::new("ipset")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A rule's words in the one spelling `iptables-save` prints: `--or-mark V` is
/// `--set-xmark V/V`, `--xor-mark V` is `--set-xmark V/0x0`, and REJECT's default
/// `--reject-with icmp-port-unreachable` (`icmp6-port-unreachable`) is left out.
fn saved_spelling(args: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut words = args.iter();
    while let Some(w) = words.next() {
        match w.as_str() {
            "--or-mark" | "--xor-mark" => {
                let v = words.next().cloned().unwrap_or_default();
                let mask = if w == "--or-mark" {
                    v.clone()
                } else {
                    "0x0".into()
                };
                out.push("--set-xmark".to_owned());
                out.push(format!("{v}/{mask}"));
            }
            "--reject-with" => {
                let v = words.next().cloned().unwrap_or_default();
                if !matches!(
                    v.as_str(),
                    "icmp-port-unreachable" | "icmp6-port-unreachable"
                ) {
                    out.push(w.clone());
                    out.push(v);
                }
            }
            _ => out.push(w.clone()),
        }
    }
    out
}

/// The rules of our chains in an `iptables-save` dump, each as its sorted words (the
/// save may print a rule's options in another order than we wrote them).
fn our_rules(dump: &IptablesDump, table: &str, chains: &[&str]) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    for chain in chains {
        for r in &dump.table(table).unwrap().chain(chain).unwrap().rules {
            let mut words = saved_spelling(&r.args);
            words.sort();
            out.push(((*chain).to_owned(), words));
        }
    }
    out.sort();
    out
}

#[test]
fn ipsets_and_iptables_rules_load() {
    let ns = Netns::new();
    let target = ns.target();
    if !ipset_installed() {
        let e = ipvs::ipset::load("", &target).unwrap_err();
        assert_eq!(
            e.to_string(),
            "unsupported: the `ipset` command is not installed (Debian package `ipset`); IPVS \
             mode needs it to load its sets"
        );
        panic!(
            "the `ipset` command is missing: run `scripts/env.sh up`, which installs the Debian \
             package ipset"
        );
    }
    let rt = runtime();
    let commands = Commands::new(target.clone());
    for family in [IpFamily::V4, IpFamily::V6] {
        let p = plan(family, true);
        let input = p.ipset_restore_input();
        match ipvs::ipset::load(&input, &target) {
            Ok(()) => {}
            Err(Error::Unsupported(msg)) if msg.starts_with("the kernel has no ip_set support") => {
                // A kernel fact: nothing else here can load.
                return;
            }
            Err(e) => panic!("{e}"),
        }
        // Idempotent: a second restore gives the same sets.
        ipvs::ipset::load(&input, &target).unwrap();
        for set in &p.ipsets {
            let out = run(&["ip", "netns", "exec", &ns.name, "ipset", "list", &set.name]);
            assert!(
                out.contains(&format!("Type: {}", set.kind.as_str())),
                "{}:\n{out}",
                set.name
            );
            let members: BTreeSet<String> = out
                .split("Members:\n")
                .nth(1)
                .unwrap_or("")
                .lines()
                .filter(|l| !l.is_empty())
                .map(str::to_owned)
                .collect();
            assert_eq!(members, set.entries, "members of {}", set.name);
        }
        assert!(
            !p.ipset(ipvs::ipset::names::LOAD_BALANCER_SOURCE_CIDR)
                .unwrap()
                .is_empty()
        );

        // The iptables rules parse and load (with their jumps, into a fresh namespace).
        rt.block_on(commands.restore(family, &p.iptables.complete_restore_input()))
            .unwrap_or_else(|e| panic!("{family} rules did not load: {e}"));
        let mut saved = String::new();
        for table in [Table::Nat, Table::Filter] {
            saved.push_str(&rt.block_on(commands.save(family, table)).unwrap());
        }
        let dump = IptablesDump::parse(&saved, "iptables-save").unwrap();
        let ours = IptablesDump::parse(&p.iptables.restore_input(), "ours").unwrap();
        assert_eq!(
            our_rules(&dump, "nat", &ipvs::NAT_CHAINS),
            our_rules(&ours, "nat", &ipvs::NAT_CHAINS),
            "{family} nat"
        );
        assert_eq!(
            our_rules(&dump, "filter", &ipvs::FILTER_CHAINS),
            our_rules(&ours, "filter", &ipvs::FILTER_CHAINS),
            "{family} filter"
        );
        let jumps = dump.table("filter").unwrap().chain("INPUT").unwrap();
        assert_eq!(jumps.rules[0].target(), Some("KUBE-IPVS-FILTER"));

        // Source ranges without the node need `-m ipvs` (KUBE-IPVS-OUT-FILTER), which
        // only exists with the IPVS kernel module.
        let p = plan(family, false);
        ipvs::ipset::load(&p.ipset_restore_input(), &target).unwrap();
        let r = rt.block_on(commands.restore(family, &p.iptables.restore_input()));
        if no_ipvs_in_kernel() {
            let e = r.unwrap_err();
            let Error::Command { stderr, .. } = &e else {
                panic!("{e}");
            };
            assert!(
                stderr.contains("Extension ipvs revision 0 not supported, missing kernel module?"),
                "{e}"
            );
        } else {
            r.unwrap();
        }
    }
}
