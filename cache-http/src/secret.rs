//! Shared secrets: generating them, holding them, and comparing them in constant time.
//!
//! The webhook secret and the admin token are both [`Secret`]s. A secret is compared with
//! [`subtle`], so the time a comparison takes does not tell an attacker how much of a guess
//! was right.

use std::fmt;

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use subtle::ConstantTimeEq;

/// The shortest secret accepted, in bytes. [`generate_secret`] gives 43.
pub const MIN_SECRET_LEN: usize = 24;

/// Why a secret could not be generated or accepted.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The operating system's random number generator failed.
    #[error("the OS random number generator failed: {0}")]
    Rng(getrandom::Error),
    /// No secret was configured (or it is empty).
    #[error("no {what} is configured; generate one with `cache_http::generate_secret()`")]
    Missing {
        /// What the secret is for: `webhook secret`, `admin token`.
        what: &'static str,
    },
    /// The secret is too short to resist guessing.
    #[error("the {what} is {len} bytes; it must be at least {MIN_SECRET_LEN}")]
    TooShort {
        /// What the secret is for.
        what: &'static str,
        /// Its length in bytes.
        len: usize,
    },
}

/// Generates a secret: 256 bits from the OS random number generator, as URL-safe base64
/// without padding (43 characters), fit for a header value or an environment variable.
///
/// ```
/// let secret = cache_http::generate_secret()?;
/// assert_eq!(secret.len(), 43);
/// assert!(secret.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
/// # Ok::<(), cache_http::SecretError>(())
/// ```
pub fn generate_secret() -> Result<String, SecretError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(SecretError::Rng)?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// A configured secret (webhook secret, admin token). Its `Debug` output never shows it.
#[derive(Clone)]
pub struct Secret(Box<[u8]>);

impl Secret {
    /// Accepts `value` as the secret for `what` (used in error messages): it must be at least
    /// [`MIN_SECRET_LEN`] bytes once surrounding whitespace is trimmed.
    pub fn new(what: &'static str, value: impl AsRef<str>) -> Result<Self, SecretError> {
        let value = value.as_ref().trim();
        if value.is_empty() {
            return Err(SecretError::Missing { what });
        }
        if value.len() < MIN_SECRET_LEN {
            return Err(SecretError::TooShort { what, len: value.len() });
        }
        Ok(Self(value.as_bytes().into()))
    }

    /// Whether `candidate` is this secret, in time that depends only on the lengths.
    pub fn matches(&self, candidate: &[u8]) -> bool {
        // `ct_eq` on slices of different lengths answers false at once; the length of a
        // secret is not what it protects.
        self.0.as_ref().ct_eq(candidate).into()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secrets_are_256_bits_of_url_safe_base64() {
        let a = generate_secret().unwrap();
        let b = generate_secret().unwrap();
        assert_ne!(a, b);
        assert_eq!(URL_SAFE_NO_PAD.decode(&a).unwrap().len(), 32);
        assert!(!a.contains('='));
        Secret::new("test", &a).unwrap();
    }

    #[test]
    fn refuses_missing_and_short_secrets() {
        assert!(matches!(
            Secret::new("admin token", "  "),
            Err(SecretError::Missing { .. })
        ));
        let err = Secret::new("admin token", "short").unwrap_err();
        assert!(matches!(err, SecretError::TooShort { len: 5, .. }));
        assert!(err.to_string().contains("admin token"));
    }

    #[test]
    fn compares_exactly() {
        let secret = Secret::new("test", "0123456789abcdef0123456789").unwrap();
        assert!(secret.matches(b"0123456789abcdef0123456789"));
        assert!(!secret.matches(b"0123456789abcdef012345678X"));
        assert!(!secret.matches(b"0123456789abcdef012345678"));
        assert!(!secret.matches(b""));
        assert_eq!(format!("{secret:?}"), "Secret(<redacted>)");
    }
}
