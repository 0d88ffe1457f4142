//! Network configuration lists (conflists) as libcni loads them, version selection and
//! negotiation, and the configuration a plugin receives on stdin.
//!
//! Everything here is pure except the loaders ([`NetworkConfigList::from_file`],
//! [`load_network`], [`load_first_files`]), which only read files.
//!
//! # Example
//!
//! ```
//! use cni_exec::config::{NetworkConfigList, StdinParams};
//! use serde_json::json;
//!
//! let list = NetworkConfigList::from_bytes(br#"{
//!     "cniVersion": "1.0.0", "cniVersions": ["0.4.0", "1.1.0"], "name": "podnet",
//!     "plugins": [
//!         {"type": "bridge", "bridge": "cni0", "ipam": {"type": "host-local"}},
//!         {"type": "portmap", "capabilities": {"portMappings": true}}
//!     ]
//! }"#).unwrap();
//! assert_eq!(list.cni_version, "1.1.0");
//!
//! // The Debian 1.1.1 plugins stop at 1.0.0: negotiate down.
//! let v = ["0.4.0", "1.0.0"];
//! let version = cni_exec::config::negotiate_version(
//!     &list.cni_version, [("bridge", &v[..]), ("portmap", &v[..])]).unwrap();
//! assert_eq!(version, "1.0.0");
//!
//! let caps = json!({"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]});
//! let stdin = list.plugins[1].request_config(&StdinParams {
//!     network_name: &list.name,
//!     cni_version: &version,
//!     capability_args: caps.as_object(),
//!     ..StdinParams::default()
//! });
//! assert_eq!(stdin["runtimeConfig"]["portMappings"][0]["hostPort"], 8080);
//! assert_eq!(stdin["cniVersion"], "1.0.0");
//! ```

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};

use serde::Serialize;
/// Re-exported: the JSON types of plugin configurations, so users match the version.
pub use serde_json::{Map, Value};

/// The highest CNI specification version this crate implements (libcni `version.Current()`).
pub const CURRENT_VERSION: &str = "1.1.0";

/// Every CNI specification version with a result shape, oldest first.
pub const KNOWN_VERSIONS: &[&str] = &[
    "0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0",
];

/// What the configuration bytes are called in errors when they come from no file.
const BYTES_ORIGIN: &str = "network configuration";

/// An error while loading, validating or negotiating a network configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A file or directory could not be read.
    #[error("cannot read {}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The bytes are not JSON, or not a JSON object.
    #[error("{origin}: invalid json: {detail}")]
    Json {
        /// The file path, or "network configuration" for bytes.
        origin: String,
        /// What the JSON parser said.
        detail: String,
    },
    /// A field has a wrong type or value.
    #[error("{origin}: field `{field}`: {problem}")]
    Field {
        /// The file path, or "network configuration" for bytes.
        origin: String,
        /// The field, e.g. `name`, `cniVersions[1]` or `plugins[0].type`.
        field: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The list has no plugins, neither inline nor in `<dir>/<name>/*.conf`.
    #[error("{origin}: no plugin configs found")]
    NoPlugins {
        /// The file path, or "network configuration" for bytes.
        origin: String,
    },
    /// The directory holds no configuration file at all.
    #[error("no network configurations found in {}", dir.display())]
    NoConfigsFound {
        /// The configuration directory.
        dir: PathBuf,
    },
    /// No configuration in the directory has the requested network name.
    #[error("no network configuration named {name:?} in {}", dir.display())]
    NotFound {
        /// The configuration directory.
        dir: PathBuf,
        /// The network name looked for.
        name: String,
    },
    /// A version string is not `major[.minor[.micro]]`.
    #[error("invalid cni version {version:?}")]
    InvalidVersion {
        /// The string.
        version: String,
    },
    /// The plugins of a list have no supported version in common at or below the
    /// configuration's version.
    #[error("no cni version at or below {selected} is supported by all plugins ({plugins})")]
    NoCommonVersion {
        /// The version selected from the configuration.
        selected: String,
        /// Each plugin and the versions it reports, e.g. `bridge: [0.4.0, 1.0.0]`.
        plugins: String,
    },
}

impl ConfigError {
    fn field(origin: &str, field: impl Into<String>, problem: impl Into<String>) -> Self {
        ConfigError::Field {
            origin: origin.to_owned(),
            field: field.into(),
            problem: problem.into(),
        }
    }

    /// Whether the error says that nothing matched (no file, or no network of that name),
    /// as opposed to a broken file.
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            ConfigError::NoConfigsFound { .. } | ConfigError::NotFound { .. }
        )
    }
}

/// A parsed CNI version: `(major, minor, micro)`.
pub type VersionTriple = (u32, u32, u32);

/// Parses a CNI version as libcni's `version.ParseVersion` does: `major[.minor[.micro]]`,
/// missing parts are 0, and the empty string means `0.1.0`.
pub fn parse_version(version: &str) -> Result<VersionTriple, ConfigError> {
    if version.is_empty() {
        return Ok((0, 1, 0));
    }
    let invalid = || ConfigError::InvalidVersion {
        version: version.to_owned(),
    };
    let mut parts = [0u32; 3];
    for (i, part) in version.split('.').enumerate() {
        if i == 3 || part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid());
        }
        parts[i] = part.parse().map_err(|_| invalid())?;
    }
    Ok((parts[0], parts[1], parts[2]))
}

/// Compares two CNI versions; an error if either does not parse.
pub fn compare_versions(a: &str, b: &str) -> Result<Ordering, ConfigError> {
    Ok(parse_version(a)?.cmp(&parse_version(b)?))
}

