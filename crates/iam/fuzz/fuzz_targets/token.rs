//! Fuzz target: `token::verify` on arbitrary text never panics and accepts only what `token::issue`
//! produced under the same key; claims built from the input survive an issue -> verify round trip.
//! Run with `scripts/reliability/fuzz` or `cargo fuzz run token` from `crates/iam`.
#![no_main]

use docplane_iam_fuzz::token::{self, Claims, MAX_TOKEN_LEN, TOKEN_TTL_SECS};
use libfuzzer_sys::fuzz_target;

const KEY: [u8; 32] = [7u8; 32];
const NOW: i64 = 1_700_000_000;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(claims) = token::verify(&KEY, &text, NOW) {
        // Only a token we issued verifies, and it is exactly the one issue() makes of its claims.
        assert_eq!(token::issue(&KEY, &claims), text);
        assert!(NOW < claims.exp && claims.iat <= NOW + 300);
    }
    assert!(token::verify(&[8u8; 32], &text, NOW).is_err() || token::verify(&KEY, &text, NOW).is_err());

    // Claims from the input (split on NUL: sub, dom, prj; no third part is a domain-scoped token),
    // then a round trip.
    let mut f = text.split('\0');
    let claims = Claims {
        sub: f.next().unwrap_or("").to_owned(),
        dom: f.next().unwrap_or("").to_owned(),
        prj: f.next().map(str::to_owned),
        epo: i64::from(data.first().copied().unwrap_or(0)),
        iat: NOW,
        exp: NOW + TOKEN_TTL_SECS,
    };
    let t = token::issue(&KEY, &claims);
    if t.len() <= MAX_TOKEN_LEN {
        assert_eq!(token::verify(&KEY, &t, NOW).as_ref(), Ok(&claims));
        assert_eq!(token::verify(&KEY, &t, claims.exp), Err(token::TokenError::Expired));
        // Any one-byte change to an issued token is refused.
        let mut bytes = t.clone().into_bytes();
        let pos = data.len() % bytes.len();
        let byte = data.last().copied().unwrap_or(b'A');
        if bytes[pos] != byte {
            bytes[pos] = byte;
            if let Ok(changed) = String::from_utf8(bytes) {
                assert!(token::verify(&KEY, &changed, NOW).is_err(), "a changed token verified: {changed:?}");
            }
        }
    } else {
        assert_eq!(token::verify(&KEY, &t, NOW), Err(token::TokenError::Malformed));
    }
});
