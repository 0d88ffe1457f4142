//! `grpc` probes, as `pkg/probe/grpc/grpc.go`: `grpc.health.v1.Health/Check` to
//! `podIP:port` over plain HTTP/2 (insecure credentials), `User-Agent: kube-probe/x.y`,
//! the probe dialer (`SO_LINGER` 1 s), one deadline for connecting and the call.
//!
//! Only `SERVING` is Success; every error is a Failure with upstream's message:
//!
//! | Case | Output |
//! |---|---|
//! | `SERVING` | `service healthy` |
//! | other status | `service unhealthy (responded with "NOT_SERVING")` |
//! | no connection within the timeout | `timeout: failed to connect service "<addr>" within 1s: context deadline exceeded` |
//! | `Unimplemented` | `error: this server does not implement the grpc health protocol (grpc.health.v1.Health): <message>` |
//! | `DeadlineExceeded` or the call outlives the timeout | `timeout: health rpc did not complete within 1s` |
//! | any other status | `error: health rpc probe failed: rpc error: code = NotFound desc = <message>` |
//!
//! Upstream dials with `grpc.WithBlock()`, so a refused or failed connection is retried
//! (grpc-go's backoff: 1 s, then ×1.6) until the deadline, and the result is always the
//! connect-timeout message; this module does the same (without grpc-go's jitter).
//! Deviations: the `User-Agent` ends in tonic's name (`kube-probe/1.36 tonic/...`)
//! where grpc-go appends its own; the connection counts as made once the HTTP/2
//! handshake is written, where grpc-go waits for the server's SETTINGS frame.

use std::net::IpAddr;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::time::Instant;
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use super::{go_duration, go_quote, join_host_port, tcp};
use crate::outcome::ProbeOutcome;

/// grpc-go's default connection backoff (`backoff.DefaultConfig`).
const BACKOFF_BASE: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(120);

