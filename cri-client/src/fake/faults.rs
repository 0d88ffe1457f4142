//! Fault injection and the call log: what the fake does to a call before its
//! normal answer, and what it remembers about each call.

use std::collections::HashMap;
use std::time::Duration;

use tonic::{Code, Status};

use super::rpc::Rpc;

/// A failure that the fake answers instead of running an RPC; install it with
/// [`FakeRuntime::inject_fault`](super::FakeRuntime::inject_fault).
///
/// Calls are counted per fault, from 1, starting when the fault is injected;
/// only calls that reach the fault count (calls answered `Unavailable` during
/// a [restart](super::FakeRuntime::begin_restart) or `Unimplemented` do not).
/// A failed call changes no state. When several faults of one RPC match a
/// call, the one injected first answers.
///
/// ```
/// use cri_client::fake::Fault;
/// use cri_client::tonic::Code;
///
/// // Only the 2nd call fails.
/// let once = Fault::on_call(2, Code::Unavailable, "connection reset");
/// // The 3rd call and every later one fail.
/// let broken = Fault::from_call(3, Code::Internal, "disk full");
/// // Every call fails.
/// let always = Fault::always(Code::DeadlineExceeded, "context deadline exceeded");
/// # let _ = (once, broken, always);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    code: Code,
    message: String,
    first: u64,
    last: Option<u64>,
}

impl Fault {
    /// Fails only the `n`th call (1-based) with `code` and `message`.
    /// `n = 0` is treated as 1.
    pub fn on_call(n: u64, code: Code, message: impl Into<String>) -> Fault {
        let n = n.max(1);
        Fault {
            code,
            message: message.into(),
            first: n,
            last: Some(n),
        }
    }

    /// Fails the `n`th call (1-based) and every later one with `code` and
    /// `message`. `n = 0` is treated as 1.
    pub fn from_call(n: u64, code: Code, message: impl Into<String>) -> Fault {
        Fault {
            code,
            message: message.into(),
            first: n.max(1),
            last: None,
        }
    }

    /// Fails every call with `code` and `message`.
    pub fn always(code: Code, message: impl Into<String>) -> Fault {
        Fault::from_call(1, code, message)
    }

    /// Fails `count` calls in a row starting with the `n`th (1-based).
    /// `n = 0` is treated as 1; `count = 0` fails nothing.
    pub fn calls(n: u64, count: u64, code: Code, message: impl Into<String>) -> Fault {
        let n = n.max(1);
        Fault {
            code,
            message: message.into(),
            first: n,
            // A window that ends before it starts matches no call.
            last: Some(if count == 0 {
                0
            } else {
                n.saturating_add(count - 1)
            }),
        }
    }

    /// The status code the fault answers.
    pub fn code(&self) -> Code {
        self.code
    }

    /// The status message the fault answers.
    pub fn message(&self) -> &str {
        &self.message
    }

    fn matches(&self, call: u64) -> bool {
        call >= self.first && self.last.is_none_or(|last| call <= last)
    }
}

/// One call the fake answered, in the order the calls arrived; see
/// [`FakeRuntime::calls`](super::FakeRuntime::calls).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRecord {
    /// Which RPC was called.
    pub rpc: Rpc,
    /// A short summary of the request, such as `container_id=3f2a…` or
    /// `image=docker.io/library/busybox:1.36`; empty for requests without
    /// interesting fields.
    pub request: String,
    /// The code of the answer: [`Code::Ok`] when the call succeeded (for a
    /// server stream: when the stream was opened).
    pub code: Code,
    /// The status message of a failed call; empty on success.
    pub message: String,
}

/// Installed faults, latencies, unimplemented RPCs and the call log.
#[derive(Debug, Default)]
pub(super) struct FaultBook {
    faults: Vec<(Rpc, Fault, u64)>,
    latency: HashMap<Rpc, Duration>,
    unimplemented: HashMap<Rpc, String>,
    calls: Vec<CallRecord>,
}

impl FaultBook {
    pub(super) fn inject(&mut self, rpc: Rpc, fault: Fault) {
        self.faults.push((rpc, fault, 0));
    }

