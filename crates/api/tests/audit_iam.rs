//! The IAM actions of the kill-record routes (`dds:audit:list`, `dds:audit:verify`) and of the
//! selector kill (`dds:instance:deleteSession`): what grants them, what does not, and that an
//! explicit deny wins over a wildcard.
#![expect(clippy::unwrap_used, reason = "tests")]

mod iam_support;

use reqwest::Method;
use serde_json::json;

async fn user(e: &iam_support::Env, name: &str, grants: &[(&str, &[&str])]) -> String {
    let password = "Audit-pass-1";
    let id = e.user(name, password).await;
    for (i, (effect, actions)) in grants.iter().enumerate() {
        let g = e.group(&format!("g-{name}-{i}")).await;
        let role = e.policy(&format!("p-{name}-{i}"), effect, actions).await;
        let path = format!("/v3/projects/{}/groups/{g}/roles/{role}", e.boot.project_id);
        let r = e.call(Method::PUT, &path, Some(&e.admin), None).await;
        assert_eq!(r.status, 204, "{}", r.body);
        e.add_member(&g, &id).await;
    }
    e.user_token(name, password).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_and_selector_actions_with_explicit_deny() {
    let e = iam_support::Env::start().await;
    let p = &e.boot.project_id;
    let list = format!("/v3/{p}/kill-records");
    let verify = format!("/v3/{p}/kill-records/verify");
    // No such node: an authorized caller gets 404, an unauthorized one 403 before any lookup.
    let selector = format!("/v3/{p}/nodes/{}/sessions/kill", "a".repeat(32) + "no02");
    let body = json!({"filter": {"user": "x"}, "max": 1, "dry_run": true});

    let lister = user(&e, "lister", &[("Allow", &["dds:audit:list"])]).await;
    let auditor = user(&e, "auditor", &[("Allow", &["dds:audit:*"]), ("Deny", &["dds:audit:verify"])]).await;
    let operator = user(&e, "operator", &[("Allow", &["dds:instance:*"])]).await;
    let no_kill = user(
        &e,
        "no-kill",
        &[("Allow", &["dds:instance:*", "dds:audit:*"]), ("Deny", &["dds:instance:deleteSession"])],
    )
    .await;

    let status = |r: &iam_support::Resp| (r.status, r.code.clone());
    let forbidden = (403, "DBS.280063".to_owned());
    for (token, want_list, want_verify) in
        [(&lister, 200, 403), (&auditor, 200, 403), (&operator, 403, 403), (&no_kill, 200, 200)]
    {
        let r = e.call(Method::GET, &list, Some(token), None).await;
        assert_eq!(r.status, want_list, "{}", r.body);
        let r = e.call(Method::GET, &verify, Some(token), None).await;
        assert_eq!(r.status, want_verify, "{}", r.body);
        if want_verify == 403 {
            assert_eq!(status(&r), forbidden);
            assert!(r.body["error_msg"].as_str().unwrap().contains("dds:audit:verify"), "{}", r.body);
        }
    }
    // The selector kill is the vendor kill's action: `dds:instance:*` grants it, a deny removes it.
    let r = e.call(Method::POST, &selector, Some(&operator), Some(body.clone())).await;
    assert_eq!((r.status, r.code.as_str()), (404, "DBS.200013"), "{}", r.body);
    for token in [&no_kill, &lister] {
        let r = e.call(Method::POST, &selector, Some(token), Some(body.clone())).await;
        assert_eq!(status(&r), forbidden, "{}", r.body);
        assert!(r.body["error_msg"].as_str().unwrap().contains("dds:instance:deleteSession"), "{}", r.body);
    }
    e.stop().await;
}
