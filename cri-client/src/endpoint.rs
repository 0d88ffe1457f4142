//! Parsing of CRI endpoints, the way kubelet's `--container-runtime-endpoint`
//! takes them on Linux.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::error::{Error, Result};

/// Longest path that fits into a Unix socket address on Linux: `sun_path`
/// holds 108 bytes including the terminating NUL.
const MAX_SOCKET_PATH_LEN: usize = 107;

/// The address of a CRI runtime: the path of its Unix socket.
///
/// Parsed from the forms kubelet accepts for `--container-runtime-endpoint`
/// and `--image-service-endpoint` on Linux:
///
/// - `unix:///run/containerd/containerd.sock`: a `unix://` URL with an
///   absolute path and no host. The scheme is matched case-insensitively and
///   `%XX` escapes in the path are decoded, as Go's URL parser does.
/// - `/run/containerd/containerd.sock`: a bare absolute path, taken literally.
///   (kubelet also accepts this, treating it as `unix://` plus the path.)
///
/// Everything else is an error: other schemes such as `tcp://` or `npipe://`
/// give [`Error::UnsupportedScheme`]; relative paths, a host in a `unix://`
/// URL (`unix://host/path`), a query or fragment, an empty path and paths
/// too long for a socket address give [`Error::InvalidEndpoint`].
///
/// ```
/// use cri_client::Endpoint;
///
/// let endpoint: Endpoint = "unix:///run/containerd/containerd.sock".parse()?;
/// assert_eq!(endpoint.path().to_str(), Some("/run/containerd/containerd.sock"));
/// assert_eq!(endpoint.to_string(), "unix:///run/containerd/containerd.sock");
///
/// let bare = Endpoint::parse("/run/containerd/containerd.sock")?;
/// assert_eq!(bare, endpoint);
///
/// assert!(Endpoint::parse("tcp://127.0.0.1:1234").is_err());
/// # Ok::<(), cri_client::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Endpoint {
    path: PathBuf,
}

impl Endpoint {
    /// Parses an endpoint string; see the [type documentation](Endpoint) for
    /// the accepted forms.
    pub fn parse(endpoint: &str) -> Result<Self> {
        let invalid = |reason: &str| Error::InvalidEndpoint {
            endpoint: endpoint.to_owned(),
            reason: reason.to_owned(),
        };

        if endpoint.is_empty() {
            return Err(invalid("the endpoint is empty"));
        }
        if endpoint.starts_with('/') {
            return Self::from_socket_path(endpoint).map_err(|reason| invalid(&reason));
        }

        let Some((scheme, rest)) = endpoint.split_once("://") else {
            return Err(invalid(
                "expected unix:///absolute/path/to.sock or an absolute path",
            ));
        };
        if !scheme.eq_ignore_ascii_case("unix") {
            return Err(Error::UnsupportedScheme {
                endpoint: endpoint.to_owned(),
                scheme: scheme.to_owned(),
            });
        }
        if rest.contains(['?', '#']) {
            return Err(invalid(
                "a unix endpoint cannot have a query or fragment (write ? and # in the path as %3F and %23)",
            ));
        }
        if rest.is_empty() {
            return Err(invalid("the socket path is empty"));
        }
        if !rest.starts_with('/') {
            return Err(invalid(
                "a unix endpoint has no host: write unix:///absolute/path/to.sock with three slashes",
            ));
        }
        let path = percent_decode(rest).map_err(|reason| invalid(&reason))?;
        Self::from_socket_path(&path).map_err(|reason| invalid(&reason))
    }

    /// Makes an endpoint from the path of a Unix socket, which must be
    /// absolute and short enough for a socket address.
    pub fn from_path(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let Some(text) = path.to_str() else {
            return Err(Error::InvalidEndpoint {
                endpoint: path.display().to_string(),
                reason: "the socket path is not valid UTF-8".to_owned(),
            });
        };
        Self::from_socket_path(text).map_err(|reason| Error::InvalidEndpoint {
            endpoint: text.to_owned(),
            reason,
        })
    }