/// Selects the configuration version as libcni's `NetworkConfFromBytes` does.
///
/// Without `cniVersions`, `cniVersion` is kept as written. With it, the result is the
/// highest of `cniVersions` ∪ {`cniVersion`} that is not above [`CURRENT_VERSION`]; if all
/// are above, `cniVersion` is kept. Plugins' VERSION answers are not consulted here: see
/// [`negotiate_version`].
pub fn select_version(
    cni_version: &str,
    cni_versions: Option<&[String]>,
) -> Result<String, ConfigError> {
    let Some(versions) = cni_versions else {
        return Ok(cni_version.to_owned());
    };
    let current = parse_version(CURRENT_VERSION)?;
    let mut best: Option<(VersionTriple, &str)> = None;
    let candidates = versions
        .iter()
        .map(String::as_str)
        .chain((!cni_version.is_empty()).then_some(cni_version));
    for v in candidates {
        let parsed = parse_version(v)?;
        if parsed <= current && best.is_none_or(|(b, _)| parsed > b) {
            best = Some((parsed, v));
        }
    }
    Ok(best.map_or(cni_version, |(_, v)| v).to_owned())
}

/// The highest version that every plugin reports in its VERSION answer and that is not
/// above `selected` (the configuration's version).
///
/// libcni does not do this; the specification allows it ("MAY take the plugins' VERSION
/// output into account"). It matters for plugins such as Debian's 1.1.1 set, which support
/// up to 1.0.0 and reject 1.1.0 with error code 1. Versions that do not parse in a plugin's
/// list are ignored. With no plugins the answer is `selected`.
pub fn negotiate_version<'a, S>(
    selected: &str,
    plugins: impl IntoIterator<Item = (&'a str, &'a [S])>,
) -> Result<String, ConfigError>
where
    S: AsRef<str> + 'a,
{
    let ceiling = parse_version(selected)?;
    let plugins: Vec<(&str, &[S])> = plugins.into_iter().collect();
    let Some(((_, first), rest)) = plugins.split_first() else {
        return Ok(selected.to_owned());
    };
    let parsed_set = |list: &[S]| -> Vec<VersionTriple> {
        list.iter()
            .filter_map(|v| parse_version(v.as_ref()).ok())
            .collect()
    };
    let others: Vec<Vec<VersionTriple>> = rest.iter().map(|(_, l)| parsed_set(l)).collect();
    let mut best: Option<(VersionTriple, &str)> = None;
    for v in first.iter().map(AsRef::as_ref) {
        let Ok(parsed) = parse_version(v) else {
            continue;
        };
        if v.is_empty() || parsed > ceiling || !others.iter().all(|o| o.contains(&parsed)) {
            continue;
        }
        if best.is_none_or(|(b, _)| parsed > b) {
            best = Some((parsed, v));
        }
    }
    if let Some((_, v)) = best {
        return Ok(v.to_owned());
    }
    let mut listing = String::new();
    for (i, (name, list)) in plugins.iter().enumerate() {
        if i > 0 {
            listing.push_str("; ");
        }
        let versions: Vec<&str> = list.iter().map(AsRef::as_ref).collect();
        let _ = write!(listing, "{name}: [{}]", versions.join(", "));
    }
    Err(ConfigError::NoCommonVersion {
        selected: selected.to_owned(),
        plugins: listing,
    })
}

/// Whether `name` is a valid network name: `^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$`
/// (libcni `ValidateNetworkName`).
pub fn is_valid_network_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    match bytes.next() {
        Some(b) if b.is_ascii_alphanumeric() => {}
        _ => return false,
    }
    bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// Whether a plugin configuration key is reserved for the runtime (the specification's
/// `runtimeConfig` and `cni.dev/*`). `args` is not counted: CONVENTIONS.md lets a
/// configuration file carry it.
pub fn is_reserved_key(key: &str) -> bool {
    key == "runtimeConfig" || key.starts_with("cni.dev/")
}

/// One plugin of a network configuration list.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginConfig {
    /// The plugin's `type`: the executable's name in `CNI_PATH`.
    pub plugin_type: String,
    /// The plugin's `capabilities` (capability name → whether it is wanted).
    pub capabilities: BTreeMap<String, bool>,
    /// Every key of the plugin object as written, unknown ones included; passed through
    /// unchanged to the plugin.
    pub raw: Map<String, Value>,
}

impl PluginConfig {
    /// Validates and wraps one plugin object. `field` names it in errors (e.g. `plugins[1]`).
    fn from_object(origin: &str, field: &str, value: &Value) -> Result<Self, ConfigError> {
        let Value::Object(raw) = value else {
            return Err(ConfigError::field(origin, field, "not a json object"));
        };
        let plugin_type = match raw.get("type") {
            Some(Value::String(t)) if !t.is_empty() => t.clone(),
            Some(Value::String(_)) | None => {
                return Err(ConfigError::field(
                    origin,
                    format!("{field}.type"),
                    "missing 'type'",
                ));
            }
            Some(other) => {
                return Err(ConfigError::field(
                    origin,
                    format!("{field}.type"),
                    format!("not a string: {other}"),
                ));
            }
        };
        if plugin_type.contains(['/', '\\']) {
            return Err(ConfigError::field(
                origin,
                format!("{field}.type"),
                format!("{plugin_type:?} contains a path separator"),
            ));
        }
        let mut capabilities = BTreeMap::new();
        match raw.get("capabilities") {
            None | Some(Value::Null) => {}
            Some(Value::Object(caps)) => {
                for (name, wanted) in caps {
                    let Value::Bool(wanted) = wanted else {
                        return Err(ConfigError::field(
                            origin,
                            format!("{field}.capabilities.{name}"),
                            "not a boolean",
                        ));
                    };
                    capabilities.insert(name.clone(), *wanted);
                }
            }
            Some(_) => {
                return Err(ConfigError::field(
                    origin,
                    format!("{field}.capabilities"),
                    "not a json object",
                ));
            }
        }
        if let Some(key) = raw.keys().find(|k| is_reserved_key(k)) {
            return Err(ConfigError::field(
                origin,
                format!("{field}.{key}"),
                "reserved for the runtime",
            ));
        }
        Ok(PluginConfig {
            plugin_type,
            capabilities,
            raw: raw.clone(),
        })
    }

