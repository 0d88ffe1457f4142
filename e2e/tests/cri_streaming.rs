//! The streaming client (`cri_client::streaming`) against the real containerd:
//! exec with every stream and every protocol containerd accepts, exit codes, stdin,
//! a TTY with resizes, attach, port-forward to a busybox httpd, and refused URLs.
//!
//! Each test runs its own pod (unique name) and removes it even when an assertion
//! fails. Nothing asserts on time; waits are bounded polls.

use std::future::Future;
use std::time::Duration;

use cri_client::streaming::{
    self, ExecOptions, ExitStatus, PortForwardStream, Protocol, SessionOutput, StreamClient,
    StreamError,
};
use cri_client::tonic::transport::Channel;
use cri_client::v1::runtime_service_client::RuntimeServiceClient;
use cri_client::v1::{
    AttachRequest, ContainerConfig, ContainerMetadata, CreateContainerRequest, ExecRequest,
    ImageSpec, PodSandboxConfig, PortForwardRequest, StartContainerRequest,
};
use node_sdk_e2e::{TestEnv, cri_with_busybox, test_pod_config, with_sandbox};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A safety net so that a protocol bug fails the test instead of hanging CI; no
/// assertion depends on it.
const HANG_GUARD: Duration = Duration::from_secs(120);

/// The page the busybox test image serves.
const INDEX_HTML: &str = "node-sdk busybox test image\n";

type Runtime = RuntimeServiceClient<Channel>;

/// A running pod sandbox of one test.
#[derive(Clone)]
struct Pod {
    runtime: Runtime,
    id: String,
    config: PodSandboxConfig,
    busybox: String,
}

/// Runs `body` with a fresh pod named after `tag`, then stops and removes the pod
/// whatever happened, and only then re-raises the body's panic.
async fn with_pod<F, Fut>(tag: &str, body: F)
where
    F: FnOnce(Pod) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let env = TestEnv::require();
    let (client, busybox) = cri_with_busybox(&env).await;
    let mut config = test_pod_config(&format!("streaming-{tag}"));
    config.hostname = "streaming".into();
    let runtime = client.runtime_service();
    let cfg = config.clone();
    with_sandbox(&client, config, move |id| {
        let test = body(Pod {
            runtime,
            id,
            config: cfg,
            busybox,
        });
        async move {
            tokio::time::timeout(HANG_GUARD, test)
                .await
                .expect("the test hung (safety net, not a timing assertion)");
        }
    })
    .await;
}

fn image(name: &str) -> ImageSpec {
    ImageSpec {
        image: name.to_owned(),
        ..Default::default()
    }
}

fn strings(argv: &[&str]) -> Vec<String> {
    argv.iter().map(|s| (*s).to_owned()).collect()
}

/// How a container is started.
#[derive(Clone, Copy, Default)]
struct Io {
    stdin: bool,
    tty: bool,
}

impl Pod {
    /// Creates and starts a busybox container running `argv`.
    async fn container(&self, name: &str, argv: &[&str], io: Io) -> String {
        let mut runtime = self.runtime.clone();
        let id = runtime
            .create_container(CreateContainerRequest {
                pod_sandbox_id: self.id.clone(),
                config: Some(ContainerConfig {
                    metadata: Some(ContainerMetadata {
                        name: name.into(),
                        attempt: 0,
                    }),
                    image: Some(image(&self.busybox)),
                    command: strings(&argv[..1]),
                    args: strings(&argv[1..]),
                    log_path: format!("{name}.log"),
                    stdin: io.stdin,
                    stdin_once: false,
                    tty: io.tty,
                    ..Default::default()
                }),
                sandbox_config: Some(self.config.clone()),
            })
            .await
            .unwrap_or_else(|e| panic!("CreateContainer {name}: {e}"))
            .into_inner()
            .container_id;
        runtime
            .start_container(StartContainerRequest {
                container_id: id.clone(),
            })
            .await
            .unwrap_or_else(|e| panic!("StartContainer {name}: {e}"));
        id
    }

