//! Operations on a network configuration list, as libcni's `CNIConfig` runs them:
//! ADD through the chain with `prevResult`, CHECK, DEL in reverse order with the cached
//! result, GC, STATUS and VERSION, with the result cache shared with libcni.
//!
//! Unlike libcni, the version a list is driven at is negotiated with the plugins' own
//! VERSION answers: a list declaring 1.1.0 runs at 1.0.0 against plugins that only
//! support up to 1.0.0 (Debian's 1.1.1 set), instead of failing with code 1.

// `Error` carries the plugin's code, message, path, verb and stderr as matchable
// fields; boxing them would hide them from `match`. Same choice as `exec` and `cache`.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Map, Value};

use crate::cache::{CachedInfo, ResultCache};
use crate::config::{
    GcAttachment, NetworkConfigList, StdinParams, compare_versions, negotiate_version,
    to_stdin_bytes,
};
use crate::error::{Error, Result};
use crate::exec::{ExecControl, PluginExec, RawExec, RuntimeArgs, VersionInfo, exec_plugin};
use crate::result::VersionedResult;

/// Default per-plugin-call timeout. The CNI spec and libcni set none (they rely on the
/// caller's context); a node agent needs one, and a stuck plugin must not hold a pod.
pub const DEFAULT_PLUGIN_TIMEOUT: Duration = Duration::from_secs(60);

/// What the runtime says about one attachment (libcni's `RuntimeConf`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RuntimeConf {
    /// `CNI_CONTAINERID`.
    pub container_id: String,
    /// `CNI_NETNS`: the network namespace path (optional for DEL).
    pub netns: Option<String>,
    /// `CNI_IFNAME`, for example `eth0`.
    pub ifname: String,
    /// `CNI_ARGS` pairs, for example `K8S_POD_NAMESPACE`.
    pub args: Vec<(String, String)>,
    /// Capability arguments (`portMappings`, `bandwidth`, `dns`, `ipRanges`, ...), passed
    /// as `runtimeConfig` to the plugins that declare the capability.
    pub capability_args: Map<String, Value>,
}

/// Runs CNI operations with a set of plugin directories, a cache directory and an
/// executor (libcni's `CNIConfig`).
#[derive(Clone)]
pub struct CniConfig {
    paths: Vec<PathBuf>,
    cache: ResultCache,
    exec: Arc<dyn PluginExec>,
    timeout: Duration,
    versions: Arc<Mutex<HashMap<String, VersionInfo>>>,
}

