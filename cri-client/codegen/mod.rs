//! Code generation for the CRI v1 schema, shared by the maintainer command
//! (`examples/regenerate.rs`) and the tests (`tests/generated_is_fresh.rs`,
//! `tests/schema_facts.rs`).
//!
//! This file is not part of the library: each user pulls it in with
//! `#[path = "../codegen/mod.rs"] mod codegen;`. It uses only
//! dev-dependencies (`protox`, `tonic-prost-build`, `prost-types`), so neither
//! users nor maintainers need `protoc`.

use std::io;
use std::path::{Path, PathBuf};

/// Directory that holds the `.proto` files (the include root).
pub(crate) const PROTO_ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/proto");

/// The schema, relative to [`PROTO_ROOT`].
pub(crate) const PROTO_FILE: &str = "runtime/v1/api.proto";

/// Directory that holds the committed generated code.
pub(crate) const GENERATED_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src/generated");

/// File name of the generated code for package `runtime.v1`.
pub(crate) const GENERATED_FILE: &str = "runtime.v1.rs";

/// Compiles the schema with `protox` into a file descriptor set, keeping the
/// source info so that comments become rustdoc.
pub(crate) fn descriptor_set() -> Result<prost_types::FileDescriptorSet, protox::Error> {
    let mut compiler = protox::Compiler::new([PROTO_ROOT])?;
    compiler.include_source_info(true).include_imports(true);
    compiler.open_file(PROTO_FILE)?;
    Ok(compiler.file_descriptor_set())
}

/// Generates the Rust code (messages, client and server stubs) into `out_dir`
/// and returns the path of the generated file.
pub(crate) fn generate(out_dir: &Path) -> io::Result<PathBuf> {
    let fds = descriptor_set().map_err(io::Error::other)?;
    std::fs::create_dir_all(out_dir)?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .build_transport(true)
        .out_dir(out_dir)
        .compile_fds(fds)?;
    Ok(out_dir.join(GENERATED_FILE))
}
