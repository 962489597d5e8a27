//! Collection validators (`create`/`collMod` with `validator`, `validationLevel`,
//! `validationAction`) as mongod 7.0 enforces them, through the official Rust driver: every write
//! path, the detailed `errInfo`, warn mode, the moderate level, `bypassDocumentValidation` and
//! its privilege, `collMod` and its persistence, `listCollections`, and the refusals.
#![allow(clippy::unwrap_used)]

mod common;

use common::{all, code, db, fail, start, start_with};
use mongodb::bson::{Bson, Document, doc};
use mongodb::error::{ErrorKind, WriteFailure};
use mongodb::{Client, Database};

/// The first write error of a raw write command's reply (the command itself succeeds).
fn write_error(reply: &Document) -> Document {
    let errs = reply.get_array("writeErrors").unwrap_or_else(|_| panic!("no writeErrors in {reply}"));
    errs[0].as_document().unwrap().clone()
}

async fn ids(d: &Database, coll: &str) -> Vec<i32> {
    all(d, coll).await.iter().map(|d| d.get_i32("_id").unwrap()).collect()
}

async fn options_of(d: &Database, coll: &str) -> Document {
    let r = d.run_command(doc! {"listCollections": 1, "filter": {"name": coll}}).await.unwrap();
    let batch = r.get_document("cursor").unwrap().get_array("firstBatch").unwrap();
    batch[0].as_document().unwrap().get_document("options").unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_write_path_is_validated() {
    let n = start().await;
    let c = n.root("paths").await;
    let d = db(&c, "vpaths").await;
    d.run_command(doc! {"create": "c", "validator": {"a": {"$gte": 0}}}).await.unwrap();
    let coll = d.collection::<Document>("c");
    coll.insert_one(doc! {"_id": 1, "a": 1}).await.unwrap();
    // insert (one, and an ordered batch stopping at the bad document)
    let e = coll.insert_one(doc! {"_id": 2, "a": -1}).await.unwrap_err();
    assert_eq!(code(&e), Some(121), "{e}");
    let r = d
        .run_command(doc! {"insert": "c", "documents": [{"_id": 3, "a": 3}, {"_id": 4}, {"_id": 5, "a": 5}]})
        .await
        .unwrap();
    let w = write_error(&r);
    assert_eq!((w.get_i32("index").unwrap(), w.get_i32("code").unwrap()), (1, 121));
    assert_eq!(w.get_str("codeName").unwrap(), "DocumentValidationFailure");
    assert_eq!(w.get_str("errmsg").unwrap(), "Document failed validation");
    assert_eq!(r.get_i32("n").unwrap(), 1);
    // update (the post-image), replacement, upsert
    let e = coll.update_one(doc! {"_id": 1}, doc! {"$inc": {"a": -5}}).await.unwrap_err();
    assert_eq!(code(&e), Some(121), "{e}");
    let e = coll.replace_one(doc! {"_id": 1}, doc! {"b": 1}).await.unwrap_err();
    assert_eq!(code(&e), Some(121), "{e}");
    let e = coll.update_one(doc! {"_id": 9}, doc! {"$set": {"a": -9}}).upsert(true).await.unwrap_err();
    assert_eq!(code(&e), Some(121), "{e}");
    // findAndModify: a command error carrying errInfo
    let e = coll.find_one_and_update(doc! {"_id": 1}, doc! {"$set": {"a": -2}}).await.unwrap_err();
    assert_eq!(code(&e), Some(121), "{e}");
    let r =
        d.run_command(doc! {"findAndModify": "c", "query": {"_id": 1}, "update": {"$set": {"a": -2}}}).await;
    match &*r.unwrap_err().kind {
        ErrorKind::Command(ce) => assert_eq!(ce.code, 121),
        other => panic!("{other:?}"),
    }
    let raw =
        d.run_command(doc! {"findAndModify": "c", "query": {}, "update": {"a": "x"}, "upsert": true}).await;
    assert_eq!(code(&raw.unwrap_err()), Some(121));
    // bulk writes: the failing operation's index
    let bulk = d
        .run_command(doc! {"update": "c", "updates": [
            {"q": {"_id": 1}, "u": {"$set": {"z": 1}}},
            {"q": {"_id": 1}, "u": {"$set": {"a": -1}}},
        ]})
        .await
        .unwrap();
    assert_eq!(write_error(&bulk).get_i32("index").unwrap(), 1);
    assert_eq!(bulk.get_i32("nModified").unwrap(), 1);
    let r = coll.insert_many(vec![doc! {"_id": 21, "a": 1}, doc! {"_id": 22, "a": -1}]).await;
    match &*r.unwrap_err().kind {
        ErrorKind::InsertMany(m) => assert_eq!(m.write_errors.as_ref().unwrap()[0].index, 1),
        other => panic!("{other:?}"),
    }
    // deletes are not validated
    coll.delete_one(doc! {"_id": 21}).await.unwrap();
    assert_eq!(ids(&d, "c").await, vec![1, 3]);
    // $out into, and $merge into, a validated collection
    let src = d.collection::<Document>("src");
    src.insert_many(vec![doc! {"_id": 100, "a": -1}]).await.unwrap();
    let e = src.aggregate(vec![doc! {"$out": "c"}]).await.unwrap_err();
    assert_eq!(code(&e), Some(121), "{e}");
    assert_eq!(ids(&d, "c").await, vec![1, 3], "$out failed, the target is untouched");
    let e = src.aggregate(vec![doc! {"$merge": {"into": "c"}}]).await.unwrap_err();
    assert_eq!(code(&e), Some(121), "{e}");
    assert_eq!(ids(&d, "c").await, vec![1, 3]);
    n.handle.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn err_info_has_mongods_shape() {
    let n = start().await;
    let c = n.root("errinfo").await;
    let d = db(&c, "verrinfo").await;
    d.run_command(doc! {"create": "c", "validator": {"x": {"$type": "string"}}}).await.unwrap();
    let r = d.run_command(doc! {"insert": "c", "documents": [{"_id": 1, "x": 1}]}).await.unwrap();
    let w = write_error(&r);
    let expected = doc! {
        "failingDocumentId": 1,
        "details": {
            "operatorName": "$type",
            "specifiedAs": {"x": {"$type": "string"}},
            "reason": "type did not match",
            "consideredValue": 1,
            "consideredType": "int",
        },
    };
    assert_eq!(w.get_document("errInfo").unwrap(), &expected);
    // Several clauses: the implicit $and lists those that failed, by index.
    d.run_command(doc! {"create": "m", "validator": {"a": {"$gt": 5}, "b": {"$exists": true}, "c": 1}})
        .await
        .unwrap();
    let r =
        d.run_command(doc! {"insert": "m", "documents": [{"_id": "k", "a": [1, 2], "c": 1}]}).await.unwrap();
    let details = write_error(&r).get_document("errInfo").unwrap().clone();
    assert_eq!(details.get_str("failingDocumentId").unwrap(), "k");
    let expected = doc! {
        "operatorName": "$and",
        "clausesNotSatisfied": [
            {"index": 0_i64, "details": {
                "operatorName": "$gt",
                "specifiedAs": {"a": {"$gt": 5}},
                "reason": "comparison failed",
                "consideredValues": [1, 2, [1, 2]],
            }},
            {"index": 1_i64, "details": {
                "operatorName": "$exists",
                "specifiedAs": {"b": {"$exists": true}},
                "reason": "path does not exist",
            }},
        ],
    };
    assert_eq!(details.get_document("details").unwrap(), &expected);
    // findAndModify's command error carries it too.
    let e = d
        .run_command(doc! {"findAndModify": "c", "query": {}, "update": {"x": 2}, "upsert": true})
        .await
        .unwrap_err();
    let ErrorKind::Command(ce) = &*e.kind else { panic!("{e}") };
    assert_eq!(ce.code, 121);
    n.handle.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warn_action_and_moderate_and_off_levels() {
    let n = start().await;
    let c = n.root("levels").await;
    let d = db(&c, "vlevels").await;
    // warn: the write succeeds
    d.run_command(doc! {"create": "w", "validator": {"a": {"$exists": true}}, "validationAction": "warn"})
        .await
        .unwrap();
    d.collection::<Document>("w").insert_one(doc! {"_id": 1}).await.unwrap();
    assert_eq!(ids(&d, "w").await, vec![1]);
    // moderate: documents invalid before the validator existed may be updated, valid ones not broken
    let m = d.collection::<Document>("m");
    m.insert_many(vec![doc! {"_id": 1}, doc! {"_id": 2, "a": 1}]).await.unwrap();
    d.run_command(
        doc! {"collMod": "m", "validator": {"a": {"$exists": true}}, "validationLevel": "moderate"},
    )
    .await
    .unwrap();
    m.update_one(doc! {"_id": 1}, doc! {"$set": {"b": 1}}).await.unwrap();
    let e = m.update_one(doc! {"_id": 2}, doc! {"$unset": {"a": 1}}).await.unwrap_err();
    assert_eq!(code(&e), Some(121), "{e}");
    let e = m.insert_one(doc! {"_id": 3}).await.unwrap_err();
    assert_eq!(code(&e), Some(121), "moderate still checks inserts: {e}");
    // off: nothing is checked
    d.run_command(doc! {"collMod": "m", "validationLevel": "off"}).await.unwrap();
    m.insert_one(doc! {"_id": 3}).await.unwrap();
    let o = options_of(&d, "m").await;
    assert_eq!(o, doc! {"validator": {"a": {"$exists": true}}, "validationLevel": "off"});
    n.handle.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bypass_document_validation_and_its_privilege() {
    let n = start().await;
    let root = n.root("bypass").await;
    let d = db(&root, "vbypass").await;
    d.run_command(doc! {"create": "c", "validator": {"a": {"$exists": true}}}).await.unwrap();
    let coll = d.collection::<Document>("c");
    coll.insert_one(doc! {"_id": 1}).bypass_document_validation(true).await.unwrap();
    coll.update_one(doc! {"_id": 1}, doc! {"$set": {"b": 1}}).bypass_document_validation(true).await.unwrap();
    coll.find_one_and_replace(doc! {"_id": 1}, doc! {"c": 1}).bypass_document_validation(true).await.unwrap();
    let src = d.collection::<Document>("src");
    src.insert_one(doc! {"_id": 2}).await.unwrap();
    src.aggregate(vec![doc! {"$merge": {"into": "c"}}]).bypass_document_validation(true).await.unwrap();
    assert_eq!(ids(&d, "c").await, vec![1, 2]);
    // `bypassDocumentValidation: false` validates.
    let e = coll.insert_one(doc! {"_id": 3}).bypass_document_validation(false).await.unwrap_err();
    assert_eq!(code(&e), Some(121));
    // readWrite has no bypassDocumentValidation (nor collMod); dbAdmin has both.
    d.run_command(doc! {"createUser": "rw", "pwd": "pw-123", "roles": ["readWrite"]}).await.unwrap();
    d.run_command(doc! {"createUser": "adm", "pwd": "pw-123", "roles": ["readWrite", "dbAdmin"]})
        .await
        .unwrap();
    let as_user = |u: &str| {
        format!(
            "mongodb://{u}:pw-123@{}/?authSource=vbypass&serverSelectionTimeoutMS=5000",
            n.handle.local_addr()
        )
    };
    let rw = Client::with_uri_str(as_user("rw")).await.unwrap().database("vbypass");
    let cmd = doc! {"insert": "c", "documents": [{"_id": 4}], "bypassDocumentValidation": true};
    assert_eq!(fail(&rw, cmd.clone()).await, 13);
    assert_eq!(fail(&rw, doc! {"collMod": "c", "validationLevel": "off"}).await, 13);
    let r = rw.run_command(doc! {"insert": "c", "documents": [{"_id": 4}]}).await.unwrap();
    assert_eq!(write_error(&r).get_i32("code").unwrap(), 121);
    let adm = Client::with_uri_str(as_user("adm")).await.unwrap().database("vbypass");
    adm.run_command(cmd).await.unwrap();
    adm.run_command(doc! {"collMod": "c", "validationAction": "warn"}).await.unwrap();
    assert_eq!(ids(&d, "c").await, vec![1, 2, 4]);
    n.handle.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coll_mod_changes_persist_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let n = start_with(dir, true).await;
    let c = n.root("persist").await;
    let d = db(&c, "vpersist").await;
    d.collection::<Document>("c").insert_one(doc! {"_id": 1, "a": 1}).await.unwrap();
    assert_eq!(options_of(&d, "c").await, doc! {});
    d.run_command(doc! {"collMod": "c", "validator": {"a": {"$type": "int"}}}).await.unwrap();
    d.run_command(doc! {"collMod": "c", "validationAction": "error", "validationLevel": "strict"})
        .await
        .unwrap();
    let expected =
        doc! {"validator": {"a": {"$type": "int"}}, "validationAction": "error", "validationLevel": "strict"};
    assert_eq!(options_of(&d, "c").await, expected);
    let common::TestNode { handle, dir } = n;
    handle.shutdown().await.unwrap();
    let n = start_with(dir, true).await;
    let c = n.root("persist2").await;
    let d = c.database("vpersist");
    assert_eq!(options_of(&d, "c").await, expected);
    let e = d.collection::<Document>("c").insert_one(doc! {"_id": 2, "a": "s"}).await.unwrap_err();
    assert_eq!(code(&e), Some(121), "{e}");
    // `validator: {}` removes it.
    d.run_command(doc! {"collMod": "c", "validator": {}}).await.unwrap();
    d.collection::<Document>("c").insert_one(doc! {"_id": 2, "a": "s"}).await.unwrap();
    assert!(!options_of(&d, "c").await.contains_key("validator"));
    n.handle.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_as_mongod_refuses_them() {
    let n = start().await;
    let c = n.root("refuse").await;
    let d = db(&c, "vrefuse").await;
    // $jsonSchema: refused, naming it, never accepted and ignored.
    let e = d
        .run_command(doc! {"create": "j", "validator": {"$jsonSchema": {"required": ["a"]}}})
        .await
        .unwrap_err();
    assert_eq!(code(&e), Some(115));
    assert!(e.to_string().contains("$jsonSchema"), "{e}");
    for v in [
        doc! {"$where": "this.a == this.b"},
        doc! {"$text": {"$search": "bob"}},
        doc! {"$near": {"place": "holder"}},
        doc! {"$geoNear": {"place": "holder"}},
        doc! {"$nearSphere": {"place": "holder"}},
    ] {
        assert_eq!(fail(&d, doc! {"create": "x", "validator": v.clone()}).await, 224, "{v}");
    }
    assert_eq!(
        fail(&d, doc! {"create": "x", "validator": {"$expr": {"$eq": ["$a", "$$unbound"]}}}).await,
        17276
    );
    assert_eq!(fail(&d, doc! {"create": "x", "validator": 7}).await, 14);
    assert_eq!(fail(&d, doc! {"create": "x", "validator": {"$isolated": 1}}).await, 2);
    assert_eq!(fail(&d, doc! {"create": "x", "validationLevel": "lax"}).await, 2);
    let admin = c.database("admin");
    assert_eq!(fail(&admin, doc! {"create": "x", "validator": {"a": {"$exists": true}}}).await, 72);
    let names = d.list_collection_names().await.unwrap();
    assert!(names.is_empty(), "{names:?}");
    // collMod: a missing collection, the options it does not implement, unknown fields.
    assert_eq!(fail(&d, doc! {"collMod": "nope", "validator": {"a": 1}}).await, 26);
    d.run_command(doc! {"create": "c", "validator": {"$expr": {"$lt": ["$t", "$$NOW"]}}}).await.unwrap();
    assert_eq!(fail(&d, doc! {"collMod": "c", "index": {"name": "_id_", "hidden": true}}).await, 115);
    assert_eq!(fail(&d, doc! {"collMod": "c", "expireAfterSeconds": 5}).await, 115);
    assert_eq!(fail(&d, doc! {"collMod": "c", "bogus": 1}).await, 40415);
    assert_eq!(fail(&d, doc! {"collMod": "c", "validator": {"$jsonSchema": {}}}).await, 115);
    assert_eq!(fail(&d, doc! {"collMod": "c", "validator": {"$where": "1"}}).await, 224);
    // The failed collMods changed nothing.
    let o = options_of(&d, "c").await;
    assert_eq!(o.get_document("validator").unwrap(), &doc! {"$expr": {"$lt": ["$t", "$$NOW"]}});
    let e = d.collection::<Document>("c").insert_one(doc! {"t": Bson::Null}).await;
    assert!(e.is_ok(), "null < NOW holds: {e:?}");
    n.handle.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_errors_name_the_failure_for_the_driver() {
    let n = start().await;
    let c = n.root("drv").await;
    let d = db(&c, "vdrv").await;
    d.run_command(doc! {"create": "c", "validator": {"x": {"$type": "string"}}}).await.unwrap();
    let e = d.collection::<Document>("c").insert_one(doc! {"x": 1}).await.unwrap_err();
    let ErrorKind::Write(WriteFailure::WriteError(w)) = &*e.kind else { panic!("{e}") };
    assert_eq!(w.code, 121);
    assert!(w.details.as_ref().is_some_and(|d| d.contains_key("details")), "{w:?}");
    n.handle.shutdown().await.unwrap();
}
