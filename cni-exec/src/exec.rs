//! Running a CNI plugin binary, as libcni's `pkg/invoke` does.
//!
//! [`RuntimeArgs`] turns the runtime's parameters into the six `CNI_*` variables (pure,
//! validated as libcni validates). [`PluginExec`] is the side effect: find a binary on
//! the CNI path and run it with an environment and stdin. [`RawExec`] implements it with
//! `tokio::process`; tests and users can put a fake behind the trait.
//!
//! ```no_run
//! use cni_exec::exec::{ExecControl, PluginExec, RawExec, version};
//! use std::{path::PathBuf, time::Duration};
//!
//! # async fn demo() -> cni_exec::Result<()> {
//! let exec = RawExec::new();
//! let paths = [PathBuf::from("/usr/lib/cni")];
//! let ctl = ExecControl::new().with_timeout(Duration::from_secs(10));
//! let info = version(&exec, "bridge", &paths, &ctl).await?;
//! assert!(info.supported_versions.iter().any(|v| v == "1.0.0"));
//! # Ok(()) }
//! ```

// `Error` keeps its context inline (about 200 bytes) so callers can match on fields;
// errors are cold next to a process spawn, so the size lint is allowed here.
#![allow(clippy::result_large_err)]

use std::future::Future;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::{Error, ErrorCode, Result};

/// The default cap on a plugin's stdout: 16 MiB.
pub const DEFAULT_MAX_STDOUT: usize = 16 << 20;
/// The default cap on the stderr kept for errors and logs: 64 KiB (the rest is drained).
pub const DEFAULT_MAX_STDERR: usize = 64 << 10;
/// libcni retries a plugin that fails with "text file busy" up to 6 attempts in all.
pub const TEXT_FILE_BUSY_ATTEMPTS: u32 = 6;
/// libcni pauses 1 s between "text file busy" attempts.
pub const TEXT_FILE_BUSY_PAUSE: Duration = Duration::from_secs(1);

/// The spec version this crate speaks; sent on VERSION as libcni does.
pub const CURRENT_VERSION: &str = "1.1.0";

/// Deadline and cancellation for one plugin call.
///
/// The default has no deadline and a token that is never cancelled. When the deadline
/// passes or the token is cancelled, the plugin gets SIGKILL and is reaped.
#[derive(Debug, Clone, Default)]
pub struct ExecControl {
    deadline: Option<Instant>,
    cancel: CancellationToken,
}

impl ExecControl {
    /// No deadline, no cancellation.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the deadline to now plus `timeout`.
    #[must_use]
    pub fn with_timeout(self, timeout: Duration) -> Self {
        self.with_deadline(Instant::now() + timeout)
    }

    /// Sets an absolute deadline (shared, for example, by all plugins of a chain).
    #[must_use]
    pub fn with_deadline(mut self, deadline: Instant) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// Uses `token` for cancellation.
    #[must_use]
    pub fn with_cancel(mut self, token: CancellationToken) -> Self {
        self.cancel = token;
        self
    }

    /// The deadline, if any.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// The cancellation token.
    pub fn cancel_token(&self) -> &CancellationToken {
        &self.cancel
    }
}

/// Finding and running plugin binaries: the side effect behind every CNI call.
///
/// The counterpart of libcni's `invoke.Exec` (`FindInPath`, `ExecPlugin`).
#[async_trait]
pub trait PluginExec: Send + Sync {
    /// Finds `plugin` in `paths` (the runtime's CNI path list).
    fn find(&self, plugin: &str, paths: &[PathBuf]) -> Result<PathBuf>;

    /// Runs the binary at `path` with `env` laid over the parent environment (later
    /// entries win) and `stdin` on its standard input; returns its stdout on success.
    ///
    /// A non-zero exit becomes [`Error::Plugin`] (error JSON on stdout) or
    /// [`Error::PluginFailed`].
    async fn exec(
        &self,
        path: &Path,
        env: &[(String, String)],
        stdin: &[u8],
        ctl: &ExecControl,
    ) -> Result<Vec<u8>>;
}

