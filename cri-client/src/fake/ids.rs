//! Deterministic identifiers: container-runtime-style 64-digit hexadecimal
//! IDs, image digests and streaming tokens. Nothing here needs to be
//! cryptographic; it must only look real and be reproducible in tests.

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xCBF2_9CE4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01B3)
    })
}

fn hex64(mut seed: u64) -> String {
    (0..4)
        .map(|_| format!("{:016x}", splitmix64(&mut seed)))
        .collect()
}

/// 64 hexadecimal digits derived from `text`.
pub(super) fn hex_digest(text: &str) -> String {
    hex64(fnv1a(text))
}

/// The `n`th ID of a kind (`"sandbox"`, `"container"`): 64 hexadecimal
/// digits, like containerd's.
pub(super) fn object_id(kind: &str, n: u64) -> String {
    hex64(fnv1a(kind) ^ n.wrapping_mul(0xA24B_AED4_963E_E407))
}

/// The `n`th streaming token: 8 characters of URL-safe base64, like the
/// tokens of kubelet's streaming server.
pub(super) fn stream_token(n: u64) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut seed = n ^ 0x5EED;
    let bits = splitmix64(&mut seed);
    (0..8)
        .map(|i| char::from(ALPHABET[((bits >> (i * 6)) & 63) as usize]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_and_uniqueness() {
        let ids: std::collections::HashSet<_> = (0..1000).map(|n| object_id("c", n)).collect();
        assert_eq!(ids.len(), 1000);
        assert!(ids.iter().all(|id| id.len() == 64));
        assert_ne!(object_id("sandbox", 1), object_id("container", 1));
        assert_eq!(hex_digest("x"), hex_digest("x"));
        let token = stream_token(7);
        assert_eq!(token.len(), 8);
        assert_ne!(token, stream_token(8));
    }
}