    /// A long-running container to exec into.
    async fn sleeper(&self) -> String {
        self.container("sleeper", &["sleep", "3600"], Io::default())
            .await
    }

    /// The URL of an Exec RPC with the streams of `opts`.
    async fn exec_url(&self, container_id: &str, argv: &[&str], opts: ExecOptions) -> String {
        self.runtime
            .clone()
            .exec(ExecRequest {
                container_id: container_id.to_owned(),
                cmd: strings(argv),
                tty: opts.tty,
                stdin: opts.stdin,
                stdout: opts.stdout,
                stderr: opts.stderr,
            })
            .await
            .expect("Exec")
            .into_inner()
            .url
    }

    /// The URL of an Attach RPC with the streams of `opts`.
    async fn attach_url(&self, container_id: &str, opts: ExecOptions) -> String {
        self.runtime
            .clone()
            .attach(AttachRequest {
                container_id: container_id.to_owned(),
                stdin: opts.stdin,
                tty: opts.tty,
                stdout: opts.stdout,
                stderr: opts.stderr,
            })
            .await
            .expect("Attach")
            .into_inner()
            .url
    }

    /// The URL of a PortForward RPC for `port` of the pod.
    async fn port_forward_url(&self, port: u16) -> String {
        self.runtime
            .clone()
            .port_forward(PortForwardRequest {
                pod_sandbox_id: self.id.clone(),
                port: vec![i32::from(port)],
            })
            .await
            .expect("PortForward")
            .into_inner()
            .url
    }
}

