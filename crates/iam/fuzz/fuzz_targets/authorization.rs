//! Fuzz target: any text as an `Authorization` header through `sign::parse_authorization`.
//! What it parses must be what `precheck` and `verify` rely on: a 64-hex-digit lower-case
//! signature, an access key of 1..=128 bytes, non-empty lower-case signed header names.
//! Run with `scripts/reliability/fuzz` (stable toolchain) or `cargo fuzz run authorization` from
//! `crates/iam`.
#![no_main]

use docplane_iam_fuzz::sign;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(a) = sign::parse_authorization(text) {
        assert!(sign::is_sdk_signature(text));
        assert_eq!(a.signature.len(), 64);
        assert!(a.signature.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        assert!(!a.access_key.is_empty() && a.access_key.len() <= 128);
        assert!(!a.signed_headers.is_empty());
        for h in &a.signed_headers {
            assert!(!h.is_empty());
            assert_eq!(h, &h.to_ascii_lowercase());
        }
        // Formatting the parsed header the way the SDK does parses back to the same value.
        let again = format!(
            "{} Access={}, SignedHeaders={}, Signature={}",
            sign::ALGORITHM,
            a.access_key,
            a.signed_headers.join(";"),
            a.signature
        );
        if !a.access_key.contains([',', '=']) && a.access_key.trim() == a.access_key {
            assert_eq!(sign::parse_authorization(&again).as_ref(), Ok(&a));
        }
    }
});
