//! Helpers for the node SDK's end-to-end tests: the real environment brought up by
//! `scripts/env.sh up` (containerd, registries, CNI plugins, test images), throwaway
//! network namespaces, and a minimal HTTP/1.1 client for registry checks.
//!
//! A test that needs the environment calls [`TestEnv::require`]; when the environment is
//! missing the test fails (never skips) with a message naming the setup script.

pub mod fake_api;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

pub use fake_api::FakeApiServer;

/// Where `scripts/env.sh up` writes the facts of the running environment.
pub const DEFAULT_ENV_FILE: &str = "/run/node-sdk/env";

/// The command that brings the environment up, named in every "missing" failure.
pub const SETUP_HINT: &str =
    "run `scripts/env.sh up` as root (or the whole suite with `scripts/test.sh`)";

/// The running test environment, as `scripts/env.sh up` describes it in its env file.
#[derive(Debug, Clone)]
pub struct TestEnv {
    vars: BTreeMap<String, String>,
}

impl TestEnv {
    /// Load the environment or fail the test with a message naming the setup script.
    ///
    /// The file is `$NODE_SDK_ENV_FILE` or [`DEFAULT_ENV_FILE`]. Root is required too:
    /// everything in the environment (containerd's socket, netns, iptables) needs it.
    pub fn require() -> Self {
        require_root();
        let path = std::env::var("NODE_SDK_ENV_FILE").unwrap_or_else(|_| DEFAULT_ENV_FILE.into());
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!("the node SDK test environment is not up ({path}: {e}): {SETUP_HINT}")
        });
        let env = Self::parse(&text);
        let socket = env.cri_socket();
        assert!(
            Path::new(&socket).exists(),
            "containerd's socket {socket} is missing although {path} exists: {SETUP_HINT}"
        );
        env
    }

    /// Parse `KEY=VALUE` lines; `#` comments and blank lines are ignored.
    pub fn parse(text: &str) -> Self {
        let vars = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect();
        Self { vars }
    }

    /// The value of `NODE_SDK_<key>`; panics naming the setup script when it is absent.
    pub fn get(&self, key: &str) -> &str {
        let full = format!("NODE_SDK_{key}");
        self.vars
            .get(&full)
            .map(String::as_str)
            .unwrap_or_else(|| panic!("{full} is missing from the environment file: {SETUP_HINT}"))
    }

    /// The CRI endpoint, for example `unix:///run/node-sdk/containerd/containerd.sock`.
    pub fn cri_endpoint(&self) -> &str {
        self.get("CRI_ENDPOINT")
    }

    /// The filesystem path of the CRI socket.
    pub fn cri_socket(&self) -> String {
        let ep = self.cri_endpoint();
        ep.strip_prefix("unix://").unwrap_or(ep).to_owned()
    }
}

/// Fail the test unless it runs as root, naming the setup script.
pub fn require_root() {
    let out = Command::new("id")
        .arg("-u")
        .output()
        .expect("running `id -u`");
    let uid = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert_eq!(
        uid, "0",
        "this test needs root (containerd, network namespaces, iptables): {SETUP_HINT}"
    );
}

/// Run a command and return its output, failing the test with argv, status and stderr
/// when it cannot be spawned or exits non-zero.
pub fn run(argv: &[&str], stdin: Option<&[u8]>) -> Output {
    let out = run_unchecked(argv, stdin);
    assert!(
        out.status.success(),
        "`{}` failed ({}): stdout: {} stderr: {}",
        argv.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Run a command, feeding `stdin`, and return its output whatever the exit status.
pub fn run_unchecked(argv: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut cmd = Command::new(argv[0]);
    cmd.args(&argv[1..])
        .stdin(if stdin.is_some() {
            std::process::Stdio::piped()
        } else {
            std::process::Stdio::null()
        })
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run `{}`: {e} ({SETUP_HINT})", argv.join(" ")));
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin is piped");
        pipe.write_all(input).expect("writing the child's stdin");
    }
    child.wait_with_output().expect("waiting for the child")
}

/// A network namespace made for one test and deleted when dropped.
///
/// Names are `nsdk-<tag>-<pid>-<n>`, so tests running in parallel (and in several
/// processes) never share one.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Create a fresh namespace (`ip netns add`) with its loopback up.
    pub fn new(tag: &str) -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        require_root();
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("nsdk-{tag}-{}-{n}", std::process::id());
        run(&["ip", "netns", "add", &name], None);
        let ns = Self { name };
        ns.exec(&["ip", "link", "set", "lo", "up"], None);
        ns
    }

    /// The namespace's name, as `ip netns` lists it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The namespace's path under `/run/netns`.
    pub fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }

    /// Run a command inside the namespace (`ip netns exec`), failing on non-zero exit.
    pub fn exec(&self, argv: &[&str], stdin: Option<&[u8]>) -> Output {
        let mut full = vec!["ip", "netns", "exec", self.name.as_str()];
        full.extend_from_slice(argv);
        run(&full, stdin)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.name])
            .status();
    }
}

