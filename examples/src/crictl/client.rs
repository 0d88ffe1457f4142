//! Connecting to the runtime and image services as crictl does: the
//! configured endpoint (or the deprecated defaults, in order), the timeout
//! as every call's deadline, and a first call that checks the service speaks
//! CRI v1 (`Version` for the runtime, `ImageFsInfo` for images).

use std::time::Duration;

use anyhow::anyhow;
use cri_client::{ClientConfig, CriClient};
use tokio::sync::OnceCell;

use super::config::{DEFAULT_RUNTIME_ENDPOINTS, Settings};
use super::errors::cri_error_text;
use super::log;

/// Which service a connection is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Service {
    Runtime,
    Image,
}

impl Service {
    fn api(self) -> &'static str {
        match self {
            Service::Runtime => "runtime",
            Service::Image => "image",
        }
    }
}

/// The endpoints to try, and whether they are the deprecated defaults.
fn endpoints(configured: Option<&str>) -> (Vec<String>, bool) {
    match configured {
        Some(endpoint) => (vec![endpoint.to_owned()], false),
        None => (
            DEFAULT_RUNTIME_ENDPOINTS
                .iter()
                .map(|e| (*e).to_owned())
                .collect(),
            true,
        ),
    }
}

/// The runtime and image clients of one command, connected on first use.
#[derive(Debug)]
pub(crate) struct Clients {
    settings: Settings,
    runtime: OnceCell<CriClient>,
    image: OnceCell<CriClient>,
}

impl Clients {
    /// Clients for the settings; nothing is dialled yet.
    pub(crate) fn new(settings: Settings) -> Self {
        Self {
            settings,
            runtime: OnceCell::new(),
            image: OnceCell::new(),
        }
    }

    /// The settings the clients use.
    pub(crate) fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The runtime service client, checked with a `Version` call.
    pub(crate) async fn runtime(&self) -> anyhow::Result<&CriClient> {
        self.runtime
            .get_or_try_init(|| {
                connect(
                    Service::Runtime,
                    self.settings.runtime_endpoint.as_deref(),
                    self.settings.timeout,
                )
            })
            .await
    }

    /// A runtime client whose calls use `timeout` instead of the global one
    /// (crictl's `--cancel-timeout`); the global one when `None` or zero.
    pub(crate) async fn runtime_with_timeout(
        &self,
        timeout: Option<Duration>,
    ) -> anyhow::Result<CriClient> {
        match timeout.filter(|t| !t.is_zero()) {
            Some(timeout) => {
                log::debug(&format!("Using runtime connection timeout: {timeout:?}"));
                connect(
                    Service::Runtime,
                    self.settings.runtime_endpoint.as_deref(),
                    timeout,
                )
                .await
            }
            None => self.runtime().await.cloned(),
        }
    }

    /// The image service client, checked with an `ImageFsInfo` call. The
    /// image endpoint defaults to the runtime endpoint.
    pub(crate) async fn image(&self) -> anyhow::Result<&CriClient> {
        let endpoint = self
            .settings
            .image_endpoint
            .as_deref()
            .or(self.settings.runtime_endpoint.as_deref());
        self.image
            .get_or_try_init(|| connect(Service::Image, endpoint, self.settings.timeout))
            .await
    }
}

async fn connect(
    service: Service,
    configured: Option<&str>,
    timeout: Duration,
) -> anyhow::Result<CriClient> {
    log::debug(&format!("Get {} connection", service.api()));
    let (candidates, defaults) = endpoints(configured);
    if defaults {
        let prefix = match service {
            Service::Runtime => "runtime",
            Service::Image => "Image",
        };
        log::warn(&format!(
            "{prefix} connect using default endpoints: [{}]. As the default settings are now \
             deprecated, you should set the endpoint instead.",
            candidates.join(" ")
        ));
    }
    let config = ClientConfig::default().request_timeout(timeout);
    let mut last_error = anyhow!("endpoint is not set");
    for endpoint in &candidates {
        log::debug(&format!(
            "Connect using endpoint {endpoint:?} with {timeout:?} timeout"
        ));
        match try_endpoint(service, endpoint, config.clone()).await {
            Ok(client) => {
                if defaults {
                    log::debug(&format!(
                        "Connected successfully using endpoint: {endpoint}"
                    ));
                }
                return Ok(client);
            }
            Err(e) => {
                if defaults {
                    log::error(&format!("{e:#}"));
                }
                last_error = e;
            }
        }
    }
    Err(last_error)
}

async fn try_endpoint(
    service: Service,
    endpoint: &str,
    config: ClientConfig,
) -> anyhow::Result<CriClient> {
    let client =
        CriClient::connect_with(endpoint, config).map_err(|e| anyhow!(cri_error_text(&e)))?;
    let checked = match service {
        Service::Runtime => client.version().await.map(drop),
        Service::Image => client.image_fs_info().await.map(drop),
    };
    checked.map_err(|e| {
        anyhow!(
            "validate service connection: validate CRI v1 {} API for endpoint {endpoint:?}: {}",
            service.api(),
            cri_error_text(&e)
        )
    })?;
    Ok(client)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_configured_endpoint_is_the_only_one_tried() {
        assert_eq!(
            endpoints(Some("unix:///x.sock")),
            (vec!["unix:///x.sock".to_owned()], false)
        );
        let (defaults, deprecated) = endpoints(None);
        assert!(deprecated);
        assert_eq!(defaults[0], "unix:///run/containerd/containerd.sock");
    }

    #[tokio::test]
    async fn a_missing_socket_reads_like_crictl() {
        let err = connect(
            Service::Runtime,
            Some("unix:///nonexistent/node-sdk-crictl.sock"),
            Duration::from_secs(1),
        )
        .await
        .unwrap_err();
        let text = format!("{err:#}");
        assert!(
            text.starts_with(
                "validate service connection: validate CRI v1 runtime API for endpoint \
                 \"unix:///nonexistent/node-sdk-crictl.sock\": rpc error: code = Unavailable desc = "
            ),
            "{text}"
        );
        let err = connect(
            Service::Image,
            Some("tcp://1.2.3.4:5"),
            Duration::from_secs(1),
        )
        .await
        .unwrap_err();
        assert!(format!("{err:#}").contains("tcp"), "{err:#}");
    }
}
