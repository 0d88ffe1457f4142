//! Maintainer command: regenerates `src/generated/runtime.v1.rs` (messages and
//! gRPC stubs) and `src/generated/runtime.v1.serde.rs` (protobuf-JSON `serde`
//! impls, the `serde` feature) from `proto/runtime/v1/api.proto`.
//!
//! ```text
//! cargo run -p cri-client --example regenerate
//! ```
//!
//! Needs no `protoc`: the schema is compiled by `protox`, a protobuf compiler
//! written in Rust, and the code is written by `tonic-prost-build` and
//! `pbjson-build`.

#[path = "../codegen/mod.rs"]
mod codegen;

use std::path::Path;

fn main() -> std::io::Result<()> {
    for written in codegen::generate(Path::new(codegen::GENERATED_DIR))? {
        println!("wrote {}", written.display());
    }
    Ok(())
}
