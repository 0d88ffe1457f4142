//! crictl's client configuration: the YAML file (`/etc/crictl.yaml`, or
//! `-c`/`CRI_CONFIG_FILE`) and how flags override it.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where crictl looks for its configuration by default.
pub(crate) const DEFAULT_CONFIG_PATH: &str = "/etc/crictl.yaml";

/// The default per-call timeout (`--timeout`), 2 seconds.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

/// The endpoints tried in order when none is configured (deprecated in
/// crictl, which warns about it).
pub(crate) const DEFAULT_RUNTIME_ENDPOINTS: [&str; 3] = [
    "unix:///run/containerd/containerd.sock",
    "unix:///run/crio/crio.sock",
    "unix:///var/run/cri-dockerd.sock",
];

/// The settings a config file holds. Keys absent from the file keep their
/// zero values, as in crictl.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct FileConfig {
    /// `runtime-endpoint`.
    pub(crate) runtime_endpoint: String,
    /// `image-endpoint`.
    pub(crate) image_endpoint: String,
    /// `timeout`, whole seconds; 0 or less means the default.
    pub(crate) timeout: i64,
    /// `debug`.
    pub(crate) debug: bool,
    /// `pull-image-on-create`: `create` pulls the image first.
    pub(crate) pull_image_on_create: bool,
    /// `disable-pull-on-run`: `run` does not pull the image.
    pub(crate) disable_pull_on_run: bool,
}

/// Parses a crictl config file. Values are read as text, as crictl reads its
/// YAML nodes: `timeout` must be an integer and the booleans Go booleans;
/// unknown keys are errors.
pub(crate) fn parse_config(text: &str) -> Result<FileConfig, String> {
    let document: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(text).map_err(|e| e.to_string())?;
    let mut config = FileConfig::default();
    let mapping = match document {
        serde_yaml_ng::Value::Null => return Ok(config),
        serde_yaml_ng::Value::Mapping(mapping) => mapping,
        other => {
            return Err(format!(
                "the configuration must be a mapping of options, not {}",
                yaml_kind(&other)
            ));
        }
    };
    for (key, value) in mapping {
        let name = scalar_text(&key);
        let value = scalar_text(&value);
        let invalid = |e: String| format!("parsing config option '{name}': {e}");
        match name.as_str() {
            "runtime-endpoint" => config.runtime_endpoint = value,
            "image-endpoint" => config.image_endpoint = value,
            "timeout" => config.timeout = go_atoi(&value).map_err(invalid)?,
            "debug" => config.debug = go_parse_bool(&value).map_err(invalid)?,
            "pull-image-on-create" => {
                config.pull_image_on_create = go_parse_bool(&value).map_err(invalid)?;
            }
            "disable-pull-on-run" => {
                config.disable_pull_on_run = go_parse_bool(&value).map_err(invalid)?;
            }
            _ => return Err(format!("Config option '{name}' is not valid")),
        }
    }
    Ok(config)
}

fn yaml_kind(value: &serde_yaml_ng::Value) -> &'static str {
    match value {
        serde_yaml_ng::Value::Null => "null",
        serde_yaml_ng::Value::Bool(_) => "a boolean",
        serde_yaml_ng::Value::Number(_) => "a number",
        serde_yaml_ng::Value::String(_) => "a string",
        serde_yaml_ng::Value::Sequence(_) => "a list",
        serde_yaml_ng::Value::Mapping(_) => "a mapping",
        serde_yaml_ng::Value::Tagged(_) => "a tagged value",
    }
}

/// The text of a YAML scalar, as a YAML node's `Value` holds it.
fn scalar_text(value: &serde_yaml_ng::Value) -> String {
    match value {
        serde_yaml_ng::Value::Null => String::new(),
        serde_yaml_ng::Value::Bool(b) => b.to_string(),
        serde_yaml_ng::Value::Number(n) => n.to_string(),
        serde_yaml_ng::Value::String(s) => s.clone(),
        other => serde_yaml_ng::to_string(other)
            .unwrap_or_default()
            .trim_end()
            .to_owned(),
    }
}