    /// Parses a plugin configuration file's bytes (the `<dir>/<network>/*.conf` files).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ConfigError> {
        let value = parse_json(BYTES_ORIGIN, bytes)?;
        PluginConfig::from_object(BYTES_ORIGIN, "plugin", &value)
    }

    /// The stdin configuration for ADD, CHECK or DEL (the specification's "deriving request
    /// configuration", as libcni's `buildOneConfig`).
    ///
    /// Starting from [`raw`](Self::raw), it sets `cniVersion` and `name`; `runtimeConfig`
    /// with each capability the plugin declares `true` and `capability_args` provides
    /// (omitted when none); `prevResult` and `args` when given. Set keys replace any of the
    /// same name. Like libcni, `capabilities` is kept. The output is deterministic: keys
    /// serialize sorted, as Go's encoder writes a map (or, if serde_json's `preserve_order`
    /// feature is on in the build, in the file's order followed by the added keys).
    pub fn request_config(&self, params: &StdinParams<'_>) -> Map<String, Value> {
        let mut conf = self.base_config(params.network_name, params.cni_version);
        if let Some(args) = params.capability_args {
            let runtime: Map<String, Value> = self
                .capabilities
                .iter()
                .filter(|(_, wanted)| **wanted)
                .filter_map(|(cap, _)| args.get(cap).map(|v| (cap.clone(), v.clone())))
                .collect();
            if !runtime.is_empty() {
                conf.insert("runtimeConfig".into(), Value::Object(runtime));
            }
        }
        if let Some(prev) = params.prev_result {
            conf.insert("prevResult".into(), prev.clone());
        }
        if let Some(args) = params.args {
            conf.insert("args".into(), args.clone());
        }
        conf
    }

    /// The stdin configuration for GC: `cniVersion`, `name`, and the attachments still valid
    /// under both `cni.dev/valid-attachments` and the older `cni.dev/attachments`, as
    /// libcni sends them.
    pub fn gc_config(
        &self,
        network_name: &str,
        cni_version: &str,
        valid_attachments: &[GcAttachment],
    ) -> Map<String, Value> {
        let mut conf = self.base_config(network_name, cni_version);
        let list = Value::Array(
            valid_attachments
                .iter()
                .map(|a| {
                    let mut m = Map::new();
                    m.insert("containerID".into(), a.container_id.clone().into());
                    m.insert("ifname".into(), a.ifname.clone().into());
                    Value::Object(m)
                })
                .collect(),
        );
        conf.insert("cni.dev/valid-attachments".into(), list.clone());
        conf.insert("cni.dev/attachments".into(), list);
        conf
    }

    /// The stdin configuration for STATUS (and VERSION-free requests that need only the
    /// identity): `cniVersion` and `name` set, nothing else added.
    pub fn status_config(&self, network_name: &str, cni_version: &str) -> Map<String, Value> {
        self.base_config(network_name, cni_version)
    }

    fn base_config(&self, network_name: &str, cni_version: &str) -> Map<String, Value> {
        let mut conf = self.raw.clone();
        conf.insert("cniVersion".into(), cni_version.into());
        conf.insert("name".into(), network_name.into());
        conf
    }
}

/// Serializes a configuration built by [`PluginConfig::request_config`] and friends to the
/// bytes written to the plugin's stdin.
pub fn to_stdin_bytes(conf: &Map<String, Value>) -> Vec<u8> {
    // Serializing a `Map` of `Value`s cannot fail: keys are strings, numbers are finite.
    serde_json::to_vec(conf).unwrap_or_default()
}

/// What the runtime adds to a plugin's configuration for ADD, CHECK or DEL.
#[derive(Debug, Clone, Copy, Default)]
pub struct StdinParams<'a> {
    /// The network's `name`.
    pub network_name: &'a str,
    /// The version in use (selected, possibly negotiated down).
    pub cni_version: &'a str,
    /// The capability arguments the runtime provides (capability name → any JSON value),
    /// e.g. `portMappings`, `bandwidth`, `dns`.
    pub capability_args: Option<&'a Map<String, Value>>,
    /// The previous result: for every ADD plugin after the first, and for CHECK and DEL.
    pub prev_result: Option<&'a Value>,
    /// The `args` object (CONVENTIONS.md), e.g. `{"cni": {"labels": [...]}}`.
    pub args: Option<&'a Value>,
}

/// An attachment that GC must keep: `{"containerID": ..., "ifname": ...}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GcAttachment {
    /// The container ID of the attachment.
    #[serde(rename = "containerID")]
    pub container_id: String,
    /// The interface name of the attachment.
    pub ifname: String,
}

/// A network configuration list as libcni's `NetworkConfigList`.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkConfigList {
    /// The network name.
    pub name: String,
    /// The selected version (see [`select_version`]); empty if the file declares none.
    pub cni_version: String,
    /// `cniVersions` as written (empty if absent).
    pub cni_versions: Vec<String>,
    /// `disableCheck`: the runtime must not call CHECK.
    pub disable_check: bool,
    /// `disableGC`: the runtime must not call GC.
    pub disable_gc: bool,
    /// `loadOnlyInlinedPlugins`: ignore `<dir>/<name>/*.conf`.
    pub load_only_inlined_plugins: bool,
    /// The plugins, in chain order.
    pub plugins: Vec<PluginConfig>,
    /// The original bytes (for a `.conf` file, the list libcni synthesizes from it); the
    /// result cache stores them.
    pub bytes: Vec<u8>,
}

