//! Password hashing with argon2id (PHC strings, salted, default OWASP-level parameters).
//!
//! Each hash needs `m_cost` KiB of working memory (19 MiB with the defaults). That memory is
//! allocated here, once per hash, by [`WorkingMemory`] rather than inside the argon2 crate, so that
//! it goes back to the operating system when the hash is done: glibc serves an allocation of at
//! least 32 MiB (the largest value its dynamic mmap threshold can reach on 64-bit) by `mmap` and
//! returns it by `munmap` on free, whereas a 19 MiB block, once the threshold has grown past it,
//! stays in the thread's malloc arena. Only the pages argon2 touches (19 MiB) become resident.
//! The figures are in RELIABILITY.md ("Login storm").
//!
//! These functions are CPU-heavy and blocking: callers run them on the bounded
//! [`PasswordPool`](crate::pool::PasswordPool), never on the async runtime.

use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{ARGON2ID_IDENT, Algorithm, Argon2, Block, Params, Version};
use rand::rngs::OsRng;

/// Working memory below which an allocation could be served from a malloc arena (glibc's
/// `DEFAULT_MMAP_THRESHOLD_MAX` on 64-bit is 32 MiB), in argon2 blocks of 1 KiB, plus one.
const MMAP_FLOOR_BLOCKS: usize = 32 * 1024 + 1;

/// Largest `m_cost` (KiB) a stored hash may ask for: anything above is refused, never computed, so
/// a corrupt or hostile row cannot make one verification allocate gigabytes.
pub const MAX_M_COST_KIB: u32 = 256 * 1024;

/// Argon2's working memory for one hash; freed (and, with glibc, unmapped) on drop.
struct WorkingMemory(Vec<Block>);

impl WorkingMemory {
    fn new(blocks: usize) -> Self {
        let mut v = Vec::with_capacity(blocks.max(MMAP_FLOOR_BLOCKS));
        v.resize(blocks, Block::default());
        Self(v)
    }
}

/// Hashes `password` into a PHC string (`$argon2id$...`) with the default parameters.
pub fn hash_password(password: &str) -> Result<String, argon2::password_hash::Error> {
    let salt = SaltString::generate(&mut OsRng);
    let mut salt_buf = [0u8; 64];
    let salt_bytes = salt.decode_b64(&mut salt_buf)?;
    let params = Params::default();
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    let memory = WorkingMemory::new(params.block_count());
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone()).hash_password_into_with_memory(
        password.as_bytes(),
        salt_bytes,
        &mut out,
        memory.0,
    )?;
    let phc = PasswordHash {
        algorithm: ARGON2ID_IDENT,
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params)?,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&out)?),
    };
    Ok(phc.to_string())
}

/// Whether `password` matches `phc`. A malformed stored hash (or a user without a password, whose
/// hash is `!`) never matches, and costs the same as a real verification: it is verified against
/// [`dummy_hash`] instead, so the time taken does not tell such users apart.
pub fn verify_password(password: &str, phc: &str) -> bool {
    match verify_phc(password, phc) {
        Some(ok) => ok,
        None => {
            // Only the time matters here: the dummy never matches, so the result is not used.
            std::hint::black_box(verify_phc(password, dummy_hash()));
            false
        }
    }
}

/// `Some(matches)` for a well-formed argon2 PHC string within [`MAX_M_COST_KIB`], else `None`.
fn verify_phc(password: &str, phc: &str) -> Option<bool> {
    let parsed = PasswordHash::new(phc).ok()?;
    let algorithm = Algorithm::try_from(parsed.algorithm).ok()?;
    let version = match parsed.version {
        Some(v) => Version::try_from(v).ok()?,
        None => Version::default(),
    };
    let params = Params::try_from(&parsed).ok()?;
    if params.m_cost() > MAX_M_COST_KIB {
        return None;
    }
    let expected = parsed.hash?;
    let mut salt_buf = [0u8; 64];
    let salt = parsed.salt?.decode_b64(&mut salt_buf).ok()?;
    let mut out = vec![0u8; expected.len()];
    let memory = WorkingMemory::new(params.block_count());
    Argon2::new(algorithm, version, params)
        .hash_password_into_with_memory(password.as_bytes(), salt, &mut out, memory.0)
        .ok()?;
    // `Output`'s equality is constant-time.
    Some(Output::new(&out).ok()? == expected)
}

