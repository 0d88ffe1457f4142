//! The image store: reference normalization like containerd's, the images
//! present on the fake node, and the catalog of images that `PullImage` can
//! fetch.

use std::collections::BTreeSet;

use crate::v1::{Image, ImageSpec, Int64Value};

use super::ids::hex_digest;

/// An image that the fake knows: preloaded on the node
/// ([`FakeRuntimeBuilder::preload_image`](super::FakeRuntimeBuilder::preload_image))
/// or fetchable by `PullImage`
/// ([`FakeRuntimeBuilder::pullable_image`](super::FakeRuntimeBuilder::pullable_image)).
///
/// References are normalized as containerd does: `busybox` is
/// `docker.io/library/busybox:latest`. The image ID (the digest of the image
/// config, `sha256:…`) and the manifest digest are derived from the first
/// reference unless set; tags of one `FakeImage` share its ID, so removing one
/// of them removes all of them.
///
/// ```
/// use cri_client::fake::FakeImage;
///
/// let busybox = FakeImage::new("busybox:1.36")
///     .tag("busybox:latest")
///     .with_size(2_155_000);
/// assert_eq!(busybox.references()[0], "docker.io/library/busybox:1.36");
/// assert!(busybox.id().starts_with("sha256:"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeImage {
    tags: Vec<String>,
    id: String,
    manifest_digest: String,
    size: u64,
    pinned: bool,
    uid: Option<i64>,
    username: String,
}

impl FakeImage {
    /// An image tagged `reference`, 1 MiB in size.
    ///
    /// # Panics
    ///
    /// When `reference` is not a valid tag reference (empty, containing
    /// whitespace or upper-case letters in the repository, or a digest or ID
    /// rather than a tag).
    pub fn new(reference: &str) -> FakeImage {
        let tag = normalize_tag(reference);
        FakeImage {
            id: format!("sha256:{}", hex_digest(&format!("{tag}#config"))),
            manifest_digest: format!("sha256:{}", hex_digest(&format!("{tag}#manifest"))),
            tags: vec![tag],
            size: 1024 * 1024,
            pinned: false,
            uid: None,
            username: String::new(),
        }
    }

    /// Adds another tag for the same image.
    ///
    /// # Panics
    ///
    /// Like [`FakeImage::new`], when `reference` is not a valid tag.
    #[must_use]
    pub fn tag(mut self, reference: &str) -> FakeImage {
        let tag = normalize_tag(reference);
        if !self.tags.contains(&tag) {
            self.tags.push(tag);
        }
        self
    }

    /// Sets the image ID; `sha256:` is prepended when missing.
    #[must_use]
    pub fn with_id(mut self, id: &str) -> FakeImage {
        self.id = if id.starts_with("sha256:") {
            id.to_owned()
        } else {
            format!("sha256:{id}")
        };
        self
    }

    /// Sets the size in bytes reported by `ListImages` and `ImageStatus`.
    #[must_use]
    pub fn with_size(mut self, size: u64) -> FakeImage {
        self.size = size;
        self
    }

    /// Marks the image as pinned (never garbage collected by kubelet), as
    /// containerd does for the sandbox (pause) image.
    #[must_use]
    pub fn pinned(mut self, pinned: bool) -> FakeImage {
        self.pinned = pinned;
        self
    }

    /// Sets the user the image runs as: a numeric UID, reported in
    /// `Image.uid`.
    #[must_use]
    pub fn with_uid(mut self, uid: i64) -> FakeImage {
        self.uid = Some(uid);
        self.username.clear();
        self
    }

    /// Sets the user the image runs as: a user name, reported in
    /// `Image.username`.
    #[must_use]
    pub fn with_username(mut self, username: &str) -> FakeImage {
        self.username = username.to_owned();
        self.uid = None;
        self
    }

    /// The normalized tags of the image, first one first.
    pub fn references(&self) -> &[String] {
        &self.tags
    }

    /// The image ID, `sha256:` and 64 hexadecimal digits.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The manifest digest, `sha256:` and 64 hexadecimal digits; repository
    /// digests are `<repository>@<manifest digest>`.
    pub fn manifest_digest(&self) -> &str {
        &self.manifest_digest
    }

    /// The size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }
}

