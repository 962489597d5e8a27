//! CRUD semantics, indexes and the planner, interruption and lock yielding.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bson::{Bson, Document, doc};
use docplane_engine::{DeleteStatement, Engine, FindAndModify, FindQuery, UpdateStatement};
use docplane_query::{
    CommandError, Filter, Interrupt, NeverInterrupt, Pipeline, Projection, Result, SortSpec, Update,
};

fn f(d: Document) -> Filter {
    Filter::parse(&d).unwrap()
}

fn find(e: &Engine, filter: Document) -> Vec<Document> {
    e.find("db", "c", &FindQuery::new(f(filter)), &NeverInterrupt).unwrap().docs
}

fn upd(filter: Document, update: Document, upsert: bool, multi: bool) -> UpdateStatement {
    UpdateStatement {
        filter: f(filter),
        update: Update::parse(&update, None).unwrap(),
        upsert,
        multi,
        hint: None,
        collation: Default::default(),
    }
}

fn seeded(n: i32) -> Engine {
    let e = Engine::in_memory();
    let docs: Vec<Document> =
        (0..n).map(|i| doc! {"_id": i, "a": i % 10, "b": i, "tags": [i % 3, 100 + i % 2]}).collect();
    assert_eq!(e.insert("db", "c", docs, true, &NeverInterrupt).n, n as u64);
    e
}

#[test]
fn find_with_sort_skip_limit_projection() {
    let e = seeded(100);
    let q = FindQuery {
        filter: f(doc! {"a": 3}),
        projection: Some(Projection::parse(&doc! {"b": 1, "_id": 0}).unwrap()),
        sort: Some(SortSpec::parse(&doc! {"b": -1}).unwrap()),
        skip: 1,
        limit: 3,
        hint: None,
    };
    let out = e.find("db", "c", &q, &NeverInterrupt).unwrap();
    assert_eq!(out.docs, vec![doc! {"b": 83}, doc! {"b": 73}, doc! {"b": 63}]);
    assert_eq!(out.plan_summary, "COLLSCAN");
    assert_eq!(out.docs_examined, 100);
}

#[test]
fn updates_upserts_and_multi() {
    let e = seeded(20);
    let out = e.update(
        "db",
        "c",
        &[upd(doc! {"a": 1}, doc! {"$set": {"x": 1}}, false, true)],
        true,
        &NeverInterrupt,
    );
    assert_eq!((out.n, out.n_modified), (2, 2));
    // setting the same value again matches but does not modify
    let out = e.update(
        "db",
        "c",
        &[upd(doc! {"a": 1}, doc! {"$set": {"x": 1}}, false, true)],
        true,
        &NeverInterrupt,
    );
    assert_eq!((out.n, out.n_modified), (2, 0));
    let out = e.update(
        "db",
        "c",
        &[upd(doc! {"a": 2}, doc! {"$inc": {"b": 1000}}, false, false)],
        true,
        &NeverInterrupt,
    );
    assert_eq!(out.n, 1);
    assert_eq!(find(&e, doc! {"b": {"$gte": 1000}}).len(), 1);
    // upsert with equality seed
    let out = e.update(
        "db",
        "c",
        &[upd(doc! {"k": "new"}, doc! {"$set": {"v": 5}}, true, false)],
        true,
        &NeverInterrupt,
    );
    assert_eq!(out.n, 1);
    assert_eq!(out.upserted.len(), 1);
    let got = find(&e, doc! {"k": "new"});
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].get_i32("v").unwrap(), 5);
    assert_eq!(got[0].get("_id"), Some(&out.upserted[0].1));
    // replacement keeps _id
    e.update("db", "c", &[upd(doc! {"_id": 5}, doc! {"only": true}, false, false)], true, &NeverInterrupt);
    assert_eq!(find(&e, doc! {"_id": 5}), vec![doc! {"_id": 5, "only": true}]);
    // changing _id is an error
    let out = e.update(
        "db",
        "c",
        &[upd(doc! {"_id": 6}, doc! {"$set": {"_id": 60}}, false, false)],
        true,
        &NeverInterrupt,
    );
    assert_eq!(out.write_errors[0].code, 66);
}

#[test]
fn update_keeps_unique_indexes_and_avoids_halloween() {
    let e = seeded(50);
    e.create_indexes("db", "c", &[doc! {"key": {"b": 1}, "unique": true}], &NeverInterrupt).unwrap();
    // Moving every document forward in the index it is scanned by must touch each once.
    let out = e.update(
        "db",
        "c",
        &[upd(doc! {"b": {"$gte": 0}}, doc! {"$inc": {"b": 1000}}, false, true)],
        true,
        &NeverInterrupt,
    );
    assert_eq!((out.n, out.n_modified), (50, 50));
    assert_eq!(find(&e, doc! {"b": {"$gte": 2000}}).len(), 0);
    let out = e.update(
        "db",
        "c",
        &[upd(doc! {"_id": 1}, doc! {"$set": {"b": 1000}}, false, false)],
        true,
        &NeverInterrupt,
    );
    assert_eq!(out.write_errors[0].code, 11000);
    assert_eq!(
        out.write_errors[0].errmsg,
        "E11000 duplicate key error collection: db.c index: b_1 dup key: { b: 1000 }"
    );
}

