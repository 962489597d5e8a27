//! Collations through the official Rust driver: commands compare strings under theirs (or their
//! collection's default), indexes keep their own and are used only by queries under it, and
//! invalid specs fail with mongod's codes.
#![expect(clippy::unwrap_used, reason = "tests")]

mod common;

use common::{code, db, fail, start};
use mongodb::Database;
use mongodb::bson::{Bson, Document, doc};

fn batch(r: &Document) -> Vec<Document> {
    r.get_document("cursor")
        .unwrap()
        .get_array("firstBatch")
        .unwrap()
        .iter()
        .map(|b| b.as_document().unwrap().clone())
        .collect()
}

fn ids(r: &Document) -> Vec<i32> {
    batch(r).iter().map(|d| d.get_i32("_id").unwrap()).collect()
}

/// The plan summary explain reports for `cmd`.
async fn plan(d: &Database, cmd: Document) -> String {
    let r = d.run_command(doc! {"explain": cmd}).await.unwrap();
    let w = r.get_document("queryPlanner").unwrap().get_document("winningPlan").unwrap();
    let w = w.get_document("inputStage").unwrap_or(w);
    w.get_str("planSummary").unwrap().to_owned()
}

async fn seed(d: &Database, coll: &str) {
    let docs: Vec<Document> = ["abc", "ABC", "Abd", "b", "ábc"]
        .iter()
        .enumerate()
        .map(|(i, s)| doc! {"_id": i as i32 + 1, "name": *s, "n": i as i32})
        .collect();
    d.collection::<Document>(coll).insert_many(docs).await.unwrap();
}

