//! Finding where the last N lines of a log file start, reading backwards from
//! the end in chunks so that a large file is not read whole.
//!
//! A *line* is what the container wrote up to a newline: zero or more partial
//! (`P`) records of one stream and the full (`F`) record that ends them, or,
//! at the end of the file, partial records that no full record ends yet.
//! Lines are ordered by the position of their last record. Because the
//! records of stdout and stderr interleave, the last N lines do not start at
//! one offset: the scan finds, per stream, the offset of the first record of
//! the oldest line kept, and the reader skips records of that stream before
//! it.

use std::io::SeekFrom;

use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};

use super::record::{Stream, parse_line};

/// Where to start reading so that exactly the last lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TailStart {
    /// The offset at which forward reading begins (the smallest of `skip_before`).
    pub(crate) begin: u64,
    /// Per stream (indexed by [`Stream::index`]): records of that stream
    /// that start before this offset belong to older lines and are skipped.
    pub(crate) skip_before: [u64; 2],
}

impl TailStart {
    /// Read everything.
    pub(crate) const ALL: TailStart = TailStart {
        begin: 0,
        skip_before: [0, 0],
    };
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// No record of this stream seen yet (scanning from the end).
    Unseen,
    /// Inside a line that is kept: its earlier partial records are kept too.
    Open,
    /// Everything of this stream from here back is older than what is kept.
    Closed,
}

/// The backward scan as a pure state machine: fed complete records from the
/// last to the first, with their offsets.
#[derive(Debug)]
pub(crate) struct TailScanner {
    want: usize,
    found: usize,
    state: [State; 2],
    start: [Option<u64>; 2],
    only: Option<Stream>,
}

impl TailScanner {
    pub(crate) fn new(want: usize, only: Option<Stream>) -> Self {
        Self {
            want,
            found: 0,
            state: [State::Unseen; 2],
            start: [None; 2],
            only,
        }
    }

    /// Whether the scan has what it needs.
    pub(crate) fn done(&self) -> bool {
        self.found == self.want && !self.state.contains(&State::Open)
    }

    /// Feed the record (one line of the file) that starts at `offset`.
    /// Malformed lines and streams not asked for are ignored.
    pub(crate) fn feed(&mut self, offset: u64, line: &[u8]) {
        let Ok(record) = parse_line(line) else {
            return;
        };
        if self.only.is_some_and(|s| s != record.stream) {
            return;
        }
        let i = record.stream.index();
        match (self.state[i], record.partial) {
            (State::Closed, _) => {}
            (State::Open, true) => self.start[i] = Some(offset),
            // A full record ends an older line; a partial record of a
            // stream not seen yet is an unfinished last line.
            (State::Open, false) | (State::Unseen, _) => {
                if self.found < self.want {
                    self.found += 1;
                    self.state[i] = State::Open;
                    self.start[i] = Some(offset);
                } else {
                    self.state[i] = State::Closed;
                }
            }
        }
    }

    /// The result; streams with no line kept are read from `fresh` on.
    pub(crate) fn finish(&self, fresh: u64) -> TailStart {
        let skip_before = [
            self.start[0].unwrap_or(fresh),
            self.start[1].unwrap_or(fresh),
        ];
        TailStart {
            begin: skip_before[0].min(skip_before[1]),
            skip_before,
        }
    }
}

