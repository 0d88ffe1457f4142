//! From `ps`/`pods` flags to CRI list filters, and the filtering crictl does
//! on the client side (name and namespace regular expressions, newest first,
//! `--latest`, `--last`).

use std::collections::HashMap;

use cri_client::v1::{
    Container, ContainerFilter, ContainerState, ContainerStateValue, PodSandbox, PodSandboxFilter,
    PodSandboxState, PodSandboxStateValue,
};

/// The label the kubelet puts the pod's name in.
pub(crate) const POD_NAME_LABEL: &str = "io.kubernetes.pod.name";
/// The label the kubelet puts the pod's namespace in.
pub(crate) const POD_NAMESPACE_LABEL: &str = "io.kubernetes.pod.namespace";

/// `--label key=value` flags as a selector; crictl's `parseLabelStringSlice`.
pub(crate) fn parse_labels(items: &[String]) -> Result<HashMap<String, String>, String> {
    items
        .iter()
        .map(|item| {
            let parts: Vec<&str> = item.split('=').collect();
            match parts.as_slice() {
                [key, value] => Ok(((*key).to_owned(), (*value).to_owned())),
                _ => Err(format!("incorrectly specified label: {item}")),
            }
        })
        .collect()
}

/// `pods --state`: `ready` or `notready`, any case.
pub(crate) fn pod_state(text: &str) -> Result<PodSandboxState, String> {
    match text.to_lowercase().as_str() {
        "ready" => Ok(PodSandboxState::SandboxReady),
        "notready" => Ok(PodSandboxState::SandboxNotready),
        _ => Err("--state should be ready or notready".into()),
    }
}

/// `ps --state`: `created`, `running`, `exited` or `unknown`, any case.
pub(crate) fn container_state(text: &str) -> Result<ContainerState, String> {
    match text.to_lowercase().as_str() {
        "created" => Ok(ContainerState::ContainerCreated),
        "running" => Ok(ContainerState::ContainerRunning),
        "exited" => Ok(ContainerState::ContainerExited),
        "unknown" => Ok(ContainerState::ContainerUnknown),
        _ => Err("--state should be one of created, running, exited or unknown".into()),
    }
}

/// Whether `target` matches the regular expression `pattern` anywhere; an
/// empty pattern matches everything and an invalid one nothing (crictl's
/// `matchesRegex`).
pub(crate) fn matches_regex(pattern: &str, target: &str) -> bool {
    if pattern.is_empty() {
        return true;
    }
    regex::Regex::new(pattern).is_ok_and(|re| re.is_match(target))
}

/// A label's value, or `unknown` (crictl's `getFromLabels`).
pub(crate) fn label_or_unknown<'a>(labels: &'a HashMap<String, String>, key: &str) -> &'a str {
    labels.get(key).map_or("unknown", String::as_str)
}

/// Options shared by `pods`, `inspectp` and the pod lookups.
#[derive(Debug, Clone, Default)]
pub(crate) struct PodListOptions {
    /// `--id` (already resolved from a prefix).
    pub(crate) id: String,
    /// `--name`, a regular expression.
    pub(crate) name: String,
    /// `--namespace`, a regular expression.
    pub(crate) namespace: String,
    /// `--state`.
    pub(crate) state: Option<String>,
    /// `--label`.
    pub(crate) labels: HashMap<String, String>,
    /// `--latest`.
    pub(crate) latest: bool,
    /// `--last`; 0 is unlimited.
    pub(crate) last: usize,
}

/// The `ListPodSandbox` filter for the options.
pub(crate) fn pod_filter(opts: &PodListOptions) -> Result<PodSandboxFilter, String> {
    let state = opts
        .state
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(pod_state)
        .transpose()?
        .map(|state| PodSandboxStateValue {
            state: state as i32,
        });
    Ok(PodSandboxFilter {
        id: opts.id.clone(),
        state,
        label_selector: opts.labels.clone(),
    })
}

/// crictl's `getSandboxesList`: name and namespace regular expressions,
/// newest first, then `--latest` / `--last`.
pub(crate) fn select_pods(pods: Vec<PodSandbox>, opts: &PodListOptions) -> Vec<PodSandbox> {
    let filtered = pods
        .into_iter()
        .filter(|p| {
            p.metadata.as_ref().is_some_and(|m| {
                matches_regex(&opts.name, &m.name) && matches_regex(&opts.namespace, &m.namespace)
            })
        })
        .collect();
    newest_first(filtered, |p| p.created_at, opts.latest, opts.last)
}

