#![allow(clippy::unwrap_used)]
use super::*;
use crate::error::CommandError;
use bson::doc;
use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};

/// A test environment: named collections, and an interrupt that fires after `kill_after`
/// checks.
struct Env {
    colls: Vec<(String, Vec<Document>)>,
    checks: AtomicUsize,
    kill_after: usize,
}

impl Env {
    fn new() -> Self {
        Env { colls: Vec::new(), checks: AtomicUsize::new(0), kill_after: usize::MAX }
    }
    fn with(mut self, name: &str, docs: Vec<Document>) -> Self {
        self.colls.push((name.to_string(), docs));
        self
    }
}

impl Interrupt for Env {
    fn check(&self) -> Result<()> {
        let n = self.checks.fetch_add(1, AtomicOrdering::SeqCst) + 1;
        if n > self.kill_after { Err(CommandError::interrupted()) } else { Ok(()) }
    }
}

impl PipelineEnv for Env {
    fn lookup_collection(&self, coll: &str) -> Result<Vec<Document>> {
        Ok(self.colls.iter().find(|(n, _)| n == coll).map(|(_, d)| d.clone()).unwrap_or_default())
    }
}

fn run(stages: Vec<Document>, input: Vec<Document>) -> Vec<Document> {
    Pipeline::parse(&stages).unwrap().run(input, &Env::new()).unwrap()
}

fn sales() -> Vec<Document> {
    vec![
        doc! {"_id": 1, "item": "a", "price": 10, "qty": 2, "tags": ["x", "y"]},
        doc! {"_id": 2, "item": "b", "price": 20, "qty": 1, "tags": []},
        doc! {"_id": 3, "item": "a", "price": 10, "qty": 5, "tags": ["y"]},
        doc! {"_id": 4, "item": "c", "price": 5.5, "qty": 10},
    ]
}

#[test]
fn match_sort_skip_limit_count() {
    let out = run(
        vec![
            doc! {"$match": {"price": {"$gte": 10}}},
            doc! {"$sort": {"qty": -1}},
            doc! {"$skip": 1},
            doc! {"$limit": 1},
        ],
        sales(),
    );
    assert_eq!(out, vec![sales()[0].clone()]);
    let out = run(vec![doc! {"$match": {"item": "a"}}, doc! {"$count": "n"}], sales());
    assert_eq!(out, vec![doc! {"n": 2}]);
    let out = run(vec![doc! {"$match": {"item": "zz"}}, doc! {"$count": "n"}], sales());
    assert!(out.is_empty());
}

#[test]
fn group_accumulators() {
    let out = run(
        vec![
            doc! {"$group": {
                "_id": "$item",
                "total": {"$sum": {"$multiply": ["$price", "$qty"]}},
                "n": {"$sum": 1},
                "cnt": {"$count": {}},
                "avgQty": {"$avg": "$qty"},
                "minQ": {"$min": "$qty"},
                "maxQ": {"$max": "$qty"},
                "first": {"$first": "$_id"},
                "last": {"$last": "$_id"},
                "ids": {"$push": "$_id"},
                "prices": {"$addToSet": "$price"},
            }},
            doc! {"$sort": {"_id": 1}},
        ],
        sales(),
    );
    assert_eq!(out.len(), 3);
    assert_eq!(
        out[0],
        doc! {"_id": "a", "total": 70, "n": 2, "cnt": 2, "avgQty": 3.5, "minQ": 2, "maxQ": 5, "first": 1, "last": 3, "ids": [1, 3], "prices": [10]}
    );
    assert_eq!(out[2].get("total"), Some(&Bson::Double(55.0)));
    let out =
        run(vec![doc! {"$group": {"_id": null, "sum": {"$sum": "$qty"}, "avg": {"$avg": "$nope"}}}], sales());
    assert_eq!(out, vec![doc! {"_id": null, "sum": 18, "avg": null}]);
    // Compound keys; numerically equal keys group together.
    let out = run(
        vec![doc! {"$group": {"_id": {"p": "$price"}, "c": {"$sum": 1}}}, doc! {"$sort": {"_id.p": 1}}],
        vec![doc! {"price": 1}, doc! {"price": 1.0}, doc! {"price": 2i64}],
    );
    assert_eq!(out, vec![doc! {"_id": {"p": 1}, "c": 2}, doc! {"_id": {"p": 2i64}, "c": 1}]);
}

