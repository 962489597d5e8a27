//! Verification of `SDK-HMAC-SHA256` request signatures, as produced by the vendor SDKs' `Signer`.
//!
//! Everything here is a pure function over the request as received (method, raw path, raw query,
//! header list, body bytes) plus the caller-supplied current time and secret key. Facts taken from
//! `huaweicloudsdkcore/signer/signer.py` (3.1.219), checked by the vectors in
//! `testdata/sdk_sig_vectors.json` (produced by that signer):
//! - canonical URI: the raw path is percent-decoded as a whole, split on `/`, and each segment is
//!   re-encoded keeping only `A-Z a-z 0-9 - _ . ~`; a trailing `/` is always added.
//! - canonical query: the SDK signs its decoded `(key, value)` parameters, sorted (key, then value),
//!   each re-encoded the same way, joined with `&`, and sends exactly that string as the query. We
//!   decode the received raw query the way the handlers' query extractor (axum's `Query`, i.e.
//!   `form_urlencoded`) does, `+` meaning a space, and re-encode it as the SDK does, so the signature
//!   covers exactly the parameters a handler reads: a signature over `q=a%2Bb` (`a+b`) does not
//!   validate `q=a+b` (`a b`). A key without `=` counts as an empty value.
//! - canonical headers: `name:trimmed value\n` for each signed header, in SignedHeaders order.
//! - payload hash: the SHA-256 hex of the body; an empty body always hashes as the empty string. The
//!   SDK sends `X-Sdk-Content-Sha256: UNSIGNED-PAYLOAD` for non-JSON bodies, which leaves the body
//!   outside the signature: [`verify`] refuses it for any non-empty body ([`SignError::UnsignedPayload`])
//!   because no docplane route takes a raw stream; [`sign`] can still produce it (the vectors).
//! - string to sign: `SDK-HMAC-SHA256\n<X-Sdk-Date>\n<hex sha256(canonical request)>`; the signature
//!   is hex HMAC-SHA256 keyed by the secret key's bytes.
//!
//! docplane's own rules on top (the vendor's gateway enforces similar ones): `host` and `x-sdk-date`
//! must be signed; a header named in SignedHeaders but absent (or sent twice) is refused; the date
//! must be within 15 minutes of now; the comparison is constant-time.

use chrono::{DateTime, NaiveDateTime, Utc};
use hmac::{Hmac, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The only algorithm accepted.
pub const ALGORITHM: &str = "SDK-HMAC-SHA256";
/// The SHA-256 of the empty string, used for empty bodies.
pub const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
/// Marker the SDK puts in `X-Sdk-Content-Sha256` for non-JSON bodies.
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";
/// Allowed clock difference between client and server.
pub const MAX_SKEW_SECS: i64 = 15 * 60;
const DATE_FORMAT: &str = "%Y%m%dT%H%M%SZ";

/// Python's `quote(s, safe='~')`: everything but unreserved characters is escaped.
const ENCODE_SET: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// Why a signed request was refused. The API maps all of these to one 401 so that callers cannot
/// probe which part failed; the variant is kept for logs and tests.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    #[error("malformed Authorization header: {0}")]
    Malformed(&'static str),
    #[error("unsupported signing algorithm")]
    Algorithm,
    #[error("required header not signed: {0}")]
    RequiredNotSigned(&'static str),
    #[error("signed header missing or repeated: {0}")]
    SignedHeaderMissing(String),
    #[error("bad X-Sdk-Date")]
    BadDate,
    #[error("request time outside the allowed window")]
    Skew,
    #[error("payload hash mismatch")]
    PayloadHash,
    #[error("the body is not covered by the signature (UNSIGNED-PAYLOAD)")]
    UnsignedPayload,
    #[error("signature mismatch")]
    Mismatch,
}

/// The parsed `Authorization` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizationHeader {
    pub access_key: String,
    /// Lower-cased header names, in the order given.
    pub signed_headers: Vec<String>,
    /// Lower-case hex.
    pub signature: String,
}

/// Whether an `Authorization` header value claims to be an SDK signature (cheap prefix test).
pub fn is_sdk_signature(authorization: &str) -> bool {
    authorization.trim_start().starts_with(ALGORITHM)
}

/// Parses `SDK-HMAC-SHA256 Access=AK, SignedHeaders=a;b, Signature=hex`.
pub fn parse_authorization(value: &str) -> Result<AuthorizationHeader, SignError> {
    let rest = value.trim().strip_prefix(ALGORITHM).ok_or(SignError::Algorithm)?;
    if !rest.starts_with(' ') {
        return Err(SignError::Algorithm);
    }
    let (mut access, mut signed, mut sig) = (None, None, None);
    for part in rest.split(',') {
        let part = part.trim();
        let (k, v) = part.split_once('=').ok_or(SignError::Malformed("missing '='"))?;
        let slot = match k.trim() {
            "Access" => &mut access,
            "SignedHeaders" => &mut signed,
            "Signature" => &mut sig,
            _ => return Err(SignError::Malformed("unknown field")),
        };
        if slot.replace(v.trim().to_owned()).is_some() {
            return Err(SignError::Malformed("repeated field"));
        }
    }
    let access_key = access.ok_or(SignError::Malformed("no Access"))?;
    let signed = signed.ok_or(SignError::Malformed("no SignedHeaders"))?;
    let signature = sig.ok_or(SignError::Malformed("no Signature"))?;
    if access_key.is_empty() || access_key.len() > 128 {
        return Err(SignError::Malformed("bad Access"));
    }
    if signature.len() != 64 || !signature.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(SignError::Malformed("bad Signature"));
    }
    let signed_headers: Vec<String> = signed.split(';').map(|h| h.trim().to_ascii_lowercase()).collect();
    if signed_headers.iter().any(String::is_empty) {
        return Err(SignError::Malformed("empty header name"));
    }
    Ok(AuthorizationHeader { access_key, signed_headers, signature: signature.to_ascii_lowercase() })
}

