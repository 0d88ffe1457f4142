//! The seams between probe decisions and probe I/O.

use std::time::Duration;

use crate::outcome::{ProbeError, ProbeOutcome};
use crate::spec::{ProbeSpec, ProbeTarget};
use crate::timing::ProbeKind;

/// Runs one probe attempt. The workers call it every period; the default
/// implementation speaks HTTP, TCP, gRPC and exec (through an [`ExecRunner`]).
/// Tests and users can put anything behind it.
#[async_trait::async_trait]
pub trait Prober: Send + Sync + 'static {
    /// One attempt of `spec` against `target`; `Err` when the probe could not be
    /// run at all (retried by the caller, never counted as a failure).
    async fn probe(
        &self,
        kind: ProbeKind,
        spec: &ProbeSpec,
        target: &ProbeTarget,
    ) -> Result<ProbeOutcome, ProbeError>;
}

/// What an exec probe's command produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    /// The exit code.
    pub exit_code: i32,
    /// stdout and stderr together, as the kubelet combines them.
    pub output: Vec<u8>,
}

/// Why an exec could not produce an exit code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExecError {
    /// The command did not finish within the probe's timeout.
    #[error("command timed out after {0:?}")]
    Timeout(Duration),
    /// The runtime could not run it (container gone, runtime error...).
    #[error("{0}")]
    Runtime(String),
}

/// Runs a command in a container: node-core backs it with CRI `ExecSync`;
/// tests use a fake.
#[async_trait::async_trait]
pub trait ExecRunner: Send + Sync + 'static {
    /// Run `command` in `container_id`, giving up after `timeout`.
    async fn exec(
        &self,
        container_id: &str,
        command: &[String],
        timeout: Duration,
    ) -> Result<ExecOutput, ExecError>;
}