#[test]
fn project_addfields_unset_replace() {
    let out = run(
        vec![doc! {"$project": {"item": 1, "value": {"$multiply": ["$price", "$qty"]}}}, doc! {"$limit": 1}],
        sales(),
    );
    assert_eq!(out, vec![doc! {"_id": 1, "item": "a", "value": 20}]);
    let out = run(
        vec![
            doc! {"$addFields": {"value": {"$multiply": ["$price", "$qty"]}, "meta.src": "x"}},
            doc! {"$limit": 1},
        ],
        sales(),
    );
    assert_eq!(out[0].get("value"), Some(&Bson::Int32(20)));
    assert_eq!(out[0].get_document("meta").unwrap(), &doc! {"src": "x"});
    let out = run(vec![doc! {"$set": {"o": {"b": 2}}}], vec![doc! {"o": {"a": 1}}]);
    assert_eq!(out, vec![doc! {"o": {"a": 1, "b": 2}}]);
    let out = run(vec![doc! {"$set": {"gone": "$$REMOVE", "x": 1}}], vec![doc! {"gone": 1}]);
    assert_eq!(out, vec![doc! {"x": 1}]);
    let out = run(vec![doc! {"$unset": ["tags", "qty"]}, doc! {"$limit": 1}], sales());
    assert_eq!(out, vec![doc! {"_id": 1, "item": "a", "price": 10}]);
    let out = run(vec![doc! {"$replaceRoot": {"newRoot": "$inner"}}], vec![doc! {"inner": {"z": 1}}]);
    assert_eq!(out, vec![doc! {"z": 1}]);
    let out = run(vec![doc! {"$replaceWith": {"k": "$_id"}}], vec![doc! {"_id": 7}]);
    assert_eq!(out, vec![doc! {"k": 7}]);
    let e = Pipeline::parse(&[doc! {"$replaceRoot": {"newRoot": "$missing"}}])
        .unwrap()
        .run(vec![doc! {}], &Env::new())
        .unwrap_err();
    assert_eq!(e.code, 40228);
}

#[test]
fn unwind_forms() {
    let input = vec![
        doc! {"_id": 1, "t": ["a", "b"]},
        doc! {"_id": 2, "t": []},
        doc! {"_id": 3, "t": null},
        doc! {"_id": 4},
        doc! {"_id": 5, "t": "scalar"},
    ];
    let out = run(vec![doc! {"$unwind": "$t"}], input.clone());
    assert_eq!(
        out,
        vec![doc! {"_id": 1, "t": "a"}, doc! {"_id": 1, "t": "b"}, doc! {"_id": 5, "t": "scalar"}]
    );
    let out = run(
        vec![doc! {"$unwind": {"path": "$t", "includeArrayIndex": "i", "preserveNullAndEmptyArrays": true}}],
        input,
    );
    assert_eq!(
        out,
        vec![
            doc! {"_id": 1, "t": "a", "i": 0i64},
            doc! {"_id": 1, "t": "b", "i": 1i64},
            doc! {"_id": 2, "i": null},
            doc! {"_id": 3, "t": null, "i": null},
            doc! {"_id": 4, "i": null},
            doc! {"_id": 5, "t": "scalar", "i": null},
        ]
    );
    let out = run(vec![doc! {"$unwind": "$a.b"}], vec![doc! {"a": {"b": [1, 2]}}]);
    assert_eq!(out, vec![doc! {"a": {"b": 1}}, doc! {"a": {"b": 2}}]);
}

