//! libcni's on-disk result cache, read and written in its format.
//!
//! Files live at `<cacheDir>/results/<networkName>-<containerID>-<ifName>` (default
//! cache dir `/var/lib/cni`), so a runtime using this crate and one using libcni
//! (containerd, CRI-O) can read each other's entries. Directories are created 0700 and
//! files 0600; writes go through a temporary file and a rename, so readers never see a
//! half-written entry (libcni itself writes in place).
//!
//! ```
//! use cni_exec::cache::{CachedInfo, ResultCache};
//!
//! # fn main() -> cni_exec::Result<()> {
//! let dir = std::env::temp_dir().join(format!("cni-cache-doc-{}", std::process::id()));
//! let cache = ResultCache::new(&dir);
//! let info = CachedInfo::new("c1", "podnet", "eth0", br#"{"cniVersion":"1.0.0"}"#.to_vec(),
//!     serde_json::json!({"cniVersion": "1.0.0", "ips": []}));
//! cache.write(&info)?;
//! let back = cache.read("podnet", "c1", "eth0")?.unwrap();
//! assert_eq!(back.result(), &info.result);
//! assert_eq!(cache.cached_attachments("c1")?.len(), 1);
//! cache.delete("podnet", "c1", "eth0")?;
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok(()) }
//! ```

// `Error` keeps its context inline (about 200 bytes) so callers can match on fields;
// errors are cold next to a process spawn, so the size lint is allowed here.
#![allow(clippy::result_large_err)]

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{Error, Result};

/// libcni's default cache directory.
pub const DEFAULT_CACHE_DIR: &str = "/var/lib/cni";

/// The `kind` of the current cache format.
pub const CACHE_KIND_V1: &str = "cniCacheV1";

/// One cache entry in libcni's `cniCacheV1` format.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CachedInfo {
    /// Always [`CACHE_KIND_V1`] when written by this crate.
    pub kind: String,
    /// The container (sandbox) ID.
    #[serde(rename = "containerId")]
    pub container_id: String,
    /// The conflist bytes the attachment was made with (base64 on disk).
    #[serde(with = "base64_bytes")]
    pub config: Vec<u8>,
    /// The interface name.
    #[serde(rename = "ifName")]
    pub if_name: String,
    /// The network (conflist) name.
    #[serde(rename = "networkName")]
    pub network_name: String,
    /// The netns path; absent in files written by older libcni (containerd 1.6).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<String>,
    /// The `CNI_ARGS` pairs.
    #[serde(rename = "cniArgs", default, skip_serializing_if = "Vec::is_empty")]
    pub cni_args: Vec<(String, String)>,
    /// The capability arguments (`runtimeConfig`).
    #[serde(
        rename = "capabilityArgs",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub capability_args: Option<Map<String, Value>>,
    /// The final ADD result, in the config's version.
    #[serde(default)]
    pub result: Value,
}

impl CachedInfo {
    /// An entry with the required fields; set `netns`, `cni_args` and `capability_args`
    /// directly.
    pub fn new(
        container_id: impl Into<String>,
        network_name: impl Into<String>,
        if_name: impl Into<String>,
        config: Vec<u8>,
        result: Value,
    ) -> Self {
        Self {
            kind: CACHE_KIND_V1.to_string(),
            container_id: container_id.into(),
            config,
            if_name: if_name.into(),
            network_name: network_name.into(),
            netns: None,
            cni_args: Vec::new(),
            capability_args: None,
            result,
        }
    }
}

/// What a cache file held.
#[derive(Debug, Clone, PartialEq)]
pub enum CacheEntry {
    /// The `cniCacheV1` format.
    V1(CachedInfo),
    /// The legacy format: a bare result, read as libcni's `getLegacyCachedResult` does.
    Legacy(Value),
}

impl CacheEntry {
    /// The cached result.
    pub fn result(&self) -> &Value {
        match self {
            CacheEntry::V1(info) => &info.result,
            CacheEntry::Legacy(v) => v,
        }
    }

    /// The full entry, when the file is in the current format.
    pub fn info(&self) -> Option<&CachedInfo> {
        match self {
            CacheEntry::V1(info) => Some(info),
            CacheEntry::Legacy(_) => None,
        }
    }
}

