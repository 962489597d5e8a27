//! The identity service over a real store: tokens, revocation (also across two replicas on one
//! PostgreSQL database), access keys, grants and policies.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use docplane_iam::sign::{self, SignedRequest};
use docplane_iam::*;
use serde_json::json;
use sqlx::Connection;

async fn sqlite_iam() -> (tempfile::TempDir, Arc<Iam>, BootstrapOutput) {
    let dir = tempfile::tempdir().unwrap();
    let store = docplane_store::open(dir.path().to_str().unwrap()).await.unwrap();
    let key = MasterKey::load_or_create(dir.path()).unwrap();
    let iam = Iam::new(store, &key).await.unwrap();
    let boot = iam.bootstrap(&BootstrapOptions::default()).await.unwrap();
    (dir, iam, boot)
}

fn by_name(domain: &str, name: &str) -> UserSelector {
    UserSelector::Name { domain_name: Some(domain.into()), domain_id: None, name: name.into() }
}

#[tokio::test]
async fn a_second_master_key_is_refused_on_the_same_store() {
    let dir = tempfile::tempdir().unwrap();
    let location = dir.path().to_str().unwrap().to_owned();
    let (key_a, key_b) = (MasterKey::generate(), MasterKey::generate());
    let a = Iam::new(docplane_store::open(&location).await.unwrap(), &key_a).await.unwrap();
    let boot = a.bootstrap(&BootstrapOptions::default()).await.unwrap();
    // A replica with its own key (e.g. its own key file) on the same store: refused at start.
    let err = Iam::new(docplane_store::open(&location).await.unwrap(), &key_b).await.unwrap_err();
    assert!(matches!(err, IamError::MasterKeyMismatch), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("different master key") && text.contains("DOCPLANE_MASTER_KEY"), "{text}");
    // The same key (another replica sharing DOCPLANE_MASTER_KEY) starts and reads the secrets.
    let b = Iam::new(docplane_store::open(&location).await.unwrap(), &key_a).await.unwrap();
    assert_eq!(b.bootstrap(&BootstrapOptions::default()).await.unwrap().secret_key, boot.secret_key);
    // The refusal changed nothing: the recorded check value is still key A's.
    let store = docplane_store::open(&location).await.unwrap();
    assert_eq!(store.get_setting(KEY_CHECK_SETTING).await.unwrap(), Some(key_a.check_value()));
    assert!(Iam::new(store, &key_b).await.is_err());
}

#[tokio::test]
async fn bootstrap_is_idempotent_and_admin_can_log_in() {
    let (dir, iam, boot) = sqlite_iam().await;
    assert!(boot.created);
    let pw = boot.admin_password.clone().unwrap();
    let again = iam.bootstrap(&BootstrapOptions::default()).await.unwrap();
    assert!(!again.created);
    assert_eq!(again.admin_password, None);
    assert_eq!(
        (again.project_id.as_str(), again.access_key.as_str(), again.secret_key.as_str()),
        (boot.project_id.as_str(), boot.access_key.as_str(), boot.secret_key.as_str())
    );
    // A second process on the same data dir (same key file) sees the same bootstrap.
    let store = docplane_store::open(dir.path().to_str().unwrap()).await.unwrap();
    let iam2 = Iam::new(store, &MasterKey::load_or_create(dir.path()).unwrap()).await.unwrap();
    assert_eq!(iam2.bootstrap(&BootstrapOptions::default()).await.unwrap().secret_key, boot.secret_key);

    let t = iam
        .issue_token(&by_name("docplane", "admin"), &pw, &ProjectSelector::Name("local".into()), Utc::now())
        .await
        .unwrap();
    assert_eq!(t.project.as_ref().map(|p| p.id.as_str()), Some(boot.project_id.as_str()));
    let p = iam2.verify_token(&t.token, Utc::now()).await.unwrap();
    assert!(p.is_admin);
    assert_eq!(p.project_id.as_deref(), Some(boot.project_id.as_str()));
    // The stored secret is not in the database file in clear.
    let db = std::fs::read(dir.path().join("docplane.db")).unwrap();
    assert!(!db.windows(boot.secret_key.len()).any(|w| w == boot.secret_key.as_bytes()));
}