impl std::fmt::Debug for CniConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CniConfig")
            .field("paths", &self.paths)
            .field("cache", &self.cache.dir())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl CniConfig {
    /// Plugins looked up in `paths` (`CNI_PATH`), results cached under `cache_dir`
    /// (libcni's default is `/var/lib/cni`), run with [`RawExec`].
    pub fn new(paths: Vec<PathBuf>, cache_dir: impl Into<PathBuf>) -> Self {
        Self::with_exec(paths, cache_dir, Arc::new(RawExec::new()))
    }

    /// Like [`new`](Self::new) with another executor (a fake in tests).
    pub fn with_exec(
        paths: Vec<PathBuf>,
        cache_dir: impl Into<PathBuf>,
        exec: Arc<dyn PluginExec>,
    ) -> Self {
        Self {
            paths,
            cache: ResultCache::new(cache_dir),
            exec,
            timeout: DEFAULT_PLUGIN_TIMEOUT,
            versions: Arc::default(),
        }
    }

    /// Sets the timeout of each plugin call (default [`DEFAULT_PLUGIN_TIMEOUT`]).
    #[must_use]
    pub fn plugin_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The result cache.
    pub fn cache(&self) -> &ResultCache {
        &self.cache
    }

    fn ctl(&self) -> ExecControl {
        ExecControl::new().with_timeout(self.timeout)
    }

    /// VERSION of one plugin (answers are remembered per plugin type).
    pub async fn version_info(&self, plugin: &str) -> Result<VersionInfo> {
        if let Some(v) = self
            .versions
            .lock()
            .ok()
            .and_then(|m| m.get(plugin).cloned())
        {
            return Ok(v);
        }
        let info =
            crate::exec::version(self.exec.as_ref(), plugin, &self.paths, &self.ctl()).await?;
        if let Ok(mut m) = self.versions.lock() {
            m.insert(plugin.to_owned(), info.clone());
        }
        Ok(info)
    }

    /// The version to drive `list` at: its selected version, negotiated down to the
    /// highest one every plugin of the list supports.
    pub async fn effective_version(&self, list: &NetworkConfigList) -> Result<String> {
        let mut answers = Vec::with_capacity(list.plugins.len());
        for plugin in &list.plugins {
            let info = self.version_info(&plugin.plugin_type).await?;
            answers.push((plugin.plugin_type.clone(), info.supported_versions));
        }
        let selected = if list.cni_version.is_empty() {
            "0.1.0"
        } else {
            &list.cni_version
        };
        negotiate_version(
            selected,
            answers.iter().map(|(n, v)| (n.as_str(), v.as_slice())),
        )
        .map_err(|e| Error::InvalidArgument {
            field: "cniVersion",
            reason: e.to_string(),
        })
    }

    /// Checks every plugin exists and supports the list's version; returns the union of
    /// the capabilities the plugins declare (libcni's `ValidateNetworkList`, with
    /// negotiation: a plugin that does not support the version fails only when no
    /// common version exists).
    pub async fn validate(&self, list: &NetworkConfigList) -> Result<Vec<String>> {
        self.effective_version(list).await?;
        let mut caps: Vec<String> = list
            .plugins
            .iter()
            .flat_map(|p| {
                p.capabilities
                    .iter()
                    .filter(|(_, on)| **on)
                    .map(|(c, _)| c.clone())
            })
            .collect();
        caps.sort();
        caps.dedup();
        Ok(caps)
    }

    fn runtime_args(&self, command: &str, rt: &RuntimeConf) -> RuntimeArgs {
        RuntimeArgs {
            command: command.to_owned(),
            container_id: rt.container_id.clone(),
            netns: rt.netns.clone(),
            ifname: rt.ifname.clone(),
            args: rt.args.clone(),
            paths: self.paths.clone(),
        }
    }

    async fn call(
        &self,
        list: &NetworkConfigList,
        plugin_type: &str,
        args: &RuntimeArgs,
        conf: &Map<String, Value>,
    ) -> Result<Option<Value>> {
        let path = self.exec.find(plugin_type, &self.paths)?;
        exec_plugin(
            self.exec.as_ref(),
            &path,
            args,
            &to_stdin_bytes(conf),
            &self.ctl(),
        )
        .await
        .map_err(|e| e.with_network(&list.name))
    }

    /// ADD: runs the chain in order, each plugin getting the previous result; caches the
    /// final result (only when the whole chain succeeded) and returns it.
    pub async fn add(&self, list: &NetworkConfigList, rt: &RuntimeConf) -> Result<VersionedResult> {
        crate::exec::validate_container_id(&rt.container_id)?;
        crate::exec::validate_interface_name(&rt.ifname)?;
        let version = self.effective_version(list).await?;
        let args = self.runtime_args("ADD", rt);
        let mut prev: Option<Value> = None;
        for plugin in &list.plugins {
            let conf = plugin.request_config(&StdinParams {
                network_name: &list.name,
                cni_version: &version,
                capability_args: Some(&rt.capability_args),
                prev_result: prev.as_ref(),
                args: None,
            });
            let out = self.call(list, &plugin.plugin_type, &args, &conf).await?;
            let bytes = out
                .map(|v| serde_json::to_vec(&v).unwrap_or_default())
                .unwrap_or_default();
            let result = VersionedResult::from_plugin_output(&bytes, &version)
                .map_err(|e| invalid_result(list, &plugin.plugin_type, e))?;
            prev = Some(result.to_value());
        }
        let result = VersionedResult::from_value(prev.unwrap_or(Value::Null))
            .map_err(|e| invalid_result(list, "chain", e))?;
        let mut info = CachedInfo::new(
            &rt.container_id,
            &list.name,
            &rt.ifname,
            list.bytes.clone(),
            result.to_value(),
        );
        info.netns = rt.netns.clone();
        info.cni_args = rt.args.clone();
        info.capability_args = (!rt.capability_args.is_empty()).then(|| rt.capability_args.clone());
        self.cache.write(&info)?;
        Ok(result)
    }

    /// The cached final ADD result of an attachment, converted to `version`.
    pub fn cached_result(
        &self,
        list: &NetworkConfigList,
        rt: &RuntimeConf,
        version: &str,
    ) -> Result<Option<VersionedResult>> {
        let Some(entry) = self.cache.read(&list.name, &rt.container_id, &rt.ifname)? else {
            return Ok(None);
        };
        let result = VersionedResult::from_value(entry.result().clone())
            .and_then(|r| r.convert_to(version))
            .map_err(|e| invalid_result(list, "cache", e))?;
        Ok(Some(result))
    }

    /// CHECK: runs the chain in order with the cached result as `prevResult`; a no-op when
    /// the list has `disableCheck`; an error below version 0.4.0 (CHECK did not exist).
    pub async fn check(&self, list: &NetworkConfigList, rt: &RuntimeConf) -> Result<()> {
        if list.disable_check {
            return Ok(());
        }
        let version = self.effective_version(list).await?;
        if compare_versions(&version, "0.4.0").is_ok_and(|o| o.is_lt()) {
            return Err(Error::InvalidArgument {
                field: "cniVersion",
                reason: format!(
                    "configuration version {version:?} does not support the CHECK command"
                ),
            });
        }
        let prev = self
            .cached_result(list, rt, &version)?
            .map(|r| r.to_value());
        let args = self.runtime_args("CHECK", rt);
        for plugin in &list.plugins {
            let conf = plugin.request_config(&StdinParams {
                network_name: &list.name,
                cni_version: &version,
                capability_args: Some(&rt.capability_args),
                prev_result: prev.as_ref(),
                args: None,
            });
            self.call(list, &plugin.plugin_type, &args, &conf).await?;
        }
        Ok(())
    }

    /// DEL: runs the chain in reverse with the cached result as `prevResult` (from 0.4.0
    /// on), then removes the cache entry. An unreadable cache entry is dropped and DEL
    /// goes on without a previous result, as libcni.
    pub async fn del(&self, list: &NetworkConfigList, rt: &RuntimeConf) -> Result<()> {
        let version = self.effective_version(list).await?;
        let prev = if compare_versions(&version, "0.4.0").is_ok_and(|o| o.is_ge()) {
            match self.cached_result(list, rt, &version) {
                Ok(r) => r.map(|r| r.to_value()),
                Err(e) => {
                    tracing::warn!(network = %list.name, error = %e, "unreadable cached result; deleting without it");
                    let _ = self.cache.delete(&list.name, &rt.container_id, &rt.ifname);
                    None
                }
            }
        } else {
            None
        };
        let args = self.runtime_args("DEL", rt);
        for plugin in list.plugins.iter().rev() {
            let conf = plugin.request_config(&StdinParams {
                network_name: &list.name,
                cni_version: &version,
                capability_args: Some(&rt.capability_args),
                prev_result: prev.as_ref(),
                args: None,
            });
            self.call(list, &plugin.plugin_type, &args, &conf).await?;
        }
        self.cache.delete(&list.name, &rt.container_id, &rt.ifname)
    }

    /// GC: DELs every cached attachment of this network that is not in `valid`, then
    /// (from version 1.1.0) sends GC to every plugin; keeps going past errors and returns
    /// the first with a count of the others. A no-op with `disableGC`.
    pub async fn gc(&self, list: &NetworkConfigList, valid: &[GcAttachment]) -> Result<()> {
        if list.disable_gc {
            return Ok(());
        }
        let mut errors = Vec::new();
        let attachments = self.cache.cached_attachments("").unwrap_or_default();
        for a in attachments.iter().filter(|a| a.network == list.name) {
            let keep = valid
                .iter()
                .any(|v| v.container_id == a.container_id && v.ifname == a.if_name);
            if keep {
                continue;
            }
            let rt = RuntimeConf {
                container_id: a.container_id.clone(),
                netns: a.netns.clone(),
                ifname: a.if_name.clone(),
                args: a.cni_args.clone(),
                capability_args: a.capability_args.clone().unwrap_or_default(),
            };
            if let Err(e) = self.del(list, &rt).await {
                errors.push(e);
            }
        }
        let version = self.effective_version(list).await?;
        if compare_versions(&version, "1.1.0").is_ok_and(|o| o.is_ge()) {
            let args = RuntimeArgs {
                command: "GC".into(),
                paths: self.paths.clone(),
                ..RuntimeArgs::default()
            };
            for plugin in &list.plugins {
                let conf = plugin.gc_config(&list.name, &version, valid);
                if let Err(e) = self.call(list, &plugin.plugin_type, &args, &conf).await {
                    errors.push(e);
                }
            }
        }
        first_error(errors)
    }

    /// STATUS: asks every plugin whether it can serve ADDs (from version 1.1.0; earlier
    /// versions have no STATUS and the answer is "ready"); stops at the first error,
    /// whose code is 50 or 51 for a plugin that is not available.
    pub async fn status(&self, list: &NetworkConfigList) -> Result<()> {
        let version = self.effective_version(list).await?;
        if compare_versions(&version, "1.1.0").is_ok_and(|o| o.is_lt()) {
            return Ok(());
        }
        let args = RuntimeArgs {
            command: "STATUS".into(),
            paths: self.paths.clone(),
            ..RuntimeArgs::default()
        };
        for plugin in &list.plugins {
            let conf = plugin.status_config(&list.name, &version);
            self.call(list, &plugin.plugin_type, &args, &conf).await?;
        }
        Ok(())
    }
}

fn invalid_result(list: &NetworkConfigList, plugin: &str, e: crate::result::ResultError) -> Error {
    Error::InvalidArgument {
        field: "result",
        reason: format!("network {:?}, plugin {plugin:?}: {e}", list.name),
    }
}

fn first_error(mut errors: Vec<Error>) -> Result<()> {
    if errors.is_empty() {
        return Ok(());
    }
    let more = errors.len() - 1;
    let first = errors.remove(0);
    if more > 0 {
        tracing::warn!(more, "further errors during GC");
    }
    Err(first)
}
