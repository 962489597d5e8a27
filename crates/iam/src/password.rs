//! Password hashing with argon2id (PHC strings, salted, default OWASP-level parameters).

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use rand::rngs::OsRng;

/// Hashes `password` into a PHC string (`$argon2id$...`).
pub fn hash_password(password: &str) -> Result<String, argon2::password_hash::Error> {
    let salt = SaltString::generate(&mut OsRng);
    Ok(Argon2::default().hash_password(password.as_bytes(), &salt)?.to_string())
}

/// Whether `password` matches `phc`. A malformed stored hash never matches.
pub fn verify_password(password: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(parsed) => Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok(),
        Err(_) => false,
    }
}

/// A PHC string that never verifies, used to spend the same time on unknown users.
pub fn dummy_hash() -> &'static str {
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$2uy1vuL8Ww+fEObRuGKq3+zUQdX/qdbdAfdAw6Pnbtc"
}

/// Vendor-like password rules: 8..=64 characters with at least two of: lower, upper, digit, other.
pub fn password_acceptable(p: &str) -> bool {
    let n = p.chars().count();
    if !(8..=64).contains(&n) {
        return false;
    }
    let classes = [
        p.chars().any(|c| c.is_ascii_lowercase()),
        p.chars().any(|c| c.is_ascii_uppercase()),
        p.chars().any(|c| c.is_ascii_digit()),
        p.chars().any(|c| !c.is_ascii_alphanumeric()),
    ];
    classes.iter().filter(|c| **c).count() >= 2
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn hash_and_verify() {
        let h = hash_password("Secr3t-pass").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("Secr3t-pass", &h));
        assert!(!verify_password("Secr3t-pasS", &h));
        assert!(!verify_password("x", "not a hash"));
        assert!(!verify_password("x", dummy_hash()));
        assert_ne!(hash_password("Secr3t-pass").unwrap(), h, "salted");
    }

    #[test]
    fn rules() {
        assert!(password_acceptable("abcdef12"));
        assert!(!password_acceptable("abcdefgh"));
        assert!(!password_acceptable("aB1"));
        assert!(!password_acceptable(&"aB1".repeat(30)));
    }
}