#[test]
fn lookup_equality_and_pipeline() {
    let env = Env::new().with(
        "inv",
        vec![
            doc! {"_id": 10, "sku": "a", "stock": 1},
            doc! {"_id": 11, "sku": "b", "stock": 0},
            doc! {"_id": 12, "sku": ["a", "c"], "stock": 5},
            doc! {"_id": 13, "stock": 9},
        ],
    );
    let p = Pipeline::parse(&[
        doc! {"$lookup": {"from": "inv", "localField": "item", "foreignField": "sku", "as": "inv"}},
    ])
    .unwrap();
    let out = p
        .run(vec![doc! {"_id": 1, "item": "a"}, doc! {"_id": 2}, doc! {"_id": 3, "item": ["b", "c"]}], &env)
        .unwrap();
    let ids = |d: &Document| -> Vec<i32> {
        d.get_array("inv").unwrap().iter().map(|x| x.as_document().unwrap().get_i32("_id").unwrap()).collect()
    };
    assert_eq!(ids(&out[0]), vec![10, 12]);
    assert_eq!(ids(&out[1]), vec![13]); // missing local matches missing foreign
    assert_eq!(ids(&out[2]), vec![11, 12]);
    let p = Pipeline::parse(&[doc! {"$lookup": {
        "from": "inv",
        "let": {"min": "$minStock"},
        "pipeline": [{"$match": {"$expr": {"$gte": ["$stock", "$$min"]}}}, {"$project": {"_id": 1}}],
        "as": "rich",
    }}])
    .unwrap();
    let out = p.run(vec![doc! {"_id": 1, "minStock": 5}], &env).unwrap();
    assert_eq!(
        out[0].get_array("rich").unwrap(),
        &vec![Bson::Document(doc! {"_id": 12}), Bson::Document(doc! {"_id": 13})]
    );
    assert_eq!(p.lookup_collections(), vec!["inv".to_string()]);
}

#[test]
fn sort_by_count_facet_documents_sample() {
    let out = run(vec![doc! {"$unwind": "$tags"}, doc! {"$sortByCount": "$tags"}], sales());
    assert_eq!(out, vec![doc! {"_id": "y", "count": 2}, doc! {"_id": "x", "count": 1}]);
    let out = run(
        vec![
            doc! {"$facet": {"cheap": [{"$match": {"price": {"$lt": 10}}}, {"$project": {"_id": 1}}], "n": [{"$count": "c"}]}},
        ],
        sales(),
    );
    assert_eq!(out, vec![doc! {"cheap": [{"_id": 4}], "n": [{"c": 4}]}]);
    let out = run(vec![doc! {"$documents": [{"a": 1}, {"a": 2}]}], vec![]);
    assert_eq!(out, vec![doc! {"a": 1}, doc! {"a": 2}]);
    let out = run(vec![doc! {"$sample": {"size": 2}}], sales());
    assert_eq!(out.len(), 2);
    assert_ne!(out[0], out[1]);
}

#[test]
fn union_with_and_bucket() {
    let env = Env::new().with("other", vec![doc! {"_id": 100, "price": 1}, doc! {"_id": 101, "price": 50}]);
    let p = Pipeline::parse(&[
        doc! {"$unionWith": {"coll": "other", "pipeline": [{"$match": {"price": {"$gt": 10}}}]}},
    ])
    .unwrap();
    let out = p.run(vec![doc! {"_id": 1}], &env).unwrap();
    assert_eq!(out, vec![doc! {"_id": 1}, doc! {"_id": 101, "price": 50}]);
    assert_eq!(p.lookup_collections(), vec!["other".to_string()]);
    let out = run(
        vec![
            doc! {"$bucket": {"groupBy": "$price", "boundaries": [0, 10, 20], "default": "other", "output": {"n": {"$sum": 1}, "ids": {"$push": "$_id"}}}},
        ],
        sales(),
    );
    assert_eq!(
        out,
        vec![
            doc! {"_id": 0, "n": 1, "ids": [4]},
            doc! {"_id": 10, "n": 2, "ids": [1, 3]},
            doc! {"_id": "other", "n": 1, "ids": [2]},
        ]
    );
    let out = run(vec![doc! {"$bucket": {"groupBy": "$price", "boundaries": [0, 100]}}], sales());
    assert_eq!(out, vec![doc! {"_id": 0, "count": 4}]);
    let e = Pipeline::parse(&[doc! {"$bucket": {"groupBy": "$price", "boundaries": [0, 10]}}])
        .unwrap()
        .run(sales(), &Env::new())
        .unwrap_err();
    assert_eq!(e.code, 40066);
    assert_eq!(
        Pipeline::parse(&[doc! {"$bucket": {"groupBy": "$p", "boundaries": [5, 1]}}]).unwrap_err().code,
        40194
    );
}