    pub(super) fn clear_faults(&mut self, rpc: Option<Rpc>) {
        match rpc {
            Some(rpc) => self.faults.retain(|(r, _, _)| *r != rpc),
            None => self.faults.clear(),
        }
    }

    /// Counts a call of `rpc` against every fault of it and returns the
    /// status of the first one that matches.
    pub(super) fn take_fault(&mut self, rpc: Rpc) -> Option<Status> {
        let mut hit = None;
        for (r, fault, seen) in &mut self.faults {
            if *r != rpc {
                continue;
            }
            *seen += 1;
            if hit.is_none() && fault.matches(*seen) {
                hit = Some(Status::new(fault.code, fault.message.clone()));
            }
        }
        hit
    }

    pub(super) fn set_latency(&mut self, rpc: Rpc, latency: Duration) {
        if latency.is_zero() {
            self.latency.remove(&rpc);
        } else {
            self.latency.insert(rpc, latency);
        }
    }

    pub(super) fn latency(&self, rpc: Rpc) -> Option<Duration> {
        self.latency.get(&rpc).copied()
    }

    pub(super) fn clear_latencies(&mut self) {
        self.latency.clear();
    }

    pub(super) fn set_unimplemented(&mut self, rpc: Rpc, message: String) {
        self.unimplemented.insert(rpc, message);
    }

    pub(super) fn set_implemented(&mut self, rpc: Rpc) {
        self.unimplemented.remove(&rpc);
    }

    pub(super) fn unimplemented(&self, rpc: Rpc) -> Option<Status> {
        self.unimplemented
            .get(&rpc)
            .map(|message| Status::unimplemented(message.clone()))
    }

    pub(super) fn record(&mut self, rpc: Rpc, request: String, result: Result<(), &Status>) {
        let (code, message) = match result {
            Ok(()) => (Code::Ok, String::new()),
            Err(status) => (status.code(), status.message().to_owned()),
        };
        self.calls.push(CallRecord {
            rpc,
            request,
            code,
            message,
        });
    }

    pub(super) fn calls(&self) -> Vec<CallRecord> {
        self.calls.clone()
    }

    pub(super) fn clear_calls(&mut self) {
        self.calls.clear();
    }
}

/// The message grpc-go answers for a method that the server does not know,
/// as containerd does for RPCs newer than its CRI schema.
pub(super) fn unknown_method_message(rpc: Rpc) -> String {
    format!(
        "unknown method {} for service {}",
        rpc.name(),
        rpc.service()
    )
}

/// The message of a method that the server knows but does not implement
/// (grpc-go's `Unimplemented*Server` stubs).
pub(super) fn not_implemented_message(rpc: Rpc) -> String {
    format!("method {} not implemented", rpc.name())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_windows() {
        let nth = Fault::on_call(2, Code::Internal, "x");
        assert!(!nth.matches(1) && nth.matches(2) && !nth.matches(3));
        let from = Fault::from_call(2, Code::Internal, "x");
        assert!(!from.matches(1) && from.matches(2) && from.matches(100));
        let run = Fault::calls(2, 2, Code::Internal, "x");
        assert!(!run.matches(1) && run.matches(2) && run.matches(3) && !run.matches(4));
        let none = Fault::calls(1, 0, Code::Internal, "x");
        assert!(!none.matches(1) && !none.matches(2));
        assert!(Fault::on_call(0, Code::Internal, "x").matches(1));
    }

    #[test]
    fn every_fault_counts_its_own_calls() {
        let mut book = FaultBook::default();
        book.inject(Rpc::Version, Fault::on_call(1, Code::Internal, "first"));
        book.inject(Rpc::Version, Fault::on_call(2, Code::Unavailable, "second"));
        book.inject(Rpc::Status, Fault::always(Code::Unknown, "status"));
        let codes: Vec<_> = (0..3)
            .map(|_| book.take_fault(Rpc::Version).map(|s| s.code()))
            .collect();
        assert_eq!(codes, [Some(Code::Internal), Some(Code::Unavailable), None]);
        book.clear_faults(Some(Rpc::Status));
        assert!(book.take_fault(Rpc::Status).is_none());
    }
}