/// libcni's `FindInPath`: the first `dir/plugin` that is a regular file (symlinks
/// followed). The execute bit is not checked.
pub fn find_in_path(plugin: &str, paths: &[PathBuf]) -> Result<PathBuf> {
    let invalid = |reason| Error::InvalidPluginName {
        plugin: plugin.to_string(),
        reason,
    };
    if plugin.is_empty() {
        return Err(invalid("no plugin name provided"));
    }
    if plugin.contains('/') {
        return Err(invalid("contains a path separator"));
    }
    if paths.is_empty() {
        return Err(invalid("no paths provided"));
    }
    for dir in paths {
        let full = dir.join(plugin);
        if std::fs::metadata(&full).is_ok_and(|m| m.is_file()) {
            return Ok(full);
        }
    }
    Err(Error::PluginNotFound {
        plugin: plugin.to_string(),
        paths: paths.to_vec(),
    })
}

/// The parameters of one plugin call, turned into the six `CNI_*` variables.
///
/// libcni's `invoke.Args`. All six variables are always set, even when empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuntimeArgs {
    /// `CNI_COMMAND`: `ADD`, `DEL`, `CHECK`, `STATUS`, `GC` or `VERSION`.
    pub command: String,
    /// `CNI_CONTAINERID`.
    pub container_id: String,
    /// `CNI_NETNS`, a path; optional for DEL.
    pub netns: Option<String>,
    /// `CNI_IFNAME`.
    pub ifname: String,
    /// `CNI_ARGS`, rendered as `K=V;K=V`.
    pub args: Vec<(String, String)>,
    /// `CNI_PATH`, joined with `:`.
    pub paths: Vec<PathBuf>,
}

impl RuntimeArgs {
    /// The environment overlay: `CNI_COMMAND`, `CNI_CONTAINERID`, `CNI_NETNS`,
    /// `CNI_IFNAME`, `CNI_ARGS`, `CNI_PATH`, in that order.
    pub fn to_env(&self) -> Vec<(String, String)> {
        let cni_args = self
            .args
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(";");
        let cni_path = self
            .paths
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(":");
        vec![
            ("CNI_COMMAND".into(), self.command.clone()),
            ("CNI_CONTAINERID".into(), self.container_id.clone()),
            ("CNI_NETNS".into(), self.netns.clone().unwrap_or_default()),
            ("CNI_IFNAME".into(), self.ifname.clone()),
            ("CNI_ARGS".into(), cni_args),
            ("CNI_PATH".into(), cni_path),
        ]
    }

    /// libcni's checks before ADD: the container ID and the interface name.
    pub fn validate(&self) -> Result<()> {
        validate_container_id(&self.container_id)?;
        validate_interface_name(&self.ifname)
    }
}

/// libcni's `ValidateContainerID`: not empty and `^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$`.
pub fn validate_container_id(id: &str) -> Result<()> {
    let bad = |reason: &str| Error::InvalidArgument {
        field: "container ID",
        reason: reason.to_string(),
    };
    let mut chars = id.chars();
    match chars.next() {
        None => return Err(bad("missing containerID")),
        Some(c) if !c.is_ascii_alphanumeric() => {
            return Err(bad("invalid characters in containerID"));
        }
        _ => {}
    }
    if chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')) {
        Ok(())
    } else {
        Err(bad("invalid characters in containerID"))
    }
}

/// libcni's `ValidateInterfaceName`: not empty, at most 15 bytes, not `.` or `..`, and
/// no `/`, `:` or whitespace.
pub fn validate_interface_name(name: &str) -> Result<()> {
    let bad = |reason: &str| {
        Err(Error::InvalidArgument {
            field: "interface name",
            reason: reason.to_string(),
        })
    };
    if name.is_empty() {
        return bad("interface name is empty");
    }
    if name.len() > 15 {
        return bad("interface name is too long");
    }
    if name == "." || name == ".." {
        return bad("interface name is . or ..");
    }
    if name
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace())
    {
        return bad("interface name contains / or : or whitespace characters");
    }
    Ok(())
}

