//! One test suite, run against both backends.
//!
//! Every case is an `async fn(Arc<dyn MetaStore>)`; the `suite!` macro expands each into a SQLite test
//! (fresh file in a temp dir) and a PostgreSQL test (a fresh database `docplane_test_<pid>_<rand>` on
//! `DOCPLANE_TEST_PG` or postgres://postgres@127.0.0.1:5432, dropped afterwards). PostgreSQL being
//! unreachable is a failure, not a skip: CI must exercise both backends.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use docplane_store::*;
use sqlx::Connection;

const PG_DEFAULT: &str = "postgres://postgres@127.0.0.1:5432";

fn pg_base() -> String {
    std::env::var("DOCPLANE_TEST_PG").unwrap_or_else(|_| PG_DEFAULT.to_owned())
}

/// A throwaway PostgreSQL database, dropped by [`PgDb::drop_db`].
struct PgDb {
    name: String,
}

impl PgDb {
    async fn create() -> Self {
        let name = format!("docplane_test_{}_{:08x}", std::process::id(), rand::random::<u32>());
        let mut conn = sqlx::PgConnection::connect(&format!("{}/postgres", pg_base()))
            .await
            .expect("PostgreSQL must be reachable for the store suite (set DOCPLANE_TEST_PG)");
        sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut conn).await.unwrap();
        PgDb { name }
    }
    fn url(&self) -> String {
        format!("{}/{}", pg_base(), self.name)
    }
    async fn drop_db(self) {
        let mut conn = sqlx::PgConnection::connect(&format!("{}/postgres", pg_base())).await.unwrap();
        sqlx::query(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name))
            .execute(&mut conn)
            .await
            .unwrap();
    }
}

async fn with_sqlite<F, Fut>(case: F)
where
    F: FnOnce(Arc<dyn MetaStore>, String) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta.db");
    let loc = path.to_str().unwrap().to_owned();
    let store = open(&loc).await.unwrap();
    assert_eq!(store.backend(), "sqlite");
    case(store, loc).await;
}

async fn with_postgres<F, Fut>(case: F)
where
    F: FnOnce(Arc<dyn MetaStore>, String) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let db = PgDb::create().await;
    let url = db.url();
    {
        let store = open(&url).await.unwrap();
        assert_eq!(store.backend(), "postgres");
        // Run the case in its own task so a panic still lets us drop the database.
        let res = {
            let fut = case(store, url.clone());
            futures_catch(fut).await
        };
        db.drop_db().await;
        if let Err(p) = res {
            std::panic::resume_unwind(p);
        }
    }
}

async fn futures_catch<Fut: std::future::Future<Output = ()>>(
    fut: Fut,
) -> Result<(), Box<dyn std::any::Any + Send>> {
    use std::panic::AssertUnwindSafe;
    // Poll the future inside catch_unwind by boxing it and driving it with a tiny adapter.
    struct CatchUnwind<F>(std::pin::Pin<Box<F>>);
    impl<F: std::future::Future<Output = ()>> std::future::Future for CatchUnwind<F> {
        type Output = Result<(), Box<dyn std::any::Any + Send>>;
        fn poll(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Self::Output> {
            let inner = self.0.as_mut();
            match std::panic::catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
                Ok(std::task::Poll::Pending) => std::task::Poll::Pending,
                Ok(std::task::Poll::Ready(())) => std::task::Poll::Ready(Ok(())),
                Err(p) => std::task::Poll::Ready(Err(p)),
            }
        }
    }
    CatchUnwind(Box::pin(fut)).await
}

macro_rules! suite {
    ($($case:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $case() { super::with_sqlite(super::$case).await }
            )+
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $case() { super::with_postgres(super::$case).await }
            )+
        }
    };
}

suite!(
    accounts_projects,
    project_update,
    users_crud_and_conflicts,
    groups_roles_grants_policies,
    credentials,
    settings_roundtrip,
    settings_put_if_absent,
    change_log_is_monotonic,
    instances_groups_nodes,
    session_settings,
    kill_op_rules,
    enforcer_leases,
    kill_records,
    kill_chain_concurrent_appends,
    second_handle_sees_writes,
    reopen_keeps_data,
);

fn domain(id: &str, name: &str) -> Domain {
    Domain { id: id.into(), name: name.into(), enabled: true, created_at: now_millis() }
}

fn project(id: &str, domain_id: &str, name: &str) -> Project {
    Project {
        id: id.into(),
        domain_id: domain_id.into(),
        name: name.into(),
        description: String::new(),
        enabled: true,
        created_at: now_millis(),
    }
}

fn user(id: &str, domain_id: &str, name: &str) -> User {
    User {
        id: id.into(),
        domain_id: domain_id.into(),
        name: name.into(),
        password_hash: "$argon2id$fake".into(),
        enabled: true,
        is_domain_admin: false,
        token_epoch: 1,
        description: "d".into(),
        created_at: 1,
        updated_at: 1,
    }
}

async fn seed(s: &Arc<dyn MetaStore>) {
    s.create_domain(&domain("d1", "acct")).await.unwrap();
    s.create_project(&project("p1", "d1", "region-1")).await.unwrap();
    s.create_user(&user("u1", "d1", "alice")).await.unwrap();
}

