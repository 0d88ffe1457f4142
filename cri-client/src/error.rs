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
}

/// `Result` with this crate's [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