/// One gRPC health check of `ip:port`.
pub(super) async fn probe(
    ip: IpAddr,
    port: u16,
    service: Option<&str>,
    user_agent: &str,
    timeout: Duration,
) -> ProbeOutcome {
    let deadline = Instant::now() + timeout;
    let host = ip.to_string();
    let addr = join_host_port(&host, port);
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .and_then(|e| e.user_agent(user_agent));
    let endpoint = match endpoint {
        Ok(e) => e,
        Err(e) => {
            return ProbeOutcome::failure(format!(
                "error: failed to connect service at {}: {e}",
                go_quote(&addr)
            ));
        }
    };
    let connector = tower::service_fn(move |_uri: http::Uri| {
        let host = host.clone();
        async move { tcp::dial(&host, port, None).await.map(TokioIo::new) }
    });

    let connect = async {
        let mut backoff = BACKOFF_BASE;
        loop {
            match endpoint.connect_with_connector(connector.clone()).await {
                Ok(channel) => return channel,
                Err(e) => {
                    tracing::debug!(%addr, error = %e, "gRPC probe connection failed, retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = backoff.mul_f64(1.6).min(BACKOFF_MAX);
                }
            }
        }
    };
    let Ok(channel) = tokio::time::timeout_at(deadline, connect).await else {
        return ProbeOutcome::failure(connect_timeout_message(&addr, timeout));
    };

    let mut request = tonic::Request::new(HealthCheckRequest {
        service: service.unwrap_or_default().to_owned(),
    });
    // Propagate the deadline (`grpc-timeout`), as grpc-go does for a context deadline.
    request.set_timeout(deadline.saturating_duration_since(Instant::now()));
    let mut client = HealthClient::new(channel);
    let call = client.check(request);
    match tokio::time::timeout_at(deadline, call).await {
        Err(_) => ProbeOutcome::failure(rpc_timeout_message(timeout)),
        Ok(Err(status)) => ProbeOutcome::failure(status_message(&status, timeout)),
        Ok(Ok(response)) => serving_outcome(response.into_inner().status),
    }
}

fn connect_timeout_message(addr: &str, timeout: Duration) -> String {
    format!(
        "timeout: failed to connect service {} within {}: context deadline exceeded",
        go_quote(addr),
        go_duration(timeout)
    )
}

fn rpc_timeout_message(timeout: Duration) -> String {
    format!(
        "timeout: health rpc did not complete within {}",
        go_duration(timeout)
    )
}

/// The Failure message of a call that ended with a status.
fn status_message(status: &tonic::Status, timeout: Duration) -> String {
    match status.code() {
        Code::Unimplemented => format!(
            "error: this server does not implement the grpc health protocol \
             (grpc.health.v1.Health): {}",
            status.message()
        ),
        Code::DeadlineExceeded => rpc_timeout_message(timeout),
        // tonic reports its own client-side deadline (the `grpc-timeout` we set) as
        // Cancelled "Timeout expired"; grpc-go reports it as DeadlineExceeded.
        Code::Cancelled if status.message() == tonic::TimeoutExpired(()).to_string() => {
            rpc_timeout_message(timeout)
        }
        code => format!(
            "error: health rpc probe failed: rpc error: code = {} desc = {}",
            go_code_name(code),
            status.message()
        ),
    }
}

/// Success only for `SERVING`; other values are named as protobuf-go's `String()`
/// names them (the number for a value the enum does not know).
fn serving_outcome(status: i32) -> ProbeOutcome {
    match ServingStatus::try_from(status) {
        Ok(ServingStatus::Serving) => ProbeOutcome::success("service healthy"),
        Ok(other) => ProbeOutcome::failure(format!(
            "service unhealthy (responded with {})",
            go_quote(other.as_str_name())
        )),
        Err(_) => ProbeOutcome::failure(format!(
            "service unhealthy (responded with {})",
            go_quote(&status.to_string())
        )),
    }
}

/// grpc-go's `codes.Code.String()`.
fn go_code_name(code: Code) -> &'static str {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::ProbeResult;

    #[test]
    fn only_serving_passes() {
        assert_eq!(
            serving_outcome(ServingStatus::Serving as i32),
            ProbeOutcome::success("service healthy")
        );
        let cases = [
            (
                ServingStatus::NotServing as i32,
                r#"service unhealthy (responded with "NOT_SERVING")"#,
            ),
            (
                ServingStatus::Unknown as i32,
                r#"service unhealthy (responded with "UNKNOWN")"#,
            ),
            (
                ServingStatus::ServiceUnknown as i32,
                r#"service unhealthy (responded with "SERVICE_UNKNOWN")"#,
            ),
            (42, r#"service unhealthy (responded with "42")"#),
        ];
        for (status, want) in cases {
            assert_eq!(serving_outcome(status), ProbeOutcome::failure(want));
        }
    }

    #[test]
    fn status_messages_are_upstreams() {
        let second = Duration::from_secs(1);
        assert_eq!(
            status_message(
                &tonic::Status::unimplemented("unknown service grpc.health.v1.Health"),
                second
            ),
            "error: this server does not implement the grpc health protocol (grpc.health.v1.Health): \
             unknown service grpc.health.v1.Health"
        );
        assert_eq!(
            status_message(
                &tonic::Status::deadline_exceeded("late"),
                Duration::from_secs(5)
            ),
            "timeout: health rpc did not complete within 5s"
        );
        assert_eq!(
            status_message(&tonic::Status::not_found("unknown service"), second),
            "error: health rpc probe failed: rpc error: code = NotFound desc = unknown service"
        );
        assert_eq!(
            status_message(&tonic::Status::cancelled("Timeout expired"), second),
            "timeout: health rpc did not complete within 1s"
        );
        assert_eq!(
            status_message(&tonic::Status::cancelled("gone"), second),
            "error: health rpc probe failed: rpc error: code = Canceled desc = gone"
        );
    }

    #[test]
    fn timeout_messages_are_upstreams() {
        assert_eq!(
            connect_timeout_message("10.0.0.1:9090", Duration::from_secs(1)),
            r#"timeout: failed to connect service "10.0.0.1:9090" within 1s: context deadline exceeded"#
        );
        assert_eq!(
            connect_timeout_message("[fd00::1]:9090", Duration::from_secs(90)),
            r#"timeout: failed to connect service "[fd00::1]:9090" within 1m30s: context deadline exceeded"#
        );
        assert_eq!(
            rpc_timeout_message(Duration::from_secs(1)),
            "timeout: health rpc did not complete within 1s"
        );
    }

    #[test]
    fn every_code_has_gos_name() {
        let all = [
            (Code::Ok, "OK"),
            (Code::Cancelled, "Canceled"),
            (Code::Unknown, "Unknown"),
            (Code::InvalidArgument, "InvalidArgument"),
            (Code::DeadlineExceeded, "DeadlineExceeded"),
            (Code::NotFound, "NotFound"),
            (Code::AlreadyExists, "AlreadyExists"),
            (Code::PermissionDenied, "PermissionDenied"),
            (Code::ResourceExhausted, "ResourceExhausted"),
            (Code::FailedPrecondition, "FailedPrecondition"),
            (Code::Aborted, "Aborted"),
            (Code::OutOfRange, "OutOfRange"),
            (Code::Unimplemented, "Unimplemented"),
            (Code::Internal, "Internal"),
            (Code::Unavailable, "Unavailable"),
            (Code::DataLoss, "DataLoss"),
            (Code::Unauthenticated, "Unauthenticated"),
        ];
        for (code, name) in all {
            assert_eq!(go_code_name(code), name);
        }
        // Every status is a Failure, never an error.
        assert_eq!(serving_outcome(-1).result, ProbeResult::Failure);
    }
}
