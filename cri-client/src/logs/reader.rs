//! The forward reader behind [`read_logs_until`](super::read_logs_until):
//! reading records, applying the options, following, rotation.

use std::future::Future;
use std::io::SeekFrom;
use std::path::Path;
use std::pin::pin;

use tokio::fs::File;
use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _, AsyncWrite, AsyncWriteExt as _};

use super::record::{LogRecord, Stream, parse_line, push_timestamp};
use super::tail::{self, TailStart};
use super::{LogError, LogOptions, LogSummary};

/// How much the tail scan reads at a time, backwards from the end.
pub(super) const TAIL_CHUNK: usize = 64 * 1024;
/// How much the forward reader asks for at a time.
const READ_CHUNK: usize = 64 * 1024;

/// Whether to go on after writing a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Go,
    LimitReached,
}

/// The writing side: line state per stream, the byte budget, the counters.
struct Output<'o, O, E> {
    stdout: O,
    stderr: E,
    opts: &'o LogOptions,
    remaining: Option<u64>,
    /// Per stream: whether the next record begins a line.
    at_line_start: [bool; 2],
    /// Per stream: whether the current line is written (`since`).
    keep_line: [bool; 2],
    scratch: Vec<u8>,
    summary: LogSummary,
}

impl<'o, O, E> Output<'o, O, E>
where
    O: AsyncWrite + Unpin,
    E: AsyncWrite + Unpin,
{
    fn new(stdout: O, stderr: E, opts: &'o LogOptions) -> Self {
        Self {
            stdout,
            stderr,
            opts,
            remaining: opts.limit_bytes,
            at_line_start: [true; 2],
            keep_line: [true; 2],
            scratch: Vec::new(),
            summary: LogSummary::default(),
        }
    }

    async fn record(&mut self, record: &LogRecord<'_>) -> Result<Flow, LogError> {
        let i = record.stream.index();
        let starts_line = self.at_line_start[i];
        if starts_line {
            self.keep_line[i] = self.opts.since.is_none_or(|s| record.timestamp >= s);
        }
        self.at_line_start[i] = !record.partial;
        if !self.keep_line[i] {
            return Ok(Flow::Go);
        }
        self.scratch.clear();
        if starts_line && self.opts.timestamps {
            push_timestamp(&mut self.scratch, record.timestamp);
            self.scratch.push(b' ');
        }
        self.scratch.extend_from_slice(record.content);
        if !record.partial {
            self.scratch.push(b'\n');
        }
        let mut piece = &self.scratch[..];
        if let Some(remaining) = self.remaining {
            let allowed = usize::try_from(remaining).unwrap_or(usize::MAX);
            piece = &piece[..piece.len().min(allowed)];
        }
        let written = match record.stream {
            Stream::Stdout => self.stdout.write_all(piece).await,
            Stream::Stderr => self.stderr.write_all(piece).await,
        };
        written.map_err(|source| LogError::Write {
            stream: record.stream,
            source,
        })?;
        self.summary.bytes_written += piece.len() as u64;
        self.summary.records_written += 1;
        if let Some(remaining) = &mut self.remaining {
            *remaining -= piece.len() as u64;
            if *remaining == 0 {
                self.summary.limit_reached = true;
                return Ok(Flow::LimitReached);
            }
        }
        Ok(Flow::Go)
    }

    async fn flush(&mut self) -> Result<(), LogError> {
        self.stdout
            .flush()
            .await
            .map_err(|source| LogError::Write {
                stream: Stream::Stdout,
                source,
            })?;
        self.stderr.flush().await.map_err(|source| LogError::Write {
            stream: Stream::Stderr,
            source,
        })
    }
}

/// The reading side: the open file and the bytes read but not yet used.
struct Source<'p> {
    path: &'p Path,
    file: File,
    /// File offset of the next byte to read.
    pos: u64,
    /// Bytes read but not yet used; `buf[0]` is at `pos - buf.len()`.
    buf: Vec<u8>,
    /// Per stream: skip records starting before this offset (tail).
    skip_before: [u64; 2],
    /// Read no further than this (when not following).
    end: Option<u64>,
    only: Option<Stream>,
}

