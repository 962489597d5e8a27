//! Fuzz target: the canonical request and a sign -> verify round trip over arbitrary requests.
//!
//! The input is split on NUL bytes into method, raw path, raw query, a header block (`name: value`
//! lines) and the body. Properties:
//! - `canonical_uri` always ends in `/` and is idempotent; `canonical_query` is idempotent (both
//!   are what the SDK computes from an already-canonical request, so they must not change it);
//! - a request signed by `sign::sign` passes `precheck` and `verify` with the same secret, and fails
//!   `verify` with another one, unless it carries a body marked `UNSIGNED-PAYLOAD`, which `verify`
//!   refuses (`SignError::UnsignedPayload`);
//! - `precheck`/`verify` never panic on whatever `Authorization` header the input carries.
//! Run with `scripts/reliability/fuzz` or `cargo fuzz run canonical` from `crates/iam`.
#![no_main]

use chrono::{TimeZone, Utc};
use docplane_iam_fuzz::sign::{self, SignedRequest};
use libfuzzer_sys::fuzz_target;

/// RFC 9110 token characters (what an HTTP header name or method may hold).
fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(5, |b| *b == 0);
    let (Some(method), Some(path), Some(query), Some(header_block)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return;
    };
    let body = parts.next().unwrap_or_default();
    let (Ok(method), Ok(path), Ok(query), Ok(header_block)) = (
        std::str::from_utf8(method),
        std::str::from_utf8(path),
        std::str::from_utf8(query),
        std::str::from_utf8(header_block),
    ) else {
        return;
    };

    let uri = sign::canonical_uri(path);
    assert!(uri.ends_with('/'));
    assert_eq!(sign::canonical_uri(&uri), uri, "canonical_uri not idempotent for {path:?}");
    let q = sign::canonical_query(query);
    assert_eq!(sign::canonical_query(&q), q, "canonical_query not idempotent for {query:?}");

    let now = Utc.with_ymd_and_hms(2024, 1, 2, 3, 4, 5).single().unwrap_or_else(Utc::now);
    let mut headers: Vec<(String, String)> = vec![
        ("Host".to_owned(), "127.0.0.1:8080".to_owned()),
        ("X-Sdk-Date".to_owned(), sign::format_sdk_date(now)),
    ];
    let mut raw_headers = headers.clone();
    for line in header_block.split('\n') {
        let Some((k, v)) = line.split_once(':') else { continue };
        raw_headers.push((k.to_owned(), v.to_owned()));
        // Only what an HTTP request can carry takes part in the round trip, minus the headers the
        // round trip sets itself.
        let own = ["host", "x-sdk-date", "authorization"].iter().any(|h| k.eq_ignore_ascii_case(h));
        if !own && is_token(k) && v.bytes().all(|b| b == b'\t' || (0x20..0x7f).contains(&b)) {
            headers.push((k.to_owned(), v.to_owned()));
        }
    }

    // Whatever the input says, precheck and verify must not panic.
    let raw = SignedRequest { method, raw_path: path, raw_query: query, headers: &raw_headers, body };
    if let Ok(auth) = sign::precheck(&raw, now) {
        let _ = sign::verify(&raw, &auth, b"secret");
    }

    if !is_token(method) {
        return;
    }
    let Ok(authorization) = sign::sign(method, path, query, &headers, body, "AKFUZZ", b"secret") else {
        return;
    };
    let mut signed = headers.clone();
    signed.push(("Authorization".to_owned(), authorization));
    let req = SignedRequest { method, raw_path: path, raw_query: query, headers: &signed, body };
    let auth = sign::precheck(&req, now).expect("a request we signed fails precheck");
    assert_eq!(auth.access_key, "AKFUZZ");
    let marked = signed
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("x-sdk-content-sha256") && v.trim() == "UNSIGNED-PAYLOAD");
    match sign::verify(&req, &auth, b"secret") {
        // The SDK's marker for a body outside the signature: refused whenever there is a body
        // (no route takes a raw stream), whatever the secret.
        Err(sign::SignError::UnsignedPayload) => {
            assert!(marked && !body.is_empty(), "UnsignedPayload without the marker or a body");
            return;
        }
        r => r.expect("a request we signed fails verify"),
    }
    assert_eq!(sign::verify(&req, &auth, b"other"), Err(sign::SignError::Mismatch));
});
