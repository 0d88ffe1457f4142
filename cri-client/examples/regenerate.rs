//! Maintainer command: regenerates `src/generated/runtime.v1.rs` from
//! `proto/runtime/v1/api.proto`.
//!
//! ```text
//! cargo run -p cri-client --example regenerate
//! ```
//!
//! Needs no `protoc`: the schema is compiled by `protox`, a protobuf compiler
//! written in Rust, and the code is written by `tonic-prost-build`.

#[path = "../codegen/mod.rs"]
mod codegen;

use std::path::Path;

fn main() -> std::io::Result<()> {
    let written = codegen::generate(Path::new(codegen::GENERATED_DIR))?;
    println!("wrote {}", written.display());
    Ok(())
}
