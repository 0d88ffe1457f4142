//! Code generation for the CRI v1 schema, shared by the maintainer command
//! (`examples/regenerate.rs`) and the tests (`tests/generated_is_fresh.rs`,
//! `tests/schema_facts.rs`).
//!
//! This file is not part of the library: each user pulls it in with
//! `#[path = "../codegen/mod.rs"] mod codegen;`. It uses only
//! dev-dependencies (`protox`, `tonic-prost-build`, `pbjson-build`,
//! `prost-types`), so neither users nor maintainers need `protoc`.

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

/// File name of the generated protobuf-JSON `serde` impls for package
/// `runtime.v1` (the crate's `serde` feature).
pub(crate) const GENERATED_SERDE_FILE: &str = "runtime.v1.serde.rs";

/// Compiles the schema with `protox` into a file descriptor set, keeping the
/// source info so that comments become rustdoc.
pub(crate) fn descriptor_set() -> Result<prost_types::FileDescriptorSet, protox::Error> {
    let mut compiler = protox::Compiler::new([PROTO_ROOT])?;
    compiler.include_source_info(true).include_imports(true);
    compiler.open_file(PROTO_FILE)?;
    Ok(compiler.file_descriptor_set())
}

/// Generates the Rust code (messages, client and server stubs, and the
/// `serde` impls) into `out_dir` and returns the paths of the generated files.
pub(crate) fn generate(out_dir: &Path) -> io::Result<[PathBuf; 2]> {
    let stubs = generate_stubs(out_dir)?;
    let serde = generate_serde(out_dir)?;
    Ok([stubs, serde])
}

/// Generates the messages and the client and server stubs into `out_dir` and
/// returns the path of the generated file.
pub(crate) fn generate_stubs(out_dir: &Path) -> io::Result<PathBuf> {
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

/// Generates `serde::Serialize` and `serde::Deserialize` for every message and
/// enum, following the protobuf JSON mapping, into `out_dir` and returns the
/// path of the generated file.
///
/// Choices, made for `crictl`-style configuration files and output:
///
/// - serialization uses the JSON names (`lowerCamelCase`), enums as their
///   names, 64-bit integers as strings, and emits fields that hold their
///   default value (like Go's `protojson` with `EmitDefaultValues`, which
///   `crictl -o json` uses); unset message fields are left out;
/// - deserialization accepts both the JSON name and the proto field name
///   (`logDirectory` and `log_directory`), enums as names or numbers, 64-bit
///   integers as numbers or strings, and skips unknown fields (as `crictl`
///   does when it reads pod and container configs).
pub(crate) fn generate_serde(out_dir: &Path) -> io::Result<PathBuf> {
    let fds = descriptor_set().map_err(io::Error::other)?;
    std::fs::create_dir_all(out_dir)?;
    let mut builder = pbjson_build::Builder::new();
    for file in fds.file {
        builder.register_file_descriptor(file);
    }
    builder
        .out_dir(out_dir)
        .emit_fields()
        .ignore_unknown_fields()
        .build(&[".runtime.v1"])?;
    Ok(out_dir.join(GENERATED_SERDE_FILE))
}