    /// The path of the runtime's Unix socket.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Checks a decoded socket path; the error is the reason only.
    fn from_socket_path(path: &str) -> Result<Self, String> {
        if path.is_empty() {
            return Err("the socket path is empty".to_owned());
        }
        if !path.starts_with('/') {
            return Err("the socket path must be absolute".to_owned());
        }
        if path.contains('\0') {
            return Err("the socket path contains a NUL byte".to_owned());
        }
        if path.len() > MAX_SOCKET_PATH_LEN {
            return Err(format!(
                "the socket path is {} bytes long, a unix socket address holds at most {MAX_SOCKET_PATH_LEN}",
                path.len()
            ));
        }
        Ok(Self {
            path: PathBuf::from(path),
        })
    }
}

impl FromStr for Endpoint {
    type Err = Error;

    fn from_str(endpoint: &str) -> Result<Self> {
        Self::parse(endpoint)
    }
}

impl TryFrom<&str> for Endpoint {
    type Error = Error;

    fn try_from(endpoint: &str) -> Result<Self> {
        Self::parse(endpoint)
    }
}

/// Writes the endpoint as a `unix://` URL that [`Endpoint::parse`] reads back
/// to the same endpoint (`%`, `?` and `#` in the path are escaped).
impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("unix://")?;
        // Paths are built from `&str` only, so this is lossless.
        for c in self.path.to_string_lossy().chars() {
            match c {
                '%' => f.write_str("%25")?,
                '?' => f.write_str("%3F")?,
                '#' => f.write_str("%23")?,
                c => fmt::Write::write_char(f, c)?,
            }
        }
        Ok(())
    }
}

/// Decodes `%XX` escapes like Go's `url.PathUnescape`; the error is the reason.
fn percent_decode(input: &str) -> Result<String, String> {
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let escape = bytes
                .get(i + 1..i + 3)
                .and_then(|h| Some((hex_value(h[0])? << 4) | hex_value(h[1])?));
            let Some(byte) = escape else {
                let end = (i + 3).min(bytes.len());
                return Err(format!(
                    "invalid escape {:?} in the socket path",
                    String::from_utf8_lossy(&bytes[i..end])
                ));
            };
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "the decoded socket path is not valid UTF-8".to_owned())
}

