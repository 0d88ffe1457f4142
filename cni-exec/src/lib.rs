//! CNI plugin invocation as the CNI 1.1 specification and libcni define it.
//!
//! - [`network::CniConfig`]: ADD (the chain with `prevResult`), CHECK, DEL (in reverse,
//!   with the cached result), GC, STATUS, VERSION and validation of a conflist, with the
//!   list's version negotiated down to what the plugins support (libcni fails there).
//! - [`config`]: conflists and `.conf` files loaded as libcni and go-cni do, validation,
//!   version selection, and each plugin's stdin (`runtimeConfig`, `prevResult`, GC keys).
//! - [`result`]: the result model of every spec version, with libcni's conversions.
//! - [`exec`]: plugin execution: `CNI_PATH` lookup, the six `CNI_*` variables, timeouts
//!   and cancellation that kill the plugin, "text file busy" retries, output caps.
//! - [`cache`]: libcni's on-disk result cache (`/var/lib/cni/results/...`), shared with
//!   containerd and CRI-O.
//! - [`conformance`]: checks a conflist's plugins against the spec on a real netns (ADD
//!   result and interfaces, CHECK, idempotent DEL and its leftovers, GC, STATUS) and
//!   reports each check as PASS/FAIL/SKIP with its evidence.
//! - [`Error`] with the spec's [`ErrorCode`]s and the plugin, verb and network.
//!
//! # Example
//!
//! ```
//! use cni_exec::ErrorCode;
//!
//! // A plugin's error JSON carries a numeric code; 100 and above belong to plugins.
//! assert_eq!(ErrorCode::from(11), ErrorCode::TryAgainLater);
//! assert!(ErrorCode::from(11).is_transient());
//! assert_eq!(ErrorCode::from(120), ErrorCode::Plugin(120));
//! assert_eq!(ErrorCode::from(3).to_string(), "container unknown or does not exist (3)");
//! ```

pub mod config;
pub mod conformance;
pub mod network;
pub mod result;

use std::fmt;

pub mod cache;
mod error;
pub mod exec;

pub use error::{Error, Result};

/// An error code from a CNI plugin's error result (`{"code": N, "msg": ..., "details": ...}`).
///
/// Codes 0-99 are reserved by the specification; 100 and above are the plugins' own.
/// libcni also names 0 (unknown), 8 (invalid netns) and 999 (internal; the Debian 1.1.1
/// plugins emit it for internal errors), which are kept as their own variants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// 0: unknown error (libcni).
    Unknown,
    /// 1: incompatible CNI version.
    IncompatibleVersion,
    /// 2: unsupported field in the network configuration.
    UnsupportedField,
    /// 3: container unknown or does not exist; a runtime need not clean up (e.g. on DEL).
    UnknownContainer,
    /// 4: invalid necessary environment variables.
    InvalidEnvironmentVariables,
    /// 5: I/O failure.
    IoFailure,
    /// 6: failed to decode content.
    DecodingFailure,
    /// 7: invalid network configuration.
    InvalidNetworkConfig,
    /// 8: invalid network namespace (libcni, not in the spec table).
    InvalidNetns,
    /// 11: try again later; the runtime should retry.
    TryAgainLater,
    /// 50: STATUS: the plugin cannot serve ADD requests now.
    PluginNotAvailable,
    /// 51: STATUS: not available, and existing containers may have limited connectivity.
    PluginNotAvailableLimitedConnectivity,
    /// 999: internal error (libcni).
    Internal,
    /// Another reserved code (below 100) that the specification does not name.
    Reserved(u32),
    /// A plugin-specific code (100 and above, except 999).
    Plugin(u32),
}

