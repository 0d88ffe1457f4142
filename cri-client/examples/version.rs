//! Prints the runtime's version, like `crictl version`.
//!
//! ```text
//! cargo run -p cri-client --example version -- unix:///run/containerd/containerd.sock
//! ```

use cri_client::v1::VersionRequest;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let endpoint = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "unix:///run/containerd/containerd.sock".to_owned());
    let channel = cri_client::connect(&endpoint).await?;
    let version = cri_client::runtime_client(channel)
        .version(VersionRequest {
            version: "v1".to_owned(),
        })
        .await?
        .into_inner();
    println!("Version:  {}", version.version);
    println!("RuntimeName:  {}", version.runtime_name);
    println!("RuntimeVersion:  {}", version.runtime_version);
    println!("RuntimeApiVersion:  {}", version.runtime_api_version);
    Ok(())
}