fn normalize_tag(reference: &str) -> String {
    match parse_reference(reference) {
        Ok(Reference::Tag(tag)) => tag,
        Ok(_) => panic!("FakeImage: {reference:?} is not a tag reference"),
        Err(error) => panic!("FakeImage: {error}"),
    }
}

/// A parsed image reference, normalized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Reference {
    /// An image ID, `sha256:<64 hex>`.
    Id(String),
    /// `<domain>/<path>:<tag>`.
    Tag(String),
    /// `<domain>/<path>` and `sha256:<hex>`.
    Digest { repository: String, digest: String },
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Parses and normalizes an image reference the way containerd's CRI plugin
/// does (docker's reference grammar, simplified): `busybox` becomes
/// `docker.io/library/busybox:latest`.
pub(super) fn parse_reference(reference: &str) -> Result<Reference, String> {
    if reference.is_empty() {
        return Err("image reference is empty".to_owned());
    }
    if reference
        .chars()
        .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(format!(
            "invalid image reference {reference:?}: contains whitespace"
        ));
    }
    if let Some(hex) = reference.strip_prefix("sha256:")
        && is_hex64(hex)
    {
        return Ok(Reference::Id(reference.to_ascii_lowercase()));
    }
    if is_hex64(reference) {
        return Ok(Reference::Id(format!(
            "sha256:{}",
            reference.to_ascii_lowercase()
        )));
    }
    let (name, digest) = match reference.split_once('@') {
        Some((name, digest)) => (name, Some(digest)),
        None => (reference, None),
    };
    let (repository, tag) = split_tag(name);
    if repository.is_empty() || repository.starts_with('/') || repository.ends_with('/') {
        return Err(format!("invalid image reference {reference:?}"));
    }
    if repository.chars().any(|c| c.is_ascii_uppercase()) {
        return Err(format!(
            "invalid image reference {reference:?}: repository name must be lowercase"
        ));
    }
    let repository = match repository.split_once('/') {
        Some((first, _)) if first.contains(['.', ':']) || first == "localhost" => {
            repository.to_owned()
        }
        Some(_) => format!("docker.io/{repository}"),
        None => format!("docker.io/library/{repository}"),
    };
    match digest {
        Some(digest) => match digest.split_once(':') {
            Some((algorithm, hex)) if !algorithm.is_empty() && !hex.is_empty() => {
                Ok(Reference::Digest {
                    repository,
                    digest: digest.to_owned(),
                })
            }
            _ => Err(format!("invalid image reference {reference:?}: bad digest")),
        },
        None => {
            let tag = tag.unwrap_or("latest");
            if tag.is_empty() {
                return Err(format!("invalid image reference {reference:?}: empty tag"));
            }
            Ok(Reference::Tag(format!("{repository}:{tag}")))
        }
    }
}

/// Splits `name[:tag]`, where only the last path component can carry a tag
/// (`localhost:5000/pause` has none).
fn split_tag(name: &str) -> (&str, Option<&str>) {
    let last_slash = name.rfind('/').map_or(0, |i| i + 1);
    match name[last_slash..].rfind(':') {
        Some(i) => (&name[..last_slash + i], Some(&name[last_slash + i + 1..])),
        None => (name, None),
    }
}

fn repository_of_tag(tag: &str) -> &str {
    split_tag(tag).0
}

/// An image present on the node.
#[derive(Debug, Clone)]
struct Present {
    image: FakeImage,
    tags: BTreeSet<String>,
    /// Repositories pulled by digest (`repo@sha256:…`).
    digest_repositories: BTreeSet<String>,
}

impl Present {
    fn repositories(&self) -> BTreeSet<&str> {
        self.tags
            .iter()
            .map(|tag| repository_of_tag(tag))
            .chain(self.digest_repositories.iter().map(String::as_str))
            .collect()
    }

    fn matches(&self, reference: &Reference) -> bool {
        match reference {
            Reference::Id(id) => self.image.id == *id,
            Reference::Tag(tag) => self.tags.contains(tag),
            Reference::Digest { repository, digest } => {
                self.image.manifest_digest == *digest
                    && self.repositories().contains(repository.as_str())
            }
        }
    }

