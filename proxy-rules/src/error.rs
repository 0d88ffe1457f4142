use std::fmt;

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in this crate. Each variant names what was wrong and
/// where: the object and field, the input line, the command and its stderr.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Service, EndpointSlice or ServiceCIDR that cannot be used.
    #[error("{kind} {name}: {field}: {reason}")]
    InvalidObject {
        /// `Service`, `EndpointSlice`, `ServiceCIDR`, ...
        kind: String,
        /// `namespace/name` (or the name of a cluster-scoped object).
        name: String,
        /// The field path, for example `spec.ports[0].protocol`.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The proxier configuration is invalid.
    #[error("invalid proxy configuration: {0}")]
    InvalidConfig(String),
    /// Input text (iptables-save output, an nft script, a Kubernetes List) that does
    /// not parse.
    #[error("{source_name}:{line}: {reason}: {text:?}")]
    Parse {
        /// What was being read: a file name or `iptables-save`.
        source_name: String,
        /// 1-based line number.
        line: usize,
        /// The offending line.
        text: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A command (`iptables-restore`, `nft`, `conntrack`, ...) failed.
    #[error("`{argv}` failed ({status}): {stderr}{context}", argv = argv.join(" "), context = ContextLines(context))]
    Command {
        /// The command line.
        argv: Vec<String>,
        /// How it ended (`exit status: 1`, `signal: 9`, or the spawn error).
        status: String,
        /// Its standard error, trimmed.
        stderr: String,
        /// The input lines around the one the command complained about, if known.
        context: Vec<String>,
    },
    /// A netlink request failed.
    #[error("netlink {operation}: {message} (errno {errno})")]
    Netlink {
        /// What was being done, for example `IPVS_CMD_NEW_SERVICE 10.0.0.1:80/tcp`.
        operation: String,
        /// The positive errno the kernel returned (0 when the failure was local).
        errno: i32,
        /// The error text.
        message: String,
    },
    /// Something the kernel or host does not provide.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// An I/O error with what was being done.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

struct ContextLines<'a>(&'a [String]);

impl fmt::Display for ContextLines<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return Ok(());
        }
        f.write_str("; input around the failing line:")?;
        for line in self.0 {
            write!(f, "\n  {line}")?;
        }
        Ok(())
    }
}

impl Error {
    pub(crate) fn invalid_object(
        kind: &str,
        name: impl Into<String>,
        field: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        Error::InvalidObject {
            kind: kind.to_owned(),
            name: name.into(),
            field: field.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn invalid_config(reason: impl Into<String>) -> Self {
        Error::InvalidConfig(reason.into())
    }

    pub(crate) fn parse(
        source_name: impl Into<String>,
        line: usize,
        text: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        Error::Parse {
            source_name: source_name.into(),
            line,
            text: text.into(),
            reason: reason.into(),
        }
    }

    #[allow(dead_code)] // used by the command runners
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// Whether this is a kernel "no such file or directory" (a missing netlink family,
    /// table or object).
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::Netlink { errno, .. } if *errno == 2)
            || matches!(self, Error::Command { stderr, .. } if stderr.contains("No such file or directory") || stderr.contains("does not exist"))
    }
}