async fn accounts_projects(s: Arc<dyn MetaStore>, _loc: String) {
    seed(&s).await;
    assert!(matches!(s.create_domain(&domain("d2", "acct")).await, Err(StoreError::Conflict(_))));
    s.create_domain(&domain("d2", "other")).await.unwrap();
    assert_eq!(s.get_domain_by_name("other").await.unwrap().unwrap().id, "d2");
    assert_eq!(s.list_domains().await.unwrap().len(), 2);
    s.create_project(&project("p2", "d1", "region-2")).await.unwrap();
    s.create_project(&project("p3", "d2", "region-1")).await.unwrap();
    assert!(matches!(s.create_project(&project("p4", "d1", "region-1")).await, Err(StoreError::Conflict(_))));
    assert!(matches!(
        s.create_project(&project("p5", "nope", "x")).await,
        Err(StoreError::MissingReference(_))
    ));
    let all = s.list_projects("d1", None).await.unwrap();
    assert_eq!(all.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(), ["p1", "p2"]);
    let named = s.list_projects("d1", Some("region-2")).await.unwrap();
    assert_eq!(named.len(), 1);
    assert_eq!(named[0].id, "p2");
    assert!(s.list_projects("d1", Some("zzz")).await.unwrap().is_empty());
    assert_eq!(s.get_project("p3").await.unwrap().unwrap().domain_id, "d2");
    assert!(s.get_project("nope").await.unwrap().is_none());
}

async fn project_update(s: Arc<dyn MetaStore>, _loc: String) {
    seed(&s).await;
    s.create_project(&project("p2", "d1", "region-2")).await.unwrap();
    let before = s.latest_change_seq().await.unwrap();
    let mut p = s.get_project("p2").await.unwrap().unwrap();
    p.name = "team-b".into();
    p.description = "second team".into();
    p.enabled = false;
    s.update_project(&p).await.unwrap();
    assert_eq!(s.get_project("p2").await.unwrap().unwrap(), p);
    assert_eq!(s.list_projects("d1", Some("team-b")).await.unwrap(), vec![p.clone()]);
    // The change is logged, so replicas drop their cached copy.
    let changes = s.changes_since(before, 10).await.unwrap();
    assert!(changes.iter().any(|c| c.kind == change_kind::PROJECT && c.entity_id == "p2"), "{changes:?}");
    // Names stay unique inside the account.
    let mut clash = p.clone();
    clash.name = "region-1".into();
    assert!(matches!(s.update_project(&clash).await, Err(StoreError::Conflict(_))));
    let mut ghost = p.clone();
    ghost.id = "ghost".into();
    assert!(matches!(s.update_project(&ghost).await, Err(StoreError::NotFound)));
}

async fn users_crud_and_conflicts(s: Arc<dyn MetaStore>, _loc: String) {
    seed(&s).await;
    assert!(matches!(s.create_user(&user("u2", "d1", "alice")).await, Err(StoreError::Conflict(_))));
    let mut u = s.get_user_by_name("d1", "alice").await.unwrap().unwrap();
    assert_eq!(u.id, "u1");
    assert!(u.enabled && !u.is_domain_admin);
    u.enabled = false;
    u.token_epoch += 1;
    u.password_hash = "new".into();
    u.updated_at = 99;
    s.update_user(&u).await.unwrap();
    let back = s.get_user("u1").await.unwrap().unwrap();
    assert_eq!(back, u);
    let mut ghost = u.clone();
    ghost.id = "ghost".into();
    assert!(matches!(s.update_user(&ghost).await, Err(StoreError::NotFound)));
    s.create_user(&user("u2", "d1", "bob")).await.unwrap();
    assert_eq!(s.list_users("d1").await.unwrap().len(), 2);
    s.delete_user("u1").await.unwrap();
    assert!(s.get_user("u1").await.unwrap().is_none());
    assert!(matches!(s.delete_user("u1").await, Err(StoreError::NotFound)));
}