/// A cached attachment, as libcni's `NetworkAttachment` (returned by
/// [`ResultCache::cached_attachments`], used by GC).
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkAttachment {
    /// The container ID.
    pub container_id: String,
    /// The network name.
    pub network: String,
    /// The interface name.
    pub if_name: String,
    /// The conflist bytes.
    pub config: Vec<u8>,
    /// The netns path, when recorded.
    pub netns: Option<String>,
    /// The `CNI_ARGS` pairs.
    pub cni_args: Vec<(String, String)>,
    /// The capability arguments.
    pub capability_args: Option<Map<String, Value>>,
}

/// The result cache under one cache directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultCache {
    dir: PathBuf,
}

impl Default for ResultCache {
    /// The cache under [`DEFAULT_CACHE_DIR`].
    fn default() -> Self {
        Self::new(DEFAULT_CACHE_DIR)
    }
}

impl ResultCache {
    /// A cache under `dir` (entries go to `dir/results/`).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `<dir>/results`.
    pub fn results_dir(&self) -> PathBuf {
        self.dir.join("results")
    }

    /// `<dir>/results/<network>-<containerID>-<ifName>`.
    pub fn path_for(&self, network: &str, container_id: &str, if_name: &str) -> PathBuf {
        self.results_dir()
            .join(format!("{network}-{container_id}-{if_name}"))
    }

    /// Writes `info` atomically (temporary file 0600 in the same directory, then rename);
    /// creates the directories with mode 0700.
    pub fn write(&self, info: &CachedInfo) -> Result<PathBuf> {
        let dir = self.results_dir();
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| Error::cache(&dir, "create", e))?;
        let path = self.path_for(&info.network_name, &info.container_id, &info.if_name);
        let bytes = serde_json::to_vec(info).map_err(|e| Error::cache(&path, "encode", e))?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        // Unique per process and call, so concurrent writers never share a temp file.
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!(".{name}.tmp{}-{seq}", std::process::id()));
        let written = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .and_then(|mut f| {
                f.write_all(&bytes)?;
                f.sync_all()
            })
            .and_then(|()| fs::rename(&tmp, &path));
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(Error::cache(&path, "write", e));
        }
        Ok(path)
    }

    /// Reads the entry for `(network, container_id, if_name)`; `None` when absent.
    ///
    /// A file that is JSON but not `cniCacheV1` is read as a legacy bare result.
    pub fn read(
        &self,
        network: &str,
        container_id: &str,
        if_name: &str,
    ) -> Result<Option<CacheEntry>> {
        let path = self.path_for(network, container_id, if_name);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::cache(&path, "read", e)),
        };
        decode(&bytes)
            .map(Some)
            .map_err(|e| Error::cache(&path, "decode", e))
    }

    /// Removes the entry; a missing file is not an error.
    pub fn delete(&self, network: &str, container_id: &str, if_name: &str) -> Result<()> {
        let path = self.path_for(network, container_id, if_name);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::cache(&path, "delete", e)),
        }
    }

    /// libcni's `GetCachedAttachments`: scans `results/` in name order, keeps files
    /// whose name contains `-<containerID>-` (all files when `container_id` is empty),
    /// and skips unreadable files, non-`cniCacheV1` entries, entries of another
    /// container, and entries with an empty interface or network name. A missing
    /// directory gives an empty list.
    pub fn cached_attachments(&self, container_id: &str) -> Result<Vec<NetworkAttachment>> {
        let dir = self.results_dir();
        let entries = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::cache(&dir, "list", e)),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| Error::cache(&dir, "list", e))?;
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        let part = format!("-{container_id}-");
        let mut out = Vec::new();
        for name in names {
            if !container_id.is_empty() {
                match name.find(&part) {
                    Some(pos) if pos > 0 && pos + part.len() < name.len() => {}
                    _ => continue,
                }
            }
            let Ok(bytes) = fs::read(dir.join(&name)) else {
                continue;
            };
            let Ok(info) = serde_json::from_slice::<CachedInfo>(&bytes) else {
                continue;
            };
            if info.kind != CACHE_KIND_V1
                || (!container_id.is_empty() && info.container_id != container_id)
                || info.if_name.is_empty()
                || info.network_name.is_empty()
            {
                continue;
            }
            out.push(NetworkAttachment {
                container_id: info.container_id,
                network: info.network_name,
                if_name: info.if_name,
                config: info.config,
                netns: info.netns,
                cni_args: info.cni_args,
                capability_args: info.capability_args,
            });
        }
        Ok(out)
    }
}

