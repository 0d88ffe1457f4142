//! The few Kubernetes name rules the builders check.

use super::BuildError;

/// RFC 1123 label: at most 63 characters of `a-z`, `0-9` and `-`, starting
/// and ending with a letter or digit (container names, namespaces,
/// hostnames).
pub(super) fn dns_label(field: &'static str, value: &str) -> Result<(), BuildError> {
    if value.is_empty() {
        return Err(BuildError::invalid(field, value, "must not be empty"));
    }
    if value.len() > 63 {
        return Err(BuildError::invalid(
            field,
            value,
            "must be at most 63 characters",
        ));
    }
    label_chars(field, value, value)
}

/// RFC 1123 subdomain: at most 253 characters, dot-separated labels (pod
/// names).
pub(super) fn dns_subdomain(field: &'static str, value: &str) -> Result<(), BuildError> {
    if value.is_empty() {
        return Err(BuildError::invalid(field, value, "must not be empty"));
    }
    if value.len() > 253 {
        return Err(BuildError::invalid(
            field,
            value,
            "must be at most 253 characters",
        ));
    }
    value
        .split('.')
        .try_for_each(|part| label_chars(field, value, part))
}

fn label_chars(field: &'static str, whole: &str, part: &str) -> Result<(), BuildError> {
    const RULE: &str = "must consist of lower-case letters, digits and '-', \
                        and start and end with a letter or digit (RFC 1123)";
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
    let ok_end = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if part.chars().all(ok_char) && ok_end(part.chars().next()) && ok_end(part.chars().last()) {
        Ok(())
    } else {
        Err(BuildError::invalid(field, whole, RULE))
    }
}

/// A pod UID: non-empty, and safe inside a log directory name (kubelet reads
/// the UID back as the part after the last `_`).
pub(super) fn uid(value: &str) -> Result<(), BuildError> {
    if value.is_empty() {
        return Err(BuildError::invalid("pod uid", value, "must not be empty"));
    }
    if !value
        .chars()
        .all(|c| c.is_ascii_graphic() && c != '/' && c != '_')
    {
        return Err(BuildError::invalid(
            "pod uid",
            value,
            "must be printable ASCII without '/', '_' or spaces",
        ));
    }
    Ok(())
}

/// An absolute path.
pub(super) fn absolute(field: &'static str, value: &str) -> Result<(), BuildError> {
    if value.starts_with('/') {
        Ok(())
    } else {
        Err(BuildError::invalid(
            field,
            value,
            "must be an absolute path",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_subdomains() {
        for ok in ["a", "web-1", "0abc", &"a".repeat(63)] {
            dns_label("x", ok).unwrap();
        }
        for bad in ["", "-a", "a-", "A", "a_b", "a.b", &"a".repeat(64)] {
            dns_label("x", bad).unwrap_err();
        }
        for ok in ["web", "web.example-1.io", &format!("{}.b", "a".repeat(63))] {
            dns_subdomain("x", ok).unwrap();
        }
        for bad in ["", ".a", "a.", "a..b", "Web", "a_b", &"a.".repeat(127)] {
            dns_subdomain("x", bad).unwrap_err();
        }
    }

    #[test]
    fn uids_and_paths() {
        uid("6f1c0a4e-0000-4000-8000-000000000001").unwrap();
        uid("uid-logs-1").unwrap();
        for bad in ["", "a/b", "a_b", "a b", "é"] {
            uid(bad).unwrap_err();
        }
        absolute("p", "/dev/termination-log").unwrap();
        absolute("p", "relative").unwrap_err();
    }

    #[test]
    fn errors_name_field_value_and_rule() {
        let err = dns_label("container name", "Web").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid container name \"Web\": must consist of lower-case letters, digits and '-', \
             and start and end with a letter or digit (RFC 1123)"
        );
    }
}
