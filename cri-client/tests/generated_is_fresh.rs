//! The committed generated code must be exactly what the schema produces.

#[path = "../codegen/mod.rs"]
#[allow(dead_code)]
mod codegen;

use std::fs;
use std::path::Path;

#[test]
fn committed_generated_code_matches_the_schema() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("cri-client-regenerate-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    let fresh_path = codegen::generate(&dir).expect("code generation failed");
    let fresh = fs::read_to_string(&fresh_path).expect("read the freshly generated file");
    let _ = fs::remove_dir_all(&dir);

    let committed_path = Path::new(codegen::GENERATED_DIR).join(codegen::GENERATED_FILE);
    let committed = fs::read_to_string(&committed_path).unwrap_or_default();

    if fresh != committed {
        let first_difference = fresh
            .lines()
            .zip(committed.lines())
            .position(|(a, b)| a != b)
            .map_or_else(
                || "one file is a prefix of the other".to_owned(),
                |i| format!("first difference at line {}", i + 1),
            );
        panic!(
            "{} is stale ({first_difference}): run `cargo run -p cri-client --example regenerate`",
            committed_path.display()
        );
    }
}
