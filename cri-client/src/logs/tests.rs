//! Tests of the reader over real files in a temporary directory.

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::AsyncWrite;

use super::reader::run;
use super::*;

/// A directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "cri-client-logs-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn file(&self, content: &[u8]) -> PathBuf {
        let path = self.0.join("0.log");
        std::fs::write(&path, content).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One record line at second `s` of 2024-01-01.
fn rec(s: u32, stream: &str, tag: &str, content: &str) -> String {
    format!(
        "2024-01-01T00:00:{:02}.{:09}Z {stream} {tag} {content}\n",
        s / 1000,
        (s % 1000) * 1_000_000
    )
}

fn at(s: u32) -> Timestamp {
    format!(
        "2024-01-01T00:00:{:02}.{:09}Z",
        s / 1000,
        (s % 1000) * 1_000_000
    )
    .parse()
    .unwrap()
}

struct Read {
    out: String,
    err: String,
    summary: LogSummary,
}

async fn read_with(path: &Path, opts: &LogOptions, chunk: usize) -> Read {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let summary = run(
        path,
        opts,
        &mut out,
        &mut err,
        std::future::pending(),
        chunk,
    )
    .await
    .unwrap();
    Read {
        out: String::from_utf8(out).unwrap(),
        err: String::from_utf8(err).unwrap(),
        summary,
    }
}

async fn read(content: &str, opts: &LogOptions) -> Read {
    let dir = TempDir::new();
    let path = dir.file(content.as_bytes());
    // Small chunks exercise the backward scan across chunk boundaries.
    let small = read_with(&path, opts, 7).await;
    let big = read_with(&path, opts, TAIL_CHUNK_FOR_TESTS).await;
    assert_eq!((&small.out, &small.err), (&big.out, &big.err));
    big
}

const TAIL_CHUNK_FOR_TESTS: usize = super::reader::TAIL_CHUNK;

fn interleaved() -> String {
    [
        rec(1, "stdout", "F", "first"),
        rec(2, "stdout", "P", "sec"),
        rec(3, "stderr", "P", "err "),
        rec(4, "stdout", "P", "o"),
        rec(5, "stderr", "F", "one"),
        rec(6, "stdout", "F", "nd"),
        rec(7, "stderr", "F", "err two"),
        rec(8, "stdout", "F", "third"),
    ]
    .concat()
}

#[tokio::test]
async fn joins_partial_records_per_stream() {
    let r = read(&interleaved(), &LogOptions::default()).await;
    assert_eq!(r.out, "first\nsecond\nthird\n");
    assert_eq!(r.err, "err one\nerr two\n");
    assert_eq!(r.summary.records_written, 8);
    assert_eq!(r.summary.malformed_lines, 0);
    assert!(!r.summary.limit_reached);
}

#[tokio::test]
async fn tail_counts_joined_lines_across_interleaved_streams() {
    let file = interleaved();
    let r = read(&file, &LogOptions::default().tail(2)).await;
    assert_eq!((r.out.as_str(), r.err.as_str()), ("third\n", "err two\n"));
    let r = read(&file, &LogOptions::default().tail(3)).await;
    assert_eq!(
        (r.out.as_str(), r.err.as_str()),
        ("second\nthird\n", "err two\n")
    );
    let r = read(&file, &LogOptions::default().tail(4)).await;
    assert_eq!(
        (r.out.as_str(), r.err.as_str()),
        ("second\nthird\n", "err one\nerr two\n")
    );
}

#[tokio::test]
async fn tail_larger_than_the_file_and_tail_zero() {
    let file = interleaved();
    let r = read(&file, &LogOptions::default().tail(100)).await;
    assert_eq!(r.out, "first\nsecond\nthird\n");
    assert_eq!(r.err, "err one\nerr two\n");
    let r = read(&file, &LogOptions::default().tail(0)).await;
    assert_eq!((r.out.as_str(), r.err.as_str()), ("", ""));
    let r = read("", &LogOptions::default().tail(3)).await;
    assert_eq!((r.out.as_str(), r.err.as_str()), ("", ""));
}

#[tokio::test]
async fn tail_with_a_stream_counts_only_that_stream() {
    let file = interleaved();
    let r = read(&file, &LogOptions::default().tail(2).stream(Stream::Stdout)).await;
    assert_eq!((r.out.as_str(), r.err.as_str()), ("second\nthird\n", ""));
    let r = read(&file, &LogOptions::default().tail(1).stream(Stream::Stderr)).await;
    assert_eq!((r.out.as_str(), r.err.as_str()), ("", "err two\n"));
}