/// Runs plugins with `tokio::process`, as libcni's `RawExec`.
///
/// Defaults: stdout capped at [`DEFAULT_MAX_STDOUT`], stderr kept up to
/// [`DEFAULT_MAX_STDERR`], no timeout of its own (libcni has none either; pass one in
/// [`ExecControl`] or set [`RawExec::timeout`]), and "text file busy" retried
/// [`TEXT_FILE_BUSY_ATTEMPTS`] times with [`TEXT_FILE_BUSY_PAUSE`] between attempts.
#[derive(Debug, Clone)]
pub struct RawExec {
    max_stdout: usize,
    max_stderr: usize,
    timeout: Option<Duration>,
    busy_attempts: u32,
    busy_pause: Duration,
}

impl Default for RawExec {
    fn default() -> Self {
        Self {
            max_stdout: DEFAULT_MAX_STDOUT,
            max_stderr: DEFAULT_MAX_STDERR,
            timeout: None,
            busy_attempts: TEXT_FILE_BUSY_ATTEMPTS,
            busy_pause: TEXT_FILE_BUSY_PAUSE,
        }
    }
}

impl RawExec {
    /// The defaults described on the type.
    pub fn new() -> Self {
        Self::default()
    }

    /// Caps the plugin's stdout; beyond it the plugin is killed with
    /// [`Error::OutputTooLarge`].
    #[must_use]
    pub fn max_stdout(mut self, bytes: usize) -> Self {
        self.max_stdout = bytes;
        self
    }

    /// How much stderr to keep for errors and logs.
    #[must_use]
    pub fn max_stderr(mut self, bytes: usize) -> Self {
        self.max_stderr = bytes;
        self
    }

    /// A timeout applied to every call, on top of the caller's deadline (the earlier wins).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// How many attempts in all on "text file busy" (at least 1), and the pause between.
    #[must_use]
    pub fn text_file_busy_retry(mut self, attempts: u32, pause: Duration) -> Self {
        self.busy_attempts = attempts.max(1);
        self.busy_pause = pause;
        self
    }

    async fn run_once(
        &self,
        ctx: &CallCtx<'_>,
        env: &[(String, String)],
        stdin: &[u8],
        ctl: &ExecControl,
        deadline: Option<Instant>,
    ) -> Result<Vec<u8>, Attempt> {
        let mut cmd = Command::new(ctx.path);
        cmd.envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(Attempt::Spawn)?;
        let child_stdin = child.stdin.take();
        let child_stdout = child.stdout.take();
        let child_stderr = child.stderr.take();
        let (max_out, max_err) = (self.max_stdout, self.max_stderr);

        let outcome = {
            let work = async {
                let feed = async move {
                    if let Some(mut w) = child_stdin {
                        // A plugin may exit without reading stdin: EPIPE is not our error.
                        let _ = w.write_all(stdin).await;
                    }
                    Ok::<_, Fail>(())
                };
                let out = async move {
                    let (buf, over) = read_capped(child_stdout, max_out, true).await?;
                    if over {
                        return Err(Fail::TooLarge);
                    }
                    Ok(buf)
                };
                let err = async move { Ok(read_capped(child_stderr, max_err, false).await?.0) };
                let ((), out, err) = tokio::try_join!(feed, out, err)?;
                let status = child.wait().await?;
                Ok::<_, Fail>((status, out, err))
            };
            tokio::select! {
                r = work => Outcome::Done(r),
                () = sleep_until_opt(deadline) => Outcome::Timeout,
                () = ctl.cancel.cancelled() => Outcome::Cancelled,
            }
        };

        let done = match outcome {
            Outcome::Done(Ok(done)) => done,
            other => {
                // Kill and reap before reporting, so no zombie or stray plugin remains.
                let _ = child.start_kill();
                let _ = child.wait().await;
                return Err(Attempt::Final(match other {
                    Outcome::Timeout => ctx.err_timeout(),
                    Outcome::Cancelled => ctx.err_cancelled(),
                    Outcome::Done(Err(Fail::TooLarge)) => ctx.err_too_large(max_out),
                    Outcome::Done(Err(Fail::Io(e))) => ctx.err_io(e),
                    Outcome::Done(Ok(_)) => unreachable!("handled above"),
                }));
            }
        };
        let (status, stdout, stderr) = done;
        let stderr = String::from_utf8_lossy(&stderr).into_owned();
        if status.success() {
            if !stderr.is_empty() {
                tracing::debug!(plugin = %ctx.plugin, verb = %ctx.verb, %stderr, "plugin stderr");
            }
            return Ok(stdout);
        }
        Err(Attempt::Final(plugin_error(ctx, status, stdout, stderr)))
    }
}

