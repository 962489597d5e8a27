//! Signed tokens: verified with one HMAC, no database round trip.
//!
//! Format: `DPT1.<base64url(claims JSON)>.<base64url(HMAC-SHA256(token key, "DPT1." + claims part))>`.
//! The token key is derived from the master key, so every replica sharing the master key verifies
//! every other replica's tokens. Revocation is not in the token: the claims carry the user's
//! `token_epoch`, which the caller compares with the current epoch (see `service::Iam`).
//! Tokens are opaque to clients (the vendor's are too) and never logged.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

const PREFIX: &str = "DPT1.";
/// Token lifetime (24 h, like the vendor's).
pub const TOKEN_TTL_SECS: i64 = 24 * 3600;
/// Tolerated clock difference between replicas for `iat` in the future.
const IAT_SKEW_SECS: i64 = 300;
/// Upper bound of a token's length; anything longer is refused before decoding.
pub const MAX_TOKEN_LEN: usize = 4096;

/// What a token asserts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// User id.
    pub sub: String,
    /// Domain (account) id.
    pub dom: String,
    /// Project id the token is scoped to; `None` for a domain-scoped (account-level) token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prj: Option<String>,
    /// The user's token epoch at issue time.
    pub epo: i64,
    /// Issued at, unix seconds.
    pub iat: i64,
    /// Expires at, unix seconds.
    pub exp: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("malformed token")]
    Malformed,
    #[error("bad token signature")]
    BadSignature,
    #[error("token expired")]
    Expired,
    #[error("token not yet valid")]
    NotYetValid,
}

fn mac(key: &[u8; 32], data: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    if let Ok(mut m) = Hmac::<Sha256>::new_from_slice(key) {
        m.update(data);
        out.copy_from_slice(&m.finalize().into_bytes());
    }
    out
}

/// Encodes and signs `claims`.
pub fn issue(key: &[u8; 32], claims: &Claims) -> String {
    let json = serde_json::to_vec(claims).unwrap_or_default();
    let mut s = String::with_capacity(PREFIX.len() + json.len() * 4 / 3 + 48);
    s.push_str(PREFIX);
    s.push_str(&B64.encode(json));
    let sig = mac(key, s.as_bytes());
    s.push('.');
    s.push_str(&B64.encode(sig));
    s
}

/// Checks the signature and the time window; returns the claims.
pub fn verify(key: &[u8; 32], token: &str, now_secs: i64) -> Result<Claims, TokenError> {
    if token.len() > MAX_TOKEN_LEN || !token.starts_with(PREFIX) {
        return Err(TokenError::Malformed);
    }
    let dot = token.rfind('.').ok_or(TokenError::Malformed)?;
    if dot < PREFIX.len() {
        return Err(TokenError::Malformed);
    }
    let (signed, sig_b64) = (&token[..dot], &token[dot + 1..]);
    let sig = B64.decode(sig_b64).map_err(|_| TokenError::Malformed)?;
    let expected = mac(key, signed.as_bytes());
    if sig.len() != 32 || !bool::from(subtle::ConstantTimeEq::ct_eq(&expected[..], &sig[..])) {
        return Err(TokenError::BadSignature);
    }
    let json = B64.decode(&signed[PREFIX.len()..]).map_err(|_| TokenError::Malformed)?;
    let claims: Claims = serde_json::from_slice(&json).map_err(|_| TokenError::Malformed)?;
    if now_secs >= claims.exp {
        return Err(TokenError::Expired);
    }
    if claims.iat > now_secs + IAT_SKEW_SECS {
        return Err(TokenError::NotYetValid);
    }
    Ok(claims)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn claims(now: i64) -> Claims {
        Claims {
            sub: "u".into(),
            dom: "d".into(),
            prj: Some("p".into()),
            epo: 3,
            iat: now,
            exp: now + TOKEN_TTL_SECS,
        }
    }

    #[test]
    fn roundtrip_and_expiry() {
        let k = [7u8; 32];
        let c = claims(1000);
        let t = issue(&k, &c);
        assert_eq!(verify(&k, &t, 1000).unwrap(), c);
        assert_eq!(verify(&k, &t, 1000 + TOKEN_TTL_SECS - 1).unwrap(), c);
        assert_eq!(verify(&k, &t, 1000 + TOKEN_TTL_SECS), Err(TokenError::Expired));
        assert_eq!(verify(&k, &t, 1000 - 301), Err(TokenError::NotYetValid));
        assert_eq!(verify(&[8u8; 32], &t, 1000), Err(TokenError::BadSignature));
        assert_eq!(verify(&k, "garbage", 1000), Err(TokenError::Malformed));
        assert_eq!(verify(&k, "DPT1.", 1000), Err(TokenError::Malformed));
        assert_eq!(verify(&k, &"DPT1.a".repeat(1000), 1000), Err(TokenError::Malformed));
    }

    #[test]
    fn claims_cannot_be_swapped() {
        let k = [7u8; 32];
        let a = issue(&k, &claims(1000));
        let mut other = claims(1000);
        other.prj = Some("q".into());
        let b = issue(&k, &other);
        let forged = format!("{}{}", &b[..b.rfind('.').unwrap()], &a[a.rfind('.').unwrap()..]);
        assert_eq!(verify(&k, &forged, 1000), Err(TokenError::BadSignature));
    }

    #[test]
    fn domain_scoped_claims_roundtrip_and_cannot_become_project_scoped() {
        let k = [7u8; 32];
        let mut c = claims(1000);
        c.prj = None;
        let t = issue(&k, &c);
        assert_eq!(verify(&k, &t, 1000).unwrap().prj, None);
        // The claims part names no project at all, so none can be read into it.
        let body = B64.decode(&t[PREFIX.len()..t.rfind('.').unwrap()]).unwrap();
        assert!(!String::from_utf8(body).unwrap().contains("prj"));
    }

    proptest! {
        #[test]
        fn any_single_byte_change_is_refused(pos in 0usize..200, byte in 0u8..=255) {
            let k = [9u8; 32];
            let t = issue(&k, &claims(5000));
            let mut bytes = t.clone().into_bytes();
            let p = pos % bytes.len();
            prop_assume!(bytes[p] != byte);
            bytes[p] = byte;
            if let Ok(s) = String::from_utf8(bytes) {
                // Base64 without padding can have trailing bits that decode identically only in the
                // final signature character; anything accepted must carry the same claims.
                if let Ok(c) = verify(&k, &s, 5000) {
                    prop_assert_eq!(c, claims(5000));
                    prop_assert!(p >= t.len() - 2);
                }
            }
        }
    }
}