#[tokio::test]
async fn stream_filter() {
    let file = interleaved();
    let r = read(&file, &LogOptions::default().stream(Stream::Stderr)).await;
    assert_eq!((r.out.as_str(), r.err.as_str()), ("", "err one\nerr two\n"));
    let r = read(&file, &LogOptions::default().stream(Stream::Stdout)).await;
    assert_eq!(
        (r.out.as_str(), r.err.as_str()),
        ("first\nsecond\nthird\n", "")
    );
}

#[tokio::test]
async fn since_keeps_whole_lines_by_their_first_record() {
    let file = interleaved();
    // "second" began at 2, before `since`; "err one" began at 3, at `since`.
    let r = read(&file, &LogOptions::default().since(at(3))).await;
    assert_eq!(
        (r.out.as_str(), r.err.as_str()),
        ("third\n", "err one\nerr two\n")
    );
    let r = read(&file, &LogOptions::default().since(at(2))).await;
    assert_eq!(r.out, "second\nthird\n");
    let r = read(&file, &LogOptions::default().since(at(9))).await;
    assert_eq!((r.out.as_str(), r.err.as_str()), ("", ""));
    // Tail first, then since (as kubelet).
    let r = read(&file, &LogOptions::default().tail(3).since(at(7))).await;
    assert_eq!((r.out.as_str(), r.err.as_str()), ("third\n", "err two\n"));
}

#[tokio::test]
async fn timestamps_prefix_each_line_once() {
    let file = interleaved();
    let r = read(&file, &LogOptions::default().timestamps(true)).await;
    assert_eq!(
        r.out,
        "2024-01-01T00:00:00.001000000Z first\n\
         2024-01-01T00:00:00.002000000Z second\n\
         2024-01-01T00:00:00.008000000Z third\n"
    );
    assert_eq!(
        r.err,
        "2024-01-01T00:00:00.003000000Z err one\n\
         2024-01-01T00:00:00.007000000Z err two\n"
    );
}

#[tokio::test]
async fn limit_bytes_cuts_a_line_and_counts_both_streams() {
    let file = interleaved();
    // Records in file order: "first\n" (6), "sec" (3), "err " (4): 13 bytes,
    // then "o" is the 14th and the limit.
    let r = read(&file, &LogOptions::default().limit_bytes(14)).await;
    assert_eq!((r.out.as_str(), r.err.as_str()), ("first\nseco", "err "));
    assert!(r.summary.limit_reached);
    assert_eq!(r.summary.bytes_written, 14);
    let r = read(&file, &LogOptions::default().limit_bytes(3)).await;
    assert_eq!(r.out, "fir");
    let r = read(&file, &LogOptions::default().limit_bytes(0)).await;
    assert_eq!((r.out.as_str(), r.err.as_str()), ("", ""));
    assert!(r.summary.limit_reached);
    let r = read(&file, &LogOptions::default().limit_bytes(1000)).await;
    assert!(!r.summary.limit_reached);
    // The timestamp counts against the limit, as in kubelet.
    let r = read(
        &file,
        &LogOptions::default().timestamps(true).limit_bytes(35),
    )
    .await;
    assert_eq!(r.out, "2024-01-01T00:00:00.001000000Z firs");
}

#[tokio::test]
async fn content_keeps_crlf_spaces_tabs_and_empty_lines() {
    let file = [
        rec(1, "stdout", "F", "dos line\r"),
        rec(2, "stdout", "F", "  leading\tand trailing  "),
        rec(3, "stdout", "F", ""),
        rec(4, "stdout", "P", ""),
        rec(5, "stdout", "F", ""),
        rec(6, "stderr", "F", "a b  c"),
    ]
    .concat();
    let r = read(&file, &LogOptions::default()).await;
    assert_eq!(r.out, "dos line\r\n  leading\tand trailing  \n\n\n");
    assert_eq!(r.err, "a b  c\n");
    let r = read(&file, &LogOptions::default().tail(2).stream(Stream::Stdout)).await;
    assert_eq!(r.out, "\n\n");
}

