//! API tokens: random secrets shown once, stored only as a SHA-256 digest. A token is 32
//! random bytes, so a fast digest is enough (a password hash would only slow every API call).

use base64::Engine;
use rand::Rng;
use sha2::{Digest, Sha256};

/// What every token starts with, so that one found in a log or a repository is recognisable.
pub const PREFIX: &str = "dlq_";

/// A new random token.
pub fn generate() -> String {
    let bytes: [u8; 32] = rand::rng().random();
    format!(
        "{PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// The digest stored in the users file, hex.
pub fn digest(token: &str) -> String {
    super::hex(&Sha256::digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_digests_stable() {
        let a = generate();
        assert!(a.starts_with(PREFIX) && a.len() > 40, "{a}");
        assert_ne!(a, generate());
        assert_eq!(digest(&a), digest(&a));
        assert_eq!(digest(&a).len(), 64);
        assert_ne!(digest(&a), digest(&generate()));
    }
}
