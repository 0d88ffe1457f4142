//! One record of a CRI log file: parsing, encoding and the timestamp format.

use std::fmt;

use jiff::Timestamp;
use jiff::civil::DateTime;
use jiff::tz::Offset;

/// Which output stream of the container a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    /// The container's standard output (`stdout` in the file).
    Stdout,
    /// The container's standard error (`stderr` in the file).
    Stderr,
}

impl Stream {
    /// The stream's name as written in a CRI log file: `stdout` or `stderr`.
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }

    pub(crate) fn index(self) -> usize {
        match self {
            Stream::Stdout => 0,
            Stream::Stderr => 1,
        }
    }
}

impl fmt::Display for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One record (one line) of a CRI log file:
/// `<RFC 3339 timestamp> <stdout|stderr> <P|F>[:<more tags>] <content>`.
///
/// A record with [`partial`](Self::partial) set holds the beginning or the
/// middle of a line that the runtime split (containerd splits lines longer
/// than its `max_container_log_line_size`, 16 KiB by default, and writes a
/// final line that lacks its newline as a partial record too); the line goes
/// on in the next records of the same stream, up to and including the next
/// full (`F`) record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogRecord<'a> {
    /// When the runtime wrote the record.
    pub timestamp: Timestamp,
    /// The stream the content came from.
    pub stream: Stream,
    /// `true` for a `P` (partial) record, `false` for an `F` (full) one.
    pub partial: bool,
    /// The content, without the record's terminating newline. It may
    /// contain anything but `\n`: spaces, tabs, a `\r` the container wrote
    /// before its newline, invalid UTF-8.
    pub content: &'a [u8],
}

impl LogRecord<'_> {
    /// Append the record to `out` as a runtime writes it, newline included:
    /// timestamp in RFC 3339 with nine fraction digits, in UTC.
    ///
    /// This is what a fake runtime needs to write log files that kubelet,
    /// crictl and [`parse_line`] read.
    pub fn encode(&self, out: &mut Vec<u8>) {
        push_timestamp(out, self.timestamp);
        out.push(b' ');
        out.extend_from_slice(self.stream.as_str().as_bytes());
        out.push(b' ');
        out.push(if self.partial { b'P' } else { b'F' });
        out.push(b' ');
        out.extend_from_slice(self.content);
        out.push(b'\n');
    }
}

/// What is wrong with a line that is not a CRI log record.
///
/// Every variant names the field that could not be read; `found` fields hold
/// the offending text (lossily decoded, cut to 64 bytes).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LogParseError {
    /// The line is empty.
    #[error("empty line")]
    Empty,
    /// No space follows the timestamp field.
    #[error("no space after the timestamp field {found:?}")]
    MissingTimestampEnd {
        /// The start of the line.
        found: String,
    },
    /// The timestamp is not RFC 3339 (`2016-10-06T00:17:09.669794202Z`).
    #[error("invalid timestamp {found:?}: {reason}")]
    InvalidTimestamp {
        /// The timestamp field.
        found: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// No space follows the stream field.
    #[error("no space after the stream field {found:?}")]
    MissingStreamEnd {
        /// The rest of the line after the timestamp.
        found: String,
    },
    /// The stream is neither `stdout` nor `stderr`.
    #[error("unknown stream {found:?}, expected stdout or stderr")]
    UnknownStream {
        /// The stream field.
        found: String,
    },
    /// No space follows the tag field (a runtime writes one even before
    /// empty content).
    #[error("no space after the tag field {found:?}")]
    MissingTagEnd {
        /// The rest of the line after the stream.
        found: String,
    },
    /// The first tag is neither `P` nor `F`.
    #[error("unknown tag {found:?}, expected P or F (optionally followed by :<more tags>)")]
    UnknownTag {
        /// The whole tag field.
        found: String,
    },
}

const SNIPPET: usize = 64;

fn snippet(bytes: &[u8]) -> String {
    let cut = &bytes[..bytes.len().min(SNIPPET)];
    String::from_utf8_lossy(cut).into_owned()
}