#[tokio::test]
async fn unfinished_last_line_is_written_without_a_newline() {
    let file = [
        rec(1, "stdout", "F", "done"),
        rec(2, "stdout", "P", "no newline"),
    ]
    .concat();
    let r = read(&file, &LogOptions::default()).await;
    assert_eq!(r.out, "done\nno newline");
    let r = read(&file, &LogOptions::default().tail(1)).await;
    assert_eq!(r.out, "no newline");
    // A record cut off by the end of the file (no newline at all) is read too.
    let cut = format!(
        "{}{}",
        rec(1, "stdout", "F", "done"),
        "2024-01-01T00:00:02Z stdout F cut"
    );
    let r = read(&cut, &LogOptions::default()).await;
    assert_eq!(r.out, "done\ncut\n");
    let r = read(&cut, &LogOptions::default().tail(1)).await;
    assert_eq!(r.out, "cut\n");
}

#[tokio::test]
async fn malformed_lines_are_skipped_and_counted() {
    let file = [
        rec(1, "stdout", "P", "a"),
        "this is not a record\n".to_owned(),
        "\n".to_owned(),
        "2024-01-01T00:00:01Z stdin F nope\n".to_owned(),
        rec(2, "stdout", "F", "b"),
    ]
    .concat();
    let r = read(&file, &LogOptions::default()).await;
    assert_eq!(r.out, "ab\n");
    assert_eq!(r.summary.malformed_lines, 3);
    // Lines before the tail start are not read, so not counted.
    let r = read(&file, &LogOptions::default().tail(1)).await;
    assert_eq!(r.out, "ab\n");
    assert_eq!(r.summary.malformed_lines, 3);
    let file = format!("garbage\n{}", rec(2, "stdout", "F", "b"));
    let r = read(&file, &LogOptions::default().tail(1)).await;
    assert_eq!(r.summary.malformed_lines, 0);
}

#[tokio::test]
async fn missing_file_is_an_open_error() {
    let dir = TempDir::new();
    let err = read_logs(
        dir.0.join("nope.log"),
        &LogOptions::default(),
        tokio::io::sink(),
        tokio::io::sink(),
    )
    .await
    .unwrap_err();
    assert!(err.is_not_found(), "{err}");
    assert!(
        err.to_string().starts_with("cannot open log file "),
        "{err}"
    );
}

#[tokio::test]
async fn long_lines_over_many_chunks() {
    // A 200 KiB line in 16 KiB partial records, as containerd writes it.
    let piece = "x".repeat(16 * 1024);
    let mut file = rec(0, "stdout", "F", "before");
    for i in 0..12 {
        file.push_str(&rec(i + 1, "stdout", "P", &piece));
    }
    file.push_str(&rec(20, "stdout", "F", "end"));
    let r = read(&file, &LogOptions::default().tail(1)).await;
    assert_eq!(r.out.len(), 12 * 16 * 1024 + 4);
    assert!(r.out.ends_with("xend\n"));
    let r = read(&file, &LogOptions::default().tail(2)).await;
    assert!(r.out.starts_with("before\nxxx"));
}

// ---- follow ----

/// A writer whose bytes the test can look at while the reader runs.
#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Vec<u8>>>);