impl ErrorCode {
    /// The numeric code as it appears in the error JSON.
    pub fn code(self) -> u32 {
        match self {
            ErrorCode::Unknown => 0,
            ErrorCode::IncompatibleVersion => 1,
            ErrorCode::UnsupportedField => 2,
            ErrorCode::UnknownContainer => 3,
            ErrorCode::InvalidEnvironmentVariables => 4,
            ErrorCode::IoFailure => 5,
            ErrorCode::DecodingFailure => 6,
            ErrorCode::InvalidNetworkConfig => 7,
            ErrorCode::InvalidNetns => 8,
            ErrorCode::TryAgainLater => 11,
            ErrorCode::PluginNotAvailable => 50,
            ErrorCode::PluginNotAvailableLimitedConnectivity => 51,
            ErrorCode::Internal => 999,
            ErrorCode::Reserved(n) | ErrorCode::Plugin(n) => n,
        }
    }

    /// Whether the specification asks the runtime to retry later (code 11).
    pub fn is_transient(self) -> bool {
        self == ErrorCode::TryAgainLater
    }

    fn describe(self) -> &'static str {
        match self {
            ErrorCode::Unknown => "unknown error",
            ErrorCode::IncompatibleVersion => "incompatible CNI version",
            ErrorCode::UnsupportedField => "unsupported field in network configuration",
            ErrorCode::UnknownContainer => "container unknown or does not exist",
            ErrorCode::InvalidEnvironmentVariables => "invalid necessary environment variables",
            ErrorCode::IoFailure => "I/O failure",
            ErrorCode::DecodingFailure => "failed to decode content",
            ErrorCode::InvalidNetworkConfig => "invalid network config",
            ErrorCode::InvalidNetns => "invalid network namespace",
            ErrorCode::TryAgainLater => "try again later",
            ErrorCode::PluginNotAvailable => "plugin not available",
            ErrorCode::PluginNotAvailableLimitedConnectivity => {
                "plugin not available, existing containers may have limited connectivity"
            }
            ErrorCode::Internal => "internal error",
            ErrorCode::Reserved(_) => "reserved error code",
            ErrorCode::Plugin(_) => "plugin error",
        }
    }
}

impl From<u32> for ErrorCode {
    fn from(code: u32) -> Self {
        match code {
            0 => ErrorCode::Unknown,
            1 => ErrorCode::IncompatibleVersion,
            2 => ErrorCode::UnsupportedField,
            3 => ErrorCode::UnknownContainer,
            4 => ErrorCode::InvalidEnvironmentVariables,
            5 => ErrorCode::IoFailure,
            6 => ErrorCode::DecodingFailure,
            7 => ErrorCode::InvalidNetworkConfig,
            8 => ErrorCode::InvalidNetns,
            11 => ErrorCode::TryAgainLater,
            50 => ErrorCode::PluginNotAvailable,
            51 => ErrorCode::PluginNotAvailableLimitedConnectivity,
            999 => ErrorCode::Internal,
            n if n < 100 => ErrorCode::Reserved(n),
            n => ErrorCode::Plugin(n),
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.describe(), self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips() {
        for n in (0..=1200).chain([u32::MAX]) {
            assert_eq!(ErrorCode::from(n).code(), n, "code {n}");
        }
    }

    #[test]
    fn spec_table_and_ranges() {
        assert_eq!(ErrorCode::from(7), ErrorCode::InvalidNetworkConfig);
        assert_eq!(ErrorCode::from(50), ErrorCode::PluginNotAvailable);
        assert_eq!(
            ErrorCode::from(51),
            ErrorCode::PluginNotAvailableLimitedConnectivity
        );
        // 9 and 10 are not in the spec: reserved, not named.
        assert_eq!(ErrorCode::from(9), ErrorCode::Reserved(9));
        assert_eq!(ErrorCode::from(99), ErrorCode::Reserved(99));
        assert_eq!(ErrorCode::from(100), ErrorCode::Plugin(100));
        assert_eq!(ErrorCode::from(999), ErrorCode::Internal);
        assert!(!ErrorCode::Internal.is_transient());
    }
}