/// Parse one line of a CRI log file.
///
/// One trailing `\n` is accepted and removed; nothing else is (a `\r` before
/// it belongs to the content, as in kubelet). The timestamp must be RFC 3339
/// with an upper-case `T` and `Z` (or a `±hh:mm` offset) and 0 to 9 fraction
/// digits, as Go's `time.RFC3339Nano` writes it. The tag field may carry more
/// tags after a `:`; only the first, `P` or `F`, is read.
///
/// Never panics, whatever the input.
///
/// ```
/// use cri_client::logs::{Stream, parse_line};
///
/// let r = parse_line(b"2016-10-06T00:17:09.669794202Z stdout P log content 1\n")?;
/// assert_eq!(r.stream, Stream::Stdout);
/// assert!(r.partial);
/// assert_eq!(r.content, b"log content 1");
/// assert_eq!(r.timestamp.to_string(), "2016-10-06T00:17:09.669794202Z");
/// # Ok::<(), cri_client::logs::LogParseError>(())
/// ```
pub fn parse_line(line: &[u8]) -> Result<LogRecord<'_>, LogParseError> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    if line.is_empty() {
        return Err(LogParseError::Empty);
    }
    let (ts, rest) = split_field(line).ok_or_else(|| LogParseError::MissingTimestampEnd {
        found: snippet(line),
    })?;
    let timestamp = parse_timestamp(ts).map_err(|reason| LogParseError::InvalidTimestamp {
        found: snippet(ts),
        reason,
    })?;
    let (stream, rest) = split_field(rest).ok_or_else(|| LogParseError::MissingStreamEnd {
        found: snippet(rest),
    })?;
    let stream = match stream {
        b"stdout" => Stream::Stdout,
        b"stderr" => Stream::Stderr,
        other => {
            return Err(LogParseError::UnknownStream {
                found: snippet(other),
            });
        }
    };
    let (tags, content) = split_field(rest).ok_or_else(|| LogParseError::MissingTagEnd {
        found: snippet(rest),
    })?;
    let first = tags.split(|&b| b == b':').next().unwrap_or_default();
    let partial = match first {
        b"P" => true,
        b"F" => false,
        _ => {
            return Err(LogParseError::UnknownTag {
                found: snippet(tags),
            });
        }
    };
    Ok(LogRecord {
        timestamp,
        stream,
        partial,
        content,
    })
}

/// Split at the first space: `(field, rest after the space)`.
fn split_field(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let at = bytes.iter().position(|&b| b == b' ')?;
    Some((&bytes[..at], &bytes[at + 1..]))
}

