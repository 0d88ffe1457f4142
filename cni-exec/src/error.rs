//! The crate's error type.

use std::io;
use std::path::PathBuf;
use std::process::ExitStatus;

use crate::ErrorCode;

/// A boxed error used as the source of cache errors.
type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while finding, running or caching CNI plugins.
///
/// Messages are lowercase and never repeat their source; walk
/// [`std::error::Error::source`] for the cause.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The plugin exited non-zero and printed an error JSON on stdout
    /// (`{"cniVersion", "code", "msg", "details"}`).
    #[error("plugin type={plugin:?}{} failed ({verb}): {}", net_suffix(.network), join_msg(.msg, .details))]
    Plugin {
        /// The network (conflist) name, when the caller knows it.
        network: Option<String>,
        /// The plugin type (the binary's file name).
        plugin: String,
        /// The binary that ran.
        path: PathBuf,
        /// The CNI_COMMAND it ran with.
        verb: String,
        /// The error code from the JSON.
        code: ErrorCode,
        /// The `msg` from the JSON.
        msg: String,
        /// The `details` from the JSON (empty when absent).
        details: String,
        /// What the plugin wrote on stderr (capped).
        stderr: String,
    },

    /// The plugin exited non-zero without an error JSON that could be parsed.
    ///
    /// `msg` is libcni's text: `netplugin failed with no error message: <exit>`,
    /// `netplugin failed: "<stderr>": <exit>` or
    /// `netplugin failed but error parsing its diagnostic message "<stdout>": <err>`.
    #[error("plugin type={plugin:?}{} failed ({verb}): {msg}", net_suffix(.network))]
    PluginFailed {
        /// The network (conflist) name, when the caller knows it.
        network: Option<String>,
        /// The plugin type (the binary's file name).
        plugin: String,
        /// The binary that ran.
        path: PathBuf,
        /// The CNI_COMMAND it ran with.
        verb: String,
        /// How the process ended.
        status: ExitStatus,
        /// libcni's message for this failure.
        msg: String,
        /// What the plugin wrote on stdout (capped).
        stdout: Vec<u8>,
        /// What the plugin wrote on stderr (capped).
        stderr: String,
    },

    /// The call's deadline passed; the plugin was killed (SIGKILL) and reaped.
    #[error("plugin type={plugin:?} timed out ({verb}); killed")]
    Timeout {
        /// The plugin type (the binary's file name).
        plugin: String,
        /// The binary that ran.
        path: PathBuf,
        /// The CNI_COMMAND it ran with.
        verb: String,
    },

    /// The call was cancelled; the plugin was killed (SIGKILL) and reaped.
    #[error("plugin type={plugin:?} cancelled ({verb}); killed")]
    Cancelled {
        /// The plugin type (the binary's file name).
        plugin: String,
        /// The binary that ran.
        path: PathBuf,
        /// The CNI_COMMAND it ran with.
        verb: String,
    },

    /// No regular file named `plugin` in any of the search paths.
    #[error("failed to find plugin {plugin:?} in path {paths:?}")]
    PluginNotFound {
        /// The plugin type looked for.
        plugin: String,
        /// The directories searched, in order.
        paths: Vec<PathBuf>,
    },

    /// The plugin name is empty or contains a path separator, or no paths were given.
    #[error("invalid plugin name {plugin:?}: {reason}")]
    InvalidPluginName {
        /// The name as given.
        plugin: String,
        /// Why it was refused.
        reason: &'static str,
    },

    /// A runtime argument (container ID, interface name, ...) failed libcni's validation.
    #[error("invalid {field}: {reason}")]
    InvalidArgument {
        /// Which argument.
        field: &'static str,
        /// Why it was refused.
        reason: String,
    },

    /// The plugin wrote more than `limit` bytes on stdout; it was killed.
    #[error("plugin type={plugin:?} ({verb}) wrote more than {limit} bytes on stdout; killed")]
    OutputTooLarge {
        /// The plugin type (the binary's file name).
        plugin: String,
        /// The binary that ran.
        path: PathBuf,
        /// The CNI_COMMAND it ran with.
        verb: String,
        /// The configured stdout cap in bytes.
        limit: usize,
    },

    /// The plugin succeeded but its stdout is not the JSON expected.
    #[error("plugin type={plugin:?} ({verb}) wrote invalid output")]
    InvalidOutput {
        /// The plugin type (the binary's file name).
        plugin: String,
        /// The binary that ran.
        path: PathBuf,
        /// The CNI_COMMAND it ran with.
        verb: String,
        /// What it wrote (capped).
        stdout: Vec<u8>,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },

    /// Spawning or talking to the plugin process failed.
    #[error("i/o error running {path:?}")]
    Io {
        /// The binary.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },

    /// Reading, writing or decoding a cache file failed.
    #[error("cache {op} {path:?}")]
    Cache {
        /// The file or directory.
        path: PathBuf,
        /// What was being done (`read`, `write`, `decode`, ...).
        op: &'static str,
        /// The cause.
        #[source]
        source: BoxError,
    },
}

