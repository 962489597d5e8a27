//! The web console: plain HTML, CSS and ES-module JavaScript files under `crates/api/console/`,
//! embedded in the binary at compile time and served at `/console/` (`/` and `/console` redirect
//! there). There is no build step and nothing is fetched from the network, at build or run time.
//!
//! The console is a client of the public API only: it signs in with `POST /v3/auth/tokens`, keeps
//! the token in the browser's `sessionStorage` and sends it as `X-Auth-Token` on the same JSON
//! routes the CLI and the SDKs call. These routes are public (a page needs no credential to load)
//! and are not in the OpenAPI document, which describes the API.
//!
//! Invariant: every console response carries [`CSP`] (no inline script or style, everything from
//! `'self'`), `X-Content-Type-Options: nosniff` and a `Cache-Control` that makes the browser
//! revalidate (`no-cache` with an `ETag`, answered 304 when it still matches). An unknown asset is
//! the API's JSON 404.

use std::sync::OnceLock;

use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};

use crate::error::ApiError;
use crate::route::{ApiPath, Route};

/// The Content-Security-Policy of every console response.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; \
                       connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; \
                       frame-ancestors 'none'";

/// Where the console lives.
pub const PREFIX: &str = "/console/";

/// One embedded file.
#[derive(Debug)]
pub struct Asset {
    /// The path under [`PREFIX`] (`""` is the page itself).
    pub path: &'static str,
    pub content_type: &'static str,
    pub body: &'static str,
}

const HTML: &str = "text/html; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";

/// Every file of the console.
pub static ASSETS: &[Asset] = &[
    Asset { path: "", content_type: HTML, body: include_str!("../console/index.html") },
    Asset { path: "style.css", content_type: CSS, body: include_str!("../console/style.css") },
    Asset { path: "js/app.js", content_type: JS, body: include_str!("../console/js/app.js") },
    Asset { path: "js/api.js", content_type: JS, body: include_str!("../console/js/api.js") },
    Asset { path: "js/dom.js", content_type: JS, body: include_str!("../console/js/dom.js") },
    Asset { path: "js/format.js", content_type: JS, body: include_str!("../console/js/format.js") },
    Asset { path: "js/views/login.js", content_type: JS, body: include_str!("../console/js/views/login.js") },
    Asset {
        path: "js/views/instances.js",
        content_type: JS,
        body: include_str!("../console/js/views/instances.js"),
    },
    Asset {
        path: "js/views/sessions.js",
        content_type: JS,
        body: include_str!("../console/js/views/sessions.js"),
    },
    Asset { path: "js/views/audit.js", content_type: JS, body: include_str!("../console/js/views/audit.js") },
    Asset { path: "js/views/rules.js", content_type: JS, body: include_str!("../console/js/views/rules.js") },
    Asset {
        path: "js/views/connections.js",
        content_type: JS,
        body: include_str!("../console/js/views/connections.js"),
    },
];

/// The embedded file at `path` (relative to [`PREFIX`]).
pub fn find(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.path == path)
}

/// 64-bit FNV-1a: a stable content hash for the `ETag` (not a security measure).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

/// The `ETag` of each asset, in [`ASSETS`] order, computed once.
fn etags() -> &'static [String] {
    static TAGS: OnceLock<Vec<String>> = OnceLock::new();
    TAGS.get_or_init(|| ASSETS.iter().map(|a| format!("\"{:016x}\"", fnv1a(a.body.as_bytes()))).collect())
}

/// The `ETag` of an asset.
pub fn etag(asset: &Asset) -> &'static str {
    let i = ASSETS.iter().position(|a| std::ptr::eq(a, asset)).unwrap_or(0);
    etags().get(i).map_or("\"\"", String::as_str)
}

/// Whether an `If-None-Match` value names `tag` (a list, `W/` prefixes, or `*`).
fn matches_etag(if_none_match: &str, tag: &str) -> bool {
    if_none_match.split(',').map(str::trim).any(|t| t == "*" || t.strip_prefix("W/").unwrap_or(t) == tag)
}

/// The headers every console response carries.
fn security_headers(h: &mut HeaderMap) {
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
}