async fn groups_roles_grants_policies(s: Arc<dyn MetaStore>, _loc: String) {
    seed(&s).await;
    s.create_project(&project("p2", "d1", "region-2")).await.unwrap();
    let g = Group {
        id: "g1".into(),
        domain_id: "d1".into(),
        name: "ops".into(),
        description: String::new(),
        created_at: 1,
    };
    s.create_group(&g).await.unwrap();
    s.add_group_member("g1", "u1").await.unwrap();
    s.add_group_member("g1", "u1").await.unwrap(); // idempotent
    assert!(s.add_group_member("g1", "nobody").await.is_err());
    assert_eq!(s.list_user_groups("u1").await.unwrap(), vec![g.clone()]);
    let role = |id: &str, doc: &str| Role {
        id: id.into(),
        domain_id: "d1".into(),
        name: format!("custom_{id}"),
        display_name: id.into(),
        description: String::new(),
        role_type: "AX".into(),
        policy: doc.into(),
        created_at: 1,
        updated_at: 1,
    };
    s.create_role(&role("r1", r#"{"allow":1}"#)).await.unwrap();
    s.create_role(&role("r2", r#"{"deny":1}"#)).await.unwrap();
    s.create_grant(&Grant { scope_id: "p1".into(), group_id: "g1".into(), role_id: "r1".into() })
        .await
        .unwrap();
    s.create_grant(&Grant { scope_id: "p1".into(), group_id: "g1".into(), role_id: "r1".into() })
        .await
        .unwrap();
    s.create_grant(&Grant { scope_id: "p2".into(), group_id: "g1".into(), role_id: "r2".into() })
        .await
        .unwrap();
    assert_eq!(s.policies_for_user("u1", "p1").await.unwrap(), vec![r#"{"allow":1}"#]);
    assert_eq!(s.policies_for_user("u1", "p2").await.unwrap(), vec![r#"{"deny":1}"#]);
    assert!(s.policies_for_user("u1", "p3").await.unwrap().is_empty());
    assert_eq!(s.list_grants("p1").await.unwrap().len(), 1);
    // A role update is visible through the join.
    let mut r1 = s.get_role("r1").await.unwrap().unwrap();
    r1.policy = r#"{"allow":2}"#.into();
    s.update_role(&r1).await.unwrap();
    assert_eq!(s.policies_for_user("u1", "p1").await.unwrap(), vec![r#"{"allow":2}"#]);
    // Leaving the group removes the policies.
    s.remove_group_member("g1", "u1").await.unwrap();
    assert!(s.policies_for_user("u1", "p1").await.unwrap().is_empty());
    s.add_group_member("g1", "u1").await.unwrap();
    s.delete_grant(&Grant { scope_id: "p1".into(), group_id: "g1".into(), role_id: "r1".into() })
        .await
        .unwrap();
    assert!(s.policies_for_user("u1", "p1").await.unwrap().is_empty());
    // Deleting the role cascades its grants.
    s.delete_role("r2").await.unwrap();
    assert!(s.policies_for_user("u1", "p2").await.unwrap().is_empty());
    assert_eq!(s.list_roles("d1").await.unwrap().len(), 1);
    s.delete_group("g1").await.unwrap();
    assert!(s.list_user_groups("u1").await.unwrap().is_empty());
    assert!(s.list_groups("d1").await.unwrap().is_empty());
}

async fn credentials(s: Arc<dyn MetaStore>, _loc: String) {
    seed(&s).await;
    let c = Credential {
        access_key: "AKAKAKAKAKAKAKAKAKAK".into(),
        user_id: "u1".into(),
        secret_enc: vec![0, 1, 2, 255],
        status: "active".into(),
        description: "ci".into(),
        created_at: 5,
    };
    s.create_credential(&c).await.unwrap();
    assert!(matches!(s.create_credential(&c).await, Err(StoreError::Conflict(_))));
    assert_eq!(s.get_credential(&c.access_key).await.unwrap().unwrap(), c);
    s.set_credential_status(&c.access_key, "inactive").await.unwrap();
    assert_eq!(s.get_credential(&c.access_key).await.unwrap().unwrap().status, "inactive");
    assert_eq!(s.list_credentials("u1").await.unwrap().len(), 1);
    // Deleting the user removes its keys.
    s.delete_user("u1").await.unwrap();
    assert!(s.get_credential(&c.access_key).await.unwrap().is_none());
}

async fn settings_roundtrip(s: Arc<dyn MetaStore>, _loc: String) {
    assert!(s.get_setting("k").await.unwrap().is_none());
    s.put_setting("k", "v1").await.unwrap();
    s.put_setting("k", "v2").await.unwrap();
    assert_eq!(s.get_setting("k").await.unwrap().as_deref(), Some("v2"));
}

async fn settings_put_if_absent(a: Arc<dyn MetaStore>, loc: String) {
    let b = open(&loc).await.unwrap();
    let seq = a.latest_change_seq().await.unwrap();
    // Concurrent first writers on two handles: one value wins and both see it.
    let (ra, rb) =
        tokio::join!(a.put_setting_if_absent("kcv", "from-a"), b.put_setting_if_absent("kcv", "from-b"));
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert_eq!(ra, rb);
    assert!(ra == "from-a" || ra == "from-b", "{ra}");
    assert_eq!(a.get_setting("kcv").await.unwrap().as_deref(), Some(ra.as_str()));
    // Later calls never overwrite.
    assert_eq!(b.put_setting_if_absent("kcv", "other").await.unwrap(), ra);
    assert_eq!(a.get_setting("kcv").await.unwrap().as_deref(), Some(ra.as_str()));
    // Only the insert was logged.
    let changes = a.changes_since(seq, 10).await.unwrap();
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert_eq!((changes[0].kind.as_str(), changes[0].entity_id.as_str()), ("setting", "kcv"));
}

async fn change_log_is_monotonic(s: Arc<dyn MetaStore>, _loc: String) {
    let start = s.latest_change_seq().await.unwrap();
    seed(&s).await;
    let mut u = s.get_user("u1").await.unwrap().unwrap();
    u.enabled = false;
    s.update_user(&u).await.unwrap();
    let changes = s.changes_since(start, 100).await.unwrap();
    assert_eq!(changes.len(), 4, "{changes:?}");
    assert!(changes.windows(2).all(|w| w[0].seq < w[1].seq));
    assert_eq!(changes[3].kind, change_kind::USER);
    assert_eq!(changes[3].entity_id, "u1");
    assert_eq!(s.latest_change_seq().await.unwrap(), changes[3].seq);
    assert_eq!(s.changes_since(changes[1].seq, 1).await.unwrap(), vec![changes[2].clone()]);
    // Failed writes leave no change behind.
    let before = s.latest_change_seq().await.unwrap();
    assert!(s.create_user(&user("u1", "d1", "dup")).await.is_err());
    assert_eq!(s.latest_change_seq().await.unwrap(), before);
    // Concurrent writers: every change lands exactly once with distinct seqs.
    let mut tasks = Vec::new();
    for i in 0..16 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.create_user(&user(&format!("c{i}"), "d1", &format!("c{i}"))).await.unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let after = s.changes_since(before, 1000).await.unwrap();
    assert_eq!(after.len(), 16);
    assert!(after.windows(2).all(|w| w[0].seq < w[1].seq));
}

/// `get_node_context` of node n1 (instance of project p1): the node, its instance, the defaults,
/// then stored settings; nothing outside the project.
async fn node_context_of_n1(s: &Arc<dyn MetaStore>) {
    let ctx = s.get_node_context("p1", "n1").await.unwrap().expect("the node's context");
    assert_eq!(ctx.node, s.get_node("p1", "n1").await.unwrap().unwrap());
    assert_eq!(Some(&ctx.instance), s.get_instance("p1", &ctx.node.instance_id).await.unwrap().as_ref());
    assert_eq!(ctx.settings, SessionSettings::defaults(&ctx.instance.id), "none stored: the defaults");
    assert!(s.get_node_context("p2", "n1").await.unwrap().is_none(), "tenant isolation");
    assert!(s.get_node_context("p1", "nope").await.unwrap().is_none());
    let stored = SessionSettings {
        instance_id: ctx.instance.id.clone(),
        redact_operations: true,
        protected_users: vec!["backup".into()],
        protected_app_names: vec!["nightly".into(), "etl".into()],
        updated_at: 7,
        updated_by: "alice".into(),
    };
    s.put_session_settings("p1", &stored).await.unwrap();
    assert_eq!(s.get_node_context("p1", "n1").await.unwrap().unwrap().settings, stored, "the stored ones");
}

async fn instances_groups_nodes(s: Arc<dyn MetaStore>, _loc: String) {
    let inst = |id: &str, project: &str, name: &str, mode: InstanceMode, t: i64| Instance {
        id: id.into(),
        project_id: project.into(),
        name: name.into(),
        mode,
        status: "normal".into(),
        datastore_version: "4.0".into(),
        port: 8635,
        created_at: t,
        updated_at: t,
    };
    s.create_instance(&inst("i1", "p1", "alpha", InstanceMode::ReplicaSet, 1)).await.unwrap();
    s.create_instance(&inst("i2", "p1", "beta", InstanceMode::Single, 2)).await.unwrap();
    s.create_instance(&inst("i3", "p1", "gamma", InstanceMode::Sharding, 3)).await.unwrap();
    s.create_instance(&inst("i4", "p2", "alpha", InstanceMode::Single, 4)).await.unwrap();
    let f = |id: Option<&str>, name: Option<&str>, mode, offset, limit| InstanceFilter {
        project_id: "p1".into(),
        id: id.map(Into::into),
        name: name.map(Into::into),
        mode,
        offset,
        limit,
    };
    let (page, total) = s.list_instances(&f(None, None, None, 0, 10)).await.unwrap();
    assert_eq!(total, 3);
    assert_eq!(page.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(), ["i3", "i2", "i1"]);
    let (page, total) = s.list_instances(&f(None, None, None, 1, 1)).await.unwrap();
    assert_eq!((page.len(), total, page[0].id.as_str()), (1, 3, "i2"));
    let (page, total) = s.list_instances(&f(None, Some("alpha"), None, 0, 10)).await.unwrap();
    assert_eq!((page.len(), total, page[0].id.as_str()), (1, 1, "i1"));
    let (page, _) = s.list_instances(&f(None, None, Some(InstanceMode::Sharding), 0, 10)).await.unwrap();
    assert_eq!(page[0].mode, InstanceMode::Sharding);
    let (page, total) = s.list_instances(&f(Some("i4"), None, None, 0, 10)).await.unwrap();
    assert!(page.is_empty() && total == 0, "other project's instance must not show");
    assert!(s.get_instance("p1", "i4").await.unwrap().is_none());
    assert_eq!(s.get_instance("p2", "i4").await.unwrap().unwrap().name, "alpha");
    s.update_instance_status("i1", "abnormal").await.unwrap();
    s.update_instance_version("i1", "4.2").await.unwrap();
    let i1 = s.get_instance("p1", "i1").await.unwrap().unwrap();
    assert_eq!((i1.status.as_str(), i1.datastore_version.as_str()), ("abnormal", "4.2"));
    assert!(matches!(s.update_instance_status("zz", "x").await, Err(StoreError::NotFound)));

    let g = InstanceGroup {
        id: "g1".into(),
        instance_id: "i1".into(),
        group_type: GroupType::Replica,
        name: "rs0".into(),
        status: "normal".into(),
    };
    s.create_instance_group(&g).await.unwrap();
    s.update_instance_group_status("g1", "frozen").await.unwrap();
    assert_eq!(s.list_instance_groups("i1").await.unwrap()[0].status, "frozen");
    let node = |id: &str, role: &str| Node {
        id: id.into(),
        instance_id: "i1".into(),
        group_id: "g1".into(),
        name: format!("node-{id}"),
        role: role.into(),
        status: "normal".into(),
        address: "127.0.0.1:27017".into(),
        credentials_enc: Some(vec![9, 9, 9]),
        version: "4.0.3".into(),
        updated_at: 1,
    };
    s.create_node(&node("n1", "Primary")).await.unwrap();
    s.create_node(&Node { credentials_enc: None, ..node("n2", "Secondary") }).await.unwrap();
    assert!(s.create_node(&Node { group_id: "nope".into(), ..node("n3", "x") }).await.is_err());
    assert_eq!(s.get_node("p1", "n1").await.unwrap().unwrap().credentials_enc, Some(vec![9, 9, 9]));
    assert!(s.get_node("p2", "n1").await.unwrap().is_none(), "tenant isolation in the query");
    node_context_of_n1(&s).await;
    s.update_node(
        "n2",
        &NodeUpdate { role: Some("Primary".into()), version: Some("4.2.1".into()), ..Default::default() },
    )
    .await
    .unwrap();
    let n2 = s.get_node("p1", "n2").await.unwrap().unwrap();
    assert_eq!((n2.role.as_str(), n2.version.as_str(), n2.status.as_str()), ("Primary", "4.2.1", "normal"));
    assert_eq!(n2.credentials_enc, None);
    assert_eq!(s.list_nodes("i1").await.unwrap().len(), 2);
    s.delete_node("n2").await.unwrap();
    assert!(matches!(s.delete_node("n2").await, Err(StoreError::NotFound)));
    s.delete_instance("i1").await.unwrap();
    assert!(s.get_node("p1", "n1").await.unwrap().is_none());
    assert!(s.list_instance_groups("i1").await.unwrap().is_empty());
    assert!(s.get_instance("p1", "i1").await.unwrap().is_none());
}

fn instance(id: &str, project: &str) -> Instance {
    Instance {
        id: id.into(),
        project_id: project.into(),
        name: format!("name-{id}"),
        mode: InstanceMode::Single,
        status: "normal".into(),
        datastore_version: "7.0".into(),
        port: 8635,
        created_at: 1,
        updated_at: 1,
    }
}

async fn session_settings(s: Arc<dyn MetaStore>, _loc: String) {
    s.create_instance(&instance("i1", "p1")).await.unwrap();
    s.create_instance(&instance("i2", "p2")).await.unwrap();
    // Never configured: the defaults, inside the instance's project only.
    assert_eq!(s.get_session_settings("p1", "i1").await.unwrap(), Some(SessionSettings::defaults("i1")));
    assert_eq!(s.get_session_settings("p2", "i1").await.unwrap(), None, "another project's instance");
    assert_eq!(s.get_session_settings("p1", "nope").await.unwrap(), None);

    let seq = s.latest_change_seq().await.unwrap();
    let set = SessionSettings {
        instance_id: "i1".into(),
        redact_operations: true,
        protected_users: vec!["backup".into(), "app@admin".into(), "ünï cödé".into()],
        protected_app_names: vec!["nightly-report".into()],
        updated_at: 1234,
        updated_by: "alice".into(),
    };
    // Through another project: refused, nothing written.
    assert!(matches!(s.put_session_settings("p2", &set).await, Err(StoreError::NotFound)));
    assert_eq!(s.get_session_settings("p1", "i1").await.unwrap(), Some(SessionSettings::defaults("i1")));
    let unknown = SessionSettings { instance_id: "nope".into(), ..set.clone() };
    assert!(matches!(s.put_session_settings("p1", &unknown).await, Err(StoreError::NotFound)));

    s.put_session_settings("p1", &set).await.unwrap();
    assert_eq!(
        s.get_session_settings("p1", "i1").await.unwrap(),
        Some(set.clone()),
        "lists keep their order"
    );
    assert_eq!(s.get_session_settings("p2", "i1").await.unwrap(), None);
    // A put replaces the whole object.
    let less = SessionSettings {
        redact_operations: false,
        protected_users: vec![],
        protected_app_names: vec!["a".into(), "b".into()],
        updated_at: 5678,
        updated_by: "bob".into(),
        ..set.clone()
    };
    s.put_session_settings("p1", &less).await.unwrap();
    assert_eq!(s.get_session_settings("p1", "i1").await.unwrap(), Some(less.clone()));
    // Settings decide no authorization and nothing caches them: no change-log entry.
    assert_eq!(s.latest_change_seq().await.unwrap(), seq);
    // The other instance is untouched.
    assert_eq!(s.get_session_settings("p2", "i2").await.unwrap(), Some(SessionSettings::defaults("i2")));

    // Deleting the instance deletes its settings: an instance registered again under the same id
    // starts from the defaults.
    s.delete_instance("i1").await.unwrap();
    assert_eq!(s.get_session_settings("p1", "i1").await.unwrap(), None);
    assert!(matches!(s.put_session_settings("p1", &set).await, Err(StoreError::NotFound)));
    s.create_instance(&instance("i1", "p1")).await.unwrap();
    assert_eq!(s.get_session_settings("p1", "i1").await.unwrap(), Some(SessionSettings::defaults("i1")));
}

fn rule(id: &str, instance: &str, t: i64) -> KillOpRule {
    KillOpRule {
        id: id.into(),
        instance_id: instance.into(),
        operation_types: vec!["query".into(), "command".into()],
        namespaces: vec!["shop.orders".into()],
        client_ips: vec!["10.0.0.5".into()],
        plan_summary: "COLLSCAN".into(),
        max_concurrency: 0,
        secs_running: 30,
        node_type: "replica".into(),
        status: rule_status::DISABLED.into(),
        mode: "kill".into(),
        created_at: t,
        updated_at: t,
    }
}

async fn kill_op_rules(s: Arc<dyn MetaStore>, _loc: String) {
    s.create_instance(&instance("i1", "p1")).await.unwrap();
    s.create_instance(&instance("i2", "p2")).await.unwrap();
    let g = InstanceGroup {
        id: "g1".into(),
        instance_id: "i1".into(),
        group_type: GroupType::Single,
        name: "single".into(),
        status: "normal".into(),
    };
    s.create_instance_group(&g).await.unwrap();
    let n1 = Node {
        id: "n1".into(),
        instance_id: "i1".into(),
        group_id: "g1".into(),
        name: "n1".into(),
        role: "Primary".into(),
        status: "normal".into(),
        address: "127.0.0.1:1".into(),
        credentials_enc: None,
        version: "7.0".into(),
        updated_at: 1,
    };
    s.create_node(&n1).await.unwrap();
    // Through another project, or for a missing instance: nothing written.
    assert_eq!(
        s.create_kill_op_rule("p2", &rule("r0", "i1", 1)).await.unwrap(),
        CreateRuleOutcome::NoInstance
    );
    assert_eq!(
        s.create_kill_op_rule("p1", &rule("r0", "nope", 1)).await.unwrap(),
        CreateRuleOutcome::NoInstance
    );
    assert_eq!(s.list_kill_op_rules("p2", "i1").await.unwrap(), None);
    assert_eq!(s.list_kill_op_rules("p1", "i1").await.unwrap(), Some(vec![]));
    // Ten rules, then the limit.
    for i in 0..10 {
        let r = rule(&format!("r{i}"), "i1", i64::from(i));
        assert_eq!(s.create_kill_op_rule("p1", &r).await.unwrap(), CreateRuleOutcome::Created);
    }
    assert_eq!(
        s.create_kill_op_rule("p1", &rule("r10", "i1", 10)).await.unwrap(),
        CreateRuleOutcome::LimitReached
    );
    let all = s.list_kill_op_rules("p1", "i1").await.unwrap().unwrap();
    assert_eq!(all.len(), 10);
    assert_eq!(all[0], rule("r0", "i1", 0), "lists round-trip in order");
    // Another instance's limit is its own.
    assert_eq!(s.create_kill_op_rule("p2", &rule("x0", "i2", 1)).await.unwrap(), CreateRuleOutcome::Created);

    // Nothing enabled: no work for the enforcer.
    assert!(s.enforced_nodes().await.unwrap().is_empty());
    // Status changes are all or nothing and scoped by project and instance.
    let ids = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert!(matches!(
        s.set_kill_op_rule_status("p1", "i1", &ids(&["r1", "x0"]), rule_status::ENABLED).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        s.set_kill_op_rule_status("p2", "i1", &ids(&["r1"]), rule_status::ENABLED).await,
        Err(StoreError::NotFound)
    ));
    assert!(s.enforced_nodes().await.unwrap().is_empty(), "a refused change changed nothing");
    s.set_kill_op_rule_status("p1", "i1", &ids(&["r1", "r2"]), rule_status::ENABLED).await.unwrap();
    let work = s.enforced_nodes().await.unwrap();
    assert_eq!(work.len(), 1);
    assert_eq!(work[0].node.id, "n1");
    assert_eq!(work[0].instance.id, "i1");
    assert_eq!(work[0].rules.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["r1", "r2"]);
    // An enabled rule cannot be deleted; a missing id refuses the whole call.
    assert!(matches!(
        s.delete_kill_op_rules("p1", "i1", &ids(&["r0", "r1"])).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        s.delete_kill_op_rules("p1", "i1", &ids(&["r0", "zz"])).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(s.delete_kill_op_rules("p2", "i1", &ids(&["r0"])).await, Err(StoreError::NotFound)));
    assert_eq!(s.list_kill_op_rules("p1", "i1").await.unwrap().unwrap().len(), 10, "nothing deleted");
    s.delete_kill_op_rules("p1", "i1", &ids(&["r0", "r3"])).await.unwrap();
    assert_eq!(s.list_kill_op_rules("p1", "i1").await.unwrap().unwrap().len(), 8);
    assert_eq!(
        s.create_kill_op_rule("p1", &rule("r10", "i1", 10)).await.unwrap(),
        CreateRuleOutcome::Created
    );
    // The rules go with their instance.
    s.delete_instance("i1").await.unwrap();
    assert!(s.enforced_nodes().await.unwrap().is_empty());
    s.create_instance(&instance("i1", "p1")).await.unwrap();
    assert_eq!(s.list_kill_op_rules("p1", "i1").await.unwrap(), Some(vec![]));
}

async fn enforcer_leases(s: Arc<dyn MetaStore>, _loc: String) {
    assert!(s.acquire_enforcer_lease("n1", "a", 1000, 3000).await.unwrap());
    // Held by a until 4000: b cannot take it; a renews it.
    assert!(!s.acquire_enforcer_lease("n1", "b", 2000, 3000).await.unwrap());
    assert!(s.acquire_enforcer_lease("n1", "a", 3500, 3000).await.unwrap());
    assert!(!s.acquire_enforcer_lease("n1", "b", 6000, 3000).await.unwrap(), "renewed until 6500");
    // Expired: b takes it over, and a no longer holds it.
    assert!(s.acquire_enforcer_lease("n1", "b", 6501, 3000).await.unwrap());
    assert!(!s.acquire_enforcer_lease("n1", "a", 6502, 3000).await.unwrap());
    // Leases are per node.
    assert!(s.acquire_enforcer_lease("n2", "a", 6502, 3000).await.unwrap());
    // Released by its holder only.
    s.release_enforcer_lease("n1", "a").await.unwrap();
    assert!(!s.acquire_enforcer_lease("n1", "a", 6600, 3000).await.unwrap());
    s.release_enforcer_lease("n1", "b").await.unwrap();
    assert!(s.acquire_enforcer_lease("n1", "a", 6600, 3000).await.unwrap());
}

fn kill_entry(project: &str, record: &str, kind: &str, at: i64, outcome: &str) -> NewKillEntry {
    NewKillEntry {
        project_id: project.into(),
        record_id: record.into(),
        kind: kind.into(),
        at,
        node_id: if at % 2 == 0 { "n-even".into() } else { "n-odd".into() },
        principal: "alice".into(),
        access_key: if at == 3 { "AK3".into() } else { String::new() },
        outcome: outcome.into(),
        body: format!(r#"{{"at":{at}}}"#),
    }
}

async fn verify_all(s: &Arc<dyn MetaStore>, project: &str) -> Vec<ChainProblem> {
    let head = s.kill_chain_head(project).await.unwrap();
    let entries = s.kill_log_entries(project, 0, 100_000).await.unwrap();
    verify_kill_chain(head.as_ref(), &entries)
}

/// Kill records: chained appends, one outcome per record, listing filters, pending intents,
/// retention that keeps the rest verifiable.
async fn kill_records(s: Arc<dyn MetaStore>, _loc: String) {
    use kill_entry_kind::{INTENT, OUTCOME};
    for at in 1..=4 {
        let e = s.append_kill_entry(&kill_entry("p1", &format!("r{at}"), INTENT, at, "")).await.unwrap();
        assert_eq!(e.seq, at);
    }
    let out = s.append_kill_entry(&kill_entry("p1", "r1", OUTCOME, 5, "killed")).await.unwrap();
    assert_eq!(out.seq, 5);
    s.append_kill_entry(&kill_entry("p1", "r2", OUTCOME, 6, "refused")).await.unwrap();
    // A second outcome for a record is refused and appends nothing.
    assert!(matches!(
        s.append_kill_entry(&kill_entry("p1", "r1", OUTCOME, 7, "unknown")).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(s.kill_chain_head("p1").await.unwrap().unwrap().seq, 6);
    // Another project has its own chain.
    assert_eq!(s.append_kill_entry(&kill_entry("p2", "q1", INTENT, 1, "")).await.unwrap().seq, 1);
    assert!(verify_all(&s, "p1").await.is_empty());
    assert!(verify_all(&s, "p2").await.is_empty());

    let list = |f: KillRecordFilter| {
        let s = s.clone();
        async move {
            let (records, total) = s
                .list_kill_records(&KillRecordFilter {
                    project_id: "p1".into(),
                    limit: if f.limit == 0 { 100 } else { f.limit },
                    ..f
                })
                .await
                .unwrap();
            (records.iter().map(|r| r.intent.record_id.clone()).collect::<Vec<_>>(), total, records)
        }
    };
    let (ids, total, records) = list(KillRecordFilter::default()).await;
    assert_eq!((ids, total), (vec!["r4".to_owned(), "r3".into(), "r2".into(), "r1".into()], 4));
    assert_eq!(records[3].outcome.as_ref().unwrap().outcome, "killed");
    assert!(records[0].outcome.is_none());
    let (ids, total, _) = list(KillRecordFilter { offset: 1, limit: 2, ..Default::default() }).await;
    assert_eq!((ids, total), (vec!["r3".to_owned(), "r2".into()], 4));
    let (ids, ..) = list(KillRecordFilter { from: Some(2), to: Some(4), ..Default::default() }).await;
    assert_eq!(ids, ["r3", "r2"]);
    let (ids, ..) = list(KillRecordFilter { node_id: Some("n-even".into()), ..Default::default() }).await;
    assert_eq!(ids, ["r4", "r2"]);
    let (ids, ..) = list(KillRecordFilter { principal: Some("AK3".into()), ..Default::default() }).await;
    assert_eq!(ids, ["r3"]);
    let (ids, ..) = list(KillRecordFilter { principal: Some("bob".into()), ..Default::default() }).await;
    assert!(ids.is_empty());
    let (ids, ..) = list(KillRecordFilter { outcome: Some("killed".into()), ..Default::default() }).await;
    assert_eq!(ids, ["r1"]);
    let (ids, ..) =
        list(KillRecordFilter { outcome: Some(KILL_OUTCOME_PENDING.into()), ..Default::default() }).await;
    assert_eq!(ids, ["r4", "r3"]);

    // Pending intents of every project, oldest first, older than the cutoff.
    let pending = s.pending_kill_intents(4, 10).await.unwrap();
    assert_eq!(pending.iter().map(|e| e.record_id.as_str()).collect::<Vec<_>>(), ["q1", "r3"]);

    // Retention: entries up to the newest older than 3 go; the rest still verifies.
    assert_eq!(s.prune_kill_log(3).await.unwrap(), 3);
    let head = s.kill_chain_head("p1").await.unwrap().unwrap();
    assert_eq!((head.base_seq, head.seq), (2, 6));
    assert_eq!(s.kill_log_entries("p1", 0, 100).await.unwrap()[0].seq, 3);
    assert!(verify_all(&s, "p1").await.is_empty());
    assert!(s.kill_chain_head("p2").await.unwrap().unwrap().base_seq == 1);
    assert!(verify_all(&s, "p2").await.is_empty());
    s.append_kill_entry(&kill_entry("p1", "r9", INTENT, 9, "")).await.unwrap();
    assert!(verify_all(&s, "p1").await.is_empty());
}

/// Two handles (two replicas) appending to one project's chain at once never fork it: every seq
/// is used once and the chain verifies.
async fn kill_chain_concurrent_appends(a: Arc<dyn MetaStore>, loc: String) {
    let b = open(&loc).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..40 {
        let s = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            s.append_kill_entry(&kill_entry("p1", &format!("c{i}"), kill_entry_kind::INTENT, i, ""))
                .await
                .unwrap()
                .seq
        }));
    }
    let mut seqs = Vec::new();
    for t in tasks {
        seqs.push(t.await.unwrap());
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=40).collect::<Vec<i64>>());
    assert!(verify_all(&a, "p1").await.is_empty());
}

/// Two handles on one database (two replicas) see each other's writes, including the change log.
async fn second_handle_sees_writes(a: Arc<dyn MetaStore>, loc: String) {
    let b = open(&loc).await.unwrap();
    seed(&a).await;
    let seq = b.latest_change_seq().await.unwrap();
    assert!(b.get_user("u1").await.unwrap().is_some());
    let mut u = b.get_user("u1").await.unwrap().unwrap();
    u.token_epoch = 7;
    b.update_user(&u).await.unwrap();
    assert_eq!(a.get_user("u1").await.unwrap().unwrap().token_epoch, 7);
    let seen = a.changes_since(seq, 10).await.unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!((seen[0].kind.as_str(), seen[0].entity_id.as_str()), ("user", "u1"));
}

async fn reopen_keeps_data(s: Arc<dyn MetaStore>, loc: String) {
    seed(&s).await;
    drop(s);
    let again = open(&loc).await.unwrap();
    assert_eq!(again.get_user("u1").await.unwrap().unwrap().name, "alice");
}

/// SQLite's write-ahead log is checkpointed in the background as kills are appended (see
/// `Checkpoints` in `sql.rs`), and its file stays bounded by the backstop (2,000 pages, 8 MiB)
/// rather than growing with every append.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_wal_is_checkpointed_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta.db");
    let store = SqliteStore::open_file(&path).await.unwrap();
    for at in 0..2_000 {
        let kind = if at % 2 == 0 { kill_entry_kind::INTENT } else { kill_entry_kind::OUTCOME };
        store
            .append_kill_entry(&kill_entry("p1", &format!("r{}", at / 2), kind, at, "killed"))
            .await
            .unwrap();
    }
    let wal = std::fs::metadata(dir.path().join("meta.db-wal")).unwrap().len();
    assert!(wal < 12 * 1024 * 1024, "WAL grew to {wal} bytes");
    // Every 64th append starts one unless one is still running: some must have completed.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while store.background_checkpoints() == 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(store.background_checkpoints() > 0, "no background checkpoint completed");
}