#[test]
fn parse_errors() {
    let table: Vec<(Document, i32)> = vec![
        (doc! {"$bogus": {}}, 40324),
        (doc! {"$match": {"a": {"$bad": 1}}}, 2),
        (doc! {"$project": {"a": {"$nope": 1}}}, 168),
        (doc! {"$group": {"n": {"$sum": 1}}}, 15955),
        (doc! {"$group": {"_id": null, "n": {"$median": 1}}}, 15952),
        (doc! {"$group": {"_id": null, "a.b": {"$sum": 1}}}, 40235),
        (doc! {"$limit": 0}, 15958),
        (doc! {"$skip": -1}, 5107200),
        (doc! {"$sort": {}}, 15976),
        (doc! {"$sort": {"a": 2}}, 15975),
        (doc! {"$count": ""}, 40157),
        (doc! {"$count": "$x"}, 40158),
        (doc! {"$unwind": "noDollar"}, 28818),
        (doc! {"$lookup": {"from": "x", "localField": "a", "as": "y"}}, 9),
        (doc! {"$project": {}}, 51272),
        (doc! {"$project": {"a": 1, "b": 0}}, 31254),
        (doc! {"$currentOp": {}}, 40602),
        (doc! {"$match": {}, "$limit": 1}, 40323),
    ];
    for (stage, code) in table {
        let e = Pipeline::parse(std::slice::from_ref(&stage)).unwrap_err();
        assert_eq!(e.code, code, "{stage}: {e}");
    }
}

#[test]
fn leading_match_is_exposed() {
    let p = Pipeline::parse(&[doc! {"$match": {"a": 1}}, doc! {"$limit": 1}]).unwrap();
    assert!(p.leading_match().unwrap().matches(&doc! {"a": 1}));
    let p = Pipeline::parse(&[doc! {"$limit": 1}, doc! {"$match": {"a": 1}}]).unwrap();
    assert!(p.leading_match().is_none());
    assert_eq!(p.len(), 2);
}

#[test]
fn interrupt_is_checked_per_stage_and_every_128_docs() {
    let input: Vec<Document> = (0..1000).map(|i| doc! {"i": i}).collect();
    // Kill right away: the first check fails.
    let env = Env { kill_after: 0, ..Env::new() };
    let p = Pipeline::parse(&[doc! {"$match": {}}]).unwrap();
    assert_eq!(p.run(input.clone(), &env).unwrap_err().code, 11601);
    // Kill during a long stage: fails before the stage finishes.
    let env = Env { kill_after: 3, ..Env::new() };
    let p = Pipeline::parse(&[doc! {"$addFields": {"j": {"$add": ["$i", 1]}}}]).unwrap();
    assert_eq!(p.run(input.clone(), &env).unwrap_err().code, 11601);
    // A healthy run checks at least once per 128 documents per stage.
    let env = Env::new();
    let p = Pipeline::parse(&[doc! {"$match": {}}, doc! {"$project": {"i": 1}}]).unwrap();
    p.run(input, &env).unwrap();
    assert!(env.checks.load(AtomicOrdering::SeqCst) >= 2 * (1000 / 128));
}

/// Documents with ties and every kind of sort key (missing, null, arrays, mixed types).
fn varied(n: i32) -> Vec<Document> {
    (0..n)
        .map(|i| {
            let mut d = doc! {"_id": i, "g": i % 3};
            match i % 7 {
                0 => {}
                1 => {
                    d.insert("k", Bson::Null);
                }
                2 => {
                    d.insert("k", vec![Bson::Int32(i % 5), Bson::Int32(2)]);
                }
                3 => {
                    d.insert("k", format!("s{}", i % 4));
                }
                4 => {
                    d.insert("k", Bson::Array(Vec::new()));
                }
                _ => {
                    d.insert("k", f64::from(i % 5));
                }
            }
            d
        })
        .collect()
}

#[test]
fn top_k_sort_equals_full_sort_then_limit() {
    for n in [0, 1, 2, 5, 40, 300] {
        for spec in [doc! {"k": 1}, doc! {"k": -1, "g": 1}, doc! {"g": -1}] {
            let full = run(vec![doc! {"$sort": spec.clone()}], varied(n));
            for (skip, limit) in [(0, 1), (0, 3), (2, 5), (0, 1000), (50, 10), (7, 1)] {
                let want: Vec<Document> = full.iter().skip(skip).take(limit).cloned().collect();
                let mut stages = vec![doc! {"$sort": spec.clone()}];
                if skip > 0 {
                    stages.push(doc! {"$skip": skip as i64});
                }
                stages.push(doc! {"$limit": limit as i64});
                assert_eq!(run(stages.clone(), varied(n)), want, "{spec} {skip} {limit} n={n}");
                // The same inside a facet that borrows its input (not the last facet).
                let mut facet = stages.clone();
                facet.push(doc! {"$project": {"g": 0}});
                let out = run(vec![doc! {"$facet": {"a": facet.clone(), "b": [{"$count": "n"}]}}], varied(n));
                let a: Vec<Document> =
                    out[0].get_array("a").unwrap().iter().map(|b| b.as_document().unwrap().clone()).collect();
                assert_eq!(a, run(facet, varied(n)), "facet {spec} {skip} {limit} n={n}");
            }
        }
    }
}

