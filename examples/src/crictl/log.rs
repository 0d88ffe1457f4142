//! Log lines on stderr in the format of logrus's text formatter, which crictl
//! uses: `LEVL[0000] message` on a terminal (seconds since start), and
//! `time="..." level=... msg="..."` otherwise.

use std::io::{IsTerminal, Write};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// A logrus level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Level {
    /// `DEBU` / `debug`, shown with `--debug` only.
    Debug,
    /// `INFO` / `info`.
    Info,
    /// `WARN` / `warning`.
    Warn,
    /// `ERRO` / `error`.
    Error,
    /// `FATA` / `fatal`: the command failed.
    Fatal,
}

impl Level {
    fn short(self) -> &'static str {
        match self {
            Level::Debug => "DEBU",
            Level::Info => "INFO",
            Level::Warn => "WARN",
            Level::Error => "ERRO",
            Level::Fatal => "FATA",
        }
    }

    fn long(self) -> &'static str {
        match self {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warning",
            Level::Error => "error",
            Level::Fatal => "fatal",
        }
    }
}

static START: OnceLock<Instant> = OnceLock::new();
static DEBUG: AtomicBool = AtomicBool::new(false);

/// Starts the clock of the `[0000]` column; call first thing in `main`.
pub(crate) fn init() {
    START.get_or_init(Instant::now);
}

/// Turns debug lines on or off (`--debug` or `debug: true` in the config).
pub(crate) fn set_debug(on: bool) {
    DEBUG.store(on, Ordering::Relaxed);
}

/// Whether debug lines are shown.
pub(crate) fn debug_enabled() -> bool {
    DEBUG.load(Ordering::Relaxed)
}

/// Writes one log line to stderr.
pub(crate) fn log(level: Level, message: &str) {
    if level == Level::Debug && !debug_enabled() {
        return;
    }
    let elapsed = START.get_or_init(Instant::now).elapsed().as_secs();
    let line = if std::io::stderr().is_terminal() {
        terminal_line(level, elapsed, message)
    } else {
        let now = jiff::Zoned::now();
        let offset = now.offset().seconds();
        let time = if offset == 0 {
            now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
        } else {
            now.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string()
        };
        plain_line(level, &time, message)
    };
    let _ = std::io::stderr().write_all(line.as_bytes());
}

/// `DEBU[0000] ...` (only with `--debug`).
pub(crate) fn debug(message: &str) {
    log(Level::Debug, message);
}

/// `INFO[0000] ...`.
pub(crate) fn info(message: &str) {
    log(Level::Info, message);
}

/// `WARN[0000] ...`.
pub(crate) fn warn(message: &str) {
    log(Level::Warn, message);
}

/// `ERRO[0000] ...`.
pub(crate) fn error(message: &str) {
    log(Level::Error, message);
}

/// `FATA[0000] ...`; the caller exits with status 1.
pub(crate) fn fatal(message: &str) {
    log(Level::Fatal, message);
}

fn terminal_line(level: Level, elapsed_secs: u64, message: &str) -> String {
    format!("{}[{elapsed_secs:04}] {message}\n", level.short())
}

fn plain_line(level: Level, time: &str, message: &str) -> String {
    format!(
        "time=\"{time}\" level={} msg={}\n",
        level.long(),
        quote_if_needed(message)
    )
}

/// logrus quotes a value unless it is only letters, digits and `-._/@^+`.
fn quote_if_needed(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._/@^+".contains(c));
    if plain {
        return text.to_owned();
    }
    go_quote(text)
}

/// Go's `strconv.Quote`: double quotes, with `\"`, `\\` and control
/// characters escaped.
pub(crate) fn go_quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let code = u32::from(c);
                if code < 0x100 {
                    out.push_str(&format!("\\x{code:02x}"));
                } else {
                    out.push_str(&format!("\\u{code:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_lines_show_level_and_seconds() {
        assert_eq!(
            terminal_line(Level::Fatal, 2, "run pod sandbox: boom"),
            "FATA[0002] run pod sandbox: boom\n"
        );
        assert_eq!(terminal_line(Level::Warn, 0, "w"), "WARN[0000] w\n");
    }

    #[test]
    fn plain_lines_quote_messages_like_logrus() {
        assert_eq!(
            plain_line(
                Level::Fatal,
                "2024-01-02T03:04:05Z",
                "load config file: \"x\" bad"
            ),
            "time=\"2024-01-02T03:04:05Z\" level=fatal msg=\"load config file: \\\"x\\\" bad\"\n"
        );
        assert_eq!(
            plain_line(Level::Info, "t", "plain-word"),
            "time=\"t\" level=info msg=plain-word\n"
        );
        assert_eq!(
            plain_line(Level::Warn, "t", ""),
            "time=\"t\" level=warning msg=\"\"\n"
        );
    }

    #[test]
    fn go_quote_escapes_controls() {
        assert_eq!(go_quote("a\tb\u{1}"), "\"a\\tb\\x01\"");
    }
}