impl NetworkConfigList {
    /// Parses and validates conflist bytes.
    ///
    /// As in libcni, a list without a `plugins` key parses with no plugins (the file
    /// loaders then look in `<dir>/<name>/`); an empty `plugins` array is an error.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ConfigError> {
        Self::parse_list(BYTES_ORIGIN, bytes)
    }

    /// Parses a single-plugin `.conf`/`.json` configuration and wraps it into a list of one
    /// plugin, as libcni's `ConfListFromConf`: the list takes the plugin's `name` and
    /// `cniVersion`.
    pub fn from_conf_bytes(bytes: &[u8]) -> Result<Self, ConfigError> {
        Self::parse_conf(BYTES_ORIGIN, bytes)
    }

    /// Loads a file: `.conflist` as a list (plus `<dir>/<name>/*.conf` plugins unless
    /// `loadOnlyInlinedPlugins`), anything else as a single-plugin configuration. A list
    /// that ends up with no plugins is an error.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| ConfigError::Io {
            path: path.to_owned(),
            source,
        })?;
        let origin = path.display().to_string();
        if has_extension(path, &["conflist"]) {
            let mut list = Self::parse_list(&origin, &bytes)?;
            if !list.load_only_inlined_plugins {
                let dir = path.parent().unwrap_or(Path::new("")).join(&list.name);
                for file in conf_files(&dir, &["conf"])? {
                    let bytes = std::fs::read(&file).map_err(|source| ConfigError::Io {
                        path: file.clone(),
                        source,
                    })?;
                    let file_origin = file.display().to_string();
                    let value = parse_json(&file_origin, &bytes)?;
                    list.plugins
                        .push(PluginConfig::from_object(&file_origin, "plugin", &value)?);
                }
            }
            if list.plugins.is_empty() {
                return Err(ConfigError::NoPlugins { origin });
            }
            Ok(list)
        } else {
            Self::parse_conf(&origin, &bytes)
        }
    }

    /// Whether CHECK may be called (`disableCheck` is false).
    pub fn check_enabled(&self) -> bool {
        !self.disable_check
    }

    /// Whether GC may be called (`disableGC` is false).
    pub fn gc_enabled(&self) -> bool {
        !self.disable_gc
    }

    fn parse_conf(origin: &str, bytes: &[u8]) -> Result<Self, ConfigError> {
        let value = parse_json(origin, bytes)?;
        let plugin = PluginConfig::from_object(origin, "(top level)", &value)?;
        let mut list = Map::new();
        list.insert(
            "cniVersion".into(),
            plugin.raw.get("cniVersion").cloned().unwrap_or("".into()),
        );
        list.insert(
            "name".into(),
            plugin.raw.get("name").cloned().unwrap_or("".into()),
        );
        list.insert("plugins".into(), Value::Array(vec![value]));
        let list_bytes = serde_json::to_vec(&list).unwrap_or_default();
        Self::parse_list(origin, &list_bytes)
    }

    fn parse_list(origin: &str, bytes: &[u8]) -> Result<Self, ConfigError> {
        let value = parse_json(origin, bytes)?;
        let Value::Object(top) = &value else {
            return Err(ConfigError::Json {
                origin: origin.to_owned(),
                detail: "not a json object".into(),
            });
        };
        let name = match top.get("name") {
            Some(Value::String(n)) => n.clone(),
            None => return Err(ConfigError::field(origin, "name", "missing")),
            Some(other) => {
                return Err(ConfigError::field(
                    origin,
                    "name",
                    format!("not a string: {other}"),
                ));
            }
        };
        if !is_valid_network_name(&name) {
            return Err(ConfigError::field(
                origin,
                "name",
                format!("{name:?} does not match ^[a-zA-Z0-9][a-zA-Z0-9_.\\-]*$"),
            ));
        }
        let cni_version = match top.get("cniVersion") {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(v)) => v.clone(),
            Some(other) => {
                return Err(ConfigError::field(
                    origin,
                    "cniVersion",
                    format!("not a string: {other}"),
                ));
            }
        };
        if parse_version(&cni_version).is_err() {
            return Err(ConfigError::field(
                origin,
                "cniVersion",
                format!("invalid version {cni_version:?}"),
            ));
        }
        let cni_versions = match top.get("cniVersions") {
            None => None,
            Some(Value::Array(items)) => {
                let mut versions = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    let field = format!("cniVersions[{i}]");
                    let Value::String(v) = item else {
                        return Err(ConfigError::field(origin, field, "not a string"));
                    };
                    if parse_version(v).is_err() {
                        return Err(ConfigError::field(
                            origin,
                            field,
                            format!("invalid version {v:?}"),
                        ));
                    }
                    versions.push(v.clone());
                }
                Some(versions)
            }
            Some(_) => return Err(ConfigError::field(origin, "cniVersions", "not a list")),
        };
        let selected = select_version(&cni_version, cni_versions.as_deref())?;
        let disable_check = read_bool(origin, top, "disableCheck")?;
        let disable_gc = read_bool(origin, top, "disableGC")?;
        let load_only_inlined_plugins = read_bool(origin, top, "loadOnlyInlinedPlugins")?;
        let plugins = match top.get("plugins") {
            None if load_only_inlined_plugins => {
                return Err(ConfigError::field(
                    origin,
                    "plugins",
                    "missing while loadOnlyInlinedPlugins is true",
                ));
            }
            None => Vec::new(),
            Some(Value::Array(items)) if items.is_empty() => {
                return Err(ConfigError::field(origin, "plugins", "no plugins in list"));
            }
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, p)| PluginConfig::from_object(origin, &format!("plugins[{i}]"), p))
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(ConfigError::field(origin, "plugins", "not a list")),
        };
        Ok(NetworkConfigList {
            name,
            cni_version: selected,
            cni_versions: cni_versions.unwrap_or_default(),
            disable_check,
            disable_gc,
            load_only_inlined_plugins,
            plugins,
            bytes: bytes.to_vec(),
        })
    }
}

fn parse_json(origin: &str, bytes: &[u8]) -> Result<Value, ConfigError> {
    serde_json::from_slice(bytes).map_err(|e| ConfigError::Json {
        origin: origin.to_owned(),
        detail: e.to_string(),
    })
}

/// A boolean as libcni reads it: JSON `true`/`false`, or the strings "true"/"false" in any
/// case; absent means false.
fn read_bool(origin: &str, top: &Map<String, Value>, key: &str) -> Result<bool, ConfigError> {
    match top.get(key) {
        None => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::String(s)) => match s.to_ascii_lowercase().as_str() {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(ConfigError::field(
                origin,
                key,
                format!("invalid value {s:?}"),
            )),
        },
        Some(other) => Err(ConfigError::field(
            origin,
            key,
            format!("not a boolean: {other}"),
        )),
    }
}