#[test]
fn facet_branches_each_see_the_whole_input() {
    let branches = [
        vec![doc! {"$count": "n"}],
        vec![doc! {"$match": {"g": 1}}, doc! {"$count": "n"}],
        vec![doc! {"$match": {"g": 9}}, doc! {"$count": "n"}],
        vec![doc! {"$skip": 3}, doc! {"$limit": 2}],
        vec![doc! {"$sort": {"k": -1}}, doc! {"$skip": 1}, doc! {"$limit": 4}, doc! {"$addFields": {"x": 1}}],
        vec![doc! {"$addFields": {"g": "$_id"}}, doc! {"$match": {"g": {"$lt": 4}}}],
        vec![doc! {"$count": "n"}, doc! {"$addFields": {"m": {"$multiply": ["$n", 2]}}}],
        vec![doc! {"$limit": 5}, doc! {"$skip": 10}],
        vec![doc! {"$skip": 0}],
    ];
    let input = varied(30);
    for (i, a) in branches.iter().enumerate() {
        for b in &branches[i..] {
            let out =
                run(vec![doc! {"$facet": {"a": a.clone(), "b": b.clone(), "c": a.clone()}}], input.clone());
            assert_eq!(out.len(), 1);
            let arr = |name: &str| -> Vec<Document> {
                out[0].get_array(name).unwrap().iter().map(|x| x.as_document().unwrap().clone()).collect()
            };
            assert_eq!(out[0].keys().collect::<Vec<_>>(), ["a", "b", "c"]);
            assert_eq!(arr("a"), run(a.clone(), input.clone()), "{a:?}");
            assert_eq!(arr("b"), run(b.clone(), input.clone()), "{b:?}");
            assert_eq!(arr("c"), arr("a"));
        }
    }
    // Empty input: one document of empty arrays, $count gives nothing.
    let out = run(vec![doc! {"$facet": {"a": [{"$count": "n"}], "b": [{"$limit": 1}]}}], Vec::new());
    assert_eq!(out, vec![doc! {"a": [], "b": []}]);
}

#[test]
fn add_fields_reads_the_input_and_keeps_field_order() {
    let input = vec![doc! {"a": 1, "b": 2, "c": {"x": 1}, "d": [{"y": 1}, 5]}];
    // Each expression sees the input document, not the fields set before it.
    assert_eq!(
        run(vec![doc! {"$addFields": {"a": "$b", "b": "$a", "n": {"$add": ["$a", "$b"]}}}], input.clone()),
        vec![doc! {"a": 2, "b": 1, "c": {"x": 1}, "d": [{"y": 1}, 5], "n": 3}]
    );
    // Missing removes the field; existing fields are replaced in place; new ones go last.
    assert_eq!(
        run(vec![doc! {"$set": {"z": 0, "b": "$nope", "a": {"$literal": "$x"}}}], input.clone()),
        vec![doc! {"a": "$x", "c": {"x": 1}, "d": [{"y": 1}, 5], "z": 0}]
    );
    // Nested specifications (per array element) are unchanged.
    assert_eq!(
        run(vec![doc! {"$addFields": {"c.w": "$a", "d.q": 1}}], input),
        vec![doc! {"a": 1, "b": 2, "c": {"x": 1, "w": 1}, "d": [{"y": 1, "q": 1}, {"q": 1}]}]
    );
}

#[test]
fn exclusion_project_keeps_order_without_copying() {
    let input = vec![doc! {"_id": 1, "a": 1, "b": {"c": 1, "d": 2}, "e": [{"c": 1, "f": 2}]}];
    assert_eq!(
        run(vec![doc! {"$project": {"a": 0, "b.c": 0, "e.c": 0}}], input.clone()),
        vec![doc! {"_id": 1, "b": {"d": 2}, "e": [{"f": 2}]}]
    );
    assert_eq!(run(vec![doc! {"$project": {"_id": 0, "b": 0, "e": 0}}], input), vec![doc! {"a": 1}]);
}

