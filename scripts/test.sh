#!/usr/bin/env bash
# Run every check and test of the node SDK for real, as root:
#   1. bring the real node environment up (scripts/env.sh up: installs what is missing,
#      starts containerd, the registries, pushes the test images; idempotent),
#   2. cargo fmt --check, clippy with warnings denied, docs with warnings denied,
#      packaging of every library,
#   3. every test in the workspace, the root and containerd ones included, ending with
#      the test runner's summary.
#
# Usage: scripts/test.sh [-p CRATE]...   (extra arguments go to the test runner, so
#        `scripts/test.sh -p cni-exec` runs one crate's tests; the checks still run)
# Environment: NODE_SDK_SKIP_CHECKS=1 skips step 2 (for quick local loops only).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/lib.sh
. "$here/lib.sh"
cd "$here/.."

require_root "$@"
command -v cargo >/dev/null || die "cargo is not on PATH: install the Rust toolchain (rustup) first"

"$here/env.sh" up

export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
libs=(node-core cri-client pod-probes cni-exec proxy-rules)

if [ "${NODE_SDK_SKIP_CHECKS:-0}" != 1 ]; then
    say "cargo fmt --check"
    cargo fmt --all --check
    say "cargo clippy (warnings denied)"
    cargo clippy --workspace --all-targets --all-features --locked -- -D warnings
    say "cargo doc (warnings denied)"
    RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --all-features --locked --quiet
    say "cargo package (every library)"
    pkg_args=()
    for lib in "${libs[@]}"; do pkg_args+=(-p "$lib"); done
    cargo package "${pkg_args[@]}" --no-verify --locked --allow-dirty --quiet
fi

# With -p arguments, only those crates' tests run; otherwise the whole workspace.
scope=(--workspace)
[ $# -gt 0 ] && scope=()

say "doc tests"
cargo test "${scope[@]}" --doc --all-features --locked "$@"

say "tests (root, containerd, CNI plugins, registry, kernel included)"
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run "${scope[@]}" --all-features --locked --no-fail-fast --retries 1 --failure-output final "$@"
else
    cargo test "${scope[@]}" --all-features --locked --no-fail-fast --lib --bins --tests "$@"
fi