fn encode(s: &str) -> String {
    utf8_percent_encode(s, ENCODE_SET).to_string()
}

fn decode(s: &str) -> String {
    percent_decode_str(s).decode_utf8_lossy().into_owned()
}

/// The canonical URI of a raw request path.
pub fn canonical_uri(raw_path: &str) -> String {
    let decoded = decode(raw_path);
    let mut out = decoded.split('/').map(encode).collect::<Vec<_>>().join("/");
    if !out.ends_with('/') {
        out.push('/');
    }
    out
}

/// The canonical query string of a raw query (without the leading `?`): the pairs the handlers'
/// query extractor reads (`form_urlencoded`: `+` is a space, `%XX` decoded, invalid UTF-8 replaced),
/// sorted and re-encoded as the SDK does.
pub fn canonical_query(raw_query: &str) -> String {
    let mut pairs: Vec<(String, String)> =
        form_urlencoded::parse(raw_query.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    pairs.sort();
    pairs.iter().map(|(k, v)| format!("{}={}", encode(k), encode(v))).collect::<Vec<_>>().join("&")
}

/// `name:value\n` for every signed header. `headers` are the received (name, value) pairs in any
/// case; each signed header must appear exactly once.
pub fn canonical_headers(headers: &[(String, String)], signed: &[String]) -> Result<String, SignError> {
    let mut out = String::new();
    for name in signed {
        let mut found = headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case(name));
        let value = match (found.next(), found.next()) {
            (Some((_, v)), None) => v,
            _ => return Err(SignError::SignedHeaderMissing(name.clone())),
        };
        out.push_str(name);
        out.push(':');
        out.push_str(value.trim());
        out.push('\n');
    }
    Ok(out)
}

/// Hex SHA-256.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// The payload hash that goes into the canonical request of a received request: the body's hash,
/// which a sent `X-Sdk-Content-Sha256` must equal. `UNSIGNED-PAYLOAD` is refused for a non-empty
/// body, whatever its content type: the signature must cover every body a handler reads.
pub fn payload_hash(body: &[u8], content_sha256_header: Option<&str>) -> Result<String, SignError> {
    if body.is_empty() {
        return Ok(EMPTY_SHA256.to_owned());
    }
    let actual = sha256_hex(body);
    match content_sha256_header.map(str::trim) {
        None => Ok(actual),
        Some(UNSIGNED_PAYLOAD) => Err(SignError::UnsignedPayload),
        Some(h) if h.eq_ignore_ascii_case(&actual) => Ok(h.to_owned()),
        Some(_) => Err(SignError::PayloadHash),
    }
}

