//! The crate's error type.

/// Errors returned by this crate.
///
/// Messages are lowercase and do not repeat the message of their
/// [`source`](std::error::Error::source); walk the source chain to see the
/// cause.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The endpoint names a transport other than a Unix socket, such as
    /// `tcp://` or `npipe://`. Like kubelet on Linux, this crate only speaks
    /// CRI over Unix sockets.
    #[error(
        "unsupported CRI endpoint {endpoint:?}: scheme {scheme:?} is not supported, \
         only unix sockets are (unix:///path/to.sock or /path/to.sock)"
    )]
    UnsupportedScheme {
        /// The endpoint as given.
        endpoint: String,
        /// The scheme found in it, as written.
        scheme: String,
    },

    /// The endpoint is not of a form this crate accepts.
    #[error("invalid CRI endpoint {endpoint:?}: {reason}")]
    InvalidEndpoint {
        /// The endpoint as given.
        endpoint: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A CRI call failed with a gRPC status, from the runtime or from the
    /// client (its deadline passed, the socket is missing).
    #[error("CRI {method} failed: {:?}: {}", .status.code(), .status.message())]
    Rpc {
        /// The RPC, as named in the CRI API (for example `RunPodSandbox`).
        method: &'static str,
        /// The status, with the runtime's message.
        status: tonic::Status,
    },

    /// An `ExecSync` command did not finish within its timeout (kubelet's
    /// `ErrCommandTimedOut`).
    #[error("command {command:?} timed out after {timeout_seconds}s")]
    CommandTimedOut {
        /// The command and its arguments.
        command: Vec<String>,
        /// The timeout the command had, in seconds.
        timeout_seconds: i64,
    },

    /// The runtime does not serve the CRI v1 API, or its `Version` answer is
    /// incomplete; kubelet refuses such a runtime too.
    #[error(
        "runtime {runtime_name:?} {runtime_version:?} answers CRI API {runtime_api_version:?}, \
         but the v1 API is required{missing}"
    )]
    UnsupportedApiVersion {
        /// The runtime's name, as it reported it.
        runtime_name: String,
        /// The runtime's version, as it reported it.
        runtime_version: String,
        /// The CRI API version it reported.
        runtime_api_version: String,
        /// Which fields of the answer were empty, if any (as text).
        missing: String,
    },

    /// Reading a container log file failed.
    #[error(transparent)]
    Logs(#[from] crate::logs::LogError),

    /// Talking to the runtime's streaming server (exec, attach,
    /// port-forward) failed.
    #[error(transparent)]
    Streaming(#[from] crate::streaming::StreamError),

    /// A pod or container config builder was given an invalid value.
    #[error(transparent)]
    Build(#[from] crate::builders::BuildError),

    /// The runtime answered, but the answer misses something the CRI contract
    /// requires (kubelet validates the same things).
    #[error("invalid {method} response from the runtime: {reason}")]
    InvalidResponse {
        /// The RPC.
        method: &'static str,
        /// What is missing or wrong.
        reason: String,
    },
}

impl Error {
    /// The gRPC status of a failed call, if the error is one.
    pub fn status(&self) -> Option<&tonic::Status> {
        match self {
            Error::Rpc { status, .. } => Some(status),
            _ => None,
        }
    }

    /// The gRPC code of a failed call; [`tonic::Code::DeadlineExceeded`] for an
    /// exec that timed out; `None` for errors that are not about a call.
    pub fn code(&self) -> Option<tonic::Code> {
        match self {
            Error::Rpc { status, .. } => Some(status.code()),
            Error::CommandTimedOut { .. } => Some(tonic::Code::DeadlineExceeded),
            _ => None,
        }
    }

    /// The runtime answered `NotFound`: the sandbox, container or image does not
    /// exist (kubelet's `crierror.IsNotFound`).
    pub fn is_not_found(&self) -> bool {
        self.code() == Some(tonic::Code::NotFound)
    }

    /// The runtime does not implement the method (`Unimplemented`), as
    /// containerd 1.6 answers for `GetContainerEvents`, `RuntimeConfig`,
    /// `ListMetricDescriptors` and the `Stream*` list methods.
    pub fn is_unimplemented(&self) -> bool {
        self.code() == Some(tonic::Code::Unimplemented)
    }

    /// The runtime could not be reached (`Unavailable`): its socket is missing
    /// or it is restarting. The client reconnects on the next call.
    pub fn is_unavailable(&self) -> bool {
        self.code() == Some(tonic::Code::Unavailable)
    }

    /// The call ran out of time (`DeadlineExceeded`), on our side or the
    /// runtime's, including an exec whose command timed out.
    pub fn is_deadline_exceeded(&self) -> bool {
        self.code() == Some(tonic::Code::DeadlineExceeded)
    }
}

/// `Result` with this crate's [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