#[test]
fn stage_specifications_are_refused_as_mongodb_refuses_them() {
    let err = |stage: Document| Pipeline::parse(&[stage]).unwrap_err();
    // $facet: names follow field-name rules, sub-pipelines are non-empty arrays of objects.
    assert_eq!(err(doc! {"$facet": {"a.b": [{"$count": "n"}]}}).code, 16412);
    assert_eq!(err(doc! {"$facet": {"$a": [{"$count": "n"}]}}).code, 16410);
    assert_eq!(err(doc! {"$facet": {"": [{"$count": "n"}]}}).code, 15998);
    let e = err(doc! {"$facet": {"a": []}});
    assert_eq!((e.code, e.message.as_str()), (2, "sub-pipeline in $facet stage cannot be empty"));
    assert_eq!(err(doc! {"$facet": {"a": [1]}}).code, 40171);
    assert_eq!(err(doc! {"$facet": {"a": {"$count": "n"}}}).code, 40170);
    assert_eq!(err(doc! {"$facet": {}}).code, 40169);
    assert_eq!(err(doc! {"$facet": {"a": [{"$facet": {"b": [{"$count": "n"}]}}]}}).code, 40600);
    // $addFields / $set: an object, without a path beside its own prefix.
    assert_eq!(err(doc! {"$addFields": 1}).code, 40272);
    assert!(err(doc! {"$set": "x"}).message.starts_with("$set specification stage must be an object"));
    for conflict in [
        doc! {"a": 1, "a.b": 2},
        doc! {"a.b": 1, "a": 2},
        doc! {"a": {"b": 1}, "a.b": 2},
        doc! {"a.b.c": 1, "a.b": {"c": 2}, "x": 0},
    ] {
        let e = err(doc! {"$addFields": conflict.clone()});
        assert_eq!(e.code, 40176, "{conflict}");
        assert!(e.message.contains("specification contains two conflicting paths"), "{}", e.message);
    }
    // Siblings under one prefix merge.
    assert!(Pipeline::parse(&[doc! {"$addFields": {"a.b": 1, "a.c": 2, "d": {"e": 1}, "d.f": 2}}]).is_ok());
    assert!(Pipeline::parse(&[doc! {"$addFields": {"a.b.c": 1, "a.b": {"d": 1}}}]).is_ok());
    // $skip, $limit, $count, $sort, $project, $match.
    assert_eq!(err(doc! {"$skip": -1}).code, 5107200);
    assert_eq!(err(doc! {"$skip": "1"}).code, 5107200);
    assert_eq!(err(doc! {"$limit": 0}).code, 15958);
    assert_eq!(err(doc! {"$limit": 1.5}).code, 5107201);
    assert_eq!(err(doc! {"$count": ""}).code, 40157);
    assert_eq!(err(doc! {"$count": "$n"}).code, 40158);
    assert_eq!(err(doc! {"$count": "a.b"}).code, 40160);
    assert_eq!(err(doc! {"$count": 1}).code, 40156);
    assert_eq!(err(doc! {"$sort": {}}).code, 15976);
    assert_eq!(err(doc! {"$sort": {"a": 2}}).code, 15975);
    assert!(Pipeline::parse(&[doc! {"$sort": {"a": {"$meta": "textScore"}}}]).is_err());
    assert_eq!(err(doc! {"$project": {}}).code, 51272);
    assert!(Pipeline::parse(&[doc! {"$project": {"a": 1, "b": 0}}]).is_err());
    assert!(Pipeline::parse(&[doc! {"$project": {"a": 1, "a.b": 1}}]).is_err());
    assert_eq!(err(doc! {"$match": 1}).code, 15959);
    assert!(Pipeline::parse(&[doc! {"$match": {"a": {"$bogus": 1}}}]).is_err());
    assert!(Pipeline::parse(&[doc! {"$match": {"$where": "1"}}]).is_err());
}

/// A source over documents that counts how many it builds whole. With `stale`, it serves each
/// document as a fixed copy whose live fields (`tail`, `k`) hold wrong values, and only the live
/// fields from `partial`, as the node serves `$currentOp` entries.
struct Counting {
    docs: Vec<Document>,
    whole: std::cell::Cell<usize>,
    stale: Option<Vec<Document>>,
}

