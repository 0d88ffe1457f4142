//! kubelet's container hash (`io.kubernetes.container.hash`).

/// kubelet's hash of a container, the value of
/// [`CONTAINER_HASH_ANNOTATION`](super::CONTAINER_HASH_ANNOTATION) (written
/// in lower-case hexadecimal).
///
/// Since Kubernetes 1.31 kubelet hashes only the container's name and image
/// (`HashContainer` and `pickFieldsToHash` in
/// `pkg/kubelet/container/helpers.go`): the Go JSON encoding of
/// `{"image": image, "name": name}`, printed by the `dump.ForHash` helper as
/// `([]uint8)[123 34 …]`, through 32-bit FNV-1a. This function computes the
/// same value, so kubelet would take a container made with these builders for
/// one it made itself; the upstream test vector (`test_container`,
/// `foo/image:v1` → `8e45cbd0`) is pinned in this crate's tests.
pub fn container_hash(name: &str, image: &str) -> u64 {
    let mut json = String::with_capacity(name.len() + image.len() + 24);
    json.push_str("{\"image\":");
    push_go_json_string(&mut json, image);
    json.push_str(",\"name\":");
    push_go_json_string(&mut json, name);
    json.push('}');

    let mut hash: u32 = 0x811c_9dc5;
    let mut feed = |bytes: &[u8]| {
        for &b in bytes {
            hash ^= u32::from(b);
            hash = hash.wrapping_mul(0x0100_0193);
        }
    };
    feed(b"([]uint8)[");
    let mut digits = [0u8; 3];
    for (i, b) in json.bytes().enumerate() {
        if i > 0 {
            feed(b" ");
        }
        feed(decimal(b, &mut digits));
    }
    feed(b"]");
    u64::from(hash)
}

fn decimal(b: u8, buf: &mut [u8; 3]) -> &[u8] {
    let mut n = b;
    let mut at = 3;
    loop {
        at -= 1;
        buf[at] = b'0' + n % 10;
        n /= 10;
        if n == 0 {
            return &buf[at..];
        }
    }
}

/// A JSON string as Go's `encoding/json` writes it with `Marshal`: HTML
/// characters and U+2028/U+2029 escaped, `\b \f \n \r \t` short, other
/// control characters as `\u00xx`.
fn push_go_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", u32::from(c)));
            }
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_upstream_test_vector() {
        // kubernetes pkg/kubelet/container/helpers_test.go, TestHashContainer
        // (the name-and-image hash of Kubernetes 1.31 and later).
        assert_eq!(
            container_hash("test_container", "foo/image:v1"),
            0x8e45_cbd0
        );
    }

    #[test]
    fn depends_on_name_and_image_only() {
        let a = container_hash("web", "nginx:1.27");
        assert_ne!(a, container_hash("web", "nginx:1.28"));
        assert_ne!(a, container_hash("api", "nginx:1.27"));
        assert!(a <= u64::from(u32::MAX));
    }

    #[test]
    fn go_json_escaping() {
        let mut s = String::new();
        push_go_json_string(&mut s, "a\"b\\c\n\t<>&\u{1}\u{8}\u{2028}é");
        assert_eq!(s, r#""a\"b\\c\n\t\u003c\u003e\u0026\u0001\b\u2028é""#);
    }

    #[test]
    fn decimal_bytes() {
        let mut buf = [0u8; 3];
        assert_eq!(decimal(0, &mut buf), b"0");
        assert_eq!(decimal(34, &mut buf), b"34");
        assert_eq!(decimal(255, &mut buf), b"255");
    }
}