    fn to_proto(&self) -> Image {
        Image {
            id: self.image.id.clone(),
            repo_tags: self.tags.iter().cloned().collect(),
            repo_digests: self
                .repositories()
                .into_iter()
                .map(|repository| format!("{repository}@{}", self.image.manifest_digest))
                .collect(),
            size: self.image.size,
            uid: self.image.uid.map(|value| Int64Value { value }),
            username: self.image.username.clone(),
            spec: Some(ImageSpec {
                image: self.image.id.clone(),
                ..ImageSpec::default()
            }),
            pinned: self.image.pinned,
        }
    }
}

/// What a lookup in the store found: enough to fill a container's image
/// fields.
#[derive(Debug, Clone)]
pub(super) struct ResolvedImage {
    /// The image ID.
    pub(super) id: String,
    /// The first repository digest, or the ID when there is none (what
    /// containerd reports as `ContainerStatus.image_ref`).
    pub(super) repo_digest: String,
    /// The reference to report in `ContainerStatus.image`: the normalized tag
    /// asked for, else the first tag, else the ID.
    pub(super) display: String,
}

/// Images present on the node and images that can be pulled.
#[derive(Debug, Default)]
pub(super) struct ImageStore {
    catalog: Vec<FakeImage>,
    present: Vec<Present>,
}

impl ImageStore {
    pub(super) fn add_pullable(&mut self, image: FakeImage) {
        self.catalog.retain(|known| known.id != image.id);
        self.catalog.push(image);
    }

    /// Puts `image` on the node with all of its tags; it also becomes
    /// pullable.
    pub(super) fn preload(&mut self, image: FakeImage) {
        self.add_pullable(image.clone());
        let tags: BTreeSet<String> = image.tags.iter().cloned().collect();
        // A tag points to one image only.
        for present in &mut self.present {
            present.tags.retain(|tag| !tags.contains(tag));
        }
        match self.present.iter_mut().find(|p| p.image.id == image.id) {
            Some(present) => present.tags.extend(tags),
            None => self.present.push(Present {
                image,
                tags,
                digest_repositories: BTreeSet::new(),
            }),
        }
    }

    fn find(&self, reference: &Reference) -> Option<&Present> {
        self.present.iter().find(|p| p.matches(reference))
    }

    pub(super) fn status(&self, reference: &Reference) -> Option<Image> {
        self.find(reference).map(Present::to_proto)
    }

    pub(super) fn resolve(&self, reference: &Reference) -> Option<ResolvedImage> {
        let present = self.find(reference)?;
        let image = present.to_proto();
        let display = match reference {
            Reference::Tag(tag) => tag.clone(),
            _ => image
                .repo_tags
                .first()
                .cloned()
                .unwrap_or_else(|| image.id.clone()),
        };
        Some(ResolvedImage {
            repo_digest: image
                .repo_digests
                .first()
                .cloned()
                .unwrap_or_else(|| image.id.clone()),
            id: image.id,
            display,
        })
    }

    /// All images, in the order they arrived.
    pub(super) fn list(&self) -> Vec<Image> {
        self.present.iter().map(Present::to_proto).collect()
    }

    /// Pulls `reference` from the catalog; returns the image ID, or `None`
    /// when the catalog has no such image.
    pub(super) fn pull(&mut self, reference: &Reference) -> Option<String> {
        let image = self
            .catalog
            .iter()
            .find(|image| match reference {
                Reference::Id(_) => false,
                Reference::Tag(tag) => image.tags.contains(tag),
                Reference::Digest { repository, digest } => {
                    image.manifest_digest == *digest
                        && image
                            .tags
                            .iter()
                            .any(|tag| repository_of_tag(tag) == repository)
                }
            })?
            .clone();
        if let Reference::Tag(tag) = reference {
            for present in &mut self.present {
                if present.image.id != image.id {
                    present.tags.remove(tag);
                }
            }
        }
        let id = image.id.clone();
        let index = match self.present.iter().position(|p| p.image.id == id) {
            Some(index) => index,
            None => {
                self.present.push(Present {
                    image,
                    tags: BTreeSet::new(),
                    digest_repositories: BTreeSet::new(),
                });
                self.present.len() - 1
            }
        };
        let present = &mut self.present[index];
        match reference {
            Reference::Tag(tag) => {
                present.tags.insert(tag.clone());
            }
            Reference::Digest { repository, .. } => {
                present.digest_repositories.insert(repository.clone());
            }
            Reference::Id(_) => {}
        }
        // Images left without any name are gone, as in containerd.
        self.present
            .retain(|p| !p.tags.is_empty() || !p.digest_repositories.is_empty());
        Some(id)
    }