impl Counting {
    fn new(docs: Vec<Document>, fixed: bool) -> Self {
        let stale = fixed.then(|| {
            docs.iter()
                .map(|d| {
                    let mut s = d.clone();
                    for live in ["tail", "k"] {
                        if s.contains_key(live) {
                            s.insert(live, "STALE");
                        }
                    }
                    s
                })
                .collect()
        });
        Counting { docs, whole: std::cell::Cell::new(0), stale }
    }
}

impl DocSource for Counting {
    fn len(&self) -> usize {
        self.docs.len()
    }
    fn fixed(&self, i: usize) -> Option<&Document> {
        self.stale.as_ref().map(|s| &s[i])
    }
    fn is_live(&self, name: &str) -> bool {
        self.stale.is_none() || name == "tail" || name == "k"
    }
    fn partial_values(&self, i: usize, fields: &[String], out: &mut Vec<(usize, Bson)>) {
        // Any order: reversed, to prove no stage depends on it.
        for (j, f) in fields.iter().enumerate().rev() {
            assert!(self.is_live(f), "{f} asked from partial");
            if let Some(v) = self.docs[i].get(f) {
                out.push((j, v.clone()));
            }
        }
    }
    fn whole(&self, i: usize) -> Document {
        self.whole.set(self.whole.get() + 1);
        self.docs[i].clone()
    }
    fn may_have(&self, name: &str) -> bool {
        self.docs.iter().any(|d| d.contains_key(name))
    }
}

#[test]
fn run_source_equals_run_over_whole_documents() {
    let docs: Vec<Document> = varied(200)
        .into_iter()
        .map(|mut d| {
            d.insert("big", doc! {"nested": {"deep": [1, 2, 3]}, "s": "x".repeat(50)});
            d.insert("tail", d.get_i32("_id").unwrap() % 11);
            d
        })
        .collect();
    // (pipeline, most documents it may build whole)
    let cases: Vec<(Vec<Document>, usize)> = vec![
        (vec![doc! {"$count": "n"}], 0),
        (vec![doc! {"$match": {"g": 1}}, doc! {"$count": "n"}], 0),
        (vec![doc! {"$sort": {"tail": -1, "_id": 1}}, doc! {"$skip": 5}, doc! {"$limit": 10}], 10),
        (
            vec![
                doc! {"$addFields": {"r": {"$multiply": ["$tail", -1]}, "s": {"$ifNull": ["$k", "none"]}}},
                doc! {"$match": {"r": {"$lt": -2}}},
                doc! {"$facet": {
                    "total": [{"$count": "n"}],
                    "page": [{"$sort": {"r": 1, "_id": -1}}, {"$skip": 2}, {"$limit": 7}, {"$project": {"big": 0}}],
                }},
            ],
            7,
        ),
        (
            vec![doc! {"$facet": {
                "a": [{"$match": {"g": 2}}, {"$sort": {"k": 1}}, {"$limit": 3}],
                "b": [{"$limit": 4}, {"$addFields": {"x": "$big.s"}}, {"$sort": {"x": 1}}],
                "c": [{"$count": "n"}],
            }}],
            7,
        ),
        (
            vec![
                doc! {"$set": {"w": 1}},
                doc! {"$set": {"w": "$$REMOVE", "v": 2}},
                doc! {"$set": {"w": 3}},
                doc! {"$limit": 2},
            ],
            2,
        ),
        (
            vec![
                doc! {"$match": {"$expr": {"$gt": ["$tail", 4]}, "big.nested.deep": 2}},
                doc! {"$addFields": {"x": {"$concat": ["$big.s", {"$toString": "$tail"}]}, "n.m": "$k"}},
                doc! {"$sort": {"big.nested.deep": 1, "k": -1, "x": 1, "_id": 1}},
                doc! {"$limit": 9},
            ],
            9,
        ),
        // Not on partial documents: a field the documents have is written, the whole document
        // is read, or the first stage needs whole documents.
        (vec![doc! {"$addFields": {"tail": 0}}, doc! {"$limit": 3}], 200),
        (vec![doc! {"$addFields": {"n": {"$size": {"$objectToArray": "$$ROOT"}}}}, doc! {"$limit": 3}], 200),
        (vec![doc! {"$project": {"big": 0}}, doc! {"$limit": 1}], 200),
        // Stages that need whole documents come after: the rows that reach them are built.
        (vec![doc! {"$match": {"g": 0}}, doc! {"$group": {"_id": "$k", "n": {"$sum": 1}}}], 67),
        (vec![doc! {"$sort": {"_id": -1}}, doc! {"$limit": 3}, doc! {"$unwind": "$big.nested.deep"}], 3),
    ];
    for (stages, most) in cases {
        let p = Pipeline::parse(&stages).unwrap();
        let whole = p.run(docs.clone(), &Env::new()).unwrap();
        for fixed in [false, true] {
            let src = Counting::new(docs.clone(), fixed);
            let lazy = p.run_source(&src, &Env::new()).unwrap();
            assert_eq!(lazy, whole, "{stages:?} fixed {fixed}");
            assert!(src.whole.get() <= most, "{stages:?} built {} whole", src.whole.get());
            // Interrupts still reach every stage.
            let env = Env { kill_after: 2, ..Env::new() };
            assert!(p.run_source(&src, &env).is_err() || stages.len() == 1, "{stages:?}");
        }
    }
}