impl Shared {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// Wait (bounded) until the text is `want`; panic with what is there.
    async fn wait_for(&self, want: &str) {
        for _ in 0..500 {
            if self.text() == want {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(self.text(), want, "output never became the expected text");
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

fn append(path: &Path, text: &str) {
    use std::io::Write as _;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

struct Follower {
    out: Shared,
    err: Shared,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<LogSummary, LogError>>,
}

impl Follower {
    fn start(path: &Path, opts: LogOptions) -> Self {
        let (out, err) = (Shared::default(), Shared::default());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let opts = opts.follow(true).poll_interval(Duration::from_millis(5));
        let path = path.to_owned();
        let (o, e) = (out.clone(), err.clone());
        let task = tokio::spawn(async move {
            read_logs_until(&path, &opts, o, e, async {
                let _ = stopped.await;
            })
            .await
        });
        Self {
            out,
            err,
            stop,
            task,
        }
    }

    async fn stop(self) -> (String, String, LogSummary) {
        let _ = self.stop.send(());
        let summary = self.task.await.unwrap().unwrap();
        (self.out.text(), self.err.text(), summary)
    }
}

#[tokio::test]
async fn follow_picks_up_appended_records_and_completes_partial_lines() {
    let dir = TempDir::new();
    let path = dir.file(rec(1, "stdout", "F", "one").as_bytes());
    let f = Follower::start(&path, LogOptions::default());
    f.out.wait_for("one\n").await;
    append(&path, &rec(2, "stdout", "P", "tw"));
    f.out.wait_for("one\ntw").await;
    // A record written in two pieces is used only once it is complete.
    append(&path, "2024-01-01T00:00:03Z stdout F o");
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert_eq!(f.out.text(), "one\ntw");
    append(&path, "\n");
    f.out.wait_for("one\ntwo\n").await;
    append(&path, &rec(4, "stderr", "F", "err"));
    f.err.wait_for("err\n").await;
    let (out, err, summary) = f.stop().await;
    assert_eq!((out.as_str(), err.as_str()), ("one\ntwo\n", "err\n"));
    assert_eq!(summary.malformed_lines, 0);
}

#[tokio::test]
async fn follow_with_tail_starts_at_the_last_lines() {
    let dir = TempDir::new();
    let path = dir.file(
        [
            rec(1, "stdout", "F", "old"),
            rec(2, "stdout", "F", "recent"),
        ]
        .concat()
        .as_bytes(),
    );
    let f = Follower::start(&path, LogOptions::default().tail(1));
    f.out.wait_for("recent\n").await;
    append(&path, &rec(3, "stdout", "F", "new"));
    f.out.wait_for("recent\nnew\n").await;
    f.stop().await;

    // With tail 0 nothing already there is written: append probes until the
    // follower (started at some moment) shows one, then a last line.
    let f = Follower::start(&path, LogOptions::default().tail(0));
    for i in 0..500 {
        if !f.out.text().is_empty() {
            break;
        }
        append(&path, &rec(4, "stdout", "F", &format!("probe {i}")));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    append(&path, &rec(5, "stdout", "F", "newer"));
    for _ in 0..500 {
        if f.out.text().ends_with("newer\n") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (out, _, _) = f.stop().await;
    assert!(
        out.starts_with("probe ") && out.ends_with("newer\n"),
        "{out:?}"
    );
    assert!(!out.contains("old") && !out.contains("recent"), "{out:?}");
}

#[tokio::test]
async fn when_following_a_record_being_written_is_new_for_tail() {
    // The file ends in the middle of a stderr record. When following it is
    // still being written: it is not counted, and streams with no line kept
    // are read from its start, so it is shown once complete (even with tail
    // 0). Without follow it is the last line.
    let dir = TempDir::new();
    let first = rec(1, "stdout", "F", "old");
    let content = format!("{first}2024-01-01T00:00:02Z stderr F in prog");
    let path = dir.file(content.as_bytes());
    let len = content.len() as u64;
    let at_partial = first.len() as u64;
    for chunk in [3, TAIL_CHUNK_FOR_TESTS] {
        let mut file = tokio::fs::File::open(&path).await.unwrap();
        let s = super::tail::find_tail_start(&mut file, len, 0, None, false, chunk)
            .await
            .unwrap();
        assert_eq!(s.skip_before, [at_partial, at_partial]);
        let mut file = tokio::fs::File::open(&path).await.unwrap();
        let s = super::tail::find_tail_start(&mut file, len, 1, None, false, chunk)
            .await
            .unwrap();
        assert_eq!(s.skip_before, [0, at_partial]);
        let mut file = tokio::fs::File::open(&path).await.unwrap();
        let s = super::tail::find_tail_start(&mut file, len, 1, None, true, chunk)
            .await
            .unwrap();
        assert_eq!(s.skip_before, [len, at_partial]);
        let mut file = tokio::fs::File::open(&path).await.unwrap();
        let s = super::tail::find_tail_start(&mut file, len, 0, None, true, chunk)
            .await
            .unwrap();
        assert_eq!(s.skip_before, [len, len]);
    }
}

#[tokio::test]
async fn stop_reads_what_is_there_then_returns() {
    let dir = TempDir::new();
    let path = dir.file(b"");
    let f = Follower::start(&path, LogOptions::default());
    // Written just before the stop: still read. The last record has no
    // newline: written as it is when stopping.
    append(
        &path,
        &[
            rec(1, "stdout", "F", "a"),
            "2024-01-01T00:00:02Z stdout P b".into(),
        ]
        .concat(),
    );
    let (out, _, _) = f.stop().await;
    assert_eq!(out, "a\nb");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_works_while_the_file_grows_without_pause() {
    let dir = TempDir::new();
    let path = dir.file(b"");
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (path, done) = (path.clone(), done.clone());
        std::thread::spawn(move || {
            use std::io::Write as _;
            let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
            let mut i = 0u64;
            while !done.load(Ordering::Relaxed) {
                f.write_all(rec(1, "stdout", "F", &format!("line {i}")).as_bytes())
                    .unwrap();
                i += 1;
            }
        })
    };
    let f = Follower::start(&path, LogOptions::default());
    for _ in 0..500 {
        if f.out.text().len() > 100_000 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Stop while the writer is still writing: the follower must return.
    let guard = tokio::time::timeout(Duration::from_secs(60), f.stop()).await;
    done.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    let (out, _, _) = guard.expect("the follower did not stop while the file kept growing");
    let lines: Vec<&str> = out.lines().collect();
    assert!(!lines.is_empty());
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(*line, format!("line {i}"));
    }
}

#[tokio::test]
async fn follow_survives_rotation_by_rename_and_reopen() {
    let dir = TempDir::new();
    let path = dir.file(rec(1, "stdout", "F", "in the old file").as_bytes());
    let f = Follower::start(&path, LogOptions::default());
    f.out.wait_for("in the old file\n").await;
    // kubelet's rotation: rename, the runtime keeps writing to the renamed
    // file until it reopens the path.
    let rotated = dir.0.join("0.log.20240101-000000");
    std::fs::rename(&path, &rotated).unwrap();
    append(&rotated, &rec(2, "stdout", "P", "split "));
    append(&path, &rec(3, "stdout", "F", "across files"));
    f.out
        .wait_for("in the old file\nsplit across files\n")
        .await;
    append(&path, &rec(4, "stdout", "F", "after"));
    f.out
        .wait_for("in the old file\nsplit across files\nafter\n")
        .await;
    let (_, _, summary) = f.stop().await;
    assert_eq!(summary.rotations, 1);
}

#[tokio::test]
async fn follow_rereads_a_truncated_file() {
    let dir = TempDir::new();
    let path = dir.file(
        [
            rec(1, "stdout", "F", "a long first line"),
            rec(2, "stdout", "F", "b"),
        ]
        .concat()
        .as_bytes(),
    );
    let f = Follower::start(&path, LogOptions::default());
    f.out.wait_for("a long first line\nb\n").await;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(0)
        .unwrap();
    // Shorter than what was read: seen as a truncation whenever the follower
    // looks.
    append(&path, &rec(3, "stdout", "F", "c"));
    f.out.wait_for("a long first line\nb\nc\n").await;
    let (_, _, summary) = f.stop().await;
    assert_eq!(summary.truncations, 1);
}

#[tokio::test]
async fn follow_stops_at_the_byte_limit() {
    let dir = TempDir::new();
    let path = dir.file(rec(1, "stdout", "F", "12345").as_bytes());
    let opts = LogOptions::default()
        .follow(true)
        .limit_bytes(8)
        .poll_interval(Duration::from_millis(5));
    let task = {
        let path = path.clone();
        tokio::spawn(async move {
            let mut out = Vec::new();
            let s = read_logs(&path, &opts, &mut out, tokio::io::sink()).await;
            (out, s)
        })
    };
    append(&path, &rec(2, "stdout", "F", "6789"));
    let (out, summary) = task.await.unwrap();
    assert_eq!(out, b"12345\n67");
    assert!(summary.unwrap().limit_reached);
}

// ---- property test against a simple model ----

use super::record::tests::Rng;

/// A record of the model: timestamp, stream, partial, content; `None` for a
/// malformed line.
type ModelRecord = Option<(Timestamp, Stream, bool, Vec<u8>)>;

/// The reader's semantics written the simple way: whole file in memory,
/// lines grouped forwards.
fn model(records: &[ModelRecord], opts: &LogOptions) -> (Vec<u8>, Vec<u8>) {
    // Line id of every record, and the index of each line's last record.
    let mut line_of = vec![usize::MAX; records.len()];
    let mut current: [Option<usize>; 2] = [None, None];
    let mut last_index: Vec<usize> = Vec::new();
    let mut first_ts: Vec<Timestamp> = Vec::new();
    let mut line_stream: Vec<Stream> = Vec::new();
    for (i, r) in records.iter().enumerate() {
        let Some((ts, stream, partial, _)) = r else {
            continue;
        };
        let s = stream.index();
        let id = *current[s].get_or_insert_with(|| {
            last_index.push(0);
            first_ts.push(*ts);
            line_stream.push(*stream);
            last_index.len() - 1
        });
        line_of[i] = id;
        last_index[id] = i;
        if !partial {
            current[s] = None;
        }
    }
    let mut kept: Vec<usize> = (0..last_index.len())
        .filter(|&id| opts.stream.is_none_or(|s| s == line_stream[id]))
        .collect();
    kept.sort_by_key(|&id| last_index[id]);
    if let Some(n) = opts.tail {
        kept = kept.split_off(kept.len().saturating_sub(n));
    }
    let kept: std::collections::HashSet<usize> = kept
        .into_iter()
        .filter(|&id| opts.since.is_none_or(|s| first_ts[id] >= s))
        .collect();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let mut budget = opts.limit_bytes.unwrap_or(u64::MAX);
    let mut started = std::collections::HashSet::new();
    for (i, r) in records.iter().enumerate() {
        let Some((ts, stream, partial, content)) = r else {
            continue;
        };
        if !kept.contains(&line_of[i]) || budget == 0 {
            continue;
        }
        let mut piece = Vec::new();
        if started.insert(line_of[i]) && opts.timestamps {
            piece.extend_from_slice(format_timestamp(*ts).as_bytes());
            piece.push(b' ');
        }
        piece.extend_from_slice(content);
        if !partial {
            piece.push(b'\n');
        }
        piece.truncate(usize::try_from(budget).unwrap_or(usize::MAX));
        budget -= piece.len() as u64;
        match stream {
            Stream::Stdout => out.extend_from_slice(&piece),
            Stream::Stderr => err.extend_from_slice(&piece),
        }
    }
    (out, err)
}

#[tokio::test]
async fn random_files_match_the_model() {
    let dir = TempDir::new();
    let mut rng = Rng::new(7);
    for case in 0..300 {
        let mut file = Vec::new();
        let mut records = Vec::new();
        let n = rng.below(30);
        for i in 0..n {
            if rng.below(10) == 0 {
                file.extend_from_slice(b"not a record\n");
                records.push(None);
                continue;
            }
            let ts = at(i as u32 * 10);
            let stream = if rng.below(2) == 0 {
                Stream::Stdout
            } else {
                Stream::Stderr
            };
            let partial = rng.below(3) == 0;
            let content: Vec<u8> = (0..rng.below(12))
                .map(|_| b"ab \t\r"[rng.below(5) as usize])
                .collect();
            LogRecord {
                timestamp: ts,
                stream,
                partial,
                content: &content,
            }
            .encode(&mut file);
            records.push(Some((ts, stream, partial, content)));
        }
        // Sometimes the last record lacks its newline.
        if rng.below(4) == 0
            && file.last() == Some(&b'\n')
            && records.last().is_some_and(Option::is_some)
        {
            file.pop();
        }
        let path = dir.0.join(format!("{case}.log"));
        std::fs::write(&path, &file).unwrap();
        let mut opts = LogOptions::default();
        if rng.below(2) == 0 {
            opts = opts.tail(rng.below(8) as usize);
        }
        if rng.below(3) == 0 {
            opts = opts.since(at(rng.below(300) as u32));
        }
        if rng.below(3) == 0 {
            opts = opts.stream(if rng.below(2) == 0 {
                Stream::Stdout
            } else {
                Stream::Stderr
            });
        }
        if rng.below(3) == 0 {
            opts = opts.limit_bytes(rng.below(60));
        }
        opts = opts.timestamps(rng.below(3) == 0);
        let want = model(&records, &opts);
        for chunk in [3, 64, TAIL_CHUNK_FOR_TESTS] {
            let (mut out, mut err) = (Vec::new(), Vec::new());
            run(
                &path,
                &opts,
                &mut out,
                &mut err,
                std::future::pending(),
                chunk,
            )
            .await
            .unwrap();
            assert_eq!(
                (&out, &err),
                (&want.0, &want.1),
                "case {case}, chunk {chunk}, {opts:?}\nfile:\n{}",
                String::from_utf8_lossy(&file)
            );
        }
    }
}