/// What changed about the file at the path while we were at its end.
enum Change {
    Nothing,
    Truncated,
    Replaced(File),
}

impl Source<'_> {
    fn read_error(&self, source: std::io::Error) -> LogError {
        LogError::Read {
            path: self.path.to_owned(),
            source,
        }
    }

    /// Read the next chunk into `buf`; 0 at the end.
    async fn fill(&mut self) -> Result<usize, LogError> {
        let max = match self.end {
            Some(end) => usize::try_from(end.saturating_sub(self.pos))
                .map_or(READ_CHUNK, |n| n.min(READ_CHUNK)),
            None => READ_CHUNK,
        };
        if max == 0 {
            return Ok(0);
        }
        let old = self.buf.len();
        self.buf.resize(old + max, 0);
        match self.file.read(&mut self.buf[old..]).await {
            Ok(n) => {
                self.buf.truncate(old + n);
                self.pos += n as u64;
                Ok(n)
            }
            Err(e) => {
                self.buf.truncate(old);
                Err(self.read_error(e))
            }
        }
    }

    /// Use every complete record in `buf`.
    async fn drain_lines<O, E>(&mut self, out: &mut Output<'_, O, E>) -> Result<Flow, LogError>
    where
        O: AsyncWrite + Unpin,
        E: AsyncWrite + Unpin,
    {
        let base = self.pos - self.buf.len() as u64;
        let mut used = 0;
        let mut flow = Flow::Go;
        while let Some(nl) = self.buf[used..].iter().position(|&b| b == b'\n') {
            let line = &self.buf[used..used + nl + 1];
            let offset = base + used as u64;
            used += nl + 1;
            flow = handle_line(self.path, self.only, &self.skip_before, line, offset, out).await?;
            if flow == Flow::LimitReached {
                break;
            }
        }
        self.buf.drain(..used);
        Ok(flow)
    }

    /// Use the bytes after the last newline as a record: the end of a file
    /// that will not grow any more (or that we stop reading).
    async fn finish_unterminated<O, E>(
        &mut self,
        out: &mut Output<'_, O, E>,
    ) -> Result<Flow, LogError>
    where
        O: AsyncWrite + Unpin,
        E: AsyncWrite + Unpin,
    {
        if self.buf.is_empty() {
            return Ok(Flow::Go);
        }
        let offset = self.pos - self.buf.len() as u64;
        let line = std::mem::take(&mut self.buf);
        handle_line(self.path, self.only, &self.skip_before, &line, offset, out).await
    }

    /// Look at the path: has the file been replaced or truncated?
    async fn check(&self) -> Result<Change, LogError> {
        let ours = self.file.metadata().await.map_err(|e| self.read_error(e))?;
        match tokio::fs::metadata(self.path).await {
            Ok(at_path) if !same_file(&ours, &at_path) => match File::open(self.path).await {
                Ok(new) => return Ok(Change::Replaced(new)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(self.read_error(e)),
            },
            // Renamed away and not recreated yet: keep reading the old one.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(self.read_error(e)),
            Ok(_) => {}
        }
        if ours.len() < self.pos {
            return Ok(Change::Truncated);
        }
        Ok(Change::Nothing)
    }

    /// Read no further than the file's current end: we are stopping.
    async fn freeze(&mut self) -> Result<(), LogError> {
        let len = self
            .file
            .metadata()
            .await
            .map_err(|e| self.read_error(e))?
            .len();
        self.end = Some(len.max(self.pos));
        Ok(())
    }

    /// Read `file` from its start from now on.
    async fn restart(&mut self, file: Option<File>) -> Result<(), LogError> {
        if let Some(file) = file {
            self.file = file;
        } else {
            self.file
                .seek(SeekFrom::Start(0))
                .await
                .map_err(|e| self.read_error(e))?;
        }
        self.pos = 0;
        self.buf.clear();
        self.skip_before = [0, 0];
        Ok(())
    }
}

async fn handle_line<O, E>(
    path: &Path,
    only: Option<Stream>,
    skip_before: &[u64; 2],
    line: &[u8],
    offset: u64,
    out: &mut Output<'_, O, E>,
) -> Result<Flow, LogError>
where
    O: AsyncWrite + Unpin,
    E: AsyncWrite + Unpin,
{
    match parse_line(line) {
        Err(error) => {
            tracing::warn!(
                path = %path.display(),
                offset,
                %error,
                "skipping a malformed line of a CRI log file"
            );
            out.summary.malformed_lines += 1;
            Ok(Flow::Go)
        }
        Ok(record) => {
            if only.is_some_and(|s| s != record.stream)
                || offset < skip_before[record.stream.index()]
            {
                return Ok(Flow::Go);
            }
            out.record(&record).await
        }
    }
}

#[cfg(unix)]
fn same_file(a: &std::fs::Metadata, b: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    a.dev() == b.dev() && a.ino() == b.ino()
}

#[cfg(not(unix))]
fn same_file(_: &std::fs::Metadata, _: &std::fs::Metadata) -> bool {
    true
}

pub(super) async fn run<O, E, S>(
    path: &Path,
    opts: &LogOptions,
    stdout: O,
    stderr: E,
    stop: S,
    tail_chunk: usize,
) -> Result<LogSummary, LogError>
where
    O: AsyncWrite + Unpin,
    E: AsyncWrite + Unpin,
    S: Future<Output = ()>,
{
    let mut file = File::open(path).await.map_err(|source| LogError::Open {
        path: path.to_owned(),
        source,
    })?;
    let read_error = |source| LogError::Read {
        path: path.to_owned(),
        source,
    };
    let len = file.metadata().await.map_err(read_error)?.len();
    let mut out = Output::new(stdout, stderr, opts);
    if opts.limit_bytes == Some(0) {
        out.summary.limit_reached = true;
        return Ok(out.summary);
    }
    let start = match opts.tail {
        Some(lines) => {
            tail::find_tail_start(&mut file, len, lines, opts.stream, !opts.follow, tail_chunk)
                .await
                .map_err(read_error)?
        }
        None => TailStart::ALL,
    };
    file.seek(SeekFrom::Start(start.begin))
        .await
        .map_err(read_error)?;
    let mut src = Source {
        path,
        file,
        pos: start.begin,
        buf: Vec::new(),
        skip_before: start.skip_before,
        // Without follow, read what the file held when we opened it.
        end: (!opts.follow).then_some(len),
        only: opts.stream,
    };

    let mut stop = pin!(stop);
    let mut stopping = false;
    let mut replacement: Option<File> = None;
    loop {
        // A container writing without pause never lets the reader reach the
        // end of the file: look at `stop` between chunks too.
        if opts.follow && !stopping && futures::poll!(stop.as_mut()).is_ready() {
            stopping = true;
            src.freeze().await?;
        }
        if src.fill().await? > 0 {
            if src.drain_lines(&mut out).await? == Flow::LimitReached {
                break;
            }
            continue;
        }
        // At the end of what there is to read now.
        if let Some(new) = replacement.take() {
            // The old file is read to its end: go on with the new one.
            if src.finish_unterminated(&mut out).await? == Flow::LimitReached {
                break;
            }
            src.restart(Some(new)).await?;
            if stopping {
                src.freeze().await?;
            }
            out.summary.rotations += 1;
            continue;
        }
        if !opts.follow {
            src.finish_unterminated(&mut out).await?;
            break;
        }
        match src.check().await? {
            Change::Replaced(new) => {
                // Read what was appended to the old file before it was
                // replaced, then switch (above).
                replacement = Some(new);
                continue;
            }
            Change::Truncated => {
                tracing::warn!(
                    path = %path.display(),
                    "log file truncated while following, reading it again from its start"
                );
                // An unfinished record read before the truncation is dropped.
                src.restart(None).await?;
                if stopping {
                    src.freeze().await?;
                }
                out.summary.truncations += 1;
                continue;
            }
            Change::Nothing => {}
        }
        if stopping {
            src.finish_unterminated(&mut out).await?;
            break;
        }
        out.flush().await?;
        tokio::select! {
            () = tokio::time::sleep(opts.poll_interval) => {}
            () = &mut stop => {
                stopping = true;
                src.freeze().await?;
            }
        }
    }
    out.flush().await?;
    Ok(out.summary)
}