#[test]
fn command_let_reaches_every_stage_and_nested_pipelines() {
    let lets = crate::vars::LetVars::parse(Some(&Bson::Document(doc! {"k": 10, "lim": 2}))).unwrap();
    let p = Pipeline::parse(&[
        doc! {"$match": {"$expr": {"$lte": ["$x", "$$lim"]}}},
        doc! {"$project": {"y": {"$multiply": ["$x", "$$k"]}}},
        doc! {"$lookup": {"from": "o", "pipeline": [{"$match": {"$expr": {"$eq": ["$n", "$$k"]}}}], "as": "o"}},
    ])
    .unwrap()
    .with_let(&lets);
    let env = Env::new().with("o", vec![doc! {"_id": 7, "n": 10}, doc! {"_id": 8, "n": 11}]);
    let out = p.run((1..=3).map(|x| doc! {"_id": x, "x": x}).collect(), &env).unwrap();
    assert_eq!(
        out,
        vec![
            doc! {"_id": 1, "y": 10, "o": [{"_id": 7, "n": 10}]},
            doc! {"_id": 2, "y": 20, "o": [{"_id": 7, "n": 10}]},
        ]
    );
    // The leading `$match` the engine answers on its own sees them too.
    assert!(p.leading_match().unwrap().matches(&doc! {"x": 2}));
    // `$out` / `$merge` the node did not take off are not final.
    let e = Pipeline::parse(&[doc! {"$out": "o"}, doc! {"$match": {}}]).unwrap_err();
    assert_eq!(e.code, 40601);
}

#[test]
fn undefined_variables_fail_before_any_document() {
    use crate::vars::LetVars;
    let lets = LetVars::parse(Some(&Bson::Document(doc! {"k": 1}))).unwrap();
    let check = |stages: Vec<Document>| Pipeline::parse(&stages).unwrap().checked_let(&lets).map(|_| ());
    assert!(check(vec![doc! {"$project": {"a": "$$k"}}]).is_ok());
    for bad in [
        doc! {"$match": {"$expr": "$$nope"}},
        doc! {"$project": {"a": {"b": "$$nope"}}},
        doc! {"$addFields": {"a": "$$nope"}},
        doc! {"$group": {"_id": null, "s": {"$sum": "$$nope"}}},
        doc! {"$replaceWith": "$$nope"},
        doc! {"$facet": {"f": [{"$set": {"a": "$$nope"}}]}},
        doc! {"$unionWith": {"coll": "o", "pipeline": [{"$set": {"a": "$$nope"}}]}},
        doc! {"$lookup": {"from": "o", "let": {"x": "$a"}, "pipeline": [{"$set": {"a": "$$nope"}}], "as": "o"}},
    ] {
        assert_eq!(check(vec![bad.clone()]).unwrap_err().code, 17276, "{bad}");
    }
    // `$lookup`'s own `let` and the command's are in scope in its pipeline.
    let lookup = doc! {"$lookup": {"from": "o", "let": {"x": "$a"}, "pipeline": [{"$set": {"a": ["$$x", "$$k"]}}], "as": "o"}};
    assert!(check(vec![lookup]).is_ok());
}