/// Go's `strconv.Atoi`, with its error text.
fn go_atoi(text: &str) -> Result<i64, String> {
    text.parse::<i64>()
        .map_err(|_| format!("strconv.Atoi: parsing {text:?}: invalid syntax"))
}

/// Go's `strconv.ParseBool`, with its error text.
fn go_parse_bool(text: &str) -> Result<bool, String> {
    match text {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(format!(
            "strconv.ParseBool: parsing {text:?}: invalid syntax"
        )),
    }
}

/// The global flags as given (`None`: not set on the command line or in the
/// environment).
#[derive(Debug, Clone, Default)]
pub(crate) struct GlobalFlags {
    /// `-c/--config` or `CRI_CONFIG_FILE`.
    pub(crate) config: Option<String>,
    /// `-r/--runtime-endpoint` or `CONTAINER_RUNTIME_ENDPOINT`.
    pub(crate) runtime_endpoint: Option<String>,
    /// `-i/--image-endpoint` or `IMAGE_SERVICE_ENDPOINT`.
    pub(crate) image_endpoint: Option<String>,
    /// `-t/--timeout`.
    pub(crate) timeout: Option<Duration>,
    /// `-D/--debug`.
    pub(crate) debug: bool,
}

/// What the commands run with, after flags, environment and config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Settings {
    /// The runtime endpoint; `None` means trying the deprecated defaults.
    pub(crate) runtime_endpoint: Option<String>,
    /// The image endpoint; `None` means the runtime endpoint.
    pub(crate) image_endpoint: Option<String>,
    /// The per-call timeout.
    pub(crate) timeout: Duration,
    /// Debug logging.
    pub(crate) debug: bool,
    /// `create` pulls the image first.
    pub(crate) pull_image_on_create: bool,
    /// `run` does not pull the image.
    pub(crate) disable_pull_on_run: bool,
}

fn non_empty(value: Option<&str>) -> Option<String> {
    value.filter(|v| !v.is_empty()).map(str::to_owned)
}

/// crictl's precedence: a flag (or its environment variable) wins over the
/// file, the file over the defaults; a timeout of zero or less means 2s.
pub(crate) fn resolve_settings(flags: &GlobalFlags, file: Option<&FileConfig>) -> Settings {
    let file_default = FileConfig::default();
    let file_values = file.unwrap_or(&file_default);
    let runtime_endpoint = non_empty(flags.runtime_endpoint.as_deref())
        .or_else(|| non_empty(Some(&file_values.runtime_endpoint)));
    let image_endpoint = non_empty(flags.image_endpoint.as_deref())
        .or_else(|| non_empty(Some(&file_values.image_endpoint)));
    let timeout = match flags.timeout {
        Some(t) if !t.is_zero() => t,
        Some(_) => DEFAULT_TIMEOUT,
        None => u64::try_from(file_values.timeout)
            .ok()
            .filter(|secs| *secs > 0)
            .map_or(DEFAULT_TIMEOUT, Duration::from_secs),
    };
    Settings {
        runtime_endpoint,
        image_endpoint,
        timeout,
        debug: flags.debug || file_values.debug,
        pull_image_on_create: file_values.pull_image_on_create,
        disable_pull_on_run: file_values.disable_pull_on_run,
    }
}

