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
    /// Build the lab with `n` backends.
    pub fn new(tag: &str, n: usize) -> Self {
        require_root();
        for tool in ["iptables-restore", "nft", "conntrack", "ip"] {
            let found = std::process::Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .output()
                .unwrap();
            assert!(found.status.success(), "{tool} is missing: {SETUP_HINT}");
        }
        let node = Netns::new(&format!("{tag}n"));
        let client = Netns::new(&format!("{tag}c"));
        node.exec(&["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"], None);
        // A default route, as every node has (else forwarded packets to service IPs
        // without endpoints would fail routing before any rule sees them).
        node.exec(&["ip", "link", "add", "br0", "type", "bridge"], None);
        node.exec(&["ip", "addr", "add", "10.180.0.1/24", "dev", "br0"], None);
        node.exec(&["ip", "link", "set", "br0", "up"], None);
        node.exec(
            &[
                "ip", "link", "add", "ve-c", "type", "veth", "peer", "name", "eth0",
            ],
            None,
        );
        node.exec(&["ip", "link", "set", "eth0", "netns", client.name()], None);
        node.exec(
            &["ip", "addr", "add", &format!("{NODE_IP}/24"), "dev", "ve-c"],
            None,
        );
        node.exec(&["ip", "link", "set", "ve-c", "up"], None);
        client.exec(
            &[
                "ip",
                "addr",
                "add",
                &format!("{CLIENT_IP}/24"),
                "dev",
                "eth0",
            ],
            None,
        );
        client.exec(&["ip", "link", "set", "eth0", "up"], None);
        client.exec(&["ip", "route", "add", "default", "via", NODE_IP], None);
        // The node's default route points at a router that does not answer, on a link
        // of its own: enough for routing decisions (our kernel has no dummy
        // interfaces; a route back out of the client's link would make the node send
        // ICMP redirects, which use up the client's ICMP rate limit so REJECTs vanish).
        node.exec(
            &[
                "ip", "link", "add", "up0", "type", "veth", "peer", "name", "up1",
            ],
            None,
        );
        node.exec(
            &["ip", "addr", "add", "198.51.100.1/24", "dev", "up0"],
            None,
        );
        node.exec(&["ip", "link", "set", "up0", "up"], None);
        node.exec(&["ip", "link", "set", "up1", "up"], None);
        node.exec(
            &["ip", "route", "add", "default", "via", "198.51.100.254"],
            None,
        );
        let mut backends = Vec::new();
        for i in 0..n {
            let ns = Netns::new(&format!("{tag}b{i}"));
            let ip = format!("10.180.0.{}", 10 + i);
            let host_end = format!("vb{i}");
            node.exec(
                &[
                    "ip", "link", "add", &host_end, "type", "veth", "peer", "name", "eth0",
                ],
                None,
            );
            node.exec(&["ip", "link", "set", "eth0", "netns", ns.name()], None);
            node.exec(&["ip", "link", "set", &host_end, "master", "br0"], None);
            node.exec(&["ip", "link", "set", &host_end, "up"], None);
            ns.exec(
                &["ip", "addr", "add", &format!("{ip}/24"), "dev", "eth0"],
                None,
            );
            ns.exec(&["ip", "link", "set", "eth0", "up"], None);
            ns.exec(
                &["ip", "route", "add", "default", "via", "10.180.0.1"],
                None,
            );
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
            let s = UdpSocket::bind((CLIENT_IP, src_port))?;
            s.set_read_timeout(Some(timeout))?;
            s.connect(addr)?;
            s.send(b"ping")?;
            let mut buf = [0u8; 256];
            let n = s.recv(&mut buf)?;
            Ok(String::from_utf8_lossy(&buf[..n]).trim().to_owned())
        })
    }

    /// The node's UDP conntrack flows, as `conntrack -L` prints them.
    pub fn conntrack_udp(&self) -> String {
        let out = run(
            &[
                "ip",
                "netns",
                "exec",
                self.node.name(),
                "conntrack",
                "-L",
                "-p",
                "udp",
            ],
            None,
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
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
        let l = TcpListener::bind("0.0.0.0:8080").expect("bind 8080");
        ready.send(()).unwrap();
        for conn in l.incoming() {
            let Ok(mut conn) = conn else { continue };
            c.fetch_add(1, Ordering::SeqCst);
            let peer = conn
                .peer_addr()
                .map(|p| p.ip().to_string())
                .unwrap_or_default();
            let _ = conn.write_all(format!("{n} {peer}\n").as_bytes());
        }
    });
    let (path, n, c) = (ns_path.to_owned(), name.to_owned(), udp_count.clone());
    std::thread::spawn(move || {
        enter(&path);
        let s = UdpSocket::bind("0.0.0.0:5353").expect("bind 5353");
        ready_tx.send(()).unwrap();
        let mut buf = [0u8; 256];
        loop {
            let Ok((_, peer)) = s.recv_from(&mut buf) else {
                continue;
            };
            c.fetch_add(1, Ordering::SeqCst);
            let _ = s.send_to(format!("{n} {}", peer.ip()).as_bytes(), peer);
        }
    });
    ready_rx.recv().unwrap();
    ready_rx.recv().unwrap();
    (tcp_count, udp_count)
}