/// Serves one asset: 200 with its body, or 304 when the caller's copy is current.
pub fn respond(asset: &'static Asset, request: &HeaderMap) -> Response {
    let tag = etag(asset);
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| matches_etag(v, tag));
    let mut resp = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, asset.content_type)], asset.body).into_response()
    };
    let h = resp.headers_mut();
    security_headers(h);
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(v) = HeaderValue::from_str(tag) {
        h.insert(header::ETAG, v);
    }
    resp
}

#[derive(Debug, serde::Deserialize)]
struct AssetPath {
    path: String,
}

async fn page(headers: HeaderMap) -> Response {
    match find("") {
        Some(a) => respond(a, &headers),
        None => ApiError::RouteNotFound.into_response(),
    }
}

async fn asset(ApiPath(p): ApiPath<AssetPath>, headers: HeaderMap) -> Response {
    // "" is the page, served only at the prefix itself.
    match find(&p.path).filter(|a| !a.path.is_empty()) {
        Some(a) => respond(a, &headers),
        None => ApiError::RouteNotFound.into_response(),
    }
}

async fn to_console() -> Response {
    let mut resp = Redirect::to(PREFIX).into_response();
    security_headers(resp.headers_mut());
    resp
}

/// The console's routes (public, not in the OpenAPI document).
pub fn routes() -> Vec<Route> {
    vec![
        Route::public(Method::GET, "/", to_console),
        Route::public(Method::GET, "/console", to_console),
        Route::public(Method::GET, "/console/", page),
        Route::public(Method::GET, "/console/{*path}", asset),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_is_found_and_tagged() {
        for a in ASSETS {
            assert!(find(a.path).is_some_and(|f| std::ptr::eq(f, a)), "{}", a.path);
            assert!(etag(a).len() == 18, "{}: {}", a.path, etag(a));
        }
        assert!(find("js/nope.js").is_none());
        let tags: std::collections::HashSet<_> = ASSETS.iter().map(etag).collect();
        assert_eq!(tags.len(), ASSETS.len(), "two assets share an ETag");
    }

    #[test]
    fn etag_matching() {
        assert!(matches_etag("\"ab\"", "\"ab\""));
        assert!(matches_etag("W/\"ab\"", "\"ab\""));
        assert!(matches_etag("\"x\", \"ab\"", "\"ab\""));
        assert!(matches_etag("*", "\"ab\""));
        assert!(!matches_etag("\"abc\"", "\"ab\""));
        assert!(!matches_etag("", "\"ab\""));
    }

    /// The page loads only files that exist, as module scripts and stylesheets from 'self';
    /// no inline script, no inline style, no handler attribute.
    #[test]
    fn the_page_obeys_its_csp() {
        for a in ASSETS.iter().filter(|a| a.content_type == HTML) {
            let b = a.body;
            assert!(!b.contains("<script>") && !b.contains("style="), "{}", a.path);
            assert!(!b.to_ascii_lowercase().contains(" onclick="), "{}", a.path);
            for src in b.split("src=\"").skip(1).chain(b.split("href=\"").skip(1)) {
                let target = src.split('"').next().unwrap_or("");
                if target.starts_with('#') {
                    continue; // a page of the console itself
                }
                let rel = target.strip_prefix(PREFIX).unwrap_or(target);
                assert!(find(rel).is_some(), "{} references missing {target}", a.path);
            }
        }
        // Every relative import of every module resolves to an embedded module.
        for a in ASSETS.iter().filter(|a| a.content_type == JS) {
            let dir = a.path.rsplit_once('/').map_or("", |(d, _)| d);
            for part in a.body.split(" from '").skip(1) {
                let spec = part.split('\'').next().unwrap_or("");
                let resolved = resolve(dir, spec);
                assert!(find(&resolved).is_some(), "{} imports missing {spec} ({resolved})", a.path);
            }
            assert!(!a.body.contains("innerHTML"), "{} writes innerHTML", a.path);
            assert!(!a.body.contains("eval("), "{} calls eval", a.path);
        }
    }

    fn resolve(dir: &str, spec: &str) -> String {
        let mut parts: Vec<&str> = if dir.is_empty() { Vec::new() } else { dir.split('/').collect() };
        for seg in spec.split('/') {
            match seg {
                "." => {}
                ".." => {
                    parts.pop();
                }
                s => parts.push(s),
            }
        }
        parts.join("/")
    }
}