/// A PHC string that never verifies, used to spend the same time on unknown users. Its parameters
/// are the ones [`hash_password`] uses (a unit test keeps them in step).
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
    use std::time::Instant;

    use argon2::password_hash::PasswordVerifier;

    use super::*;

    #[test]
    fn hash_and_verify() {
        let h = hash_password("Secr3t-pass").unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(verify_password("Secr3t-pass", &h));
        assert!(!verify_password("Secr3t-pasS", &h));
        assert!(!verify_password("x", "not a hash"));
        assert!(!verify_password("x", dummy_hash()));
        assert_ne!(hash_password("Secr3t-pass").unwrap(), h, "salted");
    }

    /// Our hashes are standard PHC strings: the argon2 crate's own verifier accepts them, and ours
    /// accepts the crate's.
    #[test]
    fn interoperates_with_the_argon2_crate() {
        let ours = hash_password("Secr3t-pass").unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(Argon2::default().verify_password(b"Secr3t-pass", &parsed).is_ok());
        assert!(Argon2::default().verify_password(b"Secr3t-pasS", &parsed).is_err());
        let salt = SaltString::generate(&mut OsRng);
        let theirs = argon2::PasswordHasher::hash_password(&Argon2::default(), b"Other-pass-1", &salt)
            .unwrap()
            .to_string();
        assert!(verify_password("Other-pass-1", &theirs));
        assert!(!verify_password("Other-pass-2", &theirs));
    }

    #[test]
    fn dummy_hash_has_the_default_parameters() {
        let parsed = PasswordHash::new(dummy_hash()).unwrap();
        let (p, d) = (Params::try_from(&parsed).unwrap(), Params::default());
        assert_eq!((p.m_cost(), p.t_cost(), p.p_cost()), (d.m_cost(), d.t_cost(), d.p_cost()));
        assert_eq!(p.output_len(), Some(Params::DEFAULT_OUTPUT_LEN));
        assert_eq!(parsed.algorithm, ARGON2ID_IDENT);
    }

    /// A user without a password (`!`) or a corrupt hash costs a full verification, like a wrong
    /// password: otherwise the response time would tell such accounts apart.
    #[test]
    fn unusable_hashes_cost_a_full_verification() {
        let h = hash_password("Secr3t-pass").unwrap();
        let time = |phc: &str| {
            let t = Instant::now();
            assert!(!verify_password("Wrong-pass-1", phc));
            t.elapsed()
        };
        // The fastest of three real verifications approximates argon2's intrinsic cost; an
        // unusable hash must spend at least a third of it (without the dummy it takes microseconds).
        let real = (0..3).map(|_| time(&h)).min().unwrap();
        for unusable in ["!", "", "$argon2id$v=19$m=19456,t=2,p=1$bad"] {
            let spent = time(unusable);
            assert!(spent * 3 > real, "{unusable:?}: {spent:?} vs a real verification's {real:?}");
        }
    }

    #[test]
    fn oversized_memory_parameters_are_refused_not_computed() {
        let huge =
            format!("$argon2id$v=19$m={},t=1,p=1$c29tZXNhbHRzb21lc2FsdA$AAAAAAAAAAAAAAAAAAAAAA", 4 << 20);
        assert_eq!(verify_phc("x", &huge), None);
        assert!(!verify_password("x", &huge));
    }

    #[test]
    fn rules() {
        assert!(password_acceptable("abcdef12"));
        assert!(!password_acceptable("abcdefgh"));
        assert!(!password_acceptable("aB1"));
        assert!(!password_acceptable(&"aB1".repeat(30)));
    }
}
