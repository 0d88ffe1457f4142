//! ID prefixes, as `docker` and containerd accept them: a unique prefix of a
//! pod sandbox, container or image ID stands for the whole ID.
//!
//! The CLI lists the objects, picks the ID the prefix names, and sends the
//! full ID, so the prefix works with any runtime. A prefix that names nothing
//! is sent as given (the runtime's own "not found" answer is what crictl
//! prints); one that names several is an error listing them.

use super::units::truncate_id;

/// What an ID names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A pod sandbox.
    PodSandbox,
    /// A container.
    Container,
    /// An image (IDs are `sha256:<hex>`; the prefix may leave `sha256:` out).
    Image,
}

impl Kind {
    fn noun(self) -> &'static str {
        match self {
            Kind::PodSandbox => "pod sandbox",
            Kind::Container => "container",
            Kind::Image => "image",
        }
    }

    fn plural(self) -> &'static str {
        match self {
            Kind::PodSandbox => "pod sandboxes",
            Kind::Container => "containers",
            Kind::Image => "images",
        }
    }
}

const IMAGE_ID_ALGORITHM: &str = "sha256:";

/// Whether `given` can be an image ID prefix at all (hex digits, with or
/// without `sha256:`), rather than an image reference such as `busybox:1.35`.
pub(crate) fn looks_like_image_id(given: &str) -> bool {
    let hex = given.strip_prefix(IMAGE_ID_ALGORITHM).unwrap_or(given);
    !hex.is_empty() && hex.len() <= 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The full ID that `given` names among `ids`: `Ok(Some(id))` for an exact
/// match or a unique prefix, `Ok(None)` when it names nothing (use `given`
/// as is), an error when the prefix is ambiguous.
pub(crate) fn resolve<S: AsRef<str>>(
    kind: Kind,
    given: &str,
    ids: &[S],
) -> Result<Option<String>, String> {
    if given.is_empty() {
        return Ok(None);
    }
    if kind == Kind::Image && !looks_like_image_id(given) {
        return Ok(None);
    }
    let ids: Vec<&str> = ids.iter().map(AsRef::as_ref).collect();
    if ids.contains(&given) {
        return Ok(Some(given.to_owned()));
    }
    let mut matches: Vec<&str> = ids
        .iter()
        .copied()
        .filter(|id| {
            id.starts_with(given)
                || (kind == Kind::Image
                    && id
                        .strip_prefix(IMAGE_ID_ALGORITHM)
                        .is_some_and(|hex| hex.starts_with(given)))
        })
        .collect();
    matches.sort_unstable();
    matches.dedup();
    match matches.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some((*one).to_owned())),
        many => {
            let shown: Vec<&str> = many
                .iter()
                .map(|id| truncate_id(id, IMAGE_ID_ALGORITHM))
                .collect();
            Err(format!(
                "{} ID prefix {given:?} is ambiguous: it matches {} {} ({})",
                kind.noun(),
                many.len(),
                kind.plural(),
                shown.join(", ")
            ))
        }
    }
}

/// Whether `id` is a complete ID (64 hex digits, as containerd and CRI-O make
/// them), so no lookup is needed.
pub(crate) fn is_full_id(id: &str) -> bool {
    let hex = id.strip_prefix(IMAGE_ID_ALGORITHM).unwrap_or(id);
    hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "aa11aa11aa11aa11aa11aa11aa11aa11aa11aa11aa11aa11aa11aa11aa11aa11";
    const B: &str = "aa22aa22aa22aa22aa22aa22aa22aa22aa22aa22aa22aa22aa22aa22aa22aa22";
    const C: &str = "bb33bb33bb33bb33bb33bb33bb33bb33bb33bb33bb33bb33bb33bb33bb33bb33";

    #[test]
    fn unique_prefixes_resolve_to_the_full_id() {
        let ids = [A, B, C];
        assert_eq!(
            resolve(Kind::Container, "aa1", &ids),
            Ok(Some(A.to_owned()))
        );
        assert_eq!(resolve(Kind::Container, "b", &ids), Ok(Some(C.to_owned())));
        assert_eq!(resolve(Kind::PodSandbox, A, &ids), Ok(Some(A.to_owned())));
    }

    #[test]
    fn unknown_prefixes_pass_through_and_ambiguous_ones_fail() {
        let ids = [A, B, C];
        assert_eq!(resolve(Kind::Container, "cc", &ids), Ok(None));
        assert_eq!(resolve(Kind::Container, "", &ids), Ok(None));
        let err = resolve(Kind::PodSandbox, "aa", &ids).unwrap_err();
        assert_eq!(
            err,
            "pod sandbox ID prefix \"aa\" is ambiguous: it matches 2 pod sandboxes \
             (aa11aa11aa11a, aa22aa22aa22a)"
        );
    }

    #[test]
    fn an_exact_id_wins_over_longer_ids_it_prefixes() {
        let ids = ["abc", "abcdef"];
        assert_eq!(
            resolve(Kind::Container, "abc", &ids),
            Ok(Some("abc".into()))
        );
        assert!(resolve(Kind::Container, "ab", &ids).is_err());
    }

    #[test]
    fn image_ids_match_with_or_without_the_algorithm() {
        let ids = [format!("sha256:{A}"), format!("sha256:{C}")];
        assert_eq!(
            resolve(Kind::Image, "aa11", &ids),
            Ok(Some(format!("sha256:{A}")))
        );
        assert_eq!(
            resolve(Kind::Image, "sha256:bb", &ids),
            Ok(Some(format!("sha256:{C}")))
        );
        // References are never taken for ID prefixes.
        assert_eq!(resolve(Kind::Image, "busybox:1.35", &ids), Ok(None));
        assert_eq!(resolve(Kind::Image, "bb33-not-hex", &ids), Ok(None));
        let twice = [format!("sha256:{A}"), format!("sha256:{B}")];
        let err = resolve(Kind::Image, "aa", &twice).unwrap_err();
        assert!(
            err.starts_with("image ID prefix \"aa\" is ambiguous: it matches 2 images"),
            "{err}"
        );
    }

    #[test]
    fn full_ids_need_no_lookup() {
        assert!(is_full_id(A));
        assert!(is_full_id(&format!("sha256:{A}")));
        assert!(!is_full_id("aa11"));
        assert!(looks_like_image_id("sha256:aa"));
        assert!(!looks_like_image_id("sha256:"));
    }
}
