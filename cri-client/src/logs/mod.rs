//! Reader for CRI container log files, as `kubectl logs` and `crictl logs`
//! read them.
//!
//! The runtime writes each container's stdout and stderr to the file named by
//! the sandbox's `log_directory` and the container's `log_path`
//! (`/var/log/pods/<namespace>_<pod>_<uid>/<container>/<restart>.log` under
//! kubelet), one record per line:
//!
//! ```text
//! 2016-10-06T00:17:09.669794202Z stdout P log content 1
//! 2016-10-06T00:17:09.669794203Z stdout F  and the rest of the line
//! 2016-10-06T00:17:09.669794204Z stderr F an error
//! ```
//!
//! There is no RPC for logs: kubelet and crictl read the file. This module
//! does the same:
//!
//! - [`parse_line`] parses one record into a [`LogRecord`] and reports what
//!   is wrong with a malformed one ([`LogParseError`]);
//! - [`read_logs`] and [`read_logs_until`] write the container's output to
//!   two [`AsyncWrite`]s with the options of `kubectl logs` / `crictl logs`
//!   ([`LogOptions`]: tail, since, follow, stream, limit-bytes, timestamps).
//!
//! # Lines, and where this differs from kubelet
//!
//! A *line* is what the container wrote up to a newline: the partial (`P`)
//! records of one stream and the full (`F`) record that ends them. The
//! content of the records is written as it comes, a newline after each full
//! record, so a line split by the runtime comes out whole. kubelet
//! (`pkg/kubelet/kuberuntime/logs/logs.go`) writes the same bytes, but it
//! applies the options to records, not lines; this reader applies them to
//! lines:
//!
//! | option | kubelet | here |
//! |---|---|---|
//! | `tail` | counts records (a line split in three counts three) | counts lines |
//! | `since` | drops each record older than `since`, so a line can lose its beginning | keeps or drops a whole line by the timestamp of its first record |
//! | `timestamps` | prefixes every record, also in the middle of a split line | prefixes each line once, with the timestamp of its first record |
//! | `stream` | not an option of kubelet (crictl discards the other writer; the API refuses `stream` with `tailLines`) | filters, and `tail` counts only the lines of that stream |
//!
//! Timestamps are written in UTC with nine fraction digits
//! (`2016-10-06T00:17:09.669794202Z`); kubelet keeps the offset the runtime
//! wrote (containerd writes local time).
//!
//! `tail` is applied first (by position in the file), then `since`, then
//! `limit_bytes`, as in kubelet. Lines are ordered by the position of their
//! last record. Partial records with no full record after them, at the end of
//! the file (a container that wrote text without a final newline, which
//! containerd records as `P`), are written as they are, without a newline,
//! and count as a line. A malformed line is skipped with a `tracing` warning
//! and counted in [`LogSummary::malformed_lines`]; reading goes on.
//!
//! # Following
//!
//! With [`LogOptions::follow`], the reader keeps polling the file (every
//! [`LogOptions::poll_interval`]) for appended records, and handles rotation
//! as kubelet performs it (the file renamed and a new one created at the same
//! path, then the runtime told to reopen): the rest of the old file is read,
//! then the new one from its start. A file truncated in place (copytruncate)
//! is read again from its start. Unlike kubelet, which stops following when
//! the container is no longer running, [`read_logs_until`] stops when a
//! future the caller gives resolves (a `CancellationToken::cancelled()`, a
//! channel, a container-exit watch): it then reads what the file holds at
//! that moment and returns, so nothing written before the stop is lost.
//! Dropping the returned future stops at once.
//!
//! # Example
//!
//! The last 10 lines of stdout, with timestamps, like
//! `crictl logs --tail 10 --timestamps` with stderr discarded:
//!
//! ```no_run
//! use cri_client::logs::{LogOptions, Stream, read_logs};
//!
//! # async fn demo() -> Result<(), cri_client::logs::LogError> {
//! let opts = LogOptions::default()
//!     .tail(10)
//!     .stream(Stream::Stdout)
//!     .timestamps(true);
//! let mut out = Vec::new();
//! let summary = read_logs(
//!     "/var/log/pods/default_web_1234/nginx/0.log",
//!     &opts,
//!     &mut out,
//!     tokio::io::sink(),
//! )
//! .await?;
//! print!("{}", String::from_utf8_lossy(&out));
//! eprintln!("{} malformed lines skipped", summary.malformed_lines);
//! # Ok(())
//! # }
//! ```

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::AsyncWrite;

mod reader;
mod record;
mod tail;
#[cfg(test)]
mod tests;

pub use jiff::Timestamp;
pub use record::{LogParseError, LogRecord, Stream, format_timestamp, parse_line};