/// Whether the file name's extension (after its last `.`, as Go's `filepath.Ext`, so
/// `.conf` itself counts) is one of `extensions`.
fn has_extension(path: &Path, extensions: &[&str]) -> bool {
    let Some(name) = path.file_name() else {
        return false;
    };
    let name = name.as_encoded_bytes();
    let Some(dot) = name.iter().rposition(|b| *b == b'.') else {
        return false;
    };
    let ext = &name[dot + 1..];
    extensions.iter().any(|e| e.as_bytes() == ext)
}

/// The files of `dir` (not subdirectories) whose extension is one of `extensions`, sorted
/// lexically by name (libcni `ConfFiles` + `sort.Strings`). A missing directory has none.
pub fn conf_files(dir: &Path, extensions: &[&str]) -> Result<Vec<PathBuf>, ConfigError> {
    let io_err = |source| ConfigError::Io {
        path: dir.to_owned(),
        source,
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(e)),
    };
    let mut names: Vec<OsString> = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_err)?;
        if entry.file_type().map_err(io_err)?.is_dir() {
            continue;
        }
        let name = entry.file_name();
        if has_extension(Path::new(&name), extensions) {
            names.push(name);
        }
    }
    names.sort_by(|a, b| a.as_encoded_bytes().cmp(b.as_encoded_bytes()));
    Ok(names.into_iter().map(|n| dir.join(n)).collect())
}

/// Finds the network `name` in `dir` as libcni's `LoadNetworkConf`: the first `*.conflist`
/// (sorted) with that name, else the first `*.conf`/`*.json` single-plugin file with that
/// name. As in libcni, a file that fails to load on the way is an error.
pub fn load_network(dir: impl AsRef<Path>, name: &str) -> Result<NetworkConfigList, ConfigError> {
    let dir = dir.as_ref();
    let lists = conf_files(dir, &["conflist"])?;
    for file in &lists {
        let list = NetworkConfigList::from_file(file)?;
        if list.name == name {
            return Ok(list);
        }
    }
    let singles = conf_files(dir, &["conf", "json"])?;
    if singles.is_empty() {
        return Err(if lists.is_empty() {
            ConfigError::NoConfigsFound {
                dir: dir.to_owned(),
            }
        } else {
            ConfigError::NotFound {
                dir: dir.to_owned(),
                name: name.to_owned(),
            }
        });
    }
    for file in &singles {
        let list = NetworkConfigList::from_file(file)?;
        if list.name == name {
            return Ok(list);
        }
    }
    Err(ConfigError::NotFound {
        dir: dir.to_owned(),
        name: name.to_owned(),
    })
}