/// Options shared by `ps`, `inspect`, `exec` and `stop --all`.
#[derive(Debug, Clone, Default)]
pub(crate) struct ContainerListOptions {
    /// `--id` (already resolved from a prefix).
    pub(crate) id: String,
    /// `--pod` (already resolved from a prefix).
    pub(crate) pod_id: String,
    /// `--name`, a regular expression.
    pub(crate) name: String,
    /// `--namespace`, a regular expression on the pod namespace label.
    pub(crate) namespace: String,
    /// `--state`.
    pub(crate) state: Option<String>,
    /// `--label`.
    pub(crate) labels: HashMap<String, String>,
    /// `--all`: every state, not only running containers.
    pub(crate) all: bool,
    /// `--latest`.
    pub(crate) latest: bool,
    /// `--last`; 0 is unlimited.
    pub(crate) last: usize,
    /// `--image`, matched through `ImageStatus` by the caller.
    pub(crate) image: String,
}

/// The `ListContainers` filter: running containers unless `--all` or a
/// `--state`; no state at all with `--latest` or `--last`.
pub(crate) fn container_filter(opts: &ContainerListOptions) -> Result<ContainerFilter, String> {
    let requested = opts.state.as_deref().filter(|s| !s.is_empty());
    let mut state = match requested {
        Some(text) => Some(container_state(text)?),
        None if !opts.all => Some(ContainerState::ContainerRunning),
        None => None,
    };
    if opts.latest || opts.last > 0 {
        state = None;
    }
    Ok(ContainerFilter {
        id: opts.id.clone(),
        state: state.map(|s| ContainerStateValue { state: s as i32 }),
        pod_sandbox_id: opts.pod_id.clone(),
        label_selector: opts.labels.clone(),
    })
}

/// The client-side part of crictl's `getContainersList` except the image
/// match: name and pod namespace regular expressions.
pub(crate) fn filter_containers(
    containers: Vec<Container>,
    opts: &ContainerListOptions,
) -> Vec<Container> {
    containers
        .into_iter()
        .filter(|c| {
            c.metadata.as_ref().is_some_and(|m| {
                matches_regex(&opts.name, &m.name)
                    && matches_regex(
                        &opts.namespace,
                        label_or_unknown(&c.labels, POD_NAMESPACE_LABEL),
                    )
            })
        })
        .collect()
}

/// Sorts newest first (by creation time) and keeps one with `latest`, `last`
/// with `last > 0`, all otherwise.
pub(crate) fn newest_first<T>(
    mut items: Vec<T>,
    created_at: impl Fn(&T) -> i64,
    latest: bool,
    last: usize,
) -> Vec<T> {
    items.sort_by_key(|item| std::cmp::Reverse(created_at(item)));
    let mut keep = items.len();
    if latest {
        keep = 1;
    }
    if last > 0 {
        keep = last;
    }
    items.truncate(keep);
    items
}

#[cfg(test)]
mod tests {
    use cri_client::v1::{ContainerMetadata, PodSandboxMetadata};

    use super::*;

    fn pod(name: &str, namespace: &str, created_at: i64) -> PodSandbox {
        PodSandbox {
            id: format!("id-{name}"),
            metadata: Some(PodSandboxMetadata {
                name: name.into(),
                namespace: namespace.into(),
                ..Default::default()
            }),
            created_at,
            ..Default::default()
        }
    }

    fn container(name: &str, namespace: Option<&str>, created_at: i64) -> Container {
        Container {
            id: format!("id-{name}"),
            metadata: Some(ContainerMetadata {
                name: name.into(),
                attempt: 0,
            }),
            labels: namespace
                .map(|ns| [(POD_NAMESPACE_LABEL.to_owned(), ns.to_owned())].into())
                .unwrap_or_default(),
            created_at,
            ..Default::default()
        }
    }

    #[test]
    fn labels_need_exactly_one_equals_sign() {
        let labels = parse_labels(&["app=web".into(), "tier=".into()]).unwrap();
        assert_eq!(labels["app"], "web");
        assert_eq!(labels["tier"], "");
        assert_eq!(
            parse_labels(&["a=b=c".into()]),
            Err("incorrectly specified label: a=b=c".into())
        );
        assert_eq!(
            parse_labels(&["novalue".into()]),
            Err("incorrectly specified label: novalue".into())
        );
    }