/// How to read a log file: the options of `kubectl logs` and `crictl logs`.
///
/// The default reads the whole file once, both streams, no timestamps, no
/// limit, which is what `kubectl logs` does without flags.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LogOptions {
    /// Only the last this many lines (`--tail`). A line split into partial
    /// records counts once. When following, a record still being written at
    /// the end of the file (no newline yet) does not count and is written
    /// once complete. `None` (the default) reads everything.
    pub tail: Option<usize>,
    /// Only lines whose first record is at or after this instant
    /// (`--since-time`; `--since` is `now - duration`).
    pub since: Option<Timestamp>,
    /// Keep reading records appended to the file (`--follow`); see the
    /// [module documentation](self) for how following stops.
    pub follow: bool,
    /// Only this stream (`crictl logs --stream`). `None` (the default) reads
    /// both.
    pub stream: Option<Stream>,
    /// Stop after writing this many bytes, timestamps included; the last line
    /// is cut (`--limit-bytes`).
    pub limit_bytes: Option<u64>,
    /// Prefix each line with the timestamp of its first record and a space
    /// (`--timestamps`).
    pub timestamps: bool,
    /// How often a follower looks for new data. Default 100 ms (kubelet is
    /// woken by inotify, and checks at least every second).
    pub poll_interval: Duration,
}

impl Default for LogOptions {
    fn default() -> Self {
        Self {
            tail: None,
            since: None,
            follow: false,
            stream: None,
            limit_bytes: None,
            timestamps: false,
            poll_interval: Duration::from_millis(100),
        }
    }
}

impl LogOptions {
    /// Only the last `lines` lines.
    #[must_use]
    pub fn tail(mut self, lines: usize) -> Self {
        self.tail = Some(lines);
        self
    }

    /// Only lines that started at or after `since`.
    #[must_use]
    pub fn since(mut self, since: Timestamp) -> Self {
        self.since = Some(since);
        self
    }

    /// Keep reading appended records.
    #[must_use]
    pub fn follow(mut self, follow: bool) -> Self {
        self.follow = follow;
        self
    }

    /// Only `stream`.
    #[must_use]
    pub fn stream(mut self, stream: Stream) -> Self {
        self.stream = Some(stream);
        self
    }

    /// Stop after `bytes` bytes of output.
    #[must_use]
    pub fn limit_bytes(mut self, bytes: u64) -> Self {
        self.limit_bytes = Some(bytes);
        self
    }

    /// Prefix lines with their timestamp.
    #[must_use]
    pub fn timestamps(mut self, timestamps: bool) -> Self {
        self.timestamps = timestamps;
        self
    }

    /// How often a follower polls the file.
    #[must_use]
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }
}

/// What a read did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LogSummary {
    /// Bytes written to both writers, timestamps included.
    pub bytes_written: u64,
    /// Records whose content (or part of it) was written.
    pub records_written: u64,
    /// Lines skipped because they are not CRI log records.
    pub malformed_lines: u64,
    /// How often the file was replaced (rotated) while following.
    pub rotations: u32,
    /// How often the file was truncated while following.
    pub truncations: u32,
    /// Whether reading stopped at [`LogOptions::limit_bytes`].
    pub limit_reached: bool,
}

/// Errors of [`read_logs`] and [`read_logs_until`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    /// The log file could not be opened.
    #[error("cannot open log file {path}")]
    Open {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The log file could not be read.
    #[error("cannot read log file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Writing the output failed.
    #[error("cannot write the container's {stream} to the output")]
    Write {
        /// The stream whose writer failed.
        stream: Stream,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl LogError {
    /// Whether the log file does not exist (yet, or any more).
    pub fn is_not_found(&self) -> bool {
        matches!(self, LogError::Open { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    }
}

/// Read the log file at `path` and write the container's stdout and stderr to
/// `stdout` and `stderr`, as `kubectl logs` does.
///
/// With [`LogOptions::follow`] this runs until an error or until the future
/// is dropped; use [`read_logs_until`] to stop it cleanly.
pub async fn read_logs<O, E>(
    path: impl AsRef<Path>,
    opts: &LogOptions,
    stdout: O,
    stderr: E,
) -> Result<LogSummary, LogError>
where
    O: AsyncWrite + Unpin,
    E: AsyncWrite + Unpin,
{
    read_logs_until(path, opts, stdout, stderr, std::future::pending()).await
}

/// [`read_logs`], stopping a follower when `stop` resolves.
///
/// When `stop` resolves, the reader reads what the file holds at that moment
/// (including the rest of a rotated file), writes it, flushes both writers
/// and returns. Without [`LogOptions::follow`], `stop` is only polled while
/// waiting, which never happens, so the whole file is read.
pub async fn read_logs_until<O, E, S>(
    path: impl AsRef<Path>,
    opts: &LogOptions,
    stdout: O,
    stderr: E,
    stop: S,
) -> Result<LogSummary, LogError>
where
    O: AsyncWrite + Unpin,
    E: AsyncWrite + Unpin,
    S: Future<Output = ()>,
{
    reader::run(
        path.as_ref(),
        opts,
        stdout,
        stderr,
        stop,
        reader::TAIL_CHUNK,
    )
    .await
}