#[async_trait]
impl PluginExec for RawExec {
    fn find(&self, plugin: &str, paths: &[PathBuf]) -> Result<PathBuf> {
        find_in_path(plugin, paths)
    }

    async fn exec(
        &self,
        path: &Path,
        env: &[(String, String)],
        stdin: &[u8],
        ctl: &ExecControl,
    ) -> Result<Vec<u8>> {
        let ctx = CallCtx::new(path, env);
        let own = self.timeout.map(|t| Instant::now() + t);
        let deadline = match (ctl.deadline, own) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let r = retry_text_file_busy(self.busy_attempts, || async {
            match self.run_once(&ctx, env, stdin, ctl, deadline).await {
                Err(Attempt::Spawn(e)) if e.kind() == io::ErrorKind::ExecutableFileBusy => {
                    tracing::debug!(plugin = %ctx.plugin, "text file busy; retrying");
                    let pause = async {
                        tokio::select! {
                            () = tokio::time::sleep(self.busy_pause) => Ok(()),
                            () = sleep_until_opt(deadline) => Err(ctx.err_timeout()),
                            () = ctl.cancel.cancelled() => Err(ctx.err_cancelled()),
                        }
                    };
                    Busy::Retry(e, Box::pin(pause))
                }
                Err(Attempt::Spawn(e)) => Busy::Done(Err(ctx.err_io(e))),
                Err(Attempt::Final(e)) => Busy::Done(Err(e)),
                Ok(out) => Busy::Done(Ok(out)),
            }
        })
        .await;
        r.unwrap_or_else(|e| Err(ctx.err_io(e)))
    }
}

type PauseFuture<'a> = std::pin::Pin<Box<dyn Future<Output = Result<()>> + Send + 'a>>;

/// One attempt's verdict for [`retry_text_file_busy`].
enum Busy<'a, T> {
    /// "text file busy": wait on the pause (which may fail) and try again.
    Retry(io::Error, PauseFuture<'a>),
    /// Final answer.
    Done(T),
}

/// Runs `attempt` up to `attempts` times while it answers [`Busy::Retry`]; returns the
/// last busy error when they are exhausted.
async fn retry_text_file_busy<'a, F, Fut>(
    attempts: u32,
    mut attempt: F,
) -> Result<Result<Vec<u8>>, io::Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Busy<'a, Result<Vec<u8>>>>,
{
    let mut n = 0;
    loop {
        n += 1;
        match attempt().await {
            Busy::Done(t) => return Ok(t),
            Busy::Retry(e, _) if n >= attempts => return Err(e),
            Busy::Retry(_, pause) => {
                if let Err(e) = pause.await {
                    return Ok(Err(e));
                }
            }
        }
    }
}

enum Attempt {
    Spawn(io::Error),
    Final(Error),
}

enum Fail {
    Io(io::Error),
    TooLarge,
}

impl From<io::Error> for Fail {
    fn from(e: io::Error) -> Self {
        Fail::Io(e)
    }
}

