//! The web console's files over a real socket: content types, the CSP and the other security
//! headers, revalidation (`ETag` -> 304), the redirects to `/console/`, and the JSON 404 of an
//! unknown asset.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use docplane_api::console::{ASSETS, CSP};
use docplane_api::{ApiConfig, BootstrapOptions, MasterKey, bootstrap, serve};
use reqwest::StatusCode;
use reqwest::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, ETAG, IF_NONE_MATCH, LOCATION};
use serde_json::Value;

#[tokio::test]
async fn console_assets_are_served_with_their_types_and_csp() {
    let dir = tempfile::tempdir().unwrap();
    let store = docplane_store::open(dir.path().to_str().unwrap()).await.unwrap();
    let key = MasterKey::load_or_create(dir.path()).unwrap();
    bootstrap(store.clone(), &key, &BootstrapOptions::default()).await.unwrap();
    let mut cfg = ApiConfig::new("127.0.0.1:0".parse().unwrap(), store, key);
    cfg.health_interval = None;
    let server = serve(cfg).await.unwrap();
    let base = format!("http://{}", server.local_addr());
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();

    let expected = [
        ("/console/", "text/html; charset=utf-8"),
        ("/console/style.css", "text/css; charset=utf-8"),
        ("/console/js/app.js", "text/javascript; charset=utf-8"),
        ("/console/js/views/sessions.js", "text/javascript; charset=utf-8"),
    ];
    for (path, ctype) in expected {
        let r = http.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        assert_eq!(r.headers()[CONTENT_TYPE], ctype, "{path}");
        assert_eq!(r.headers()[CONTENT_SECURITY_POLICY], CSP, "{path}");
        assert_eq!(r.headers()["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(r.headers()[CACHE_CONTROL], "no-cache", "{path}");
        assert!(r.headers().contains_key("x-request-id"), "{path}");
        let tag = r.headers()[ETAG].to_str().unwrap().to_owned();
        assert!(!r.text().await.unwrap().is_empty());
        // A current copy is revalidated, not sent again.
        let again = http.get(format!("{base}{path}")).header(IF_NONE_MATCH, &tag).send().await.unwrap();
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED, "{path}");
        assert_eq!(again.headers()[CONTENT_SECURITY_POLICY], CSP, "{path}");
        assert!(again.text().await.unwrap().is_empty());
    }
    // Every embedded file is reachable, and the page's CSP forbids inline code.
    for a in ASSETS {
        let r = http.get(format!("{base}/console/{}", a.path)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{}", a.path);
        assert_eq!(r.headers()[CONTENT_TYPE], a.content_type, "{}", a.path);
        assert_eq!(r.text().await.unwrap(), a.body, "{}", a.path);
    }
    assert!(CSP.contains("default-src 'self'") && CSP.contains("script-src 'self'"));
    assert!(!CSP.contains("unsafe"), "{CSP}");

    for from in ["/", "/console"] {
        let r = http.get(format!("{base}{from}")).send().await.unwrap();
        assert!(r.status().is_redirection(), "{from}: {}", r.status());
        assert_eq!(r.headers()[LOCATION], "/console/", "{from}");
    }

    for missing in ["/console/nope.js", "/console/js/../index.html", "/console/js/", "/console/style.css/x"] {
        let r = http.get(format!("{base}{missing}")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{missing}");
        assert!(r.headers()[CONTENT_TYPE].to_str().unwrap().starts_with("application/json"), "{missing}");
        let body: Value = r.json().await.unwrap();
        assert!(body["error_code"].as_str().is_some_and(|c| c.starts_with("DBS.")), "{missing}: {body}");
    }

    // The console is not part of the API's contract.
    let doc: Value = http.get(format!("{base}/openapi.json")).send().await.unwrap().json().await.unwrap();
    assert!(doc["paths"].as_object().unwrap().keys().all(|p| !p.starts_with("/console") && p != "/"));
    server.shutdown(std::time::Duration::from_secs(1)).await.unwrap();
}