/// Reads `output` into `seen` until `done(seen)` holds; false when the stream
/// ended first.
async fn read_until(
    output: &mut SessionOutput,
    seen: &mut String,
    done: impl Fn(&str) -> bool,
) -> bool {
    let mut buf = [0; 4096];
    while !done(seen) {
        let n = output.read(&mut buf).await.expect("session output");
        if n == 0 {
            return false;
        }
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    true
}

fn stdin_stdout_stderr() -> ExecOptions {
    ExecOptions {
        stdin: true,
        stdout: true,
        stderr: true,
        tty: false,
    }
}

#[tokio::test]
async fn exec_returns_stdout_stderr_and_exit_code_zero() {
    with_pod("exec-ok", |pod| async move {
        let ctr = pod.sleeper().await;
        let opts = ExecOptions::default();
        let url = pod
            .exec_url(&ctr, &["sh", "-c", "echo out; echo err >&2"], opts)
            .await;
        assert!(url.starts_with("http://127.0.0.1:"), "{url}");
        let session = streaming::exec(&url, opts).await.expect("exec");
        assert_eq!(session.protocol(), Protocol::V4Channel, "the default offer");
        let out = session.collect(b"").await.expect("exec session");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
        assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");
        assert_eq!(out.status, ExitStatus::Success);
        assert_eq!(out.status.code(), Some(0));
    })
    .await;
}

#[tokio::test]
async fn exec_reports_a_non_zero_exit_code() {
    with_pod("exec-exit", |pod| async move {
        let ctr = pod.sleeper().await;
        let opts = ExecOptions::default();
        let url = pod.exec_url(&ctr, &["sh", "-c", "exit 7"], opts).await;
        let out = streaming::exec_collect(&url, opts, b"")
            .await
            .expect("exec");
        assert_eq!(out.status, ExitStatus::ExitCode(7));
        assert_eq!(out.status.code(), Some(7));
        assert!(out.stdout.is_empty() && out.stderr.is_empty());

        // A command that cannot start is another failure, with the runtime's text.
        let url = pod.exec_url(&ctr, &["/no/such/binary"], opts).await;
        let out = streaming::exec_collect(&url, opts, b"")
            .await
            .expect("exec");
        assert_eq!(out.status.code(), None, "{}", out.status);
        let ExitStatus::Failure { reason, message } = &out.status else {
            panic!("expected a failure, got {}", out.status);
        };
        assert_eq!(reason.as_deref(), Some("InternalError"), "{message}");
        assert!(message.contains("/no/such/binary"), "{message}");
    })
    .await;
}

#[tokio::test]
async fn exec_feeds_stdin_and_closing_it_ends_the_session() {
    with_pod("exec-stdin", |pod| async move {
        let ctr = pod.sleeper().await;
        let opts = stdin_stdout_stderr();

        // cat echoes what we send; closing stdin ends the session (v4 cannot
        // half-close), which gives cat its end of file.
        let url = pod.exec_url(&ctr, &["cat"], opts).await;
        let mut session = streaming::exec(&url, opts).await.expect("exec cat");
        let mut stdin = session.stdin.take().expect("stdin");
        let mut stdout = session.stdout.take().expect("stdout");
        stdin.write_all(b"hello from stdin\n").await.unwrap();
        let mut seen = String::new();
        assert!(
            read_until(&mut stdout, &mut seen, |s| s.contains("hello from stdin\n")).await,
            "cat did not echo: {seen:?}"
        );
        stdin.write_all(b"second line\n").await.unwrap();
        assert!(
            read_until(&mut stdout, &mut seen, |s| s.contains("second line\n")).await,
            "cat did not echo: {seen:?}"
        );
        stdin.shutdown().await.unwrap();
        let status = session.wait().await.expect("cat session");
        // The status is lost with the connection, except in the unlikely race
        // where cat's exit is reported before the runtime closes the socket.
        assert!(
            matches!(status, ExitStatus::Unknown | ExitStatus::Success),
            "{status}"
        );
        let mut rest = Vec::new();
        stdout.read_to_end(&mut rest).await.unwrap();
        assert_eq!(seen, "hello from stdin\nsecond line\n");
        assert!(rest.is_empty(), "{rest:?}");

        // exec_collect writes stdin and leaves it open: a command that stops
        // reading by itself ends normally, with its status.
        let url = pod
            .exec_url(&ctr, &["sh", "-c", "head -c 11; echo; echo done >&2"], opts)
            .await;
        let out = streaming::exec_collect(&url, opts, b"hello world and more")
            .await
            .expect("exec head");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "hello world\n");
        assert_eq!(String::from_utf8_lossy(&out.stderr), "done\n");
        assert_eq!(out.status, ExitStatus::Success);
    })
    .await;
}