enum Outcome<T> {
    Done(std::result::Result<T, Fail>),
    Timeout,
    Cancelled,
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Reads to EOF keeping at most `limit` bytes. With `stop`, returns as soon as more than
/// `limit` bytes arrive (second value true); without, drains the rest.
async fn read_capped<R: AsyncRead + Unpin>(
    r: Option<R>,
    limit: usize,
    stop: bool,
) -> io::Result<(Vec<u8>, bool)> {
    let Some(mut r) = r else {
        return Ok((Vec::new(), false));
    };
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 16 << 10];
    let mut over = false;
    loop {
        let n = r.read(&mut chunk).await?;
        if n == 0 {
            return Ok((buf, over));
        }
        let room = limit.saturating_sub(buf.len());
        buf.extend_from_slice(&chunk[..n.min(room)]);
        if n > room {
            over = true;
            if stop {
                return Ok((buf, true));
            }
        }
    }
}

/// Who ran and how, for error context.
struct CallCtx<'a> {
    path: &'a Path,
    plugin: String,
    verb: String,
}

impl<'a> CallCtx<'a> {
    fn new(path: &'a Path, env: &[(String, String)]) -> Self {
        let plugin = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let verb = env
            .iter()
            .rev()
            .find(|(k, _)| k == "CNI_COMMAND")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        Self { path, plugin, verb }
    }
    fn err_timeout(&self) -> Error {
        Error::Timeout {
            plugin: self.plugin.clone(),
            path: self.path.to_path_buf(),
            verb: self.verb.clone(),
        }
    }
    fn err_cancelled(&self) -> Error {
        Error::Cancelled {
            plugin: self.plugin.clone(),
            path: self.path.to_path_buf(),
            verb: self.verb.clone(),
        }
    }
    fn err_too_large(&self, limit: usize) -> Error {
        Error::OutputTooLarge {
            plugin: self.plugin.clone(),
            path: self.path.to_path_buf(),
            verb: self.verb.clone(),
            limit,
        }
    }
    fn err_io(&self, source: io::Error) -> Error {
        Error::Io {
            path: self.path.to_path_buf(),
            source,
        }
    }
    fn err_output(&self, stdout: &[u8], source: serde_json::Error) -> Error {
        Error::InvalidOutput {
            plugin: self.plugin.clone(),
            path: self.path.to_path_buf(),
            verb: self.verb.clone(),
            stdout: stdout[..stdout.len().min(4096)].to_vec(),
            source,
        }
    }
}

/// The error JSON a failing plugin prints (libcni `types.Error`).
#[derive(Deserialize)]
struct ErrorJson {
    #[serde(default)]
    code: u32,
    #[serde(default)]
    msg: String,
    #[serde(default)]
    details: String,
}

/// Go's `*exec.ExitError` text: `exit status N` or `signal: killed`.
fn go_exit_text(status: ExitStatus) -> String {
    if let Some(code) = status.code() {
        return format!("exit status {code}");
    }
    match status.signal() {
        Some(sig) => {
            let name = match sig {
                1 => "hangup".to_string(),
                2 => "interrupt".to_string(),
                3 => "quit".to_string(),
                6 => "aborted".to_string(),
                9 => "killed".to_string(),
                11 => "segmentation fault".to_string(),
                13 => "broken pipe".to_string(),
                15 => "terminated".to_string(),
                n => format!("signal {n}"),
            };
            format!("signal: {name}")
        }
        None => status.to_string(),
    }
}

/// libcni's `pluginErr`: the error JSON from stdout, or its texts for a plugin that
/// failed without one.
fn plugin_error(ctx: &CallCtx<'_>, status: ExitStatus, stdout: Vec<u8>, stderr: String) -> Error {
    let exit = go_exit_text(status);
    let msg = if stdout.is_empty() {
        if stderr.is_empty() {
            format!("netplugin failed with no error message: {exit}")
        } else {
            format!("netplugin failed: {stderr:?}: {exit}")
        }
    } else {
        match serde_json::from_slice::<ErrorJson>(&stdout) {
            Ok(e) => {
                return Error::Plugin {
                    network: None,
                    plugin: ctx.plugin.clone(),
                    path: ctx.path.to_path_buf(),
                    verb: ctx.verb.clone(),
                    code: ErrorCode::from(e.code),
                    msg: e.msg,
                    details: e.details,
                    stderr,
                };
            }
            Err(perr) => format!(
                "netplugin failed but error parsing its diagnostic message {:?}: {perr}",
                String::from_utf8_lossy(&stdout)
            ),
        }
    };
    Error::PluginFailed {
        network: None,
        plugin: ctx.plugin.clone(),
        path: ctx.path.to_path_buf(),
        verb: ctx.verb.clone(),
        status,
        msg,
        stdout,
        stderr,
    }
}