/// The payload hash the SDK's signer uses: like [`payload_hash`], except that it honours
/// `UNSIGNED-PAYLOAD` (which the SDK sets for non-JSON content types) so that [`sign`] reproduces
/// the SDK's signatures exactly.
fn signer_payload_hash(body: &[u8], content_sha256_header: Option<&str>) -> Result<String, SignError> {
    match content_sha256_header.map(str::trim) {
        Some(UNSIGNED_PAYLOAD) if !body.is_empty() => Ok(UNSIGNED_PAYLOAD.to_owned()),
        other => payload_hash(body, other),
    }
}

/// The six-line canonical request.
pub fn canonical_request(
    method: &str,
    raw_path: &str,
    raw_query: &str,
    canonical_headers: &str,
    signed: &[String],
    payload_hash: &str,
) -> String {
    format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        method.to_ascii_uppercase(),
        canonical_uri(raw_path),
        canonical_query(raw_query),
        canonical_headers,
        signed.join(";"),
        payload_hash
    )
}

/// `SDK-HMAC-SHA256\n<date>\n<hex sha256(canonical request)>`.
pub fn string_to_sign(sdk_date: &str, canonical_request: &str) -> String {
    format!("{ALGORITHM}\n{sdk_date}\n{}", sha256_hex(canonical_request.as_bytes()))
}

/// Hex HMAC-SHA256 of `data` under `secret`.
pub fn hmac_hex(secret: &[u8], data: &str) -> String {
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(m) => m,
        // HMAC accepts keys of any length; this arm cannot run.
        Err(_) => return String::new(),
    };
    mac.update(data.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Constant-time equality of two strings (length leaks, content does not).
pub fn ct_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// Parses `X-Sdk-Date` (`%Y%m%dT%H%M%SZ`, UTC).
pub fn parse_sdk_date(s: &str) -> Result<DateTime<Utc>, SignError> {
    NaiveDateTime::parse_from_str(s.trim(), DATE_FORMAT).map(|d| d.and_utc()).map_err(|_| SignError::BadDate)
}

/// A request as received, borrowed from the HTTP layer.
#[derive(Debug, Clone, Copy)]
pub struct SignedRequest<'a> {
    pub method: &'a str,
    pub raw_path: &'a str,
    pub raw_query: &'a str,
    /// Every received header; for HTTP/2 the caller adds `host` from the `:authority`.
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
}

impl SignedRequest<'_> {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// Checks everything that does not need the secret: header presence, date, skew. Returns the parsed
/// Authorization header so the caller can look the access key up.
pub fn precheck(req: &SignedRequest<'_>, now: DateTime<Utc>) -> Result<AuthorizationHeader, SignError> {
    let auth = parse_authorization(req.header("authorization").ok_or(SignError::Algorithm)?)?;
    for required in ["host", "x-sdk-date"] {
        if !auth.signed_headers.iter().any(|h| h == required) {
            return Err(SignError::RequiredNotSigned(required));
        }
    }
    let date = parse_sdk_date(req.header("x-sdk-date").ok_or(SignError::BadDate)?)?;
    if (now - date).num_seconds().abs() > MAX_SKEW_SECS {
        return Err(SignError::Skew);
    }
    Ok(auth)
}

/// Verifies the signature of `req` against `secret` (the SK's bytes).
pub fn verify(req: &SignedRequest<'_>, auth: &AuthorizationHeader, secret: &[u8]) -> Result<(), SignError> {
    let headers = canonical_headers(req.headers, &auth.signed_headers)?;
    let payload = payload_hash(req.body, req.header("x-sdk-content-sha256"))?;
    let creq =
        canonical_request(req.method, req.raw_path, req.raw_query, &headers, &auth.signed_headers, &payload);
    let date = req.header("x-sdk-date").unwrap_or("").trim();
    let expected = hmac_hex(secret, &string_to_sign(date, &creq));
    if ct_eq(&expected, &auth.signature) { Ok(()) } else { Err(SignError::Mismatch) }
}