#[test]
fn deletes() {
    let e = seeded(30);
    let out = e.delete("db", "c", &[DeleteStatement::new(f(doc! {"a": 1}), true)], true, &NeverInterrupt);
    assert_eq!(out.n, 1);
    let out =
        e.delete("db", "c", &[DeleteStatement::new(f(doc! {"a": {"$lt": 5}}), false)], true, &NeverInterrupt);
    assert_eq!(out.n, 14);
    assert_eq!(find(&e, doc! {}).len(), 15);
}

#[test]
fn find_and_modify_variants() {
    let e = seeded(10);
    let req =
        |remove: bool, update: Option<Document>, new: bool, upsert: bool, filter: Document| FindAndModify {
            filter: f(filter),
            sort: Some(SortSpec::parse(&doc! {"b": -1}).unwrap()),
            remove,
            update: update.map(|u| Update::parse(&u, None).unwrap()),
            new,
            fields: None,
            upsert,
            hint: None,
        };
    let out = e
        .find_and_modify(
            "db",
            "c",
            &req(false, Some(doc! {"$set": {"m": 1}}), true, false, doc! {"a": {"$lt": 5}}),
            &NeverInterrupt,
        )
        .unwrap();
    let v = out.value.unwrap();
    assert_eq!(v.get_i32("_id").unwrap(), 4);
    assert_eq!(v.get_i32("m").unwrap(), 1);
    assert!(out.updated_existing);
    let out = e
        .find_and_modify(
            "db",
            "c",
            &req(false, Some(doc! {"$set": {"m": 2}}), false, false, doc! {"_id": 4}),
            &NeverInterrupt,
        )
        .unwrap();
    assert_eq!(out.value.unwrap().get_i32("m").unwrap(), 1);
    let out = e.find_and_modify("db", "c", &req(true, None, false, false, doc! {}), &NeverInterrupt).unwrap();
    assert_eq!(out.value.unwrap().get_i32("_id").unwrap(), 9);
    assert_eq!(find(&e, doc! {"_id": 9}).len(), 0);
    let out = e
        .find_and_modify(
            "db",
            "c",
            &req(false, Some(doc! {"$set": {"z": 1}}), true, true, doc! {"_id": 77}),
            &NeverInterrupt,
        )
        .unwrap();
    assert_eq!(out.upserted, Some(Bson::Int32(77)));
    assert_eq!(out.value.unwrap(), doc! {"_id": 77, "z": 1});
    let out = e
        .find_and_modify("db", "c", &req(true, None, false, false, doc! {"_id": 1234}), &NeverInterrupt)
        .unwrap();
    assert_eq!(out.value, None);
}

#[test]
fn distinct_count_and_aggregate_with_lookup() {
    let e = seeded(30);
    let vals = e.distinct("db", "c", "tags", &f(doc! {"a": {"$lt": 3}}), &NeverInterrupt).unwrap();
    assert_eq!(
        vals,
        vec![Bson::Int32(0), Bson::Int32(1), Bson::Int32(2), Bson::Int32(100), Bson::Int32(101)]
    );
    assert_eq!(e.count("db", "c", &f(doc! {"a": 1}), 0, 0, &NeverInterrupt).unwrap(), 3);
    e.insert(
        "db",
        "names",
        vec![doc! {"_id": 1, "name": "one"}, doc! {"_id": 2, "name": "two"}],
        true,
        &NeverInterrupt,
    );
    let p = Pipeline::parse(&[
        doc! {"$match": {"_id": {"$in": [1, 2]}}},
        doc! {"$lookup": {"from": "names", "localField": "_id", "foreignField": "_id", "as": "n"}},
        doc! {"$project": {"name": {"$arrayElemAt": ["$n.name", 0]}}},
    ])
    .unwrap();
    let out = e.aggregate("db", "c", &p, &NeverInterrupt).unwrap();
    assert_eq!(out.docs, vec![doc! {"_id": 1, "name": "one"}, doc! {"_id": 2, "name": "two"}]);
    assert_eq!(out.plan_summary, "IXSCAN { _id: 1 }");
}

