//! `version`, `info`, `runtime-config`, `events`.

use std::time::Duration;

use anyhow::{Context as _, anyhow};
use cri_client::tonic;
use cri_client::v1::{self, CgroupDriver};

use super::super::client::Clients;
use super::super::errors::{CriResultExt as _, status_text};
use super::super::json::{self, StatusData, Value};
use super::super::log;
use super::super::table::Table;
use super::check_format;
use crate::crictl::cli::{EventsArgs, InfoArgs};

/// `crictl version`.
pub(super) async fn version(clients: &Clients) -> anyhow::Result<()> {
    let client = clients.runtime().await?;
    log::debug("VersionRequest: version: \"v1\"");
    let v = client
        .version()
        .await
        .cri()
        .context("getting the runtime version")?;
    log::debug(&format!("VersionResponse: {v:?}"));
    print!("{}", version_text(&v));
    Ok(())
}

/// The text of `crictl version` (Go's `fmt.Println("Version: ", v)`, hence
/// two spaces).
fn version_text(v: &v1::VersionResponse) -> String {
    format!(
        "Version:  {}\nRuntimeName:  {}\nRuntimeVersion:  {}\nRuntimeApiVersion:  {}\n",
        v.version, v.runtime_name, v.runtime_version, v.runtime_api_version
    )
}

/// `crictl info`.
pub(super) async fn info(clients: &Clients, args: InfoArgs) -> anyhow::Result<()> {
    check_format(&args.output, &["json", "yaml"])?;
    let client = clients.runtime().await?;
    let verbose = !args.quiet;
    log::debug(&format!("StatusRequest: verbose: {verbose}"));
    let response = client
        .status(verbose)
        .await
        .cri()
        .context("getting status of runtime")?;
    log::debug(&format!("StatusResponse: {response:?}"));
    let data = info_data(&response)?;
    let text = json::status_output(vec![data], &args.output).map_err(|e| anyhow!(e))?;
    print!("{text}");
    Ok(())
}

fn info_data(response: &v1::StatusResponse) -> anyhow::Result<StatusData> {
    let status = match &response.status {
        Some(status) => Some(json::to_value(status).context("create status JSON")?),
        None => Some(Value::Object(Vec::new())),
    };
    let runtime_handlers = (!response.runtime_handlers.is_empty()).then(|| {
        Value::Array(
            response
                .runtime_handlers
                .iter()
                .map(runtime_handler_value)
                .collect(),
        )
    });
    let features = response.features.as_ref().map(|f| {
        go_struct(&[
            ("supplemental_groups_policy", f.supplemental_groups_policy),
            (
                "user_namespaces_host_network",
                f.user_namespaces_host_network,
            ),
        ])
    });
    let mut info: Vec<(String, String)> = response
        .info
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    info.sort();
    Ok(StatusData {
        status,
        runtime_handlers,
        features,
        info,
    })
}

/// Go's `encoding/json` of a struct of booleans with `omitempty` tags (crictl
/// marshals `runtimeHandlers` and `features` that way, not with protojson).
fn go_struct(fields: &[(&str, bool)]) -> Value {
    Value::Object(
        fields
            .iter()
            .filter(|(_, on)| *on)
            .map(|(name, on)| ((*name).to_owned(), Value::Bool(*on)))
            .collect(),
    )
}

fn runtime_handler_value(handler: &v1::RuntimeHandler) -> Value {
    let mut fields = Vec::new();
    if !handler.name.is_empty() {
        fields.push(("name".to_owned(), Value::String(handler.name.clone())));
    }
    if let Some(f) = &handler.features {
        fields.push((
            "features".to_owned(),
            go_struct(&[
                ("recursive_read_only_mounts", f.recursive_read_only_mounts),
                ("user_namespaces", f.user_namespaces),
            ]),
        ));
    }
    Value::Object(fields)
}

/// A raw call with the global timeout as its deadline, for the RPCs the
/// high-level client answers `None` for when they are unimplemented (crictl
/// reports the runtime's error instead).
async fn raw_call<T, Fut>(timeout: Duration, call: Fut) -> Result<T, tonic::Status>
where
    Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    match tokio::time::timeout(timeout, call).await {
        Ok(answer) => answer.map(tonic::Response::into_inner),
        Err(_) => Err(tonic::Status::deadline_exceeded(format!(
            "context deadline exceeded (no answer within {timeout:?})"
        ))),
    }
}

fn request_with_timeout<T>(message: T, timeout: Duration) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(timeout);
    request
}