    /// Removes the image `reference` names, with all of its tags. Returns
    /// whether an image was removed.
    pub(super) fn remove(&mut self, reference: &Reference) -> bool {
        let Some(id) = self.find(reference).map(|p| p.image.id.clone()) else {
            return false;
        };
        self.present.retain(|p| p.image.id != id);
        true
    }

    /// Total size and count of the images present.
    pub(super) fn usage(&self) -> (u64, u64) {
        let bytes = self.present.iter().map(|p| p.image.size).sum();
        (bytes, self.present.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(s: &str) -> Reference {
        Reference::Tag(s.to_owned())
    }

    #[test]
    fn normalizes_like_containerd() {
        let cases = [
            ("busybox", "docker.io/library/busybox:latest"),
            ("busybox:1.36", "docker.io/library/busybox:1.36"),
            ("library/busybox:1.36", "docker.io/library/busybox:1.36"),
            ("kindest/node:v1", "docker.io/kindest/node:v1"),
            ("registry.k8s.io/pause:3.10", "registry.k8s.io/pause:3.10"),
            ("localhost/pause", "localhost/pause:latest"),
            (
                "127.0.0.1:5000/node-sdk/pause",
                "127.0.0.1:5000/node-sdk/pause:latest",
            ),
            (
                "127.0.0.1:5000/node-sdk/pause:3.10",
                "127.0.0.1:5000/node-sdk/pause:3.10",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(parse_reference(input), Ok(tag(want)), "{input}");
        }
        let hex = "a".repeat(64);
        assert_eq!(
            parse_reference(&hex),
            Ok(Reference::Id(format!("sha256:{hex}")))
        );
        assert_eq!(
            parse_reference(&format!("busybox@sha256:{hex}")),
            Ok(Reference::Digest {
                repository: "docker.io/library/busybox".to_owned(),
                digest: format!("sha256:{hex}"),
            })
        );
        for bad in ["", "Busybox", "busybox:", "a b", "busybox@nodigest", "/x"] {
            assert!(parse_reference(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn pull_tags_and_remove_all_tags() {
        let mut store = ImageStore::default();
        let busybox = FakeImage::new("busybox:1.36").tag("busybox:latest");
        store.add_pullable(busybox.clone());
        let id = store.pull(&tag("docker.io/library/busybox:1.36")).unwrap();
        assert_eq!(id, busybox.id());
        store
            .pull(&tag("docker.io/library/busybox:latest"))
            .unwrap();
        let listed = store.list();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].repo_tags.len(), 2);
        assert_eq!(
            listed[0].repo_digests,
            [format!(
                "docker.io/library/busybox@{}",
                busybox.manifest_digest()
            )]
        );
        assert!(store.pull(&tag("docker.io/library/nope:1")).is_none());
        assert!(store.remove(&tag("docker.io/library/busybox:latest")));
        assert!(store.list().is_empty());
        assert!(!store.remove(&tag("docker.io/library/busybox:latest")));
    }

    #[test]
    fn lookups_by_id_and_digest() {
        let mut store = ImageStore::default();
        let pause = FakeImage::new("registry.k8s.io/pause:3.10");
        store.preload(pause.clone());
        let by_id = store.status(&Reference::Id(pause.id().to_owned())).unwrap();
        assert_eq!(by_id.repo_tags, ["registry.k8s.io/pause:3.10"]);
        let by_digest = Reference::Digest {
            repository: "registry.k8s.io/pause".to_owned(),
            digest: pause.manifest_digest().to_owned(),
        };
        let resolved = store.resolve(&by_digest).unwrap();
        assert_eq!(resolved.display, "registry.k8s.io/pause:3.10");
        assert_eq!(
            resolved.repo_digest,
            format!("registry.k8s.io/pause@{}", pause.manifest_digest())
        );
    }
}