/// Loads the first `max` configuration files of `dir` as go-cni's `loadFromConfDir`
/// (containerd's `max_conf_num`, default 1): `*.conf`, `*.conflist` and `*.json` sorted
/// lexically, each loaded with [`NetworkConfigList::from_file`]. No file at all is an error.
pub fn load_first_files(
    dir: impl AsRef<Path>,
    max: usize,
) -> Result<Vec<NetworkConfigList>, ConfigError> {
    let dir = dir.as_ref();
    let files = conf_files(dir, &["conf", "conflist", "json"])?;
    if files.is_empty() {
        return Err(ConfigError::NoConfigsFound {
            dir: dir.to_owned(),
        });
    }
    files
        .iter()
        .take(max)
        .map(NetworkConfigList::from_file)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn list(v: Value) -> Result<NetworkConfigList, ConfigError> {
        NetworkConfigList::from_bytes(&serde_json::to_vec(&v).unwrap())
    }

    #[test]
    fn parses_a_conflist_and_keeps_unknown_keys() {
        let l = list(json!({
            "cniVersion": "1.0.0", "name": "podnet", "disableCheck": "TRUE",
            "plugins": [{"type": "bridge", "bridge": "cni0", "ipam": {"type": "host-local"},
                         "capabilities": {"portMappings": false, "ips": true}}]
        }))
        .unwrap();
        assert_eq!(l.name, "podnet");
        assert_eq!(l.cni_version, "1.0.0");
        assert!(l.disable_check && !l.disable_gc && !l.load_only_inlined_plugins);
        assert!(!l.check_enabled() && l.gc_enabled());
        let p = &l.plugins[0];
        assert_eq!(p.plugin_type, "bridge");
        assert_eq!(p.raw["ipam"]["type"], "host-local");
        assert_eq!(p.capabilities.get("ips"), Some(&true));
        assert_eq!(p.capabilities.get("portMappings"), Some(&false));
    }

    #[test]
    fn version_selection_follows_libcni() {
        let pick = |v: &str, vs: Option<&[&str]>| {
            let owned: Option<Vec<String>> = vs.map(|s| s.iter().map(|x| x.to_string()).collect());
            select_version(v, owned.as_deref()).unwrap()
        };
        assert_eq!(pick("0.4.0", None), "0.4.0");
        // Without cniVersions a too-new cniVersion is kept (libcni does the same).
        assert_eq!(pick("2.0.0", None), "2.0.0");
        assert_eq!(pick("0.3.1", Some(&["1.0.0", "0.4.0"])), "1.0.0");
        assert_eq!(pick("1.1.0", Some(&["1.0.0"])), "1.1.0");
        assert_eq!(pick("", Some(&["0.4.0", "9.0.0"])), "0.4.0");
        assert_eq!(pick("9.9.9", Some(&["1.0.0", "2.0.0"])), "1.0.0");
        assert_eq!(pick("1.0.0", Some(&["1.2.0"])), "1.0.0");
        // 0.10.0 sorts above 0.9.0 numerically, not lexically.
        assert_eq!(pick("0.9.0", Some(&["0.10.0"])), "0.10.0");
        assert_eq!(pick("", Some(&[])), "");
        let l = list(
            json!({"cniVersion": "1.0.0", "cniVersions": ["1.1.0", "1.5.0"],
            "name": "n", "plugins": [{"type": "x"}]}),
        )
        .unwrap();
        assert_eq!(l.cni_version, "1.1.0");
        assert_eq!(l.cni_versions, ["1.1.0", "1.5.0"]);
    }

    #[test]
    fn parse_version_rules() {
        assert_eq!(parse_version("").unwrap(), (0, 1, 0));
        assert_eq!(parse_version("1").unwrap(), (1, 0, 0));
        assert_eq!(parse_version("0.3").unwrap(), (0, 3, 0));
        assert_eq!(parse_version("1.1.0").unwrap(), (1, 1, 0));
        for bad in [
            "1.0.0.0",
            "a.b.c",
            "1..0",
            "1.0.",
            "-1.0.0",
            " 1.0.0",
            "99999999999",
        ] {
            assert!(parse_version(bad).is_err(), "{bad}");
        }
        assert_eq!(
            compare_versions("0.10.0", "0.9.9").unwrap(),
            Ordering::Greater
        );
    }

    #[test]
    fn negotiation_picks_the_highest_common_version() {
        let debian = ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0"];
        let firewall = ["0.4.0", "1.0.0"];
        let v = negotiate_version(
            "1.1.0",
            [("bridge", &debian[..]), ("firewall", &firewall[..])],
        )
        .unwrap();
        assert_eq!(v, "1.0.0");
        let v = negotiate_version("0.3.1", [("bridge", &debian[..])]).unwrap();
        assert_eq!(v, "0.3.1");
        let vrf = ["0.3.1", "0.4.0", "1.0.0"];
        let v = negotiate_version("0.4.0", [("vrf", &vrf[..]), ("bridge", &debian[..])]).unwrap();
        assert_eq!(v, "0.4.0");
        let none: [(&str, &[&str]); 0] = [];
        assert_eq!(negotiate_version("1.1.0", none).unwrap(), "1.1.0");
        let err = negotiate_version(
            "0.3.1",
            [("firewall", &firewall[..]), ("bridge", &debian[..])],
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, ConfigError::NoCommonVersion { .. }));
        assert!(msg.contains("at or below 0.3.1"), "{msg}");
        assert!(msg.contains("firewall: [0.4.0, 1.0.0]"), "{msg}");
        let owned = vec!["1.0.0".to_string()];
        assert_eq!(
            negotiate_version("1.1.0", [("x", owned.as_slice())]).unwrap(),
            "1.0.0"
        );
    }

    #[test]
    fn validation_errors_name_the_field() {
        let cases = [
            (json!({"plugins": [{"type": "x"}]}), "field `name`: missing"),
            (
                json!({"name": 3, "plugins": [{"type": "x"}]}),
                "field `name`: not a string",
            ),
            (
                json!({"name": "-bad", "plugins": [{"type": "x"}]}),
                "field `name`",
            ),
            (
                json!({"name": "a b", "plugins": [{"type": "x"}]}),
                "does not match",
            ),
            (json!({"name": "n", "plugins": []}), "no plugins in list"),
            (
                json!({"name": "n", "plugins": {}}),
                "field `plugins`: not a list",
            ),
            (
                json!({"name": "n", "loadOnlyInlinedPlugins": true}),
                "field `plugins`",
            ),
            (
                json!({"name": "n", "plugins": [{"type": "x"}, {}]}),
                "`plugins[1].type`: missing",
            ),
            (
                json!({"name": "n", "plugins": [{"type": ""}]}),
                "`plugins[0].type`",
            ),
            (
                json!({"name": "n", "plugins": [{"type": "../x"}]}),
                "path separator",
            ),
            (
                json!({"name": "n", "plugins": [{"type": "a\\x"}]}),
                "path separator",
            ),
            (
                json!({"name": "n", "plugins": [3]}),
                "`plugins[0]`: not a json object",
            ),
            (
                json!({"name": "n", "plugins": [{"type": "x", "runtimeConfig": {}}]}),
                "`plugins[0].runtimeConfig`: reserved",
            ),
            (
                json!({"name": "n", "plugins": [{"type": "x", "cni.dev/attachments": []}]}),
                "`plugins[0].cni.dev/attachments`: reserved",
            ),
            (
                json!({"name": "n", "plugins": [{"type": "x", "capabilities": {"a": 1}}]}),
                "`plugins[0].capabilities.a`: not a boolean",
            ),
            (
                json!({"name": "n", "disableGC": "yes", "plugins": [{"type": "x"}]}),
                "`disableGC`",
            ),
            (
                json!({"name": "n", "disableCheck": 1, "plugins": [{"type": "x"}]}),
                "`disableCheck`",
            ),
            (
                json!({"name": "n", "cniVersion": 1, "plugins": [{"type": "x"}]}),
                "`cniVersion`",
            ),
            (
                json!({"name": "n", "cniVersion": "x", "plugins": [{"type": "x"}]}),
                "`cniVersion`",
            ),
            (
                json!({"name": "n", "cniVersions": "1.0.0", "plugins": [{"type": "x"}]}),
                "`cniVersions`",
            ),
            (
                json!({"name": "n", "cniVersions": ["1.0", 2], "plugins": [{"type": "x"}]}),
                "`cniVersions[1]`",
            ),
            (json!([1]), "not a json object"),
        ];
        for (value, expected) in cases {
            let msg = list(value.clone()).unwrap_err().to_string();
            assert!(msg.starts_with("network configuration: "), "{msg}");
            assert!(msg.contains(expected), "{value}: {msg}");
        }
        let msg = NetworkConfigList::from_bytes(b"{").unwrap_err().to_string();
        assert!(
            msg.starts_with("network configuration: invalid json"),
            "{msg}"
        );
        // `args` is allowed in files (CONVENTIONS.md), and a list without `plugins` parses.
        assert!(list(json!({"name": "n", "plugins": [{"type": "x", "args": {}}]})).is_ok());
        assert!(list(json!({"name": "n"})).unwrap().plugins.is_empty());
    }

    #[test]
    fn single_conf_is_wrapped_into_a_list() {
        let conf = br#"{"cniVersion": "0.3.1", "name": "cni-loopback", "type": "loopback"}"#;
        let l = NetworkConfigList::from_conf_bytes(conf).unwrap();
        assert_eq!(l.name, "cni-loopback");
        assert_eq!(l.cni_version, "0.3.1");
        assert_eq!(l.plugins.len(), 1);
        assert_eq!(l.plugins[0].plugin_type, "loopback");
        assert_eq!(l.plugins[0].raw["name"], "cni-loopback");
        let bytes: Value = serde_json::from_slice(&l.bytes).unwrap();
        assert_eq!(bytes["plugins"][0]["type"], "loopback");
        let err = NetworkConfigList::from_conf_bytes(br#"{"name": "x"}"#).unwrap_err();
        assert!(err.to_string().contains("(top level).type"), "{err}");
        let p = PluginConfig::from_bytes(br#"{"type": "tuning", "sysctl": {}}"#).unwrap();
        assert_eq!(p.plugin_type, "tuning");
    }

    fn plugin(v: Value) -> PluginConfig {
        PluginConfig::from_object("t", "p", &v).unwrap()
    }

    #[test]
    fn request_config_injects_only_declared_and_provided_capabilities() {
        let p = plugin(json!({"type": "portmap", "name": "old", "snat": true,
            "capabilities": {"portMappings": true, "bandwidth": false, "ips": true}}));
        let caps = json!({"portMappings": [{"hostPort": 80}], "bandwidth": {"ingressRate": 1},
            "mac": "aa"});
        let prev = json!({"cniVersion": "1.0.0", "ips": []});
        let args = json!({"cni": {"labels": [{"key": "a", "value": "b"}]}});
        let conf = p.request_config(&StdinParams {
            network_name: "podnet",
            cni_version: "1.0.0",
            capability_args: caps.as_object(),
            prev_result: Some(&prev),
            args: Some(&args),
        });
        assert_eq!(
            Value::Object(conf.clone()),
            json!({"type": "portmap", "name": "podnet", "cniVersion": "1.0.0", "snat": true,
                "capabilities": {"portMappings": true, "bandwidth": false, "ips": true},
                "runtimeConfig": {"portMappings": [{"hostPort": 80}]},
                "prevResult": prev, "args": args})
        );
        // Stable: the same input gives the same bytes.
        let again = p.request_config(&StdinParams {
            network_name: "podnet",
            cni_version: "1.0.0",
            capability_args: caps.as_object(),
            prev_result: Some(&prev),
            args: Some(&args),
        });
        assert_eq!(to_stdin_bytes(&conf), to_stdin_bytes(&again));
        // No matching capability: no runtimeConfig key at all.
        let conf = p.request_config(&StdinParams {
            network_name: "podnet",
            cni_version: "0.4.0",
            capability_args: json!({"mac": "x"}).as_object(),
            ..StdinParams::default()
        });
        assert!(!conf.contains_key("runtimeConfig") && !conf.contains_key("prevResult"));
        assert_eq!(conf["cniVersion"], "0.4.0");
    }

    #[test]
    fn gc_and_status_configs() {
        let p = plugin(json!({"type": "bridge", "capabilities": {"ips": true}}));
        let conf = p.gc_config(
            "podnet",
            "1.1.0",
            &[GcAttachment {
                container_id: "abc".into(),
                ifname: "eth0".into(),
            }],
        );
        let expected = json!([{"containerID": "abc", "ifname": "eth0"}]);
        assert_eq!(conf["cni.dev/valid-attachments"], expected);
        assert_eq!(conf["cni.dev/attachments"], expected);
        assert!(!conf.contains_key("runtimeConfig"));
        let empty = p.gc_config("podnet", "1.1.0", &[]);
        assert_eq!(empty["cni.dev/valid-attachments"], json!([]));
        let status = p.status_config("podnet", "1.1.0");
        assert_eq!(status.len(), 4);
        assert_eq!(status["name"], "podnet");
    }

    #[test]
    fn extensions_as_go() {
        assert!(has_extension(Path::new("/d/10-a.conflist"), &["conflist"]));
        assert!(has_extension(Path::new(".conf"), &["conf"]));
        assert!(has_extension(Path::new("a.b.json"), &["conf", "json"]));
        assert!(!has_extension(Path::new("a.conflist"), &["conf"]));
        assert!(!has_extension(Path::new("a.conf.bak"), &["conf"]));
        assert!(!has_extension(Path::new("conf"), &["conf"]));
        assert!(!has_extension(Path::new("a.CONF"), &["conf"]));
    }

    #[test]
    fn network_names() {
        for ok in ["a", "podnet", "cni-loopback", "k8s-pod-network", "0.a_b-c"] {
            assert!(is_valid_network_name(ok), "{ok}");
        }
        for bad in ["", "-a", "_a", ".a", "a b", "a/b", "é"] {
            assert!(!is_valid_network_name(bad), "{bad}");
        }
    }

    #[test]
    fn containerd_podnet_conflist() {
        // The shape of containerd's 10-podnet.conflist described in the reference (§3.1).
        let bytes = br#"{
  "cniVersion": "1.0.0",
  "name": "podnet",
  "plugins": [
    {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": true,
     "hairpinMode": true,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.244.0.0/24"}]],
              "routes": [{"dst": "0.0.0.0/0"}]}},
    {"type": "portmap", "capabilities": {"portMappings": true}, "externalSetMarkChain": "KUBE-MARK-MASQ"}
  ]
}"#;
        let l = NetworkConfigList::from_bytes(bytes).unwrap();
        assert_eq!(l.bytes, bytes);
        let caps = json!({"portMappings": [{"hostPort": 8080, "containerPort": 80,
            "protocol": "tcp", "hostIP": ""}], "io.kubernetes.cri.pod-annotations": {}});
        let bridge = l.plugins[0].request_config(&StdinParams {
            network_name: &l.name,
            cni_version: &l.cni_version,
            capability_args: caps.as_object(),
            ..StdinParams::default()
        });
        assert!(!bridge.contains_key("runtimeConfig"));
        assert_eq!(bridge["ipam"]["ranges"][0][0]["subnet"], "10.244.0.0/24");
        let portmap = l.plugins[1].request_config(&StdinParams {
            network_name: &l.name,
            cni_version: &l.cni_version,
            capability_args: caps.as_object(),
            ..StdinParams::default()
        });
        assert_eq!(
            portmap["runtimeConfig"],
            json!({"portMappings": caps["portMappings"]})
        );
        assert_eq!(portmap["externalSetMarkChain"], "KUBE-MARK-MASQ");
    }

    proptest::proptest! {
        #[test]
        fn parsing_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let _ = NetworkConfigList::from_bytes(&bytes);
            let _ = NetworkConfigList::from_conf_bytes(&bytes);
            let _ = PluginConfig::from_bytes(&bytes);
        }

        #[test]
        fn version_rules_never_panic(a in "[0-9.]{0,8}", b in proptest::collection::vec("[0-9.]{0,8}", 0..4)) {
            let _ = parse_version(&a);
            if let Ok(v) = select_version(&a, Some(&b)) {
                // The selection is one of the inputs.
                proptest::prop_assert!(v == a || b.contains(&v));
            }
            let lists = [("x", &b[..]), ("y", &b[..])];
            if let Ok(v) = negotiate_version(&a, lists) {
                proptest::prop_assert!(v == a || b.contains(&v));
            }
        }
    }

    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> Self {
            let dir = std::env::temp_dir().join(format!(
                "cni-exec-config-{tag}-{}-{:?}",
                std::process::id(),
                std::thread::current().id()
            ));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }
        fn write(&self, name: &str, v: Value) {
            let path = self.0.join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, serde_json::to_vec(&v).unwrap()).unwrap();
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn directory_loading_follows_libcni() {
        let d = TempDir::new("libcni");
        let err = load_network(&d.0, "podnet").unwrap_err();
        assert!(matches!(err, ConfigError::NoConfigsFound { .. }) && err.is_not_found());
        d.write(
            "20-b.conflist",
            json!({"name": "podnet", "cniVersion": "1.0.0",
            "plugins": [{"type": "second"}]}),
        );
        d.write(
            "10-a.conflist",
            json!({"name": "podnet", "cniVersion": "1.0.0",
            "plugins": [{"type": "bridge"}]}),
        );
        d.write("podnet/2.conf", json!({"type": "tuning"}));
        d.write("podnet/1.conf", json!({"type": "portmap"}));
        d.write("podnet/ignored.json", json!({"type": "nope"}));
        std::fs::create_dir_all(d.0.join("dir.conflist")).unwrap();
        let l = load_network(&d.0, "podnet").unwrap();
        let types: Vec<&str> = l.plugins.iter().map(|p| p.plugin_type.as_str()).collect();
        assert_eq!(types, ["bridge", "portmap", "tuning"]);

        let err = load_network(&d.0, "other").unwrap_err();
        assert!(matches!(err, ConfigError::NotFound { .. }), "{err}");
        d.write(
            "05-single.conf",
            json!({"name": "other", "cniVersion": "0.4.0", "type": "ptp"}),
        );
        let l = load_network(&d.0, "other").unwrap();
        assert_eq!(l.plugins[0].plugin_type, "ptp");
        assert_eq!(l.cni_version, "0.4.0");

        // Inline-only lists ignore the subdirectory; a list with no plugins anywhere fails.
        d.write(
            "30-inline.conflist",
            json!({"name": "inl", "loadOnlyInlinedPlugins": "true",
            "plugins": [{"type": "bridge"}]}),
        );
        d.write("inl/x.conf", json!({"type": "portmap"}));
        assert_eq!(load_network(&d.0, "inl").unwrap().plugins.len(), 1);
        d.write("40-empty.conflist", json!({"name": "empty"}));
        let err = load_network(&d.0, "empty").unwrap_err();
        assert!(matches!(err, ConfigError::NoPlugins { .. }), "{err}");
        assert!(err.to_string().contains("40-empty.conflist"), "{err}");
        d.write("empty/p.conf", json!({"type": "bridge"}));
        assert_eq!(load_network(&d.0, "empty").unwrap().plugins.len(), 1);

        // A broken file on the way is an error naming it.
        d.write(
            "00-broken.conflist",
            json!({"name": "x", "plugins": [{"type": "a/b"}]}),
        );
        let err = load_network(&d.0, "podnet").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("00-broken.conflist") && msg.contains("plugins[0].type"),
            "{msg}"
        );
    }

    #[test]
    fn first_files_as_go_cni() {
        let d = TempDir::new("gocni");
        assert!(load_first_files(&d.0, 1).unwrap_err().is_not_found());
        d.write("99-loop.json", json!({"name": "lo", "type": "loopback"}));
        d.write(
            "10-podnet.conflist",
            json!({"name": "podnet", "cniVersion": "1.0.0",
            "plugins": [{"type": "bridge"}, {"type": "portmap"}]}),
        );
        d.write(
            "20-extra.conf",
            json!({"name": "extra", "cniVersion": "0.3.1", "type": "macvlan"}),
        );
        d.write("README.md", json!({}));
        let one = load_first_files(&d.0, 1).unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].name, "podnet");
        let all = load_first_files(&d.0, 10).unwrap();
        let names: Vec<&str> = all.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["podnet", "extra", "lo"]);
        assert!(load_first_files(&d.0, 0).unwrap().is_empty());
        let err = NetworkConfigList::from_file(d.0.join("missing.conflist")).unwrap_err();
        assert!(err.to_string().starts_with("cannot read "), "{err}");
    }
}
