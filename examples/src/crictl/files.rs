//! Pod and container configs in crictl's file format: a `PodSandboxConfig` or
//! `ContainerConfig` as JSON or YAML, with the proto field names
//! (`log_directory`) or the JSON ones (`logDirectory`).

use std::io::Read;

use cri_client::v1::{ContainerConfig, PodSandboxConfig};
use serde::de::DeserializeOwned;

use super::log::{self, go_quote};

/// Decodes JSON (text starting with `{`) or YAML into a CRI message.
pub(crate) fn decode<T: DeserializeOwned>(text: &str) -> Result<T, String> {
    if text.trim_start().starts_with('{') {
        serde_json::from_str(text).map_err(|e| e.to_string())
    } else {
        // Through JSON, as Go's YAMLOrJSONDecoder does.
        let value: serde_json::Value = serde_yaml_ng::from_str(text).map_err(|e| e.to_string())?;
        serde_json::from_value(value).map_err(|e| e.to_string())
    }
}

fn read(path: &str) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            format!("config at {path} not found")
        } else {
            format!("open {path}: {e}")
        }
    })
}

/// Reads a pod sandbox config as crictl's `loadPodSandboxConfig`: metadata
/// with name and namespace required, a random UID when none is given.
pub(crate) fn load_pod_config(path: &str) -> Result<PodSandboxConfig, String> {
    let text = read(path)?;
    let config = decode::<PodSandboxConfig>(&text).map_err(|e| format!("{path}: {e}"))?;
    check_pod_config(config, random_uuid)
}

/// The checks and defaults of a decoded pod config.
pub(crate) fn check_pod_config(
    mut config: PodSandboxConfig,
    new_uid: impl FnOnce() -> String,
) -> Result<PodSandboxConfig, String> {
    let Some(metadata) = config.metadata.as_mut() else {
        return Err("metadata is not set".into());
    };
    if metadata.uid.is_empty() {
        metadata.uid = new_uid();
    }
    if metadata.name.is_empty() || metadata.namespace.is_empty() {
        return Err(format!(
            "name or namespace is not in metadata {}",
            go_quote(&metadata_text(&[
                ("name", &metadata.name),
                ("uid", &metadata.uid),
                ("namespace", &metadata.namespace),
            ]))
        ));
    }
    if config
        .linux
        .as_ref()
        .is_some_and(|linux| linux.cgroup_parent.is_empty())
    {
        log::warn(
            "cgroup_parent is not set. Use `runtime-config` to get the runtime cgroup driver",
        );
    }
    Ok(config)
}

/// Reads a container config as crictl's `loadContainerConfig`: metadata with
/// a name required.
pub(crate) fn load_container_config(path: &str) -> Result<ContainerConfig, String> {
    let text = read(path)?;
    let config = decode::<ContainerConfig>(&text).map_err(|e| format!("{path}: {e}"))?;
    check_container_config(config)
}

/// The checks of a decoded container config.
pub(crate) fn check_container_config(config: ContainerConfig) -> Result<ContainerConfig, String> {
    let Some(metadata) = config.metadata.as_ref() else {
        return Err("metadata is not set".into());
    };
    if metadata.name.is_empty() {
        return Err(format!(
            "name is not in metadata {}",
            go_quote(&metadata_text(&[(
                "attempt",
                &metadata.attempt.to_string()
            )]))
        ));
    }
    Ok(config)
}

/// Metadata in the protobuf text style Go prints (`name:"x" uid:"y"`), set
/// fields only.
fn metadata_text(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .filter(|(_, value)| !value.is_empty() && *value != "0")
        .map(|(key, value)| format!("{key}:{value:?}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A random (version 4) UUID, for pods whose config has no UID.
pub(crate) fn random_uuid() -> String {
    let mut bytes = [0u8; 16];
    let filled = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
    if filled.is_err() {
        // No /dev/urandom: derive the bytes from the clock and process ID.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let seed = nanos ^ (u128::from(std::process::id()) << 64);
        bytes = seed.to_le_bytes();
    }
    format_uuid_v4(bytes)
}

fn format_uuid_v4(mut bytes: [u8; 16]) -> String {
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_and_yaml_pod_configs_decode_alike() {
        let json = r#"{"metadata": {"name": "web", "namespace": "default"},
                      "log_directory": "/tmp/web", "labels": {"app": "web"}}"#;
        let yaml = "metadata:\n  name: web\n  namespace: default\nlogDirectory: /tmp/web\nlabels:\n  app: web\n";
        let a: PodSandboxConfig = decode(json).unwrap();
        let b: PodSandboxConfig = decode(yaml).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.log_directory, "/tmp/web");
    }

    #[test]
    fn yaml_container_configs_decode() {
        let yaml = "metadata:\n  name: app\nimage:\n  image: busybox:1.35\ncommand:\n- sleep\n- \"3600\"\nlinux:\n  security_context:\n    namespace_options:\n      network: 2\n";
        let config = check_container_config(decode(yaml).unwrap()).unwrap();
        assert_eq!(config.image.unwrap().image, "busybox:1.35");
        assert_eq!(config.command, ["sleep", "3600"]);
    }

    #[test]
    fn decoding_errors_say_what_is_wrong() {
        let err = decode::<PodSandboxConfig>("{\"metadata\": ").unwrap_err();
        assert!(err.contains("EOF"), "{err}");
        let err = decode::<PodSandboxConfig>("metadata:\n  attempt: many\n").unwrap_err();
        assert!(err.contains("invalid digit"), "{err}");
    }

    #[test]
    fn pod_configs_need_name_and_namespace_and_get_a_uid() {
        let config: PodSandboxConfig =
            decode(r#"{"metadata": {"name": "web", "namespace": "default"}}"#).unwrap();
        let config = check_pod_config(config, || "generated".into()).unwrap();
        assert_eq!(config.metadata.unwrap().uid, "generated");

        let no_metadata: PodSandboxConfig = decode("{}").unwrap();
        assert_eq!(
            check_pod_config(no_metadata, String::new),
            Err("metadata is not set".into())
        );
        let no_namespace: PodSandboxConfig =
            decode(r#"{"metadata": {"name": "web", "uid": "u"}}"#).unwrap();
        assert_eq!(
            check_pod_config(no_namespace, String::new),
            Err("name or namespace is not in metadata \"name:\\\"web\\\" uid:\\\"u\\\"\"".into())
        );
    }

    #[test]
    fn container_configs_need_a_name() {
        let config: ContainerConfig = decode(r#"{"metadata": {}}"#).unwrap();
        assert_eq!(
            check_container_config(config),
            Err("name is not in metadata \"\"".into())
        );
        let config: ContainerConfig = decode(r#"{"image": {"image": "x"}}"#).unwrap();
        assert_eq!(
            check_container_config(config),
            Err("metadata is not set".into())
        );
    }

    #[test]
    fn missing_files_read_like_crictl() {
        assert_eq!(
            load_pod_config("/nonexistent/pod.json"),
            Err("config at /nonexistent/pod.json not found".into())
        );
    }

    #[test]
    fn uuids_are_version_4() {
        assert_eq!(
            format_uuid_v4([0xff; 16]),
            "ffffffff-ffff-4fff-bfff-ffffffffffff"
        );
        let uuid = random_uuid();
        assert_eq!(uuid.len(), 36);
        assert_eq!(&uuid[14..15], "4");
    }
}