/// Runs `path` with `args` and `stdin`, and parses a non-empty stdout as JSON.
///
/// Returns `None` when the plugin printed nothing (DEL, CHECK, STATUS, GC), and
/// [`Error::InvalidOutput`] when it printed something that is not JSON.
pub async fn exec_plugin(
    exec: &dyn PluginExec,
    path: &Path,
    args: &RuntimeArgs,
    stdin: &[u8],
    ctl: &ExecControl,
) -> Result<Option<serde_json::Value>> {
    let env = args.to_env();
    let out = exec.exec(path, &env, stdin, ctl).await?;
    if out.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice(&out)
        .map(Some)
        .map_err(|e| CallCtx::new(path, &env).err_output(&out, e))
}

/// A plugin's answer to VERSION.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct VersionInfo {
    /// The `cniVersion` of the answer.
    #[serde(rename = "cniVersion", default)]
    pub cni_version: String,
    /// The spec versions the plugin supports.
    #[serde(rename = "supportedVersions", default)]
    pub supported_versions: Vec<String>,
}

impl VersionInfo {
    /// Whether `version` is in `supportedVersions` (an exact string match, as libcni).
    pub fn supports(&self, version: &str) -> bool {
        self.supported_versions.iter().any(|v| v == version)
    }
}