#[tokio::test]
async fn wrong_credentials_all_look_alike() {
    let (_d, iam, boot) = sqlite_iam().await;
    let pw = boot.admin_password.unwrap();
    let now = Utc::now();
    let proj = ProjectSelector::Id(boot.project_id.clone());
    for (who, pass, project) in [
        (by_name("docplane", "admin"), "wrong-pass1", proj.clone()),
        (by_name("docplane", "nobody"), pw.as_str(), proj.clone()),
        (by_name("nodomain", "admin"), pw.as_str(), proj.clone()),
        (by_name("docplane", "admin"), pw.as_str(), ProjectSelector::Id("0".repeat(32))),
        (by_name("docplane", "admin"), pw.as_str(), ProjectSelector::Name("nope".into())),
    ] {
        let e = iam.issue_token(&who, pass, &project, now).await.unwrap_err();
        assert!(matches!(e, IamError::InvalidCredentials), "{e:?}");
    }
}

#[tokio::test]
async fn revocation_on_disable_password_change_and_delete() {
    let (_d, iam, boot) = sqlite_iam().await;
    let d = &boot.domain_id;
    let u = iam.create_user(d, "bob", Some("Bob-pass-1"), true, "", false).await.unwrap();
    let proj = ProjectSelector::Id(boot.project_id.clone());
    let login = |pw: &'static str| {
        let iam = iam.clone();
        let proj = proj.clone();
        async move { iam.issue_token(&by_name("docplane", "bob"), pw, &proj, Utc::now()).await }
    };
    let t1 = login("Bob-pass-1").await.unwrap().token;
    assert!(iam.verify_token(&t1, Utc::now()).await.is_ok());
    // Password change revokes, the new password works, the old one does not.
    iam.update_user(d, &u.id, &UserPatch { password: Some("Bob-pass-2".into()), ..Default::default() })
        .await
        .unwrap();
    assert!(matches!(iam.verify_token(&t1, Utc::now()).await, Err(IamError::InvalidToken("revoked"))));
    assert!(login("Bob-pass-1").await.is_err());
    let t2 = login("Bob-pass-2").await.unwrap().token;
    // A description change does not revoke.
    iam.update_user(d, &u.id, &UserPatch { description: Some("x".into()), ..Default::default() })
        .await
        .unwrap();
    assert!(iam.verify_token(&t2, Utc::now()).await.is_ok());
    // Disable revokes and blocks login; enabling again does not resurrect old tokens.
    iam.update_user(d, &u.id, &UserPatch { enabled: Some(false), ..Default::default() }).await.unwrap();
    assert!(iam.verify_token(&t2, Utc::now()).await.is_err());
    assert!(login("Bob-pass-2").await.is_err());
    iam.update_user(d, &u.id, &UserPatch { enabled: Some(true), ..Default::default() }).await.unwrap();
    assert!(iam.verify_token(&t2, Utc::now()).await.is_err());
    let t3 = login("Bob-pass-2").await.unwrap().token;
    iam.delete_user(d, &u.id).await.unwrap();
    assert!(iam.verify_token(&t3, Utc::now()).await.is_err());
    // Expiry.
    let t4 = iam
        .issue_token(
            &by_name("docplane", "admin"),
            boot.admin_password.as_deref().unwrap(),
            &proj,
            Utc::now(),
        )
        .await
        .unwrap()
        .token;
    let later = Utc::now() + chrono::Duration::hours(24) + chrono::Duration::seconds(1);
    assert!(matches!(iam.verify_token(&t4, later).await, Err(IamError::InvalidToken("expired"))));
}

fn signed_get(ak: &str, sk: &str, path: &str, date: chrono::DateTime<Utc>) -> Vec<(String, String)> {
    let mut h = vec![
        ("Host".to_owned(), "127.0.0.1:1".to_owned()),
        ("X-Sdk-Date".to_owned(), sign::format_sdk_date(date)),
        ("X-Project-Id".to_owned(), "p".to_owned()),
    ];
    let a = sign::sign("GET", path, "", &h, b"", ak, sk.as_bytes()).unwrap();
    h.push(("Authorization".to_owned(), a));
    h
}

