//! Session settings over HTTP (`GET` / `PUT /v3/{project_id}/instances/{instance_id}/session-settings`):
//! the defaults, a whole-object put read back, every kind of refusal (nothing stored), tenant
//! isolation, the settings going with their instance, and the IAM actions (explicit deny,
//! wildcards, the legacy session alias).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod dds_support;
mod iam_support;

use dds_support::{Harness, code};
use docplane_store::{Instance, InstanceMode};
use reqwest::Method;
use serde_json::{Value, json};

fn settings_path(instance_id: &str) -> String {
    format!("/instances/{instance_id}/session-settings")
}

async fn put_raw(h: &Harness, rest: &str, body: Vec<u8>) -> (u16, Value) {
    let r = h
        .http
        .put(h.url(rest))
        .header("X-Auth-Token", &h.token)
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn put(h: &Harness, rest: &str, body: &Value) -> (u16, Value) {
    put_raw(h, rest, serde_json::to_vec(body).unwrap()).await
}

fn other_project_instance() -> Instance {
    Instance {
        id: "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeein02".into(),
        project_id: "0123456789abcdef0123456789abcdef".into(),
        name: "other".into(),
        mode: InstanceMode::Single,
        status: "normal".into(),
        datastore_version: "7.0.0".into(),
        port: 1,
        created_at: 0,
        updated_at: 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_default_put_read_back_and_refusals() {
    let h = Harness::start().await;
    let path = settings_path(&h.instance_id);

    let put_body = defaults_then_a_whole_put_read_back(&h, &path).await;
    refusals_change_nothing(&h, &path, &put_body).await;
    another_projects_instance_is_not_found(&h).await;

    // The settings go with their instance.
    let store = h.api.state().store.clone();
    let (status, _) = h.delete(&format!("/instances/{}", h.instance_id)).await;
    assert_eq!(status, 200);
    let (status, b) = h.get(&path).await;
    assert_eq!((status, code(&b)), (404, "DBS.200002"), "{b}");
    assert_eq!(store.get_session_settings(&h.project_id, &h.instance_id).await.unwrap(), None);
    h.stop().await;
}

/// Never configured: the defaults. Then a whole object (repeats collapse, order is kept), read
/// back as stored; answers what the put stored.
async fn defaults_then_a_whole_put_read_back(h: &Harness, path: &str) -> Value {
    let (status, body) = h.get(path).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"instance_id": h.instance_id, "redact_operations": false, "protected_users": [],
               "protected_app_names": [], "updated_at": null, "updated_by": null})
    );

    let (status, put_body) = put(
        h,
        path,
        &json!({"redact_operations": true, "protected_users": ["backup", "app@admin", "backup"],
                "protected_app_names": ["nightly-report"]}),
    )
    .await;
    assert_eq!(status, 200, "{put_body}");
    assert_eq!(put_body["protected_users"], json!(["backup", "app@admin"]));
    assert_eq!(put_body["redact_operations"], true);
    assert_eq!(put_body["updated_by"], "admin");
    assert!(put_body["updated_at"].as_i64().is_some_and(|t| t > 0), "{put_body}");
    let (status, got) = h.get(path).await;
    assert_eq!((status, &got), (200, &put_body), "read back as stored");
    put_body
}

/// The fields every refused body below would otherwise get right.
const VALID_FIELDS: &str = r#""redact_operations": false, "protected_users": [], "protected_app_names": []"#;