/// Parse `YYYY-MM-DDTHH:MM:SS[.fffffffff](Z|±HH:MM)`, the subset of RFC 3339
/// that Go's `time.RFC3339Nano` writes and kubelet's lenient layout reads.
pub(crate) fn parse_timestamp(s: &[u8]) -> Result<Timestamp, &'static str> {
    fn digits(s: &[u8], at: usize, n: usize) -> Option<i32> {
        let field = s.get(at..at + n)?;
        field.iter().try_fold(0i32, |acc, &b| {
            b.is_ascii_digit().then(|| acc * 10 + i32::from(b - b'0'))
        })
    }
    fn expect(s: &[u8], at: usize, byte: u8) -> bool {
        s.get(at) == Some(&byte)
    }

    const SHAPE: &str = "expected YYYY-MM-DDTHH:MM:SS[.fraction](Z|+hh:mm|-hh:mm)";
    let year = digits(s, 0, 4).ok_or(SHAPE)?;
    let month = digits(s, 5, 2).ok_or(SHAPE)?;
    let day = digits(s, 8, 2).ok_or(SHAPE)?;
    let hour = digits(s, 11, 2).ok_or(SHAPE)?;
    let minute = digits(s, 14, 2).ok_or(SHAPE)?;
    let second = digits(s, 17, 2).ok_or(SHAPE)?;
    if !(expect(s, 4, b'-')
        && expect(s, 7, b'-')
        && expect(s, 10, b'T')
        && expect(s, 13, b':')
        && expect(s, 16, b':'))
    {
        return Err(SHAPE);
    }
    let mut at = 19;
    let mut nanos = 0i32;
    if expect(s, at, b'.') {
        at += 1;
        let start = at;
        while s.get(at).is_some_and(u8::is_ascii_digit) {
            at += 1;
        }
        let n = at - start;
        if n == 0 {
            return Err("a '.' must be followed by fraction digits");
        }
        if n > 9 {
            return Err("more than nine fraction digits");
        }
        nanos = digits(s, start, n).ok_or(SHAPE)? * 10i32.pow(9 - n as u32);
    }
    let offset_seconds = match s.get(at) {
        Some(b'Z') => {
            at += 1;
            0
        }
        Some(&sign @ (b'+' | b'-')) => {
            let oh = digits(s, at + 1, 2).ok_or(SHAPE)?;
            let om = digits(s, at + 4, 2).ok_or(SHAPE)?;
            if !expect(s, at + 3, b':') {
                return Err(SHAPE);
            }
            if oh > 23 || om > 59 {
                return Err("offset out of range");
            }
            at += 6;
            let secs = oh * 3600 + om * 60;
            if sign == b'-' { -secs } else { secs }
        }
        _ => return Err("missing the time zone (Z or an offset)"),
    };
    if at != s.len() {
        return Err("unexpected text after the time zone");
    }
    if second > 59 {
        return Err("second out of range (leap seconds are not accepted)");
    }
    // All fields are at most four digits, so they fit the narrower types.
    let dt = DateTime::new(
        year as i16,
        month as i8,
        day as i8,
        hour as i8,
        minute as i8,
        second as i8,
        nanos,
    )
    .map_err(|_| "date or time field out of range")?;
    let offset = Offset::from_seconds(offset_seconds).map_err(|_| "offset out of range")?;
    offset
        .to_timestamp(dt)
        .map_err(|_| "instant out of the supported range")
}

/// Append `ts` as RFC 3339 in UTC with exactly nine fraction digits, the
/// fixed-width form kubelet writes for `--timestamps`
/// (`2016-10-06T00:17:09.669794202Z`).
pub(crate) fn push_timestamp(out: &mut Vec<u8>, ts: Timestamp) {
    use std::io::Write as _;
    let dt = Offset::UTC.to_datetime(ts);
    // Writing to a Vec cannot fail.
    let _ = write!(
        out,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:09}Z",
        dt.year(),
        dt.month(),
        dt.day(),
        dt.hour(),
        dt.minute(),
        dt.second(),
        dt.subsec_nanosecond()
    );
}