/// Where a missing config file is looked for next: `crictl.yaml` beside the
/// binary.
pub(crate) fn fallback_config_path(executable: &Path) -> PathBuf {
    executable
        .parent()
        .unwrap_or_else(|| Path::new("/"))
        .join("crictl.yaml")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_config_parses() {
        let config = parse_config(
            "runtime-endpoint: unix:///run/containerd/containerd.sock\n\
             image-endpoint: unix:///run/images.sock\n\
             timeout: 10\n\
             debug: true\n\
             pull-image-on-create: True\n\
             disable-pull-on-run: \"1\"\n",
        )
        .unwrap();
        assert_eq!(
            config,
            FileConfig {
                runtime_endpoint: "unix:///run/containerd/containerd.sock".into(),
                image_endpoint: "unix:///run/images.sock".into(),
                timeout: 10,
                debug: true,
                pull_image_on_create: true,
                disable_pull_on_run: true,
            }
        );
    }

    #[test]
    fn empty_files_and_comments_are_fine() {
        assert_eq!(parse_config(""), Ok(FileConfig::default()));
        assert_eq!(parse_config("# nothing\n"), Ok(FileConfig::default()));
    }

    #[test]
    fn bad_values_and_keys_read_like_crictl() {
        assert_eq!(
            parse_config("timeout: 2s\n"),
            Err(
                "parsing config option 'timeout': strconv.Atoi: parsing \"2s\": invalid syntax"
                    .into()
            )
        );
        assert_eq!(
            parse_config("debug: yes\n"),
            Err(
                "parsing config option 'debug': strconv.ParseBool: parsing \"yes\": invalid syntax"
                    .into()
            )
        );
        assert_eq!(
            parse_config("runtime_endpoint: x\n"),
            Err("Config option 'runtime_endpoint' is not valid".into())
        );
        assert!(parse_config("- a\n- b\n").unwrap_err().contains("a list"));
        assert!(parse_config("timeout: [\n").is_err());
    }

    #[test]
    fn flags_win_over_the_file_and_the_file_over_defaults() {
        let file = FileConfig {
            runtime_endpoint: "unix:///file.sock".into(),
            timeout: 10,
            debug: true,
            pull_image_on_create: true,
            ..Default::default()
        };
        let none = resolve_settings(&GlobalFlags::default(), None);
        assert_eq!(none.runtime_endpoint, None);
        assert_eq!(none.timeout, DEFAULT_TIMEOUT);
        assert!(!none.debug);

        let from_file = resolve_settings(&GlobalFlags::default(), Some(&file));
        assert_eq!(
            from_file.runtime_endpoint.as_deref(),
            Some("unix:///file.sock")
        );
        assert_eq!(from_file.image_endpoint, None);
        assert_eq!(from_file.timeout, Duration::from_secs(10));
        assert!(from_file.debug && from_file.pull_image_on_create);

        let flags = GlobalFlags {
            runtime_endpoint: Some("unix:///flag.sock".into()),
            image_endpoint: Some("unix:///img.sock".into()),
            timeout: Some(Duration::from_millis(500)),
            ..Default::default()
        };
        let from_flags = resolve_settings(&flags, Some(&file));
        assert_eq!(
            from_flags.runtime_endpoint.as_deref(),
            Some("unix:///flag.sock")
        );
        assert_eq!(
            from_flags.image_endpoint.as_deref(),
            Some("unix:///img.sock")
        );
        assert_eq!(from_flags.timeout, Duration::from_millis(500));
    }

    #[test]
    fn zero_or_negative_timeouts_mean_the_default() {
        let zero_flag = GlobalFlags {
            timeout: Some(Duration::ZERO),
            ..Default::default()
        };
        assert_eq!(resolve_settings(&zero_flag, None).timeout, DEFAULT_TIMEOUT);
        let negative_file = FileConfig {
            timeout: -3,
            ..Default::default()
        };
        assert_eq!(
            resolve_settings(&GlobalFlags::default(), Some(&negative_file)).timeout,
            DEFAULT_TIMEOUT
        );
    }

    #[test]
    fn the_fallback_is_beside_the_binary() {
        assert_eq!(
            fallback_config_path(Path::new("/usr/local/bin/crictl")),
            PathBuf::from("/usr/local/bin/crictl.yaml")
        );
    }
}