#[tokio::test]
async fn access_keys_grants_and_policies() {
    let (_d, iam, boot) = sqlite_iam().await;
    let d = &boot.domain_id;
    let p = &boot.project_id;
    let u = iam.create_user(d, "carol", None, true, "", false).await.unwrap();
    let (cred, sk) = iam.create_access_key(d, &u.id, "ci").await.unwrap();
    let now = Utc::now();
    let h = signed_get(&cred.access_key, &sk, "/v3/x", now);
    let req = SignedRequest { method: "GET", raw_path: "/v3/x", raw_query: "", headers: &h, body: b"" };
    let principal = iam.verify_signed(&req, now).await.unwrap();
    assert_eq!(principal.user_id, u.id);
    assert!(!principal.is_admin);
    // Wrong secret, unknown key.
    let bad = signed_get(&cred.access_key, "not-the-secret", "/v3/x", now);
    let req_bad = SignedRequest { headers: &bad, ..req };
    assert!(iam.verify_signed(&req_bad, now).await.is_err());
    let unknown = signed_get("AKUNKNOWN", &sk, "/v3/x", now);
    assert!(matches!(
        iam.verify_signed(&SignedRequest { headers: &unknown, ..req }, now).await,
        Err(IamError::UnknownAccessKey)
    ));

    // No grant: denied. Grant through a group: allowed. Deny added: denied again.
    let list = "dds:instance:listSession";
    assert!(matches!(iam.authorize(&principal, p, list).await, Err(IamError::Forbidden { .. })));
    let g = iam.create_group(d, "readers", "").await.unwrap();
    iam.add_user_to_group(d, &g.id, &u.id).await.unwrap();
    let allow = iam
        .create_role(
            d,
            "allow-list",
            "XA",
            "",
            &json!({"Version":"1.1","Statement":[{"Effect":"Allow","Action":["dds:instance:listSession"]}]}),
        )
        .await
        .unwrap();
    iam.grant(d, p, &g.id, &allow.id).await.unwrap();
    iam.authorize(&principal, p, list).await.unwrap();
    assert!(iam.authorize(&principal, p, "dds:instance:deleteSession").await.is_err());
    assert!(iam.authorize(&principal, d, list).await.is_err(), "project grant is not account-wide");
    let deny = iam
        .create_role(
            d,
            "deny-sessions",
            "XA",
            "",
            &json!({"Version":"5.0","Statement":[{"Effect":"Deny","Action":["dds:instance:session"]}]}),
        )
        .await
        .unwrap();
    iam.grant(d, p, &g.id, &deny.id).await.unwrap();
    let e = iam.authorize(&principal, p, list).await.unwrap_err();
    assert!(matches!(e, IamError::Forbidden { ref action } if action == list));
    // Leaving the group drops both.
    iam.remove_user_from_group(d, &g.id, &u.id).await.unwrap();
    assert!(iam.authorize(&principal, p, list).await.is_err());
    // Bad policy documents are refused.
    assert!(matches!(
        iam.create_role(d, "bad", "XA", "", &json!({"Version":"9","Statement":[]})).await,
        Err(IamError::BadRequest(_))
    ));
    // Cross-account references are NotFound.
    assert!(matches!(iam.add_user_to_group("otherdomain", &g.id, &u.id).await, Err(IamError::NotFound(_))));
    assert!(matches!(iam.grant(d, &"f".repeat(32), &g.id, &allow.id).await, Err(IamError::NotFound(_))));
    // Disabling the user kills its key too.
    iam.update_user(d, &u.id, &UserPatch { enabled: Some(false), ..Default::default() }).await.unwrap();
    assert!(iam.verify_signed(&req, now).await.is_err());
}

