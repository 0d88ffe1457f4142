//! A small node in network namespaces for real-kernel tests: a "node" namespace where
//! the proxy rules live, with a pod bridge `br0` (10.180.0.1/24) holding backend pods,
//! and an external client on a separate link (192.168.0.10 → node 192.168.0.2).
//!
//! Each backend runs, inside its own namespace, a TCP server on 8080 and a UDP server
//! on 5353 that answer `<name> <peer-ip>` and count what they received.

#![allow(dead_code, unreachable_pub)]

use std::fs::File;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use node_sdk_e2e::{Netns, SETUP_HINT, require_root, run};

/// The node's address on the client link.
pub const NODE_IP: &str = "192.168.0.2";
/// The client's address.
pub const CLIENT_IP: &str = "192.168.0.10";
/// The node's IPv6 address on the client link.
pub const NODE_IP6: &str = "fd00:192::2";
/// The client's IPv6 address.
pub const CLIENT_IP6: &str = "fd00:192::10";
/// The node's name.
pub const NODE_NAME: &str = "node-a";

/// Run `f` in a thread that first enters the network namespace at `path`; sockets
/// made there belong to that namespace.
pub fn in_netns<T: Send + 'static>(path: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = path.to_owned();
    std::thread::spawn(move || {
        enter(&path);
        f()
    })
    .join()
    .expect("netns thread panicked")
}

