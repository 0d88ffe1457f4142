//! Shared helpers for the example binaries.

pub mod cnitool;
pub mod crictl;
pub mod proxy;
