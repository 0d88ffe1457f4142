//! `crictl`: a drop-in for crictl v1.36's common workflow, over the node SDK's
//! `cri-client`. See `node_sdk_examples::crictl` for what it covers.

fn main() -> std::process::ExitCode {
    node_sdk_examples::crictl::main()
}
