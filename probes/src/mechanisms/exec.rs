//! `exec` probes through an [`ExecRunner`], as `pkg/probe/exec/exec.go` with the
//! kubelet's `RunInContainer` (CRI `ExecSync` with `timeout = timeoutSeconds`, stdout
//! and stderr concatenated).
//!
//! - Exit 0 is Success, any other exit code Failure; the output (at most 10 KiB,
//!   `maxReadLength`) is the message either way.
//! - A timeout is a Failure (the `ExecProbeTimeout` behaviour, on since 1.20) with the
//!   text the CRI client gives it (`staging/src/k8s.io/cri-client/pkg/remote_runtime.go`):
//!   `command timed out: "<command joined by spaces>" timed out after 1s`.
//! - Any other runner error means the probe could not run: [`ProbeError::Exec`]
//!   (upstream's `probe.Unknown` with an error, which the prober retries and then
//!   discards).
//!
//! The runner enforces the timeout (as the runtime does for `ExecSync`); this module
//! adds no timer of its own.

use std::time::Duration;

use super::{capped_text, go_duration, go_quote};
use crate::outcome::{ProbeError, ProbeOutcome};
use crate::prober::{ExecError, ExecRunner};

/// One exec attempt of `command` in `container_id`.
pub(super) async fn probe(
    runner: Option<&dyn ExecRunner>,
    container_id: &str,
    command: &[String],
    timeout: Duration,
) -> Result<ProbeOutcome, ProbeError> {
    let Some(runner) = runner else {
        return Err(ProbeError::Exec(
            "no exec runner configured (DefaultProber::exec_runner)".to_owned(),
        ));
    };
    if command.is_empty() {
        return Err(ProbeError::Invalid(
            "exec probe without a command".to_owned(),
        ));
    }
    let result = runner.exec(container_id, command, timeout).await;
    outcome(command, timeout, result)
}

/// The verdict on what the runner returned.
fn outcome(
    command: &[String],
    timeout: Duration,
    result: Result<crate::prober::ExecOutput, ExecError>,
) -> Result<ProbeOutcome, ProbeError> {
    match result {
        Ok(out) if out.exit_code == 0 => Ok(ProbeOutcome::success(capped_text(&out.output))),
        Ok(out) => Ok(ProbeOutcome::failure(capped_text(&out.output))),
        Err(ExecError::Timeout(_)) => Ok(ProbeOutcome::failure(timeout_message(command, timeout))),
        Err(ExecError::Runtime(message)) => Err(ProbeError::Exec(message)),
    }
}

/// `command timed out: "<cmd>" timed out after <timeout>` (the CRI client wraps its
/// `ErrCommandTimedOut`, whose text is `command timed out`).
fn timeout_message(command: &[String], timeout: Duration) -> String {
    format!(
        "command timed out: {} timed out after {}",
        go_quote(&command.join(" ")),
        go_duration(timeout)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mechanisms::MAX_OUTPUT_BYTES;
    use crate::prober::ExecOutput;

    fn cmd(parts: &[&str]) -> Vec<String> {
        parts.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn exit_codes_decide() {
        let c = cmd(&["cat", "/tmp/healthy"]);
        let second = Duration::from_secs(1);
        let ok = ExecOutput {
            exit_code: 0,
            output: b"fine\n".to_vec(),
        };
        assert_eq!(
            outcome(&c, second, Ok(ok)),
            Ok(ProbeOutcome::success("fine\n"))
        );
        for code in [1, 2, 126, 127, 137, -1] {
            let bad = ExecOutput {
                exit_code: code,
                output: b"cat: /tmp/healthy: No such file or directory\n".to_vec(),
            };
            assert_eq!(
                outcome(&c, second, Ok(bad)),
                Ok(ProbeOutcome::failure(
                    "cat: /tmp/healthy: No such file or directory\n"
                ))
            );
        }
    }

    #[test]
    fn output_is_capped_at_ten_kib() {
        let big = ExecOutput {
            exit_code: 1,
            output: vec![b'x'; 3 * MAX_OUTPUT_BYTES],
        };
        let out = outcome(&cmd(&["x"]), Duration::from_secs(1), Ok(big)).unwrap();
        assert_eq!(out.output.len(), MAX_OUTPUT_BYTES);
    }

    #[test]
    fn timeouts_fail_with_the_cri_clients_text() {
        let c = cmd(&["sh", "-c", "sleep 10; echo \"done\""]);
        let got = outcome(
            &c,
            Duration::from_secs(3),
            Err(ExecError::Timeout(Duration::from_secs(3))),
        );
        assert_eq!(
            got,
            Ok(ProbeOutcome::failure(
                r#"command timed out: "sh -c sleep 10; echo \"done\"" timed out after 3s"#
            ))
        );
    }

    #[test]
    fn runtime_errors_are_probe_errors() {
        let got = outcome(
            &cmd(&["true"]),
            Duration::from_secs(1),
            Err(ExecError::Runtime("container not found".into())),
        );
        assert_eq!(got, Err(ProbeError::Exec("container not found".into())));
    }
}
