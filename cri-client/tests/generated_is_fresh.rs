//! The committed generated code must be exactly what the schema produces:
//! the messages and gRPC stubs, and the protobuf-JSON `serde` impls.

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
    let fresh_paths = codegen::generate(&dir).expect("code generation failed");
    let fresh: Vec<(String, String)> = fresh_paths
        .iter()
        .map(|path| {
            let name = path
                .file_name()
                .expect("a generated file has a name")
                .to_string_lossy()
                .into_owned();
            let text = fs::read_to_string(path).expect("read the freshly generated file");
            (name, text)
        })
        .collect();
    let _ = fs::remove_dir_all(&dir);

    let names: Vec<&str> = fresh.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(
        names,
        [codegen::GENERATED_FILE, codegen::GENERATED_SERDE_FILE],
        "the generator writes the files the crate includes"
    );

    let mut stale = Vec::new();
    for (name, fresh) in &fresh {
        let committed_path = Path::new(codegen::GENERATED_DIR).join(name);
        let committed = fs::read_to_string(&committed_path).unwrap_or_default();
        if *fresh != committed {
            let first_difference = fresh
                .lines()
                .zip(committed.lines())
                .position(|(a, b)| a != b)
                .map_or_else(
                    || "one file is a prefix of the other".to_owned(),
                    |i| format!("first difference at line {}", i + 1),
                );
            stale.push(format!("{} ({first_difference})", committed_path.display()));
        }
    }
    assert!(
        stale.is_empty(),
        "stale generated code: {}; run `cargo run -p cri-client --example regenerate`",
        stale.join(", ")
    );
}