fn ci() -> Document {
    doc! {"locale": "en_US", "strength": 2}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_compare_under_their_collation() {
    let n = start().await;
    let c = n.root("coll").await;
    let d = db(&c, "coll_cmds").await;
    seed(&d, "c").await;
    // Strength 2: case-insensitive, accent-sensitive; regexes are not collated.
    let r = d.run_command(doc! {"find": "c", "filter": {"name": "abc"}, "sort": {"_id": 1}}).await.unwrap();
    assert_eq!(ids(&r), [1]);
    let find = |filter: Document| doc! {"find": "c", "filter": filter, "sort": {"_id": 1}, "collation": ci()};
    assert_eq!(ids(&d.run_command(find(doc! {"name": "abc"})).await.unwrap()), [1, 2]);
    assert_eq!(ids(&d.run_command(find(doc! {"name": {"$in": ["ABD", "x"]}})).await.unwrap()), [3]);
    assert_eq!(ids(&d.run_command(find(doc! {"name": {"$ne": "aBc"}})).await.unwrap()), [3, 4, 5]);
    assert_eq!(ids(&d.run_command(find(doc! {"name": {"$gt": "ABC", "$lt": "B"}})).await.unwrap()), [3, 5]);
    assert_eq!(ids(&d.run_command(find(doc! {"name": {"$regex": "^a"}})).await.unwrap()), [1]);
    // count, distinct (equal values are one), $group keys, expressions, $sort.
    let r = d.run_command(doc! {"count": "c", "query": {"name": "ABC"}, "collation": ci()}).await.unwrap();
    assert_eq!(r.get_i32("n").unwrap(), 2);
    let r = d.run_command(doc! {"distinct": "c", "key": "name", "collation": ci()}).await.unwrap();
    assert_eq!(r.get_array("values").unwrap().len(), 4, "{r}");
    let r = d.run_command(doc! {"distinct": "c", "key": "name"}).await.unwrap();
    assert_eq!(r.get_array("values").unwrap().len(), 5);
    let r = d
        .run_command(doc! {
            "aggregate": "c",
            "pipeline": [
                {"$match": {"name": {"$in": ["abc", "abd"]}}},
                {"$group": {"_id": "$name", "k": {"$sum": 1}}},
                {"$sort": {"k": -1}},
            ],
            "cursor": {},
            "collation": ci(),
        })
        .await
        .unwrap();
    let groups: Vec<i32> = batch(&r).iter().map(|g| g.get_i32("k").unwrap()).collect();
    assert_eq!(groups, [2, 1], "{r}");
    let r = d
        .run_command(doc! {
            "aggregate": "c",
            "pipeline": [{"$match": {"$expr": {"$eq": ["$name", "ABC"]}}}, {"$sort": {"_id": 1}}],
            "cursor": {},
            "collation": ci(),
        })
        .await
        .unwrap();
    assert_eq!(ids(&r), [1, 2]);
    // Writes: per statement collations, findAndModify.
    let r = d
        .run_command(doc! {"update": "c", "updates": [
            {"q": {"name": "ABC"}, "u": {"$set": {"hit": 1}}, "multi": true, "collation": ci()},
            {"q": {"name": "ABD"}, "u": {"$set": {"hit": 2}}, "multi": true},
        ]})
        .await
        .unwrap();
    assert_eq!(r.get_i32("nModified").unwrap(), 2, "{r}");
    let r = d
        .run_command(doc! {
            "findAndModify": "c", "query": {"name": "ABD"}, "update": {"$set": {"hit": 3}}, "collation": ci(),
        })
        .await
        .unwrap();
    assert_eq!(r.get_document("value").unwrap().get_i32("_id").unwrap(), 3);
    let r = d
        .run_command(doc! {"delete": "c", "deletes": [{"q": {"name": "abc"}, "limit": 0, "collation": ci()}]})
        .await
        .unwrap();
    assert_eq!(r.get_i32("n").unwrap(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn numeric_ordering_sorts_and_streams() {
    let n = start().await;
    let c = n.root("coll").await;
    let d = db(&c, "coll_num").await;
    let docs: Vec<Document> = (0..300).map(|i| doc! {"_id": i, "s": (299 - i).to_string()}).collect();
    d.collection::<Document>("c").insert_many(docs).await.unwrap();
    let num = doc! {"locale": "en", "numericOrdering": true};
    let r = d
        .run_command(doc! {"find": "c", "sort": {"s": 1}, "limit": 3, "collation": num.clone()})
        .await
        .unwrap();
    let s: Vec<String> = batch(&r).iter().map(|d| d.get_str("s").unwrap().to_owned()).collect();
    assert_eq!(s, ["0", "1", "2"]);
    let r = d.run_command(doc! {"find": "c", "sort": {"s": 1}, "limit": 3}).await.unwrap();
    let s: Vec<String> = batch(&r).iter().map(|d| d.get_str("s").unwrap().to_owned()).collect();
    assert_eq!(s, ["0", "1", "10"]);
    // A streamed find's getMores compare under the cursor's collation.
    let r = d
        .run_command(doc! {"find": "c", "filter": {"s": {"$gte": "250"}}, "batchSize": 10, "collation": num})
        .await
        .unwrap();
    let mut got = batch(&r).len();
    let id = r.get_document("cursor").unwrap().get_i64("id").unwrap();
    assert_ne!(id, 0);
    let more = d.run_command(doc! {"getMore": id, "collection": "c"}).await.unwrap();
    got += more.get_document("cursor").unwrap().get_array("nextBatch").unwrap().len();
    assert_eq!(got, 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collection_default_collation_is_inherited() {
    let n = start().await;
    let c = n.root("coll").await;
    let d = db(&c, "coll_default").await;
    d.run_command(doc! {"create": "c", "collation": {"locale": "fr", "strength": 1}}).await.unwrap();
    seed(&d, "c").await;
    let r = d.run_command(doc! {"listCollections": 1, "filter": {"name": "c"}}).await.unwrap();
    let opts = batch(&r)[0].get_document("options").unwrap().clone();
    assert_eq!(
        opts.get_document("collation").unwrap(),
        &doc! {
            "locale": "fr", "caseLevel": false, "caseFirst": "off", "strength": 1,
            "numericOrdering": false, "alternate": "non-ignorable", "maxVariable": "punct",
            "normalization": false, "backwards": false, "version": "57.1",
        }
    );
    // Commands without a collation use it; the simple collation overrides it.
    let r = d.run_command(doc! {"find": "c", "filter": {"name": "abc"}, "sort": {"_id": 1}}).await.unwrap();
    assert_eq!(ids(&r), [1, 2, 5]);
    let r = d
        .run_command(doc! {"find": "c", "filter": {"name": "abc"}, "collation": {"locale": "simple"}})
        .await
        .unwrap();
    assert_eq!(ids(&r), [1]);
    let r = d.run_command(doc! {"count": "c", "query": {"name": "ABC"}}).await.unwrap();
    assert_eq!(r.get_i32("n").unwrap(), 3);
    // Indexes created without one inherit it; `{locale: "simple"}` makes a binary index.
    d.run_command(doc! {"createIndexes": "c", "indexes": [
        {"key": {"name": 1}, "name": "inherits"},
        {"key": {"name": -1}, "name": "binary", "collation": {"locale": "simple"}},
    ]})
    .await
    .unwrap();
    let r = d.run_command(doc! {"listIndexes": "c"}).await.unwrap();
    let ixs = batch(&r);
    assert_eq!(ixs[0].get_document("collation").unwrap().get_str("locale").unwrap(), "fr");
    assert_eq!(ixs[1].get_document("collation").unwrap().get_i32("strength").unwrap(), 1);
    assert!(!ixs[2].contains_key("collation"), "{}", ixs[2]);
    assert_eq!(plan(&d, doc! {"find": "c", "filter": {"name": "ABC"}}).await, "IXSCAN { name: 1 }");
    let simple = doc! {"find": "c", "filter": {"name": "ABC"}, "collation": {"locale": "simple"}};
    assert_eq!(plan(&d, simple.clone()).await, "IXSCAN { name: -1 }");
    assert_eq!(ids(&d.run_command(simple).await.unwrap()), [2]);
    // The `_id` index has the collection's collation: `_id`s equal under it clash.
    let k = d.collection::<Document>("c");
    k.insert_one(doc! {"_id": "key"}).await.unwrap();
    assert_eq!(code(&k.insert_one(doc! {"_id": "KÉY"}).await.unwrap_err()), Some(11000));
    k.delete_one(doc! {"_id": "KEY"}).await.unwrap();
    k.insert_one(doc! {"_id": "KÉY"}).await.unwrap();
    // $out keeps the target's default and its binary index binary.
    d.run_command(
        doc! {"aggregate": "c", "pipeline": [{"$match": {"n": {"$gte": 0}}}, {"$out": "c"}], "cursor": {}},
    )
    .await
    .unwrap();
    let ixs = batch(&d.run_command(doc! {"listIndexes": "c"}).await.unwrap());
    assert_eq!(ixs.len(), 3);
    assert!(ixs[1].contains_key("collation") && !ixs[2].contains_key("collation"), "{ixs:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collated_indexes_serve_only_their_collation() {
    let n = start().await;
    let c = n.root("coll").await;
    let d = db(&c, "coll_index").await;
    seed(&d, "c").await;
    d.run_command(doc! {"createIndexes": "c", "indexes": [
        {"key": {"name": 1}, "name": "name_ci", "collation": ci()},
        {"key": {"n": 1}, "name": "n_ci", "collation": ci()},
    ]})
    .await
    .unwrap();
    let listed = batch(&d.run_command(doc! {"listIndexes": "c"}).await.unwrap());
    assert_eq!(listed[1].get_document("collation").unwrap().get_str("locale").unwrap(), "en_US");
    assert_eq!(listed[1].get_document("collation").unwrap().get_str("version").unwrap(), "57.1");
    // Same collation: the index bounds the strings (as collation keys) and gives the order.
    let q = doc! {"find": "c", "filter": {"name": "abc"}, "sort": {"_id": 1}, "collation": ci()};
    assert_eq!(plan(&d, q.clone()).await, "IXSCAN { name: 1 }");
    assert_eq!(ids(&d.run_command(q).await.unwrap()), [1, 2]);
    let q = doc! {"find": "c", "filter": {"name": {"$gte": "ABD"}}, "sort": {"name": 1}, "collation": ci()};
    assert_eq!(ids(&d.run_command(q).await.unwrap()), [3, 4]);
    // No or another collation: no string bounds from it (a scan finds the right documents).
    let q = doc! {"find": "c", "filter": {"name": "abc"}};
    assert_eq!(plan(&d, q.clone()).await, "COLLSCAN");
    assert_eq!(ids(&d.run_command(q).await.unwrap()), [1]);
    let primary = doc! {"locale": "en_US", "strength": 1};
    let q = doc! {"find": "c", "filter": {"name": "abc"}, "sort": {"_id": 1}, "collation": primary};
    assert_eq!(plan(&d, q.clone()).await, "COLLSCAN");
    assert_eq!(ids(&d.run_command(q).await.unwrap()), [1, 2, 5]);
    // A hinted index under another collation is scanned whole, never bounded by strings.
    let q = doc! {"find": "c", "filter": {"name": "abc"}, "hint": "name_ci"};
    assert_eq!(ids(&d.run_command(q).await.unwrap()), [1]);
    // Numbers compare alike under every collation: the collated index still bounds them.
    assert_eq!(plan(&d, doc! {"find": "c", "filter": {"n": 3}}).await, "IXSCAN { n: 1 }");
    // min/max compare in the hinted index's order: its collation must be the query's.
    let mm = |coll: Document| {
        doc! {"find": "c", "hint": {"name": 1}, "min": {"name": "abd"}, "sort": {"_id": 1}, "collation": coll}
    };
    assert_eq!(ids(&d.run_command(mm(ci())).await.unwrap()), [3, 4]);
    assert_eq!(fail(&d, mm(doc! {"locale": "simple"})).await, 51174);
    // Two indexes on the same keys with different collations (and names) are allowed; the same
    // keys and collation under another name are not.
    d.run_command(doc! {"createIndexes": "c", "indexes": [{"key": {"name": 1}, "name": "name_bin"}]})
        .await
        .unwrap();
    let q = doc! {"find": "c", "filter": {"name": "ABC"}};
    assert_eq!(plan(&d, q).await, "IXSCAN { name: 1 }");
    assert_eq!(
        fail(
            &d,
            doc! {"createIndexes": "c", "indexes": [{"key": {"name": 1}, "name": "dup", "collation": ci()}]}
        )
        .await,
        85
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unique_indexes_are_unique_under_their_collation() {
    let n = start().await;
    let c = n.root("coll").await;
    let d = db(&c, "coll_unique").await;
    d.run_command(doc! {"createIndexes": "u", "indexes": [
        {"key": {"name": 1}, "name": "name_1", "unique": true, "collation": ci()},
    ]})
    .await
    .unwrap();
    let u = d.collection::<Document>("u");
    u.insert_one(doc! {"_id": 1, "name": "abc"}).await.unwrap();
    let e = u.insert_one(doc! {"_id": 2, "name": "ABC"}).await.unwrap_err();
    assert_eq!(code(&e), Some(11000));
    u.insert_one(doc! {"_id": 3, "name": "ábc"}).await.unwrap();
    // Building a unique index over values equal under the collation fails.
    let v = d.collection::<Document>("v");
    v.insert_many(vec![doc! {"_id": 1, "s": "x"}, doc! {"_id": 2, "s": "X"}]).await.unwrap();
    let cmd = doc! {"createIndexes": "v", "indexes": [{"key": {"s": 1}, "name": "s_1", "unique": true, "collation": ci()}]};
    assert_eq!(fail(&d, cmd).await, 11000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_specs_fail_with_mongods_codes() {
    let n = start().await;
    let c = n.root("coll").await;
    let d = db(&c, "coll_invalid").await;
    let find = |coll: Bson| doc! {"find": "c", "collation": coll};
    for (spec, want) in [
        (Bson::Document(doc! {"locale": "en", "bogus": 1}), 40415),
        (Bson::Document(doc! {"strength": 2}), 40414),
        (Bson::Document(doc! {"locale": "en", "strength": "2"}), 14),
        (Bson::Document(doc! {"locale": "en", "caseLevel": 1}), 14),
        (Bson::Document(doc! {"locale": "en", "strength": 9}), 51024),
        (Bson::Document(doc! {"locale": "en", "caseFirst": "both"}), 2),
        (Bson::Document(doc! {"locale": "not_a_locale"}), 2),
        (Bson::Document(doc! {"locale": "en", "version": "1"}), 2),
        (Bson::Document(doc! {"locale": "en", "backwards": true}), 115),
        (Bson::String("en".into()), 14),
    ] {
        assert_eq!(fail(&d, find(spec.clone())).await, want, "{spec}");
    }
    assert_eq!(fail(&d, doc! {"create": "x", "collation": {"locale": "zz"}}).await, 2);
    let bad_ix =
        doc! {"createIndexes": "c", "indexes": [{"key": {"a": 1}, "name": "a", "collation": {"locale": 1}}]};
    assert_eq!(fail(&d, bad_ix).await, 14);
    assert!(d.list_collection_names().await.unwrap().is_empty());
}