/// Two replicas (two stores, two services) on one PostgreSQL database: a password change on one
/// revokes the token on the other within the poll interval, and a grant on one is honoured by the
/// other.
#[tokio::test]
async fn revocation_reaches_the_other_replica() {
    let base =
        std::env::var("DOCPLANE_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
    let name = format!("docplane_test_{}_{:08x}", std::process::id(), rand::random::<u32>());
    let mut admin =
        sqlx::PgConnection::connect(&format!("{base}/postgres")).await.expect("PostgreSQL must be reachable");
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut admin).await.unwrap();
    let url = format!("{base}/{name}");
    let result = async move {
        let key = MasterKey::generate();
        let a = Iam::new(docplane_store::open(&url).await.unwrap(), &key).await.unwrap();
        let b = Iam::new(docplane_store::open(&url).await.unwrap(), &key).await.unwrap();
        let _sync = b.spawn_sync(Duration::from_millis(200));
        let boot = a.bootstrap(&BootstrapOptions::default()).await.unwrap();
        let d = &boot.domain_id;
        let u = a.create_user(d, "dave", Some("Dave-pass-1"), true, "", false).await.unwrap();
        let t = a
            .issue_token(
                &by_name("docplane", "dave"),
                "Dave-pass-1",
                &ProjectSelector::Id(boot.project_id.clone()),
                Utc::now(),
            )
            .await
            .unwrap()
            .token;
        let principal = b.verify_token(&t, Utc::now()).await.unwrap(); // B caches dave's state
        assert!(b.authorize(&principal, &boot.project_id, "dds:instance:listSession").await.is_err());
        let g = a.create_group(d, "g", "").await.unwrap();
        a.add_user_to_group(d, &g.id, &u.id).await.unwrap();
        let r = a
            .create_role(
                d,
                "r",
                "XA",
                "",
                &json!({"Version":"1.1","Statement":[{"Effect":"Allow","Action":["dds:*"]}]}),
            )
            .await
            .unwrap();
        a.grant(d, &boot.project_id, &g.id, &r.id).await.unwrap();
        a.update_user(d, &u.id, &UserPatch { password: Some("Dave-pass-2".into()), ..Default::default() })
            .await
            .unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        loop {
            if b.verify_token(&t, Utc::now()).await.is_err() {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "replica B never saw the revocation");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        b.authorize(&principal, &boot.project_id, "dds:instance:listSession").await.unwrap();
    };
    let res = tokio::spawn(result).await;
    drop(admin);
    let mut admin = sqlx::PgConnection::connect(&format!("{base}/postgres")).await.unwrap();
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut admin).await.unwrap();
    res.unwrap();
}

#[tokio::test]
async fn domain_scoped_tokens_carry_no_project() {
    let (_d, iam, boot) = sqlite_iam().await;
    let pw = boot.admin_password.clone().unwrap();
    let admin = by_name("docplane", "admin");
    for scope in [
        ScopeSelector::Domain(DomainSelector::Name("docplane".into())),
        ScopeSelector::Domain(DomainSelector::Id(boot.domain_id.clone())),
    ] {
        let t = iam.issue_scoped_token(&admin, &pw, &scope, Utc::now()).await.unwrap();
        assert!(t.project.is_none() && t.claims.prj.is_none());
        let p = iam.verify_token(&t.token, Utc::now()).await.unwrap();
        assert_eq!((p.project_id, p.domain_id), (None, boot.domain_id.clone()));
    }
    // Another account's name or id is refused like a wrong password.
    for scope in [
        ScopeSelector::Domain(DomainSelector::Name("other".into())),
        ScopeSelector::Domain(DomainSelector::Id("0".repeat(32))),
    ] {
        let e = iam.issue_scoped_token(&admin, &pw, &scope, Utc::now()).await.unwrap_err();
        assert!(matches!(e, IamError::InvalidCredentials), "{e:?}");
    }
}

#[tokio::test]
async fn admin_group_gives_the_admin_level_and_it_follows_membership() {
    let (_d, iam, boot) = sqlite_iam().await;
    let d = &boot.domain_id;
    let groups = iam.store().list_groups(d).await.unwrap();
    let admins = groups.iter().find(|g| g.name == ADMIN_GROUP).expect("bootstrap creates the admin group");
    let members = iam.store().list_user_groups(&boot.admin_user_id).await.unwrap();
    assert!(members.iter().any(|g| g.id == admins.id), "the administrator is in it");
    let u = iam.create_user(d, "erin", Some("Erin-pass-1"), true, "", false).await.unwrap();
    let proj = ProjectSelector::Id(boot.project_id.clone());
    let t = iam.issue_token(&by_name("docplane", "erin"), "Erin-pass-1", &proj, Utc::now()).await.unwrap();
    let p = iam.verify_token(&t.token, Utc::now()).await.unwrap();
    assert!(!iam.is_admin_level(&p).await.unwrap());
    assert!(iam.authorize(&p, &boot.project_id, "dds:instance:listSession").await.is_err());
    iam.add_user_to_group(d, &admins.id, &u.id).await.unwrap();
    assert!(iam.is_admin_level(&p).await.unwrap());
    iam.authorize(&p, &boot.project_id, "dds:instance:listSession").await.unwrap();
    iam.remove_user_from_group(d, &admins.id, &u.id).await.unwrap();
    assert!(!iam.is_admin_level(&p).await.unwrap(), "leaving the group drops the level at once");
}
