//! What one probe attempt yields.

use std::fmt;

/// The verdict of one probe attempt, as the kubelet's prober classifies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProbeResult {
    /// The probe passed.
    Success,
    /// The probe passed with a warning (for example an HTTP redirect to another
    /// host that was not followed); counts as success, and the kubelet records a
    /// `ProbeWarning` event.
    Warning,
    /// The probe failed.
    Failure,
    /// The verdict is not known (counts as failure).
    Unknown,
}

impl ProbeResult {
    /// Whether the result counts as passing (`Success` or `Warning`).
    pub fn is_passing(self) -> bool {
        matches!(self, ProbeResult::Success | ProbeResult::Warning)
    }
}

impl fmt::Display for ProbeResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProbeResult::Success => "success",
            ProbeResult::Warning => "warning",
            ProbeResult::Failure => "failure",
            ProbeResult::Unknown => "unknown",
        })
    }
}

/// A probe verdict with the output the kubelet records in events
/// (`<Type> probe failed: <output>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeOutcome {
    /// The verdict.
    pub result: ProbeResult,
    /// The message: the status code, the connect error, the command's output...
    pub output: String,
}

impl ProbeOutcome {
    /// A passing outcome.
    pub fn success(output: impl Into<String>) -> Self {
        Self {
            result: ProbeResult::Success,
            output: output.into(),
        }
    }

    /// A passing outcome with a warning.
    pub fn warning(output: impl Into<String>) -> Self {
        Self {
            result: ProbeResult::Warning,
            output: output.into(),
        }
    }

    /// A failing outcome.
    pub fn failure(output: impl Into<String>) -> Self {
        Self {
            result: ProbeResult::Failure,
            output: output.into(),
        }
    }
}

/// A probe could not be run at all (as opposed to running and failing): the
/// kubelet retries such errors and throws the attempt away rather than counting
/// it as a failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProbeError {
    /// A named port is not among the container's ports.
    #[error("couldn't find port {name:?} in the container's ports")]
    NamedPortNotFound {
        /// The port name the probe uses.
        name: String,
    },
    /// The probe has no host and the pod has no IP yet.
    #[error("no host to probe: the probe sets none and the pod has no IP")]
    NoHost,
    /// The exec backend failed for a reason other than the command's own result.
    #[error("exec probe could not run: {0}")]
    Exec(String),
    /// The probe spec is not usable (for example an invalid header or URL).
    #[error("invalid probe: {0}")]
    Invalid(String),
    /// An HTTP probe's response headers arrived but reading its body failed (for
    /// example the timeout passed mid-body); the kubelet treats this as an error, not as
    /// a failure.
    #[error("reading the response body of {url}: {message}")]
    ResponseBody {
        /// The URL whose response it was.
        url: String,
        /// Why the read failed.
        message: String,
    },
}