/// Whether a namespace of that name exists (`ip netns list`).
pub fn netns_exists(name: &str) -> bool {
    let out = run(&["ip", "netns", "list"], None);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.split_whitespace().next() == Some(name))
}

/// A response read by [`http_get`].
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// Headers with lowercased names.
    pub headers: BTreeMap<String, String>,
    /// The body as received (the test registries do not chunk manifests).
    pub body: Vec<u8>,
}

/// A plain HTTP/1.1 GET with `Connection: close`, for checks against local servers.
///
/// `auth` is `(user, password)` for basic authentication.
pub fn http_get(
    addr: &str,
    path: &str,
    headers: &[(&str, &str)],
    auth: Option<(&str, &str)>,
) -> std::io::Result<HttpResponse> {
    use base64::Engine as _;
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        let _ = write!(req, "{k}: {v}\r\n");
    }
    if let Some((user, password)) = auth {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        let _ = write!(req, "Authorization: Basic {token}\r\n");
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse_response(&raw).ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidData, "malformed HTTP response")
    })
}

fn parse_response(raw: &[u8]) -> Option<HttpResponse> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..split]).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Some(HttpResponse {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_file_parses_keys_and_ignores_comments() {
        let env = TestEnv::parse(
            "# comment\n\nNODE_SDK_CRI_ENDPOINT=unix:///x.sock\nNODE_SDK_REGISTRY = 127.0.0.1:5000\n",
        );
        assert_eq!(env.cri_endpoint(), "unix:///x.sock");
        assert_eq!(env.cri_socket(), "/x.sock");
        assert_eq!(env.get("REGISTRY"), "127.0.0.1:5000");
    }

    #[test]
    #[should_panic(expected = "scripts/env.sh up")]
    fn missing_key_names_the_setup_script() {
        TestEnv::parse("").get("CRI_ENDPOINT");
    }

    #[test]
    fn http_response_parses_status_headers_and_body() {
        let r = parse_response(
            b"HTTP/1.1 401 Unauthorized\r\nWww-Authenticate: Basic realm=\"x\"\r\n\r\nbody",
        )
        .unwrap();
        assert_eq!(r.status, 401);
        assert_eq!(r.headers["www-authenticate"], "Basic realm=\"x\"");
        assert_eq!(r.body, b"body");
        assert!(parse_response(b"garbage").is_none());
    }
}

/// A containerd of one test's own (own config, root, state and socket under a
/// temporary directory), for tests that must stop or restart the runtime without
/// disturbing the shared one. Killed, with its directory removed, on drop.
#[derive(Debug)]
pub struct PrivateContainerd {
    dir: std::path::PathBuf,
    child: Option<std::process::Child>,
}

impl PrivateContainerd {
    /// Write a config and start containerd; wait (bounded) until its socket answers.
    pub fn start(tag: &str) -> Self {
        require_root();
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = std::path::PathBuf::from(format!(
            "/run/node-sdk/private-containerd/{tag}-{}-{n}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("creating the private containerd's directory");
        let d = dir.display();
        // The CRI plugin is on (the tests speak CRI to it); its CNI config dir is a
        // private, empty one, so it never touches the shared pod network.
        let config = format!(
            "version = 2\nroot = \"{d}/root\"\nstate = \"{d}/state\"\n\
             disabled_plugins = [\"io.containerd.snapshotter.v1.btrfs\", \"io.containerd.snapshotter.v1.zfs\", \
             \"io.containerd.snapshotter.v1.aufs\", \"io.containerd.snapshotter.v1.devmapper\", \"io.containerd.internal.v1.tracing\"]\n\
             [grpc]\n  address = \"{d}/containerd.sock\"\n\
             [ttrpc]\n  address = \"{d}/containerd.sock.ttrpc\"\n\
             [plugins.\"io.containerd.grpc.v1.cri\"]\n  restrict_oom_score_adj = true\n  stream_server_port = \"0\"\n\
             [plugins.\"io.containerd.grpc.v1.cri\".cni]\n  bin_dir = \"/usr/lib/cni\"\n  conf_dir = \"{d}/net.d\"\n"
        );
        std::fs::write(dir.join("config.toml"), config)
            .expect("writing the private containerd's config");
        let mut this = Self { dir, child: None };
        this.start_process();
        this
    }

    /// The CRI endpoint, `unix://<dir>/containerd.sock`.
    pub fn endpoint(&self) -> String {
        format!("unix://{}/containerd.sock", self.dir.display())
    }

    /// Kill containerd (SIGKILL, as a crash) and wait for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Start containerd again after [`kill`](Self::kill), with the same state.
    pub fn restart(&mut self) {
        self.kill();
        self.start_process();
    }

    fn start_process(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("containerd.log"))
            .expect("opening the private containerd's log");
        let child = Command::new("containerd")
            .arg("--config")
            .arg(self.dir.join("config.toml"))
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start containerd: {e} ({SETUP_HINT})"));
        self.child = Some(child);
        let socket = self.dir.join("containerd.sock");
        for _ in 0..300 {
            let answered = Command::new("ctr")
                .arg("--address")
                .arg(&socket)
                .arg("version")
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if answered {
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                let log =
                    std::fs::read_to_string(self.dir.join("containerd.log")).unwrap_or_default();
                panic!("private containerd exited ({status}): {log}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "private containerd at {} did not answer within 30 s",
            socket.display()
        );
    }
}

impl Drop for PrivateContainerd {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A name unique to this process and call, for pods, netns and chains.
pub fn unique_name(tag: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{tag}-{}-{n}-{nanos:x}", std::process::id())
}

/// The guides in `docs/`, compiled as doc tests so their examples cannot go stale.
#[cfg(doctest)]
pub mod guides {
    #[doc = include_str!("../../docs/cri-client.md")]
    pub struct CriClientGuide;

    #[doc = include_str!("../../probes/README.md")]
    pub struct ProbesReadme;

    #[doc = include_str!("../../cri-client/README.md")]
    pub struct CriClientReadme;
}

/// A client of the environment's containerd, with the busybox test image pulled;
/// returns the client and the image reference.
pub async fn cri_with_busybox(env: &TestEnv) -> (cri_client::CriClient, String) {
    let client = cri_client::CriClient::connect(env.cri_endpoint())
        .unwrap_or_else(|e| panic!("connecting to {}: {e}", env.cri_endpoint()));
    let busybox = env.get("BUSYBOX_IMAGE").to_owned();
    let spec = cri_client::v1::ImageSpec {
        image: busybox.clone(),
        ..Default::default()
    };
    client
        .pull_image(spec, None, None)
        .await
        .expect("PullImage busybox");
    (client, busybox)
}

/// A sandbox config with a unique name (from `tag`), namespace `node-sdk-e2e` and a
/// log directory under `/var/lib/node-sdk/pod-logs/`.
pub fn test_pod_config(tag: &str) -> cri_client::v1::PodSandboxConfig {
    let name = unique_name(tag);
    cri_client::v1::PodSandboxConfig {
        metadata: Some(cri_client::v1::PodSandboxMetadata {
            name: name.clone(),
            namespace: "node-sdk-e2e".into(),
            uid: format!("uid-{name}"),
            attempt: 0,
        }),
        log_directory: format!("/var/lib/node-sdk/pod-logs/{name}"),
        ..Default::default()
    }
}

/// Runs a sandbox with `config`, runs `body(pod_id)` in its own task, then stops and
/// removes the pod whatever happened, and only then re-raises the body's panic.
pub async fn with_sandbox<F, Fut>(
    client: &cri_client::CriClient,
    config: cri_client::v1::PodSandboxConfig,
    body: F,
) where
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let pod_id = client
        .run_pod_sandbox(config, "")
        .await
        .expect("RunPodSandbox");
    let outcome = tokio::spawn(body(pod_id.clone())).await;
    let removed = client.ensure_pod_sandbox_removed(&pod_id).await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
    removed.unwrap_or_else(|e| panic!("removing test pod {pod_id}: {e}"));
}