/// The value of one hexadecimal digit.
fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path_of(endpoint: &str) -> String {
        Endpoint::parse(endpoint)
            .unwrap_or_else(|e| panic!("{endpoint:?} should parse: {e}"))
            .path()
            .to_str()
            .unwrap()
            .to_owned()
    }

    fn invalid_reason(endpoint: &str) -> String {
        match Endpoint::parse(endpoint) {
            Err(Error::InvalidEndpoint {
                endpoint: e,
                reason,
            }) => {
                assert_eq!(e, endpoint);
                reason
            }
            other => panic!("{endpoint:?}: expected InvalidEndpoint, got {other:?}"),
        }
    }

    #[test]
    fn unix_url_with_absolute_path() {
        assert_eq!(
            path_of("unix:///run/containerd/containerd.sock"),
            "/run/containerd/containerd.sock"
        );
        assert_eq!(
            path_of("unix:///var/run/crio/crio.sock"),
            "/var/run/crio/crio.sock"
        );
        assert_eq!(
            path_of("unix:///run/node-sdk/containerd/containerd.sock"),
            "/run/node-sdk/containerd/containerd.sock"
        );
    }

    #[test]
    fn scheme_is_case_insensitive() {
        assert_eq!(path_of("UNIX:///run/x.sock"), "/run/x.sock");
        assert_eq!(path_of("Unix:///run/x.sock"), "/run/x.sock");
    }

    #[test]
    fn bare_absolute_path() {
        assert_eq!(
            path_of("/run/containerd/containerd.sock"),
            "/run/containerd/containerd.sock"
        );
        // Taken literally: no unescaping of bare paths.
        assert_eq!(path_of("/run/a%20b.sock"), "/run/a%20b.sock");
    }

    #[test]
    fn url_path_is_unescaped() {
        assert_eq!(path_of("unix:///run/a%20b.sock"), "/run/a b.sock");
        assert_eq!(path_of("unix:///run/%3Fq%23f%25.sock"), "/run/?q#f%.sock");
        assert!(invalid_reason("unix:///run/a%2.sock").contains("invalid escape"));
        assert!(invalid_reason("unix:///run/a%zz.sock").contains("invalid escape"));
        assert!(invalid_reason("unix:///run/a%+1.sock").contains("invalid escape"));
        assert!(invalid_reason("unix:///run/a%").contains("invalid escape"));
        assert!(invalid_reason("unix:///run/%ff.sock").contains("UTF-8"));
        assert!(invalid_reason("unix:///run/%00.sock").contains("NUL"));
    }

    #[test]
    fn other_schemes_are_unsupported() {
        for (endpoint, scheme) in [
            ("tcp://127.0.0.1:1234", "tcp"),
            ("npipe:////./pipe/containerd-containerd", "npipe"),
            ("http://localhost", "http"),
            ("unixgram:///run/x.sock", "unixgram"),
        ] {
            match Endpoint::parse(endpoint) {
                Err(err @ Error::UnsupportedScheme { .. }) => {
                    let Error::UnsupportedScheme {
                        endpoint: e,
                        scheme: s,
                    } = &err
                    else {
                        unreachable!()
                    };
                    assert_eq!(e, endpoint);
                    assert_eq!(s, scheme);
                    let message = err.to_string();
                    assert!(message.contains("only unix sockets"), "{message}");
                    assert!(message.contains(scheme), "{message}");
                }
                other => panic!("{endpoint:?}: expected UnsupportedScheme, got {other:?}"),
            }
        }
    }

    #[test]
    fn malformed_endpoints_are_invalid() {
        assert!(invalid_reason("").contains("empty"));
        assert!(invalid_reason("run/containerd.sock").contains("absolute"));
        assert!(invalid_reason("containerd.sock").contains("absolute"));
        assert!(invalid_reason("unix:/run/x.sock").contains("absolute"));
        assert!(invalid_reason("localhost:1234").contains("absolute"));
        assert!(invalid_reason("unix://").contains("empty"));
        assert!(invalid_reason("unix://run/x.sock").contains("three slashes"));
        assert!(invalid_reason("unix://localhost/run/x.sock").contains("three slashes"));
        assert!(invalid_reason("unix:///run/x.sock?timeout=1").contains("query"));
        assert!(invalid_reason("unix:///run/x.sock#frag").contains("query"));
        assert!(invalid_reason("/run/\0.sock").contains("NUL"));
    }

    #[test]
    fn socket_path_length_limit() {
        let longest = format!("/{}", "a".repeat(MAX_SOCKET_PATH_LEN - 1));
        assert_eq!(path_of(&longest), longest);
        let too_long = format!("/{}", "a".repeat(MAX_SOCKET_PATH_LEN));
        assert!(invalid_reason(&too_long).contains("at most 107"));
        assert!(invalid_reason(&format!("unix://{too_long}")).contains("at most 107"));
    }

    #[test]
    fn error_messages_name_the_endpoint() {
        let message = Endpoint::parse("unix://host/x.sock")
            .unwrap_err()
            .to_string();
        assert!(
            message.starts_with("invalid CRI endpoint \"unix://host/x.sock\": "),
            "{message}"
        );
    }

    #[test]
    fn display_round_trips() {
        for endpoint in [
            "unix:///run/containerd/containerd.sock",
            "/run/containerd/containerd.sock",
            "/run/a b.sock",
            "/run/a%20b?c#d.sock",
            "unix:///run/a%25b.sock",
        ] {
            let parsed = Endpoint::parse(endpoint).unwrap();
            let shown = parsed.to_string();
            assert!(shown.starts_with("unix:///"), "{shown}");
            assert_eq!(
                Endpoint::parse(&shown).unwrap(),
                parsed,
                "{endpoint:?} -> {shown:?}"
            );
        }
    }

    #[test]
    fn from_path_and_trait_impls() {
        let endpoint = Endpoint::from_path("/run/x.sock").unwrap();
        assert_eq!(endpoint, "unix:///run/x.sock".parse().unwrap());
        assert_eq!(endpoint, Endpoint::try_from("/run/x.sock").unwrap());
        assert!(matches!(
            Endpoint::from_path("relative.sock"),
            Err(Error::InvalidEndpoint { .. })
        ));
    }
}