fn enter(path: &str) {
    let ns = File::open(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    rustix::thread::move_into_link_name_space(
        ns.as_fd(),
        Some(rustix::thread::LinkNameSpaceType::Network),
    )
    .unwrap_or_else(|e| panic!("setns {path}: {e}"));
}

/// One backend pod.
pub struct Backend {
    /// Its name (what it answers).
    pub name: String,
    /// Its pod IP.
    pub ip: IpAddr,
    /// TCP connections accepted.
    pub tcp_count: Arc<AtomicUsize>,
    /// UDP datagrams received.
    pub udp_count: Arc<AtomicUsize>,
    ns: Netns,
}

/// The lab.
pub struct Lab {
    /// The node's namespace (rules go here).
    pub node: Netns,
    /// The external client's namespace.
    pub client: Netns,
    /// The backends b0, b1, ...
    pub backends: Vec<Backend>,
}

impl Lab {
    /// Build the lab with `n` backends. It is dual-stack: next to the IPv4 addresses,
    /// the client is fd00:192::10, the node fd00:192::2 on its side and fd00:180::1 on
    /// the pod bridge, backend `i` fd00:180::(10+i).
    pub fn new(tag: &str, n: usize) -> Self {
        require_root();
        for tool in [
            "iptables-restore",
            "ip6tables-restore",
            "nft",
            "conntrack",
            "ip",
        ] {
            let found = std::process::Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .output()
                .unwrap();
            assert!(found.status.success(), "{tool} is missing: {SETUP_HINT}");
        }
        let sh = |ns: &Netns, cmd: &str| {
            let argv: Vec<&str> = cmd.split_whitespace().collect();
            ns.exec(&argv, None);
        };
        let node = Netns::new(&format!("{tag}n"));
        let client = Netns::new(&format!("{tag}c"));
        sh(&node, "sysctl -q -w net.ipv4.ip_forward=1");
        sh(&node, "sysctl -q -w net.ipv6.conf.all.forwarding=1");
        // The pod bridge.
        sh(&node, "ip link add br0 type bridge");
        sh(&node, "ip addr add 10.180.0.1/24 dev br0");
        sh(&node, "ip addr add fd00:180::1/64 dev br0 nodad");
        sh(&node, "ip link set br0 up");
        // The client's link.
        sh(&node, "ip link add ve-c type veth peer name eth0");
        node.exec(&["ip", "link", "set", "eth0", "netns", client.name()], None);
        sh(&node, &format!("ip addr add {NODE_IP}/24 dev ve-c"));
        sh(&node, &format!("ip addr add {NODE_IP6}/64 dev ve-c nodad"));
        sh(&node, "ip link set ve-c up");
        sh(&client, &format!("ip addr add {CLIENT_IP}/24 dev eth0"));
        sh(
            &client,
            &format!("ip addr add {CLIENT_IP6}/64 dev eth0 nodad"),
        );
        sh(&client, "ip link set eth0 up");
        sh(&client, &format!("ip route add default via {NODE_IP}"));
        sh(&client, &format!("ip -6 route add default via {NODE_IP6}"));
        // The node's default routes point at a router that does not answer, on a link
        // of its own: enough for routing decisions (our kernel has no dummy
        // interfaces; a route back out of the client's link would make the node send
        // ICMP redirects, which use up the client's ICMP rate limit so REJECTs vanish).
        sh(&node, "ip link add up0 type veth peer name up1");
        sh(&node, "ip addr add 198.51.100.1/24 dev up0");
        sh(&node, "ip addr add 2001:db8:ff::1/64 dev up0 nodad");
        sh(&node, "ip link set up0 up");
        sh(&node, "ip link set up1 up");
        sh(&node, "ip route add default via 198.51.100.254");
        sh(&node, "ip -6 route add default via 2001:db8:ff::fe");
        let mut backends = Vec::new();
        for i in 0..n {
            let ns = Netns::new(&format!("{tag}b{i}"));
            let ip = format!("10.180.0.{}", 10 + i);
            sh(
                &node,
                &format!("ip link add vb{i} type veth peer name eth0"),
            );
            node.exec(&["ip", "link", "set", "eth0", "netns", ns.name()], None);
            sh(&node, &format!("ip link set vb{i} master br0"));
            sh(&node, &format!("ip link set vb{i} up"));
            sh(&ns, &format!("ip addr add {ip}/24 dev eth0"));
            sh(
                &ns,
                &format!("ip addr add fd00:180::{}/64 dev eth0 nodad", 10 + i),
            );
            sh(&ns, "ip link set eth0 up");
            sh(&ns, "ip route add default via 10.180.0.1");
            sh(&ns, "ip -6 route add default via fd00:180::1");
            let name = format!("b{i}");
            let (tcp_count, udp_count) = serve(&ns.path(), &name);
            backends.push(Backend {
                name,
                ip: ip.parse().unwrap(),
                tcp_count,
                udp_count,
                ns,
            });
        }
        Lab {
            node,
            client,
            backends,
        }
    }

    /// A TCP request from the client: the answering backend's reply, or the error.
    pub fn tcp(&self, addr: &str, timeout: Duration) -> std::io::Result<String> {
        let addr: SocketAddr = addr.parse().unwrap();
        in_netns(&self.client.path(), move || {
            let mut s = TcpStream::connect_timeout(&addr, timeout)?;
            s.set_read_timeout(Some(timeout))?;
            let mut out = String::new();
            s.read_to_string(&mut out)?;
            Ok(out.trim().to_owned())
        })
    }

    /// An HTTP GET from the client; the whole response.
    pub fn http_get(&self, addr: &str) -> std::io::Result<String> {
        let addr: SocketAddr = addr.parse().unwrap();
        in_netns(&self.client.path(), move || {
            let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: lb\r\n\r\n")?;
            let mut out = String::new();
            s.read_to_string(&mut out)?;
            Ok(out)
        })
    }

    /// `n` TCP requests from the client; the answering backends' names.
    pub fn tcp_names(&self, addr: &str, n: usize) -> Vec<String> {
        (0..n)
            .map(|_| {
                let reply = self
                    .tcp(addr, Duration::from_secs(5))
                    .unwrap_or_else(|e| panic!("TCP to {addr}: {e}"));
                reply.split_whitespace().next().unwrap_or("").to_owned()
            })
            .collect()
    }

    /// A UDP request from the client, from `src_port` (0: any).
    pub fn udp(&self, addr: &str, src_port: u16, timeout: Duration) -> std::io::Result<String> {
        let addr: SocketAddr = addr.parse().unwrap();
        in_netns(&self.client.path(), move || {
            let client: IpAddr = if addr.is_ipv6() {
                CLIENT_IP6.parse().unwrap()
            } else {
                CLIENT_IP.parse().unwrap()
            };
            let s = UdpSocket::bind((client, src_port))?;
            s.set_read_timeout(Some(timeout))?;
            s.connect(addr)?;
            s.send(b"ping")?;
            let mut buf = [0u8; 256];
            let n = s.recv(&mut buf)?;
            Ok(String::from_utf8_lossy(&buf[..n]).trim().to_owned())
        })
    }

    /// Run `argv` inside the node namespace (feeding `stdin`), require success and
    /// return its standard output.
    pub fn on_node(&self, argv: &[&str], stdin: Option<&[u8]>) -> String {
        let mut full = vec!["ip", "netns", "exec", self.node.name()];
        full.extend_from_slice(argv);
        String::from_utf8_lossy(&run(&full, stdin).stdout).into_owned()
    }

    /// The node's UDP conntrack flows of both families, as `conntrack -L` prints them.
    pub fn conntrack_udp(&self) -> String {
        ["ipv4", "ipv6"]
            .iter()
            .map(|family| self.on_node(&["conntrack", "-L", "-f", family, "-p", "udp"], None))
            .collect()
    }

    /// A backend by name.
    pub fn backend(&self, name: &str) -> &Backend {
        self.backends.iter().find(|b| b.name == name).unwrap()
    }
}

fn serve(ns_path: &str, name: &str) -> (Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let tcp_count = Arc::new(AtomicUsize::new(0));
    let udp_count = Arc::new(AtomicUsize::new(0));
    let (path, n, c) = (ns_path.to_owned(), name.to_owned(), tcp_count.clone());
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let ready = ready_tx.clone();
    std::thread::spawn(move || {
        enter(&path);
        // A dual-stack socket: IPv4 peers show as v4-mapped, printed as IPv4.
        let l = TcpListener::bind("[::]:8080").expect("bind 8080");
        ready.send(()).unwrap();
        for conn in l.incoming() {
            let Ok(mut conn) = conn else { continue };
            c.fetch_add(1, Ordering::SeqCst);
            let peer = conn
                .peer_addr()
                .map(|p| p.ip().to_canonical().to_string())
                .unwrap_or_default();
            let _ = conn.write_all(format!("{n} {peer}\n").as_bytes());
        }
    });
    let (path, n, c) = (ns_path.to_owned(), name.to_owned(), udp_count.clone());
    std::thread::spawn(move || {
        enter(&path);
        let s = UdpSocket::bind("[::]:5353").expect("bind 5353");
        ready_tx.send(()).unwrap();
        let mut buf = [0u8; 256];
        loop {
            let Ok((_, peer)) = s.recv_from(&mut buf) else {
                continue;
            };
            c.fetch_add(1, Ordering::SeqCst);
            let _ = s.send_to(format!("{n} {}", peer.ip().to_canonical()).as_bytes(), peer);
        }
    });
    ready_rx.recv().unwrap();
    ready_rx.recv().unwrap();
    (tcp_count, udp_count)
}
