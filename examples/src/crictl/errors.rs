//! Errors worded as crictl words them: gRPC failures as grpc-go prints a
//! status (`rpc error: code = NotFound desc = ...`), wrapped in crictl's
//! per-command context (`run pod sandbox: ...`).

use std::fmt;

use cri_client::tonic;

/// grpc-go's name of a status code (`codes.Code.String()`).
pub(crate) fn go_code_name(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "Canceled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

/// grpc-go's text of a status: `rpc error: code = X desc = message`.
pub(crate) fn status_text(status: &tonic::Status) -> String {
    format!(
        "rpc error: code = {} desc = {}",
        go_code_name(status.code()),
        status.message()
    )
}

/// The text of a client error as crictl (through the kubelet's CRI client)
/// would print it.
pub(crate) fn cri_error_text(error: &cri_client::Error) -> String {
    match error {
        cri_client::Error::Rpc { status, .. } => status_text(status),
        cri_client::Error::CommandTimedOut { command, .. } => {
            format!("command {:?} timed out", command.join(" "))
        }
        other => other.to_string(),
    }
}

/// A failed CRI call, worded like grpc-go; keeps the client error as source.
#[derive(Debug)]
pub(crate) struct CriFailure(pub(crate) cri_client::Error);

impl fmt::Display for CriFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&cri_error_text(&self.0))
    }
}

impl std::error::Error for CriFailure {}

/// `.cri()` on a client result: the error becomes a [`CriFailure`] in an
/// `anyhow::Error`, ready for crictl's context (`.context("run pod sandbox")`).
pub(crate) trait CriResultExt<T> {
    /// Converts the error.
    fn cri(self) -> anyhow::Result<T>;
}

impl<T> CriResultExt<T> for Result<T, cri_client::Error> {
    fn cri(self) -> anyhow::Result<T> {
        self.map_err(|e| anyhow::Error::new(CriFailure(e)))
    }
}

/// The command failed with a given exit status and message (crictl's
/// `cli.Exit`), printed as is, not as a fatal log line.
#[derive(Debug)]
pub(crate) struct Exit {
    /// The process exit status.
    pub(crate) code: i32,
    /// What to print on stderr (may be empty).
    pub(crate) message: String,
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Exit {}

/// Several failures of one command (crictl's `AggregateGoroutines`): one
/// alone reads as itself, more as `[a, b]`.
pub(crate) fn aggregate(errors: Vec<anyhow::Error>) -> anyhow::Result<()> {
    match errors.len() {
        0 => Ok(()),
        1 => Err(errors.into_iter().next().expect("one error")),
        _ => {
            let texts: Vec<String> = errors.iter().map(|e| format!("{e:#}")).collect();
            Err(anyhow::anyhow!("[{}]", texts.join(", ")))
        }
    }
}

#[cfg(test)]
mod tests {
    use anyhow::Context as _;

    use super::*;

    #[test]
    fn statuses_read_like_grpc_go() {
        let status =
            tonic::Status::not_found("an error occurred when try to find sandbox: not found");
        assert_eq!(
            status_text(&status),
            "rpc error: code = NotFound desc = an error occurred when try to find sandbox: not found"
        );
        assert_eq!(go_code_name(tonic::Code::Cancelled), "Canceled");
        assert_eq!(go_code_name(tonic::Code::Ok), "OK");
    }

    #[test]
    fn context_chains_like_crictl() {
        let failed: Result<(), cri_client::Error> = Err(cri_client::Error::Rpc {
            method: "RunPodSandbox",
            status: tonic::Status::unknown("failed to setup network"),
        });
        let err = failed.cri().context("run pod sandbox").unwrap_err();
        assert_eq!(
            format!("{err:#}"),
            "run pod sandbox: rpc error: code = Unknown desc = failed to setup network"
        );
        assert!(err.downcast_ref::<CriFailure>().is_some());
    }

    #[test]
    fn exec_timeouts_and_aggregates() {
        let timed_out = cri_client::Error::CommandTimedOut {
            command: vec!["sleep".into(), "9".into()],
            timeout_seconds: 1,
        };
        assert_eq!(cri_error_text(&timed_out), "command \"sleep 9\" timed out");
        assert!(aggregate(Vec::new()).is_ok());
        let one = aggregate(vec![anyhow::anyhow!("a")]).unwrap_err();
        assert_eq!(one.to_string(), "a");
        let two = aggregate(vec![anyhow::anyhow!("a"), anyhow::anyhow!("b")]).unwrap_err();
        assert_eq!(two.to_string(), "[a, b]");
    }
}