#[test]
fn planner_picks_ixscan_or_collscan() {
    let e = seeded(1000);
    e.create_indexes(
        "db",
        "c",
        &[doc! {"key": {"a": 1}}, doc! {"key": {"a": 1, "b": -1}}, doc! {"key": {"b": 1}}],
        &NeverInterrupt,
    )
    .unwrap();
    let run = |filter: Document, hint: Option<Bson>| {
        let q = FindQuery { hint, ..FindQuery::new(f(filter)) };
        e.find("db", "c", &q, &NeverInterrupt).unwrap()
    };
    let out = run(doc! {"nope": 1}, None);
    assert_eq!((out.plan_summary.as_str(), out.docs_examined), ("COLLSCAN", 1000));
    let out = run(doc! {"b": 500}, None);
    assert_eq!((out.plan_summary.as_str(), out.docs_examined, out.docs.len()), ("IXSCAN { b: 1 }", 1, 1));
    let out = run(doc! {"a": 7, "b": {"$gte": 900}}, None);
    assert_eq!(out.plan_summary, "IXSCAN { a: 1, b: -1 }");
    assert_eq!((out.docs.len(), out.docs_examined), (10, 10));
    let out = run(doc! {"b": {"$gte": 10, "$lt": 20}}, None);
    assert_eq!(out.plan_summary, "IXSCAN { b: 1 }");
    assert_eq!((out.docs.len(), out.docs_examined, out.keys_examined), (10, 10, 10));
    let out = run(doc! {"b": {"$in": [1, 2, 3]}}, None);
    assert_eq!((out.plan_summary.as_str(), out.docs.len()), ("IXSCAN { b: 1 }", 3));
    let out = run(doc! {"_id": 5}, None);
    assert_eq!(out.plan_summary, "IDHACK");
    let out = run(doc! {"b": 500}, Some(Bson::String("a_1".into())));
    assert_eq!((out.plan_summary.as_str(), out.docs.len(), out.docs_examined), ("IXSCAN { a: 1 }", 1, 1000));
    let q = FindQuery { hint: Some(Bson::String("missing".into())), ..FindQuery::new(f(doc! {})) };
    let err = e.find("db", "c", &q, &NeverInterrupt).unwrap_err();
    assert_eq!(
        (err.code, err.message.as_str()),
        (2, "hint provided does not correspond to an existing index")
    );
    // multikey array elements are indexed one by one
    e.create_indexes("db", "c", &[doc! {"key": {"tags": 1}}], &NeverInterrupt).unwrap();
    let out = run(doc! {"tags": 101}, None);
    assert_eq!((out.plan_summary.as_str(), out.docs.len()), ("IXSCAN { tags: 1 }", 500));
    // an index provides the sort and the limit stops the scan early
    let q = FindQuery {
        sort: Some(SortSpec::parse(&doc! {"b": -1}).unwrap()),
        limit: 2,
        ..FindQuery::new(f(doc! {}))
    };
    let out = e.find("db", "c", &q, &NeverInterrupt).unwrap();
    assert_eq!(out.plan_summary, "IXSCAN { b: 1 }");
    assert_eq!(out.docs.iter().map(|d| d.get_i32("b").unwrap()).collect::<Vec<_>>(), vec![999, 998]);
    assert!(out.docs_examined <= 2);
}

/// Fails at the n-th check; counts yields.
struct StopAfter {
    checks: AtomicU64,
    yields: AtomicU64,
    at: u64,
}

