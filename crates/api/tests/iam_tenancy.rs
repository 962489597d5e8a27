//! Tenancy and identity completeness over HTTP: projects (create, list, show, update), domain-scoped
//! tokens, `nocatalog`, token validation, the IAM list calls and the vendor gateway's codes for
//! failed authentication.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod iam_support;

use iam_support::*;
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn projects_can_be_created_listed_shown_and_updated() {
    let e = Env::start().await;
    let d = e.boot.domain_id.clone();
    let r = e
        .call(
            Method::POST,
            "/v3/projects",
            Some(&e.admin),
            Some(json!({"project": {"name": "team-b", "parent_id": d, "description": "B"}})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let b = r.body["project"]["id"].as_str().unwrap().to_owned();
    assert_eq!(b.len(), 32);
    assert_eq!(r.body["project"]["domain_id"], d.as_str());
    assert_eq!(r.body["project"]["name"], "team-b");
    // Listed next to the first one, and found by name.
    let r = e.call(Method::GET, "/v3/projects", Some(&e.admin), None).await;
    let mut names: Vec<&str> =
        r.body["projects"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    names.sort_unstable();
    assert_eq!(names, ["local", "team-b"]);
    let r = e.call(Method::GET, "/v3/projects?name=team-b", Some(&e.admin), None).await;
    assert_eq!(r.body["projects"][0]["id"], b.as_str());
    let r = e.call(Method::GET, "/v3/projects?page=1&per_page=1", Some(&e.admin), None).await;
    assert_eq!(r.body["projects"].as_array().unwrap().len(), 1);
    let r = e.call(Method::GET, "/v3/projects?is_domain=true", Some(&e.admin), None).await;
    assert!(r.body["projects"].as_array().unwrap().is_empty());
    let r = e.call(Method::GET, "/v3/projects?per_page=1", Some(&e.admin), None).await;
    assert_eq!((r.status, r.code.as_str()), (400, "DBS.200001"));
    let r = e.call(Method::GET, "/v3/projects?colour=red", Some(&e.admin), None).await;
    assert_eq!((r.status, r.code.as_str()), (400, "DBS.200001"), "unknown filters are refused");
    // Show and update.
    let r = e.call(Method::GET, &format!("/v3/projects/{b}"), Some(&e.admin), None).await;
    assert_eq!((r.status, r.body["project"]["description"].as_str()), (200, Some("B")));
    let r = e
        .call(
            Method::PATCH,
            &format!("/v3/projects/{b}"),
            Some(&e.admin),
            Some(json!({"project": {"name": "team-b2", "description": "B2"}})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["project"]["name"], "team-b2");
    let r = e.call(Method::GET, &format!("/v3/projects/{b}"), Some(&e.admin), None).await;
    assert_eq!(r.body["project"]["name"], "team-b2");
    // Refusals: duplicate name, nested parent, empty update, unknown project, no permission.
    let r = e
        .call(Method::POST, "/v3/projects", Some(&e.admin), Some(json!({"project": {"name": "local"}})))
        .await;
    assert_eq!((r.status, r.code.as_str()), (409, "DBS.900009"));
    let r = e
        .call(
            Method::POST,
            "/v3/projects",
            Some(&e.admin),
            Some(json!({"project": {"name": "c", "parent_id": b}})),
        )
        .await;
    assert_eq!((r.status, r.code.as_str()), (400, "DBS.200001"));
    let r = e
        .call(Method::PATCH, &format!("/v3/projects/{b}"), Some(&e.admin), Some(json!({"project": {}})))
        .await;
    assert_eq!((r.status, r.code.as_str()), (400, "DBS.200001"));
    let r = e
        .call(
            Method::PATCH,
            &format!("/v3/projects/{b}"),
            Some(&e.admin),
            Some(json!({"project": {"name": "local"}})),
        )
        .await;
    assert_eq!((r.status, r.code.as_str()), (409, "DBS.900009"));
    let ghost = "f".repeat(32);
    let r = e.call(Method::GET, &format!("/v3/projects/{ghost}"), Some(&e.admin), None).await;
    assert_eq!((r.status, r.code.as_str()), (404, "DBS.900010"));
    let (_, t) = e.user_with("plain", "Plain-pass-1", &[]).await;
    let r = e.call(Method::POST, "/v3/projects", Some(&t), Some(json!({"project": {"name": "mine"}}))).await;
    assert_eq!((r.status, r.code.as_str()), (403, "DBS.280063"));
    // A token scoped to the new project works on its paths and not on the first project's.
    let tb = e.token("admin", ADMIN_PASSWORD, json!({"project": {"name": "team-b2"}})).await;
    let r = e.call(Method::GET, &format!("/v3/{b}/whoami"), Some(&tb), None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = e.call(Method::GET, &format!("/v3/{}/whoami", e.boot.project_id), Some(&tb), None).await;
    assert_eq!((r.status, r.code.as_str()), (403, "DBS.900004"));
    e.stop().await;
}

#[tokio::test]
async fn domain_scoped_tokens_work_on_account_routes_only() {
    let e = Env::start().await;
    for scope in
        [json!({"domain": {"name": e.boot.domain_name}}), json!({"domain": {"id": e.boot.domain_id}})]
    {
        let r = e.token_resp("admin", ADMIN_PASSWORD, scope, "").await;
        assert_eq!(r.status, 201, "{}", r.body);
        assert_eq!(r.body["token"]["domain"]["id"], e.boot.domain_id.as_str());
        assert!(r.body["token"].get("project").is_none(), "{}", r.body);
        let t = r.headers["x-subject-token"].to_str().unwrap().to_owned();
        let r = e.call(Method::GET, "/v3/users", Some(&t), None).await;
        assert_eq!(r.status, 200, "account route: {}", r.body);
        let r = e
            .call(
                Method::POST,
                "/v3/groups",
                Some(&t),
                Some(json!({"group": {"name": docplane_iam::new_id()}})),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
        let r = e.call(Method::GET, &format!("/v3/{}/whoami", e.boot.project_id), Some(&t), None).await;
        assert_eq!((r.status, r.code.as_str()), (403, "DBS.900004"), "project route: {}", r.body);
    }
    // Only the user's own account; and one scope at a time.
    let r = e.token_resp("admin", ADMIN_PASSWORD, json!({"domain": {"name": "someone-else"}}), "").await;
    assert_eq!((r.status, r.code.as_str()), (401, "DBS.900002"));
    let r = e.token_resp("admin", ADMIN_PASSWORD, json!({"domain": {"id": "0".repeat(32)}}), "").await;
    assert_eq!((r.status, r.code.as_str()), (401, "DBS.900002"));
    let both = json!({"domain": {"name": e.boot.domain_name}, "project": {"id": e.boot.project_id}});
    let r = e.token_resp("admin", ADMIN_PASSWORD, both, "").await;
    assert_eq!((r.status, r.code.as_str()), (400, "DBS.200001"));
    let r = e.token_resp("admin", ADMIN_PASSWORD, json!({}), "").await;
    assert_eq!((r.status, r.code.as_str()), (400, "DBS.200001"));
    // A project-scoped token keeps working on account routes.
    let r = e.call(Method::GET, "/v3/users", Some(&e.admin), None).await;
    assert_eq!(r.status, 200);
    e.stop().await;
}

#[tokio::test]
async fn nocatalog_omits_the_catalog() {
    let e = Env::start().await;
    let scope = || json!({"project": {"id": e.boot.project_id}});
    let r = e.token_resp("admin", ADMIN_PASSWORD, scope(), "").await;
    assert!(r.body["token"]["catalog"].is_array(), "{}", r.body);
    // As the vendor's: any value, even "false", means no catalog.
    for q in ["?nocatalog", "?nocatalog=true", "?nocatalog=1", "?nocatalog=false"] {
        let r = e.token_resp("admin", ADMIN_PASSWORD, scope(), q).await;
        assert_eq!(r.status, 201, "{q}");
        assert!(r.body["token"].get("catalog").is_none(), "{q}: {}", r.body);
        assert!(r.body["token"]["project"]["id"].is_string());
    }
    let r = e.token_resp("admin", ADMIN_PASSWORD, scope(), "?catalog=no").await;
    assert_eq!((r.status, r.code.as_str()), (400, "DBS.200001"));
    e.stop().await;
}

#[tokio::test]
async fn tokens_are_validated_like_keystone() {
    let e = Env::start().await;
    let validate = |caller: String, subject: String, query: &'static str| {
        let req = e
            .http
            .get(format!("{}/v3/auth/tokens{query}", e.base))
            .header("x-auth-token", caller)
            .header("x-subject-token", subject);
        async move { Env::resp(req.send().await.unwrap()).await }
    };
    // Its own token: 200, the body of the token and the token in X-Subject-Token.
    let r = validate(e.admin.clone(), e.admin.clone(), "").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.headers["x-subject-token"].to_str().unwrap(), e.admin);
    assert_eq!(r.body["token"]["user"]["id"], e.boot.admin_user_id.as_str());
    assert_eq!(r.body["token"]["project"]["id"], e.boot.project_id.as_str());
    assert!(r.body["token"]["catalog"].is_array());
    let r = validate(e.admin.clone(), e.admin.clone(), "?nocatalog").await;
    assert!(r.body["token"].get("catalog").is_none());
    // Another user's token: the administrator may, a plain user may not.
    let (uid, ut) = e.user_with("viewer", "Viewer-pass-1", &[]).await;
    let r = validate(e.admin.clone(), ut.clone(), "").await;
    assert_eq!((r.status, r.body["token"]["user"]["id"].as_str()), (200, Some(uid.as_str())));
    let r = validate(ut.clone(), e.admin.clone(), "").await;
    assert_eq!((r.status, r.code.as_str()), (403, "DBS.900020"));
    let r = validate(ut.clone(), ut.clone(), "").await;
    assert_eq!(r.status, 200);
    // Invalid or revoked: 404.
    let r = validate(e.admin.clone(), "DPT1.junk.junk".into(), "").await;
    assert_eq!((r.status, r.code.as_str()), (404, "DBS.900010"));
    let r = e
        .call(
            Method::PATCH,
            &format!("/v3/users/{uid}"),
            Some(&e.admin),
            Some(json!({"user": {"password": "Viewer-pass-2"}})),
        )
        .await;
    assert_eq!(r.status, 200);
    let r = validate(e.admin.clone(), ut.clone(), "").await;
    assert_eq!((r.status, r.code.as_str()), (404, "DBS.900010"));
    // A domain-scoped token validates with its domain.
    let dt = e.token("admin", ADMIN_PASSWORD, json!({"domain": {"name": e.boot.domain_name}})).await;
    let r = validate(e.admin.clone(), dt, "").await;
    assert_eq!(r.body["token"]["domain"]["id"], e.boot.domain_id.as_str());
    assert!(r.body["token"].get("project").is_none());
    // No subject: 400; no caller credential: 401 from the gateway.
    let r = Env::resp(
        e.http
            .get(format!("{}/v3/auth/tokens", e.base))
            .header("x-auth-token", &e.admin)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((r.status, r.code.as_str()), (400, "DBS.200001"));
    let r = Env::resp(
        e.http
            .get(format!("{}/v3/auth/tokens", e.base))
            .header("x-subject-token", &e.admin)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((r.status, r.code.as_str()), (401, "APIGW.0301"));
    e.stop().await;
}

#[tokio::test]
async fn iam_list_calls_with_their_filters() {
    let e = Env::start().await;
    let u = e.user("lister", "Lister-pass-1").await;
    let r = e
        .call(
            Method::PATCH,
            &format!("/v3/users/{u}"),
            Some(&e.admin),
            Some(json!({"user": {"enabled": false}})),
        )
        .await;
    assert_eq!(r.status, 200);
    let names = |v: &serde_json::Value, key: &str| -> Vec<String> {
        let mut n: Vec<String> =
            v[key].as_array().unwrap().iter().map(|x| x["name"].as_str().unwrap().to_owned()).collect();
        n.sort();
        n
    };
    // Users.
    let r = e.call(Method::GET, "/v3/users", Some(&e.admin), None).await;
    assert_eq!(names(&r.body, "users"), ["admin", "lister"]);
    let r = e.call(Method::GET, "/v3/users?enabled=false", Some(&e.admin), None).await;
    assert_eq!(names(&r.body, "users"), ["lister"]);
    let r = e.call(Method::GET, "/v3/users?name=admin", Some(&e.admin), None).await;
    assert_eq!(names(&r.body, "users"), ["admin"]);
    let r =
        e.call(Method::GET, &format!("/v3/users?domain_id={}", "0".repeat(32)), Some(&e.admin), None).await;
    assert!(names(&r.body, "users").is_empty());
    let r = e
        .call(Method::GET, "/v3/users?password_expires_at=lt:2030-01-01T00:00:00Z", Some(&e.admin), None)
        .await;
    assert!(names(&r.body, "users").is_empty(), "docplane passwords never expire");
    let r = e.call(Method::GET, "/v3/users?password_expires_at=soon", Some(&e.admin), None).await;
    assert_eq!((r.status, r.code.as_str()), (400, "DBS.200001"));
    // Groups.
    e.group("readers").await;
    let r = e.call(Method::GET, "/v3/groups", Some(&e.admin), None).await;
    assert_eq!(names(&r.body, "groups"), ["admin", "readers"]);
    let r = e.call(Method::GET, "/v3/groups?name=readers", Some(&e.admin), None).await;
    assert_eq!(names(&r.body, "groups"), ["readers"]);
    // Custom policies, paged.
    e.policy("first", "Allow", &["dds:instance:listSession"]).await;
    e.policy("second", "Deny", &["dds:*"]).await;
    let r = e.call(Method::GET, "/v3.0/OS-ROLE/roles", Some(&e.admin), None).await;
    assert_eq!(r.body["total_number"], 2);
    let shown: Vec<&str> =
        r.body["roles"].as_array().unwrap().iter().map(|x| x["display_name"].as_str().unwrap()).collect();
    assert_eq!(shown, ["first", "second"]);
    assert_eq!(r.body["roles"][1]["policy"]["Statement"][0]["Effect"], "Deny");
    let r = e.call(Method::GET, "/v3.0/OS-ROLE/roles?page=2&per_page=1", Some(&e.admin), None).await;
    assert_eq!(r.body["roles"][0]["display_name"], "second");
    assert_eq!(r.body["total_number"], 2);
    for q in ["?page=1", "?page=0&per_page=1", "?page=1&per_page=301"] {
        let r = e.call(Method::GET, &format!("/v3.0/OS-ROLE/roles{q}"), Some(&e.admin), None).await;
        assert_eq!((r.status, r.code.as_str()), (400, "DBS.200001"), "{q}");
    }
    // Each list needs its action.
    let (_, t) = e.user_with("nobody", "Nobody-pass-1", &["iam:users:listUsers"]).await;
    let r = e.call(Method::GET, "/v3/users", Some(&t), None).await;
    assert_eq!(r.status, 200);
    for path in ["/v3/groups", "/v3.0/OS-ROLE/roles"] {
        let r = e.call(Method::GET, path, Some(&t), None).await;
        assert_eq!((r.status, r.code.as_str()), (403, "DBS.280063"), "{path}");
    }
    e.stop().await;
}

/// The vendor's API gateway codes for failed authentication (evidence in crates/api/src/error.rs
/// and docs/errors.md).
#[tokio::test]
async fn failed_authentication_answers_the_gateway_codes() {
    let e = Env::start().await;
    let path = format!("/v3/{}/whoami", e.boot.project_id);
    let msg = |r: &Resp| r.body["error_msg"].as_str().unwrap_or("").to_owned();
    // No credential at all.
    let r = e.call(Method::GET, &path, None, None).await;
    assert_eq!((r.status, r.code.as_str()), (401, "APIGW.0301"));
    assert!(msg(&r).contains("x-auth-token not found"), "{}", r.body);
    // A token that is not ours.
    let r = e.call(Method::GET, &path, Some("DPT1.junk.junk"), None).await;
    assert_eq!((r.status, r.code.as_str()), (401, "APIGW.0301"));
    assert!(msg(&r).contains("decrypt token fail"), "{}", r.body);
    // A revoked token must be updated.
    let (uid, t) = e.user_with("revoked", "Revoked-pass-1", &[]).await;
    let r = e
        .call(
            Method::PATCH,
            &format!("/v3/users/{uid}"),
            Some(&e.admin),
            Some(json!({"user": {"enabled": false}})),
        )
        .await;
    assert_eq!(r.status, 200);
    let r = e.call(Method::GET, &path, Some(&t), None).await;
    assert_eq!((r.status, r.code.as_str()), (401, "APIGW.0307"));
    assert_eq!(msg(&r), "The token must be updated.");
    // Unknown access key, wrong secret, skewed clock.
    let (ak, sk) = (e.boot.access_key.clone(), e.boot.secret_key.clone());
    let none = chrono::Duration::zero();
    let r = e.signed("GET", &path, "NOSUCHKEY00000000000", &sk, none, &[]).await;
    assert_eq!((r.status, r.code.as_str()), (401, "APIGW.0301"));
    assert!(msg(&r).contains("ak not exist"), "{}", r.body);
    let r = e.signed("GET", &path, &ak, "wrong-secret", none, &[]).await;
    assert_eq!((r.status, r.code.as_str()), (401, "APIGW.0301"));
    assert!(msg(&r).contains("verify aksk signature fail"), "{}", r.body);
    let r = e.signed("GET", &path, &ak, &sk, chrono::Duration::minutes(16), &[]).await;
    assert_eq!((r.status, r.code.as_str()), (401, "APIGW.0301"));
    assert!(msg(&r).contains("15 minutes"), "{}", r.body);
    let r = e.signed("GET", &path, &ak, &sk, none, &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    // No secret ever appears in an error.
    assert!(!msg(&r).contains(&sk));
    e.stop().await;
}