fn decode(bytes: &[u8]) -> std::result::Result<CacheEntry, serde_json::Error> {
    let value: Value = serde_json::from_slice(bytes)?;
    if value.get("kind").and_then(Value::as_str) == Some(CACHE_KIND_V1) {
        serde_json::from_value(value).map(CacheEntry::V1)
    } else {
        Ok(CacheEntry::Legacy(value))
    }
}

mod base64_bytes {
    use super::BASE64;
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&BASE64.encode(b))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        // Go encodes a nil []byte as null.
        let s = Option::<String>::deserialize(d)?.unwrap_or_default();
        BASE64.decode(s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use serde_json::json;
    use std::os::unix::fs::PermissionsExt;

    const CONFLIST: &str =
        r#"{"cniVersion":"1.0.0","name":"podnet","plugins":[{"type":"bridge"}]}"#;

    /// Shaped exactly as containerd 1.6.20's libcni writes it: no `netns` key.
    fn containerd_16_file(id: &str) -> String {
        let config = BASE64.encode(CONFLIST);
        format!(
            r#"{{"kind":"cniCacheV1","containerId":"{id}","config":"{config}","ifName":"eth0","networkName":"podnet","cniArgs":[["K8S_POD_INFRA_CONTAINER_ID","{id}"],["K8S_POD_UID","u-1"],["IgnoreUnknown","1"],["K8S_POD_NAMESPACE","default"],["K8S_POD_NAME","web"]],"capabilityArgs":{{"io.kubernetes.cri.pod-annotations":{{}},"portMappings":[]}},"result":{{"cniVersion":"1.0.0","interfaces":[{{"name":"cni0","mac":"aa:bb:cc:dd:ee:ff"}}],"ips":[{{"interface":0,"address":"10.244.0.5/24","gateway":"10.244.0.1"}}],"dns":{{}}}}}}"#
        )
    }

    fn sample(id: &str, net: &str, ifname: &str) -> CachedInfo {
        let mut i = CachedInfo::new(
            id,
            net,
            ifname,
            CONFLIST.as_bytes().to_vec(),
            json!({"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.2/24"}]}),
        );
        i.netns = Some("/var/run/netns/cni-1".into());
        i.cni_args = vec![("IgnoreUnknown".into(), "1".into())];
        i
    }

    #[test]
    fn reads_containerd_16_file() {
        let d = tempfile::tempdir().unwrap();
        let cache = ResultCache::new(d.path());
        fs::create_dir_all(cache.results_dir()).unwrap();
        let id = "54d91ca7e3";
        fs::write(cache.path_for("podnet", id, "eth0"), containerd_16_file(id)).unwrap();
        let e = cache.read("podnet", id, "eth0").unwrap().unwrap();
        let info = e.info().unwrap();
        assert_eq!(info.netns, None);
        assert_eq!(info.config, CONFLIST.as_bytes());
        assert_eq!(info.cni_args.len(), 5);
        assert_eq!(info.cni_args[2], ("IgnoreUnknown".into(), "1".into()));
        assert_eq!(e.result()["ips"][0]["address"], "10.244.0.5/24");
        let atts = cache.cached_attachments(id).unwrap();
        assert_eq!(atts.len(), 1);
        assert_eq!(atts[0].network, "podnet");
        assert_eq!(atts[0].if_name, "eth0");
    }

    #[test]
    fn round_trip_and_omitempty() {
        let d = tempfile::tempdir().unwrap();
        let cache = ResultCache::new(d.path());
        let info = sample("c1", "podnet", "eth0");
        let path = cache.write(&info).unwrap();
        assert_eq!(path, d.path().join("results/podnet-c1-eth0"));
        let back = cache.read("podnet", "c1", "eth0").unwrap().unwrap();
        assert_eq!(back, CacheEntry::V1(info));

        let bare = CachedInfo::new("c2", "podnet", "eth0", b"{}".to_vec(), json!({}));
        let p = cache.write(&bare).unwrap();
        let raw: Value = serde_json::from_slice(&fs::read(p).unwrap()).unwrap();
        let keys: Vec<&String> = raw.as_object().unwrap().keys().collect();
        for k in ["netns", "cniArgs", "capabilityArgs"] {
            assert!(!keys.iter().any(|x| *x == k), "{k} present");
        }
        assert_eq!(raw["kind"], "cniCacheV1");
        assert_eq!(raw["config"], "e30=");
    }

    #[test]
    fn legacy_bare_result() {
        let d = tempfile::tempdir().unwrap();
        let cache = ResultCache::new(d.path());
        fs::create_dir_all(cache.results_dir()).unwrap();
        fs::write(
            cache.path_for("old", "c1", "eth0"),
            r#"{"cniVersion":"0.3.1","ips":[]}"#,
        )
        .unwrap();
        let e = cache.read("old", "c1", "eth0").unwrap().unwrap();
        assert!(matches!(e, CacheEntry::Legacy(_)));
        assert_eq!(e.result()["cniVersion"], "0.3.1");
        // Legacy files are not attachments.
        assert!(cache.cached_attachments("c1").unwrap().is_empty());
    }

    #[test]
    fn missing_and_corrupt() {
        let d = tempfile::tempdir().unwrap();
        let cache = ResultCache::new(d.path());
        assert_eq!(cache.read("n", "c", "eth0").unwrap(), None);
        assert!(cache.cached_attachments("c").unwrap().is_empty());
        cache.delete("n", "c", "eth0").unwrap();
        fs::create_dir_all(cache.results_dir()).unwrap();
        fs::write(cache.path_for("n", "c", "eth0"), "not json").unwrap();
        let err = cache.read("n", "c", "eth0").unwrap_err();
        assert!(matches!(err, Error::Cache { op: "decode", .. }));
    }

    #[test]
    fn attachments_filter_and_sort() {
        let d = tempfile::tempdir().unwrap();
        let cache = ResultCache::new(d.path());
        cache.write(&sample("c1", "net-b", "eth0")).unwrap();
        cache.write(&sample("c1", "net-a", "eth1")).unwrap();
        cache.write(&sample("c1", "cni-loopback", "lo")).unwrap();
        cache.write(&sample("c10", "net-a", "eth0")).unwrap();
        cache.write(&sample("c2", "net-a", "eth0")).unwrap();
        // Named for c1 but holding another container: skipped.
        let mut other = sample("c3", "net-z", "eth0");
        other.container_id = "c3".into();
        let p = cache.write(&other).unwrap();
        fs::rename(p, cache.path_for("net-z", "c1", "eth0")).unwrap();
        // Empty ifName: skipped.
        let mut noif = sample("c1", "net-y", "x");
        noif.if_name = String::new();
        let bytes = serde_json::to_vec(&noif).unwrap();
        fs::write(cache.results_dir().join("net-y-c1-x"), bytes).unwrap();
        // Garbage: skipped.
        fs::write(cache.results_dir().join("junk-c1-eth9"), "{").unwrap();

        let atts = cache.cached_attachments("c1").unwrap();
        let got: Vec<(&str, &str)> = atts
            .iter()
            .map(|a| (a.network.as_str(), a.if_name.as_str()))
            .collect();
        assert_eq!(
            got,
            [("cni-loopback", "lo"), ("net-a", "eth1"), ("net-b", "eth0")]
        );
        assert_eq!(cache.cached_attachments("").unwrap().len(), 6);

        cache.delete("net-b", "c1", "eth0").unwrap();
        assert_eq!(cache.cached_attachments("c1").unwrap().len(), 2);
    }

    #[test]
    fn modes_are_0600_and_0700() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("cni");
        let cache = ResultCache::new(&root);
        let p = cache.write(&sample("c1", "podnet", "eth0")).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&p), 0o600);
        assert_eq!(mode(&cache.results_dir()), 0o700);
        assert_eq!(mode(&root), 0o700);
        // No temporary file left behind.
        let n = fs::read_dir(cache.results_dir()).unwrap().count();
        assert_eq!(n, 1);
    }
}