fn net_suffix(network: &Option<String>) -> String {
    match network {
        Some(n) => format!(" name={n:?}"),
        None => String::new(),
    }
}

/// libcni's `types.Error.Error()`: `msg`, or `msg; details`.
fn join_msg(msg: &str, details: &str) -> String {
    if details.is_empty() {
        msg.to_string()
    } else {
        format!("{msg}; {details}")
    }
}

impl Error {
    /// The CNI error code, for errors that carry the plugin's error JSON.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Error::Plugin { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// Whether the plugin asked to be retried later (code 11, "try again later").
    pub fn is_transient(&self) -> bool {
        self.code().is_some_and(ErrorCode::is_transient)
    }

    /// Whether the error means "nothing there": the plugin binary is missing, the plugin
    /// answered code 3 (container unknown, no cleanup needed), or a cache file is missing.
    ///
    /// containerd (go-cni `Remove`) tolerates such errors on DEL.
    pub fn is_not_found_like(&self) -> bool {
        match self {
            Error::PluginNotFound { .. } => true,
            Error::Plugin { code, .. } => *code == ErrorCode::UnknownContainer,
            Error::Cache { source, .. } => source
                .downcast_ref::<io::Error>()
                .is_some_and(|e| e.kind() == io::ErrorKind::NotFound),
            _ => false,
        }
    }

    /// Sets the network (conflist) name on errors that carry one; others are unchanged.
    #[must_use]
    pub fn with_network(mut self, name: impl Into<String>) -> Self {
        if let Error::Plugin { network, .. } | Error::PluginFailed { network, .. } = &mut self {
            *network = Some(name.into());
        }
        self
    }

    pub(crate) fn cache(
        path: impl Into<PathBuf>,
        op: &'static str,
        source: impl Into<BoxError>,
    ) -> Self {
        Error::Cache {
            path: path.into(),
            op,
            source: source.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    fn plugin(code: u32, details: &str) -> Error {
        Error::Plugin {
            network: None,
            plugin: "bridge".into(),
            path: "/usr/lib/cni/bridge".into(),
            verb: "ADD".into(),
            code: ErrorCode::from(code),
            msg: "boom".into(),
            details: details.into(),
            stderr: String::new(),
        }
    }

    #[test]
    fn helpers() {
        assert!(plugin(11, "").is_transient());
        assert!(!plugin(7, "").is_transient());
        assert!(plugin(3, "").is_not_found_like());
        assert!(!plugin(999, "").is_not_found_like());
        assert_eq!(plugin(120, "").code(), Some(ErrorCode::Plugin(120)));
        let nf = Error::PluginNotFound {
            plugin: "x".into(),
            paths: vec![],
        };
        assert!(nf.is_not_found_like());
        assert_eq!(nf.code(), None);
        let c = Error::cache("/x", "read", io::Error::from(io::ErrorKind::NotFound));
        assert!(c.is_not_found_like());
    }

    #[test]
    fn messages() {
        assert_eq!(
            plugin(7, "").to_string(),
            r#"plugin type="bridge" failed (ADD): boom"#
        );
        assert_eq!(
            plugin(7, "why").with_network("podnet").to_string(),
            r#"plugin type="bridge" name="podnet" failed (ADD): boom; why"#
        );
        let f = Error::PluginFailed {
            network: None,
            plugin: "p".into(),
            path: "/p".into(),
            verb: "DEL".into(),
            status: ExitStatus::from_raw(1 << 8),
            msg: "netplugin failed with no error message: exit status 1".into(),
            stdout: vec![],
            stderr: String::new(),
        };
        assert_eq!(
            f.to_string(),
            r#"plugin type="p" failed (DEL): netplugin failed with no error message: exit status 1"#
        );
    }
}
