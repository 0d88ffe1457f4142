//! The log reader against log files that the project's containerd really wrote, for
//! pods and containers made with `cri_client::builders`: joined partial records, both
//! streams, a line longer than containerd's 16 KiB record limit, text without a final
//! newline, tail, since, stream filter, limit, timestamps, and following a running
//! container until cancelled.
//!
//! Each test has its own pod (unique name) and log root under
//! `/var/lib/node-sdk/pod-logs/<pod>`; the pod and the log root are removed even when an
//! assertion fails.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use cri_client::builders::{
    CONTAINER_HASH_ANNOTATION, CONTAINER_NAME_LABEL, CONTAINER_RESTART_COUNT_ANNOTATION,
    ContainerConfigBuilder, POD_NAME_LABEL, POD_NAMESPACE_LABEL, POD_UID_LABEL,
    PodSandboxConfigBuilder, container_hash, container_log_path,
};
use cri_client::logs::{
    LogOptions, LogSummary, Stream, Timestamp, parse_line, read_logs, read_logs_until,
};
use cri_client::tonic::transport::Channel;
use cri_client::v1::runtime_service_client::RuntimeServiceClient;
use cri_client::v1::{
    ContainerState, ContainerStatusRequest, CreateContainerRequest, ExecSyncRequest,
    PodSandboxConfig, PodSandboxStatusRequest, StartContainerRequest,
};
use node_sdk_e2e::{TestEnv, cri_with_busybox, unique_name, with_sandbox};
use tokio::io::AsyncWrite;

type Runtime = RuntimeServiceClient<Channel>;

/// A running pod made with the builders, handed to a test body.
#[derive(Clone)]
struct Pod {
    runtime: Runtime,
    id: String,
    config: PodSandboxConfig,
    image: String,
}

/// A started container and its log file.
struct Container {
    id: String,
    log: PathBuf,
}

/// Run `body` with a fresh pod; stop and remove the pod and its log root afterwards,
/// then re-raise the body's panic if it had one.
async fn with_pod<F, Fut>(tag: &str, body: F)
where
    F: FnOnce(Pod) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let env = TestEnv::require();
    let (client, image) = cri_with_busybox(&env).await;
    let name = unique_name(&format!("logs-{tag}"));
    let log_root = PathBuf::from("/var/lib/node-sdk/pod-logs").join(&name);
    let config = PodSandboxConfigBuilder::new(&name, "node-sdk-e2e", format!("uid-{name}"))
        .log_root(log_root.to_str().unwrap())
        .label("test", tag)
        .build()
        .expect("a valid sandbox config");
    // kubelet creates the pod log directory before RunPodSandbox.
    std::fs::create_dir_all(&config.log_directory).expect("creating the pod log directory");
    // Removed on drop, so also when the body panics.
    struct RemoveDir(PathBuf);
    impl Drop for RemoveDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let _log_root = RemoveDir(log_root);
    let runtime = client.runtime_service();
    let cfg = config.clone();
    with_sandbox(&client, config, move |id| {
        body(Pod {
            runtime,
            id,
            config: cfg,
            image,
        })
    })
    .await;
}

impl Pod {
    /// Create and start container `name` running `sh -c script`.
    async fn start(&mut self, name: &str, script: &str) -> Container {
        let config = ContainerConfigBuilder::new(name, &self.image)
            .for_pod(&self.config)
            .command(["sh", "-c", script])
            .build()
            .expect("a valid container config");
        let log = container_log_path(&self.config, &config).expect("a log path");
        // kubelet creates the container's log directory before CreateContainer.
        std::fs::create_dir_all(log.parent().unwrap()).expect("creating the container log dir");
        let id = self
            .runtime
            .create_container(CreateContainerRequest {
                pod_sandbox_id: self.id.clone(),
                config: Some(config),
                sandbox_config: Some(self.config.clone()),
            })
            .await
            .expect("CreateContainer")
            .into_inner()
            .container_id;
        self.runtime
            .start_container(StartContainerRequest {
                container_id: id.clone(),
            })
            .await
            .expect("StartContainer");
        Container { id, log }
    }

    async fn status(&mut self, id: &str) -> cri_client::v1::ContainerStatus {
        self.runtime
            .container_status(ContainerStatusRequest {
                container_id: id.to_owned(),
                verbose: false,
            })
            .await
            .expect("ContainerStatus")
            .into_inner()
            .status
            .expect("a container status")
    }

