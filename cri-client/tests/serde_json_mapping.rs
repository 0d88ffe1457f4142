//! The `serde` feature: CRI messages in the protobuf JSON mapping, as `crictl`
//! reads configs (proto or JSON field names) and prints `-o json`.
#![cfg(feature = "serde")]

use cri_client::v1::{
    ContainerConfig, ImageSpec, NamespaceMode, PodSandbox, PodSandboxConfig, PodSandboxMetadata,
    PodSandboxState,
};

#[test]
fn pod_config_reads_proto_names_json_names_and_skips_unknown_fields() {
    let config: PodSandboxConfig = serde_json::from_str(
        r#"{
            "metadata": {"name": "web", "namespace": "default", "uid": "u1", "attempt": 2},
            "log_directory": "/var/log/pods/web",
            "dnsConfig": {"servers": ["10.0.0.10"]},
            "port_mappings": [{"protocol": 1, "container_port": 80, "host_port": "8080"}],
            "linux": {"security_context": {"namespace_options": {"network": "NODE"}}},
            "labels": {"app": "web"},
            "a_field_from_a_newer_schema": {"ignored": true}
        }"#,
    )
    .expect("a crictl pod config parses");
    let metadata = config.metadata.as_ref().unwrap();
    assert_eq!(
        (metadata.name.as_str(), metadata.attempt),
        ("web", 2),
        "nested messages"
    );
    assert_eq!(
        config.log_directory, "/var/log/pods/web",
        "proto field name"
    );
    assert_eq!(
        config.dns_config.as_ref().unwrap().servers,
        ["10.0.0.10"],
        "JSON field name"
    );
    let port = &config.port_mappings[0];
    assert_eq!(
        (port.protocol, port.container_port, port.host_port),
        (1, 80, 8080),
        "an enum as a number, an int32 as a string"
    );
    let network = config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .and_then(|s| s.namespace_options.as_ref())
        .unwrap()
        .network;
    assert_eq!(network, NamespaceMode::Node as i32, "an enum as its name");
    assert_eq!(config.labels["app"], "web");
}

#[test]
fn container_config_reads_lists_and_nested_messages() {
    let config: ContainerConfig = serde_json::from_str(
        r#"{"metadata": {"name": "app"}, "image": {"image": "busybox"},
            "command": ["sleep", "3600"], "envs": [{"key": "A", "value": "1"}],
            "log_path": "app.log", "linux": {"resources": {"memory_limit_in_bytes": 1048576}}}"#,
    )
    .unwrap();
    assert_eq!(config.metadata.unwrap().name, "app");
    assert_eq!(config.image.unwrap().image, "busybox");
    assert_eq!(config.command, ["sleep", "3600"]);
    assert_eq!(
        (config.envs[0].key.as_str(), config.envs[0].value.as_str()),
        ("A", "1")
    );
    assert_eq!(config.log_path, "app.log");
    let memory = config
        .linux
        .unwrap()
        .resources
        .unwrap()
        .memory_limit_in_bytes;
    assert_eq!(memory, 1_048_576, "an int64 as a JSON number");
}

#[test]
fn output_uses_json_names_enum_names_int64_strings_and_emits_defaults() {
    let pod = PodSandbox {
        id: "abc".into(),
        metadata: Some(PodSandboxMetadata {
            name: "web".into(),
            uid: "u1".into(),
            namespace: "default".into(),
            attempt: 0,
        }),
        state: PodSandboxState::SandboxReady as i32,
        created_at: 1_700_000_000_123_456_789,
        ..Default::default()
    };
    let json = serde_json::to_value(&pod).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "id": "abc",
            "metadata": {"name": "web", "uid": "u1", "namespace": "default", "attempt": 0},
            "state": "SANDBOX_READY",
            "createdAt": "1700000000123456789",
            "labels": {},
            "annotations": {},
            "runtimeHandler": ""
        })
    );
    // Field order is the schema's, as Go's protojson writes it.
    let text = serde_json::to_string(&pod).unwrap();
    let positions: Vec<usize> = ["\"id\"", "\"metadata\"", "\"state\"", "\"createdAt\""]
        .iter()
        .map(|key| text.find(key).unwrap())
        .collect();
    assert!(positions.is_sorted(), "{text}");
}

#[test]
fn round_trip_keeps_every_field() {
    let spec = ImageSpec {
        image: "busybox:1.35".into(),
        annotations: [("k".to_owned(), "v".to_owned())].into(),
        user_specified_image: "busybox".into(),
        runtime_handler: String::new(),
        image_ref: "sha256:1".into(),
    };
    let text = serde_json::to_string(&spec).unwrap();
    let back: ImageSpec = serde_json::from_str(&text).unwrap();
    assert_eq!(back, spec);
}

#[test]
fn bad_values_are_errors_naming_the_problem() {
    let err = serde_json::from_str::<PodSandboxConfig>(r#"{"metadata": {"attempt": "many"}}"#)
        .unwrap_err()
        .to_string();
    assert!(err.contains("many") || err.contains("invalid"), "{err}");
    let err = serde_json::from_str::<PodSandboxConfig>(
        r#"{"linux": {"security_context": {"namespace_options": {"network": "NOWHERE"}}}}"#,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("NOWHERE"), "{err}");
}
