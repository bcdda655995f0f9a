//! Bearer secrets (API keys, operator tokens): generation, hashing and comparison.
//!
//! Secrets carry ≥256 random bits, so a single SHA-256 is the right hash (no stretching is
//! needed for high-entropy input) and lets a token be found by an indexed lookup.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::Secret;

pub const SECRET_KEY_PREFIX: &str = "kw_sk_";
pub const PUBLIC_KEY_PREFIX: &str = "kw_pk_";
pub const ADMIN_TOKEN_PREFIX: &str = "kw_admin_";

/// How many characters of a secret may be shown in lists: the prefix and 6 more.
const SHOWN_CHARS: usize = 6;

/// A freshly minted secret: shown to its owner once, then only its hash is kept.
pub struct IssuedSecret {
    pub secret: Secret,
    pub hash: Vec<u8>,
    pub display_prefix: String,
}

/// `prefix` followed by 32 random bytes, base64url without padding (43 characters).
pub fn issue_secret(prefix: &str) -> IssuedSecret {
    let secret = format!("{prefix}{}", random_base64(32));
    let display_prefix = secret[..prefix.len() + SHOWN_CHARS].to_owned();
    IssuedSecret {
        hash: hash_secret(&secret),
        display_prefix,
        secret: Secret::new(secret),
    }
}

/// A non-secret identifier with a prefix, e.g. a public key: 16 random bytes.
pub fn random_identifier(prefix: &str) -> String {
    format!("{prefix}{}", random_base64(16))
}

pub fn hash_secret(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

pub fn hashes_match(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

pub fn random_base64(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::fill(&mut buf[..]);
    URL_SAFE_NO_PAD.encode(buf)
}

/// HMAC-SHA256 of `message` under `key`, base64url.
pub fn sign(key: &[u8], message: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    // HMAC takes keys of any length; this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(message);
    URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

/// Checks a `sign` result in constant time.
pub fn verify(key: &[u8], message: &[u8], signature: &str) -> bool {
    hashes_match(sign(key, message).as_bytes(), signature.as_bytes())
}

/// A master key: exactly 32 bytes, written as 64 hex characters or standard base64.
pub fn parse_master_key(text: &str) -> Result<[u8; 32], &'static str> {
    use base64::engine::general_purpose::STANDARD;
    let text = text.trim();
    let bytes = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        hex::decode(text).map_err(|_| "not hex")?
    } else {
        STANDARD
            .decode(text)
            .map_err(|_| "neither hex nor base64")?
    };
    bytes.try_into().map_err(|_| "not 32 bytes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_only_for_their_key_and_message() {
        let sig = sign(b"key", b"message");
        assert!(verify(b"key", b"message", &sig));
        assert!(!verify(b"key", b"messagf", &sig));
        assert!(!verify(b"kez", b"message", &sig));
    }

    #[test]
    fn issued_secrets_are_long_unique_and_hashed() {
        let a = issue_secret(SECRET_KEY_PREFIX);
        let b = issue_secret(SECRET_KEY_PREFIX);
        assert!(a.secret.expose().starts_with(SECRET_KEY_PREFIX));
        // 32 bytes = 256 bits → 43 base64url characters.
        assert_eq!(a.secret.expose().len(), SECRET_KEY_PREFIX.len() + 43);
        assert_ne!(a.secret, b.secret);
        assert!(hashes_match(&a.hash, &hash_secret(a.secret.expose())));
        assert!(!hashes_match(&a.hash, &b.hash));
        assert!(a.secret.expose().starts_with(&a.display_prefix));
    }
}