    /// Poll ContainerStatus (bounded) until the container has exited; its exit code.
    async fn wait_exited(&mut self, id: &str) -> i32 {
        for _ in 0..600 {
            let status = self.status(id).await;
            if status.state == ContainerState::ContainerExited as i32 {
                return status.exit_code;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("container {id} did not exit");
    }
}

async fn read(path: &Path, opts: &LogOptions) -> (String, String, LogSummary) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let summary = read_logs(path, opts, &mut out, &mut err)
        .await
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    (
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
        summary,
    )
}

/// After the container exited, wait (bounded) until containerd has written all of the
/// expected output to the file, then return the whole read.
async fn read_complete(path: &Path, want_out: &str, want_err: &str) -> LogSummary {
    let mut last = (String::new(), String::new());
    for _ in 0..200 {
        let (out, err, summary) = read(path, &LogOptions::default()).await;
        if out == want_out && err == want_err {
            return summary;
        }
        last = (out, err);
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(
        (last.0.as_str(), last.1.as_str()),
        (want_out, want_err),
        "the log of {} never held the expected output",
        path.display()
    );
    unreachable!()
}

/// The records of the file, parsed (all of them must parse).
fn records(path: &Path) -> Vec<(Timestamp, Stream, bool, Vec<u8>)> {
    let text = std::fs::read(path).unwrap();
    text.split_inclusive(|&b| b == b'\n')
        .map(|line| {
            let r = parse_line(line).unwrap_or_else(|e| {
                panic!("containerd wrote a line we cannot parse ({e}): {line:?}")
            });
            (r.timestamp, r.stream, r.partial, r.content.to_vec())
        })
        .collect()
}

/// The last `n` lines of parsed records, joined per stream: lines (partial records up
/// to a full one) ordered by the position of their last record.
fn last_lines(recs: &[(Timestamp, Stream, bool, Vec<u8>)], n: usize) -> (String, String) {
    // (stream, last record index, text) of every line.
    let mut lines: Vec<(Stream, usize, Vec<u8>)> = Vec::new();
    let mut open: [Option<usize>; 2] = [None, None];
    for (i, (_, stream, partial, content)) in recs.iter().enumerate() {
        let s = usize::from(*stream == Stream::Stderr);
        let at = *open[s].get_or_insert_with(|| {
            lines.push((*stream, i, Vec::new()));
            lines.len() - 1
        });
        lines[at].1 = i;
        lines[at].2.extend_from_slice(content);
        if !partial {
            lines[at].2.push(b'\n');
            open[s] = None;
        }
    }
    lines.sort_by_key(|l| l.1);
    let mut want = (String::new(), String::new());
    for (stream, _, text) in &lines[lines.len().saturating_sub(n)..] {
        let text = String::from_utf8_lossy(text);
        match stream {
            Stream::Stdout => want.0.push_str(&text),
            Stream::Stderr => want.1.push_str(&text),
        }
    }
    want
}

const LONG: usize = 40_000;

#[tokio::test]
async fn joined_output_of_both_streams_a_long_line_and_a_missing_newline() {
    with_pod("joined", |mut pod| async move {
        let script = format!(
            "printf 'out one\\n'; printf 'err one\\n' >&2; \
             printf 'tab\\there  two  spaces\\n'; printf '%0{LONG}d\\n' 0; \
             printf 'crlf\\r\\n'; printf '\\n'; printf 'err two\\n' >&2; \
             printf 'no newline at the end'"
        );
        let c = pod.start("writer", &script).await;
        assert_eq!(pod.wait_exited(&c.id).await, 0);

        let long = "0".repeat(LONG);
        // containerd drops the '\r' of a "\r\n" ending; the text without a final
        // newline is written as a partial record and comes out as it is.
        let want_out =
            format!("out one\ntab\there  two  spaces\n{long}\ncrlf\n\nno newline at the end");
        let want_err = "err one\nerr two\n";
        let summary = read_complete(&c.log, &want_out, want_err).await;
        assert_eq!(summary.malformed_lines, 0);

        // The long line really is split into partial records, and the last record is
        // the partial one without a newline.
        let recs = records(&c.log);
        let long_parts: Vec<_> = recs
            .iter()
            .filter(|r| r.1 == Stream::Stdout && r.3.first() == Some(&b'0'))
            .collect();
        assert!(long_parts.len() >= 3, "{} records", long_parts.len());
        assert!(long_parts[..long_parts.len() - 1].iter().all(|r| r.2));
        assert!(!long_parts.last().unwrap().2);
        assert!(long_parts.iter().all(|r| r.3.len() <= 16 * 1024));
        let last_out = recs.iter().rev().find(|r| r.1 == Stream::Stdout).unwrap();
        assert!(last_out.2, "the text without a newline is a partial record");
        assert_eq!(last_out.3, b"no newline at the end");

        // Timestamps: one prefix per line, the long line included.
        let (out, _, _) = read(&c.log, &LogOptions::default().timestamps(true)).await;
        let lines: Vec<&str> = out.split('\n').collect();
        assert_eq!(lines.len(), 6);
        for (line, want) in lines.iter().zip(want_out.split('\n')) {
            let (ts, rest) = line.split_once(' ').unwrap();
            assert_eq!(ts.len(), "2024-01-01T00:00:00.000000000Z".len(), "{ts}");
            assert!(ts.parse::<Timestamp>().is_ok(), "{ts}");
            assert_eq!(rest, want);
        }

        // limit_bytes cuts the output in the middle of the long line.
        let (out, err, summary) = read(&c.log, &LogOptions::default().limit_bytes(1000)).await;
        assert!(summary.limit_reached);
        assert_eq!(out.len() + err.len(), 1000);
        assert!(want_out.starts_with(&out), "{out:?}");

        // The builders' conventions as the runtime reports them.
        let status = pod.status(&c.id).await;
        assert_eq!(status.labels[CONTAINER_NAME_LABEL], "writer");
        let meta = pod.config.metadata.clone().unwrap();
        assert_eq!(status.labels[POD_NAME_LABEL], meta.name);
        assert_eq!(status.labels[POD_NAMESPACE_LABEL], "node-sdk-e2e");
        assert_eq!(status.labels[POD_UID_LABEL], meta.uid);
        assert_eq!(status.annotations[CONTAINER_RESTART_COUNT_ANNOTATION], "0");
        assert_eq!(
            status.annotations[CONTAINER_HASH_ANNOTATION],
            format!("{:x}", container_hash("writer", &pod.image))
        );
        assert_eq!(Path::new(&status.log_path), c.log);
        let sandbox = pod
            .runtime
            .pod_sandbox_status(PodSandboxStatusRequest {
                pod_sandbox_id: pod.id.clone(),
                verbose: false,
            })
            .await
            .expect("PodSandboxStatus")
            .into_inner()
            .status
            .expect("a sandbox status");
        assert_eq!(sandbox.labels[POD_NAME_LABEL], meta.name);
        assert_eq!(sandbox.labels["test"], "joined");
    })
    .await;
}

#[tokio::test]
async fn tail_since_and_stream_on_a_real_log() {
    with_pod("tail", |mut pod| async move {
        let script = format!(
            "echo a1; echo b1 >&2; sleep 0.2; echo a2; printf '%0{LONG}d\\n' 0; \
             sleep 0.2; echo b2 >&2; echo a3; printf 'a4 unfinished'"
        );
        let c = pod.start("lines", &script).await;
        assert_eq!(pod.wait_exited(&c.id).await, 0);
        let long = "0".repeat(LONG);
        let all_out = format!("a1\na2\n{long}\na3\na4 unfinished");
        read_complete(&c.log, &all_out, "b1\nb2\n").await;

        // Tail counts joined lines: the 40000-byte line is one line. Which stream's
        // line comes last depends on when containerd wrote it: the expectation is
        // taken from the order of the records in the file.
        let recs = records(&c.log);
        for n in [0, 1, 2, 4, 6, 7, 1000] {
            let (out, err, _) = read(&c.log, &LogOptions::default().tail(n)).await;
            assert_eq!((out, err), last_lines(&recs, n), "tail {n}");
        }
        // Seven lines in all (the long one counts once).
        let (out, err, _) = read(&c.log, &LogOptions::default().tail(7)).await;
        assert_eq!((out.as_str(), err.as_str()), (all_out.as_str(), "b1\nb2\n"));

        // Stream filter, with and without tail.
        let (out, err, _) = read(&c.log, &LogOptions::default().stream(Stream::Stderr)).await;
        assert_eq!((out.as_str(), err.as_str()), ("", "b1\nb2\n"));
        let opts = LogOptions::default().stream(Stream::Stderr).tail(1);
        let (out, err, _) = read(&c.log, &opts).await;
        assert_eq!((out.as_str(), err.as_str()), ("", "b2\n"));
        let opts = LogOptions::default().stream(Stream::Stdout).tail(3);
        let (out, err, _) = read(&c.log, &opts).await;
        assert_eq!(
            (out.as_str(), err.as_str()),
            (format!("{long}\na3\na4 unfinished").as_str(), "")
        );

        // Since: the timestamp of the "a2" record. Stdout from a2 on; stderr lines are
        // kept by their own timestamps as containerd wrote them.
        let since = recs
            .iter()
            .find(|r| r.1 == Stream::Stdout && r.3 == b"a2")
            .unwrap()
            .0;
        let want_err: String = recs
            .iter()
            .filter(|r| r.1 == Stream::Stderr && r.0 >= since)
            .map(|r| format!("{}\n", String::from_utf8_lossy(&r.3)))
            .collect();
        let (out, err, _) = read(&c.log, &LogOptions::default().since(since)).await;
        assert_eq!(out, format!("a2\n{long}\na3\na4 unfinished"));
        assert_eq!(err, want_err);
        let after_all = recs.iter().map(|r| r.0).max().unwrap() + Duration::from_secs(1);
        let (out, err, _) = read(&c.log, &LogOptions::default().since(after_all)).await;
        assert_eq!((out.as_str(), err.as_str()), ("", ""));
    })
    .await;
}

/// A writer the test can look at while the follower runs.
#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Vec<u8>>>);

impl Shared {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl AsyncWrite for Shared {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Poll (bounded) until `cond` holds.
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..600 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("never happened: {what}");
}

#[tokio::test]
async fn follow_picks_up_lines_written_later_and_stops_when_cancelled() {
    with_pod("follow", |mut pod| async move {
        // The container writes one line, then waits until the test creates /tmp/go
        // (through ExecSync) before writing the rest.
        let script = "echo first; until [ -e /tmp/go ]; do sleep 0.05; done; \
                      echo second; echo on stderr >&2; printf 'split '; sleep 0.2; \
                      echo line; printf '%020000d\\n' 7; echo last";
        let c = pod.start("follower", script).await;
        eventually("the log file exists", || c.log.exists()).await;

        let (out, err) = (Shared::default(), Shared::default());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let follower = {
            let (out, err, path) = (out.clone(), err.clone(), c.log.clone());
            tokio::spawn(async move {
                let opts = LogOptions::default()
                    .follow(true)
                    .poll_interval(Duration::from_millis(20));
                read_logs_until(&path, &opts, out, err, async {
                    let _ = stopped.await;
                })
                .await
            })
        };
        eventually("the follower wrote the first line", || {
            out.text() == "first\n"
        })
        .await;
        // Nothing more until the container is told to go on.
        assert_eq!(err.text(), "");

        let exec = pod
            .runtime
            .exec_sync(ExecSyncRequest {
                container_id: c.id.clone(),
                cmd: vec!["sh".into(), "-c".into(), ": > /tmp/go".into()],
                timeout: 10,
            })
            .await
            .expect("ExecSync touch")
            .into_inner();
        assert_eq!(
            exec.exit_code,
            0,
            "{}",
            String::from_utf8_lossy(&exec.stderr)
        );

        let sevens = format!("{:020000}", 7);
        let want_out = format!("first\nsecond\nsplit line\n{sevens}\nlast\n");
        eventually("the follower wrote the later lines", || {
            out.text() == want_out && err.text() == "on stderr\n"
        })
        .await;
        assert_eq!(pod.wait_exited(&c.id).await, 0);

        // Cancel: the follower reads what is left and returns.
        stop.send(()).unwrap();
        let summary = follower
            .await
            .expect("the follower task")
            .expect("following the log");
        assert_eq!(out.text(), want_out);
        assert_eq!(err.text(), "on stderr\n");
        assert_eq!(summary.malformed_lines, 0);
        assert_eq!(summary.rotations, 0);
    })
    .await;
}

#[tokio::test]
async fn follow_of_a_running_container_stops_on_cancel_with_tail() {
    with_pod("cancel", |mut pod| async move {
        let script = "echo old; sleep 0.2; echo older >&2; sleep 0.2; echo recent; sleep 3600";
        let c = pod.start("sleeper", script).await;
        let summary = {
            // Wait until all three lines are in the file.
            let mut n = 0;
            for _ in 0..600 {
                n = if c.log.exists() {
                    records(&c.log).len()
                } else {
                    0
                };
                if n == 3 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            assert_eq!(n, 3, "records in the log");
            // The last two lines in the order containerd wrote them.
            let mut want = (String::new(), String::new());
            for r in &records(&c.log)[1..] {
                let text = format!("{}\n", String::from_utf8_lossy(&r.3));
                match r.1 {
                    Stream::Stdout => want.0.push_str(&text),
                    Stream::Stderr => want.1.push_str(&text),
                }
            }
            let (out, err) = (Shared::default(), Shared::default());
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let follower = {
                let (out, err, path) = (out.clone(), err.clone(), c.log.clone());
                tokio::spawn(async move {
                    let opts = LogOptions::default()
                        .follow(true)
                        .tail(2)
                        .poll_interval(Duration::from_millis(20));
                    read_logs_until(&path, &opts, out, err, async {
                        let _ = stopped.await;
                    })
                    .await
                })
            };
            eventually("the follower wrote the last two lines", || {
                (out.text(), err.text()) == want
            })
            .await;
            // The container is still running: only the cancellation ends the follower.
            let status = pod.status(&c.id).await;
            assert_eq!(status.state, ContainerState::ContainerRunning as i32);
            stop.send(()).unwrap();
            let summary = follower.await.expect("the follower task");
            assert_eq!((out.text(), err.text()), want);
            summary
        };
        summary.expect("following the log");
    })
    .await;
}