/// `crictl runtime-config`.
pub(super) async fn runtime_config(clients: &Clients) -> anyhow::Result<()> {
    let client = clients.runtime().await.context("get runtime client")?;
    let timeout = clients.settings().timeout;
    let mut raw = client.runtime_service();
    let response = raw_call(
        timeout,
        raw.runtime_config(request_with_timeout(v1::RuntimeConfigRequest {}, timeout)),
    )
    .await
    .map_err(|status| anyhow!(status_text(&status)))
    .context("call RuntimeConfig RPC")
    .context("get runtime config")?;
    print!("{}", runtime_config_text(&response));
    Ok(())
}

fn runtime_config_text(response: &v1::RuntimeConfigResponse) -> String {
    let mut table = Table::with_min_width(10);
    if let Some(linux) = &response.linux {
        let driver = CgroupDriver::try_from(linux.cgroup_driver).map_or_else(
            |_| linux.cgroup_driver.to_string(),
            |d| d.as_str_name().to_owned(),
        );
        table.row(["cgroup driver:".to_owned(), driver]);
    }
    table.render()
}

/// `crictl events`.
pub(super) async fn events(clients: &Clients, args: EventsArgs) -> anyhow::Result<()> {
    match args.output.as_str() {
        "json" | "yaml" => {
            if args.template.as_deref().is_some_and(|t| !t.is_empty()) {
                return Err(anyhow!(
                    "template can't be used with {:?} format",
                    args.output
                ));
            }
        }
        "go-template" => check_format("go-template", &[])?,
        other => return Err(anyhow!("don't support {other:?} format")),
    }
    let client = clients.runtime().await?;
    let mut raw = client.runtime_service();
    log::debug("getting container events");
    let opened = raw
        .get_container_events(tonic::Request::new(v1::GetEventsRequest {}))
        .await
        .map_err(|status| anyhow!(status_text(&status)))
        .context("getting container events")?;
    let mut stream = opened.into_inner();
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    loop {
        tokio::select! {
            _ = &mut interrupted => return Ok(()),
            event = stream.message() => match event {
                Ok(None) => return Ok(()),
                Err(status) => {
                    return Err(anyhow!(status_text(&status))).context("getting container events");
                }
                Ok(Some(event)) => {
                    let text = if args.output == "yaml" {
                        json::message_yaml(&event)
                    } else {
                        json::message_json(&event)
                    };
                    match text {
                        Ok(text) => println!("{}", text.trim_end()),
                        Err(e) => println!("failed to format container event with the error: {e}"),
                    }
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_lines_have_two_spaces_like_go_println() {
        let v = v1::VersionResponse {
            version: "0.1.0".into(),
            runtime_name: "containerd".into(),
            runtime_version: "1.6.20~ds1".into(),
            runtime_api_version: "v1".into(),
        };
        assert_eq!(
            version_text(&v),
            "Version:  0.1.0\nRuntimeName:  containerd\nRuntimeVersion:  1.6.20~ds1\nRuntimeApiVersion:  v1\n"
        );
    }

    #[test]
    fn info_shows_status_handlers_features_and_parsed_info() {
        let response = v1::StatusResponse {
            status: Some(v1::RuntimeStatus {
                conditions: vec![v1::RuntimeCondition {
                    r#type: "RuntimeReady".into(),
                    status: true,
                    reason: String::new(),
                    message: String::new(),
                }],
            }),
            info: [(
                "config".to_owned(),
                r#"{"cni":{"binDir":"/opt"}}"#.to_owned(),
            )]
            .into(),
            runtime_handlers: vec![v1::RuntimeHandler {
                name: "runc".into(),
                features: Some(v1::RuntimeHandlerFeatures {
                    recursive_read_only_mounts: true,
                    user_namespaces: false,
                }),
            }],
            features: None,
        };
        let text = json::status_output(vec![info_data(&response).unwrap()], "json").unwrap();
        let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            parsed,
            serde_json::json!({
                "config": {"cni": {"binDir": "/opt"}},
                "runtimeHandlers": [{"name": "runc", "features": {"recursive_read_only_mounts": true}}],
                "status": {"conditions": [{"type": "RuntimeReady", "status": true, "reason": "", "message": ""}]}
            })
        );
        assert!(text.find("\"config\"").unwrap() < text.find("\"status\"").unwrap());
    }

    #[test]
    fn runtime_config_prints_the_cgroup_driver() {
        let response = v1::RuntimeConfigResponse {
            linux: Some(v1::LinuxRuntimeConfiguration {
                cgroup_driver: CgroupDriver::Cgroupfs as i32,
            }),
        };
        assert_eq!(
            runtime_config_text(&response),
            "cgroup driver:   CGROUPFS\n"
        );
        assert_eq!(
            runtime_config_text(&v1::RuntimeConfigResponse::default()),
            ""
        );
    }
}