/// `ts` as kubelet writes it for `--timestamps`: RFC 3339 in UTC with exactly
/// nine fraction digits (`2016-10-06T00:17:09.669794202Z`).
pub fn format_timestamp(ts: Timestamp) -> String {
    let mut out = Vec::with_capacity(30);
    push_timestamp(&mut out, ts);
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn parses_full_and_partial_records() {
        let r = parse_line(b"2016-10-06T00:17:09.669794202Z stdout F log content 2\n").unwrap();
        assert_eq!(
            r,
            LogRecord {
                timestamp: ts("2016-10-06T00:17:09.669794202Z"),
                stream: Stream::Stdout,
                partial: false,
                content: b"log content 2",
            }
        );
        let r = parse_line(b"2016-10-06T00:17:09.669794203Z stderr P part").unwrap();
        assert_eq!(r.stream, Stream::Stderr);
        assert!(r.partial);
        assert_eq!(r.content, b"part");
    }

    #[test]
    fn content_keeps_spaces_tabs_carriage_returns_and_bytes() {
        let r = parse_line(b"2024-01-01T00:00:00Z stdout F  two  spaces\tand tab\r\n").unwrap();
        assert_eq!(r.content, b" two  spaces\tand tab\r");
        let r = parse_line(b"2024-01-01T00:00:00Z stdout F \xff\xfe\x00\n").unwrap();
        assert_eq!(r.content, b"\xff\xfe\x00");
    }

    #[test]
    fn empty_content_after_the_tag_space() {
        let r = parse_line(b"2024-01-01T00:00:00Z stdout F \n").unwrap();
        assert_eq!(r.content, b"");
        assert!(!r.partial);
        assert_eq!(
            parse_line(b"2024-01-01T00:00:00Z stdout F\n"),
            Err(LogParseError::MissingTagEnd { found: "F".into() })
        );
    }

    #[test]
    fn extra_tags_after_a_colon_are_ignored() {
        let r = parse_line(b"2024-01-01T00:00:00Z stdout P:future:tags x").unwrap();
        assert!(r.partial);
        assert_eq!(r.content, b"x");
        let r = parse_line(b"2024-01-01T00:00:00Z stdout F: x").unwrap();
        assert!(!r.partial);
    }

    #[test]
    fn timestamps_with_offsets_and_any_fraction_width() {
        let cases = [
            ("2024-01-01T00:00:00Z", "2024-01-01T00:00:00Z"),
            ("2024-01-01T00:00:00.5Z", "2024-01-01T00:00:00.5Z"),
            (
                "2024-01-01T02:00:00.000000001+02:00",
                "2024-01-01T00:00:00.000000001Z",
            ),
            ("2023-12-31T23:30:00-00:30", "2024-01-01T00:00:00Z"),
            ("2024-02-29T12:00:00Z", "2024-02-29T12:00:00Z"),
        ];
        for (input, want) in cases {
            assert_eq!(parse_timestamp(input.as_bytes()), Ok(ts(want)), "{input}");
        }
    }

    #[test]
    fn malformed_timestamps_name_the_problem() {
        let bad = [
            ("", "expected"),
            ("2024-01-01", "expected"),
            ("2024-01-01 00:00:00Z", "expected"),
            ("2024-01-01t00:00:00Z", "expected"),
            ("2024-01-01T00:00:00", "time zone"),
            ("2024-01-01T00:00:00z", "time zone"),
            ("2024-01-01T00:00:00.Z", "fraction digits"),
            ("2024-01-01T00:00:00.1234567890Z", "nine"),
            ("2024-01-01T00:00:00Zjunk", "after the time zone"),
            ("2024-01-01T00:00:60Z", "leap"),
            ("2023-02-29T00:00:00Z", "out of range"),
            ("2024-13-01T00:00:00Z", "out of range"),
            ("2024-01-01T24:00:00Z", "out of range"),
            ("2024-01-01T00:00:00+24:00", "offset"),
            ("2024-01-01T00:00:00+0100", "expected"),
            ("+024-01-01T00:00:00Z", "expected"),
        ];
        for (input, want) in bad {
            let err = parse_timestamp(input.as_bytes()).unwrap_err();
            assert!(err.contains(want), "{input:?}: {err}");
        }
    }

    #[test]
    fn malformed_lines_name_the_field() {
        assert_eq!(parse_line(b""), Err(LogParseError::Empty));
        assert_eq!(parse_line(b"\n"), Err(LogParseError::Empty));
        assert_eq!(
            parse_line(b"garbage"),
            Err(LogParseError::MissingTimestampEnd {
                found: "garbage".into()
            })
        );
        assert!(matches!(
            parse_line(b"yesterday stdout F x"),
            Err(LogParseError::InvalidTimestamp { found, .. }) if found == "yesterday"
        ));
        assert_eq!(
            parse_line(b"2024-01-01T00:00:00Z stdout"),
            Err(LogParseError::MissingStreamEnd {
                found: "stdout".into()
            })
        );
        assert_eq!(
            parse_line(b"2024-01-01T00:00:00Z stdin F x"),
            Err(LogParseError::UnknownStream {
                found: "stdin".into()
            })
        );
        assert_eq!(
            parse_line(b"2024-01-01T00:00:00Z stdout X x"),
            Err(LogParseError::UnknownTag { found: "X".into() })
        );
        assert_eq!(
            parse_line(b"2024-01-01T00:00:00Z stdout  x"),
            Err(LogParseError::UnknownTag { found: "".into() })
        );
        let long = [b'a'; 500];
        let Err(LogParseError::MissingTimestampEnd { found }) = parse_line(&long) else {
            panic!("expected MissingTimestampEnd");
        };
        assert_eq!(found.len(), SNIPPET);
    }

    #[test]
    fn error_messages_are_readable() {
        let err = parse_line(b"2024-01-01T00:00:00Z stdin F x").unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown stream \"stdin\", expected stdout or stderr"
        );
        let err = parse_line(b"2024-01-01T00:00:00 stdout F x").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid timestamp \"2024-01-01T00:00:00\": missing the time zone (Z or an offset)"
        );
    }

    #[test]
    fn encode_then_parse_round_trips() {
        let record = LogRecord {
            timestamp: ts("2016-10-06T00:17:09.000000002Z"),
            stream: Stream::Stderr,
            partial: true,
            content: b"a b\tc\r",
        };
        let mut line = Vec::new();
        record.encode(&mut line);
        assert_eq!(line, b"2016-10-06T00:17:09.000000002Z stderr P a b\tc\r\n");
        assert_eq!(parse_line(&line), Ok(record));
    }

    #[test]
    fn timestamps_format_fixed_width_in_utc() {
        assert_eq!(
            format_timestamp(ts("2024-01-01T02:00:00+02:00")),
            "2024-01-01T00:00:00.000000000Z"
        );
        assert_eq!(
            format_timestamp(ts("0001-02-03T04:05:06.7Z")),
            "0001-02-03T04:05:06.700000000Z"
        );
    }

    /// xorshift64*: a small deterministic generator, so failures reproduce.
    pub(crate) struct Rng(u64);

    impl Rng {
        pub(crate) fn new(seed: u64) -> Self {
            Self(seed.max(1))
        }
        pub(crate) fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            self.0 = x;
            x.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        pub(crate) fn below(&mut self, n: u64) -> u64 {
            self.next() % n.max(1)
        }
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut rng = Rng::new(0x5eed);
        let alphabet = b"0123456789-T:.Z+ stdouterrPF\n\r\t:\xff";
        for _ in 0..20_000 {
            let len = rng.below(48) as usize;
            let line: Vec<u8> = (0..len)
                .map(|_| {
                    if rng.below(4) == 0 {
                        rng.next() as u8
                    } else {
                        alphabet[rng.below(alphabet.len() as u64) as usize]
                    }
                })
                .collect();
            let _ = parse_line(&line);
        }
    }

    #[test]
    fn mutated_valid_lines_never_panic_and_valid_ones_round_trip() {
        let mut rng = Rng::new(42);
        for _ in 0..20_000 {
            // Years 0000 to 9999, the range a four-digit year can write.
            let secs = rng.below(315_000_000_000) as i64 - 62_000_000_000;
            let record = LogRecord {
                timestamp: Timestamp::new(secs, rng.below(1_000_000_000) as i32).unwrap(),
                stream: if rng.below(2) == 0 {
                    Stream::Stdout
                } else {
                    Stream::Stderr
                },
                partial: rng.below(2) == 0,
                content: &b"some content\twith spaces\r"[..rng.below(26) as usize],
            };
            let mut line = Vec::new();
            record.encode(&mut line);
            assert_eq!(parse_line(&line), Ok(record));
            // Flip, drop or insert a byte somewhere and parse again.
            let at = rng.below(line.len() as u64) as usize;
            match rng.below(3) {
                0 => line[at] = rng.next() as u8,
                1 => {
                    line.remove(at);
                }
                _ => line.insert(at, rng.next() as u8),
            }
            let _ = parse_line(&line);
        }
    }
}
