//! Secrets for people: password hashing (argon2id), API keys, session and CSRF tokens.
//!
//! Only digests are stored: passwords as argon2id PHC strings, API keys and session tokens as
//! SHA-256 hex (they are 256-bit random values, so a fast hash is enough and lookups stay indexed).

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use rand::distr::{Alphanumeric, SampleString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Prefix of API keys, so that a leaked key is recognisable (secret scanners, logs).
pub const API_KEY_PREFIX: &str = "sak_";

/// Characters of a random token: 32 bytes in unpadded base64url.
pub const TOKEN_CHARS: usize = 43;

/// Why a secret could not be made.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("cannot hash the password")]
    Hash,
}

/// Hashes a password with argon2id (default parameters) and a random salt; returns a PHC string.
pub fn hash_password(password: &str) -> Result<String, AuthError> {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|_| AuthError::Hash)?;
    let hash = Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|_| AuthError::Hash)?;
    Ok(hash.to_string())
}

/// Whether `password` matches a PHC string made by `hash_password`. A malformed hash never matches.
pub fn verify_password(password: &str, hash: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok()
}

/// A new API key: the token to show once (`sak_` + 43 base64url characters) and the SHA-256 hex of
/// the whole token, which is what the store keeps.
pub fn new_api_key() -> (String, String) {
    let token = format!("{API_KEY_PREFIX}{}", random_token());
    let digest = sha256_hex(&token);
    (token, digest)
}

/// A random password of 24 letters and digits (about 143 bits).
pub fn new_password() -> String {
    Alphanumeric.sample_string(&mut rand::rng(), 24)
}

/// 32 random bytes as 43 base64url characters: session tokens, CSRF tokens, API key bodies.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Whether `text` has the shape `random_token` produces (checked before using client input).
pub fn is_token_shaped(text: &str) -> bool {
    text.len() == TOKEN_CHARS
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// SHA-256 of `text`, lowercase hex.
pub fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// Compares two secrets without an early exit on the first differing byte.
pub fn is_same_secret(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_verify_only_against_their_own_hash() {
        let hash = hash_password("correct horse battery staple").unwrap();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(verify_password("correct horse battery staple", &hash));
        assert!(!verify_password("correct horse battery stapl", &hash));
        assert!(!verify_password("", &hash));
        assert!(!verify_password(
            "correct horse battery staple",
            "not a hash"
        ));
        // Same password, different salt.
        assert_ne!(hash, hash_password("correct horse battery staple").unwrap());
    }

    #[test]
    fn api_keys_have_the_documented_shape_and_digest() {
        let (key, digest) = new_api_key();
        let body = key.strip_prefix("sak_").unwrap();
        assert!(is_token_shaped(body), "{key}");
        assert_eq!(digest, sha256_hex(&key));
        assert_eq!(digest.len(), 64);
        assert_ne!(new_api_key().0, key);
    }

    #[test]
    fn passwords_are_long_and_random() {
        let password = new_password();
        assert!(password.chars().count() >= 20);
        assert!(password.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(password, new_password());
    }

    #[test]
    fn token_shape_is_strict() {
        assert!(is_token_shaped(&random_token()));
        assert!(!is_token_shaped(""));
        assert!(!is_token_shaped(&"a".repeat(42)));
        assert!(!is_token_shaped(&format!("{}=", "a".repeat(42))));
        assert!(!is_token_shaped(&format!("{}\u{e9}", "a".repeat(41))));
    }
}
