//! The identity rules of docs/iam-rules.md, one test per rule, over HTTP: no IAM permission is a
//! shortcut to another identity.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod iam_support;

use iam_support::*;
use reqwest::Method;
use serde_json::json;

const UPDATE_USER: &str = "iam:users:updateUser";
const CREATE_CREDENTIAL: &str = "iam:credentials:createCredential";

/// Rule 1: the account administrator cannot be disabled, not even by itself, nor deleted.
#[tokio::test]
async fn administrator_cannot_be_disabled_or_deleted_even_by_itself() {
    let e = Env::start().await;
    let admin_id = e.boot.admin_user_id.clone();
    for path in [format!("/v3/users/{admin_id}"), format!("/v3.0/OS-USER/users/{admin_id}")] {
        let method = if path.starts_with("/v3.0") { Method::PUT } else { Method::PATCH };
        let r = e.call(method, &path, Some(&e.admin), Some(json!({"user": {"enabled": false}}))).await;
        assert_eq!((r.status, r.code.as_str()), (403, "DBS.900021"), "{path}: {}", r.body);
    }
    let r = e.call(Method::DELETE, &format!("/v3/users/{admin_id}"), Some(&e.admin), None).await;
    assert_eq!((r.status, r.code.as_str()), (403, "DBS.900021"), "{}", r.body);
    // The account is not locked out: the administrator still logs in and its token still works.
    e.user_token("admin", ADMIN_PASSWORD).await;
    let r = e.call(Method::GET, "/v3/users", Some(&e.admin), None).await;
    assert_eq!(r.status, 200);
    e.stop().await;
}

/// Rule 2: `iam:users:updateUser` does not reach the administrator: no disabling, renaming or
/// password change of it by anyone else.
#[tokio::test]
async fn update_user_permission_cannot_touch_the_administrator() {
    let e = Env::start().await;
    let admin_id = e.boot.admin_user_id.clone();
    let (_, t) = e.user_with("updater", "Updater-pass-1", &[UPDATE_USER]).await;
    for body in [
        json!({"user": {"enabled": false}}),
        json!({"user": {"password": "Hijacked-pass-1"}}),
        json!({"user": {"name": "not-admin"}}),
    ] {
        let r = e.call(Method::PATCH, &format!("/v3/users/{admin_id}"), Some(&t), Some(body.clone())).await;
        assert_eq!((r.status, r.code.as_str()), (403, "DBS.900021"), "{body}: {}", r.body);
    }
    // Nothing changed: the administrator logs in with its password, under its name.
    e.user_token("admin", ADMIN_PASSWORD).await;
    e.stop().await;
}

/// Rule 3: `iam:credentials:createCredential` cannot mint a key for the administrator (only the
/// administrator itself can), nor for any other user below the admin level; it can for oneself.
#[tokio::test]
async fn create_credential_permission_cannot_mint_keys_for_others() {
    let e = Env::start().await;
    let admin_id = e.boot.admin_user_id.clone();
    let (me, t) = e.user_with("minter", "Minter-pass-1", &[CREATE_CREDENTIAL]).await;
    let other = e.user("victim", "Victim-pass-1").await;
    let key_for = |user: &str| json!({"credential": {"user_id": user, "description": "x"}});
    let r = e.call(Method::POST, "/v3.0/OS-CREDENTIAL/credentials", Some(&t), Some(key_for(&admin_id))).await;
    assert_eq!((r.status, r.code.as_str()), (403, "DBS.900021"), "{}", r.body);
    assert!(r.body.get("credential").is_none());
    let r = e.call(Method::POST, "/v3.0/OS-CREDENTIAL/credentials", Some(&t), Some(key_for(&other))).await;
    assert_eq!((r.status, r.code.as_str()), (403, "DBS.900020"), "{}", r.body);
    let r = e.call(Method::POST, "/v3.0/OS-CREDENTIAL/credentials", Some(&t), Some(key_for(&me))).await;
    assert_eq!(r.status, 201, "{}", r.body);
    // The administrator may create its own keys, and keys for anyone else.
    for user in [&admin_id, &other] {
        let r = e
            .call(Method::POST, "/v3.0/OS-CREDENTIAL/credentials", Some(&e.admin), Some(key_for(user)))
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
    }
    e.stop().await;
}