impl Interrupt for StopAfter {
    fn check(&self) -> Result<()> {
        if self.checks.fetch_add(1, Ordering::SeqCst) + 1 >= self.at {
            Err(CommandError::interrupted())
        } else {
            Ok(())
        }
    }
    fn yielded(&self) {
        self.yields.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn interrupt_stops_a_100k_scan_promptly() {
    let e = Engine::in_memory();
    let docs: Vec<Document> = (0..100_000).map(|i| doc! {"_id": i, "v": i}).collect();
    assert_eq!(e.insert("db", "big", docs, false, &NeverInterrupt).n, 100_000);
    let intr = StopAfter { checks: AtomicU64::new(0), yields: AtomicU64::new(0), at: 10 };
    let q = FindQuery::new(f(doc! {"v": -1}));
    let err = e.find("db", "big", &q, &intr).unwrap_err();
    assert_eq!(err.code, 11601);
    assert_eq!(intr.checks.load(Ordering::SeqCst), 10);
    assert_eq!(intr.yields.load(Ordering::SeqCst), 9);

    // Killed from another thread while running.
    struct Flag(Arc<AtomicBool>);
    impl Interrupt for Flag {
        fn check(&self) -> Result<()> {
            if self.0.load(Ordering::SeqCst) { Err(CommandError::interrupted()) } else { Ok(()) }
        }
    }
    let flag = Arc::new(AtomicBool::new(false));
    let killer = {
        let flag = Arc::clone(&flag);
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(5));
            flag.store(true, Ordering::SeqCst);
        })
    };
    let start = Instant::now();
    let mut result = Ok(());
    // Repeat scans so the kill lands mid-scan whatever the machine speed.
    while start.elapsed() < Duration::from_secs(5) {
        if let Err(err) = e.find("db", "big", &q, &Flag(Arc::clone(&flag))) {
            result = Err(err);
            break;
        }
    }
    killer.join().unwrap();
    assert_eq!(result.unwrap_err().code, 11601);
    assert!(start.elapsed() < Duration::from_secs(5));

    // Index builds and aggregation check too.
    let intr = StopAfter { checks: AtomicU64::new(0), yields: AtomicU64::new(0), at: 3 };
    assert_eq!(e.create_indexes("db", "big", &[doc! {"key": {"v": 1}}], &intr).unwrap_err().code, 11601);
    assert_eq!(e.list_indexes("db", "big").unwrap().len(), 1);
    let intr = StopAfter { checks: AtomicU64::new(0), yields: AtomicU64::new(0), at: 3 };
    let p = Pipeline::parse(&[doc! {"$match": {"v": {"$gte": 0}}}]).unwrap();
    assert_eq!(e.aggregate("db", "big", &p, &intr).unwrap_err().code, 11601);
    // Multi-document writes stop and report the interruption.
    let intr = StopAfter { checks: AtomicU64::new(0), yields: AtomicU64::new(0), at: 3 };
    let out = e.update("db", "big", &[upd(doc! {}, doc! {"$set": {"w": 1}}, false, true)], true, &intr);
    assert_eq!(out.interrupted.unwrap().code, 11601);
}

#[test]
fn long_scans_yield_to_writers() {
    let e = Engine::in_memory();
    let docs: Vec<Document> = (0..20_000).map(|i| doc! {"_id": i, "v": i}).collect();
    e.insert("db", "big", docs, false, &NeverInterrupt);
    /// Sleeps at each yield, so the scan takes a while and releases the lock often.
    struct Slow;
    impl Interrupt for Slow {
        fn check(&self) -> Result<()> {
            Ok(())
        }
        fn yielded(&self) {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    let reader = {
        let e = e.clone();
        std::thread::spawn(move || {
            let start = Instant::now();
            let out = e.find("db", "big", &FindQuery::new(f(doc! {"v": {"$gte": 0}})), &Slow).unwrap();
            (out.docs.len(), start.elapsed())
        })
    };
    std::thread::sleep(Duration::from_millis(30));
    let start = Instant::now();
    let out = e.insert("db", "big", vec![doc! {"_id": -1}], true, &NeverInterrupt);
    let write_latency = start.elapsed();
    assert_eq!(out.n, 1);
    let (n, scan_time) = reader.join().unwrap();
    assert!(n >= 20_000);
    assert!(write_latency * 5 < scan_time, "write waited {write_latency:?}, scan took {scan_time:?}");
}

#[test]
fn concurrent_writers_from_many_threads() {
    let e = Engine::in_memory();
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let e = e.clone();
            std::thread::spawn(move || {
                for i in 0..250 {
                    let out = e.insert("db", "c", vec![doc! {"_id": t * 1000 + i}], true, &NeverInterrupt);
                    assert_eq!(out.n, 1);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(e.count("db", "c", &Filter::match_all(), 0, 0, &NeverInterrupt).unwrap(), 1000);
}

#[test]
fn positional_operator_uses_the_query() {
    let e = Engine::in_memory();
    e.insert("db", "c", vec![doc! {"_id": 1, "grades": [80, 85, 90]}], true, &NeverInterrupt);
    let out = e.update(
        "db",
        "c",
        &[upd(doc! {"_id": 1, "grades": 85}, doc! {"$set": {"grades.$": 86}}, false, false)],
        true,
        &NeverInterrupt,
    );
    assert_eq!(out.n_modified, 1, "{:?}", out.write_errors);
    assert_eq!(
        find(&e, doc! {"_id": 1})[0].get_array("grades").unwrap(),
        &vec![Bson::Int32(80), Bson::Int32(86), Bson::Int32(90)]
    );
    let st = UpdateStatement {
        filter: f(doc! {"_id": 1}),
        update: Update::parse(&doc! {"$set": {"grades.$[g]": 0}}, Some(&[doc! {"g": {"$gte": 86}}])).unwrap(),
        upsert: false,
        multi: false,
        hint: None,
        collation: Default::default(),
    };
    e.update("db", "c", &[st], true, &NeverInterrupt);
    assert_eq!(
        find(&e, doc! {"_id": 1})[0].get_array("grades").unwrap(),
        &vec![Bson::Int32(80), Bson::Int32(0), Bson::Int32(0)]
    );
}