/// Scan `[0, end)` of `file` backwards for the last `want` lines.
///
/// The bytes after the last newline before `end` are an unfinished record;
/// they count only when `include_unterminated` is set (reading to a fixed
/// end, not following).
pub(crate) async fn find_tail_start(
    file: &mut tokio::fs::File,
    end: u64,
    want: usize,
    only: Option<Stream>,
    include_unterminated: bool,
    chunk: usize,
) -> std::io::Result<TailStart> {
    let mut scanner = TailScanner::new(want, only);
    if scanner.done() && include_unterminated {
        return Ok(scanner.finish(end));
    }
    // Where the complete records end: the start of the unfinished record at
    // the end of the file. When following, that record is still being
    // written; it is new, not old, so a stream with no line kept is read
    // from there rather than from `end`.
    let mut complete_end: Option<u64> = None;
    // `buf` holds the bytes [buf_start, buf_start + buf.len()) of the file;
    // everything from `buf_start + hi` on has been fed already.
    let mut buf: Vec<u8> = Vec::new();
    let mut buf_start = end;
    let mut hi = 0usize;
    let mut last_segment = true;
    let chunk = chunk.max(1);
    loop {
        // Feed every segment in `buf` whose start is known.
        loop {
            let content_end = if last_segment {
                hi
            } else {
                hi.saturating_sub(1)
            };
            let start = match buf[..content_end].iter().rposition(|&b| b == b'\n') {
                Some(nl) => nl + 1,
                None if buf_start == 0 => 0,
                None => break,
            };
            if last_segment {
                complete_end = Some(buf_start + start as u64);
            }
            let segment = &buf[start..hi];
            if !segment.is_empty() && (!last_segment || include_unterminated) {
                scanner.feed(buf_start + start as u64, segment);
            }
            last_segment = false;
            hi = start;
            if scanner.done() || hi == 0 {
                break;
            }
        }
        if (complete_end.is_some() && scanner.done()) || (hi == 0 && buf_start == 0) {
            let fresh = if include_unterminated {
                end
            } else {
                complete_end.unwrap_or(0)
            };
            return Ok(scanner.finish(fresh));
        }
        // Read the chunk before `buf_start` and put it in front. The chunk
        // grows with an unfinished long line, so a line of any length costs
        // linear time.
        buf.truncate(hi);
        let n = chunk
            .max(hi)
            .min(usize::try_from(buf_start).unwrap_or(usize::MAX));
        buf_start -= n as u64;
        let mut front = vec![0u8; n];
        file.seek(SeekFrom::Start(buf_start)).await?;
        file.read_exact(&mut front).await?;
        front.extend_from_slice(&buf);
        buf = front;
        hi += n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: &str = "2024-01-01T00:00:00Z";

    /// Feed `lines` (one record each) backwards and return the start.
    fn scan(lines: &[&str], want: usize, only: Option<Stream>) -> (TailStart, Vec<u64>) {
        let mut offsets = Vec::new();
        let mut at = 0u64;
        for l in lines {
            offsets.push(at);
            at += l.len() as u64 + 1;
        }
        let mut s = TailScanner::new(want, only);
        for (l, &o) in lines.iter().zip(&offsets).rev() {
            if s.done() {
                break;
            }
            s.feed(o, l.as_bytes());
        }
        (s.finish(at), offsets)
    }

    fn rec(stream: &str, tag: &str, content: &str) -> String {
        format!("{T} {stream} {tag} {content}")
    }

    #[test]
    fn counts_joined_lines_not_records() {
        let lines = [
            rec("stdout", "F", "one"),
            rec("stdout", "P", "tw"),
            rec("stdout", "F", "o"),
        ];
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        let (start, offsets) = scan(&refs, 1, None);
        assert_eq!(start.skip_before[0], offsets[1]);
        assert_eq!(start.begin, offsets[1]);
        let (start, offsets) = scan(&refs, 2, None);
        assert_eq!(start.begin, offsets[0]);
    }

    #[test]
    fn interleaved_partials_start_per_stream() {
        let lines = [
            rec("stdout", "P", "a"),
            rec("stderr", "F", "x"),
            rec("stdout", "F", "b"),
            rec("stderr", "F", "y"),
        ];
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        let (start, offsets) = scan(&refs, 2, None);
        assert_eq!(start.skip_before, [offsets[0], offsets[3]]);
        assert_eq!(start.begin, offsets[0]);
    }

    #[test]
    fn unfinished_last_line_counts() {
        let lines = [rec("stdout", "F", "done"), rec("stdout", "P", "half")];
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        let (start, offsets) = scan(&refs, 1, None);
        assert_eq!(start.begin, offsets[1]);
    }

    #[test]
    fn stream_filter_counts_only_that_stream() {
        let lines = [
            rec("stdout", "F", "o1"),
            rec("stderr", "F", "e1"),
            rec("stdout", "F", "o2"),
            rec("stderr", "F", "e2"),
        ];
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        let (start, offsets) = scan(&refs, 2, Some(Stream::Stderr));
        let end = offsets[3] + refs[3].len() as u64 + 1;
        assert_eq!(start.skip_before, [end, offsets[1]]);
    }

    #[test]
    fn more_lines_than_the_file_has_starts_at_zero_and_zero_lines_at_the_end() {
        let lines = [rec("stdout", "F", "a"), "not a record".into()];
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        let (start, _) = scan(&refs, 10, None);
        assert_eq!(start.begin, 0);
        let (start, offsets) = scan(&refs, 0, None);
        let end = offsets[1] + refs[1].len() as u64 + 1;
        assert_eq!(start.skip_before, [end, end]);
    }
}