/// Bodies the put refuses: (body, vendor code, what the message says).
fn refused_bodies() -> Vec<(String, &'static str, &'static str)> {
    let ok = VALID_FIELDS;
    vec![
        ("{not json".to_owned(), "DBS.200001", "not valid JSON"),
        ("[true]".to_owned(), "DBS.200001", "JSON object"),
        (r#"{"redact_operations": false}"#.to_owned(), "DBS.200001", "protected_users is required"),
        (format!(r#"{{{ok}, "redact_operations": true}}"#), "DBS.200001", "duplicate field"),
        (format!(r#"{{{ok}, "protect_everything": true}}"#), "DBS.200001", "unknown field"),
        (format!(r#"{{{ok}, "updated_by": "mallory"}}"#), "DBS.200001", "set by the server"),
        (
            r#"{"redact_operations": 1, "protected_users": [], "protected_app_names": []}"#.to_owned(),
            "DBS.200001",
            "true or false",
        ),
        (
            r#"{"redact_operations": false, "protected_users": [["app"]], "protected_app_names": []}"#
                .to_owned(),
            "DBS.200001",
            "protected_users[0] must be a string",
        ),
        (
            r#"{"redact_operations": false, "protected_users": [], "protected_app_names": ["ok", "app "]}"#
                .to_owned(),
            "DBS.900030",
            "protected_app_names[1] has leading or trailing white space",
        ),
        (
            r#"{"redact_operations": false, "protected_users": ["a\u0000b"], "protected_app_names": []}"#
                .to_owned(),
            "DBS.900030",
            "control character U+0000",
        ),
        (
            format!(
                r#"{{"redact_operations": false, "protected_users": ["{}"], "protected_app_names": []}}"#,
                "u".repeat(129)
            ),
            "DBS.900030",
            "at most 128",
        ),
        (
            json!({"redact_operations": false, "protected_users": [],
                   "protected_app_names": (0..101).map(|i| format!("app-{i}")).collect::<Vec<_>>()})
            .to_string(),
            "DBS.900031",
            "more than 100 distinct names",
        ),
    ]
}

/// Refusals, each with its code, and a body not declared JSON (refused before anything reads
/// it): none changes what is stored (`stored`).
async fn refusals_change_nothing(h: &Harness, path: &str, stored: &Value) {
    for (body, want, says) in refused_bodies() {
        let (status, b) = put_raw(h, path, body.clone().into_bytes()).await;
        assert_eq!((status, code(&b)), (400, want), "{body}: {b}");
        assert!(b["error_msg"].as_str().unwrap().contains(says), "{body}: {b}");
    }
    let r = h
        .http
        .put(h.url(path))
        .header("X-Auth-Token", &h.token)
        .header("Content-Type", "text/plain")
        .body(format!("{{{VALID_FIELDS}}}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    let (_, after) = h.get(path).await;
    assert_eq!(&after, stored, "no refusal changed the settings");
}

/// Another project's instance, or none: a plain 404, and nothing is written there. A
/// structurally bad body for a missing instance is still a parameter error (body first).
async fn another_projects_instance_is_not_found(h: &Harness) {
    let store = h.api.state().store.clone();
    let other = other_project_instance();
    store.create_instance(&other).await.unwrap();
    let (status, b) = h.get(&settings_path(&other.id)).await;
    assert_eq!((status, code(&b)), (404, "DBS.200002"), "{b}");
    let (status, b) = put(
        h,
        &settings_path(&other.id),
        &json!({"redact_operations": true,
        "protected_users": [], "protected_app_names": []}),
    )
    .await;
    assert_eq!((status, code(&b)), (404, "DBS.200002"), "{b}");
    let theirs = store.get_session_settings(&other.project_id, &other.id).await.unwrap().unwrap();
    assert!(!theirs.redact_operations && theirs.updated_at == 0, "{theirs:?}");
    let (status, b) = h.get(&settings_path("ffffffffffffffffffffffffffffffffin02")).await;
    assert_eq!((status, code(&b)), (404, "DBS.200002"), "{b}");
    let (status, b) = put_raw(h, &settings_path(&other.id), b"{}".to_vec()).await;
    assert_eq!((status, code(&b)), (400, "DBS.200001"), "{b}");
}

/// A group holding one policy of `effect` on `actions`, granted on the bootstrap project, with
/// `user_id` in it.
async fn grant(e: &iam_support::Env, user_id: &str, effect: &str, actions: &[&str]) {
    let tag = docplane_iam::new_id();
    let g = e.group(&format!("g-{}", &tag[..12])).await;
    let role = e.policy(&format!("p-{}", &tag[..12]), effect, actions).await;
    let path = format!("/v3/projects/{}/groups/{g}/roles/{role}", e.boot.project_id);
    let r = e.call(Method::PUT, &path, Some(&e.admin), None).await;
    assert_eq!(r.status, 204, "{}", r.body);
    e.add_member(&g, user_id).await;
}

/// A user with the given (effect, actions) grants on the bootstrap project; its token.
async fn user(e: &iam_support::Env, name: &str, grants: &[(&str, &[&str])]) -> String {
    let password = "Settings-pass-1";
    let id = e.user(name, password).await;
    for (effect, actions) in grants {
        grant(e, &id, effect, actions).await;
    }
    e.user_token(name, password).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_actions_and_an_explicit_deny() {
    use docplane_api::dds::actions::{GET_SESSION_SETTINGS, MODIFY_SESSION_SETTINGS};
    let e = iam_support::Env::start().await;
    let mut inst = other_project_instance();
    inst.project_id = e.boot.project_id.clone();
    e.server.state().store.create_instance(&inst).await.unwrap();
    let path = format!("/v3/{}{}", e.boot.project_id, settings_path(&inst.id));
    let body = |redact: bool| json!({"redact_operations": redact, "protected_users": ["app"], "protected_app_names": []});

    let viewer = user(&e, "viewer", &[("Allow", &[GET_SESSION_SETTINGS])]).await;
    let reader = user(&e, "reader", &[("Allow", &["dds:*:get*"])]).await;
    let denied =
        user(&e, "denied", &[("Allow", &["dds:instance:*"]), ("Deny", &[MODIFY_SESSION_SETTINGS])]).await;
    let killer =
        user(&e, "killer", &[("Allow", &["dds:instance:listSession", "dds:instance:deleteSession"])]).await;
    let legacy = user(&e, "legacy", &[("Allow", &["dds:instance:session"])]).await;
    let operator = user(&e, "operator", &[("Allow", &["dds:instance:*"])]).await;

    // Reading: the get action, `dds:*:get*`, `dds:instance:*` (despite the deny on modify).
    for token in [&viewer, &reader, &denied, &operator] {
        let r = e.call(Method::GET, &path, Some(token), None).await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    // Kill powers, old or new, do not include the settings.
    for token in [&killer, &legacy] {
        let r = e.call(Method::GET, &path, Some(token), None).await;
        assert_eq!((r.status, r.code.as_str()), (403, "DBS.280063"), "{}", r.body);
        let r = e.call(Method::PUT, &path, Some(token), Some(body(true))).await;
        assert_eq!((r.status, r.code.as_str()), (403, "DBS.280063"), "{}", r.body);
    }
    // Modifying: an explicit deny wins over `dds:instance:*`; read-only grants cannot.
    for token in [&denied, &viewer, &reader] {
        let r = e.call(Method::PUT, &path, Some(token), Some(body(true))).await;
        assert_eq!((r.status, r.code.as_str()), (403, "DBS.280063"), "{}", r.body);
        assert!(r.body["error_msg"].as_str().unwrap().contains(MODIFY_SESSION_SETTINGS), "{}", r.body);
    }
    let r = e.call(Method::GET, &path, Some(&e.admin), None).await;
    assert_eq!(r.body["redact_operations"], false, "no refused put was stored: {}", r.body);
    // `dds:instance:*` without a deny may.
    let r = e.call(Method::PUT, &path, Some(&operator), Some(body(true))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        (r.body["updated_by"].as_str(), r.body["protected_users"].clone()),
        (Some("operator"), json!(["app"]))
    );
    let r = e.call(Method::GET, &path, Some(&viewer), None).await;
    assert_eq!(r.body["redact_operations"], true);
    e.stop().await;
}