/// Signs a request the way the SDK does (used by tests, benchmarks and docplane's own client).
/// Returns the `Authorization` header value; `headers` must already hold every header to sign.
pub fn sign(
    method: &str,
    raw_path: &str,
    raw_query: &str,
    headers: &[(String, String)],
    body: &[u8],
    access_key: &str,
    secret: &[u8],
) -> Result<String, SignError> {
    let mut names: Vec<String> = headers
        .iter()
        .map(|(k, _)| k.to_ascii_lowercase())
        .filter(|k| !k.contains('_') && k != "authorization")
        .collect();
    names.sort();
    names.dedup();
    let find = |n: &str| headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(n)).map(|(_, v)| v.as_str());
    let canon = canonical_headers(headers, &names)?;
    let payload = signer_payload_hash(body, find("x-sdk-content-sha256"))?;
    let creq = canonical_request(method, raw_path, raw_query, &canon, &names, &payload);
    let date = find("x-sdk-date").ok_or(SignError::BadDate)?;
    let sig = hmac_hex(secret, &string_to_sign(date.trim(), &creq));
    Ok(format!("{ALGORITHM} Access={access_key}, SignedHeaders={}, Signature={sig}", names.join(";")))
}

/// Formats a time as `X-Sdk-Date`.
pub fn format_sdk_date(t: DateTime<Utc>) -> String {
    t.format(DATE_FORMAT).to_string()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize)]
    struct Vector {
        name: String,
        method: String,
        path: String,
        query: String,
        headers: Vec<(String, String)>,
        body: String,
        ak: String,
        sk: String,
        canonical_request: String,
        string_to_sign: String,
        authorization: String,
    }

    fn vectors() -> Vec<Vector> {
        serde_json::from_str(include_str!("../testdata/sdk_sig_vectors.json")).unwrap()
    }

    fn at(s: &str) -> DateTime<Utc> {
        parse_sdk_date(s).unwrap()
    }

    const NOW: &str = "20240102T030405Z";

    fn check(
        v: &Vector,
        headers: &[(String, String)],
        path: &str,
        query: &str,
        body: &[u8],
        now: DateTime<Utc>,
        secret: &str,
    ) -> Result<(), SignError> {
        let req = SignedRequest { method: &v.method, raw_path: path, raw_query: query, headers, body };
        let auth = precheck(&req, now)?;
        assert_eq!(auth.access_key, v.ak);
        verify(&req, &auth, secret.as_bytes())
    }

    #[test]
    fn sdk_vectors_intermediate_values_match() {
        for v in vectors() {
            let auth = parse_authorization(&v.authorization).unwrap();
            let canon = canonical_headers(&v.headers, &auth.signed_headers).unwrap();
            let find =
                |n: &str| v.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(n)).map(|(_, x)| x.as_str());
            let payload = signer_payload_hash(v.body.as_bytes(), find("x-sdk-content-sha256")).unwrap();
            let creq =
                canonical_request(&v.method, &v.path, &v.query, &canon, &auth.signed_headers, &payload);
            assert_eq!(creq, v.canonical_request, "{}", v.name);
            assert_eq!(string_to_sign(NOW, &creq), v.string_to_sign, "{}", v.name);
        }
    }

    #[test]
    fn sdk_vectors_verify() {
        let mut unsigned = 0;
        for v in vectors() {
            let r = check(&v, &v.headers, &v.path, &v.query, v.body.as_bytes(), at(NOW), &v.sk);
            let marked = v
                .headers
                .iter()
                .any(|(k, x)| k.eq_ignore_ascii_case("x-sdk-content-sha256") && x == UNSIGNED_PAYLOAD);
            if marked && !v.body.is_empty() {
                // A correct SDK signature whose body is outside it: refused all the same.
                assert_eq!(r, Err(SignError::UnsignedPayload), "{}", v.name);
                unsigned += 1;
            } else {
                r.unwrap_or_else(|e| panic!("{}: {e}", v.name));
            }
        }
        assert_eq!(unsigned, 1, "the vectors hold one UNSIGNED-PAYLOAD request with a body");
    }

    #[test]
    fn unsigned_payload_is_refused_for_every_content_type() {
        let date = NOW.to_owned();
        for ct in [
            "application/octet-stream",
            "text/plain",
            "application/json",
            "application/x-www-form-urlencoded",
        ] {
            let headers: Vec<(String, String)> = [
                ("Host", "h"),
                ("X-Sdk-Date", date.as_str()),
                ("Content-Type", ct),
                ("X-Sdk-Content-Sha256", UNSIGNED_PAYLOAD),
            ]
            .iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect();
            let body = br#"{"sessions":["1"]}"#;
            let a = sign("POST", "/v3/p/nodes/n/session", "", &headers, body, "AK", b"sk").unwrap();
            let mut h = headers.clone();
            h.push(("Authorization".into(), a));
            let req = SignedRequest {
                method: "POST",
                raw_path: "/v3/p/nodes/n/session",
                raw_query: "",
                headers: &h,
                body,
            };
            let auth = precheck(&req, at(NOW)).unwrap();
            assert_eq!(verify(&req, &auth, b"sk"), Err(SignError::UnsignedPayload), "{ct}");
            // Without a body the marker covers nothing and changes nothing.
            let empty = SignedRequest { body: b"", ..req };
            let a = sign("POST", "/v3/p/nodes/n/session", "", &headers, b"", "AK", b"sk").unwrap();
            let mut h2 = headers.clone();
            h2.push(("Authorization".into(), a));
            let empty = SignedRequest { headers: &h2, ..empty };
            let auth = precheck(&empty, at(NOW)).unwrap();
            assert_eq!(verify(&empty, &auth, b"sk"), Ok(()), "{ct}");
        }
    }

    #[test]
    fn plus_in_query_is_a_space_as_the_handlers_read_it() {
        let date = NOW.to_owned();
        let headers: Vec<(String, String)> = vec![("Host".into(), "h".into()), ("X-Sdk-Date".into(), date)];
        // The SDK signs the parameter `namespace=a+b` as `namespace=a%2Bb` and sends that query.
        let a = sign("GET", "/v3/p/x", "namespace=a%2Bb", &headers, b"", "AK", b"sk").unwrap();
        let mut h = headers.clone();
        h.push(("Authorization".into(), a));
        let at_now = at(NOW);
        let verify_query = |q: &str| {
            let req =
                SignedRequest { method: "GET", raw_path: "/v3/p/x", raw_query: q, headers: &h, body: b"" };
            let auth = precheck(&req, at_now).unwrap();
            verify(&req, &auth, b"sk")
        };
        assert_eq!(verify_query("namespace=a%2Bb"), Ok(()));
        // `a+b` is read by the handler as `a b`: a different parameter, so a different signature.
        assert_eq!(verify_query("namespace=a+b"), Err(SignError::Mismatch));
        // And a signature over `a b` validates both spellings of it, since the handler reads both alike.
        let a = sign("GET", "/v3/p/x", "namespace=a%20b", &headers, b"", "AK", b"sk").unwrap();
        h.retain(|(k, _)| k != "Authorization");
        h.push(("Authorization".into(), a));
        let verify_query = |q: &str| {
            let req =
                SignedRequest { method: "GET", raw_path: "/v3/p/x", raw_query: q, headers: &h, body: b"" };
            let auth = precheck(&req, at_now).unwrap();
            verify(&req, &auth, b"sk")
        };
        assert_eq!(verify_query("namespace=a+b"), Ok(()));
        assert_eq!(verify_query("namespace=a%20b"), Ok(()));
    }

    #[test]
    fn our_signer_reproduces_sdk_authorization() {
        for v in vectors() {
            let without: Vec<(String, String)> =
                v.headers.iter().filter(|(k, _)| k != "Authorization").cloned().collect();
            let ours =
                sign(&v.method, &v.path, &v.query, &without, v.body.as_bytes(), &v.ak, v.sk.as_bytes())
                    .unwrap();
            assert_eq!(ours, v.authorization, "{}", v.name);
        }
    }

    #[test]
    fn tampering_is_refused() {
        let vs = vectors();
        let post = vs.iter().find(|v| v.name == "post_kill_json").unwrap();
        let get = vs.iter().find(|v| v.name == "get_sessions_query").unwrap();
        let now = at(NOW);
        // wrong key
        assert_eq!(
            check(get, &get.headers, &get.path, &get.query, b"", now, "wrong"),
            Err(SignError::Mismatch)
        );
        // tampered path
        let p = get.path.replace("aaaa", "aaab");
        assert_eq!(check(get, &get.headers, &p, &get.query, b"", now, &get.sk), Err(SignError::Mismatch));
        // tampered query
        let q = get.query.replace("limit=20", "limit=21");
        assert_eq!(check(get, &get.headers, &get.path, &q, b"", now, &get.sk), Err(SignError::Mismatch));
        // added query parameter
        let q = format!("{}&x=1", get.query);
        assert_eq!(check(get, &get.headers, &get.path, &q, b"", now, &get.sk), Err(SignError::Mismatch));
        // tampered signed header
        let mut h = get.headers.clone();
        for (k, v) in h.iter_mut() {
            if k == "X-Project-Id" {
                *v = "ffffffffffffffffffffffffffffffff".into();
            }
        }
        assert_eq!(check(get, &h, &get.path, &get.query, b"", now, &get.sk), Err(SignError::Mismatch));
        // tampered body
        let body = post.body.replace("34631", "34632");
        assert_eq!(
            check(post, &post.headers, &post.path, &post.query, body.as_bytes(), now, &post.sk),
            Err(SignError::Mismatch)
        );
        // a signed header that was not sent
        let h: Vec<_> = get.headers.iter().filter(|(k, _)| k != "User-Agent").cloned().collect();
        assert_eq!(
            check(get, &h, &get.path, &get.query, b"", now, &get.sk),
            Err(SignError::SignedHeaderMissing("user-agent".into()))
        );
        // a signed header sent twice
        let mut h = get.headers.clone();
        h.push(("user-agent".into(), "other".into()));
        assert!(matches!(
            check(get, &h, &get.path, &get.query, b"", now, &get.sk),
            Err(SignError::SignedHeaderMissing(_))
        ));
        // unsigned extra headers are fine
        let mut h = get.headers.clone();
        h.push(("Accept".into(), "*/*".into()));
        assert_eq!(check(get, &h, &get.path, &get.query, b"", now, &get.sk), Ok(()));
    }

    #[test]
    fn replay_window() {
        let vs = vectors();
        let v = &vs[0];
        let t = at(NOW);
        let ok = |secs: i64| {
            check(v, &v.headers, &v.path, &v.query, b"", t + chrono::Duration::seconds(secs), &v.sk)
        };
        assert_eq!(ok(15 * 60), Ok(()));
        assert_eq!(ok(-15 * 60), Ok(()));
        assert_eq!(ok(15 * 60 + 1), Err(SignError::Skew));
        assert_eq!(ok(-15 * 60 - 1), Err(SignError::Skew));
        assert_eq!(ok(86_400), Err(SignError::Skew));
    }

    #[test]
    fn host_and_date_must_be_signed() {
        let date = NOW.to_owned();
        let hs = |extra: &[(&str, &str)]| -> Vec<(String, String)> {
            extra.iter().map(|(a, b)| ((*a).to_owned(), (*b).to_owned())).collect()
        };
        let headers = hs(&[("Host", "h"), ("X-Sdk-Date", &date), ("X-Project-Id", "p")]);
        // Sign only x-project-id and x-sdk-date (no host).
        let partial = hs(&[("X-Sdk-Date", &date), ("X-Project-Id", "p")]);
        let a = sign("GET", "/v3/x", "", &partial, b"", "AK", b"sk").unwrap();
        let mut h = headers.clone();
        h.push(("Authorization".into(), a));
        let req = SignedRequest { method: "GET", raw_path: "/v3/x", raw_query: "", headers: &h, body: b"" };
        assert_eq!(precheck(&req, at(NOW)), Err(SignError::RequiredNotSigned("host")));
        let partial = hs(&[("Host", "h"), ("X-Project-Id", "p")]);
        let mut p2 = partial.clone();
        p2.push(("X-Sdk-Date".into(), date.clone()));
        let a = sign("GET", "/v3/x", "", &p2, b"", "AK", b"sk").unwrap();
        let a =
            a.replace("x-sdk-date", "x-project-id").replace(";x-project-id;x-project-id", ";x-project-id");
        let mut h = headers.clone();
        h.push(("Authorization".into(), a));
        let req = SignedRequest { method: "GET", raw_path: "/v3/x", raw_query: "", headers: &h, body: b"" };
        assert_eq!(precheck(&req, at(NOW)), Err(SignError::RequiredNotSigned("x-sdk-date")));
    }

    #[test]
    fn parse_authorization_cases() {
        let sig = "a".repeat(64);
        let ok = parse_authorization(&format!(
            "SDK-HMAC-SHA256 Access=AK1, SignedHeaders=Host;x-sdk-date, Signature={sig}"
        ))
        .unwrap();
        assert_eq!(ok.access_key, "AK1");
        assert_eq!(ok.signed_headers, ["host", "x-sdk-date"]);
        assert_eq!(parse_authorization("AWS4-HMAC-SHA256 Credential=x"), Err(SignError::Algorithm));
        assert_eq!(
            parse_authorization(&format!("SDK-HMAC-SHA256X Access=a, SignedHeaders=h, Signature={sig}")),
            Err(SignError::Algorithm)
        );
        assert!(parse_authorization("SDK-HMAC-SHA256 Access=a, SignedHeaders=h").is_err());
        assert!(parse_authorization("SDK-HMAC-SHA256 Access=a, SignedHeaders=h, Signature=zz").is_err());
        assert!(
            parse_authorization(&format!(
                "SDK-HMAC-SHA256 Access=a, Access=b, SignedHeaders=h, Signature={sig}"
            ))
            .is_err()
        );
        assert!(
            parse_authorization(&format!("SDK-HMAC-SHA256 Access=a, SignedHeaders=h;;x, Signature={sig}"))
                .is_err()
        );
        assert!(is_sdk_signature("SDK-HMAC-SHA256 Access"));
        assert!(!is_sdk_signature("Bearer x"));
    }

    #[test]
    fn canonical_uri_and_query() {
        assert_eq!(canonical_uri("/v3/projects"), "/v3/projects/");
        assert_eq!(canonical_uri("/v3/projects/"), "/v3/projects/");
        assert_eq!(canonical_uri("/a%20b/c%2Fd"), "/a%20b/c/d/");
        assert_eq!(canonical_uri("/x*y"), "/x%2Ay/");
        assert_eq!(canonical_query(""), "");
        assert_eq!(canonical_query("b=2&a=1&a=0"), "a=0&a=1&b=2");
        assert_eq!(canonical_query("k"), "k=");
        assert_eq!(canonical_query("q=a%7Eb~c"), "q=a~b~c");
        assert_eq!(canonical_query("q=a+b"), "q=a%20b");
        assert_eq!(canonical_query("q=a%2Bb"), "q=a%2Bb");
        assert_eq!(canonical_query("&&a=1&&"), "a=1");
        assert_eq!(canonical_query("k=%FF"), "k=%EF%BF%BD");
    }

    #[test]
    fn payload_hash_rules() {
        assert_eq!(payload_hash(b"", Some(UNSIGNED_PAYLOAD)).unwrap(), EMPTY_SHA256);
        assert_eq!(payload_hash(b"x", Some(UNSIGNED_PAYLOAD)), Err(SignError::UnsignedPayload));
        assert_eq!(signer_payload_hash(b"x", Some(UNSIGNED_PAYLOAD)).unwrap(), UNSIGNED_PAYLOAD);
        let h = sha256_hex(b"x");
        assert_eq!(payload_hash(b"x", Some(&h)).unwrap(), h);
        assert_eq!(payload_hash(b"x", None).unwrap(), h);
        assert_eq!(payload_hash(b"y", Some(&h)), Err(SignError::PayloadHash));
    }

    #[test]
    fn ct_eq_works() {
        assert!(ct_eq("abc", "abc"));
        assert!(!ct_eq("abc", "abd"));
        assert!(!ct_eq("abc", "ab"));
    }
}