/// libcni's `GetVersionInfo`: finds `plugin` in `paths` and runs VERSION with stdin
/// `{"cniVersion":"1.1.0"}` and `CNI_NETNS`, `CNI_IFNAME`, `CNI_PATH` set to `dummy`
/// (for plugins built on an old skel).
///
/// A plugin that answers `unknown CNI_COMMAND: VERSION` is taken to support only 0.1.0;
/// an answer `cniVersion` 0.2.0 without `supportedVersions` means 0.1.0 and 0.2.0.
pub async fn version(
    exec: &dyn PluginExec,
    plugin: &str,
    paths: &[PathBuf],
    ctl: &ExecControl,
) -> Result<VersionInfo> {
    let path = exec.find(plugin, paths)?;
    let args = RuntimeArgs {
        command: "VERSION".into(),
        netns: Some("dummy".into()),
        ifname: "dummy".into(),
        paths: vec![PathBuf::from("dummy")],
        ..RuntimeArgs::default()
    };
    let env = args.to_env();
    let stdin = format!(r#"{{"cniVersion":"{CURRENT_VERSION}"}}"#);
    let out = match exec.exec(&path, &env, stdin.as_bytes(), ctl).await {
        Ok(out) => out,
        Err(Error::Plugin { msg, details, .. })
            if msg == "unknown CNI_COMMAND: VERSION" && details.is_empty() =>
        {
            return Ok(VersionInfo {
                cni_version: "0.1.0".into(),
                supported_versions: vec!["0.1.0".into()],
            });
        }
        Err(e) => return Err(e),
    };
    let ctx = CallCtx::new(&path, &env);
    let mut info: VersionInfo =
        serde_json::from_slice(&out).map_err(|e| ctx.err_output(&out, e))?;
    if info.supported_versions.is_empty() {
        if info.cni_version == "0.2.0" {
            info.supported_versions = vec!["0.1.0".into(), "0.2.0".into()];
        } else {
            let e = <serde_json::Error as serde::de::Error>::custom(
                "decoding version info: missing field supportedVersions",
            );
            return Err(ctx.err_output(&out, e));
        }
    }
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_has_all_six_in_order() {
        let a = RuntimeArgs {
            command: "ADD".into(),
            container_id: "abc".into(),
            netns: Some("/var/run/netns/x".into()),
            ifname: "eth0".into(),
            args: vec![
                ("IgnoreUnknown".into(), "1".into()),
                ("K8S_POD_NAME".into(), "p".into()),
            ],
            paths: vec!["/opt/cni/bin".into(), "/usr/lib/cni".into()],
        };
        let env = a.to_env();
        let want: Vec<(String, String)> = [
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "abc"),
            ("CNI_NETNS", "/var/run/netns/x"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_ARGS", "IgnoreUnknown=1;K8S_POD_NAME=p"),
            ("CNI_PATH", "/opt/cni/bin:/usr/lib/cni"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(env, want);

        let empty = RuntimeArgs::default().to_env();
        assert_eq!(empty.len(), 6);
        assert!(empty.iter().all(|(_, v)| v.is_empty()));
    }

    #[test]
    fn container_id_validation() {
        for ok in ["a", "0abc", "a_b.c-d", "54d91ca7e3"] {
            assert!(validate_container_id(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", "_a", ".a", "a/b", "a b", "a:b", "é"] {
            assert!(validate_container_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn interface_name_validation() {
        for ok in ["eth0", "lo", "123456789012345", "a.b", "..."] {
            assert!(validate_interface_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "1234567890123456",
            "a/b",
            "a:b",
            "a b",
            "a\tb",
        ] {
            assert!(validate_interface_name(bad).is_err(), "{bad:?}");
        }
        let args = RuntimeArgs {
            container_id: "c1".into(),
            ifname: "eth0".into(),
            ..Default::default()
        };
        assert!(args.validate().is_ok());
    }

    #[test]
    fn find_in_path_rules() {
        let d1 = tempfile::tempdir().unwrap();
        let d2 = tempfile::tempdir().unwrap();
        // A directory with the plugin's name is skipped; the execute bit is not checked.
        std::fs::create_dir(d1.path().join("p")).unwrap();
        std::fs::write(d2.path().join("p"), "not executable").unwrap();
        let paths = vec![d1.path().to_path_buf(), d2.path().to_path_buf()];
        assert_eq!(find_in_path("p", &paths).unwrap(), d2.path().join("p"));
        assert!(matches!(
            find_in_path("q", &paths),
            Err(Error::PluginNotFound { .. })
        ));
        assert!(matches!(
            find_in_path("", &paths),
            Err(Error::InvalidPluginName { .. })
        ));
        assert!(matches!(
            find_in_path("a/p", &paths),
            Err(Error::InvalidPluginName { .. })
        ));
        assert!(matches!(
            find_in_path("p", &[]),
            Err(Error::InvalidPluginName { .. })
        ));
    }

    #[test]
    fn exit_texts_match_go() {
        assert_eq!(go_exit_text(ExitStatus::from_raw(3 << 8)), "exit status 3");
        assert_eq!(go_exit_text(ExitStatus::from_raw(9)), "signal: killed");
    }

    /// A fake executor answering every call with a canned result, recording the env.
    struct Canned {
        answer: fn() -> Result<Vec<u8>>,
        seen: std::sync::Mutex<Vec<(String, String)>>,
    }

    #[async_trait]
    impl PluginExec for Canned {
        fn find(&self, plugin: &str, _paths: &[PathBuf]) -> Result<PathBuf> {
            Ok(PathBuf::from("/fake").join(plugin))
        }
        async fn exec(
            &self,
            _path: &Path,
            env: &[(String, String)],
            _stdin: &[u8],
            _ctl: &ExecControl,
        ) -> Result<Vec<u8>> {
            *self.seen.lock().unwrap() = env.to_vec();
            (self.answer)()
        }
    }

    async fn version_with(answer: fn() -> Result<Vec<u8>>) -> Result<VersionInfo> {
        let fake = Canned {
            answer,
            seen: Default::default(),
        };
        let r = version(&fake, "p", &[], &ExecControl::new()).await;
        let seen = fake.seen.lock().unwrap().clone();
        assert!(seen.contains(&("CNI_COMMAND".into(), "VERSION".into())));
        r
    }

    fn plugin_err(msg: &str, details: &str) -> Error {
        Error::Plugin {
            network: None,
            plugin: "p".into(),
            path: "/fake/p".into(),
            verb: "VERSION".into(),
            code: ErrorCode::InvalidEnvironmentVariables,
            msg: msg.into(),
            details: details.into(),
            stderr: String::new(),
        }
    }

    #[tokio::test]
    async fn version_decoding_through_a_fake() {
        let v = version_with(|| {
            Ok(br#"{"cniVersion":"1.0.0","supportedVersions":["0.4.0","1.0.0"]}"#.to_vec())
        })
        .await
        .unwrap();
        assert!(v.supports("1.0.0") && !v.supports("1.1.0"));

        let v = version_with(|| Ok(br#"{"cniVersion":"0.2.0"}"#.to_vec()))
            .await
            .unwrap();
        assert_eq!(v.supported_versions, ["0.1.0", "0.2.0"]);

        let e = version_with(|| Ok(br#"{"cniVersion":"0.3.0"}"#.to_vec()))
            .await
            .unwrap_err();
        assert!(matches!(e, Error::InvalidOutput { .. }), "{e:?}");

        let e = version_with(|| Ok(b"garbage".to_vec())).await.unwrap_err();
        assert!(matches!(e, Error::InvalidOutput { .. }), "{e:?}");

        let v = version_with(|| Err(plugin_err("unknown CNI_COMMAND: VERSION", "")))
            .await
            .unwrap();
        assert_eq!(v.supported_versions, ["0.1.0"]);

        // libcni compares the whole error text, details included.
        let e = version_with(|| Err(plugin_err("unknown CNI_COMMAND: VERSION", "x")))
            .await
            .unwrap_err();
        assert!(matches!(e, Error::Plugin { .. }));
    }

    #[tokio::test]
    async fn exec_plugin_empty_and_whitespace_stdout_is_none() {
        for answer in [(|| Ok(Vec::new())) as fn() -> Result<Vec<u8>>, || {
            Ok(b" \n".to_vec())
        }] {
            let fake = Canned {
                answer,
                seen: Default::default(),
            };
            let args = RuntimeArgs {
                command: "DEL".into(),
                ..Default::default()
            };
            let r = exec_plugin(
                &fake,
                Path::new("/fake/p"),
                &args,
                b"{}",
                &ExecControl::new(),
            )
            .await
            .unwrap();
            assert_eq!(r, None);
            assert_eq!(fake.seen.lock().unwrap().len(), 6);
        }
    }

    fn busy() -> io::Error {
        io::Error::from(io::ErrorKind::ExecutableFileBusy)
    }

    #[tokio::test]
    async fn retry_gives_up_after_attempts() {
        let mut calls = 0;
        let r: Result<Result<Vec<u8>>, io::Error> = retry_text_file_busy(6, || {
            calls += 1;
            async { Busy::Retry(busy(), Box::pin(async { Ok(()) })) }
        })
        .await;
        assert_eq!(calls, 6);
        assert_eq!(r.unwrap_err().kind(), io::ErrorKind::ExecutableFileBusy);
    }

    #[tokio::test]
    async fn retry_succeeds_after_busy() {
        let mut calls = 0;
        let r: Result<Result<Vec<u8>>, io::Error> = retry_text_file_busy(6, || {
            calls += 1;
            let n = calls;
            async move {
                if n < 3 {
                    Busy::Retry(busy(), Box::pin(async { Ok(()) }))
                } else {
                    Busy::Done(Ok(b"ok".to_vec()))
                }
            }
        })
        .await;
        assert_eq!(calls, 3);
        assert_eq!(r.unwrap().unwrap(), b"ok");
    }

    #[tokio::test]
    async fn retry_pause_can_end_the_call() {
        let r: Result<Result<Vec<u8>>, io::Error> = retry_text_file_busy(6, || async {
            Busy::Retry(
                busy(),
                Box::pin(async {
                    Err(Error::Cancelled {
                        plugin: "p".into(),
                        path: "/p".into(),
                        verb: "ADD".into(),
                    })
                }),
            )
        })
        .await;
        assert!(matches!(r.unwrap(), Err(Error::Cancelled { .. })));
    }
}