    #[test]
    fn states_parse_in_any_case() {
        assert_eq!(pod_state("Ready"), Ok(PodSandboxState::SandboxReady));
        assert_eq!(pod_state("NOTREADY"), Ok(PodSandboxState::SandboxNotready));
        assert_eq!(
            pod_state("gone"),
            Err("--state should be ready or notready".into())
        );
        assert_eq!(
            container_state("Exited"),
            Ok(ContainerState::ContainerExited)
        );
        assert!(container_state("paused").is_err());
    }

    #[test]
    fn pod_flags_become_a_filter() {
        let opts = PodListOptions {
            id: "abc".into(),
            state: Some("ready".into()),
            labels: [("app".to_owned(), "web".to_owned())].into(),
            ..Default::default()
        };
        let filter = pod_filter(&opts).unwrap();
        assert_eq!(filter.id, "abc");
        assert_eq!(
            filter.state.unwrap().state,
            PodSandboxState::SandboxReady as i32
        );
        assert_eq!(filter.label_selector["app"], "web");
        assert!(
            pod_filter(&PodListOptions::default())
                .unwrap()
                .state
                .is_none()
        );
    }

    #[test]
    fn containers_default_to_running_unless_all_state_latest_or_last() {
        let running = container_filter(&ContainerListOptions::default()).unwrap();
        assert_eq!(
            running.state.unwrap().state,
            ContainerState::ContainerRunning as i32
        );
        let all = ContainerListOptions {
            all: true,
            ..Default::default()
        };
        assert!(container_filter(&all).unwrap().state.is_none());
        let exited = ContainerListOptions {
            all: true,
            state: Some("exited".into()),
            pod_id: "p".into(),
            ..Default::default()
        };
        let filter = container_filter(&exited).unwrap();
        assert_eq!(
            filter.state.unwrap().state,
            ContainerState::ContainerExited as i32
        );
        assert_eq!(filter.pod_sandbox_id, "p");
        let latest = ContainerListOptions {
            latest: true,
            state: Some("running".into()),
            ..Default::default()
        };
        assert!(container_filter(&latest).unwrap().state.is_none());
        let bad = ContainerListOptions {
            state: Some("paused".into()),
            ..Default::default()
        };
        assert!(container_filter(&bad).is_err());
    }

    #[test]
    fn pods_filter_by_regex_and_sort_newest_first() {
        let pods = vec![
            pod("web-1", "default", 10),
            pod("web-2", "prod", 30),
            pod("db", "default", 20),
        ];
        let opts = PodListOptions {
            name: "^web".into(),
            ..Default::default()
        };
        let names: Vec<String> = select_pods(pods.clone(), &opts)
            .into_iter()
            .map(|p| p.metadata.unwrap().name)
            .collect();
        assert_eq!(names, ["web-2", "web-1"]);
        let latest = PodListOptions {
            namespace: "default".into(),
            latest: true,
            ..Default::default()
        };
        let names: Vec<String> = select_pods(pods.clone(), &latest)
            .into_iter()
            .map(|p| p.metadata.unwrap().name)
            .collect();
        assert_eq!(names, ["db"]);
        let last_two = PodListOptions {
            last: 2,
            ..Default::default()
        };
        assert_eq!(select_pods(pods.clone(), &last_two).len(), 2);
        let invalid = PodListOptions {
            name: "(".into(),
            ..Default::default()
        };
        assert!(select_pods(pods, &invalid).is_empty());
    }

    #[test]
    fn containers_filter_by_name_and_pod_namespace_label() {
        let containers = vec![
            container("app", Some("prod"), 1),
            container("sidecar", Some("prod"), 2),
            container("app", None, 3),
        ];
        let prod_apps = ContainerListOptions {
            name: "app".into(),
            namespace: "prod".into(),
            ..Default::default()
        };
        assert_eq!(filter_containers(containers.clone(), &prod_apps).len(), 1);
        // A container without the kubelet's labels is in namespace "unknown".
        let unknown = ContainerListOptions {
            namespace: "^unknown$".into(),
            ..Default::default()
        };
        assert_eq!(filter_containers(containers, &unknown)[0].created_at, 3);
    }

    #[test]
    fn newest_first_keeps_latest_or_last_n() {
        let items = vec![1, 5, 3];
        assert_eq!(newest_first(items.clone(), |x| *x, false, 0), [5, 3, 1]);
        assert_eq!(newest_first(items.clone(), |x| *x, true, 0), [5]);
        assert_eq!(newest_first(items.clone(), |x| *x, true, 2), [5, 3]);
        assert_eq!(newest_first(items, |x| *x, false, 9), [5, 3, 1]);
    }
}