#[tokio::test]
async fn exec_with_a_tty_resizes_and_reports_the_exit_code() {
    with_pod("exec-tty", |pod| async move {
        let ctr = pod.sleeper().await;
        let opts = ExecOptions {
            stdin: true,
            stdout: true,
            stderr: false,
            tty: true,
        };
        let script = "test -t 0 && test -t 1 && echo on-a-tty; \
                      while read line; do [ \"$line\" = quit ] && exit 3; \
                      echo size=$(stty size); done";
        let url = pod.exec_url(&ctr, &["sh", "-c", script], opts).await;
        let mut session = streaming::exec(&url, opts).await.expect("exec tty");
        assert!(session.stderr.is_none(), "a TTY merges stderr into stdout");
        let mut stdin = session.stdin.take().expect("stdin");
        let mut stdout = session.stdout.take().expect("stdout");
        session.resize(100, 40).await.expect("resize");

        let mut seen = String::new();
        assert!(
            read_until(&mut stdout, &mut seen, |s| s.contains("on-a-tty")).await,
            "{seen:?}"
        );
        // The runtime applies the resize asynchronously: ask for the size until
        // it shows (bounded).
        let mut resized = false;
        for _ in 0..100 {
            stdin.write_all(b"\n").await.unwrap();
            let before = seen.matches("size=").count();
            assert!(
                read_until(&mut stdout, &mut seen, |s| {
                    s.matches("size=").count() > before && s.ends_with('\n')
                })
                .await,
                "{seen:?}"
            );
            if seen.contains("size=40 100") {
                resized = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(resized, "the terminal never became 100x40: {seen:?}");
        // A terminal turns "\n" into "\r\n".
        assert!(seen.contains("on-a-tty\r\n"), "{seen:?}");

        // A second resize through a handle from another task.
        let resizer = session.resizer();
        tokio::spawn(async move { resizer.resize(120, 30).await })
            .await
            .unwrap()
            .expect("resize");
        let mut resized = false;
        for _ in 0..100 {
            stdin.write_all(b"\n").await.unwrap();
            let before = seen.matches("size=").count();
            assert!(
                read_until(&mut stdout, &mut seen, |s| {
                    s.matches("size=").count() > before && s.ends_with('\n')
                })
                .await,
                "{seen:?}"
            );
            if seen.contains("size=30 120") {
                resized = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(resized, "the terminal never became 120x30: {seen:?}");

        stdin.write_all(b"quit\n").await.unwrap();
        let mut rest = Vec::new();
        stdout.read_to_end(&mut rest).await.unwrap();
        assert_eq!(
            session.wait().await.expect("tty session"),
            ExitStatus::ExitCode(3)
        );
    })
    .await;
}

#[tokio::test]
async fn exec_works_in_every_protocol_containerd_accepts() {
    with_pod("exec-protocols", |pod| async move {
        let ctr = pod.sleeper().await;
        let opts = stdin_stdout_stderr();
        for protocol in Protocol::PREFERENCE {
            let client = StreamClient::new().protocols([protocol]);

            // Stdin, stdout and stderr; binary data survives the base64 codecs.
            let url = pod
                .exec_url(
                    &ctr,
                    &["sh", "-c", "head -c 4 | od -An -tx1; echo e >&2"],
                    opts,
                )
                .await;
            let session = client.exec(&url, opts).await.expect("exec");
            assert_eq!(session.protocol(), protocol);
            let out = session.collect(b"\x00\xff\n~").await.expect("session");
            assert_eq!(
                String::from_utf8_lossy(&out.stdout).trim(),
                "00 ff 0a 7e",
                "{protocol}"
            );
            assert_eq!(out.stderr, b"e\n", "{protocol}");
            assert_eq!(out.status, ExitStatus::Success, "{protocol}");

            // A non-zero exit: v4 reports the code, older protocols only a text.
            let url = pod.exec_url(&ctr, &["sh", "-c", "exit 5"], opts).await;
            let out = client.exec_collect(&url, opts, b"").await.expect("exec");
            if protocol.reports_exit_code() {
                assert_eq!(out.status, ExitStatus::ExitCode(5), "{protocol}");
            } else {
                assert_eq!(out.status.code(), None, "{protocol}: {}", out.status);
                let message = out.status.message().unwrap_or_default();
                assert!(
                    message.contains("non-zero exit code") && message.contains("exit code 5"),
                    "{protocol}: {message}"
                );
            }
        }
    })
    .await;
}

#[tokio::test]
async fn attach_talks_to_a_container_started_with_stdin() {
    with_pod("attach", |pod| async move {
        // Without a TTY: stdout and stderr apart.
        let ctr = pod
            .container(
                "shell",
                &["sh"],
                Io {
                    stdin: true,
                    tty: false,
                },
            )
            .await;
        let opts = stdin_stdout_stderr();
        let url = pod.attach_url(&ctr, opts).await;
        let mut session = streaming::attach(&url, opts).await.expect("attach");
        let mut stdin = session.stdin.take().unwrap();
        let mut stdout = session.stdout.take().unwrap();
        let mut stderr = session.stderr.take().unwrap();
        stdin
            .write_all(b"echo attached-$((6 * 7)); echo oops >&2\n")
            .await
            .unwrap();
        let (mut out, mut err) = (String::new(), String::new());
        assert!(
            read_until(&mut stdout, &mut out, |s| s.contains("attached-42\n")).await,
            "{out:?}"
        );
        assert!(
            read_until(&mut stderr, &mut err, |s| s.contains("oops\n")).await,
            "{err:?}"
        );
        // The container's shell exits: the attachment ends, with no exit code.
        stdin.write_all(b"exit 4\n").await.unwrap();
        let (mut rest_out, mut rest_err) = (Vec::new(), Vec::new());
        let (r1, r2) = tokio::join!(
            stdout.read_to_end(&mut rest_out),
            stderr.read_to_end(&mut rest_err)
        );
        r1.and(r2).expect("session output never fails");
        assert_eq!(session.wait().await.expect("attach"), ExitStatus::Success);

        // With a TTY: an interactive shell with a prompt and echo.
        let ctr = pod
            .container(
                "tty-shell",
                &["sh"],
                Io {
                    stdin: true,
                    tty: true,
                },
            )
            .await;
        let opts = ExecOptions {
            stdin: true,
            stdout: true,
            stderr: false,
            tty: true,
        };
        let url = pod.attach_url(&ctr, opts).await;
        let mut session = streaming::attach(&url, opts).await.expect("attach tty");
        session.resize(90, 20).await.expect("resize");
        let mut stdin = session.stdin.take().unwrap();
        let mut stdout = session.stdout.take().unwrap();
        stdin.write_all(b"echo tty-$((6 * 7))\n").await.unwrap();
        let mut seen = String::new();
        assert!(
            read_until(&mut stdout, &mut seen, |s| s.contains("tty-42\r\n")).await,
            "{seen:?}"
        );
        stdin.write_all(b"exit\n").await.unwrap();
        stdout.read_to_end(&mut Vec::new()).await.unwrap();
        assert_eq!(
            session.wait().await.expect("attach tty"),
            ExitStatus::Success
        );
    })
    .await;
}

/// Sends a GET through a new port-forward to `port` and returns the raw answer;
/// the error when the runtime could not reach the port.
async fn get_through(
    pod: &Pod,
    client: &StreamClient,
    port: u16,
) -> Result<(Protocol, String), std::io::Error> {
    let url = pod.port_forward_url(port).await;
    let mut pf: PortForwardStream = client
        .port_forward(&url, port)
        .await
        .expect("open port-forward");
    let protocol = pf.protocol();
    pf.write_all(b"GET /index.html HTTP/1.1\r\nHost: pod\r\nConnection: close\r\n\r\n")
        .await?;
    pf.flush().await?;
    let mut answer = Vec::new();
    pf.read_to_end(&mut answer).await?;
    Ok((protocol, String::from_utf8_lossy(&answer).into_owned()))
}

#[tokio::test]
async fn port_forward_carries_an_http_get_to_a_pod_port() {
    with_pod("port-forward", |pod| async move {
        pod.container(
            "httpd",
            &["httpd", "-f", "-p", "8080", "-h", "/var/www"],
            Io::default(),
        )
        .await;
        let v4 = [Protocol::V4Channel, Protocol::V4Base64Channel];
        for protocol in v4 {
            let client = StreamClient::new().protocols([protocol]);
            // httpd binds a moment after StartContainer: poll (bounded), with a
            // fresh single-use URL each time.
            let mut last = String::new();
            let mut answer = None;
            for _ in 0..100 {
                match get_through(&pod, &client, 8080).await {
                    Ok(got) => {
                        answer = Some(got);
                        break;
                    }
                    Err(e) => last = e.to_string(),
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let (negotiated, answer) =
                answer.unwrap_or_else(|| panic!("no answer through port-forward: {last}"));
            assert_eq!(negotiated, protocol);
            assert!(
                answer.starts_with("HTTP/1.1 200 OK\r\n"),
                "{protocol}: {answer:?}"
            );
            assert!(
                answer.ends_with(&format!("\r\n\r\n{INDEX_HTML}")),
                "{protocol}: {answer:?}"
            );
        }

        // The default offer negotiates v4.
        let (negotiated, _) = get_through(&pod, &StreamClient::new(), 8080)
            .await
            .expect("GET with the default offer");
        assert_eq!(negotiated, Protocol::V4Channel);

        // Port-forward does not exist before v4: containerd refuses the upgrade.
        let url = pod.port_forward_url(8080).await;
        let err = StreamClient::new()
            .protocols([Protocol::Channel, Protocol::Base64Channel])
            .port_forward(&url, 8080)
            .await
            .expect_err("pre-v4 port-forward");
        assert!(
            matches!(err, StreamError::Refused { status: 403, .. }),
            "{err}"
        );
    })
    .await;
}

#[tokio::test]
async fn port_forward_to_a_closed_port_reports_the_runtime_error() {
    with_pod("port-forward-closed", |pod| async move {
        let url = pod.port_forward_url(8081).await;
        let mut pf = streaming::port_forward(&url, 8081)
            .await
            .expect("the runtime announces the port before dialling it");
        // Whether the write lands before the runtime's error or not, the read
        // reports it.
        let _ = pf.write_all(b"GET / HTTP/1.0\r\n\r\n").await;
        let _ = pf.flush().await;
        let err = pf
            .read_to_end(&mut Vec::new())
            .await
            .expect_err("nothing listens on 8081");
        let inner = err
            .get_ref()
            .and_then(|e| e.downcast_ref::<StreamError>())
            .unwrap_or_else(|| panic!("not a runtime error: {err:?}"));
        let StreamError::PortForward { port, message, .. } = inner else {
            panic!("{inner}");
        };
        assert_eq!(*port, 8081);
        assert!(message.contains("8081"), "{message}");
        assert!(message.contains("connection refused"), "{message}");
    })
    .await;
}

#[tokio::test]
async fn used_and_unknown_urls_are_refused_clearly() {
    with_pod("refused", |pod| async move {
        let ctr = pod.sleeper().await;
        let opts = ExecOptions::default();
        let url = pod.exec_url(&ctr, &["true"], opts).await;
        let first = streaming::exec_collect(&url, opts, b"")
            .await
            .expect("first use");
        assert_eq!(first.status, ExitStatus::Success);

        // Tokens are single use.
        let err = streaming::exec(&url, opts)
            .await
            .expect_err("second use of an exec URL");
        assert!(err.is_not_found(), "{err}");
        let msg = err.to_string();
        assert!(msg.contains(&url), "{msg}");
        assert!(msg.contains("HTTP 404"), "{msg}");
        assert!(msg.contains("already used or expired"), "{msg}");

        // A token that was never issued, on each kind of URL.
        let base = url.rsplit_once("/exec/").expect("exec URL shape").0;
        for kind in ["exec", "attach", "portforward"] {
            let bogus = format!("{base}/{kind}/AAAAAAAA");
            let err = if kind == "portforward" {
                streaming::port_forward(&bogus, 80).await.map(drop)
            } else {
                streaming::exec(&bogus, opts).await.map(drop)
            }
            .expect_err("unknown token");
            assert!(err.is_not_found(), "{kind}: {err}");
        }

        // Options the runtime would refuse are refused before connecting.
        let url = pod.exec_url(&ctr, &["true"], opts).await;
        let bad = ExecOptions {
            tty: true,
            ..ExecOptions::default()
        };
        assert!(matches!(
            streaming::exec(&url, bad).await,
            Err(StreamError::InvalidOptions { .. })
        ));
        // ...so the URL is still unused.
        let out = streaming::exec_collect(&url, opts, b"")
            .await
            .expect("unused URL");
        assert_eq!(out.status, ExitStatus::Success);
    })
    .await;
}