/// Rule 4: resetting another user's password needs the admin level; one's own password and other
/// users' profile fields only need `iam:users:updateUser`.
#[tokio::test]
async fn resetting_another_users_password_needs_the_admin_level() {
    let e = Env::start().await;
    let (me, t) = e.user_with("helpdesk", "Helpdesk-pass-1", &[UPDATE_USER]).await;
    let other = e.user("employee", "Employee-pass-1").await;
    let r = e
        .call(
            Method::PATCH,
            &format!("/v3/users/{other}"),
            Some(&t),
            Some(json!({"user": {"password": "Taken-over-1"}})),
        )
        .await;
    assert_eq!((r.status, r.code.as_str()), (403, "DBS.900020"), "{}", r.body);
    e.user_token("employee", "Employee-pass-1").await; // unchanged
    let r = e
        .call(
            Method::PATCH,
            &format!("/v3/users/{other}"),
            Some(&t),
            Some(json!({"user": {"description": "moved"}})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = e
        .call(
            Method::PATCH,
            &format!("/v3/users/{me}"),
            Some(&t),
            Some(json!({"user": {"password": "Helpdesk-pass-2"}})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    e.user_token("helpdesk", "Helpdesk-pass-2").await;
    // The administrator may reset anyone's password.
    let r = e
        .call(
            Method::PATCH,
            &format!("/v3/users/{other}"),
            Some(&e.admin),
            Some(json!({"user": {"password": "Reset-pass-1"}})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    e.user_token("employee", "Reset-pass-1").await;
    e.stop().await;
}

/// Rule 5: group membership (anyone's, one's own included) needs the admin level, whatever the
/// caller's policies say: joining a group takes its policies, leaving one sheds its Deny.
#[tokio::test]
async fn group_membership_changes_need_the_admin_level() {
    let e = Env::start().await;
    let (me, t) = e
        .user_with(
            "joiner",
            "Joiner-pass-1",
            &["iam:groups:addUserToGroup", "iam:groups:removeUserFromGroup"],
        )
        .await;
    let other = e.user("someone", "Someone-pass-1").await;
    let admins = e.group_id("admin").await;
    let powerful = e.group("powerful").await;
    for (group, user) in [(&admins, &me), (&powerful, &me), (&powerful, &other)] {
        let r = e.call(Method::PUT, &format!("/v3/groups/{group}/users/{user}"), Some(&t), None).await;
        assert_eq!((r.status, r.code.as_str()), (403, "DBS.900020"), "{}", r.body);
    }
    // Leaving a group is refused too (its Deny would go with it).
    let deny = e.group("denied").await;
    e.add_member(&deny, &me).await;
    let r = e.call(Method::DELETE, &format!("/v3/groups/{deny}/users/{me}"), Some(&t), None).await;
    assert_eq!((r.status, r.code.as_str()), (403, "DBS.900020"), "{}", r.body);
    // The administrator manages memberships.
    let r = e.call(Method::DELETE, &format!("/v3/groups/{deny}/users/{me}"), Some(&e.admin), None).await;
    assert_eq!(r.status, 204, "{}", r.body);
    e.stop().await;
}

/// Rule 6: members of the `admin` group have the admin level (every action, other users' keys and
/// passwords, memberships), yet still cannot change the administrator.
#[tokio::test]
async fn admin_group_members_have_the_admin_level_but_not_the_administrator() {
    let e = Env::start().await;
    let admin_id = e.boot.admin_user_id.clone();
    let (m, _) = e.user_with("deputy", "Deputy-pass-1", &[]).await;
    let admins = e.group_id("admin").await;
    e.add_member(&admins, &m).await;
    let t = e.user_token("deputy", "Deputy-pass-1").await;
    let other = e.user("staff", "Staff-pass-1").await;
    let r = e
        .call(
            Method::POST,
            "/v3.0/OS-CREDENTIAL/credentials",
            Some(&t),
            Some(json!({"credential": {"user_id": other}})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = e
        .call(
            Method::PATCH,
            &format!("/v3/users/{other}"),
            Some(&t),
            Some(json!({"user": {"password": "Staff-pass-2"}})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let g = e.group("team").await;
    let r = e.call(Method::PUT, &format!("/v3/groups/{g}/users/{other}"), Some(&t), None).await;
    assert_eq!(r.status, 204, "{}", r.body);
    let r = e
        .call(
            Method::POST,
            "/v3.0/OS-CREDENTIAL/credentials",
            Some(&t),
            Some(json!({"credential": {"user_id": admin_id}})),
        )
        .await;
    assert_eq!((r.status, r.code.as_str()), (403, "DBS.900021"), "{}", r.body);
    for body in [json!({"user": {"enabled": false}}), json!({"user": {"password": "Deputy-owns-1"}})] {
        let r = e.call(Method::PATCH, &format!("/v3/users/{admin_id}"), Some(&t), Some(body)).await;
        assert_eq!((r.status, r.code.as_str()), (403, "DBS.900021"), "{}", r.body);
    }
    let r = e.call(Method::DELETE, &format!("/v3/groups/{admins}/users/{admin_id}"), Some(&t), None).await;
    assert_eq!((r.status, r.code.as_str()), (403, "DBS.900021"), "{}", r.body);
    e.stop().await;
}

/// Rule 7: below the admin level nobody changes a user of the admin level (disable, delete,
/// rename), whatever the policies.
#[tokio::test]
async fn lower_level_cannot_change_admin_level_users() {
    let e = Env::start().await;
    let (m, _) = e.user_with("deputy", "Deputy-pass-1", &[]).await;
    let admins = e.group_id("admin").await;
    e.add_member(&admins, &m).await;
    let (_, t) = e.user_with("rogue", "Rogue-pass-1", &["iam:users:*"]).await;
    let r = e
        .call(Method::PATCH, &format!("/v3/users/{m}"), Some(&t), Some(json!({"user": {"enabled": false}})))
        .await;
    assert_eq!((r.status, r.code.as_str()), (403, "DBS.900020"), "{}", r.body);
    let r = e.call(Method::DELETE, &format!("/v3/users/{m}"), Some(&t), None).await;
    assert_eq!((r.status, r.code.as_str()), (403, "DBS.900020"), "{}", r.body);
    e.user_token("deputy", "Deputy-pass-1").await; // still enabled
    e.stop().await;
}

/// Rule 8: the `admin` group confers the admin level, so only that level may create it.
#[tokio::test]
async fn creating_the_admin_group_needs_the_admin_level() {
    let e = Env::start().await;
    let (_, t) = e.user_with("grouper", "Grouper-pass-1", &["iam:groups:createGroup"]).await;
    for name in ["admin", "Admin"] {
        let r = e.call(Method::POST, "/v3/groups", Some(&t), Some(json!({"group": {"name": name}}))).await;
        assert_eq!((r.status, r.code.as_str()), (403, "DBS.900020"), "{}", r.body);
    }
    let r = e.call(Method::POST, "/v3/groups", Some(&t), Some(json!({"group": {"name": "readers"}}))).await;
    assert_eq!(r.status, 201, "{}", r.body);
    e.stop().await;
}

/// Rule 9: a policy granting every action (`*`) still does not give the admin level.
#[tokio::test]
async fn a_star_policy_is_not_the_admin_level() {
    let e = Env::start().await;
    let admin_id = e.boot.admin_user_id.clone();
    let (me, t) = e.user_with("star", "Star-pass-1", &["*"]).await;
    let other = e.user("plain", "Plain-pass-1").await;
    let r = e
        .call(
            Method::POST,
            "/v3.0/OS-CREDENTIAL/credentials",
            Some(&t),
            Some(json!({"credential": {"user_id": other}})),
        )
        .await;
    assert_eq!((r.status, r.code.as_str()), (403, "DBS.900020"), "{}", r.body);
    let r = e
        .call(
            Method::PATCH,
            &format!("/v3/users/{admin_id}"),
            Some(&t),
            Some(json!({"user": {"enabled": false}})),
        )
        .await;
    assert_eq!((r.status, r.code.as_str()), (403, "DBS.900021"), "{}", r.body);
    let admins = e.group_id("admin").await;
    let r = e.call(Method::PUT, &format!("/v3/groups/{admins}/users/{me}"), Some(&t), None).await;
    assert_eq!((r.status, r.code.as_str()), (403, "DBS.900020"), "{}", r.body);
    // But ordinary IAM writes work with it.
    let r = e.call(Method::POST, "/v3/groups", Some(&t), Some(json!({"group": {"name": "ok"}}))).await;
    assert_eq!(r.status, 201, "{}", r.body);
    e.stop().await;
}

/// Rule 10: the administrator may change its own password and profile (and its old tokens stop).
#[tokio::test]
async fn administrator_changes_its_own_password() {
    let e = Env::start().await;
    let admin_id = e.boot.admin_user_id.clone();
    let r = e
        .call(
            Method::PATCH,
            &format!("/v3/users/{admin_id}"),
            Some(&e.admin),
            Some(json!({"user": {"password": "Admin-password-2", "description": "root"}})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = e.call(Method::GET, "/v3/users", Some(&e.admin), None).await;
    assert_eq!((r.status, r.code.as_str()), (401, "APIGW.0307"), "{}", r.body);
    e.user_token("admin", "Admin-password-2").await;
    e.stop().await;
}

/// Rule 3, deletion: deleting another user's access key needs the admin level; the administrator's
/// keys only the administrator may delete; one's own key `iam:credentials:deleteCredential` allows.
#[tokio::test]
async fn deleting_access_keys_follows_the_same_rule() {
    let e = Env::start().await;
    let (me, t) = e.user_with("cleaner", "Cleaner-pass-1", &["iam:credentials:*"]).await;
    let other = e.user("keyholder", "Keyholder-pass-1").await;
    let new_key = |user: String| {
        let e = &e;
        async move {
            let r = e
                .call(
                    Method::POST,
                    "/v3.0/OS-CREDENTIAL/credentials",
                    Some(&e.admin),
                    Some(json!({"credential": {"user_id": user}})),
                )
                .await;
            assert_eq!(r.status, 201, "{}", r.body);
            let c = &r.body["credential"];
            (c["access"].as_str().unwrap().to_owned(), c["secret"].as_str().unwrap().to_owned())
        }
    };
    let admin_key = e.boot.access_key.clone();
    let (other_key, _) = new_key(other.clone()).await;
    let (my_key, my_secret) = new_key(me.clone()).await;
    let whoami = format!("/v3/{}/whoami", e.boot.project_id);
    let del = |key: String, token: String| {
        let e = &e;
        async move {
            e.call(Method::DELETE, &format!("/v3.0/OS-CREDENTIAL/credentials/{key}"), Some(&token), None)
                .await
        }
    };
    let r = del(admin_key.clone(), t.clone()).await;
    assert_eq!((r.status, r.code.as_str()), (403, "DBS.900021"), "{}", r.body);
    let r = del(other_key.clone(), t.clone()).await;
    assert_eq!((r.status, r.code.as_str()), (403, "DBS.900020"), "{}", r.body);
    // Its own key: deleted, and it stops signing at once.
    let r = e.signed("GET", &whoami, &my_key, &my_secret, chrono::Duration::zero(), &[]).await;
    assert_ne!(r.code, "APIGW.0301", "{}", r.body);
    let r = del(my_key.clone(), t.clone()).await;
    assert_eq!(r.status, 204, "{}", r.body);
    let r = e.signed("GET", &whoami, &my_key, &my_secret, chrono::Duration::zero(), &[]).await;
    assert_eq!((r.status, r.code.as_str()), (401, "APIGW.0301"), "{}", r.body);
    let r = del(my_key, t.clone()).await;
    assert_eq!((r.status, r.code.as_str()), (404, "DBS.900010"));
    // The administrator's key still signs; the administrator may delete the other user's key.
    let sk = e.boot.secret_key.clone();
    let r = e.signed("GET", "/v3/users", &admin_key, &sk, chrono::Duration::zero(), &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = del(other_key, e.admin.clone()).await;
    assert_eq!(r.status, 204, "{}", r.body);
    e.stop().await;
}
